"""Overrides win on emulated targets; a data dir only sees and stops the devices it started."""

from __future__ import annotations

import shutil
from pathlib import Path

import psutil
import pytest

from edgekit.emu import layout
from edgekit.emu.device import ensure_device
from edgekit.target import load_target

pytestmark = pytest.mark.integration


def test_set_and_environment_overrides_win_over_the_device_state(pi4_emu, tmp_path: Path) -> None:
    target = ensure_device(
        load_target(
            "pi4-emu",
            ["user=nobody", f"key={tmp_path / 'WRONG'}"],
            env={"EDGEKIT_TARGET_PI4_EMU_WORK_DIR": "/tmp/elsewhere"},
        )
    )
    assert (
        target.user == "nobody" and target.key == tmp_path / "WRONG" and target.work_dir == "/tmp/elsewhere"
    )
    assert target.port == pi4_emu.port  # what was not overridden still comes from the running device


def test_wrong_user_override_on_an_emulated_target_fails_to_connect(pi4_emu, edgekit_cli) -> None:
    out = edgekit_cli("targets", "check", "pi4-emu", "--set", "user=nobody", timeout=60)
    assert out.code == 1, out.stdout + out.stderr
    assert "ConnectError" in out.stderr and "nobody" in out.stderr
    assert "Traceback" not in out.stderr


def test_a_copied_state_file_never_stops_another_data_dirs_device(
    pi4_emu, tmp_path: Path, edgekit_cli
) -> None:
    own = layout.device_dir("pi4-emu").state_file
    other_home = tmp_path / "emu"
    copied = other_home / "devices" / "pi4-emu" / "state.json"
    copied.parent.mkdir(parents=True)
    shutil.copy(own, copied)
    env = {"EDGEKIT_EMU_HOME": str(other_home)}
    status = edgekit_cli("emu", "status", env=env, timeout=60)
    assert status.code == 0 and str(pi4_emu.port) not in status.stdout
    down = edgekit_cli("emu", "down", "pi4-emu", env=env, timeout=60)
    assert down.code == 0 and "was not running" in down.stdout
    assert not copied.exists()  # the foreign record is dropped, its device left alone
    from edgekit.emu.runner import running_state

    state = running_state("pi4-emu")
    assert state is not None and psutil.pid_exists(state.sshd_pid)


def test_a_stage_that_failed_is_not_said_to_be_done(pi4_emu, edgekit_cli) -> None:
    """The progress said 'connect done in 0.7 s', then 'FAILED connect: ...'."""
    out = edgekit_cli(
        "deploy", "recipes/tiny.yaml", "--target", "pi4-emu", "--set", "user=nobody", "--no-host", timeout=600
    )
    said = out.stdout + out.stderr
    assert out.code == 1 and "pi4-emu: FAILED connect" in said, said
    assert "pi4-emu: connect done" not in said and "pi4-emu: ensure done" in said
