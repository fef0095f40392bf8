"""The results store: lossless round trips, forward migrations, concurrent writers, crash safety.

The tests taking `url` run twice: on a SQLite file and on a real PostgreSQL server started for this module
(Debian's postgresql package, installed by `make setup`; a throwaway cluster on a Unix socket, no TCP).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import procs
import pytest
from sqlalchemy import create_engine, func, inspect, select

from edgekit.errors import StoreError, StorePathError, UnknownRunError
from edgekit.formats import Format
from edgekit.report.synthetic import synthetic_history, synthetic_result
from edgekit.results import DeployResult, Measurement
from edgekit.store import SCHEMA_VERSION, codec, migrations, open_store, record, resolve_url, schema

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("integration") is None:  # integration tests share the session's
        monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))  # home, so converted artifacts are cached
    monkeypatch.delenv("EDGEKIT_STORE", raising=False)


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'results.sqlite'}"


def _count(url: str, table: str) -> int:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = int(
            conn.execute(select(func.count()).select_from(schema.metadata.tables[table])).scalar_one()
        )
    engine.dispose()
    return found


def _small(started: datetime, seed: int = 0, **kw: object) -> DeployResult:
    return synthetic_result(
        started,
        rng=np.random.default_rng(seed),
        formats=(Format.TFLITE_FP32, Format.NCNN_INT8),
        threads=(1,),
        repeat=20,
        **kw,
    )  # type: ignore[arg-type]


def test_round_trip_keeps_every_field_and_every_sample(url: str) -> None:
    result = synthetic_history(1, seed=3)[0]
    # fields a newer deploy/agent might add travel through the `extra` columns
    result = result.model_copy(
        update={"runs": result.runs + [result.runs[0].model_copy(update={"target": "host"})]}
    )
    result = DeployResult.model_validate({**result.model_dump(), "nightly_id": "n-7"})
    failed = Measurement(
        artifact="ncnn-fp16",
        format="ncnn-fp16",
        runtime="ncnn",
        threads=2,
        status="failed",
        error="segfault in ncnn::Net::load_param",
        ops_unsupported=["Focus"],
    )
    result.runs[0].agent.measurements.append(failed)  # type: ignore[union-attr]
    # declared fields the store has no column for (added to results.py later) must survive too
    declared = {
        "peak_rss_scope": "measurement",
        "output_names": ["boxes", "scores"],
        "output_shapes": [[8, 4]],
    }
    for name, value in declared.items():
        setattr(result.runs[1].agent.measurements[0], name, value)  # type: ignore[union-attr]
    result.runs[1].agent.in_progress = "ncnn-int8 threads=4"  # type: ignore[union-attr]
    with open_store(url) as store:
        run_id = store.record(result)
        back = store.load(run_id)
    assert back.model_dump() == result.model_dump()
    assert back.model_extra == {"nightly_id": "n-7"}
    samples_in = [m.samples_ms for r in result.runs for m in r.agent.measurements]  # type: ignore[union-attr]
    samples_out = [m.samples_ms for r in back.runs for m in r.agent.measurements]  # type: ignore[union-attr]
    assert samples_out == samples_in and sum(map(len, samples_out)) == 3 * 14 * 50
    assert back.runs[0].agent.measurements[-1].model_extra == {"ops_unsupported": ["Focus"]}  # type: ignore[union-attr]
    assert back.runs[1].agent.measurements[0].output_shapes == [[8, 4]]  # type: ignore[union-attr]
    assert back.runs[1].agent.in_progress == "ncnn-int8 threads=4"  # type: ignore[union-attr]


def test_nan_and_infinities_round_trip(url: str) -> None:
    result = _small(T0)
    onnx = result.runs[0].comparisons[0]
    onnx.cosine, onnx.max_abs_error, onnx.metric = math.nan, math.inf, {"map50": math.nan}  # zero outputs
    m = result.runs[0].agent.measurements[0]  # type: ignore[union-attr]
    m.std_ms, m.samples_ms[0] = math.nan, math.inf
    result.artifacts[0].fidelity["cosine"] = -math.inf
    with open_store(url) as store:
        back = store.load(store.record(result))
    assert back.model_dump_json() == result.model_dump_json()  # JSON text: NaN == NaN there
    assert (
        math.isnan(back.runs[0].comparisons[0].cosine)
        and back.runs[0].comparisons[0].max_abs_error == math.inf
    )


def test_nan_and_infinities_survive_the_json_file_runs_import_reads(tmp_path: Path) -> None:
    """A NaN cosine (a zero output) was written to deploy's --json and to unrecorded/ as null, and `runs import`
    refused its own file (a comparison's cosine is a required float): NaN and infinities are written as
    NaN/Infinity and read back; `runs show --json` writes them the same way."""
    from edgekit.store.unrecorded import keep_unrecorded

    result = _small(T0)
    onnx = result.runs[0].comparisons[0]
    onnx.cosine, onnx.max_abs_error, onnx.metric = math.nan, math.inf, {"map50": math.nan}
    result.artifacts[0].fidelity["cosine"] = -math.inf
    kept = keep_unrecorded(result)
    assert '"cosine": NaN' in kept.read_text()
    store = str(tmp_path / "s.sqlite")
    out = _edgekit("runs", "import", str(kept), "--store", store, home=tmp_path / "home")
    assert out.returncode == 0 and "recorded as run 1" in out.stdout, out.stderr
    shown = _edgekit("runs", "show", "1", "--json", "--store", store, home=tmp_path / "home")
    assert shown.returncode == 0, shown.stderr
    for back in (
        DeployResult.model_validate_json(kept.read_text()),
        DeployResult.model_validate_json(shown.stdout),
    ):
        comparison = back.runs[0].comparisons[0]
        assert math.isnan(comparison.cosine) and comparison.max_abs_error == math.inf
        assert math.isnan(comparison.metric["map50"]) and back.artifacts[0].fidelity["cosine"] == -math.inf


def test_two_results_kept_in_one_second_get_a_file_each() -> None:
    """unrecorded/RECIPE-YYYYmmdd-HHMMSS.json: a second result of the recipe in the same second overwrote the first
    (a night whose store was down, two deploys at once), in the data dir and in the temporary folder alike."""
    from edgekit.store.unrecorded import keep_somewhere, keep_unrecorded

    first, second = _small(T0), _small(T0, seed=1)
    paths = [keep_unrecorded(first), keep_unrecorded(second), keep_somewhere(first)[0]]
    assert len(set(paths)) == 3 and all(p is not None and p.is_file() for p in paths), paths
    assert [DeployResult.model_validate_json(p.read_text()) for p in paths[:2] if p] == [first, second]


def test_a_run_id_beyond_64_bits_is_no_such_run(tmp_path: Path) -> None:
    """`runs show 99999999999999999999999` (and `runs accept`) was an internal OverflowError: SQLite's INTEGER
    holds 64 bits. No run has such an id: exit 2, as for any id the store does not hold."""
    store = str(tmp_path / "s.sqlite")
    with open_store(store) as db:
        db.record(_small(T0))
    for command in ("show", "accept"):
        out = _edgekit("runs", command, "9" * 23, "--store", store, home=tmp_path / "home")
        assert out.returncode == 2 and f"no run with id {'9' * 23}" in out.stderr, out.stderr
        assert "internal error" not in out.stderr


@pytest.mark.parametrize(
    "change, said",
    [
        ({"recipe": "../../etc"}, "field `recipe`: '../../etc' is not a recipe name"),
        ({"recipe": ""}, "field `recipe`: '' is not a recipe name"),
        ({"task": "bogus"}, "field `task`: 'bogus' is not a task (classify, detect, generic)"),
        ({"benchmark": {"threads": "x"}}, "field `benchmark.threads`: 'x' is not a list of thread counts"),
        ({"benchmark": {"threads": [1], "repeat": -3}}, "field `benchmark.repeat`: -3 is not a count"),
        ({"artifacts.0.size_bytes": -5}, "field `artifacts.0.size_bytes`: -5 is negative"),
        ({"artifacts.0.size_bytes": 10**30}, "field `artifacts.0.size_bytes`: 1e+30 is beyond the 64-bit"),
        ({"runs.0.target": "../x"}, "field `runs.0.target`: '../x' is not a target name"),
        # a NaN p50 was recorded, then the report raised `0.0335 -> nan ms (+nan%)` as a regression; a negative
        # one showed as the fastest; 1e308s were recorded (their sum is infinite); `-4 cores` was shown
        (
            {"runs.0.agent.measurements.0.p50_ms": math.nan},
            "field `runs.0.agent.measurements.0.p50_ms` (target pi4, tflite-fp32 at 1 thread): nan is not",
        ),
        (
            {"runs.0.agent.measurements.1.samples_ms": [-5.0] * 20},
            "field `runs.0.agent.measurements.1.samples_ms.0` (target pi4, ncnn-int8 at 1 thread): -5 is not",
        ),
        (
            {"runs.1.agent.measurements.0.samples_ms": [1e308] * 20},
            "field `runs.1.agent.measurements.0.samples_ms.0` (target pi5-emu, tflite-fp32 at 1 thread): 1e+308 "
            "is not",
        ),
        (
            {"runs.0.agent.measurements.0.load_ms": math.inf},
            "field `runs.0.agent.measurements.0.load_ms` (target pi4, tflite-fp32 at 1 thread): inf is not",
        ),
        (
            {"runs.1.agent.measurements.1.peak_rss_mb": -1.5},
            "field `runs.1.agent.measurements.1.peak_rss_mb` (target pi5-emu, ncnn-int8 at 1 thread): -1.5 is not",
        ),
        (
            {"runs.0.agent.facts_before.cores": -4},
            "field `runs.0.agent.facts_before.cores` (target pi4): -4 is not a core count (1 or more)",
        ),
        (
            {"runs.1.agent.facts_after.mem_available_mb": math.nan},
            "field `runs.1.agent.facts_after.mem_available_mb` (target pi5-emu): nan is not",
        ),
        ({"runs.0.stage_seconds.run": -530.0}, "field `runs.0.stage_seconds.run` (target pi4): -530 is not"),
        (
            {"artifacts.1.convert_s": math.inf},
            "field `artifacts.1.convert_s` (artifact ncnn-int8): inf is not",
        ),
    ],
)
def test_runs_import_refuses_what_the_store_or_a_report_cannot_take(
    tmp_path: Path, change: dict, said: str
) -> None:
    """A hand-edited deploy result with a size of 1e30 was an internal OverflowError; an empty or `../../etc`
    recipe name, a negative size, `threads: "x"` and an unknown task were recorded without a word. Each is refused
    naming its field (exit 2), and nothing is recorded."""
    import json

    data = json.loads(_small(T0).model_dump_json())
    for path, value in change.items():
        *parents, last = path.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value
    given = tmp_path / "result.json"
    given.write_text(json.dumps(data))
    store = str(tmp_path / "s.sqlite")
    out = _edgekit("runs", "import", str(given), "--store", store, home=tmp_path / "home")
    assert out.returncode == 2 and "not a deploy result edgekit can record: " + said in out.stderr, out.stderr
    assert "internal error" not in out.stderr and not Path(store).exists()


def test_a_target_without_agent_result_round_trips(url: str) -> None:
    result = _small(T0)
    dead = result.runs[0].model_copy(update={"status": "failed", "error": "unreachable", "agent": None})
    result = result.model_copy(update={"runs": [dead, result.runs[1]], "ok": False})
    with open_store(url) as store:
        assert store.load(store.record(result)) == result


def test_runs_lists_newest_first_with_filters(url: str) -> None:
    with open_store(url) as store:
        for night in range(3):
            store.record(_small(T0 + timedelta(days=night), recipe="a", targets=("pi4",)))
        store.record(_small(T0 + timedelta(days=1, hours=1), recipe="b", targets=("pi5-emu",)))
        listed = store.runs()
        assert [r.recipe for r in listed] == ["a", "b", "a", "a"]
        assert [r.recipe for r in store.runs(recipe="a", limit=2)] == ["a", "a"]
        assert [r.targets for r in store.runs(target="pi5-emu")] == [["pi5-emu"]]
        assert len(store.runs(since=(T0 + timedelta(days=1)).timestamp())) == 3
        assert listed[0].measurements == 2 and listed[0].failed == 0
        history = store.history(recipe="a")
        assert [h.started_ts for h in history] == sorted(h.started_ts for h in history)
        with pytest.raises(UnknownRunError, match="no run with id 99") as err:
            store.load(99)
        assert err.value.exit_code == 2  # a run id the store does not hold is bad input, not a store fault


def test_runs_marks_interrupted_runs(url: str, tmp_path: Path) -> None:
    """deploy said "recorded as run N (interrupted)" but `edgekit runs` showed that run as a plain failure
    ('no'), like one whose device broke: TargetRun.interrupted was stored but never read back for the list.
    Its ok column now says 'interrupted' (naming the targets when only some were), and `runs show` marks it."""

    def stopped(result: DeployResult, *names: str) -> DeployResult:
        runs = [
            r.model_copy(update={"interrupted": True, "status": "failed", "error": "interrupted (Ctrl-C)"})
            if r.target in names
            else r
            for r in result.runs
        ]
        return result.model_copy(update={"runs": runs, "ok": False})

    with open_store(url) as store:
        whole = store.record(_small(T0, recipe="plain", targets=("pi4",)))
        cut = store.record(stopped(_small(T0 + timedelta(hours=1), recipe="cut", targets=("pi4",)), "pi4"))
        both = _small(T0 + timedelta(hours=2), recipe="half", targets=("pi4", "pi5-emu"))
        half = store.record(stopped(both, "pi5-emu"))
        listed = {r.id: r for r in store.runs()}
    assert listed[whole].interrupted_targets == [] and listed[cut].interrupted_targets == ["pi4"]
    assert listed[half].interrupted_targets == ["pi5-emu"]
    if not url.startswith("sqlite"):
        return
    out = _edgekit("runs", "--store", url, home=tmp_path / "home")
    assert out.returncode == 0, out.stderr
    rows = {line.split("│")[3].strip(): line for line in out.stdout.splitlines() if line.count("│") > 5}
    assert "interrupted" not in rows["plain"] and "yes" in rows["plain"], out.stdout
    assert "interrupted" in rows["cut"] and "pi4" not in rows["cut"].split("interrupted")[1], out.stdout
    assert "interrupted (pi5-emu)" in rows["half"], out.stdout
    assert "failed" not in rows["half"], out.stdout  # stopped, not broken: said once, in the ok column
    shown = _edgekit("runs", "show", str(cut), "--store", url, home=tmp_path / "home")
    assert shown.returncode == 0 and "status failed (interrupted)" in shown.stdout, shown.stdout


def test_store_url_comes_from_argument_then_env_then_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_url() == f"sqlite:///{tmp_path / 'home' / 'results.sqlite'}"
    monkeypatch.setenv("EDGEKIT_STORE", str(tmp_path / "team.sqlite"))
    assert resolve_url() == f"sqlite:///{tmp_path / 'team.sqlite'}"
    assert resolve_url("postgresql://u@db/edgekit") == "postgresql://u@db/edgekit"
    run_id = record(_small(T0))
    assert (tmp_path / "team.sqlite").is_file() and run_id == 1


def test_the_import_command_printed_names_the_store_without_its_password() -> None:
    """After a store failure the printed `edgekit runs import FILE` had no --store: pasted, it recorded the night
    into the default SQLite file, not the team's server. It names the store, never its password (libpq reads
    PGPASSWORD or ~/.pgpass), and quotes what a shell would split."""
    from edgekit.store.unrecorded import import_command

    kept = Path("/data/un recorded/tiny.json")
    got = import_command(
        kept, "postgresql+psycopg://edgekit:s3cret@db:5432/nightly?password=x&sslmode=require"
    )
    assert got == (
        "edgekit runs import '/data/un recorded/tiny.json' --store "
        "'postgresql+psycopg://edgekit@db:5432/nightly?sslmode=require'"
    )
    assert "s3cret" not in got and "password" not in got
    assert import_command(kept, None) == "edgekit runs import '/data/un recorded/tiny.json'"


def test_a_write_lock_held_elsewhere_is_said_while_waiting_and_named_when_it_outlasts_the_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """Another process holding the SQLite store's write lock (sqlite3 with a transaction open) made a nightly wait
    60 s in silence, then fail 'database is locked' with the hint to check the server is up. The wait is said
    after 2 s; a lock released in time lets the run record; one that outlasts it names the lock and fuser."""
    import builtins

    from edgekit.store import engine

    monkeypatch.setattr(engine, "BUSY_TIMEOUT_S", 4.0)
    url = _url(tmp_path)
    record(_small(T0), url)
    path = Path(url.removeprefix("sqlite:///"))
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    released: list[bool] = []

    def say_then_release(*args: object, **kwargs: Any) -> None:
        """The wait is said; then (once) the holder lets go, within the wait: at the words, not after a timer
        whose 1 s of slack a loaded machine could eat."""
        builtins.print(*args, **kwargs)
        if not released and "waiting up to" in " ".join(map(str, args)):
            released.append(True)
            holder.execute("COMMIT")

    monkeypatch.setattr(engine, "print", say_then_release, raising=False)
    holder.execute("BEGIN IMMEDIATE")
    assert record(_small(T0 + timedelta(days=1), seed=1), url) == 2
    assert released  # recorded after the lock was let go, not around it
    assert "another process holds the results store's write lock; waiting up to 4 s" in capfd.readouterr().err
    holder.execute("BEGIN IMMEDIATE")  # held past it
    try:
        with pytest.raises(StoreError, match="another process held the store's write lock for 4 s") as err:
            record(_small(T0 + timedelta(days=2), seed=2), url)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "fuser" in str(err.value) and "server" not in str(err.value)


def test_another_programs_database_is_refused_and_left_as_it_was(url: str) -> None:
    """`edgekit runs --store other.sqlite` (a read) and a nightly into a team's application database wrote
    edgekit's seven tables beside `users`; a database with a `runs` table of its own failed inside the migration.
    Both are refused as bad input (exit 2), naming the tables found, and nothing is written."""
    from sqlalchemy import text

    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)"))
        conn.execute(text("CREATE TABLE runs (id INTEGER PRIMARY KEY, job TEXT)"))
    for attempt in (lambda: open_store(url, create=False), lambda: record(_small(T0), url)):
        with pytest.raises(StorePathError, match=r"another program's tables \(runs, users\)") as err:
            attempt()
        assert err.value.exit_code == 2 and "database of its own" in str(err.value)
    with engine.connect() as conn:
        assert sorted(inspect(conn).get_table_names()) == ["runs", "users"]
    engine.dispose()


@pytest.mark.integration
def test_an_extensions_own_table_does_not_make_a_database_foreign(pg_url: str) -> None:
    """A database with PostGIS holds its `spatial_ref_sys` in public: a new edgekit store there was refused as
    another program's. Tables an extension owns (pg_depend 'e') are not the database's own; made so here with
    plpgsql, the extension every database has."""
    from sqlalchemy import text

    engine = create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE spatial_ref_sys (srid INTEGER PRIMARY KEY)"))
        conn.execute(text("ALTER EXTENSION plpgsql ADD TABLE spatial_ref_sys"))
    engine.dispose()
    assert record(_small(T0), pg_url) == 1


def test_sqlite_store_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    with open_store(_url(tmp_path)) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 10_000


def test_unopenable_store_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match="cannot open"):
        open_store(f"sqlite:///{tmp_path / 'file' / 'results.sqlite'}")
    (tmp_path / "garbage.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError):
        open_store(str(tmp_path / "garbage.sqlite"))


_edgekit = partial(procs.run, timeout=300)


def _damage(path: Path, table: str) -> None:
    """Garbage over the first page of `table`, as a failing disk or a copy gone wrong leaves it."""
    conn = sqlite3.connect(path)
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with open(path, "r+b") as handle:
        handle.seek((root - 1) * size)
        handle.write(b"\xa5" * size)


def test_a_damaged_sqlite_store_is_named_with_how_to_recover(tmp_path: Path) -> None:
    """A damaged file was an internal error ('this is a bug in edgekit') for every read, and recording into it
    printed the whole INSERT with its parameters: now a StoreError naming the file, the driver's one-line
    reason, and how to get the runs back."""
    path = tmp_path / "results.sqlite"
    for day in range(3):  # recent: `edgekit report` reads the last 30 days
        record(_small(datetime.now(UTC) - timedelta(days=day + 1), seed=day), str(path))
    _damage(path, "target_runs")
    reads = {"runs": lambda s: s.runs(), "load": lambda s: s.load(1), "history": lambda s: s.history()}
    for name, read in reads.items():
        with open_store(str(path), create=False) as store, pytest.raises(StoreError) as err:
            read(store)
        assert type(err.value) is StoreError and err.value.where == str(path), name
        assert "the SQLite file is damaged (database disk image is malformed)" in err.value.message, name
        assert f"sqlite3 {path} .recover" in str(err.value.hint), name
    with open_store(str(path)) as store, pytest.raises(StoreError) as err:
        store.record(_small(T0, seed=9))
    message = str(err.value)
    assert message.startswith(f"{path}: could not record the run of ") and "damaged" in message, message
    assert "INSERT" not in message and "[parameters" not in message and len(message.splitlines()) == 2, (
        message
    )
    home = tmp_path / "home"
    for args in (["runs"], ["runs", "show", "1"], ["report", "--markdown", str(tmp_path / "r.md")]):
        out = _edgekit(*args, "--store", str(path), home=home)
        assert out.returncode == 1 and f"(StoreError): {path}: " in out.stderr, (args, out.stderr)
        assert "bug in edgekit" not in out.stderr and "[SQL" not in out.stderr, (args, out.stderr)
    # the hint's fallback (Debian 12's sqlite3 fails every .recover) gets the readable runs back
    if shutil.which("sqlite3"):
        fallback = str(err.value.hint).split("`")[3]
        subprocess.run(fallback, shell=True, cwd=tmp_path, check=True, capture_output=True)
        with open_store(str(tmp_path / "RECOVERED.sqlite"), create=False) as store:
            assert len(store.runs()) == 3


def test_a_store_path_that_is_no_store_is_named_before_any_work(tmp_path: Path) -> None:
    """A folder, another file, or (for commands that read) a path with nothing recorded: exit 2 naming the
    path. `runs --store typo.db` used to answer "no runs" and leave a new empty store at the typo; `deploy
    --store /etc/passwd` measured everything and failed at the end."""
    (tmp_path / "notes.txt").write_text("not a database\n")
    missing = tmp_path / "typo" / "results.sqlite"
    cases = [
        (["runs", "--store", str(tmp_path)], "a folder, not a results store file"),
        (["runs", "--store", str(tmp_path / "notes.txt")], "not a SQLite database"),
        (["runs", "--store", str(missing)], "nothing has been recorded at this path"),
        (["report", "--store", str(missing)], "nothing has been recorded at this path"),
        (["runs", "show", "1", "--store", str(missing)], "nothing has been recorded at this path"),
        (["deploy", "recipes/tiny.yaml", "--store", str(tmp_path / "notes.txt")], "not a SQLite database"),
    ]
    home = tmp_path / "home"
    for args, message in cases:
        out = _edgekit(*args, home=home)
        assert out.returncode == 2 and message in out.stderr, (args, out.stderr)
    assert not missing.parent.exists()  # nothing left behind at the typo
    assert not (home / "cache").exists()  # deploy refused the store before converting anything
    with open_store(_url(tmp_path)) as store:  # a store to write to is still created where it is named
        assert store.runs() == []


def test_a_store_url_that_can_name_no_store_is_bad_input_and_an_unreachable_server_is_not(
    tmp_path: Path,
) -> None:
    """`--store bogus://x` and a port past 65535 were StoreError (exit 1, as for a server that is down); like a
    port that is not a number they are bad input: StorePathError, exit 2, before anything connects (deploy
    before converting). A valid URL whose server refuses the connection stays exit 1. No password printed."""
    home = tmp_path / "home"
    cases = [
        ("bogus://x", "no database kind 'bogus'"),
        ("postgresql+nodriver://u:hunter2@127.0.0.1/db", "no database kind 'postgresql+nodriver'"),
        ("postgresql://u:hunter2@127.0.0.1:99999/db", "port 99999 is not a TCP port"),
        ("postgresql://u:hunter2@127.0.0.1:0/db", "port 0 is not a TCP port"),  # libpq read 0 as 5432
        ("postgresql://u:hunter2@127.0.0.1:notaport/db", "not a store URL"),
    ]
    for url, message in cases:
        for args in (["runs"], ["deploy", "recipes/tiny.yaml", "--target", "local"]):
            out = _edgekit(*args, "--store", url, home=home)
            assert out.returncode == 2, (url, args, out.stderr)
            assert "(StorePathError)" in out.stderr and message in out.stderr, (url, args, out.stderr)
            assert "hunter2" not in out.stderr + out.stdout
    assert not (home / "cache").exists()  # refused before converting anything
    with socket.socket() as sock:  # a port nothing listens on: the server is down, the URL is fine
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = _edgekit("runs", "--store", f"postgresql://u:hunter2@127.0.0.1:{port}/db", home=home)
    assert down.returncode == 1 and "(StoreError)" in down.stderr, down.stderr


def test_an_empty_store_file_is_refused_by_reads_and_made_a_store_by_records(tmp_path: Path) -> None:
    """A 0-byte --store (a truncated store, a wrong path) answered "no runs" and had a new schema written into
    it by `runs`: the commands that read refuse it (exit 2) and leave it alone; one that records sets it up."""
    home = tmp_path / "home"
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for args in (["runs"], ["runs", "list"], ["runs", "show", "1"], ["report"]):
        out = _edgekit(*args, "--store", str(empty), home=home)
        assert out.returncode == 2 and f"{empty}: an empty file (0 bytes)" in out.stderr, (args, out.stderr)
        assert "restore it from a backup" in out.stderr and "runs import" in out.stderr, out.stderr
    assert empty.stat().st_size == 0 and not list(tmp_path.glob("empty.sqlite-*"))
    default = home / "results.sqlite"  # the default store, truncated, is refused too
    default.parent.mkdir(exist_ok=True)
    default.touch()
    with pytest.raises(StorePathError, match="empty file"):
        open_store(create=False)
    assert default.stat().st_size == 0
    kept = tmp_path / "kept.json"
    kept.write_text(_small(T0).model_dump_json())
    out = _edgekit("runs", "import", str(kept), "--store", str(empty), home=home)
    assert out.returncode == 0 and "recorded as run 1" in out.stdout, out.stderr
    with open_store(str(empty), create=False) as store:
        assert [r.id for r in store.runs()] == [1]


def _deny_writes(folder: Path) -> list[str]:
    """`folder` and its files made readable but not writable for the commands run with the prefix returned.
    The tests run as root, whom permissions do not stop: the files go to `nobody` and the command runs as root
    without capabilities (setpriv), an 'other' user of them. As another user: chmod."""
    if os.geteuid() != 0:
        for file in folder.iterdir():
            file.chmod(0o444)
        folder.chmod(0o555)
        return []
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv (util-linux) is needed to run a command as root without its capabilities")
    for file in (folder, *folder.iterdir()):
        shutil.chown(file, "nobody", "nogroup")
        file.chmod(0o755 if file.is_dir() else 0o644)
    return ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]


def _allow_writes(folder: Path) -> None:
    if os.geteuid() != 0:
        folder.chmod(0o755)
        for file in folder.iterdir():
            file.chmod(0o644)


def test_a_store_this_user_cannot_write_is_read_read_only(tmp_path: Path) -> None:
    """Another user's store (644 in their 755 folder), or one on a read-only mount, could not be read: every
    open switched on WAL and migrated under BEGIN IMMEDIATE, 'attempt to write a readonly database', with a
    hint that the file was writable. The commands that read open it read-only; one that must migrate or write
    it names the folder and file this user cannot write."""
    folder = tmp_path / "shared"
    folder.mkdir()
    path = folder / "results.sqlite"
    now = datetime.now(UTC)
    for day in range(2):
        record(_small(now - timedelta(days=day + 1), seed=day), str(path))
    old = folder / "old.sqlite"  # a store from an edgekit two schema versions back
    engine = create_engine(f"sqlite:///{old}")
    with engine.begin() as conn:
        migrations.migrate(conn, where="old", upto=SCHEMA_VERSION - 1)
    engine.dispose()
    kept = tmp_path / "kept.json"
    kept.write_text(_small(T0, seed=5).model_dump_json())
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")}
    env.pop("EDGEKIT_STORE", None)

    def cli(prefix: list[str], *args: str) -> subprocess.CompletedProcess:
        command = [*prefix, sys.executable, "-m", "edgekit", *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)

    def listed(prefix: list[str]) -> list[int]:
        out = cli(prefix, "runs", "--store", str(path))
        assert out.returncode == 0, out.stderr
        rows = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("│")]
        return sorted(int(row) for row in rows if row.isdigit())

    before = sorted(os.listdir(folder))
    prefix = _deny_writes(folder)
    assert subprocess.run([*prefix, "touch", str(folder / "probe")], capture_output=True).returncode != 0
    # no -wal file (no writer has it open) and none can be created: read as the file is
    assert listed(prefix) == [1, 2]
    shown = cli(prefix, "runs", "show", "2", "--json", "--store", str(path))
    assert shown.returncode == 0 and DeployResult.model_validate_json(shown.stdout).runs, shown.stderr
    report = cli(prefix, "report", "--store", str(path), "--markdown", str(tmp_path / "r.md"))
    assert report.returncode == 0 and (tmp_path / "r.md").is_file(), report.stderr
    assert sorted(os.listdir(folder)) == before  # nothing written beside it
    # a store needing a migration, and a command that records: the error names what this user cannot write
    out = cli(prefix, "runs", "--store", str(old))
    assert out.returncode == 1 and f"must be migrated to {SCHEMA_VERSION}" in out.stderr, out.stderr
    assert f"cannot write the file {old} or the folder {folder}" in out.stderr, out.stderr
    out = cli(prefix, "runs", "import", str(kept), "--store", str(path))
    assert out.returncode == 1 and f"cannot write the file {path} or the folder {folder}" in out.stderr
    assert "the file is writable" not in out.stderr and listed(prefix) == [1, 2], out.stderr
    # a writer has it open (its -wal holds a run not yet in the file): the reader sees that run too
    _allow_writes(folder)
    writer = sqlite3.connect(path)
    try:
        writer.execute("SELECT count(*) FROM runs").fetchone()
        record(_small(now, seed=3), str(path))
        assert Path(f"{path}-wal").stat().st_size > 0
        prefix = _deny_writes(folder)
        assert listed(prefix) == [1, 2, 3]
    finally:
        _allow_writes(folder)
        writer.close()


def test_a_deploy_whose_store_fails_at_the_end_keeps_its_results(tmp_path: Path) -> None:
    """The store is checked before a deploy, but can fail by the time the deploy ends (a server gone, a newer
    edgekit migrated it): the measurements go to a file, and the error says how to import them."""
    from edgekit.cli.deploy import _record_or_keep

    url = _url(tmp_path)
    open_store(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(schema.schema_version.insert().values(version=SCHEMA_VERSION + 1, applied_at="later"))
    engine.dispose()
    result = _small(T0)
    with pytest.raises(StoreError, match="the results are kept in") as err:
        _record_or_keep(result, url, None)
    kept = Path(str(err.value).split("the results are kept in ")[1].split("\n")[0])
    assert kept.is_file() and kept.parent == tmp_path / "home" / "unrecorded"
    assert f"edgekit runs import {kept}" in str(err.value)
    other = _url(tmp_path / "other")
    out = _edgekit("runs", "import", str(kept), "--store", other, home=tmp_path / "home")
    assert out.returncode == 0, out.stderr
    with open_store(other) as store:
        assert store.load(store.runs()[0].id) == result
    # `runs list` (what people type) is `runs`, filters included
    listed = _edgekit("runs", "list", "--store", other, "-n", "1", home=tmp_path / "home")
    plain_list = _edgekit("runs", "--store", other, "-n", "1", home=tmp_path / "home")
    assert listed.returncode == 0 and result.recipe in listed.stdout, listed.stderr
    assert listed.stdout == plain_list.stdout
    none = _edgekit("runs", "list", "--store", other, "--recipe", "no-such-recipe", home=tmp_path / "home")
    # a typo read as an empty store ("no runs in URL"): the filter is named, and what the store holds
    said = " ".join(none.stdout.split())
    assert none.returncode == 0 and "no runs of recipe no-such-recipe in" in said, said
    assert f"recipes in it: {result.recipe}" in said, said


def test_deploy_records_its_result_before_drawing_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store is written before the table is drawn: a table that fails to render (a bug in edgekit) cost
    the whole run's measurements (exit 1 with nothing recorded). Logic above the real deploy: deploy() gives a
    canned result here; the real deploys' recording is tested in tests/faults and tests/test_deploy.py."""
    from typer.testing import CliRunner

    import edgekit.deploy
    import edgekit.report.table
    from edgekit.cli import app

    result = _small(T0)

    def broken_table(*_args: object, **_kw: object) -> str:
        raise RuntimeError("a rendering bug")

    monkeypatch.setattr(edgekit.deploy, "deploy", lambda *_a, **_k: result)
    monkeypatch.setattr(edgekit.report.table, "deploy_table", broken_table)
    url = _url(tmp_path)
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny.yaml"
    out = CliRunner().invoke(app, ["deploy", str(recipe), "--target", "pi4-emu", "--store", url])
    assert isinstance(out.exception, RuntimeError)
    with open_store(url) as store:
        (summary,) = store.runs()
        assert store.load(summary.id) == result


