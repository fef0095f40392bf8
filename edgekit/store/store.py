"""The results store: open (and migrate) a database, record deploys, read runs back.

SQLite by default (a file under the user's data directory), any SQLAlchemy URL otherwise. One deploy is
written in one transaction, so a crash mid-write leaves the store exactly as it was before that deploy.
SQLite runs in WAL mode with a busy timeout and takes its write lock at BEGIN (`BEGIN IMMEDIATE`), so several
runners recording at once queue up instead of failing or corrupting the file. A SQLite store this user can
read but not write (another user's, a read-only mount) is opened read-only by the commands that only read.
A run's rows are written by write.py and read back by read.py; the engines and SQLite's connection settings are
engine.py; where the store is and the checks before connecting, location.py; a database error in the user's
words, failures.py; this module keeps the Store API and opening.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from edgekit.errors import DamagedRunError, StoreError, StorePathError, UnknownRunError
from edgekit.results import DeployResult
from edgekit.store import migrations
from edgekit.store.engine import make_engine, read_only_engine
from edgekit.store.failures import _failure, _unwritable, _user
from edgekit.store.location import (
    _check_sqlite_path,
    _check_url,
    _mask,
    _shown,
    _sqlite_file,
    command_url,
    resolve_url,
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
        """Store one deploy (target runs, measurements, samples, comparisons, artifacts); return its id."""
        try:
            with self._write() as conn:
                return insert_run(conn, result)
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
                measurements=counts.get(r.id, (0, 0, 0))[0],
                failed=counts.get(r.id, (0, 0, 0))[1],
                unmeasured=counts.get(r.id, (0, 0, 0))[2],
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
        """The id of a stored run that is this result (same recipe digest, start and finish time, targets), so
        importing the same JSON twice records it once."""
        query = select(runs.c.id).where(
            runs.c.recipe == result.recipe,
            runs.c.recipe_sha256 == result.recipe_sha256,
            runs.c.started_at == result.started_at,
            runs.c.finished_at.is_(None)
            if result.finished_at is None
            else runs.c.finished_at == result.finished_at,
        )
        with self._read() as conn:
            ids = [row.id for row in conn.execute(query)]
            targets = _target_rows(conn, ids)
        wanted = [t.target for t in result.runs]
        return next((i for i in ids if [t.target for t in targets.get(i, [])] == wanted), None)

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


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """Open the store at `url` (see resolve_url), creating or migrating it forward to the current schema. With
    `create=False` (commands that only read) a SQLite file the user named must exist: a typo in `--store` is
    said, not answered with "no runs" from a new empty store left behind at the typo; and a SQLite store this
    user can read but not write (another user's, a read-only mount) is opened read-only."""
    if (
        url is not None and not url.strip()
    ):  # a script's empty variable: it meant the default store in silence
        raise StorePathError(
            "empty: give a store file or URL",
            where="--store ''",
            hint="pass --store PATH.sqlite or postgresql://USER@HOST/DB; leave --store out for the default store "
            "(EDGEKIT_STORE, else the data dir's results.sqlite)",
        )
    resolved = resolve_url(url)
    _check_url(resolved)
    named = bool(url or os.environ.get("EDGEKIT_STORE"))
    _check_sqlite_path(resolved, must_exist=not create and named, create=create)
    path = _sqlite_file(resolved)
    if not create and path is not None and path.is_file():
        blocked = _unwritable(path)
        if blocked:
            return _open_read_only(resolved, path, blocked)
    try:
        engine = make_engine(resolved)
    except (
        ImportError
    ) as exc:  # `mysql://`: SQLAlchemy has the dialect, this machine not its driver: the URL's
        raise StorePathError(
            f"not a store URL edgekit can open: no driver for {make_url(resolved).drivername} is installed "
            f"({_mask(str(exc))[:200]})",
            where=_shown(resolved),
            hint="edgekit keeps results in SQLite (a file path) or PostgreSQL (postgresql://USER@HOST/DB, "
            "psycopg 3 installed by make setup)",
        ) from None
    except (ArgumentError, SQLAlchemyError, OSError) as exc:
        raise StoreError(
            f"cannot open the results store: {_mask(str(exc))}",
            where=_shown(resolved),
            hint="pass --store sqlite:///PATH or postgresql://USER@HOST/DB (psycopg 3), or set EDGEKIT_STORE",
        ) from exc
    store = Store(engine)
    try:
        with store._write() as conn:
            if engine.dialect.name == "postgresql":  # serialise concurrent first opens on a shared server
                conn.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
            migrations.migrate(conn, where=store.url)
    except SQLAlchemyError as exc:
        store.close()
        raise _failure(
            exc,
            "cannot open or migrate the results store",
            store.url,
            store.path,
            hint="check the URL, that the server is up and the file is writable",
        ) from exc
    except StoreError:
        store.close()
        raise
    return store


def _open_read_only(url: str, path: Path, blocked: str) -> Store:
    """The store at `path`, which this user cannot write (`blocked` says what), for commands that only read:
    opened with SQLite's mode=ro, without the WAL switch, the migration and its write lock, which all write
    (and need the folder writable for the -wal and -shm files). A store that still needs migrating is named."""
    store = Store(read_only_engine(url, path))
    try:
        with store._read() as conn:
            migrations.refuse_foreign(conn, where=store.url)
            missing = migrations.pending(conn, where=store.url)
    except StoreError:
        store.close()
        raise
    if missing:
        store.close()
        raise StoreError(
            f"the results store is at schema version {missing[0] - 1} and must be migrated to "
            f"{missing[-1]} before this edgekit can read it, but this user ({_user()}) cannot write {blocked}",
            where=str(path),
            hint=f"run `edgekit runs --store {shlex.quote(str(path))}` once as a user who can write it (its "
            f"owner), or make {blocked} writable by this user: SQLite writes its -wal and -shm files beside "
            "the store",
        )
    return store


def record(result: DeployResult, url: str | None = None) -> int:
    """Record one deploy in the store at `url` (default store when None); return the run id."""
    with open_store(url) as store:
        return store.record(result)
