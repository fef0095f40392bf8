"""The report: self-contained HTML whose plots really render in headless Chromium, and a Markdown summary."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgekit.formats import Format
from edgekit.report import build, parse_since, write
from edgekit.report.panels import colour
from edgekit.report.synthetic import add_estimates, synthetic_result
from edgekit.store import open_store

CHROMIUM = "/usr/bin/chromium"
T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
FORMATS = (Format.TFLITE_FP32, Format.TFLITE_INT8, Format.NCNN_FP32, Format.NCNN_INT8)


def _stored_and_rendered(path: Path, results: list) -> tuple[str, str]:
    """(Markdown, HTML) of the report on a real SQLite store at `path` holding `results`."""
    from edgekit.report.html import render as render_html
    from edgekit.report.markdown import render

    with open_store(f"sqlite:///{path}") as store:
        for result in results:
            store.record(result)
        report = build(store)
    return render(report), render_html(report)


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'results.sqlite'}"
    rng = np.random.default_rng(2)
    with open_store(url) as store:
        for night in range(10):
            slow = {("tflite-int8", "pi4"): 1.25} if night == 9 else None
            result = synthetic_result(
                T0 + timedelta(days=night),
                rng=rng,
                formats=FORMATS,
                threads=(1, 2),
                repeat=40,
                slowdown=slow,
            )
            if night == 9:  # the latest night carries pi5-emu's board estimates, as a counted deploy does
                add_estimates(result)
            store.record(result)
        store.record(
            synthetic_result(
                T0 + timedelta(days=9, hours=1),
                rng=rng,
                recipe="digits",
                targets=("pi4",),
                formats=(Format.TFLITE_FP32,),
                threads=(1,),
            )
        )
    return url


@pytest.fixture(scope="module")
def written(store_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("out")
    with open_store(store_url) as store:
        report = build(store, recipes=["yolov5-lite"])
    html, md = out / "report.html", out / "summary.md"
    assert write(report, html=html, markdown=md) == [html, md]
    return html, md


def test_html_is_self_contained(written: tuple[Path, Path]) -> None:
    text = written[0].read_text()
    assert text.startswith("<!doctype html>")
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\((?!#)", text, re.I)  # url(#clip) is local
    assert not re.search(r"(src|href)=\"https?://", text)  # svg xmlns namespaces are names, not fetches
    # per thread count (2): pi4 trend, distribution, precisions; pi5-emu the same + instruction counts;
    # the conversion's fidelity once for both targets
    assert text.count("<svg") == 2 * 3 + 2 * 4 + 1


def test_emulated_times_are_labelled_everywhere(written: tuple[Path, Path]) -> None:
    text = written[0].read_text()
    for figure in re.findall(r'<figure data-target="pi5-emu".*?</figure>', text, re.S):
        assert "EMULATED" in figure or "instruction count" in figure
        assert "emulated" in figure.lower()
    for figure in re.findall(r'<figure data-target="pi4".*?</figure>', text, re.S):
        assert "emulated" not in figure.lower()
    rows = [
        r for r in re.findall(r"<tr[^>]*>.*?</tr>", text, re.S) if ">pi5-emu<" in r or "pi5-emu<span" in r
    ]
    assert rows and all('class="emu">emulated' in r for r in rows)
    latest = text[text.index("Latest results") : text.index("Route to ship")]
    emulated_rows = [r for r in re.findall(r'<tr class="[^"]*">.*?</tr>', latest, re.S) if ">pi5-emu<" in r]
    assert emulated_rows and all(
        'title="qemu wall time' in r for r in emulated_rows
    )  # no headline: a tooltip
    assert "instr." in text and "instructions / invoke (count)" in text


def test_route_to_ship_is_shown_per_target_over_time(written: tuple[Path, Path]) -> None:
    text = written[0].read_text()
    section = text[text.index("Route to ship, per target") : text.index("Latency trend")]
    rows = re.findall(r"<tr>(?!<th).*?</tr>", section, re.S)
    assert len(rows) == 20  # 10 nights x 2 targets
    assert all("<b>" in r for r in rows) and "p50 latency measured on the target" in section
    assert "guest instructions per inference on the emulated core" in section  # pi5-emu: counts, labelled


def test_regression_is_flagged_in_html_and_markdown(written: tuple[Path, Path]) -> None:
    html, md = written[0].read_text(), written[1].read_text()
    assert "2 regressions" in html
    assert re.search(
        r'<tr class="bad"><td class=l data-label=kind>latency</td><td class=l data-label=artifact>tflite-int8</td>'
        r"<td class=l data-label=target>pi4",
        html,
    )
    assert md.startswith("## edgekit report: 2 regressions")
    assert "- **latency** tflite-int8 at 1 thread on pi4" in md and "❌ yolov5-lite" in md  # not 'x1'
    assert " x1 " not in md and " x2 " not in md
    assert "pi5-emu board ESTIMATE ms" in md and "M instr. (count)" in md and "emulated wall" not in md
    assert "~12.3 (10.1-15.6) pi5 est." in md


def test_an_emulated_target_without_estimates_is_headed_by_its_counts(tmp_path: Path) -> None:
    """Counts only (no calibrated board): the column said 'board ESTIMATE ms' over cells with no estimate, and
    the fp32 artifact read '1.00x instr.' instead of being the base."""
    from edgekit.report.markdown import render

    with open_store(f"sqlite:///{tmp_path / 'counted.sqlite'}") as store:
        store.record(
            synthetic_result(T0, rng=np.random.default_rng(0), targets=("pi4-emu",), formats=FORMATS)
        )
        md = render(build(store))
    assert "pi4-emu instructions (count)" in md and "ESTIMATE" not in md, md
    assert "| tflite-fp32 | base, " in md and "no calibrated board stands for this device" in md, md
    from edgekit.report.html import render as render_html

    with open_store(f"sqlite:///{tmp_path / 'counted.sqlite'}") as store:
        html = render_html(build(store))
    # said once per cell, short, with the reason in its tooltip (it was the whole sentence in every row)
    cell = '<span class="muted" title="no calibrated board stands for this device: the estimate is calibrated on '
    assert cell in html and ' figures">none (no calibrated board)</span>' in html, html


def test_an_emulated_target_that_did_not_count_says_so_not_that_no_board_stands_for_it(
    tmp_path: Path,
) -> None:
    """pi4-emu run with counting off: the Markdown said "no calibrated board stands for this device" (the Pi 4
    is calibrated) over a column headed 'instructions (count)' whose every cell read 'no count'."""
    from edgekit.report.markdown import render

    result = synthetic_result(T0, rng=np.random.default_rng(0), targets=("pi4-emu",), formats=FORMATS)
    for t in result.runs:
        for m in t.agent.measurements if t.agent else []:
            m.instructions_per_invoke = None
    with open_store(f"sqlite:///{tmp_path / 'uncounted.sqlite'}") as store:
        store.record(result)
        md = render(build(store))
    assert "no calibrated board" not in md and "instructions (count)" not in md, md
    assert "pi4-emu: not counted (the run had `emulated.counting: false`)" in md, md
    assert "pi4-emu (not counted)" in md and "x fp32 by insn" not in md, md


def _screenshot(html: Path, png: Path, tmp: Path, height: int) -> np.ndarray:
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        f"--screenshot={png}",
        f"--window-size=1400,{height}",
        html.as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0 and png.is_file(), out.stderr[-2000:]
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def _colour_pixels(image: np.ndarray, rgb: tuple[float, float, float], tol: int = 3) -> int:
    target = np.array([round(c * 255) for c in rgb])
    return int((np.abs(image - target).max(axis=2) <= tol).sum())


def test_plots_render_in_headless_chromium(written: tuple[Path, Path], tmp_path: Path) -> None:
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), "chromium is installed by `make setup`"
    html = written[0]
    shot = _screenshot(html, tmp_path / "report.png", tmp_path, 4200)
    # the same page with the plots cut out: what the text and tables alone put on screen
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<svg\b.*?</svg>|<p class=\"legend\">.*?</p>", "", html.read_text(), flags=re.S))
    control = _screenshot(bare, tmp_path / "bare.png", tmp_path, 4200)

    colours = {a.value: colour(a.value) for a in FORMATS}
    with_plots = {a: _colour_pixels(shot, c) for a, c in colours.items()}
    without = {a: _colour_pixels(control, c) for a, c in colours.items()}
    assert all(n == 0 for n in without.values()), without
    assert all(n >= 150 for n in with_plots.values()), with_plots  # every artifact's line/box is drawn

    print("artifact colour pixels", with_plots)

    # the plots alone, stacked: most of that page must be drawn on, in many colours (lines, fills, text)
    only = tmp_path / "plots.html"
    figures = "".join(re.findall(r"<figure\b.*?</figure>", html.read_text(), re.S))
    only.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'></head><body style='margin:0'>{figures}"
        "</body></html>"
    )
    plots = _screenshot(only, tmp_path / "plots.png", tmp_path, 2400)[:, :440]  # panels are ~420 px wide
    ink = (plots < 235).any(axis=2)
    drawn_rows = ink.any(axis=1).mean()
    distinct = len({tuple(p) for p in plots.reshape(-1, 3)[::5]})
    print(f"plots page: ink {ink.mean():.3f}, rows with ink {drawn_rows:.2f}, distinct colours {distinct}")
    assert ink.mean() > 0.03 and drawn_rows > 0.6
    assert distinct > 200  # anti-aliased curves and fills, not flat text on white


def test_cli_report_writes_both_files_and_honours_filters(store_url: str, tmp_path: Path) -> None:
    """... and says where, as written: `--markdown /r[x]/s[red].md` said `wrote /r/s.md`, in red (rich read the
    brackets as markup)."""
    html, md = tmp_path / "r.html", tmp_path / "r[x]" / "s[red].md"
    md.parent.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "edgekit",
        "report",
        "--since",
        "all",
        "--store",
        store_url,
        "--target",
        "pi4",
        "--html",
        str(html),
        "--markdown",
        str(md),
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "300"}
    )
    assert out.returncode == 0, out.stderr
    assert "2 recipe(s), 2 regression(s)" in " ".join(out.stdout.split())
    assert f"wrote {md}" in out.stdout, out.stdout
    text = html.read_text()
    assert "pi5-emu" not in text and 'id="recipe-digits"' in text and 'id="recipe-yolov5-lite"' in text
    assert "| artifact | pi4 p50 ms | fidelity vs ONNX (cosine, host, at conversion) |" in md.read_text()


def test_empty_selection_says_so(store_url: str, tmp_path: Path) -> None:
    with open_store(store_url) as store:
        report = build(store, recipes=["no-such-recipe"])
    write(report, html=tmp_path / "e.html", markdown=tmp_path / "e.md")
    assert "No runs in the store" in (tmp_path / "e.html").read_text()
    assert "No runs in the store" in (tmp_path / "e.md").read_text()
    # what the store does hold, so a typo in --recipe / --target is visible
    for page in ("e.html", "e.md"):
        text = (tmp_path / page).read_text()
        wanted = "Nothing for recipe no-such-recipe; recipes in the store: digits, yolov5-lite"
        assert wanted in text, text[-500:]
    with open_store(store_url) as store:
        assert "since 2099-01-01" in build(store, since=4070908800.0).empty_hint
        typo = build(store, targets=["pi44"]).empty_hint  # a target no run measured: those that were, named
        assert "no run in the store measured pi44: its targets are " in typo
        assert "pi4" in typo.split("are ")[1]
    with open_store(f"sqlite:///{tmp_path / 'new.sqlite'}") as store:
        assert build(store).empty_hint.startswith("The store holds no runs yet")


def test_parse_since() -> None:
    now = 1_800_000_000.0  # 2027-01-15
    assert parse_since("30d", now=now) == now - 30 * 86400
    assert parse_since("99999999999d", now=now) == 0.0  # before 1970 (was an internal error): all history
    assert parse_since("12h", now=now) == now - 12 * 3600
    assert parse_since("all") is None and parse_since(None) is None
    assert parse_since("2026-01-31") == datetime(2026, 1, 31, tzinfo=UTC).timestamp()
    with pytest.raises(Exception, match="cannot read"):
        parse_since("last tuesday")


def test_what_changed_since_the_previous_run_is_listed() -> None:
    from edgekit.report.view import recipe_view
    from edgekit.store import StoredRun

    rng = np.random.default_rng(4)
    runs = [
        synthetic_result(T0 + timedelta(days=d), rng=rng, formats=FORMATS, threads=(1,)) for d in range(3)
    ]
    last = runs[-1]
    last.tool_versions["onnx2tf"] = "1.30.0"
    last.runs[0].agent.facts_before.runtimes["ncnn"] = "1.0.20270101"  # type: ignore[union-attr]
    last.artifacts[1].sha256 = "f" * 64
    stored = [StoredRun(i + 1, T0.timestamp() + i * 86400, r) for i, r in enumerate(runs)]
    view = recipe_view("yolov5-lite", stored)
    assert view.changes == [
        "tool onnx2tf: 1.29.24 -> 1.30.0",
        "tflite-int8: converted file changed",
        "pi4 runtime ncnn: 1.0.20261020 -> 1.0.20270101",
    ]
    assert recipe_view("yolov5-lite", stored[:2]).changes == []


def test_the_recipe_fields_that_changed_are_named(tmp_path: Path) -> None:
    """A regression after a recipe edit: the report said only that two sha256 digests differed. The deploy now
    stores the recipe's settings and the report names each changed field with its old and new value (through a
    real SQLite store: the field travels in the run's extra column); runs stored before keep the digest line."""
    from edgekit.recipe import load_recipe
    from edgekit.report.view import recipe_view

    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "yolov5-lite.yaml")
    old = recipe.model_copy(update={"int8": recipe.int8.model_copy(update={"tflite_float_tail": False})})
    rng = np.random.default_rng(5)
    runs = [
        synthetic_result(T0 + timedelta(days=d), rng=rng, formats=FORMATS, threads=(1,)) for d in range(3)
    ]
    for run, r in zip(runs, (old, old, recipe)):
        run.recipe_settings, run.recipe_sha256 = r.settings(), r.digest()
    legacy = synthetic_result(T0 + timedelta(days=3), rng=rng, formats=FORMATS, threads=(1,))
    legacy.recipe_settings = {}  # stored before the field existed
    with open_store(f"sqlite:///{tmp_path / 'r.sqlite'}") as store:
        for run in runs:
            store.record(run)
        stored = store.history(recipe="yolov5-lite")
        assert recipe_view("yolov5-lite", stored).changes[0] == "recipe int8.tflite_float_tail: false -> true"
        store.record(legacy)
        latest = recipe_view("yolov5-lite", store.history(recipe="yolov5-lite")).changes
    assert latest[0].startswith("recipe settings changed (sha256 "), latest


