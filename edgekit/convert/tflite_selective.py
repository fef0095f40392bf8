"""TFLite INT8 with chosen ops kept in float: TensorFlow's selective quantization on onnx2tf's SavedModel.

onnx2tf has no option to keep a layer in float, but the TensorFlow converter does: a model calibrated once
(`_experimental_calibrate_only`) is quantized by `mlir_quantize(..., denylisted_nodes=[...])`, the same call
its QuantizationDebugger makes, where a node is named by its output tensor. The converter settings are onnx2tf's
for its `integer_quant` file (DEFAULT optimizations, TFLITE_BUILTINS_INT8 + SELECT_TF_OPS, float input/output,
per-channel unless the recipe says per-tensor), so the empty denylist reproduces the plain INT8 artifact.
The SavedModel must come from an onnx2tf INT8 run (`-oiqt`), as for edgekit.convert.tflite: quantizing the plain
one gave a model XNNPACK refuses and whose scores were all zero. Runs in a child process
(`python -m edgekit.convert.tflite_selective JOB.json`), as edgekit.convert.tflite does, and never downloads
anything.

Two users: `edgekit analyze --fix` (several denylists from one TensorFlow run) and a recipe's
`int8.tflite_float_ops` (the converter's tflite-int8 artifact). An op is named by its output tensor (`tensor_key`),
or by the first `;`-part of it where that names one op only: the short name `analyze --fix` prints.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import paths
from edgekit.errors import ConversionError, RecipeError, exit_text
from edgekit.recipe import Granularity, Recipe

TIMEOUT_S = 3600
MAX_NAMED = 4  # ops kept in float named in a finding; the rest counted


def tensor_key(name: str) -> str:
    """A TFLite op output's name without what differs between conversions of one SavedModel: fused `Const_N`
    parts, and the Keras model prefix (`model/`, or `model_1/` when TensorFlow loaded the model again)."""
    parts = [re.sub(r"^model_\d+/", "model/", p) for p in name.split(";") if not p.startswith("Const")]
    return ";".join(parts) or name


TFLITE_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def tflite_output_tail(path: Path) -> list[str]:
    """The ops after a model's last weighted layers (no CONV / FC reachable from them), by output tensor name, as
    selective quantization takes them: a detector's box decoding (sigmoid, grid offsets, stride multiply, concat),
    a classifier's softmax. In int8 such a tensor has 256 levels over its whole range (box coordinates over 320
    pixels: 1.25 px a step), which costs little cosine but box precision at high IoU (mAP@0.5:0.95)."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path))
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    ops = [op for op in interp._get_ops_details() if len(op["outputs"])]
    consumers: dict[int, list[int]] = {}
    for i, op in enumerate(ops):
        for t in op["inputs"]:
            consumers.setdefault(int(t), []).append(i)
    feeds_weighted: dict[int, bool] = {}
    for i in reversed(range(len(ops))):  # the interpreter's order is topological: consumers come later
        after = [j for t in ops[i]["outputs"] for j in consumers.get(int(t), [])]
        feeds_weighted[i] = any(
            ops[j]["op_name"] in TFLITE_WEIGHTED or feeds_weighted.get(j, False) for j in after
        )
    # an int8 model's last ops write int8 tensors that a DEQUANTIZE turns into the named float outputs: the float
    # model (what selective quantization reads) calls those ops by the output's name
    alias = {
        names[int(op["inputs"][0])]: names[int(op["outputs"][0])]
        for op in ops
        if op["op_name"] == "DEQUANTIZE" and len(op["inputs"])
    }
    skip = (*TFLITE_WEIGHTED, "QUANTIZE", "DEQUANTIZE")
    tail = [
        names[int(op["outputs"][0])]
        for i, op in enumerate(ops)
        if op["op_name"] not in skip and not feeds_weighted[i]
    ]
    return [alias.get(name, name) for name in tail]


@dataclass(frozen=True)
class Selective:
    """One built model: its file, the ops kept in float (each by its shortest unambiguous name, what a recipe's
    `int8.tflite_float_ops` takes) and the names asked for that match no op of the calibrated model."""

    path: Path
    kept: list[str]
    missing: list[str]


