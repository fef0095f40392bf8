"""The fastest route: the fastest artifact that meets every gate, with speed-ups and accuracy cost."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edgekit.results import (
    AgentResult,
    ArtifactInfo,
    Comparison,
    DeployResult,
    DeviceFacts,
    Measurement,
    TargetRun,
)
from edgekit.route import DISAGREEMENT, Basis, Candidate, Route, recommend
from edgekit.route_deploy import routes_for_deploy


def test_fastest_gated_candidate_wins_with_speedups() -> None:
    cands = [
        Candidate("ncnn-fp32", 100.0, True),
        Candidate("ncnn-int8", 60.0, True, cosine=0.97),
        Candidate("tflite-fp32", 120.0, True),
        Candidate("tflite-int8", 50.0, False, failures=("cosine",)),
    ]
    route = recommend("pi4-emu", cands, Basis.INSTRUCTIONS)
    assert route.artifact == "ncnn-int8"
    assert route.fp32_artifact == "ncnn-fp32" and abs(route.speedup_vs_fp32 - 100 / 60) < 1e-9
    assert route.slowest_artifact == "tflite-fp32" and abs(route.speedup_vs_slowest - 2.0) < 1e-9
    assert route.cosine == 0.97
    assert route.rejected["tflite-int8"].startswith("gates failed")
    assert route.rejected["tflite-fp32"] == "more instructions (2.00x ncnn-int8's count)"  # no time: counts
    assert "ncnn-int8" in route.summary() and "instructions" in route.summary()


def test_the_route_line_keeps_three_significant_digits() -> None:
    """A 4.8 microsecond model printed as "0.00 ms p50"."""
    fast = recommend("local", [Candidate("tflite-fp32", 0.00484, True)], Basis.P50_MS).summary()
    slow = recommend("pi4", [Candidate("tflite-fp32", 1234.4, True)], Basis.P50_MS).summary()
    assert "(0.00484 ms p50" in fast and "(1234 ms p50" in slow


def test_the_route_line_never_rounds_a_cosine_below_one_to_one() -> None:
    """0.99998 printed 'cosine 1.0000' (four places): as many places as it takes to stay below 1."""
    near = recommend("local", [Candidate("tflite-int8", 1.0, True, cosine=0.99998)], Basis.P50_MS).summary()
    assert "cosine 0.99998" in near, near
    usual = recommend("local", [Candidate("tflite-int8", 1.0, True, cosine=0.99602)], Basis.P50_MS).summary()
    assert "cosine 0.9960" in usual, usual
    exact = recommend("local", [Candidate("tflite-fp32", 1.0, True, cosine=1.0)], Basis.P50_MS).summary()
    assert "cosine 1.0000" in exact, exact
    rounding = recommend(
        "local", [Candidate("ncnn-fp32", 1.0, True, cosine=0.9999999999999974)], Basis.P50_MS
    )
    assert "cosine > 0.99999999" in rounding.summary(), rounding.summary()  # not twelve places of float noise


def test_no_route_when_nothing_passes_or_runs() -> None:
    route = recommend(
        "pi4", [Candidate("ncnn-int8", None, True), Candidate("ncnn-fp32", 5.0, False)], Basis.P50_MS
    )
    assert route.artifact is None
    assert route.rejected == {"ncnn-int8": "did not run", "ncnn-fp32": "gates failed"}
    line = route.summary()
    assert line.startswith(
        "pi4: no artifact meets every gate (1 failed a gate, 1 did not run); for the 1 that"
    ), line
    assert "ncnn-fp32 met the recipe's gates when converted but missed them on this target" in line, line
    nothing = recommend("phone", [Candidate("ncnn-int8", None, True)], Basis.P50_MS)
    assert nothing.summary() == "phone: no route: nothing ran on this target (its error is above)"
    assert recommend("phone", [], Basis.P50_MS).summary() == nothing.summary()  # was "(0 rejected)"


def test_fp32_itself_has_speedup_one_and_missing_fp32_gives_none() -> None:
    route = recommend(
        "pi5", [Candidate("tflite-fp32", 10.0, True), Candidate("ncnn-int8", 12.0, True)], Basis.P50_MS
    )
    assert route.artifact == "tflite-fp32" and route.speedup_vs_fp32 == 1.0
    alone = recommend("pi5", [Candidate("ncnn-int8", 12.0, True)], Basis.P50_MS)
    assert alone.speedup_vs_fp32 is None and alone.speedup_vs_slowest == 1.0


def _measurement(artifact: str, threads: int, p50: float, insns: int | None = None) -> Measurement:
    return Measurement(
        artifact=artifact,
        format=artifact,
        runtime="ncnn",
        threads=threads,
        status="ok",
        p50_ms=p50,
        instructions_per_invoke=insns,
    )


def _run(
    target: str, emulated: bool, measurements: list[Measurement], comparisons: list[Comparison]
) -> TargetRun:
    facts = DeviceFacts(machine="aarch64", cores=4, python="3.11", emulated=emulated)
    agent = AgentResult(started_at="2026-12-01T00:00:00", facts_before=facts, measurements=measurements)
    return TargetRun(
        target=target, kind="ssh", emulated=emulated, status="ok", agent=agent, comparisons=comparisons
    )


def _comparison(artifact: str, target: str, passed: bool, **metric: float) -> Comparison:
    return Comparison(
        artifact=artifact,
        target=target,
        reference="onnx",
        max_abs_error=0.1,
        mean_abs_error=0.01,
        cosine=0.99,
        gates_passed=passed,
        metric=metric,
    )


def _result(artifacts: tuple[str, ...], runs: list[TargetRun]) -> DeployResult:
    """A deploy of `artifacts` (every conversion gate passed) with these target runs."""
    return DeployResult(
        recipe="r",
        recipe_path="r.yaml",
        recipe_sha256="x",
        started_at="2026-12-01T00:00:00",
        artifacts=[ArtifactInfo(id=a, format=a, files=[], sha256="", size_bytes=1) for a in artifacts],
        runs=runs,
    )


def test_deploy_routes_use_counts_on_emulated_and_p50_on_boards() -> None:
    emu = _run(
        "pi4-emu",
        True,
        [
            _measurement("ncnn-fp32", 1, 900.0, 100_000_000),
            _measurement("ncnn-int8", 1, 950.0, 80_000_000),
            _measurement("ncnn-int8", 4, 300.0, 90_000_000),
        ],
        [_comparison("ncnn-int8", "pi4-emu", True, map50_95=0.70, map50_95_reference=0.72)],
    )
    board = _run("pi4", False, [_measurement("ncnn-fp32", 1, 10.0), _measurement("ncnn-int8", 1, 12.0)], [])
    result = _result(("ncnn-fp32", "ncnn-int8"), [emu, board])
    routes = {r.target: r for r in routes_for_deploy(result)}
    assert routes["pi4-emu"].basis is Basis.INSTRUCTIONS and routes["pi4-emu"].artifact == "ncnn-int8"
    assert abs(routes["pi4-emu"].speedup_vs_fp32 - 1.25) < 1e-9
    assert abs(routes["pi4-emu"].metric_drop["map50_95_drop"] - 0.02) < 1e-9
    assert routes["pi4"].basis is Basis.P50_MS and routes["pi4"].artifact == "ncnn-fp32"


def test_deploy_route_respects_conversion_and_target_gates() -> None:
    emu = _run(
        "pi5-emu",
        True,
        [
            _measurement("ncnn-fp32", 1, 1.0, 100),
            _measurement("ncnn-int8", 1, 1.0, 50),
            _measurement("tflite-int8", 1, 1.0, 40),
        ],
        [_comparison("tflite-int8", "pi5-emu", False)],
    )
    arts = [
        ArtifactInfo(id="ncnn-fp32", format="ncnn-fp32", files=[], sha256="", size_bytes=1),
        ArtifactInfo(
            id="ncnn-int8", format="ncnn-int8", files=[], sha256="", size_bytes=1, gates_passed=False
        ),
        ArtifactInfo(id="tflite-int8", format="tflite-int8", files=[], sha256="", size_bytes=1),
    ]
    result = DeployResult(
        recipe="r",
        recipe_path="r.yaml",
        recipe_sha256="x",
        started_at="2026-12-01T00:00:00",
        artifacts=arts,
        runs=[emu],
    )
    route = routes_for_deploy(result)[0]
    assert route.artifact == "ncnn-fp32"
    assert "conversion gates failed" in route.rejected["ncnn-int8"]
    assert route.rejected["tflite-int8"].startswith("gates failed")


def test_emulated_run_without_counts_names_no_route() -> None:
    emu = _run("pi4-emu", True, [_measurement("ncnn-fp32", 1, 900.0)], [])
    result = DeployResult(
        recipe="r", recipe_path="r.yaml", recipe_sha256="x", started_at="2026-12-01T00:00:00", runs=[emu]
    )
    route = routes_for_deploy(result)[0]
    assert route.artifact is None and "without instruction counts" in route.rejected["ncnn-fp32"]
    # it said "no artifact meets every gate (1 failed a gate)" of artifacts that passed every gate, and its basis
    # read "p50 latency measured on the target" for a run whose wall times are emulated
    assert "failed a gate" not in route.summary() and "emulated.counting=true" in route.summary()
    assert route.basis is not Basis.P50_MS


def test_emulated_board_with_estimates_ranks_by_the_estimate_across_runtimes() -> None:
    """Instruction counts of different runtimes do not compare (different kernels, different work per
    instruction): where the board has estimates, the route ranks by the estimated latency and says so."""
    emu = _run(
        "pi5-emu",
        True,
        [_measurement("ncnn-fp32", 1, 900.0, 100_000_000), _measurement("tflite-int8", 1, 950.0, 60_000_000)],
        [],
    )
    emu.estimates = {
        "ncnn-fp32 x1": {"status": "ok", "estimate_ms": 20.0},
        "tflite-int8 x1": {
            "status": "ok",
            "estimate_ms": 25.0,
            "interval_calibrated": False,
            "low_ms": 8.0,
            "high_ms": 80.0,
        },
    }
    result = _result(("ncnn-fp32", "tflite-int8"), [emu])
    (route,) = routes_for_deploy(result)
    assert route.basis is Basis.ESTIMATE_MS and route.artifact == "ncnn-fp32" and route.value == 20.0
    assert "ESTIMATE" in route.summary() and "not a measurement" in route.basis.label and not route.caveats
    emu.estimates["tflite-int8 x1"]["estimate_ms"] = 15.0  # now the uncalibrated one is the fastest
    (route,) = routes_for_deploy(result)
    assert route.artifact == "tflite-int8" and "not calibrated" in route.summary()


def test_a_measured_choice_the_samples_cannot_tell_from_the_runner_up_is_called_a_tie() -> None:
    """Two overlapping sample sets (a busy host): the route still names the lower p50 but says it is a tie; two
    well-separated ones: no tie. Too few samples to test: nothing is claimed either way."""
    import numpy as np

    rng = np.random.default_rng(0)
    noisy_a = tuple(float(v) for v in 20 + rng.normal(0, 3, 20))
    noisy_b = tuple(float(v) for v in 20.5 + rng.normal(0, 3, 20))
    a_p50, b_p50 = float(np.median(noisy_a)), float(np.median(noisy_b))
    (first, fp50, fs), (second, sp50, ss) = sorted(
        [("ncnn-int8", a_p50, noisy_a), ("ncnn-fp32", b_p50, noisy_b)], key=lambda c: c[1]
    )
    tie = recommend(
        "host",
        [Candidate(first, fp50, True, samples=fs), Candidate(second, sp50, True, samples=ss)],
        Basis.P50_MS,
    )
    assert tie.artifact == first and tie.tied_with == second
    assert any("not told apart" in c for c in tie.caveats) and "note:" in tie.summary()
    fast = tuple(v - 8 for v in noisy_a)
    clear = recommend(
        "host",
        [
            Candidate("ncnn-int8", float(np.median(fast)), True, samples=fast),
            Candidate("ncnn-fp32", b_p50, True, samples=noisy_b),
        ],
        Basis.P50_MS,
    )
    assert clear.artifact == "ncnn-int8" and clear.tied_with is None and clear.caveats == []
    few = recommend(
        "host",
        [
            Candidate("ncnn-int8", 20.0, True, samples=(20.0, 21.0)),
            Candidate("ncnn-fp32", 20.1, True, samples=(20.1,)),
        ],
        Basis.P50_MS,
    )
    assert few.tied_with is None
    # estimates and counts are not samples: never a tie by this test
    est = recommend(
        "pi4-emu", [Candidate("ncnn-int8", 96.0, True), Candidate("ncnn-fp32", 97.0, True)], Basis.ESTIMATE_MS
    )
    assert est.tied_with is None


def test_every_candidate_the_samples_cannot_tell_from_the_choice_is_a_tie_not_the_runner_up_alone() -> None:
    """Only the runner-up was tested against the choice: a third runtime whose samples were no more apart from the
    choice's was 'slower (1.12x ...)', and where the runner-up was clearly slower, a third that was not (noisy, its
    p50 higher) was ranked below it with no tie at all. Each is now tested against the choice."""
    import numpy as np

    from edgekit.route_rejections import NOT_TOLD_APART, SLOWER

    choice = tuple(float(v) for v in 20 + np.linspace(-3, 3, 20))
    tight = tuple(float(v) for v in 22 + np.linspace(-0.1, 0.1, 20))  # clearly slower than the choice
    noisy = tuple(float(v) for v in 22.5 + np.linspace(-20, 20, 20))  # its p50 higher, its samples overlap

    def route(*cands: tuple[str, tuple[float, ...]]) -> Route:
        return recommend(
            "host", [Candidate(a, float(np.median(s)), True, samples=s) for a, s in cands], Basis.P50_MS
        )

    r = route(("ncnn-int8", choice), ("tflite-int8", tight), ("onnx-fp32", noisy))
    assert r.artifact == "ncnn-int8" and r.tied_with == "onnx-fp32"
    assert r.rejected["tflite-int8"].startswith(SLOWER)
    assert r.rejected["onnx-fp32"].startswith(NOT_TOLD_APART) and "slower" not in r.rejected["onnx-fp32"]
    # three of one noisy machine: both others tied, each said in the caveats; the runner-up is `tied_with`
    same = tuple(float(v) for v in 20 + np.linspace(-3, 3, 20))
    r = route(("ncnn-int8", choice), ("tflite-int8", tuple(v + 0.2 for v in same)), ("onnx-fp32", noisy))
    assert r.tied_with == "tflite-int8"
    assert all(r.rejected[a].startswith(NOT_TOLD_APART) for a in ("tflite-int8", "onnx-fp32"))
    assert sum(NOT_TOLD_APART in c for c in r.caveats) == 2


def test_an_estimated_choice_inside_the_runner_ups_interval_is_called_a_tie() -> None:
    """yolov5-lite on pi4-emu shipped ncnn-int8 at ~101 ms (80.1-128) over tflite-int8 at ~106 ms, a ranking no
    estimate supports at its stated rate: such a route now names the runner-up as tied and says why; a runner-up
    outside the choice's interval (and the choice outside its) is not a tie."""

    def est(ms: float, low: float, high: float) -> dict[str, object]:
        return {"status": "ok", "estimate_ms": ms, "low_ms": low, "high_ms": high}

    arts = ("ncnn-int8", "ncnn-fp32", "tflite-int8")
    emu = _run("pi4-emu", True, [_measurement(a, 1, 900.0, 100_000_000) for a in arts], [])
    emu.estimates = {
        "ncnn-int8 x1": est(101.0, 80.1, 128.0),
        "ncnn-fp32 x1": est(300.0, 240.0, 380.0),
        "tflite-int8 x1": est(106.0, 33.1, 342.0) | {"interval_calibrated": False},
    }
    result = _result(arts, [emu])
    (route,) = routes_for_deploy(result)
    assert route.artifact == "ncnn-int8" and route.tied_with == "tflite-int8"
    (tie,) = [c for c in route.caveats if "do not rank" in c]
    assert "ncnn-int8 ~101 ms (80.1-128) and tflite-int8 ~106 ms (33.1-342)" in tie and "measure both" in tie
    emu.estimates["tflite-int8 x1"] = est(160.0, 130.0, 200.0)  # runner-up past the choice's high, and back
    (route,) = routes_for_deploy(result)
    assert route.tied_with is None and not route.caveats
    emu.estimates["tflite-int8 x1"] = est(160.0, 95.0, 260.0)  # the choice inside the runner-up's interval
    (route,) = routes_for_deploy(result)
    assert route.tied_with == "tflite-int8"


