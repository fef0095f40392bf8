"""NCNN INT8 post-training quantization: ncnn2table's KL arithmetic, ncnn's weight layout and int8 semantics
(checked against a numpy re-computation of ncnn's integer arithmetic), accuracy on a well-conditioned net,
float_layers, and clear handling of what cannot be quantized."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgekit.convert.ncnn import weights as ncnn_bin
from edgekit.convert.ncnn.calib import BlobStats, kl_best_bin, kl_divergences, threshold
from edgekit.convert.ncnn.converter import NcnnConverter, convert_model
from edgekit.convert.ncnn.int8 import quantize_ncnn
from edgekit.convert.ncnn.int8_weights import float_to_int8, weight_scales
from edgekit.convert.ncnn.param import NcnnLayer, read_param
from edgekit.convert.ncnn.runtime import NcnnIO, NcnnModel, io_path_for
from edgekit.errors import RecipeError
from edgekit.formats import Format
from edgekit.recipe import load_recipe

SHAPE = (1, 3, 32, 32)
REPO = Path(__file__).resolve().parent.parent


# --- ncnn2table's KL search, re-implemented bin by bin as in tools/quantize/ncnn2table.cpp ----------------
def reference_kl(hist: np.ndarray, threshold_bin: int, target: int = 128, eps: float = 1e-4) -> float:
    h = list(hist / hist.sum())
    clip = [eps + v for v in h[:threshold_bin]]
    clip[-1] += sum(h[threshold_bin:])
    per = threshold_bin / target
    q = [0.0] * target
    for j in range(target):
        start, end = j * per, (threshold_bin if j == target - 1 else (j + 1) * per)
        lu, rl = math.ceil(start), math.floor(end)
        if lu - start > 0:
            q[j] += (lu - start) * h[lu - 1]
        if end - rl > 0 and j < target - 1:
            q[j] += (end - rl) * h[rl]
        q[j] += sum(h[lu:rl])
        q[j] /= end - start
    expand = [eps] * threshold_bin
    for j in range(target):
        start, end = j * per, (threshold_bin if j == target - 1 else (j + 1) * per)
        lu, rl = math.ceil(start), math.floor(end)
        if lu - start > 0:
            expand[lu - 1] += (lu - start) * q[j]
        if end - rl > 0 and j < target - 1:
            expand[rl] += (end - rl) * q[j]
        for k in range(lu, rl):
            expand[k] += q[j]
    return sum(a * math.log(a / b) for a, b in zip(clip, expand))


def heavy_tailed_histogram(seed: int, dof: float) -> np.ndarray:
    x = np.abs(np.random.default_rng(seed).standard_t(dof, 50_000))
    return np.bincount(np.minimum((x / x.max() * 2048).astype(int), 2047), minlength=2048)


@pytest.mark.parametrize("seed,dof", [(0, 3.0), (1, 8.0)])
def test_kl_matches_ncnn2table_bin_by_bin(seed: int, dof: float) -> None:
    hist = heavy_tailed_histogram(seed, dof)
    thresholds = np.array([128, 129, 200, 256, 333, 777, 1500, 2047])
    got = kl_divergences(hist / hist.sum(), thresholds)
    want = [reference_kl(hist, int(t)) for t in thresholds]
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_kl_clips_outliers_and_absmax_does_not() -> None:
    stats = BlobStats()
    x = np.abs(np.random.default_rng(0).normal(0, 1, 20_000)).astype(np.float32)
    x[0] = 40.0  # one outlier far beyond the bulk
    stats.add_absmax(x)
    stats.add_histogram(x)
    assert threshold(stats, "absmax") == pytest.approx(40.0)
    assert 2.0 < threshold(stats, "kl") < 10.0
    assert 128 <= kl_best_bin(stats.histogram) < 2048
    assert threshold(BlobStats(), "kl") == 0.0  # a blob that was always zero


def test_float_to_int8_rounds_half_away_from_zero_and_clamps() -> None:
    x = np.array([0.5, -0.5, 1.5, -2.5, 126.6, 300.0, -300.0, 0.49])
    assert float_to_int8(x).tolist() == [1, -1, 2, -3, 127, 127, -127, 0]


def test_weight_scales_follow_ncnn2table() -> None:
    w = np.random.default_rng(0).normal(0, 1, (4, 2, 3, 3)).astype(np.float32)
    conv3x3 = NcnnLayer("Convolution", "c", ["a"], ["b"], {"0": "4", "1": "3", "6": "72"})
    rows, scales, term = weight_scales(conv3x3, w, "per-channel")
    assert (rows, term) == (4, 2)
    np.testing.assert_allclose(scales, 31 / np.abs(w.reshape(4, -1)).max(1), rtol=1e-6)  # 6-bit Winograd rule
    strided = NcnnLayer("Convolution", "c", ["a"], ["b"], {"0": "4", "1": "3", "3": "2", "6": "72"})
    np.testing.assert_allclose(
        weight_scales(strided, w, "per-channel")[1], 127 / np.abs(w.reshape(4, -1)).max(1), rtol=1e-6
    )
    dw = NcnnLayer("ConvolutionDepthWise", "d", ["a"], ["b"], {"0": "8", "1": "3", "6": "72", "7": "8"})
    assert weight_scales(dw, w, "per-channel")[0::2] == (8, 1)
    rows, scales, term = weight_scales(dw, w, "per-tensor")
    assert (rows, term, scales.size) == (8, 2, 1)
    zero = np.zeros((2, 4), np.float32)
    fc = NcnnLayer("InnerProduct", "f", ["a"], ["b"], {"0": "2", "2": "8"})
    assert weight_scales(fc, zero, "per-channel")[1].tolist() == [1.0, 1.0]  # no division by zero


def _layer(kind: str, name: str, bottoms: list[str], tops: list[str], **params: str) -> NcnnLayer:
    return NcnnLayer(
        kind, name, bottoms, tops, {k.lstrip("p").replace("m", "-"): v for k, v in params.items()}
    )


def test_requantize_fusion_follows_ncnn2int8() -> None:
    """conv -> conv fuses; conv -> Split -> (conv, dw) fuses; conv -> Split -> (conv, BinaryOp) does not;
    a float consumer, an FC consumer or a graph output never do."""
    from edgekit.convert.ncnn.param import NcnnGraph
    from edgekit.convert.ncnn.requantize import requantize_fusions

    layers = [
        _layer("Input", "in", [], ["x"]),
        _layer("Convolution", "a", ["x"], ["a"]),
        _layer("Convolution", "b", ["a"], ["b"]),
        _layer("Split", "s", ["b"], ["b1", "b2"]),
        _layer("Convolution", "c", ["b1"], ["c"]),
        _layer("ConvolutionDepthWise", "d", ["b2"], ["d"]),
        _layer("BinaryOp", "add", ["c", "d"], ["e"]),
        _layer("Convolution", "f", ["e"], ["f"]),
        _layer("Split", "s2", ["f"], ["f1", "f2"]),
        _layer("Convolution", "g", ["f1"], ["g"]),
        _layer("BinaryOp", "add2", ["f2", "g"], ["h"]),
        _layer("Convolution", "i", ["h"], ["i"]),
        _layer("Convolution", "fl", ["i"], ["j"]),
        _layer("InnerProduct", "fc", ["j"], ["k"]),
        _layer("Convolution", "out", ["k"], ["y"]),
    ]
    graph = NcnnGraph(layers, 20)
    scales = {name: 10.0 + k for k, name in enumerate(["a", "b", "c", "d", "f", "g", "i", "fc", "out"])}
    fused = {graph.layers[i].name: v for i, v in requantize_fusions(graph, scales).items()}
    assert fused == {"a": scales["b"], "b": scales["c"]}


def test_relu6_becomes_relu_only_where_requantization_makes_it_exact() -> None:
    from edgekit.convert.ncnn.requantize import relu_where_exact

    def clip(hi: str) -> NcnnLayer:
        return _layer("ConvolutionDepthWise", "dw", ["a"], ["b"], p9="3", m23310=f"2,0.0,{hi}")

    layer = clip("6.0")
    assert "relu" in relu_where_exact(layer, threshold=5.2)
    assert layer.get_int(9) == 1 and layer.get_array(10) is None
    layer = clip("6.0")
    assert relu_where_exact(layer, threshold=7.0) == "" and layer.get_int(9) == 3  # clip would bite: kept
    relu = _layer("Convolution", "c", ["a"], ["b"], p9="1")
    assert relu_where_exact(relu, threshold=1.0) == "" and relu.get_int(9) == 1


# --- a small, well-conditioned network (BN statistics taken from realistic images) --------------------------
def images(n: int, seed: int) -> np.ndarray:
    from edgekit.zoo.tiny import images as draw

    x = draw(n, seed, SHAPE[2]).astype(np.float32) / 255.0
    return np.ascontiguousarray(((x - 0.45) / 0.25).transpose(0, 3, 1, 2), dtype=np.float32)


def build_net(deconv: bool = False, grouped: bool = False) -> object:
    import torch
    from torch import nn

    def cbr(cin: int, cout: int, k: int, s: int = 1, groups: int = 1) -> list:
        return [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups), nn.BatchNorm2d(cout), nn.ReLU()]

    torch.manual_seed(0)
    layers = [*cbr(3, 32, 3), *cbr(32, 32, 3, groups=32), *cbr(32, 64, 1, 2), *cbr(64, 64, 3)]
    if grouped:
        layers += cbr(64, 64, 3, groups=8)  # 8 outputs per group: ncnn runs it as 8 Convolutions
    if deconv:
        layers += [nn.ConvTranspose2d(64, 16, 2, 2), nn.ReLU()]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16 if deconv else 64, 10)]
    net = nn.Sequential(*layers)
    net.train()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative average: exact statistics of the data below
    with torch.no_grad():
        net(torch.from_numpy(images(64, seed=7)))
    return net.eval()


def export(net: object, path: Path) -> Path:
    import torch

    torch.set_num_threads(1)
    torch.onnx.export(
        net,
        (torch.zeros(SHAPE),),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
    )
    return path


@pytest.fixture(scope="module")
def fp32(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("int8")
    return convert_model(export(build_net(), root / "net.onnx"), SHAPE, Format.NCNN_FP32, root / "fp32")


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    return images(16, seed=1)


@pytest.fixture(scope="module")
def evaluation() -> np.ndarray:
    return images(8, seed=2)


def quantize(fp32: list[Path], calibration: np.ndarray, out: Path, **kwargs: Any) -> tuple[list[Path], Any]:
    """The quantizer on the fp32 artifact, with an int8 sidecar next to its output."""
    out.mkdir(parents=True, exist_ok=True)
    io = NcnnIO.read(fp32[2])
    report = quantize_ncnn(
        fp32[0], fp32[1], calibration, io, out / "model.param", out / "model.bin", **kwargs
    )
    int8_io = replace(io, format="ncnn-int8", options={**io.options, "use_int8_inference": True})
    int8_io.write(io_path_for(out / "model.param"))
    return [out / "model.param", out / "model.bin"], report


def run(files: list[Path], x: np.ndarray) -> np.ndarray:
    with NcnnModel(files[0], files[1]) as model:
        return model.run(x)[0]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.integration
@pytest.mark.parametrize(
    "method,granularity", [("kl", "per-channel"), ("absmax", "per-channel"), ("kl", "per-tensor")]
)
def test_int8_is_small_and_close_to_fp32(
    fp32: list[Path],
    calibration: np.ndarray,
    evaluation: np.ndarray,
    tmp_path: Path,
    method: str,
    granularity: str,
) -> None:
    files, report = quantize(fp32, calibration, tmp_path, method=method, granularity=granularity)
    assert len(report.quantized) == 5 and not report.kept_float  # 4 convolutions + the linear head
    assert files[1].stat().st_size <= 0.30 * fp32[1].stat().st_size
    want, got = run(fp32, evaluation), run(files, evaluation)
    per_sample = [cosine(w, g) for w, g in zip(want, got)]
    assert np.mean(per_sample) >= 0.98 and min(per_sample) >= 0.97
    assert 1e-5 < np.abs(want - got).max() < 0.5 * np.abs(want).max()  # int8 differs, but not wildly


@pytest.mark.integration
@pytest.mark.parametrize("fuse", [False, True])
def test_written_layout_is_what_ncnn_computes_in_int8(
    fp32: list[Path], calibration: np.ndarray, evaluation: np.ndarray, tmp_path: Path, fuse: bool
) -> None:
    """Recompute the 1x1 stride-2 convolution and the linear head with ncnn's integer arithmetic from the
    bytes we wrote; ncnn's own int8 outputs must match, which proves it reads our weights, biases, scales.
    With requantize fusion the convolution (followed by an int8 convolution) writes int8 at the next layer's
    input scale: 8=102 and one more float, the top scale, after the input scale."""
    files, _ = quantize(fp32, calibration, tmp_path, fuse=fuse)
    graph = read_param(files[0])
    data = files[1].read_bytes()
    spans = ncnn_bin.layer_spans(files[0], data)
    conv = next(layer for layer in graph.layers if layer.type == "Convolution" and layer.get_int(3) == 2)
    fc = next(layer for layer in graph.layers if layer.type == "InnerProduct")
    assert conv.get_int(8) == (102 if fuse else 2) and fc.get_int(8) == 2  # ncnn never requantizes an FC
    assert all(
        layer.get_int(8) == (101 if fuse else 1)
        for layer in graph.layers
        if layer.type == "ConvolutionDepthWise"
    )
    with NcnnModel(files[0], files[1]) as model:
        x_conv, y_conv, x_fc, y_fc = model.extract(
            evaluation[:1], [conv.bottoms[0], conv.tops[0], fc.bottoms[0], fc.tops[0]]
        )
    for layer, x, y, relu in (
        (conv, x_conv[:, ::2, ::2].reshape(x_conv.shape[0], -1), y_conv, True),
        (fc, x_fc.reshape(-1, 1), y_fc, False),
    ):
        n_out = layer.get_int(0)
        start, end = spans[graph.layers.index(layer)]
        assert np.frombuffer(data, "<u4", 1, start)[0] == ncnn_bin.TAG_INT8
        n_w = x.shape[0] * n_out
        w = np.frombuffer(data, np.int8, n_w, start + 4).reshape(n_out, -1).astype(np.int64)
        off = start + 4 + (n_w + 3) // 4 * 4
        bias, off = ncnn_bin.read_floats(data, off, n_out)
        w_scale, off = ncnn_bin.read_floats(data, off, n_out)
        in_scale, off = ncnn_bin.read_floats(data, off, 1)
        producer = next(other for other in graph.layers if layer.bottoms[0] in other.tops)
        # a requantizing producer hands over int8 values (extracted as floats): no quantization here
        q = (
            x.astype(np.int64)
            if producer.get_int(8) > 100
            else float_to_int8(x * in_scale[0]).astype(np.int64)
        )
        acc = w @ q
        expect = acc / (in_scale[0] * w_scale[:, None]) + bias[:, None]
        expect = np.maximum(expect, 0) if relu else expect
        if layer.get_int(8) > 100:
            top_scale, off = ncnn_bin.read_floats(data, off, 1)
            expect = float_to_int8(expect * top_scale[0]).astype(np.float64)
            np.testing.assert_allclose(y.reshape(n_out, -1), expect, atol=1.0)  # one step of rounding
            assert np.mean(y.reshape(n_out, -1) == expect) > 0.99
        else:
            np.testing.assert_allclose(
                y.reshape(n_out, -1), expect, rtol=1e-4, atol=1e-4 * np.abs(expect).max()
            )
        assert off == end


@pytest.mark.integration
def test_float_layers_stay_fp32(fp32: list[Path], calibration: np.ndarray, tmp_path: Path) -> None:
    names = [layer.name for layer in read_param(fp32[0]).layers if layer.type == "Convolution"]
    files, report = quantize(fp32, calibration, tmp_path, float_layers={names[0]})
    assert names[0] not in report.quantized and len(report.quantized) == 4
    assert "on request" in report.kept_float[0].reason
    layer = read_param(files[0]).layer(names[0])
    assert "8" not in layer.params
    start, _ = ncnn_bin.layer_spans(files[0], files[1].read_bytes())[1]
    assert np.frombuffer(files[1].read_bytes(), "<u4", 1, start)[0] == ncnn_bin.TAG_FP32
    # the names come from the recipe's int8.ncnn_float_layers: a wrong one is the recipe's error (exit 2)
    with pytest.raises(RecipeError, match=r"int8\.ncnn_float_layers.*does not have"):
        quantize(fp32, calibration, tmp_path / "bad", float_layers={"no_such_layer"})


@pytest.mark.integration
def test_an_int8_model_is_not_quantized_twice(
    fp32: list[Path], calibration: np.ndarray, tmp_path: Path
) -> None:
    once, _ = quantize(fp32, calibration, tmp_path / "once")
    io = NcnnIO.read(io_path_for(once[0]))
    report = quantize_ncnn(once[0], once[1], calibration, io, tmp_path / "t.param", tmp_path / "t.bin")
    assert not report.quantized and all(r.reason == "already quantized" for r in report.layers)
    assert (tmp_path / "t.bin").read_bytes() == once[1].read_bytes()


@pytest.mark.integration
def test_layers_without_int8_kernel_stay_fp32_with_a_note(
    calibration: np.ndarray, evaluation: np.ndarray, tmp_path: Path
) -> None:
    onnx = export(build_net(deconv=True), tmp_path / "deconv.onnx")
    files = convert_model(onnx, SHAPE, Format.NCNN_INT8, tmp_path / "int8", calibration=calibration)
    io = json.loads(files[2].read_text())
    assert io["int8"]["other_weighted_layers"] == {"Deconvolution": 1}
    assert any("Deconvolution" in note for note in io["notes"])
    # ncnn's default options: fp16 for the float layers where the core has it (A76), fp32 elsewhere
    assert io["options"]["use_int8_inference"] is True and io["options"]["use_fp16_arithmetic"] is True
    fp32 = convert_model(onnx, SHAPE, Format.NCNN_FP32, tmp_path / "fp32")
    assert np.mean([cosine(w, g) for w, g in zip(run(fp32, evaluation), run(files, evaluation))]) >= 0.98


@pytest.mark.integration
def test_converter_uses_the_recipe_calibration_data(tmp_path: Path) -> None:
    """recipes/tiny.yaml: calibration from its builder, KL, per-channel; the sidecar carries the report."""
    from edgekit.zoo.tiny import build

    recipe = load_recipe(REPO / "recipes" / "tiny.yaml")
    onnx = export(build(), tmp_path / "tiny.onnx")
    files = NcnnConverter().convert(onnx, recipe, Format.NCNN_INT8, tmp_path / "out")
    io = NcnnIO.read(files[2])
    assert io.format == "ncnn-int8" and io.int8 is not None
    assert io.int8["method"] == "kl" and io.int8["calibration_samples"] == recipe.calibration.data.samples
    int8_column, reason = io.int8["layer_fields"].index("int8"), io.int8["layer_fields"].index("reason")
    # every layer int8, unless the speed plan (counted on the emulated cores) found its int8 kernel counts more
    assert len(io.int8["layers"]) == 5
    assert all(
        row[int8_column] or row[reason].startswith("int8 kernel counts more instructions")
        for row in io.int8["layers"]
    )
    plan = io.int8.get("speed_plan")
    if plan is not None and plan["kept"] == "planned":
        assert sorted(plan["float_layers"]) == sorted(
            row[0] for row in io.int8["layers"] if not row[int8_column]
        )


@pytest.mark.integration
def test_artifacts_run_the_same_on_emulated_aarch64(
    fp32: list[Path], calibration: np.ndarray, evaluation: np.ndarray, tmp_path: Path
) -> None:
    """On an emulated Cortex-A76 (fp16 arithmetic by default in ncnn) the sidecar's options keep ncnn-fp32 in
    fp32, and the int8 artifact loads and computes what it computes on this host."""
    from ncnn_on_device import run_on_device

    int8, _ = quantize(fp32, calibration, tmp_path / "int8")
    x = evaluation[:2]
    host_fp32, host_int8 = run(fp32, x), run(int8, x)
    arm_fp32 = run_on_device("pi5-emu", fp32[0], x, tmp_path / "fp32-arm")[0][1].reshape(host_fp32.shape)
    arm_int8 = run_on_device("pi5-emu", int8[0], x, tmp_path / "int8-arm")[0][1].reshape(host_int8.shape)
    assert np.abs(arm_fp32 - host_fp32).max() < 1e-4
    assert all(cosine(a, h) >= 0.99 for a, h in zip(arm_int8, host_int8))


@pytest.mark.integration
def test_grouped_convolutions_stay_float_because_ncnn_int8_garbles_them(
    calibration: np.ndarray, evaluation: np.ndarray, tmp_path: Path
) -> None:
    """ncnn hands each per-group Convolution of an int8 grouped convolution one weight scale where it reads one
    per output; measured on regnet_y_400mf (grouped 3x3 convolutions) all-int8: cosine 0.81 -> 0.99989 with them
    float. Depthwise convolutions (one output per group) are unaffected and stay int8."""
    fp32 = convert_model(
        export(build_net(grouped=True), tmp_path / "g.onnx"), SHAPE, Format.NCNN_FP32, tmp_path / "fp32"
    )
    graph = read_param(fp32[0])
    grouped = [
        layer.name
        for layer in graph.layers
        if layer.type == "ConvolutionDepthWise" and layer.get_int(0) != layer.get_int(7)
    ]
    assert len(grouped) == 1
    files, report = quantize(fp32, calibration, tmp_path / "int8")
    kept = {r.name: r.reason for r in report.kept_float}
    assert list(kept) == grouped and "grouped convolution" in kept[grouped[0]]
    assert len(report.quantized) == 5  # the depthwise convolution among them
    want, got = run(fp32, evaluation), run(files, evaluation)
    assert min(cosine(w, g) for w, g in zip(want, got)) >= 0.97


# --- the speed plan's decision above its counts (the counts themselves: tests/test_ncnn_speed.py) ------------
PROBE_TOTALS = {  # a small CNN (cnn.yaml of a user probe), counted on both emulated cores, 1 thread
    "pi4-emu": {"fp32": 2_287_050, "all_int8": 2_458_964, "planned": 2_286_171},
    "pi5-emu": {"fp32": 2_287_664, "all_int8": 1_956_658, "planned": 1_866_330},
}


def _plan_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, totals: dict[str, dict[str, int]]
) -> tuple[Any, list[list[str]]]:
    """plan_and_build with the counts given (measure and profiles replaced): every layer's int8 kernel loses,
    so the plan keeps them all float. Returns the plan and the float layers of each build."""
    from edgekit.convert.ncnn import plan as ncnn_plan
    from edgekit.convert.ncnn.int8 import Int8Report, LayerResult

    layers = ["conv0", "conv1", "fc"]
    builds: list[list[str]] = []

    def build(slower: list[str]) -> Int8Report:
        builds.append(list(slower))
        return Int8Report(
            "kl", "per-channel", 1, [LayerResult(n, "Convolution", n not in slower) for n in layers]
        )

    def measure(*_args: Any) -> Any:
        plan = ncnn_plan.SpeedPlan(
            devices=list(totals), weights={d: 1 / t["fp32"] for d, t in totals.items()}
        )
        for name in layers:
            counts = {d: {"int8": 2, "float": 1} for d in totals}
            plan.layers.append(ncnn_plan.LayerChoice(name, "Convolution", False, counts, "int8/float 2.00x"))
        plan.totals = {d: {"fp32": t["fp32"], "all_int8": t["all_int8"]} for d, t in totals.items()}
        plan.digests = {"fp32": "f", "all_int8": "a"}
        return plan

    class Counted:
        def __init__(self, total: int) -> None:
            self.total = total

    monkeypatch.setattr(ncnn_plan, "enabled", lambda: True)
    monkeypatch.setattr(ncnn_plan, "measure", measure)
    monkeypatch.setattr(
        ncnn_plan, "profiles", lambda _p: {d: Counted(t["planned"]) for d, t in totals.items()}
    )
    monkeypatch.setattr(ncnn_plan, "digest", lambda _p: "p")
    plan, report, _ = ncnn_plan.plan_and_build(build, tmp_path / "src.param", tmp_path / "m.param", {})
    assert not report.quantized or plan.kept == "all-int8"
    return plan, builds


def test_an_all_float_plan_records_the_fp32_model_it_ships(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No layer int8: the converter ships the fp32 model with ncnn-fp32's options (fp16 off). The notes said
    `pi5-emu: ... planned 0.816` (the all-float graph under the int8 options, fp16 on the A76) of an artifact that
    counts 1.000 there; the kept figures are now the fp32 model's, and the shipped ratio is said."""
    from edgekit.convert.ncnn.plan import kept_key, slower_cores

    plan, _ = _plan_run(monkeypatch, tmp_path, PROBE_TOTALS)
    assert plan.kept == "fp32" and kept_key(plan) == "fp32" and plan.digests["fp32"] == "f"
    assert not slower_cores(plan) and all(not c.int8 for c in plan.layers)
    notes = plan.notes()
    pi5 = next(n for n in notes if n.startswith("pi5-emu"))
    assert pi5.endswith("shipped (fp32) 1.000x"), pi5
    assert any("not shipped" in n and "fp16 off" in n for n in notes)


