"""An .onnx whose graph input has free dimensions (N, 3, H, W) is timed at the size of the samples given: the
agent fed every dynamic dimension at size 1, so `bench --shape 1,3,32,32` was refused ("does not fit the model
input [1, 3, 1, 1]") and 1x1 was the only size it would time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx_graphs import dynamic_hw_onnx

from edgekit.agent.agent import fit_shape


@pytest.fixture(scope="module")
def dynamic_hw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return dynamic_hw_onnx(tmp_path_factory.mktemp("dyn") / "dynhw.onnx")


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "bench", *args, "--target", "host", "--repeat", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_free_axes_take_the_samples_size_and_fixed_ones_are_checked() -> None:
    x = np.zeros((3, 48, 40), np.float32)
    assert fit_shape(x, (1, 3, 1, 1), free=(2, 3)).shape == (1, 3, 48, 40)
    with pytest.raises(ValueError, match=r"does not fit the model input \[1, 4, \?, \?\]"):
        fit_shape(x, (1, 4, 1, 1), free=(2, 3))
    with pytest.raises(ValueError):  # without free axes nothing changes: the exact shape only
        fit_shape(x, (1, 3, 1, 1))


def test_an_onnx_with_free_height_and_width_is_timed_at_the_shape_given(
    dynamic_hw: Path, tmp_path: Path
) -> None:
    done = bench(str(dynamic_hw), "--shape", "1,3,32,32")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "onnx-fp32" in done.stdout and " ok " in done.stdout
    samples = tmp_path / "samples.npy"
    np.save(samples, np.random.default_rng(0).random((2, 1, 3, 48, 40)).astype(np.float32))
    done = bench(str(dynamic_hw), "--input", str(samples))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "shape 1,3,48,40" in done.stdout + done.stderr
    wrong = bench(str(dynamic_hw), "--shape", "1,4,32,32")  # the channels are the model's own
    assert wrong.returncode == 2 and "1,3,?,?" in wrong.stderr, wrong.stderr