def test_the_runtimes_table_marks_estimates_that_do_not_rank_apart() -> None:
    """The runtimes table printed '1. tflite-int8 14.7*' over '2. ncnn-int8 18.7' on pi5-emu while the route line
    said the two estimates do not rank (one inside the other's interval): tied cells read '=1.', said under it."""
    import io

    from rich.console import Console

    from edgekit.report.table import deploy_table
    from edgekit.runtimes.ranking import rank_runtimes
    from edgekit.runtimes.ranking_table import runtime_table

    def est(ms: float, low: float, high: float) -> dict[str, object]:
        return {"status": "ok", "estimate_ms": ms, "low_ms": low, "high_ms": high}

    arts = ("ncnn-int8", "tflite-int8")
    emu = _run("pi5-emu", True, [_measurement(a, 1, 900.0, 100_000_000) for a in arts], [])
    emu.estimates = {"ncnn-int8 x1": est(18.7, 15.2, 23.0), "tflite-int8 x1": est(14.7, 4.58, 47.2)}
    result = _result(arts, [emu])

    def printed() -> str:
        table = runtime_table(result)
        assert table is not None
        out = io.StringIO()
        Console(file=out, width=200, color_system=None).print(table)
        return out.getvalue()

    text = printed()
    assert "=1. tflite-int8 14.7" in text and "=1. ncnn-int8 18.7" in text, text
    assert [e.rank for e in rank_runtimes(result)[0].entries] == [1, 2]  # the order itself is kept
    full = io.StringIO()
    Console(file=full, width=200, color_system=None).print(deploy_table(result))
    assert "=N: the board estimates do not rank these apart" in full.getvalue()
    emu.estimates["ncnn-int8 x1"] = est(60.0, 50.0, 70.0)  # apart: plain ranks, no note
    text = printed()
    assert "1. tflite-int8" in text and "2. ncnn-int8" in text and "=1." not in text, text