def test_public_names_and_lazy_imports() -> None:
    import edgekit.report
    import edgekit.store

    for module in (edgekit.report, edgekit.store):
        assert all(getattr(module, name) is not None for name in module.__all__)
    heavy = "{'sqlalchemy', 'scipy', 'matplotlib'}"
    code = f"import sys, edgekit.report.table; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # `edgekit deploy` prints its table without loading the report stack


def test_a_tied_route_is_marked_in_the_report(tmp_path: Path) -> None:
    """A route whose samples could not tell it from the runner-up shows the runner-up beside it (≈)."""
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    result = synthetic_result(T0, rng=np.random.default_rng(0), formats=FORMATS, threads=(1,), repeat=10)
    assert result.routes and all(r.get("tied_with") is None for r in result.routes)
    result.routes[0]["tied_with"] = "ncnn-fp32"  # as recommend() writes it for overlapping samples
    with open_store(url) as store:
        store.record(result)
        report = build(store, recipes=["yolov5-lite"])
    html = tmp_path / "report.html"
    write(report, html=html)
    section = html.read_text().split("Route to ship, per target")[1].split("Latency trend")[0]
    assert section.count("&asymp; ncnn-fp32") == 1
    # an estimated tie's tooltip says why in words with an apostrophe: it ended the single-quoted attribute early
    from html.parser import HTMLParser

    result.routes[0] |= {"basis": "estimate-ms"}
    with open_store(url) as store:
        store.record(result)
        write(build(store, recipes=["yolov5-lite"]), html=html)
    titles: list[str] = []

    class Titles(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            titles.extend(v or "" for k, v in attrs if k == "title" and tag == "span")

    Titles().feed(html.read_text())
    assert "one estimate lies inside the other's interval: the estimates do not rank the two" in titles


def test_each_target_shows_its_own_newest_run(tmp_path: Path) -> None:
    """Deploys to one target, then another (not a nightly over both): the latest table showed only the last
    deploy's target; the first target's rows come from its own newest run, which the table names."""
    from edgekit.report.html import render as render_html
    from edgekit.report.markdown import render

    with open_store(f"sqlite:///{tmp_path / 'two.sqlite'}") as store:
        first = store.record(
            synthetic_result(T0, rng=np.random.default_rng(0), targets=("pi4",), formats=FORMATS)
        )
        store.record(
            synthetic_result(
                T0 + timedelta(hours=1), rng=np.random.default_rng(1), targets=("pi5",), formats=FORMATS
            )
        )
        report = build(store)
    (view,) = report.recipes
    assert {r.target for r in view.rows} == {"pi4", "pi5"}
    assert {r.run_id for r in view.rows if r.target == "pi4"} == {first}
    assert {r.run_id for r in view.rows if r.target == "pi5"} == {None}  # the latest run itself
    md = render(report)
    assert f"pi4 p50 ms (run #{first})" in md and "| pi5 p50 ms |" in md, md
    assert f"run #{first}</span>" in render_html(report)


def test_dollar_signs_in_ids_are_drawn_as_text_not_parsed_as_math(tmp_path: Path) -> None:
    """An artifact id or target name with `$...$` in it (runs import takes a foreign file's ids as they are) was
    parsed by matplotlib as mathtext: an unknown macro crashed the whole HTML report (in a nightly, after
    recording). Every plot, the measured ones and an emulated board's estimates, draws it as the text it is."""
    odd, target = "int8$\\undefinedmacro$", "pi4$\\alpha$"
    nights = []
    for day in range(4):
        result = synthetic_result(
            T0 + timedelta(days=day),
            rng=np.random.default_rng(day),
            formats=(Format.TFLITE_FP32, Format.TFLITE_INT8),
            threads=(1,),
        )
        for run in result.runs:
            run.target = target if run.target == "pi4" else run.target
            for m in run.agent.measurements if run.agent else []:
                m.artifact = odd if m.artifact == "tflite-int8" else m.artifact
        nights.append(add_estimates(result))  # pi5-emu's estimates: estimate_plots draws the ids too
    _md, html = _stored_and_rendered(tmp_path / "math.sqlite", nights)
    drawn = [svg for svg in re.findall(r"<svg\b.*?</svg>", html, re.S) if f">{odd}</text>" in svg]
    assert len(drawn) == 2 and "ESTIMATE" in drawn[1], (
        drawn
    )  # pi4's latency distribution, pi5-emu's estimates
    assert f"{target}, 1 thread: latency distribution" in html


def test_text_from_the_store_cannot_inject_markup(tmp_path: Path) -> None:
    """An error message (a device's, or in an imported result) with HTML in it is text in both the HTML
    report and the Markdown summary: a renderer that passes HTML through must not run it."""
    from edgekit.report.html import render as render_html
    from edgekit.report.markdown import render

    hostile = "<script>alert(1)</script><img src=x onerror=alert(2)> | a|b"
    result = synthetic_result(T0, rng=np.random.default_rng(0), formats=FORMATS, threads=(1,), repeat=10)
    for run in result.runs:
        for m in run.agent.measurements if run.agent else []:
            if m.artifact == "ncnn-int8":
                m.status, m.error, m.samples_ms = "failed", hostile, []
        run.error = hostile
    with open_store(f"sqlite:///{tmp_path / 'h.sqlite'}") as store:
        store.record(result)
        report = build(store)
    md, html = render(report), render_html(report)
    assert "alert(1)" in md and "alert(1)" in html  # the message is shown
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "\\<script\\>" in md and "&lt;" not in md  # readable raw: backslash escapes, not entities
    from markdown_it import MarkdownIt  # a CommonMark renderer that passes HTML through (html=True)

    shown = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
    assert "<script" not in shown and "<img" not in shown and "&lt;script&gt;alert(1)" in shown
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len({line.count(" | ") for line in table}) == 1  # no row broken by a '|' in a message


def test_markdown_printed_to_a_log_keeps_table_rows_whole(store_url: str) -> None:
    """`edgekit report` without --markdown (cron `>> nightly.log`) wrapped the Markdown at 80 columns: table rows
    broke over two lines."""
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "report", "--store", store_url, "--since", "all"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "80"},
    )
    table = [line for line in out.stdout.splitlines() if line.startswith("|")]
    assert out.returncode == 0 and table, out.stdout + out.stderr
    assert all(line.rstrip().endswith("|") for line in table) and max(map(len, table)) > 80, table


