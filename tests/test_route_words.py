"""What a route's words say of each artifact agrees with what its figures hold (the reviewer, 2026-12-07):

1. `rejected` said 'slower (1.00x ncnn-int8)' of the very tflite-int8 the route called a tie (`tied_with`), and
   'slower (2.31x ncnn-int8)' of an ncnn-fp32 whose ratio it withheld (`not_ranked_by_estimate`);
2. the `runtimes:` line said the host's fastest format (tflite-int8) 'stays fastest' on pi4-emu, where tflite's
   fastest within the gates was tflite-fp16;
3. a NaN figure was 'did not run', two records naming each other the same model were both left out ('no route:
   nothing ran'), an infinite figure gave 'infx vs slowest' (and the runtimes table said 'gates failed' of NaNs).

Constructed results (the route's logic above the devices); tests/test_route_words_emu.py deploys tiny for real.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from edgekit.results import (
    AgentResult,
    ArtifactInfo,
    Comparison,
    DeployResult,
    DeviceFacts,
    Measurement,
    TargetRun,
)
from edgekit.route import Basis, Candidate, recommend
from edgekit.route_deploy import routes_for_deploy
from edgekit.route_rejections import why_no_route

NOT_RANKED_APART = (
    "not ranked apart"  # edgekit.route_rejections' words, spelt out: what a reader of the JSON matches
)
NOT_TOLD_APART = "not told apart by these samples"

# the reviewer's mobilenetv2 on pi5-emu, 1 thread: (estimate, 80 % interval) and instructions per inference
PI5 = {
    "tflite-fp32": (27.957, 8.701, 89.831, 120_464_971),
    "tflite-fp16": (27.955, 8.7, 89.826, 120_463_507),
    "tflite-dynamic": (26.506, 8.249, 85.168, 121_663_989),
    "tflite-int8": (11.115, 3.459, 35.716, 49_364_580),
    "ncnn-fp32": (25.536, 7.947, 82.052, 101_224_771),
    "ncnn-fp16": (13.327, 11.014, 16.126, 54_053_893),
    "ncnn-int8": (11.063, 9.003, 13.594, 42_648_232),
}


def _pi5(figures: dict[str, tuple[float, float, float, int]]) -> DeployResult:
    """A deploy of `figures`' artifacts with one pi5-emu run: counted, estimated; ncnn-fp16 missed its gate there."""
    measurements = [
        Measurement(
            artifact=a,
            format=a,
            runtime=a.split("-")[0],
            threads=1,
            status="ok",
            p50_ms=900.0,
            instructions_per_invoke=n,
        )
        for a, (_, _, _, n) in figures.items()
    ]
    comparisons = [
        Comparison(
            artifact=a,
            target="pi5-emu",
            reference="onnx",
            max_abs_error=0.01,
            mean_abs_error=0.001,
            cosine=0.98 if a == "ncnn-fp16" else 0.99,
            gates_passed=a != "ncnn-fp16",
            gate_failures=["min_cosine: 0.98 vs limit 0.999 (on 4 inputs)"] if a == "ncnn-fp16" else [],
        )
        for a in figures
    ]
    facts = DeviceFacts(machine="aarch64", cores=4, python="3.11", emulated=True)
    run = TargetRun(
        target="pi5-emu",
        kind="ssh",
        emulated=True,
        status="ok",
        agent=AgentResult(started_at="2026-12-07T00:00:00", facts_before=facts, measurements=measurements),
        comparisons=comparisons,
    )
    run.estimates = {
        f"{a} x1": {"status": "ok", "estimate_ms": ms, "low_ms": low, "high_ms": high}
        for a, (ms, low, high, _) in figures.items()
    }
    return DeployResult(
        recipe="mobilenetv2",
        recipe_path="mobilenetv2.yaml",
        recipe_sha256="x",
        started_at="2026-12-07T00:00:00",
        artifacts=[ArtifactInfo(id=a, format=a, files=[], sha256="", size_bytes=1) for a in figures],
        runs=[run],
    )


