"""Estimated latency on a real Pi 4 / Pi 5 from what emulation can count, with an error that cross-validation backs.

Every form (forms.py) the features at hand allow, fitted on all 17 calibration models and weighted by how well it
held out (crossval.ensemble), predicts the latency; the interval is the whole procedure's cross-validated one
(crossval.procedure_cv). Formats the calibration set does not contain (TFLite, other runtimes) get the widest
interval of any group and say that it is not validated for them. Every figure here is an estimate, not a
measurement. The names of forms.py and crossval.py that callers use are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from edgekit.estimate import calibration, validity
from edgekit.estimate.boards import Board
from edgekit.estimate.boards import board as get_board
from edgekit.estimate.crossval import (
    CONFORMAL_RANK_LEVEL,
    INTERVAL_LEVEL,
    PROCEDURE_FILE,
    SHIPPED,
    Blend,
    Ensemble,
    blend_parts,
    conformal_quantile,
    cross_validation_table,
    cv_summary,
    ensemble,
    forms_for,
    loo,
    model_for,
    nested_coverage,
    procedure_cv,
    procedure_errors,
    procedure_key,
    procedure_summary,
    stored_procedure_errors,
    stored_widest_single_form_q,
    widest_single_form_q,
)
from edgekit.estimate.forms import (
    BY_NAME,
    CALIBRATED_THREADS,
    CANDIDATES,
    CYC,
    INS,
    L1,
    LLC,
    A,
    B,
    Candidate,
    Features,
    Fit,
    M,
    P,
    X,
    calibration_data,
    fit,
)
from edgekit.estimate.groups import kernel_class_summary, novel_layer_models, novel_layer_summary
from edgekit.estimate.ncnn_kernels import graph_kernels
from edgekit.estimate.reach import below_calibration, calibration_range, outside_calibration, validated_range
from edgekit.formats import Format, Runtime

__all__ = [
    "BY_NAME",
    "CALIBRATED_THREADS",
    "CANDIDATES",
    "CONFORMAL_RANK_LEVEL",
    "INTERVAL_LEVEL",
    "LABEL",
    "PROCEDURE_FILE",
    "SHIPPED",
    "SOURCE",
    "Blend",
    "Candidate",
    "Ensemble",
    "Estimate",
    "Features",
    "Fit",
    "blend_parts",
    "calibration_data",
    "calibration_range",
    "conformal_quantile",
    "cross_validation_table",
    "cv_summary",
    "ensemble",
    "estimate",
    "fit",
    "forms_for",
    "graph_layer_types",
    "kernel_class_summary",
    "loo",
    "model_for",
    "nested_coverage",
    "novel_layer_models",
    "novel_layer_summary",
    "procedure_cv",
    "procedure_errors",
    "procedure_key",
    "procedure_summary",
    "split_threads",
    "stored_procedure_errors",
    "validated_range",
    "widest_q",
]

LABEL = "estimate (cost model cross-validated on ncnn's benchmark models; not a measurement)"
SOURCE = "published ncnn benchmark figures, Raspberry Pi 4 and Pi 5 (edgekit/estimate/data/ncnn-benchmark)"


def significant(value: float, digits: int = 4) -> float:
    """`value` to `digits` significant figures, and never fewer than 3 decimals: milliseconds kept to 3 decimals
    alone made a 64x10 MatMul's 0.00006 ms estimate 0.0 in the JSON and "0 ms" in the text."""
    if not value or not math.isfinite(value):
        return value
    return round(value, max(3, digits - 1 - math.floor(math.log10(abs(value)))))


