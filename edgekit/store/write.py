"""Writing a run: every row of one deploy (target runs, artifacts, comparisons, measurements, samples),
inserted inside the caller's transaction.
"""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from edgekit.results import DeployResult
from edgekit.store import codec
from edgekit.store.schema import artifacts, comparisons, measurements, runs, samples, target_runs


def _recorder() -> str | None:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):  # no passwd entry in some containers
        return socket.gethostname() or None


def insert_run(conn: Connection, result: DeployResult) -> int:
    """All rows of one deploy, inside the caller's transaction."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    run_id = conn.execute(
        runs.insert().values(codec.run_row(result, recorded_at=now, recorded_by=_recorder()))
    ).inserted_primary_key[0]
    if result.artifacts:
        conn.execute(
            artifacts.insert(),
            [codec.artifact_row(a, run_id=run_id, position=i) for i, a in enumerate(result.artifacts)],
        )
    for position, target_run in enumerate(result.runs):
        _insert_target(conn, target_run, run_id=run_id, position=position)
    return int(run_id)


def _insert_target(conn: Connection, target_run: Any, *, run_id: int, position: int) -> None:
    tr_id = conn.execute(
        target_runs.insert().values(codec.target_row(target_run, run_id=run_id, position=position))
    ).inserted_primary_key[0]
    if target_run.comparisons:
        conn.execute(
            comparisons.insert(),
            [
                codec.comparison_row(c, run_id=run_id, target_run_id=tr_id, position=i)
                for i, c in enumerate(target_run.comparisons)
            ],
        )
    found = target_run.agent.measurements if target_run.agent else []
    if not found:
        return
    rows = [
        codec.measurement_row(m, run_id=run_id, target_run_id=tr_id, position=i) for i, m in enumerate(found)
    ]
    ids = (
        conn.execute(measurements.insert().returning(measurements.c.id, sort_by_parameter_order=True), rows)
        .scalars()
        .all()
    )
    conn.execute(
        samples.insert(),
        [
            {"measurement_id": mid, "run_id": run_id, "count": len(m.samples_ms), "samples_ms": m.samples_ms}
            for mid, m in zip(ids, found)
        ],
    )
