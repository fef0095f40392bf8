"""The roofline of one model on one board: how far the model is from what the hardware could possibly do.

compute time = the multiplications the kernels execute / (peak MACs per cycle x clock x cores used), at the
fastest precision the runtime computes this format in; memory time = compulsory bytes (weights at their runtime
storage precision + model input/output) / peak DRAM bandwidth. The larger of the two is a **lower bound** on
latency. To stay one for ncnn, the arithmetic counted is what its kernels can get away with: 3x3 stride-1 dense
convolutions as Winograd F(6,3) (64 multiplications for 36 outputs instead of 324), fp16 arithmetic on cores
that have it, int8 peaks for int8 models, weights stored in fp16 (int8 for int8 models). tests/test_estimate.py
checks it stays below every published figure of the calibration set. The no-reuse traffic (every activation
written and read once) is shown beside it; caches sit between the two. Bounds from published specifications,
never a measurement or an estimate.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edgekit.estimate.boards import Board
from edgekit.estimate.graph import analyze
from edgekit.estimate.model_cost import ModelCost
from edgekit.formats import Format, Precision, Runtime

if TYPE_CHECKING:
    from edgekit.estimate.cost_model import Estimate

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
    intensity_macs_per_byte: float  # executed MACs / compulsory bytes: above the ridge, the bound is compute
    intensity_no_reuse_macs_per_byte: float  # MACs / no-reuse bytes (not what the bound uses)
    ridge_macs_per_byte: float  # the board's peak MACs / bandwidth
    weight_storage_bytes: int = (
        2  # bytes per weight the compulsory traffic counts (as the runtime holds them)
    )
    label: str = (
        "roofline lower bound (published peak specs, Winograd/fp16/int8 where the runtime may use them; "
        "not a measurement, not an estimate)"
    )

    def to_dict(self) -> dict:
        return asdict(self)


WINOGRAD_GAIN = 36 * 9 / 64  # F(6,3): 64 multiplications give a 6x6 tile of a 3x3 kernel (324 directly)
STORAGE_BYTES = {
    Precision.FP32: 2,
    Precision.FP16: 2,
    Precision.DYNAMIC: 1,
    Precision.INT8: 1,
}  # fp16 storage


def executed_macs(cost: ModelCost) -> float:
    """The fewest multiplications the kernels may execute: Winograd F(6,3) on 3x3 stride-1 convolutions."""
    return cost.macs - cost.winograd_macs + cost.winograd_macs / WINOGRAD_GAIN


def roofline(
    cost: ModelCost,
    board: Board,
    threads: int = 1,
    precision: Precision = Precision.FP32,
    storage_bytes: int | None = None,
) -> Roofline:
    """`storage_bytes`: bytes per weight as the runtime holds them (weight_storage_bytes); None: STORAGE_BYTES
    of the precision (fp16 storage for floats)."""
    peak = board.peak_macs_per_s(precision, threads)
    bw = board.mem_bw_gbs * 1e9
    shown = precision
    if (
        precision is Precision.FP16
        and board.macs_per_cycle[Precision.FP16] == board.macs_per_cycle[Precision.FP32]
    ):
        shown = Precision.FP32  # no fp16 arithmetic on this core (the A72): its peak is the fp32 one, say so
    compute_ms = executed_macs(cost) / peak * 1e3
    per_weight = STORAGE_BYTES[precision] if storage_bytes is None else storage_bytes
    weights = min(cost.weight_bytes, cost.params * per_weight) if cost.params else cost.weight_bytes
    memory_ms = (weights + cost.io_bytes) / bw * 1e3
    return Roofline(
        board=board.name,
        threads=min(threads, board.cores),
        precision=shown.value,
        macs=cost.macs,
        params=cost.params,
        weight_bytes=cost.weight_bytes,
        bytes_moved=cost.bytes_moved,
        compulsory_bytes=weights + cost.io_bytes,
        peak_gmacs=peak / 1e9,
        mem_bw_gbs=board.mem_bw_gbs,
        compute_ms=compute_ms,
        memory_ms=memory_ms,
        traffic_ms=cost.bytes_moved / bw * 1e3,
        lower_bound_ms=max(compute_ms, memory_ms),
        bound="compute" if compute_ms >= memory_ms else "memory",
        intensity_macs_per_byte=executed_macs(cost) / max(1, weights + cost.io_bytes),
        intensity_no_reuse_macs_per_byte=cost.macs / max(1, cost.bytes_moved),
        ridge_macs_per_byte=peak / bw,
        weight_storage_bytes=per_weight,
    )


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


def compute_precision(fmt: Format | None, options: dict[str, bool] | None = None) -> Precision:
    """The fastest precision the kernels may compute in (the bound's peak): TFLite fp16 weights are dequantized
    and run in fp32 on CPU; an ncnn float model as its Option flags say (`options`: the artifact's own, from its
    model.io.json; else the format's, as edgekit writes them): edgekit's ncnn-fp32 switches fp16 arithmetic off
    (its sidecar says `use_fp16_arithmetic: false`; the bound took the A76's fp16 peak, twice what it runs at),
    ncnn-fp16 and a bare .param (ncnn's defaults, as benchncnn) compute in fp16 where the core has it (the
    board's table gives A72's fp16 peak as its fp32 one); an unknown format (an ONNX file, whose runtime is not
    chosen yet) likewise fp16; int8 and dynamic formats at their int8 peak. The other runtimes compute in their
    format's precision: ONNX Runtime's and OpenCV's CPU kernels, OpenVINO and ExecuTorch's XNNPACK run an fp32
    model in fp32 (the fp16 peak made their bound about half what it is); MNN in fp16 only for mnn-fp16."""
    if fmt is None:
        return Precision.FP32 if options and options.get("use_fp16_arithmetic") is False else Precision.FP16
    if fmt.runtime is Runtime.TFLITE:
        return Precision.FP32 if fmt.precision is Precision.FP16 else fmt.precision
    if fmt.precision in (Precision.INT8, Precision.DYNAMIC):
        return Precision.INT8
    if fmt.runtime is Runtime.NCNN:
        flags = ncnn_options(fmt) if options is None else options
        return Precision.FP32 if flags.get("use_fp16_arithmetic", True) is False else Precision.FP16
    return fmt.precision


def weight_storage_bytes(fmt: Format | None, options: dict[str, bool] | None = None) -> int | None:
    """Bytes per float weight as an ncnn artifact holds them in memory: 4 when its options switch fp16 storage
    off (edgekit's ncnn-fp32), else None (STORAGE_BYTES: fp16 storage, or int8). Other runtimes: None."""
    if fmt is not None and fmt.runtime is not Runtime.NCNN:
        return None
    if fmt is not None and fmt.precision in (Precision.INT8, Precision.DYNAMIC):
        return None
    flags = options if options is not None else (ncnn_options(fmt) if fmt is not None else {})
    return 4 if flags.get("use_fp16_storage", True) is False else None


def ncnn_options(fmt: Format) -> dict[str, bool]:
    """The Option flags edgekit writes into an ncnn artifact of this format (edgekit.convert.ncnn.runtime)."""
    from edgekit.convert.ncnn.runtime import options_for

    return options_for(fmt)


# The most multiply-accumulates one A64 data-processing instruction performs: a 128-bit FMLA is 4 fp32 or 8 fp16
# lanes; SDOT 16 int8 products (SMLAL2 8); neither core has i8mm (SMMLA's 32). A scalar FMADD or MADD is 1.
MACS_PER_SIMD_INSTRUCTION = {Precision.FP32: 4, Precision.FP16: 8, Precision.DYNAMIC: 16, Precision.INT8: 16}


def macs_the_count_can_hold(mix: tuple[int, ...] | list[int], precision: Precision) -> int:
    """An upper bound on the MACs one inference can have executed, from its counted instruction mix (one
    thread; the plugin's classes simd_fp, simd_ldst, ldst, branch, other): every SIMD/FP data-processing
    instruction and every other one (integer data processing: a reference kernel's scalar MADD) does at most
    MACS_PER_SIMD_INSTRUCTION of the bound's precision. A graph reader's MACs above it cannot have run: its
    roofline is then no bound."""
    return (mix[0] + mix[4]) * MACS_PER_SIMD_INSTRUCTION[precision]


def bound_note(cost: ModelCost, bound: Roofline, est: Estimate, precision: Precision) -> str:
    """What the roofline bound is worth beside the estimate. With a count, the graph's MACs are checked against
    the SIMD/FP instructions counted (roofline.macs_the_count_can_hold): more MACs than those can execute mean
    the graph reader miscounted (a BATCH_MATMUL with adj_x counted 16x its MACs and its "bound", 0.938 ms, sat
    above a 0.531 ms estimate with "the board cannot be that fast"), and the bound is flagged as no bound. Only a
    bound that passes is called the floor; that claim still rests on the MAC count and the published peaks."""
    mix = est.features.mix
    if len(mix) == 5 and est.features.instructions:
        most = macs_the_count_can_hold(mix, precision)
        if executed_macs(cost) > most:
            bound.bound = "none"
            return (
                f"the roofline figure ({bound.lower_bound_ms:.3g} ms) is no bound here: it is built on "
                f"{cost.macs / 1e6:.3g} M MACs read from the graph, more than the {mix[0] + mix[4]:,d} SIMD/FP and "
                f"integer data-processing instructions counted can execute (at most {most / 1e6:.3g} M at "
                f"{precision.value}); the graph's MAC count is wrong for this artifact, the estimate stands on the "
                "instruction count"
            )
        if est.estimate_ms < bound.lower_bound_ms:
            return (
                f"the estimate is below the roofline lower bound ({bound.lower_bound_ms:.3g} ms from "
                f"{cost.macs / 1e6:.3g} M MACs, which the counted instructions can hold): if every one of "
                "those MACs runs and the published peaks hold, the board cannot be that fast; take the bound as "
                "the floor"
            )
        return ""
    if est.estimate_ms < bound.lower_bound_ms:  # MAC-based: the cost model extrapolates below the peak specs
        return (
            f"the estimate is below the roofline lower bound ({bound.lower_bound_ms:.3g} ms) from the same "
            f"{cost.macs / 1e6:.3g} M MACs: if the graph's MAC count is right and the published peaks hold, the "
            "board cannot be that fast; take the bound as the floor"
        )
    return ""
