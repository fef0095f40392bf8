"""The fastest route, named: for one target, which artifact to ship.

The answer is the fastest artifact that meets every gate, with its speed-up over the same runtime's fp32
artifact and over the slowest route, and what it costs in accuracy. What "fastest" means depends on the target
and is carried as the route's `basis`, so no figure is mistaken for another:
- a real board: the measured p50 latency (ms, lower is faster);
- an emulated core with board estimates (pi4-emu, pi5-emu): the estimated board latency (ms, from the exact
  instruction count through the cross-validated cost model; labelled an estimate);
- an emulated core without a calibrated board (phone-emu): the guest instruction count per inference (exact,
  but not cycles: an int8 or fp16 instruction does more work than an fp32 one), never the emulated wall time.

`recommend` is a pure function of plain candidates (unit-tested without any device); `routes_for_deploy`
builds the candidates from a DeployResult, at each target's fastest thread count measured (route_for_run).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from edgekit.formats import Format
from edgekit.results import Comparison, DeployResult, TargetRun, interval_not_validated


class Basis(str, Enum):
    """What a route's speed figure is."""

    P50_MS = "p50-ms-measured"  # measured median latency on the board, ms
    ESTIMATE_MS = "estimate-ms"  # the real board's estimated latency from an emulated core's count, ms
    INSTRUCTIONS = "instructions-emulated"  # guest instructions per inference on an emulated core

    @property
    def label(self) -> str:
        return {
            Basis.P50_MS: "p50 latency measured on the target (ms; a board, or the host edgekit ran on)",
            Basis.ESTIMATE_MS: "estimated board latency (ms; from instruction counts, not a measurement)",
            Basis.INSTRUCTIONS: "guest instructions per inference on the emulated core (not cycles)",
        }[self]


DID_NOT_RUN = "did not run"
GATES_FAILED = "gates failed"
UNCOUNTED = "emulated without instruction counts"
DISAGREEMENT = "top1_disagreement"  # share of inputs whose top-1 class is not the original model's
METRIC_WORDS = {  # a drop's key (recorded in the JSON) as a terminal line says it
    "top1_drop": "top-1 accuracy drop",
    "map50_drop": "mAP@0.5 drop",
    "map50_95_drop": "mAP@0.5:0.95 drop",
}


@dataclass(frozen=True)
class Candidate:
    """One artifact on one target: its speed figure (lower is faster; None if it did not run) and gates."""

    artifact: str  # format id, e.g. "ncnn-int8"
    value: float | None
    gates_passed: bool
    cosine: float | None = None  # against the original model, on this target's outputs where available
    metric_drop: dict[str, float] = field(
        default_factory=dict
    )  # e.g. {"top1_drop": 0.0, "map50_95_drop": 0.01}
    failures: tuple[str, ...] = ()  # why gates failed, for the record
    samples: tuple[float, ...] = ()  # measured basis: the timed samples (ms) the p50 comes from
    judged_on: int | None = None  # how many of this target's outputs the cosine and drops come from


