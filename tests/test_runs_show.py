"""`edgekit runs show ID` says what a decision needs, as deploy printed it: the route to ship, a measurement timed
on a busy machine, and a measurement whose artifact missed its gate on that target (not a bare 'ok')."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from edgekit.formats import Format
from edgekit.report.html_latest import latest_table
from edgekit.report.lines import route_line
from edgekit.report.rows import latest_rows
from edgekit.report.synthetic import synthetic_result
from edgekit.results import DeployResult
from edgekit.store import open_store


def _tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Every table in `runs show`'s text: its headers and its rows' cells without their spaces (compare them with a
    text without its spaces), a header or cell wrapped or folded onto more lines joined back."""
    tables: list[tuple[list[str], list[list[str]]]] = []
    heads: list[str] | None = None
    rows: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("┏"):
            heads, rows = [], []
        elif line.startswith("┃") and heads is not None:
            cells = [c.replace(" ", "") for c in line.split("┃")[1:-1]]
            heads = [a + b for a, b in zip(heads, cells)] if heads else cells
        elif line.startswith("│") and heads is not None:
            cells = [c.replace(" ", "") for c in line.split("│")[1:-1]]
            if cells[0] or not rows:  # a row begins with its artifact; its next lines leave it empty
                rows.append(cells)
            else:
                rows[-1] = [a + b for a, b in zip(rows[-1], cells)]
        elif line.startswith("└") and heads is not None:
            tables.append((heads, rows))
            heads = None
    return tables


def _table(text: str, header: str) -> tuple[list[str], list[list[str]]]:
    """The first table with a column HEADER (spaces left out)."""
    return next(t for t in _tables(text) if header.replace(" ", "") in t[0])


def _show(url: str, run_id: int, tmp_path: Path) -> str:
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home"), "COLUMNS": "400"}
    env.pop("EDGEKIT_STORE", None)
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "runs", "show", str(run_id), "--store", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_runs_show_says_the_route_a_busy_machine_and_a_missed_gate(tmp_path: Path) -> None:
    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC), rng=np.random.default_rng(0), targets=("pi4",), threads=(1,)
    )
    pi4 = result.runs[0]
    assert pi4.agent is not None and result.routes
    missed, busy = pi4.agent.measurements[0], pi4.agent.measurements[1]
    for c in pi4.comparisons:  # deploy printed 'MISS on 16 inputs' for this artifact on pi4
        if c.reference == "onnx":
            c.gates_passed = c.artifact != missed.artifact
    busy.others_cpu_share = 0.55
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    with open_store(url) as store:
        run_id = store.record(result)
    text = _show(url, run_id, tmp_path)
    heads, table = _table(text, "thr")  # the target's figures; its load and memory are stacked under it
    rows = {row[0]: row[heads.index("status")] for row in table}
    assert "gatemissed" in rows[missed.artifact], rows[missed.artifact]
    assert "unreliable:otherprocessesused55%ofCPUs" in rows[busy.artifact], rows[busy.artifact]
    ok = [a for a in rows if a not in (missed.artifact, busy.artifact)]
    assert ok and all("gate missed" not in rows[a] and "unreliable" not in rows[a] for a in ok), rows
    said = " ".join(text.split())
    assert f"route {route_line(result.routes[0])}" in said, text  # deploy's route line, word for word
    assert "pi4: other processes used up to 55% of its CPUs while these were timed" in said, text


def test_runs_show_says_what_load_ms_is_and_each_runtimes_start_up(tmp_path: Path) -> None:
    """load ms leaves the runtime's start-up out (the agent's runtime_init_ms): the table says so, and gives it."""
    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC), rng=np.random.default_rng(0), targets=("pi4",), threads=(1,)
    )
    first = result.runs[0].agent.measurements[0]  # type: ignore[union-attr]
    first.runtime_init_ms = 24.8
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    with open_store(url) as store:
        run_id = store.record(result)
        assert store.load(run_id).runs[0].agent.measurements[0].runtime_init_ms == 24.8  # type: ignore[union-attr]
    said = " ".join(_show(url, run_id, tmp_path).split())
    assert "load ms = opening the model with its runtime already started" in said, said
    assert f"runtime_init_ms: {first.runtime} 24.8 ms" in said, said


