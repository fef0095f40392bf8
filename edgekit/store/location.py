"""Where the results store is: a URL or a path resolved, checked before anything connects (a URL that can name no
store, a SQLite path that is a folder, another kind of file or, to read, missing or empty: StorePathError, exit 2),
and printed without its password."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from edgekit import paths
from edgekit.errors import StorePathError
from edgekit.path_kind import PathKind, path_kind


def resolve_url(url: str | None = None) -> str:
    """`url`, else $EDGEKIT_STORE, else the SQLite file in the data dir. A plain path means a SQLite file."""
    chosen = url or os.environ.get("EDGEKIT_STORE") or str(paths.data_dir() / "results.sqlite")
    _remember_password(chosen)
    if "://" not in chosen:
        try:
            path = Path(chosen).expanduser()
        except RuntimeError as exc:  # `~nobody/...`, or no home folder to read `~` from
            raise StorePathError(f"cannot expand the path: {exc}", where=chosen) from None
        try:
            chosen = f"sqlite:///{path.resolve()}"
        except (RuntimeError, OSError):  # ELOOP: Python 3.11 says RuntimeError('Symlink loop from ...')
            raise StorePathError(
                f"symlink loop at {path.absolute()}", where=chosen, hint=_LOOP_HINT
            ) from None
    return chosen


_LOOP_HINT = (
    "a symbolic link on this path leads back to itself (`ls -l` shows where each link points): point it at the "
    "store file, or pass --store PATH.sqlite"
)


def _check_url(url: str) -> None:
    """A URL that cannot name a store is bad input (StorePathError, exit 2), said before anything connects: one
    that does not parse (a port that is not a number, an unclosed [ipv6 ...), a database kind SQLAlchemy has no
    dialect for (`bogus://`, `postgresql+nodriver://`) or a port outside 1-65535 (libpq read port 0 as 5432).
    A valid URL whose server is unreachable stays a StoreError (exit 1)."""
    hint = "pass --store PATH.sqlite, sqlite:///PATH or postgresql://USER@HOST[:PORT]/DB"
    _remember_password(url)
    if "@" in (_password_of(url) or ""):  # SQLAlchemy ends the password at its
        # first @ and reads the rest as the host; an @ in the user name (Azure's user@server) it reads right
        raise StorePathError(
            "not a store URL: its user part has more than one '@' (a password with an '@' in it?)",
            where=_shown(url),
            hint="percent-encode @ in the password as %40 (postgresql://USER:p%40ss@HOST/DB), or leave the "
            "password out of the URL: libpq reads PGPASSWORD or ~/.pgpass",
        )
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StorePathError(f"not a store URL: {_mask(str(exc))}", where=_shown(url), hint=hint) from None
    if parsed.get_backend_name() == "sqlite" and (not parsed.database or parsed.database == ":memory:"):
        raise StorePathError(
            "an in-memory SQLite database is no store: what a command records there is gone when it exits",
            where=_shown(url),
            hint="give a file: --store PATH.sqlite or sqlite:///PATH",
        )
    try:
        parsed.get_dialect()  # the dialect's module only: a missing driver (psycopg, a MySQL one) is said later
    except NoSuchModuleError:
        raise StorePathError(
            f"not a store URL: no database kind {parsed.drivername!r} (SQLAlchemy has no dialect or driver by that name)",
            where=_shown(url),
            hint=hint,
        ) from None
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise StorePathError(
            f"not a store URL: port {parsed.port} is not a TCP port (1-65535)", where=_shown(url), hint=hint
        )


_SECRET_KEYS = ("password", "passwd", "pwd", "sslpassword")
_SECRET = re.compile(r"((?:password|passwd|pwd|sslpassword)\s*=\s*)('[^']*'|[^&\s;]+)", re.IGNORECASE)


_PASSWORDS: set[str] = set()  # the passwords (and their pieces) of the store URLs this process was given


def _userinfo(url: str) -> str | None:
    """'USER:PASS' of 'KIND://USER:PASS@HOST:PORT/DB?...' as the user meant it: everything before the last '@'
    ahead of the query (SQLAlchemy ends a password at its first '@' and may read the rest, '/' and all, as the
    host and the database). None for a URL without one (sqlite:///PATH)."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    before_query = rest.split("?", 1)[0]
    return before_query.rsplit("@", 1)[0] if "@" in before_query else None


def _password_of(url: str) -> str | None:
    """The password as written in `url`'s user part (after the user name's ':'), or None."""
    user = _userinfo(url)
    return user.split(":", 1)[1] if user is not None and ":" in user else None


def _remember_password(url: str) -> None:
    """A password with an unencoded '@' is read by SQLAlchemy as a short password and a host holding the rest,
    which the driver's message then names: remember it and each piece of it between '@'s, so _mask hides them in
    any text. Any other password SQLAlchemy reads whole and hides where it prints the URL: nothing is remembered
    (masking a password such as `postgres` all through a message blanked the scheme, user and database)."""
    password = _password_of(url)
    if password is None or "@" not in password:
        return
    for piece in {password, unquote(password), *password.split("@"), *unquote(password).split("@")}:
        if len(piece) >= 3:  # a shorter piece would mask common letters all through a message
            _PASSWORDS.add(piece)


def _mask(text: str) -> str:
    """`password=...` (a URL's query, a libpq keyword string) as `password=***`, and any password (or piece of
    one) of a store URL this process was given as ***."""
    for secret in sorted(_PASSWORDS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _SECRET.sub(r"\1***", text)


def _shown(url: str) -> str:
    """The URL as errors may print it: never its password (in the user part or in the query), even one with an
    '@' in it that SQLAlchemy would read as part of the host."""
    userinfo, password = _userinfo(url), _password_of(url)
    if userinfo is not None and password is not None and "@" in password:
        scheme, rest = url.split("://", 1)
        url = f"{scheme}://{userinfo.split(':', 1)[0]}:***@{rest[len(userinfo) + 1 :]}"
    try:
        return _mask(make_url(url).render_as_string(hide_password=True))
    except (ArgumentError, ValueError):
        return url.split("://", 1)[0] + "://..." if "://" in url else _mask(url)


def command_url(url: str) -> str:
    """The URL as a printed command may carry it, to be pasted: without its password (libpq then reads
    PGPASSWORD or ~/.pgpass), a password in the query left out too."""
    if "@" in (_password_of(url) or ""):  # SQLAlchemy would read part of it as the host: refused anyway
        return _shown(url)
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return _shown(url)
    secrets = [k for k in parsed.query if k.lower() in _SECRET_KEYS]
    parsed = parsed.difference_update_query(secrets)._replace(password=None)
    return parsed.render_as_string(hide_password=False)


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database, an in-memory one or a URL that does not parse."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_sqlite_path(url: str, *, must_exist: bool, create: bool) -> None:
    """A SQLite store's file, checked before SQLAlchemy opens it: a folder, another kind of file or (to read)
    a missing or empty file is a StorePathError (exit 2) naming the path, not a driver message. An empty file
    is what a truncated store looks like: a command that only reads refuses it (it answered "no runs" and
    wrote a new schema over it); one that records (`create`: deploy, nightly, runs import) takes it as a new
    store, as sqlite3 does (a `mktemp` file, a `touch`ed path)."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return  # open_store names a malformed URL
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return
    path = Path(parsed.database)
    if _mask(str(path)) != str(path):  # 'host=db password=...' taken as a file name: never printed
        raise StorePathError(
            "a libpq keyword string is not a store; give a URL",
            where=_mask(str(path)),
            hint="pass --store postgresql://USER@HOST/DB (the password from ~/.pgpass or PGPASSWORD)",
        )
    hint = "pass --store PATH.sqlite (a file), or set EDGEKIT_STORE; the default store is " + str(
        paths.data_dir() / "results.sqlite"
    )
    kind = path_kind(path)
    if kind is PathKind.LOOP:  # sqlite:///LOOP is not resolved: exists() said False, read as a missing store
        raise StorePathError(f"symlink loop at {path}", where=str(path), hint=_LOOP_HINT)
    if kind is PathKind.FOLDER:
        raise StorePathError("a folder, not a results store file", where=str(path), hint=hint)
    if (
        kind is PathKind.SPECIAL
    ):  # a FIFO blocked the read below for ever; /dev/null was SQLite's 'disk I/O error'
        raise StorePathError(f"{kind.value}, not a results store file", where=str(path), hint=hint)
    if kind is PathKind.MISSING:
        if must_exist:
            raise StorePathError(
                "no results store here: nothing has been recorded at this path", where=str(path), hint=hint
            )
        return
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError:
        return  # unreadable: SQLite's own error says so
    if not head and not create and path.is_file():
        raise StorePathError(
            "an empty file (0 bytes), not a results store: nothing was recorded in it, or it was truncated",
            where=str(path),
            hint="if it held runs, restore it from a backup; a command that records (`edgekit deploy --store "
            "FILE`, `edgekit nightly --store FILE`, `edgekit runs import RESULT.json --store FILE`) makes an "
            "empty file a new store",
        )
    if head and head != SQLITE_MAGIC:
        raise StorePathError(
            "not a results store: the file is not a SQLite database", where=str(path), hint=hint
        )
