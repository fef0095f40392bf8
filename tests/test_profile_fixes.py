"""`edgekit profile` fixes: one layer's name in an fp32 and an int8 TFLite profile, threads it cannot count
repeatably, ncnn's fixed per-inference cost, models with no layer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

# the digits model's ops as the converter wrote them (output tensor names), fp32 then int8
FP32 = [
    (
        "CONV_2D",
        "model_1/tf.nn.relu/Relu;model_1/tf.math.add/Add;model_1/tf.nn.convolution/convolution;Const_121",
    ),
    (
        "CONV_2D",
        "model_1/tf.nn.relu_1/Relu;model_1/tf.math.add_1/Add;model_1/tf.nn.convolution_1/convolution;Const_10",
    ),
    ("PAD", "model_1/tf.compat.v1.pad/Pad"),
    ("DEPTHWISE_CONV_2D", "model_1/tf.nn.relu_2/Relu;model_1/tf.compat.v1.nn.depthwise_conv2d/depthwise"),
    (
        "CONV_2D",
        "model_1/tf.nn.relu_3/Relu;model_1/tf.math.add_3/Add;model_1/tf.nn.convolution_3/convolution;Const_7",
    ),
    ("MEAN", "model_1/tf.math.reduce_mean/Mean"),
    ("FULLY_CONNECTED", "PartitionedCall:0"),
]
INT8 = [
    ("QUANTIZE", "tfl.quantize"),
    (
        "CONV_2D",
        "model_1/tf.nn.relu/Relu;model_1/tf.math.add/Add;model_1/tf.nn.convolution/convolution;Const_151",
    ),
    (
        "CONV_2D",
        "model_1/tf.nn.relu_1/Relu;model_1/tf.math.add_1/Add;model_1/tf.nn.convolution_1/convolution;Const_13",
    ),
    ("PAD", "model_1/tf.compat.v1.pad/Pad"),
    ("DEPTHWISE_CONV_2D", "model_1/tf.nn.relu_2/Relu;model_1/tf.compat.v1.nn.depthwise_conv2d/depthwise"),
    (
        "CONV_2D",
        "model_1/tf.nn.relu_3/Relu;model_1/tf.math.add_3/Add;model_1/tf.nn.convolution_3/convolution;Const_10",
    ),
    ("MEAN", "model_1/tf.math.reduce_mean/Mean"),
    ("FULLY_CONNECTED", "PartitionedCall:01"),
    ("DEQUANTIZE", "PartitionedCall:0"),
]


def _model(ops: list[tuple[str, str]]) -> Any:
    """A ModelT-shaped tree: what op_rows reads of one (opcodes, operators, output tensors)."""
    from edgekit.profile_tflite import _op_names, _schema

    codes = {name: code for code, name in _op_names(_schema()).items()}
    kinds = list(dict.fromkeys(kind for kind, _ in ops))
    return SimpleNamespace(
        operatorCodes=[
            SimpleNamespace(builtinCode=codes[k], deprecatedBuiltinCode=0, customCode=None) for k in kinds
        ],
        subgraphs=[
            SimpleNamespace(
                operators=[
                    SimpleNamespace(opcodeIndex=kinds.index(k), outputs=[i]) for i, (k, _) in enumerate(ops)
                ],
                tensors=[SimpleNamespace(name=n.encode(), shape=[1, 4], type=0) for _, n in ops],
            )
        ],
    )


def test_a_tflite_layer_has_one_name_in_its_fp32_and_int8_profiles() -> None:
    """Named after the bias constant, `Const_10` was the second convolution in fp32 and the fourth in int8;
    `PartitionedCall:0` the FULLY_CONNECTED in one and the DEQUANTIZE in the other."""
    from edgekit.profile_tflite import op_rows

    fp32 = {r["name"]: r["type"] for r in op_rows(_model(FP32))}
    int8 = {r["name"]: r["type"] for r in op_rows(_model(INT8))}
    assert len(fp32) == len(FP32) and len(int8) == len(INT8)  # unique within a profile
    assert all(int8.get(name) == kind for name, kind in fp32.items()), (fp32, int8)  # every fp32 layer, alike
    assert fp32["model_1/tf.nn.convolution_1/convolution"] == "CONV_2D"
    assert fp32["model_1/tf.compat.v1.nn.depthwise_conv2d/depthwise"] == "DEPTHWISE_CONV_2D"
    assert not any(name.startswith(("Const", "PartitionedCall")) for name in [*fp32, *int8])


def test_two_tflite_ops_of_one_tf_op_keep_apart() -> None:
    from edgekit.profile_tflite import op_rows

    names = [r["name"] for r in op_rows(_model([("PAD", "m/pad/Pad"), ("PAD", "m/pad/Pad;Const_3")]))]
    assert len(set(names)) == 2 and names[0] == "m/pad/Pad"


def _profile(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "profile", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_tflite_per_op_counts_above_one_thread_are_refused(tmp_path: Path) -> None:
    """At 4 threads two runs counted a DEQUANTIZE 45.66 k then 6.19 k and shares of 255 %, labelled "exact
    counts, differenced": refused, named (exit 2) before any file is read, as onnxruntime's are."""
    from edgekit.errors import UsageError
    from edgekit.profile_tflite import profile_tflite

    model = tmp_path / "model.tflite"
    model.write_bytes(b"\x00" * 64)  # never read: the threads are refused first
    done = _profile(str(model), "--target", "pi4-emu", "--threads", "4")
    assert done.returncode == 2, done.stdout + done.stderr
    said = " ".join(done.stderr.split())
    assert "UsageError" in said and "one thread only" in said and "--threads 1" in said and "ncnn" in said
    with pytest.raises(UsageError, match="one thread only"):
        profile_tflite(model, "pi4-emu", threads=2)


