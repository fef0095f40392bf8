"""examples/nightly.sh, what the README's cron line runs: the line it replaced ended `|| tail -n 40 nightly.md`, a
file rewritten only when the night got as far as its report, so a night that failed early (a missing key, a
store it could not open, the lock still held) mailed the previous night's "no regressions". The script is run
here as cron would, with a real edgekit and a real flock."""

from __future__ import annotations

import fcntl
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "nightly.sh"


def _cron(home: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),  # no ~/.ssh: the pi4 target's key is missing, the night stops before its report
        "EDGEKIT_HOME": str(home / "data"),
        "EDGEKIT_CHECKOUT": str(ROOT),
        "EDGEKIT_NIGHTLY_TARGETS": "pi4",
    }
    return subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)


def _yesterday(home: Path) -> Path:
    reports = home / "edgekit-reports"
    reports.mkdir(parents=True)
    (reports / "nightly.md").write_text("## edgekit report: no regressions\n(yesterday)\n")
    return reports


def test_a_night_that_stops_before_its_report_mails_tonights_error(tmp_path: Path) -> None:
    reports = _yesterday(tmp_path)
    done = _cron(tmp_path)
    assert done.returncode == 2, done
    assert "KeyFileError" in done.stdout and "key file not found" in done.stdout, done.stdout
    assert "yesterday" not in done.stdout and not (reports / "nightly.md").exists()
    log = (reports / "nightly.log").read_text()
    assert "edgekit nightly, exit 2" in log and "KeyFileError" in log


def test_a_night_that_finds_the_last_one_running_says_so(tmp_path: Path) -> None:
    reports = _yesterday(tmp_path)
    with open(reports / ".nightly.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the previous night, still running
        done = _cron(tmp_path)
    assert done.returncode == 75, done
    assert "not started: the previous night still holds" in done.stdout, done.stdout
    assert "yesterday" not in done.stdout


def test_a_second_night_started_meanwhile_leaves_the_running_ones_log_alone(tmp_path: Path) -> None:
    """The lock was taken after the log was truncated and the summary removed: a second night started while the
    first ran wiped the first one's early lines (its error) from the mail and the log. The lock comes first now."""
    reports = _yesterday(tmp_path)
    (reports / "nightly-tonight.log").write_text("ERROR early: key missing for pi5\n")  # the running night's
    with open(reports / ".nightly.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = _cron(tmp_path)
    assert done.returncode == 75, done
    assert (reports / "nightly-tonight.log").read_text() == "ERROR early: key missing for pi5\n"
    assert (reports / "nightly.md").read_text().endswith("(yesterday)\n")  # not the second night's to remove
