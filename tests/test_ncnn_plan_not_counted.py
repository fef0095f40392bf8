"""An ncnn-int8 converted where the emulated cores are not found (a custom EDGEKIT_HOME without EDGEKIT_EMU_HOME)
has no speed plan: convert says so under its table, where they are looked for and how to build or point to them;
switched off on purpose (EDGEKIT_NCNN_SPEED_PLAN=0), it is not said."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def convert(tmp_path: Path, plan_switch: str) -> str:
    raw = yaml.safe_load((REPO / "recipes" / "tiny.yaml").read_text())
    raw["formats"] = ["ncnn-int8"]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    env = {
        **os.environ,
        "EDGEKIT_HOME": str(tmp_path / "home"),
        "EDGEKIT_EMU_HOME": str(tmp_path / "emu"),  # nothing built there
        "EDGEKIT_NCNN_SPEED_PLAN": plan_switch,
        "COLUMNS": "300",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.integration
def test_no_speed_plan_for_want_of_the_cores_is_said_under_the_table(tmp_path: Path) -> None:
    """Before: 'ncnn-int8: converted', all-int8, and the reason only in model.io.json's notes."""
    out = convert(tmp_path, "1")
    said = " ".join(out.split())
    assert "ncnn-int8: WARNING: no speed plan, the emulated cores are not built in " in said, out
    assert (
        str(tmp_path / "emu") in said and "edgekit emu build pi4-emu" in said and "EDGEKIT_EMU_HOME" in said
    )
    assert "is all-int8" in said, out


@pytest.mark.integration
def test_switched_off_on_purpose_it_is_not_said(tmp_path: Path) -> None:
    out = convert(tmp_path, "0")
    assert "no speed plan" not in out, out
