"""Forward migrations of the results store: every database is brought to SCHEMA_VERSION when opened.

Each step is a function applied in one transaction together with its `schema_version` row, so a database is
always at exactly one version. Steps are frozen once released: v1 below is the first schema as it shipped,
written out here rather than taken from `schema.py`, so that later changes to the current tables can never
change what "v1" means. Add a step (and bump SCHEMA_VERSION) for every schema change; never edit an old one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)

from edgekit.errors import StoreError, StorePathError
from edgekit.store import schema


def _fk(table: str) -> ForeignKey:
    return ForeignKey(f"{table}.id", ondelete="CASCADE")


def _v1_metadata() -> MetaData:
    """The schema of edgekit's first results store, frozen."""
    m = MetaData()
    Table(
        "schema_version",
        m,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("applied_at", String(40), nullable=False),
    )
    Table(
        "runs",
        m,
        Column("id", Integer, primary_key=True),
        Column("recipe", String(200), nullable=False),
        Column("recipe_path", Text, nullable=False),
        Column("recipe_sha256", String(64), nullable=False),
        Column("git_revision", String(64)),
        Column("task", String(40), nullable=False),
        Column("protocol", Integer, nullable=False),
        Column("started_at", String(40), nullable=False),
        Column("started_ts", Float, nullable=False),
        Column("finished_at", String(40)),
        Column("tool_versions", JSON, nullable=False),
        Column("benchmark", JSON, nullable=False),
        Column("ok", Boolean, nullable=False),
        Column("recorded_at", String(40), nullable=False),
        Column("extra", JSON),
    )
    Table(
        "target_runs",
        m,
        Column("id", Integer, primary_key=True),
        Column("run_id", Integer, _fk("runs"), nullable=False, index=True),
        Column("position", Integer, nullable=False),
        Column("target", String(200), nullable=False),
        Column("kind", String(20), nullable=False),
        Column("emulated", Boolean, nullable=False),
        Column("status", String(20), nullable=False),
        Column("error", Text),
        Column("has_agent", Boolean, nullable=False),
        Column("agent_protocol", Integer),
        Column("agent_started_at", String(40)),
        Column("agent_finished_at", String(40)),
        Column("facts_before", JSON),
        Column("facts_after", JSON),
        Column("request", JSON),
        Column("estimates", JSON),
        Column("stage_seconds", JSON),
        Column("extra", JSON),
    )
    Table(
        "measurements",
        m,
        Column("id", Integer, primary_key=True),
        Column("run_id", Integer, _fk("runs"), nullable=False, index=True),
        Column("target_run_id", Integer, _fk("target_runs"), nullable=False),
        Column("position", Integer, nullable=False),
        Column("artifact", String(100), nullable=False),
        Column("format", String(40), nullable=False),
        Column("runtime", String(40), nullable=False),
        Column("threads", Integer, nullable=False),
        Column("status", String(20), nullable=False),
        Column("error", Text),
        Column("load_ms", Float),
        Column("number", Integer, nullable=False),
        *(Column(f"{s}_ms", Float) for s in ("p50", "p90", "p99", "mean", "std", "min")),
        Column("peak_rss_mb", Float),
        Column("instructions_per_invoke", BigInteger),
        Column("overhead_ms_per_sample", Float),
        Column("outputs_file", Text),
        Column("output_checksums", JSON),
        Column("extra", JSON),
    )
    Table(
        "samples",
        m,
        Column("measurement_id", Integer, _fk("measurements"), primary_key=True, autoincrement=False),
        Column("run_id", Integer, _fk("runs"), nullable=False, index=True),
        Column("count", Integer, nullable=False),
        Column("samples_ms", JSON, nullable=False),
    )
    Table(
        "comparisons",
        m,
        Column("id", Integer, primary_key=True),
        Column("run_id", Integer, _fk("runs"), nullable=False, index=True),
        Column("target_run_id", Integer, _fk("target_runs"), nullable=False),
        Column("position", Integer, nullable=False),
        Column("artifact", String(100), nullable=False),
        Column("target", String(200), nullable=False),
        Column("reference", String(40), nullable=False),
        Column("max_abs_error", Float, nullable=False),
        Column("mean_abs_error", Float, nullable=False),
        Column("cosine", Float, nullable=False),
        Column("top1_agreement", Float),
        Column("box_match", Float),
        Column("metric", JSON),
        Column("extra", JSON),
    )
    Table(
        "artifacts",
        m,
        Column("id", Integer, primary_key=True),
        Column("run_id", Integer, _fk("runs"), nullable=False, index=True),
        Column("position", Integer, nullable=False),
        Column("artifact", String(100), nullable=False),
        Column("format", String(40), nullable=False),
        Column("files", JSON, nullable=False),
        Column("sha256", String(64), nullable=False),
        Column("size_bytes", BigInteger, nullable=False),
        Column("cached", Boolean, nullable=False),
        Column("convert_s", Float),
        Column("fidelity", JSON),
        Column("gates_passed", Boolean, nullable=False),
        Column("status", String(20), nullable=False),
        Column("error", Text),
        Column("extra", JSON),
    )
    return m