def test_an_all_float_plan_keeps_all_int8_where_it_beats_the_fp32_model_shipped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """All-float won against float layers in fp16; against the fp32 model actually shipped, an all-int8 artifact
    that counts fewer instructions on every core is the faster one and is kept."""
    totals = {
        "pi4-emu": {"fp32": 2_287_050, "all_int8": 2_100_000, "planned": 2_050_000},
        "pi5-emu": {"fp32": 2_287_664, "all_int8": 1_956_658, "planned": 1_866_330},
    }
    plan, builds = _plan_run(monkeypatch, tmp_path, totals)
    assert plan.kept == "all-int8" and builds[-1] == []
    assert next(n for n in plan.notes() if n.startswith("pi4-emu")).endswith("shipped (all_int8) 1.089x")


@pytest.mark.parametrize(
    "totals",
    [
        {  # the planned artifact (every layer float) counts more than the all-int8 one: all-int8 kept
            "pi4-emu": {"fp32": 1000, "all_int8": 900, "planned": 950},
            "pi5-emu": {"fp32": 1000, "all_int8": 600, "planned": 650},
        },
        {  # the plan kept, slower than fp32 on the A72, the strict plan no better there: every layer float,
            # weighed against fp32, gives the all-int8 artifact (slower on no core). An all-int8 slower on a core
            # is no longer shipped: tests/test_ncnn_plan_fallback.py
            "pi4-emu": {"fp32": 1000, "all_int8": 1000, "planned": 1010},
            "pi5-emu": {"fp32": 1000, "all_int8": 600, "planned": 500},
        },
    ],
    ids=["planned-not-fewer", "strict-not-better"],
)
def test_an_all_int8_artifact_kept_says_every_layer_int8(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, totals: dict[str, dict[str, int]]
) -> None:
    """The plan wanted every layer float and was not kept: the all-int8 artifact shipped, yet its choices still
    said float, so the sidecar's float_layers listed them and convert printed `3 of 3 quantizable layers float
    ... (kept: all-int8)` of an artifact with no float layer."""
    from edgekit.convert.findings import speed_plan_finding

    plan, builds = _plan_run(monkeypatch, tmp_path, totals)
    assert plan.kept == "all-int8" and builds[-1] == []
    assert plan.float_layers == [] and all(c.int8 for c in plan.layers)
    assert "3 of 3 quantizable layers int8, 0 float" in plan.notes()[0], plan.notes()[0]
    io = tmp_path / "model.io.json"
    io.write_text(json.dumps({"int8": {"speed_plan": plan.to_dict()}}))
    text = speed_plan_finding(Format.NCNN_INT8, [io])
    assert text is not None and "all 3 quantizable layers int8" in text and "float" not in text, text


