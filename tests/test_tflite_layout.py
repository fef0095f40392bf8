"""A TFLite artifact's layout is recorded at conversion, not guessed from shapes: onnx2tf makes inputs and outputs
channels-last, and when C == H == W (or C == L) the shapes cannot tell. A stride-4 Conv whose output is [1, 8, 8, 8]
and a Conv1d whose input is [1, 16, 16] were fed or compared in the wrong layout (cosine 0.05 and 0.89) though
both artifacts compute what the ONNX does. Checked: the record, fidelity on the host, the host runtime, the agent
through the request (and without the record, the shape rule as before). One onnx2tf run per model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError

from edgekit.agent.contract import AgentRequest, RequestArtifact
from edgekit.convert.base import Artifact
from edgekit.formats import Format
from edgekit.recipe import load_recipe

AGENT = Path(__file__).resolve().parent.parent / "edgekit" / "agent" / "agent.py"


def _save(
    path: Path, nodes: list, inits: list, in_shape: list[int], out_name: str, out_shape: list[int]
) -> Path:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def square_output_conv(path: Path) -> Path:
    """[1, 3, 32, 32] -> stride-4 Conv 4x4, 8 channels -> [1, 8, 8, 8]: the output's C == H == W."""
    w = np.random.default_rng(0).normal(0, 0.3, (8, 3, 4, 4)).astype(np.float32)
    node = helper.make_node("Conv", ["input", "w"], ["feat"], kernel_shape=[4, 4], strides=[4, 4])
    return _save(path, [node], [numpy_helper.from_array(w, "w")], [1, 3, 32, 32], "feat", [1, 8, 8, 8])


def square_conv1d(path: Path) -> Path:
    """[1, 16, 16] (C == L) -> Conv1d k3 pad 1, 16 channels -> Relu: the input's and output's shapes are square."""
    w = np.random.default_rng(1).normal(0, 0.3, (16, 16, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], kernel_shape=[3], pads=[1, 1]),
        helper.make_node("Relu", ["c"], ["out"]),
    ]
    return _save(path, nodes, [numpy_helper.from_array(w, "w")], [1, 16, 16], "out", [1, 16, 16])


def einsum_last_axis(path: Path) -> Path:
    """[1, 3, 16, 16] -> Einsum bchw,wk->bchk -> [1, 3, 16, 4]: onnx2tf gives it back [1, 16, 3, 4], which neither
    its channels-last rule ([0, 3, 1, 2]) nor the identity turns back; [0, 2, 1, 3] does."""
    w = np.random.default_rng(3).normal(0, 0.5, (16, 4)).astype(np.float32)
    node = helper.make_node("Einsum", ["input", "w"], ["y"], equation="bchw,wk->bchk")
    return _save(path, [node], [numpy_helper.from_array(w, "w")], [1, 3, 16, 16], "y", [1, 3, 16, 4])


def _convert(folder: Path, onnx_path: Path, shape: list[int]) -> tuple[Any, list[Artifact], np.ndarray]:
    from edgekit.convert.pipeline import convert_recipe

    x = np.random.default_rng(2).uniform(0, 1, (6, *shape[1:])).astype(np.float32)
    np.save(folder / "eval.npy", x)
    raw = {
        "name": onnx_path.stem,
        "task": "generic",
        "model": {"kind": "onnx", "path": onnx_path.name},
        "input": {"name": "input", "shape": shape, "layout": "NCHW"},
        "evaluation": {"data": {"kind": "npy", "path": "eval.npy"}},
        "formats": ["tflite-fp32"],
    }
    (folder / "r.yaml").write_text(yaml.safe_dump(raw))
    recipe = load_recipe(folder / "r.yaml")
    return recipe, convert_recipe(recipe), x


@pytest.fixture(scope="module")
def square(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[Artifact], np.ndarray, Path]:
    folder = tmp_path_factory.mktemp("sq")
    onnx_path = square_output_conv(folder / "sq.onnx")
    return (*_convert(folder, onnx_path, [1, 3, 32, 32]), onnx_path)


@pytest.fixture(scope="module")
def conv1d(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[Artifact], np.ndarray, Path]:
    folder = tmp_path_factory.mktemp("c1d")
    onnx_path = square_conv1d(folder / "c1d.onnx")
    return (*_convert(folder, onnx_path, [1, 16, 16]), onnx_path)


@pytest.fixture(scope="module")
def einsum(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[Artifact], np.ndarray, Path]:
    folder = tmp_path_factory.mktemp("ein")
    onnx_path = einsum_last_axis(folder / "ein.onnx")
    return (*_convert(folder, onnx_path, [1, 3, 16, 16]), onnx_path)


def _fp32(arts: list[Artifact]) -> Artifact:
    return next(a for a in arts if a.format is Format.TFLITE_FP32)


