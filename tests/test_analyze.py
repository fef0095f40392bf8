"""`edgekit analyze`: the layer comparison finds a broken layer, and --fix keeps layers in float until the gate."""

from __future__ import annotations

import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from edgekit.analysis.analyze import Analysis, LayerError, analyze
from edgekit.analysis.float_fallback import plan
from edgekit.analysis.ncnn_layers import ncnn_layers
from edgekit.convert.ncnn.param import read_param
from edgekit.convert.ncnn.weights import layer_spans
from edgekit.convert.tflite_selective import tensor_key
from edgekit.formats import Format, Precision
from edgekit.recipe import load_recipe
from edgekit.zoo.train import WEIGHTS_DIR

RECIPE = """
name: digits-small
task: classify
model: {{kind: torch, builder: "edgekit.zoo.digits:build", args: {{widths: [8, 16, 32]}}, weights: {weights}}}
input: {{name: input, shape: [1, 1, 16, 16], layout: NCHW}}
outputs: [logits]
calibration: {{data: {{kind: builder, builder: "edgekit.zoo.digits:calibration", samples: 32, seed: 0}}}}
evaluation:
  data: {{kind: builder, builder: "edgekit.zoo.digits:test_split", samples: 24, seed: 0}}
  gates: {{int8: {{min_cosine: {cosine}}}}}
formats: [ncnn-fp32, ncnn-int8]
"""


def _recipe(tmp_path: Path, cosine: float = 0.95) -> Path:
    path = tmp_path / "digits-small.yaml"
    path.write_text(RECIPE.format(weights=WEIGHTS_DIR / "digits.pt", cosine=cosine))
    return path


@pytest.fixture(scope="module")
def ncnn_analysis(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Analysis, list[Path], list[Path], np.ndarray]:
    from edgekit.analysis.analyze import artifacts_for
    from edgekit.convert.calibration import evaluation_inputs

    recipe = load_recipe(_recipe(tmp_path_factory.mktemp("recipe")))
    result = analyze(recipe, Format.NCNN_INT8, samples=8)
    fp32, int8 = artifacts_for(recipe, Format.NCNN_INT8, lambda _m: None)
    return result, fp32.files, int8.files, evaluation_inputs(recipe)[0][:8]


def test_every_quantized_layer_is_compared(ncnn_analysis: tuple) -> None:
    result, _, int8_files, _ = ncnn_analysis
    quantized = [x for x in result.layers if x.quantized]
    # six convolutions and the linear layer of the digits CNN are quantizable; the speed plan may keep some float
    sidecar = json.loads(next(f for f in int8_files if f.name.endswith(".io.json")).read_text())
    rows = sidecar["int8"]["layers"]
    assert len(rows) == 7
    assert sorted(x.name for x in quantized) == sorted(row[0] for row in rows if row[2])
    for x in quantized:
        assert 0.99 < x.cosine <= 1.0 + 1e-9 and 0 < x.own_rel_error < 0.2
        assert x.own_cosine is not None
    assert result.method == "isolated"
    assert [x.own_rel_error for x in result.worst()] == sorted(
        (x.own_rel_error for x in quantized), reverse=True
    )


def test_an_injected_bad_layer_is_ranked_first(ncnn_analysis: tuple, tmp_path: Path) -> None:
    """Spoil one layer's activation scale in the INT8 file (coarser steps): the analysis must point at it."""
    result, fp32_files, int8_files, inputs = ncnn_analysis
    victim = result.worst()[-1].name  # the layer that lost the least: it can only come first if it is found
    spoiled = [Path(shutil.copy(f, tmp_path / f.name)) for f in int8_files]
    param = next(f for f in spoiled if f.suffix == ".param")
    bin_path = next(f for f in spoiled if f.suffix == ".bin")
    data = bytearray(bin_path.read_bytes())
    index = [ly.name for ly in read_param(param).layers].index(victim)
    end = layer_spans(param, bytes(data))[index][1]
    (scale,) = struct.unpack("<f", data[end - 4 : end])  # the layer's input scale is its last float
    data[end - 4 : end] = struct.pack("<f", scale / 64)
    bin_path.write_bytes(bytes(data))
    layers = ncnn_layers(fp32_files, spoiled, inputs)
    ranked = sorted((x for x in layers if x.quantized), key=lambda x: -x.own_rel_error)
    assert ranked[0].name == victim, [(x.name, round(x.own_rel_error, 3)) for x in ranked]
    assert ranked[0].own_rel_error > 2 * ranked[1].own_rel_error