# --- estimates -----------------------------------------------------------------------------------------------------
@dataclass
class Estimate:
    board: str
    threads: int
    method: str  # the forms used and their heaviest weights
    features: Features
    estimate_ms: float
    low_ms: float
    high_ms: float
    calibrated: bool  # False: the interval is not validated (not_validated says why)
    cv: dict[str, Any]
    caveats: list[str]
    label: str = LABEL
    not_validated: str = ""  # why the interval is not validated (empty when it is)

    @property
    def work(self) -> int:
        return self.features.instructions or self.features.macs

    def to_dict(self) -> dict[str, Any]:
        cv = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.cv.items()}
        return {
            "label": self.label,
            "board": self.board,
            "threads": self.threads,
            "method": self.method,
            "work": self.work,
            "estimate_ms": significant(self.estimate_ms),
            "low_ms": significant(self.low_ms),
            "high_ms": significant(self.high_ms),
            # a not validated interval (widest of any group, interpolated, extrapolated) backs no level
            "interval_level": INTERVAL_LEVEL if self.calibrated else None,
            "interval_calibrated": self.calibrated,
            "interval_not_validated": self.not_validated or None,
            "cross_validation": cv,
            "calibrated_on": SOURCE,
            "caveats": self.caveats,
        }


def estimate(
    board_name: str,
    features: Features,
    threads: int = 1,
    fmt: Format | None = None,
    caveats: list[str] | None = None,
    layer_types: Sequence[str] = (),
    count_threads: int = 1,
    fp16_off: str = "",
) -> Estimate:
    """Estimated latency of one inference on the real board, with the cross-validated interval. `layer_types`
    (an ncnn graph's layer types; another graph's ops its reader neither counts nor leaves out by design, which
    no calibration model has either: graph_layer_types) names the kernels the calibration models never ran:
    said, not hidden. `count_threads`: the threads the instruction count was taken at (1 as calibrated; more
    where no one-thread count was made). `fp16_off`: an ncnn model run with fp16 switched off (edgekit's
    ncnn-fp32), in words ("fp16 storage and arithmetic off"); empty for ncnn's defaults."""
    board = get_board(board_name)
    notes = list(caveats or [])
    fp32_kernels = validity.fp32_kernels(board, fp16_off, features.int8, fmt)
    unseen = calibration.uncalibrated_layer_types(layer_types)
    notes += _kernel_notes(board, features, fmt, fp16_off, fp32_kernels, unseen)
    n = min(max(threads, 1), board.cores)
    calibrated_n = n if n in CALIBRATED_THREADS else max(t for t in CALIBRATED_THREADS if t <= n)
    # between two calibrated thread counts (2 or 3 on a 4-core board): interpolated, not the lower one's figure
    above = min((t for t in CALIBRATED_THREADS if t > n), default=None) if calibrated_n != n else None
    if above is not None:
        ends = [
            estimate(board_name, features, t, fmt, caveats, layer_types, count_threads, fp16_off)
            for t in (calibrated_n, above)
        ]
        return _interpolated(board.name, n, ends, threads)
    if calibrated_n != n:
        notes.append(
            f"{n} threads: no calibration figure; estimated with the {calibrated_n}-thread model (interval "
            "widened to the widest of any group, not validated)"
        )
    oversubscribed = threads > board.cores
    if oversubscribed:
        notes.append(
            f"{threads} threads on {board.cores} cores: estimated as {board.cores}; more threads than cores share "
            "them (ncnn's and TFLite's workers then wait on each other), which no calibration figure measured, "
            "so the interval is not validated"
        )
    available = tuple(k for k in (INS, B, P, M, X, A, L1, LLC, CYC) if features.has(k, calibrated_n))
    range_note, in_reach = outside_calibration(board.name, features, count_threads)
    if range_note:
        notes.append(range_note)
    model = model_for(board.name, calibrated_n, available)
    method = model.describe()
    est = model.predict_ms(features)
    below = below_calibration(board.name, calibrated_n, est) if not features.instructions else []
    notes += below
    cv = _cross_validation(model, board.name, calibrated_n, available, features)
    # what leave-one-out missed more often; fp32 kernels where the calibration ran fp16 ones: a kernel class no
    # calibration model has, as unseen layer types are
    widen = unseen or features.int8 or bool(range_note) or fp32_kernels
    q = max(cv["q_log"], cv["q_log_wide"]) if widen else cv["q_log"]
    runtime_ok = validity.format_calibrated(fmt)
    calibrated = (
        calibrated_n == n
        and runtime_ok
        and in_reach
        and not below
        and not oversubscribed
        and not fp32_kernels
    )
    why = ""
    if not calibrated:
        q = max(q, widest_q())
        if not runtime_ok:
            notes.append(validity.uncalibrated_note(fmt))
        reasons = [  # every one that applies (the first alone hid an extrapolation behind a format's)
            (calibrated_n != n, f"no calibration figure at {n} threads"),
            (
                oversubscribed,
                f"{threads} threads on {board.cores} cores: no calibration figure oversubscribes the cores",
            ),
            (not runtime_ok, f"no calibration figure for {fmt.value if fmt else 'this format'}"),
            (fp32_kernels, f"no calibration model ran ncnn's fp32 kernels on the {board.core} ({fp16_off})"),
            (not in_reach, "outside the calibration models' size range"),
            (
                bool(below),
                "below every calibration model's published figure (the MAC forms have no fixed cost)",
            ),
        ]
        why = "; ".join(text for applies, text in reasons if applies)
    _state_interval_used(cv, q)
    return Estimate(
        board.name,
        n,
        method,
        features,
        est,
        est * math.exp(-q),
        est * math.exp(q),
        calibrated,
        cv,
        notes,
        not_validated=why,
    )


