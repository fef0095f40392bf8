"""ONNX -> TFLite through onnx2tf, for real: every format of a tiny classifier in one run, fidelity checked on the
host; a tiny two-output detector as per-tensor INT8 with int8 input/output; the cache hit; the CLI's exit codes.
Two onnx2tf runs in all (a tiny model still costs TensorFlow's start-up, 15-30 s each)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edgekit.convert.base import Artifact
from edgekit.convert.tflite import Run, TfliteConverter, plan_runs
from edgekit.formats import Format
from edgekit.recipe import Recipe, load_recipe

TFLITE = [Format.TFLITE_FP32, Format.TFLITE_FP16, Format.TFLITE_DYNAMIC, Format.TFLITE_INT8]
TINY = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"


def write_recipe(folder: Path, name: str, **changes: Any) -> Path:
    raw = yaml.safe_load(TINY.read_text())
    raw.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def interpreter(artifact: Artifact) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(artifact.main_file))
    interp.allocate_tensors()
    return interp


def test_plan_runs_groups_formats(tmp_path: Path) -> None:
    r = load_recipe(write_recipe(tmp_path, "r"))
    assert plan_runs(TFLITE, r) == [Run(tuple(TFLITE), int8=True, dynamic=False)]
    assert plan_runs([Format.TFLITE_DYNAMIC, Format.TFLITE_FP32], r) == [
        Run((Format.TFLITE_FP32, Format.TFLITE_DYNAMIC), int8=False, dynamic=True)
    ]
    per_tensor = load_recipe(write_recipe(tmp_path, "pt", int8={"granularity": "per-tensor"}))
    assert plan_runs(
        TFLITE, per_tensor
    ) == [  # per-tensor dynamic-range is unstable: it comes from a float run
        Run((Format.TFLITE_FP32, Format.TFLITE_FP16, Format.TFLITE_INT8), int8=True, dynamic=False),
        Run((Format.TFLITE_DYNAMIC,), int8=False, dynamic=True),
    ]


# --- a tiny classifier, all four formats --------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recipe, list[Artifact], float]:
    from edgekit.convert.pipeline import convert_recipe

    # width 12: an ONNX no other test makes, so this run really converts
    path = write_recipe(
        tmp_path_factory.mktemp("cls"),
        "cls",
        formats=[f.value for f in TFLITE],
        model={"kind": "torch", "builder": "edgekit.zoo.tiny:build", "args": {"width": 12}},
    )
    recipe = load_recipe(path)
    start = time.perf_counter()
    artifacts = convert_recipe(recipe)
    return recipe, artifacts, time.perf_counter() - start


@pytest.mark.integration
def test_every_tflite_format_is_converted_in_one_run_and_passes_its_gate(classifier: Any) -> None:
    _, artifacts, _ = classifier
    assert [a.format for a in artifacts] == TFLITE
    assert all(a.status == "ok" and not a.cached for a in artifacts), [a.error for a in artifacts]
    assert all(a.provenance["shared_run"] == [f.value for f in TFLITE] for a in artifacts)
    assert all(a.peak_rss_mb and a.peak_rss_mb > 200 for a in artifacts)  # TensorFlow's child, measured
    fid = {a.format: a.fidelity for a in artifacts}
    assert fid[Format.TFLITE_FP32]["max_abs_error"] < 1e-4
    assert fid[Format.TFLITE_FP16]["cosine"] >= 0.999
    assert fid[Format.TFLITE_INT8]["cosine"] >= 0.95
    assert all(
        f["top1_agreement"] >= 0.75 and f["gates"]["passed"] and f["gates"]["checks"] for f in fid.values()
    )
    assert fid[Format.TFLITE_FP32]["max_abs_error"] < fid[Format.TFLITE_INT8]["max_abs_error"]


@pytest.mark.integration
def test_quantized_files_are_smaller_and_really_quantized(classifier: Any) -> None:
    _, artifacts, _ = classifier
    size = {a.format: a.size_bytes for a in artifacts}
    assert size[Format.TFLITE_FP16] < 0.75 * size[Format.TFLITE_FP32]
    assert size[Format.TFLITE_INT8] < 0.6 * size[Format.TFLITE_FP32]
    int8 = interpreter(artifacts[3])
    (inp,) = int8.get_input_details()
    assert inp["dtype"] == np.float32  # io: float (the default)
    dtypes = {t["dtype"] for t in int8.get_tensor_details()}
    assert np.int8 in dtypes and np.int16 not in dtypes  # int8 activations, never the int16 variant


def test_a_dynamic_range_file_says_which_weights_stayed_float(classifier: Any) -> None:
    """TFLiteConverter leaves a weight tensor under 1024 elements float: a small model's tflite-dynamic can be the
    fp32 model's arithmetic byte for byte, and nothing said so. The finding counts the float layers from the file
    itself; with every weight float it says the artifact computes as tflite-fp32 does."""
    from ai_edge_litert import schema_py_generated as schema

    from edgekit.convert.findings import dynamic_kept_float

    _, artifacts, _ = classifier
    dynamic = next(a for a in artifacts if a.format is Format.TFLITE_DYNAMIC)
    said = [f for f in dynamic.provenance["findings"] if f.startswith("dynamic range kept float: ")]
    model = schema.ModelT.InitFromPackedBuf(dynamic.main_file.read_bytes(), 0)
    graph = model.subgraphs[0]
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    convs = [
        op
        for op in graph.operators
        if names.get(model.operatorCodes[op.opcodeIndex].builtinCode)
        in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
    ]
    floats = sum(graph.tensors[op.inputs[1]].type == schema.TensorType.FLOAT32 for op in convs)
    assert 0 < floats < len(convs)  # width 12: some weights over 1024 elements, some under
    assert said == [dynamic_kept_float(Format.TFLITE_DYNAMIC, dynamic.files)]
    assert said[0].startswith(f"dynamic range kept float: {floats} of {len(convs)} weighted layers (")
    assert "computes as tflite-fp32" not in said[0]
    assert dynamic_kept_float(Format.TFLITE_FP32, dynamic.files) is None


@pytest.mark.integration
def test_second_convert_does_no_work(classifier: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekit.convert import torch_export
    from edgekit.convert.pipeline import convert_recipe

    recipe, first, first_s = classifier

    def no_work(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("conversion work on an unchanged recipe")

    monkeypatch.setattr(TfliteConverter, "convert_many", no_work)
    monkeypatch.setattr(torch_export, "export_torch", no_work)
    monkeypatch.setattr("edgekit.fidelity.check.run_artifact", no_work)  # fidelity results are cached too
    messages: list[str] = []
    start = time.perf_counter()
    second = convert_recipe(recipe, progress=messages.append)
    second_s = time.perf_counter() - start
    assert all(a.cached and a.fidelity["cached"] for a in second)
    assert [a.files for a in second] == [a.files for a in first]
    assert [a.fidelity["cosine"] for a in second] == [a.fidelity["cosine"] for a in first]
    assert "model: ONNX from cache (model.onnx)" in messages
    assert all(f"{f.value}: cached, no conversion" in messages for f in TFLITE)
    assert second_s < 0.05 * first_s, (first_s, second_s)


@pytest.mark.integration
def test_cli_table_and_exit_codes(classifier: Any, tmp_path: Path) -> None:
    """A gate the cached artifact cannot meet: exit 1 with the table; --keep-going: exit 0; --json written."""
    recipe, _, _ = classifier
    raw = yaml.safe_load(recipe.path.read_text())
    raw["evaluation"]["gates"] = {"fp32": {"max_abs_error": 1e-12}}  # TFLite and ONNX Runtime round apart
    strict = recipe.path.with_name("strict.yaml")
    strict.write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "edgekit", "convert", str(strict), "--format", "tflite-fp32"]
    failed = subprocess.run(cmd, capture_output=True, text=True)
    assert failed.returncode == 1, failed.stderr
    assert "FAIL" in failed.stdout and "max_abs_error" in failed.stderr and "FidelityError" in failed.stderr
    out = tmp_path / "r.json"
    kept = subprocess.run([*cmd, "--keep-going", "--json", str(out)], capture_output=True, text=True)
    assert kept.returncode == 0, kept.stderr
    assert "1 from the cache - no conversion work" in kept.stdout
    record = json.loads(out.read_text())["artifacts"][0]
    # the file itself, for estimate / bench / profile: only --json said where it was
    assert "files (for edgekit estimate, bench, profile):" in kept.stdout
    assert record["files"][0] in "".join(kept.stdout.split()), kept.stdout
    assert (
        record["status"] == "failed"
        and record["cached"]
        and 1e-12 < record["fidelity"]["gates"]["checks"][0]["value"] < 1e-3  # a real, small difference
    )


@pytest.mark.integration
def test_dynamic_range_file_is_per_channel_whatever_int8_granularity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tflite-dynamic's key says per-channel, but a per-tensor recipe's float run wrote per-tensor weights under
    that key (onnx2tf's dynamic-range converter follows quant_type): whichever recipe converted first filled the
    cache for both. The float run quantizes per-channel now, as the key says."""
    from edgekit.convert.pipeline import convert_recipe

    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    path = write_recipe(
        tmp_path, "pt", formats=["tflite-dynamic"], int8={"granularity": "per-tensor", "io": "float"}
    )
    from ai_edge_litert import schema_py_generated as schema

    (art,) = convert_recipe(load_recipe(path))
    assert art.status == "ok" and not art.cached, art.error
    # the file's own quantization records (the interpreter reports per-channel scales for a per-tensor weight)
    model = schema.ModelT.InitFromPackedBuf(art.main_file.read_bytes(), 0)
    scales = [
        len(t.quantization.scale)
        for t in model.subgraphs[0].tensors
        if t.type == schema.TensorType.INT8
        and t.quantization is not None
        and t.quantization.scale is not None
    ]  # the weights it quantized (those of 1024 values or more)
    assert scales and all(n > 1 for n in scales), scales  # one per output channel; per-tensor has 1


