"""DeployResult <-> table rows, lossless: what goes in comes back out, extra fields included.

Only this module knows how a typed result maps onto the columns of `schema.py`. Fields a newer deploy adds
before the schema has a column for them travel in the `extra` JSON column of their row, so recording never
drops data and reading gives back the same pydantic objects.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from edgekit.errors import StoreError
from edgekit.results import (
    AgentResult,
    ArtifactInfo,
    Comparison,
    DeployResult,
    DeviceFacts,
    Measurement,
    TargetRun,
)

_MEASUREMENT_COLUMNS = (
    "artifact", "format", "runtime", "threads", "status", "error", "load_ms", "number", "p50_ms", "p90_ms",
    "p99_ms", "mean_ms", "std_ms", "min_ms", "peak_rss_mb", "instructions_per_invoke",
    "overhead_ms_per_sample", "outputs_file", "output_checksums",
)
_COMPARISON_COLUMNS = (
    "artifact", "target", "reference", "max_abs_error", "mean_abs_error", "cosine", "top1_agreement",
    "box_match", "metric",
)
_ARTIFACT_COLUMNS = (
    "format", "files", "sha256", "size_bytes", "cached", "convert_s", "fidelity", "gates_passed", "status",
    "error",
)


def timestamp(iso: str, *, where: str = "started_at") -> float:
    """Epoch seconds of an ISO-8601 time; a time without a zone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError as exc:
        raise StoreError(f"not an ISO-8601 time: {iso!r}", where=where) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _extra(model: Any) -> dict[str, Any] | None:
    extra = model.model_extra
    return dict(extra) if extra else None


def _pick(model: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(model, name) for name in names}


def run_row(result: DeployResult, *, recorded_at: str, recorded_by: str | None) -> dict[str, Any]:
    return {
        "recipe": result.recipe, "recipe_path": result.recipe_path, "recipe_sha256": result.recipe_sha256,
        "git_revision": result.git_revision, "task": result.task, "protocol": result.protocol,
        "started_at": result.started_at, "started_ts": timestamp(result.started_at),
        "finished_at": result.finished_at, "tool_versions": result.tool_versions,
        "benchmark": result.benchmark, "ok": result.ok, "recorded_at": recorded_at,
        "recorded_by": recorded_by, "extra": _extra(result),
    }


def target_row(run: TargetRun, *, run_id: int, position: int) -> dict[str, Any]:
    agent = run.agent
    return {
        "run_id": run_id, "position": position, "target": run.target, "kind": run.kind,
        "emulated": run.emulated, "status": run.status, "error": run.error, "has_agent": agent is not None,
        "agent_protocol": agent.protocol if agent else None,
        "agent_started_at": agent.started_at if agent else None,
        "agent_finished_at": agent.finished_at if agent else None,
        "facts_before": agent.facts_before.model_dump(mode="json") if agent else None,
        "facts_after": agent.facts_after.model_dump(mode="json") if agent and agent.facts_after else None,
        "request": agent.request if agent else None, "estimates": run.estimates,
        "stage_seconds": run.stage_seconds,
        "extra": {"target": _extra(run), "agent": _extra(agent) if agent else None},
    }


def measurement_row(m: Measurement, *, run_id: int, target_run_id: int, position: int) -> dict[str, Any]:
    return {"run_id": run_id, "target_run_id": target_run_id, "position": position,
            **_pick(m, _MEASUREMENT_COLUMNS), "extra": _extra(m)}


def comparison_row(c: Comparison, *, run_id: int, target_run_id: int, position: int) -> dict[str, Any]:
    return {"run_id": run_id, "target_run_id": target_run_id, "position": position,
            **_pick(c, _COMPARISON_COLUMNS), "extra": _extra(c)}


def artifact_row(a: ArtifactInfo, *, run_id: int, position: int) -> dict[str, Any]:
    return {"run_id": run_id, "position": position, "artifact": a.id, **_pick(a, _ARTIFACT_COLUMNS),
            "extra": _extra(a)}


# --- rows -> objects ------------------------------------------------------------------------------------------
def measurement_from(row: Any, samples_ms: list[float]) -> Measurement:
    fields = {name: getattr(row, name) for name in _MEASUREMENT_COLUMNS}
    fields["output_checksums"] = fields["output_checksums"] or {}
    return Measurement(**fields, samples_ms=samples_ms, **(row.extra or {}))


def comparison_from(row: Any) -> Comparison:
    fields = {name: getattr(row, name) for name in _COMPARISON_COLUMNS}
    fields["metric"] = fields["metric"] or {}
    return Comparison(**fields, **(row.extra or {}))


def artifact_from(row: Any) -> ArtifactInfo:
    fields = {name: getattr(row, name) for name in _ARTIFACT_COLUMNS}
    fields["fidelity"] = fields["fidelity"] or {}
    return ArtifactInfo(id=row.artifact, **fields, **(row.extra or {}))


def target_from(row: Any, measurements: list[Measurement], comparisons: list[Comparison]) -> TargetRun:
    extra = row.extra or {}
    agent = None
    if row.has_agent:
        agent = AgentResult(
            protocol=row.agent_protocol, started_at=row.agent_started_at, finished_at=row.agent_finished_at,
            facts_before=DeviceFacts.model_validate(row.facts_before),
            facts_after=DeviceFacts.model_validate(row.facts_after) if row.facts_after else None,
            measurements=measurements, request=row.request or {}, **(extra.get("agent") or {}))
    return TargetRun(
        target=row.target, kind=row.kind, emulated=row.emulated, status=row.status, error=row.error,
        agent=agent, comparisons=comparisons, estimates=row.estimates or {},
        stage_seconds=row.stage_seconds or {}, **(extra.get("target") or {}))


def run_from(row: Any, artifacts: list[ArtifactInfo], targets: list[TargetRun]) -> DeployResult:
    return DeployResult(
        protocol=row.protocol, recipe=row.recipe, recipe_path=row.recipe_path,
        recipe_sha256=row.recipe_sha256, git_revision=row.git_revision, task=row.task,
        started_at=row.started_at, finished_at=row.finished_at, tool_versions=row.tool_versions or {},
        benchmark=row.benchmark or {}, artifacts=artifacts, runs=targets, ok=row.ok, **(row.extra or {}))