def test_runs_show_lists_the_thread_counts_an_emulated_target_was_only_estimated_at(tmp_path: Path) -> None:
    """A capped emulated target runs 1 thread and deploy estimates its 4-thread rows from the counted thread split;
    `runs show` printed the 1-thread rows only. The 4-thread estimates are rows too, said to be not run."""
    from edgekit.report.synthetic import add_estimates

    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC), rng=np.random.default_rng(0), targets=("pi5-emu",), threads=(1,)
    )
    add_estimates(result)
    emu = result.runs[0]
    measured = [m.artifact for m in emu.agent.measurements]  # type: ignore[union-attr]
    emu.estimates[f"{measured[0]} x4"] = {**emu.estimates[f"{measured[0]} x1"], "estimate_ms": 7.5}
    emu.estimates[f"{measured[1]} x4"] = {"status": "failed", "reason": "no thread split counted"}
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    with open_store(url) as store:
        run_id = store.record(result)
    text = _show(url, run_id, tmp_path)
    rows = [[c.strip() for c in ln.split("│")[1:-1]] for ln in text.splitlines() if ln.count("│") > 3]
    four = [r for r in rows if r[1] == "4"]
    assert len(four) == 1 and four[0][0] == measured[0], rows  # the failed estimate is no row
    assert four[0][2].startswith("~7.5 (") and "not run: estimated from the 1-thread run" in four[0][-1], four
    assert [r[0] for r in rows if r[1] == "1"] == measured  # the measured rows as before, first


def test_paths_and_device_words_with_brackets_print_as_written_in_runs_list_show_and_import(
    tmp_path: Path,
) -> None:
    """rich read `[red]` in a path or a device's CPU name as markup: `runs import /tmp/r[x]/run[red].json` said
    `/tmp/r/run.json: recorded`, `runs` titled the store `/tmp/r/st.db`, `runs show` printed the recipe path
    and the CPU model without their brackets (and in red). They print as written; edgekit's own styling stays."""
    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC), rng=np.random.default_rng(0), targets=("pi4",), threads=(1,)
    )
    folder = tmp_path / "r[x]"
    folder.mkdir()
    result.recipe_path = str(folder / "tiny[red].yaml")
    result.runs[0].agent.facts_before.cpu_model = "Cortex[bold]-A72"  # type: ignore[union-attr]
    saved = folder / "run[red].json"
    saved.write_text(result.model_dump_json())
    url = f"sqlite:///{folder / 'st[red].sqlite'}"
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home"), "COLUMNS": "400"}
    env.pop("EDGEKIT_STORE", None)

    def edgekit(*args: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "edgekit", "runs", *args, "--store", url],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    assert f"{saved}: recorded as run 1" in edgekit("import", str(saved))
    assert url in "".join(edgekit().split())  # the title wraps to the table's width
    shown = edgekit("show", "1")
    assert f"({result.recipe_path})" in shown and "Cortex[bold]-A72" in shown, shown


def test_a_run_whose_stored_rows_do_not_read_back_is_named_and_the_others_are_read(tmp_path: Path) -> None:
    """One samples value edited outside edgekit ('[1.0, oops') made `runs show` and the whole report an internal
    error naming no run; the run is a named error now (exit 1) and a report leaves it out, saying which."""
    import sqlite3

    path = tmp_path / "runs.sqlite"
    url = f"sqlite:///{path}"
    with open_store(url) as store:
        ids = [
            store.record(
                synthetic_result(
                    datetime(2026, 6, day, tzinfo=UTC),
                    rng=np.random.default_rng(day),
                    targets=("pi4",),
                    threads=(1,),
                )
            )
            for day in (1, 2, 3)
        ]
    bad = ids[1]
    with sqlite3.connect(path) as db:
        (measurement,) = db.execute(
            "SELECT min(measurement_id) FROM samples WHERE run_id = ?", (bad,)
        ).fetchone()
        db.execute("UPDATE samples SET samples_ms = '[1.0, oops' WHERE measurement_id = ?", (measurement,))
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    env.pop("EDGEKIT_STORE", None)

    def edgekit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgekit", *args, "--store", url],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    shown = edgekit("runs", "show", str(bad))
    assert shown.returncode == 1 and "internal error" not in shown.stderr, shown.stderr
    assert f"run {bad} cannot be read back: its samples rows cannot be read back" in shown.stderr, (
        shown.stderr
    )
    assert edgekit("runs", "show", str(ids[0])).returncode == 0
    report = edgekit("report", "--since", "2026-05-01", "--markdown", str(tmp_path / "r.md"))
    assert report.returncode == 0, report.stderr
    assert f"run {bad} left out: its samples rows cannot be read back" in report.stderr, report.stderr
    assert (tmp_path / "r.md").is_file()