def test_fix_keeps_the_worst_layers_in_float_until_the_gate_is_met(
    ncnn_analysis: tuple, tmp_path: Path
) -> None:
    """The analysis --fix starts from is ncnn_analysis's: the same recipe (min_cosine 0.95) and 8 samples, which
    this test computed again on its own before."""
    from edgekit.analysis.float_fallback import fix

    base, *_ = ncnn_analysis
    strict = load_recipe(_recipe(tmp_path, cosine=round(1 - (1 - base.fidelity["cosine"]) / 2, 6)))
    outcome = fix(strict, Format.NCNN_INT8, base)
    assert not outcome.steps[0].passed and outcome.chosen is not None
    chosen = outcome.chosen
    assert chosen.float_layers == [x.name for x in base.worst(len(chosen.float_layers))]
    assert chosen.numbers["cosine"] > outcome.steps[0].numbers["cosine"]
    assert outcome.steps[0].size_bytes < chosen.size_bytes < outcome.fp32.size_bytes
    assert Path(chosen.files[0]).is_file()
    # what --fix found, shipped through the recipe (nothing could say it before: convert kept failing the gate)
    import yaml

    from edgekit.convert.pipeline import convert_recipe
    from edgekit.errors import RecipeError

    path = _recipe(tmp_path, cosine=strict.evaluation.gates[Precision.INT8].min_cosine)  # type: ignore[index]
    data = yaml.safe_load(path.read_text())
    data["int8"] = {"ncnn_float_layers": list(chosen.float_layers)}
    path.write_text(yaml.safe_dump(data))
    (art,) = convert_recipe(load_recipe(path), (Format.NCNN_INT8,))
    assert art.status == "ok" and art.fidelity["gates"]["passed"], art.fidelity
    assert abs(art.fidelity["cosine"] - chosen.numbers["cosine"]) < 1e-6
    data["int8"] = {"ncnn_float_layers": ["no_such_layer"]}
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError, match=r"int8\.ncnn_float_layers.*no_such_layer"):
        convert_recipe(load_recipe(path), (Format.NCNN_INT8,))
    # --fix again on the recipe that ships it (a tighter gate): what the recipe keeps in float stays float in
    # every candidate, and the line it prints names those layers too (it replaces the recipe's int8 block)
    data["int8"] = {"ncnn_float_layers": list(chosen.float_layers)}
    data["evaluation"]["gates"]["int8"]["min_cosine"] = 0.9999999  # out of reach: every candidate is built
    path.write_text(yaml.safe_dump(data))
    shipped = load_recipe(path)
    again = fix(shipped, Format.NCNN_INT8, analyze(shipped, Format.NCNN_INT8, samples=8), max_float=2)
    assert again.steps[0].label == f"as the recipe keeps it ({len(chosen.float_layers)} float)"
    assert len(again.steps) == 3, [s.label for s in again.steps]
    for step in again.steps[1:]:
        assert set(chosen.float_layers) < set(step.float_layers) and step.label.startswith("the recipe's")
        assert set(chosen.float_layers) < set(step.recipe_names)


@pytest.mark.parametrize("fmt", ["ncnn-int8", "onnx-int8"])
def test_a_missed_int8_gate_points_at_analyze_fix(tmp_path: Path, fmt: str) -> None:
    """convert's error for a missed INT8 gate said only "relax the gate"; it names the command that finds the
    layers to keep in float, and the summary line counts the failed artifact (it said "0 converted, 0 from the
    cache" after converting one). onnx-int8, which analyze --fix now serves, was left out of the hint."""
    import subprocess
    import sys

    path = (_onnx_recipe if fmt == "onnx-int8" else _recipe)(tmp_path, cosine=0.9999999)
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(path), "--format", fmt],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    said = " ".join((out.stdout + out.stderr).split())  # however the terminal width wrapped it
    assert f"edgekit analyze {path} --format {fmt} --fix" in said, said
    assert "1 failed (conversion or gate)" in said, said


def test_a_float_model_that_misses_its_own_gate_is_said_before_the_layers(
    ncnn_analysis: tuple, tmp_path: Path
) -> None:
    """analyze compares every int8 layer with the fp32 artifact; when that fp32 artifact itself misses the recipe's
    gates against the original model (here: any error at all, `max_abs_error: 0`), the layer table cannot show
    what the float conversion lost, and analyze says so first (it said nothing). The ordinary recipe's fp32 meets
    its gates: no warning."""
    from typer.testing import CliRunner

    from edgekit.cli import app

    result, *_ = ncnn_analysis
    assert result.reference == "ncnn-fp32" and result.reference_warning() is None
    path = _recipe(tmp_path)
    path.write_text(path.read_text().replace("gates: {int8:", "gates: {fp32: {max_abs_error: 0.0}, int8:"))
    out = CliRunner().invoke(
        app, ["analyze", str(path), "--format", "ncnn-int8", "--samples", "4"], terminal_width=400
    )
    assert out.exit_code == 0, out.output
    said = " ".join(out.output.split())
    assert "ncnn-fp32 itself misses the recipe's gates against the original model (max_abs_error" in said, (
        said
    )
    assert said.index("itself misses") < said.index("own rel"), said  # before the layer table
    assert f"edgekit convert {path} --format ncnn-fp32" in said, said


def test_fix_that_keeps_every_layer_float_says_to_ship_fp32(tmp_path: Path) -> None:
    """A gate only the fp32 model meets: --fix 'met' it with every quantized layer float and offered that as
    the INT8 artifact to ship; it now says it is the fp32 model in an INT8 file. And the preparation (ONNX,
    conversions, data) is said once, not again for --fix."""
    import subprocess
    import sys

    path = _recipe(tmp_path, cosine=0.99999)
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "analyze", str(path), "--format", "ncnn-int8", "--fix"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    said = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 0, said
    assert (
        "every quantized layer is float in it: that is the fp32 model in an INT8 file; ship ncnn-fp32" in said
    )
    assert said.count("model: preparing ONNX") == 1, said


