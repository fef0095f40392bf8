"""NCNN INT8 must be faster than fp32 where it ships: the speed plan and the shipped recipes' counts.

Unit: the plan keeps a layer int8 only where its int8 window counts fewer instructions than its float one,
weighted per core. Integration (the emulated cores and the counting plugin from set-up): each shipped recipe's
ncnn-int8 artifact counts fewer guest instructions per inference than its ncnn-fp32 on pi4-emu (Cortex-A72)
and pi5-emu (Cortex-A76), one thread; and `edgekit profile`'s layers add up to the whole inference.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgekit.convert.ncnn.plan import choose, weighted
from edgekit.profile import LayerProfile, Profile
from edgekit.profile_table import format_table

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
DEVICES = ("pi4-emu", "pi5-emu")


@pytest.fixture(autouse=True, scope="module")
def speed_plan_on() -> Iterator[None]:
    """The suite turns the plan off (tests/conftest.py); these tests are the plan's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEKIT_NCNN_SPEED_PLAN", "1")
        yield


def _profile(device: str, counts: dict[str, int]) -> Profile:
    layers = [LayerProfile(name, "Convolution", [8, 4, 4], "int8", n) for name, n in counts.items()]
    return Profile("m.param", device, "cpu", 1, sum(counts.values()), layers)


def test_plan_keeps_int8_only_where_it_counts_fewer_instructions_weighted_per_core() -> None:
    int8 = {
        "a72": _profile("a72", {"a": 100, "b": 300, "c": 50}),
        "a76": _profile("a76", {"a": 40, "b": 100, "c": 60}),
    }
    floats = {
        "a72": _profile("a72", {"a": 200, "b": 250, "c": 40}),
        "a76": _profile("a76", {"a": 100, "b": 20, "c": 50}),
    }
    weights = {"a72": 1 / 1000, "a76": 1 / 500}
    plan = choose(int8, floats, weights, ["a", "b", "c"])
    assert plan.float_layers == ["b", "c"]  # a wins on both; b and c lose on both
    assert plan.layers[0].counts == {"a72": {"int8": 100, "float": 200}, "a76": {"int8": 40, "float": 100}}
    # a layer slower on one core only: the weights decide (a76 counts twice as much per instruction here)
    mixed = choose(
        {"a72": _profile("a72", {"d": 100}), "a76": _profile("a76", {"d": 100})},
        {"a72": _profile("a72", {"d": 190}), "a76": _profile("a76", {"d": 60})},
        weights,
        ["d"],
    )
    assert mixed.float_layers == []  # +90/1000 on the A72 outweighs -40/500 on the A76
    assert weighted({"a72": 1000, "a76": 500}, weights) == 2.0


def test_the_float_graph_is_counted_apart_only_on_cores_with_fp16_arithmetic() -> None:
    """ncnn runs the float graph in fp16 only where the core has fp16 arithmetic (asimdhp): there the plan counts
    it under the int8 artifact's options; on the A72 the fp32 model's own profile serves (the two counted
    139,747,127 and 139,739,726 instructions on yolov5-lite), one guest run fewer."""
    from edgekit.convert.ncnn.plan_counts import float_runs_as_fp32, guest_runs

    assert float_runs_as_fp32("pi4-emu") and not float_runs_as_fp32("pi5-emu")
    assert not float_runs_as_fp32("a-board-edgekit-does-not-know")  # unknown: counted, not assumed
    assert guest_runs() == 5


def _finding(tmp_path: Path, plan: dict) -> str:
    from edgekit.convert.findings import speed_plan_finding
    from edgekit.formats import Format

    io = tmp_path / "model.io.json"
    io.write_text(json.dumps({"int8": {"speed_plan": plan}}))
    text = speed_plan_finding(Format.NCNN_INT8, [tmp_path / "model.param", tmp_path / "model.bin", io])
    assert text is not None
    return text


