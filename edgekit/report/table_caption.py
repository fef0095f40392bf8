"""The lines under `edgekit deploy`'s tables: the plan each target ran (a capped emulated target's own), what an
estimate and a count ratio are, why a percentile is '-', and why an interval is not validated (each reason once).
"""

from __future__ import annotations

from collections.abc import Iterable

from edgekit.report.figures import estimated_thread_counts
from edgekit.report.percentiles import few_samples_note
from edgekit.results import DeployResult, TargetRun, interval_not_validated

EMULATED_NOTE = (
    "emulated = wall time under qemu on this machine (tens of times slower than the device, not by one "
    "factor: ratios distorted): not device latency"
)

# an emulated device whose core no calibrated board stands for (phone-emu: a phone, though the Pi 5 has its core)
NO_BOARD = (
    "no calibrated board stands for this device: the estimate is calibrated on Raspberry Pi 4 and 5 figures"
)


def estimate_note(estimates: Iterable[object]) -> str:
    """What ESTIMATE means, naming the intervals' level only where every one shown is validated (interval_words):
    the caption said '80% interval cross-validated' under a table of starred, not validated, intervals."""
    return (
        "ESTIMATE = the real board's latency estimated from the exact instruction count on its emulated core "
        f"(cost model cross-validated on ncnn's benchmark models, with its {interval_words(estimates)}; not a "
        "measurement); "
    )


COUNT_NOTE = (
    "x fp32 by insn = instruction-count ratio (instructions are not cycles); emulated wall times: "
    "--verbose or --json"
)


def caption(result: DeployResult, runs: list[TargetRun]) -> str:
    b = result.benchmark
    timed = any(not (r.emulated and counted(r)) for r in runs)  # a table of p50s (not only counts)
    parts = [
        ("ms per invocation; " if timed else "")
        + f"threads {b.get('threads')}, warmup {b.get('warmup')}, repeat {b.get('repeat')} x number {b.get('number')}; "
        + ("x fp32 = p50 of the same runtime's fp32 / p50 (same target and threads); " if timed else "")
        + "gates = the recipe's fidelity gates on that target's outputs vs ONNX"
    ]
    capped = (
        "threads",
        "repeat",
        "warmup",
        "samples",
    )  # what a benchmark_cap limits (--profile adds layer_times)
    for run in runs:
        own = run.benchmark
        if own and any(own.get(k) != b.get(k) for k in capped):
            parts.append(
                f"{run.target}: its own capped plan: threads {own.get('threads')}, repeat "
                f"{own.get('repeat')}, {own.get('samples') or 'all'} evaluation inputs" + _estimated_only(run)
            )
    if any(r.emulated and counted(r) for r in runs):
        estimated = any(r.emulated and r.estimates for r in runs)  # phone-emu: no board is calibrated for it
        ests = [e for r in runs if r.emulated for e in r.estimates.values()]
        parts.append((estimate_note(ests) if estimated else f"no board estimate: {NO_BOARD}; ") + COUNT_NOTE)
    if any(r.emulated and not counted(r) for r in runs):
        parts.append(EMULATED_NOTE)
    timed_runs = [
        m for r in runs if not (r.emulated and counted(r)) for m in (r.agent.measurements if r.agent else [])
    ]
    said = few_samples_note(timed_runs, ("p90",))
    if said:
        parts.append(said)
    not_validated = not_validated_note(e for r in runs for e in r.estimates.values())
    if not_validated:
        parts.append(not_validated)
    parts += split_not_counted_notes(runs)
    return "\n".join(parts)


def split_not_counted_notes(runs: list[TargetRun]) -> list[str]:
    """The caveat of each estimate made without the split between threads its thread count reads (the JSON's
    `split_not_counted`: a TFLite artifact's, a split whose count failed), once per target and caveat with the
    rows it holds for: such a figure can differ from `edgekit estimate --threads N`'s, which only --json said."""
    rows: dict[tuple[str, str], list[str]] = {}
    for run in runs:
        for key, est in run.estimates.items():
            note = est.get("split_not_counted") if isinstance(est, dict) else None
            if note:
                rows.setdefault((run.target, str(note)), []).append(key)
    return [f"{target} {', '.join(keys)}: {note}" for (target, note), keys in rows.items()]


