"""The routes of a deploy: each target run's candidates (its measurements at a thread count, gated by the
conversion's gates and the target's own comparison with the original model) handed to edgekit.route.recommend,
at each target's fastest thread count measured (route_for_run), with what the figures alone do not say
(an estimate's count ratio and 80 % intervals, from edgekit.route_estimates; an uncalibrated estimate, a busy
machine, another winner at an estimated thread count).
"""

from __future__ import annotations

import math

from edgekit.results import (
    Comparison,
    DeployResult,
    TargetRun,
    interval_not_validated,
    unchecked_gates,
)
from edgekit.route import DISAGREEMENT, Basis, Candidate, Route, figure_text, recommend
from edgekit.route_estimates import (
    bounded,
    count_vs_fp32,
    estimate_reasons,
    estimate_tie,
    estimates_tied,
    split_unread,
    thread_count_not_chosen,
    unranked_ratios,
    unread_at,
)
from edgekit.route_rejections import (
    CONVERSION_MISSED,
    COUNTS_LOST,
    DID_NOT_RUN,
    UNCOUNTED,
    ranked_below,
)
from edgekit.same_model import holds_no_int8, no_int8_note, same_models


def routes_for_deploy(result: DeployResult, threads: int | None = None) -> list[Route]:
    """One route per target run of a deploy (the host included), at `threads` (None: each run's fastest thread
    count, route_for_run). A choice that holds no int8 layer under an int8 name (the speed plan kept the fp32
    model, same_model.holds_no_int8) says so, where no twin already said it."""
    host_gates, unchecked, twins = route_inputs(result)
    no_int8 = holds_no_int8(result.artifacts)
    routes = [route_for_run(run, host_gates, threads, unchecked, twins) for run in result.runs]
    for route in routes:
        route.recipe = result.recipe_path or None  # named in the advice when no artifact met the gates
        if route.artifact in no_int8 and route.artifact not in route.same_model:
            route.caveats.append(no_int8_note(route.artifact))
    return routes


def route_inputs(
    result: DeployResult,
) -> tuple[dict[str, bool], dict[str, tuple[str, ...]], dict[str, tuple[str, str]]]:
    """What every view that ranks a deploy's artifacts hands candidates_for_run, so that the routes and the
    runtimes table rank alike: the conversion's gates (artifact -> passed), the gates it could not check (for
    each artifact with gates set) and the twins (same_models: an artifact that is another's very model is never
    ranked against it)."""
    host_gates = {a.id: a.gates_passed and a.status == "ok" for a in result.artifacts}
    unchecked = {  # artifacts with gates set (checked or not): an artifact with none keeps no record of them
        a.id: tuple(unchecked_gates(gates))
        for a in result.artifacts
        if isinstance(gates := a.fidelity.get("gates"), dict)
        and (gates.get("checks") or gates.get("skipped"))
    }
    return host_gates, unchecked, same_models(result.artifacts)


def measured_threads(run: TargetRun) -> list[int]:
    """The thread counts a target run measured at, fewest first ([1] when it measured nothing)."""
    return sorted({m.threads for m in (run.agent.measurements if run.agent else [])}) or [1]


def table_threads(run: TargetRun) -> int:
    """The thread count a one-column view of a run shows: 1 where it was measured (every target's common
    figure), else the fewest it was measured at (`--threads 2`: nothing ran at 1)."""
    threads = measured_threads(run)
    return 1 if 1 in threads else threads[0]