def test_deploy_routes_carry_the_measured_samples() -> None:
    same = [20.0, 21.0, 19.5, 20.5, 20.2, 19.8]
    board = _run(
        "pi4",
        False,
        [
            _measurement("ncnn-fp32", 1, 20.1).model_copy(update={"samples_ms": same}),
            _measurement("ncnn-int8", 1, 20.0).model_copy(update={"samples_ms": [v - 0.1 for v in same]}),
        ],
        [],
    )
    result = _result(("ncnn-fp32", "ncnn-int8"), [board])
    (route,) = routes_for_deploy(result)
    assert route.artifact == "ncnn-int8" and route.tied_with == "ncnn-fp32"
    assert route.to_dict()["tied_with"] == "ncnn-fp32"


def test_a_route_says_when_its_top1_class_differs_from_the_originals() -> None:
    """An untrained softmax classifier's int8 build gave the same near-uniform scores for every input: cosine
    0.99999, top-1 agreement 0 %, and the route said only the cosine. The route now says how often the shipped
    artifact's top-1 class differs from the original model's (the comparison stores the agreement)."""
    from edgekit.fidelity.compare import METRIC_KEYS

    assert "top1_agreement" in METRIC_KEYS  # kept from the on-target comparison
    emu = _run(
        "pi5-emu",
        True,
        [_measurement("tflite-fp32", 1, 1.0, 100), _measurement("tflite-int8", 1, 1.0, 40)],
        [
            _comparison("tflite-int8", "pi5-emu", True, top1_agreement=0.0),
            _comparison("tflite-fp32", "pi5-emu", True, top1_agreement=1.0),
        ],
    )
    route = routes_for_deploy(_result(("tflite-fp32", "tflite-int8"), [emu]))[0]
    assert route.artifact == "tflite-int8"
    assert "top-1 differs from the original's on 100% of inputs" in route.summary(), route.summary()
    emu.comparisons[0] = _comparison("tflite-int8", "pi5-emu", True, top1_agreement=0.998)  # 1 in 500
    assert (
        "differs from the original's on 0.2% of inputs"
        in routes_for_deploy(_result(("tflite-fp32", "tflite-int8"), [emu]))[0].summary()
    )
    emu.comparisons[0] = _comparison("tflite-int8", "pi5-emu", True, top1_agreement=1.0)
    assert (
        "top-1 differs" not in routes_for_deploy(_result(("tflite-fp32", "tflite-int8"), [emu]))[0].summary()
    )


