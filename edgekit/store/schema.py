"""The current shape of the results store, as SQLAlchemy Core tables.

The tables here describe the schema *after* every migration in `migrations.py`; the migrations are what
actually create and change tables in a database (a test checks both agree). One deploy is one `runs` row;
everything under it hangs off `runs.id` so a run is written, and can be read, as one unit.

Samples live in their own table, one row per measurement holding a JSON array: listing p50 histories never
reads them, and writing a deploy costs one row per measurement instead of one per sample.
"""

from __future__ import annotations

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
)

SCHEMA_VERSION = 2

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
    Column("tool_versions", JSON, nullable=False),
    Column("benchmark", JSON, nullable=False),
    Column("ok", Boolean, nullable=False),
    Column("recorded_at", String(40), nullable=False),
    Column("recorded_by", String(200)),  # v2: user@host of the runner that recorded it
    Column("extra", JSON),  # fields a newer deploy wrote that this schema has no column for
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
    Column("facts_before", JSON),
    Column("facts_after", JSON),
    Column("request", JSON),
    Column("estimates", JSON),
    Column("stage_seconds", JSON),
    Column("extra", JSON),  # {"target": {...}, "agent": {...}} extra fields of TargetRun / AgentResult
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
    Column("output_checksums", JSON),
    Column("extra", JSON),
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
    Column("samples_ms", JSON, nullable=False),
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
    Column("max_abs_error", Float, nullable=False),
    Column("mean_abs_error", Float, nullable=False),
    Column("cosine", Float, nullable=False),
    Column("top1_agreement", Float),
    Column("box_match", Float),
    Column("metric", JSON),
    Column("extra", JSON),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
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
