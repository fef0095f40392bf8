"""An .onnx whose only free dimension is the batch (torch's export with dynamic_axes on the batch) runs at batch 1
on `profile --target host` and `bench --target local`, as `estimate` and `profile --target pi4-emu` take it, and
says so; --input-shape/--shape are for free dimensions besides the batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
from onnx_graphs import gelu_classifier


def edgekit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )


def _free_batch(tmp_path: Path) -> Path:
    path = gelu_classifier(tmp_path / "free.onnx", size=12)
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [3, 12, 12]
    return path


def test_profile_on_this_host_takes_a_free_batch_as_1(tmp_path: Path) -> None:
    """It was refused (exit 2, "its batch dimension is free ... pass --input-shape 1,3,12,12")."""
    free = _free_batch(tmp_path)
    done = edgekit("profile", str(free), "--target", "host", "--threads", "2", "--passes", "10", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    got = json.loads(done.stdout)
    assert got["input_shape"] == [1, 3, 12, 12], got["input_shape"]
    assert got["status"] == "ok" and got["layer_ms"], got
    assert "free batch dimension ('N') is taken as 1" in done.stderr, done.stderr


def test_bench_on_local_takes_a_free_batch_as_1(tmp_path: Path) -> None:
    free = _free_batch(tmp_path)
    done = edgekit("bench", str(free), "--target", "local", "--repeat", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "of shape 1,3,12,12 from the model file" in done.stdout, done.stdout
    assert "p50 ms" in done.stdout, done.stdout
    assert "free batch dimension ('N') is taken as 1" in done.stderr, done.stderr
    # a shape given still sets it, and a batch other than 1 is still refused as before
    given = edgekit("bench", str(free), "--target", "local", "--repeat", "2", "--shape", "1,3,12,12")
    assert given.returncode == 0 and "taken as 1" not in given.stderr, given.stdout + given.stderr