def not_validated_note(estimates: Iterable[object]) -> str | None:
    """What the '*' after an estimate's interval means, with each reason once ('* interval not validated (no
    calibration figure for tflite-fp32; none at 2 threads)...'); None when every interval is validated. Said under
    deploy's tables and `edgekit runs show`'s."""
    reasons = sorted({why for e in estimates if isinstance(e, dict) and (why := interval_not_validated(e))})
    if not reasons:
        return None
    return (
        f"* interval not validated ({'; '.join(_merged(reasons))}): the cost model is calibrated on ncnn's "
        "benchmark models, at 1 and 4 threads"
    )


def _estimated_only(run: TargetRun) -> str:
    """The thread counts a capped emulated target has ESTIMATE rows for but never ran: estimated from the counts
    of the run it made, not runs at that many threads (the plan said threads [1] above 2-thread rows). Not "from
    its counted thread split": a split is counted apart, for ncnn artifacts only (at 4 threads, which 2 or 3
    threads interpolate towards); each estimate's caveats say how, and split_not_counted_notes where it was not."""
    ran = sorted({m.threads for m in (run.agent.measurements if run.agent else [])})
    estimated = {n for _, n, _ in estimated_thread_counts(run.estimates)}
    only = sorted(n for n in estimated if n not in ran)
    if not only or not ran:
        return ""
    counts = " and ".join(map(str, only))
    runs = " and ".join(map(str, ran))
    return (
        f"; its {counts}-thread rows are ESTIMATES from the {runs}-thread run's instruction counts, "
        f"not runs at {counts} threads"
    )


NO_FIGURE = "no calibration figure for "
NO_THREADS = "no calibration figure at "


def _merged(reasons: list[str]) -> list[str]:
    """Each reason once, grouped: an estimate's reasons come joined ('no calibration figure at 2 threads; no
    calibration figure for mnn-fp16'), so 11 artifacts at 2 threads repeated the thread reason 11 times. Read once:
    'no calibration figure for a, b; none at 2 threads', then the other reasons."""
    parts = list(dict.fromkeys(p.strip() for r in reasons for p in r.split("; ") if p.strip()))
    formats = sorted(p.removeprefix(NO_FIGURE) for p in parts if p.startswith(NO_FIGURE))
    counts = sorted(
        {p.removeprefix(NO_THREADS).removesuffix(" threads") for p in parts if p.startswith(NO_THREADS)},
        key=lambda n: (len(n), n),
    )
    rest = [p for p in parts if not p.startswith((NO_FIGURE, NO_THREADS))]
    merged = [NO_FIGURE + ", ".join(formats)] if formats else []
    if counts:
        at = f"at {' and '.join(counts)} threads"
        merged.append(f"none {at}" if formats else f"no calibration figure {at}")
    return merged + rest


def counted(run: TargetRun) -> bool:
    """Instruction counts (a counting emulated target): deterministic, unlike emulated wall times."""
    return any(m.instructions_per_invoke for m in (run.agent.measurements if run.agent else []))


def interval_words(estimates: Iterable[object]) -> str:
    """What a column of estimates' intervals is called: '80% interval' only when every interval in it is
    validated at that level, else 'interval' (as estimate and bench word one not validated; the '*' note under
    the table says which and why). A header said '80% interval' over intervals no cross-validation backs."""
    shown = [
        e
        for e in estimates
        if isinstance(e, dict) and e.get("status") == "ok" and isinstance(e.get("estimate_ms"), (int, float))
    ]
    levels = {e.get("interval_level") or 0.8 for e in shown}  # stored before interval_level: 0.8
    if not shown or len(levels) != 1 or any(interval_not_validated(e) for e in shown):
        return "interval"
    return f"{round(100 * float(levels.pop()))}% interval"