def test_the_speed_plan_kept_is_a_finding_that_says_a_core_int8_does_not_help(tmp_path: Path) -> None:
    """The plan's per-core outcome was in model.io.json only: a shipped ncnn-int8 at 1.001x fp32's instructions on
    the A72 looked like a gain. The finding says each core's ratio, and where int8 counts no fewer."""
    from edgekit.convert.findings import speed_plan_finding
    from edgekit.formats import Format

    plan = {
        "kept": "planned",
        "totals": {
            "pi4-emu": {"fp32": 1000, "all_int8": 1300, "planned": 1001},
            "pi5-emu": {"fp32": 1000, "all_int8": 600, "planned": 513},
        },
        "layers": [{"name": str(i)} for i in range(12)],
        "float_layers": [str(i) for i in range(9)],
    }
    text = _finding(tmp_path, plan)
    assert (
        "pi4-emu 1.00x (no fewer instructions than ncnn-fp32 there)" in text and "pi5-emu 1.95x;" in text
    ), text
    assert "9 of 12 quantizable layers float" in text
    io = tmp_path / "model.io.json"
    assert speed_plan_finding(Format.NCNN_FP32, [io]) is None
    io.write_text(json.dumps({"int8": {}}))  # no plan (no emulated cores at conversion): nothing to say
    assert speed_plan_finding(Format.NCNN_INT8, [io]) is None


def test_the_speed_plan_finding_reads_as_deploys_x_fp32_by_insn(tmp_path: Path) -> None:
    """convert said `pi4-emu 0.959x, pi5-emu 0.421x` (int8/fp32: lower is fewer) of the mobilenetv2 artifact whose
    `x fp32 by insn` deploy shows as 1.04x and 2.37x (fp32/int8: higher is fewer, the README's rule); and of a plan
    that kept the fp32 model, `1.000x (no fewer: ncnn-fp32 is as fast or faster there)`, a count said as speed.
    Now the same ratio as deploy's, said as instructions, never as speed."""
    mobilenetv2 = {  # the reviewer's conversion, counted on both emulated cores
        "kept": "planned",
        "totals": {
            "pi4-emu": {"fp32": 101218201, "all_int8": 98747871, "planned": 97038691},
            "pi5-emu": {"fp32": 101215820, "all_int8": 50325072, "planned": 42654197},
        },
        "layers": [{"name": str(i)} for i in range(53)],
        "float_layers": [str(i) for i in range(26)],
    }
    text = _finding(tmp_path, mobilenetv2)
    assert text.startswith("speed plan, x fp32 by insn (ncnn-fp32's guest instructions / this artifact's"), (
        text
    )
    assert "above 1: fewer): pi4-emu 1.04x, pi5-emu 2.37x; 26 of 53 quantizable layers float" in text, text
    fp32_kept = {  # tiny: the plan kept no layer int8, the fp32 model ships
        "kept": "fp32",
        "totals": {d: {"fp32": 2287050, "all_int8": 2458964, "planned": 2286171} for d in DEVICES},
        "layers": [{"name": str(i)} for i in range(5)],
        "float_layers": [str(i) for i in range(5)],
    }
    text = _finding(tmp_path, fp32_kept)
    assert "pi4-emu 1.00x, pi5-emu 1.00x; no layer of 5 int8 (the plan kept none)" in text, text
    for said in (_finding(tmp_path, mobilenetv2), text):
        assert not any(word in said for word in ("fast", "slow")), said


def test_profile_table_names_the_top_layers_with_their_share() -> None:
    prof = _profile("pi4-emu", {"small": 10, "big": 70, "mid": 20})
    lines = format_table(prof, top=2)
    assert "big" in lines[2] and "70.0%" in lines[2] and "mid" in lines[3]
    assert not any("small" in line for line in lines[2:4])
    assert prof.coverage == 1.0
    assert "k insns" in lines[1]  # 100 instructions: not 0.00 M


def test_profile_names_cut_to_the_column_stay_distinct() -> None:
    """Two ops whose names end alike both showed `…at.v1.transpose_3/transpose`: such names keep their start."""
    from edgekit.profile_table import short_names

    a, b = (
        "model/attn_a/tf.compat.v1.transpose_3/transpose",
        "model/attn_b/tf.compat.v1.transpose_3/transpose",
    )
    got = short_names([a, b, "short", "x" * 40], 28)
    assert len({*got}) == 4 and all(len(n) <= 28 for n in got), got
    assert got[0] != got[1] and got[2] == "short" and got[3] == "…" + "x" * 27


@pytest.fixture(scope="module")
def counting_ready() -> None:
    from edgekit.convert.ncnn import plan as ncnn_plan

    if not ncnn_plan.enabled():
        pytest.fail("the counting plugin or an emulated core is not built: make setup builds them")


# The shipped recipes the suite plans: a Keras-trained model (its ONNX comes through tf2onnx; the plan keeps 5 of
# its 7 layers float: the digests and float leftovers of a planned artifact) and the smallest model (every layer
# float: the fp32 model shipped). The others run the same plan code: the detector, yolov5-lite (82 layers, 72 s of
# the suite's host worker), is bench/ncnn_speed_plan.py's, with these same checks, its constant MemoryData blobs
# test_a_detectors_constant_blobs_are_no_float_leftovers' below; mobilenetv2 (140 s of counting) and digits (45 s)
# are torch-exported classifiers as tiny is; `make quantize` plans every recipe.
SUITE_PLANS = ("digits-keras", "tiny")


