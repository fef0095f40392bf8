"""What a route on the board-estimate basis (an emulated core's exact counts through the cost model) cannot say by
its figures alone: the exact count ratio beside the estimate's, and where one estimate lies inside the other's 80 %
interval, so the estimates do not rank the two apart (a tie, a withheld speed-up, a runner-up 'not ranked apart'),
and an estimate made without the split between threads it reads, which ranks no thread count (split_unread).
"""

from __future__ import annotations

from typing import Any

from edgekit.results import TargetRun
from edgekit.route import Route, figure_text
from edgekit.route_rejections import NOT_RANKED_APART, ranked_below

# a rejection (Route.rejected) of an artifact left out of its thread count's ranking: its estimate there read no
# split between threads, so it ranks no thread count (unread_at)
SPLIT_UNREAD = "estimate read no split between threads"


def count_vs_fp32(run: TargetRun, route: Route) -> None:
    """An estimate-basis route's speed-up over fp32 by the exact counts too: the estimates' ratio (1.14x for
    yolov5-lite's ncnn-int8 on pi4-emu) is not the counts' (1.05x), since the cost model also weighs the
    instruction mix, the simulated cache misses and an int8 kernel class; a user reading only the first took
    the gap for a measured gain."""
    if route.fp32_artifact is None:
        return
    counts = {
        m.artifact: m.instructions_per_invoke
        for m in (run.agent.measurements if run.agent else [])
        if m.threads == route.threads and m.status == "ok" and m.instructions_per_invoke
    }
    own, fp32 = counts.get(route.artifact or ""), counts.get(route.fp32_artifact)
    if own and fp32:
        route.count_vs_fp32 = fp32 / own


def estimate_tie(run: TargetRun, route: Route, threads: int) -> None:
    """An estimate-basis choice whose runner-up within the gates lies inside its 80 % interval (or the other way
    round) is not ranked by the estimates: each interval holds the board's figure at its stated rate, not the order
    of two figures inside it (yolov5-lite on pi4-emu: ncnn-int8 ~101 ms, 80-127, over tflite-int8 ~106 ms). Said,
    and `tied_with` set, as a measured tie is."""
    slower = {
        a: float(e["estimate_ms"])
        for a, why in route.rejected.items()
        if ranked_below(why) and (e := bounded(run, a, threads, interval=False))
    }
    if not slower:
        return
    runner = min(slower, key=lambda a: (slower[a], a))
    best, other = bounded(run, route.artifact or "", threads), bounded(run, runner, threads)
    if best is not None and other is not None and estimates_tied(best, other):
        route.tied_with = runner
        route.caveats.append(
            f"the estimates do not rank {route.artifact} ~{figure_text(float(best['estimate_ms']))} ms "
            f"({_span(best)}) and {runner} ~{figure_text(slower[runner])} ms ({_span(other)}): one lies inside the "
            "other's interval; measure both on the board"
        )


def unranked_ratios(run: TargetRun, route: Route, threads: int) -> None:
    """The estimate's speed-ups over fp32 and over the slowest route, withheld where the other side lies inside
    the choice's 80 % interval or the choice inside its (estimates_tied): '1.92x vs tflite-fp32 by estimate;
    3.19x vs slowest ncnn-fp32' was said of tflite-int8 ~0.0311 ms (0.00966-0.0998), which holds both
    ~0.0597 and ~0.0992. The count ratio, exact, stays."""
    best = bounded(run, route.artifact or "", threads)
    if best is None:
        return
    for other, attr in (
        (route.fp32_artifact, "speedup_vs_fp32"),
        (route.slowest_artifact, "speedup_vs_slowest"),
    ):
        if other is None or other == route.artifact or getattr(route, attr) is None:
            continue
        if _not_ranked_apart(run, best, other, threads):
            setattr(route, attr, None)
            if other not in route.not_ranked_by_estimate:
                route.not_ranked_by_estimate.append(other)


def _not_ranked_apart(run: TargetRun, best: dict[str, Any], other: str, threads: int) -> bool:
    """Whether `other`'s estimate is not ranked apart from the choice's (`best`, with its interval): one inside
    the other's 80 % interval (estimates_tied), or, with no interval of its own, inside the choice's."""
    full, est = bounded(run, other, threads), bounded(run, other, threads, interval=False)
    if full is not None:
        return estimates_tied(best, full)
    return est is not None and float(est["estimate_ms"]) <= float(best["high_ms"])


