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