def _kernel_notes(
    board: Board,
    features: Features,
    fmt: Format | None,
    fp16_off: str,
    fp32_kernels: bool,
    unseen: list[str],
) -> list[str]:
    """What the kernels this model runs mean for its estimate: fp16 switched off, layer types and int8 kernels
    no calibration model ran as ordinarily (each widens the interval: leave-one-out missed them more often)."""
    notes = []
    if fp16_off and not features.int8 and (fmt is None or fmt.runtime is Runtime.NCNN):
        notes.append(validity.fp16_off_note(board, fp16_off, fp32_kernels))
    if unseen:
        notes.append(
            f"layer types no calibration model has: {', '.join(unseen)}; their kernels' speed is not calibrated, "
            "so the interval is the largest held-out error instead of the 85th percentile (leave-one-out: "
            "calibration models with a layer type the others lack fell outside the ordinary interval more "
            "often; README, Instruction counts and estimates)"
        )
    if features.int8:
        notes.append(
            "int8 kernels: the interval is the largest held-out error instead of the 85th percentile "
            "(leave-one-out: the int8 calibration models' errors were 1.3-2.0x the float ones' and the "
            "ordinary interval held them less often; README, Instruction counts and estimates)"
        )
    return notes


def _cross_validation(
    model: Ensemble | Blend, board: str, threads: int, available: tuple[str, ...], features: Features
) -> dict[str, Any]:
    """The estimate's `cross_validation`: the forms' weights, the leave-one-out figures of the procedure, and at
    several threads what the thread scaling says of this model (one half of the estimate)."""
    cv: dict[str, Any] = {
        "weights": {name: round(w, 4) for name, w in model.weights.items()},
        "board": board,
        "threads": threads,
    }
    cv |= procedure_cv(board, threads, available)
    if isinstance(model, Blend):
        cv["thread_scaling"] = {
            "form": model.scaling.form.name,
            "ratio": round(model.scaling.ratio(features), 4),  # t(threads) / t(1), estimated
            "busiest_share": round(features.busiest[threads] / features.instructions, 4),
            "one_thread_ms": significant(model.one.predict_ms(features)),
        }
    return cv


def split_threads(threads: int, cores: int) -> int | None:
    """The thread count whose split between threads (Features.busiest) the estimate at THREADS reads: a calibrated
    count's own; 2 or 3 threads interpolate towards 4 (`estimate`), whose forms read the 4-thread split; more
    threads than the board's CORES are estimated as the cores. None at one thread, or where no calibrated count at
    or above it fits in the cores. `edgekit estimate` and deploy both count the split this names."""
    n = min(max(threads, 1), cores)
    if n == 1:
        return None
    return next((t for t in CALIBRATED_THREADS if n <= t <= cores), None)


_LEFT_OUT = "not in the MAC count (0 MACs each): "  # the graph readers' note naming the ops they do not know


