"""Estimated latency on a real Pi 4 / Pi 5 from what emulation can count, with an error that cross-validation backs.

A cost model predicts the published latency of a model on a board at N threads from features counted here:
- `instructions`: guest instructions of one inference at 1 thread on the board's core (ncnn default options);
- `busiest`: at N threads, the largest one-thread share of the instructions (the busiest thread bounds the time);
- `params`: weight elements (weights stream from DRAM on every inference once they outgrow the caches);
- the kernel class (int8 or float: an int8 instruction does different work per cycle than a float one);
- `macs`, for a model that cannot be run on the device (an ONNX file).
Each candidate is a sum of positive terms (rate x feature), fitted per board and thread count by least squares on
the log ratio predicted / published. Candidates are compared by leave-one-model-out cross-validation on the
17 calibration models (calibration.py); for each board x threads the shipped estimate uses the candidate with the
lowest cross-validated p90 |error| among those whose features are available.

The stated interval is a split-conformal one on held-out errors: with n held-out log errors, the
ceil((n + 1) x level)-th smallest |error| bounds that share of new models' errors when they are like the
calibration set. The errors are those of the whole procedure (procedure_errors): for each calibration model the
candidate is chosen from the other 16 alone, fitted on them and made to predict it, so the optimism of picking the
best candidate on the same data is in the errors, not hidden by them (chosen on all 17, the Pi 4 4-thread p90 looks
30 %; chosen without the held-out model it is 64 %). It is stated as an 80 % interval and built at rank 0.85
(CONFORMAL_RANK_LEVEL says why); its coverage is checked (each model's interval from the other 16's errors).
Formats the calibration set does not contain (TFLite, other runtimes) get the widest interval of any group and say
that it is not validated for them. Every figure here is an estimate, not a measurement.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from edgekit.estimate import calibration
from edgekit.estimate.boards import board as get_board
from edgekit.formats import Format, Runtime

LABEL = "estimate (cost model cross-validated on ncnn's benchmark models; not a measurement)"
SOURCE = "published ncnn benchmark figures, Raspberry Pi 4 and Pi 5 (edgekit/estimate/data/ncnn-benchmark)"
INTERVAL_LEVEL = 0.8  # the share of new models' figures the stated interval is meant to hold
# The stated interval comes from the errors of the whole procedure (procedure_errors: the candidate chosen without
# the held-out model, so the choice's own optimism is in them) at conformal rank 0.85, a margin over 0.8: with 17
# errors, rank 0.8 held 14 of 17 (82 %) of the held-out figures on every board and thread count, rank 0.85 holds
# 15 of 17 (88 %) (bench/estimate_cv.py). The per-candidate tables use the same rank.
CONFORMAL_RANK_LEVEL = 0.85
PROCEDURE_FILE = (
    calibration.DATA / "procedure_cv.json"
)  # procedure_errors per board/threads/features, from bench
CALIBRATED_THREADS = calibration.THREADS


@dataclass(frozen=True)
class Features:
    """What is known of one model on one core: counts from the emulated core, sizes from the graph."""

    instructions: int  # 1 thread, per inference
    params: int = 0  # weight elements
    int8: bool = False
    busiest: dict[int, int] = field(default_factory=dict)  # threads -> busiest thread's instructions
    macs: int = 0
    mix: tuple[int, ...] = ()  # 1 thread: simd_fp, simd_ldst, ldst, branch, other (the plugin's classes)
    activation_bytes: int = 0  # every layer's inputs and outputs, once

    def has(self, need: str, threads: int) -> bool:
        if need == "busiest":
            return threads == 1 or threads in self.busiest
        if need == "mix":
            return len(self.mix) == 5 and sum(self.mix) > 0
        return bool(getattr(self, need))


@dataclass(frozen=True)
class Candidate:
    """A cost model's form: named terms, each a feature the fitted rate multiplies."""

    name: str
    needs: tuple[str, ...]
    terms: Callable[[Features, int], list[float]]  # (features, threads) -> the feature of each term


def _share(f: Features, n: int) -> float:
    """The busiest thread's share of the one-thread work at n threads (1 at one thread)."""
    return 1.0 if n == 1 else f.busiest[n] / f.instructions