def test_cli_lists_the_worst_layers_and_writes_json(ncnn_analysis: tuple, tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from edgekit.cli import app

    result, *_ = ncnn_analysis
    out = CliRunner().invoke(
        app,
        [
            "analyze",
            str(_recipe(tmp_path)),
            "--format",
            "ncnn-int8",
            "--samples",
            "8",
            "--top",
            "3",
            "--fix",
            "--json",
            str(tmp_path / "a.json"),
        ],
    )
    assert out.exit_code == 0, out.output
    assert result.worst()[0].name in out.output and "already meets" in out.output
    record = json.loads((tmp_path / "a.json").read_text())
    assert len(record["analysis"]["layers"]) == len(result.layers)
    bad = CliRunner().invoke(app, ["analyze", str(_recipe(tmp_path)), "--format", "ncnn-fp16"])
    assert bad.exit_code != 0


def test_plan_doubles_the_float_set_and_ends_with_the_cap() -> None:
    names = list("abcdefghij")
    assert plan(names) == [names[:1], names[:2], names[:4], names[:8], names]
    assert plan(names, max_float=3) == [names[:1], names[:2], names[:3]]
    assert plan([]) == []


def test_tflite_names_match_across_conversions() -> None:
    a = "model/tf.nn.relu_2/Relu;model/tf.math.add_2/Add;model/tf.nn.convolution_2/convolution;Const_10"
    b = "model_1/tf.nn.relu_2/Relu;model_1/tf.math.add_2/Add;model_1/tf.nn.convolution_2/convolution;Const_7"
    assert tensor_key(a) == tensor_key(b)
    assert tensor_key("model/tf.nn.relu_2/Relu") != tensor_key("model/tf.nn.relu_3/Relu")


def test_the_layer_table_has_an_own_cosine_column_only_where_there_is_one() -> None:
    """TFLite's per-op error is a difference (no op runs alone): its 'own cosine' column was all '-'."""
    from edgekit.cli.analyze import layer_table

    diff = [
        LayerError("a", "CONV_2D", "1", True, 0.99, 0.1, 0.05),
        LayerError("b", "CONV_2D", "2", True, 0.98, 0.2, 0.1),
    ]
    alone = [LayerError("c", "Convolution", "3", True, 0.97, 0.3, 0.2, own_cosine=0.998)]
    columns = {
        method: [str(c.header) for c in layer_table(Analysis("r", "f", 1, method, rows), 10).columns]
        for method, rows in (("difference", diff), ("isolated", alone))
    }
    assert "own cosine" not in columns["difference"] and "own rel err" in columns["difference"]
    assert "own cosine" in columns["isolated"]


def test_worst_lists_only_quantized_layers() -> None:
    layers = [
        LayerError("a", "Convolution", "1", True, 0.99, 0.1, 0.05),
        LayerError("b", "Pooling", "2", False, 0.98, 0.2, 0.5),
        LayerError("c", "Convolution", "3", True, 0.97, 0.3, 0.2),
    ]
    assert [x.name for x in Analysis("r", "ncnn-int8", 1, "isolated", layers).worst()] == ["c", "a"]


@pytest.mark.integration
@pytest.mark.slow
def test_cli_tflite_fix_meets_a_strict_gate(tmp_path: Path) -> None:
    """The whole command on TFLite: onnx2tf artifacts, every tensor compared, TensorFlow selective quantization."""
    import json

    from typer.testing import CliRunner

    from edgekit.cli import app

    path = _recipe(tmp_path, cosine=0.9999)  # plain INT8 0.99987, one op in float 0.99993 (measured)
    path.write_text(path.read_text().replace("[ncnn-fp32, ncnn-int8]", "[tflite-fp32, tflite-int8]"))
    out = CliRunner().invoke(
        app,
        [
            "analyze",
            str(path),
            "--format",
            "tflite-int8",
            "--fix",
            "--samples",
            "8",
            "--json",
            str(tmp_path / "a.json"),
        ],
    )
    assert out.exit_code in (0, 1), out.output
    record = json.loads((tmp_path / "a.json").read_text())
    steps = record["fix"]["steps"]
    assert not steps[0]["gates"]["passed"]
    assert len(steps) >= 2 and steps[-1]["numbers"]["cosine"] > steps[0]["numbers"]["cosine"]
    from edgekit import paths

    assert out.exit_code == 0, out.output  # the digits CNN meets 0.99999 with some ops in float
    assert "gate met" in out.output
    # what --fix found, shipped through the recipe: the line it prints, pasted in, makes convert build that model

    import yaml

    from edgekit.convert.pipeline import convert_recipe

    lines = out.output.splitlines()
    said = lines.index("to ship it, the recipe's int8 line becomes (it replaces the one there):")
    line = lines[said + 1]
    assert line.startswith('int8: {granularity: "per-channel", io: "float", ')  # the recipe's own kept
    data = yaml.safe_load(path.read_text())
    data["int8"] = yaml.safe_load(line)["int8"]
    kept = data["int8"]["tflite_float_ops"]
    assert kept and len(kept) == len(record["fix"]["steps"][-1]["recipe_names"])
    path.write_text(yaml.safe_dump(data))
    (art,) = convert_recipe(load_recipe(path), (Format.TFLITE_INT8,))
    assert art.status == "ok" and art.fidelity["gates"]["passed"], art.fidelity
    assert abs(art.fidelity["cosine"] - steps[-1]["numbers"]["cosine"]) < 1e-5
    found = art.provenance["findings"]
    assert any("kept in float (" in f and "int8.tflite_float_ops)" in f for f in found), found
    # the named ops compute in float in the shipped file, and in int8 in the plain one --fix started from
    assert _output_types(art.files[0], kept) == dict.fromkeys(kept, "float32")
    assert set(_output_types(Path(steps[0]["files"][0]), kept).values()) == {"int8"}
    # an op the model does not have, as the command says it: exit 2 (a RecipeError naming the field and the op),
    # the error once (it was printed twice), no claim about labels of data nothing was compared with, and no
    # half-made artifact left in the cache's work folder
    data["int8"] = {"tflite_float_ops": ["no/such_op"]}
    path.write_text(yaml.safe_dump(data))
    import subprocess
    import sys

    work = paths.cache_dir() / "work"
    before = set(work.iterdir()) if work.is_dir() else set()
    cli = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(path), "--format", "tflite-int8"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    said = cli.stdout + cli.stderr
    assert cli.returncode == 2 and said.count("ops the model does not have") == 1, said
    assert re.search(r"int8\.tflite_float_ops.*no/such_op", " ".join(said.split())), said
    assert "has no labels" not in said
    assert (set(work.iterdir()) if work.is_dir() else set()) == before

    # a --fix that succeeded left its TensorFlow work folder (4.4 MB for digits) in the cache: removed
    assert not list(paths.work_dir("selective").parent.glob("selective-*"))


def test_tflite_float_op_names_resolve_by_their_output_or_its_unique_first_part() -> None:
    """A recipe's int8.tflite_float_ops names an op by its output tensor, or by the first `;`-part of it where
    that names one op only (what analyze --fix prints); a name that matches none, or a short one that matches
    two, is reported missing rather than guessed."""
    from edgekit.convert.tflite_selective import resolve

    names = [
        "model/tf.nn.relu_2/Relu;model/tf.math.add_2/Add;Const_10",
        "model_1/tf.nn.relu_3/Relu",
        "model/pool/Max;model/a",
        "model/pool/Max;model/b",
    ]
    chosen, missing = resolve(["model/tf.nn.relu_2/Relu", "model/tf.nn.relu_3/Relu", "model/pool/Max"], names)
    assert chosen == {"model/tf.nn.relu_2/Relu": names[0], "model/tf.nn.relu_3/Relu": names[1]}
    assert missing == ["model/pool/Max"]
    chosen, missing = resolve(["model/pool/Max;model/b", "nothing"], names)
    assert chosen == {"model/pool/Max;model/b": names[3]} and missing == ["nothing"]


def test_tflite_float_ops_are_refused_where_they_cannot_be_built(tmp_path: Path) -> None:
    """A Keras model's TFLite comes from TensorFlow's converter (and the onnx2tf route crashed on its NHWC export),
    and selective quantization keeps float input/output: the recipe says so at load time (exit 2), not after a
    conversion that would have ignored the list."""
    import yaml

    from edgekit.errors import RecipeError

    keras = yaml.safe_load(
        (Path(__file__).resolve().parent.parent / "recipes" / "digits-keras.yaml").read_text()
    )
    keras["int8"] = {"tflite_float_ops": ["model/dense/BiasAdd"]}
    path = tmp_path / "keras.yaml"
    path.write_text(yaml.safe_dump(keras))
    with pytest.raises(RecipeError, match=r"tflite_float_ops.*keras"):
        load_recipe(path)
    keras["int8"] = {"tflite_float_tail": True}  # the flag alone too (it was converted and silently ignored)
    path.write_text(yaml.safe_dump(keras))
    with pytest.raises(RecipeError, match=r"int8\.tflite_float_tail: .*keras"):
        load_recipe(path)
    torch = yaml.safe_load(_recipe(tmp_path).read_text())
    torch["int8"] = {"tflite_float_ops": ["x"], "io": "int8"}
    torch["formats"] = ["tflite-int8"]
    path.write_text(yaml.safe_dump(torch))
    with pytest.raises(RecipeError, match=r"tflite_float_ops.*int8\.io: int8"):
        load_recipe(path)
    torch["int8"] = {"tflite_float_tail": True, "io": "int8"}  # it gave float input/output, silently
    path.write_text(yaml.safe_dump(torch))
    with pytest.raises(RecipeError, match=r"int8\.tflite_float_tail: .*int8\.io: int8"):
        load_recipe(path)
    torch["int8"] = {"tflite_float_tail": "yes"}  # a string is a typo, not true
    path.write_text(yaml.safe_dump(torch))
    with pytest.raises(RecipeError, match=r"tflite_float_tail"):
        load_recipe(path)


def _output_types(model: Path, ops: list[str]) -> dict[str, str]:
    """The dtype of each named op's output tensor (by its full key or its first `;`-part) in a .tflite."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model))
    types = {tensor_key(t["name"]): t["dtype"].__name__ for t in interp.get_tensor_details()}
    return {
        name: next(dt for key, dt in types.items() if name in (key, key.split(";")[0]))
        for name in ops
        if any(name in (key, key.split(";")[0]) for key in types)
    }


def test_fix_of_a_keras_models_tflite_is_refused_before_any_work() -> None:
    """`analyze --fix` on a Keras recipe's TFLite ran onnx2tf on the model's NHWC export: TensorFlow died of
    SIGFPE (exit 1, 30 lines of TensorSpec). Not supported (the selective build needs an NCHW graph): exit 2."""
    from edgekit.analysis.float_fallback import fix
    from edgekit.errors import UsageError

    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "digits-keras.yaml")
    for fmt in (Format.TFLITE_INT8, Format.TFLITE_ONNX2TF_INT8):
        with pytest.raises(UsageError, match="Keras model is not supported"):
            fix(recipe, fmt, Analysis(recipe.name, fmt.value, 0, "difference", []))


def test_fix_of_tflite_with_int8_io_is_refused_before_any_work() -> None:
    """`analyze --fix -f tflite-int8` on a recipe with `int8.io: int8` ran minutes of onnx2tf, compared float-I/O
    candidates with the int8-I/O artifact, then printed an int8 line (io: "int8" with tflite_float_ops) the recipe
    loader refuses. Refused up front now, exit 2 (a UsageError)."""
    from edgekit.analysis.float_fallback import check_fix_supported
    from edgekit.errors import UsageError
    from edgekit.recipe import IOType

    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml")
    io_int8 = recipe.model_copy(update={"int8": recipe.int8.model_copy(update={"io": IOType.INT8})})
    for fmt in (Format.TFLITE_INT8, Format.TFLITE_ONNX2TF_INT8):
        check_fix_supported(recipe, fmt)  # int8.io: float is fine
        with pytest.raises(UsageError, match=r"with int8\.io: int8 is not supported") as err:
            check_fix_supported(io_int8, fmt)
        assert "int8.io: float" in (err.value.hint or "")
    check_fix_supported(io_int8, Format.NCNN_INT8)  # not TFLite's selective build: not this refusal


def test_tflite_output_tail_is_what_follows_the_last_weighted_layers(tmp_path: Path) -> None:
    """A model whose output passes through ops after its last Dense layer: those ops are the tail, the
    reshape between the convolution and the Dense layer is not (a weighted layer follows it)."""
    import tensorflow as tf

    from edgekit.convert.tflite_selective import tflite_output_tail

    inp = tf.keras.Input((8, 8, 1), batch_size=1)
    x = tf.keras.layers.Conv2D(2, 3, name="conv")(inp)
    x = tf.keras.layers.Flatten()(x)
    x = tf.keras.layers.Dense(4, name="dense")(x)
    x = tf.keras.layers.Softmax()(x)
    out = x * 3.0 + 1.0
    model = tf.keras.Model(inp, out)
    path = tmp_path / "m.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()
    kinds = [op["op_name"] for op in ops]
    assert kinds[-3:] == ["SOFTMAX", "MUL", "ADD"], kinds
    assert tflite_output_tail(path) == [names[int(op["outputs"][0])] for op in ops[-3:]]
    assert "RESHAPE" in kinds and kinds.index("RESHAPE") < kinds.index("FULLY_CONNECTED")
    # INT8: the last op writes an int8 tensor that a DEQUANTIZE names as the model's output; the tail calls that
    # op by the output's name (the float model's name for it, which selective quantization takes)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: (
        [np.random.default_rng(i).random((1, 8, 8, 1), np.float32)] for i in range(8)
    )
    q = tmp_path / "q.tflite"
    q.write_bytes(conv.convert())
    qi = Interpreter(model_path=str(q))
    q_kinds = [op["op_name"] for op in qi._get_ops_details()]
    assert q_kinds[-1] == "DEQUANTIZE", q_kinds
    q_tail = tflite_output_tail(q)
    assert qi.get_output_details()[0]["name"] in q_tail
    assert len(q_tail) == 3, (q_tail, q_kinds)


def test_fix_of_a_keras_models_tflite_is_refused_before_the_analysis(tmp_path: Path) -> None:
    """The CLI refused only after the analysis had converted and run (5.7 s of work, 'gate met' printed, then
    exit 2): now before anything is converted."""
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit",
            "analyze",
            "recipes/digits-keras.yaml",
            "--format",
            "tflite-int8",
            "--fix",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")},
    )
    assert out.returncode == 2 and "Keras model is not supported" in out.stderr, out.stderr
    assert "gate" not in out.stdout, out.stdout
    assert not list((tmp_path / "home" / "cache").glob("*/artifact.json"))


def test_a_candidate_the_runtime_refuses_for_select_tf_ops_names_them_and_no_nan_reaches_the_json(
    tmp_path: Path,
) -> None:
    """`analyze --fix` on a model whose float-kept ops are TensorFlow ops (Erf): every candidate said 'Select
    TensorFlow op(s), ... For the Android, it can be resolved by add' (cut at 200 characters, the op never
    named), then blamed calibration; and --json held NaN (no JSON). The refusal names the ops, from a real
    TFLite file the real interpreter refuses."""
    import json
    import math
    import subprocess
    import sys

    import tensorflow as tf

    from edgekit.analysis.host_timing import refusal
    from edgekit.cli.analyze import _finite

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def erf(x: tf.Tensor) -> tf.Tensor:
        return tf.math.erf(x)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([erf.get_concrete_function()], erf)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    path = tmp_path / "erf.tflite"
    path.write_bytes(conv.convert())
    # the interpreter in a process of its own, as analyze runs it: with TensorFlow imported, the Flex delegate
    # is linked in and runs the op
    code = (
        "from ai_edge_litert.interpreter import Interpreter\n"
        f"try:\n    Interpreter(model_path={str(path)!r}).allocate_tensors()\n"
        "except Exception as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if "Select TensorFlow op" not in out.stdout:
        pytest.skip(f"this TFLite runtime has Erf built in: {out.stdout[-300:]}")
    said = refusal(RuntimeError(out.stdout.strip()))
    assert said.startswith("needs Select TF ops (Erf)"), said
    record = _finite({"host_ms": float("nan"), "steps": [{"x": math.inf, "y": 1.5}]})
    assert json.loads(json.dumps(record, allow_nan=False)) == {
        "host_ms": None,
        "steps": [{"x": None, "y": 1.5}],
    }


def test_without_format_the_recipes_one_int8_format_is_analysed() -> None:
    """--format was required, and its missing-option message listed all 21 formats (two of them apply)."""
    from edgekit.cli.analyze import _recipe_int8_format
    from edgekit.errors import UsageError
    from edgekit.formats import Format

    assert _recipe_int8_format([Format.NCNN_FP32, Format.NCNN_INT8]) is Format.NCNN_INT8
    with pytest.raises(UsageError, match="has tflite-int8 and ncnn-int8: choose one"):
        _recipe_int8_format([Format.TFLITE_INT8, Format.NCNN_INT8])
    with pytest.raises(UsageError, match="none of tflite-int8, ncnn-int8, onnx-int8"):
        _recipe_int8_format([Format.ONNX_FP32])
    assert _recipe_int8_format([Format.ONNX_FP32, Format.ONNX_INT8]) is Format.ONNX_INT8


def test_max_float_without_fix_is_refused_not_ignored() -> None:
    """`--max-float 3` alone did nothing, without a word: it only bounds --fix."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "analyze", "recipes/digits.yaml", "--max-float", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "without --fix it does nothing" in out.stderr, out.stderr
    # the hint's command keeps the -f given: tiny.yaml has two INT8 formats, and without it said 'choose one'
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit",
            "analyze",
            "recipes/tiny.yaml",
            "-f",
            "ncnn-int8",
            "--max-float",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "edgekit analyze recipes/tiny.yaml --format ncnn-int8 --fix --max-float 3" in out.stderr, (
        out.stderr
    )


