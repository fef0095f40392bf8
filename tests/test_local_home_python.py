"""A local target's `python` in the login's home (`python: ~/venv/bin/python3`): an ssh device's shell reads the
leading `~/` as its home (transport.ssh_exec), the local transport ran the word as it was (exit 127, 'No such
file or directory: ~/venv/bin/python3'). Both now read it alike."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edgekit.target import Target, TransportKind
from edgekit.transport.local import LocalTransport

EDGEKIT = Path(sys.executable).with_name("edgekit")


def test_a_local_targets_python_under_the_home_runs(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "venv" / "bin").mkdir(parents=True)
    (home / "venv" / "bin" / "python3").symlink_to(sys.executable)
    target = tmp_path / "lt.yaml"
    target.write_text(
        f"name: lt\ntransport: local\npython: ~/venv/bin/python3\nwork_dir: {tmp_path / 'work'}\nruntimes: [numpy]\n"
    )
    env = {**os.environ, "HOME": str(home), "EDGEKIT_HOME": str(tmp_path / "eh"), "COLUMNS": "200"}
    done = subprocess.run(
        [str(EDGEKIT), "targets", "check", str(target)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in done.stdout, done.stdout


def test_only_a_leading_tilde_slash_is_the_home(tmp_path: Path) -> None:
    """`~user/...` and a `~` inside a word stay as written (the ssh side leaves them literal too)."""
    transport = LocalTransport(
        Target(name="dev", transport=TransportKind.LOCAL, work_dir=str(tmp_path / "d"))
    )
    code = "import sys; print(sys.argv[1:])"
    done = transport.run([sys.executable, "-c", code, "~/x", "a~/b", "~nobody/y", "~"], timeout=60)
    home = os.path.expanduser("~")
    assert done.exit_status == 0, done.stderr
    assert done.stdout.strip() == str([f"{home}/x", "a~/b", "~nobody/y", home]), done.stdout


def test_a_local_targets_relative_work_dir_is_the_homes(tmp_path: Path) -> None:
    """`work_dir: edgekit-work` is the device home's on an ssh device (README); the local transport made it in
    whatever folder edgekit was run from."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    target = tmp_path / "lt.yaml"
    target.write_text("name: lt\ntransport: local\nwork_dir: edgekit-work\nruntimes: [numpy]\n")
    env = {**os.environ, "HOME": str(home), "EDGEKIT_HOME": str(tmp_path / "eh"), "COLUMNS": "200"}
    done = subprocess.run(
        [str(EDGEKIT), "targets", "check", str(target)],
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (home / "edgekit-work").is_dir() and not (elsewhere / "edgekit-work").exists()


def test_a_local_targets_default_work_dir_follows_a_relative_data_dir(tmp_path: Path) -> None:
    """The default work dir is the data dir's `local/NAME`: a relative EDGEKIT_HOME keeps it beside the data dir
    (the cwd's), not under the home as a relative `work_dir` is (2d59381 moved it there too)."""
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    target = tmp_path / "lt.yaml"
    target.write_text("name: lt\ntransport: local\nruntimes: [numpy]\n")
    env = {**os.environ, "HOME": str(home), "EDGEKIT_HOME": "data", "COLUMNS": "200"}
    done = subprocess.run(
        [str(EDGEKIT), "targets", "check", str(target)],
        env=env,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (elsewhere / "data" / "local" / "lt").is_dir() and not (home / "data").exists()
