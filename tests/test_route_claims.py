"""What a route may claim: a gate never checked is no pass, and nothing is said to be a gain that the figures
do not hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from edgekit.fidelity.check import check_gates
from edgekit.recipe import Gates
from edgekit.report.table import deploy_table
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

REPO = Path(__file__).resolve().parents[1]
NO_LABELS = "max_top1_drop (no top1_drop: needs labels)"


def _measurement(artifact: str, p50: float, insns: int | None = None) -> Measurement:
    return Measurement(
        artifact=artifact,
        format=artifact,
        runtime=artifact.split("-")[0],
        threads=1,
        status="ok",
        p50_ms=p50,
        instructions_per_invoke=insns,
    )


def _comparison(artifact: str, target: str, passed: bool | None = True) -> Comparison:
    return Comparison(
        artifact=artifact,
        target=target,
        reference="onnx",
        max_abs_error=1e-8,
        mean_abs_error=1e-9,
        cosine=1.0,
        samples=8,
        gates_passed=passed,
    )


def _run(target: str, measurements: list[Measurement], comparisons: list[Comparison]) -> TargetRun:
    emulated = target.endswith("-emu")
    facts = DeviceFacts(machine="aarch64", cores=4, python="3.11", emulated=emulated)
    agent = AgentResult(started_at="2026-12-01T00:00:00", facts_before=facts, measurements=measurements)
    return TargetRun(
        target=target,
        kind="local" if target == "host" else "ssh",
        emulated=emulated,
        status="ok",
        agent=agent,
        comparisons=comparisons,
    )


def _artifact(artifact: str, gates: dict | None = None, files: list[str] | None = None) -> ArtifactInfo:
    fidelity = {"cosine": 1.0, "samples": 8} | ({"gates": gates} if gates is not None else {})
    return ArtifactInfo(
        id=artifact, format=artifact, files=files or [], sha256="", size_bytes=1, fidelity=fidelity
    )


def _result(artifacts: list[ArtifactInfo], runs: list[TargetRun]) -> DeployResult:
    return DeployResult(
        recipe="tiny",
        recipe_path="tiny.yaml",
        recipe_sha256="x",
        started_at="2026-12-01T00:00:00",
        artifacts=artifacts,
        runs=runs,
        benchmark={"threads": [1], "warmup": 1, "repeat": 10, "number": 5},
    )


def _table_text(result: DeployResult) -> str:
    console = Console(width=250, record=True, color_system=None)
    console.print(deploy_table(result))
    return " ".join(console.export_text().split())


# --- fault 1: a gate never checked ----------------------------------------------------------------------------
def test_a_gate_that_could_not_be_checked_is_no_pass_in_the_gate_record() -> None:
    """check_gates gave {'passed': True, 'checks': [], ...} for a recipe whose only gate needs labels it did
    not have: all([]) read as a pass. `passed` stays what fails a conversion (none missed); `verdict` says it."""
    numbers = {"cosine": 0.99, "top1_agreement": 1.0, "samples": 8}
    unchecked = check_gates(numbers, Gates(max_top1_drop=0.0))
    assert unchecked["verdict"] == "not checked" and unchecked["skipped"] == [NO_LABELS]
    assert unchecked["passed"] is True  # nothing was missed: the conversion goes on
    mixed = check_gates(numbers, Gates(min_cosine=0.9, max_top1_drop=0.0))
    assert mixed["verdict"] == "not checked" and len(mixed["checks"]) == 1
    assert check_gates(numbers, Gates(min_cosine=0.995))["verdict"] == "missed"
    assert check_gates(numbers, Gates(min_cosine=0.9))["verdict"] == "ok"
    assert check_gates(numbers, Gates())["verdict"] == "ok"  # no gate set: as before


def test_a_route_whose_choice_has_an_unchecked_gate_names_it_and_one_without_gates_does_not() -> None:
    """tiny without labels and `int8: {max_top1_drop: 0.0}`: deploy routed 'ship ncnn-int8' with no word that
    its only gate was never checked. It may still be routed (the user may have no labels), never silently."""
    skipped = {"passed": True, "checks": [], "skipped": [NO_LABELS], "samples": 8}
    checked = {
        "passed": True,
        "checks": [{"gate": "min_cosine", "passed": True}],
        "skipped": [],
        "samples": 8,
    }
    host = _run(
        "host",
        [_measurement("tflite-fp32", 0.03), _measurement("tflite-int8", 0.02)],
        [_comparison("tflite-fp32", "host"), _comparison("tflite-int8", "host")],
    )
    result = _result([_artifact("tflite-fp32", checked), _artifact("tflite-int8", skipped)], [host])
    (route,) = routes_for_deploy(result)
    assert route.artifact == "tflite-int8" and route.unchecked_gates == [NO_LABELS]
    line = route.summary()
    assert f"gate NOT checked for tflite-int8: {NO_LABELS}" in line and "labels" in line, line
    assert route.to_dict()["unchecked_gates"] == [NO_LABELS]
    # an artifact with no gate set at all keeps its route as it was: nothing said
    bare = _result([_artifact("tflite-fp32"), _artifact("tflite-int8")], [host])
    (route,) = routes_for_deploy(bare)
    assert route.artifact == "tflite-int8" and route.unchecked_gates == [] and route.caveats == []
    # a target comparison never gated (gates_passed None) for an artifact with gates set is not a pass either
    host.comparisons[1] = _comparison("tflite-int8", "host", passed=None)
    (route,) = routes_for_deploy(
        _result([_artifact("tflite-fp32", checked)] + [_artifact("tflite-int8", checked)], [host])
    )
    assert route.artifact == "tflite-int8" and any("never gated" in g for g in route.unchecked_gates)
    # the pure ranking: a candidate with unchecked gates carries them to its route
    chosen = recommend("host", [Candidate("onnx-fp32", 1.0, True, unchecked=(NO_LABELS,))], Basis.P50_MS)
    assert chosen.unchecked_gates == [NO_LABELS] and "NOT checked" in chosen.summary()


def test_the_deploy_table_says_not_checked_where_it_said_ok() -> None:
    """The gates column read 'ok on 8 inputs' for an artifact whose one gate was never checked."""
    skipped = {"passed": True, "checks": [], "skipped": [NO_LABELS], "samples": 8}
    host = _run("host", [_measurement("tflite-int8", 0.02)], [_comparison("tflite-int8", "host")])
    text = _table_text(_result([_artifact("tflite-int8", skipped)], [host]))
    assert f"not checked: {NO_LABELS}" in text and "ok on 8 inputs" not in text, text
    checked = {
        "passed": True,
        "checks": [{"gate": "min_cosine", "passed": True}],
        "skipped": [],
        "samples": 8,
    }
    assert "ok on 8 inputs" in _table_text(_result([_artifact("tflite-int8", checked)], [host]))


def test_a_local_deploy_without_labels_says_its_gate_was_not_checked(tmp_path: Path) -> None:
    """Through `edgekit deploy --target local`: tiny's evaluation data has no labels, the recipe gates fp32 on
    the top-1 drop: the table and the route line name the unchecked gate, the JSON route lists it."""
    recipe = tmp_path / "tiny_nolabels.yaml"
    text = (REPO / "recipes" / "tiny.yaml").read_text()
    assert "fp32: {min_cosine: 0.9999}" in text
    recipe.write_text(text.replace("fp32: {min_cosine: 0.9999}", "fp32: {max_top1_drop: 0.0}"))
    written = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(recipe), "-f", "onnx-fp32", "--target", "local"]
        + ["--no-store", "--repeat", "1", "--warmup", "0", "--threads", "1", "--json", str(written)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "300"},
    )
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, said[-3000:]
    assert f"not checked: {NO_LABELS}" in said and "ok on 8 inputs" not in said, said[-3000:]
    assert f"gate NOT checked for onnx-fp32: {NO_LABELS}" in said, said[-3000:]
    (route,) = json.loads(written.read_text())["routes"]
    assert route["artifact"] == "onnx-fp32" and route["unchecked_gates"] == [NO_LABELS]


# --- fault 2: two artifacts that are one model ----------------------------------------------------------------
def _ncnn(folder: Path, fmt: str, options: dict, notes: list[str], plan: dict | None = None) -> ArtifactInfo:
    """An ncnn artifact on disk: tiny's .param/.bin (the same bytes for every format here) and its sidecar."""
    folder.mkdir(parents=True)
    (folder / "model.param").write_text("7767517\n3 3\nInput in0 0 1 in0\n")
    (folder / "model.bin").write_bytes(bytes(range(256)) * 8)
    io = {"format": fmt, "options": options, "notes": notes} | (
        {"int8": {"speed_plan": plan}} if plan else {}
    )
    (folder / "model.io.json").write_text(json.dumps(io))
    files = [str(folder / n) for n in ("model.param", "model.bin", "model.io.json")]
    checked = {
        "passed": True,
        "checks": [{"gate": "min_cosine", "passed": True}],
        "skipped": [],
        "samples": 8,
    }
    return _artifact(fmt, checked, files)