def route_for_run(
    run: TargetRun,
    host_gates: dict[str, bool],
    threads: int | None = None,
    unchecked: dict[str, tuple[str, ...]] | None = None,
    twins: dict[str, tuple[str, str]] | None = None,
) -> Route:
    """The route at `threads`, or (None) the fastest over the thread counts the run measured: by p50 or by the
    board estimate (each thread count's own figure; an estimate made without the split between threads it
    reads, a non-ncnn artifact's at 2 threads, does not choose a thread count: route_estimates.split_unread; where
    one won a thread count, that count is ranked by the estimates that read a split);
    by instruction counts at the fewest threads only (more threads add synchronisation instructions but take
    less time: counts of different thread counts do not compare). With no route at any count, the fewest
    threads' reasons. `unchecked`: for each artifact the recipe sets gates for, those its conversion could not
    check (Candidate.unchecked); `twins`: same_models."""
    route = _fastest_route(run, host_gates, threads, unchecked or {}, twins or {})
    if run.place_lost is not None:
        route.caveats.append(
            f"the lab place was taken from this run before it ended ({run.place_lost}): figures may have shared "
            "the board; measure again before shipping on them"
        )
    module = run.unlisted_runtimes.get(route.artifact or "")
    if module is not None:
        route.caveats.append(
            f"{route.artifact} ran with {module}, which {run.target}'s `runtimes:` does not list: measured because "
            "this device has it; a device set up from the target's file (`edgekit targets setup`) would not"
        )
    return route


def _fastest_route(
    run: TargetRun,
    host_gates: dict[str, bool],
    threads: int | None,
    unchecked: dict[str, tuple[str, ...]],
    twins: dict[str, tuple[str, str]],
) -> Route:
    if threads is not None:
        return _route_at(run, host_gates, threads, unchecked, twins)
    routes = [_route_at(run, host_gates, n, unchecked, twins) for n in measured_threads(run)]
    found = [r for r in routes if r.artifact is not None and r.value]
    if not found:
        return routes[0]
    if found[0].basis is Basis.INSTRUCTIONS:
        return found[0]
    # an estimate made without the split between threads its thread count reads scales as ncnn's benchmark
    # models do, not as its artifact: it ranks the artifacts at its thread count, never the thread counts. Where
    # such an estimate won a thread count, that count is ranked by its artifacts whose estimates read a split
    # (yolov5-lite x2: tflite-int8 ~78.2 unread hid ncnn-int8 ~80.4, read, 20 % under 1 thread's ~101)
    unscaled = [r for r in found[1:] if r.basis is Basis.ESTIMATE_MS and split_unread(run, r)]
    ranked = [found[0]]
    for r in found[1:]:
        if not any(r is u for u in unscaled):
            ranked.append(r)
            continue
        read = _route_at(run, host_gates, r.threads, unchecked, twins, exclude=unread_at(run, r.threads))
        if read.artifact is not None and read.value:
            ranked.append(read)
    best = min(ranked, key=lambda r: (r.value or 0.0, r.threads))
    lower = [r for r in unscaled if (r.value or 0.0) < (best.value or 0.0)]
    others = [r for r in ranked if r is not best] + [
        r
        for r in unscaled
        if not any(r is w for w in lower) and not any(o.threads == r.threads for o in ranked)
    ]
    others.sort(key=lambda r: r.threads)
    unit = "ms" if best.basis is Basis.P50_MS else "ms ESTIMATE"
    for r in lower:
        best.caveats.append(thread_count_not_chosen(r, best, found[0].threads))
    if others:
        best.caveats.append(  # what the other thread counts' own routes were: slower, and by how much
            f"{best.threads} thread{'s' if best.threads != 1 else ''} chosen over the other thread counts measured ("
            + ", ".join(f"at {r.threads}: {r.artifact} {figure_text(r.value or 0.0)} {unit}" for r in others)
            + ")"
        )
    if best.basis is Basis.ESTIMATE_MS:
        _other_winners(run, best)
    return best