def _shipped_int8_recipes() -> list[Path]:
    from edgekit.recipe import load_recipe

    shipped = [
        p for p in sorted(RECIPES.glob("*.yaml")) if "ncnn-int8" in [f.value for f in load_recipe(p).formats]
    ]
    return [p for p in shipped if p.stem in SUITE_PLANS]


def test_the_suites_plans_are_shipped_int8_recipes() -> None:
    """A recipe renamed or no longer shipping ncnn-int8 would silently leave the plan untested on it."""
    assert sorted(p.stem for p in _shipped_int8_recipes()) == sorted(SUITE_PLANS)


def test_a_detectors_constant_blobs_are_no_float_leftovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A detector's grid constants are ncnn MemoryData layers, which have no int8 form: yolov5-lite's finding said
    32 float leftovers for the plan's 26 float layers. An all-int8 ncnn-int8 (the plan off) of a convolution plus
    such a constant has no float leftover."""
    import numpy as np
    import onnx
    import yaml
    from onnx import TensorProto, helper, numpy_helper

    from edgekit.convert.pipeline import convert_recipe
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe

    monkeypatch.setenv("EDGEKIT_NCNN_SPEED_PLAN", "0")  # all-int8: no layer kept float by the plan
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(np.zeros(8, np.float32), "b"),
        numpy_helper.from_array(rng.normal(0, 1, (1, 8, 16, 16)).astype(np.float32), "grid"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Add", ["c", "grid"], ["boxes"]),
    ]
    graph = helper.make_graph(
        nodes,
        "det",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 8, 16, 16])],
        inits,
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "det.onnx")
    )
    raw = {
        "name": "det",
        "task": "classify",
        "model": {"kind": "onnx", "path": "det.onnx"},
        "input": {"name": "input", "shape": [1, 3, 16, 16]},
        "outputs": ["boxes"],
        "formats": ["ncnn-int8"],
        "calibration": {"data": {"kind": "random", "samples": 4, "seed": 0}},
        "evaluation": {"data": {"kind": "random", "samples": 4, "seed": 1}},
    }
    (tmp_path / "det.yaml").write_text(yaml.safe_dump(raw))
    (int8,) = convert_recipe(load_recipe(tmp_path / "det.yaml"), [Format.NCNN_INT8])
    assert int8.status == "ok", int8.error
    assert "MemoryData" in int8.files[0].read_text()
    findings = int8.provenance["findings"]
    assert not [f for f in findings if f.startswith("float leftovers: ")], findings


@pytest.mark.integration
@pytest.mark.parametrize("recipe_path", _shipped_int8_recipes(), ids=lambda p: p.stem)
def test_shipped_ncnn_int8_never_counts_more_instructions_than_fp32(
    counting_ready: None, recipe_path: Path
) -> None:
    from edgekit.convert.pipeline import convert_recipe
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    said: list[str] = []
    fp32, int8 = convert_recipe(recipe, [Format.NCNN_FP32, Format.NCNN_INT8], progress=said.append)
    assert int8.status == "ok", int8.error  # the recipe's int8 gates pass
    plan_lines = [
        m for m in said if m.startswith("ncnn-int8: speed plan:")
    ]  # the long count says what it does
    assert "counting the" in plan_lines[0] and "kept" in plan_lines[-1], said
    # no minute of silence while it counts: 5 guest runs, as the A72 runs the float graph as fp32 does
    assert any("of 5 guest runs counted" in m for m in plan_lines), said
    # what the plan kept reaches the user: a finding under convert's table, per core (it was in the sidecar only)
    said_plan = [f for f in int8.provenance["findings"] if f.startswith("speed plan, x fp32 by insn")]
    assert said_plan and all(d in said_plan[0] for d in DEVICES), int8.provenance["findings"]
    floats = len(json.loads(int8.files[2].read_text())["int8"]["speed_plan"]["float_layers"])
    leftovers = [f for f in int8.provenance["findings"] if f.startswith("float leftovers: ")]
    if (
        floats
    ):  # the layers left float are the plan's: a detector's constant MemoryData blobs are no layers of it
        assert leftovers and leftovers[0].startswith(f"float leftovers: {floats} layer"), (floats, leftovers)
    report = json.loads(int8.files[2].read_text())["int8"]
    int8_at = report["layer_fields"].index("int8")  # layers are rows of layer_fields
    if not any(row[int8_at] for row in report["layers"]):
        # int8 lost on every layer (a tiny model): the artifact must then be the fp32 model itself; its count can
        # differ by a few hundred instructions only through the sidecar's size (heap state), so compare files
        assert [f.read_bytes() for f in int8.files[:2]] == [f.read_bytes() for f in fp32.files[:2]]
        return
    # the plan counted these very files on each core (profiles sum to the count of a plain run:
    # test_plan_profiles_side_by_side_are_the_ones_counted_alone); the digests tie its totals to the files shipped
    from edgekit.convert.ncnn.plan import SpeedPlan, kept_key
    from edgekit.convert.ncnn.plan_counts import digest

    plan = report["speed_plan"]
    key = kept_key(SpeedPlan(devices=plan["devices"], weights=plan["weights"], kept=plan["kept"]))
    assert plan["digests"][key] == digest(int8.files[0]), "the kept artifact is not the one the plan counted"
    assert plan["digests"]["fp32"] == digest(fp32.files[0]), (
        "the plan's fp32 model is not the ncnn-fp32 artifact"
    )
    assert sorted(plan["totals"]) == sorted(DEVICES)
    for device in DEVICES:
        totals = plan["totals"][device]
        assert totals[key] <= totals["fp32"], (
            f"{recipe.name} ncnn-int8 counts {totals[key]:,} instructions on {device}, ncnn-fp32 {totals['fp32']:,}"
        )


def _conv_chain(folder: Path, kernels: tuple[int, ...]) -> Path:
    """An ncnn model of 16-channel convolutions on a 64x64 input, with random weights and its sidecar."""
    import struct

    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["7767517", f"{len(kernels) + 1} {len(kernels) + 1}", "Input in0 0 1 in0 0=64 1=64 2=16"]
    blobs = []
    last = len(kernels) - 1
    for i, k in enumerate(kernels):
        n = 16 * 16 * k * k
        lines.append(
            f"Convolution conv{i} 1 1 {'in0' if i == 0 else f'b{i}'} {f'b{i + 1}' if i < last else 'out0'} "
            f"0=16 1={k} 4={k // 2} 5=1 6={n} 9=1"
        )
        blobs += [
            struct.pack("<I", 0),
            (rng.standard_normal(n) * 0.1).astype("<f4").tobytes(),
            np.zeros(16, "<f4").tobytes(),
        ]
    (folder / "model.param").write_text("\n".join(lines) + "\n")
    (folder / "model.bin").write_bytes(b"".join(blobs))
    (folder / "model.io.json").write_text(
        '{"inputs": ["in0"], "outputs": ["out0"], "input_shapes": [[1, 16, 64, 64]], "options": {}}'
    )
    return folder / "model.param"


@pytest.fixture(scope="module")
def chain_313(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The 3x3, 1x1, 3x3 chain (big enough that layers dominate); tests only read it."""
    return _conv_chain(tmp_path_factory.mktemp("chain313"), (3, 1, 3))