def _mix3(f: Features, n: int, split: bool = False) -> list[float]:
    """SIMD/FP arithmetic, loads+stores, control+integer: one rate each (cycles per instruction differ); with
    `split`, the busiest thread's share of each at n threads."""
    s = _share(f, n) if split else 1.0
    return [s * f.mix[0], s * (f.mix[1] + f.mix[2]), s * (f.mix[3] + f.mix[4])]


def _int8(value: float, f: Features) -> list[float]:
    """An extra rate for int8 kernels (an int8 instruction does other work per cycle than a float one)."""
    return [value if f.int8 else 0.0]


INS, B, P, M, X, A = "instructions", "busiest", "params", "macs", "mix", "activation_bytes"
CANDIDATES: tuple[Candidate, ...] = (
    Candidate("ratio", (INS,), lambda f, n: [float(f.instructions)]),
    Candidate("ratio+int8", (INS,), lambda f, n: [float(f.instructions), *_int8(f.instructions, f)]),
    Candidate("ratio+params", (INS, P), lambda f, n: [float(f.instructions), float(f.params)]),
    Candidate("ratio+activations", (INS, A), lambda f, n: [float(f.instructions), float(f.activation_bytes)]),
    Candidate("mix", (INS, X), _mix3),
    Candidate("mix+int8", (INS, X), lambda f, n: [*_mix3(f, n), *_int8(f.mix[0], f)]),
    Candidate("mix+activations", (INS, X, A), lambda f, n: [*_mix3(f, n), float(f.activation_bytes)]),
    Candidate("busiest", (INS, B), lambda f, n: [_share(f, n) * f.instructions]),
    Candidate(
        "busiest+int8",
        (INS, B),
        lambda f, n: [_share(f, n) * f.instructions, *_int8(_share(f, n) * f.instructions, f)],
    ),
    Candidate(
        "busiest+activations",
        (INS, B, A),
        lambda f, n: [_share(f, n) * f.instructions, float(f.activation_bytes)],
    ),
    Candidate("busiest mix", (INS, B, X), lambda f, n: _mix3(f, n, split=True)),
    Candidate(
        "busiest mix+activations",
        (INS, B, X, A),
        lambda f, n: [*_mix3(f, n, split=True), float(f.activation_bytes)],
    ),
    Candidate("macs", (M,), lambda f, n: [float(f.macs)]),
    Candidate("macs+params", (M, P), lambda f, n: [float(f.macs), float(f.params)]),
)
BY_NAME = {c.name: c for c in CANDIDATES}


def _applies(c: Candidate, threads: int) -> bool:
    """Thread-split forms only where the split exists (more than one thread): at one thread they are the others."""
    return threads > 1 or B not in c.needs


# --- fitting -------------------------------------------------------------------------------------------------------
@dataclass
class Fit:
    candidate: str
    board: str
    threads: int
    rates: list[float]

    def predict_ms(self, f: Features) -> float:
        terms = BY_NAME[self.candidate].terms(f, self.threads)
        return float(sum(r * t for r, t in zip(self.rates, terms)))


def fit(candidate: Candidate, board: str, threads: int, data: Sequence[tuple[Features, float]]) -> Fit:
    """Rates >= 0 minimizing sum(log(predicted / published)^2); a term no point exercises keeps rate 0."""
    x_terms = np.array([candidate.terms(f, threads) for f, _ in data], dtype=np.float64)
    y = np.array([ms for _, ms in data], dtype=np.float64)
    used = x_terms.max(axis=0) > 0
    scale = (
        np.where(
            used,
            np.median(np.where(x_terms > 0, y[:, None] / np.maximum(x_terms, 1e-30), np.nan), axis=0),
            1.0,
        )
        if used.any()
        else np.ones(x_terms.shape[1])
    )
    scale = np.nan_to_num(scale, nan=1.0)

    def residuals(x: np.ndarray) -> np.ndarray:
        rates = np.where(used, np.exp(x) * scale, 0.0)
        return np.log(np.maximum(x_terms @ rates, 1e-30) / y)

    x0 = np.where(used, math.log(1.0 / max(1, int(used.sum()))), 0.0)
    res = least_squares(residuals, x0, method="trf")
    return Fit(candidate.name, board, threads, [float(v) for v in np.where(used, np.exp(res.x) * scale, 0.0)])