def test_axis_labels_read_the_value_they_stand_for() -> None:
    """From 10,000 the tick labels divided by 10,000 and wrote 'k': a count of 140,631 read '14.1k' (the probe's
    instruction-count axis ran 18k-42k for 140k-407k). Each label, read back, is the value to 3 figures."""
    from edgekit.report.panels import compact as _compact

    units = {"k": 1e3, "M": 1e6, "G": 1e9}
    for value in (0.25, 9999.0, 10_000.0, 12_500.0, 140_631.0, 406_889.0, 999_999.0, 1.8e8, 2.5e9, -12_500.0):
        label = _compact(value)
        assert len(label) <= 6, label
        number = float(label[:-1]) * units[label[-1]] if label[-1] in units else float(label)
        assert abs(number - value) <= 0.005 * abs(value), (value, label)


def test_the_markdown_fidelity_column_is_one_figure_and_unrun_rows_have_none(tmp_path: Path) -> None:
    """The Markdown's one fidelity column took the first target's cosine it found: a target's own comparison over
    a capped few inputs in one run, the host's over every input in another, under one header; and an HTML row of
    an artifact that never ran on a target showed the conversion's cosine as if measured there."""
    from edgekit.report.figures import cosine_text
    from edgekit.report.markdown import render

    result = synthetic_result(T0, rng=np.random.default_rng(0), targets=("pi4", "pi5-emu"), formats=FORMATS)
    pi5 = next(r for r in result.runs if r.target == "pi5-emu")
    assert pi5.agent is not None
    pi5.agent.measurements[0].status = "failed"
    with open_store(f"sqlite:///{tmp_path / 'f.sqlite'}") as store:
        store.record(result)
        report = build(store)
    (view,) = report.recipes
    unrun = pi5.agent.measurements[0]
    row = next(
        r
        for r in view.rows
        if (r.target, r.artifact, r.threads) == ("pi5-emu", unrun.artifact, unrun.threads)
    )
    assert row.cosine is None and row.gates_passed is None
    md = render(report)
    assert "fidelity vs ONNX (cosine, host, at conversion)" in md
    for art in result.artifacts:
        line = next(x for x in md.splitlines() if x.startswith(f"| {art.id} |"))
        assert line.rstrip(" |").endswith(cosine_text(art.fidelity["cosine"], 5)), (line, art.fidelity)


