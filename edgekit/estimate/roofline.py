"""The roofline of one model on one board: how far the model is from what the hardware could possibly do.

compute time = MACs / (peak MACs per cycle x clock x cores used), at the precision the kernels compute in;
memory time = compulsory bytes (weights + model input/output) / peak DRAM bandwidth. The larger of the two is
a **lower bound** on latency: no implementation on that board can be faster. The no-reuse traffic (every
activation written and read once) is shown beside it; caches sit between the two. These are bounds from
published specifications, never a measurement or an estimate.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from edgekit.estimate.boards import Board
from edgekit.estimate.graph import ModelCost, analyze
from edgekit.formats import Format, Precision, Runtime

__all__ = ["Roofline", "analyze", "artifact_format", "compute_precision", "roofline"]


@dataclass
class Roofline:
    board: str
    threads: int
    precision: str  # the arithmetic precision the peak is taken at
    macs: int
    params: int
    weight_bytes: int
    bytes_moved: int  # no-reuse traffic
    compulsory_bytes: int
    peak_gmacs: float  # at `threads` cores
    mem_bw_gbs: float
    compute_ms: float
    memory_ms: float  # compulsory bytes at peak bandwidth
    traffic_ms: float  # no-reuse traffic at peak bandwidth (not a bound)
    lower_bound_ms: float
    bound: str  # compute | memory
    intensity_macs_per_byte: float  # MACs / no-reuse bytes
    ridge_macs_per_byte: float  # the board's peak MACs / bandwidth
    label: str = "roofline lower bound (from published peak specs; not a measurement, not an estimate)"

    def to_dict(self) -> dict:
        return asdict(self)


def roofline(cost: ModelCost, board: Board, threads: int = 1, precision: Precision = Precision.FP32) -> Roofline:
    peak = board.peak_macs_per_s(precision, threads)
    bw = board.mem_bw_gbs * 1e9
    compute_ms = cost.macs / peak * 1e3
    memory_ms = cost.compulsory_bytes / bw * 1e3
    return Roofline(
        board=board.name, threads=min(threads, board.cores), precision=precision.value, macs=cost.macs,
        params=cost.params, weight_bytes=cost.weight_bytes, bytes_moved=cost.bytes_moved,
        compulsory_bytes=cost.compulsory_bytes, peak_gmacs=peak / 1e9, mem_bw_gbs=board.mem_bw_gbs,
        compute_ms=compute_ms, memory_ms=memory_ms, traffic_ms=cost.bytes_moved / bw * 1e3,
        lower_bound_ms=max(compute_ms, memory_ms), bound="compute" if compute_ms >= memory_ms else "memory",
        intensity_macs_per_byte=cost.macs / max(1, cost.bytes_moved), ridge_macs_per_byte=peak / bw)


def artifact_format(path: Path) -> Format | None:
    """The format of an artifact file, from edgekit's metadata beside it (artifact.json, or an ncnn
    model.io.json); None for an ONNX file or a file without metadata."""
    path = Path(path)
    for meta in (path.parent / "artifact.json", path.with_suffix(".io.json")):
        try:
            return Format(json.loads(meta.read_text())["format"])
        except (OSError, ValueError, KeyError):
            continue
    return None


def compute_precision(fmt: Format | None) -> Precision:
    """The precision the kernels compute in: TFLite fp16 weights are dequantized and run in fp32 on CPU;
    ncnn fp16 computes in fp16 where the core has it (the board's table then gives its fp16 peak)."""
    if fmt is None:
        return Precision.FP32
    if fmt.runtime is Runtime.TFLITE and fmt.precision is Precision.FP16:
        return Precision.FP32
    return fmt.precision
