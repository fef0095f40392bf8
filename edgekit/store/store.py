"""The results store: open (and migrate) a database, record deploys, read runs back.

SQLite by default (a file under the user's data directory), any SQLAlchemy URL otherwise. One deploy is
written in one transaction, so a crash mid-write leaves the store exactly as it was before that deploy.
SQLite runs in WAL mode with a busy timeout and takes its write lock at BEGIN (`BEGIN IMMEDIATE`), so several
runners recording at once queue up instead of failing or corrupting the file. A SQLite store this user can
read but not write (another user's, a read-only mount) is opened read-only by the commands that only read.
A run's rows are written by write.py and read back by read.py; the engines and SQLite's connection settings are
engine.py; where the store is and the checks before connecting, location.py; a database error in the user's
words, failures.py; opening (and migrating) a store from a URL, opening.py; this module keeps the Store API.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.exc import SQLAlchemyError

from edgekit.errors import DamagedRunError, UnknownRunError
from edgekit.results import DeployResult
from edgekit.store import migrations
from edgekit.store.failures import _failure
from edgekit.store.location import (
    _shown,
    _sqlite_file,
    command_url,
)
from edgekit.store.read import (
    _artifact_problems,
    _filtered,
    _load,
    _measurement_counts,
    _target_rows,
    host_left_out,
)
from edgekit.store.schema import runs, storable_id
from edgekit.store.write import insert_run

NUL_STORED_AS = "\ufffd"  # what a NUL byte in a text is stored as (the replacement character: one character)


def without_nul(result: DeployResult) -> DeployResult:
    """`result` with every NUL byte in its texts replaced by NUL_STORED_AS (itself when it has none)."""
    if "\\u0000" not in result.model_dump_json():
        return result

    def clean(node: Any) -> Any:
        if isinstance(node, str):
            return node.replace("\x00", NUL_STORED_AS)
        if isinstance(node, dict):
            return {clean(k): clean(v) for k, v in node.items()}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    return DeployResult.model_validate(clean(result.model_dump()))


IMPORT_LOCK = 4242002  # PostgreSQL's advisory lock of record_new (4242001: opening.py's first open)


def _same(conn: Connection, result: DeployResult) -> int | None:
    """The stored run with RESULT's content: the same recipe, start, finish and targets narrow the runs read, then
    the whole result is compared (a canonical JSON digest; a later `runs accept` mark left out), so another
    runner's run at the same second with other samples or host facts is another run."""
    query = select(runs.c.id).where(
        runs.c.recipe == result.recipe,
        runs.c.recipe_sha256 == result.recipe_sha256,
        runs.c.started_at == result.started_at,
        runs.c.finished_at.is_(None)
        if result.finished_at is None
        else runs.c.finished_at == result.finished_at,
    )
    ids = [row.id for row in conn.execute(query)]
    targets = _target_rows(conn, ids)
    wanted = [t.target for t in result.runs]
    ids = [i for i in ids if [t.target for t in targets.get(i, [])] == wanted]
    if not ids:
        return None
    found, _damaged = _load(conn, ids)
    digest = content_digest(result)
    return next((i for i in ids if i in found and content_digest(found[i]) == digest), None)


