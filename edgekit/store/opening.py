"""Opening the results store from a URL: the checks before connecting, creating or migrating it forward, and a
SQLite file this user cannot write opened read-only for the commands that only read. `record` is the one-call
form a deploy uses."""

from __future__ import annotations

import fcntl
import os
import shlex
import sqlite3
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from edgekit.errors import StoreError, StorePathError
from edgekit.results import DeployResult
from edgekit.store import migrations
from edgekit.store.engine import BUSY_TIMEOUT_S, _sqlite_begin, make_engine, read_only_engine
from edgekit.store.failures import _failure, _unwritable, _user
from edgekit.store.location import (
    SQLITE_MAGIC,
    _check_sqlite_path,
    _check_url,
    _mask,
    _shown,
    _sqlite_file,
    resolve_url,
)
from edgekit.store.store import Store


def open_store(url: str | None = None, *, create: bool = True) -> Store:
    """Open the store at `url` (see resolve_url), creating or migrating it forward to the current schema. With
    `create=False` (commands that only read) a SQLite file the user named must exist: a typo in `--store` is
    said, not answered with "no runs" from a new empty store left behind at the typo; and a SQLite store this
    user can read but not write (another user's, a read-only mount) is opened read-only. A store file this open
    created and could not initialise (a full disk) is removed again."""
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
    made = path is not None and not path.exists()  # a file the open below creates: removed if not initialised
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
        if not create and _current(store):  # nothing to migrate: read without the write lock
            return store
        with store._write() as conn:
            if engine.dialect.name == "postgresql":  # serialise concurrent first opens on a shared server
                conn.execute(text("SELECT pg_advisory_xact_lock(4242001)"))
            migrations.migrate(conn, where=store.url)
    except SQLAlchemyError as exc:
        store.close()
        as_is = (
            _read_as_is(resolved, path) if not create and path is not None and _disk_trouble(exc) else None
        )
        if as_is is not None:
            return as_is
        failure = _failure(
            exc,
            "cannot open or migrate the results store",
            store.url,
            store.path,
            hint="check the URL, that the server is up and the file is writable",
        )
        if made and path is not None:
            _remove_unmade(path)
        raise failure from exc
    except StoreError:
        store.close()
        if made and path is not None:
            _remove_unmade(path)
        raise
    return store


def _remove_unmade(path: Path) -> None:
    """Remove the store file this open created and could not initialise (a full disk): left behind, the empty
    file was refused by the next command ("an empty file (0 bytes) ... restore it from a backup"). Only while
    it is still empty, nothing is in its -wal and no other process holds one of SQLite's locks on it (taken
    here at once, without SQLite, which needs room for a journal to lock: another process creating the same
    store keeps it)."""
    wal = Path(f"{path}-wal")
    try:
        if path.stat().st_size or (wal.exists() and wal.stat().st_size):
            return
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, _SQLITE_LOCK_BYTES, _SQLITE_PENDING_BYTE)
        if os.fstat(fd).st_size == 0:
            for leftover in (path, wal, Path(f"{path}-shm"), Path(f"{path}-journal")):
                leftover.unlink(missing_ok=True)
    except OSError:
        pass  # another process has it locked: its own
    finally:
        os.close(fd)


_SQLITE_PENDING_BYTE = 0x40000000  # SQLite's lock bytes: PENDING, RESERVED and the 510 SHARED ones after it
_SQLITE_LOCK_BYTES = 512


def _current(store: Store) -> bool:
    """Whether the store is at this edgekit's schema, read without the write lock: the commands that only read
    then take no lock (they waited up to 60 s for another process's, and failed on a full disk). A database
    another program wrote, or a store newer than this edgekit, is refused as migrate refuses it."""
    with store.engine.connect() as conn, conn.begin():
        migrations.refuse_foreign(conn, where=store.url)
        return not migrations.pending(conn, where=store.url)


def _disk_trouble(exc: SQLAlchemyError) -> bool:
    """SQLite could not write beside the store to read it (a full disk: no room to size the -shm file)."""
    orig = getattr(exc, "orig", None)
    name = str(getattr(orig, "sqlite_errorname", ""))
    return name.startswith(("SQLITE_IOERR", "SQLITE_FULL")) or any(
        phrase in str(orig) for phrase in ("disk I/O error", "database or disk is full")
    )


def _all_in_file(path: Path) -> bool:
    """Every committed run is in the store's file: it is a SQLite database and its -wal is absent or empty (the
    last writer closed it, checkpointed), so the file alone may be read as it is."""
    wal = Path(f"{path}-wal")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
        return head == SQLITE_MAGIC and (not wal.exists() or wal.stat().st_size == 0)
    except OSError:
        return False


def _immutable_engine(url: str, path: Path) -> Engine:
    """An engine reading `path` as it is (mode=ro, immutable: no -shm, no lock), for _all_in_file's store."""
    uri = f"file:{quote(str(path))}?mode=ro&immutable=1"

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
        conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
        return conn

    engine = create_engine(url, creator=connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _read_as_is(url: str, path: Path) -> Store | None:
    """The store at `path` read as its file is (immutable), for a command that only read on a full disk, where
    SQLite cannot size the -shm file it reads a WAL store through; None (the disk's error is said) unless
    every committed run is in the file and the store is current."""
    if not _all_in_file(path):
        return None
    store = Store(_immutable_engine(url, path))
    try:
        if _current(store):
            return store
    except (SQLAlchemyError, StoreError):
        pass
    store.close()
    return None


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