def build_selective(
    onnx_path: Path,
    recipe: Recipe,
    denylists: Sequence[Sequence[str]],
    out_dir: Path,
    saved_model: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Selective]:
    """One .tflite per denylist (ops kept in float), from one calibration run on the recipe's calibration data,
    of `saved_model` (the converter's INT8 run's onnx2tf output folder), else of that run kept in the conversion
    cache (edgekit.convert.tflite_runs: the same model, data, options and tools), else of an onnx2tf run of its
    own with the recipe's options (edgekit.convert.tflite.onnx2tf_job). TensorFlow runs in a child
    (onnx2tf_run.run_child): said through `progress` while it runs, and dying with edgekit."""
    from edgekit.convert import tflite_runs
    from edgekit.convert.onnx2tf_run import log_tail, onnx2tf_job, run_child, write_calibration

    work = paths.work_dir("selective")
    work.mkdir(parents=True)
    outs = [str(Path(out_dir) / f"float-{i}-{len(d)}" / "model.tflite") for i, d in enumerate(denylists)]
    onnx2tf_args = onnx2tf_job(onnx_path, recipe, int8=True, dynamic=False)
    calibration = write_calibration(recipe, work / "calibration.npy")
    # the converter's INT8 run of this model, data and options, where the cache has it
    if saved_model is None:  # made with or without the dynamic-range file: the same SavedModel
        keys = [
            tflite_runs.run_key(onnx_path, {**onnx2tf_args, "dynamic": d}, work / calibration)
            for d in (False, True)
        ]
        cached = tflite_runs.lookup(keys[0]) or tflite_runs.lookup(keys[1])
        if cached is not None:
            saved_model = cached / "out"
            if progress is not None:
                progress("the SavedModel of onnx2tf's INT8 run from the cache: onnx2tf not run again")
    job = {
        **onnx2tf_args,
        "onnx": "model.onnx",
        "calibration": calibration,
        "denylists": [list(d) for d in denylists],
        "outputs": outs,
        "per_tensor": recipe.int8.granularity is Granularity.PER_TENSOR,
        "saved_model": str(Path(saved_model).resolve()) if saved_model is not None else None,
    }
    if saved_model is None:
        (work / "model.onnx").write_bytes(Path(onnx_path).read_bytes())
    (work / "job.json").write_text(json.dumps(job))
    log = work / "selective.log"
    with open(log, "w") as out:
        try:
            returncode = run_child(
                [sys.executable, "-m", "edgekit.convert.tflite_selective", "job.json"],
                work,
                out,
                TIMEOUT_S,
                progress,
                "TensorFlow (selective quantization)",
            )
        except KeyboardInterrupt:  # run_child has killed TensorFlow; its half-written folder goes too
            shutil.rmtree(work, ignore_errors=True)
            raise
        except subprocess.TimeoutExpired:
            raise ConversionError(
                f"selective TFLite quantization ran longer than {TIMEOUT_S} s and was stopped", where=str(log)
            ) from None
    if returncode != 0:  # the work folder is kept for its log
        raise ConversionError(
            f"selective TFLite quantization failed ({exit_text(returncode)}):\n{log_tail(log)}",
            where=str(log),
        )
    found = json.loads((work / "result.json").read_text())
    shutil.rmtree(
        work, ignore_errors=True
    )  # the artifacts are in out_dir (edgekit.paths: a success removes its own)
    return [Selective(Path(p), r["kept"], r["missing"]) for p, r in zip(outs, found)]


def keep_float(
    onnx_path: Path,
    recipe: Recipe,
    dest: Path,
    progress: Callable[[str], None] | None,
    saved_model: Path | None = None,
) -> str:
    """Replace the plain tflite-int8 artifact at `dest` by one with the recipe's `int8.tflite_float_ops` (and,
    with `tflite_float_tail`, the plain artifact's output tail) kept in float, quantizing `saved_model` (the SavedModel
    `dest` was converted from) where given; returns the artifact's finding (what was kept). A name no op of the
    model has is the recipe's error."""
    tail = tflite_output_tail(dest) if recipe.int8.tflite_float_tail else []
    asked = list(dict.fromkeys(recipe.int8.tflite_float_ops))
    if not tail and not asked:  # the flag on a model whose last op is a weighted one: nothing to build
        return "int8.tflite_float_tail: no op follows the last weighted layer, so nothing is kept in float"
    kept = list(dict.fromkeys(tail + asked))
    if progress:
        progress(
            f"keeping {len(kept)} op(s) in float: TensorFlow's selective quantization "
            + (
                "of the INT8 run's SavedModel (a second TensorFlow run; onnx2tf not repeated)"
                if saved_model is not None
                else "(a second TensorFlow run, onnx2tf's included)"
            )
        )
    out = paths.work_dir("keep-float")
    try:
        (built,) = build_selective(onnx_path, recipe, [kept], out, saved_model, progress)
        unknown = [n for n in built.missing if n in asked]  # a tail's layout op may be fused away: no op
        if unknown:
            raise RecipeError(
                f"field `int8.tflite_float_ops`: ops the model does not have: {unknown}",
                where=str(recipe.path),
                hint="use the names `edgekit analyze RECIPE --format tflite-int8 --fix` prints (each op's "
                "output tensor)",
            )
        shutil.copyfile(built.path, dest)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    why = " and ".join(
        [*(["the output tail"] if tail else []), *(["int8.tflite_float_ops"] if asked else [])]
    )
    shown = ", ".join(built.kept[:MAX_NAMED]) + (
        f" and {len(built.kept) - MAX_NAMED} more" if len(built.kept) > MAX_NAMED else ""
    )
    return f"{len(built.kept)} op(s) kept in float ({why}), the rest int8" + (
        f": {shown}" if built.kept else ""
    )


