"""The MAC-based estimate (`roofline`, an ONNX file) under the rules `estimate` applies to a count: the format
(no calibration figure for any runtime but ncnn, MAC forms included), the int8 kernels and unseen layer types
(the largest held-out error), and ncnn's fp32 kernels (fp16 off) by the board's core."""

from __future__ import annotations

import json
import math
from pathlib import Path

import procs
import pytest

from edgekit.estimate import calibration, cost_model
from edgekit.formats import Format

BENCHMARK = Path(calibration.__file__).parent / "data" / "ncnn-benchmark"


def _json(*args: str, cwd: Path) -> dict:
    out = procs.run(*args, "--json", cwd=cwd)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def _q(est: dict) -> float:
    """The log half-width of the interval an estimate states."""
    return math.log(est["high_ms"] / est["estimate_ms"])


def _onnx(path: Path, odd: bool = False) -> Path:
    """Two 3x3 convolutions (3 -> 64 -> 64 channels at 112x112: 0.48 G MACs, within the calibration models'
    range) and a 100-way head; `odd`: Erf for the activations and a TopK on the head, two ops no calibration
    model has (the ONNX reader names them as left out of the MACs)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    act = "Erf" if odd else "Relu"
    inits = [
        numpy_helper.from_array(rng.standard_normal((64, 3, 3, 3)).astype(np.float32), "w0"),
        numpy_helper.from_array(rng.standard_normal((64, 64, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.standard_normal((64, 100)).astype(np.float32), "fc"),
        numpy_helper.from_array(np.array([5], np.int64), "k"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node(act, ["c0"], ["a0"]),
        helper.make_node("Conv", ["a0", "w1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node(act, ["c1"], ["a1"]),
        helper.make_node("GlobalAveragePool", ["a1"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc"], ["y"]),
    ]
    out = "y"
    if odd:
        nodes.append(helper.make_node("TopK", ["y", "k"], ["top", "idx"], axis=1))
        out = "top"
    graph = helper.make_graph(
        nodes,
        "convs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, 5 if odd else 100])],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def convs_roofline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """_onnx's plain model and its `roofline --board pi4 --json`, run once for the tests that read them (the
    file is not changed by any)."""
    folder = tmp_path_factory.mktemp("convs")
    onnx_path = _onnx(folder / "convs.onnx")
    return onnx_path, _json("roofline", str(onnx_path), "--board", "pi4", cwd=folder)


def test_an_onnx_mac_estimate_is_not_validated_in_roofline_and_estimate_alike(
    tmp_path: Path, convs_roofline: tuple[Path, dict]
) -> None:
    """An .onnx's MAC-based estimate was "calibrated" (-59/+142 %) beside its own note "onnxruntime: no
    calibration figure"; `roofline` printed it with no "not validated"."""
    onnx_path, roofline = convs_roofline
    for command in ("roofline", "estimate"):
        out = (
            roofline
            if command == "roofline"
            else _json(command, str(onnx_path), "--board", "pi4", cwd=tmp_path)
        )
        est = out["estimate"]
        assert est["interval_calibrated"] is False, (command, est)
        assert "no calibration figure for onnx-fp32" in est["interval_not_validated"], (command, est)
        assert _q(est) >= cost_model.widest_q() - 1e-3, (command, est)
    text = procs.run("roofline", str(onnx_path), "--board", "pi4", cwd=tmp_path).stdout
    line = " ".join(next(x for x in text.splitlines() if "interval" in x).split())
    assert "not validated" in line and "80 %" not in line, text


def test_a_mac_estimate_of_another_runtime_is_not_validated() -> None:
    """The forms on MACs alone were taken as calibrated whatever the runtime: a TFLite file's roofline said
    "80 % interval 7.25 .. 42.5 ms" where `estimate` said not validated."""
    feats = cost_model.Features(0, 3_500_000, False, {}, 300_000_000)
    ncnn = cost_model.estimate("pi4", feats, 1)
    assert ncnn.calibrated, ncnn.not_validated
    for fmt in (Format.TFLITE_FP32, Format.ONNX_FP32, Format.MNN_FP32):
        other = cost_model.estimate("pi4", feats, 1, fmt=fmt)
        assert not other.calibrated and f"no calibration figure for {fmt.value}" in other.not_validated
        assert other.high_ms / other.estimate_ms >= math.exp(cost_model.widest_q()) * 0.999
        assert other.estimate_ms == ncnn.estimate_ms  # the same forms: only the interval and its word differ


def test_onnx_ops_no_calibration_model_has_widen_the_interval(
    tmp_path: Path, convs_roofline: tuple[Path, dict]
) -> None:
    """An ONNX with Erf and TopK named them as left out of the MACs but did not widen the interval as unseen
    layer types do (the largest held-out error)."""
    _, plain = convs_roofline  # the same convolutions with ReLU: no op outside the calibration models'
    odd = _json("roofline", str(_onnx(tmp_path / "odd.onnx", odd=True)), "--board", "pi4", cwd=tmp_path)
    est = odd["estimate"]
    said = " ".join(est["caveats"])
    assert "layer types no calibration model has: Erf, TopK" in said, said
    cv = est["cross_validation"]
    assert _q(est) >= cv["q_log_wide"] - 1e-3 and _q(est) >= cost_model.widest_q() - 1e-3, est
    assert "layer types no calibration model has" not in " ".join(plain["estimate"]["caveats"])