def _to_v1(conn: Connection) -> None:
    _v1_metadata().create_all(conn)


def _to_v2(conn: Connection) -> None:
    """v2: who recorded a run (a team's runners share one server), and an index for per-recipe history."""
    conn.execute(text("ALTER TABLE runs ADD COLUMN recorded_by VARCHAR(200)"))
    Index("ix_runs_recipe_started", schema.runs.c.recipe, schema.runs.c.started_ts).create(conn)


_V3_NULLABLE = ("max_abs_error", "mean_abs_error", "cosine")


def _to_v3(conn: Connection) -> None:
    """v3: a comparison's numbers may be NULL; NaN and infinities are kept exactly in its `extra` column
    (SQLite stores NaN as NULL, which a NOT NULL column refuses)."""
    if conn.dialect.name != "sqlite":
        for name in _V3_NULLABLE:
            conn.execute(text(f"ALTER TABLE comparisons ALTER COLUMN {name} DROP NOT NULL"))
        return
    # SQLite cannot drop a NOT NULL constraint: build the new table, copy the rows, swap the names.
    m = MetaData()
    for parent in ("runs", "target_runs"):  # stubs so the foreign keys resolve; never created
        Table(parent, m, Column("id", Integer, primary_key=True))
    old = _v1_metadata().tables["comparisons"]
    columns = [
        Column(
            c.name,
            c.type,
            *[ForeignKey(fk.target_fullname, ondelete=fk.ondelete) for fk in c.foreign_keys],
            primary_key=c.primary_key,
            nullable=True if c.name in _V3_NULLABLE else c.nullable,
        )
        for c in old.columns
    ]
    Table("comparisons_v3", m, *columns).create(conn)
    names = ", ".join(c.name for c in old.columns)
    conn.execute(text(f"INSERT INTO comparisons_v3 ({names}) SELECT {names} FROM comparisons"))
    conn.execute(text("DROP TABLE comparisons"))
    conn.execute(text("ALTER TABLE comparisons_v3 RENAME TO comparisons"))
    conn.execute(text("CREATE INDEX ix_comparisons_run_id ON comparisons (run_id)"))


STEPS: dict[int, Callable[[Connection], None]] = {1: _to_v1, 2: _to_v2, 3: _to_v3}


def current_version(conn: Connection) -> int:
    """0 for an empty database; the highest applied step otherwise."""
    if not inspect(conn).has_table("schema_version"):
        return 0
    version = conn.execute(
        select(schema.schema_version.c.version).order_by(schema.schema_version.c.version.desc()).limit(1)
    ).scalar()
    return int(version or 0)


def pending(conn: Connection, *, where: str, upto: int = schema.SCHEMA_VERSION) -> list[int]:
    """The versions still to apply (none: the store is current); a store newer than this edgekit is refused."""
    have = current_version(conn)
    if have > schema.SCHEMA_VERSION:
        raise StoreError(
            f"the results store is at schema version {have}, "
            f"newer than this edgekit ({schema.SCHEMA_VERSION})",
            where=where,
            hint="upgrade edgekit, or point --store / EDGEKIT_STORE at another database",
        )
    return list(range(have + 1, upto + 1))


def refuse_foreign(conn: Connection, *, where: str) -> None:
    """A database edgekit never wrote (no schema_version) that holds tables other than SQLite's own is another
    program's, named as the store by mistake: refused, nothing written. `edgekit runs --store other.sqlite`
    wrote edgekit's seven tables into it (and failed on a database with a `runs` table of its own)."""
    if current_version(conn) > 0:
        return
    others = sorted(t for t in inspect(conn).get_table_names() if not t.startswith("sqlite_"))
    if others and conn.dialect.name == "postgresql":  # an extension's own tables (PostGIS's spatial_ref_sys)
        owned = conn.execute(
            text(
                "SELECT c.relname FROM pg_depend d JOIN pg_class c ON c.oid = d.objid "
                "WHERE d.deptype = 'e' AND d.classid = 'pg_class'::regclass"
            )
        ).scalars()
        others = sorted(set(others) - set(owned))
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise StorePathError(
            f"not an edgekit results store: the database holds another program's tables ({shown}) and no "
            "edgekit schema; nothing was written to it",
            where=where,
            hint="give edgekit a database of its own (a new SQLite file, or `createdb edgekit_results` on the "
            "server), or check --store / EDGEKIT_STORE",
        )


def migrate(conn: Connection, *, where: str, upto: int = schema.SCHEMA_VERSION) -> list[int]:
    """Apply the missing steps inside the caller's transaction (refuse_foreign first); return the versions
    applied."""
    refuse_foreign(conn, where=where)
    applied = []
    for version in pending(conn, where=where, upto=upto):
        STEPS[version](conn)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        conn.execute(schema.schema_version.insert().values(version=version, applied_at=stamp))
        applied.append(version)
    return applied