# --- cross-validation ----------------------------------------------------------------------------------------------
def calibration_data(board: str, threads: int) -> list[tuple[str, Features, float]]:
    """(model, features, published ms) of every calibration model counted on this board's core."""
    out = []
    for name, model in calibration.models().items():
        one = calibration.count_of(name, board, 1)
        if one is None:
            continue
        busiest = {
            t: int(c["busiest_thread"])
            for t in CALIBRATED_THREADS
            if (c := calibration.count_of(name, board, t)) is not None
        }
        extra = calibration.counts().get("graph", {}).get(name, {})
        feats = Features(
            int(one["instructions"]),
            int(extra.get("params", 0)),
            model.int8,
            busiest,
            int(extra.get("macs", 0)),
            tuple(int(v) for v in one.get("mix") or ()),
            int(extra.get("activation_bytes", 0)),
        )
        out.append((name, feats, calibration.published_ms(name, board, threads)))
    return out


def conformal_quantile(abs_errors: Sequence[float], level: float = CONFORMAL_RANK_LEVEL) -> float:
    """The ceil((n+1) level)-th smallest value: bounds a new error with probability >= level (exchangeable);
    infinity when there are too few errors to support the level."""
    ordered = sorted(abs_errors)
    k = math.ceil((len(ordered) + 1) * level)
    return ordered[k - 1] if 0 < k <= len(ordered) else math.inf


@cache
def loo(candidate_name: str, board: str, threads: int) -> tuple[tuple[str, float], ...]:
    """(model, held-out log error) for every calibration model: fit on the others, predict it."""
    cand = BY_NAME[candidate_name]
    data = [
        (n, f, ms)
        for n, f, ms in calibration_data(board, threads)
        if all(f.has(k, threads) for k in cand.needs)
    ]
    out = []
    for i, (name, feats, ms) in enumerate(data):
        rest = [(f, m) for j, (_, f, m) in enumerate(data) if j != i]
        pred = fit(cand, board, threads, rest).predict_ms(feats)
        out.append((name, math.log(max(pred, 1e-30) / ms)))
    return tuple(out)


@cache
def nested_coverage(candidate_name: str, board: str, threads: int) -> tuple[int, int]:
    """How many held-out figures fell inside an interval built without them: (covered, n). Each model's
    interval comes from the held-out errors of the other models, each fitted without the model and itself."""
    cand = BY_NAME[candidate_name]
    data = [
        (n, f, ms)
        for n, f, ms in calibration_data(board, threads)
        if all(f.has(k, threads) for k in cand.needs)
    ]
    covered = 0
    for i, (_, feats, ms) in enumerate(data):
        rest = [d for j, d in enumerate(data) if j != i]
        inner = []
        for k, (_, fk, mk) in enumerate(rest):
            train = [(f, m) for j, (_, f, m) in enumerate(rest) if j != k]
            inner.append(abs(math.log(fit(cand, board, threads, train).predict_ms(fk) / mk)))
        q = conformal_quantile(inner)
        err = abs(math.log(fit(cand, board, threads, [(f, m) for _, f, m in rest]).predict_ms(feats) / ms))
        covered += err <= q
    return covered, len(data)


def cv_summary(candidate_name: str, board: str, threads: int, nested: bool = True) -> dict[str, Any]:
    errs = loo(candidate_name, board, threads)
    rel = [math.exp(e) - 1 for _, e in errs]
    absolute = sorted(abs(r) for r in rel)
    q = conformal_quantile([abs(e) for _, e in errs])
    covered = nested_coverage(candidate_name, board, threads)[0] if nested else 0
    return {
        "candidate": candidate_name,
        "board": board,
        "threads": threads,
        "n": len(errs),
        "median": statistics.median(absolute) if absolute else math.nan,
        "p90": float(np.percentile(absolute, 90)) if absolute else math.nan,
        "max": absolute[-1] if absolute else math.nan,
        "bias": statistics.mean(rel) if rel else math.nan,
        "q_log": q,
        "interval": f"-{100 * (1 - math.exp(-q)):.0f}/+{100 * (math.exp(q) - 1):.0f}%"
        if math.isfinite(q)
        else "none",
        "covered": covered,
    }


