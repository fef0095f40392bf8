"""Estimated latency on a real Pi 4 / Pi 5 from an emulated instruction count, calibrated on published figures.

The model, per board b with clock f_b and N threads (n = min(N, cores)):

    t = W / (f_b * r_core) * ((1 - p) + p / n)

W is the work of one inference: the guest instruction count at one thread on the board's core (method
"instructions"), or, when no count exists (an ONNX file), the model's MACs (method "macs"); r_core is the work
retired per cycle on that core (one per core type), p the parallel fraction (Amdahl; one for all boards).
Three parameters, fitted (least squares on log error) ONLY on the published figures in
shared/notes/arm-emulation.md, paired with counts measured here by `python bench/counts.py --calibration`:
ncnn with its default options (our ncnn-fp16 artifacts; fp16 arithmetic where the core has it, as ncnn's own
benchmark) of the zoo MobileNetV2 (same layers as the benchmark's mobilenet_v2) and YOLOv5-Lite-style detector
(close to, not the same as, v5lite-s).

The stated error is the worst leave-one-out relative error: refit without a figure, predict it. Only the two
Pi 4 four-thread figures can be left out (the Pi 5 figure alone fixes r_a76, the Pi 4 one-thread figure alone
separates r_a72 from p), so the error rests on two held-out predictions; Pi 5 estimates carry the same error
by assumption. Other runtimes and precisions (TFLite, INT8) use the same r_core: their instruction counts
capture their different kernels, but not their different instructions per cycle. All of this is an estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from scipy.optimize import least_squares

from edgekit.estimate.boards import BOARDS, Board
from edgekit.estimate.boards import board as get_board
from edgekit.formats import Format, Precision, Runtime

Method = Literal["instructions", "macs"]
LABEL = "estimate (calibrated cost model; not a measurement)"
SOURCE = "published figures in shared/notes/arm-emulation.md (ncnn benchmark table; YOLOv5-Lite README)"


@dataclass(frozen=True)
class CalibrationPoint:
    """A published latency and what was measured here for the same model on the same core."""

    name: str
    board: str  # pi4 | pi5
    threads: int
    published_ms: float
    instructions: int  # guest instructions per invoke, 1 thread, ncnn default options, on the board's core
    macs: int  # MACs per inference (edgekit.estimate.graph)
    source: str

    def work(self, method: Method) -> float:
        return float(self.instructions if method == "instructions" else self.macs)


# Counts measured by `python bench/counts.py --calibration` (ncnn 1.0.20261020, Debian qemu 7.2.22, insn_count
# plugin): the zoo models' ncnn-fp16 artifacts (ncnn's default options), 1 thread, on the board's core.
# MACs from edgekit.estimate.graph on the recipes' ONNX models (mobilenetv2 224x224; yolov5-lite 320x320).
NCNN_TABLE = "ncnn benchmark table"
YOLO_README = "YOLOv5-Lite README (v5lite-s; our zoo detector is YOLOv5-Lite-style, 1.23 M vs 1.64 M params)"
MBV2_MACS = 300_774_272
YOLO_MACS = 444_949_600
CALIBRATION: tuple[CalibrationPoint, ...] = (
    CalibrationPoint("ncnn mobilenet_v2, Pi 4, 1 thread", "pi4", 1, 93.48, 101_473_122, MBV2_MACS, NCNN_TABLE),
    CalibrationPoint("ncnn mobilenet_v2, Pi 4, 4 threads", "pi4", 4, 61.88, 101_473_122, MBV2_MACS, NCNN_TABLE),
    CalibrationPoint("ncnn mobilenet_v2, Pi 5, 1 thread", "pi5", 1, 16.38, 54_040_789, MBV2_MACS, NCNN_TABLE),
    CalibrationPoint("ncnn v5lite-s 320, Pi 4, 4 threads", "pi4", 4, 84.0, 139_806_149, YOLO_MACS, YOLO_README),
)


@dataclass
class CostModel:
    method: Method
    rate: dict[str, float]  # work per cycle, per core type (cortex-a72, cortex-a76)
    parallel_fraction: float
    points: tuple[CalibrationPoint, ...] = field(default_factory=tuple)

    def latency_ms(self, board: Board, work: float, threads: int) -> float:
        rate = self.rate.get(board.core)
        if rate is None:
            raise ValueError(f"no calibration for {board.core}")
        n = min(max(threads, 1), board.cores)
        p = self.parallel_fraction
        return work / (board.clock_ghz * 1e9 * rate) * ((1 - p) + p / n) * 1e3


def fit(points: tuple[CalibrationPoint, ...] = CALIBRATION, method: Method = "instructions") -> CostModel:
    """Least squares on log(predicted / published) over the points; cores without a point get no rate."""
    cores = sorted({BOARDS[p.board].core for p in points})

    def unpack(x: np.ndarray) -> CostModel:
        rate = {core: math.exp(v) for core, v in zip(cores, x[:-1])}
        return CostModel(method, rate, 1 / (1 + math.exp(-x[-1])), points)  # p in (0, 1)

    def residuals(x: np.ndarray) -> np.ndarray:
        model = unpack(x)
        return np.array([math.log(model.latency_ms(BOARDS[p.board], p.work(method), p.threads) / p.published_ms)
                         for p in points])

    x0 = np.zeros(len(cores) + 1)
    return unpack(least_squares(residuals, x0, method="lm" if len(points) > len(x0) else "trf").x)


def leave_one_out(points: tuple[CalibrationPoint, ...] = CALIBRATION,
                  method: Method = "instructions") -> list[dict]:
    """For each figure: refit without it and predict it, where the rest still determines every parameter."""
    out = []
    for i, held in enumerate(points):
        rest = points[:i] + points[i + 1:]
        row = {"point": held.name, "published_ms": held.published_ms, "predicted_ms": None, "error": None}
        if _identifiable(rest, held):
            pred = fit(rest, method).latency_ms(BOARDS[held.board], held.work(method), held.threads)
            row.update(predicted_ms=pred, error=pred / held.published_ms - 1)
        out.append(row)
    return out


def stated_error(method: Method = "instructions") -> float:
    """The method's error: worst |relative error| of the leave-one-out predictions."""
    errors = [abs(r["error"]) for r in leave_one_out(method=method) if r["error"] is not None]
    return max(errors)


