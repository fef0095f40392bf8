"""`edgekit bench` names what it timed as `deploy` does: the format id, the runtime's name (`tflite`, `opencv`,
`mnn`, not its Python module), where the format came from; and nothing a runtime prints lands in its output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx_graphs import gelu_classifier


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "bench", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture
def fixed_onnx(tmp_path: Path) -> Path:
    """A tiny .onnx whose input shape is fixed (1,3,16,16)."""
    model = onnx.load(str(gelu_classifier(tmp_path / "free.onnx")))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    path = tmp_path / "mine.onnx"
    onnx.save(model, str(path))
    return path


def test_the_format_line_says_the_format_came_from_the_option(fixed_onnx: Path) -> None:
    """It printed `format opencv-fp32: --format`, which reads as a broken sentence."""
    done = bench(str(fixed_onnx), "--target", "host", "--format", "opencv-fp32", "--repeat", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "format opencv-fp32 (from --format)" in done.stdout, done.stdout


def test_the_table_names_the_format_and_the_runtime_as_deploy_does(fixed_onnx: Path) -> None:
    """The table said artifact `mine` (the file's stem) and runtime `cv2` (OpenCV's Python module) where deploy
    says `opencv-fp32` on `opencv`; the --json result keeps the module that ran it."""
    out = fixed_onnx.with_suffix(".json")
    done = bench(
        str(fixed_onnx), "--target", "host", "--format", "opencv-fp32", "--repeat", "2", "--json", str(out)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    row = next(line for line in done.stdout.splitlines() if "opencv-fp32" in line and "│" in line)
    cells = [c.strip() for c in row.strip("│ ").split("│")]
    assert cells[:2] == ["opencv-fp32", "opencv"], row
    assert "cv2" not in done.stdout and "mine " not in done.stdout, done.stdout
    (m,) = json.loads(out.read_text())["agent"]["measurements"]
    assert m["artifact"] == "opencv-fp32" and m["runtime"] == "cv2"


@pytest.fixture
def mnn_files(fixed_onnx: Path, tmp_path: Path) -> dict[str, Path]:
    """The tiny .onnx through MNN's converter: fp32 and fp16 weights, bare (no edgekit metadata beside them)."""
    pytest.importorskip("MNN")
    from edgekit.convert.mnn import _convert

    made = {}
    for name, fp16 in (("m32", False), ("m16", True)):
        out = tmp_path / f"{name}.mnn"
        _convert(fixed_onnx, out, fp16=fp16, work=tmp_path, logs=tmp_path)
        made[name] = out
    return made


def test_mnn_own_stdout_stays_out_of_bench_output(mnn_files: dict[str, Path]) -> None:
    """MNN's import prints `The device supports: i8sdot:0, fp16:0, ...` on stdout: it landed in bench's output."""
    done = bench(str(mnn_files["m32"]), "--target", "host", "--repeat", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "The device supports" not in done.stdout + done.stderr, done.stdout
    assert "p50 ms" in done.stdout


def test_a_bare_mnn_is_not_labelled_fp32_when_its_precision_is_not_read(mnn_files: dict[str, Path]) -> None:
    """A bare .mnn of fp16 weights was labelled `mnn-fp32` (the suffix's default): MNN's Python API does not say
    a file's weight precision, so bench says it did not read it, and names the row by the file."""
    done = bench(str(mnn_files["m16"]), "--target", "host", "--repeat", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "format mnn (precision not read from the file)" in done.stdout, done.stdout
    row = next(line for line in done.stdout.splitlines() if "m16.mnn" in line and "│" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")][:2] == ["m16.mnn", "mnn"], row
    assert "mnn-fp32 (" not in done.stdout
    told = bench(str(mnn_files["m16"]), "--target", "host", "--repeat", "2", "--format", "mnn-fp16")
    assert told.returncode == 0 and "format mnn-fp16 (from --format)" in told.stdout, (
        told.stdout + told.stderr
    )