DETECTOR = """
name: det-tail
task: generic
model: {kind: onnx, path: det.onnx}
input: {name: images, shape: [1, 3, 32, 32], layout: NCHW}
outputs: [boxes, scores]
calibration: {data: {kind: builder, builder: "edgekit.zoo.tiny:images", args: {size: 32}, samples: 8, seed: 0}}
evaluation: {data: {kind: builder, builder: "edgekit.zoo.tiny:images", args: {size: 32}, samples: 4, seed: 1}}
formats: [tflite-int8]
int8: {tflite_float_tail: true}
"""


def _tiny_detector(path: Path) -> None:
    """A detector's shape at toy size (ONNX, random weights): two strided convolutions, a box head and a score head
    (1x1 convolutions), then each head's decoding, as yolov5_lite's: sigmoid, `2 s - 0.5 + grid`, times the stride,
    reshaped and transposed to [1, 64, 4] boxes and [1, 64, 3] scores."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def const(name: str, value: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value), name)

    gy, gx = np.meshgrid(np.arange(8, dtype=np.float32), np.arange(8, dtype=np.float32), indexing="ij")
    init = [
        *(
            const(name, rng.normal(0, 0.3, shape).astype(np.float32))
            for name, shape in (
                ("W1", (8, 3, 3, 3)),
                ("W2", (8, 8, 3, 3)),
                ("Wb", (4, 8, 1, 1)),
                ("Ws", (3, 8, 1, 1)),
            )
        ),
        const("two", np.float32(2.0)),
        const("half", np.float32(0.5)),
        const("stride", np.float32(4.0)),
        const("grid", np.stack([gx, gy, gx * 0, gy * 0])[None]),
        const("bshape", np.array([1, 4, 64], np.int64)),
        const("sshape", np.array([1, 3, 64], np.int64)),
    ]
    node = helper.make_node
    nodes = [
        node("Conv", ["images", "W1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        node("Relu", ["c1"], ["r1"]),
        node("Conv", ["r1", "W2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        node("Relu", ["c2"], ["r2"]),
        node("Conv", ["r2", "Wb"], ["hb"]),
        node("Conv", ["r2", "Ws"], ["hs"]),
        node("Sigmoid", ["hb"], ["sb"]),
        node("Mul", ["sb", "two"], ["b2"]),
        node("Sub", ["b2", "half"], ["b3"]),
        node("Add", ["b3", "grid"], ["b4"]),
        node("Mul", ["b4", "stride"], ["b5"]),
        node("Reshape", ["b5", "bshape"], ["b6"]),
        node("Transpose", ["b6"], ["boxes"], perm=[0, 2, 1]),
        node("Sigmoid", ["hs"], ["ss"]),
        node("Reshape", ["ss", "sshape"], ["s2"]),
        node("Transpose", ["s2"], ["scores"], perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "det",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [
            helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, 64, 4]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 64, 3]),
        ],
        init,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.mark.integration
@pytest.mark.slow
def test_a_recipe_keeps_a_detectors_tflite_output_tail_in_float(tmp_path: Path) -> None:
    """int8.tflite_float_tail: true ships what analyze --fix found for the detector (its box decoding in float,
    mAP@0.5:0.95 back from the 1.25-pixel steps of int8 boxes): every op after the last convolution writes
    float32 in the converted tflite-int8, the convolutions stay int8, and the artifact says so.

    On a detector's shape at toy size (_tiny_detector: two outputs, each head's decoding after its convolution):
    the zoo's yolov5_lite at width 0.25 took 27-60 s here, all of it onnx2tf's and TensorFlow's work on its ~300
    ops, for the same code path; bench/float_tail_detector.py runs that model and prints its tail's figures."""
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.convert.pipeline import convert_recipe
    from edgekit.convert.tflite_selective import TFLITE_WEIGHTED, tflite_output_tail

    _tiny_detector(tmp_path / "det.onnx")
    path = tmp_path / "det-tail.yaml"
    path.write_text(DETECTOR)
    said: list[str] = []
    (art,) = convert_recipe(load_recipe(path), (Format.TFLITE_INT8,), progress=said.append)
    assert art.status == "ok", art.error
    assert any("kept in float (the output tail)" in f for f in art.provenance["findings"])
    # the plain INT8 run's SavedModel is quantized again, not a second onnx2tf run's (half this test's time)
    assert any("of the INT8 run's SavedModel" in m for m in said), said
    interp = Interpreter(model_path=str(art.files[0]))
    dtype = {t["name"]: t["dtype"].__name__ for t in interp.get_tensor_details()}
    tail = tflite_output_tail(art.files[0])
    # both heads' decoding: sigmoid, mul, sub, add, mul and the layout ops of the boxes; sigmoid and layout of the
    # scores; each output among them (its name, not the int8 op's before a DEQUANTIZE)
    assert len(tail) >= 10 and {dtype[n] for n in tail} == {"float32"}, tail
    assert {d["name"] for d in interp.get_output_details()} <= set(tail)
    ops = interp._get_ops_details()
    kinds = [op["op_name"] for op in ops]
    assert kinds.count("LOGISTIC") == 2, kinds  # each head's sigmoid
    convs = [dtype_of for op in ops if op["op_name"] in TFLITE_WEIGHTED for dtype_of in [op["outputs"][0]]]
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    assert len(convs) == 4 and {dtype[names[int(i)]] for i in convs} == {"int8"}