FP32_OPTIONS = {"use_fp16_arithmetic": False, "use_int8_inference": False}


def _same_model_result(tmp_path: Path, host_p50: dict[str, float]) -> DeployResult:
    """tiny_pi5's ncnn-fp32 and an ncnn-int8 whose speed plan kept no layer int8 (byte-identical .param/.bin, the
    same options, another sidecar), and an ncnn-fp16 on the same .param/.bin with fp16 options (another model)."""
    arts = [
        _ncnn(tmp_path / "fp32", "ncnn-fp32", FP32_OPTIONS, []),
        _ncnn(
            tmp_path / "int8", "ncnn-int8", FP32_OPTIONS, ["speed plan ... (kept: fp32)"], {"kept": "fp32"}
        ),
        _ncnn(tmp_path / "fp16", "ncnn-fp16", FP32_OPTIONS | {"use_fp16_arithmetic": True}, []),
    ]
    host = _run(
        "host",
        [_measurement(a, ms) for a, ms in host_p50.items()],
        [_comparison(a, "host") for a in host_p50],
    )
    return _result(arts, [host])


def test_an_int8_artifact_that_is_the_fp32_model_is_never_ranked_against_it(tmp_path: Path) -> None:
    """tiny_pi5: the speed plan kept no layer int8, ncnn-int8's files were ncnn-fp32's, and the route said 'ship
    ncnn-int8 (0.0195 ms p50; 1.52x vs ncnn-fp32)' on host timing noise."""
    result = _same_model_result(tmp_path, {"ncnn-fp32": 0.0296, "ncnn-int8": 0.0195, "ncnn-fp16": 0.05})
    (route,) = routes_for_deploy(result)
    assert route.artifact == "ncnn-fp32" and route.same_model == {"ncnn-int8": "ncnn-fp32"}
    assert route.rejected["ncnn-int8"].startswith(
        "the same model as ncnn-fp32 (the speed plan kept no layer int8"
    )
    assert route.rejected["ncnn-fp16"].startswith("slower")  # same .param/.bin, fp16 options: another model
    line = route.summary()
    assert "1.52x" not in line and "vs ncnn-fp32" not in line, line
    assert "ncnn-int8 is ncnn-fp32 (the speed plan kept no layer int8" in line, line
    # ncnn-fp32 missing its (stricter) gate: ncnn-int8 may ship, with no speed-up over the model it is
    result.runs[0].comparisons[0] = _comparison("ncnn-fp32", "host", passed=False)
    (route,) = routes_for_deploy(result)
    assert (
        route.artifact == "ncnn-int8" and route.speedup_vs_fp32 is None and route.fp32_artifact == "ncnn-fp32"
    )
    assert "x vs ncnn-fp32" not in route.summary() and "ncnn-int8 is ncnn-fp32" in route.summary()
    # the pure ranking: two distinct models are ranked as before
    plain = recommend(
        "host", [Candidate("ncnn-fp32", 0.03, True), Candidate("ncnn-int8", 0.02, True)], Basis.P50_MS
    )
    assert plain.artifact == "ncnn-int8" and plain.speedup_vs_fp32 == 1.5