def test_a_deploy_at_two_threads_only_has_a_route_and_the_fastest_thread_count_is_chosen() -> None:
    """`deploy --threads 2` said "no route: nothing ran on this target (its error is above)" of a run where every
    artifact ran (routes were taken at 1 thread only), and its runtimes table vanished; with 1 and 2 threads a
    faster 2-thread p50 was ignored. Instruction counts of different thread counts do not compare: 1 thread."""
    from edgekit.runtimes.ranking import rank_runtimes
    from edgekit.runtimes.ranking_table import runtime_table

    two = _run("local", False, [_measurement("tflite-fp32", 2, 0.09), _measurement("ncnn-fp32", 2, 0.07)], [])
    result = _result(("tflite-fp32", "ncnn-fp32"), [two])
    (route,) = routes_for_deploy(result)
    assert route.artifact == "ncnn-fp32" and route.threads == 2, route.summary()
    assert "threads=2" in route.summary() and "nothing ran" not in route.summary()
    assert [r.threads for r in rank_runtimes(result)] == [2] and runtime_table(result) is not None
    both = _run(
        "local",
        False,
        [
            _measurement("tflite-int8", 1, 0.0686),
            _measurement("tflite-int8", 2, 0.0612),
            _measurement("tflite-fp32", 1, 0.20),
            _measurement("tflite-fp32", 2, 0.15),
        ],
        [],
    )
    (route,) = routes_for_deploy(_result(("tflite-int8", "tflite-fp32"), [both]))
    assert (route.artifact, route.threads, route.value) == ("tflite-int8", 2, 0.0612)
    assert abs(route.speedup_vs_fp32 - 0.15 / 0.0612) < 1e-9  # against fp32 at the same thread count
    assert "(at 1: tflite-int8 0.0686 ms)" in " ".join(route.caveats), route.caveats
    assert routes_for_deploy(_result(("tflite-int8", "tflite-fp32"), [both]), threads=1)[0].threads == 1
    counted = _run(
        "pi4-emu",
        True,
        [_measurement("ncnn-int8", 1, 950.0, 80_000_000), _measurement("ncnn-int8", 4, 300.0, 90_000_000)],
        [],
    )
    (route,) = routes_for_deploy(_result(("ncnn-int8",), [counted]))
    assert route.basis is Basis.INSTRUCTIONS and route.threads == 1