@pytest.fixture(scope="module")
def chain_313_on_a72(counting_ready: None, chain_313: Path) -> Profile:
    """chain_313 counted alone on pi4-emu, once for the module: the profile test reads it and counts the chain a
    second time (the counts are exact), and the side-by-side test compares its pi4-emu profile with it."""
    from edgekit.profile import profile_ncnn

    return profile_ncnn(chain_313, "pi4-emu")


@pytest.mark.integration
def test_profile_layers_add_up_to_the_whole_inference(chain_313: Path, chain_313_on_a72: Profile) -> None:
    from edgekit.profile import profile_ncnn
    from edgekit.profile_table import serial_layers

    param, prof = chain_313, chain_313_on_a72
    assert [layer.name for layer in prof.layers] == ["conv0", "conv1", "conv2"]
    assert prof.layers[0].shape == [16, 64, 64] and prof.layers[0].precision == "fp32"
    assert prof.layers[0].instructions > 2 * prof.layers[1].instructions  # 3x3 vs 1x1 on the same shape
    assert abs(prof.coverage - 1.0) < 0.05
    assert all(layer.busiest_share is None for layer in prof.layers) and not serial_layers(prof)
    assert "busiest thread" not in "\n".join(format_table(prof, 3))
    again = profile_ncnn(param, "pi4-emu")
    assert [la.instructions for la in again.layers] == [la.instructions for la in prof.layers]  # exact


