"""The current shape of the results store, as SQLAlchemy Core tables.

The tables here describe the schema *after* every migration in `migrations.py`; the migrations are what
actually create and change tables in a database (a test checks both agree). One deploy is one `runs` row;
everything under it hangs off `runs.id` so a run is written, and can be read, as one unit.

Samples live in their own table, one row per measurement holding a JSON array: listing p50 histories never
reads them, and writing a deploy costs one row per measurement instead of one per sample.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
)

SCHEMA_VERSION = 3
INT64_MIN, INT64_MAX = (
    -(2**63),
    2**63 - 1,
)  # what an integer column holds (SQLite's INTEGER, PostgreSQL's BIGINT)


def storable_id(run_id: int) -> bool:
    """Whether a run id fits the id column (a larger one names no run; the database refused it: OverflowError)."""
    return INT64_MIN <= run_id <= INT64_MAX


_NON_FINITE = {"__nan__": math.nan, "__inf__": math.inf, "__-inf__": -math.inf}


class JSONValue(TypeDecorator[Any]):
    """JSON that keeps NaN and infinities (a cosine of a zero output is NaN; PostgreSQL's json rejects NaN).

    Non-finite floats are written as the strings "__nan__", "__inf__", "__-inf__" and turned back on reading;
    the column's DDL is plain JSON, so this needs no migration.
    """

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return _encode(value)

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return _decode(value)


def _encode(value: Any) -> Any:
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "__nan__" if math.isnan(value) else ("__inf__" if value > 0 else "__-inf__")
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, str):
        return _NON_FINITE.get(value, value)
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", String(40), nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("recipe", String(200), nullable=False),
    Column("recipe_path", Text, nullable=False),
    Column("recipe_sha256", String(64), nullable=False),
    Column("git_revision", String(64)),
    Column("task", String(40), nullable=False),
    Column("protocol", Integer, nullable=False),
    Column("started_at", String(40), nullable=False),  # as the deploy wrote it
    Column("started_ts", Float, nullable=False),  # epoch seconds (UTC), for ordering and --since
    Column("finished_at", String(40)),
    Column("tool_versions", JSONValue, nullable=False),
    Column("benchmark", JSONValue, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("recorded_at", String(40), nullable=False),
    Column("recorded_by", String(200)),  # v2: user@host of the runner that recorded it
    Column("extra", JSONValue),  # fields a newer deploy wrote that this schema has no column for
)
Index("ix_runs_recipe_started", runs.c.recipe, runs.c.started_ts)  # v2

target_runs = Table(
    "target_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
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
    Column("facts_before", JSONValue),
    Column("facts_after", JSONValue),
    Column("request", JSONValue),
    Column("estimates", JSONValue),
    Column("stage_seconds", JSONValue),
    Column("extra", JSONValue),  # {"target": {...}, "agent": {...}} extra fields of TargetRun / AgentResult
)

measurements = Table(
    "measurements",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("target_run_id", Integer, ForeignKey("target_runs.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("artifact", String(100), nullable=False),
    Column("format", String(40), nullable=False),
    Column("runtime", String(40), nullable=False),
    Column("threads", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("error", Text),
    Column("load_ms", Float),
    Column("number", Integer, nullable=False),
    Column("p50_ms", Float),
    Column("p90_ms", Float),
    Column("p99_ms", Float),
    Column("mean_ms", Float),
    Column("std_ms", Float),
    Column("min_ms", Float),
    Column("peak_rss_mb", Float),
    Column("instructions_per_invoke", BigInteger),
    Column("overhead_ms_per_sample", Float),
    Column("outputs_file", Text),
    Column("output_checksums", JSONValue),
    Column("extra", JSONValue),
)

samples = Table(
    "samples",
    metadata,
    Column(
        "measurement_id",
        Integer,
        ForeignKey("measurements.id", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("count", Integer, nullable=False),
    Column("samples_ms", JSONValue, nullable=False),
)

comparisons = Table(
    "comparisons",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("target_run_id", Integer, ForeignKey("target_runs.id", ondelete="CASCADE"), nullable=False),
    Column("position", Integer, nullable=False),
    Column("artifact", String(100), nullable=False),
    Column("target", String(200), nullable=False),
    Column("reference", String(40), nullable=False),
    Column("max_abs_error", Float),  # v3: nullable; a NaN or infinity is kept in `extra`
    Column("mean_abs_error", Float),  # v3: nullable; a NaN or infinity is kept in `extra`
    Column("cosine", Float),  # v3: nullable; a NaN or infinity is kept in `extra`
    Column("top1_agreement", Float),
    Column("box_match", Float),
    Column("metric", JSONValue),
    Column("extra", JSONValue),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("position", Integer, nullable=False),
    Column("artifact", String(100), nullable=False),
    Column("format", String(40), nullable=False),
    Column("files", JSONValue, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("cached", Boolean, nullable=False),
    Column("convert_s", Float),
    Column("fidelity", JSONValue),
    Column("gates_passed", Boolean, nullable=False),
    Column("status", String(20), nullable=False),
    Column("error", Text),
    Column("extra", JSONValue),
)
