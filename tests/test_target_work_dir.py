"""An empty or blank work_dir is bad input (exit 2, naming the field), as an empty python is: `--set work_dir=` was
taken, exit 0, and every file of the run went straight into the login's home."""

from __future__ import annotations

from pathlib import Path

import pytest
from procs import board_file, named, run

from edgekit.errors import TargetError
from edgekit.target import load_target


@pytest.mark.parametrize("value", ["", "   ", "\t"])
def test_an_empty_work_dir_is_refused_as_bad_input(tmp_path: Path, value: str) -> None:
    out = run(
        "targets", "check", str(board_file(tmp_path)), "--set", f"work_dir={value}", cwd=tmp_path, timeout=60
    )
    err = " ".join(named(out).split())
    assert out.returncode == 2, (out.returncode, err)
    assert "invalid target: work_dir: an empty folder" in err and "(from --set work_dir=...)" in err, err
    assert "hint: e.g. work_dir: ~/edgekit" in err, err


def test_an_empty_work_dir_in_a_target_file_is_refused() -> None:
    with pytest.raises(TargetError, match="work_dir: an empty folder"):
        load_target("pi4", {"work_dir": ""})
    assert load_target("pi4", {"work_dir": "bench"}).work_dir == "bench"  # a relative one is still the home's
