"""A deploy result read from a file (`edgekit runs import`): what the store and the reports need of it beyond its
types. A deploy writes it right; a hand-edited or foreign file is checked here before anything is recorded: every
integer fits the store's 64-bit columns (a size of 1e30 was an internal OverflowError), the recipe and targets are
named as a recipe or a target file may name them (`../../etc` and `""` were recorded), the task is one edgekit
knows, and sizes, timings and thread counts are not negative. Every measured figure (a latency, a sample, a
stage's seconds, a memory size) is finite, not negative and at most MAX_FIGURE, and a device has a core or more
(a NaN p50 was recorded, then the report raised `0.0335 -> nan ms (+nan%)` as a regression; `-4 cores` was
shown). Artifacts and formats are format ids and runtimes
are module names, as a deploy writes them (a 53-character artifact was recorded and broke every report of the
store), and every text fits its column (read from schema.py's String(n) columns: PostgreSQL refused an over-long
one after the files before it were recorded, SQLite kept it) without a NUL byte in a name (PostgreSQL's text
cannot hold one). No text is longer than MAX_FREE_TEXT characters (64 KiB: a 300 MB error was recorded). A NUL in free text (an error, a device's output) is recorded as U+FFFD by the store, as a
deploy's own record is (Store.record), so a deploy's own --json always imports."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

from sqlalchemy import String, Table

from edgekit.formats import Format
from edgekit.recipe.schema import MAX_THREADS, SAFE_NAME, Task
from edgekit.results import DeployResult, Measurement, TargetRun
from edgekit.store import codec
from edgekit.store.schema import INT64_MAX, INT64_MIN, artifacts, comparisons, measurements, runs, target_runs
from edgekit.target import schema as target_schema

TARGET_NAME = re.compile(target_schema.TARGET_NAME)  # a target file's `name:`
_COUNTS = ("warmup", "repeat", "number", "samples", "layer_times")  # a benchmark's whole numbers, 0 or more
_SECONDS = ("min_repeat_ms", "cooldown_s", "timeout_s", "lock_timeout_s")
FORMAT_IDS = tuple(
    f.value for f in Format
)  # a deploy's artifact ids are format names (results.ArtifactInfo.id)
RUNTIME_NAME = re.compile(
    r"[A-Za-z_][A-Za-z0-9_.]*"
)  # the module an agent's runner ran: ncnn, ai_edge_litert


def import_problem(result: DeployResult) -> str | None:
    """The first thing in RESULT the store cannot keep or a report cannot read, naming its field, or None."""
    return next(_problems(result), None)


MAX_FREE_TEXT = (
    64 * 1024
)  # characters of one text (an error, a device's output): a deploy writes tails, not logs


def _problems(result: DeployResult) -> Iterator[str]:
    dumped = result.model_dump(mode="json")
    yield from _too_large(dumped, "")
    yield from _too_long(dumped, "")
    if not SAFE_NAME.fullmatch(result.recipe):
        yield (
            f"field `recipe`: {result.recipe!r} is not a recipe name (1-64 letters, digits, '.', '_' or '-', as a "
            "recipe's `name:`)"
        )
    tasks = [t.value for t in Task]
    if result.task not in tasks:
        yield f"field `task`: {result.task!r} is not a task ({', '.join(tasks)})"
    for i, art in enumerate(result.artifacts):
        if art.size_bytes < 0:
            yield f"field `artifacts.{i}.size_bytes`: {art.size_bytes} is negative"
        yield from _figure(art.convert_s, f"artifacts.{i}.convert_s", f"artifact {_short(art.id)}", "s")
    yield from _benchmark(result.benchmark, "benchmark")
    for i, art in enumerate(result.artifacts):
        yield from _format_id(art.id, f"artifacts.{i}.id")
        yield from _format_id(art.format, f"artifacts.{i}.format")
    for i, run in enumerate(result.runs):
        if not TARGET_NAME.fullmatch(run.target):
            yield f"field `runs.{i}.target`: {run.target!r} is not a target name (as a target file's `name:`)"
        yield from _benchmark(run.benchmark, f"runs.{i}.benchmark")
        yield from _target_figures(run, f"runs.{i}")
        for j, comp in enumerate(run.comparisons):
            yield from _format_id(comp.artifact, f"runs.{i}.comparisons.{j}.artifact")
        for j, m in enumerate(run.agent.measurements if run.agent else []):
            at = f"runs.{i}.agent.measurements.{j}"
            yield from _format_id(m.artifact, f"{at}.artifact")
            yield from _format_id(m.format, f"{at}.format")
            if not RUNTIME_NAME.fullmatch(m.runtime):
                yield f"field `{at}.runtime`: {_said(m.runtime)} is not a runtime (the module that ran it: ncnn, ai_edge_litert)"
            plural = "s" if m.threads != 1 else ""
            yield from _measured(
                m, at, f"target {_short(run.target)}, {_short(m.artifact)} at {m.threads} thread{plural}"
            )
    yield from _columns(result)


# a figure beyond this is no measurement (of milliseconds 11 days an invocation, of seconds 31 years, of MiB a
# pebibyte): 1e308 ms samples were recorded, and their sum in a report is infinite
MAX_FIGURE = 1e9
_UNITS = {"ms": "a time in milliseconds", "s": "a time in seconds", "MiB": "a memory size in MiB"}
# a measurement's figures that are 0 or more (rss_delta_mb, a growth, may be negative: memory freed)
_MEASURED = {
    "load_ms": "ms",
    "runtime_init_ms": "ms",
    "p50_ms": "ms",
    "p90_ms": "ms",
    "p99_ms": "ms",
    "mean_ms": "ms",
    "std_ms": "ms",
    "min_ms": "ms",
    "cycles_per_invoke": "cycles",
    "overhead_ms_per_sample": "ms",
    "overhead_ms_per_invoke": "ms",
    "peak_rss_mb": "MiB",
    "rss_baseline_mb": "MiB",
}


def _short(name: str) -> str:
    """A name as an error places it beside a field: its first 40 characters."""
    return name if len(name) <= 40 else f"{name[:40]}..."


def _figure(value: float | None, at: str, where: str, unit: str, least: float | None = 0.0) -> Iterator[str]:
    """A measured figure (None: not measured, as a failed or not-run measurement writes it) that is finite, from
    LEAST (None: any sign) to MAX_FIGURE: a NaN p50 made the report raise a regression (`nan ms (+nan%)`), a
    negative one was shown as the fastest."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return  # the types are pydantic's to check
    if not (math.isfinite(value) and (least is None or value >= least) and abs(value) <= MAX_FIGURE):
        bounds = f"from {least:g} to {MAX_FIGURE:g}" if least is not None else f"of at most {MAX_FIGURE:g}"
        yield (
            f"field `{at}` ({where}): {value:g} is not {_UNITS.get(unit, 'a count of ' + unit)} a deploy measures "
            f"(a finite number {bounds})"
        )


