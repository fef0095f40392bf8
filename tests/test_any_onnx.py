"""Any ONNX in: a user's ONNX is fixed to the recipe's input shape, simplified and shape-inferred for the converters
while the file as given stays the fidelity reference; onnx2tf's traps (Erf from GELU, runtime Shape/Gather
arithmetic) handled; Flex ops and float leftovers are named findings; a converter's failure names its cause
first, once for all the formats it concerns."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import onnx
import pytest
import yaml
from onnx_graphs import gelu_classifier, shuffle_classifier

from edgekit.errors import ConversionError, RecipeError
from edgekit.formats import Format
from edgekit.recipe import load_recipe


def onnx_recipe(tmp_path: Path, model: Path, formats: list[str], **changes: Any) -> Path:
    raw: dict[str, Any] = {
        "name": model.stem,
        "task": "classify",
        "model": {"kind": "onnx", "path": model.name},
        "input": {"name": "input", "shape": [1, 3, 16, 16]},
        "formats": formats,
        "evaluation": {"data": {"kind": "random", "samples": 4, "seed": 1}},
        **changes,
    }
    path = tmp_path / f"{model.stem}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_user_onnx_is_simplified_and_the_original_kept_as_reference(tmp_path: Path) -> None:
    from edgekit.convert.onnx import prepare_onnx

    recipe = load_recipe(onnx_recipe(tmp_path, shuffle_classifier(tmp_path / "shuffle.onnx"), ["ncnn-fp32"]))
    model = prepare_onnx(recipe)
    assert model.reference is not None and model.reference_path != model.path
    original = [n.op_type for n in onnx.load(str(model.reference_path)).graph.node]
    simplified = onnx.load(str(model.path))
    assert "Shape" in original and "Shape" not in [n.op_type for n in simplified.graph.node]
    dims = [d.dim_value for d in simplified.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 16, 16] and model.simplifier and "onnxsim" in model.simplifier
    assert prepare_onnx(recipe).cached


def test_a_damaged_fidelity_reference_is_made_again_and_keys_the_cached_fidelity(tmp_path: Path) -> None:
    """The cached original.onnx (every artifact's fidelity reference) was only checked to exist: rewritten with
    another model's bytes it was served, its wrong fidelity numbers (cosine 0.98, FAIL for an exact copy) were
    cached and outlived its repair, and a truncated one failed every later run. It is hashed as the model is,
    made again when it changed, and the cached fidelity numbers are keyed by it."""
    from edgekit.convert.fidelity_stage import fidelity_digest
    from edgekit.convert.onnx import prepare_onnx

    given = shuffle_classifier(tmp_path / "shuffle.onnx")
    recipe = load_recipe(onnx_recipe(tmp_path, given, ["onnx-fp32"]))
    model = prepare_onnx(recipe)
    assert model.reference is not None and model.reference_sha256
    assert prepare_onnx(recipe).cached
    for damage in (gelu_classifier(tmp_path / "other.onnx").read_bytes(), given.read_bytes()[:200]):
        model.reference.write_bytes(damage)
        again = prepare_onnx(recipe)
        assert not again.cached and again.reference is not None  # noticed and made again
        assert onnx.load(str(again.reference)).graph == onnx.load(str(given)).graph
        assert again.reference_sha256 == model.reference_sha256
    data = "d" * 64
    assert fidelity_digest(data, recipe, Format.ONNX_FP32, "a") != fidelity_digest(
        data, recipe, Format.ONNX_FP32, "b"
    )


@pytest.mark.integration
def test_channel_shuffle_and_gelu_convert(tmp_path: Path) -> None:
    from edgekit.convert.pipeline import convert_recipe

    for build in (shuffle_classifier, gelu_classifier):
        recipe = load_recipe(
            onnx_recipe(tmp_path, build(tmp_path / f"{build.__name__}.onnx"), ["tflite-fp32", "ncnn-fp32"])
        )
        for art in convert_recipe(recipe, keep_going=True):
            assert art.status == "ok", (build.__name__, art.format, art.error)
            assert art.fidelity["cosine_worst"] > 0.9999 and art.fidelity["gates"]["samples"] == 4
            assert not art.provenance["findings"]


@pytest.mark.integration
def test_flex_ops_are_a_named_conversion_error(tmp_path: Path) -> None:
    from edgekit.convert.pipeline import convert_recipe

    recipe = load_recipe(
        onnx_recipe(
            tmp_path, gelu_classifier(tmp_path / "gelu.onnx"), ["tflite-fp32"], tflite={"replace_ops": []}
        )
    )
    with pytest.raises(ConversionError, match=r"gelu\.yaml: tflite-fp32: needs Select TF ops FlexErf") as err:
        convert_recipe(recipe)  # located at the recipe and the format (one failed run's error)
    assert err.value.message.startswith("needs Select TF ops FlexErf (tflite-fp32)")


def test_accepted_flex_ops_are_a_finding(tmp_path: Path) -> None:
    from edgekit.convert.tflite import TfliteConverter

    recipe = load_recipe(
        onnx_recipe(
            tmp_path,
            gelu_classifier(tmp_path / "gelu.onnx"),
            ["tflite-fp32"],
            tflite={"allow_select_tf_ops": True},
        )
    )
    conv = TfliteConverter()
    conv.findings = {}
    conv._flex_findings(
        recipe, {Format.TFLITE_FP32: Path("model_float32.tflite")}, {"model_float32.tflite": ["FlexErf"]}
    )
    assert conv.findings[Format.TFLITE_FP32] == [
        "needs Select TF ops FlexErf (accepted by tflite.allow_select_tf_ops)"
    ]


def test_replace_ops_default_and_typed(tmp_path: Path) -> None:
    from edgekit.convert.onnx2tf_run import replace_ops

    model = gelu_classifier(tmp_path / "gelu.onnx")
    assert replace_ops(model, load_recipe(onnx_recipe(tmp_path, model, ["tflite-fp32"]))) == ["Erf"]
    chosen = load_recipe(
        onnx_recipe(tmp_path, model, ["tflite-fp32"], tflite={"replace_ops": ["GeLU", "Erf"]})
    )
    assert replace_ops(model, chosen) == ["GeLU", "Erf"]
    with pytest.raises(RecipeError, match=r"tflite\.replace_ops"):
        load_recipe(onnx_recipe(tmp_path, model, ["tflite-fp32"], tflite={"replace_ops": ["-rtpo Erf"]}))


def test_onnx2tf_cause_is_its_own_error_line(tmp_path: Path) -> None:
    from edgekit.convert.onnx2tf_run import onnx2tf_cause

    log = tmp_path / "onnx2tf.log"
    log.write_text(
        "INFO: ...\n\x1b[31mERROR:\x1b[0m The trace log is below.\nTraceback (most recent call last):\n"
        "  File x\ntensorflow.python.framework.errors_impl.InvalidArgumentError: Depth of input (28) is "
        "not a multiple of input depth of filter (58)\n\x1b[31mERROR:\x1b[0m onnx_op_name: /stage2/Conv\n"
        "\x1b[31mERROR:\x1b[0m Read this and deal with it.\n"
    )
    assert onnx2tf_cause(log) == (
        "InvalidArgumentError: Depth of input (28) is not a multiple of input depth of "
        "filter (58) (at ONNX node /stage2/Conv)"
    )
    log.write_text("nothing useful\n")
    assert onnx2tf_cause(log) is None


def test_a_failure_is_printed_once_for_its_formats() -> None:
    from edgekit.cli.convert import failure_groups

    arts = [
        SimpleNamespace(format=Format(f), status="failed", error="onnx2tf: X")
        for f in ("tflite-fp32", "tflite-int8")
    ] + [SimpleNamespace(format=Format.NCNN_FP32, status="ok", error=None)]
    assert failure_groups(arts) == {"onnx2tf: X": ["tflite-fp32", "tflite-int8"]}


def test_float_leftovers_name_layers_and_their_share(tmp_path: Path) -> None:
    from edgekit.convert.findings import float_leftovers
    from edgekit.convert.ncnn.converter import NcnnConverter
    from edgekit.convert.onnx import prepare_onnx

    recipe = load_recipe(onnx_recipe(tmp_path, shuffle_classifier(tmp_path / "s.onnx"), ["ncnn-fp32"]))
    files = NcnnConverter().convert(prepare_onnx(recipe).path, recipe, Format.NCNN_FP32, tmp_path / "out")
    # an fp32 model read as if it were int8: every weighted layer is a float leftover
    text = float_leftovers(Format.NCNN_INT8, files)
    assert text is not None and text.startswith("float leftovers: 3 layers (") and "Convolution" in text
    assert float_leftovers(Format.NCNN_FP32, files) is None
    # edgekit's sidecar is no part of the model: a speed plan's 5 kB record made an all-float ncnn-int8 "79.6 %"
    # float and 19 % bigger than the fp32 model it is byte for byte
    from edgekit.convert.base import model_bytes

    sidecar = next(f for f in files if f.name.endswith(".io.json"))
    before = model_bytes(files)
    sidecar.write_text(sidecar.read_text() + " " * 1_000_000)
    assert float_leftovers(Format.NCNN_INT8, files) == text and model_bytes(files) == before


def test_int8_io_is_refused_for_ncnn(tmp_path: Path) -> None:
    model = shuffle_classifier(tmp_path / "s.onnx")
    with pytest.raises(
        RecipeError,
        match=r"int8\.io: int8 is implemented for tflite-int8, tflite-onnx2tf-int8 only: ncnn-int8",
    ):
        load_recipe(
            onnx_recipe(
                tmp_path, model, ["ncnn-int8"], int8={"io": "int8"}, calibration={"data": {"kind": "random"}}
            )
        )


def test_device_comparisons_use_the_unsimplified_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy judges every target against the user's ONNX as given, as convert's fidelity check does."""
    import numpy as np

    from edgekit.deploy import outputs
    from edgekit.runtimes import host as runtimes_host

    recipe = load_recipe(onnx_recipe(tmp_path, shuffle_classifier(tmp_path / "shuffle.onnx"), ["ncnn-fp32"]))
    ran: list[Path] = []
    real = runtimes_host.onnx_session
    monkeypatch.setattr(
        runtimes_host, "onnx_session", lambda path, **kw: ran.append(Path(path)) or real(path, **kw)
    )
    outputs.onnx_reference(recipe, np.zeros((1, 3, 16, 16), np.float32))
    assert ran and {p.name for p in ran} == {"original.onnx"}
    assert "Shape" in [n.op_type for n in onnx.load(str(ran[-1])).graph.node]  # not the simplified copy


@pytest.mark.integration
def test_torchvision_squeezenet_as_a_user_exports_it(tmp_path: Path) -> None:
    """torchvision's own squeezenet1_1 (C++ ops stubbed), exported with a dynamic batch as users do, converts to
    ncnn and TFLite and runs on the host (bench/torchvision_matrix.py does all nine architectures x 7 formats)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "tv_matrix", Path(__file__).parents[1] / "bench" / "torchvision_matrix.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.run_arch("squeezenet1_1", tmp_path, ["tflite-fp32", "ncnn-fp32"])
    for fmt, cell in row.items():
        assert cell["runs"] and cell["gates"] and cell["cosine"] > 0.9999, (fmt, cell)
    dims = [
        d.dim_param or d.dim_value
        for d in onnx.load(str(tmp_path / "squeezenet1_1.onnx")).graph.input[0].type.tensor_type.shape.dim
    ]
    assert dims[0] == "batch"  # exported with a dynamic batch; edgekit fixed it for the converters


def test_a_user_onnx_whose_static_dims_disagree_with_input_shape_is_a_recipe_error(tmp_path: Path) -> None:
    """The copy edgekit converts has the recipe's shape written in, so the check ran on that copy and passed;
    onnxruntime then refused the user's own model (the fidelity reference) as an internal error."""
    from edgekit.convert.onnx import prepare_onnx

    model = shuffle_classifier(tmp_path / "shuffle.onnx")  # input [N, 3, 16, 16]
    path = onnx_recipe(tmp_path, model, ["onnx-fp32"], input={"name": "input", "shape": [1, 1, 16, 16]})
    with pytest.raises(
        RecipeError, match=r"field `input.shape`: the model's input shape is \[-1, 3, 16, 16\]"
    ):
        prepare_onnx(load_recipe(path))


def test_a_pass_through_onnx_is_bad_input_not_a_converter_crash(tmp_path: Path) -> None:
    """An ONNX of Identity only (the output is the input) made pnnx fail with forty lines of onnxruntime's
    internals and advice to simplify; it is named as a model that computes nothing, exit 2."""
    from onnx import TensorProto, helper

    from edgekit.convert.onnx import prepare_onnx
    from edgekit.errors import InputDataError

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 16, 16])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "ident.onnx")
    path = onnx_recipe(tmp_path, tmp_path / "ident.onnx", ["onnx-fp32"], task="generic")
    with pytest.raises(InputDataError, match="computes nothing") as info:
        prepare_onnx(load_recipe(path))
    assert info.value.exit_code == 2