@dataclass
class Route:
    """The artifact to ship to `target`, or none (`artifact` None) with the reason in `rejected`."""

    target: str
    basis: Basis
    threads: int
    artifact: str | None
    value: float | None = None
    speedup_vs_fp32: float | None = None  # same runtime's fp32 value / this value (None: fp32 not measured)
    fp32_artifact: str | None = None
    # estimate basis: the same ratio by the exact instruction counts (fp32's / this one's); the estimate's own
    # ratio also weighs the mix, the simulated cache misses and the int8 kernel class, so the two can differ
    count_vs_fp32: float | None = None
    speedup_vs_slowest: float | None = None  # slowest route within the gates / this value
    slowest_artifact: str | None = None
    cosine: float | None = None
    metric_drop: dict[str, float] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # artifact -> why it was not chosen
    caveats: list[str] = field(
        default_factory=list
    )  # what the figure cannot tell (e.g. an uncalibrated estimate)
    tied_with: str | None = (
        None  # measured basis: the runner-up these samples do not tell apart from the choice
    )
    judged_on: int | None = None  # inputs of this target the cosine and accuracy drops were judged on

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["basis"], data["basis_label"] = self.basis.value, self.basis.label
        return data

    def summary(self) -> str:
        """One line for a terminal: `pi4-emu: ship ncnn-int8 (1.45x vs ncnn-fp32, ...)`."""
        if self.artifact is None:
            return f"{self.target}: {why_no_route(self.rejected)}"
        parts = []
        if self.speedup_vs_fp32 is not None and self.fp32_artifact != self.artifact:
            by_count = (
                f" by estimate, {self.count_vs_fp32:.2f}x by instruction count"
                if self.count_vs_fp32 is not None
                else ""
            )
            parts.append(f"{self.speedup_vs_fp32:.2f}x vs {self.fp32_artifact}{by_count}")
        if self.speedup_vs_slowest is not None and self.slowest_artifact != self.artifact:
            parts.append(f"{self.speedup_vs_slowest:.2f}x vs slowest {self.slowest_artifact}")
        if (
            self.cosine is not None
        ):  # never '1.0000' for a cosine below 1: as many places as it takes, up to 8
            places = next(
                (d for d in range(4, 9) if self.cosine >= 1 or f"{self.cosine:.{d}f}" != f"{1:.{d}f}"), None
            )  # None: 1 - 1e-15 from float rounding printed 'cosine 0.999999999999' (12 places)
            parts.append(f"cosine {self.cosine:.{places}f}" if places else "cosine > 0.99999999")
        parts += [
            f"top-1 differs from the original's on {_share(v)} of inputs"
            if k == DISAGREEMENT
            else f"{METRIC_WORDS.get(k, k)} {v:+.3f}"
            for k, v in sorted(self.metric_drop.items())
        ]
        if self.judged_on and (self.cosine is not None or self.metric_drop):
            parts.append(
                f"accuracy judged on {self.judged_on} input{'s' if self.judged_on != 1 else ''} here"
            )
        unit = {
            Basis.P50_MS: "ms p50",
            Basis.ESTIMATE_MS: "ms ESTIMATE",
            Basis.INSTRUCTIONS: "M instructions (emulated)",
        }[self.basis]
        figure = (self.value or 0.0) / 1e6 if self.basis is Basis.INSTRUCTIONS else self.value
        return (
            f"{self.target}: ship {self.artifact} ({_figure(figure or 0.0)} {unit}, threads={self.threads}"
            + "".join(f"; {p}" for p in parts)
            + ")"
            + "".join(f"; note: {c}" for c in self.caveats)
        )


def why_no_route(rejected: dict[str, str]) -> str:
    """Why a target has no route, from its rejections (artifact -> why): not counted, nothing ran, or gates."""
    whys = list(rejected.values())
    if whys and all(why == UNCOUNTED for why in whys):
        return (
            "no route: emulated without instruction counts (its wall times are not device latency); to rank it, "
            "count: --set emulated.counting=true on an edgekit emulated target (a qemu machine reached as a plain "
            "or lab board cannot count)"
        )
    failed = sum(why.startswith(GATES_FAILED) for why in whys)
    if not failed:
        return "no route: nothing ran on this target (its error is above)"
    unrun = sum(why == DID_NOT_RUN for why in whys)
    return (
        f"no artifact meets every gate ({failed} failed a gate"
        + (f", {unrun} did not run" if unrun else "")
        + ")"
    )


def _share(value: float) -> str:
    """A share as a percentage that never rounds a nonzero one to 0 % (1 input in 500: 0.2%)."""
    return f"{value:.0%}" if value >= 0.01 else f"{value:.1%}" if value >= 0.001 else "under 0.1%"