def test_the_trend_legend_names_every_line_the_trend_draws(tmp_path: Path) -> None:
    """A recipe's formats changed between runs (7, then 2): the trend drew all 7 of the first run, the legend
    named only the latest run's 2, so five coloured lines had no name. Now the legend names every artifact drawn
    (in its drawn colour), and no other."""
    from edgekit.report.html import render as render_html
    from edgekit.report.panels import colour_hex
    from edgekit.report.synthetic import BASE_MS

    seven = tuple(BASE_MS)
    with open_store(f"sqlite:///{tmp_path / 'formats.sqlite'}") as store:
        store.record(
            synthetic_result(T0, rng=np.random.default_rng(0), targets=("pi4",), formats=seven, threads=(1,))
        )
        store.record(
            synthetic_result(
                T0 + timedelta(days=1),
                rng=np.random.default_rng(1),
                targets=("pi4",),
                formats=(Format.TFLITE_FP32, Format.TFLITE_INT8),
                threads=(1,),
            )
        )
        report = build(store)
    html = render_html(report)
    trend = html.split("<h3>Latency trend</h3>")[1].split("<h3>Latency distribution")[0]
    legend = trend.split('<p class="legend">')[1].split("</p>")[0]
    named = dict(re.findall(r'<i style="background:(#[0-9a-f]{6})"></i>([\w-]+)</span>', legend))
    assert sorted(named.values()) == sorted(f.value for f in seven), legend
    assert all(colour_hex(artifact) == hex_ for hex_, artifact in named.items())
    axes_and_ring = {"#000000", "#ff0000"}
    drawn = set(re.findall(r"stroke: ?(#[0-9a-f]{6})", trend.split("</p>", 1)[1])) - axes_and_ring
    assert drawn and drawn <= set(named), (drawn, named)  # every line's colour is in the legend


@pytest.mark.parametrize("command", ["report", "nightly"])
def test_html_and_markdown_to_one_file_is_refused_before_any_work(
    command: str, store_url: str, tmp_path: Path
) -> None:
    """`--html P --markdown P` exited 0, said "wrote P" twice and left only the HTML in P (nightly: after a
    whole night of deploys). Now a usage error naming both options, and nothing deployed or written."""
    same = tmp_path / "out" / "both.txt"
    args = {
        "report": ["report", "--since", "all", "--store", store_url],
        "nightly": ["nightly", "--recipes", str(tmp_path / "no-such-folder"), "--targets", "local"],
    }[command]
    relative = f"{same.parent}/../out/{same.name}"  # the same file, written another way
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", *args, "--html", str(same), "--markdown", relative],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "UsageError" in out.stderr and "--html and --markdown name the same file" in out.stderr, out.stderr
    assert "wrote" not in out.stdout and not same.exists()