@pytest.mark.parametrize(
    ("store", "says"),
    [
        ("sqlite://", "an in-memory SQLite database is no store"),
        ("sqlite:///:memory:", "an in-memory SQLite database is no store"),
        ("", "--store '': empty"),
    ],
)
def test_a_store_that_keeps_nothing_or_an_empty_store_option_is_refused(
    tmp_path: Path, store: str, says: str
) -> None:
    """`runs import R.json --store sqlite://` said "recorded as run 1" and the run was gone when edgekit exited;
    `--store ''` (a script's empty variable) recorded into the default store in silence. Both are bad input."""
    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC), rng=np.random.default_rng(0), targets=("pi4",), threads=(1,)
    )
    saved = tmp_path / "run.json"
    saved.write_text(result.model_dump_json())
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")}
    env.pop("EDGEKIT_STORE", None)
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "runs", "import", str(saved), "--store", store],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2 and says in out.stderr, out.stdout + out.stderr
    assert not (tmp_path / "home" / "results.sqlite").exists()  # nothing went to the default store


def test_runs_show_claims_no_percentile_its_samples_cannot_tell(tmp_path: Path) -> None:
    """runs show printed p90 and p99 of 3 samples (numpy's interpolation between the two largest) as if measured.
    Below 10 samples p90 is '-', below 100 p99, and the line under the table says why."""
    result = synthetic_result(  # 120 samples: p99 told but where 3 were taken
        datetime(2026, 6, 1, tzinfo=UTC),
        rng=np.random.default_rng(0),
        targets=("pi4",),
        threads=(1,),
        repeat=120,
    )
    few = result.runs[0].agent.measurements[0]  # type: ignore[union-attr]
    few.samples_ms = few.samples_ms[:3]
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    with open_store(url) as store:
        run_id = store.record(result)
    text = _show(url, run_id, tmp_path)
    heads, rows = _table(text, "p90 (ms)")
    row = next(r for r in rows if r[0] == few.artifact)
    assert row[heads.index("p90(ms)")] == "-" and row[heads.index("p99")] == "-", row
    said = " ".join(text.split())
    assert "too few samples to tell it (p90 needs 10, p99 needs 100; 3" in said, said


def test_the_peak_rss_is_labelled_the_processes_and_the_models_growth_is_shown(tmp_path: Path) -> None:
    """'peak RSS MiB' is the whole agent process's (python, numpy, the runtime: 53 MiB for a 25 KB model) but read
    as the model's, and rss_delta_mb, the figure nearest the model's own memory, was in no table. runs show and
    bench now head the peak as the process's and show the model's growth beside it."""
    from edgekit.report.bench_table import bench_table

    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC), rng=np.random.default_rng(0), targets=("pi4",), threads=(1,)
    )
    agent = result.runs[0].agent
    assert agent is not None
    for m in agent.measurements:
        m.peak_rss_mb, m.rss_delta_mb = 52.8, 0.4
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    with open_store(url) as store:
        run_id = store.record(result)
    text = _show(url, run_id, tmp_path)
    heads, rows = _table(text, "process peak RSS MiB")  # stacked under the figures: load and memory
    assert "peakRSSMiB" not in heads and "processpeakRSSMiB" in heads, heads
    row = next(r for r in rows if r[0] == "tflite-fp32")
    assert row[heads.index("processpeakRSSMiB")] == "52.8" and row[heads.index("modelRSS+MiB")] == "0.4", row
    said = " ".join(text.split())
    assert "process peak RSS = the agent process's peak (python, numpy and the runtime" in said, said
    table = bench_table(agent, "pi4")
    cells = {str(c.header): str(c._cells[0]) for c in table.columns}
    assert cells["process peak RSS MiB"] == "52.8" and cells["model RSS + MiB"] == "0.4", cells
    assert "process peak RSS = the agent process's peak" in str(table.caption)


