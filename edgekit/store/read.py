"""Reading runs back: the run filters, the per-run summaries (targets, failures, measurement counts) and
whole deploy results rebuilt from their rows, one query per table.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, exists, func, select

from edgekit.results import GATE_MISSED, NOT_RUN_INTERRUPTED, DeployResult
from edgekit.store import codec
from edgekit.store.schema import artifacts, comparisons, measurements, runs, samples, target_runs


def _filtered(query: Any, *, recipe: str | None, target: str | None, since: float | None) -> Any:
    if recipe:
        query = query.where(runs.c.recipe == recipe)
    if since is not None:
        query = query.where(runs.c.started_ts >= since)
    if target:
        query = query.where(exists().where(target_runs.c.run_id == runs.c.id, target_runs.c.target == target))
    return query


@dataclass(frozen=True)
class TargetRow:
    """One target of a stored run, as the run list shows it."""

    target: str
    emulated: bool
    failed: bool
    interrupted: bool  # TargetRun.interrupted: kept in the row's `extra` (no column), read in Python: a JSON
    # path reads differently on SQLite and PostgreSQL
    has_agent: bool = True  # the agent ran (a target that failed before measuring has none)


def host_left_out(rows: list[TargetRow], row: TargetRow) -> bool:
    """The host, not measured because every device of the deploy failed before measuring (its figures are only
    their reference; deploy said "nothing is wrong with it"): no failure of its own (report.regression says the
    same of a whole stored run)."""
    others = [r for r in rows if r is not row]
    skipped = row.target == "host" and row.failed and not row.has_agent  # measured, or failed on its own: no
    return skipped and bool(others) and all(r.failed and not r.has_agent for r in others)


def _target_rows(conn: Connection, ids: list[int]) -> dict[int, list[TargetRow]]:
    """Each run's targets, in their order, read with one query."""
    found: dict[int, list[TargetRow]] = defaultdict(list)
    if ids:
        query = (
            select(
                target_runs.c.run_id,
                target_runs.c.target,
                target_runs.c.emulated,
                target_runs.c.status,
                target_runs.c.has_agent,
                target_runs.c.extra,
            )
            .where(target_runs.c.run_id.in_(ids))
            .order_by(target_runs.c.run_id, target_runs.c.position)
        )
        for row in conn.execute(query):
            interrupted = bool(((row.extra or {}).get("target") or {}).get("interrupted"))
            found[row.run_id].append(
                TargetRow(
                    row.target, bool(row.emulated), row.status == "failed", interrupted, bool(row.has_agent)
                )
            )
    return found


def _measurement_counts(conn: Connection, ids: list[int]) -> dict[int, tuple[int, int, int, int]]:
    """Per run: (measurements, failed, left unmeasured by a Ctrl-C or SIGTERM: not failures, skipped: their
    runtime not installed on the device, not failures of the model either)."""
    if not ids:
        return {}
    stopped = measurements.c.error.startswith(NOT_RUN_INTERRUPTED, autoescape=True)
    skipped = measurements.c.status == "skipped"
    failed = func.sum(
        ((measurements.c.status != "ok") & ~skipped & ~func.coalesce(stopped, False)).cast(
            measurements.c.threads.type
        )
    )
    unmeasured = func.sum(((measurements.c.status != "ok") & stopped).cast(measurements.c.threads.type))
    query = (
        select(
            measurements.c.run_id,
            func.count(),
            failed,
            unmeasured,
            func.sum(skipped.cast(measurements.c.threads.type)),
        )
        .where(measurements.c.run_id.in_(ids))
        .group_by(measurements.c.run_id)
    )
    return {
        row[0]: (int(row[1]), int(row[2] or 0), int(row[3] or 0), int(row[4] or 0))
        for row in conn.execute(query)
    }


