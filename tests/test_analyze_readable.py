"""The INT8 formats analyze reads are one rule (every INT8 format of a runtime whose layers edgekit reads), the same
for --format and for a recipe without it: tflite-onnx2tf-int8 (a Keras source's onnx2tf route) is one of them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edgekit.formats import Format, Precision

ROOT = Path(__file__).resolve().parents[1]


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "analyze", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "300"},
    )


def test_a_recipe_whose_only_int8_format_is_the_onnx2tf_route_needs_no_format(tmp_path: Path) -> None:
    """Was: 'the recipe has none of tflite-int8, ncnn-int8, onnx-int8', though --format tflite-onnx2tf-int8
    worked."""
    from edgekit.analysis.analyze import check_format
    from edgekit.cli.analyze import _recipe_int8_format
    from edgekit.recipe import load_recipe

    raw = yaml.safe_load((ROOT / "recipes" / "digits-keras.yaml").read_text())
    raw["formats"] = ["tflite-onnx2tf-fp32", "tflite-onnx2tf-int8"]
    raw["model"]["path"] = str(ROOT / "edgekit" / "zoo" / "weights" / "digits-keras.keras")
    path = tmp_path / "o2t.yaml"
    path.write_text(yaml.safe_dump(raw))
    fmt = _recipe_int8_format(load_recipe(path).formats)
    assert fmt is Format.TFLITE_ONNX2TF_INT8
    check_format(fmt)  # and --format takes it: the same rule


def test_the_choice_among_several_names_every_readable_int8_format_of_the_recipe() -> None:
    """Was, on digits-keras: 'the recipe has tflite-int8 and ncnn-int8: choose one', the third left out."""
    out = _analyze(str(ROOT / "recipes" / "digits-keras.yaml"))
    assert out.returncode == 2 and "UsageError" in out.stderr, out.stderr
    text = " ".join(out.stderr.split())
    assert "the recipe has tflite-int8, tflite-onnx2tf-int8 and ncnn-int8: choose one" in text, text
    assert "--format tflite-onnx2tf-int8" in text, text


@pytest.mark.parametrize("fmt", ["ncnn-fp32", "mnn-int8"])
def test_a_format_analyze_cannot_read_is_refused_listing_every_one_it_can(fmt: str) -> None:
    from edgekit.analysis.analyze import READABLE, AnalysisError, check_format

    readable = {
        f
        for f in Format
        if f.precision is Precision.INT8 and f.runtime.value in {"tflite", "ncnn", "onnxruntime"}
    }
    assert set(READABLE) == readable and Format.TFLITE_ONNX2TF_INT8 in readable
    with pytest.raises(AnalysisError) as err:
        check_format(Format(fmt))
    hint = err.value.hint or ""
    assert {f.value for f in readable} == set(re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*-int8", hint)), hint


def test_the_help_of_format_lists_every_readable_format() -> None:
    from edgekit.analysis.analyze import READABLE

    out = _analyze("--help")
    text = " ".join(out.stdout.split())
    for f in READABLE:
        assert f.value in text, (f.value, text)
