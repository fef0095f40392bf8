"""What runs when an artifact runs, for the estimate and the roofline: its format (from edgekit's metadata or
--format), checked against the file itself. A bare ncnn .param runs with ncnn's default options, int8 where its
layers say so whatever its label (the speed plan may keep every layer of an ncnn-int8 artifact float); a .tflite
without metadata is read from its tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekit.convert.ncnn.param import has_int8_layers
from edgekit.estimate.roofline import compute_precision
from edgekit.formats import Format, Precision


@dataclass(frozen=True)
class RunsAs:
    """What runs: the artifact's format (None: a bare ncnn .param, run with ncnn's defaults, or an ONNX file),
    in words, whether int8 kernels run, and the precision the roofline's peak is taken at."""

    fmt: Format | None
    how: str
    int8: bool
    precision: Precision


def runs_as(artifact: Path, known: Format | None) -> RunsAs:
    """How the runtime runs the artifact, from its metadata (or --format) and from the file itself: a bare ncnn
    .param runs with ncnn's default options (fp16 storage; fp16 arithmetic where the core has it), int8 where
    its layers say so, whatever its label; a .tflite without metadata is read from its tensors."""
    if artifact.suffix == ".tflite" and known is None:
        read = tflite_format(artifact)
        return RunsAs(
            read,
            f"{read.value} (read from its tensors: no artifact.json beside it)",
            read.precision is Precision.INT8,
            compute_precision(read),
        )
    if artifact.suffix != ".param":
        how = known.value if known is not None else artifact.suffix.lstrip(".")
        int8 = known is not None and known.precision is Precision.INT8
        return RunsAs(known, how, int8, compute_precision(known))
    int8 = has_int8_layers(artifact)
    if known is None:
        if int8:
            return RunsAs(
                Format.NCNN_INT8,
                "ncnn int8 layers (int8_scale_term in the .param), ncnn's default options",
                True,
                Precision.INT8,
            )
        return RunsAs(
            None,
            "ncnn, default options (fp16 storage; fp16 arithmetic where the core has it), as benchncnn",
            False,
            compute_precision(None),
        )
    if known.precision is Precision.INT8 and not int8:
        return RunsAs(
            known,
            f"{known.value} with no quantized layer (every layer runs in float)",
            False,
            compute_precision(None),
        )
    return RunsAs(known, known.value, int8, compute_precision(known))


_WEIGHTED_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "BATCH_MATMUL"}


def tflite_format(path: Path) -> Format:
    """A .tflite's precision read from its tensors, for a file without edgekit's metadata: weighted ops on int8
    activations are full-integer (tflite-int8), int8 weights under float activations are dynamic-range, fp16
    constants dequantized at load are tflite-fp16, anything else fp32."""
    import numpy as np

    from edgekit.runtimes.tflite import load_tflite

    interp = load_tflite(path)
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in interp.get_tensor_details()}
    ops = interp._get_ops_details()  # no public API lists ops with their tensors
    weighted = [op for op in ops if op["op_name"] in _WEIGHTED_OPS and len(op["inputs"]) >= 2]
    small = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))
    if any(dtypes.get(int(op["inputs"][0])) in small for op in weighted):
        return Format.TFLITE_INT8
    if any(dtypes.get(int(op["inputs"][1])) in small for op in weighted):
        return Format.TFLITE_DYNAMIC
    dequantized = (
        dtypes.get(int(i)) for op in ops if op["op_name"] == "DEQUANTIZE" for i in op["inputs"] if i >= 0
    )
    return Format.TFLITE_FP16 if np.dtype(np.float16) in dequantized else Format.TFLITE_FP32