def test_the_slowest_route_named_is_one_within_the_gates_and_drops_read_as_words() -> None:
    """ "2.37x vs slowest tflite-int8" named an artifact that had failed its gates; drops printed as raw keys."""
    cands = [
        Candidate(
            "ncnn-int8", 1.0, True, cosine=0.999, metric_drop={"map50_95_drop": 0.01, "top1_drop": 0.0}
        ),
        Candidate("ncnn-fp32", 2.0, True),
        Candidate("tflite-int8", 3.0, False, failures=("cosine 0.9 < 0.99",)),
    ]
    route = recommend("pi4", cands, Basis.P50_MS)
    assert route.slowest_artifact == "ncnn-fp32" and route.speedup_vs_slowest == 2.0
    text = route.summary()
    assert "tflite-int8" not in text and "mAP@0.5:0.95 drop +0.010" in text and "top-1 accuracy drop" in text
    assert "map50_95_drop" not in text and "top1_drop" not in text
    # how many of the target's outputs the accuracy is judged on (a capped emulated target: 4 of 360)
    judged = recommend("pi5-emu", [replace(cands[0], judged_on=4)], Basis.P50_MS)
    assert "gates and accuracy judged on 4 inputs here" in judged.summary(), judged.summary()


def test_a_route_without_labels_says_its_gates_were_judged_not_its_accuracy() -> None:
    """No labels: only the fidelity gates against the original ran (cosine, top-1 agreement), yet the route said
    'accuracy judged on 4 inputs here'."""
    unlabelled = Candidate("onnx-fp32", 1.0, True, cosine=0.9999, judged_on=4)
    text = recommend("host", [unlabelled], Basis.P50_MS).summary()
    assert "; gates judged on 4 inputs here" in text and "accuracy" not in text, text
    disagreeing = replace(unlabelled, metric_drop={DISAGREEMENT: 0.25}, judged_on=1)
    text = recommend("host", [disagreeing], Basis.P50_MS).summary()
    assert "; gates judged on 1 input here" in text and "accuracy" not in text, text


