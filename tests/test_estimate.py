"""Roofline and cost model: graph costs agree across formats, bounds follow the specs, the calibrated model
reproduces its published figures within the error it states, and every estimate is labelled as one."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_counting import CHANNELS, SIZE, write_chain

from edgekit.estimate import calibration, cost_model
from edgekit.estimate.boards import BOARDS
from edgekit.estimate.graph import analyze
from edgekit.estimate.of_measurement import board_for_device, estimate_for
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
        inits += [
            numpy_helper.from_array(
                rng.standard_normal((CHANNELS, CHANNELS, 3, 3)).astype(np.float32), f"w{i}"
            ),
            numpy_helper.from_array(np.zeros(CHANNELS, np.float32), f"b{i}"),
        ]
        nodes += [
            helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]
        x = f"r{i}"
    inits.append(numpy_helper.from_array(rng.standard_normal((CHANNELS, 10)).astype(np.float32), "fc"))
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"]),
        helper.make_node("MatMul", ["flat", "fc"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
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


def test_a_transformer_converted_to_ncnn_counts_the_macs_its_onnx_counts(tmp_path: Path) -> None:
    """Gemm, MatMul and MultiHeadAttention do a transformer's arithmetic: the ncnn graph counted only its
    convolutions (a ViT's MACs were its patch embedding's, its roofline 15x too low). The same model as ONNX and
    as edgekit's ncnn conversion counts the same MACs, layer for layer of the torch model."""
    from token_model import attention_onnx

    from edgekit.convert.ncnn.converter import convert_model

    onnx_path = attention_onnx(tmp_path / "attention.onnx")
    param = convert_model(onnx_path, (1, 3, 32, 32), Format.NCNN_FP32, tmp_path / "ncnn")[0]
    ncnn_cost, onnx_cost = analyze(param), analyze(onnx_path)
    assert {"MultiHeadAttention", "MatMul", "Gemm"} <= set(ncnn_cost.macs_by_op)
    tokens, dim, queries = 64, 32, 5
    attention = 4 * tokens * dim * dim + 2 * tokens * tokens * dim  # q, k, v, out projections; QK^T and AV
    want = (
        3 * 16 * dim * tokens  # the patch embedding
        + attention  # self-attention
        + tokens * dim * 2 * dim  # the qk Linear
        + 2 * tokens * tokens * dim  # the hand-written attention's two MatMuls
        + (2 * tokens + queries) * dim * dim  # cross-attention: k, v over the tokens, out per query (the
        # learned queries' projection is a constant the export folds)
        + 2 * queries * tokens * dim
    )
    assert ncnn_cost.macs == onnx_cost.macs == want
    assert roofline(ncnn_cost, BOARDS["pi4"], 1, Precision.FP32).macs == want  # the bound holds all of them


def test_ncnn_attention_and_gemm_layers_count_macs_from_their_operands(tmp_path: Path) -> None:
    """SDPA (no converter of edgekit's writes it) multiplies q by k's length twice, with k and v from another
    input of another length; a Gemm (2-D A) with constant B and C counts M x N x K and B and C as weights."""
    import json

    from edgekit.estimate.zero_weights import write_zeros, zero_bin_bytes

    param = tmp_path / "attn.param"
    param.write_text(
        "7767517\n6 8\nInput in0 0 1 in0\nInput in1 0 1 in1\nInput in2 0 1 in2\nSplit sp 1 2 in1 k v\n"
        "SDPA sdpa 3 1 in0 k v out0\n"
        "Gemm gemm 1 1 in2 out1 2=0 3=1 4=0 5=1 6=1 7=0 8=12 9=8 10=4\n"
    )
    heads, lq, lk, d = 4, 10, 6, 8
    param.with_suffix(".io.json").write_text(
        json.dumps(
            {
                "inputs": ["in0", "in1", "in2"],
                "outputs": ["out0", "out1"],
                "input_shapes": [[1, heads, lq, d], [1, heads, lk, d], [1, 5, d]],
            }
        )
    )
    write_zeros(param.with_suffix(".bin"), zero_bin_bytes(param))
    cost = analyze(param)
    assert cost.macs_by_op == {"SDPA": 2 * heads * lq * lk * d, "Gemm": 5 * 12 * d}  # M x N x K
    assert cost.params == d * 12 + 12  # B (K x N) and C (N: broadcast type 4)


def test_ncnn_3d_convolutions_count_and_layers_left_out_of_the_macs_are_named(tmp_path: Path) -> None:
    """A Convolution3D counts weight_data_size x its output volume, a 1-D one x its length (it counted x the
    channels too); an LSTM (its MACs not counted) is named in
    the cost's notes, which `estimate` and `roofline` print, instead of counting as nothing silently."""
    from edgekit.estimate.zero_weights import write_zeros, zero_bin_bytes

    def cost_of(name: str, layer: str, shape: list[int]) -> Any:
        param = tmp_path / f"{name}.param"
        param.write_text(f"7767517\n2 2\nInput in0 0 1 in0\n{layer}\n")
        write_zeros(param.with_suffix(".bin"), zero_bin_bytes(param))
        return analyze(param, shape)

    conv = cost_of("conv3d", "Convolution3D c3 1 1 in0 out0 0=4 1=3 4=1 5=0 6=216", [1, 2, 6, 6, 6])
    assert conv.macs_by_op == {"Convolution3D": 4 * 2 * 27 * 6 * 6 * 6} and not conv.notes
    conv1d = cost_of("conv1d", "Convolution1D c1 1 1 in0 out0 0=4 1=3 4=1 5=0 6=36", [1, 3, 16])
    assert conv1d.macs == 4 * 3 * 3 * 16  # a 1-D blob is [channels, length]: length positions, not 4 x 16
    deconv1d = cost_of("deconv1d", "Deconvolution1D d1 1 1 in0 out0 0=4 1=3 5=0 6=36", [1, 3, 16])
    assert deconv1d.macs == 4 * 3 * 3 * 16  # every input position scatters the whole kernel
    lstm = cost_of("lstm", "LSTM lstm 1 1 in0 out0 0=8 1=512 2=0", [1, 5, 16])
    assert lstm.macs == 0 and any("not in the MAC count" in n and "LSTM" in n for n in lstm.notes)


def test_ncnn_layers_whose_params_are_floats_or_mean_other_things_are_read(tmp_path: Path) -> None:
    """Param ids mean different things per layer: HardSwish's param 0 is a float (it stopped `estimate` with
    an internal error) and Gemm's 8 is constantN, not a weight count; both still count activations."""
    param = tmp_path / "hs.param"
    param.write_text(
        "7767517\n3 3\nInput in0 0 1 in0\n"
        "Convolution conv 1 1 in0 c 0=8 1=3 4=1 5=1 6=216\n"
        "HardSwish hs 1 1 c out0 0=0.166666672 1=0.5\n"
    )
    param.with_suffix(".bin").write_bytes(bytes(4 + 216 * 4 + 8 * 4))
    cost = analyze(param, [1, 3, 16, 16])
    assert cost.macs == 216 * 16 * 16 and cost.params == 216 + 8
    assert cost.activation_bytes == (3 + 8 + 8 + 8) * 16 * 16 * 4  # conv in + out, HardSwish in + out
    assert "HardSwish" in cost.layer_types


def test_ncnn_without_shape_or_sidecar_is_a_named_error(tmp_path: Path) -> None:
    from edgekit.errors import EdgekitError

    with pytest.raises(EdgekitError, match="input shape"):
        analyze(write_chain(tmp_path / "chain", 1))
    with pytest.raises(EdgekitError, match="graph is not read here"):
        analyze(tmp_path / "chain.bin")


def test_roofline_bound_follows_the_board_specs(tmp_path: Path) -> None:
    cost = analyze(write_chain(tmp_path / "chain", 4), [1, CHANNELS, SIZE, SIZE])
    pi4, pi5 = BOARDS["pi4"], BOARDS["pi5"]
    one = roofline(cost, pi4, 1)
    assert cost.winograd_macs == cost.macs == 4 * CONV_MACS  # 3x3 stride-1 convolutions: Winograd-eligible
    winograd = 4 * CONV_MACS * 64 / (36 * 9)  # F(6,3): 64 multiplications per 36 outputs instead of 324
    assert one.compute_ms == pytest.approx(winograd / (4 * 1.8e9) * 1e3)
    weights_fp16 = min(cost.weight_bytes, cost.params * 2)  # ncnn stores weights in fp16 by default
    assert one.memory_ms == pytest.approx((weights_fp16 + cost.io_bytes) / 12.8e9 * 1e3)
    assert one.lower_bound_ms == max(one.compute_ms, one.memory_ms) and one.bound == "compute"
    four, eight = roofline(cost, pi4, 4), roofline(cost, pi4, 8)
    assert four.compute_ms == pytest.approx(one.compute_ms / 4)
    assert eight.compute_ms == four.compute_ms and eight.threads == 4  # 4 cores
    assert roofline(cost, pi5, 1, Precision.FP16).compute_ms == pytest.approx(
        one.compute_ms * 4 / 16 * 1.8 / 2.4
    )
    # the A72 has no fp16 arithmetic: an fp16-capable model's bound there is at the fp32 peak, and says so
    assert roofline(cost, pi4, 1, Precision.FP16).precision == "fp32"
    assert roofline(cost, pi5, 1, Precision.FP16).precision == "fp16"
    assert "not a measurement" in one.label


EVERY = ("instructions", "busiest", "params", "macs", "mix", "activation_bytes", "l1_misses", "llc_misses")
WITHOUT_CACHES = EVERY[:6]  # a count without simulated caches: deploy's emulated targets


def every(board: str) -> tuple[str, ...]:
    """What `edgekit estimate` counts on the board: EVERY, and llvm-mca's cycles on the Pi 5's core (deploy's
    emulated targets count EVERY)."""
    return (*EVERY, "cycles") if board == "pi5" else EVERY


def test_cost_model_weights_every_form_by_how_well_it_held_out() -> None:
    """The estimate is the weighted geometric mean of every form the features allow, each weight 1 / the form's
    leave-one-out mean squared log error (normalised): the form that held out best weighs most, and the estimate
    lies between the forms' own predictions."""
    for board, threads in (("pi4", 1), ("pi4", 4), ("pi5", 4)):
        model = cost_model.ensemble(board, threads, every(board))
        weights = model.weights
        assert set(weights) == {c.name for c in cost_model.forms_for(board, threads, every(board))}
        assert sum(weights.values()) == pytest.approx(1.0)
        mse = {n: statistics.mean(e * e for _, e in cost_model.loo(n, board, threads)) for n in weights}
        assert max(weights, key=lambda n: weights[n]) == min(mse, key=lambda n: mse[n])
        for a in weights:  # weight x MSE is the same for every form
            assert weights[a] * mse[a] == pytest.approx(
                weights[model.heaviest] * mse[model.heaviest], rel=1e-6
            )
        name, feats, _ = cost_model.calibration_data(board, threads)[0]
        alone = [m.predict_ms(feats) for m, _ in model.fits]
        assert min(alone) <= model.predict_ms(feats) <= max(alone), name
    est = cost_model.estimate("pi4", cost_model.calibration_data("pi4", 1)[0][1], threads=1)
    assert est.method.startswith("weighted mean of ") and est.cv["weights"]
    est = cost_model.estimate("pi4", cost_model.calibration_data("pi4", 4)[0][1], threads=4)
    assert est.method.startswith("geometric mean of the 4-thread forms") and "x t(4)/t(1)" in est.method