@pytest.mark.integration
def test_a_detector_that_finds_nothing_is_profiled(counting_ready: None) -> None:
    """ncnn's mobilenet_ssd with zero weights detects nothing: its DetectionOutput's blob is empty, ncnn ran the
    layer again on the twin extraction and the profile failed ('ncnn failed to compute blob output'). An empty
    result is a result: the layer is counted, the layers still add up to the whole."""
    from edgekit.estimate import calibration
    from edgekit.profile import profile_ncnn

    param = calibration.zero_weights(calibration.models()["mobilenet_ssd"])
    prof = profile_ncnn(param, "pi4-emu", input_shape=[1, 3, 96, 96])  # small: the layers, not their size
    (found,) = [layer for layer in prof.layers if layer.type == "DetectionOutput"]
    assert found.shape == [] and 0 < found.instructions < prof.total / 100
    assert abs(prof.coverage - 1.0) < 0.01


@pytest.mark.integration
def test_a_profile_at_four_threads_names_the_layers_one_thread_does_alone(counting_ready: None) -> None:
    """At N threads each layer's own instructions are split by guest thread: blazeface's first convolution on the
    A76 (36 % of its work) has its busiest thread do 84 % of it, which no whole-inference figure shows (the whole
    run's busiest thread: 39 %); its other layers split near evenly (at one thread there is no split: the 1-thread profile tests)."""
    from edgekit.estimate import calibration
    from edgekit.profile import profile_ncnn
    from edgekit.profile_table import format_table, serial_layers

    model = calibration.models()["blazeface"]
    param = calibration.zero_weights(model)
    prof = profile_ncnn(param, "pi5-emu", threads=4, input_shape=model.input_shape)
    first = max(prof.layers, key=lambda layer: layer.instructions)
    assert first.type == "Convolution" and first.busiest_share is not None and first.busiest_share > 0.6
    big = [layer for layer in prof.layers if prof.share(layer) >= 0.02 and layer is not first]
    assert big and all(0.25 <= (layer.busiest_share or 0) < 0.5 for layer in big), big
    assert [layer.name for layer in serial_layers(prof)] == [first.name]
    text = "\n".join(format_table(prof, 3))
    assert "busiest thread" in text.splitlines()[1] and f"{first.busiest_share:.0%}" in text.splitlines()[2]
    assert "not exactly repeatable" in text.splitlines()[0]
    assert f"gain little from more threads (busiest thread over twice an even split): {first.name} (" in text


