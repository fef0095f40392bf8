"""Why an artifact is not a target's route: the words `Route.rejected` says it with (recorded in the JSON and
matched by the readers of a route), the tests of a rejection (not_comparable, ranked_below), and the line a
target with no route prints, with what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

from edgekit.formats import Format, Precision

DID_NOT_RUN = "did not run"
# it ran, but its figure cannot rank it: not a number (a NaN p50), infinite, or not above 0 (a hand-edited or
# imported record); FIGURE_UNUSABLE, then ': ' and what the figure is. Never 'did not run': it did
FIGURE_UNUSABLE = "ran, but its figure is unusable"
GATES_FAILED = "gates failed"
# among a candidate's failures: its conversion already missed the recipe's gates on this machine (not the target alone)
CONVERSION_MISSED = "conversion gates failed"
UNCOUNTED = "emulated without instruction counts"
# counting was asked for but its counts were lost (this machine's disk filled under the counting plugin, a result
# kept from the agent's stream only): COUNTS_LOST, then ': ' and why. Counting again is no advice: it was on
COUNTS_LOST = "emulated, its instruction counts lost"
# the device saved its outputs but they were never compared (not pulled: a frozen device, a lost link): its
# on-device gates are unknown, so it is no route, whatever its speed
NOT_JUDGED = "gates not judged on the device: outputs not pulled"
# outputs that could not be paired with the reference's (edgekit.fidelity.compare.NotComparable: an output whose
# size depends on the input found another count on one): no gate was judged, so it is no route, but no gate missed
NOT_COMPARABLE = "outputs not comparable"
# a runner-up within the gates, as `rejected` says it: ranked below the choice, or not ranked apart from it (a
# measured tie, an estimate inside the other's 80 % interval: "slower (1.00x ...)" said of a tie contradicted it)
SLOWER = "slower"
SLOWER_BY_ESTIMATE = "slower by estimate"
MORE_INSTRUCTIONS = "more instructions"
NOT_RANKED_APART = "not ranked apart"
NOT_TOLD_APART = "not told apart by these samples"


def why_no_route(rejected: dict[str, str], recipe: str | None = None) -> str:
    """Why a target has no route, from its rejections (artifact -> why): not counted, nothing ran, or gates; when
    every artifact missed a gate, what to do as convert says it (`edgekit analyze RECIPE --format F --fix` for the
    INT8 ones, or relax the gate: gate_advice.gate_advice), at `recipe` (None: the word RECIPE); when some missed a
    gate and others did not run or could not be compared, the same advice for those that missed (the others' error
    is above)."""
    whys = list(rejected.values())
    unrun = sum(why == DID_NOT_RUN for why in whys)
    # the rest did not run (an agent killed, a link lost): their error is above, not a lack of counts
    also_unrun = f"; {unrun} did not run (its error is above)" if unrun else ""
    lost = [why for why in whys if why.startswith(COUNTS_LOST)]
    if lost and len(lost) + unrun == len(whys):
        said = lost[0][len(COUNTS_LOST) :].lstrip(": ") or "its error is above"
        return (
            f"no route: emulated, and the instruction counts it was counted for were lost ({said}); its wall times "
            f"are not device latency: run it again once that is mended{also_unrun}"
        )
    uncounted = sum(why == UNCOUNTED for why in whys)
    if uncounted and uncounted + unrun == len(whys):
        return (
            "no route: emulated without instruction counts (its wall times are not device latency); to rank it, "
            "count: --set emulated.counting=true on an edgekit emulated target (a qemu machine reached as a plain "
            f"or lab board cannot count){also_unrun}"
        )
    failed = sum(why.startswith(GATES_FAILED) for why in whys)
    uncompared = sum(why.startswith(NOT_COMPARABLE) for why in whys)
    unjudged = sum(why == NOT_JUDGED for why in whys)
    if uncompared and not failed:
        return (
            f"no route: the outputs of {uncompared} could not be compared with the ONNX model's, so their gates "
            "were not judged (why is above)"
        )
    if not failed and unjudged:  # measured, but the outputs never came back (a lost link): not "nothing ran"
        return (
            f"no route: {unjudged} measured, but their outputs were not pulled, so their gates on this target are "
            "not judged (its error is above)"
        )
    unusable = {
        a: why[len(FIGURE_UNUSABLE) :].lstrip(": ")
        for a, why in rejected.items()
        if why.startswith(FIGURE_UNUSABLE)
    }
    if not failed and unusable:  # they ran: not "nothing ran"
        return (
            f"no route: {len(unusable)} ran, but no figure ranks them ("
            + ", ".join(f"{a}: {what}" for a, what in unusable.items())
            + "); measure again"
        )
    if not failed:
        return "no route: nothing ran on this target (its error is above)"
    return (
        f"no artifact meets every gate ({failed} failed a gate"
        + (f", {uncompared} not comparable" if uncompared else "")
        + (f", {len(unusable)} with an unusable figure" if unusable else "")
        + (f", {unrun} did not run" if unrun else "")
        + ")"
        + (f"; hint: {_gate_advice(rejected, recipe)}" if failed == len(whys) else "")
        + (
            f"; for the {failed} that missed a gate: {_gate_advice(rejected, recipe)}"
            if 0 < failed < len(whys)
            else ""
        )
    )


def _gate_advice(rejected: dict[str, str], recipe: str | None) -> str:
    """What to do about the formats `rejected` says missed a gate. Those whose conversion missed it on this machine
    too get convert's advice (gate_advice.gate_advice, without --keep-going: a target where none met its gates
    has none to keep); those that met the gates when converted and missed them on this target alone are the
    target's runtime computing differently, which neither a converter option nor `analyze --fix` (judged on this
    machine) mends: said so (a device-only miss was told to change its converter)."""
    from edgekit.gate_advice import gate_advice

    converted: list[Format] = []
    device: list[Format] = []
    for artifact, why in rejected.items():
        try:
            fmt = Format(artifact)
        except (
            ValueError
        ):  # a format this edgekit does not know (a newer one's stored route): no advice of its own
            continue
        if why.startswith(GATES_FAILED):
            (converted if CONVERSION_MISSED in why else device).append(fmt)
    advice = []
    if converted:
        float_missed = [f for f in converted if f.precision is Precision.FP32]
        advice.append(gate_advice(recipe or "RECIPE", converted, float_missed, keep_going=False))
    if device:
        advice.append(
            f"{', '.join(f.value for f in device)} met the recipe's gates when converted but missed them on this "
            "target: its runtime computes differently there (the table's drift vs host), which no converter "
            "option or `analyze --fix` (judged on this machine) mends; relax the gate in evaluation.gates if that "
            "drift is acceptable, or leave the format out for this board"
        )
    return "; ".join(advice)


def not_comparable(failures: Sequence[str]) -> bool:
    """Whether a comparison's failures say its outputs could not be paired with the reference's (NOT_COMPARABLE):
    no gate was judged, so none was missed; the tables and lines say 'not comparable', never 'MISS'."""
    return bool(failures) and failures[0].startswith(NOT_COMPARABLE)


def ranked_below(why: str) -> bool:
    """Whether a rejection (Route.rejected) is of a runner-up within the gates: ranked below the choice (slower,
    more instructions) or not ranked apart from it; not a gate, a twin or a run that gave no figure."""
    return why.startswith((SLOWER, MORE_INSTRUCTIONS, NOT_RANKED_APART, NOT_TOLD_APART))