@pytest.mark.parametrize("calibrated", [False, True])
def test_runs_show_says_what_the_star_of_an_estimate_means(tmp_path: Path, calibrated: bool) -> None:
    """An emulated target's estimates marked '*' (interval not validated): deploy's caption says what '*' means
    and why, `runs show` printed the '*' with no word of it. It now says deploy's line under the table; a run whose
    intervals are all validated has no '*' and no such line."""
    from edgekit.report.synthetic import add_estimates
    from edgekit.report.table_caption import caption

    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC),
        rng=np.random.default_rng(0),
        targets=("pi5-emu",),
        formats=[Format.TFLITE_FP32, Format.NCNN_FP32],
        threads=(1,),
    )
    add_estimates(result, calibrated=lambda m: calibrated or m.format.startswith("ncnn"))
    for key, est in result.runs[0].estimates.items():
        if not est["interval_calibrated"]:
            est["interval_not_validated"] = f"no calibration figure for {key.split(' x')[0]}"
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    with open_store(url) as store:
        run_id = store.record(result)
    text = _show(url, run_id, tmp_path)
    said = " ".join(text.split())
    deploy_line = next((ln for ln in caption(result, result.runs).splitlines() if ln.startswith("* ")), None)
    # r7: the headers said '80% interval' over intervals not validated; estimate and bench say 'interval' then
    words = "80% interval" if calibrated else "interval"
    assert _headers(text) == [f"pi5 ESTIMATE ms ({words})"], _headers(text)
    assert _headers(_deploy_text(result))[0] == f"pi5 ESTIMATE ms ({words})", _deploy_text(result)
    html = latest_table(latest_rows(result))
    assert f"<th>board estimate (ms, {words})</th>" in html, html
    # r8: deploy's caption and the Markdown report's intro said '80% interval' whatever the table held
    deployed = " ".join(_deploy_text(result).split())
    assert ("80% interval" in deployed) is calibrated, deployed
    assert f"with its {words}; not a measurement" in deployed, deployed
    markdown, _ = _report(url)
    assert f"from its instruction count, {words}; not a measurement" in " ".join(markdown.split()), markdown
    if calibrated:
        assert deploy_line is None and ")*" not in said and "* interval not validated" not in said, said
        return
    assert ")* │" in said  # the tflite row's estimate is starred, as deploy's table stars it
    assert "80% interval" not in said, said
    assert deploy_line == (
        "* interval not validated (no calibration figure for tflite-fp32): the cost model is calibrated on ncnn's "
        "benchmark models, at 1 and 4 threads"
    )
    assert deploy_line in said, said


def _headers(text: str) -> list[str]:
    """The estimate columns' headers of every table in TEXT, each as one line."""
    found: list[str] = []
    heads: dict[int, str] = {}
    for line in text.splitlines():
        if line.startswith("┏"):
            heads = {}
        elif line.startswith("┃"):
            for k, cell in enumerate(line.split("┃")[1:-1]):
                heads[k] = f"{heads.get(k, '')} {cell.strip()}".strip()
        elif line.startswith("┡"):
            found += [h for h in heads.values() if "ESTIMATE" in h]
    return found


def _deploy_text(result: DeployResult) -> str:
    from rich.console import Console as RichConsole

    from edgekit.report.table import deploy_table

    out = io.StringIO()
    RichConsole(file=out, width=400, color_system=None).print(deploy_table(result))
    return out.getvalue()


