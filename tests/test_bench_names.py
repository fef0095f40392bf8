"""`edgekit bench` names what it timed as `deploy` does: the format id, the runtime's name (`tflite`, `opencv`,
`mnn`, not its Python module), where the format came from; and nothing a runtime prints lands in its output."""

from __future__ import annotations

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
