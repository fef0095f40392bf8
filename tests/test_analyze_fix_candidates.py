"""`analyze --fix`: which layers it tries in float, and what it says of the candidates (constructed analyses and
results: the planning and summary logic), with one real run where only the whole chain shows the fault."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_analyze import RECIPE

from edgekit.analysis.analyze import Analysis
from edgekit.analysis.float_fallback import Candidate, FixResult, candidates, plan
from edgekit.analysis.tensors import LayerError
from edgekit.zoo.train import WEIGHTS_DIR

# digits' onnx-int8 layers as analyze measured them (tight3.yaml): /15/Conv's output is nearer fp32 than its
# input, so its own error by difference is 0, as is every layout op's
DIGITS_ONNX = [
    ("/0/Conv", "Conv", 0.0078),
    ("/12/Conv", "Conv", 0.0048),
    ("/9/Conv", "Conv", 0.0047),
    ("/3/Conv", "Conv", 0.0032),
    ("/6/Conv", "Conv", 0.0029),
    ("/20/Gemm", "Gemm", 0.0005),
    ("/15/Conv", "Conv", 0.0),
    ("/18/GlobalAveragePool", "GlobalAveragePool", 0.0),
    ("/19/Flatten", "Flatten", 0.0),
]
WEIGHTED = [name for name, kind, _ in DIGITS_ONNX if kind in ("Conv", "Gemm")]


def _analysis(rows: list[tuple[str, str, float]] = DIGITS_ONNX) -> Analysis:
    layers = [LayerError(name, kind, name, True, 0.9999, 0.01, own) for name, kind, own in rows]
    layers.append(
        LayerError("/x/Relu", "Relu", "/x/Relu", False, 0.9999, 0.01, 0.0)
    )  # float: never a candidate
    return Analysis("digits", "onnx-int8", 16, "difference", layers)


def test_a_weighted_layer_whose_own_error_is_zero_is_a_candidate_and_the_last_set_holds_every_one() -> None:
    """--fix kept only layers with an own error above 1e-6: /15/Conv (0 by difference) was never tried, so the
    gate all seven weighted layers in float meet was called unreachable. Every quantized weighted layer is a
    candidate, zero last; the layout ops (0, no weights) are not; TFLite's and ncnn's weighted ops count too."""
    ranked = candidates(_analysis())
    assert ranked == WEIGHTED
    assert set(plan(ranked)[-1]) == set(WEIGHTED)
    tflite = _analysis([("relu", "CONV_2D", 0.0078), ("pad", "PAD", 0.0), ("relu_5", "CONV_2D", 0.0)])
    assert candidates(tflite) == ["relu", "relu_5"]
    unseen = _analysis([("fc", "FULLY_CONNECTED (not compared: no float twin)", 0.0), ("m", "MEAN", 0.0)])
    assert candidates(unseen) == ["fc"]
    ncnn = _analysis([("conv", "Convolution", 0.01), ("fc", "InnerProduct", 0.0), ("mul", "BinaryOp", 2e-6)])
    assert candidates(ncnn) == ["conv", "mul", "fc"]


def _candidate(float_layers: list[str], cosine: float, passed: bool, label: str = "") -> Candidate:
    gates = {
        "passed": passed,
        "checks": [{"gate": "min_cosine", "limit": 0.999995, "value": cosine, "passed": passed}],
        "skipped": [],
        "samples": 360,
    }
    return Candidate(
        float_layers, ["/nowhere/model.onnx"], 50_000, 0.03, {"cosine": cosine}, gates, label=label
    )


def _summary(
    outcome: FixResult, max_float: int | None = None, random_calibration: bool = False
) -> tuple[bool, str]:
    from edgekit.cli import analyze as cli

    with cli.console.capture() as captured:
        failed = cli.fix_summary(
            cli.console,
            outcome,
            max_float,
            {"granularity": "per-channel"},
            len(outcome.weighted),
            random_calibration=random_calibration,
        )
    return failed, " ".join(captured.get().split())


def test_a_missed_gate_names_the_candidates_tried_and_whether_every_weighted_layer_was_among_them() -> None:
    """'no candidate met the gate: even with the most layers in float that were tried (6)' did not say which
    were tried, nor that the weighted layer left out was the one that would have met the gate."""
    steps = [_candidate([], 0.999873, False)]
    steps += [_candidate(WEIGHTED[:k], 0.99999, False, f"{k} worst") for k in (1, 2, 4, 7)]
    failed, said = _summary(FixResult("onnx-int8", _candidate([], 0.999997, True), steps, "/tmp/x", WEIGHTED))
    assert failed
    assert "kept in float: 1 worst, 2 worst, 4 worst, 7 worst" in said, said
    assert "(the last: every quantized weighted layer, 7)" in said, said
    capped = FixResult("onnx-int8", _candidate([], 0.999997, True), steps[:3], "/tmp/x", WEIGHTED)
    failed, said = _summary(capped, max_float=2)
    assert failed and "kept in float: 1 worst, 2 worst (the most: 2 layer(s))" in said, said
    assert "--max-float higher" in said, said


TIGHT3 = """
name: digits-tight3
task: classify
model: {{kind: torch, builder: "edgekit.zoo.digits:build", args: {{widths: [8, 16, 32]}}, weights: {weights}}}
input:
  name: input
  shape: [1, 1, 16, 16]
  layout: NCHW
  preprocess: {{scale: 0.00392156862745098, mean: [0.0], std: [1.0], channel_order: GRAY}}
