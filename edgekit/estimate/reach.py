"""How far the calibration set speaks for an estimate: the range of work (instructions counted on the core, else
MACs) its 17 models span, how far beyond it leave-one-out itself extrapolated, and a MAC-based estimate below every
published figure (the MAC forms have no fixed cost per inference)."""

from __future__ import annotations

from functools import cache

from edgekit.estimate.forms import Features, calibration_data

RANGE_TOLERANCE = (
    0.01  # a count within 1 % of the calibration range's ends is inside it (outside_calibration)
)


def outside_calibration(board: str, features: Features, count_threads: int = 1) -> tuple[str, bool]:
    """(a caveat, whether the interval stands) when the model's work (instructions counted on this core, else MACs)
    lies outside the range of the calibration models'. Leave-one-out itself extrapolates: the smallest and the
    largest calibration model, held out, are predicted from models up to lo2/lo larger and hi/hi2 smaller, and
    their errors are in the cross-validation: the ordinary interval held them 5 of 8 times (Pi 4 / Pi 5, 1 / 4
    threads), the largest held-out error of the other models 7 of 8 (groups.extreme_summary). Work within that
    reach takes the widened interval, with the caveat; beyond it no held-out error speaks for the estimate: not
    validated, the widest of any group. `count_threads`: the threads the count was taken at, as the caveat says.
    """
    counted = bool(features.instructions)
    work = features.instructions if counted else features.macs
    lo, hi = calibration_range(board, counted)
    # within RANGE_TOLERANCE of either end is inside: blazeface, the smallest calibration model, counted again
    # (14,524,113 instructions on the A72) was 0.016 % under its stored count and was told it was smaller than
    # every calibration model, its interval widened from -14/+17 % to -21/+26 %
    if not work or lo * (1 - RANGE_TOLERANCE) <= work <= hi * (1 + RANGE_TOLERANCE):
        return "", True
    reach_lo, reach_hi = validated_range(board, counted)
    what = f"instructions ({count_threads} thread{'s' if count_threads != 1 else ''})" if counted else "MACs"
    side = "fewer" if work < lo else "more"
    head = f"{_millions(work)} M {what}: {side} than any calibration model ({_millions(lo)}-{_millions(hi)} M on this core)"
    if reach_lo <= work <= reach_hi:
        return (
            f"{head}, but within how far leave-one-out extrapolated (the {'smallest' if work < lo else 'largest'} "
            f"calibration model held out was predicted from models up to "
            f"{(lo / reach_lo if work < lo else reach_hi / hi):.2g}x {'larger' if work < lo else 'smaller'}); "
            "held out, the smallest and the largest were inside the ordinary interval 5 of 8 times (2 boards x 2 "
            "thread counts) and inside the largest held-out error 7 of 8, so the interval is the largest "
            "held-out error instead of the 85th percentile",
            True,
        )
    return (
        f"{head}, further than leave-one-out ever extrapolated ({_millions(int(reach_lo))}-"
        f"{_millions(int(reach_hi))} M), so the estimate is extrapolated and its interval is not validated there "
        "(the widest of any group)",
        False,
    )


def below_calibration(board: str, threads: int, est: float) -> list[str]:
    """A MAC-based estimate below every published figure of the calibration set: the MAC forms are sums of
    MACs and parameters with no constant, so a tiny model (an MLP of 12,544 MACs: 0.004 ms) gets no runtime
    overhead per invocation at all, which no real inference is without."""
    fastest = min(ms for _, _, ms in calibration_data(board, threads))
    if est >= fastest:
        return []
    return [
        f"the MAC-based forms have no per-invocation overhead (no constant term: the runtime's fixed cost of one "
        f"inference is not in them), and {est:.3g} ms is below the fastest figure of any calibration model "
        f"({fastest:.3g} ms on this board at {threads} thread(s)): nothing the calibration set covers speaks for "
        "it; take it as the MACs' share of the time, not the latency of an inference"
    ]


def _millions(n: int) -> str:
    return f"{n / 1e6:,.0f}" if n >= 1e9 else f"{n / 1e6:.3g}"


@cache
def calibration_range(board: str, counted: bool = True) -> tuple[int, int]:
    """The smallest and largest work of the calibration models on this board's core: guest instructions at one
    thread when `counted`, else MACs."""
    work = [f.instructions if counted else f.macs for _, f, _ in calibration_data(board, 1)]
    return min(work), max(work)


def validated_range(board: str, counted: bool = True) -> tuple[float, float]:
    """How far outside calibration_range() leave-one-out predicted a held-out model: lo x lo / lo2 below (the
    smallest held out, predicted from the rest, the least of which is lo2) and hi x hi / hi2 above."""
    work = sorted(f.instructions if counted else f.macs for _, f, _ in calibration_data(board, 1))
    return work[0] * work[0] / work[1], work[-1] * work[-1] / work[-2]