def _onnx_recipe(tmp_path: Path, cosine: float = 0.95, int8: dict | None = None) -> Path:
    import yaml

    path = _recipe(tmp_path, cosine)
    data = yaml.safe_load(path.read_text())
    data["formats"] = ["onnx-fp32", "onnx-int8"]
    if int8:
        data["int8"] = int8
    path.write_text(yaml.safe_dump(data))
    return path


def test_onnx_int8_layers_are_compared_and_fix_ships_through_the_recipe(tmp_path: Path) -> None:
    """onnx-int8 (onnxruntime's QDQ): analyze was refused ('cannot read the layers of onnxruntime artifacts').
    Every node output is compared with the fp32 model's tensor of the same name, the classifier's last Gemm too
    (its output keeps the graph output's name on the dequantized copy); --fix keeps the worst nodes float through
    the quantizer, and the printed recipe line builds the same artifact. Real trained digits CNN, real
    onnxruntime quantizer."""
    import os
    import subprocess
    import sys

    import yaml

    from edgekit.analysis.float_fallback import fix
    from edgekit.convert.pipeline import convert_recipe
    from edgekit.errors import RecipeError

    plain = load_recipe(_onnx_recipe(tmp_path))
    base = analyze(plain, Format.ONNX_INT8, samples=8)
    assert base.method == "difference" and base.notes == []  # deployed and QDQ arithmetic agree here
    quantized = [x for x in base.layers if x.quantized]
    assert {x.type for x in quantized} >= {"Conv", "Gemm"}, {x.type for x in quantized}
    assert any(x.output == "logits" and x.type == "Gemm" for x in base.layers), [
        x.output for x in base.layers
    ]
    assert all(0.99 < x.cosine <= 1.0 + 1e-9 for x in base.layers), [(x.name, x.cosine) for x in base.layers]
    strict_cosine = round(1 - (1 - base.fidelity["cosine"]) / 2, 7)
    strict = load_recipe(_onnx_recipe(tmp_path, cosine=strict_cosine))
    outcome = fix(strict, Format.ONNX_INT8, base)
    assert not outcome.steps[0].passed and outcome.chosen is not None, [s.label for s in outcome.steps]
    chosen = outcome.chosen
    assert chosen.float_layers == [x.name for x in base.worst(len(chosen.float_layers))]
    assert outcome.steps[0].size_bytes < chosen.size_bytes < outcome.fp32.size_bytes
    # the recipe line --fix prints, shipped: convert builds that artifact, its gate met
    path = _onnx_recipe(tmp_path, cosine=strict_cosine, int8={"onnx_float_nodes": list(chosen.recipe_names)})
    (art,) = convert_recipe(load_recipe(path), (Format.ONNX_INT8,))
    assert art.status == "ok" and art.fidelity["gates"]["passed"], art.fidelity
    assert abs(art.fidelity["cosine"] - chosen.numbers["cosine"]) < 1e-6
    bad = _onnx_recipe(tmp_path, int8={"onnx_float_nodes": ["no_such_node"]})
    with pytest.raises(RecipeError, match=r"int8\.onnx_float_nodes.*no_such_node"):
        convert_recipe(load_recipe(bad), (Format.ONNX_INT8,))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit",
            "analyze",
            str(_onnx_recipe(tmp_path, cosine=strict_cosine)),
            "--fix",
            "--samples",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("int8: {"))
    assert yaml.safe_load(line)["int8"]["onnx_float_nodes"] == list(chosen.recipe_names), line