@pytest.mark.integration
def test_a_deploy_that_fails_after_measuring_keeps_the_measurements(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real deploy (tiny, the host) whose comparison step raises (a bug, as `make demo` met when its code
    changed under it): it lost every measurement ("internal error", nothing recorded, no file). Now they are
    recorded (ok=False) and written before the error is printed."""
    from typer.testing import CliRunner

    import edgekit.deploy.orchestrate
    from edgekit.cli import app

    def broken(*_args: object, **_kw: object) -> None:
        raise AttributeError("a bug after measuring")

    monkeypatch.setattr(edgekit.deploy.orchestrate, "compare_all", broken)
    url, out_json = _url(tmp_path), tmp_path / "out.json"
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "tiny.yaml"
    args = ["deploy", str(recipe), "--format", "tflite-fp32", "--repeat", "2", "--threads", "1"]
    out = CliRunner().invoke(app, [*args, "--store", url, "--json", str(out_json)])
    assert isinstance(out.exception, AttributeError), out.output
    assert "the deploy failed after measuring: kept 1 measurements; recorded as run 1" in out.output
    with open_store(url) as store:
        (summary,) = store.runs()
        kept = store.load(summary.id)
    assert not kept.ok and kept.runs[0].agent is not None and kept.runs[0].agent.measurements[0].p50_ms
    assert DeployResult.model_validate_json(out_json.read_text()) == kept


def test_runs_import_names_what_is_wrong_with_a_file_and_imports_nothing(tmp_path: Path) -> None:
    """A file that is not a deploy result: exit 2 with the first problem and its field (it said only "1
    validation error for DeployResult"), and no store is created or written when any file given is bad."""
    good = tmp_path / "good.json"
    good.write_text(_small(T0).model_dump_json())
    cases = {
        "truncated.json": ("{", "Invalid JSON"),
        "list.json": ("[]", "Input should be an object"),
        "field.json": ('{"recipe": 5}', "Input should be a valid string (at recipe); and 3 more problems"),
    }
    store = tmp_path / "store" / "results.sqlite"
    for name, (text, expected) in cases.items():
        (tmp_path / name).write_text(text)
        out = _edgekit(
            "runs", "import", str(good), str(tmp_path / name), "--store", str(store), home=tmp_path
        )
        assert out.returncode == 2, out.stderr
        assert expected in out.stderr and "nothing was imported" in out.stderr, out.stderr
        assert "validation error for" not in out.stderr
    out = _edgekit("runs", "import", str(tmp_path / "missing.json"), "--store", str(store), home=tmp_path)
    assert out.returncode == 2 and "cannot read it (No such file or directory)" in out.stderr, out.stderr
    assert not store.exists()
    out = _edgekit("runs", "import", str(good), "--store", str(store), home=tmp_path)
    assert out.returncode == 0 and "recorded as run 1" in out.stdout, out.stderr


def test_runs_import_refuses_a_future_or_newer_file_and_says_an_unfinished_deploy_was_interrupted(
    tmp_path: Path,
) -> None:
    """Found by a probe: a run dated next year was imported and, being the latest by time, hid every later night
    from the report; `"protocol": 99` imported without a word; a deploy killed after writing its --json along the
    way (no finished_at, a target `failed` with no error) showed as a failure without a reason."""
    store = tmp_path / "s.sqlite"
    future = tmp_path / "future.json"
    future.write_text(_small(datetime.now(UTC) + timedelta(days=180)).model_dump_json())
    newer = tmp_path / "newer.json"
    newer.write_text(_small(T0).model_copy(update={"protocol": 99}).model_dump_json())
    for path, said in (
        (future, "days in the future"),
        (newer, "written by a newer edgekit (result protocol 99"),
    ):
        out = _edgekit("runs", "import", str(path), "--store", str(store), home=tmp_path)
        assert out.returncode == 2 and said in out.stderr, out.stderr
    assert not store.exists()
    done = _small(T0)
    failed = done.runs[0].model_copy(update={"status": "failed", "error": None})
    killed = done.model_copy(update={"finished_at": None, "runs": [failed]})
    path = tmp_path / "killed.json"
    path.write_text(killed.model_dump_json())
    out = _edgekit("runs", "import", str(path), "--store", str(store), home=tmp_path)
    assert out.returncode == 0 and "this deploy did not finish" in out.stdout, out.stdout + out.stderr
    with open_store(str(store)) as db:
        (run,) = db.load(db.runs()[0].id).runs
    assert run.interrupted and run.error is not None and "did not finish" in run.error


def test_runs_says_which_artifacts_made_a_run_not_ok(tmp_path: Path) -> None:
    """A run that missed a fidelity gate was listed `ok: no` with all its measurements and no reason."""
    from edgekit.results import GATE_MISSED

    done = _small(T0)
    # as the pipeline records a missed gate: status failed, the error saying why; and a failed conversion
    missed = done.artifacts[1].model_copy(
        update={
            "gates_passed": False,
            "status": "failed",
            "error": f"{GATE_MISSED}min_cosine 0.9 vs limit 0.99",
        }
    )
    broken = done.artifacts[0].model_copy(
        update={"gates_passed": False, "status": "failed", "error": "pnnx died"}
    )
    store = str(tmp_path / "s.sqlite")
    record(done.model_copy(update={"artifacts": [broken, missed], "ok": False}), store)
    out = _edgekit("runs", "--store", store, home=tmp_path)
    assert out.returncode == 0, out.stderr
    said = "".join(out.stdout.split())
    assert f"no({broken.id}:failed,{missed.id}:gate)" in said, out.stdout


def test_runs_does_not_count_the_host_left_out_as_failed_and_says_why_a_run_is_not_ok(tmp_path: Path) -> None:
    """Every device failed before measuring, so deploy skipped the host ('nothing is wrong with it'): `runs`
    listed '2 targets failed: pi4, host'. An imported deploy killed before its end was a bare 'no'."""
    done = _small(T0, targets=("pi4",))
    down = done.runs[0].model_copy(
        update={"status": "failed", "error": "connect: ConnectError: refused", "agent": None}
    )
    host = down.model_copy(
        update={
            "target": "host",
            "kind": "local",
            "error": "run: AgentError: not measured: every target failed",
        }
    )
    store = str(tmp_path / "s.sqlite")
    record(done.model_copy(update={"runs": [down, host], "ok": False}), store)
    killed = _small(T0 + timedelta(hours=1), recipe="killed", targets=("pi4",))
    record(killed.model_copy(update={"finished_at": None, "ok": False}), store)
    # the device failed after the host went ahead (a full disk in push): a measured host, or one that failed on
    # its own (it has its agent's result), is no host left out
    measured = host.model_copy(update={"status": "ok", "error": None, "agent": done.runs[0].agent})
    crashed = measured.model_copy(
        update={"status": "failed", "error": "run: AgentError: the host agent crashed"}
    )
    for name, that in (("hostok", measured), ("hostbad", crashed)):
        record(done.model_copy(update={"recipe": name, "runs": [down, that], "ok": False}), store)
    with open_store(store) as opened:
        listed = {r.recipe: r for r in opened.runs()}
    failed = {name: (r.failed_targets, r.left_out) for name, r in listed.items()}
    assert failed == {
        done.recipe: (["pi4"], ["host"]),
        "killed": ([], []),
        "hostok": (["pi4"], []),
        "hostbad": (["pi4", "host"], []),
    }, failed
    out = _edgekit("runs", "--store", store, home=tmp_path)
    assert out.returncode == 0, out.stderr
    said = " ".join(out.stdout.split())
    assert "(1 target failed: pi4)" in said and "(host not measured: no device" in said, out.stdout
    rows = {line.split("│")[3].strip(): line for line in out.stdout.splitlines() if line.count("│") > 5}
    assert "no (target failed)" in " ".join(rows[done.recipe].split()), out.stdout
    assert "no (not finished)" in " ".join(rows["killed"].split()), out.stdout

    # `runs show` of that run said 'host (local) status failed' where `runs` said 'not measured' (new-user review)
    def heads(recipe: str) -> dict[str, str]:
        shown = _edgekit("runs", "show", str(listed[recipe].id), "--store", store, home=tmp_path)
        assert shown.returncode == 0, shown.stderr
        return {line.split()[0]: line for line in shown.stdout.splitlines() if " status " in line}

    left = heads(done.recipe)
    assert "status not measured" in left["host"] and "status failed" not in left["host"], left
    assert "status failed" in left["pi4"], left
    assert "status failed" in heads("hostbad")["host"]  # a host that failed on its own still reads failed


def test_a_store_error_never_prints_the_password() -> None:
    for url in ("mysql://bob:s3cret@nowhere/db", "postgresql://bob:s3cret@127.0.0.1:1/db"):
        with pytest.raises(StoreError) as err:
            open_store(url)
        assert "s3cret" not in str(err.value) and "bob:***@" in str(err.value), str(err.value)
        # no MySQL driver here: the URL is what is wrong (exit 2, as README says), an unreachable server is not
        assert err.value.exit_code == (2 if url.startswith("mysql") else 1), str(err.value)
    # found by a new-user probe: a password in the query string was printed; a port that is not a number was
    # an internal error; a libpq keyword string was taken as a file name and printed, password and all
    with pytest.raises(StoreError) as err:
        open_store("postgresql://bob@127.0.0.1:1/db?password=s3cret")
    assert "s3cret" not in str(err.value) and "password=***" in str(err.value), str(err.value)
    for bad in ("postgresql://bob:s3cret@127.0.0.1:abc/db", "host=db password=s3cret"):
        with pytest.raises(StorePathError) as path_err:
            open_store(bad)
        assert path_err.value.exit_code == 2 and "s3cret" not in str(path_err.value), str(path_err.value)


@pytest.mark.integration
def test_a_plain_postgresql_url_uses_the_installed_psycopg(pg_url: str) -> None:
    """`postgresql://` (SQLAlchemy's default driver is psycopg2, which edgekit does not install) opens the store
    with psycopg 3, the driver edgekit ships."""
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with open_store(plain) as store:
        assert store.runs() == [] and store.url.startswith("postgresql+psycopg://")


# --- schema versions ----------------------------------------------------------------------------------------
def test_migrations_build_exactly_the_current_schema(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        assert migrations.migrate(conn, where="test") == list(range(1, SCHEMA_VERSION + 1))
    insp = inspect(engine)
    for table in schema.metadata.sorted_tables:
        found = {c["name"]: c["nullable"] for c in insp.get_columns(table.name)}
        assert found == {c.name: c.nullable for c in table.columns}, table.name
        assert {i["name"] for i in insp.get_indexes(table.name)} == {i.name for i in table.indexes}, (
            table.name
        )
    engine.dispose()


def test_a_v1_store_is_migrated_forward_and_keeps_its_runs(url: str) -> None:
    old = _small(T0)
    engine = create_engine(url)
    with engine.begin() as conn:  # a store as edgekit's first release left it, with one run in it
        migrations.migrate(conn, where="test", upto=1)
        v1 = migrations._v1_metadata().tables
        row = codec.run_row(old, recorded_at="2026-03-01T03:00:00+00:00", recorded_by=None)
        del row["recorded_by"]
        run_id = conn.execute(v1["runs"].insert().values(row)).inserted_primary_key[0]
        for pos, target_run in enumerate(old.runs):
            tr = conn.execute(
                v1["target_runs"].insert().values(codec.target_row(target_run, run_id=run_id, position=pos))
            ).inserted_primary_key[0]
            for i, m in enumerate(target_run.agent.measurements):  # type: ignore[union-attr]
                mid = conn.execute(
                    v1["measurements"]
                    .insert()
                    .values(codec.measurement_row(m, run_id=run_id, target_run_id=tr, position=i))
                ).inserted_primary_key[0]
                conn.execute(
                    v1["samples"]
                    .insert()
                    .values(
                        measurement_id=mid, run_id=run_id, count=len(m.samples_ms), samples_ms=m.samples_ms
                    )
                )
            for i, c in enumerate(target_run.comparisons):
                conn.execute(
                    v1["comparisons"]
                    .insert()
                    .values(codec.comparison_row(c, run_id=run_id, target_run_id=tr, position=i))
                )
        for i, a in enumerate(old.artifacts):
            conn.execute(v1["artifacts"].insert().values(codec.artifact_row(a, run_id=run_id, position=i)))
    engine.dispose()
    engine = create_engine(url)
    assert "recorded_by" not in {c["name"] for c in inspect(engine).get_columns("runs")}
    engine.dispose()

    with open_store(url) as store:
        assert store.schema_version() == SCHEMA_VERSION
        assert store.load(run_id) == old
        new_id = store.record(_small(T0 + timedelta(days=1)))
        assert [r.id for r in store.runs()] == [new_id, run_id]
        assert store.runs()[0].recorded_by and store.runs()[1].recorded_by is None


def test_a_store_newer_than_this_edgekit_is_refused(url: str) -> None:
    open_store(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(schema.schema_version.insert().values(version=SCHEMA_VERSION + 1, applied_at="later"))
    engine.dispose()
    with pytest.raises(StoreError, match="newer than this edgekit"):
        open_store(url)


# --- concurrency and crashes --------------------------------------------------------------------------------
def _writer(url: str, worker: int, count: int) -> None:
    with open_store(url) as store:  # every process opens (and may race to create) the store itself
        for i in range(count):
            store.record(
                _small(T0 + timedelta(minutes=worker * 100 + i), seed=worker * 1000 + i, recipe=f"w{worker}")
            )


def test_concurrent_writer_processes_leave_a_consistent_store(url: str) -> None:
    workers, each = 4, 8
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(url, w, each)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    assert [p.exitcode for p in procs] == [0] * workers
    if url.startswith("sqlite"):
        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        con.close()
    assert _count(url, "schema_version") == SCHEMA_VERSION  # racing first opens migrated exactly once
    assert _count(url, "measurements") == workers * each * 4 and _count(url, "samples") == workers * each * 4
    with open_store(url) as store:
        runs = store.runs(limit=None)
        assert sorted(r.recipe for r in runs) == sorted(f"w{w}" for w in range(workers) for _ in range(each))
        loaded = store.load_many(r.id for r in runs)
        for run in loaded.values():  # every run complete: 2 targets x 2 artifacts x 20 samples
            assert [len(m.samples_ms) for t in run.runs for m in t.agent.measurements] == [20] * 4  # type: ignore[union-attr]


def test_a_writer_killed_mid_transaction_loses_nothing_recorded_before(url: str) -> None:
    with open_store(url) as store:
        kept = [store.record(_small(T0 + timedelta(days=d), seed=d)) for d in range(2)]
    script = textwrap.dedent(f"""
        import os, signal
        from datetime import datetime, timezone
        import numpy as np
        from edgekit.report.synthetic import synthetic_result
        from edgekit.store import open_store
        from edgekit.store.store import insert_run
        store = open_store({url!r})
        with store._write() as conn:
            insert_run(conn, synthetic_result(datetime(2026, 4, 1, tzinfo=timezone.utc),
                                              rng=np.random.default_rng(9)))
            os.kill(os.getpid(), signal.SIGKILL)  # dies with a whole run written but not committed
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    if url.startswith("sqlite"):
        con = sqlite3.connect(url.removeprefix("sqlite:///"))
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        con.close()
    assert _count(url, "measurements") == 8 and _count(url, "runs") == 2
    with open_store(url) as store:
        assert [r.id for r in store.runs()] == kept[::-1]
        assert store.record(_small(T0 + timedelta(days=5))) > 0


# --- a real deploy ----------------------------------------------------------------------------------------
@pytest.mark.integration
def test_runs_import_takes_the_figures_a_deploy_writes(tmp_path: Path) -> None:
    """The refusal of NaN, negative and absurd figures leaves what deploys write alone: a failed measurement's
    null figures, a resident set that shrank (a negative rss_delta_mb), a 0 ms sample (a coarse clock), a
    device's emulated wall times, and NaN and infinite fidelity (a zero output's cosine)."""
    result = _small(T0)
    failed = result.runs[0].agent.measurements[0]  # type: ignore[union-attr]
    failed.status, failed.error, failed.samples_ms = "failed", "load error", []
    for name in ("load_ms", "p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "peak_rss_mb"):
        setattr(failed, name, None)
    shrank = result.runs[0].agent.measurements[1]  # type: ignore[union-attr]
    shrank.rss_delta_mb, shrank.samples_ms[0], shrank.others_cpu_share = -3.25, 0.0, 1.0
    result.runs[0].comparisons[0].cosine = math.nan
    assert result.runs[1].emulated and max(result.runs[1].agent.measurements[0].samples_ms) > 1000  # type: ignore[union-attr]
    given = tmp_path / "result.json"
    given.write_text(result.model_dump_json())
    store = str(tmp_path / "s.sqlite")
    out = _edgekit("runs", "import", str(given), "--store", store, home=tmp_path / "home")
    assert out.returncode == 0 and "recorded as run 1" in out.stdout, out.stderr
    with open_store(store) as db:
        back = db.load(1)
    assert back.runs[0].agent.measurements[1].rss_delta_mb == -3.25  # type: ignore[union-attr]


def test_a_real_deploy_round_trips_through_json_import(tmp_path: Path) -> None:
    """recipes/tiny.yaml deployed for real to the `local` target, stored, read back whole. `local` is this
    machine: measured once, as the host column (it was measured twice and its copy labelled as a board)."""
    from edgekit.deploy import DeployOptions, deploy
    from edgekit.recipe import load_recipe

    formats = (Format.TFLITE_FP32, Format.TFLITE_INT8, Format.NCNN_FP32, Format.NCNN_INT8)  # as test_deploy
    options = DeployOptions(formats=formats, repeat=5, threads=(1,))
    said: list[str] = []
    result = deploy(
        load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"),
        ["local"],
        options,
        said.append,
    )
    assert [t.target for t in result.runs] == ["host"] and result.ok
    assert any("local: this machine, measured once as the host column" in s for s in said)
    path = tmp_path / "deploy.json"
    path.write_text(result.model_dump_json())
    url = _url(tmp_path)
    edgekit = [sys.executable, "-m", "edgekit"]
    out = subprocess.run(
        [*edgekit, "runs", "import", str(path), "--store", url], capture_output=True, text=True
    )
    assert out.returncode == 0 and "recorded as run 1" in out.stdout, out.stderr
    with open_store(url) as store:
        back = store.load(1)
        assert store.record(result) == 2
    assert back.model_dump() == result.model_dump()
    samples = [m.samples_ms for t in back.runs for m in t.agent.measurements]  # type: ignore[union-attr]
    assert len(samples) == 4 and all(len(s) == 5 for s in samples)
    assert {c.reference for c in back.runs[0].comparisons} == {"onnx"}
    shown = subprocess.run([*edgekit, "runs", "show", "1", "--store", url], capture_output=True, text=True)
    assert shown.returncode == 0 and "ncnn-int8" in shown.stdout and "host" in shown.stdout
    # the same file saved by Windows PowerShell 5 (`Out-File -Encoding utf8` writes a byte-order mark): it was
    # refused as `Invalid JSON: expected value at line 1 column 1`
    bommed = tmp_path / "deploy-bom.json"
    bommed.write_text(result.model_dump_json(), encoding="utf-8-sig")
    assert bommed.read_bytes().startswith(b"\xef\xbb\xbf")
    other = f"sqlite:///{tmp_path / 'bom.sqlite'}"
    out = subprocess.run(
        [*edgekit, "runs", "import", str(bommed), "--store", other], capture_output=True, text=True
    )
    assert out.returncode == 0 and "recorded as run 1" in out.stdout, out.stderr
    with open_store(other) as store:
        assert store.load(1).model_dump() == result.model_dump()


def test_runs_show_labels_every_emulated_figure(tmp_path: Path) -> None:
    """`runs show` of an emulated target printed its peak RSS (the qemu process: guest plus translated code, 2-4x
    the device's) and, with --verbose, p99 and load time as bare figures beside the host's. (120 samples: a p99
    of fewer is '-' all down, a column runs show leaves out.)"""
    url = f"sqlite:///{tmp_path / 'e.sqlite'}"
    with open_store(url) as store:
        run_id = store.record(
            synthetic_result(
                T0,
                rng=np.random.default_rng(0),
                formats=(Format.TFLITE_FP32, Format.NCNN_INT8),
                threads=(1,),
                repeat=120,
                targets=("pi5-emu",),
            )
        )
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home"), "COLUMNS": "300"}
    env.pop("EDGEKIT_STORE", None)
    shown = subprocess.run(
        [sys.executable, "-m", "edgekit", "runs", "show", str(run_id), "--verbose", "--store", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert "peak RSS MiB (qemu)" in text and "the emulator process" in text, shown.stdout
    assert "p99 (emulated)" in text and "load ms (emulated)" in text, shown.stdout


def test_measurements_a_ctrl_c_left_unmeasured_are_not_counted_as_failures(url: str, tmp_path: Path) -> None:
    """`runs` listed an interrupted deploy as '21 (6 failed)' in red: the 6 were never run (Ctrl-C), recorded as
    not run. They are counted apart now, on SQLite and PostgreSQL; a real failure still counts as one. The count
    beside them is of measurements taken: '14 (5 not measured)' had 9 taken; now '9 (+5 not measured)'."""
    from edgekit.results import NOT_RUN_INTERRUPTED

    result = _small(T0, targets=("pi4", "pi5-emu"))
    pi4, pi5 = result.runs
    assert pi4.agent is not None and pi5.agent is not None
    for m in pi5.agent.measurements:
        m.status, m.error, m.p50_ms = "failed", NOT_RUN_INTERRUPTED, None
    pi4.agent.measurements[0].status, pi4.agent.measurements[0].error = "failed", "OSError: disk full"
    with open_store(url) as store:
        run_id = store.record(result)
        (summary,) = [r for r in store.runs() if r.id == run_id]
    assert (summary.failed, summary.unmeasured) == (1, len(pi5.agent.measurements))
    if not url.startswith("sqlite"):
        return
    listed = _edgekit("runs", "--store", url, home=tmp_path / "home")
    assert listed.returncode == 0, listed.stderr
    text = " ".join(listed.stdout.split())
    # the count is of measurements taken: '14 (5 not measured...)' read as 14 taken with 9 taken
    taken = len(pi4.agent.measurements)
    unmeasured = len(pi5.agent.measurements)
    assert f"{taken} (1 failed) (+{unmeasured} not measured: interrupted)" in text, text


def test_runs_accept_records_the_new_level_and_the_next_nights_are_judged_against_it(
    url: str, tmp_path: Path
) -> None:
    """A held regression stayed flagged for the 42-run lookback with no way to say it was expected (a kernel
    update, a board swapped). `edgekit runs accept ID --target T` is kept in the run (both databases), the run is
    no longer flagged, the next night at the same level passes, and a wrong target or run is refused."""
    from edgekit.report.regression import FlagKind, detect_latest

    def night(day: int, level: float) -> DeployResult:
        return synthetic_result(
            T0 + timedelta(days=day),
            rng=np.random.default_rng(day),
            formats=(Format.TFLITE_FP32,),
            targets=("pi4",),
            threads=(1,),
            slowdown={("tflite-fp32", "pi4"): level},
        )  # type: ignore[arg-type]

    def flagged(store: object) -> list:
        return [f for f in detect_latest(store.history()) if f.kind is FlagKind.LATENCY]  # type: ignore[attr-defined]

    with open_store(url) as store:
        ids = [store.record(night(d, 1.0 if d < 14 else 1.3)) for d in range(18)]
        assert flagged(store) and flagged(store)[0].since_run == ids[14]
    home = tmp_path / "home"
    wrong = _edgekit("runs", "accept", str(ids[-1]), "--target", "pi5", "--store", url, home=home)
    assert wrong.returncode == 2 and "its targets: pi4" in wrong.stderr, wrong.stderr
    calm = _edgekit("runs", "accept", str(ids[5]), "--store", url, home=home)
    assert calm.returncode == 2 and "has no latency or instruction-count regression" in calm.stderr, (
        calm.stderr
    )
    missing = _edgekit("runs", "accept", "999", "--store", url, home=home)
    assert missing.returncode != 0 and "no run with id 999" in missing.stderr, missing.stderr
    done = _edgekit("runs", "accept", str(ids[-1]), "--target", "pi4", "--store", url, home=home)
    assert done.returncode == 0 and f"run {ids[-1]} (yolov5-lite) accepted" in done.stdout, done.stderr
    with open_store(url) as store:
        marks = (store.load(ids[-1]).model_extra or {})["accepted"]
        assert [(m["target"], m["artifact"], m["keys"]) for m in marks] == [
            ("pi4", None, [["pi4", "tflite-fp32", 1]])
        ]
        assert marks[0]["at"] and "tflite-fp32 at 1 thread on pi4" in done.stdout
        assert all("accepted" not in (store.load(i).model_extra or {}) for i in ids[:-1])
        assert flagged(store) == []  # the accepted run itself
        store.record(night(18, 1.3))
        assert flagged(store) == []  # the next night, at the accepted level
        store.record(night(19, 1.7))
        assert flagged(store)  # a further step is still a regression


def test_runs_accept_finds_local_under_the_host_column_it_is_stored_in(tmp_path: Path) -> None:
    """`runs accept ID --target local` was refused ("run has no target 'local'"): a deploy to `local` stores it as
    the `host` column, and `runs` and `report` take `--target local` there; accept now does the same."""
    from edgekit.report.regression import FlagKind, detect_latest

    url = _url(tmp_path)
    with open_store(url) as store:
        ids = [
            store.record(
                synthetic_result(
                    T0 + timedelta(days=day),
                    rng=np.random.default_rng(day),
                    formats=(Format.TFLITE_FP32,),
                    targets=("host",),
                    threads=(1,),
                    slowdown={("tflite-fp32", "host"): 1.0 if day < 14 else 1.3},
                )
            )
            for day in range(16)
        ]
        assert [f.target for f in detect_latest(store.history()) if f.kind is FlagKind.LATENCY] == ["host"]
    home = tmp_path / "home"
    done = _edgekit("runs", "accept", str(ids[-1]), "--target", "local", "--store", url, home=home)
    assert done.returncode == 0 and "tflite-fp32 at 1 thread on host" in done.stdout, done.stderr
    with open_store(url) as store:
        marks = (store.load(ids[-1]).model_extra or {})["accepted"]
        assert [m["target"] for m in marks] == ["host"]
        assert [f for f in detect_latest(store.history()) if f.kind is FlagKind.LATENCY] == []
    wrong = _edgekit("runs", "accept", str(ids[-1]), "--target", "pi4", "--store", url, home=home)
    assert wrong.returncode == 2 and "--target pi4: run 16 has no target 'pi4'" in wrong.stderr, wrong.stderr


def test_runs_accept_judges_the_run_on_its_targets_own_history(tmp_path: Path) -> None:
    """`runs accept` judged the run against the 42 runs before it of any target: after many host-only deploys
    between a board's nights, a regression the report flags (judged on the board's own nights) was refused as
    'no latency or instruction-count regression'."""
    url = _url(tmp_path)

    def night(day: float, targets: tuple[str, ...], level: float = 1.0) -> DeployResult:
        return synthetic_result(
            T0 + timedelta(days=day),
            rng=np.random.default_rng(int(day * 100)),
            formats=(Format.TFLITE_FP32,),
            targets=targets,
            threads=(1,),
            slowdown={("tflite-fp32", "pi4"): level},
        )

    with open_store(url) as store:
        for day in range(10):
            store.record(night(day, ("pi4",)))
            for n in range(20):  # developers' host-only deploys in between
                store.record(night(day + (n + 1) / 40, ("host",)))
        slow = store.record(night(10, ("pi4",), 1.4))
    done = _edgekit("runs", "accept", str(slow), "--target", "pi4", "--store", url, home=tmp_path / "home")
    assert done.returncode == 0 and "tflite-fp32 at 1 thread on pi4" in done.stdout, done.stderr


def test_an_unfinished_deploy_whose_targets_all_finished_is_imported_as_not_ok_and_said_so(
    tmp_path: Path,
) -> None:
    """A --json file without finished_at whose every target had finished (killed while comparing) was imported
    saying 'recorded as interrupted, what it measured kept', and stored as the file's ok: `runs` listed it `ok
    yes`. It is recorded as not ok (deploy says ok as it ends), and the line says what was kept."""
    store = tmp_path / "s.sqlite"
    unfinished = _small(T0).model_copy(update={"finished_at": None, "ok": True})
    path = tmp_path / "unfinished.json"
    path.write_text(unfinished.model_dump_json())
    out = _edgekit("runs", "import", str(path), "--store", str(store), home=tmp_path)
    said = " ".join(out.stdout.split())
    assert out.returncode == 0 and "this deploy did not finish" in said, said + out.stderr
    assert "recorded as interrupted" not in said
    assert "every target had finished measuring: recorded with what it measured, as not ok" in said, said
    with open_store(str(store)) as db:
        (summary,) = db.runs()
        assert not summary.ok and summary.interrupted_targets == []
        assert db.load(summary.id).runs[0].status == "ok"
    listed = _edgekit("runs", "--store", str(store), home=tmp_path)
    assert " yes " not in listed.stdout, listed.stdout