def test_on_the_estimate_basis_a_runner_up_not_ranked_apart_is_never_said_slower() -> None:
    """pi5-emu: ncnn-int8 ~11.1 ms (9-13.6) shipped; tflite-int8 ~11.1 ms is its tie, and every other estimate's
    interval holds ncnn-int8's figure: the JSON said 'slower (1.00x ncnn-int8)', 'slower (2.31x ncnn-int8)'."""
    (route,) = routes_for_deploy(_pi5(PI5))
    assert route.artifact == "ncnn-int8" and route.tied_with == "tflite-int8"
    assert route.not_ranked_by_estimate == ["ncnn-fp32", "tflite-fp32"]
    assert route.rejected["tflite-int8"] == (
        "not ranked apart (~11.1 vs ~11.1 ms ESTIMATE of ncnn-int8: one lies inside the other's interval)"
    )
    assert route.rejected["ncnn-fp32"].startswith("not ranked apart (~25.5 vs ~11.1 ms ESTIMATE"), (
        route.rejected
    )
    assert route.rejected["ncnn-fp16"].startswith("gates failed")  # a gate is said as before
    # the rule: the tie and each withheld ratio are 'not ranked apart', and nothing is 'slower' by one of them
    for other in [route.tied_with, *route.not_ranked_by_estimate]:
        assert route.rejected[other].startswith(NOT_RANKED_APART), (other, route.rejected)
    assert not any(why.startswith("slower") for why in route.rejected.values()), route.rejected
    # intervals that rank them: 'slower by estimate', with the ratio of the estimates
    narrow = {a: (ms, ms * 0.9, ms * 1.1, n) for a, (ms, _, _, n) in PI5.items()} | {
        "tflite-int8": (11.115, 10.0, 12.3, 49_364_580)
    }
    (route,) = routes_for_deploy(_pi5(narrow))
    assert route.tied_with == "tflite-int8" and route.rejected["tflite-int8"].startswith(NOT_RANKED_APART)
    assert route.not_ranked_by_estimate == []
    assert route.rejected["ncnn-fp32"] == "slower by estimate (2.31x ncnn-int8)", route.rejected


def test_a_measured_tie_is_said_as_the_tie_test_says_it() -> None:
    """On the p50 basis the runner-up the rank test cannot tell from the choice is its tie, never 'slower'; a
    runner-up the samples do rank stays 'slower (...)'."""
    rng = np.random.default_rng(0)
    a = tuple(float(v) for v in 20 + rng.normal(0, 3, 20))
    b = tuple(float(v) for v in 20.5 + rng.normal(0, 3, 20))
    far = tuple(v + 30 for v in b)
    cands = [
        Candidate("tflite-fp16", float(np.median(a)), True, samples=a),
        Candidate("tflite-fp32", float(np.median(b)), True, samples=b),
        Candidate("ncnn-fp32", float(np.median(far)), True, samples=far),
    ]
    first, second = sorted(cands[:2], key=lambda c: c.value or 0.0)
    route = recommend("host", cands, Basis.P50_MS)
    assert route.artifact == first.artifact and route.tied_with == second.artifact
    why = route.rejected[second.artifact]
    assert why.startswith(f"{NOT_TOLD_APART} from {first.artifact} (") and "Mann-Whitney p=" in why, why
    assert route.rejected["ncnn-fp32"].startswith("slower (")


def test_the_runtimes_line_names_the_targets_own_fastest_format_of_the_hosts_runtime() -> None:
    """tiny on pi4-emu: 'host's fastest runtime tflite (tflite-int8) on pi4-emu: stays fastest', where tflite's
    fastest within the gates was tflite-fp16 (tflite-int8 0.78x fp32 by count there)."""
    from edgekit.runtimes.ranking import RuntimeEntry, TargetRanking
    from edgekit.runtimes.ranking_table import verdicts

    host = TargetRanking(
        "host",
        Basis.P50_MS,
        False,
        [RuntimeEntry("tflite", "tflite-int8", 0.0146, 1), RuntimeEntry("ncnn", "ncnn-fp32", 0.048, 2)],
    )
    pi4 = TargetRanking(
        "pi4-emu",
        Basis.ESTIMATE_MS,
        True,
        [RuntimeEntry("tflite", "tflite-fp16", 0.107, 1), RuntimeEntry("ncnn", "ncnn-fp32", 0.164, 2)],
    )
    (line,) = verdicts([host, pi4])
    assert "tflite (tflite-int8) on pi4-emu: stays fastest (tflite-fp16 there)" in line, line
    pi4.entries = [
        RuntimeEntry("ncnn", "ncnn-fp32", 0.09, 1),
        RuntimeEntry("tflite", "tflite-fp16", 0.107, 2),
    ]
    (line,) = verdicts([host, pi4])
    assert "ranked 2 of 2 (tflite-fp16 there); fastest there: ncnn (ncnn-fp32)" in line, line
    pi4.entries = [
        RuntimeEntry("tflite", "tflite-int8", 0.09, 1),
        RuntimeEntry("ncnn", "ncnn-fp32", 0.164, 2),
    ]
    (line,) = verdicts([host, pi4])
    assert line.endswith("on pi4-emu: stays fastest (by board estimates)"), (
        line
    )  # the host's own: not repeated