def test_four_threads_blend_the_direct_forms_with_one_thread_times_the_scaling() -> None:
    """With the thread split and the simulated misses, a 4-thread estimate is the geometric mean of the 4-thread
    forms and of the 1-thread estimate x t(4)/t(1); the scaling form is the one that held out best; without the
    misses (or the split) it is the 4-thread forms alone. The blend's held-out errors are the mean of its parts'
    (both made without the held-out model), and the stored parts are what the code computes."""
    from edgekit.estimate import scaling

    model = cost_model.model_for("pi5", 4, every("pi5"))
    assert isinstance(model, cost_model.Blend)
    name, feats, _ = cost_model.calibration_data("pi5", 4)[0]
    one = cost_model.model_for("pi5", 1, every("pi5"))
    assert isinstance(one, cost_model.Ensemble)
    scaled = one.predict_ms(feats) * model.scaling.ratio(feats)
    assert model.predict_ms(feats) == pytest.approx(math.sqrt(model.direct.predict_ms(feats) * scaled))
    assert 0.25 <= feats.busiest[4] / feats.instructions < 0.5
    ratios = [r for _, _, r in scaling.scaling_data("pi5", 4)]
    assert len(ratios) == 17 and all(0.3 < r < 1.0 for r in ratios)  # published 4/1-thread ratios
    assert min(ratios) * 0.8 < model.scaling.ratio(feats) < max(ratios) * 1.2, name
    mse = {c.name: scaling._loo_mse(c, "pi5", 4, None) for c in scaling.RATIO_FORMS}
    assert model.scaling.form.name == min(mse, key=lambda n: mse[n])
    for features in (WITHOUT_CACHES, tuple(k for k in EVERY if k != "busiest")):
        assert isinstance(cost_model.model_for("pi5", 4, features), cost_model.Ensemble)
    est = cost_model.estimate("pi5", feats, threads=4).to_dict()  # the estimate says what the scaling gave
    said = est["cross_validation"]["thread_scaling"]
    assert said["form"] == model.scaling.form.name
    assert said["ratio"] == pytest.approx(model.scaling.ratio(feats), abs=1e-4)
    assert said["one_thread_ms"] == pytest.approx(one.predict_ms(feats), abs=1e-3)
    assert "thread_scaling" not in cost_model.estimate("pi5", feats, threads=1).to_dict()["cross_validation"]
    stored = json.loads(cost_model.PROCEDURE_FILE.read_text())["blend_parts"]
    for board in ("pi4", "pi5"):
        key = cost_model.procedure_key(board, 4, every(board))
        blend = {m: e for m, _, e in cost_model.stored_procedure_errors()[key]}
        assert sorted(blend) == sorted(m for m, _, _ in stored[key])
        for m, direct, scaled_err in stored[key]:
            assert blend[m] == pytest.approx((direct + scaled_err) / 2, abs=1e-9), (board, m)
    rows = {m: (f, ms) for m, f, ms in cost_model.calibration_data("pi5", 4)}
    for m, direct, scaled_err in stored[cost_model.procedure_key("pi5", 4, every("pi5"))][:2]:  # ~5 s a model
        held = cost_model.model_for("pi5", 4, every("pi5"), without=m)
        assert isinstance(held, cost_model.Blend)
        f, ms = rows[m]
        assert math.log(held.direct.predict_ms(f) / ms) == pytest.approx(direct, abs=1e-6), m
        scaled_ms = held.one.predict_ms(f) * held.scaling.ratio(f)
        assert math.log(scaled_ms / ms) == pytest.approx(scaled_err, abs=1e-6), m


def test_stated_intervals_come_from_the_whole_procedure_cross_validated_weighting_included() -> None:
    """The README's procedure figures (each held-out model estimated by forms weighted and fitted without it) are
    what the stored errors give; the interval held the published figure for at least 80 % of the held-out models
    on every board x threads; and an estimate states exactly that interval."""
    quoted = {  # README: median, p90 |error| of the procedure
        ("pi4", 1): (0.0946, 0.1591),
        ("pi4", 4): (0.1681, 0.2274),
        ("pi5", 1): (0.0890, 0.1741),
        ("pi5", 4): (0.0874, 0.3091),
    }
    for (board, threads), (median, p90) in quoted.items():
        proc = cost_model.procedure_cv(board, threads, every(board))
        assert proc["n"] == 17, (board, threads, proc)
        assert proc["median"] == pytest.approx(median, abs=0.0015), (board, threads, proc)
        assert proc["p90"] == pytest.approx(p90, abs=0.0015), (board, threads, proc)
        assert proc["held"] >= cost_model.INTERVAL_LEVEL * proc["n"], (board, threads, proc)
    no_split = tuple(
        k for k in WITHOUT_CACHES if k != "busiest"
    )  # deploy's 4-thread estimate from a 1-thread count
    for board, (median, p90) in {"pi4": (0.209, 0.411), "pi5": (0.150, 0.405)}.items():
        proc = cost_model.procedure_cv(board, 4, no_split)
        assert (proc["median"], proc["p90"]) == pytest.approx((median, p90), abs=0.0015), (board, proc)
        assert proc["held"] >= cost_model.INTERVAL_LEVEL * proc["n"], (board, proc)
    name, feats, _ = cost_model.calibration_data("pi4", 4)[0]
    assert all(feats.has(k, 4) for k in EVERY), name
    est = cost_model.estimate("pi4", feats, threads=4)
    q = cost_model.procedure_cv("pi4", 4, EVERY)["q_log"]
    assert est.high_ms / est.estimate_ms == pytest.approx(math.exp(q))
    assert est.cv["held"] == cost_model.procedure_cv("pi4", 4, EVERY)["held"]


def test_stored_procedure_errors_are_what_the_code_computes() -> None:
    """data/procedure_cv.json (written by bench/estimate_cv.py) matches the code and the counts it ships with."""
    stored = json.loads(cost_model.PROCEDURE_FILE.read_text())["errors"]
    key = cost_model.procedure_key("pi5", 1, every("pi5"))
    fresh = cost_model.procedure_errors("pi5", 1, every("pi5"))
    assert [(m, c) for m, c, _ in fresh] == [(m, c) for m, c, _ in stored[key]]
    assert [e for _, _, e in fresh] == pytest.approx([e for _, _, e in stored[key]], abs=1e-6)
    # the widest single-form interval (intervals not validated) is stored too: the same as computed (to the
    # least-squares solver's tolerance, as the errors above: 1e-9 failed by 5e-9 on a fresh machine)
    assert cost_model.stored_widest_single_form_q() == pytest.approx(
        cost_model.widest_single_form_q(), abs=1e-6
    )


def test_the_four_thread_error_is_mostly_the_one_thread_error() -> None:
    """docs/estimate.md: the counted scaling form t(4)/t(1) (chosen and fitted without the held-out model) times the
    held-out model's published 1-thread time misses its 4-thread figure by less, at the median, than times the
    procedure's held-out 1-thread estimate; and the latter is the blend's stored second part, to the model."""
    from edgekit.estimate import scaling

    stored = json.loads(cost_model.PROCEDURE_FILE.read_text())["blend_parts"]
    for board in ("pi4", "pi5"):
        one = {
            m: e
            for m, _, e in cost_model.stored_procedure_errors()[
                cost_model.procedure_key(board, 1, every(board))
            ]
        }
        parts = {m: scaled for m, _, scaled in stored[cost_model.procedure_key(board, 4, every(board))]}
        counted_ratios = scaling.held_out_ratios(board, 4, every(board))
        perfect, estimated = [], []
        for name, _, ratio in scaling.scaling_data(board, 4):
            counted = counted_ratios[name]
            perfect.append(abs(math.log(counted / ratio)))
            estimated.append(abs(math.log(counted / ratio) + one[name]))
            assert math.log(counted / ratio) + one[name] == pytest.approx(parts[name], abs=1e-6), (
                board,
                name,
            )
        assert len(perfect) == 17
        assert statistics.median(perfect) < statistics.median(estimated), board


def test_the_weighted_forms_beat_the_single_ratio_where_they_are_shipped() -> None:
    """Across the four boards x threads the procedure's p90 |error| is lower than the single ratio's on average,
    and on the Pi 4 (where one ratio misses most) on both thread counts; the README says where it is not (Pi 5)."""
    proc = {(b, t): cost_model.procedure_cv(b, t, every(b))["p90"] for b in ("pi4", "pi5") for t in (1, 4)}
    ratio = {k: cost_model.cv_summary("ratio", *k, nested=False)["p90"] for k in proc}
    assert statistics.mean(proc.values()) < statistics.mean(ratio.values())
    assert proc[("pi4", 1)] < ratio[("pi4", 1)] and proc[("pi4", 4)] < ratio[("pi4", 4)]


def test_interval_is_conformal_and_refuses_levels_the_data_cannot_support() -> None:
    errors = [0.01 * i for i in range(1, 18)]  # 17 held-out errors
    assert cost_model.conformal_quantile(errors, 0.8) == errors[14]  # ceil(18 * 0.8) = 15th smallest
    assert cost_model.conformal_quantile(errors) == errors[15]  # the shipped rank 0.85: 16th smallest
    assert cost_model.conformal_quantile(errors[:3], 0.8) == float("inf")  # 3 errors cannot back 80 %


def test_estimate_is_labelled_and_never_looks_measured() -> None:
    # a count's features, its mix and activations included (without them no stored cross-validation matched:
    # each estimate's held-out errors were computed here)
    mix = (56_900_000, 17_900_000, 6_300_000, 6_300_000, 12_600_000)
    feats = cost_model.Features(100_000_000, 3_500_000, False, {}, 300_000_000, mix, 20_000_000)
    d = cost_model.estimate("pi5", feats, 4).to_dict()
    assert d["label"].startswith("estimate")
    assert not {"p50_ms", "mean_ms", "samples_ms", "min_ms"} & set(d)
    assert d["low_ms"] < d["estimate_ms"] < d["high_ms"] and d["interval_level"] == 0.8
    assert d["interval_calibrated"] and d["cross_validation"]["n"] >= 9
    tflite = cost_model.estimate("pi4", feats, 1, fmt=Format.TFLITE_INT8)
    ncnn = cost_model.estimate("pi4", feats, 1, fmt=Format.NCNN_FP32)
    assert not tflite.calibrated and any("no calibration figure" in c for c in tflite.caveats)
    assert tflite.high_ms / tflite.estimate_ms >= ncnn.high_ms / ncnn.estimate_ms  # the widest interval
    three = cost_model.estimate("pi4", feats, 3)
    assert not three.calibrated and any("no calibration figure" in c for c in three.caveats)


def test_roofline_stays_below_every_published_figure() -> None:
    """The bound counts Winograd, fp16 and int8 peaks where ncnn may use them: below all 68 published figures."""
    from edgekit.estimate import calibration
    from edgekit.estimate.roofline import compute_precision

    for name, model in calibration.models().items():
        cost = analyze(calibration.zero_weights(model), model.input_shape)
        fmt = Format.NCNN_INT8 if model.int8 else None
        for board in ("pi4", "pi5"):
            for threads in (1, 4):
                bound = roofline(cost, BOARDS[board], threads, compute_precision(fmt)).lower_bound_ms
                assert bound < calibration.published_ms(name, board, threads), (name, board, threads, bound)