def resolve(asked: Sequence[str], names: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """Which op outputs (of `names`, the calibrated model's) the names `asked` mean: {short name: tensor name},
    and the asked names that match none (or, by a short name, more than one). A name matches by its whole
    tensor_key or by the key's first `;`-part; the short name given back is the first part where that is
    unique, else the whole key."""
    by_key = {tensor_key(n): n for n in names}
    firsts: dict[str, list[str]] = {}
    for key in by_key:
        firsts.setdefault(key.split(";")[0], []).append(key)
    chosen: dict[str, str] = {}
    missing = []
    for name in asked:
        key = tensor_key(name)
        if key not in by_key:
            hits = firsts.get(key.split(";")[0], []) if ";" not in key else []
            if len(hits) != 1:
                missing.append(name)
                continue
            key = hits[0]
        first = key.split(";")[0]
        chosen[first if len(firsts[first]) == 1 else key] = by_key[key]
    return chosen, missing


def _child(job_path: Path) -> None:
    import tensorflow as tf
    from tensorflow.lite.python import convert

    job = json.loads(job_path.read_text())
    calib = np.load(job["calibration"])
    # The SavedModel of an INT8 (-oiqt) run, as edgekit.convert.tflite makes it: the plain one quantizes into a
    # model XNNPACK refuses and whose scores come out as zeros (measured; see docs/notes/conversion.md). The
    # converter's own run's where it was kept (its onnx2tf run is not repeated), else one with its options.
    saved = job.get("saved_model")
    if not saved:
        import onnx2tf

        from edgekit.convert.onnx2tf_run import (
            SAMPLE_FILE,
            onnx2tf_kwargs,
            skip_variants,
            validate_on_one_sample,
        )

        np.save(SAMPLE_FILE, np.random.default_rng(0).uniform(0, 1, (20, 128, 128, 3)).astype(np.float32))
        skip_variants(job)
        validate_on_one_sample(job)
        onnx2tf.convert(input_onnx_file_path=job["onnx"], output_folder_path="saved", **onnx2tf_kwargs(job))
        saved = "saved"

    def representative() -> Any:
        for k in range(len(calib)):
            yield [tf.convert_to_tensor(calib[k : k + 1], tf.float32)]

    converter = tf.lite.TFLiteConverter.from_saved_model(saved)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.SELECT_TF_OPS]
    converter._experimental_disable_per_channel = bool(job["per_tensor"])
    converter.representative_dataset = representative
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    interp = tf.lite.Interpreter(model_content=calibrated)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    outputs = [names[o] for op in interp._get_ops_details() for o in op["outputs"]]
    results = []
    for denylist, out in zip(job["denylists"], job["outputs"]):
        chosen, missing = resolve(denylist, outputs)
        if missing:  # e.g. layout ops the converter fused away: they compute nothing to keep in float
            print(f"not in the calibrated model (skipped): {missing}", flush=True)
        model = convert.mlir_quantize(
            calibrated,
            disable_per_channel=bool(job["per_tensor"]),
            denylisted_nodes=list(chosen.values()) or None,
        )
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(model)
        results.append({"kept": list(chosen), "missing": missing})
        print(f"wrote {out}: {len(chosen)} node(s) kept in float", flush=True)
    Path("result.json").write_text(json.dumps(results))


if __name__ == "__main__":
    from edgekit.convert.tool_process import die_with_parent

    die_with_parent()
    _child(Path(sys.argv[1]))