def cross_validation_table() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every candidate x board x threads (the table bench/estimate_cv.py prints) and every held-out prediction."""
    rows, preds = [], []
    for board in calibration.DEVICES:
        for threads in CALIBRATED_THREADS:
            for cand in CANDIDATES:
                if not _applies(cand, threads):
                    continue  # the same as the one-thread forms
                rows.append(cv_summary(cand.name, board, threads))
                preds += [
                    {
                        "candidate": cand.name,
                        "board": board,
                        "threads": threads,
                        "model": name,
                        "error": math.exp(e) - 1,
                    }
                    for name, e in loo(cand.name, board, threads)
                ]
    return rows, preds


@cache
def chosen(board: str, threads: int, available: tuple[str, ...]) -> str:
    """The candidate with the lowest cross-validated p90 |error| among those whose features are available."""
    options = [c.name for c in CANDIDATES if set(c.needs) <= set(available) and _applies(c, threads)]
    if not options:
        raise ValueError(f"no cost model uses only {available}")
    return min(options, key=lambda name: (cv_summary(name, board, threads, nested=False)["p90"], name))


def _rows(
    cand: Candidate, board: str, threads: int, without: str | None = None
) -> list[tuple[str, Features, float]]:
    return [
        (n, f, ms)
        for n, f, ms in calibration_data(board, threads)
        if n != without and all(f.has(k, threads) for k in cand.needs)
    ]


def _loo_p90(cand: Candidate, board: str, threads: int, without: str) -> float:
    """chosen()'s criterion on the calibration set minus one model: leave-one-out p90 |error| of the rest."""
    data = _rows(cand, board, threads, without)
    errs = []
    for i, (_, feats, ms) in enumerate(data):
        pred = fit(cand, board, threads, [(f, m) for j, (_, f, m) in enumerate(data) if j != i]).predict_ms(
            feats
        )
        errs.append(abs(pred / ms - 1))
    return float(np.percentile(errs, 90)) if errs else math.inf


def procedure_errors(board: str, threads: int, available: tuple[str, ...]) -> list[tuple[str, str, float]]:
    """The whole shipped procedure cross-validated, selection included: for each calibration model, choose the
    candidate as chosen() does but from the other models alone, fit it on them, predict the held-out one.
    [(model, candidate chosen without it, log error)]. Slow (a leave-one-out per candidate per model): the
    results are stored in data/procedure_cv.json by bench/estimate_cv.py and read by procedure_cv()."""
    options = [c for c in CANDIDATES if set(c.needs) <= set(available) and _applies(c, threads)]
    out = []
    for name, feats, ms in calibration_data(board, threads):
        if not all(feats.has(k, threads) for k in available):
            continue
        best = min(options, key=lambda c: (_loo_p90(c, board, threads, name), c.name))
        rest = [(f, m) for _, f, m in _rows(best, board, threads, name)]
        out.append((name, best.name, math.log(fit(best, board, threads, rest).predict_ms(feats) / ms)))
    return out


def procedure_key(board: str, threads: int, available: tuple[str, ...]) -> str:
    return f"{board}/{threads}/{'+'.join(sorted(available))}"


@cache
def procedure_cv(board: str, threads: int, available: tuple[str, ...]) -> dict[str, Any]:
    """procedure_summary() of the shipped procedure for these features: stored by bench/estimate_cv.py for the
    feature sets estimates use (every count; graph sizes only), computed here (slower) for any other."""
    key = procedure_key(board, threads, available)
    stored = json.loads(PROCEDURE_FILE.read_text()).get("errors", {}) if PROCEDURE_FILE.exists() else {}
    errors = [tuple(e) for e in stored[key]] if key in stored else procedure_errors(board, threads, available)
    return procedure_summary(errors)


def procedure_summary(errors: Sequence[tuple[str, str, float]]) -> dict[str, Any]:
    """Median / p90 / max |error| of the procedure's held-out predictions, the interval they support
    (conformal, CONFORMAL_RANK_LEVEL) and how many held-out figures fell inside the interval the other models'
    errors give (each of those errors was itself made without its own model)."""
    logs = [abs(e) for _, _, e in errors]
    rel = sorted(abs(math.exp(e) - 1) for _, _, e in errors)
    q = conformal_quantile(logs)
    held = sum(logs[i] <= conformal_quantile(logs[:i] + logs[i + 1 :]) for i in range(len(logs)))
    return {
        "n": len(errors),
        "median": statistics.median(rel) if rel else math.nan,
        "p90": float(np.percentile(rel, 90)) if rel else math.nan,
        "max": rel[-1] if rel else math.nan,
        "q_log": q,
        "interval": f"-{100 * (1 - math.exp(-q)):.0f}/+{100 * (math.exp(q) - 1):.0f}%"
        if math.isfinite(q)
        else "none",
        "held": held,
        "chosen": sorted({c for _, c, _ in errors}),
    }