def _identifiable(rest: tuple[CalibrationPoint, ...], held: CalibrationPoint) -> bool:
    """The held-out point's core has a one-thread figure left (its rate alone), and some figure left has
    more than one thread (the parallel fraction) when the held-out one needs it."""
    core = BOARDS[held.board].core
    has_rate = any(BOARDS[p.board].core == core and p.threads == 1 for p in rest)
    has_p = held.threads == 1 or any(p.threads > 1 for p in rest)
    return has_rate and has_p


@dataclass
class Estimate:
    board: str
    threads: int
    method: Method
    work: int
    estimate_ms: float
    error: float  # stated relative error of the method
    caveats: list[str]
    label: str = LABEL

    @property
    def low_ms(self) -> float:
        return self.estimate_ms / (1 + self.error)

    @property
    def high_ms(self) -> float:
        return self.estimate_ms * (1 + self.error)

    def to_dict(self) -> dict:
        return {"label": self.label, "board": self.board, "threads": self.threads, "method": self.method,
                "work": self.work, "estimate_ms": round(self.estimate_ms, 3), "error_pct": round(100 * self.error, 1),
                "low_ms": round(self.low_ms, 3), "high_ms": round(self.high_ms, 3), "calibrated_on": SOURCE,
                "caveats": self.caveats}


def estimate(board_name: str, work: int, threads: int = 1, method: Method = "instructions",
             fmt: Format | None = None, caveats: list[str] | None = None) -> Estimate:
    """Estimated latency of one inference on the real board (an estimate, with the method's stated error).
    The caveats say where the stated error does not reach (other runtimes, precisions, Pi 5 threads)."""
    board = get_board(board_name)
    model = fit(method=method)
    notes = list(caveats or []) + scope_caveats(board, fmt, threads)
    return Estimate(board.name, threads, method, int(work), model.latency_ms(board, work, threads),
                    stated_error(method), notes)


def scope_caveats(board: Board, fmt: Format | None, threads: int) -> list[str]:
    """What the calibration does not cover for this estimate."""
    notes = []
    if board.name == "pi5":
        notes.append("Pi 5 rests on one published figure (its rate is fitted to it exactly; not cross-validated)")
        if threads > 1:
            notes.append("parallel fraction calibrated on Pi 4 figures only")
    if fmt is not None and (fmt.runtime is not Runtime.NCNN or fmt.precision in (Precision.INT8, Precision.DYNAMIC)):
        notes.append(f"{fmt.value}: calibrated on ncnn float models only; instructions per cycle of "
                     f"{fmt.runtime.value} {fmt.precision.value} kernels may differ (error beyond the stated one)")
    if threads > board.cores:
        notes.append(f"{threads} threads on {board.cores} cores: counted as {board.cores}")
    return notes


def with_counts(counts: dict[str, int]) -> tuple[CalibrationPoint, ...]:
    """CALIBRATION with other instruction counts (by point name): bench/counts.py checks stored counts."""
    return tuple(replace(p, instructions=counts.get(p.name, p.instructions)) for p in CALIBRATION)