outputs: [logits]
calibration:
  data: {{kind: builder, builder: "edgekit.zoo.digits:calibration", samples: 200, seed: 0}}
  method: kl
evaluation:
  data: {{kind: builder, builder: "edgekit.zoo.digits:test_split", samples: 360, seed: 0}}
  gates: {{fp32: {{min_cosine: 0.9999}}, int8: {{min_cosine: 0.999995, max_top1_drop: 0.0}}}}
formats: [onnx-fp32, onnx-int8]
int8: {{granularity: per-channel, io: float}}
"""


def test_fix_reaches_a_gate_only_every_weighted_layer_in_float_meets(tmp_path: Path) -> None:
    """The reviewer's tight3.yaml: digits' onnx-int8 under min_cosine 0.999995. The 6 layers with an own error
    in float give 0.999993 (missed); all 7 weighted ones, /15/Conv (own error 0) included, 0.999997. --fix said
    'no candidate met the gate' after 1, 2, 4, 6 layers, exit 1."""
    from typer.testing import CliRunner

    from edgekit.cli import app

    path = tmp_path / "tight3.yaml"
    path.write_text(TIGHT3.format(weights=WEIGHTS_DIR / "digits.pt"))
    out = CliRunner().invoke(
        app, ["analyze", str(path), "--format", "onnx-int8", "--fix"], terminal_width=400
    )
    said = " ".join(out.output.split())
    assert out.exit_code == 0, said
    assert "gate met with 7 worst in float (7 layer(s))" in said, said
    assert "/15/Conv" in said.split("gate met with")[1], said
    # every weighted layer float: the fp32 model in an INT8 file (the count held GlobalAveragePool and Flatten)
    assert "every quantized layer is float in it" in said and "ship onnx-fp32 instead" in said, said
    # the layers were ranked on the first 16 evaluation inputs, the gate judged on all 360: said (r16 #6)
    assert (
        "in-sample: the float set was chosen (layers ranked on 16 of them) and judged on the same 360 evaluation "
        "inputs" in said
    ), said


def test_gate_met_says_the_float_set_was_chosen_and_judged_on_the_same_inputs() -> None:
    """--fix ranked the layers on evaluation_inputs[:16] and judged the gate on all of them, then said 'gate met'
    as if on unseen data (r16 #6): now said under the verdict, with both counts; not when nothing was chosen."""
    steps = [_candidate([], 0.99998, False), _candidate(WEIGHTED[:1], 0.999997, True, "1 worst")]
    outcome = FixResult("onnx-int8", _candidate([], 0.999999, True), steps, "/tmp/x", WEIGHTED, ranked_on=16)
    failed, said = _summary(outcome)
    assert not failed
    assert (
        "in-sample: the float set was chosen (layers ranked on 16 of them) and judged on the same 360 evaluation "
        "inputs: the gate met on them may not hold on unseen data" in said
    ), said
    missed = FixResult(
        "onnx-int8", _candidate([], 0.999999, True), steps[:1], "/tmp/x", WEIGHTED, ranked_on=16
    )
    assert "in-sample" not in _summary(missed)[1]


def test_a_gate_the_fp32_model_misses_is_said_to_be_out_of_reach_naming_the_gate() -> None:
    """impossible.yaml (max_abs_error 1e-06; ncnn-fp32 itself is 1.5e-05 off): --fix said 'try more calibration
    data'. No float set beats the fp32 model: it says the gate cannot be reached by keeping layers in float, with
    the gate, its value and its limit. The same when the candidate with every weighted layer in float misses."""
    fp32 = _candidate([], 0.999999, False)
    fp32.gates["checks"] = [{"gate": "max_abs_error", "limit": 1e-06, "value": 1.5e-05, "passed": False}]
    steps = [_candidate([], 0.9988, False)] + [
        _candidate(WEIGHTED[:k], 0.9999, False, f"{k} worst") for k in (1, 2)
    ]
    failed, said = _summary(FixResult("ncnn-int8", fp32, steps, "/tmp/x", WEIGHTED))
    assert failed
    assert "the gate cannot be reached by keeping layers in float" in said, said
    assert (
        "the ncnn-fp32 model itself misses it (max_abs_error: 1.5e-05 vs limit 1e-06 (on 360 inputs))" in said
    )
    assert "try more calibration data" not in said, said
    steps.append(_candidate(WEIGHTED, 0.999993, False, "7 worst"))
    failed, said = _summary(FixResult("onnx-int8", _candidate([], 0.999997, True), steps, "/tmp/x", WEIGHTED))
    assert failed and "the gate cannot be reached by keeping layers in float" in said, said
    assert (
        "with every quantized weighted layer in float (7) it still misses (min_cosine: 0.999993 vs limit"
        in said
    )


# test_analyze's digits recipe with a gate no float set can reach (max_abs_error 1e-6: even fp32 misses it)
IMPOSSIBLE = RECIPE.replace("name: digits-small", "name: digits-impossible").replace(
    "{{min_cosine: {cosine}}}", "{{min_cosine: 0.98, max_abs_error: 0.000001}}"
)


def test_fix_judges_the_fp32_model_by_the_int8_gate(tmp_path: Path) -> None:
    """--fix measured the fp32 artifact unchecked, so nothing could tell a gate out of its reach."""
    from typer.testing import CliRunner

    from edgekit.cli import app

    path = tmp_path / "impossible.yaml"
    path.write_text(IMPOSSIBLE.format(weights=WEIGHTS_DIR / "digits.pt"))
    out = CliRunner().invoke(
        app,
        ["analyze", str(path), "--format", "ncnn-int8", "--fix", "--max-float", "1", "--samples", "4"],
        terminal_width=400,
    )
    said = " ".join(out.output.split())
    assert out.exit_code == 1, said
    assert (
        "cannot be reached by keeping layers in float: the ncnn-fp32 model itself misses it (max_abs_error"
        in said
    )


def test_a_missed_value_is_never_rounded_up_to_its_limit_and_the_row_names_the_gate() -> None:
    """'4 worst 0.048 MB 0.016 0.999950 ... missed' for a cosine of 0.9999498953261001 under min_cosine 0.99995:
    rounded up to the limit it missed, and no word of which gate. And the summary's 'top-1 99.44% (fp32 99.44%)'
    was accuracy against the labels, its reference the ONNX model: said in convert's words."""
    from edgekit.cli import analyze as cli

    def step(cosine: float, label: str) -> Candidate:
        ok = cosine >= 0.99995
        gates = {
            "passed": ok,
            "checks": [{"gate": "min_cosine", "limit": 0.99995, "value": cosine, "passed": ok}],
        }
        return Candidate(["a"], [], 48_000, 0.016, {"cosine": cosine, "top1": 0.99444}, gates, label=label)

    outcome = FixResult(
        "tflite-int8",
        step(0.99999, "fp32"),
        [step(0.9999498953261001, "4 worst"), step(0.999988, "6 worst")],
        "",
    )
    with cli.console.capture() as captured:
        cli.console.print(cli.fix_table(outcome), width=300)
    row = next(line for line in captured.get().splitlines() if "4 worst" in line)
    assert "0.999950" not in row and " 0.999949 " in row, row
    assert "missed min_cosine 0.9999499 vs limit 0.99995 (-1e-07)" in row, row
    assert "top-1 99.44 %" in row, row
    fid = {"cosine": 0.998856, "top1": 0.99444, "top1_reference": 0.99444, "top1_agreement": 0.9972}
    said = cli._summary(fid | {"gates": {"passed": True, "checks": [{"gate": "min_cosine", "limit": 0.98}]}})
    assert "accuracy (labels): top-1 99.4 % (ONNX 99.4 %)" in said and "fp32" not in said, said
    assert "agreement with ONNX: agree 99.7 %" in said, said


@pytest.mark.parametrize(("weighted", "size"), [(WEIGHTED, 51_000), (WEIGHTED[:6], 80_000)])
def test_a_candidate_that_is_the_fp32_model_in_an_int8_file_says_to_ship_fp32(
    weighted: list[str], size: int
) -> None:
    """onnx-int8 with all 7 weighted layers in float: no warning, as the count held GlobalAveragePool and Flatten
    (9 quantized). The warning counts weighted layers, and says so too of a candidate as large as fp32."""
    steps = [_candidate([], 0.999873, False), _candidate(weighted, 0.999997, True, f"{len(weighted)} worst")]
    steps[-1].size_bytes = size
    fp32 = _candidate([], 0.999999, True)
    fp32.size_bytes = 76_000
    failed, said = _summary(FixResult("onnx-int8", fp32, steps, "/tmp/x", WEIGHTED))
    assert not failed
    assert "ship onnx-fp32 instead" in said, said


@pytest.mark.parametrize(
    ("fmt", "line"),
    [("ncnn-int8", "ncnn_float_layers: [nosuch]"), ("onnx-int8", 'onnx_float_nodes: ["/nosuch"]')],
)
def test_a_float_layer_the_model_lacks_is_the_recipes_mistake_exit_2_at_the_recipe(
    tmp_path: Path, fmt: str, line: str
) -> None:
    """badname.yaml / badnode2.yaml: analyze wrapped the RecipeError as an AnalysisError (exit 1), and ncnn's
    named a converter's scratch file, deleted by then, as where."""
    from typer.testing import CliRunner

    from edgekit.cli import app

    path = tmp_path / "badname.yaml"
    text = IMPOSSIBLE.format(weights=WEIGHTS_DIR / "digits.pt").replace("formats: [ncnn-fp32, ncnn-int8]", "")
    path.write_text(text + f"formats: [{fmt}]\nint8: {{{line}}}\n")
    out = CliRunner().invoke(
        app, ["analyze", str(path), "--format", fmt, "--samples", "4"], terminal_width=400
    )
    from edgekit.errors import RecipeError

    assert type(out.exception) is RecipeError and out.exception.exit_code == 2, repr(out.exception)
    said = str(out.exception)
    assert said.startswith(f"{path}: ") and "nosuch" in said and "cache/work" not in said, said


def test_the_cost_of_a_recipe_that_keeps_layers_float_is_against_its_current_artifact() -> None:
    """own.yaml keeps 4 layers float: the cost line compared with that artifact and called it 'plain INT8'."""
    steps = [_candidate(WEIGHTED[:4], 0.99998, False, "as the recipe keeps it (4 float)")]
    steps.append(_candidate(WEIGHTED[:5], 0.999997, True, "the recipe's 4 + 1 worst"))
    failed, said = _summary(FixResult("ncnn-int8", _candidate([], 0.999999, True), steps, "/tmp/x", WEIGHTED))
    assert not failed
    assert "vs the recipe's current artifact" in said and "plain INT8" not in said, said


def test_convert_names_the_recipe_for_an_ncnn_float_layer_the_model_lacks(tmp_path: Path) -> None:
    """`edgekit convert badname.yaml --format ncnn-int8` named the converter's scratch copy of the model
    (.../cache/work/NcnnConverter-.../model.param, deleted by then) as where the mistake was."""
    from typer.testing import CliRunner

    from edgekit.cli import app
    from edgekit.errors import RecipeError

    path = tmp_path / "badname.yaml"
    text = IMPOSSIBLE.format(weights=WEIGHTS_DIR / "digits.pt").replace("formats: [ncnn-fp32, ncnn-int8]", "")
    path.write_text(text + "formats: [ncnn-int8]\nint8: {ncnn_float_layers: [nosuch]}\n")
    out = CliRunner().invoke(app, ["convert", str(path), "--format", "ncnn-int8"], terminal_width=400)
    assert type(out.exception) is RecipeError and out.exception.exit_code == 2, repr(out.exception)
    said = str(out.exception)
    assert said.startswith(f"{path}: ") and "nosuch" in said and "cache/work" not in said, said


@pytest.mark.parametrize("width", [80, 100, 130])
def test_the_fix_table_wraps_the_gate_text_and_never_cuts_a_figure(width: int) -> None:
    """`analyze --fix` on a non-TTY (130 columns) or narrower console cut every column to fit the gate's long
    verdict: the size lost its "MB" ('0.…'), the margin its digits ('(-0.0…'). The figures keep their width now and
    the gate's words (and the label's) wrap beneath."""
    import io
    import re

    from rich.console import Console

    from edgekit.cli.analyze_fix import fix_table

    def step(cosine: float, label: str) -> Candidate:
        ok = cosine >= 0.999999
        gates = {
            "passed": ok,
            "checks": [{"gate": "min_cosine", "limit": 0.999999, "value": cosine, "passed": ok}],
        }
        return Candidate(["a"], [], 48_000, 0.016, {"cosine": cosine, "top1": 0.99444}, gates, label=label)

    outcome = FixResult(
        "onnx-int8",
        step(0.9999999, "fp32"),
        [step(0.9994, "none (plain INT8)"), step(0.99971, "3 worst")],
        "",
    )
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(fix_table(outcome))
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width and "…" not in text, text
    rows = [line for line in text.splitlines() if "0.048 MB" in line]
    assert len(rows) == 3 and all(
        re.search(r"0\.048 MB +0\.016 +0\.999\d+ +top-1 99\.44 %", r) for r in rows
    ), text
    lines = text.splitlines()
    at = next(line for line in lines if line.rstrip().endswith("gate")).rstrip().rindex("gate")
    words = " ".join(" ".join(line[at:] for line in lines).split())  # the gate column's verdicts, whole
    assert "missed min_cosine 0.9994 vs limit 0.999999 (-0.0006)" in words, text
    assert "missed min_cosine 0.99971 vs limit 0.999999 (-0.00029)" in words, text


def test_a_missed_gate_on_random_calibration_data_asks_for_real_data_not_more() -> None:
    """On `kind: random` calibration data --fix advised "more calibration data": more random samples cannot mend
    INT8 scales fitted to inputs the model never sees."""
    steps = [_candidate([], 0.999873, False), _candidate(WEIGHTED[:1], 0.99999, False, "1 worst")]
    outcome = FixResult("onnx-int8", _candidate([], 0.999997, True), steps, "/tmp/x", WEIGHTED)
    failed, said = _summary(outcome, random_calibration=True)
    assert failed and "real calibration data in place of the random `calibration.data`" in said, said
    assert "more calibration data" not in said, said
    assert "more calibration data" in _summary(outcome)[1]


def _timed(float_layers: list[str], cosine: float, passed: bool, ms: float, spread: list[float]) -> Candidate:
    candidate = _candidate(float_layers, cosine, passed, f"{len(float_layers)} worst" if float_layers else "")
    candidate.host_ms, candidate.host_spread = ms, spread
    return candidate


def test_the_cost_line_compares_host_latencies_only_beyond_their_spread_and_never_on_a_busy_host() -> None:
    """The reviewer's mobilenetv2 --fix: 'host latency 8.427 -> 5.349 ms (fp32 12.257 ms)', the fp32 model and the
    same arithmetic in an INT8 file 2.3x apart, each timed alone while the machine was busy. A busy host's
    latencies are now not judged, and a difference inside the p10-p90 spread is said as none."""
    fp32 = _timed([], 0.999999, True, 12.257, [11.0, 13.5])
    steps = [_timed([], 0.98, False, 8.427, [8.1, 8.9]), _timed(WEIGHTED, 0.999999, True, 5.349, [5.2, 5.6])]
    busy = FixResult("ncnn-int8", fp32, steps, "/tmp/x", WEIGHTED, host_busy=0.45, host_rounds=21)
    _, said = _summary(busy)
    assert (
        "host latency not judged: other processes used 45% of this machine's CPUs while the models were timed"
        in said
    ), said
    assert "8.427 ->" not in said and "5.349" not in said, said
    quiet = FixResult("ncnn-int8", fp32, steps, "/tmp/x", WEIGHTED, host_busy=0.02, host_rounds=21)
    _, said = _summary(quiet)
    assert "host latency 8.427 -> 5.349 ms (p10-p90 8.100-8.900 and 5.200-5.600 ms; fp32 12.257 ms)" in said
    steps[1].host_ms, steps[1].host_spread = 8.2, [7.9, 8.6]  # inside the plain INT8's spread
    _, said = _summary(quiet)
    assert "host latency no different beyond the timing spread: 8.427 and 8.200 ms" in said, said
    assert "->" not in said.split("cost:")[1], said


def test_fix_times_its_candidates_interleaved_and_says_when_the_host_was_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real ncnn candidates timed while one spinning process per core keeps the machine busy: --fix measured
    each candidate alone, 15 times, and compared them with no word of the load. Every model is now timed in the
    same rounds, with its p10-p90, and the table says the latencies are unreliable, in deploy's words. The
    spinners run only while the models are timed (not through the conversions: seconds of load on a shared CI
    machine's other tests)."""
    import os
    import subprocess
    import sys
    import time
    from collections.abc import Callable, Sequence
    from typing import Any

    from edgekit.analysis import float_fallback
    from edgekit.analysis.analyze import analyze
    from edgekit.analysis.float_fallback import fix
    from edgekit.analysis.host_timing import HOST_ROUNDS, time_interleaved
    from edgekit.cli import analyze as cli
    from edgekit.cli.analyze_fix import fix_table
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe

    path = tmp_path / "impossible.yaml"
    path.write_text(IMPOSSIBLE.format(weights=WEIGHTS_DIR / "digits.pt"))
    recipe = load_recipe(path)
    result = analyze(recipe, Format.NCNN_INT8, samples=4)
    real = time_interleaved
    spun: list[float] = []

    def under_load(runs: Sequence[Callable[[], Any]]) -> Any:
        spinners = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)
        ]
        start = time.monotonic()
        try:
            time.sleep(0.5)
            return real(runs)
        finally:
            for p in spinners:
                p.kill()
                p.wait()
            spun.append(time.monotonic() - start)

    monkeypatch.setattr(float_fallback, "time_interleaved", under_load)
    outcome = fix(recipe, Format.NCNN_INT8, result, max_float=1)
    assert len(spun) == 1, (
        spun
    )  # one timing step under load (the spinners wrap it alone, never the conversions)
    rows = [outcome.fp32, *outcome.steps]
    assert len(rows) == 3 and all(not r.error for r in rows), [r.error for r in rows]
    assert outcome.host_rounds == HOST_ROUNDS
    for row in rows:
        low, high = row.host_spread
        assert 0 < low <= row.host_ms <= high, (row.host_ms, row.host_spread)
    assert outcome.host_busy is not None and outcome.host_busy >= 0.4, outcome.host_busy
    assert outcome.host_unreliable
    with cli.console.capture() as captured:
        cli.console.print(fix_table(outcome), width=300)
    said = " ".join(captured.get().split())
    assert "host ms unreliable: other processes used" in said and "of this machine's CPUs" in said, said