def _figure(value: float) -> str:
    """Three significant digits as the tables print them (0.00484 ms is not "0.00 ms"), whole numbers from 100."""
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def recommend(target: str, candidates: list[Candidate], basis: Basis, threads: int = 1) -> Route:
    """The fastest candidate that ran and meets every gate; speed-ups against the same runtime's fp32
    candidate and the slowest candidate within the gates (a route a user might otherwise ship; one that misses
    a gate is no route: "2.37x vs slowest tflite-int8" named an artifact that had failed its gates)."""
    ran = [c for c in candidates if c.value is not None and c.value > 0]
    rejected = {c.artifact: DID_NOT_RUN for c in candidates if c not in ran}
    for c in ran:
        if not c.gates_passed:
            rejected[c.artifact] = GATES_FAILED + (f": {'; '.join(c.failures)}" if c.failures else "")
    eligible = sorted((c for c in ran if c.gates_passed), key=lambda c: (c.value, c.artifact))
    route = Route(target=target, basis=basis, threads=threads, artifact=None, rejected=rejected)
    if not eligible:
        return route
    best = eligible[0]
    for c in eligible[1:]:
        ratio = f"{c.value / best.value:.2f}x {best.artifact}"  # type: ignore[operator]
        route.rejected[c.artifact] = (
            f"more instructions ({ratio}'s count)" if basis is Basis.INSTRUCTIONS else f"slower ({ratio})"
        )
    by_id = {c.artifact: c for c in ran}
    route.artifact, route.value = best.artifact, best.value
    route.cosine, route.metric_drop = best.cosine, dict(best.metric_drop)
    route.judged_on = best.judged_on
    fp32 = _fp32_of(best.artifact)
    if fp32 in by_id:
        route.fp32_artifact = fp32
        route.speedup_vs_fp32 = by_id[fp32].value / best.value  # type: ignore[operator]
    slowest = max(eligible, key=lambda c: (c.value, c.artifact))
    route.slowest_artifact = slowest.artifact
    route.speedup_vs_slowest = slowest.value / best.value  # type: ignore[operator]
    if basis is Basis.P50_MS and len(eligible) > 1:
        _tie(route, best, eligible[1])
    return route


TIE_P = 0.05  # one-sided Mann-Whitney: the choice's samples must be faster than the runner-up's at this level
MIN_SAMPLES = 5


def _tie(route: Route, best: Candidate, runner_up: Candidate) -> None:
    """A measured choice the samples cannot tell from the runner-up (rank test) is said to be a tie: a p50 a few
    per cent lower on a busy machine is not a reason to ship one runtime over another."""
    if min(len(best.samples), len(runner_up.samples)) < MIN_SAMPLES:
        return
    from edgekit.samples import slower_p_value

    p = slower_p_value(runner_up.samples, best.samples)
    if p < TIE_P:
        return
    route.tied_with = runner_up.artifact
    route.caveats.append(
        f"{best.artifact} and {runner_up.artifact} are not told apart by these samples (p50 {best.value:.3g} vs "
        f"{runner_up.value:.3g} ms, Mann-Whitney p={p:.2f} over {len(best.samples)} and {len(runner_up.samples)} "
        "samples): either will do; to choose, measure again with more --repeat on a quiet machine"
    )


def _fp32_of(artifact: str) -> str:
    try:
        return Format(artifact).fp32_reference.value
    except ValueError:
        return artifact.split("-")[0] + "-fp32"


# --- from a deploy -------------------------------------------------------------------------------------------
def routes_for_deploy(result: DeployResult, threads: int | None = None) -> list[Route]:
    """One route per target run of a deploy (the host included), at `threads` (None: each run's fastest thread
    count, route_for_run)."""
    host_gates = {a.id: a.gates_passed and a.status == "ok" for a in result.artifacts}
    return [route_for_run(run, host_gates, threads) for run in result.runs]


def measured_threads(run: TargetRun) -> list[int]:
    """The thread counts a target run measured at, fewest first ([1] when it measured nothing)."""
    return sorted({m.threads for m in (run.agent.measurements if run.agent else [])}) or [1]


def table_threads(run: TargetRun) -> int:
    """The thread count a one-column view of a run shows: 1 where it was measured (every target's common
    figure), else the fewest it was measured at (`--threads 2`: nothing ran at 1)."""
    threads = measured_threads(run)
    return 1 if 1 in threads else threads[0]


def route_for_run(run: TargetRun, host_gates: dict[str, bool], threads: int | None = None) -> Route:
    """The route at `threads`, or (None) the fastest over the thread counts the run measured: by p50 or by the
    board estimate (each thread count's own figure); by instruction counts at the fewest threads only (more
    threads add synchronisation instructions but take less time: counts of different thread counts do not
    compare). With no route at any count, the fewest threads' reasons."""
    if threads is not None:
        return _route_at(run, host_gates, threads)
    routes = [_route_at(run, host_gates, n) for n in measured_threads(run)]
    found = [r for r in routes if r.artifact is not None and r.value]
    if not found:
        return routes[0]
    if found[0].basis is Basis.INSTRUCTIONS:
        return found[0]
    best = min(found, key=lambda r: (r.value or 0.0, r.threads))
    others = [r for r in found if r is not best]
    if others:
        best.caveats.append(
            "fastest over the thread counts measured ("
            + ", ".join(f"{r.artifact} {_figure(r.value or 0.0)} at {r.threads}" for r in others)
            + ")"
        )
    if best.basis is Basis.ESTIMATE_MS:
        _other_winners(run, best)
    return best