def _measurement(threads: int, count: int | None) -> Measurement:
    """An ncnn-fp16 measurement of `count` instructions per invoke with the instruction mix the agent reports with
    every count (the shares of write_chain's on the A72). Without a mix no stored cross-validation matched its
    features: each estimate's held-out errors were computed in the test (a 4-thread blend's: 40 s here)."""
    mix = [] if count is None else [count * share // 1000 for share in (569, 179, 63, 63, 126)]
    return Measurement(
        artifact="ncnn-fp16",
        format="ncnn-fp16",
        runtime="ncnn",
        threads=threads,
        status="ok",
        instructions_per_invoke=count,
        instruction_mix=mix,
    )


def _chain_artifact(tmp_path: Path) -> ArtifactInfo:
    """A two-convolution ncnn model written here, as deploy's artifact record of it."""
    param = write_chain(tmp_path / "chain", 2)
    files = [str(param), str(param.with_suffix(".bin"))]
    return ArtifactInfo(id="ncnn-fp16", format="ncnn-fp16", files=files, sha256="0", size_bytes=1)


def test_estimate_for_deploy_uses_counts_and_one_thread_reference(tmp_path: Path) -> None:
    info = _chain_artifact(tmp_path)
    assert estimate_for(_measurement(1, None), info, "pi4")["status"] == "unavailable"
    one = estimate_for(_measurement(1, 100_000_000), info, "pi4")
    four = estimate_for(_measurement(4, 130_000_000), info, "pi4", reference=_measurement(1, 100_000_000))
    assert one["status"] == "ok" and one["label"].startswith("estimate")
    assert four["instructions_per_invoke"] == 100_000_000 and four["estimate_ms"] < one["estimate_ms"]
    assert board_for_device("pi4-emu") == "pi4" and board_for_device("phone-emu") is None
    # a one-thread count with the Pi 4's simulated caches adds the miss forms and their (narrower) interval; the
    # misses of a count at 4 threads are not the calibrated figure and are not used
    missed = _measurement(1, 100_000_000).model_copy(update={"cache_misses": [40_000_000, 900_000, 60_000]})
    with_misses = estimate_for(missed, info, "pi4")
    forms = with_misses["cross_validation"]["weights"]
    assert "ratio+l1+llc" in forms and not any("l1" in f for f in one["cross_validation"]["weights"])
    assert with_misses["cross_validation"]["q_log"] < one["cross_validation"]["q_log"]
    at4 = missed.model_copy(update={"threads": 4})
    assert not any("l1" in f for f in estimate_for(at4, info, "pi4")["cross_validation"]["weights"])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty", "bad magic"),
        ("no-bin", "no .bin beside"),
        ("truncated-bin", "cannot load the weights"),
        ("unknown-layer", "this ncnn build has no layer for FooBar"),
    ],
)
def test_a_broken_ncnn_model_is_bad_input_named(tmp_path: Path, case: str, message: str) -> None:
    """A corrupt or incomplete model is the user's input: exit 2, saying what is wrong and where."""
    param = tmp_path / "m.param"
    conv = "7767517\n2 2\nInput in0 0 1 data 0=8 1=8 2=3\nConvolution c 1 1 data out0 0=4 1=3 5=1 6=108\n"
    if case == "empty":
        param.write_text("")
    elif case == "unknown-layer":
        param.write_text(conv.replace("Convolution", "FooBar"))
        param.with_suffix(".bin").write_bytes(b"")
    else:
        param.write_text(conv)
        if case == "truncated-bin":
            param.with_suffix(".bin").write_bytes(bytes(100))
        else:  # an edgekit artifact (its sidecar beside it) without its .bin is broken; a bare .param is not
            param.with_suffix(".io.json").write_text(json.dumps({"inputs": ["data"], "outputs": ["out0"]}))
    out = _cli("estimate", str(param), "--board", "pi4", "--input-shape", "1,3,8,8")
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "InputDataError" in out.stderr and "hint:" in out.stderr


def test_zero_weights_are_the_size_ncnn_reads_for_every_calibration_model() -> None:
    """A bare .param with no .bin gets the zeros benchncnn's empty reader gives: the size ncnn reads is found by
    loading it on this host, and matches the byte counts stored with the 17 calibration models."""
    from edgekit.estimate.zero_weights import zero_bin_bytes

    for name, model in calibration.models().items():
        assert zero_bin_bytes(model.param) == model.zero_bin_bytes, name


@pytest.mark.integration
def test_a_bare_param_alone_is_estimated_with_zero_weights_as_benchncnn(tmp_path: Path) -> None:
    """ncnn's benchmark folder has .param files only: `estimate` reads the weights as zeros (as benchncnn does),
    says so, writes nothing beside the user's file, and counts what the calibration counted for that model."""
    from edgekit.emu.plugin import build as plugin_build

    if not plugin_build.is_built():
        pytest.fail("the counting plugin is not built: run `edgekit emu build-plugin`")
    model = calibration.models()["blazeface"]
    param = tmp_path / "blazeface.param"
    param.write_bytes(model.param.read_bytes())
    shape = ",".join(map(str, model.input_shape))
    out = _cli("estimate", str(param), "--board", "pi5", "--input-shape", shape, "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["artifact"] == str(param) and "read as zeros" in data["weights"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blazeface.param"]
    stored = calibration.count_of("blazeface", "pi5", 1)
    assert stored is not None
    assert data["count"]["instructions"] == pytest.approx(int(stored["instructions"]), rel=0.005)
    text = _cli("roofline", str(param), "--board", "pi5", "--input-shape", shape)
    assert text.returncode == 0 and "read as zeros" in text.stdout, text.stderr
    prof = _cli("profile", str(param), "--target", "pi5-emu", "--input-shape", shape, "--json")
    assert prof.returncode == 0, prof.stderr
    layers = json.loads(prof.stdout)
    assert layers["artifact"] == str(param) and layers["total"] == pytest.approx(
        data["count"]["instructions"], rel=0.005
    )


@pytest.mark.parametrize(
    ("suffix", "message"), [(".tflite", "not a readable .tflite"), (".onnx", "not a readable ONNX")]
)
def test_a_corrupt_tflite_or_onnx_is_bad_input_named(tmp_path: Path, suffix: str, message: str) -> None:
    junk = tmp_path / f"junk{suffix}"
    junk.write_bytes(np.random.default_rng(0).bytes(300))
    for command in ("estimate", "roofline"):
        out = _cli(command, str(junk), "--board", "pi4")
        assert out.returncode == 2 and message in out.stderr, (command, out.stderr)


@pytest.fixture(scope="module")
def chain_roofline_pi5(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """write_onnx's two-convolution chain and `roofline` of it on the Pi 5 as text, run once for the tests that
    read that output (each test makes no change to the file)."""
    onnx_path = write_onnx(tmp_path_factory.mktemp("roofline") / "chain.onnx", 2)
    text = _cli("roofline", str(onnx_path), "--board", "pi5")
    assert text.returncode == 0, text.stderr
    return onnx_path, text.stdout


def test_roofline_command(chain_roofline_pi5: tuple[Path, str]) -> None:
    onnx_path, text_out = chain_roofline_pi5
    out = _cli("roofline", str(onnx_path), "--board", "pi4", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    # what was bounded, named as `estimate --json` names it (the JSON had no file, board or thread count)
    assert (data["artifact"], data["board"], data["threads"]) == (str(onnx_path), "pi4", 1)
    assert data["roofline"]["macs"] == 2 * CONV_MACS + CHANNELS * 10
    assert data["estimate"]["label"].startswith("estimate")
    weights = data["estimate"]["cross_validation"]["weights"]  # an ONNX file: the forms on MACs alone
    assert set(weights) == {"macs", "macs+params"} and "macs 0." in data["estimate"]["method"]
    assert "lower bound" in text_out and "not a measurement" in text_out
    # no runtime holds an ONNX file's float weights at 2 bytes as edgekit's ncnn does: it said "as the runtime
    # holds them"; it says why 2 bytes is still a bound
    flat = " ".join(text_out.split())
    assert "2 bytes each (fp16 storage, the fewest" in flat and "as the runtime holds" not in flat, text_out
    bad = _cli("roofline", str(onnx_path), "--board", "pi9")
    assert bad.returncode != 0 and "unknown board" in bad.stderr


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ("1,3,0,224", "every dimension must be a positive integer"),
        ("1,3,-2,224", "every dimension must be a positive integer"),
        ("1,3,224,abc", "expected integers separated by commas"),
        ("1,3,30000,30000", "more than edgekit feeds a model"),
    ],
)
def test_a_bad_input_shape_is_refused_before_any_run(tmp_path: Path, shape: str, message: str) -> None:
    """1,3,30000,30000 used to run the host analysis for two minutes and end in an internal error; a zero
    dimension gave a MAC count for a graph that never ran."""
    param = write_chain(tmp_path / "m.param", 2)
    runs = [
        ("estimate", str(param), "--board", "pi4", "--input-shape", shape),
        ("roofline", str(param), "--board", "pi4", "--input-shape", shape),
        ("profile", str(param), "--target", "pi4-emu", "--input-shape", shape),
        ("bench", str(param), "--target", "host", "--shape", shape),
    ]
    for args in runs:
        out = _cli(*args)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)


def _shape_commands(param: Path, shape: str) -> list[tuple[str, ...]]:
    """The three commands that take --input-shape for a .param: each must refuse a shape the same way."""
    return [
        ("estimate", str(param), "--board", "pi4", "--input-shape", shape),
        ("roofline", str(param), "--board", "pi4", "--input-shape", shape),
        ("profile", str(param), "--target", "pi4-emu", "--input-shape", shape),
    ]


def test_an_input_shape_the_first_convolution_cannot_take_is_refused(tmp_path: Path) -> None:
    """ncnn runs a 3-channel input through a 16-channel convolution without a word (benchncnn too); edgekit
    counted and estimated that model. Now the channel count is checked against the first convolution."""
    param = write_chain(tmp_path / "m.param", 2)
    shape = f"1,3,{SIZE},{SIZE}"
    for args in _shape_commands(param, shape):
        out = _cli(*args)
        assert out.returncode == 2 and "has 3 channels; the model's first convolution" in out.stderr, (
            out.stderr
        )
        assert f"takes {CHANNELS}" in out.stderr
    ok = _cli(
        "roofline", str(param), "--board", "pi4", "--input-shape", f"1,{CHANNELS},{SIZE},{SIZE}", "--json"
    )
    assert ok.returncode == 0, ok.stderr


