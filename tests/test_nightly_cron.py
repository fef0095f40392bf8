"""examples/nightly.sh, what the README's cron line runs: the line it replaced ended `|| tail -n 40 nightly.md`, a
file rewritten only when the night got as far as its report, so a night that failed early (a missing key, a
store it could not open, the lock still held) mailed the previous night's "no regressions". The script is run
here as cron would, with a real edgekit and a real flock."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


# the deploy step of a night played by synthetic results (as tests/test_nightly.py injects it): the script, the
# CLI, the store, the judging and the report are the real ones
FAKE_DEPLOY = """
import os
from datetime import UTC, datetime, timedelta

import numpy as np

from edgekit.formats import Format
from edgekit.report.synthetic import synthetic_result


def deploy(recipe, targets):
    night = int(os.environ["FAKE_NIGHT"])
    slow = {("tflite-int8", "host"): 1.4} if recipe.stem == os.environ.get("FAKE_SLOW") else None
    return synthetic_result(
        datetime.now(UTC) - timedelta(days=10 - night, minutes=ord(recipe.stem[0])),  # in the report's 30 days
        rng=np.random.default_rng([night, ord(recipe.stem[0])]),
        recipe=recipe.stem,
        targets=("host",),
        formats=(Format.TFLITE_FP32, Format.TFLITE_INT8, Format.NCNN_INT8),
        threads=(1,),
        repeat=30,
        slowdown=slow,
    )
"""


def _checkout(tmp_path: Path, recipes: list[str]) -> Path:
    """A checkout whose `.venv/bin/edgekit` is the real CLI with the night's deploy step played by FAKE_DEPLOY."""
    checkout = tmp_path / "checkout"
    (checkout / ".venv" / "bin").mkdir(parents=True)
    (checkout / "recipes").mkdir()
    for name in recipes:
        (checkout / "recipes" / f"{name}.yaml").write_text(f"name: {name}\n")
    (checkout / "fake_deploy.py").write_text(FAKE_DEPLOY)
    cli = checkout / ".venv" / "bin" / "edgekit"
    cli.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(checkout)!r})\nimport fake_deploy\n"
        "import edgekit.nightly\nedgekit.nightly.default_deploy = fake_deploy.deploy\n"
        "from edgekit.cli import main\nsys.exit(main())\n"
    )
    cli.chmod(0o755)
    return checkout


def test_a_long_summary_mails_the_verdict_and_the_flags_at_its_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mail was the summary's last 40 lines: its verdict and flags are at the top and the tables below, so a
    regressed night of several recipes mailed tables and no regression. It mails the night's verdict line, then
    the summary's first 40 lines, and says how many more the file has."""
    import importlib.util

    from edgekit.nightly import run_nightly

    recipes = ["alpha", "bravo", "charlie", "delta", "echo"]
    checkout = _checkout(tmp_path, recipes)
    store = f"sqlite:///{tmp_path / 'store.sqlite'}"
    spec = importlib.util.spec_from_file_location("fake_deploy", checkout / "fake_deploy.py")
    assert spec is not None and spec.loader is not None
    fake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fake)
    for night in range(5):  # quiet nights: the history tonight is judged on
        monkeypatch.setenv("FAKE_NIGHT", str(night))
        night_run = run_nightly([checkout / "recipes"], ["local"], store_url=store, deploy_fn=fake.deploy)
        assert night_run.exit_code == 0
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "EDGEKIT_HOME": str(tmp_path / "data"),
        "EDGEKIT_CHECKOUT": str(checkout),
        "EDGEKIT_NIGHTLY_TARGETS": "local",
        "EDGEKIT_STORE": store,
        "FAKE_NIGHT": "5",
        "FAKE_SLOW": "alpha",  # the first recipe of the summary slows down tonight
    }
    done = subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done
    summary = (tmp_path / "edgekit-reports" / "nightly.md").read_text().splitlines()
    assert len(summary) > 40 and "**latency**" in "\n".join(summary[:40]), summary  # the case of the report
    mail = done.stdout.splitlines()
    assert mail[0].startswith("nightly: 1 regression: alpha latency tflite-int8 at 1 thread on host: "), mail
    assert "- **latency** tflite-int8 at 1 thread on host: " in done.stdout, done.stdout
    assert mail[-1] == f"… and {len(summary) - 40} more lines in {tmp_path}/edgekit-reports/nightly.md", mail