def _other_winners(run: TargetRun, route: Route) -> None:
    """An emulated target estimated at thread counts it did not run (a capped plan: 1 thread run, 4 estimated from
    its counts): where another artifact within the gates has the lower estimate there, say so (the
    route at 1 thread shipped ncnn-int8 while the 4-thread estimates ranked tflite-int8 first)."""
    within = {route.artifact} | {a for a, why in route.rejected.items() if ranked_below(why)}
    by_threads: dict[int, list[tuple[float, str]]] = {}
    for key, est in run.estimates.items():
        artifact, _, count = key.rpartition(" x")
        usable = isinstance(est, dict) and est.get("status", "ok") == "ok" and bool(est.get("estimate_ms"))
        if usable and artifact in within and count.isdigit() and int(count) not in measured_threads(run):
            by_threads.setdefault(int(count), []).append((float(est["estimate_ms"]), artifact))
    for n, ests in sorted(by_threads.items()):
        best_ms, best = min(ests)
        own = next((ms for ms, a in ests if a == route.artifact), None)
        if best != route.artifact and own is not None:
            tie = estimates_tied(bounded(run, best, n), bounded(run, route.artifact or "", n))
            route.caveats.append(
                f"at {n} threads (estimated from the counts, not run) {best} ~{figure_text(best_ms)} ms "
                f"ranks first, {route.artifact} ~{figure_text(own)} ms"
                + (" (one inside the other's interval: not ranked apart)" if tie else "")
            )


def _route_at(
    run: TargetRun,
    host_gates: dict[str, bool],
    threads: int,
    unchecked: dict[str, tuple[str, ...]],
    twins: dict[str, tuple[str, str]],
    exclude: dict[str, str] | None = None,
) -> Route:
    """Candidates of one target run: its measurements at `threads`, gated by the conversion's gates
    (`host_gates`, artifact id -> passed) and by this target's own comparison with the original model; those in
    `exclude` (artifact -> why) are not ranked, and `rejected` says why."""
    basis, counting, candidates = candidates_for_run(run, host_gates, threads, unchecked, twins)
    candidates = [c for c in candidates if c.artifact not in (exclude or {})]
    if run.emulated and not counting:
        # emulated wall time is no device latency: name no route rather than a misleading one; a run that was
        # to count and has none lost its counts (its error says why): no advice to turn counting on. Only a
        # measurement that was taken lacks counts: one that failed (an agent killed, a link lost, a full disk)
        # did not run, and says so, as the same fault before the device's facts were known does
        lost = (run.error or "its error is above").splitlines()[0]
        measured = {
            m.artifact
            for m in (run.agent.measurements if run.agent else [])
            if m.threads == threads and m.status == "ok"
        }
        return Route(
            target=run.target,
            basis=Basis.INSTRUCTIONS,  # what an emulated target is ranked by; its wall times never are
            threads=threads,
            artifact=None,
            rejected={
                c.artifact: (f"{COUNTS_LOST}: {lost}" if run.counting else UNCOUNTED)
                if c.artifact in measured
                else DID_NOT_RUN
                for c in candidates
            },
        )
    route = recommend(run.target, candidates, basis, threads)
    route.rejected.update(exclude or {})
    if basis is Basis.ESTIMATE_MS and route.artifact is not None:
        count_vs_fp32(run, route)
        est = run.estimates.get(f"{route.artifact} x{threads}") or {}
        why = interval_not_validated(est)
        if why:
            route.caveats.append(
                f"the estimate of {route.artifact} is not calibrated ({why}; interval "
                f"{est.get('low_ms', 0):.3g}-{est.get('high_ms', 0):.3g} ms): confirm on the board"
            )
        estimate_tie(run, route, threads)
        unranked_ratios(run, route, threads)
        estimate_reasons(run, route, threads)
    if basis is Basis.P50_MS and route.artifact is not None:
        busy = [
            m
            for m in (run.agent.measurements if run.agent else [])
            if m.threads == threads and m.timed_while_busy
        ]
        if busy:
            worst = max(m.others_cpu_share or 0.0 for m in busy)
            route.caveats.append(
                f"other processes used up to {worst:.0%} of {run.target}'s CPUs while {len(busy)} of these "
                "were timed: the ranking may be the machine's, not the models'; measure again on a quiet one"
            )
        usable = _usable_cores(run)
        if usable is not None and threads > usable:  # lines.timing_caveats says it under the table too
            route.caveats.append(
                f"{threads} threads on {usable} usable core{'s' if usable != 1 else ''} of {run.target}: the "
                "threads take turns on the cores, so this ranking is not what that many cores would give"
            )
    return route