def test_a_loss_in_onnxruntimes_fused_kernels_is_said_above_the_table() -> None:
    """torchvision's random-weight shufflenet_v2: onnx-int8 0.917 as onnxruntime runs it (a saturated int32 bias
    wraps around in the fused QGemm), 0.99999 at the output in the QDQ arithmetic the layer table shows: a table
    of small errors under a missed gate read as a contradiction. The note says where the loss is."""
    from edgekit.analysis.onnx_layers import fused_loss
    from edgekit.convert.base import Artifact

    def art(fmt: Format, cosine: float) -> Artifact:
        return Artifact(fmt, [], key="", size_bytes=0, fidelity={"cosine": cosine, "outputs": {"logits": {}}})

    layers = [
        LayerError("/conv", "Conv", "/conv_out", True, 0.9999, 0.01, 0.01),
        LayerError("/fc/Gemm", "Gemm", "logits", True, 0.99999, 0.004, 0.0),
    ]
    (note,) = fused_loss(layers, art(Format.ONNX_INT8, 0.917), art(Format.ONNX_FP32, 1.0))
    assert (
        "cosine 0.917000" in note and "cosine 0.999990 at the output" in note and "onnx_float_nodes" in note
    )
    assert fused_loss(layers, art(Format.ONNX_INT8, 0.99998), art(Format.ONNX_FP32, 1.0)) == []