@pytest.mark.integration
def test_a_square_output_is_recorded_channels_last_and_passes_fidelity(square: Any) -> None:
    _, arts, _, _ = square
    art = _fp32(arts)
    assert art.provenance["layout"] == {"input": [0, 2, 3, 1], "outputs": [[0, 3, 1, 2]], "verified": True}
    assert art.status == "ok", art.error
    assert art.fidelity["cosine"] > 0.9999 and art.fidelity["max_abs_error"] < 1e-4


@pytest.mark.integration
def test_a_square_conv1d_input_is_recorded_and_passes_fidelity(conv1d: Any) -> None:
    _, arts, _, _ = conv1d
    art = _fp32(arts)
    assert art.provenance["layout"]["input"] == [0, 2, 1]
    assert art.provenance["layout"]["outputs"] == [[0, 2, 1]]
    assert art.status == "ok", art.error
    assert art.fidelity["cosine"] > 0.9999


@pytest.mark.integration
def test_the_host_runtime_applies_the_record_and_without_it_keeps_the_shape_rule(conv1d: Any) -> None:
    from edgekit.fidelity.check import run_artifact
    from edgekit.runtimes import run_onnx

    _, arts, x, onnx_path = conv1d
    art = _fp32(arts)
    ref = run_onnx(onnx_path, x)[0][1]
    got = run_artifact(art, x)[0][1]
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4
    old = Artifact(art.format, art.files, art.key, art.size_bytes)  # cached before the record: as before
    assert np.abs(run_artifact(old, x)[0][1] - ref).max() > 1e-2


@pytest.mark.integration
def test_an_output_onnx2tf_lays_out_its_own_way_is_found_among_its_permutations(einsum: Any) -> None:
    """Only the channels-last rule and the identity were tried: the Einsum's output was reshaped, cosine 0.70, a
    false FAIL telling the user to leave tflite-fp32 out though the file computes what the ONNX does."""
    _, arts, _, _ = einsum
    art = _fp32(arts)
    assert art.provenance["layout"] == {"input": [0, 2, 3, 1], "outputs": [[0, 2, 1, 3]], "verified": True}
    assert art.status == "ok", art.error
    assert art.fidelity["cosine"] > 0.9999 and art.fidelity["max_abs_error"] < 1e-4


@pytest.mark.integration
def test_an_output_left_to_reshaping_is_recorded_unverified(einsum: Any, tmp_path: Path) -> None:
    """The run cannot check an output no permutation gives the ONNX shape of (here the same Einsum, its ONNX output
    flattened): it is reshaped, and the record said verified: True all the same."""
    from edgekit.convert.tflite_layout import layout_record

    _, arts, _, _ = einsum
    w = np.random.default_rng(3).normal(0, 0.5, (16, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Einsum", ["input", "w"], ["e"], equation="bchw,wk->bchk"),
        helper.make_node("Reshape", ["e", "flat"], ["y"]),
    ]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1, -1], np.int64), "flat")]
    flat = _save(tmp_path / "flat.onnx", nodes, inits, [1, 3, 16, 16], "y", [1, 192])
    record = layout_record(flat, _fp32(arts).main_file, (1, 3, 16, 16), kept=False)
    assert record == {"input": [0, 2, 3, 1], "outputs": [None], "verified": False}


def test_the_output_search_keeps_the_rule_on_a_tie_and_checks_a_move_of_size_one_axes() -> None:
    """Which permutation of one output is recorded, on arrays: the one that gives it back; onnx2tf's rule where
    another reads the same (a symmetric output); and, where no rule fits, a permutation that moves only axes of
    size 1 (it reads as reshaping does) rather than an unchecked reshape (verified: False)."""
    from edgekit.convert.tflite_layout import _output_axes

    ref = np.random.default_rng(4).normal(size=(1, 3, 5, 4))
    assert _output_axes(ref.transpose(0, 2, 1, 3), ref) == ([0, 2, 1, 3], pytest.approx(1.0))
    sym = np.random.default_rng(5).normal(size=(1, 6, 6, 6))
    sym = sym + sym.transpose(0, 1, 3, 2)  # the same read with H and W swapped
    axes, _ = _output_axes(sym.transpose(0, 2, 3, 1), sym)  # channels-last, as onnx2tf gives it
    assert axes == [0, 3, 1, 2]
    one = np.random.default_rng(6).normal(size=(1, 3, 1, 4))
    assert _output_axes(one.transpose(0, 2, 1, 3), one) == ([0, 2, 1, 3], pytest.approx(1.0))
    assert _output_axes(np.ones((1, 12)), np.ones((1, 3, 4))) is None  # no permutation: reshaped


def _agent_outputs(tmp_path: Path, art: Artifact, x: np.ndarray) -> np.ndarray:
    from edgekit.deploy.request import AgentArtifact, Settings, build_request

    agent_art = AgentArtifact.from_artifact(art)
    np.save(tmp_path / "inputs.npy", x)
    req = build_request([agent_art], Settings(repeat=2, warmup=1), "/w/run/inputs.npy", "/w/run", "auto")
    data = req.model_dump(mode="json")
    data["artifacts"][0]["files"] = [str(p) for p in agent_art.files]
    data["lock_file"] = None
    (tmp_path / "request.json").write_text(json.dumps(data))
    subprocess.run(
        [sys.executable, str(AGENT), str(tmp_path / "request.json"), str(tmp_path / "result.json")],
        check=True,
        capture_output=True,
        timeout=120,
    )
    result = json.loads((tmp_path / "result.json").read_text())
    (m,) = result["measurements"]
    assert m["status"] == "ok", m
    with np.load(tmp_path / m["outputs_file"]) as saved:
        return np.asarray(saved[saved.files[0]])


