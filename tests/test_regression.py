"""Regression detection on synthetic histories: slowdowns caught, noise not, throttling not blamed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from edgekit.formats import Format
from edgekit.report.regression import FlagKind, Settings, detect, detect_latest, judge, throttle_reason
from edgekit.report.synthetic import synthetic_history, synthetic_result
from edgekit.results import DeployResult
from edgekit.store import StoredRun

T0 = datetime(2026, 2, 1, 2, 0, tzinfo=UTC)
FORMATS = (Format.TFLITE_FP32, Format.TFLITE_INT8, Format.NCNN_FP32)


def _stored(results: list[DeployResult]) -> list[StoredRun]:
    return [StoredRun(i + 1, T0.timestamp() + i * 86400, r) for i, r in enumerate(results)]


def _history(nights: int = 12, seed: int = 0, **last: object) -> list[StoredRun]:
    """`nights - 1` ordinary nights, then one built with the keyword arguments in `last`."""
    rng = np.random.default_rng(seed)
    results = [synthetic_result(T0 + timedelta(days=d), rng=rng, formats=FORMATS) for d in range(nights - 1)]
    results.append(synthetic_result(T0 + timedelta(days=nights - 1), rng=rng, formats=FORMATS, **last))  # type: ignore[arg-type]
    return _stored(results)


def _keys(flags: list, kind: FlagKind) -> set[tuple]:
    return {(f.artifact, f.target, f.threads) for f in flags if f.kind is kind}


def test_a_20_percent_slowdown_is_flagged_with_its_numbers() -> None:
    flags = detect(_history(slowdown={("tflite-int8", "pi4"): 1.2}))
    assert _keys(flags, FlagKind.LATENCY) == {("tflite-int8", "pi4", 1), ("tflite-int8", "pi4", 4)}
    assert len(flags) == 2
    for flag in flags:
        assert flag.is_regression and not flag.emulated
        assert flag.p_value is not None and flag.p_value < 1e-6
        assert flag.change == pytest.approx(0.2, abs=0.05)
        assert flag.new > flag.old  # type: ignore[operator]
        assert flag.run_id == 12 and flag.recipe == "yolov5-lite"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thirty_nights_of_pure_noise_raise_no_flag_on_any_night(seed: int) -> None:
    runs = _stored(synthetic_history(30, seed=seed))
    flags = [f for n in range(1, len(runs) + 1) for f in detect_latest(runs[:n])]
    assert flags == []


def test_a_small_rise_within_the_minimum_change_is_not_flagged() -> None:
    assert detect(_history(slowdown={("tflite-fp32", "pi4"): 1.02})) == []


def test_emulated_targets_are_judged_by_instruction_counts_not_wall_time() -> None:
    # pi5-emu: counts deterministic at 1 thread; a 0.6% rise is a regression, a 0.3% one is not
    flags = detect(_history(slowdown={("ncnn-fp32", "pi5-emu"): 1.006, ("tflite-fp32", "pi5-emu"): 1.003}))
    assert _keys(flags, FlagKind.INSTRUCTIONS) >= {("ncnn-fp32", "pi5-emu", 1)}
    assert ("tflite-fp32", "pi5-emu", 1) not in _keys(flags, FlagKind.INSTRUCTIONS)
    assert _keys(flags, FlagKind.LATENCY) == set()
    flag = next(f for f in flags if f.threads == 1)
    assert flag.emulated and "instruction count" in flag.message
    assert flag.change == pytest.approx(0.006, abs=0.001)


def test_emulated_wall_time_is_judged_and_labelled_when_there_are_no_counts() -> None:
    runs = _history(slowdown={("ncnn-fp32", "pi5-emu"): 1.3})
    for run in runs:
        for target_run in run.result.runs:
            for m in target_run.agent.measurements:  # type: ignore[union-attr]
                m.instructions_per_invoke = None
    flags = [f for f in detect(runs) if f.target == "pi5-emu"]
    assert _keys(flags, FlagKind.LATENCY) == {("ncnn-fp32", "pi5-emu", 1), ("ncnn-fp32", "pi5-emu", 4)}
    assert all(f.emulated and "emulated wall time" in f.message for f in flags)


def test_a_throttled_run_is_unreliable_not_a_regression() -> None:
    flags = detect(_history(slowdown={("tflite-int8", "pi4"): 1.3}, throttled={"pi4": "0x50005"}))
    assert [f.kind for f in flags] == [FlagKind.UNRELIABLE]
    assert not flags[0].is_regression and flags[0].target == "pi4" and "0x50005" in flags[0].message


def test_a_measurement_timed_while_the_machine_was_busy_is_unreliable_and_said_everywhere() -> None:
    """Other processes using a share of the CPUs while a measurement was timed (the agent's others_cpu_share):
    a slowdown then is the machine's, not the model's. Unreliable, not a regression, kept out of later
    baselines; the deploy table's lines and the route say so too."""
    from edgekit.report.lines import busy_lines
    from edgekit.route_deploy import route_for_run

    history = _history(slowdown={("tflite-int8", "pi4"): 1.3})
    latest = history[-1].result
    run = next(r for r in latest.runs if r.target == "pi4")
    for m in run.agent.measurements if run.agent else []:
        if m.artifact == "tflite-int8" and m.threads == 1:
            m.others_cpu_share = 0.45
    flags = detect(history)
    assert _keys(flags, FlagKind.LATENCY) == {("tflite-int8", "pi4", 4)}  # x1 is not judged
    (busy,) = [f for f in flags if f.kind is FlagKind.UNRELIABLE]
    assert not busy.is_regression and (busy.artifact, busy.threads) == ("tflite-int8", 1)
    assert "45% of pi4's CPUs" in busy.message
    assert busy.old is not None and busy.change == pytest.approx(
        0.3, abs=0.08
    )  # how far it moved, not judged
    assert "not judged" in busy.message
    (line,) = busy_lines(latest)
    assert line.startswith("pi4: other processes used up to 45% of its CPUs")
    assert "tflite-int8 at 1 thread 45%" in line
    for m in run.agent.measurements if run.agent else []:
        m.others_cpu_share = 0.05 if m.artifact != "tflite-int8" else 0.45  # below BUSY_SHARE: not said
    assert busy_lines(latest) == [line.replace("1 thread 45%", "1 thread 45%, tflite-int8 at 4 threads 45%")]
    for m in run.agent.measurements if run.agent else []:
        m.others_cpu_share = 0.3 if m.threads == 1 else None
    route = route_for_run(run, {}, threads=1)
    assert route.artifact is not None
    assert any("other processes used up to 30% of pi4's CPUs while 3 of these" in c for c in route.caveats)
    assert not any("other processes" in c for c in route_for_run(run, {}, threads=4).caveats)


def test_more_threads_than_usable_cores_is_said_under_the_table() -> None:
    """The demo's recipe asks for 4 threads; the 2-core host ran ncnn-fp16 x4 at 41.6 ms vs 20.5 ms x1. Such
    a figure is the threads taking turns, not 4 cores: the deploy table says so for every real target."""
    from edgekit.report.lines import busy_lines

    result = synthetic_result(T0, rng=np.random.default_rng(0), formats=FORMATS, targets=("pi4", "pi5-emu"))
    assert busy_lines(result) == []  # synthetic boards have 4 cores
    run = next(r for r in result.runs if r.target == "pi4")
    assert run.agent is not None
    run.agent.facts_before.cores = 2
    assert busy_lines(result) == [
        "pi4: 4 threads on 2 usable cores: the threads take turns on the cores, so these times do not show what "
        "that many cores would do"
    ]
    run.agent.facts_before.cpus_used = [3]  # pinned to one core (affinity): its 4-thread runs share it
    assert busy_lines(result)[0].startswith("pi4: 4 threads on 1 usable core:")
    # and in the route at that thread count (the README said so; the route did not)
    from edgekit.route_deploy import route_for_run

    (said,) = route_for_run(run, {}, threads=4).caveats
    assert said.startswith("4 threads on 1 usable core of pi4: the threads take turns")
    assert route_for_run(run, {}, threads=1).caveats == []


def test_throttling_reasons() -> None:
    run = synthetic_result(T0, rng=np.random.default_rng(0), formats=FORMATS, targets=("pi4",)).runs[0]
    agent = run.agent
    assert agent is not None and throttle_reason(run) is None
    agent.facts_before.throttled = agent.facts_after.throttled = "0x50000"  # type: ignore[union-attr]
    assert throttle_reason(run) is None  # throttled once since boot, but not during this run
    agent.facts_after.throttled = "0x70000"  # type: ignore[union-attr]
    assert "during the run" in (throttle_reason(run) or "")
    agent.facts_after.throttled = "0x50000"  # type: ignore[union-attr]
    agent.facts_after.temperature_c = 84.0  # type: ignore[union-attr]
    assert "84" in (throttle_reason(run) or "")


def test_throttled_nights_do_not_poison_the_baseline() -> None:
    rng = np.random.default_rng(5)
    slow_hot = {("tflite-fp32", "pi4"): 1.5}
    results = [
        synthetic_result(
            T0 + timedelta(days=d),
            rng=rng,
            formats=FORMATS,
            **({"slowdown": slow_hot, "throttled": {"pi4": "0x50005"}} if d % 2 else {}),
        )
        for d in range(10)
    ]
    results.append(
        synthetic_result(
            T0 + timedelta(days=10), rng=rng, formats=FORMATS, slowdown={("tflite-fp32", "pi4"): 1.25}
        )
    )
    assert _keys(detect(_stored(results)), FlagKind.LATENCY) == {
        ("tflite-fp32", "pi4", 1),
        ("tflite-fp32", "pi4", 4),
    }


def test_fidelity_below_gate_and_new_failures_are_flagged_but_known_failures_are_not() -> None:
    runs = _history(fidelity_drop={"tflite-int8": 0.1})
    flags = detect(runs)
    assert [(f.kind, f.artifact) for f in flags] == [(FlagKind.FIDELITY, "tflite-int8")]
    assert flags[0].new == pytest.approx(0.8915) and flags[0].old == pytest.approx(0.9915)

    for run in runs:  # ncnn-fp32 at 4 threads has always failed on pi4: not news
        m = run.result.runs[0].agent.measurements[-1]  # type: ignore[union-attr]
        m.status, m.error = "failed", "ncnn: out of memory"
    last = runs[-1].result.runs[0].agent.measurements  # type: ignore[union-attr]
    last[0].status, last[0].error = "failed", "Interpreter crashed"  # tflite-fp32 x1 newly fails
    failed = _keys(detect(runs), FlagKind.FAILED)
    assert failed == {("tflite-fp32", "pi4", 1)}


def test_a_gate_missed_at_conversion_is_fidelity_and_a_failed_conversion_is_failed() -> None:
    """As deploy records them: both artifacts have status `failed`; the gate miss carries the gate verdict in its
    fidelity (ArtifactInfo.missed_gate). It was flagged `failed` ('conversion failed') and again as `fidelity` for
    the target whose outputs missed the gate too: two regressions for one."""
    runs = _history()
    last = runs[-1].result
    int8 = next(a for a in last.artifacts if a.id == "tflite-int8")
    int8.status, int8.gates_passed = "failed", False
    int8.error = "missed its fidelity gate: min_cosine: 0.99999 vs limit 1 (on 8 inputs)"
    checks = [{"gate": "min_cosine", "limit": 1.0, "value": 0.999991, "passed": False}]
    int8.fidelity = {"cosine": 0.999991, "gates": {"passed": False, "checks": checks, "samples": 8}}
    pi4 = last.runs[0]
    for c in pi4.comparisons:
        if c.reference == "onnx" and c.artifact == "tflite-int8":
            c.gates_passed, c.gate_failures = False, ["min_cosine: 0.99999 vs limit 1 (on 8 inputs)"]
    ncnn = next(a for a in last.artifacts if a.id == "ncnn-fp32")
    ncnn.status, ncnn.gates_passed, ncnn.fidelity = "failed", False, {}
    ncnn.error = "conversion failed: pnnx: exit 1"  # as convert.pipeline words a failed conversion
    flags = [f for f in detect(runs) if f.is_regression and f.artifact in ("tflite-int8", "ncnn-fp32")]
    at_conversion = {(f.kind, f.artifact) for f in flags if f.target is None}
    assert at_conversion == {(FlagKind.FIDELITY, "tflite-int8"), (FlagKind.FAILED, "ncnn-fp32")}
    int8_flags = [f for f in flags if f.artifact == "tflite-int8"]
    assert len(int8_flags) == 1, int8_flags
    assert "conversion failed" not in int8_flags[0].message
    (failed,) = [f for f in flags if f.artifact == "ncnn-fp32"]
    assert (
        failed.message == "ncnn-fp32: conversion failed: pnnx: exit 1"
    )  # said once ('conversion failed: ' twice)
    assert (
        "0.99999 vs limit 1" in int8_flags[0].message
        and f"on {pi4.target}'s own outputs too" in int8_flags[0].message
    )


def test_no_history_means_no_latency_verdict() -> None:
    assert detect(_history(nights=3, slowdown={("tflite-int8", "pi4"): 2.0})) == []
    assert detect([]) == []


def test_settings_change_the_verdict() -> None:
    runs = _history(slowdown={("tflite-fp32", "pi4"): 1.08})
    assert _keys(detect(runs), FlagKind.LATENCY) == {("tflite-fp32", "pi4", 1), ("tflite-fp32", "pi4", 4)}
    assert detect(runs, Settings(min_change=0.10)) == []


def test_a_target_whose_own_outputs_miss_the_gate_is_flagged() -> None:
    runs = _history()
    pi5 = runs[-1].result.runs[1]
    onnx = next(c for c in pi5.comparisons if c.reference == "onnx" and c.artifact == "ncnn-fp32")
    onnx.cosine = 0.962
    onnx.gates_passed = False  # type: ignore[attr-defined]  # set by deploy on each target's outputs
    onnx.gate_failures = ["min_cosine 0.9999 > 0.962"]  # type: ignore[attr-defined]
    flags = detect(runs)
    assert [(f.kind, f.artifact, f.target) for f in flags] == [(FlagKind.FIDELITY, "ncnn-fp32", "pi5-emu")]
    assert flags[0].new == 0.962 and "min_cosine 0.9999 > 0.962" in flags[0].message and flags[0].emulated
    assert flags[0].is_regression  # earlier runs compared it on pi5-emu and passed
    (first,) = detect(runs[-1:])  # a recipe's first deploy there: nothing to regress from
    assert first.is_failure and not first.is_regression


def test_rank_test_agrees_with_scipy() -> None:
    from scipy.stats import mannwhitneyu

    from edgekit.report.regression import slower_p_value

    rng = np.random.default_rng(3)
    cases = [
        (rng.normal(10.5, 1, 40), rng.normal(10, 1, 400)),
        (rng.normal(10, 1, 10), rng.normal(10, 1, 30)),
        (np.round(rng.normal(10, 1, 50), 1), np.round(rng.normal(10.2, 1, 200), 1)),  # many ties
        (np.full(5, 3.0), np.full(20, 3.0)),
    ]
    for new, old in cases:
        expected = mannwhitneyu(new, old, alternative="greater", method="asymptotic").pvalue
        assert slower_p_value(new, old) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_what_an_interrupted_run_did_not_measure_is_not_a_regression() -> None:
    """A deploy stopped by Ctrl-C recorded its unmeasured artifacts as failed: the report headline read '6
    regressions' (each 'failed: not run: interrupted'). Now one unreliable note; a real failure still counts."""
    from edgekit.agent.contract import ErrorCode

    runs = _history()
    pi4 = next(r for r in runs[-1].result.runs if r.target == "pi4")
    assert pi4.agent is not None
    pi4.interrupted = True
    for m in pi4.agent.measurements:
        if m.artifact == "tflite-int8":
            m.status, m.error_code, m.error = "failed", ErrorCode.INTERRUPTED, "not run: interrupted (Ctrl-C)"
        elif m.artifact == "ncnn-fp32" and m.threads == 1:  # recorded by an older edgekit: NOT_RUN, saying so
            m.status, m.error_code, m.error = "failed", ErrorCode.NOT_RUN, "not run: interrupted (Ctrl-C)"
        elif m.artifact == "tflite-fp32" and m.threads == 1:
            m.status, m.error_code, m.error = "failed", ErrorCode.RUN_ERROR, "invoke failed"
    flags = detect(runs)
    assert [f for f in flags if f.is_regression] == [
        f for f in flags if f.kind is FlagKind.FAILED and f.artifact == "tflite-fp32"
    ]
    assert len([f for f in flags if f.is_regression]) == 1
    (note,) = [f for f in flags if f.kind is FlagKind.UNRELIABLE]
    assert (
        "interrupted" in note.message
        and "3 measurement(s) not taken" in note.message
        and not note.is_regression
    )


def _nights(levels: list[float], seed: int = 0, **each: object) -> list[StoredRun]:
    """One night per level: tflite-fp32 on pi4 (1 thread) that many times its usual latency."""
    rng = np.random.default_rng(seed)
    return _stored(
        [
            synthetic_result(
                T0 + timedelta(days=d),
                rng=rng,
                formats=(Format.TFLITE_FP32,),
                targets=("pi4",),
                threads=(1,),
                slowdown={("tflite-fp32", "pi4"): level},
                **each,  # type: ignore[arg-type]
            )
            for d, level in enumerate(levels)
        ]
    )


def _flagged_nights(runs: list[StoredRun], first: int) -> str:
    """'X' for a night (from `first`) whose judgement flagged a regression, '.' for one that did not."""
    return "".join(
        "X" if any(f.is_regression for f in detect_latest(runs[:n])) else "."
        for n in range(first, len(runs) + 1)
    )


def test_a_level_shift_stays_flagged_every_night_until_it_returns() -> None:
    """Found by a new-user probe: 14 flat nights then +30 % on every later night was flagged on its first night
    only; the slow night joined the baseline and widened the night-to-night bound past the step. A flagged night
    now stays out of the baseline: every slow night is flagged, saying since when, until the level is back."""
    runs = _nights([1.0] * 14 + [1.3] * 10 + [1.0] * 3)
    assert _flagged_nights(runs, 15) == "X" * 10 + "..."
    later = [f for f in detect_latest(runs[:20]) if f.is_regression]
    assert len(later) == 1 and later[0].since_run == runs[14].id and later[0].since_ts == runs[14].started_ts
    assert later[0].change == pytest.approx(0.3, abs=0.06) and f"since run #{runs[14].id}" in later[0].message
    first = detect_latest(runs[:15])
    assert first[0].since_run is None  # the night it began is no 'still slower'
    assert set(later[0].baseline_runs) <= {r.id for r in runs[:14]}  # judged against the flat nights only


def test_a_creep_is_caught_and_stays_flagged() -> None:
    """+4 % a night passed from night 22 though 1.8x the first level (each night within the widened bound of
    the creeping ones before it); +1 % a night was never flagged. The older half of the baseline is a second
    reference, and flagged nights stay out of the baseline."""
    fast = _nights([1.0] * 16 + [1.04**k for k in range(1, 15)])
    assert _flagged_nights(fast, 20) == "X" * 11
    slow = _nights([1.0] * 21 + [1.01**k for k in range(1, 25)], seed=1)
    marks = _flagged_nights(slow, 22)
    assert marks.endswith("X" * 10) and "X" in marks[:14], marks


def test_an_explained_change_is_flagged_once_then_judged_on_its_own_history() -> None:
    """A slowdown that came with a change of configuration (here the recipe's settings) is flagged on its night,
    with what changed; the new level is then its history, judged once `min_runs` runs of it exist (until then
    the latency is said not judged, not within the noise)."""
    runs = _nights([1.0] * 12 + [1.3] * 6)
    for run in runs[12:]:
        run.result.recipe_sha256 = "e" * 64  # the recipe was edited on night 13
    assert _flagged_nights(runs, 13) == "X....."
    unjudged = judge(runs[:14]).unjudged
    assert [(u.earlier, u.needed, u.since_change) for u in unjudged] == [(1, 3, runs[12].id)]
    assert judge(runs).unjudged == [] and judge(runs).flags == []


def test_too_little_history_is_said_not_judged() -> None:
    """With fewer than min_runs earlier runs nothing could be judged, yet the report said all was well."""
    runs = _history(nights=3, slowdown={("tflite-int8", "pi4"): 2.0})
    found = judge(runs)
    assert found.flags == []
    pi4 = {(u.artifact, u.threads, u.earlier, u.needed) for u in found.unjudged if u.target == "pi4"}
    assert pi4 == {(f.value, n, 2, 3) for f in FORMATS for n in (1, 4)}
    # a count at 1 thread is judged on any history; at several threads it holds the threads' waiting, which varies
    # run to run, so it needs min_runs earlier counts like a latency
    emu = {(u.artifact, u.threads, u.what) for u in found.unjudged if u.target == "pi5-emu"}
    assert emu == {(f.value, 4, "instructions") for f in FORMATS}


def test_a_broken_format_is_one_flag_naming_its_target_and_threads() -> None:
    """An import error of ncnn on every thread count was two identical flags ('ncnn-fp32 failed: ImportError')
    without target or thread count."""
    runs = _history()
    pi4 = next(r for r in runs[-1].result.runs if r.target == "pi4")
    for m in pi4.agent.measurements if pi4.agent else []:
        if m.artifact == "ncnn-fp32":
            m.status, m.error = "failed", "ImportError: libncnn.so: undefined symbol"
    (failed,) = [f for f in detect(runs) if f.kind is FlagKind.FAILED]
    assert (
        failed.message
        == "ncnn-fp32 on pi4 failed at 1 and 4 threads: ImportError: libncnn.so: undefined symbol"
    )
    assert failed.target == "pi4" and failed.threads is None


def _facts(run: StoredRun, target: str = "pi4"):  # type: ignore[no-untyped-def]
    t = next(t for t in run.result.runs if t.target == target)
    assert t.agent is not None and t.agent.facts_before is not None
    return t.agent


def test_a_change_after_a_regression_began_does_not_end_it() -> None:
    """Review: each flagged night was compared with the last good night, so a runtime upgrade on night 20
    'explained' a regression that began on night 15 and restarted its baseline; only a change on the
    regression's first night explains it."""
    runs = _nights([1.0] * 14 + [1.3] * 10)
    for run in runs[19:]:  # night 20: LiteRT upgraded, five nights into the regression
        facts = _facts(run).facts_before
        facts.runtimes = {**facts.runtimes, "ai_edge_litert": "2.2.0"}  # type: ignore[union-attr]
    assert _flagged_nights(runs, 15) == "X" * 10
    (last,) = [f for f in detect_latest(runs) if f.is_regression]
    assert last.since_run == runs[14].id


def test_a_change_on_the_first_slow_night_still_explains_it() -> None:
    """The same upgrade on the night the slowdown began explains it (flagged that night, then its own level)."""
    runs = _nights([1.0] * 14 + [1.3] * 6)
    for run in runs[14:]:
        facts = _facts(run).facts_before
        facts.runtimes = {**facts.runtimes, "ai_edge_litert": "2.2.0"}  # type: ignore[union-attr]
    assert _flagged_nights(runs, 15) == "X....."


def test_another_runtimes_upgrade_or_missing_facts_explain_nothing() -> None:
    """The fingerprint held every entry of facts.runtimes (an ncnn upgrade explained a TFLite slowdown), and a
    run without facts counted as a change: now only the artifact's own runtime counts, and unknown is no change."""
    ncnn = _nights([1.0] * 14 + [1.3] * 6)
    for run in ncnn[14:]:
        facts = _facts(run).facts_before
        facts.runtimes = {**facts.runtimes, "ncnn": "1.0.20270101"}  # type: ignore[union-attr]
    assert _flagged_nights(ncnn, 15) == "X" * 6
    missing = _nights([1.0] * 14 + [1.3] * 6)
    for run in missing[14:]:
        _facts(run).facts_before = None
    assert _flagged_nights(missing, 15) == "X" * 6


def _accept(run: StoredRun, **mark: object) -> None:
    """What Store.accept leaves in a run (its extra JSON, read back as DeployResult's extra field `accepted`)."""
    marks = (run.result.model_extra or {}).get("accepted") or []
    run.result.accepted = [*marks, {"target": None, "artifact": None, **mark}]  # type: ignore[attr-defined]


def test_an_accepted_run_ends_a_held_regression_and_starts_the_new_level() -> None:
    """Review: a held 10 % step stayed flagged for ~5.5 weeks (the lookback) with no way to say it is expected
    (a kernel update the fingerprint does not see). `edgekit runs accept` on night 20: that night is no longer
    flagged, the nights after it are judged against the regression's nights 15-20, and a further step is."""
    runs = _nights([1.0] * 14 + [1.3] * 10 + [1.6] * 2)
    _accept(runs[19], target="pi4")
    assert _flagged_nights(runs, 15) == "XXXXX" + "." * 5 + "XX"
    (later,) = [f for f in detect_latest(runs) if f.is_regression]
    assert later.since_run == runs[24].id and later.change == pytest.approx(1.6 / 1.3 - 1, abs=0.06)
    assert set(later.baseline_runs) >= {r.id for r in runs[14:20]}  # the accepted level, no 4-night wait


def test_an_acceptance_of_another_target_or_artifact_changes_nothing() -> None:
    for mark in ({"target": "pi5-emu"}, {"artifact": "ncnn-int8"}):
        runs = _nights([1.0] * 14 + [1.3] * 6)
        _accept(runs[16], **mark)
        assert _flagged_nights(runs, 15) == "X" * 6, mark


def test_an_accepted_step_stays_accepted_as_the_lookback_window_slides() -> None:
    """An acceptance applied only where the walk flagged the accepted night: five weeks on, with few runs from
    before the step left in the 42-run window, a slow night passed against them, joined the baseline, and the
    mix was flagged again against its older half (2, 1, 1 keys on nights 34-36 after the step). The accepted run
    now starts the baseline of the keys it accepted whatever its verdict in the sliding window."""
    from edgekit.report.regression import regressed_keys

    rng = np.random.default_rng(0)
    slow = {(f.value, "pi4"): 1.10 for f in Format} | {(f.value, "pi5-emu"): 1.10 for f in Format}
    runs = _stored(
        [
            synthetic_result(
                T0 + timedelta(days=d), rng=rng, night_sd=0.01, slowdown=slow if d >= 15 else None
            )
            for d in range(60)
        ]
    )
    keys = [k for k in regressed_keys(runs[:20]) if k[0] == "pi4"]
    assert len(keys) == 14  # every pi4 key flagged on the step's fifth night
    _accept(runs[19], target="pi4", keys=[list(k) for k in keys])
    flagged = [
        n
        for n in range(21, 61)
        if any(f.target == "pi4" and f.is_regression for f in detect_latest(runs[:n]))
    ]
    assert flagged == []


def test_a_first_nights_failures_are_failures_not_regressions(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A recipe's first run with failed conversions and a failed measurement showed a "6 regressions" badge:
    nothing had regressed. They are counted apart ("N failed (no earlier run)"), still fail the night and a
    --fail-on-regression report, and the same failures after a night that worked are regressions."""
    from edgekit.report import build
    from edgekit.report import markdown as md
    from edgekit.report.html import render

    def broken(run: StoredRun) -> StoredRun:
        ncnn = next(a for a in run.result.artifacts if a.id == "ncnn-fp32")
        ncnn.status, ncnn.gates_passed, ncnn.fidelity = "failed", False, {}
        ncnn.error = "conversion failed: pnnx: exit 1"
        m = run.result.runs[0].agent.measurements[0]  # type: ignore[union-attr]
        m.status, m.error = "failed", "Interpreter crashed"
        return run

    first = [broken(_history(nights=1)[0])]
    flags = detect(first)
    assert flags and all(f.is_failure and not f.is_regression for f in flags if f.is_bad), flags
    from edgekit.store import open_store

    with open_store(f"sqlite:///{tmp_path / 'r.sqlite'}") as store:
        store.record(first[0].result)
        report = build(store)
    assert report.failures and not report.regressions
    assert "2 failed (no earlier run)" in md.verdict(report) and "regression" in md.verdict(report)
    html = render(report)
    assert "2 failed (no earlier run)" in html and ">0 regressions<" in html
    later = _history(nights=5)
    later[-1] = broken(later[-1])
    flags = [f for f in detect(later) if f.is_bad]
    assert flags and all(f.is_regression and not f.first_run for f in flags)


def _night(day: float, rng: np.random.Generator, **kw: object) -> DeployResult:
    return synthetic_result(T0 + timedelta(days=day), rng=rng, formats=FORMATS, threads=(1,), **kw)  # type: ignore[arg-type]


def test_each_target_is_judged_on_its_own_newest_run_and_its_own_history(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Only the recipe's newest run was judged, its window counted in runs of any target: a host-only deploy
    after the night hid a +50 % pi4 regression, and 41 of them pushed pi4's nights out of the window ('not
    enough history'). Judged per target, through the store and the report as a user reads them."""
    from edgekit.report import build
    from edgekit.store import open_store

    rng = np.random.default_rng(3)
    nights = [_night(d, rng, targets=("pi4", "host")) for d in range(20)]
    nights.append(_night(20, rng, targets=("pi4", "host"), slowdown={("ncnn-fp32", "pi4"): 1.5}))
    later = [_night(20 + (h + 1) / 100, rng, targets=("host",)) for h in range(41)]
    runs = _stored(nights + later)
    (flag,) = [f for f in detect(runs) if f.is_regression]
    assert (flag.target, flag.artifact, flag.run_id) == ("pi4", "ncnn-fp32", 21)
    assert detect_latest(runs) == []  # the newest run itself (host only) is fine
    with open_store(str(tmp_path / "r.sqlite")) as store:
        for run in runs:
            store.record(run.result)
        report = build(store)
        assert [(f.target, f.artifact) for f in report.regressions] == [("pi4", "ncnn-fp32")]
        assert report.recipes[0].not_judged() == []
        row = next(r for r in report.recipes[0].rows if (r.target, r.artifact) == ("pi4", "ncnn-fp32"))
        assert row.run_id is not None and [f.is_regression for f in row.flags] == [True]
        # the host rows are the newest host run's, and carry none of pi4's flags
        assert all(not r.flags for r in report.recipes[0].rows if r.target == "host")


def test_the_host_of_another_cpu_is_another_history() -> None:
    """Every machine that records into a store is `host`: a colleague's slower laptop was flagged as a +60 %
    host regression of the nightly runner, and its runs joined the runner's baseline."""
    rng = np.random.default_rng(2)
    nights = [_night(d, rng, targets=("pi4", "host")) for d in range(10)]
    laptop = _night(9.2, rng, targets=("pi4", "host"), slowdown={(f.value, "host"): 1.6 for f in FORMATS})
    host = next(t for t in laptop.runs if t.target == "host")
    assert host.agent is not None
    host.agent.facts_before.cpu_model = "Intel Core i5-8250U"
    runs = _stored([*nights, laptop])
    found = judge(runs)
    assert [f for f in found.flags if f.is_bad] == []
    assert {u.target for u in found.unjudged} == {"host"}  # the laptop's first run: nothing to judge it on
    # the runner's next night is judged on the runner's nights only, and a real slowdown there is caught
    slow = _night(10, rng, targets=("pi4", "host"), slowdown={("ncnn-fp32", "host"): 1.5})
    runs = _stored([*nights, laptop, slow])
    assert _keys(detect_latest(runs), FlagKind.LATENCY) == {("ncnn-fp32", "host", 1)}


def test_a_busy_emulated_wall_time_is_unreliable_not_a_regression() -> None:
    """Emulated devices share this machine's cores: with counting off, a wall time taken while another device
    ran was judged (+40 %, a regression) because 'counts are exact whatever the load' was applied without a
    count, and such times joined the baseline."""
    runs = _history(slowdown={("ncnn-fp32", "pi5-emu"): 1.4})
    for run in runs:
        for t in run.result.runs:
            for m in t.agent.measurements if t.agent else []:
                m.instructions_per_invoke = None
                if run is runs[-1] and t.target == "pi5-emu" and m.artifact == "ncnn-fp32":
                    m.others_cpu_share = 0.6
    flags = [f for f in detect(runs) if f.target == "pi5-emu"]
    assert _keys(flags, FlagKind.LATENCY) == set()
    assert _keys(flags, FlagKind.UNRELIABLE) == {("ncnn-fp32", "pi5-emu", 1), ("ncnn-fp32", "pi5-emu", 4)}
    assert all("emulated wall time p50" in f.message and "not judged" in f.message for f in flags)
    # with counts, the same busy night is judged on its (exact) count
    counted = _history(slowdown={("ncnn-fp32", "pi5-emu"): 1.4})
    for t in counted[-1].result.runs:
        for m in t.agent.measurements if t.agent else []:
            m.others_cpu_share = 0.6
    assert ("ncnn-fp32", "pi5-emu", 1) in _keys(detect(counted), FlagKind.INSTRUCTIONS)


def test_counts_at_several_threads_are_judged_against_their_spread() -> None:
    """onnxruntime's 4-thread count varies run to run (4.5-11.6 M measured): the 0.5 % rule of the exact
    1-thread count flagged 13 of 20 unchanged nights. Judged against the spread of its earlier counts, noise
    passes and a real rise is caught."""
    rng = np.random.default_rng(7)
    results = [
        synthetic_result(T0 + timedelta(days=d), rng=rng, targets=("pi5-emu",), formats=FORMATS)
        for d in range(22)
    ]
    for r in results:
        for m in r.runs[0].agent.measurements if r.runs[0].agent else []:
            if m.threads == 4:
                m.instructions_per_invoke = int(rng.uniform(4.5e6, 11.6e6))
    runs = _stored(results)
    assert [n for n in range(4, len(runs) + 1) if detect_latest(runs[:n])] == []
    for m in runs[-1].result.runs[0].agent.measurements if runs[-1].result.runs[0].agent else []:
        if m.threads == 4 and m.artifact == "ncnn-fp32":
            m.instructions_per_invoke = 40_000_000
    (flag,) = detect_latest(runs)
    assert (flag.kind, flag.artifact, flag.threads) == (FlagKind.INSTRUCTIONS, "ncnn-fp32", 4)
    assert "the spread of its earlier counts" in flag.message


def test_a_route_over_several_thread_counts_says_what_the_others_gave() -> None:
    """'fastest over the thread counts measured (tflite-onnx2tf-int8 0.00977 at 2)' under a 0.00759 ms route at
    1 thread read as if the 2-thread figure were the fastest; it now names the thread count chosen and each
    other count's own route with its unit."""
    from edgekit.route_deploy import route_for_run

    result = synthetic_result(T0, rng=np.random.default_rng(0), formats=FORMATS, targets=("pi4",))
    route = route_for_run(result.runs[0], {}, threads=None)
    (said,) = [c for c in route.caveats if "chosen over" in c]
    other = 1 if route.threads == 4 else 4
    assert said.startswith(f"{route.threads} thread{'s' if route.threads != 1 else ''} chosen over the other")
    assert f"(at {other}: " in said and said.endswith(" ms)")


def test_a_host_run_that_recorded_no_cpu_does_not_hide_the_host_s_judgement(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A colleague's host deploy that failed before measuring (no CPU facts) matched every host history as the
    newest host run: the report said only 'failed host: ...' and the runner's +50 % host regression before it
    was gone. Both are judged: the failure, and the runner's night on its own history."""
    from edgekit.report import build
    from edgekit.store import open_store

    rng = np.random.default_rng(4)
    nights = [_night(d, rng, targets=("host",)) for d in range(9)]
    nights.append(_night(9, rng, targets=("host",), slowdown={("ncnn-fp32", "host"): 1.5}))
    failed = _night(9.2, rng, targets=("host",))
    failed.runs[0].status, failed.runs[0].agent, failed.runs[0].error = (
        "failed",
        None,
        "AgentError: no runtime",
    )
    failed.ok = False
    runs = _stored([*nights, failed])
    found = {(f.kind, f.target, f.artifact, f.run_id) for f in detect(runs) if f.is_bad}
    assert found == {(FlagKind.FAILED, "host", None, 11), (FlagKind.LATENCY, "host", "ncnn-fp32", 10)}
    with open_store(str(tmp_path / "r.sqlite")) as store:
        for run in runs:
            store.record(run.result)
        report = build(store)
    assert {(f.kind, f.artifact) for f in report.regressions} == {
        (FlagKind.FAILED, None),
        (FlagKind.LATENCY, "ncnn-fp32"),
    }


def test_the_first_counted_run_of_an_emulated_target_is_not_judged_on_its_slower_wall_time(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An emulated target's first night with instruction counts (counting makes qemu slower) had no counted
    history, so its qemu wall time was judged against the uncounted nights': '5945 -> 8352 ms emulated wall time
    (+40.5%)', a regression that failed the night. Counting on starts a new series: not enough history (counts);
    and a night without counts after counted ones is judged against the uncounted wall times only."""
    from edgekit.report.view import recipe_view

    rng = np.random.default_rng(6)
    slow = {(f.value, "pi5-emu"): 1.4 for f in FORMATS}
    nights = [_night(d, rng, targets=("pi5-emu",)) for d in range(8)]
    nights.append(_night(8, rng, targets=("pi5-emu",), slowdown=slow))
    for night in nights[:-1]:
        for m in night.runs[0].agent.measurements:  # type: ignore[union-attr]
            m.instructions_per_invoke = None
    runs = _stored(nights)
    found = judge(runs)
    assert [f for f in found.flags if f.is_bad] == []
    assert {(u.artifact, u.what, u.earlier, u.needed) for u in found.unjudged} == {
        (f.value, "count", 0, 1) for f in FORMATS
    }
    (line,) = recipe_view("tiny", runs).not_judged()
    assert (
        line
        == "not enough history to judge the instruction count on pi5-emu (0 earlier counted runs; 1 needed)"
    )
    # and the headline says what was not judged: the instruction count, not the latency
    from edgekit.report import build
    from edgekit.report.markdown import render
    from edgekit.store import open_store

    with open_store(f"sqlite:///{tmp_path / 'counted.sqlite'}") as store:
        for night in nights:
            store.record(night)
        md = render(build(store))
    assert md.startswith("## edgekit report: no regressions, instruction counts not judged for 1 recipe"), md[
        :200
    ]
    # counting off again: its wall time is judged against the uncounted nights, not the slower counted one
    back = _night(9, rng, targets=("pi5-emu",), slowdown={("ncnn-fp32", "pi5-emu"): 1.3})
    for m in back.runs[0].agent.measurements:  # type: ignore[union-attr]
        m.instructions_per_invoke = None
    flags = judge(_stored([*nights, back])).flags
    assert _keys(flags, FlagKind.LATENCY) == {("ncnn-fp32", "pi5-emu", 1)}


def test_a_colleague_s_host_runs_do_not_push_the_runner_s_host_nights_out_of_the_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The report read each target's newest lookback+1 runs by name, and every machine stores itself as `host`:
    45 deploys from a colleague's laptop in a day left the runner's +50 % host regression 'not enough history
    to judge latency on host (0 earlier runs; 3 needed)'. Each host series (CPU) is read to its own window."""
    from edgekit.report import build
    from edgekit.store import open_store

    rng = np.random.default_rng(8)
    nights = [_night(d, rng, targets=("host",)) for d in range(9)]
    laptop = [_night(8.2 + k / 100, rng, targets=("host",)) for k in range(45)]
    for run in laptop:
        facts = run.runs[0].agent.facts_before  # type: ignore[union-attr]
        facts.cpu_model = "Intel Core i7-1165G7"
    nights.append(_night(9, rng, targets=("host",), slowdown={("ncnn-fp32", "host"): 1.5}))
    with open_store(str(tmp_path / "r.sqlite")) as store:
        for run in [*nights, *laptop]:
            store.record(run)
        report = build(store)
    assert [(f.kind, f.target, f.artifact) for f in report.regressions] == [
        (FlagKind.LATENCY, "host", "ncnn-fp32")
    ]
    assert report.recipes[0].not_judged() == []


def test_a_not_judged_line_names_the_host_machine_when_several_are_shown(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A colleague's first host run beside the runner's nine: 'not enough history to judge latency on host (0
    earlier runs; 3 needed)' sat beside flags naming 'host (AMD EPYC, 2 cores) run #9' and did not say which
    host lacked history (review r13). It names the machine when several are shown; with one, 'on host'."""
    from edgekit.report import build
    from edgekit.store import open_store

    rng = np.random.default_rng(8)
    nights = [_night(d, rng, targets=("host",)) for d in range(9)]
    with open_store(str(tmp_path / "one.sqlite")) as store:
        for run in nights[:1]:
            store.record(run)
        (alone,) = build(store).recipes[0].not_judged()
    assert "not enough history to judge latency on host (0 earlier runs; 3 needed)" in alone, alone
    laptop = _night(9, rng, targets=("host",))
    laptop.runs[0].agent.facts_before.cpu_model = "Intel Core i7-1165G7"  # type: ignore[union-attr]
    with open_store(str(tmp_path / "r.sqlite")) as store:
        for run in [*nights, laptop]:
            store.record(run)
        (line,) = build(store).recipes[0].not_judged()
    cores = laptop.runs[0].agent.facts_before.cores  # type: ignore[union-attr]
    assert f"latency on host (Intel Core i7-1165G7, {cores} cores) (0 earlier runs; 3 needed)" in line, line


def test_an_emulated_wall_time_flag_is_worded_as_one_not_as_a_device_latency(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """An emulated target that did not count is judged on qemu's wall time: the flag read '**latency**
    (emulated)', the HTML kind 'latency', and the accept hint offered 'a kernel or firmware update, a board
    swapped for the same model' for a device that has none (review r13). It still fails the night (the only
    figure such a run has judged), worded as an emulated wall time with an emulated target's reasons."""
    from edgekit.report import build, write
    from edgekit.store import open_store

    rng = np.random.default_rng(5)
    nights = [
        _night(d, rng, targets=("pi4-emu",), slowdown={("tflite-int8", "pi4-emu"): 2.5} if d == 8 else None)
        for d in range(9)
    ]
    for night in nights:
        for m in night.runs[0].agent.measurements:  # type: ignore[union-attr]
            m.instructions_per_invoke = None  # `emulated.counting: false`
    with open_store(f"sqlite:///{tmp_path / 'r.sqlite'}") as store:
        for night in nights:
            store.record(night)
        built = build(store)
    (flag,) = built.regressions
    assert (flag.kind, flag.artifact, flag.kind_label) == (
        FlagKind.LATENCY,
        "tflite-int8",
        "emulated wall time",
    )
    write(built, html=tmp_path / "r.html", markdown=tmp_path / "r.md")
    md, html = (tmp_path / "r.md").read_text(), (tmp_path / "r.html").read_text()
    assert "- **emulated wall time** tflite-int8 at 1 thread on pi4-emu: " in md, md
    assert "**latency**" not in md and "kernel or firmware" not in md and "kernel or firmware" not in html
    assert "If this is expected (a qemu, guest image or edgekit upgrade" in md, md
    assert "data-label=kind>emulated wall time<" in html and "data-label=kind>latency<" not in html


def test_a_regression_nobody_accepted_that_ages_out_of_the_lookback_is_said(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """8 nights at 1.0x, then 1.3x: flagged while a night before it is in the 42-run lookback, then the report
    said 'No regressions against recent history' without a word (review r13). It says the regression aged out
    unaccepted, in the headline and its recipe's section (Markdown and HTML); it is not flagged (the lookback is
    the documented memory), so the exit status stays 0."""
    from edgekit.report import build, write
    from edgekit.report.markdown import verdict
    from edgekit.store import open_store

    rng = np.random.default_rng(2)
    one = (Format.TFLITE_FP32,)
    nights = [
        synthetic_result(
            T0 + timedelta(days=d),
            rng=rng,
            formats=one,
            targets=("pi4",),
            threads=(1,),
            slowdown={("tflite-fp32", "pi4"): 1.0 if d < 8 else 1.3},
        )
        for d in range(54)
    ]
    with open_store(f"sqlite:///{tmp_path / 'r.sqlite'}") as store:
        for night in nights:
            store.record(night)
        built = build(store)
    assert built.regressions == []
    assert verdict(built) == "no regressions, 1 regression aged out unaccepted", verdict(built)
    write(built, html=tmp_path / "r.html", markdown=tmp_path / "r.md")
    md, html = (tmp_path / "r.md").read_text(), (tmp_path / "r.html").read_text()
    said = "tflite-fp32 at 1 thread on pi4: the regression since run #9 ("
    assert f"- **aged out unaccepted** {said}" in md and "42-run lookback" in md, md
    assert "No regressions against recent history" not in md and said in html


def test_a_flag_says_what_it_compares_with_and_the_html_labels_its_units(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`latency tflite-fp32 at 1 thread on host: latency p50 0.00645 -> 0.009489 ms (+47.1%, ...)` never said that
    0.00645 is the pooled median of runs #1-#5 (the flag knew: baseline_runs), and the HTML Flags table put
    instruction counts and milliseconds in the same unlabelled old and new columns. Every judged flag now ends
    its figures with the runs it was judged against and what the old figure is of them, in the Markdown line, the
    nightly's verdict (flag_line) and the HTML detail; the HTML figures carry their unit."""
    import re

    from edgekit.report import build, write
    from edgekit.report.flag_text import flag_line
    from edgekit.store import open_store

    rng = np.random.default_rng(4)
    with open_store(f"sqlite:///{tmp_path / 'results.sqlite'}") as store:
        for night in range(6):
            slow = {("tflite-int8", "pi4"): 1.3, ("ncnn-fp32", "pi5-emu"): 1.1} if night == 5 else None
            store.record(
                synthetic_result(
                    T0 + timedelta(days=night), rng=rng, formats=FORMATS, threads=(1,), slowdown=slow
                )
            )
        built = build(store)
    flags = {f.kind: f for f in built.regressions}
    latency, counted = flags[FlagKind.LATENCY], flags[FlagKind.INSTRUCTIONS]
    assert latency.baseline_runs == counted.baseline_runs == (1, 2, 3, 4, 5)
    assert flag_line(latency).endswith(") vs runs #1-#5 (pooled median)"), flag_line(latency)
    assert flag_line(counted).endswith(" instr. (+10.0%) vs runs #1-#5 (median count)"), flag_line(counted)
    assert re.search(r"threshold [0-9.]+%\) vs runs #1-#5 \(pooled median\)$", latency.message), (
        latency.message
    )
    assert "(instruction count, not time) vs runs #1-#5 (median count)" in counted.message, counted.message
    write(built, html=tmp_path / "r.html", markdown=tmp_path / "r.md")
    md, html = (tmp_path / "r.md").read_text(), (tmp_path / "r.html").read_text()
    assert md.count("vs runs #1-#5 (pooled median)") == 1 and "vs runs #1-#5 (median count)" in md, md
    rows = {k: r for r in html.split("<tr") for k in ("latency", "instructions") if f"kind>{k}<" in r}
    assert re.search(
        r"<td data-label=old title='vs runs #1-#5 \(pooled median\)'>[0-9.]+ <span class=muted>ms<",
        rows["latency"],
    )
    assert re.search(r"<td data-label=new>[0-9.]+ <span class=muted>ms<", rows["latency"]), rows["latency"]
    assert re.search(r"<td data-label=new>[0-9,]+ <span class=muted>instr\.<", rows["instructions"])


def test_the_runs_a_flag_names_read_short_whatever_their_ids() -> None:
    """A store several recipes record into numbers one recipe's runs apart: never a list of 21 ids."""
    from edgekit.report.flags import runs_text

    assert runs_text([7]) == "run #7"
    assert runs_text([3, 4, 5, 6]) == "runs #3-#6"
    assert runs_text([2, 5, 9]) == "runs #2, #5, #9"
    assert runs_text(list(range(3, 45, 2))) == "21 runs, #3 to #43"