def _artifact_problems(conn: Connection, ids: list[int]) -> dict[int, list[str]]:
    """Per run: the artifacts that failed to convert or missed a fidelity gate, as `runs` says why a run is not ok
    ('ncnn-int8: gate', 'mnn-fp32: failed')."""
    if not ids:
        return {}
    cols = artifacts.c
    query = (
        select(cols.run_id, cols.artifact, cols.status, cols.gates_passed, cols.error)
        .where(cols.run_id.in_(ids) & ((cols.status != "ok") | ~cols.gates_passed))
        .order_by(cols.run_id, cols.position)
    )
    found: dict[int, list[str]] = defaultdict(list)
    for row in conn.execute(query):
        # a missed gate is recorded status 'failed' too, its error saying so; a failed conversion has no gate
        gate = (row.error or "").startswith(GATE_MISSED) or (row.status == "ok" and not row.gates_passed)
        found[row.run_id].append(f"{row.artifact}: {'gate' if gate else 'failed'}")
    return dict(found)


class _Damaged(Exception):
    """A stored value of one table that does not read back (changed outside edgekit, a damaged file)."""

    def __init__(self, table: str, exc: Exception) -> None:
        super().__init__(f"its {table} rows cannot be read back: {_why(exc)}")


def _why(exc: Exception) -> str:
    """One line: pydantic's own message spans four with a web link."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError) and exc.errors():
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        return f"{exc.title} {field}: {first['msg']}" + (
            f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        )
    return f"{type(exc).__name__}: {exc}"


# what a value edited or damaged outside edgekit raises as it is decoded: bad JSON (ValueError), a row the
# result models refuse (pydantic's ValidationError is a ValueError), a missing key or a wrong type
_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError)


def _load(conn: Connection, ids: list[int]) -> tuple[dict[int, DeployResult], dict[int, str]]:
    """The runs by id, and the runs that could not be read back with why ({id: "its samples rows cannot be read
    back: JSONDecodeError: ..."}): one damaged row costs its own run, never the others read with it."""
    try:
        return _load_all(conn, ids), {}
    except _Damaged as exc:
        if len(ids) == 1:
            return {}, {ids[0]: str(exc)}
    loaded: dict[int, DeployResult] = {}
    damaged: dict[int, str] = {}
    for run_id in ids:  # one at a time, to find which run it was
        try:
            loaded.update(_load_all(conn, [run_id]))
        except _Damaged as exc:
            damaged[run_id] = str(exc)
    return loaded, damaged


def _load_all(conn: Connection, ids: list[int]) -> dict[int, DeployResult]:
    by_run: dict[str, dict[int, list[Any]]] = {}
    for name, table in (
        ("artifacts", artifacts),
        ("targets", target_runs),
        ("comparisons", comparisons),
        ("measurements", measurements),
    ):
        grouped: dict[int, list[Any]] = defaultdict(list)
        query = select(table).where(table.c.run_id.in_(ids)).order_by(table.c.run_id, table.c.position)
        try:
            for row in conn.execute(query):
                grouped[row.run_id].append(row)
        except _UNREADABLE as exc:
            raise _Damaged(name, exc) from exc
        by_run[name] = grouped
    try:
        sample_rows = conn.execute(
            select(samples.c.measurement_id, samples.c.samples_ms).where(samples.c.run_id.in_(ids))
        )
        samples_of = {row.measurement_id: row.samples_ms for row in sample_rows}
    except _UNREADABLE as exc:
        raise _Damaged("samples", exc) from exc
    out = {}
    try:
        run_rows = list(conn.execute(select(runs).where(runs.c.id.in_(ids))))
    except _UNREADABLE as exc:
        raise _Damaged("runs", exc) from exc
    for row in run_rows:
        try:
            out[row.id] = _assemble(row, by_run, samples_of)
        except _UNREADABLE as exc:
            raise _Damaged("stored", exc) from exc
    return out


def _assemble(
    row: Any, by_run: dict[str, dict[int, list[Any]]], samples_of: dict[int, list[float]]
) -> DeployResult:
    meas_by_target: dict[int, list[Any]] = defaultdict(list)
    for m in by_run["measurements"][row.id]:
        meas_by_target[m.target_run_id].append(codec.measurement_from(m, samples_of.get(m.id, [])))
    comp_by_target: dict[int, list[Any]] = defaultdict(list)
    for c in by_run["comparisons"][row.id]:
        comp_by_target[c.target_run_id].append(codec.comparison_from(c))
    targets = [
        codec.target_from(t, meas_by_target[t.id], comp_by_target[t.id]) for t in by_run["targets"][row.id]
    ]
    arts = [codec.artifact_from(a) for a in by_run["artifacts"][row.id]]
    return codec.run_from(row, arts, targets)