TAIL_RECIPE = """
name: tailtest
task: classify
model: {kind: onnx, path: tail.onnx}
input: {name: input, shape: [1, 3, 32, 32], layout: NCHW,
        preprocess: {scale: 0.00392156862745098, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]}}
outputs: [out]
calibration: {data: {kind: builder, builder: "edgekit.zoo.tiny:images", args: {size: 32}, samples: 16, seed: 0}}
evaluation:
  data: {kind: builder, builder: "edgekit.zoo.tiny:images", args: {size: 32}, samples: 8, seed: 1}
  gates: {int8: {min_cosine: 0.99999999}}
formats: [tflite-fp32, tflite-int8]
"""


@pytest.mark.integration
def test_max_float_bounds_what_fix_keeps_in_float_the_output_tail_included(tmp_path: Path) -> None:
    """`--fix --max-float 1` tried the TFLite output tail's 3 ops, then the tail + 1 worst (4 in float), and then
    said to raise --max-float: the tail was added outside the bound."""
    import subprocess
    import sys

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    init = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "W1"),
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32), "W2"),
        numpy_helper.from_array(np.array(1.5, np.float32), "s"),
        numpy_helper.from_array(np.array(0.25, np.float32), "b"),
    ]
    nodes = [  # two convolutions, then a 3-op tail after the last one
        helper.make_node("Conv", ["input", "W1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "W2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Sigmoid", ["c2"], ["sg"]),
        helper.make_node("Mul", ["sg", "s"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tail",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 8, 32, 32])],
        init,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "tail.onnx")
    (tmp_path / "tail.yaml").write_text(TAIL_RECIPE)
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "analyze", str(tmp_path / "tail.yaml"), "--format", "tflite-int8"]
        + ["--fix", "--max-float", "1", "--json", str(tmp_path / "a.json")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode in (0, 1), out.stdout + out.stderr
    steps = json.loads((tmp_path / "a.json").read_text())["fix"]["steps"]
    assert len(steps) >= 2 and all(len(s["float_layers"]) <= 1 for s in steps), [
        s["float_layers"] for s in steps
    ]
    assert "output tail" not in out.stdout + out.stderr
