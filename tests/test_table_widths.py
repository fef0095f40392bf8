"""The deploy table stays readable from 80 columns up: every artifact's full name, every gate verdict and the
estimate of an emulated board are on screen at 80, 100 and 200 columns (cells fold, never vanish)."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from edgekit.formats import Format
from edgekit.report.synthetic import BASE_MS, add_estimates, synthetic_result
from edgekit.report.table import deploy_table


def _result():  # two targets and the host: the widest deploy a nightly prints
    formats = list(BASE_MS)  # the formats the synthetic results have figures for (TFLite, ncnn)
    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC),
        rng=np.random.default_rng(0),
        targets=("pi4", "pi5-emu", "pi5"),
        formats=formats,
        threads=(1, 4),
    )
    return add_estimates(result, ms=(12.34, 10.1, 15.6), calibrated=lambda m: m.format.startswith("ncnn"))


@pytest.mark.parametrize("width", [80, 100, 200])
def test_deploy_table_fits_and_keeps_every_verdict(width: int) -> None:
    result = _result()
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(deploy_table(result))
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width
    for fmt in Format:
        if fmt.value in {a.id for a in result.artifacts}:
            assert re.search(rf"\b{re.escape(fmt.value)}\b", text), (
                width,
                fmt.value,
            )  # never cut to 'tflite-fp…'
    tables = len(re.findall(r" on (pi4|pi5-emu|pi5)\b", text))
    assert tables == 3  # one stacked table per target
    arts = len(result.artifacts)
    verdicts = len(re.findall(r"\b(ok|MISS)\b", text))
    assert verdicts >= 3 * arts * 2  # a gate verdict on every row of every target (2 thread counts)
    assert "~12.3" in text and "ESTIMATE" in text  # the emulated board's headline


def test_runs_show_prints_fidelity_as_one_line_not_a_dict(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os
    import subprocess
    import sys

    from edgekit.store import open_store

    result = _result()
    art = result.artifacts[0]
    art.fidelity.update(
        {
            "top1_agreement": 0.9972,
            "top1": 0.9231,
            "top1_reference": 0.925,
            "samples": 1000,
            "cosine_worst": 0.98701,
            "outputs": {"scores": {"max_abs": 0.01, "cosine": 0.999}},
        }
    )
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    with open_store(url) as store:
        run_id = store.record(result)
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "runs", "show", str(run_id), "--store", url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "{" not in text and "'outputs'" not in text  # no raw Python dict
    assert "agree 99.7 %" in text and "100 %" not in text  # 99.72 % is never rounded up to 100 %
    assert "top-1 92.3 % (ONNX 92.5 %)" in text and "(worst input 0.98701)" in text


def test_the_caption_names_each_uncalibrated_format_once() -> None:
    """Four TFLite formats without a calibration figure are one reason naming the four, not four reasons; other
    reasons (threads, size) stay their own."""
    result = _result()
    emu = next(r for r in result.runs if r.target == "pi5-emu")
    for key, est in emu.estimates.items():
        fmt = key.split()[0]
        if fmt.startswith("tflite"):
            est["interval_not_validated"] = f"no calibration figure for {fmt}"
    first = next(iter(emu.estimates.values()))
    first.update(interval_calibrated=False, interval_not_validated="validated at 1 and 4 threads only")
    buffer = io.StringIO()
    Console(file=buffer, width=400, color_system=None).print(deploy_table(result))
    caption = next(
        line for line in buffer.getvalue().splitlines() if line.startswith("* interval not validated")
    )
    assert caption.count("no calibration figure for") == 1, caption
    tflite = sorted({k.split()[0] for k in emu.estimates if k.startswith("tflite")})
    assert "no calibration figure for " + ", ".join(tflite) in caption, caption
    assert "validated at 1 and 4 threads only" in caption


def test_the_caption_says_each_reason_once_when_estimates_join_several() -> None:
    """An estimate at an uncalibrated thread count joins its reasons ('no calibration figure at 4 threads; no
    calibration figure for tflite-fp32'): the caption repeated the thread reason once per artifact, ~20 times."""
    result = _result()
    emu = next(r for r in result.runs if r.target == "pi5-emu")
    for key, est in emu.estimates.items():
        fmt, threads = key.split()[0], int(key.split()[1].lstrip("x"))
        why = [f"no calibration figure at {threads} threads"] if threads > 1 else []
        why += (
            [f"no calibration figure for {fmt}"] if fmt.startswith("tflite") else ["outside the size range"]
        )
        est.update(interval_calibrated=False, interval_not_validated="; ".join(why))
    buffer = io.StringIO()
    Console(file=buffer, width=1000, color_system=None).print(deploy_table(result))
    caption = next(
        line for line in buffer.getvalue().splitlines() if line.startswith("* interval not validated")
    )
    threads = sorted({int(k.split()[1].lstrip("x")) for k in emu.estimates} - {1})
    assert threads, emu.estimates.keys()
    tflite = sorted({k.split()[0] for k in emu.estimates if k.startswith("tflite")})
    said = f"no calibration figure for {', '.join(tflite)}; none at {' and '.join(map(str, threads))} threads"
    assert said in caption, caption
    assert caption.count("calibration figure") == 1 and caption.count("threads") == 2, (
        caption
    )  # + 'at 1 and 4'
    assert caption.count("outside the size range") == 1, caption


def _at_80_columns(*args: str) -> str:
    import os
    import subprocess
    import sys

    env = {**os.environ, "COLUMNS": "80"}
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert max(len(line) for line in done.stdout.splitlines()) <= 80
    table = [line for line in done.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert all(line.rstrip()[-1] in "┓┃┩│┘" for line in table), done.stdout  # the right edge is not cropped
    return done.stdout


def test_edgekit_formats_names_every_format_in_full_at_80_columns() -> None:
    """The names a user types next (`--format NAME`) are never cut to 'tflite-onnx2tf-…' on a narrow terminal;
    no cell is cut at all (long package names fold)."""
    text = _at_80_columns("formats")
    for fmt in Format:
        assert re.search(rf"│ {re.escape(fmt.value)} +│", text), fmt.value
    assert "…" not in text
    for module in (
        "ai_edge_litert",
        "onnxruntime",
    ):  # the module that runs it on this host: one word, not split
        assert re.search(rf"│ {module} +│", text), module


def test_edgekit_targets_cuts_no_host_name_at_80_columns() -> None:
    text = _at_80_columns("targets")
    assert "…" not in text and "pi4-emu" in text
    assert "raspberrypi5.local:22" in text  # the address a user copies: one piece, not folded mid-word


def test_an_emulated_only_deploy_shows_every_estimated_thread_count() -> None:
    """`deploy --target pi5-emu --no-host`: the emulated run measures 1 thread (its capped plan) but estimates the
    board at the recipe's 4 threads too; those rows are shown although no target measured 4 threads."""
    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC),
        rng=np.random.default_rng(0),
        targets=("pi5-emu",),
        formats=[Format.NCNN_FP32, Format.NCNN_INT8],
        threads=(1,),
    )
    (emu,) = [r for r in result.runs if r.target == "pi5-emu"]
    for m in emu.agent.measurements:  # type: ignore[union-attr]
        for n, ms in ((1, 34.3), (4, 19.6)):
            emu.estimates[f"{m.artifact} x{n}"] = {
                "status": "ok",
                "board": "pi5",
                "estimate_ms": ms,
                "low_ms": ms * 0.8,
                "high_ms": ms * 1.25,
            }
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(deploy_table(result))
    text = buffer.getvalue()
    assert re.search(r"ncnn-int8 +│ +4 │ +~19\.6", text), text


