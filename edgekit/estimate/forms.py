"""What a cost model is and how it is fitted: the features counted for a model on a board's core, the candidate
forms (sums of positive terms, rate x feature), and the fit of one form to the calibration figures.

Features: `instructions` (guest instructions of one inference at 1 thread on the board's core, ncnn default
options); `busiest` (at N threads, the largest one-thread share: the busiest thread bounds the time); `params`
(weight elements: weights stream from DRAM once they outgrow the caches); the kernel class (an int8 instruction
does other work per cycle than a float one); the instruction mix; activation bytes; `macs`, for a model that
cannot be run on the device (an ONNX file). Each form is fitted per board and thread count by least squares on
the log ratio predicted / published (crossval.py says how well each holds; cost_model.py makes the estimate).
`l1_misses` and `llc_misses` (data-cache misses of the board's cache sizes, simulated while counting at one thread:
edgekit/emu/plugin/insn_count.c) carry the time a load waits, which the instruction count does not: a miss term's
rate is the time per miss; at N threads the L1 misses split like the instructions, the last level's do not (DRAM
is shared). That threads do not miss on the same lines is measured: counted at 4 threads with each thread's own
simulated caches, the L1 misses of four calibration models summed to within 4 % of one thread's. The busiest
thread's own misses, counted once, are a larger share than its instructions, but in these forms they estimated no
better (README), so the instructions' split stands in.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from edgekit.estimate import calibration, fit_cache

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
    l1_misses: int = -1  # 1 thread: misses of the board's L1 data cache, simulated by the counting plugin
    llc_misses: int = (
        -1
    )  # 1 thread: misses of its last level (the Pi 4's L2, the Pi 5's L3); -1: not simulated
    cycles: float = (
        0.0  # 1 thread: llvm-mca cycles of its blocks on the core's model (ideal memory); 0: not timed
    )

    def has(self, need: str, threads: int) -> bool:
        if need == "busiest":
            return threads == 1 or threads in self.busiest
        if need == "mix":
            return len(self.mix) == 5 and sum(self.mix) > 0
        if need in (L1, LLC):  # simulated: zero misses (a model that stays in the cache) is a figure too
            return getattr(self, need) >= 0
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
L1, LLC = "l1_misses", "llc_misses"
CYC = "cycles"
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
    Candidate("ratio+l1", (INS, L1), lambda f, n: [float(f.instructions), float(f.l1_misses)]),
    Candidate(
        "ratio+l1+llc",
        (INS, L1, LLC),
        lambda f, n: [float(f.instructions), float(f.l1_misses), float(f.llc_misses)],
    ),
    Candidate("mix+l1", (INS, X, L1), lambda f, n: [*_mix3(f, n), float(f.l1_misses)]),
    Candidate(
        "busiest+l1",
        (INS, B, L1),
        lambda f, n: [_share(f, n) * f.instructions, _share(f, n) * f.l1_misses],
    ),
    Candidate(
        "busiest+l1+llc",
        (INS, B, L1, LLC),
        lambda f, n: [_share(f, n) * f.instructions, _share(f, n) * f.l1_misses, float(f.llc_misses)],
    ),
    # llvm-mca's cycles in place of the instructions (the Pi 5's core only: emu/plugin/cycles.py)
    Candidate("cycles", (INS, CYC), lambda f, n: [f.cycles]),
    Candidate("cycles+l1", (INS, CYC, L1), lambda f, n: [f.cycles, float(f.l1_misses)]),
    Candidate(
        "cycles+l1+llc", (INS, CYC, L1, LLC), lambda f, n: [f.cycles, float(f.l1_misses), float(f.llc_misses)]
    ),
    Candidate(
        "busiest cycles+l1",
        (INS, B, CYC, L1),
        lambda f, n: [_share(f, n) * f.cycles, _share(f, n) * f.l1_misses],
    ),
    Candidate(
        "busiest cycles+l1+llc",
        (INS, B, CYC, L1, LLC),
        lambda f, n: [_share(f, n) * f.cycles, _share(f, n) * f.l1_misses, float(f.llc_misses)],
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
    stored = fit_cache.key(candidate.name, threads, x_terms, y)
    known = fit_cache.get(
        stored
    )  # the same terms and figures fitted before (fit_cache: hundreds per estimate)
    if known is not None:
        return Fit(candidate.name, board, threads, list(known))
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

    from scipy.optimize import least_squares

    x0 = np.where(used, math.log(1.0 / max(1, int(used.sum()))), 0.0)
    res = least_squares(residuals, x0, method="trf")
    rates = [float(v) for v in np.where(used, np.exp(res.x) * scale, 0.0)]
    fit_cache.put(stored, rates)
    return Fit(candidate.name, board, threads, rates)


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
        l1, llc = misses_of(one.get("misses") or [])
        feats = Features(
            int(one["instructions"]),
            int(extra.get("params", 0)),
            model.int8,
            busiest,
            int(extra.get("macs", 0)),
            tuple(int(v) for v in one.get("mix") or ()),
            int(extra.get("activation_bytes", 0)),
            l1,
            llc,
            float(one.get("cycles", 0.0)),
        )
        out.append((name, feats, calibration.published_ms(name, board, threads)))
    return out


def misses_of(window: Sequence[int]) -> tuple[int, int]:
    """(L1 misses, last-level misses) of the plugin's cache fields (accesses, then each level's misses); (-1, -1)
    when the count had no simulated caches."""
    return (int(window[1]), int(window[-1])) if len(window) >= 3 else (-1, -1)