def test_the_markdown_says_not_run_for_what_a_ctrl_c_left_unmeasured(tmp_path: Path) -> None:
    """The HTML said 'failed: not run: interrupted (Ctrl-C or SIGTERM)' and the Markdown plain 'failed' for an
    artifact never run because the deploy was interrupted; a real failure stays 'failed'."""
    from edgekit.report.markdown import render
    from edgekit.results import NOT_RUN_INTERRUPTED

    result = synthetic_result(
        T0, rng=np.random.default_rng(0), targets=("pi4",), formats=FORMATS, threads=(1,)
    )
    (pi4,) = result.runs
    assert pi4.agent is not None
    crashed, *_, stopped = pi4.agent.measurements
    crashed.status, crashed.error, crashed.p50_ms = "failed", "Interpreter crashed", None
    stopped.status, stopped.error, stopped.p50_ms = "failed", NOT_RUN_INTERRUPTED, None
    pi4.interrupted = True
    with open_store(f"sqlite:///{tmp_path / 'stopped.sqlite'}") as store:
        store.record(result)
        md = render(build(store))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    assert "| not run (interrupted) |" in rows[stopped.artifact], md
    assert "| failed |" in rows[crashed.artifact], md


def test_the_runtimes_heading_names_the_targets_compared_not_arm_when_there_is_none(tmp_path: Path) -> None:
    """'Runtimes compared (run #N): host vs ARM' was the heading even for a host-only report; it names the
    targets compared and their machines now."""
    from edgekit.report.html import render as render_html

    def heading(result: object) -> str:
        with open_store(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.sqlite'}") as store:
            store.record(result)  # type: ignore[arg-type]
            html = render_html(build(store))
        return next(line for line in html.splitlines() if "Runtimes compared" in line)

    host_only = synthetic_result(
        T0, rng=np.random.default_rng(0), targets=("pi4",), formats=FORMATS, threads=(1,)
    )
    (run,) = host_only.runs
    assert run.agent is not None
    run.target, run.agent.facts_before.machine = "host", "x86_64"  # as `--target local` records it
    for r in host_only.routes:
        r["target"] = "host"
    alone = heading(host_only)
    assert "ARM" not in alone and "host (x86_64)" in alone, alone
    both = synthetic_result(T0, rng=np.random.default_rng(0), targets=("pi4", "pi5-emu"), formats=FORMATS)
    two = heading(both)
    assert "pi4 (aarch64) vs pi5-emu (aarch64, emulated)" in two, two


def test_the_markdown_fidelity_flag_says_its_gate_as_the_html_does(tmp_path: Path) -> None:
    """With history, the Markdown wrote a missed fidelity gate as `tflite-int8: 1 → 0.99999 (+0.0%)`: no gate,
    and the old cosine (equal to the new one: the gate changed) printed as 1. It now says the gate in the same
    words as the HTML's flag (one wording, regression.flag_line) and never prints a cosine below 1 as 1."""

    rng = np.random.default_rng(3)
    nights = [
        synthetic_result(T0 + timedelta(days=d), rng=rng, targets=("pi4",), formats=FORMATS, threads=(1,))
        for d in range(3)
    ]
    for night in nights:
        int8 = next(a for a in night.artifacts if a.id == "tflite-int8")
        int8.fidelity["cosine"] = 0.999991
    int8.gates_passed, int8.status = False, "failed"  # the last night's gate is min_cosine 1.0
    int8.fidelity["gates"] = {
        "passed": False,
        "samples": 8,
        "checks": [{"gate": "min_cosine", "value": 0.999991, "limit": 1.0, "passed": False}],
    }
    md, html = _stored_and_rendered(tmp_path / "gate.sqlite", nights)
    wording = (
        "tflite-int8: below its fidelity gate at conversion (min_cosine: 0.99999 vs limit 1 (on 8 inputs))"
    )
    assert f"- **fidelity** {wording}; cosine 0.99999 → 0.99999" in md, md
    assert wording in html


def test_the_route_and_its_caveats_are_in_the_markdown_and_the_html(tmp_path: Path) -> None:
    """The Markdown had no route at all, and neither page showed a route's caveats (a busy machine's ranking, an
    uncalibrated estimate); the Markdown also wrote `->` as `-\\>`. Now a route line per target (figure, what
    kind, speed-ups, caveats) in the Markdown, the caveats in the HTML's route row, and `→` for arrows."""
    from edgekit.route_deploy import routes_for_deploy

    rng = np.random.default_rng(6)
    nights = [
        synthetic_result(T0 + timedelta(days=d), rng=rng, formats=FORMATS, threads=(1,)) for d in range(2)
    ]
    last = nights[-1]
    last.tool_versions["onnx2tf"] = "1.30.0"
    add_estimates(last, calibrated=lambda m: False)
    pi4 = next(r for r in last.runs if r.target == "pi4")
    for m in pi4.agent.measurements if pi4.agent else []:
        m.others_cpu_share = 0.2
    last.routes = [r.to_dict() for r in routes_for_deploy(last)]  # as deploy records them
    md, html = _stored_and_rendered(tmp_path / "route.sqlite", nights)
    busy = (
        "note: other processes used up to 20% of pi4's CPUs while 4 of these were timed: the ranking may be"
    )
    lines = {line.split(":")[0]: line for line in md.splitlines() if line.startswith("- pi")}
    assert lines["- pi4"].startswith("- pi4: ship ") and " ms p50, threads=1; " in lines["- pi4"], md
    assert "basis: p50 latency measured on the target" in lines["- pi4"] and busy in lines["- pi4"]
    assert " ms ESTIMATE, threads=1" in lines["- pi5-emu"], md
    # a ratio by estimate is stated, or said as not ranked apart by the 80 % interval (route_estimates)
    assert "x vs " in lines["- pi5-emu"] or "not ranked apart by the estimate" in lines["- pi5-emu"], md
    assert "is not calibrated" in lines["- pi5-emu"] and "confirm on the board" in lines["- pi5-emu"]
    assert "tool onnx2tf: 1.29.24 → 1.30.0" in md and "-\\>" not in md, md
    routes = html.split("Route to ship, per target")[1].split("Latency trend")[0]
    newest = routes.split("<tr>")[2:4]  # the latest run's two rows
    assert busy.replace("'", "&#x27;") in "".join(newest), routes
    assert "confirm on the board" in "".join(newest)


def test_emulated_wording_says_what_the_page_shows(tmp_path: Path) -> None:
    """The HTML banner said times on emulated targets are qemu wall times while its tables and routes showed
    board estimates; the Markdown's '0.78x instr.' (fp32's count / int8's: int8 counted more) read as '0.78 times
    the instructions', the opposite. The banner says estimates (qemu wall time only in the plots marked
    EMULATED), and the ratio is deploy's 'x fp32 by insn' (fp32's count / the artifact's), explained once."""

    result = add_estimates(synthetic_result(T0, rng=np.random.default_rng(0), formats=FORMATS, threads=(1,)))
    md, html = _stored_and_rendered(tmp_path / "w.sqlite", [result])
    banner = html.split("</header>")[0]
    assert "are wall times under qemu" not in banner and "estimated from exact instruction counts" in banner
    assert "drawn only in the plots marked EMULATED" in banner
    int8 = next(line for line in md.splitlines() if line.startswith("| tflite-int8 |"))
    assert "x fp32 by insn 1.58x" in int8 and "x instr." not in md, int8  # 150 M fp32 / 95 M int8
    assert (
        "x fp32 by insn = the same runtime's fp32 instruction count / this artifact's (above 1: fewer" in md
    )


def test_an_interrupted_run_keeps_the_older_route_and_figures_in_the_report(tmp_path: Path) -> None:
    """A deploy stopped with Ctrl-C records what it measured and no route: the report's table then showed `not
    run (interrupted)` for what it had not reached and no route line for the recipe at all. Now those rows are
    the newest older run's measurements (named by run) and the older route stands, saying why. The Markdown
    names that run in each such cell, not in the pi4 column's header (which said the whole column was run #1
    while the measurement the night did take was from run #2)."""
    from edgekit.results import NOT_RUN_INTERRUPTED, ErrorCode
    from edgekit.route_deploy import routes_for_deploy

    rng = np.random.default_rng(3)
    nights = [
        synthetic_result(T0 + timedelta(days=d), rng=rng, formats=FORMATS, threads=(1,)) for d in range(2)
    ]
    nights[0].routes = [r.to_dict() for r in routes_for_deploy(nights[0])]
    stopped = nights[1]
    pi4 = next(r for r in stopped.runs if r.target == "pi4")
    pi4.interrupted = True
    assert pi4.agent is not None
    kept, *lost = pi4.agent.measurements
    for m in lost:
        m.status, m.error, m.error_code, m.p50_ms = "failed", NOT_RUN_INTERRUPTED, ErrorCode.NOT_RUN, None
    stopped.routes = []  # an interrupted deploy chooses none
    md, html = _stored_and_rendered(tmp_path / "stopped.sqlite", nights)
    route = next(line for line in md.splitlines() if line.startswith("- pi4: ship "))
    assert route.endswith("(run #1; run #2 was interrupted before choosing one)"), md
    table = md.split("| artifact")[1].split("\n\n")[0]
    assert "not run (interrupted)" not in table and "run #1" in table, table
    assert f"| {kept.artifact} |" in table
    assert "| pi4 p50 ms |" in table, table  # the header names no run: the column is not all run #1
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in table.splitlines()[2:]}
    pi4_cells = {artifact: cells[1] for artifact, cells in rows.items()}
    assert "run #" not in pi4_cells[kept.artifact], pi4_cells  # measured by run #2 itself
    assert all(pi4_cells[m.artifact].endswith(" (run #1)") for m in lost), pi4_cells
    assert "interrupted (Ctrl-C or SIGTERM) before a route was chosen" in html