def test_the_caption_explains_estimate_only_when_one_is_shown() -> None:
    """An emulated core no board is calibrated for (phone-emu) shows counts, no ESTIMATE column: the caption does
    not explain one; with estimates it does."""

    def caption(result: object) -> str:
        buffer = io.StringIO()
        Console(file=buffer, width=400, color_system=None).print(deploy_table(result))  # type: ignore[arg-type]
        return buffer.getvalue()

    result = _result()
    assert "ESTIMATE = the real board's latency" in caption(result)
    for run in result.runs:
        run.estimates = {}
    text = caption(result)
    assert "ESTIMATE = " not in text and "no board estimate" in text and "x fp32 by insn" in text


def test_an_emulated_only_deploy_has_no_empty_host_column_and_no_p50_caption() -> None:
    """`deploy --target phone-emu --no-host`: a 'drift vs host' column of blank cells and a caption explaining
    p50s and 'ms per invocation' the table did not have."""
    result = _result()
    result.runs = [r for r in result.runs if r.target == "pi5-emu"]
    emu = result.runs[0]  # and no host run to compare with
    emu.comparisons = [c for c in emu.comparisons if c.reference != "host"]
    buffer = io.StringIO()
    Console(file=buffer, width=300, color_system=None).print(deploy_table(result))
    text = buffer.getvalue()
    assert "drift vs host" not in text and "ESTIMATE" in text and "x fp32" in text
    assert "ms per invocation" not in text and "p50 of the same runtime" not in text
    with_host = _result()
    buffer = io.StringIO()
    Console(file=buffer, width=300, color_system=None).print(deploy_table(with_host))
    assert "drift vs host" in buffer.getvalue() and "p50 of the same runtime" in buffer.getvalue()