def _small_net(folder: Path) -> Path:
    """An ncnn net of two 3x3 convolutions (8 channels, 16x16, random weights) with its sidecar: the size of the
    tiny recipe's layers, whose work is not much beside ncnn's per-inference work."""
    import struct

    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["7767517", "3 3", "Input in0 0 1 in0 0=16 1=16 2=8"]
    lines += [
        "Convolution conv0 1 1 in0 b1 0=8 1=3 4=1 5=1 6=576 9=1",
        "Convolution conv1 1 1 b1 out0 0=8 1=3 4=1 5=1 6=576",
    ]
    weights = [
        struct.pack("<I", 0) + (rng.standard_normal(576) * 0.1).astype("<f4").tobytes() + bytes(32)
    ] * 2
    (folder / "model.param").write_text("\n".join(lines) + "\n")
    (folder / "model.bin").write_bytes(b"".join(weights))
    (folder / "model.io.json").write_text(
        '{"inputs": ["in0"], "outputs": ["out0"], "input_shapes": [[1, 8, 16, 16]], "options": {}}'
    )
    return folder / "model.param"


@pytest.mark.integration
def test_ncnn_profiles_count_the_per_inference_work_apart_from_the_layers(tmp_path: Path) -> None:
    """tiny ncnn-fp32 on pi5-emu: 'whole inference 180.84 k; 7 layers sum to 141.16 k (78.06 %)' and a false
    'not reliable' warning, the gap an Input-only net's 39.11 k: it is counted (as TFLite's and ONNX's empty
    graphs) and the layers judged against the rest."""
    from edgekit.emu import layout
    from edgekit.emu.plugin import build as plugin_build
    from edgekit.profile import profile_ncnn
    from edgekit.profile_table import format_table

    if not (plugin_build.is_built() and layout.device_dir("pi4-emu").python.exists()):
        pytest.fail("the counting plugin or pi4-emu is not built: make setup builds them")
    prof = profile_ncnn(_small_net(tmp_path), "pi4-emu")
    assert [layer.name for layer in prof.layers] == ["conv0", "conv1"]
    assert 0 < prof.fixed < prof.total, (prof.fixed, prof.total, prof.layer_sum)
    assert 0.8 <= prof.coverage <= 1.2, (prof.fixed, prof.total, prof.layer_sum)
    table = "\n".join(format_table(prof))
    assert "ncnn's own per-inference work" in table and "not reliable" not in table
    assert (
        abs(sum(prof.share(layer) for layer in prof.layers) - prof.coverage) < 1e-9
    )  # shares on the same base