def test_a_runtime_whose_formats_all_failed_to_convert_keeps_its_row() -> None:
    """All ncnn formats failed pnnx: the runtimes table had no ncnn row at all (a runtime the user asked for
    vanished); it stays, saying it did not convert."""
    from edgekit.runtimes.ranking import rank_runtimes
    from edgekit.runtimes.ranking_table import runtime_table

    run = _run("local", False, [_measurement("tflite-fp32", 1, 0.2), _measurement("onnx-fp32", 1, 0.1)], [])
    result = _result(("tflite-fp32", "onnx-fp32", "ncnn-fp32"), [run])
    ncnn = next(a for a in result.artifacts if a.id == "ncnn-fp32")
    ncnn.status, ncnn.error = "failed", "conversion failed: pnnx: exit 1"
    (ranking,) = rank_runtimes(result)
    entry = next(e for e in ranking.entries if e.runtime == "ncnn")
    assert entry.artifact is None and entry.why == "did not convert" and entry.rank is None
    assert [e.runtime for e in ranking.entries if e.rank] == ["onnxruntime", "tflite"]
    assert runtime_table(result) is not None


def _counted_emu(target: str, figures: dict[str, tuple[int, float]]) -> TargetRun:
    """An emulated target run at 1 thread: artifact -> (instructions counted, board estimate in ms)."""
    emu = _run(target, True, [_measurement(a, 1, 900.0, insns) for a, (insns, _) in figures.items()], [])
    emu.estimates = {f"{a} x1": {"status": "ok", "estimate_ms": ms} for a, (_, ms) in figures.items()}
    return emu


