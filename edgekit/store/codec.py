"""DeployResult <-> table rows, lossless: what goes in comes back out, extra fields included.

Only this module knows how a typed result maps onto the columns of `schema.py`. Fields a newer deploy adds
before the schema has a column for them travel in the `extra` JSON column of their row, so recording never
drops data and reading gives back the same pydantic objects.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
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
    "artifact",
    "format",
    "runtime",
    "threads",
    "status",
    "error",
    "load_ms",
    "number",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "peak_rss_mb",
    "instructions_per_invoke",
    "overhead_ms_per_sample",
    "outputs_file",
    "output_checksums",
)
_COMPARISON_COLUMNS = (
    "artifact",
    "target",
    "reference",
    "max_abs_error",
    "mean_abs_error",
    "cosine",
    "top1_agreement",
    "box_match",
    "metric",
)
_ARTIFACT_COLUMNS = (
    "format",
    "files",
    "sha256",
    "size_bytes",
    "cached",
    "convert_s",
    "fidelity",
    "gates_passed",
    "status",
    "error",
)


def timestamp(iso: str, *, where: str = "started_at") -> float:
    """Epoch seconds of an ISO-8601 time; a time without a zone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError as exc:
        raise StoreError(f"not an ISO-8601 time: {iso!r}", where=where) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _split(
    model: Any, columns: tuple[str, ...], *, nested: frozenset[str] | set[str] = frozenset()
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(column values, everything else): fields added to results.py after this schema, and fields a newer
    agent or deploy sent that results.py does not declare, all land in `extra` instead of being dropped."""
    data = model.model_dump(mode="json", exclude=set(nested))
    picked = {name: data.pop(name) for name in columns}
    for name, value in picked.items():  # SQLite stores NaN as NULL: keep non-finite floats in `extra`
        if isinstance(value, float) and not math.isfinite(value):
            data[name], picked[name] = value, None
    return picked, (data or None)


_RUN_COLUMNS = (
    "recipe",
    "recipe_path",
    "recipe_sha256",
    "git_revision",
    "task",
    "protocol",
    "started_at",
    "finished_at",
    "tool_versions",
    "benchmark",
    "ok",
)
_TARGET_COLUMNS = ("target", "kind", "emulated", "status", "error", "estimates", "stage_seconds")
_AGENT_COLUMNS = ("protocol", "started_at", "finished_at", "facts_before", "facts_after", "request")


def run_row(result: DeployResult, *, recorded_at: str, recorded_by: str | None) -> dict[str, Any]:
    row, extra = _split(result, _RUN_COLUMNS, nested={"artifacts", "runs"})
    return {
        **row,
        "started_ts": timestamp(result.started_at),
        "recorded_at": recorded_at,
        "recorded_by": recorded_by,
        "extra": extra,
    }


def target_row(run: TargetRun, *, run_id: int, position: int) -> dict[str, Any]:
    row, target_extra = _split(run, _TARGET_COLUMNS, nested={"agent", "comparisons"})
    agent_row: dict[str, Any] = dict.fromkeys(_AGENT_COLUMNS)
    agent_extra = None
    if run.agent is not None:
        agent_row, agent_extra = _split(run.agent, _AGENT_COLUMNS, nested={"measurements"})
    return {
        "run_id": run_id,
        "position": position,
        **row,
        "has_agent": run.agent is not None,
        "agent_protocol": agent_row["protocol"],
        "agent_started_at": agent_row["started_at"],
        "agent_finished_at": agent_row["finished_at"],
        "facts_before": agent_row["facts_before"],
        "facts_after": agent_row["facts_after"],
        "request": agent_row["request"],
        "extra": {"target": target_extra, "agent": agent_extra},
    }


def measurement_row(m: Measurement, *, run_id: int, target_run_id: int, position: int) -> dict[str, Any]:
    row, extra = _split(m, _MEASUREMENT_COLUMNS, nested={"samples_ms"})
    return {"run_id": run_id, "target_run_id": target_run_id, "position": position, **row, "extra": extra}


def comparison_row(c: Comparison, *, run_id: int, target_run_id: int, position: int) -> dict[str, Any]:
    row, extra = _split(c, _COMPARISON_COLUMNS)
    return {"run_id": run_id, "target_run_id": target_run_id, "position": position, **row, "extra": extra}


def artifact_row(a: ArtifactInfo, *, run_id: int, position: int) -> dict[str, Any]:
    row, extra = _split(a, ("id",) + _ARTIFACT_COLUMNS)
    row["artifact"] = row.pop("id")
    return {"run_id": run_id, "position": position, **row, "extra": extra}


# --- rows -> objects ----------------------------------------------------------------------------------------
def measurement_from(row: Any, samples_ms: list[float]) -> Measurement:
    fields = _merged(row, _MEASUREMENT_COLUMNS, row.extra)
    fields["output_checksums"] = fields["output_checksums"] or {}
    return Measurement(**fields, samples_ms=samples_ms)


def comparison_from(row: Any) -> Comparison:
    fields = _merged(row, _COMPARISON_COLUMNS, row.extra)
    fields["metric"] = fields["metric"] or {}
    return Comparison(**fields)


def artifact_from(row: Any) -> ArtifactInfo:
    fields = _merged(row, _ARTIFACT_COLUMNS, row.extra)
    fields["fidelity"] = fields["fidelity"] or {}
    return ArtifactInfo(id=row.artifact, **fields)


def _merged(row: Any, columns: tuple[str, ...], extra: dict[str, Any] | None) -> dict[str, Any]:
    """Column values, overridden by `extra` (where non-finite floats and unknown fields were kept)."""
    return {**{name: getattr(row, name) for name in columns}, **(extra or {})}


def target_from(row: Any, measurements: list[Measurement], comparisons: list[Comparison]) -> TargetRun:
    extra = row.extra or {}
    agent = None
    if row.has_agent:
        agent = AgentResult(
            protocol=row.agent_protocol,
            started_at=row.agent_started_at,
            finished_at=row.agent_finished_at,
            facts_before=DeviceFacts.model_validate(row.facts_before),
            facts_after=DeviceFacts.model_validate(row.facts_after) if row.facts_after else None,
            measurements=measurements,
            request=row.request or {},
            **(extra.get("agent") or {}),
        )
    return TargetRun(
        target=row.target,
        kind=row.kind,
        emulated=row.emulated,
        status=row.status,
        error=row.error,
        agent=agent,
        comparisons=comparisons,
        estimates=row.estimates or {},
        stage_seconds=row.stage_seconds or {},
        **(extra.get("target") or {}),
    )


def run_from(row: Any, artifacts: list[ArtifactInfo], targets: list[TargetRun]) -> DeployResult:
    return DeployResult(
        protocol=row.protocol,
        recipe=row.recipe,
        recipe_path=row.recipe_path,
        recipe_sha256=row.recipe_sha256,
        git_revision=row.git_revision,
        task=row.task,
        started_at=row.started_at,
        finished_at=row.finished_at,
        tool_versions=row.tool_versions or {},
        benchmark=row.benchmark or {},
        artifacts=artifacts,
        runs=targets,
        ok=row.ok,
        **(row.extra or {}),
    )
