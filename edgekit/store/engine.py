"""The database engines: SQLite's connection settings (WAL, a busy timeout, the write lock taken at BEGIN, the WAL
switch retried) or PostgreSQL's connect timeout, and a read-only engine for a SQLite store this user cannot write."""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url

BUSY_TIMEOUT_S = 60.0


def read_only_engine(url: str, path: Path) -> Engine:
    """An engine that opens `path` read-only (mode=ro; see _connect_read_only)."""
    engine = create_engine(url, creator=lambda: _connect_read_only(path))
    event.listen(engine, "begin", _sqlite_begin)
    return engine


PG_CONNECT_TIMEOUT_S = 10  # an unreachable server is named in seconds, not after the kernel's TCP retries


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if (
        parsed.drivername == "postgresql"
    ):  # the driver edgekit installs is psycopg 3, not SQLAlchemy's psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "postgresql":
        timeout = (
            {"connect_timeout": PG_CONNECT_TIMEOUT_S} if parsed.drivername == "postgresql+psycopg" else {}
        )
        return create_engine(parsed, pool_pre_ping=True, connect_args=timeout)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S})
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    cursor = dbapi_conn.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    _switch_to_wal(cursor)
    cursor.execute("PRAGMA synchronous = FULL")  # a committed run survives a power cut, not only a crash
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _switch_to_wal(cursor: Any) -> None:
    """`PRAGMA journal_mode = WAL`, retried while another process holds the lock: switching a new file's journal
    mode needs it exclusively and SQLite does not wait on the busy timeout there, so processes racing to create
    one store failed with 'database is locked' (tests/test_store.py's concurrent writers, now and then)."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to a store this user cannot write. SQLite reads a WAL-mode file through its -shm
    file: when neither side file exists (no writer has it open, so every committed run is in the file) and
    none can be created in the folder, the file is read as it is (immutable). A writer that starts during
    the read (its owner) may make that read fail as damaged: reading again shows the store as it is."""
    uri = f"file:{quote(str(path))}?mode=ro"
    side_files = Path(f"{path}-wal").exists() or Path(f"{path}-shm").exists()
    if _in_wal_mode(path) and not side_files and not os.access(path.parent, os.W_OK | os.X_OK):
        uri += "&immutable=1"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    return conn


def _in_wal_mode(path: Path) -> bool:
    """The file's header says WAL (its read and write versions, bytes 18 and 19, are 2)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[18:20] == b"\x02\x02"


QUIET_WAIT_S = 2.0  # a write lock held longer than this is said while waiting for it
WAIT_STEP_S = 0.2  # the wait for the write lock, in steps that a Ctrl-C or SIGTERM ends


def _sqlite_begin(conn: Connection) -> None:
    # A deferred BEGIN that later writes can fail at once with "database is locked" instead of waiting;
    # taking the write lock up front makes concurrent writers wait their turn.
    immediate = conn.get_execution_options().get("edgekit_write", False)
    if not immediate:
        conn.exec_driver_sql("BEGIN")
        return
    # Another process holding the lock (a nightly recording, sqlite3 with a transaction open) made a run wait up
    # to BUSY_TIMEOUT_S in silence: the wait is said after QUIET_WAIT_S. It is waited in short steps here, not in
    # SQLite's busy timeout: a signal's handler runs only between Python's steps, so a Ctrl-C or SIGTERM did nothing
    # for up to a minute while SQLite waited in C.
    conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(WAIT_STEP_S * 1000)}")
    start = time.monotonic()
    said = False
    try:
        while True:
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                return
            except Exception as exc:
                if "locked" not in str(exc) or time.monotonic() - start >= BUSY_TIMEOUT_S:
                    raise
            if not said and time.monotonic() - start >= QUIET_WAIT_S:
                said = True
                print(
                    "edgekit: another process holds the results store's write lock; waiting up to "
                    f"{BUSY_TIMEOUT_S:.0f} s (Ctrl-C to stop waiting)",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