@pytest.mark.integration
def test_a_channels_last_onnx_keeps_its_input_through_onnx2tf(tmp_path: Path) -> None:
    """A user's ONNX that takes NHWC (its own Transpose to NCHW inside): onnx2tf took every 4-D input for NCHW, so
    a [1,8,12,3] image became (1,12,3,8): tflite-int8 was calibrated on data of another shape (cos 0.977) and a
    non-square one failed to convert. It is told to keep the input as it is."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    from edgekit.convert.pipeline import convert_recipe
    from edgekit.runtimes.tflite import load_tflite

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w"),
        numpy_helper.from_array(rng.standard_normal((8, 4)).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w"], ["c"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "nhwc",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 8, 12, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    path = tmp_path / "nhwc.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # what onnxruntime reads
    onnx.save(model, str(path))
    recipe = load_recipe(
        onnx_recipe(
            tmp_path,
            path,
            ["tflite-fp32", "tflite-int8"],
            input={"name": "input", "shape": [1, 8, 12, 3], "layout": "NHWC"},
            evaluation={"data": {"kind": "random", "samples": 16, "seed": 1}},
            calibration={"data": {"kind": "random", "samples": 16, "seed": 2}},
        )
    )
    arts = {a.format: a for a in convert_recipe(recipe, keep_going=True)}
    for fmt in (Format.TFLITE_FP32, Format.TFLITE_INT8):
        assert arts[fmt].status == "ok", arts[fmt].error
        shape = load_tflite(arts[fmt].main_file).get_input_details()[0]["shape"]
        assert list(shape) == [1, 8, 12, 3], shape
    assert arts[Format.TFLITE_INT8].fidelity["cosine"] > 0.99


@pytest.mark.integration
def test_an_onnx_written_by_the_pinned_onnx_library_converts_and_is_checked(tmp_path: Path) -> None:
    """onnx 1.19 writes IR 12 (any model built with onnx.helper); onnxruntime 1.23 reads up to IR 11, so the
    fidelity reference itself could not run: `edgekit convert` ended in an internal error. The IR version (the file
    format's, not the operators') is written as 11 in the cache, said once; bench refuses such a file (exit 2)
    with the line that re-writes it."""
    import os
    import subprocess
    import sys

    from edgekit.convert.onnx import prepare_onnx
    from edgekit.convert.onnx_file import ORT_MAX_IR_VERSION
    from edgekit.convert.pipeline import convert_recipe

    model = gelu_classifier(tmp_path / "gelu.onnx")
    as_written = onnx.load(str(model))
    as_written.ir_version = onnx.IR_VERSION  # what onnx.helper.make_model writes with this onnx
    onnx.save(as_written, str(model))
    if onnx.IR_VERSION <= ORT_MAX_IR_VERSION:
        pytest.skip(f"this onnx writes IR {onnx.IR_VERSION}, which onnxruntime reads")
    recipe = load_recipe(onnx_recipe(tmp_path, model, ["onnx-fp32", "ncnn-fp32"]))
    said: list[str] = []
    arts = convert_recipe(recipe, progress=said.append)
    assert all(a.status == "ok" and a.fidelity["gates"]["passed"] for a in arts), [a.error for a in arts]
    assert any(f"IR version {onnx.IR_VERSION} written as {ORT_MAX_IR_VERSION}" in m for m in said), said
    prepared = prepare_onnx(recipe)
    for path in (prepared.path, prepared.reference_path):
        assert onnx.load(str(path)).ir_version == ORT_MAX_IR_VERSION
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "bench", str(model), "--target", "host"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert done.returncode == 2 and f"its IR version is {onnx.IR_VERSION}" in done.stderr, done.stderr
    assert f"m.ir_version = {ORT_MAX_IR_VERSION}" in done.stderr


def test_a_detect_task_on_a_model_without_boxes_and_scores_is_a_recipe_error(tmp_path: Path) -> None:
    """`task: detect` on a one-output classifier converted everything, then failed the fidelity check with
    'cannot run on this host ... relax the gate' (exit 1): a recipe error, said before converting (exit 2)."""
    import os
    import subprocess
    import sys

    model = gelu_classifier(tmp_path / "cls.onnx")
    recipe = onnx_recipe(tmp_path, model, ["onnx-fp32"], task="detect")
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 2 and "field `task`: detect needs two outputs" in done.stderr, done.stderr
    assert "converting with" not in done.stdout + done.stderr


@pytest.mark.integration
def test_a_token_model_converts_right_in_the_int8_run_too(tmp_path: Path) -> None:
    """A conv stem, tokens (flatten, transpose), LayerNorm and GELU at opset 20: tflite-fp32 from the run that also
    writes tflite-int8 had cosine 0.797 (and tflite-int8 0.798), the same model from a float-only run 1.000, under
    one cache key. onnx2tf skipped its layout check when given the calibration data
    (validate_on_one_sample in edgekit.convert.onnx2tf_run)."""
    from token_model import token_mixer_onnx

    from edgekit.convert.pipeline import convert_recipe

    path = token_mixer_onnx(tmp_path / "tokens.onnx", dim=16, size=64)
    recipe = onnx_recipe(
        tmp_path,
        path,
        ["tflite-fp32", "tflite-int8"],
        input={"name": "input", "shape": [1, 3, 64, 64]},
        calibration={"data": {"kind": "random", "samples": 8, "seed": 0}},
    )
    fp32, int8 = convert_recipe(load_recipe(recipe), keep_going=True)
    assert fp32.status == "ok" and fp32.fidelity["cosine_worst"] > 0.9999, fp32.fidelity
    assert int8.status == "ok" and int8.fidelity["cosine_worst"] > 0.99, int8.fidelity


def test_a_float_artifact_that_misses_its_gate_is_said_to_be_the_conversion_not_quantization() -> None:
    """tflite-fp32 at cosine 0.797 (a wrong conversion) ended in "analyze --format tflite-int8 --fix ... or relax
    the gate": no INT8 tuning can mend a float conversion; the hint says so and sends analyze only to the INT8 of a
    runtime whose float passed."""
    from edgekit.convert.failures import run_failure as _failure
    from edgekit.results import GATE_MISSED

    def art(fmt: str) -> SimpleNamespace:
        return SimpleNamespace(format=Format(fmt), status="failed", error=f"{GATE_MISSED}min_cosine: 0.79")

    recipe = SimpleNamespace(path=Path("r.yaml"))
    err = _failure([art("tflite-fp32"), art("tflite-int8")], [], recipe)  # type: ignore[arg-type]
    assert "tflite-fp32 missed the gate in float" in (err.hint or "") and "--format tflite-int8" not in (
        err.hint or ""
    )
    err = _failure([art("tflite-fp32"), art("tflite-int8"), art("ncnn-int8")], [], recipe)  # type: ignore[arg-type]
    assert "--format ncnn-int8 --fix" in (err.hint or "") and "--format tflite-int8" not in (err.hint or "")
    err = _failure([art("ncnn-int8")], [], recipe)  # type: ignore[arg-type]
    assert "--format ncnn-int8 --fix" in (err.hint or "") and "missed the gate in float" not in (
        err.hint or ""
    )


def test_evaluation_data_the_model_cannot_take_is_refused_before_any_conversion(tmp_path: Path) -> None:
    """32x32 data for a recipe at 64x64 was refused only after every format had converted (tens of seconds to
    minutes of TensorFlow for the TFLite formats), then exit 2: it is bad input, said before any conversion."""
    import numpy as np
    from onnx_graphs import dynamic_hw_onnx

    from edgekit.convert.pipeline import convert_recipe

    model = dynamic_hw_onnx(tmp_path / "net.onnx")
    np.save(tmp_path / "x.npy", np.zeros((4, 3, 32, 32), np.float32))
    path = onnx_recipe(
        tmp_path,
        model,
        ["onnx-fp32", "tflite-fp32"],
        input={"name": "x", "shape": [1, 3, 64, 64]},
        outputs=["y"],
        task="generic",
        evaluation={"data": {"kind": "npy", "path": "x.npy"}},
    )
    said: list[str] = []
    with pytest.raises(RecipeError, match=r"evaluation\.data.*\(N, 3, 64, 64\)"):
        convert_recipe(load_recipe(path), progress=said.append)
    assert not [m for m in said if "convert" in m and not m.startswith("model")], said