def test_an_emulated_route_says_when_another_artifact_ranks_first_at_an_estimated_thread_count() -> None:
    """pi5-emu ran 1 thread (its cap) and estimated 4 from the thread split: the route shipped ncnn-int8 by the
    1-thread estimate while the 4-thread estimates ranked tflite-int8 first, and said nothing of it."""
    emu = _counted_emu("pi5-emu", {"ncnn-int8": (1_000_000, 0.498), "tflite-int8": (900_000, 0.542)})
    emu.estimates["ncnn-int8 x4"] = {"status": "ok", "estimate_ms": 0.329}
    emu.estimates["tflite-int8 x4"] = {"status": "ok", "estimate_ms": 0.249}
    (route,) = routes_for_deploy(_result(("ncnn-int8", "tflite-int8"), [emu]))
    assert route.artifact == "ncnn-int8" and route.threads == 1
    assert any("at 4 threads" in c and "tflite-int8 ~0.249 ms ranks first" in c for c in route.caveats), (
        route.caveats
    )
    assert not any("not ranked apart" in c for c in route.caveats)  # no intervals given: nothing claimed
    emu.estimates["ncnn-int8 x4"] |= {"low_ms": 0.25, "high_ms": 0.43}  # tflite-int8's 0.249 just outside
    emu.estimates["tflite-int8 x4"] |= {"low_ms": 0.08, "high_ms": 0.80}  # and ncnn-int8's 0.329 inside this
    (route,) = routes_for_deploy(_result(("ncnn-int8", "tflite-int8"), [emu]))
    assert any("ranks first" in c and "not ranked apart" in c for c in route.caveats), route.caveats
    # r8: a 4-thread estimate's interval (tflite's; any at 2-3 threads) is not validated: no '80%' claimed of it
    assert not any("80%" in c for c in route.caveats), route.caveats
    emu.estimates["tflite-int8 x4"] |= {"low_ms": 0.2, "high_ms": 0.31}
    (route,) = routes_for_deploy(_result(("ncnn-int8", "tflite-int8"), [emu]))
    assert any("ranks first" in c and "not ranked apart" not in c for c in route.caveats), route.caveats
    emu.estimates["tflite-int8 x4"]["estimate_ms"] = 0.4  # the same winner at 4 threads: nothing to add
    (route,) = routes_for_deploy(_result(("ncnn-int8", "tflite-int8"), [emu]))
    assert not any("at 4 threads" in c for c in route.caveats), route.caveats


