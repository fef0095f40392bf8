"""A target FILE's booleans and numbers are YAML's own, not text; `--set` and EDGEKIT_TARGET_* stay text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.errors import TargetError
from edgekit.target.files import list_target_names
from edgekit.target.load import load_target

BASE = "transport: ssh\nhost: raspberrypi.local\nuser: pi\n"


def _target(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "board.yaml"
    path.write_text(BASE + extra)
    return path


@pytest.mark.parametrize(
    ("extra", "field", "fix"),
    [
        ('accept_new: "yes"\n', "accept_new", "`accept_new: true` (or false)"),  # was True: host keys trusted
        ("accept_new: 'false'\n", "accept_new", "`accept_new: true` (or false)"),
        ("accept_new: 1\n", "accept_new", "`accept_new: true`"),
        ('port: "22"\n', "port", "`port: 22`"),
        ("port: 22.0\n", "port", "`port: 22`"),
        ("port: true\n", "port", "`port: 22`"),
        ('connect_timeout: "10"\n', "connect_timeout", "`connect_timeout: 10`"),
        ('emulated: {device: pi4, cpu: cortex-a72, counting: "false"}\n', "emulated.counting", "true"),
        ('benchmark_cap: {threads: ["4"]}\n', "benchmark_cap.threads", "`benchmark_cap.threads: [1, 4]`"),
    ],
)
def test_a_quoted_or_mistyped_value_in_a_target_file_is_refused_naming_field_and_file(
    tmp_path: Path, extra: str, field: str, fix: str
) -> None:
    path = _target(tmp_path, extra)
    with pytest.raises(TargetError) as err:
        load_target(path, env={})
    assert err.value.message.startswith(f"{field}: ") and "in the target file" in err.value.message
    assert err.value.where == str(path) and fix in (err.value.hint or "")


def test_yaml_booleans_and_numbers_in_a_file_load(tmp_path: Path) -> None:
    path = _target(
        tmp_path, "accept_new: true\nport: 2222\nconnect_timeout: 5\nbenchmark_cap: {threads: [1, 4]}\n"
    )
    target = load_target(path, env={})
    assert (target.accept_new, target.port, target.connect_timeout) == (True, 2222, 5.0)
    assert target.benchmark_cap is not None and target.benchmark_cap.threads == (1, 4)


def test_set_and_environment_overrides_are_text_and_still_convert(tmp_path: Path) -> None:
    path = _target(tmp_path, "")
    target = load_target(path, ["accept_new=true", "port=2222"], env={})
    assert (target.accept_new, target.port) == (True, 2222)
    env = {"EDGEKIT_TARGET_BOARD_ACCEPT_NEW": "true", "EDGEKIT_TARGET_BOARD_PORT": "22"}
    target = load_target(path, env=env)
    assert (target.accept_new, target.port) == (True, 22)


def test_a_file_value_an_override_replaces_is_not_the_files_any_more(tmp_path: Path) -> None:
    path = _target(tmp_path, 'port: "22"\n')
    assert load_target(path, ["port=2222"], env={}).port == 2222


def test_targets_check_exits_2_on_a_quoted_boolean(tmp_path: Path) -> None:
    path = _target(tmp_path, 'accept_new: "yes"\n')
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "targets", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "accept_new: 'yes' in the target file is text" in done.stderr, done.stderr


def test_every_shipped_target_file_loads() -> None:
    for name in list_target_names():
        assert load_target(name, env={}).name