def _measured(m: Measurement, at: str, where: str) -> Iterator[str]:
    for name, unit in _MEASURED.items():
        yield from _figure(getattr(m, name), f"{at}.{name}", where, unit)
    for k, sample in enumerate(m.samples_ms):
        yield from _figure(sample, f"{at}.samples_ms.{k}", where, "ms")
    yield from _figure(m.rss_delta_mb, f"{at}.rss_delta_mb", where, "MiB", least=None)
    for k, layer in enumerate(m.layer_ms):
        yield from _figure(layer.ms, f"{at}.layer_ms.{k}.ms", where, "ms")
        yield from _figure(layer.min_ms, f"{at}.layer_ms.{k}.min_ms", where, "ms")
    share = m.others_cpu_share
    if share is not None and not 0 <= share <= 1:  # NaN too
        yield f"field `{at}.others_cpu_share` ({where}): {share:g} is not a share of the CPUs (from 0 to 1)"


def _target_figures(run: TargetRun, at: str) -> Iterator[str]:
    """A target's stage times and its device facts: a core count of -4 was shown as `-4 cores`."""
    where = f"target {_short(run.target)}"
    for stage, seconds in run.stage_seconds.items():
        yield from _figure(seconds, f"{at}.stage_seconds.{_short(stage)}", where, "s")
    if run.agent is None:
        return
    for name, facts in (("facts_before", run.agent.facts_before), ("facts_after", run.agent.facts_after)):
        if facts is None:
            continue
        if facts.cores < 1:
            yield f"field `{at}.agent.{name}.cores` ({where}): {facts.cores} is not a core count (1 or more)"
        for key in ("mem_total_mb", "mem_available_mb"):
            yield from _figure(getattr(facts, key), f"{at}.agent.{name}.{key}", where, "MiB")