def test_a_graph_without_macs_has_a_roofline_but_no_mac_based_estimate(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    value = [1, CHANNELS, SIZE, SIZE]
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, value)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, value)],
    )
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    out = _cli("roofline", str(path), "--board", "pi4", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["estimate"] is None and "no MACs" in data["no_estimate"] and data["roofline"]["macs"] == 0
    est = _cli("estimate", str(path), "--board", "pi4")
    assert est.returncode == 2 and "no estimate" in est.stderr and "edgekit convert" in est.stderr


def _cli_in(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`edgekit ARGS` with EDGEKIT_HOME `home`, tables 200 columns wide."""
    env = {**os.environ, "EDGEKIT_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=600, env=env
    )


def _estimate_chain(home: Path, param: Path, board: str, *more: str) -> subprocess.CompletedProcess[str]:
    """`edgekit estimate` of write_chain's .param at its input shape, with EDGEKIT_HOME `home`."""
    shape = f"1,{CHANNELS},{SIZE},{SIZE}"
    return _cli_in(home, "estimate", str(param), "--board", board, "--input-shape", shape, *more)


@dataclasses.dataclass(frozen=True)
class CountedChain:
    """write_chain's two convolutions as a bare .param (no .bin: counted on zero weights, a copy in the data dir)
    and `estimate --json` of it in a fresh EDGEKIT_HOME, first on the Pi 4 and then on the Pi 5 (each run counted
    under qemu: the Pi 4's with its simulated caches, the Pi 5's with llvm-mca's cycles)."""

    param: Path
    home: Path
    pi4: subprocess.CompletedProcess[str]
    pi5: subprocess.CompletedProcess[str]

    def cli(self, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return _cli_in(home, *args)

    def estimate(self, home: Path, board: str, *more: str) -> subprocess.CompletedProcess[str]:
        return _estimate_chain(home, self.param, board, *more)

    def home_copy(self) -> Path:
        """The counted home copied (file times kept), for a test that adds to it, uses or prunes its entries. Beside
        it, its path as long as the original's: a count follows the length of the zero-weights copy's path (1,000,598
        instructions in a home named `hA`, 1,000,841 in `hlonger`), and a pruned count is to be counted again
        exactly."""
        home = Path(tempfile.mkdtemp(prefix="home-", dir=self.home.parent))
        shutil.copytree(self.home, home, dirs_exist_ok=True)
        return home


@pytest.fixture(scope="module")
def counted_chain(tmp_path_factory: pytest.TempPathFactory) -> CountedChain:
    """The counts under qemu made once for the tests that read them (each counting run takes seconds); the tests
    that change the home work on a copy of it."""
    from edgekit.emu.plugin import build as plugin_build

    if not plugin_build.is_built():
        pytest.fail("the counting plugin is not built: run `edgekit emu build-plugin`")
    folder = tmp_path_factory.mktemp("counted")
    param = write_chain(folder / "chain", 2)
    param.with_suffix(".bin").unlink()  # a bare .param: counted on zero weights, a copy in the data dir
    home = Path(tempfile.mkdtemp(prefix="home-", dir=folder))  # as long as home_copy's
    pi4 = _estimate_chain(home, param, "pi4", "--json")
    assert pi4.returncode == 0, pi4.stderr
    pi5 = _estimate_chain(home, param, "pi5", "--json")
    assert pi5.returncode == 0, pi5.stderr
    return CountedChain(param, home, pi4, pi5)


@pytest.mark.integration
def test_estimate_command_counts_once_and_reuses_the_count(
    counted_chain: CountedChain,
) -> None:
    """The first estimate of a model counts it under qemu (saying how long it took), the next ones (the text view,
    another thread count) take that count from the cache."""
    first = counted_chain.pi4  # the first estimate in a fresh home
    data = json.loads(first.stdout)
    assert data["count"]["cpu"] == "cortex-a72" and data["count"]["instructions"] > 500_000
    assert not data["count"]["cached"] and len(data["count"]["mix"][0]) == 5
    assert (
        f"counted {data['count']['instructions']:,} instructions in" in first.stderr
    )  # progress: how long it took
    accesses, l1, l2 = data["count"]["window_misses"]  # the Pi 4's caches simulated: L1D and L2
    assert accesses > l1 >= l2 > 0
    home = counted_chain.home_copy()
    assert "cache misses" in counted_chain.estimate(home, "pi4").stdout
    est = data["estimate"]
    assert est["low_ms"] < est["estimate_ms"] < est["high_ms"]
    # a chain of 0.6 M instructions is below the calibration models' reach: not validated, so no level stated
    assert not est["interval_calibrated"] and est["interval_level"] is None
    assert est["estimate_ms"] >= data["roofline"]["lower_bound_ms"]
    assert "default options" in data["runs_as"]  # a bare .param runs as benchncnn runs it
    # LLVM has no model of the Pi 4's A72: no llvm-mca cycles counted, no cycle forms weighed (the Pi 5's:
    # test_a_bare_param_labelled_ncnn_fp32_counts_what_edgekits_ncnn_fp32_counts)
    assert data["count"]["cycles"] is None  # null in the JSON (it was -1.0)
    assert not any("cycles" in name for name in est["cross_validation"]["weights"])
    again = json.loads(counted_chain.estimate(home, "pi4", "--threads", "4", "--json").stdout)
    assert again["count"]["cached"] and again["count"]["instructions"] == data["count"]["instructions"]
    assert again["estimate"]["threads"] == 4


@pytest.mark.integration
def test_counts_and_zero_weights_are_listed_and_pruned_by_edgekit_cache(
    counted_chain: CountedChain,
) -> None:
    """The count cache and the zero-weight copies grew with every model estimated and nothing listed or removed
    them: `edgekit cache` lists both, each core has its own count, a count served is a use, `prune` removes the
    unused ones (a pruned count is counted again)."""
    param, home = counted_chain.param, counted_chain.home_copy()
    first = counted_chain.pi4
    assert json.loads(counted_chain.pi5.stdout)["count"]["cached"] is False  # another core: its own count
    listed = counted_chain.cli(home, "cache")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[1]: line for line in listed.stdout.splitlines() if line.split()[1:2]}
    assert "count" in rows and "zero-weights" in rows, listed.stdout
    entries = {
        json.loads(p.read_text())["device"]: p
        for p in (home / "counts").glob("*.json")
        if p.name != "digests.json"
    }
    assert sorted(entries) == ["pi4-emu", "pi5-emu"], entries
    (zeros,) = (home / "zero-weights").iterdir()
    old = time.time() - 40 * 86400
    for path in (*entries.values(), zeros):
        os.utime(path, (old, old))
    served = json.loads(counted_chain.estimate(home, "pi5", "--json").stdout)
    assert (
        served["count"]["cached"] is True
    )  # a use of the pi5 count and of the copy; the pi4 count stays unused
    dry = counted_chain.cli(home, "cache", "prune", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would remove count of {param.name} on pi4-emu, 1 thread" in dry.stdout, dry.stdout
    assert "pi5-emu" not in dry.stdout  # served: a use
    assert "zero-weights" not in dry.stdout  # the pi5 estimate used the copy: a use
    done = counted_chain.cli(home, "cache", "prune", "--older-than", "30d")
    assert done.returncode == 0 and "1 entry, freed" in done.stdout, done.stdout + done.stderr
    assert not entries["pi4-emu"].exists() and entries["pi5-emu"].exists() and zeros.is_dir()
    again = json.loads(counted_chain.estimate(home, "pi4", "--json").stdout)
    assert again["count"]["cached"] is False  # pruned: counted again
    assert again["count"]["instructions"] == json.loads(first.stdout)["count"]["instructions"]


@pytest.mark.integration
def test_a_count_that_outlives_the_timeout_is_stopped_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`estimate --timeout`: a count under qemu longer than that is stopped, exit 1, saying how to give it longer;
    nonsense is refused before any run."""
    # a home of its own: the same chain counted by an earlier test would be a cache hit, with no run to stop
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    param = write_chain(tmp_path / "chain", 2)
    shape = f"1,{CHANNELS},{SIZE},{SIZE}"
    out = _cli("estimate", str(param), "--board", "pi4", "--input-shape", shape, "--timeout", "0.5")
    assert out.returncode == 1, out.stderr
    assert "EmulatorError" in out.stderr and "outlived 0.5 s" in out.stderr and "--timeout" in out.stderr
    bad = _cli("estimate", str(param), "--board", "pi4", "--input-shape", shape, "--timeout", "0")
    assert bad.returncode == 2 and "above 0" in bad.stderr


def test_estimates_for_a_whole_run(tmp_path: Path) -> None:
    from edgekit.estimate.attach import estimates_for_run
    from edgekit.results import AgentResult, DeviceFacts, TargetRun

    facts = DeviceFacts(machine="aarch64", cores=2, python="3.11", emulated=True)
    agent = AgentResult(started_at="now", facts_before=facts, measurements=[_measurement(1, 100_000_000)])
    run = TargetRun(target="pi4-emu", kind="ssh", emulated=True, status="ok", agent=agent)
    est = estimates_for_run(run, [], "pi4-emu", threads=[1, 4])
    assert set(est) == {"ncnn-fp16 x1", "ncnn-fp16 x4"}  # the recipe's 4 threads, from the one-thread count
    assert est["ncnn-fp16 x4"]["instructions_per_invoke"] == 100_000_000
    assert est["ncnn-fp16 x4"]["estimate_ms"] < est["ncnn-fp16 x1"]["estimate_ms"]
    # no files here, so no split counted: said (deploy's 4-thread .tflite figure differed from `estimate`'s)
    assert any("no split between 4 threads counted here" in c for c in est["ncnn-fp16 x4"]["caveats"])
    assert not any("no split" in c for c in est["ncnn-fp16 x1"]["caveats"])
    assert estimates_for_run(run, [], "phone-emu") == {}


def test_a_two_thread_estimate_names_the_four_thread_split_its_interpolation_reads(tmp_path: Path) -> None:
    """2 threads are interpolated towards the 4-thread estimate, whose forms read the 4-thread split: deploy said
    'no split between 2 threads counted (deploy counts it for ncnn artifacts only)' of an ncnn artifact, and a
    timed 2-thread split (which no form reads) was all it had. Where the 4-thread split is not counted the caveat
    names that split and the true reason, and `split_not_counted` carries it for deploy's table."""
    from edgekit.estimate.attach import estimates_for_run
    from edgekit.report.table_caption import split_not_counted_notes
    from edgekit.results import AgentResult, DeviceFacts, TargetRun

    facts = DeviceFacts(machine="aarch64", cores=2, python="3.11", emulated=True)
    timed_two = _measurement(2, 101_000_000).model_copy(
        update={"instructions_per_thread": [60_000_000, 41_000_000]}
    )
    measured = [_measurement(1, 100_000_000), timed_two]
    agent = AgentResult(started_at="now", facts_before=facts, measurements=measured)
    run = TargetRun(target="pi4-emu", kind="ssh", emulated=True, status="ok", agent=agent)
    est = estimates_for_run(run, [], "pi4-emu", threads=[1, 2, 3])
    assert set(est) == {"ncnn-fp16 x1", "ncnn-fp16 x2", "ncnn-fp16 x3"}
    for n in (2, 3):
        note = est[f"ncnn-fp16 x{n}"]["split_not_counted"]
        assert note.startswith(
            f"no split between 4 threads (the 4-thread end of the {n}-thread interpolation) counted here: the "
            "artifact's files are not known here;"
        ), note
        assert note in est[f"ncnn-fp16 x{n}"]["caveats"] and f"--threads {n}`" in note
        assert "ncnn artifacts only" not in note
    assert "split_not_counted" not in est["ncnn-fp16 x1"]
    lines = split_not_counted_notes([run.model_copy(update={"estimates": est})])  # under deploy's table
    assert lines == [f"pi4-emu ncnn-fp16 x{n}: {est[f'ncnn-fp16 x{n}']['split_not_counted']}" for n in (2, 3)]
    # a TFLite artifact: its split is not counted here, whatever its files
    tfl = ArtifactInfo(
        id="ncnn-fp16", format="ncnn-fp16", files=[str(tmp_path / "m.tflite")], sha256="0", size_bytes=1
    )
    other = estimates_for_run(run, [tfl], "pi4-emu", threads=[1, 2])["ncnn-fp16 x2"]
    assert "counted here: only an ncnn artifact's is counted;" in other["split_not_counted"]


def test_a_two_thread_estimate_reads_the_timed_four_thread_runs_split(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that timed 1, 2 and 4 threads (deploy --threads 1,2,4 under a cap that lets them run): the x4 row
    estimates from the timed 4-thread run's split, but the 2-thread estimate's 4-thread end was made from a
    second split counted under qemu, so x2 interpolated towards a 4-thread figure that could differ from the x4
    row's. Now that end reads the timed run's split: nothing counted, and the same 4-thread figure."""
    from edgekit.estimate.attach import estimates_for_run
    from edgekit.results import AgentResult, DeviceFacts, TargetRun

    asked: list[int] = []

    def count_cached(job: Any, device: str, say: Any = None, **kw: Any) -> Any:  # the counting qemu's door
        asked.append(job.threads)
        raise RuntimeError("no count in this test")

    monkeypatch.setattr("edgekit.estimate.counts.count_cached", count_cached)
    info = _chain_artifact(tmp_path)  # its .param is here: a split could be counted
    facts = DeviceFacts(machine="aarch64", cores=4, python="3.11", emulated=True)
    split_two, split_four = [60_000_000, 41_000_000], [40_000_000, 22_000_000, 21_000_000, 21_000_000]
    measured = [
        _measurement(1, 100_000_000),
        _measurement(2, 101_000_000).model_copy(update={"instructions_per_thread": split_two}),
        _measurement(4, 104_000_000).model_copy(update={"instructions_per_thread": split_four}),
    ]
    agent = AgentResult(started_at="now", facts_before=facts, measurements=measured)
    run = TargetRun(target="pi4-emu", kind="ssh", emulated=True, status="ok", agent=agent)
    est = estimates_for_run(run, [info], "pi4-emu", threads=[1, 2, 4])
    assert asked == []  # no split counted: the 4-thread one was timed
    one, two, four = (est[f"ncnn-fp16 x{n}"] for n in (1, 2, 4))
    assert "busiest" in four["cross_validation"]["weights"]  # the x4 row read its split
    # the interpolation's ends, as its caveat states them: the x1 and x4 rows' figures
    ends = f"geometric in the thread count: {one['estimate_ms']:.3g} and {four['estimate_ms']:.3g} ms"
    assert any(ends in c for c in two["caveats"]), (two["caveats"], four["estimate_ms"])
    assert two["estimate_ms"] == pytest.approx(math.sqrt(one["estimate_ms"] * four["estimate_ms"]), rel=1e-3)
    assert two["low_ms"] == min(one["low_ms"], four["low_ms"])
    assert any("measured in the timed 4-thread run" in c for c in two["caveats"])
    assert "split_not_counted" not in two
    # a recipe's 2 threads not timed, 4 timed: the same end
    untimed = agent.model_copy(update={"measurements": [measured[0], measured[2]]})
    alone = estimates_for_run(run.model_copy(update={"agent": untimed}), [info], "pi4-emu", threads=[1, 2, 4])
    assert asked == [] and alone["ncnn-fp16 x2"]["estimate_ms"] == two["estimate_ms"]


@pytest.mark.integration
def test_a_capped_run_counts_the_thread_split_its_four_thread_estimate_needs(tmp_path: Path) -> None:
    """A capped emulated run times one thread; for the recipe's 4 threads the split between threads is counted
    (real counting qemu, once: a second run takes it from the count cache) and the estimate is then the blend
    `edgekit estimate --threads 4` gives, with the busiest thread's counted share and a note saying so."""
    from edgekit.estimate.attach import estimates_for_run
    from edgekit.results import AgentResult, DeviceFacts, TargetRun

    info = _chain_artifact(tmp_path)
    one = _measurement(1, 1_200_000).model_copy(update={"cache_misses": [500_000, 20_000, 5_000]})
    facts = DeviceFacts(machine="aarch64", cores=2, python="3.11", emulated=True)
    run = TargetRun(
        target="pi4-emu",
        kind="ssh",
        emulated=True,
        status="ok",
        agent=AgentResult(started_at="now", facts_before=facts, measurements=[one]),
    )
    said: list[str] = []
    shape = [1, CHANNELS, SIZE, SIZE]
    est = estimates_for_run(run, [info], "pi4-emu", threads=[1, 4], input_shape=shape, say=said.append)
    four = est["ncnn-fp16 x4"]
    assert four["status"] == "ok" and any(
        "split between 4 threads counted on pi4-emu" in n for n in four["caveats"]
    )
    scaling = four["cross_validation"]["thread_scaling"]  # the blend: 4-thread forms and 1 thread x scaling
    assert 0.25 <= scaling["busiest_share"] <= 1.0 and scaling["one_thread_ms"] > 0
    assert said and "splits between 4 threads" in said[0]
    said.clear()
    again = estimates_for_run(run, [info], "pi4-emu", threads=[1, 4], input_shape=shape, say=said.append)
    assert not said and again["ncnn-fp16 x4"]["estimate_ms"] == four["estimate_ms"]  # from the count cache
    # no ncnn .param (a TFLite artifact): no split counted, the forms without it, as before
    tfl = info.model_copy(update={"files": [str(tmp_path / "model.tflite")]})
    plain_four = estimates_for_run(run, [tfl], "pi4-emu", threads=[1, 4], input_shape=shape)["ncnn-fp16 x4"]
    assert "thread_scaling" not in plain_four["cross_validation"]


def test_models_with_uncalibrated_layer_types_say_so_and_the_readme_states_how_they_fared() -> None:
    """An estimate of an ncnn graph with a layer type no calibration model has names it; the README's leave-one-out
    figures for such models (the calibration models with a type none of the other 16 has) are what the stored
    errors give, and the interval held them at least at its stated rate."""
    from edgekit.estimate import calibration
    from edgekit.estimate.graph import analyze

    _, feats, _ = cost_model.calibration_data("pi4", 1)[0]
    fastestdet = calibration.models()["FastestDet"]
    graph = analyze(calibration.zero_weights(fastestdet), fastestdet.input_shape)
    assert "Slice" in graph.layer_types and calibration.uncalibrated_layer_types(graph.layer_types) == []
    plain = cost_model.estimate("pi4", feats, layer_types=["Convolution", "ReLU"])
    assert not any("layer types" in c for c in plain.caveats)
    novel = cost_model.estimate("pi4", feats, layer_types=["Convolution", "GELU", "MultiHeadAttention"])
    (caveat,) = [c for c in novel.caveats if "layer types" in c]
    assert "GELU, MultiHeadAttention" in caveat and "Convolution" not in caveat
    assert novel.estimate_ms == plain.estimate_ms
    # widened to the largest held-out error
    assert novel.low_ms < plain.low_ms and novel.high_ms > plain.high_ms
    q = cost_model.procedure_cv("pi4", 1, EVERY)["q_log_wide"]
    assert novel.high_ms / novel.estimate_ms == pytest.approx(math.exp(q))

    models = cost_model.novel_layer_models()
    assert models == [
        "FastestDet",
        "alexnet",
        "blazeface",
        "efficientnet_b0",
        "squeezenet_ssd_int8",
        "yolov4-tiny",
    ]
    quoted = {
        ("pi4", 1): (0.1202, 0.0946),
        ("pi4", 4): (0.1802, 0.1681),
        ("pi5", 1): (0.0705, 0.1323),
        ("pi5", 4): (0.0858, 0.1093),
    }
    held = {"novel": 0, "rest": 0}
    plain_held = 0
    for (board, threads), medians in quoted.items():
        errors = cost_model.stored_procedure_errors()[cost_model.procedure_key(board, threads, every(board))]
        summary = cost_model.novel_layer_summary(errors)
        for group, median in zip(("novel", "rest"), medians):
            assert summary[group]["median"] == pytest.approx(median, abs=0.0015), (board, threads, group)
            held[group] += summary[group]["held"]
        plain_held += summary["novel"]["held_plain"]
    assert held == {"novel": 21, "rest": 41}  # README: 21 of 24 (19 at the ordinary interval), 41 of 44
    assert plain_held == 19
    assert held["novel"] >= cost_model.INTERVAL_LEVEL * 24


def test_int8_estimates_state_the_widened_interval_the_int8_models_need() -> None:
    """Kernel class: the five int8 calibration models' held-out errors are larger than the float ones'; an int8
    artifact's estimate says so and states the largest held-out error as its interval, which held the int8
    figures at least at the stated rate (README: 18 of 20; 17 of 20 at the ordinary interval)."""
    rows = {n: f for n, f, _ in cost_model.calibration_data("pi4", 1)}
    int8 = rows["mobilenet_int8"]
    assert int8.int8 and not rows["mobilenet_v2"].int8
    est = cost_model.estimate("pi4", int8)
    (caveat,) = [c for c in est.caveats if c.startswith("int8 kernels")]
    assert "largest held-out error" in caveat
    assert est.high_ms / est.estimate_ms == pytest.approx(
        math.exp(cost_model.procedure_cv("pi4", 1, EVERY)["q_log_wide"])
    )
    as_float = cost_model.estimate("pi4", dataclasses.replace(int8, int8=False))
    assert as_float.high_ms / as_float.estimate_ms < est.high_ms / est.estimate_ms
    assert not any(c.startswith("int8 kernels") for c in as_float.caveats)

    quoted = {
        ("pi4", 1): (0.0960, 0.0703),
        ("pi4", 4): (0.1969, 0.1548),
        ("pi5", 1): (0.1527, 0.0824),
        ("pi5", 4): (0.1750, 0.0858),
    }
    held = plain = 0
    for (board, threads), (int8_median, float_median) in quoted.items():
        errors = cost_model.stored_procedure_errors()[cost_model.procedure_key(board, threads, every(board))]
        s = cost_model.kernel_class_summary(errors)
        assert s["int8"]["n"] == 5 and s["float"]["n"] == 12
        assert s["int8"]["median"] == pytest.approx(int8_median, abs=0.0015), (board, threads)
        assert s["float"]["median"] == pytest.approx(float_median, abs=0.0015), (board, threads)
        held += s["int8"]["held"]
        plain += s["int8"]["held_plain"]
    assert (held, plain) == (18, 17)
    assert held >= cost_model.INTERVAL_LEVEL * 20


def test_a_model_outside_the_calibration_range_is_said_to_be_extrapolated() -> None:
    """No held-out error speaks for a model far smaller or larger than every calibration model: its estimate says
    so and takes the widest interval, not validated. Within how far leave-one-out itself extrapolated (the
    smallest and largest models held out) the cross-validated interval stands, and the caveat says why."""
    lo, hi = cost_model.calibration_range("pi4")
    inside = cost_model.estimate("pi4", cost_model.Features(int((lo * hi) ** 0.5)), 1, fmt=Format.NCNN_FP32)
    assert inside.calibrated and inside.to_dict()["interval_not_validated"] is None
    inside_q = math.log(inside.high_ms / inside.estimate_ms)
    for work, side in ((lo // 50, "fewer"), (hi * 3, "more")):
        est = cost_model.estimate("pi4", cost_model.Features(work), 1, fmt=Format.NCNN_FP32)
        d = est.to_dict()
        assert (
            not est.calibrated and d["interval_not_validated"] == "outside the calibration models' size range"
        )
        assert any(f"{side} than any calibration model" in c for c in est.caveats), est.caveats
        assert est.high_ms / est.estimate_ms == pytest.approx(math.exp(cost_model.widest_q()))
    # past the largest model by more than the 1 % a count within is inside the range: leave-one-out predicted
    # vgg16_int8 itself from models 1.7x smaller; there the interval is the largest held-out error, validated
    reach_lo, reach_hi = cost_model.validated_range("pi4")
    assert reach_lo < lo / 2 and reach_hi > hi * 1.5
    wide = cost_model.procedure_cv("pi4", 1, ("instructions",))["q_log_wide"]
    for work in (int(hi * 1.02), int(reach_hi * 0.99), int(lo * 0.9)):
        near = cost_model.estimate("pi4", cost_model.Features(work), 1, fmt=Format.NCNN_FP32)
        assert near.calibrated and near.to_dict()["interval_not_validated"] is None, work
        assert near.high_ms / near.estimate_ms == pytest.approx(math.exp(max(wide, inside_q)))
        assert near.high_ms / near.estimate_ms > inside.high_ms / inside.estimate_ms
        assert any("within how far leave-one-out extrapolated" in c for c in near.caveats), near.caveats
    # the caveat's figures: the smallest and largest models held out, both boards and thread counts
    from edgekit.estimate import crossval
    from edgekit.estimate.groups import extreme_summary

    rows = [
        extreme_summary(crossval.stored_procedure_errors()[crossval.procedure_key(b, t, every(b))], b)[
            "extreme"
        ]
        for b in ("pi4", "pi5")
        for t in (1, 4)
    ]
    n, plain, wide = (sum(r[k] for r in rows) for k in ("n", "held_plain", "held"))
    assert f"inside the ordinary interval {plain} of {n} times" in near.caveats[-1]
    assert f"inside the largest held-out error {wide} of {n}," in near.caveats[-1]
    far = cost_model.estimate("pi4", cost_model.Features(int(reach_hi * 1.01)), 1, fmt=Format.NCNN_FP32)
    assert not far.calibrated and any(
        "further than leave-one-out ever extrapolated" in c for c in far.caveats
    )
    mlo, _ = cost_model.calibration_range("pi5", counted=False)  # an ONNX file: MACs, nothing counted
    tiny = cost_model.estimate("pi5", cost_model.Features(0, macs=mlo // 10), 1)
    assert not tiny.calibrated and any("M MACs: fewer than" in c for c in tiny.caveats)
    three = cost_model.estimate("pi4", cost_model.Features(lo // 50), 3)  # every reason named
    assert three.to_dict()["interval_not_validated"] == (
        "no calibration figure at 3 threads; outside the calibration models' size range"
    )
    # at a calibrated thread count too: a format with no calibration figure AND a size outside the range (the
    # format's reason alone was given, hiding the extrapolation)
    both = cost_model.estimate("pi4", cost_model.Features(lo // 50), 1, fmt=Format.TFLITE_FP32)
    assert both.to_dict()["interval_not_validated"] == (
        "no calibration figure for tflite-fp32; outside the calibration models' size range"
    )


def test_two_and_three_threads_are_interpolated_between_the_calibrated_counts() -> None:
    """No published figure exists at 2 or 3 threads: the estimate was the 1-thread one (a deploy with threads
    [1, 2] showed the same ms on both rows, as if the second thread did nothing). It is between the 1- and
    4-thread estimates, geometric in the thread count, each end estimated exactly as `--threads 1` / `--threads 4`
    would (with the 4-thread split where counted), its interval the span of both ends' (not validated), and a
    format's own reason (no TFLite calibration figure) is kept beside the thread count's."""
    for board in ("pi4", "pi5"):
        _, feats, _ = cost_model.calibration_data(board, 1)[0]
        one, four = (cost_model.estimate(board, feats, n, fmt=Format.NCNN_FP32) for n in (1, 4))
        assert four.estimate_ms < one.estimate_ms
        for n in (2, 3):
            est = cost_model.estimate(board, feats, n, fmt=Format.NCNN_FP32)
            share = math.log(n) / math.log(4)
            assert est.estimate_ms == pytest.approx(one.estimate_ms ** (1 - share) * four.estimate_ms**share)
            assert four.estimate_ms < est.estimate_ms < one.estimate_ms
            assert (est.low_ms, est.high_ms) == (min(one.low_ms, four.low_ms), max(one.high_ms, four.high_ms))
            d = est.to_dict()
            assert (
                not est.calibrated and d["interval_not_validated"] == f"no calibration figure at {n} threads"
            )
            assert d["cross_validation"]["interpolated_between"] == [1, 4]
            assert any("interpolated between the 1- and 4-thread estimates" in c for c in est.caveats), (
                est.caveats
            )
    tflite = cost_model.estimate("pi5", feats, 2, fmt=Format.TFLITE_INT8).to_dict()
    assert (
        tflite["interval_not_validated"]
        == "no calibration figure at 2 threads; no calibration figure for tflite-int8"
    )
    assert any("no calibration figure exists for this runtime" in c for c in tflite["caveats"])


def test_zero_misses_are_a_figure_and_no_simulated_caches_use_the_forms_without_them() -> None:
    """A model that stays in the cache (no last-level miss in its window) still gets the miss forms and their
    stored cross-validation; a count without simulated caches (deploy's) gets the forms without them."""
    _, feats, _ = cost_model.calibration_data("pi4", 1)[0]
    resident = cost_model.estimate("pi4", dataclasses.replace(feats, llc_misses=0))
    assert "ratio+l1+llc" in resident.cv["weights"]
    assert resident.cv["median"] == cost_model.procedure_cv("pi4", 1, EVERY)["median"]
    plain = cost_model.estimate("pi4", dataclasses.replace(feats, l1_misses=-1, llc_misses=-1))
    assert not any("l1" in form for form in plain.cv["weights"])
    assert plain.cv["median"] == cost_model.procedure_cv("pi4", 1, WITHOUT_CACHES)["median"]


def test_format_given_against_the_artifacts_metadata_is_refused(tmp_path: Path) -> None:
    """`roofline --format tflite-int8` on an ncnn-fp32 artifact with its sidecar estimated it as int8 although the
    help says --format is for an artifact without metadata: a contradiction is a usage error now (exit 2); the
    same format, or --format on a bare .param, is taken."""
    param = write_chain(tmp_path / "chain", 2)
    board = ("--board", "pi4", "--input-shape", f"1,{CHANNELS},{SIZE},{SIZE}")
    assert _cli("roofline", str(param), *board, "--format", "ncnn-int8").returncode == 0  # no metadata: taken
    param.with_suffix(".io.json").write_text(json.dumps({"format": "ncnn-fp32"}))
    bad = _cli("roofline", str(param), *board, "--format", "ncnn-int8")
    assert bad.returncode == 2 and "metadata says ncnn-fp32" in bad.stderr, bad.stderr
    assert _cli("roofline", str(param), *board, "--format", "ncnn-fp32").returncode == 0
    unknown = _cli("roofline", str(param), *board, "--format", "bogus")
    assert unknown.returncode == 2 and "UsageError" in unknown.stderr, unknown.stderr


def test_a_qdq_onnx_counts_the_macs_of_its_float_graph() -> None:
    """edgekit's own onnx-int8 (QDQ: each weight reaches its Conv/Gemm through DequantizeLinear) counted 0 MACs,
    so roofline and estimate gave ~0 ms, below their own bound."""
    from edgekit.convert.pipeline import convert_recipe
    from edgekit.estimate.graph import analyze
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe

    arts = {
        a.format: a
        for a in convert_recipe(
            load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"),
            (Format.ONNX_FP32, Format.ONNX_INT8),
        )
    }
    fp32, int8 = (analyze(arts[f].main_file) for f in (Format.ONNX_FP32, Format.ONNX_INT8))
    assert int8.macs == fp32.macs > 0 and int8.macs_by_op.keys() == fp32.macs_by_op.keys()
    assert int8.winograd_macs == fp32.winograd_macs and int8.weight_bytes < fp32.weight_bytes


TFLITE_VARIANTS_SCRIPT = """
import sys, numpy as np, tensorflow as tf
rng = np.random.default_rng(0)
w = tf.constant((rng.standard_normal((3, 3, 16, 16)) * 0.05).astype(np.float32))
@tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 16], tf.float32)])
def f(x):
    return tf.nn.relu(tf.nn.conv2d(tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME")), w, 1, "SAME"))
def data():
    for _ in range(4):
        yield [rng.standard_normal((1, 32, 32, 16)).astype(np.float32)]
for kind in ("fp32", "fp16", "dynamic", "int8"):
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    if kind != "fp32":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if kind == "fp16":
        conv.target_spec.supported_types = [tf.float16]
    if kind == "int8":
        conv.representative_dataset = data
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.int8
    open(f"{sys.argv[1]}/{kind}.tflite", "wb").write(conv.convert())
"""


BATCH_MATMUL_SCRIPT = """
import sys, tensorflow as tf

@tf.function(input_signature=[tf.TensorSpec([1, 16, 256], tf.float32)])
def f(x):
    scores = tf.linalg.matmul(x, x, adjoint_a=True)  # [1, 256, 256], each output sums over 16
    out = tf.linalg.matmul(tf.nn.softmax(scores), x, adjoint_b=True)  # [1, 256, 16], each over 256
    return tf.math.cumsum(out, axis=1)  # no MACs: named as left out

conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
open(f"{sys.argv[1]}/bmm.tflite", "wb").write(conv.convert())
"""


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of TFLITE_VARIANTS_SCRIPT's fp32, fp16, dynamic and int8 .tflite files and BATCH_MATMUL_SCRIPT's
    bmm.tflite, converted in one TensorFlow process (its start-up is most of a conversion's seconds) for the tests
    that read them."""
    folder = tmp_path_factory.mktemp("tflite")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(
        [sys.executable, "-c", TFLITE_VARIANTS_SCRIPT + BATCH_MATMUL_SCRIPT, str(folder)],
        check=True,
        capture_output=True,
        env=env,
        timeout=300,
    )
    return folder


@pytest.mark.integration
def test_a_tflite_without_metadata_is_read_from_its_tensors(tflite_files: Path) -> None:
    """A .tflite without its artifact.json was estimated as a bare ncnn model: an ncnn-validated 80 % interval
    (`interval_calibrated: true`, no note) for a runtime no calibration figure covers, and the roofline at ncnn's
    float peak for a full-integer model. Its precision is read from its tensors now; TFLite is uncalibrated."""
    from edgekit.estimate.runs_as import tflite_format

    for kind in ("fp32", "fp16", "dynamic", "int8"):
        assert tflite_format(tflite_files / f"{kind}.tflite") is Format(f"tflite-{kind}"), kind
    # a --format the tensors contradict is refused (tflite-fp32 put a dynamic-range model's bound at the fp32
    # peak); the one they say is taken
    dynamic = str(tflite_files / "dynamic.tflite")
    wrong = _cli("roofline", dynamic, "--board", "pi4", "--format", "tflite-fp32")
    assert wrong.returncode == 2 and "tensors say tflite-dynamic" in wrong.stderr, wrong.stderr
    assert _cli("roofline", dynamic, "--board", "pi4", "--format", "tflite-dynamic").returncode == 0
    bound = _cli("roofline", str(tflite_files / "int8.tflite"), "--board", "pi4", "--json")
    assert bound.returncode == 0 and json.loads(bound.stdout)["roofline"]["precision"] == "int8", bound.stderr
    out = _cli("estimate", str(tflite_files / "int8.tflite"), "--board", "pi4", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["runs_as"].startswith("tflite-int8 (read from its tensors")
    assert data["estimate"]["interval_calibrated"] is False
    assert any("no calibration figure exists for this runtime" in c for c in data["estimate"]["caveats"])


def test_a_shape_other_than_the_sidecars_a_batch_or_a_format_of_another_file_is_refused(
    tmp_path: Path,
) -> None:
    """With its model.io.json an artifact was counted at --input-shape but its MACs and roofline taken at the
    sidecar's shape (profile ignored the option); a batch of 2 was silently counted as 1; `--format tflite-int8`
    on a .param was printed as how it runs. Each is refused now, exit 2, before any guest run."""
    param = write_chain(tmp_path / "chain", 2)
    stated = [1, CHANNELS, SIZE, SIZE]
    param.with_suffix(".io.json").write_text(json.dumps({"format": "ncnn-fp32", "input_shapes": [stated]}))
    other = f"1,{CHANNELS},{2 * SIZE},{2 * SIZE}"
    for args in _shape_commands(param, other):
        out = _cli(*args)
        assert out.returncode == 2 and "is not the one this artifact states" in out.stderr, (args, out.stderr)
    same = _cli("roofline", str(param), "--board", "pi4", "--input-shape", ",".join(map(str, stated)))
    assert same.returncode == 0, same.stderr
    bare = write_chain(tmp_path / "bare", 2)
    batch = _cli("roofline", str(bare), "--board", "pi4", "--input-shape", f"2,{CHANNELS},{SIZE},{SIZE}")
    assert batch.returncode == 2 and "ncnn has no batch axis" in batch.stderr, batch.stderr
    three = _cli("roofline", str(bare), "--board", "pi4", "--input-shape", f"1,{CHANNELS},{SIZE}")
    assert three.returncode == 2 and f"takes C,H,W = {CHANNELS},{SIZE},{SIZE}" in three.stderr, three.stderr
    shape = ("--input-shape", ",".join(map(str, stated)))
    wrong = _cli("estimate", str(bare), "--board", "pi4", *shape, "--format", "tflite-int8")
    assert wrong.returncode == 2 and "--format tflite-int8 is a .tflite file" in wrong.stderr, wrong.stderr


def test_an_int8_labelled_ncnn_model_with_no_quantized_layer_runs_as_float(tmp_path: Path) -> None:
    """The speed plan may keep every layer of an ncnn-int8 artifact float: it was still estimated with the int8
    class, its widened interval and the int8 peak. What runs is read from its layers now."""
    param = write_chain(tmp_path / "chain", 2)
    param.with_suffix(".io.json").write_text(
        json.dumps({"format": "ncnn-int8", "input_shapes": [[1, CHANNELS, SIZE, SIZE]]})
    )
    out = _cli("roofline", str(param), "--board", "pi5", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["roofline"]["precision"] == "fp16"  # ncnn's float peak on the A76, not int8
    # deploy's estimate of the same artifact: the float class, not the int8 one with its widened interval
    info = ArtifactInfo(
        id="ncnn-int8",
        format="ncnn-int8",
        files=[str(param), str(param.with_suffix(".bin"))],
        sha256="0",
        size_bytes=1,
    )
    measured = _measurement(1, 100_000_000).model_copy(
        update={"artifact": "ncnn-int8", "format": "ncnn-int8"}
    )
    est = estimate_for(measured, info, "pi4")
    assert est["status"] == "ok" and not any("int8 kernels" in c for c in est["caveats"]), est["caveats"]
    info.files = []  # the files not here: the format alone says int8
    assert any("int8 kernels" in c for c in estimate_for(measured, info, "pi4")["caveats"])


def test_profile_refuses_a_shape_the_model_cannot_take_before_the_guest_runs(tmp_path: Path) -> None:
    """squeezenet at 8x8 ran 6 s under qemu, then failed as an EmulatorError (exit 1, no hint); estimate and
    roofline refuse it on the host. profile runs the same host check first now."""
    from edgekit.estimate import calibration

    folder = calibration.DATA / "ncnn-benchmark"
    param = tmp_path / "squeezenet.param"
    param.write_text((folder / "squeezenet.param").read_text())
    size = json.loads((folder / "models.json").read_text())["squeezenet"]["zero_bin_bytes"]
    param.with_suffix(".bin").write_bytes(bytes(size))
    out = _cli("profile", str(param), "--target", "pi4-emu", "--input-shape", "1,3,8,8")
    assert out.returncode == 2 and "the model cannot take that input" in out.stderr, out.stderr


def test_a_shape_without_its_batch_gets_a_hint_that_runs(tmp_path: Path) -> None:
    """`--input-shape 227,227` was read as batch 227 and the hint said `1,227` (another exit 2); `3,227,227`
    got `1,227,227`, the channels dropped. The hint now puts the batch first and keeps what was given."""
    from edgekit.errors import InputDataError
    from edgekit.estimate import calibration
    from edgekit.estimate.graph import analyze

    param = calibration.zero_weights(calibration.models()["squeezenet"])
    for given in ([227, 227], [3, 227, 227]):
        with pytest.raises(InputDataError, match=r"give it batch first as N,C,H,W") as err:
            analyze(param, given)
        assert err.value.hint is not None and "--input-shape 1,3,227,227" in err.value.hint
    assert analyze(param, [1, 3, 227, 227]).macs > 0  # what the hint says runs


def test_the_bound_uses_the_precision_each_runtime_computes_in() -> None:
    """ncnn may compute a float model in fp16; ONNX Runtime, OpenCV, OpenVINO and ExecuTorch run an fp32 model in
    fp32 (their bound used the fp16 peak: about half the time it can be); MNN in fp16 only as mnn-fp16."""
    from edgekit.estimate.roofline import compute_precision
    from edgekit.formats import Precision

    # edgekit's ncnn-fp32 switches fp16 off (its model.io.json): fp32, unless the artifact's own flags say fp16
    assert compute_precision(Format.NCNN_FP32) is Precision.FP32
    assert compute_precision(Format.NCNN_FP32, {"use_fp16_arithmetic": True}) is Precision.FP16
    assert compute_precision(Format.NCNN_FP16) is Precision.FP16
    assert compute_precision(Format.MNN_FP16) is Precision.FP16 and compute_precision(None) is Precision.FP16
    for fmt in (
        Format.ONNX_FP32,
        Format.OPENCV_FP32,
        Format.OPENVINO_FP32,
        Format.EXECUTORCH_FP32,
        Format.MNN_FP32,
    ):
        assert compute_precision(fmt) is Precision.FP32, fmt
    assert compute_precision(Format.ONNX_INT8) is Precision.INT8
    assert compute_precision(Format.TFLITE_FP16) is Precision.FP32


def test_an_onnx_estimate_says_it_is_mac_based_and_another_runtimes_file_where_to_get_one(
    tmp_path: Path,
) -> None:
    """`estimate model.onnx` said 'runs as opencv-fp32' and then 'ONNX is not run on the device'; a .mnn was
    'cannot read a .mnn file'. Now the ONNX estimate says it is from MACs and how to count the file, an estimate
    under the roofline bound says so, and a .mnn names what estimate reads and the command that estimates it."""
    small = write_onnx(tmp_path / "one.onnx", 1)

    def edgekit(command: str, path: Path, *more: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgekit", command, str(path), "--board", "pi5", *more],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "COLUMNS": "400"},
        )

    def estimate(path: Path) -> subprocess.CompletedProcess[str]:
        return edgekit("estimate", path, "--json")

    done = estimate(small)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["runs_as"].endswith("(not run: MAC-based)")
    notes = " ".join(data["estimate"]["caveats"])
    assert "from its MACs alone" in notes and "edgekit bench FILE --target pi5-emu" in notes
    assert data["estimate"]["estimate_ms"] > data["roofline"]["lower_bound_ms"]
    assert "below the roofline lower bound" not in notes
    bracketed = tmp_path / "m[red].onnx"  # the text view prints paths and notes as written, not as markup
    bracketed.write_bytes(small.read_bytes())
    text = edgekit("estimate", bracketed)
    assert text.returncode == 0 and "formats: [ncnn-fp16]" in text.stdout, text.stdout + text.stderr
    assert str(bracketed) in text.stdout
    roof = edgekit("roofline", bracketed)
    assert roof.returncode == 0 and str(bracketed) in roof.stdout, roof.stdout + roof.stderr
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    tiny = tmp_path / "tiny.onnx"  # 64 x 1000 MACs: far below every calibration model, extrapolated
    weights = numpy_helper.from_array(np.ones((64, 1000), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1000])],
        [weights],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tiny))
    done = estimate(tiny)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["estimate"]["estimate_ms"] < data["roofline"]["lower_bound_ms"], data
    assert "below the roofline lower bound" in " ".join(data["estimate"]["caveats"])
    mnn = tmp_path / "m.mnn"
    mnn.write_bytes(b"\0" * 64)
    refused = estimate(mnn)
    assert refused.returncode == 2 and "a .mnn file's graph is not read here" in refused.stderr
    assert "edgekit bench FILE --target pi4-emu" in refused.stderr


@pytest.mark.integration
def test_a_batch_matmul_with_adjoints_counts_the_products_it_computes(tflite_files: Path) -> None:
    """adj_x: the lhs [1, 16, 256] contracts over 16, not 256; the reader counted 16x the MACs of the first
    product (17.8 M for an attention block of 2.1 M) and its "bound" sat above the estimate."""
    cost = analyze(tflite_files / "bmm.tflite")
    assert cost.macs_by_op == {"BATCH_MATMUL": 2 * 256 * 16 * 256}
    assert any("CUMSUM x1" in n for n in cost.notes) and not any("SOFTMAX" in n for n in cost.notes)


def test_a_bound_above_the_count_is_no_bound_and_only_a_consistent_one_is_the_floor() -> None:
    """A graph's MACs above what its counted SIMD/FP instructions can execute cannot have run: that roofline is
    flagged as none, not told as "the board cannot be that fast". Figures of the probe's attention model on the
    A76 (1,063,390 SIMD/FP and 308,390 other instructions: 5.5 M MACs at most in fp32; 17.8 M MACs read before
    the adj_x fix, 2.27 M after)."""
    from edgekit.estimate.model_cost import ModelCost
    from edgekit.estimate.roofline import bound_note, macs_the_count_can_hold

    mix = (1_063_390, 372_905, 66_572, 78_706, 308_390)
    assert macs_the_count_can_hold(mix, Precision.FP32) == 4 * (1_063_390 + 308_390)
    feats = cost_model.Features(1_889_963, 1_000, False, {}, 0, (1_063_390, 372_905, 66_572, 78_706, 308_390))
    est = cost_model.estimate("pi5", feats, 1, fmt=Format.TFLITE_FP32)
    for macs, consistent in ((17_825_792 + 110_592 + 65_536, False), (2_273_280, True)):
        cost = ModelCost("m.tflite", "tflite", macs, 1_000, 4_000, 1, 1)
        bound = roofline(cost, BOARDS["pi5"], 1, Precision.FP32)
        note = bound_note(cost, bound, est, Precision.FP32)
        if consistent:
            assert bound.bound == "compute" and "no bound" not in note
            assert bound.lower_bound_ms < est.estimate_ms and note == ""
        else:
            assert bound.lower_bound_ms > est.estimate_ms  # the old "floor" above the estimate
            assert bound.bound == "none" and "is no bound here" in note and "cannot be that fast" not in note
    # a consistent bound above the estimate is the floor, said with what it rests on
    cost = ModelCost("m.tflite", "tflite", 4_000_000, 1_000, 4_000, 1, 1)
    bound = roofline(cost, BOARDS["pi5"], 1, Precision.FP32)
    slow = dataclasses.replace(est, estimate_ms=bound.lower_bound_ms / 2)
    assert "take the bound as the floor" in bound_note(cost, bound, slow, Precision.FP32)


def _runtime_shape_onnx(path: Path, dims: list) -> Path:
    """x [b?, 3, h?, w?] -> Conv 3->16 -> a Reshape whose shape is computed at run time (Shape -> Slice ->
    Concat) to [n, 16, h*w] -> MatMul with its own transpose -> Erf, CumSum, TopK and a custom-domain op."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.array([0], np.int64), "s0"),
        numpy_helper.from_array(np.array([2], np.int64), "s2"),
        numpy_helper.from_array(np.array([-1], np.int64), "minus1"),
        numpy_helper.from_array(np.array(2, np.int64), "axis"),
        numpy_helper.from_array(np.array([5], np.int64), "k"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["shape"]),
        helper.make_node("Slice", ["shape", "s0", "s2"], ["nc"]),
        helper.make_node("Concat", ["nc", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["c", "target"], ["flat"]),  # [n, 16, h*w]
        helper.make_node("Transpose", ["flat"], ["flat_t"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["flat_t", "flat"], ["gram"]),  # [n, hw, hw], sums over 16
        helper.make_node("Erf", ["gram"], ["e"]),
        helper.make_node("CumSum", ["e", "axis"], ["cs"]),
        helper.make_node("TopK", ["cs", "k"], ["top", "idx"]),
    ]
    graph = helper.make_graph(
        nodes,
        "runtime_shape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("top", TensorProto.FLOAT, None)],
        inits,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_an_onnx_is_read_as_the_converters_prepare_it(tmp_path: Path) -> None:
    """Shapes computed at run time left the MatMul unshaped (18 MACs where it has 4.2 M): the graph is
    simplified with its input fixed, as the converters do. A free batch is 1 and said; free H/W without
    --input-shape, or a batch of 4, are bad input (exit 2: "MACs 0.0 M", "estimate 0.002 ms" before); ops the
    count leaves out are named."""
    conv, gram = 16 * 27 * 16 * 16, (16 * 16) ** 2 * 16
    path = _runtime_shape_onnx(tmp_path / "m.onnx", ["b", 3, 16, 16])
    cost = analyze(path)
    assert cost.macs_by_op == {"Conv": conv, "MatMul": gram}
    assert any("free batch dimension ('b') is taken as 1" in n for n in cost.notes)
    left_out = next(n for n in cost.notes if n.startswith("not in the MAC count"))
    for op in ("CumSum x1", "Erf x1", "TopK x1"):
        assert op in left_out, left_out
    out = _cli("roofline", str(path), "--board", "pi4", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["roofline"]["macs"] == conv + gram, out.stderr
    assert any("Erf" in n for n in json.loads(out.stdout)["estimate"]["caveats"])
    batch = _cli("estimate", str(path), "--board", "pi4", "--input-shape", "4,3,16,16")
    assert batch.returncode == 2 and "batch 4" in batch.stderr and "--input-shape 1,3,16,16" in batch.stderr

    free = _runtime_shape_onnx(tmp_path / "hw.onnx", ["b", 3, "h", "w"])
    for command in ("estimate", "roofline"):
        out = _cli(command, str(free), "--board", "pi5")
        assert (
            out.returncode == 2 and "free dimensions (h, w)" in out.stderr and "--input-shape" in out.stderr
        )
    assert analyze(free, [1, 3, 16, 16]).macs == conv + gram


def test_a_custom_domain_op_is_named_as_left_out_of_the_macs(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    value = [1, 3, 8, 8]
    graph = helper.make_graph(
        [helper.make_node("MyFancyOp", ["x"], ["y"], domain="com.me")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, value)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, value)],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.me", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(tmp_path / "custom.onnx"))
    out = _cli("roofline", str(tmp_path / "custom.onnx"), "--board", "pi4", "--json")
    assert out.returncode == 0, out.stderr
    assert any("com.me:MyFancyOp x1" in n for n in json.loads(out.stdout)["notes"])


def test_a_bare_param_labelled_ncnn_fp32_runs_and_is_counted_with_fp16_off(tmp_path: Path) -> None:
    """--format ncnn-fp32 on a .param without model.io.json changed the words only: it was counted with ncnn's
    defaults (fp16 arithmetic on the A76: 24.0 M instructions where edgekit's ncnn-fp32 of the same bytes counts
    45.4 M). It runs with ncnn-fp32's flags now, in the count (its cache key) and the bound; edgekit's own
    ncnn-fp32 artifact's bound is at fp32 from its sidecar (the A76's fp16 peak before)."""
    from edgekit.emu.plugin.counting import CountJob
    from edgekit.estimate.runs_as import runs_as

    param = write_chain(tmp_path / "bare", 2)
    fp32 = runs_as(param, Format.NCNN_FP32)
    assert fp32.count_options["use_fp16_arithmetic"] is False and fp32.precision is Precision.FP32
    assert fp32.storage_bytes == 4 and "fp16 storage and arithmetic off" in fp32.how
    unlabelled = runs_as(param, None)
    assert unlabelled.count_options == {} and unlabelled.precision is Precision.FP16
    shape = [1, CHANNELS, SIZE, SIZE]
    assert (
        CountJob(param, input_shape=shape, options=fp32.count_options).request()["options"]
        != (CountJob(param, input_shape=shape).request()["options"])
    )
    shaped = ["--input-shape", ",".join(map(str, shape))]
    out = _cli("roofline", str(param), "--board", "pi5", *shaped, "--format", "ncnn-fp32", "--json")
    assert out.returncode == 0 and json.loads(out.stdout)["roofline"]["precision"] == "fp32", out.stderr
    # an artifact with its sidecar: the sidecar's flags, whatever the format's defaults
    (tmp_path / "own").mkdir()
    own = write_chain(tmp_path / "own" / "model", 2)
    from edgekit.convert.ncnn.runtime import options_for

    sidecar = {"format": "ncnn-fp32", "input_shapes": [shape], "options": options_for(Format.NCNN_FP32)}
    own.with_suffix(".io.json").write_text(json.dumps(sidecar))
    out = _cli("roofline", str(own), "--board", "pi5", "--json")
    data = json.loads(out.stdout)["roofline"]
    assert data["precision"] == "fp32" and data["weight_storage_bytes"] == 4
    assert runs_as(own, Format.NCNN_FP32).count_options == {}  # the runner reads the sidecar's own flags


@pytest.mark.integration
def test_a_bare_param_labelled_ncnn_fp32_counts_what_edgekits_ncnn_fp32_counts(
    counted_chain: CountedChain,
) -> None:
    """The same bare .param counted with --format ncnn-fp32 (fp16 arithmetic off) and with ncnn's defaults (the
    count made for counted_chain) on the Pi 5's A76."""
    home = counted_chain.home_copy()
    fp32 = counted_chain.estimate(home, "pi5", "--format", "ncnn-fp32", "--json")
    default = counted_chain.pi5
    assert fp32.returncode == 0 and default.returncode == 0, fp32.stderr + default.stderr
    n32, n16 = (json.loads(o.stdout)["count"]["instructions"] for o in (fp32, default))
    # on the Pi 5's A76 (LLVM models it) the count's blocks are timed by llvm-mca and the estimate weighs the
    # cycle forms (the Pi 4's A72: none, test_estimate_command_counts_once_and_reuses_the_count)
    pi5 = json.loads(default.stdout)
    assert pi5["count"]["cycles"] > 0, "llvm-mca's cycles missing: llvm-mc/llvm-mca installed (`make setup`)?"
    assert any(name.startswith("cycles") for name in pi5["estimate"]["cross_validation"]["weights"])
    assert pi5["estimate"]["cross_validation"]["n"] == 17
    assert n32 > 1.3 * n16, (n32, n16)  # fp32 arithmetic on the A76: more instructions than ncnn's fp16
    # the calibration ran ncnn's defaults (fp16 arithmetic on the A76): fp32 kernels there are not validated
    said32, said16 = (json.loads(o.stdout)["estimate"]["caveats"] for o in (fp32, default))
    assert any("no calibration model ran on the cortex-a76" in c for c in said32), said32
    assert json.loads(fp32.stdout)["estimate"]["interval_calibrated"] is False
    assert not any("fp16 storage and arithmetic off" in c for c in said16), said16


def test_the_json_interval_is_the_one_stated_and_tiny_mac_estimates_say_what_they_lack() -> None:
    """A widened interval (an uncalibrated runtime, outside the size range) was printed while the JSON's
    cross_validation.interval kept the procedure's narrower one; a MAC-only estimate of a tiny model (0.004 ms)
    came with no word that the MAC forms carry no per-invocation overhead."""
    feats = cost_model.Features(
        1_889_963, 1_000, False, {}, 2_273_280, (1_063_390, 372_905, 66_572, 78_706, 308_390)
    )
    est = cost_model.estimate("pi5", feats, 1, fmt=Format.TFLITE_FP32).to_dict()
    lo, hi = est["low_ms"] / est["estimate_ms"], est["high_ms"] / est["estimate_ms"]
    cv = est["cross_validation"]
    down, up = (float(v) for v in cv["interval"].rstrip("%").lstrip("-").split("/+"))
    assert abs(down - 100 * (1 - lo)) < 1 and abs(up - 100 * (hi - 1)) < 1, (cv["interval"], lo, hi)
    assert up > 200 and cv["procedure_interval"] != cv["interval"]
    tiny = cost_model.estimate("pi4", cost_model.Features(0, 12_740, False, {}, 12_544), 1)
    assert tiny.estimate_ms < 0.01
    assert any("no per-invocation overhead" in c for c in tiny.caveats), tiny.caveats
    big = cost_model.estimate("pi4", cost_model.Features(0, 5_000_000, False, {}, 600_000_000), 1)
    assert not any("no per-invocation overhead" in c for c in big.caveats)


def test_roofline_text_ends_on_its_label_and_a_closed_pipe_ends_quietly(
    chain_roofline_pi5: tuple[Path, str],
) -> None:
    """The estimate line ended in a stray "estimate"; `roofline | head -1` exited 1 (rich's broken-pipe exit)."""
    onnx_path, text = chain_roofline_pi5
    line = " ".join(text.split("  estimate ")[1].split("\n  note")[0].split())
    assert line.endswith("the bound) MAC-based estimate, not a measurement"), line
    for extra in ((), ("--json",)):
        shell = f"{sys.executable} -m edgekit roofline {onnx_path} --board pi5 {' '.join(extra)} | head -c1 >/dev/null"
        done = subprocess.run(
            ["bash", "-c", f"set -o pipefail; {shell}; echo rc=$?"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert "rc=0" in done.stdout and "Error" not in done.stderr, (extra, done.stdout, done.stderr)