SHIPPED = (
    "per board x threads, the candidate with the lowest leave-one-out p90 among those the available "
    "counts allow (see chosen()); its interval from the whole procedure's held-out errors, the choice included "
    "(procedure_errors)"
)


# --- estimates -----------------------------------------------------------------------------------------------------
@dataclass
class Estimate:
    board: str
    threads: int
    method: str  # the candidate used
    features: Features
    estimate_ms: float
    low_ms: float
    high_ms: float
    calibrated: bool  # False: the interval is not validated for this format (see caveats)
    cv: dict[str, Any]
    caveats: list[str]
    label: str = LABEL

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
            "estimate_ms": round(self.estimate_ms, 3),
            "low_ms": round(self.low_ms, 3),
            "high_ms": round(self.high_ms, 3),
            "interval_level": INTERVAL_LEVEL,
            "interval_calibrated": self.calibrated,
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
) -> Estimate:
    """Estimated latency of one inference on the real board, with the cross-validated interval."""
    board = get_board(board_name)
    notes = list(caveats or [])
    n = min(max(threads, 1), board.cores)
    calibrated_n = n if n in CALIBRATED_THREADS else max(t for t in CALIBRATED_THREADS if t <= n)
    if calibrated_n != n:
        notes.append(
            f"{n} threads: no calibration figure; estimated with the {calibrated_n}-thread model "
            "(interval widened to the widest of any group, not validated)"
        )
    if threads > board.cores:
        notes.append(f"{threads} threads on {board.cores} cores: counted as {board.cores}")
    available = tuple(k for k in (INS, B, P, M, X, A) if features.has(k, calibrated_n))
    method = chosen(board.name, calibrated_n, available)
    rows = calibration_data(board.name, calibrated_n)
    cand = BY_NAME[method]
    model = fit(
        cand,
        board.name,
        calibrated_n,
        [(f, ms) for _, f, ms in rows if all(f.has(k, calibrated_n) for k in cand.needs)],
    )
    est = model.predict_ms(features)
    cv: dict[str, Any] = {"candidate": method, "board": board.name, "threads": calibrated_n}
    cv |= procedure_cv(board.name, calibrated_n, available)
    q = cv["q_log"]
    calibrated = calibrated_n == n and _format_calibrated(fmt, method)
    if not calibrated:
        q = max(q, widest_q())
        if calibrated_n == n:
            notes.append(_uncalibrated_note(fmt, method))
    return Estimate(
        board.name, n, method, features, est, est * math.exp(-q), est * math.exp(q), calibrated, cv, notes
    )


def _format_calibrated(fmt: Format | None, method: str) -> bool:
    """The calibration set is ncnn models run with ncnn's default options: other runtimes are not covered."""
    if method.startswith("macs"):
        return True  # the macs candidates are cross-validated on their own (blind to runtime and precision)
    return fmt is None or fmt.runtime is Runtime.NCNN


def _uncalibrated_note(fmt: Format | None, method: str) -> str:
    what = fmt.value if fmt is not None else "this format"
    return (
        f"{what}: no calibration figure exists for this runtime (the cost model is fitted on ncnn's benchmark "
        "models only); its instructions per cycle may differ, so the interval is the widest of any calibrated "
        "group and is not validated for it"
    )


@cache
def widest_q() -> float:
    qs = [
        cv_summary(c.name, b, t, nested=False)["q_log"]
        for b in calibration.DEVICES
        for t in CALIBRATED_THREADS
        for c in CANDIDATES
        if _applies(c, t)
    ]
    stored = json.loads(PROCEDURE_FILE.read_text()).get("errors", {}) if PROCEDURE_FILE.exists() else {}
    qs += [procedure_summary([tuple(e) for e in errs])["q_log"] for errs in stored.values()]
    finite = [q for q in qs if math.isfinite(q)]
    return max(finite) if finite else math.inf
