"""TFLite INT8 with chosen layers kept in float: TensorFlow's selective quantization on onnx2tf's SavedModel.

onnx2tf has no option to keep a layer in float, but the TensorFlow converter does: a model calibrated once
(`_experimental_calibrate_only`) is quantized by `mlir_quantize(..., denylisted_nodes=[...])`, the same call
its QuantizationDebugger makes, where a node is named by its output tensor. The converter settings are onnx2tf's
for its `integer_quant` file (DEFAULT optimizations, TFLITE_BUILTINS_INT8 + SELECT_TF_OPS, float input/output,
per-channel unless the recipe says per-tensor), so the empty denylist reproduces the plain INT8 artifact.
The SavedModel must come from an onnx2tf INT8 run (`-oiqt`), as for edgekit.convert.tflite: quantizing the plain
one gave a model XNNPACK refuses and whose scores were all zero. Runs in a child process
(`python -m edgekit.analysis.tflite_selective JOB.json`), as edgekit.convert.tflite does, and never downloads anything.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import paths
from edgekit.errors import ConversionError, exit_text
from edgekit.recipe import Granularity, Layout, Recipe

TIMEOUT_S = 3600


def build_selective(
    onnx_path: Path,
    recipe: Recipe,
    calibration: np.ndarray,
    denylists: Sequence[Sequence[str]],
    out_dir: Path,
) -> list[Path]:
    """One .tflite per denylist (op output tensor names kept in float), from one onnx2tf + calibration run."""
    from edgekit.convert.tflite import _child_env, _tail

    work = paths.work_dir("selective")
    work.mkdir(parents=True)
    x = calibration
    if recipe.input.layout is Layout.NCHW and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    np.save(work / "calibration.npy", np.ascontiguousarray(x, dtype=np.float32))
    (work / "model.onnx").write_bytes(Path(onnx_path).read_bytes())
    outs = [str(Path(out_dir) / f"float-{i}-{len(d)}" / "model.tflite") for i, d in enumerate(denylists)]
    job = {
        "onnx": "model.onnx",
        "calibration": "calibration.npy",
        "denylists": [list(d) for d in denylists],
        "outputs": outs,
        "per_tensor": recipe.int8.granularity is Granularity.PER_TENSOR,
        "input_name": recipe.input.name,
    }
    (work / "job.json").write_text(json.dumps(job))
    log = work / "selective.log"
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "edgekit.analysis.tflite_selective", "job.json"],
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_child_env(),
            timeout=TIMEOUT_S,
        )
    if proc.returncode != 0:  # the work folder is kept for its log
        raise ConversionError(
            f"selective TFLite quantization failed ({exit_text(proc.returncode)}):\n{_tail(log)}",
            where=str(log),
        )
    shutil.rmtree(
        work, ignore_errors=True
    )  # the artifacts are in out_dir (edgekit.paths: a success removes its own)
    return [Path(p) for p in outs]


def _child(job_path: Path) -> None:
    import onnx2tf
    import tensorflow as tf
    from tensorflow.lite.python import convert

    from edgekit.analysis.analyze import tensor_key
    from edgekit.convert.tflite import SAMPLE_FILE, _skip_int16_variants

    job = json.loads(job_path.read_text())
    np.save(SAMPLE_FILE, np.random.default_rng(0).uniform(0, 1, (20, 128, 128, 3)).astype(np.float32))
    _skip_int16_variants()
    # The SavedModel of an INT8 (-oiqt) run, as edgekit.convert.tflite makes it: the plain one quantizes into a
    # model XNNPACK refuses and whose scores come out as zeros (measured; see docs/notes/conversion.md).
    calib = np.load(job["calibration"])
    ident = (1,) * (calib.ndim - 1) + (calib.shape[-1],) if calib.ndim == 4 else (1,)
    onnx2tf.convert(
        input_onnx_file_path=job["onnx"],
        output_folder_path="saved",
        non_verbose=True,
        copy_onnx_input_output_names_to_tflite=True,
        output_integer_quantized_tflite=True,
        quant_type="per-tensor" if job["per_tensor"] else "per-channel",
        custom_input_op_name_np_data_path=[
            [job["input_name"], job["calibration"], np.zeros(ident, np.float32), np.ones(ident, np.float32)]
        ],
    )

    def representative() -> Any:
        for k in range(len(calib)):
            yield [tf.convert_to_tensor(calib[k : k + 1], tf.float32)]

    converter = tf.lite.TFLiteConverter.from_saved_model("saved")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.SELECT_TF_OPS]
    converter._experimental_disable_per_channel = bool(job["per_tensor"])
    converter.representative_dataset = representative
    converter.experimental_mlir_quantizer = True
    converter._experimental_calibrate_only = True
    calibrated = converter.convert()
    interp = tf.lite.Interpreter(model_content=calibrated)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    by_key = {tensor_key(names[o]): names[o] for op in interp._get_ops_details() for o in op["outputs"]}
    for denylist, out in zip(job["denylists"], job["outputs"]):
        missing = [n for n in denylist if tensor_key(n) not in by_key]
        if missing:  # layout ops the converter fused away: they compute nothing to keep in float
            print(f"not in the calibrated model (skipped): {missing}", flush=True)
        nodes = [by_key[tensor_key(n)] for n in denylist if tensor_key(n) in by_key]
        model = convert.mlir_quantize(
            calibrated, disable_per_channel=bool(job["per_tensor"]), denylisted_nodes=nodes or None
        )
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(model)
        print(f"wrote {out}: {len(nodes)} node(s) kept in float", flush=True)


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