def _usable_cores(run: TargetRun) -> int | None:
    """The cores the agent could use (its affinity mask, else the device's cores), None without facts."""
    if run.agent is None:
        return None
    return run.agent.facts_before.usable_cores()


def candidates_for_run(
    run: TargetRun,
    host_gates: dict[str, bool],
    threads: int = 1,
    unchecked: dict[str, tuple[str, ...]] | None = None,
    twins: dict[str, tuple[str, str]] | None = None,
) -> tuple[Basis, bool, list[Candidate]]:
    """The basis of one target run's figures, whether it was counted, and its candidates at `threads`. A gate the
    conversion could not check (`unchecked`: artifact -> those gates, for each artifact with gates set) or, for an
    artifact with gates set, a target comparison never gated (`gates_passed` None) is carried as unchecked, never
    taken for a pass. `twins` (same_models) marks each artifact that is another's very model."""
    measurements = [m for m in (run.agent.measurements if run.agent else []) if m.threads == threads]
    counting = run.emulated and any(m.instructions_per_invoke for m in measurements)
    estimates = {
        m.artifact: e["estimate_ms"]
        for m in measurements
        if isinstance(e := run.estimates.get(f"{m.artifact} x{threads}"), dict) and e.get("status") == "ok"
    }
    basis = (Basis.ESTIMATE_MS if estimates else Basis.INSTRUCTIONS) if counting else Basis.P50_MS
    onnx = {c.artifact: c for c in run.comparisons if c.reference == "onnx"}
    # outputs the device saved: each is compared (a comparison, failed if its file cannot be used) once pulled;
    # one without a comparison was never pulled, and its gates were not judged on this target. An artifact
    # that saved none (a result without outputs) is judged by the conversion's gates alone, as before.
    # (a streamed measurement kept after a lost link has no outputs_file: its checksums say what was saved)
    saved = {
        m.artifact
        for m in (run.agent.measurements if run.agent else [])
        if m.outputs_file or m.output_checksums
    }
    candidates = []
    for m in measurements:
        figure = {
            Basis.P50_MS: m.p50_ms,
            Basis.ESTIMATE_MS: estimates.get(m.artifact),
            Basis.INSTRUCTIONS: m.instructions_per_invoke,
        }[basis]
        value = figure if m.status == "ok" else None
        comp = onnx.get(m.artifact)
        judged = comp is not None or m.artifact not in saved
        passed = (
            judged and host_gates.get(m.artifact, True) and (comp is None or comp.gates_passed is not False)
        )
        not_checked = tuple((unchecked or {}).get(m.artifact, ()))
        if comp is not None and comp.gates_passed is None and m.artifact in (unchecked or {}):
            not_checked += (f"the recipe's gates on {run.target}'s outputs (compared, never gated)",)
        failures = tuple(comp.gate_failures) if comp is not None else ()
        if not host_gates.get(m.artifact, True):
            failures += (CONVERSION_MISSED,)
        candidates.append(
            Candidate(
                m.artifact,
                float(value) if value else None,
                passed,
                # NaN: no output of it was judged (all 0 in the model itself): no cosine to speak of
                comp.cosine
                if comp is not None and comp.cosine is not None and math.isfinite(comp.cosine)
                else None,
                _drops(comp),
                failures,
                tuple(m.samples_ms) if basis is Basis.P50_MS and m.status == "ok" else (),
                comp.samples if comp else None,
                judged,
                not_checked,
                *(twins or {}).get(m.artifact, (None, "")),
            )
        )
    return basis, counting, candidates


def _drops(comp: Comparison | None) -> dict[str, float]:
    if comp is None:
        return {}
    drops = {k: float(v) for k, v in comp.metric.items() if k.endswith("_drop")}
    agreement = comp.metric.get("top1_agreement")
    if isinstance(agreement, (int, float)) and agreement < 1:  # a cosine can hide it (near-uniform scores)
        drops[DISAGREEMENT] = 1.0 - float(agreement)
    if "map50_95" in comp.metric and "map50_95_reference" in comp.metric:
        drops["map50_95_drop"] = comp.metric["map50_95_reference"] - comp.metric["map50_95"]
    return drops