def content_digest(result: DeployResult) -> str:
    """sha256 of the result's canonical JSON (sorted keys), without the `accepted` marks `runs accept` adds."""
    data = result.model_dump(mode="json")
    data.pop("accepted", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class RunSummary:
    """One line of `edgekit runs`."""

    id: int
    recipe: str
    started_at: str
    finished_at: str | None
    ok: bool
    git_revision: str | None
    recorded_by: str | None
    targets: list[str] = field(default_factory=list)
    emulated_targets: list[str] = field(default_factory=list)
    measurements: int = 0
    failed: int = 0
    unmeasured: int = 0  # left unmeasured by a Ctrl-C or SIGTERM (recorded as not run; not failures)
    skipped: int = 0  # never tried: their runtime is not installed on the device (its target failed for it)
    failed_targets: list[str] = field(default_factory=list)  # targets that failed (at connect, or later)
    interrupted_targets: list[str] = field(default_factory=list)  # stopped by Ctrl-C or SIGTERM
    left_out: list[str] = field(
        default_factory=list
    )  # the host, not measured: every device failed before (no failure)
    artifact_problems: list[str] = field(default_factory=list)  # 'ncnn-int8: gate', 'mnn-fp32: failed'


@dataclass(frozen=True)
class StoredRun:
    """A recorded deploy with its store id and time (epoch seconds), as the report reads history."""

    id: int
    started_ts: float
    result: DeployResult


class Store:
    """A connection to one results database (use as a context manager, or call close())."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.url = _shown(engine.url.render_as_string(hide_password=False))
        self.command_url = command_url(engine.url.render_as_string(hide_password=False))  # for `--store URL`
        self.path = _sqlite_file(engine.url.render_as_string(hide_password=False))  # None: not a SQLite file
        self.skipped: dict[int, str] = {}  # runs left out of what was read: a stored value did not read back

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect().execution_options(edgekit_write=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A read transaction; a database error in it (a damaged file, a server gone) is a StoreError."""
        try:
            with self.engine.connect() as conn, conn.begin():
                yield conn
        except SQLAlchemyError as exc:
            raise _failure(exc, "cannot read the results store", self.url, self.path) from exc

    # --- writing -------------------------------------------------------------------------------------------
    def record(self, result: DeployResult) -> int:
        """Store one deploy (target runs, measurements, samples, comparisons, artifacts); return its id. A NUL
        byte in a text (a device's stderr in an error) is stored as U+FFFD: PostgreSQL's text cannot hold one, and
        the whole run was lost there ("cannot contain NUL (0x00) bytes"); SQLite stores the same."""
        try:
            with self._write() as conn:
                return insert_run(conn, without_nul(result))
        except SQLAlchemyError as exc:
            raise _failure(
                exc,
                f"could not record the run of {result.recipe!r}",
                self.url,
                self.path,
                hint="check the database is reachable and writable",
            ) from exc

    def accept(
        self,
        run_id: int,
        *,
        target: str | None = None,
        artifact: str | None = None,
        keys: Iterable[tuple[str, str, int]] | None = None,
    ) -> dict[str, Any]:
        """Record run `run_id` as the expected new level of `artifact` on `target` (None: every one), so
        regression detection takes the regression's runs up to it as the baseline of the runs after it
        (report/baseline.accepted) instead of flagging it for the six weeks of its lookback. A change the
        fingerprint does not see (a kernel, a board swapped for the same model, edgekit's agent) had no other way
        out. Kept in the run's `extra` JSON under 'accepted' (read back as DeployResult's extra field): no schema
        change, so an older edgekit still opens the store; the one write to a run after it was recorded. `keys`:
        the (target, artifact, threads) flagged in the run when it was accepted (`edgekit runs accept` records
        them, regression.regressed_keys), so a key that was not flagged keeps its history."""
        from datetime import UTC, datetime

        from edgekit.store.write import _recorder

        mark = {
            "target": target,
            "artifact": artifact,
            **({"keys": [list(k) for k in keys]} if keys is not None else {}),
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            "by": _recorder(),
        }
        try:
            with self._write() as conn:
                row = conn.execute(select(runs.c.extra).where(runs.c.id == run_id).with_for_update()).first()
                if row is None:
                    raise UnknownRunError(
                        f"no run with id {run_id}", where=self.url, hint="`edgekit runs` lists run ids"
                    )
                extra = dict(row.extra or {})
                extra["accepted"] = [*(extra.get("accepted") or []), mark]
                conn.execute(update(runs).where(runs.c.id == run_id).values(extra=extra))
        except SQLAlchemyError as exc:
            raise _failure(
                exc,
                f"could not record run {run_id} as accepted",
                self.url,
                self.path,
                hint="check the database is reachable and writable",
            ) from exc
        return mark

    # --- reading -------------------------------------------------------------------------------------------
    def runs(
        self,
        *,
        limit: int | None = 20,
        recipe: str | None = None,
        target: str | None = None,
        since: float | None = None,
    ) -> list[RunSummary]:
        """Recent runs, newest first."""
        query = select(runs).order_by(runs.c.started_ts.desc(), runs.c.id.desc())
        query = _filtered(query, recipe=recipe, target=target, since=since)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()
            ids = [r.id for r in rows]
            targets = _target_rows(conn, ids)
            counts = _measurement_counts(conn, ids)
            problems = _artifact_problems(conn, ids)
        return [
            RunSummary(
                id=r.id,
                recipe=r.recipe,
                started_at=r.started_at,
                finished_at=r.finished_at,
                ok=r.ok,
                git_revision=r.git_revision,
                recorded_by=r.recorded_by,
                targets=[t.target for t in targets.get(r.id, [])],
                emulated_targets=[t.target for t in targets.get(r.id, []) if t.emulated],
                measurements=counts.get(r.id, (0, 0, 0, 0))[0],
                failed=counts.get(r.id, (0, 0, 0, 0))[1],
                unmeasured=counts.get(r.id, (0, 0, 0, 0))[2],
                skipped=counts.get(r.id, (0, 0, 0, 0))[3],
                failed_targets=[
                    t.target
                    for t in targets.get(r.id, [])
                    if t.failed and not host_left_out(targets.get(r.id, []), t)
                ],
                left_out=[t.target for t in targets.get(r.id, []) if host_left_out(targets.get(r.id, []), t)],
                interrupted_targets=[t.target for t in targets.get(r.id, []) if t.interrupted],
                artifact_problems=problems.get(r.id, []),
            )
            for r in rows
        ]

    def find_same(self, result: DeployResult) -> int | None:
        """The id of a stored run with this result's content (the same file imported again), or None."""
        with self._read() as conn:
            return _same(conn, without_nul(result))

    def record_new(self, result: DeployResult) -> tuple[int, bool]:
        """(the id of the stored run with this content, False) or (the id it is recorded as, True): looked for and
        recorded in one write transaction (SQLite's BEGIN IMMEDIATE; on PostgreSQL a transaction lock taken by
        every record_new), so imports of one file at once record it once (each looked in one transaction and
        recorded in another: two to four copies)."""
        result = without_nul(result)
        try:
            with self._write() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": IMPORT_LOCK})
                same = _same(conn, result)
                if same is not None:
                    return same, False
                return insert_run(conn, result), True
        except SQLAlchemyError as exc:
            raise _failure(
                exc,
                f"could not record the run of {result.recipe!r}",
                self.url,
                self.path,
                hint="check the database is reachable and writable",
            ) from exc

    def load(self, run_id: int) -> DeployResult:
        ids = [run_id] if storable_id(run_id) else []
        found: dict[int, DeployResult] = {}
        if ids:
            with self._read() as conn:
                found, damaged = _load(conn, ids)
            if run_id in damaged:
                raise DamagedRunError(
                    f"run {run_id} cannot be read back: {damaged[run_id]}",
                    where=self.url,
                    hint="a value in the store was changed outside edgekit or the file is damaged; the other runs "
                    "read as before (`edgekit runs` lists them); restore the store from a backup to get this one back",
                )
        if run_id not in found:
            raise UnknownRunError(
                f"no run with id {run_id}", where=self.url, hint="`edgekit runs` lists run ids"
            )
        return found[run_id]

    def load_many(self, run_ids: Iterable[int]) -> dict[int, DeployResult]:
        """Whole deploy results by id, read with one query per table (not per run). An id beyond the id column's
        64 bits names no run (the database refused it: an internal OverflowError)."""
        ids = [i for i in run_ids if storable_id(i)]
        if not ids:
            return {}
        with self._read() as conn:
            found, damaged = _load(conn, ids)
        self._skipped(damaged)
        return found

    def history(
        self,
        *,
        since: float | None = None,
        recipe: str | None = None,
        target: str | None = None,
        limit: int | None = None,
    ) -> list[StoredRun]:
        """Runs matching the filters (the newest `limit` of them), oldest first, fully loaded."""
        query = _filtered(select(runs.c.id, runs.c.started_ts), recipe=recipe, target=target, since=since)
        query = query.order_by(runs.c.started_ts.desc(), runs.c.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            rows = conn.execute(query).all()[::-1]
            loaded, damaged = _load(conn, [r.id for r in rows]) if rows else ({}, {})
        self._skipped(damaged)
        return [StoredRun(r.id, r.started_ts, loaded[r.id]) for r in rows if r.id in loaded]

    def _skipped(self, damaged: dict[int, str]) -> None:
        """Runs left out of what is read because a stored value does not read back: said on stderr, once each
        (a report or a nightly goes on with the others rather than failing on one edited row)."""
        for run_id, why in sorted(damaged.items()):
            if run_id not in self.skipped:
                self.skipped[run_id] = why
                print(
                    f"edgekit: run {run_id} left out: {why} (in {self.url}; `edgekit runs show {run_id}` says the "
                    "same; the other runs are read as before)",
                    file=sys.stderr,
                    flush=True,
                )

    def recipes(self, *, since: float | None = None) -> list[str]:
        """Names of the recipes with runs (since `since`), sorted."""
        query = _filtered(select(runs.c.recipe).distinct(), recipe=None, target=None, since=since)
        with self._read() as conn:
            return sorted(conn.execute(query).scalars())

    def schema_version(self) -> int:
        with self._read() as conn:
            return migrations.current_version(conn)