def _said(value: str) -> str:
    """A hostile value as an error may quote it: its first 40 characters."""
    return repr(value) if len(value) <= 40 else f"{value[:40]!r}... ({len(value)} characters)"


def _format_id(value: str, at: str) -> Iterator[str]:
    if value not in FORMAT_IDS:
        yield f"field `{at}`: {_said(value)} is not a format id (a deploy writes one of: {', '.join(FORMAT_IDS)})"


def _columns(result: DeployResult) -> Iterator[str]:
    """Every text the store keeps in a String(n) column, against that column's length (schema.py's, so a wider
    column in a later schema is taken as it is), and without a NUL byte (PostgreSQL's text cannot hold one): the
    rows are the codec's, as the store will write them."""
    yield from _row(runs, codec.run_row(result, recorded_at="", recorded_by=None), "")
    for i, art in enumerate(result.artifacts):
        yield from _row(
            artifacts, codec.artifact_row(art, run_id=0, position=i), f"artifacts.{i}.", {"artifact": "id"}
        )
    for i, run in enumerate(result.runs):
        yield from _row(
            target_runs, codec.target_row(run, run_id=0, position=i), f"runs.{i}.", {"agent_": "agent."}
        )
        for j, comp in enumerate(run.comparisons):
            row = codec.comparison_row(comp, run_id=0, target_run_id=0, position=j)
            yield from _row(comparisons, row, f"runs.{i}.comparisons.{j}.")
        for j, m in enumerate(run.agent.measurements if run.agent else []):
            row = codec.measurement_row(m, run_id=0, target_run_id=0, position=j)
            yield from _row(measurements, row, f"runs.{i}.agent.measurements.{j}.")


def _row(table: Table, row: dict[str, Any], at: str, renamed: dict[str, str] | None = None) -> Iterator[str]:
    """`renamed`: a column name's start as the file names it ({'artifact': 'id'}, {'agent_': 'agent.'})."""
    for name, value in row.items():
        column_type = table.c[name].type
        if not isinstance(value, str) or not isinstance(column_type, String) or column_type.length is None:
            continue
        field = next(
            (new + name[len(old) :] for old, new in (renamed or {}).items() if name.startswith(old)), name
        )
        if len(value) > column_type.length:
            yield (
                f"field `{at}{field}`: {_said(value)} is longer than the {column_type.length} characters the "
                "store keeps"
            )
        elif "\x00" in value:
            yield f"field `{at}{field}`: {_said(value)} holds a NUL byte (\\x00), which the store cannot keep"


def _too_large(node: Any, at: str) -> Iterator[str]:
    """Integers beyond 64 bits, anywhere (a column or the JSON beside the columns)."""
    if isinstance(node, bool):
        return
    if isinstance(node, int) and not INT64_MIN <= node <= INT64_MAX:
        yield f"field `{at}`: {node:.3g} is beyond the 64-bit integers the store holds"
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _too_large(value, f"{at}.{key}" if at else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _too_large(value, f"{at}.{i}")


def _too_long(node: Any, at: str) -> Iterator[str]:
    """Texts beyond MAX_FREE_TEXT characters, anywhere: a 300 MB error was recorded, and every report and `runs
    show` of the run then printed it."""
    if isinstance(node, str) and len(node) > MAX_FREE_TEXT:
        yield f"field `{at}`: {_said(node)} is longer than the {MAX_FREE_TEXT} characters edgekit keeps of a text"
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _too_long(key, f"{at}.{key[:40]}" if at else key[:40])
            yield from _too_long(value, f"{at}.{key}" if at else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _too_long(value, f"{at}.{i}")


def _benchmark(settings: dict[str, Any], at: str) -> Iterator[str]:
    """The timing settings a report reads (threads to label columns, counts): of the types a deploy writes."""
    threads = settings.get("threads")
    if threads is not None and not (
        isinstance(threads, list) and threads and all(_whole(t) and 1 <= t <= MAX_THREADS for t in threads)
    ):
        yield f"field `{at}.threads`: {threads!r} is not a list of thread counts from 1 to {MAX_THREADS}"
    for key in _COUNTS:
        value = settings.get(key)
        if value is not None and not (_whole(value) and value >= 0):
            yield f"field `{at}.{key}`: {value!r} is not a count (a whole number, 0 or more)"
    for key in _SECONDS:
        value = settings.get(key)
        if value is not None and not (
            isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0
        ):
            yield f"field `{at}.{key}`: {value!r} is not a number, 0 or more"


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