def _count_vs_fp32(run: TargetRun, route: Route) -> None:
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


def _other_winners(run: TargetRun, route: Route) -> None:
    """An emulated target estimated at thread counts it did not run (a capped plan: 1 thread run, 4 estimated from
    its counted thread split): where another artifact within the gates has the lower estimate there, say so (the
    route at 1 thread shipped ncnn-int8 while the 4-thread estimates ranked tflite-int8 first)."""
    within = {route.artifact} | {a for a, why in route.rejected.items() if why.startswith("slower")}
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
            route.caveats.append(
                f"at {n} threads (estimated from the counted thread split, not run) {best} ~{_figure(best_ms)} ms "
                f"ranks first, {route.artifact} ~{_figure(own)} ms"
            )


def _route_at(run: TargetRun, host_gates: dict[str, bool], threads: int) -> Route:
    """Candidates of one target run: its measurements at `threads`, gated by the conversion's gates
    (`host_gates`, artifact id -> passed) and by this target's own comparison with the original model."""
    basis, counting, candidates = candidates_for_run(run, host_gates, threads)
    if run.emulated and not counting:
        # emulated wall time is no device latency: name no route rather than a misleading one
        return Route(
            target=run.target,
            basis=Basis.INSTRUCTIONS,  # what an emulated target is ranked by; its wall times never are
            threads=threads,
            artifact=None,
            rejected={c.artifact: UNCOUNTED for c in candidates},
        )
    route = recommend(run.target, candidates, basis, threads)
    if basis is Basis.ESTIMATE_MS and route.artifact is not None:
        _count_vs_fp32(run, route)
        est = run.estimates.get(f"{route.artifact} x{threads}") or {}
        why = interval_not_validated(est)
        if why:
            route.caveats.append(
                f"the estimate of {route.artifact} is not calibrated ({why}; interval "
                f"{est.get('low_ms', 0):.3g}-{est.get('high_ms', 0):.3g} ms): confirm on the board"
            )
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
    return route


def candidates_for_run(
    run: TargetRun, host_gates: dict[str, bool], threads: int = 1
) -> tuple[Basis, bool, list[Candidate]]:
    """The basis of one target run's figures, whether it was counted, and its candidates at `threads`."""
    measurements = [m for m in (run.agent.measurements if run.agent else []) if m.threads == threads]
    counting = run.emulated and any(m.instructions_per_invoke for m in measurements)
    estimates = {
        m.artifact: e["estimate_ms"]
        for m in measurements
        if isinstance(e := run.estimates.get(f"{m.artifact} x{threads}"), dict) and e.get("status") == "ok"
    }
    basis = (Basis.ESTIMATE_MS if estimates else Basis.INSTRUCTIONS) if counting else Basis.P50_MS
    onnx = {c.artifact: c for c in run.comparisons if c.reference == "onnx"}
    candidates = []
    for m in measurements:
        figure = {
            Basis.P50_MS: m.p50_ms,
            Basis.ESTIMATE_MS: estimates.get(m.artifact),
            Basis.INSTRUCTIONS: m.instructions_per_invoke,
        }[basis]
        value = figure if m.status == "ok" else None
        comp = onnx.get(m.artifact)
        passed = host_gates.get(m.artifact, True) and (comp is None or comp.gates_passed is not False)
        failures = tuple(comp.gate_failures) if comp is not None else ()
        if not host_gates.get(m.artifact, True):
            failures += ("conversion gates failed",)
        candidates.append(
            Candidate(
                m.artifact,
                float(value) if value else None,
                passed,
                comp.cosine if comp else None,
                _drops(comp),
                failures,
                tuple(m.samples_ms) if basis is Basis.P50_MS and m.status == "ok" else (),
                comp.samples if comp else None,
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
