"""What went wrong with the store, in the user's words: a database error becomes a StoreError with the driver's
one-line reason, naming a damaged SQLite file (and how to get its runs back) or a file or folder this user cannot
write."""

from __future__ import annotations

import os
import pwd
import shlex
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from edgekit.errors import StoreError
from edgekit.store.location import _mask


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's reason on one line ("database disk image is malformed"), without the SQL statement, its
    parameters (a whole run's INSERT) and the link SQLAlchemy appends."""
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc).split("\n[SQL:", 1)[0].split("\n(Background", 1)[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _mask("; ".join(lines)[:300]) if lines else type(exc).__name__


def _sqlite_says(exc: SQLAlchemyError, codes: tuple[str, ...], phrases: tuple[str, ...]) -> bool:
    """Whether SQLite's error behind `exc` has one of these error names or says one of these phrases."""
    orig = getattr(exc, "orig", None)
    name = str(getattr(orig, "sqlite_errorname", ""))
    return name.startswith(codes) or any(phrase in str(orig) for phrase in phrases)


def _is_damaged(exc: SQLAlchemyError) -> bool:
    """SQLite says the file is corrupt (SQLITE_CORRUPT) or not a database (SQLITE_NOTADB, a mangled header)."""
    return _sqlite_says(
        exc,
        ("SQLITE_CORRUPT", "SQLITE_NOTADB"),
        ("database disk image is malformed", "file is not a database"),
    )


def _is_unwritable_error(exc: SQLAlchemyError) -> bool:
    """SQLite could not write the file or create its side files (SQLITE_READONLY, SQLITE_CANTOPEN)."""
    return _sqlite_says(
        exc, ("SQLITE_READONLY", "SQLITE_CANTOPEN"), ("readonly database", "unable to open database file")
    )


def _unwritable(path: Path) -> str | None:
    """What keeps this user from writing the SQLite store at `path`: 'the folder F', 'the file P' or both;
    None when nothing does. WAL mode creates the -wal and -shm files beside the store, so the folder counts."""
    blocked = []
    if path.exists() and not os.access(path, os.W_OK):
        blocked.append(f"the file {path}")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        blocked.append(f"the folder {path.parent}")
    return " or ".join(blocked) or None


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # no passwd entry in some containers
        return f"uid {os.geteuid()}"


def _failure(
    exc: SQLAlchemyError,
    doing: str,
    url: str,
    path: Path | None,
    hint: str = "check the database is reachable (the server up, the file readable)",
) -> StoreError:
    """The StoreError for a database error while `doing`: the driver's one-line reason; a damaged SQLite file
    is named, with how to get its runs back, instead of an internal error."""
    blocked = _unwritable(path) if path is not None and _is_unwritable_error(exc) else None
    if blocked:
        return StoreError(
            f"{doing}: {_reason(exc)}",
            where=str(path),
            hint=f"this user ({_user()}) cannot write {blocked}: SQLite writes its -wal and -shm files beside "
            "the store, so its folder must be writable as well as the file; make them writable, or pass "
            "--store a store this user can write",
        )
    if path is not None and _sqlite_says(exc, ("SQLITE_BUSY",), ("database is locked",)):
        from edgekit.store.engine import BUSY_TIMEOUT_S

        return StoreError(
            f"{doing}: another process held the store's write lock for {BUSY_TIMEOUT_S:.0f} s "
            f"({_reason(exc)})",
            where=str(path),
            hint="another edgekit (a nightly, a deploy, `runs import`) or a program with the file open (sqlite3, "
            f"a backup) holds it: `fuser {shlex.quote(str(path))}` names it; wait for it, then run again",
        )
    if path is not None and _sqlite_says(
        exc, ("SQLITE_FULL", "SQLITE_IOERR"), ("disk is full", "disk I/O error")
    ):
        from edgekit.paths import disk_full, disk_full_text

        if disk_full(path.parent):  # not the server's reachability: the disk under the file
            return StoreError(
                f"{doing}: {_reason(exc)}",
                where=str(path),
                hint=disk_full_text(path.parent) + " (the store's file and its -wal grow with every run)",
            )
    if path is not None and _is_damaged(exc):
        return StoreError(
            f"{doing}: the SQLite file is damaged ({_reason(exc)})", where=str(path), hint=_recover_hint(path)
        )
    return StoreError(f"{doing}: {_reason(exc)}", where=url, hint=hint)


def _recover_hint(path: Path) -> str:
    """Restore, or copy the readable rows into a new file. Debian 12's sqlite3 (3.40) fails every `.recover`
    with 'SQL logic error'; its `.dump` of a damaged file ends in ROLLBACK, which would load nothing."""
    quoted = shlex.quote(str(path))
    return (
        f"restore it from a backup, or copy what is still readable into a new store: `sqlite3 {quoted} .recover "
        f"| sqlite3 RECOVERED.sqlite` (if .recover fails, as sqlite3 3.40's does: `sqlite3 {quoted} .dump | sed "
        "'s/^ROLLBACK; -- due to errors$/COMMIT;/' | sqlite3 RECOVERED.sqlite`), then pass --store "
        "RECOVERED.sqlite"
    )