def test_a_host_only_format_says_so_on_the_boards() -> None:
    """OpenVINO is measured on the host alone: a board's row for it read '-' with no reason."""
    from edgekit.results import ArtifactInfo

    result = _result()
    result.artifacts.append(
        ArtifactInfo(id="openvino-fp32", format="openvino-fp32", files=[], sha256="0", size_bytes=1)
    )
    buffer = io.StringIO()
    Console(file=buffer, width=300, color_system=None).print(deploy_table(result))
    rows = [line for line in buffer.getvalue().splitlines() if "openvino-fp32" in line]
    boards = [line for line in rows if "host only: not sent to boards" in line]
    assert len(boards) == 2 * 3, rows  # pi4, pi5-emu and pi5, at 1 and 4 threads
    pi5_emu = next(r for r in result.runs if r.target == "pi5-emu")
    pi5_emu.estimates = {}  # counted with no board estimate (phone-emu): its row was blank
    buffer = io.StringIO()
    Console(file=buffer, width=300, color_system=None).print(deploy_table(result))
    rows = [line for line in buffer.getvalue().splitlines() if "openvino-fp32" in line]
    assert len([line for line in rows if "host only: not sent to boards" in line]) == 2 * 3, rows


def test_only_a_capped_plan_is_called_one() -> None:
    """`deploy --profile` sets layer_times on every target's plan: the caption called the host's and a
    board's full plan 'its own capped plan'."""
    result = _result()
    pi4 = next(r for r in result.runs if r.target == "pi4")
    pi4.benchmark = {**result.benchmark, "layer_times": 10}
    pi5 = next(r for r in result.runs if r.target == "pi5")
    pi5.benchmark = {**result.benchmark, "repeat": 3, "threads": [1]}
    buffer = io.StringIO()
    Console(file=buffer, width=300, color_system=None).print(deploy_table(result))
    text = buffer.getvalue()
    assert (
        "pi4: its own capped plan" not in text and "pi5: its own capped plan: threads [1], repeat 3" in text
    )