def _pi4_nights(levels: list[float], seed: int = 7, **each: object) -> list:
    rng = np.random.default_rng(seed)
    return [
        synthetic_result(
            T0 + timedelta(days=d),
            rng=rng,
            targets=("pi4",),
            formats=(Format.TFLITE_FP32,),
            threads=(1,),
            slowdown={("tflite-fp32", "pi4"): level},
            **each,  # type: ignore[arg-type]
        )
        for d, level in enumerate(levels)
    ]


def test_a_regression_that_persists_is_flagged_each_night_with_since_when(tmp_path: Path) -> None:
    """14 flat nights then +30 % on every later night: the report flagged night 15 and said 'No regressions'
    on nights 16-25. Through a real SQLite store, the fourth slow night is flagged, since its first."""
    md, html = _stored_and_rendered(tmp_path / "step.sqlite", _pi4_nights([1.0] * 14 + [1.3] * 4))
    assert md.startswith("## edgekit report: 1 regression"), md[:300]
    assert "- **latency** tflite-fp32 at 1 thread on pi4: " in md
    assert "; still slower since run #15, 2026-06-15" in md and "still slower since run #15" in html


def test_too_little_history_is_said_not_judged_not_within_the_noise(tmp_path: Path) -> None:
    """Two runs: nothing could be judged, yet the report said '✅ No regressions against recent history' and
    the HTML 'every artifact is within the noise of its recent history'."""
    md, html = _stored_and_rendered(tmp_path / "two.sqlite", _pi4_nights([1.0, 2.0]))
    assert "No regressions against recent history" not in md and "within the noise" not in html
    line = "not enough history to judge latency on pi4 (1 earlier run; 3 needed)"
    assert f"- **not judged** {line}" in md and line in html
    assert md.startswith(
        "## edgekit report: no regressions, latency not judged for 1 recipe (not enough history)"
    )
    assert "⚠️ yolov5-lite" in md


def test_changes_are_listed_against_the_runs_of_the_flagged_target(tmp_path: Path) -> None:
    """A host-only run between two pi5-emu runs hid `model.args.width: 40 → 44` from a pi5-emu flag: the changes
    were taken against the recipe's previous run on any target. Now against the flagged target's baseline."""
    from edgekit.report.view import recipe_view

    rng = np.random.default_rng(8)
    runs = []
    for day, (targets, width) in enumerate(
        ((("pi5-emu", "pi4"), 40), (("pi4",), 44), (("pi5-emu", "pi4"), 44))
    ):
        slow = {(f.value, "pi5-emu"): 1.2 for f in FORMATS} if day == 2 else None
        run = synthetic_result(
            T0 + timedelta(days=day), rng=rng, targets=targets, formats=FORMATS, threads=(1,), slowdown=slow
        )
        run.recipe_settings = {"model": {"args": {"width": width}}}
        run.recipe_sha256 = f"{width:064d}"
        runs.append(run)
    with open_store(f"sqlite:///{tmp_path / 'c.sqlite'}") as store:
        for run in runs:
            store.record(run)
        stored = store.history(recipe="yolov5-lite")
    view = recipe_view("yolov5-lite", stored)
    assert {f.target for f in view.flags if f.is_regression} == {"pi5-emu"}
    assert view.changes[0] == "recipe model.args.width: 40 -> 44", view.changes
    assert view.changes_against == "pi5-emu's run #1, the last it was judged against"


def test_an_interrupted_run_is_said_in_the_headline(tmp_path: Path) -> None:
    """A night stopped by Ctrl-C before a recipe was reached headed its report '## edgekit report: no
    regressions'. The run that was stopped, and recipes the night names as not reached, are said first."""
    from edgekit.report.html import render as render_html
    from edgekit.report.markdown import render

    nights = _pi4_nights([1.0] * 4)
    nights[-1].runs[0].interrupted = True
    md, html = _stored_and_rendered(tmp_path / "i.sqlite", nights)
    assert md.startswith("## edgekit report: interrupted, not everything was run, no regressions"), md[:200]
    assert "interrupted: not everything was run" in html
    with open_store(f"sqlite:///{tmp_path / 'i.sqlite'}") as store:
        report = build(store)
    assert not report.not_reached
    report.not_reached = ["digits.yaml"]  # set by `edgekit nightly` for recipes it never reached
    assert "### ⚠️ Not run (the night was interrupted)\n\n- `digits.yaml`" in render(report)
    assert "<code>digits.yaml</code>" in render_html(report)