def graph_layer_types(cost: Any) -> tuple[str, ...]:
    """What `estimate` checks against the calibration models' layer types: an ncnn graph's layer types and the
    kernels within them (ncnn_kernels: `fused hardswish`, `Convolution dilated`, `Interp bicubic`); for an ONNX
    or TFLite graph (another vocabulary), the ops its reader names as neither counted nor left out by design
    (Erf, TopK, CUMSUM, a custom-domain op), which no calibration model has either."""
    if cost.kind == "ncnn" and Path(cost.source).is_file():
        return graph_kernels(Path(cost.source))
    if cost.layer_types:
        return tuple(cost.layer_types)
    for note in cost.notes:
        if note.startswith(_LEFT_OUT):
            listed = note[len(_LEFT_OUT) :].split(";", 1)[0]
            return tuple(sorted({item.rsplit(" x", 1)[0] for item in listed.split(", ")}))
    return ()


def _interval_text(q: float) -> str:
    return f"-{100 * (1 - math.exp(-q)):.0f}/+{100 * (math.exp(q) - 1):.0f}%" if math.isfinite(q) else "none"


def _state_interval_used(cv: dict[str, Any], q: float) -> None:
    """cv["interval"] is the interval this estimate states (its low/high): where it was widened (int8 kernels,
    an unseen layer type, an uncalibrated runtime, size or thread count), the procedure's own cross-validated
    one moves to cv["procedure_interval"]. The JSON said the procedure's -59/+142 % beside a printed -69/+221 %."""
    if math.isfinite(cv.get("q_log", math.nan)) and q > cv["q_log"]:
        cv["procedure_interval"] = cv.get("interval")
        cv["interval"] = _interval_text(q)
        cv["q_log_used"] = q


def _interpolated(board: str, n: int, ends: list[Estimate], asked: int) -> Estimate:
    """n threads between two calibrated counts: the geometric interpolation of their estimates in the thread
    count, and as interval the span of both ends' intervals (n threads take between the fewer's and the
    more's time); not validated: no published figure exists at n threads."""
    lo, hi = ends
    share = math.log(n / lo.threads) / math.log(hi.threads / lo.threads)
    est = lo.estimate_ms ** (1 - share) * hi.estimate_ms**share
    notes = [
        f"{n} threads: no calibration figure; interpolated between the {lo.threads}- and {hi.threads}-thread "
        f"estimates (geometric in the thread count: {lo.estimate_ms:.3g} and {hi.estimate_ms:.3g} ms), the "
        "interval spanning both of theirs (not validated)"
    ]
    notes += list(dict.fromkeys(lo.caveats + hi.caveats))
    if asked > n:
        notes.append(f"{asked} threads on {n} cores: counted as {n}")
    reasons = [f"no calibration figure at {n} threads", lo.not_validated, hi.not_validated]
    cv = {
        "board": board,
        "threads": n,
        "interpolated_between": [lo.threads, hi.threads],
        "ends": [lo.cv, hi.cv],
    }
    low, high = min(lo.low_ms, hi.low_ms), max(lo.high_ms, hi.high_ms)
    cv["interval"] = f"-{100 * (1 - low / est):.0f}/+{100 * (high / est - 1):.0f}%"  # the span stated
    return Estimate(
        board,
        n,
        f"interpolated between the {lo.threads}- and {hi.threads}-thread estimates",
        lo.features,
        est,
        low,
        high,
        False,
        cv,
        notes,
        not_validated="; ".join(r for r in dict.fromkeys(reasons) if r),
    )


@cache
def widest_q() -> float:
    """The widest interval (log half-width) of any calibrated group: every single form's and every stored
    procedure's. The single forms' part is stored by bench/estimate_cv.py (6 s to compute, once per process
    before); tests check the stored value is what the code computes."""
    stored = stored_widest_single_form_q()
    qs = [stored if stored is not None else widest_single_form_q()]
    qs += [procedure_summary(errs)["q_log"] for errs in stored_procedure_errors().values()]
    finite = [q for q in qs if math.isfinite(q)]
    return max(finite) if finite else math.inf
