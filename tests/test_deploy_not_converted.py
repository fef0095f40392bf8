"""Deploy's error when formats did not convert: each format's hint was glued to the next format's error on one
line ('...cannot run it\\n  hint: list the ONNX op ...); tflite-int8: conversion failed: ...'), and a format
that converted but failed its check here (opencv-fp32: cannot run on this host) was left out. Built from the
artifacts convert_recipe returns (their `error` is the EdgekitError's text: message, then its hint)."""

from __future__ import annotations

from pathlib import Path

from edgekit.convert.base import Artifact
from edgekit.deploy.orchestrate import _not_converted
from edgekit.errors import ConversionError
from edgekit.formats import Format
from edgekit.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent


def _failed(fmt: Format, error: str, files: list[Path] | None = None) -> Artifact:
    return Artifact(fmt, files or [], key="k", size_bytes=0, status="failed", error=error)


def test_each_failed_format_is_one_line_and_the_hints_come_once_after(tmp_path: Path) -> None:
    recipe = load_recipe(ROOT / "recipes" / "tiny.yaml")
    onnx2tf = str(
        ConversionError("conversion failed: onnx2tf: DFT has no TFLite op", hint="list the ONNX op")
    )
    broken = [
        _failed(Format.TFLITE_FP32, onnx2tf),
        _failed(Format.TFLITE_INT8, onnx2tf),
        _failed(
            Format.NCNN_FP32, str(ConversionError("conversion failed: pnnx: DFT", hint="leave ncnn-* out"))
        ),
    ]
    model = tmp_path / "model.onnx"
    model.write_bytes(b"x")
    checked = [_failed(Format.OPENCV_FP32, "cannot run on this host: cv2 refuses DFT", [model])]
    err = _not_converted(recipe, broken, checked)
    lines = err.message.splitlines()
    assert lines[0] == "4 formats failed:", lines
    assert lines[1:] == [
        "  tflite-fp32: conversion failed: onnx2tf: DFT has no TFLite op",
        "  tflite-int8: conversion failed: onnx2tf: DFT has no TFLite op",
        "  ncnn-fp32: conversion failed: pnnx: DFT",
        "  opencv-fp32: cannot run on this host: cv2 refuses DFT (converted: --keep-going deploys it)",
    ], lines
    assert err.hint == (
        "list the ONNX op; leave ncnn-* out; fix the conversion, or pass --keep-going to deploy the formats that "
        "converted"
    )
    assert "hint:" not in err.message and err.where == str(recipe.path)