@pytest.mark.integration
def test_profile_of_a_bare_param_takes_its_input_shape(counting_ready: None, tmp_path: Path) -> None:
    """A .param without edgekit's sidecar profiles from --input-shape, the way benchncnn runs it (input 0.01);
    without the shape it is a usage error (exit 2) that names the flag."""
    import subprocess
    import sys

    param = _conv_chain(tmp_path, (3, 1))
    param.with_suffix(".io.json").unlink()
    cli = [sys.executable, "-m", "edgekit", "profile", str(param), "--target", "pi4-emu"]
    missing = subprocess.run(cli, capture_output=True, text=True, timeout=600)
    assert missing.returncode == 2 and "--input-shape" in missing.stderr, missing.stderr
    out = subprocess.run(
        [*cli, "--input-shape", "1,16,64,64", "--json"], capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr
    prof = json.loads(out.stdout)
    layers = {la["name"]: la for la in prof["layers"]}
    assert set(layers) == {"conv0", "conv1"} and layers["conv0"]["shape"] == [16, 64, 64]
    assert layers["conv0"]["instructions"] > 2 * layers["conv1"]["instructions"]


@pytest.mark.integration
def test_profile_stops_at_its_timeout_with_a_named_error(counting_ready: None, tmp_path: Path) -> None:
    """--timeout bounds the counting run (profile had no way to bound it but the 1-hour default): past it the
    run stops, exit 1, and the message says how long it waited and which flag gives it longer; a bad value is
    refused as bench refuses it (exit 2)."""
    import subprocess
    import sys
    import time

    param = _conv_chain(tmp_path, (3, 1))
    cli = [sys.executable, "-m", "edgekit", "profile", str(param), "--target", "pi4-emu"]
    start = time.monotonic()
    out = subprocess.run([*cli, "--timeout", "0.5"], capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr
    assert "outlived 0.5 s" in out.stderr and "--timeout" in out.stderr, out.stderr
    assert "--repeat" not in out.stderr  # an option profile does not have was named
    assert time.monotonic() - start < 60
    bad = subprocess.run([*cli, "--timeout", "nan"], capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "--timeout" in bad.stderr, bad.stderr


@pytest.mark.integration
def test_plan_profiles_side_by_side_are_the_ones_counted_alone(
    chain_313: Path, chain_313_on_a72: Profile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The speed plan runs its guests two at a time: each profile must be its own artifact's, on its own core,
    and count exactly what it counts alone (a's count alone on pi4-emu is the module's, counted once)."""
    from edgekit.convert.ncnn.plan_counts import profiles_of
    from edgekit.profile import profile_ncnn

    a, b = chain_313, _conv_chain(tmp_path / "b", (1, 1))
    monkeypatch.setenv("EDGEKIT_PLAN_GUESTS", "2")
    side_by_side = profiles_of([a, b])
    assert [sorted(p) for p in side_by_side] == [sorted(DEVICES)] * 2
    assert [p.device for p in side_by_side[0].values()] == list(DEVICES)
    assert [len(p.layers) for p in side_by_side[0].values()] == [3, 3]
    assert [len(p.layers) for p in side_by_side[1].values()] == [2, 2]
    # each artifact and each core checked once against a count alone: a on the A72 (the module's count), b on the A76
    for got, alone in (
        (side_by_side[0]["pi4-emu"], chain_313_on_a72),
        (side_by_side[1]["pi5-emu"], profile_ncnn(b, "pi5-emu")),
    ):
        assert got.device == alone.device
        assert [la.instructions for la in got.layers] == [la.instructions for la in alone.layers]
        assert got.total == alone.total
    # the cores differ: a profile filed under the wrong core would not match its count alone
    assert side_by_side[0]["pi4-emu"].total != side_by_side[0]["pi5-emu"].total


@pytest.mark.integration
def test_analyze_of_an_int8_artifact_the_plan_kept_all_float_says_so(
    counting_ready: None, tmp_path: Path
) -> None:
    """The tiny recipe's five layers all count fewer instructions in float: its ncnn-int8 holds no int8 layer,
    and `analyze` says so instead of printing an empty table of "worst layers"."""
    from typer.testing import CliRunner

    from edgekit.cli import app

    out = CliRunner().invoke(
        app,
        ["analyze", str(RECIPES / "tiny.yaml"), "--format", "ncnn-int8", "--json", str(tmp_path / "a.json")],
    )
    assert out.exit_code == 0, out.output
    layers = json.loads((tmp_path / "a.json").read_text())["analysis"]["layers"]
    assert layers and not any(layer["quantized"] for layer in layers)
    assert "no layer of this artifact is quantized" in out.output and "worst of" not in out.output


def test_a_cached_artifacts_speed_plan_finding_is_said_again_from_its_sidecar(tmp_path: Path) -> None:
    """The reviewer's cached mobilenetv2 ncnn-int8 went on printing the finding stored when it was converted
    ('pi4-emu 0.959x, pi5-emu 0.421x', int8/fp32) after the words changed: a cache hit says it again from the
    sidecar, the other findings kept as they are."""
    from edgekit.convert.pipeline import with_plan_finding
    from edgekit.formats import Format

    plan = {
        "kept": "all-int8",
        "totals": {"pi4-emu": {"fp32": 1000, "all_int8": 980}, "pi5-emu": {"fp32": 1000, "all_int8": 500}},
        "layers": [{"name": "a"}, {"name": "b"}],
        "float_layers": ["a"],  # an all-int8 sidecar written before every choice said int8
    }
    current = _finding(tmp_path, plan)
    old = (
        "speed plan (guest instructions, 1 thread, vs ncnn-fp32): pi4-emu 0.980x, pi5-emu 0.500x; 1 of 2 "
        "quantizable layers float (their int8 kernels count more)"
    )
    leftovers = "float leftovers: 1 layer (1 Convolution) hold 0.001 MB of 0.002 MB (50.0 %)"
    files = [tmp_path / "model.param", tmp_path / "model.bin", tmp_path / "model.io.json"]
    again = with_plan_finding({"findings": [old, leftovers], "tools": {}}, Format.NCNN_INT8, files)
    assert again["findings"] == [current, leftovers] and again["tools"] == {}, again
    assert "pi4-emu 1.02x, pi5-emu 2.00x; all 2 quantizable layers int8" in current, current
    untouched = {"findings": [leftovers]}
    assert with_plan_finding(untouched, Format.NCNN_INT8, files) == untouched  # no plan said: none added