def test_a_fidelity_flag_compares_with_the_night_before_at_one_precision(tmp_path: Path) -> None:
    """Two nights at cosine 0.99994 below the gate after nights of an earlier model at 0.999995: the Markdown said
    `cosine 0.99999 → 0.9999` (the old value a median with the earlier model, printed with other digits) and the
    HTML `1` for the old value and `-0.0%`."""
    nights = _pi4_nights([1.0] * 5)
    for d, night in enumerate(nights):
        art = next(a for a in night.artifacts if a.id == "tflite-fp32")
        art.fidelity["cosine"] = 0.999995 if d < 3 else 0.99994
        if d >= 3:
            art.status, art.gates_passed = "failed", False
            checks = [{"gate": "min_cosine", "value": 0.99994, "limit": 0.99995, "passed": False}]
            art.fidelity["gates"] = {"passed": False, "samples": 8, "checks": checks}
    md, html = _stored_and_rendered(tmp_path / "f.sqlite", nights)
    assert "; cosine 0.99994 → 0.99994 (unchanged)" in md, md
    row = next(r for r in html.split("<tr") if "data-label=kind>fidelity<" in r)
    cosine = "<span class=muted>cosine</span>"  # the unit each figure of the Flags table carries
    assert f"<td data-label=old>0.99994 {cosine}</td><td data-label=new>0.99994 {cosine}</td>" in row, row
    assert "<td data-label=change>0%</td>" in row
    nights[-1].artifacts[0].fidelity["cosine"] = 0.999949  # a different value prints differently
    nights[-1].artifacts[0].fidelity["gates"]["checks"][0]["value"] = 0.999949
    md, html = _stored_and_rendered(tmp_path / "g.sqlite", nights)
    assert "; cosine 0.999940 → 0.999949" in md, md  # not 0.99995, the gate's limit
    assert "<td data-label=change>+0.0009%</td>" in html


def test_an_unreliable_timing_says_how_far_it_moved_and_is_drawn_hollow(tmp_path: Path) -> None:
    """Width 8 -> 48 made tflite-fp32 14 times slower on a busy night and the report said only 'unreliable'.
    The line now gives the change against the baseline, not judged; the trend draws unreliable points hollow and
    grey, apart from judged ones (and says so in its legend)."""
    nights = _pi4_nights([1.0] * 5 + [14.0])
    _, quiet_html = _stored_and_rendered(tmp_path / "q.sqlite", nights[:5])
    assert "#888888" not in quiet_html
    for m in nights[-1].runs[0].agent.measurements:  # type: ignore[union-attr]
        m.others_cpu_share = 0.45
    md, html = _stored_and_rendered(tmp_path / "b.sqlite", nights)
    line = next(x for x in md.splitlines() if x.startswith("- **unreliable**"))
    assert re.search(
        r"tflite-fp32 at 1 thread on pi4: [\d.]+ → [\d.]+ ms \(\+1[23]\d\d\.\d%\), not judged: ", line
    ), line
    assert "other processes used 45% of pi4's CPUs" in line
    assert "unreliable, not judged (busy or throttled)" in html and "stroke: #888888" in html