@pytest.mark.integration
@pytest.mark.parametrize("model", ["square", "conv1d", "einsum"])
def test_the_agent_feeds_and_saves_by_the_requests_layout(
    model: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from edgekit.runtimes import run_onnx

    _, arts, x, onnx_path = request.getfixturevalue(model)
    art = _fp32(arts)
    ref = run_onnx(onnx_path, x)[0][1]
    got = _agent_outputs(tmp_path, art, x)  # each sample's output stacked, its batch axis kept
    assert got.shape == (len(x), *ref.shape[1:]) or got.shape == (len(x), 1, *ref.shape[1:])
    assert np.abs(got.reshape(ref.shape) - ref).max() < 1e-4


def test_the_request_carries_a_tflite_artifacts_layout_and_validates_it(tmp_path: Path) -> None:
    from edgekit.agent.contract import TensorLayout
    from edgekit.deploy.request import AgentArtifact, Settings, build_request

    model = tmp_path / "model.tflite"
    model.write_bytes(b"x")
    layout = {"input": [0, 2, 3, 1], "outputs": [[0, 3, 1, 2], None], "verified": True}
    art = Artifact(Format.TFLITE_FP32, [model], "k" * 64, 1, provenance={"layout": layout})
    req = build_request([AgentArtifact.from_artifact(art)], Settings(), "/w/i.npy", "/w/run", "auto")
    assert req.artifacts[0].layout == TensorLayout(input=[0, 2, 3, 1], outputs=[[0, 3, 1, 2], None])
    plain = Artifact(Format.TFLITE_FP32, [model], "k" * 64, 1)  # cached before the record: none sent
    assert (
        build_request([AgentArtifact.from_artifact(plain)], Settings(), "/w/i.npy", "/w/run", "auto")
        .artifacts[0]
        .layout
        is None
    )
    # a request without it (an older edgekit's) is still valid
    AgentRequest.model_validate({"artifacts": [{"id": "a", "format": "tflite-fp32", "files": ["m.tflite"]}]})
    with pytest.raises(ValidationError, match="not a permutation"):
        RequestArtifact.model_validate(
            {"id": "a", "format": "tflite-fp32", "files": ["m.tflite"], "layout": {"input": [0, 2, 2, 1]}}
        )


def test_a_cached_tflite_named_by_path_brings_its_entrys_layout(tmp_path: Path) -> None:
    from edgekit.deploy.request import AgentArtifact

    model = tmp_path / "model.tflite"
    model.write_bytes(b"x")
    layout = {"input": [0, 2, 1], "outputs": [[0, 2, 1]], "verified": True}
    (tmp_path / "artifact.json").write_text(
        json.dumps({"format": "tflite-fp32", "files": ["model.tflite"], "provenance": {"layout": layout}})
    )
    assert AgentArtifact.from_path(model).layout == layout
    (tmp_path / "artifact.json").unlink()
    assert AgentArtifact.from_path(model).layout is None


@pytest.mark.integration
def test_analyze_feeds_each_tflite_file_by_its_record(conv1d: Any) -> None:
    """`analyze`'s per-op comparison and `analyze --fix`'s host latency fed a square input as it is (the shape
    rule): every op's values were those of a transposed sample. The op that reads the input sees the sample in
    the file's recorded layout."""
    from edgekit.analysis.tflite_layers import _tflite_tensors

    _, arts, x, _ = conv1d
    art = _fp32(arts)
    ops, values = _tflite_tensors(art.main_file, x[:2], art.provenance["layout"])
    _, plain = _tflite_tensors(art.main_file, x[:2])  # no record: the shape rule, the old feed
    differ = [op["out"] for op in ops if not np.allclose(values[op["out"]][0], plain[op["out"]][0])]
    assert differ, "the record changed nothing: the test's input is not square"
    got = values[ops[-1]["out"]][0]  # the Relu's output, channels last (N, L, C)
    ref = np.maximum(0, _conv1d_reference(x[:1]))
    assert np.abs(got.reshape(-1) - ref.transpose(0, 2, 1).reshape(-1)).max() < 1e-4


def _conv1d_reference(x: np.ndarray) -> np.ndarray:
    """square_conv1d's convolution in numpy (NCL), before its Relu."""
    w = np.random.default_rng(1).normal(0, 0.3, (16, 16, 3)).astype(np.float32)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1)))
    out = np.zeros((x.shape[0], 16, x.shape[2]), np.float32)
    for k in range(3):
        out += np.einsum("oc,ncl->nol", w[:, :, k], padded[:, :, k : k + x.shape[2]])
    return out