def test_a_figure_that_is_not_a_number_is_no_route_and_not_did_not_run() -> None:
    """A NaN p50 (a hand-edited or imported record) was 'did not run' although it ran; an infinite one made
    'infx vs slowest'; a figure of 0 divided by zero."""
    nan = recommend("host", [Candidate("tflite-fp32", math.nan, True)], Basis.P50_MS)
    assert (
        nan.artifact is None
        and nan.rejected["tflite-fp32"] == "ran, but its figure is unusable: not a number"
    )
    said = why_no_route(nan.rejected)
    assert "nothing ran" not in said and "tflite-fp32: not a number" in said, said
    cands = [
        Candidate("tflite-fp32", math.inf, True),
        Candidate("tflite-int8", 2.0, True),
        Candidate("ncnn-fp32", 0.0, True),
        Candidate("ncnn-int8", -1.0, True),
    ]
    route = recommend("host", cands, Basis.P50_MS)
    assert route.artifact == "tflite-int8" and route.speedup_vs_slowest == 1.0
    assert route.rejected == {
        "tflite-fp32": "ran, but its figure is unusable: infinite",
        "ncnn-fp32": "ran, but its figure is unusable: 0, not above 0",
        "ncnn-int8": "ran, but its figure is unusable: -1, not above 0",
    }
    assert "inf" not in route.summary() and "nan" not in route.summary(), route.summary()
    assert recommend("host", [Candidate("ncnn-fp32", None, False)], Basis.P50_MS).rejected == {
        "ncnn-fp32": "did not run"
    }
    gated = {"tflite-fp32": "ran, but its figure is unusable: not a number", "ncnn-fp32": "gates failed: x"}
    assert "1 failed a gate, 1 with an unusable figure" in why_no_route(gated)
    # the runtimes table: a runtime whose figures are all NaN ran, and missed no gate
    from edgekit.runtimes.ranking import rank_runtimes

    figures = {
        a: (math.nan if a.startswith("tflite") else ms, low, high, n) for a, (ms, low, high, n) in PI5.items()
    }
    (pi5,) = rank_runtimes(_pi5(figures))
    tflite = next(e for e in pi5.entries if e.runtime == "tflite")
    assert (tflite.artifact, tflite.why) == (None, "figure unusable"), pi5.entries


def test_two_records_naming_each_other_the_same_model_keep_one() -> None:
    """ncnn-int8 and ncnn-fp32 each the other's same model (a hand-edited record): both were left out and the
    route said 'no route: nothing ran'; the fp32 one is kept, as deploy's own record keeps it."""
    why = "byte-identical model files, the same options"
    cands = [
        Candidate("ncnn-int8", 10.0, True, same_model_as="ncnn-fp32", same_model_why=why),
        Candidate("ncnn-fp32", 12.0, True, same_model_as="ncnn-int8", same_model_why=why),
    ]
    route = recommend("host", cands, Basis.P50_MS)
    assert route.artifact == "ncnn-fp32", route.rejected
    assert route.rejected == {"ncnn-int8": f"the same model as ncnn-fp32 ({why}): not ranked"}
    # a chain (int8 -> fp16 -> fp32) keeps its end; a ring of three keeps its fp32 one
    chain = [
        Candidate("ncnn-int8", 10.0, True, same_model_as="ncnn-fp16"),
        Candidate("ncnn-fp16", 11.0, True, same_model_as="ncnn-fp32"),
        Candidate("ncnn-fp32", 12.0, True),
    ]
    assert recommend("host", chain, Basis.P50_MS).artifact == "ncnn-fp32"
    ring = [
        replace(c, same_model_as=twin)
        for c, twin in zip(chain, ("ncnn-fp16", "ncnn-fp32", "ncnn-int8"), strict=True)
    ]
    route = recommend("host", ring, Basis.P50_MS)
    assert route.artifact == "ncnn-fp32" and set(route.rejected) == {"ncnn-int8", "ncnn-fp16"}