def test_a_model_that_fails_while_timed_is_refused_and_the_others_timed_and_released() -> None:
    """Only a candidate's first run was inside its own failure handling: its warmup and the 21 interleaved
    rounds were not, so a runtime failing on a later call was an internal error of the whole `analyze --fix`, and
    every candidate's model stayed loaded until the command ended. A failure while timed now refuses that
    candidate (its row says why), the others are timed, and every run is let go once timed."""
    import gc
    import weakref
    from collections.abc import Callable

    from edgekit.analysis import float_fallback

    class Model:
        def __init__(self, fails_at: int | None) -> None:
            self.calls, self.fails_at = 0, fails_at

        def __call__(self) -> None:
            self.calls += 1
            if self.fails_at is not None and self.calls >= self.fails_at:
                raise RuntimeError("ncnn: extract failed (-100)")

    fp32 = _candidate([], 0.999999, True)
    steps = [_candidate([], 0.98, False), _candidate(WEIGHTED[:1], 0.999999, True, "1 worst")]
    outcome = FixResult("ncnn-int8", fp32, steps, "/tmp/x", WEIGHTED)
    models = [Model(None), Model(None), Model(10)]  # the last fails in the 7th round (after 3 warmups)
    alive = [weakref.ref(m) for m in models]
    runs: list[Callable[[], None] | None] = list(models)
    said: list[str] = []
    del models
    float_fallback._timed(outcome, runs, said.append)
    gc.collect()
    assert [r() for r in alive] == [None, None, None], "the timed models stay loaded"
    assert not fp32.error and not steps[0].error and fp32.host_spread and steps[0].host_spread
    assert steps[1].error == "RuntimeError: ncnn: extract failed (-100) (while timed on this host)", steps[
        1
    ].error
    assert not steps[1].passed and outcome.chosen is None and not steps[1].host_spread
    assert any("1 worst failed while timed" in line for line in said), said
