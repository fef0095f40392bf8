"""One onnx2tf run as a recipe asks: its job and onnx2tf's arguments (made in the parent), the child's
environment, the patches the child applies to onnx2tf and TensorFlow before converting, and onnx2tf's own error
line from its log. edgekit.convert.tflite (the converter's runs) and edgekit.convert.tflite_selective (the keep-float
run) both go through here, so they quantize the same SavedModel with the same options; the reasons for each choice
are in edgekit.convert.tflite's docstring and docs/notes/conversion.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from edgekit.convert.tool_process import PARENT_ENV, plain_output
from edgekit.recipe import FLEX_PRONE_OPS, Granularity, Layout, Recipe

SAMPLE_FILE = "calibration_image_sample_data_20x128x128x3_float32.npy"  # what onnx2tf would download
PROGRESS_EVERY_S = 20.0  # a running child is said every this many seconds (every minute after two)
TIMEOUT_ENV = "EDGEKIT_CONVERT_TIMEOUT"  # seconds an onnx2tf / Keras converter child may run
DEFAULT_TIMEOUT_S = 3600.0


def convert_timeout() -> float:
    """EDGEKIT_CONVERT_TIMEOUT in seconds (default an hour), read when a converter child is started: a value
    that is no number of seconds (`10m`) is the user's setting, a UsageError naming it (exit 2), never an internal
    error at import that stopped even runs served whole from the cache."""
    import math

    from edgekit.errors import UsageError

    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise UsageError(
            f"{TIMEOUT_ENV}={raw!r} is not a number of seconds",
            where=f"${TIMEOUT_ENV}",
            hint=f"give seconds, e.g. {TIMEOUT_ENV}=7200 for two hours (no unit: `10m` is not understood); unset "
            f"it for the default {DEFAULT_TIMEOUT_S:.0f} s",
        )
    return value


def onnx2tf_job(onnx_path: Path, recipe: Recipe, int8: bool, dynamic: bool) -> dict[str, Any]:
    """What a child needs to run onnx2tf as the recipe asks (onnx2tf_kwargs turns it into onnx2tf's arguments):
    the converter's runs (edgekit.convert.tflite) and the selective quantization's own run
    (edgekit.convert.tflite_selective) share it, so both quantize the same SavedModel."""
    return {
        "int8": int8,
        "dynamic": dynamic,
        # which of onnx2tf's two INT8 files the recipe reads (edgekit.convert.tflite._files): the other is skipped
        "int8_io": recipe.int8.io.value if int8 else None,
        # a float run quantizes only the dynamic-range file, which is per-channel whatever int8.granularity says
        # (per-tensor dynamic-range gave NaN; the file's cache key says per-channel): granularity is INT8's
        "quant_type": recipe.int8.granularity.value if int8 else Granularity.PER_CHANNEL.value,
        "calibration": None,
        "input_name": recipe.input.name,
        "replace_ops": replace_ops(onnx_path, recipe),
        "disable_group_convolution": recipe.tflite.disable_group_convolution,
        "batchmatmul_unfold": recipe.tflite.batchmatmul_unfold,
        "keep_nhwc": nhwc_onnx_input(onnx_path, recipe),
    }


def replace_ops(onnx_path: Path, recipe: Recipe) -> list[str]:
    """onnx2tf's `replace_to_pseudo_operators`: the recipe's list, or the Flex-prone ops the graph contains."""
    if recipe.tflite.replace_ops is not None:
        return [op.value for op in recipe.tflite.replace_ops]
    import onnx

    present = {
        node.op_type.lower() for node in onnx.load(str(onnx_path), load_external_data=False).graph.node
    }
    return [op.value for op in FLEX_PRONE_OPS if op.value.lower() in present]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception)): (.+)")


def onnx2tf_cause(log: Path) -> str | None:
    """onnx2tf's own error: the exception it died of (and the ONNX node it was converting), one line."""
    lines = [_ANSI.sub("", ln).strip() for ln in log.read_text(errors="replace").splitlines()]
    node = next((ln.split(":", 2)[-1].strip() for ln in reversed(lines) if "onnx_op_name:" in ln), None)
    for ln in reversed(lines):
        m = _EXCEPTION.match(ln)
        if m and SKIPPED not in ln:
            text = f"{m.group(1).rpartition('.')[2]}: {m.group(3)}"[:300]
            return text + (f" (at ONNX node {node})" if node else "")
    return None


def nhwc_onnx_input(onnx_path: Path, recipe: Recipe) -> bool:
    """Whether the ONNX takes the recipe's NHWC image as it is (a user's channels-last ONNX): onnx2tf takes every
    4-D input for NCHW and moves axis 1 last ([1,24,32,3] became (1,32,3,24): int8 calibrated on data of another
    shape, a non-square image failed), unless told to keep it. A Keras source's twin for onnx2tf takes NCHW."""
    if recipe.input.layout is not Layout.NHWC or len(recipe.input.shape) != 4:
        return False
    from edgekit.convert.onnx_file import read_onnx

    graph = read_onnx(onnx_path, str(onnx_path)).graph
    given = next((i for i in graph.input if i.name == recipe.input.name), None)
    dims = [d.dim_value for d in given.type.tensor_type.shape.dim] if given is not None else []
    return dims == list(recipe.input.shape)


def write_calibration(recipe: Recipe, path: Path) -> str:
    """The recipe's calibration inputs in the layout onnx2tf's TensorFlow model takes (channels last)."""
    from edgekit.convert.calibration import calibration_inputs

    x = calibration_inputs(recipe)
    if recipe.input.layout is Layout.NCHW and x.ndim == 4:
        x = x.transpose(0, 2, 3, 1)
    elif recipe.input.layout is Layout.NCHW and x.ndim == 3:
        x = x.transpose(0, 2, 1)
    np.save(path, np.ascontiguousarray(x, dtype=np.float32))
    return path.name


def run_child(
    cmd: Sequence[str],
    work: Path,
    out: IO[Any],
    timeout_s: float,
    progress: Callable[[str], None] | None,
    what: str,
) -> int:
    """Run a converter child in `work`, its output into `out`; its exit code. Said through `progress` while it
    runs (a CI log showed nothing for the 50 s onnx2tf took on a small model): every PROGRESS_EVERY_S for two
    minutes, then every minute. Killed (and subprocess.TimeoutExpired raised) after `timeout_s`; killed too on any
    way out of here (Ctrl-C). A kill -9 of edgekit takes it along (tool_process.die_with_parent, in the child)."""
    import subprocess
    import time

    start = time.monotonic()
    proc = subprocess.Popen(list(cmd), cwd=work, stdout=out, stderr=subprocess.STDOUT, env=child_env())
    said = 0.0
    try:
        while True:
            left = timeout_s - (time.monotonic() - start)
            if left <= 0:
                raise subprocess.TimeoutExpired(list(cmd), timeout_s)
            try:
                return proc.wait(timeout=min(1.0, left))
            except subprocess.TimeoutExpired:
                pass
            elapsed = time.monotonic() - start
            if progress is not None and elapsed - said >= (PROGRESS_EVERY_S if elapsed < 120 else 60.0):
                said = elapsed
                progress(f"still converting with {what} ({elapsed:.0f} s)")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def child_env() -> dict[str, str]:
    threads = os.environ.get("EDGEKIT_CONVERT_THREADS", "1")
    dead = "http://127.0.0.1:9"  # nothing listens there: a download attempt fails at once instead of hanging
    return {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "CUDA_VISIBLE_DEVICES": "",
        "TF_NUM_INTRAOP_THREADS": threads,
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": threads,
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "http_proxy": dead,
        "https_proxy": dead,
        "NO_PROXY": "",
        "no_proxy": "",
        PARENT_ENV: str(os.getpid()),  # the child dies with this process (tool_process.die_with_parent)
    }


def log_tail(log: Path, lines: int = 25) -> str:
    text = plain_output(log.read_text(errors="replace")).splitlines()
    keep = [ln for ln in text if not ln.startswith(("W0000", "I0000"))]
    return "\n".join(keep[-lines:])


# --- in the child process ----------------------------------------------------------------------------------
SKIPPED = "variant skipped on purpose"  # in the RuntimeError that skips one, which onnx2tf logs as a warning


def skip_variants(job: dict[str, Any]) -> None:
    """Make the TFLite conversions of an INT8 (-oiqt) run that nothing reads fail fast; onnx2tf logs each and
    moves on (each sits in a try of its own, or last in one): the int16-activation variants (reference kernels,
    about 30x slower; calibrating them roughly doubled the run), the full-integer file (int8 input and output)
    when the recipe's io is float, and the dynamic-range file when the run does not serve tflite-dynamic (a
    second calibration pass over the whole data, and a third conversion, for files no one read)."""
    import tensorflow as tf

    int16 = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8

    def calibrated(converter: Any) -> str | None:  # onnx2tf's INT8 converters: from its SavedModel
        if int16 in converter.target_spec.supported_ops:
            return "int16-activation"
        int8_io = tf.float32 not in (converter.inference_input_type, converter.inference_output_type)
        if int8_io and job.get("int8_io") == "float":
            return "full-integer (int8 input and output)"
        return None

    def dynamic_range(converter: Any) -> str | None:  # its dynamic-range one: from its concrete function
        quantizing = bool(converter.optimizations) and not converter.target_spec.supported_types
        if quantizing and converter.representative_dataset is None and job["int8"] and not job["dynamic"]:
            return "dynamic-range"
        return None

    _skip_in(tf.lite.TFLiteConverter, "from_saved_model", calibrated)
    _skip_in(tf.lite.TFLiteConverter, "from_concrete_functions", dynamic_range)


def _skip_in(cls: Any, factory: str, skipped: Callable[[Any], str | None]) -> None:
    """Wrap `cls.factory` so that each converter it makes raises, at convert(), when `skipped` names it."""
    original = getattr(cls, factory)

    def make(*args: Any, **kwargs: Any) -> Any:
        converter = original(*args, **kwargs)
        real_convert = converter.convert

        def convert() -> Any:
            what = skipped(converter)
            if what:
                raise RuntimeError(f"edgekit: {what} {SKIPPED}")
            return real_convert()

        converter.convert = convert
        return converter

    setattr(cls, factory, make)


def validate_on_one_sample(job: dict[str, Any]) -> None:
    """onnx2tf checks its layout choices by running the ONNX model on the first sample of the -cind data, but it
    turns that data from NHWC to NCHW only when the whole file has the model's batch: with the recipe's N
    calibration samples the ONNX run got NHWC data, failed, and the check was skipped, so a model with a Reshape
    or Transpose after a convolution (tokens, attention) came out wrong from every INT8 run: tflite-fp32 cosine
    0.797 where a float run (no -cind) gave 1.000, tflite-int8 0.798 (0.99998 with the check). Its ONNX runs get
    a file of the first sample alone; the calibration still reads every sample."""
    if not job.get("calibration"):
        return
    import importlib

    import onnx2tf.onnx2tf as main
    import onnx2tf.utils.common_functions as common

    one = "validation_sample.npy"
    np.save(one, np.load(job["calibration"], mmap_mode="r")[:1])
    original = common.dummy_onnx_inference

    def one_sample(*args: Any, **kwargs: Any) -> Any:
        given = kwargs.get("custom_input_op_name_np_data_path")
        if given:
            kwargs["custom_input_op_name_np_data_path"] = [[p[0], one, *p[2:]] for p in given]
        return original(*args, **kwargs)

    for module in (main, importlib.import_module("onnx2tf.ops.ConvTranspose")):  # the callers, by their names
        if getattr(module, "dummy_onnx_inference", None) is original:
            setattr(module, "dummy_onnx_inference", one_sample)  # noqa: B010 - a module mypy sees as a union


def onnx2tf_kwargs(job: dict[str, Any]) -> dict[str, Any]:
    """onnx2tf.convert's arguments for a job of onnx2tf_job (in the child: the calibration file is in its cwd)."""
    kwargs: dict[str, Any] = {}
    if job["calibration"]:
        calib = np.load(job["calibration"], mmap_mode="r")
        ident = (1,) * (calib.ndim - 1) + (calib.shape[-1],) if calib.ndim == 4 else (1,)
        kwargs["custom_input_op_name_np_data_path"] = [
            [job["input_name"], job["calibration"], np.zeros(ident, np.float32), np.ones(ident, np.float32)]
        ]
    # output_signaturedefs: without it a float run fails on op names like "/s5/s5.0/Conv" (an -oiqt run sets it
    # itself), and the signature keeps the ONNX output names
    return dict(
        copy_onnx_input_output_names_to_tflite=True,
        output_signaturedefs=True,
        output_integer_quantized_tflite=job["int8"],
        output_dynamic_range_quantized_tflite=job["dynamic"],
        quant_type=job["quant_type"],
        input_quant_dtype="int8",
        output_quant_dtype="int8",
        replace_to_pseudo_operators=[op.lower() for op in job["replace_ops"]],  # its ops compare lower case
        disable_group_convolution=job["disable_group_convolution"],
        enable_batchmatmul_unfold=job["batchmatmul_unfold"],
        keep_nwc_or_nhwc_or_ndhwc_input_names=[job["input_name"]] if job.get("keep_nhwc") else None,
        non_verbose=True,
        **kwargs,
    )


def flex_ops(path: Path) -> list[str]:
    """The Select TF (Flex) operators a .tflite needs: custom operator codes named Flex*."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    codes = [
        c.customCode.decode() if isinstance(c.customCode, bytes) else c.customCode
        for c in model.operatorCodes or []
    ]
    return sorted({c for c in codes if c and c.startswith("Flex")})
