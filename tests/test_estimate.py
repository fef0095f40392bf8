"""Roofline and cost model: graph costs agree across formats, bounds follow the specs, the calibrated model
reproduces its published figures within the error it states, and every estimate is labelled as one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_counting import CHANNELS, SIZE, write_chain

from edgekit.estimate import cost_model
from edgekit.estimate.attach import board_for_device, estimate_for
from edgekit.estimate.boards import BOARDS
from edgekit.estimate.graph import analyze
from edgekit.estimate.roofline import roofline
from edgekit.formats import Format, Precision
from edgekit.results import ArtifactInfo, Measurement

CONV_MACS = CHANNELS * CHANNELS * 9 * SIZE * SIZE  # one 3x3 conv, 16 -> 16 channels, 32x32, stride 1


def write_onnx(path: Path, layers: int) -> Path:
    """The same conv chain as write_chain, as an ONNX graph, plus a 10-way Gemm head on the pooled features."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    x = "x"
    for i in range(layers):
        inits += [numpy_helper.from_array(rng.standard_normal((CHANNELS, CHANNELS, 3, 3)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(CHANNELS, np.float32), f"b{i}")]
        nodes += [helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        x = f"r{i}"
    inits.append(numpy_helper.from_array(rng.standard_normal((CHANNELS, 10)).astype(np.float32), "fc"))
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"]), helper.make_node("Flatten", ["gap"], ["flat"]),
              helper.make_node("MatMul", ["flat", "fc"], ["y"])]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                             [1, CHANNELS, SIZE, SIZE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_onnx_and_ncnn_graphs_count_the_same_macs(tmp_path: Path) -> None:
    onnx_cost = analyze(write_onnx(tmp_path / "chain.onnx", 3))
    ncnn_cost = analyze(write_chain(tmp_path / "chain", 3), [1, CHANNELS, SIZE, SIZE])
    assert onnx_cost.macs == 3 * CONV_MACS + CHANNELS * 10
    assert ncnn_cost.macs == 3 * CONV_MACS
    assert onnx_cost.params == 3 * (CHANNELS * CHANNELS * 9 + CHANNELS) + CHANNELS * 10
    assert ncnn_cost.params == 3 * (CHANNELS * CHANNELS * 9 + CHANNELS)
    assert ncnn_cost.weight_bytes == (tmp_path / "chain.bin").stat().st_size
    act = CHANNELS * SIZE * SIZE * 4  # one fp32 activation map
    assert ncnn_cost.activation_bytes == 3 * 2 * act  # each conv reads one map and writes one
    assert ncnn_cost.io_bytes == 2 * act


def test_ncnn_without_shape_or_sidecar_is_a_named_error(tmp_path: Path) -> None:
    from edgekit.errors import EdgekitError

    with pytest.raises(EdgekitError, match="input shape"):
        analyze(write_chain(tmp_path / "chain", 1))
    with pytest.raises(EdgekitError, match="cannot read"):
        analyze(tmp_path / "chain.bin")


def test_roofline_bound_follows_the_board_specs(tmp_path: Path) -> None:
    cost = analyze(write_chain(tmp_path / "chain", 4), [1, CHANNELS, SIZE, SIZE])
    pi4, pi5 = BOARDS["pi4"], BOARDS["pi5"]
    one = roofline(cost, pi4, 1)
    assert one.compute_ms == pytest.approx(4 * CONV_MACS / (4 * 1.8e9) * 1e3)
    assert one.memory_ms == pytest.approx(cost.compulsory_bytes / 12.8e9 * 1e3)
    assert one.lower_bound_ms == max(one.compute_ms, one.memory_ms) and one.bound == "compute"
    four, eight = roofline(cost, pi4, 4), roofline(cost, pi4, 8)
    assert four.compute_ms == pytest.approx(one.compute_ms / 4)
    assert eight.compute_ms == four.compute_ms and eight.threads == 4  # 4 cores
    assert roofline(cost, pi5, 1, Precision.FP16).compute_ms == pytest.approx(one.compute_ms * 4 / 16 * 1.8 / 2.4)
    assert "not a measurement" in one.label


def test_calibration_figures_reproduced_within_stated_error() -> None:
    for method in ("instructions", "macs"):
        error = cost_model.stated_error(method)
        assert 0 < error < 0.5, (method, error)
        for point in cost_model.CALIBRATION:
            est = cost_model.estimate(point.board, int(point.work(method)), point.threads, method=method)
            assert abs(est.estimate_ms / point.published_ms - 1) <= error, (method, point.name, est.estimate_ms)
            assert est.low_ms <= point.published_ms <= est.high_ms


def test_fitted_parameters_are_physical() -> None:
    model = cost_model.fit()
    assert set(model.rate) == {"cortex-a72", "cortex-a76"}
    assert 0.2 < model.rate["cortex-a72"] < model.rate["cortex-a76"] < 4  # instructions per cycle
    assert 0 < model.parallel_fraction < 1
    loo = cost_model.leave_one_out()
    assert sum(r["error"] is not None for r in loo) == 2  # the two Pi 4 four-thread figures


def test_estimate_is_labelled_and_never_looks_measured() -> None:
    d = cost_model.estimate("pi5", 54_000_000, 4).to_dict()
    assert d["label"].startswith("estimate")
    assert not {"p50_ms", "mean_ms", "samples_ms", "min_ms"} & set(d)
    assert d["low_ms"] < d["estimate_ms"] < d["high_ms"]
    assert any("Pi 4" in c for c in d["caveats"])  # threads > 1 on pi5: borrowed parallel fraction
    int8 = cost_model.estimate("pi4", 100_000_000, 1, fmt=Format.TFLITE_INT8).caveats
    assert any("ncnn float models only" in c for c in int8)


def _measurement(threads: int, count: int | None) -> Measurement:
    return Measurement(artifact="ncnn-fp16", format="ncnn-fp16", runtime="ncnn", threads=threads, status="ok",
                       instructions_per_invoke=count)


def test_estimate_for_deploy_uses_counts_and_one_thread_reference(tmp_path: Path) -> None:
    param = write_chain(tmp_path / "chain", 2)
    info = ArtifactInfo(id="ncnn-fp16", format="ncnn-fp16", files=[str(param), str(param.with_suffix(".bin"))],
                        sha256="0", size_bytes=1)
    assert estimate_for(_measurement(1, None), info, "pi4")["status"] == "unavailable"
    one = estimate_for(_measurement(1, 100_000_000), info, "pi4")
    four = estimate_for(_measurement(4, 130_000_000), info, "pi4", reference=_measurement(1, 100_000_000))
    assert one["status"] == "ok" and one["label"].startswith("estimate")
    assert four["instructions_per_invoke"] == 100_000_000 and four["estimate_ms"] < one["estimate_ms"]
    assert board_for_device("pi4-emu") == "pi4" and board_for_device("phone-emu") is None


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=600)


def test_roofline_command(tmp_path: Path) -> None:
    onnx_path = write_onnx(tmp_path / "chain.onnx", 2)
    out = _cli("roofline", str(onnx_path), "--board", "pi4", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["roofline"]["macs"] == 2 * CONV_MACS + CHANNELS * 10
    assert data["estimate"]["label"].startswith("estimate") and data["estimate"]["method"] == "macs"
    text = _cli("roofline", str(onnx_path), "--board", "pi5")
    assert "lower bound" in text.stdout and "not a measurement" in text.stdout
    bad = _cli("roofline", str(onnx_path), "--board", "pi9")
    assert bad.returncode != 0 and "unknown board" in bad.stderr


@pytest.mark.integration
def test_estimate_command_counts_on_the_emulated_core(tmp_path: Path) -> None:
    from edgekit.emu.plugin import build as plugin_build

    if not plugin_build.is_built():
        pytest.fail("the counting plugin is not built: run `edgekit emu build-plugin`")
    param = write_chain(tmp_path / "chain", 2)
    out = _cli("estimate", str(param), "--board", "pi4", "--input-shape", f"1,{CHANNELS},{SIZE},{SIZE}", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["count"]["cpu"] == "cortex-a72" and data["count"]["instructions"] > 500_000
    assert data["estimate"]["method"] == "instructions" and data["estimate"]["estimate_ms"] > 0
    assert data["estimate"]["estimate_ms"] >= data["roofline"]["lower_bound_ms"]


def test_estimates_for_a_whole_run(tmp_path: Path) -> None:
    from edgekit.estimate.attach import estimates_for_run
    from edgekit.results import AgentResult, DeviceFacts, TargetRun

    facts = DeviceFacts(machine="aarch64", cores=2, python="3.11", emulated=True)
    agent = AgentResult(started_at="now", facts_before=facts,
                        measurements=[_measurement(1, 100_000_000), _measurement(4, 140_000_000)])
    run = TargetRun(target="pi4-emu", kind="ssh", emulated=True, status="ok", agent=agent)
    est = estimates_for_run(run, [], "pi4-emu")
    assert set(est) == {"ncnn-fp16 x1", "ncnn-fp16 x4"}
    assert est["ncnn-fp16 x4"]["instructions_per_invoke"] == 100_000_000  # the one-thread count
    assert estimates_for_run(run, [], "phone-emu") == {}