def estimate_reasons(run: TargetRun, route: Route, threads: int) -> None:
    """Each runner-up's rejection said on the estimate basis as the route says it: one the estimates do not rank
    apart from the choice (the tie, and each `not_ranked_by_estimate`, by one rule: _not_ranked_apart) is 'not
    ranked apart', never 'slower': the JSON said 'slower (1.00x ncnn-int8)' of the very tflite-int8 the route
    called a tie, and 'slower (2.31x ...)' of an ncnn-fp32 whose ratio it withheld."""
    best = bounded(run, route.artifact or "", threads)
    if best is None:
        return
    for other, why in list(route.rejected.items()):
        own = bounded(run, other, threads, interval=False)
        if own is None or not ranked_below(why):
            continue
        if other == route.tied_with or _not_ranked_apart(run, best, other, threads):
            route.rejected[other] = (
                f"{NOT_RANKED_APART} (~{figure_text(float(own['estimate_ms']))} vs "
                f"~{figure_text(float(best['estimate_ms']))} ms ESTIMATE of {route.artifact}: one lies inside the "
                "other's interval)"
            )


def split_unread(run: TargetRun, route: Route) -> str | None:
    """Why ROUTE's estimate (its artifact at its thread count) read no split between threads (its
    `split_not_counted`: a non-ncnn artifact's, whose 4-thread split deploy does not count, or a count that
    failed), None where it read one. Its speed-up over fewer threads is then the cost model's for ncnn's
    benchmark models, not this artifact's (OpenCV's 2 threads, 97 % of the work on one thread, were estimated 15 %
    faster), so it does not choose the route's thread count."""
    est = run.estimates.get(f"{route.artifact} x{route.threads}")
    note = est.get("split_not_counted") if isinstance(est, dict) else None
    return str(note) if note else None


def unread_at(run: TargetRun, threads: int) -> dict[str, str]:
    """The artifacts whose estimate at `threads` read no split between threads (split_unread), each with the
    rejection a route that ranks the thread count without them says: 'estimate read no split between threads
    (~78.2 ms ESTIMATE): not ranked at 2 threads'."""
    unread = {}
    for key, est in run.estimates.items():
        artifact, _, count = key.rpartition(" x")
        if count == str(threads) and isinstance(est, dict) and est.get("split_not_counted"):
            figure = (
                f" (~{figure_text(float(est['estimate_ms']))} ms ESTIMATE)" if est.get("estimate_ms") else ""
            )
            unread[artifact] = f"{SPLIT_UNREAD}{figure}: not ranked at {threads} threads"
    return unread


def thread_count_not_chosen(lower: Route, chosen: Route, fewest: int = 1) -> str:
    """The caveat of a route that LOWER, at more threads, undercuts with an estimate made without the split between
    threads it reads (split_unread): the chosen thread count was kept, or (the same count) ranked by the estimates
    that read a split. `fewest`: the fewest threads measured, which that estimate's speed-up is over."""
    plural = "s" if fewest != 1 else ""
    why = (
        f"that estimate read no split between threads (said under the table), so its speed-up over {fewest} "
        f"thread{plural} is the cost model's for ncnn's benchmark models, not {lower.artifact}'s"
    )
    if lower.threads == chosen.threads:
        return (
            f"at {lower.threads} threads {lower.artifact} is estimated lower (~{figure_text(lower.value or 0.0)} ms "
            f"ESTIMATE), but {why}: {chosen.artifact}'s estimate read one, so it ranks that thread count; time "
            f"{lower.artifact} at both thread counts on the board"
        )
    return (
        f"{lower.threads} threads not chosen, though {lower.artifact} is estimated lower there "
        f"(~{figure_text(lower.value or 0.0)} ms ESTIMATE): {why}; time both thread counts on the board"
    )


def bounded(run: TargetRun, artifact: str, threads: int, interval: bool = True) -> dict[str, Any] | None:
    """The run's usable board estimate of `artifact` at `threads` (with its 80 % interval unless `interval` is
    False), or None."""
    est = run.estimates.get(f"{artifact} x{threads}")
    keys = ("estimate_ms", "low_ms", "high_ms") if interval else ("estimate_ms",)
    if isinstance(est, dict) and est.get("status", "ok") == "ok" and all(est.get(k) for k in keys):
        return est
    return None


def estimates_tied(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Two board estimates ({estimate_ms, low_ms, high_ms}) the estimates cannot order: one figure lies inside the
    other's 80 % interval. False when either is missing (nothing is claimed either way)."""
    if a is None or b is None:
        return False
    faster, slower = sorted((a, b), key=lambda e: float(e["estimate_ms"]))
    return float(slower["estimate_ms"]) <= float(faster["high_ms"]) or float(faster["estimate_ms"]) >= float(
        slower["low_ms"]
    )


def _span(est: dict[str, Any]) -> str:
    return f"{figure_text(float(est['low_ms']))}-{figure_text(float(est['high_ms']))}"