def test_a_runs_caveats_are_in_runs_show_and_the_html_report(tmp_path: Path) -> None:
    """deploy prints a run's caveats under its table (a device that is not the target's expected_cpu) and keeps
    them in the store; `runs show` and the HTML report's device facts left them out."""
    from html import escape

    from edgekit.report import build, parse_since, write

    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC), rng=np.random.default_rng(0), targets=("pi4",), threads=(1,)
    )
    said = (
        "the device reports its CPU as Cortex-A76 (CPU part 0xd0b), not the target's expected_cpu Cortex-A72"
    )
    result.runs[0].caveats.append(said)
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    with open_store(url) as store:
        run_id = store.record(result)
        report = build(store, since=parse_since("all"))
    assert said in " ".join(_show(url, run_id, tmp_path).split())
    html = tmp_path / "r.html"
    write(report, html=html)
    page = html.read_text()
    assert escape(said) in page and "1 target runs, newest first" in page


def _stored(tmp_path: Path, result: DeployResult) -> DeployResult:
    """RESULT recorded in a real store and read back, as `runs show` reads it."""
    with open_store(f"sqlite:///{tmp_path / 'runs.sqlite'}") as store:
        return store.load(store.record(result))


def _three_targets() -> DeployResult:
    """A board, a counted emulated target with its board's estimates (TFLite's starred) and the host, every format
    with figures and the longest name of them (tflite-onnx2tf-fp32), at 1 and 4 threads; one board row timed busy."""
    from edgekit.report.synthetic import BASE_MS, add_estimates

    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC),
        rng=np.random.default_rng(0),
        targets=("pi4", "pi5-emu", "host"),
        formats=[*BASE_MS, Format.TFLITE_ONNX2TF_FP32],
        threads=(1, 4),
    )
    add_estimates(result, calibrated=lambda m: m.format.startswith("ncnn"))
    result.runs[0].agent.measurements[0].others_cpu_share = 0.55  # type: ignore[union-attr]
    return result


@pytest.mark.parametrize("verbose", [False, True])
@pytest.mark.parametrize("width", [80, 120])
def test_runs_show_reads_from_80_columns_up(tmp_path: Path, width: int, verbose: bool) -> None:
    """In an 80-column terminal `runs show` cut the pi4-emu rows to `tflite... │ 1 │ ~0.106 (0.033...` and the host's
    to `tfl... │ 0.0...`; at 120 tflite-fp32 and tflite-fp16 both read `tflite-f...`; with --verbose the interval's
    upper bound went. Every table now fits the terminal, every name and figure whole (folded, never elided), in
    deploy's layout; a column that is '-' all down (the host's instruction count, p99 of 50 samples) is left out."""
    from edgekit.report.run_view import print_run
    from edgekit.report.table import estimate_text
    from edgekit.terminal import Console

    result = _stored(tmp_path, _three_targets())
    shown = io.StringIO()
    terminal = Console(file=shown, width=width, force_terminal=True, color_system=None)
    print_run(terminal, 1, result, verbose)
    text = shown.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width, text
    assert "…" not in text, text
    tables = [t for t in _tables(text) if "thr" in t[0]]  # the targets' (the artifacts' has no thread count)
    for heads, rows in tables:
        assert all(any(c != "-" for c in col) for col in list(zip(*rows))[2:]), (
            heads,
            rows,
        )  # no empty column
    # each target's figures (with a status), its load and memory stacked under them
    figures = dict(zip([run.target for run in result.runs], [t for t in tables if "status" in t[0]]))
    for run in result.runs:
        heads, rows = figures[run.target]
        ms = run.agent.measurements  # type: ignore[union-attr]
        assert [(r[0], r[1]) for r in rows] == [(m.artifact, str(m.threads)) for m in ms], rows
        if run.emulated:
            col = next(k for k, h in enumerate(heads) if "ESTIMATE" in h)
            said = [estimate_text(run.estimates[f"{m.artifact} x{m.threads}"]) or "" for m in ms]
            assert [r[col] for r in rows] == [e.replace(" ", "") for e in said], rows
            col = heads.index("insn/invoke(count)")
            assert [r[col] for r in rows] == [f"{m.instructions_per_invoke:,}" for m in ms], rows
            continue
        assert not any("insn" in h or "instructions" in h for h in heads), heads
        assert "p99" not in heads and "p90(ms)" in heads, heads  # 50 samples: no p99 to tell
        assert [r[heads.index("p50(ms)")] for r in rows] == [f"{m.p50_ms:.4g}" for m in ms], rows
    assert "unreliable:otherprocessesused55%ofCPUs" in figures["pi4"][1][0][-1], figures["pi4"]
    said = " ".join(text.split())
    assert "no p99 column: too few samples to tell it (p99 needs 100; 50 taken" in said, said
    if verbose:  # the emulated wall times, stacked under the estimates
        heads, rows = next(t for t in tables if any("emulatedwalltime" in h for h in t[0]))
        emu = next(r for r in result.runs if r.emulated).agent.measurements  # type: ignore[union-attr]
        col = heads.index("p50(ms,emulatedwalltime)")
        assert [r[col] for r in rows] == [f"{m.p50_ms:.4g}" for m in emu], rows