def test_a_capped_plan_says_its_other_thread_rows_are_estimates_not_runs() -> None:
    """pi5-emu capped to threads [1] showed 'its own capped plan: threads [1]' above 2-thread ESTIMATE rows (from
    the 1-thread run's counts): the plan line read as if those rows were made up, or run. It said "from the
    1-thread run's counted thread split", which holds for ncnn at 4 threads only (2 threads are interpolated)."""
    result = _result()
    emu = next(r for r in result.runs if r.target == "pi5-emu")
    assert emu.agent is not None
    emu.agent.measurements = [m for m in emu.agent.measurements if m.threads == 1]
    emu.benchmark = {**result.benchmark, "threads": [1], "repeat": 3}
    other = sorted({int(k.rpartition(" x")[2]) for k in emu.estimates} - {1})
    assert other, emu.estimates.keys()
    buffer = io.StringIO()
    Console(file=buffer, width=400, color_system=None).print(deploy_table(result))
    line = next(ln for ln in buffer.getvalue().splitlines() if "pi5-emu: its own capped plan" in ln)
    n = " and ".join(map(str, other))
    assert (
        f"its {n}-thread rows are ESTIMATES from the 1-thread run's instruction counts, not runs at {n} threads"
        in line
    ), line
    pi5 = next(r for r in result.runs if r.target == "pi5")  # a board that ran every count it shows: nothing
    pi5.benchmark = {**result.benchmark, "repeat": 3}
    buffer = io.StringIO()
    Console(file=buffer, width=400, color_system=None).print(deploy_table(result))
    line = next(ln for ln in buffer.getvalue().splitlines() if "pi5: its own capped plan" in ln)
    assert "ESTIMATES" not in line, line


def test_runs_show_leads_an_emulated_target_with_its_estimate_not_qemu_wall_time(tmp_path: Path) -> None:
    """Issue 10's headline rule in `runs show`: a counted emulated target shows the board estimate and the count;
    qemu's wall and load times only with --verbose (they are in the JSON either way)."""
    import os
    import subprocess
    import sys

    from edgekit.store import open_store

    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    result = _result()
    emulated = next(r for r in result.runs if r.target == "pi5-emu")
    assert emulated.agent is not None
    for m in emulated.agent.measurements:
        m.runtime_init_ms = 812.0
    with open_store(url) as store:
        run_id = store.record(result)

    def show(*extra: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "edgekit", "runs", "show", str(run_id), "--store", url, *extra],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "250"},
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    text = show()
    emu = text[text.index("pi5-emu") :].split("\npi5 ")[0]
    assert "ESTIMATE" in emu and "insn / invoke (count)" in emu and "emulated wall time" not in emu, emu
    assert "--verbose or --json" in emu
    # the count-based ratio deploy's table and the report show (it was missing here)
    assert "x fp32 by insn" in emu and re.search(r"│\s*\d+\.\d\dx\s*│", emu), emu
    assert "p50 (ms)" in text  # a real board keeps its measured times
    verbose = show("--verbose")
    assert "p50 (ms, emulated wall time)" in verbose
    emu = verbose[verbose.index("pi5-emu") :].split("\npi5 ")[0]
    note = next(
        line for line in emu.splitlines() if "runtime_init_ms" in line
    )  # qemu's start-up, not the board's
    assert "emulated wall ms" in note and "load emulated wall ms" in note, note


def test_a_target_shows_only_the_thread_counts_it_ran_or_estimated() -> None:
    """phone-emu ran its capped plan (1 thread) beside a host at 1 and 2: its table had a 'thr 2' row for every
    artifact with a drift and an 'ok' gate taken from the 1-thread run."""
    result = _result()
    for run in result.runs:
        run.estimates = {}
    pi5_emu = next(r for r in result.runs if r.target == "pi5-emu")
    pi5_emu.benchmark = {**result.benchmark, "threads": [1]}
    buffer = io.StringIO()
    Console(file=buffer, width=300, color_system=None).print(deploy_table(result))
    tables = re.split(r"\n(?=\S.* on (?:pi4|pi5-emu|pi5|host)\b)", buffer.getvalue())
    emu = next(t for t in tables if " on pi5-emu" in t.splitlines()[0])
    pi4 = next(t for t in tables if " on pi4" in t.splitlines()[0])
    row = re.compile(r"^│\s*(\S+)\s*│\s*(\d+)\s*│", re.M)
    assert {m.group(2) for m in row.finditer(emu) if m.group(1) in {a.id for a in result.artifacts}} == {"1"}
    assert {m.group(2) for m in row.finditer(pi4) if m.group(1) in {a.id for a in result.artifacts}} == {
        "1",
        "4",
    }


