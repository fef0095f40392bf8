"""What runs when an artifact runs, for the estimate and the roofline: its format (from edgekit's metadata or
--format), checked against the file itself. A bare ncnn .param runs with ncnn's default options, int8 where its
layers say so whatever its label (the speed plan may keep every layer of an ncnn-int8 artifact float); a .tflite
without metadata is read from its tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekit.convert.ncnn.param import has_int8_layers
from edgekit.estimate.roofline import compute_precision, tflite_format
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