def test_roofline_widens_an_int8_param_as_estimate_does(tmp_path: Path) -> None:
    """vgg16_int8's roofline said 1218 .. 7139 ms, the published 869.84 ms outside: the int8 widening (the
    largest held-out error) was computed but not applied to the MAC path."""
    args = ("roofline", str(BENCHMARK / "vgg16_int8.param"), "--board", "pi4", "--input-shape", "1,3,224,224")
    est = _json(*args, cwd=tmp_path)["estimate"]
    cv = est["cross_validation"]
    assert abs(_q(est) - max(cv["q_log"], cv["q_log_wide"])) < 1e-3, est
    assert any("int8 kernels" in c for c in est["caveats"]), est["caveats"]
    published = calibration.published_ms("vgg16_int8", "pi4", 1)
    assert est["low_ms"] <= published <= est["high_ms"], (est["low_ms"], published, est["high_ms"])


def test_ncnn_fp32_is_calibrated_on_the_a72_and_not_validated_on_the_a76(tmp_path: Path) -> None:
    """edgekit's ncnn-fp32 said "not validated for fp32 ones" yet its interval was calibrated on both boards. On
    the Cortex-A72 (no fp16 arithmetic) the calibration models computed in fp32 too: calibrated, and said so; on
    the Cortex-A76 fp32 kernels are a kernel class no calibration model ran: not validated, widened."""
    param = BENCHMARK / "squeezenet.param"  # within the calibration range: its default run is calibrated
    shape = ("--input-shape", "1,3,227,227")
    for board in ("pi4", "pi5"):
        fp32 = _json("roofline", str(param), "--board", board, *shape, "--format", "ncnn-fp32", cwd=tmp_path)
        default = _json("roofline", str(param), "--board", board, *shape, cwd=tmp_path)
        e32, e16 = fp32["estimate"], default["estimate"]
        said32 = " ".join(e32["caveats"])
        assert "not validated for fp32 ones" not in said32
        assert "fp16 storage and arithmetic off" not in " ".join(e16["caveats"])
        if board == "pi4":
            assert e32["interval_calibrated"] == e16["interval_calibrated"], (e32, e16)
            assert "has no fp16 arithmetic" in said32 and abs(_q(e32) - _q(e16)) < 1e-6, said32
        else:
            assert e32["interval_calibrated"] is False, e32
            assert "fp32 kernels" in e32["interval_not_validated"], e32
            assert _q(e32) >= max(e32["cross_validation"].get("q_log_wide", 0), cost_model.widest_q()) - 1e-3
            assert _q(e32) > _q(e16), (e32, e16)
            assert "no calibration model ran on the cortex-a76" in said32, said32
    # the words on an instruction-count estimate follow the core too
    feats = cost_model.Features(100_000_000, 3_500_000, False, {}, 300_000_000)
    off = "fp16 storage and arithmetic off"
    a72 = cost_model.estimate("pi4", feats, 1, fmt=Format.NCNN_FP32, fp16_off=off)
    a76 = cost_model.estimate("pi5", feats, 1, fmt=Format.NCNN_FP32, fp16_off=off)
    assert a72.calibrated == cost_model.estimate("pi4", feats, 1).calibrated
    assert not a76.calibrated and a76.high_ms / a76.estimate_ms >= math.exp(cost_model.widest_q()) * 0.999
    tflite = cost_model.estimate("pi5", feats, 1, fmt=Format.TFLITE_FP32, fp16_off=off)
    assert "fp32 kernels" not in tflite.not_validated  # another runtime: its own reason, not ncnn's flags


def test_deploys_estimate_of_an_ncnn_fp32_artifact_follows_the_core() -> None:
    """An emulated target's estimate of an ncnn-fp32 artifact whose files are not here (the format alone says
    fp16 off) follows the same rule as `estimate`: calibrated on the Pi 4, not validated on the Pi 5."""
    from edgekit.estimate.of_measurement import estimate_for
    from edgekit.results import Measurement

    def measured(fmt: str) -> Measurement:
        return Measurement(
            artifact=fmt,
            format=fmt,
            runtime="ncnn",
            threads=1,
            status="ok",
            instructions_per_invoke=90_000_000,
        )

    for board, validated in (("pi4", True), ("pi5", False)):
        fp32 = estimate_for(measured("ncnn-fp32"), None, board)
        fp16 = estimate_for(measured("ncnn-fp16"), None, board)
        assert fp16["interval_calibrated"], fp16
        assert fp32["interval_calibrated"] is validated, (board, fp32)
        said = " ".join(fp32["caveats"])
        assert ("has no fp16 arithmetic" in said) is validated and "fp16 storage and arithmetic off" in said