def test_an_estimate_route_gives_its_speedup_over_fp32_by_the_exact_count_too() -> None:
    """The estimates' ratio weighs the mix, the misses and the int8 class; the counts' ratio is exact: both are
    said, so the gap between them is not read as a measured gain."""
    emu = _counted_emu("pi4-emu", {"ncnn-fp32": (140_000_000, 114.0), "ncnn-int8": (133_000_000, 100.0)})
    (route,) = routes_for_deploy(_result(("ncnn-fp32", "ncnn-int8"), [emu]))
    assert route.artifact == "ncnn-int8" and route.speedup_vs_fp32 == pytest.approx(1.14)
    assert route.count_vs_fp32 == pytest.approx(140 / 133)
    assert "1.14x vs ncnn-fp32 by estimate, 1.05x by instruction count" in route.summary()
    assert route.to_dict()["count_vs_fp32"] == pytest.approx(140 / 133)
    emu.agent.measurements[0].instructions_per_invoke = None  # fp32 not counted: no count ratio claimed
    (route,) = routes_for_deploy(_result(("ncnn-fp32", "ncnn-int8"), [emu]))
    assert route.count_vs_fp32 is None and "by instruction count" not in route.summary()


def test_a_ratio_of_instruction_counts_is_said_to_be_one() -> None:
    """phone-emu routes by instruction count (not cycles), yet its line read '2.00x vs ncnn-fp32; 2.00x vs slowest
    ncnn-fp32' as if a speed-up; deploy's column says 'x fp32 by insn'. Both ratios now say 'by instruction count'
    there, and on a measured basis neither does."""
    cands = [Candidate("ncnn-fp32", 200e6, True, 1.0), Candidate("ncnn-int8", 100e6, True, 0.99)]
    line = recommend("phone-emu", cands, Basis.INSTRUCTIONS, 1).summary()
    assert (
        "2.00x vs ncnn-fp32 by instruction count; 2.00x vs slowest ncnn-fp32 by instruction count" in line
    ), line
    cands.append(Candidate("tflite-fp32", 300e6, True, 1.0))  # another runtime's fp32: slowest, not fp32
    line = recommend("phone-emu", cands, Basis.INSTRUCTIONS, 1).summary()
    assert (
        "2.00x vs ncnn-fp32 by instruction count; 3.00x vs slowest tflite-fp32 by instruction count" in line
    )
    measured = recommend("pi4", cands, Basis.P50_MS, 1).summary()
    assert (
        "2.00x vs ncnn-fp32; 3.00x vs slowest tflite-fp32;" in measured and "by instruction" not in measured
    )
