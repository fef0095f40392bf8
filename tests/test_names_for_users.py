"""Names a user reads: `--target pi4emu` said `unknown target 'pi4emu'` and the list, with no "did you mean
pi4-emu?" (a recipe path and a format have one); and the conversion progress named Python classes ('converting
with TfliteConverter', 'with NcnnConverter') where the user knows the tools (onnx2tf and TensorFlow, pnnx)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.errors import TargetError
from edgekit.formats import Format
from edgekit.target import load_target
from edgekit.target.files import list_target_names

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"


def test_a_misspelt_target_name_says_the_nearest_one() -> None:
    names = list_target_names()
    assert "pi4-emu" in names
    with pytest.raises(TargetError) as caught:
        load_target("pi4emu")
    said = str(caught.value)
    assert "unknown target 'pi4emu'" in said and "did you mean pi4-emu?" in said, said
    with pytest.raises(TargetError) as far:
        load_target("zzqqxx")  # nothing near: no guess
    assert "did you mean" not in str(far.value)
    done = subprocess.run(  # and through the CLI, exit 2, before any conversion
        [sys.executable, "-m", "edgekit", "deploy", str(RECIPE), "--target", "pi4emu"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=120,
    )
    text = " ".join(done.stderr.split())
    assert done.returncode == 2 and "did you mean pi4-emu?" in text, done.stdout + done.stderr
    assert "convert:" not in done.stdout


def test_the_conversion_progress_names_the_tool_not_the_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))  # an empty cache: both formats are converted
    from edgekit.convert.pipeline import convert_recipe
    from edgekit.recipe import load_recipe

    said: list[str] = []
    arts = convert_recipe(
        load_recipe(RECIPE), [Format.TFLITE_FP32, Format.NCNN_FP32], keep_going=True, progress=said.append
    )
    assert all(a.files for a in arts), [a.error for a in arts]
    started = [m for m in said if ": converting with " in m]
    assert len(started) == 2, said
    classes = [m for m in started if "Converter" in m]
    assert not classes, said
    tools = {m.split(": converting with ", 1)[0]: m.split(": converting with ", 1)[1] for m in started}
    assert "onnx2tf" in tools["tflite-fp32"] and "TensorFlow" in tools["tflite-fp32"], tools
    assert "pnnx" in tools["ncnn-fp32"], tools