def test_the_x_fp32_column_says_same_model_for_an_artifact_that_is_its_fp32_model(tmp_path: Path) -> None:
    """The host table's x fp32 said 1.52x for ncnn-int8 over the byte-identical ncnn-fp32; the report rows too."""
    from edgekit.report.rows import latest_rows

    result = _same_model_result(tmp_path, {"ncnn-fp32": 0.0296, "ncnn-int8": 0.0195, "ncnn-fp16": 0.05})
    text = _table_text(result)
    assert "same model" in text and "1.52x" not in text, text
    assert "0.59x" in text  # ncnn-fp16 is another model: its ratio stays
    rows = {r.artifact: r for r in latest_rows(result)}
    assert rows["ncnn-int8"].speedup is None and rows["ncnn-int8"].speedup_basis == "same model"
    assert rows["ncnn-fp16"].speedup is not None
    (tmp_path / "int8" / "model.bin").write_bytes(
        bytes(range(256)) * 7 + bytes(256)
    )  # int8 weights: another model
    assert "1.52x" in _table_text(result)
    (route,) = routes_for_deploy(result)
    assert route.artifact == "ncnn-int8" and route.same_model == {}


def est(ms: float, low: float, high: float) -> dict[str, object]:
    return {"status": "ok", "estimate_ms": ms, "low_ms": low, "high_ms": high}


