"""The fastest route, named: for one target, which artifact to ship.

The answer is the fastest artifact that meets every gate, with its speed-up over the same runtime's fp32
artifact and over the slowest route, and what it costs in accuracy. What "fastest" means depends on the target
and is carried as the route's `basis`, so no figure is mistaken for another:
- a real board: the measured p50 latency (ms, lower is faster);
- an emulated core with board estimates (pi4-emu, pi5-emu): the estimated board latency (ms, from the exact
  instruction count through the cross-validated cost model; labelled an estimate);
- an emulated core without a calibrated board (phone-emu): the guest instruction count per inference (exact,
  but not cycles: an int8 or fp16 instruction does more work than an fp32 one), never the emulated wall time.

`recommend` is a pure function of plain candidates (unit-tested without any device); edgekit/route_deploy.py
builds the candidates from a DeployResult, at each target's fastest thread count measured; the words a rejection is
said in, and the line of a target with no route, are in edgekit/route_rejections.py.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from edgekit.formats import Format
from edgekit.route_rejections import (
    DID_NOT_RUN,
    FIGURE_UNUSABLE,
    GATES_FAILED,
    MORE_INSTRUCTIONS,
    NOT_JUDGED,
    NOT_TOLD_APART,
    SLOWER,
    SLOWER_BY_ESTIMATE,
    not_comparable,
    why_no_route,
)


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
    judged: bool = True  # False: its on-device gates were never checked (NOT_JUDGED); it is then not passed
    # gates the recipe set that could not be checked ('max_top1_drop (no top1_drop: needs labels)'): none was
    # missed, so it may be routed, but never as having held them (the route names them)
    unchecked: tuple[str, ...] = ()
    # another candidate that is this very model (same model files and options: an ncnn-int8 whose speed plan kept
    # no layer int8 is ncnn-fp32), and why it is said to be: never ranked against it
    same_model_as: str | None = None
    same_model_why: str = ""


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
        None  # the runner-up the samples (measured) or the 80% intervals (estimates) do not tell from the choice
    )
    judged_on: int | None = None  # inputs of this target the gates (and accuracy drops) were judged on
    unchecked_gates: list[str] = field(default_factory=list)  # the choice's gates never checked (Candidate)
    # artifact -> the artifact it is the very same model as (same_model.same_models)
    same_model: dict[str, str] = field(default_factory=dict)
    # estimate basis: the fp32 or slowest artifact whose estimate lies inside the choice's 80% interval (or the
    # choice's inside its): its speed-up is not stated (None), the estimates do not rank the two apart
    not_ranked_by_estimate: list[str] = field(default_factory=list)
    # the recipe's path, named in the advice of a target where an artifact missed a gate (None: 'RECIPE')
    recipe: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["basis"], data["basis_label"] = self.basis.value, self.basis.label
        return data

    def summary(self) -> str:
        """One line for a terminal: `pi4-emu: ship ncnn-int8 (1.45x vs ncnn-fp32, ...)`."""
        if self.artifact is None:
            return f"{self.target}: {why_no_route(self.rejected, self.recipe)}"
        parts = []
        unranked = " not ranked apart by the estimate"
        if self.fp32_artifact in self.not_ranked_by_estimate and self.fp32_artifact != self.artifact:
            parts.append(
                f"vs {self.fp32_artifact}:{unranked}"
                + (
                    f", {self.count_vs_fp32:.2f}x by instruction count"
                    if self.count_vs_fp32 is not None
                    else ""
                )
            )
        # a count basis's ratios are of instruction counts (not cycles, not time): said so, as deploy's 'by insn'
        counted = " by instruction count" if self.basis is Basis.INSTRUCTIONS else ""
        if self.speedup_vs_fp32 is not None and self.fp32_artifact != self.artifact:
            by_count = (
                f" by estimate, {self.count_vs_fp32:.2f}x by instruction count"
                if self.count_vs_fp32 is not None
                else counted
            )
            parts.append(f"{self.speedup_vs_fp32:.2f}x vs {self.fp32_artifact}{by_count}")
        if self.speedup_vs_slowest is not None and self.slowest_artifact != self.artifact:
            parts.append(f"{self.speedup_vs_slowest:.2f}x vs slowest {self.slowest_artifact}{counted}")
        elif (
            self.slowest_artifact in self.not_ranked_by_estimate
            and self.slowest_artifact != self.fp32_artifact
        ):
            parts.append(f"vs slowest {self.slowest_artifact}:{unranked}")
        if self.cosine is not None:
            parts.append(f"cosine {cosine_text(self.cosine)}")
        parts += [
            f"top-1 differs from the original's on {_share(v)} of inputs"
            if k == DISAGREEMENT
            else f"{METRIC_WORDS.get(k, k)} {v:+.3f}"
            for k, v in sorted(self.metric_drop.items())
        ]
        if self.judged_on and (self.cosine is not None or self.metric_drop):
            parts.append(
                f"{self._judged()} judged on {self.judged_on} input{'s' if self.judged_on != 1 else ''} here"
            )
        unit = {
            Basis.P50_MS: "ms p50",
            Basis.ESTIMATE_MS: "ms ESTIMATE",
            Basis.INSTRUCTIONS: "M instructions (emulated)",
        }[self.basis]
        figure = (self.value or 0.0) / 1e6 if self.basis is Basis.INSTRUCTIONS else self.value
        return (
            f"{self.target}: ship {self.artifact} ({figure_text(figure or 0.0)} {unit}, threads={self.threads}"
            + "".join(f"; {p}" for p in parts)
            + ")"
            + "".join(f"; note: {c}" for c in self.caveats)
        )

    def _judged(self) -> str:
        """What was judged on this target's inputs: the recipe's gates (the outputs against the original's), and
        accuracy only where labels gave an accuracy drop; without labels no accuracy was measured."""
        return "gates and accuracy" if any(k in METRIC_WORDS for k in self.metric_drop) else "gates"


def cosine_text(cosine: float, places: int = 4) -> str:
    """A cosine with `places` decimals, or as many more as it takes (up to 8) to never print '1.0000' for a
    cosine below 1 (an int8 model's 0.99999659 printed as 1.00000); '> 0.99999999' closer to 1 than that (1 - 1e-15
    from float rounding). The one rule of every table and route line (edgekit.report imports it from here)."""
    if not math.isfinite(cosine) or cosine >= 1:
        return f"{cosine:.{places}f}"
    found = next((d for d in range(places, max(places, 8) + 1) if f"{cosine:.{d}f}" != f"{1:.{d}f}"), None)
    return f"{cosine:.{found}f}" if found is not None else f"> {1 - 10 ** -max(places, 8):.{max(places, 8)}f}"


def _share(value: float) -> str:
    """A share as a percentage that never rounds a nonzero one to 0 % (1 input in 500: 0.2%)."""
    return f"{value:.0%}" if value >= 0.01 else f"{value:.1%}" if value >= 0.001 else "under 0.1%"


def figure_text(value: float) -> str:
    """Three significant digits as the tables print them (0.00484 ms is not "0.00 ms"), whole numbers from 100."""
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def recommend(target: str, candidates: list[Candidate], basis: Basis, threads: int = 1) -> Route:
    """The fastest candidate that ran and meets every gate; speed-ups against the same runtime's fp32
    candidate and the slowest candidate within the gates (a route a user might otherwise ship; one that misses
    a gate is no route: "2.37x vs slowest tflite-int8" named an artifact that had failed its gates)."""
    ran = [c for c in candidates if c.value is not None and math.isfinite(c.value) and c.value > 0]
    rejected = {
        c.artifact: DID_NOT_RUN if c.value is None else _unusable(c.value) for c in candidates if c not in ran
    }
    for c in ran:
        if not c.judged:
            rejected[c.artifact] = NOT_JUDGED
        elif not c.gates_passed and not_comparable(c.failures):
            rejected[c.artifact] = "; ".join(c.failures)
        elif not c.gates_passed:
            rejected[c.artifact] = GATES_FAILED + (f": {'; '.join(c.failures)}" if c.failures else "")
    eligible = sorted((c for c in ran if c.gates_passed and c.judged), key=lambda c: (c.value, c.artifact))
    route = Route(target=target, basis=basis, threads=threads, artifact=None, rejected=rejected)
    eligible = _one_of_each_model(route, eligible)
    if not eligible:
        return route
    best = eligible[0]
    for c in eligible[1:]:
        ratio = f"{c.value / best.value:.2f}x {best.artifact}"  # type: ignore[operator]
        route.rejected[c.artifact] = {
            Basis.INSTRUCTIONS: f"{MORE_INSTRUCTIONS} ({ratio}'s count)",
            Basis.ESTIMATE_MS: f"{SLOWER_BY_ESTIMATE} ({ratio})",  # route_estimates says which are not ranked apart
            Basis.P50_MS: f"{SLOWER} ({ratio})",
        }[basis]
    by_id = {c.artifact: c for c in ran}
    route.artifact, route.value = best.artifact, best.value
    route.cosine, route.metric_drop = best.cosine, dict(best.metric_drop)
    route.judged_on = best.judged_on
    if best.unchecked:
        _unchecked(route, best)
    fp32 = _fp32_of(best.artifact)
    if fp32 in by_id:
        route.fp32_artifact = fp32
        if best.same_model_as != fp32:  # the same model: a ratio of two timings of one model is noise
            route.speedup_vs_fp32 = by_id[fp32].value / best.value  # type: ignore[operator]
    for c in candidates:  # said of the choice only: twins of others are in `rejected`
        if best.artifact in (c.artifact, c.same_model_as) and c.same_model_as is not None:
            route.caveats.append(
                f"{c.artifact} is {c.same_model_as} ({c.same_model_why}): one model, never ranked against itself"
            )
    slowest = max(eligible, key=lambda c: (c.value, c.artifact))
    route.slowest_artifact = slowest.artifact
    route.speedup_vs_slowest = slowest.value / best.value  # type: ignore[operator]
    if basis is Basis.P50_MS:
        for c in eligible[1:]:  # every one the samples cannot tell from the choice, not the runner-up alone
            _tie(route, best, c)
    return route


def _unusable(value: float) -> str:
    """Why a candidate that ran has a figure nothing can rank by (FIGURE_UNUSABLE): a NaN p50 was said 'did not
    run', an infinite one made 'infx vs slowest'."""
    what = (
        "not a number"
        if math.isnan(value)
        else "infinite"
        if math.isinf(value)
        else f"{value:g}, not above 0"
    )
    return f"{FIGURE_UNUSABLE}: {what}"


def _one_of_each_model(route: Route, eligible: list[Candidate]) -> list[Candidate]:
    """`eligible` with each candidate that is the same model as another eligible one left out (said in
    `rejected` and `same_model`): 'ship ncnn-int8 (1.52x vs ncnn-fp32)' was host timing noise between two runs of
    byte-identical files, the int8 speed plan having kept no layer int8. One of each model is kept, even where
    the records name each other (a hand-edited or imported record: both were left out, 'nothing ran')."""
    by_name = {c.artifact: c for c in eligible}
    for c in eligible:
        if c.same_model_as is not None:
            route.same_model[c.artifact] = c.same_model_as
    twins = [c for c in eligible if _kept_of(c, by_name) != c.artifact]
    for c in twins:
        route.rejected[c.artifact] = f"the same model as {c.same_model_as} ({c.same_model_why}): not ranked"
    return [c for c in eligible if c not in twins]


def _kept_of(c: Candidate, by_name: dict[str, Candidate]) -> str:
    """The candidate kept of `c`'s model: followed along same_model_as among `by_name` to one that names none
    of them; in a ring of records naming each other, the fp32 one, else the first by name (as same_files keeps)."""
    seen: list[str] = []
    while c.artifact not in seen and c.same_model_as in by_name:
        seen.append(c.artifact)
        c = by_name[c.same_model_as]
    if c.artifact not in seen:
        return c.artifact
    ring = seen[seen.index(c.artifact) :]
    return min(ring, key=lambda a: (not a.endswith("-fp32"), a))


def _unchecked(route: Route, best: Candidate) -> None:
    """A choice with a gate the recipe set that was never checked is routed (none was missed, and the user may
    have no labels), but said to be unchecked, never a pass: the route line showed it as holding every gate."""
    route.unchecked_gates = list(best.unchecked)
    labels = any("labels" in gate for gate in best.unchecked)
    route.caveats.append(
        f"gate NOT checked for {best.artifact}: {'; '.join(best.unchecked)}: not passed, only not judged; "
        + ("give evaluation.data labels to check it" if labels else "whether it holds is unknown")
    )


TIE_P = 0.05  # one-sided Mann-Whitney: the choice's samples must be faster than the runner-up's at this level
MIN_SAMPLES = 5


def _tie(route: Route, best: Candidate, runner_up: Candidate) -> None:
    """A measured choice the samples cannot tell from a slower candidate (rank test) is said to be a tie: a p50 a
    few per cent lower on a busy machine is not a reason to ship one runtime over another. Each candidate is tested
    against the choice: the third of three was 'slower (1.04x ...)' though its samples were no more apart from the
    choice's than the runner-up's. `tied_with` names the fastest of them; the caveats and rejections name each."""
    if min(len(best.samples), len(runner_up.samples)) < MIN_SAMPLES:
        return
    from edgekit.samples import slower_p_value

    p = slower_p_value(runner_up.samples, best.samples)
    if p < TIE_P:
        return
    route.tied_with = route.tied_with or runner_up.artifact
    route.caveats.append(
        f"{best.artifact} and {runner_up.artifact} are {NOT_TOLD_APART} (p50 {best.value:.3g} vs "
        f"{runner_up.value:.3g} ms, Mann-Whitney p={p:.2f} over {len(best.samples)} and {len(runner_up.samples)} "
        "samples): either will do; to choose, measure again with more --repeat on a quiet machine"
    )
    # its rejection says the same, never "slower": the samples do not rank it below the choice
    route.rejected[runner_up.artifact] = (
        f"{NOT_TOLD_APART} from {best.artifact} ({runner_up.value:.3g} vs {best.value:.3g} ms p50, "
        f"Mann-Whitney p={p:.2f}): a tie"
    )


def _fp32_of(artifact: str) -> str:
    try:
        return Format(artifact).fp32_reference.value
    except ValueError:
        return artifact.split("-")[0] + "-fp32"