def test_paths_under_home_are_written_with_a_tilde(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The HTML showed the store's and the recipe's absolute paths under the user's home."""
    monkeypatch.setenv("HOME", str(tmp_path))
    nights = _pi4_nights([1.0] * 2)
    for night in nights:
        night.recipe_path = str(tmp_path / "recipes" / "tiny.yaml")
    _, html = _stored_and_rendered(tmp_path / "data" / "results.sqlite", nights)
    assert str(tmp_path) not in html
    assert (
        "<code>sqlite:///~/data/results.sqlite</code>" in html and "<code>~/recipes/tiny.yaml</code>" in html
    )


def test_long_history_sections_start_collapsed_newest_first(tmp_path: Path) -> None:
    """After 60 nights the route and device-facts sections were open with 60 rows each."""
    _, short = _stored_and_rendered(tmp_path / "s.sqlite", _pi4_nights([1.0] * 3))
    _, long = _stored_and_rendered(tmp_path / "l.sqlite", _pi4_nights([1.0] * 12))
    assert short.count("<details open><summary>3 target runs, newest first</summary>") == 2
    assert long.count("<details><summary>12 target runs, newest first</summary>") == 2
    facts = long[long.index("<h3>Device facts</h3>") :]
    assert facts.index("#12 ") < facts.index("#11 ") < facts.index("#1 ")


def test_precision_bars_have_a_group_per_route_onnx_runtime_included(tmp_path: Path) -> None:
    """onnx-fp32 / onnx-int8 belong to the runtime named onnxruntime: the plot grouped by runtime name and looked
    up `onnxruntime-fp32`, so ONNX Runtime's group had a label and no bars (seen in a nightly with five runtimes);
    a Keras recipe's tflite-onnx2tf route was looked up as tflite's. A group per route now, each with its bars."""
    from edgekit.report import plots

    formats = (
        Format.TFLITE_FP32,
        Format.TFLITE_INT8,
        Format.TFLITE_ONNX2TF_FP32,
        Format.TFLITE_ONNX2TF_INT8,
        Format.ONNX_FP32,
        Format.ONNX_INT8,
    )
    with open_store(f"sqlite:///{tmp_path / 'routes.sqlite'}") as store:
        store.record(
            synthetic_result(
                T0, rng=np.random.default_rng(0), targets=("pi4",), formats=formats, threads=(1,)
            )
        )
        (view,) = build(store).recipes
    (panel,) = plots.precisions(view, "pi4")
    svg = panel.svg or ""
    ticks = re.findall(r">(onnxruntime|tflite-onnx2tf|tflite)<", svg)
    assert sorted(ticks) == ["onnxruntime", "tflite", "tflite-onnx2tf"], ticks
    speedups = re.findall(r">(\d+\.\d\d)x<", svg)  # one per int8 bar, over its own route's fp32
    assert len(speedups) == 3, speedups


def test_small_instruction_counts_keep_three_figures() -> None:
    """A 141,000-instruction model printed as '0.1 M' beside its fp32 twin's '0.3 M' (digits-keras on
    phone-emu): counts below 10 M keep three significant figures, larger ones one decimal."""
    from edgekit.report.figures import millions

    assert millions(141_234) == "0.141 M" and millions(2_345_678) == "2.35 M"
    assert millions(139_812_345) == "139.8 M" and millions(10_000_000) == "10.0 M"


def test_no_speed_up_is_claimed_from_emulated_wall_time(tmp_path: Path) -> None:
    """An emulated target that did not count: the HTML's 'speed-up over fp32' said '1.44x (emulated wall time)'
    and the precision bars carried 1.44x/1.21x, while the route on the same page refused to rank those times
    (qemu's wall time distorts ratios). Now '-' with a note and bars without ratios; where counts exist the
    ratios are by count, and one uncounted measurement no longer turns the whole plot into wall time."""
    from edgekit.report import plots
    from edgekit.report.html import render as render_html

    formats = (Format.TFLITE_FP32, Format.TFLITE_INT8, Format.NCNN_FP32, Format.NCNN_INT8)
    result = synthetic_result(
        T0, rng=np.random.default_rng(0), targets=("pi4-emu",), formats=formats, threads=(1,)
    )
    uncounted = result.model_copy(deep=True)
    for m in uncounted.runs[0].agent.measurements:  # type: ignore[union-attr]
        m.instructions_per_invoke = None
    with open_store(f"sqlite:///{tmp_path / 'uncounted.sqlite'}") as store:
        store.record(uncounted)
        report = build(store)
    (view,) = report.recipes
    assert [(r.speedup, r.speedup_basis) for r in view.rows] == [(None, "emulated wall time")] * 4
    html = render_html(report)
    assert 'x<br><span class="muted">(emulated wall time)' not in html
    assert '-<br><span class="muted">(no count; not from emulated wall time)</span>' in html, html
    (panel,) = plots.precisions(view, "pi4-emu")
    assert re.findall(r">(\d+\.\d\d)x<", panel.svg or "") == [] and "no ratios" in panel.note
    # counted, but one measurement without its count: the others are still drawn by count, with ratios
    (ncnn_int8,) = [m for m in result.runs[0].agent.measurements if m.artifact == "ncnn-int8"]  # type: ignore[union-attr]
    ncnn_int8.instructions_per_invoke = None
    with open_store(f"sqlite:///{tmp_path / 'counted.sqlite'}") as store:
        store.record(result)
        (view,) = build(store).recipes
    (panel,) = plots.precisions(view, "pi4-emu")
    assert len(re.findall(r">(\d+\.\d\d)x<", panel.svg or "")) == 1  # tflite-int8 over tflite-fp32, by count
    assert "guest instruction counts" in panel.note and "1 measurement without a count left out" in panel.note
    row = next(r for r in view.rows if r.artifact == "tflite-int8")
    assert row.speedup_basis == "instruction count" and row.speedup


def test_the_latest_table_names_each_machine_stored_as_host(tmp_path: Path) -> None:
    """Every machine stores itself as `host`: the latest table showed a colleague's laptop run under `host`, below
    a flag about the runner's host (18.9 -> 25.0 ms), its rows contradicting the flag. Each machine is a row group
    of its own, its CPU named, from its own newest run and with its own flags."""
    from edgekit.report.html import render as render_html

    rng = np.random.default_rng(5)
    formats = (Format.TFLITE_FP32, Format.TFLITE_INT8)
    slow = {("tflite-int8", "host"): 1.3}
    nights = [
        synthetic_result(
            T0 + timedelta(days=d),
            rng=rng,
            targets=("host",),
            formats=formats,
            threads=(1,),
            repeat=30,
            slowdown=slow if d == 9 else None,
        )
        for d in range(10)
    ]
    laptop = synthetic_result(
        T0 + timedelta(days=9, hours=6), rng=rng, targets=("host",), formats=formats, threads=(1,), repeat=30
    )
    laptop.runs[0].agent.facts_before.cpu_model = "Intel laptop"  # type: ignore[union-attr]
    runner_cpu = nights[0].runs[0].agent.facts_before  # type: ignore[union-attr]
    with open_store(f"sqlite:///{tmp_path / 'hosts.sqlite'}") as store:
        for result in [*nights, laptop]:
            store.record(result)
        report = build(store)
    (view,) = report.recipes
    assert [(f.run_id, f.target, f.artifact) for f in report.regressions] == [(10, "host", "tflite-int8")]
    runner = f"host ({runner_cpu.cpu_model}, {runner_cpu.cores} cores)"
    assert {(r.target, r.artifact, r.run_id, bool(r.flags)) for r in view.rows} == {
        (f"host (Intel laptop, {runner_cpu.cores} cores)", "tflite-fp32", None, False),
        (f"host (Intel laptop, {runner_cpu.cores} cores)", "tflite-int8", None, False),
        (runner, "tflite-fp32", 10, False),
        (runner, "tflite-int8", 10, True),
    }
    assert "host (Intel laptop" in render_html(report)


def test_the_reports_route_on_a_counting_phone_says_its_ratios_are_instruction_counts(tmp_path: Path) -> None:
    """phone-emu routes by instruction count: the HTML's route table printed '2.00x vs ncnn-fp32' bare, as if a
    speed-up, where deploy's route line says 'by instruction count'."""
    from edgekit.report.html import render as render_html

    formats = (Format.NCNN_FP32, Format.NCNN_INT8)
    result = synthetic_result(
        T0, rng=np.random.default_rng(0), targets=("phone-emu",), formats=formats, threads=(1,)
    )
    (route,) = [r for r in result.routes if r["target"] == "phone-emu"]
    assert route["basis"] == "instructions-emulated" and route.get("speedup_vs_fp32"), route
    with open_store(f"sqlite:///{tmp_path / 'phone.sqlite'}") as store:
        store.record(result)
        html = render_html(build(store))
    ratio = f"{route['speedup_vs_fp32']:.2f}x vs {route['fp32_artifact']}"
    assert f"{ratio} by instruction count" in html, re.findall(r"[\d.]+x vs [^<]{0,60}", html)


@pytest.mark.parametrize("validated", [True, False])
def test_the_estimate_interval_plot_names_its_level_only_where_every_interval_is_validated(
    validated: bool,
) -> None:
    """The plot of an emulated target's board estimates was captioned '80% interval' whatever its rows were: a
    tflite-int8 interval (no calibration figure, not validated) was drawn under the level it does not have."""
    from edgekit.report.estimate_plots import estimate_intervals
    from edgekit.report.view import recipe_view
    from edgekit.store import StoredRun

    result = synthetic_result(T0, rng=np.random.default_rng(7), formats=FORMATS, threads=(1,))
    add_estimates(result, calibrated=lambda m: validated or not m.artifact.startswith("tflite"))
    view = recipe_view("yolov5-lite", [StoredRun(1, T0.timestamp(), result)])
    panels = estimate_intervals(view, "pi5-emu")
    assert panels, "no estimate panel"
    for panel in panels:
        assert ("its 80% interval" in panel.caption) is validated, panel.caption
        assert ("80% interval" in (panel.svg or "")) is validated
        assert "its interval" in panel.caption or validated, panel.caption