def _pi5_not_ranked() -> tuple[DeployResult, TargetRun]:
    """The reviewer's pi5-emu figures: tflite-int8's 80% interval 0.00966-0.0998 holds tflite-fp32's ~0.0597 and
    ncnn-fp32's ~0.0992."""
    figures = {"tflite-int8": 51_000, "tflite-fp32": 99_450, "ncnn-fp32": 179_000}
    emu = _run("pi5-emu", [_measurement(a, 900.0, n) for a, n in figures.items()], [])
    emu.estimates = {
        "tflite-int8 x1": est(0.0311, 0.00966, 0.0998),
        "tflite-fp32 x1": est(0.0597, 0.0185, 0.192),
        "ncnn-fp32 x1": est(0.0992, 0.0308, 0.319),
    }
    return _result([_artifact(a) for a in figures], [emu]), emu


# --- fault 3: a ratio by estimate the interval does not hold ------------------------------------------------------
def test_an_estimate_speedup_whose_other_side_lies_inside_the_choices_interval_is_not_stated() -> None:
    """pi5-emu said 'ship tflite-int8 (0.0311 ms ESTIMATE; 1.92x vs tflite-fp32 by estimate, 1.95x by instruction
    count; 3.19x vs slowest ncnn-fp32)' while tflite-int8's 80% interval 0.00966-0.0998 holds both ~0.0597 and
    ~0.0992: by the rule estimates_tied uses, neither is ranked apart; the exact count ratio stays."""

    result, emu = _pi5_not_ranked()
    (route,) = routes_for_deploy(result)
    line = route.summary()
    assert (
        route.artifact == "tflite-int8" and route.speedup_vs_fp32 is None and route.speedup_vs_slowest is None
    )
    assert route.not_ranked_by_estimate == ["tflite-fp32", "ncnn-fp32"]
    assert "vs tflite-fp32: not ranked apart by the estimate, 1.95x by instruction count" in line, line
    assert "vs slowest ncnn-fp32: not ranked apart by the estimate" in line, line
    assert "1.92x" not in line and "3.19x" not in line, line
    # intervals that do rank them: the ratios are stated as before
    emu.estimates["tflite-int8 x1"] = est(0.0311, 0.025, 0.04)
    emu.estimates["tflite-fp32 x1"] = est(0.0597, 0.05, 0.07)
    emu.estimates["ncnn-fp32 x1"] = est(0.0992, 0.08, 0.12)
    (route,) = routes_for_deploy(result)
    line = route.summary()
    assert "1.92x vs tflite-fp32 by estimate, 1.95x by instruction count" in line, line
    assert "3.19x vs slowest ncnn-fp32" in line and route.not_ranked_by_estimate == [], line
    # fp32 apart, the slowest not: only the slowest's ratio withheld
    emu.estimates["ncnn-fp32 x1"] = est(0.0992, 0.03, 0.3)  # the choice inside the slowest's interval
    (route,) = routes_for_deploy(result)
    assert route.not_ranked_by_estimate == ["ncnn-fp32"] and "1.92x vs tflite-fp32" in route.summary()


def test_the_html_route_history_says_a_ratio_not_ranked_by_the_estimate() -> None:
    """The HTML route row read only speedup_vs_fp32: a ratio withheld as not ranked apart showed '-', the exact
    instruction-count ratio lost with it."""
    from types import SimpleNamespace

    from edgekit.report.html_routes import routes_section
    from edgekit.store import StoredRun

    result, _ = _pi5_not_ranked()
    result.routes = [r.to_dict() for r in routes_for_deploy(result)]
    html = routes_section(SimpleNamespace(runs=[StoredRun(1, 0.0, result)], targets=[]))  # type: ignore[arg-type]
    assert "vs tflite-fp32: not ranked apart by the estimate (1.95x by instruction count)" in html, html
    assert "vs ncnn-fp32: not ranked apart by the estimate" in html
