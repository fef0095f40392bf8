"""bench of an .onnx its runtime cannot read (an op of a custom domain for onnxruntime, GridSample for OpenCV DNN)
sent the file to the target and failed there inside a table cell, exit 1; the README says bench checks such a
file on the host before any device runs (exit 2), as it does for MNN. Real `edgekit` command, real onnxruntime
and cv2, a target on a port nothing listens on for the must-not-connect case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from procs import board_file, named, run


def custom_op_onnx(path: Path) -> Path:
    """x (1, 3, 8, 8) -> com.me:MyOp -> y: onnxruntime and OpenCV know no such op."""
    graph = helper.make_graph(
        [helper.make_node("MyOp", ["x"], ["y"], domain="com.me")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.me", 1)]
    )
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def grid_sample_onnx(path: Path) -> Path:
    """x (1, 3, 8, 8) -> GridSample (opset 16) -> y: onnxruntime runs it, OpenCV 4.11's DNN cannot create it."""
    grid = np.random.default_rng(0).uniform(-1, 1, size=(1, 8, 8, 2)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("GridSample", ["x", "grid"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        initializer=[numpy_helper.from_array(grid, "grid")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_bench_of_an_onnx_onnxruntime_cannot_load_is_refused_on_the_host(tmp_path: Path) -> None:
    custom_op_onnx(tmp_path / "custom.onnx")
    out = run("bench", "custom.onnx", "--target", "host", "--repeat", "1", cwd=tmp_path, timeout=120)
    err = named(out)
    assert "error (InputDataError):" in err and "custom.onnx" in err and "com.me:MyOp" in err, err
    assert "onnxruntime" in err and "hint:" in err, err
    assert "measuring" not in out.stdout + err and "failed" not in out.stdout, out.stdout  # nothing was run


def test_the_check_comes_before_any_connection_to_the_target(tmp_path: Path) -> None:
    """The target listens nowhere (127.0.0.1 port 1): had bench connected first it would end in a connection
    failure (exit 1); it ends in the model's error (exit 2) without trying."""
    custom_op_onnx(tmp_path / "custom.onnx")
    board = board_file(tmp_path)
    out = run("bench", "custom.onnx", "--target", str(board), cwd=tmp_path, timeout=120)
    err = named(out)
    assert "error (InputDataError):" in err and "com.me:MyOp" in err, err
    assert "connect" not in out.stdout + err, out.stdout + err


def test_bench_as_opencv_of_an_onnx_opencv_cannot_read_is_refused_on_the_host(tmp_path: Path) -> None:
    grid_sample_onnx(tmp_path / "g.onnx")
    out = run(
        "bench",
        "g.onnx",
        "--format",
        "opencv-fp32",
        "--target",
        "host",
        "--repeat",
        "1",
        cwd=tmp_path,
        timeout=120,
    )
    err = named(out)
    assert "error (InputDataError):" in err and "g.onnx" in err, err
    assert "OpenCV" in err and "GridSample" in err and "hint:" in err, err
    assert "measuring" not in out.stdout + err, out.stdout


def test_the_same_file_as_onnx_fp32_still_runs(tmp_path: Path) -> None:
    """onnxruntime reads the GridSample model: the check refuses only what the runtime itself cannot read."""
    grid_sample_onnx(tmp_path / "g.onnx")
    out = run(
        "bench", "g.onnx", "--target", "host", "--repeat", "1", "--warmup", "0", cwd=tmp_path, timeout=180
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "onnx-fp32" in out.stdout and "failed" not in out.stdout, out.stdout
