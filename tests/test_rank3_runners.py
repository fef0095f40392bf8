"""Models whose input is not 4-D on OpenCV DNN and MNN: bench saves its sample with the batch axis ((1, 16, 20) for
a [1, 16, 20] Conv1d input) and deploy without it ((16, 20)); the agent's runners added a batch axis to every
sample that was not 4-D, so bench fed [1, 1, 16, 20] and failed (OpenCV: 'Number of input channels should be
multiple of 16', MNN: no outputs). The batch axis is added by comparing with the model's own input rank."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.convert.base import Artifact
from edgekit.formats import Format
from edgekit.recipe import load_recipe

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("MNN") is None, reason="needs the MNN package"),
    pytest.mark.skipif(importlib.util.find_spec("cv2") is None, reason="needs OpenCV"),
]

FORMATS = (Format.OPENCV_FP32, Format.MNN_FP32)


def _conv1d_onnx(path: Path) -> Path:
    """[1, 16, 20] -> Conv1d (kernel 3, padding 1) -> [1, 8, 20]: a rank-3 input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.standard_normal((8, 16, 3)).astype(np.float32), "W")
    bias = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "B")
    node = helper.make_node("Conv", ["x", "W", "B"], ["y"], pads=[1, 1], kernel_shape=[3])
    graph = helper.make_graph(
        [node],
        "conv1d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 20])],
        [weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def rank3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[Format, Artifact]]:
    from edgekit.convert.pipeline import convert_recipe

    folder = tmp_path_factory.mktemp("rank3")
    onnx_path = _conv1d_onnx(folder / "conv1d.onnx")
    recipe = folder / "conv1d.yaml"
    recipe.write_text(
        "name: rank3-conv1d\ntask: generic\n"
        f"model: {{kind: onnx, path: {onnx_path}}}\n"
        "input: {name: x, shape: [1, 16, 20], layout: NCHW}\n"
        "evaluation:\n  data: {kind: random, samples: 2}\n  gates: {fp32: {min_cosine: 0.9999}}\n"
        "formats: [opencv-fp32, mnn-fp32]\n"
    )
    arts = {a.format: a for a in convert_recipe(load_recipe(recipe), FORMATS, keep_going=True)}
    for art in arts.values():
        assert art.status == "ok", art.error
    return onnx_path, arts


@pytest.mark.integration
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.value)
def test_bench_times_a_rank3_model(
    rank3: tuple[Path, dict[Format, Artifact]], fmt: Format, tmp_path: Path
) -> None:
    _, arts = rank3
    art = arts[fmt]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit",
            "bench",
            str(art.main_file),
            "--format",
            fmt.value,
            "--target",
            "host",
            "--repeat",
            "3",
            "--json",
            str(tmp_path / "b.json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (m,) = json.loads((tmp_path / "b.json").read_text())["agent"]["measurements"]
    assert m["status"] == "ok" and m["p50_ms"] > 0, m


@pytest.mark.integration
@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.value)
def test_a_sample_with_or_without_its_batch_axis_gives_onnxruntimes_outputs(
    rank3: tuple[Path, dict[Format, Artifact]], fmt: Format, tmp_path: Path
) -> None:
    """The agent's runner takes deploy's sample (16, 20) and bench's (1, 16, 20) alike: onnxruntime's outputs."""
    import onnxruntime as ort

    from edgekit.agent import agent

    onnx_path, arts = rank3
    x = np.random.default_rng(3).random((16, 20), dtype=np.float32)
    (want,) = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(
        None, {"x": x[None]}
    )
    runner = agent.open_runner(
        {"format": fmt.value, "files": [str(arts[fmt].main_file)]}, str(tmp_path), 1, "auto"
    )
    for sample in (x, x[None]):
        runner.set_input(sample)
        runner.invoke()
        ((_, got),) = runner.outputs()
        # MNN runs a Conv1d as a 2-D convolution and gives [1, 8, 20, 1] (its host runner too): the values count
        assert got.shape[:3] == want.shape == (1, 8, 20) and got.size == want.size, got.shape
        np.testing.assert_allclose(got.reshape(want.shape), want, rtol=1e-4, atol=1e-4)


def test_the_input_rank_is_read_from_the_onnx_file_past_initializers_listed_as_inputs(tmp_path: Path) -> None:
    """OpenCV's Net does not say its input's shape: the agent reads it from the .onnx (no onnx package on boards);
    an initializer listed among the graph's inputs (IR < 4 exporters) is not the input."""
    import onnx
    from onnx import TensorProto, helper

    from edgekit.agent.agent import onnx_input_rank

    model = onnx.load(str(_conv1d_onnx(tmp_path / "c.onnx")))
    assert onnx_input_rank(str(tmp_path / "c.onnx")) == 3
    model.graph.input.insert(0, helper.make_tensor_value_info("W", TensorProto.FLOAT, [8, 16, 3, 1, 1]))
    onnx.save(model, str(tmp_path / "listed.onnx"))
    assert onnx_input_rank(str(tmp_path / "listed.onnx")) == 3
    del model.graph.input[1].type.tensor_type.shape.dim[:]
    model.graph.input[1].type.tensor_type.shape.dim.add().dim_param = "n"
    onnx.save(model, str(tmp_path / "rank1.onnx"))
    assert onnx_input_rank(str(tmp_path / "rank1.onnx")) == 1
    (tmp_path / "junk.onnx").write_bytes(b"\xff" * 64)
    assert onnx_input_rank(str(tmp_path / "junk.onnx")) is None