def test_runs_show_says_the_speedup_over_fp32_and_the_drift_from_the_host_as_deploy(tmp_path: Path) -> None:
    """deploy prints 'x fp32' on the host and boards and 'drift vs host max|d| / cos' for each target compared with
    the host; `runs show` had neither (the ratio only on a counted emulated target), though the store keeps both.
    Its cells now read as deploy's table's, with deploy's line saying what the drift is."""
    import re

    from rich.console import Console as RichConsole

    from edgekit.report.table import DRIFT_NOTE, deploy_table

    result = _stored(tmp_path, _three_targets())
    deployed = io.StringIO()
    RichConsole(file=deployed, width=400, color_system=None).print(deploy_table(result))
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    text = _show(url, 1, tmp_path)
    deploy_tables = [t for t in _tables(deployed.getvalue()) if "thr" in t[0]]
    show_tables = [t for t in _tables(text) if "thr" in t[0] and "status" in t[0]]
    order = sorted(result.runs, key=lambda r: r.target == "host")  # deploy prints the host last
    for run in result.runs:
        d_heads, d_rows = deploy_tables[order.index(run)]
        heads, rows = show_tables[result.runs.index(run)]
        cells = {(r[0], r[1]): r for r in rows}
        ratio = "xfp32byinsn" if run.emulated else "xfp32"
        for d_row in d_rows:
            row = cells[(d_row[0], d_row[1])]
            assert row[heads.index(ratio)] == d_row[d_heads.index(ratio)], (run.target, row, d_row)
            if run.target == "host":
                assert not any(h.startswith("drift") for h in heads), heads
                continue
            drift = "driftvshostmax|d|/cos"
            assert row[heads.index(drift)] == d_row[d_heads.index(drift)], (run.target, row, d_row)
    host = show_tables[result.runs.index(result.runs[2])][1]
    assert {r[0]: r for r in host}["tflite-fp32"][4] == "base"
    assert all(re.fullmatch(r"\d+\.\d\dx|base", r[4]) for r in host), host  # every host row has its speed-up
    said = " ".join(text.split())
    assert (
        DRIFT_NOTE in said
        and "x fp32 = p50 of the same runtime's fp32 / p50 (same target and threads)" in said
    )


def test_runs_show_says_which_estimates_were_made_without_their_thread_split(tmp_path: Path) -> None:
    """deploy's table says under it which estimates were made without the split between threads their thread
    count reads (the JSON's `split_not_counted`); `runs show` of the same run did not."""
    from edgekit.estimate.attach import estimates_for_run

    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC), rng=np.random.default_rng(0), targets=("pi4-emu",), threads=(1, 2)
    )
    run = result.runs[0]
    run.estimates = estimates_for_run(run, [], "pi4-emu", threads=[1, 2])
    note = run.estimates["ncnn-fp32 x2"]["split_not_counted"]
    assert note and "split_not_counted" not in run.estimates["ncnn-fp32 x1"]
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    with open_store(url) as store:
        run_id = store.record(result)
    said = " ".join(_show(url, run_id, tmp_path).split())
    assert "ncnn-fp32 x2" in said and " ".join(note.split()) in said, said


def _report(url: str) -> tuple[str, str]:
    """(Markdown, HTML) of the report on the store at `url`."""
    from edgekit.report import build
    from edgekit.report.html import render as render_html
    from edgekit.report.markdown import render

    with open_store(url) as store:
        report = build(store)
    return render(report), render_html(report)