def test_convert_piped_to_a_log_keeps_every_cell_whole(tmp_path: Path) -> None:
    """Not a terminal (a log, CI): the convert table was cut at 130 columns ('openvino-fp…', '0.07…' MB)."""
    import os
    import subprocess
    import sys

    recipe = Path(__file__).resolve().parent.parent / "recipes" / "digits.yaml"
    env = {**os.environ, "COLUMNS": "80"}  # as pytest and many CI shells set it
    formats = ["-f", "onnx-fp32", "-f", "openvino-int8", "-f", "mnn-fp16"]
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe), *formats, "--keep-going"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    rows = [  # table rows (indented), not the progress lines ('onnx-fp32: converting ...')
        line
        for line in out.stdout.splitlines()
        if line.startswith(" ") and line.strip().startswith(("onnx", "openvino", "mnn"))
    ]
    assert len(rows) == 3 and "…" not in out.stdout, out.stdout
    assert "openvino-int8" in out.stdout and "accuracy" in out.stdout


def test_a_failed_conversion_has_no_size_in_the_artifacts_table() -> None:
    """A format that failed to convert (no files) showed '0.00' MB, as if converted empty; the convert table says
    '-' for it, and so does deploy's now."""
    result = _result()
    failed = result.artifacts[0].model_copy(update={"size_bytes": 0, "files": []})
    result.artifacts = [failed, *result.artifacts[1:]]
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(deploy_table(result))
    row = next(line for line in buffer.getvalue().splitlines() if line.startswith(f"│ {failed.id} "))
    assert [cell.strip() for cell in row.split("│")][2] == "-", row


def _bench_agent(target: str, count: int | None):  # type: ignore[no-untyped-def]
    """One target's agent result, as `edgekit bench` prints it; `count`: the guest instructions per invoke of an
    emulated target (squeezenet's 90.8 M)."""
    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC),
        rng=np.random.default_rng(0),
        targets=(target,),
        formats=[Format.NCNN_FP32, Format.NCNN_INT8, Format.TFLITE_INT8],
        threads=(1,),
    )
    agent = result.runs[0].agent
    assert agent is not None
    for m in agent.measurements:
        m.instructions_per_invoke = count
    return agent


@pytest.mark.parametrize("width", [80, 100, 150])
@pytest.mark.parametrize(("target", "count"), [("pi4-emu", 90_804_123), ("pi4", None)])
def test_bench_table_never_cuts_the_artifact_or_its_headline_figure(
    width: int, target: str, count: int | None
) -> None:
    """`edgekit bench squeezenet.param --target pi4-emu` at 150 columns cut the instruction count (the headline
    figure of an emulated target) and the artifact's name: '│ ncnn-fp… │ ... │ 90,804,… │'. Both are whole now
    (a board's p50 too), at every width; their long headers wrap instead; from 150 columns every figure is whole."""
    from edgekit.report.bench_table import bench_table

    agent = _bench_agent(target, count)
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(bench_table(agent, target))
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width, text
    rows = [line for line in text.splitlines() if line.startswith("│") and line.split("│")[1].strip()]
    assert [row.split("│")[1].strip() for row in rows] == [m.artifact for m in agent.measurements], text
    for row, m in zip(rows, agent.measurements):
        figure = "90,804,123" if count else f"{m.p50_ms:.3g}"
        assert re.search(rf"│ +{re.escape(figure)} │", row), (width, row)
        if width >= 150:  # every figure whole (a runtime's name may be cut)
            assert "…" not in "".join(row.split("│")[3:]), (width, row)
    if count:  # the count's header wraps where room is short, and keeps one line where there is room for it
        wide = io.StringIO()
        Console(file=wide, width=400, color_system=None).print(bench_table(agent, target))
        assert "guest insn / invoke" not in text and "guest insn / invoke" in wide.getvalue()