def _log_net() -> object:
    """conv -> log -> conv -> linear: the log of a convolution's negative outputs is NaN (of its zeros, -inf)."""
    import torch
    from torch import nn

    class LogNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv0, self.conv1 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
            self.fc = nn.Linear(8, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.conv1(torch.log(self.conv0(x)))
            return self.fc(y.mean(dim=(2, 3)))

    torch.manual_seed(0)
    return LogNet().eval()


@pytest.mark.integration
def test_non_finite_calibration_activations_are_an_error_naming_the_layer(
    calibration: np.ndarray, tmp_path: Path
) -> None:
    """BlobStats.add_absmax took max() with Python's max, which skips a NaN: an input whose blob held one gave
    that blob no statistics, and a blob NaN on every input was reported as 'its input was always zero' and the
    layer left float, with no word of the NaN. Now a named error says which layer's input, on which input."""
    from edgekit.errors import InputDataError

    fp32 = convert_model(
        export(_log_net(), tmp_path / "log.onnx"), SHAPE, Format.NCNN_FP32, tmp_path / "fp32"
    )
    graph = read_param(fp32[0])
    log = next(layer for layer in graph.layers if layer.type == "UnaryOp")
    after_log = next(layer for layer in graph.layers if layer.bottoms == log.tops)
    with pytest.raises(InputDataError) as raised:
        quantize(fp32, calibration, tmp_path / "int8")
    said = str(raised.value)
    assert f"the input of layer {after_log.name} (Convolution) holds" in said, said
    assert "NaN" in said and "calibration input 0 of 16" in said, said
    assert "the calibration data or the model produces non-finite values" in said, said
    assert raised.value.exit_code == 2