@pytest.mark.integration
def test_the_input_only_net_is_counted_once_for_artifacts_that_share_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ncnn profile ran a second guest for its Input-only net (4.5 s on pi4-emu), the same net for each
    artifact of one model and options: a speed plan's five profiles ran it five times. Now once a process per net
    (its .param and sidecar, core, threads, shape); another model's sidecar is another net, counted again."""
    from edgekit import profile

    runs: list[str] = []
    real = profile._run_guest

    def counted(param: Path, *args: object, **kwargs: object) -> dict[str, object]:
        runs.append(param.name)
        return real(param, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(profile, "_run_guest", counted)
    monkeypatch.setattr(profile, "_INPUT_ONLY", {})
    first = profile.profile_ncnn(_small_net(tmp_path / "a"), "pi4-emu")
    again = profile.profile_ncnn(
        _small_net(tmp_path / "b"), "pi4-emu"
    )  # another artifact, same net and options
    assert runs == ["model.param", "input_only.param", "model.param"], runs
    assert again.fixed == first.fixed and again.total > again.fixed
    other = _small_net(tmp_path / "c")
    other.with_suffix(".io.json").write_text(
        '{"inputs": ["in0"], "outputs": ["out0"], "input_shapes": [[1, 8, 16, 16]], "options": {"use_fp16_storage": '
        "false}}"
    )
    profile.profile_ncnn(other, "pi4-emu")
    assert runs[3:] == ["model.param", "input_only.param"], runs


@pytest.mark.parametrize(("target", "cores"), [("pi4-emu", 4), ("pi5-emu", 4)])
def test_more_threads_than_the_emulated_board_has_cores_are_refused(
    tmp_path: Path, target: str, cores: int
) -> None:
    """`--threads 8` on pi4-emu reported an 8-way split of a 4-core A72 and the layers that gain little from
    more threads judged against it: refused, naming the cores (exit 2)."""
    param = _small_net(tmp_path / "net")
    done = _profile(str(param), "--target", target, "--threads", str(cores + 4))
    assert done.returncode == 2, done.stdout[-1500:] + done.stderr[-1500:]
    said = " ".join(done.stderr.split())
    assert "UsageError" in said and f"{cores} cores" in said and f"--threads {cores} or fewer" in said


def test_an_ncnn_model_with_no_layer_is_refused(tmp_path: Path) -> None:
    """An Input-only .param exited 0 with an empty table and the 'not reliable' warning; a node-less ONNX graph
    is refused (exit 2): so is it."""
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "model.param").write_text("7767517\n1 1\nInput in0 0 1 in0 0=16 1=16 2=1\n")
    (folder / "model.bin").write_bytes(b"")
    done = _profile(str(folder / "model.param"), "--target", "pi4-emu", "--input-shape", "1,1,16,16")
    assert done.returncode == 2, done.stdout[-1500:] + done.stderr[-1500:]
    assert "the model has no layer to profile" in " ".join(done.stderr.split())


def test_a_whole_inference_that_is_the_runtimes_own_work_has_nothing_to_split() -> None:
    """ONNX with one Identity: 'whole inference 39.18 k instructions, of which 40.17 k onnxruntime's own per-run
    work', its node at 0.00 % and the 'not reliable' warning."""
    from edgekit.profile import LayerProfile, Profile
    from edgekit.profile_table import format_table

    node = LayerProfile("y", "Identity", [1, 1, 4, 4], "fp32", 0)
    prof = Profile("id.onnx", "pi5-emu", "cortex-a76", 1, total=39180, layers=[node], fixed=40170)
    table = "\n".join(format_table(prof))
    assert "nothing to split" in table and "within the count's noise" in table, table
    assert "not reliable" not in table and "%" not in table
    assert prof.to_dict()["nothing_to_split"] is True
    prof.total, prof.fixed, node.instructions = 180840, 39110, 141730  # a model with work: split as before
    table = "\n".join(format_table(prof))
    assert "nothing to split" not in table and "100.00% of the rest" in table and "not reliable" not in table


def test_the_speed_plans_layer_counts_say_they_are_the_all_int8_models() -> None:
    """A layer's int8 count in int8.speed_plan comes from the all-int8 artifact (16-22 % under a profile of the
    shipped one beside float neighbours): the recorded plan and its reasons say so."""
    from edgekit.convert.ncnn.plan import choose
    from edgekit.profile import LayerProfile, Profile

    def prof(n: int) -> Profile:
        return Profile(
            "m.param", "pi4-emu", "cortex-a72", 1, 100, [LayerProfile("conv0", "Convolution", [8], "fp32", n)]
        )

    plan = choose({"pi4-emu": prof(30)}, {"pi4-emu": prof(20)}, {"pi4-emu": 0.01}, ["conv0"])
    assert "counted in the all-int8 model" in plan.layers[0].reason
    assert "counted in the all-int8 model" in plan.to_dict()["layer_counts"]
    assert "counted in the all-int8 model" in plan.notes()[0]
    assert not plan.layers[0].int8  # no behaviour change: float where its int8 kernel counts more