# --- a tiny detector: two outputs, per-tensor INT8 with int8 input and output -------------------------------
@pytest.mark.integration
def test_detector_int8_io_per_tensor(tmp_path: Path) -> None:
    from edgekit.convert.pipeline import convert_recipe

    path = write_recipe(
        tmp_path,
        "det",
        task="detect",
        formats=["tflite-int8"],
        outputs=["boxes", "scores"],
        model={"kind": "torch", "builder": "edgekit.zoo.tiny:build_detector"},
        int8={"granularity": "per-tensor", "io": "int8"},
        evaluation={
            "data": {
                "kind": "builder",
                "builder": "edgekit.zoo.shapes:test_set",
                "args": {"size": 32},
                "samples": 4,
            },
            "gates": {"int8": {"min_cosine": 0.95}},
        },
    )
    (art,) = convert_recipe(load_recipe(path), keep_going=True)
    assert art.status == "ok", art.error
    interp = interpreter(art)
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert [o["dtype"] for o in interp.get_output_details()] == [np.int8, np.int8]
    scales = sorted(o["quantization"][0] for o in interp.get_output_details())
    assert scales[1] > 100 * scales[0]  # boxes (pixels) and scores (0..1) each have their own scale
    assert art.fidelity["output_mapping"] in ("name", "index")  # never guessed by position
    assert set(art.fidelity["outputs"]) == {"boxes", "scores"}
    assert art.fidelity["outputs"]["boxes"]["max_abs"] < 2.0  # pixels on a 32x32 input
    assert "map50" in art.fidelity and art.fidelity["samples"] == 4
