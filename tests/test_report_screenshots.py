"""The HTML report looked at the way a person looks at it: in headless Chromium at 1400, 900 and 390 px.

The page is laid out inside an iframe of exactly that width (headless Chromium will not make a window
narrower than 500 px), a small script reads the layout (element boxes, every SVG text's box) back out through
`--dump-dom`, and a screenshot of each width is checked as an image. Screenshots stay in
$EDGEKIT_SCREENSHOTS when set (else a temporary folder), to look at.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edgekit.formats import Format
from edgekit.report import build, write
from edgekit.report.panels import colour
from edgekit.report.synthetic import add_estimates, synthetic_result
from edgekit.results import DeployResult, TargetRun
from edgekit.store import open_store

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
WIDTHS = (1400, 900, 390)
T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
FORMATS = (Format.TFLITE_FP32, Format.TFLITE_INT8, Format.NCNN_FP32, Format.NCNN_INT8)
# a lab's board name as long as one gets: its Latest-results cell pushed the status column off a 1400 px screen
LONG_BOARD = "rack2-rpi4-8gb-slot07-lab-building-b-shelf-3"

# Runs inside the report's iframe: layout facts for the test, posted to the wrapper page that dumps them.
PROBE = """
(function () {
  const box = e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; };
  const figures = Array.from(document.querySelectorAll('figure')).map(f => {
    const svg = f.querySelector('svg');
    return {
      target: f.dataset.target, caption: (f.querySelector('figcaption') || {}).textContent || '',
      section: (f.closest('section') || {}).id, nodata: f.classList.contains('nodata'), box: box(f),
      svg: svg ? box(svg) : null,
      texts: svg ? Array.from(svg.querySelectorAll('text')).map(t => [t.textContent].concat(box(t))) : [],
      markers: svg ? Array.from(svg.querySelectorAll('use')).map(u => box(u)) : [],
    };
  });
  const tables = Array.from(document.querySelectorAll('table')).map(t => ({
    kind: t.className, section: (t.closest('section') || {}).id, scroll: t.scrollWidth, client: t.clientWidth,
    first: Math.max(0, ...Array.from(t.querySelectorAll('td:first-child')).map(c => c.getBoundingClientRect().width)),
    head: (t.querySelector('tr') || {}).textContent || '',
    tallest: Math.max(0, ...Array.from(t.querySelectorAll('tr')).map(r => r.getBoundingClientRect().height)),
  }));
  const boxes = Array.from(document.querySelectorAll('p.warn, p.bad, table.flags td')).map(e => ({
    kind: e.tagName.toLowerCase() + '.' + e.className, label: e.dataset.label || '',
    text: e.textContent.slice(0, 60), box: box(e), scroll: e.scrollWidth, client: e.clientWidth,
  }));
  const facts = {width: innerWidth, scrollWidth: document.documentElement.scrollWidth,
                 height: document.documentElement.scrollHeight, figures: figures, tables: tables, boxes: boxes};
  parent.postMessage(JSON.stringify(facts), '*');
})();
"""


def _wrapper(report: Path, width: int, height: int, probe: bool) -> str:
    page = report.read_text()
    if probe:
        page = page.replace("</body>", f"<script>{PROBE}</script></body>")
    listen = (
        "<script>addEventListener('message', e => { const p = document.createElement('pre'); "
        "p.id = 'facts'; p.textContent = e.data; document.body.appendChild(p); });</script>"
        if probe
        else ""
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'></head><body style='margin:0'>{listen}"
        f"<iframe style='border:0;display:block;width:{width}px;height:{height}px' "
        f'srcdoc="{html.escape(page, quote=True)}"></iframe></body></html>'
    )


def _chromium(args: list[str], tmp: Path) -> str:
    cmd = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp / 'chromium-profile'}", *args,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _layout(report: Path, width: int, tmp: Path) -> dict[str, Any]:
    page = tmp / f"probe-{width}.html"
    page.write_text(_wrapper(report, width, 900, probe=True))
    dom = _chromium(
        [f"--window-size={max(width, 500)},900", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        tmp,
    )
    found = re.search(r'<pre id="facts">(.*?)</pre>', dom, re.S)
    assert found, "the layout probe did not report"
    facts: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return facts


def _screenshot(report: Path, width: int, height: int, out: Path, tmp: Path) -> np.ndarray:
    page = tmp / f"shot-{width}.html"
    page.write_text(_wrapper(report, width, height, probe=False))
    png = out / f"report-{width}.png"
    _chromium([f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()], tmp)
    return np.asarray(Image.open(png).convert("RGB")).astype(int)


def _failed_target(name: str, error: str) -> TargetRun:
    return TargetRun(target=name, kind="ssh", emulated=False, status="failed", error=error)


def _renamed(result: DeployResult, target: str, name: str) -> DeployResult:
    """`target`'s runs and comparisons under another name (a lab's board), its routes as deploy records them."""
    from edgekit.route_deploy import routes_for_deploy

    for run in result.runs:
        run.target = name if run.target == target else run.target
        for c in run.comparisons:
            c.target = name if c.target == target else c.target
    result.routes = [r.to_dict() for r in routes_for_deploy(result)]
    return result


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four recipes that once broke the report: nightly runs on two targets whose latest run was on one of
    them only; runs minutes apart with a target that never answered; runs months apart; a board with a long name
    beside an emulated target whose newest run regressed by instruction count (flags with nine-digit counts)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('shots') / 'results.sqlite'}"
    rng = np.random.default_rng(5)
    with open_store(url) as store:
        for night in range(10):
            last = night == 9
            result = synthetic_result(
                T0 + timedelta(days=night), rng=rng, formats=FORMATS, threads=(1, 2), repeat=40,
                targets=("pi4",) if last else ("pi4", "pi5-emu"),
                slowdown={("tflite-int8", "pi4"): 1.25} if last else None,
            )  # fmt: skip
            if not last:  # pi5-emu counted, as an emulated deploy does: board estimates, the widest cells
                add_estimates(result)
            store.record(result)
        for i in range(5):
            result = synthetic_result(
                T0 + timedelta(minutes=7 * i), rng=rng, recipe="tiny", targets=("pi4-emu",), formats=FORMATS,
                threads=(1,),
            )  # fmt: skip
            result.runs.append(_failed_target("pi4", "connect: timed out after 30 s"))
            store.record(result)
        for month in (0, 2, 5):
            store.record(synthetic_result(
                T0 + timedelta(days=30 * month), rng=rng, recipe="digits", targets=("pi4",), threads=(1,),
                formats=(Format.TFLITE_FP32, Format.TFLITE_INT8),
            ))  # fmt: skip
        for night in range(10):
            last = night == 9
            result = synthetic_result(
                T0 + timedelta(days=night), rng=rng, recipe="counted", formats=FORMATS, threads=(1, 4),
                targets=("pi4", "pi5-emu"), repeat=30,
                slowdown={("ncnn-int8", "pi5-emu"): 1.25, ("tflite-int8", "pi4"): 1.25} if last else None,
            )  # fmt: skip
            store.record(_renamed(add_estimates(result), "pi4", LONG_BOARD))
        built = build(store)
    out = tmp_path_factory.mktemp("html") / "report.html"
    write(built, html=out)
    return out


@pytest.fixture(scope="module")
def shots(
    report: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[int, tuple[dict[str, Any], np.ndarray]]:
    tmp = tmp_path_factory.mktemp("chromium")
    out = Path(os.environ.get("EDGEKIT_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    found = {}
    for width in WIDTHS:
        facts = _layout(report, width, tmp)
        found[width] = (facts, _screenshot(report, width, int(facts["height"]), out, tmp))
    return found


def _overlap(a: list[float], b: list[float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


@pytest.mark.parametrize("width", WIDTHS)
def test_nothing_is_clipped_or_drawn_over(
    shots: dict[int, tuple[dict[str, Any], np.ndarray]], width: int
) -> None:
    facts, _ = shots[width]
    assert facts["width"] == width
    assert facts["scrollWidth"] <= width  # the page never scrolls sideways (wide tables scroll in their box)
    for fig in facts["figures"]:
        assert fig["box"][2] <= width + 0.5, fig["caption"]
        if fig["svg"] is None:
            continue
        left, top, right, bottom = fig["svg"]
        for text, *b in fig["texts"]:  # every label, tick and title inside its figure
            assert b[0] >= left - 1 and b[2] <= right + 1 and b[1] >= top - 1 and b[3] <= bottom + 1, (
                f"{fig['caption']} at {width}px: {text!r} {b} outside {fig['svg']}"
            )
        texts = fig["texts"]
        for i, (t1, *b1) in enumerate(texts):  # and no two labels on top of each other
            for t2, *b2 in texts[i + 1 :]:
                assert _overlap(b1, b2) < 2.0, f"{fig['caption']} at {width}px: {t1!r} over {t2!r}"


def test_plots_are_big_enough_to_read_at_every_width(
    shots: dict[int, tuple[dict[str, Any], np.ndarray]],
) -> None:
    for width in WIDTHS:
        drawn = [f for f in shots[width][0]["figures"] if f["svg"]]
        widths = [f["svg"][2] - f["svg"][0] for f in drawn]
        text_heights = [b[4] - b[2] for f in drawn for b in f["texts"]]
        assert min(widths) >= min(width - 40, 400), (width, min(widths))  # a phone: the whole width
        assert np.median(text_heights) >= 10, (width, np.median(text_heights))  # ~9 pt text, not shrunk away
    for width, side_by_side in ((1400, True), (900, True), (390, False)):  # the grid reflows to the width
        pair = [
            f["box"]
            for f in shots[width][0]["figures"]
            if f["section"] == "recipe-yolov5-lite"
            and f["target"] == "pi4"
            and "p50 over time" in f["caption"]
        ]
        assert len(pair) == 2 and (pair[0][1] == pair[1][1]) is side_by_side, (width, pair)


def test_the_screenshots_show_every_artifact_at_every_width(
    shots: dict[int, tuple[dict[str, Any], np.ndarray]],
) -> None:
    for width, (_, image) in shots.items():
        assert image.shape[1] == width
        for fmt in FORMATS:
            rgb = np.array([round(c * 255) for c in colour(fmt.value)])
            pixels = int((np.abs(image - rgb).max(axis=2) <= 3).sum())
            assert pixels >= 300, (width, fmt.value, pixels)


def test_runs_minutes_or_months_apart_spread_across_the_time_axis(
    shots: dict[int, tuple[dict[str, Any], np.ndarray]],
) -> None:
    timed = [f for f in shots[900][0]["figures"] if "over time" in f["caption"] and f["svg"]]
    assert {f["section"] for f in timed} == {
        "recipe-tiny",
        "recipe-digits",
        "recipe-yolov5-lite",
        "recipe-counted",
    }
    for fig in timed:
        centres = [(b[0] + b[2]) / 2 for b in fig["markers"]]
        spread = (max(centres) - min(centres)) / (fig["svg"][2] - fig["svg"][0])
        assert spread > 0.5, (fig["section"], fig["caption"], spread)  # not one vertical line of points


def test_no_data_shared_charts_and_emulated_labels(
    shots: dict[int, tuple[dict[str, Any], np.ndarray]],
) -> None:
    figures = shots[1400][0]["figures"]
    fidelity = [f for f in figures if f["caption"].startswith("fidelity vs the original model")]
    assert sorted(f["section"] for f in fidelity) == [
        "recipe-counted", "recipe-digits", "recipe-tiny", "recipe-yolov5-lite"
    ]  # fmt: skip
    unreachable = [f for f in figures if f["section"] == "recipe-tiny" and f["target"] == "pi4"]
    assert len(unreachable) == 3 and all(f["nodata"] and f["svg"] is None for f in unreachable)
    assert all("no data" in f["caption"] and "timed out" in f["caption"] for f in unreachable)
    # the recipe's latest run was on pi4 only: pi5-emu's plots still say what their times are
    emulated = [f for f in figures if f["section"] == "recipe-yolov5-lite" and f["target"] == "pi5-emu"]
    assert emulated and all(
        "EMULATED" in f["caption"] or "instruction count" in f["caption"] for f in emulated
    )
    real = [f for f in figures if f["target"] == "pi4"]
    assert real and not any("emulated" in f["caption"].lower() for f in real)
    # an emulated target that counted plots the board estimate over time, not qemu's wall time (issue 10: the
    # headline on an emulated target is the estimate); one that did not count keeps its labelled wall time
    trends = [f["caption"] for f in emulated if "over time" in f["caption"]]
    assert any("estimated board latency over time" in c and "ESTIMATE" in c for c in trends), trends
    assert not any("p50 over time" in c for c in trends), trends
    uncounted = [f["caption"] for f in figures if f["section"] == "recipe-tiny" and f["target"] == "pi4-emu"]
    assert any("p50 over time" in c and "EMULATED" in c for c in uncounted), uncounted
    # and its newest run's estimates with their intervals in place of qemu's sample spread
    captions = [f["caption"] for f in emulated]
    assert any("estimated board latency and its 80% interval" in c for c in captions), captions
    assert not any("latency distribution" in c for c in captions), captions
    assert any("latency distribution" in c and "EMULATED" in c for c in uncounted), uncounted
    # the intervals' log axis names values: one inside a decade (58-92 ms) fell between the decade ticks, no label
    intervals = [f for f in emulated if "80% interval" in f["caption"]]
    for fig in intervals:
        numbers = [t[0] for t in fig["texts"] if re.fullmatch(r"[0-9.]+[kM]?", t[0].strip())]
        assert len(set(numbers)) >= 2, (fig["caption"], [t[0] for t in fig["texts"]])


@pytest.mark.parametrize(
    ("low", "high"), [(58.0, 92.0), (60.5, 65.0), (10.0, 10.4), (3.0, 40.0), (0.5, 900.0)]
)
def test_a_log_axis_always_labels_at_least_two_values_inside_its_limits(low: float, high: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgekit.report.estimate_plots import log_axis

    fig, ax = plt.subplots()
    ax.plot([low, high], [1, 1])
    log_axis(ax, [low, high])
    fig.canvas.draw()
    lo, hi = ax.get_xlim()
    assert lo <= low and high <= hi
    shown = [t.get_text() for t in ax.get_xticklabels() if t.get_text() and lo <= t.get_position()[0] <= hi]
    assert len(shown) >= 2 and len(shown) <= 12, shown
    plt.close(fig)


def test_the_latest_table_fits_at_1400_and_the_flags_fit_a_phone(
    shots: dict[int, tuple[dict[str, Any], np.ndarray]],
) -> None:
    """The 'Latest results' table scrolled sideways at 1400 px (a board estimate's note on one line), and the
    Flags table hid its detail off a 390 px screen: the estimate wraps, and on a phone each flag is a card.
    Instruction-count flags (old and new like 107,997,042) beside the emulated badge cut the detail off from 761
    to ~1000 px, a long board name pushed the status column off at 1400 px and, at 390 px, everything but the
    target and the artifact off the screen: the counted recipe has both, and its tables fit (the latest one
    scrolls on a phone, its target cell no wider than half the screen)."""
    for width, kinds in ((1400, ("latest", "flags")), (900, ("flags",)), (390, ("flags",))):
        tables = [t for t in shots[width][0]["tables"] if t["kind"] in kinds]
        assert {t["kind"] for t in tables} == set(kinds), (width, shots[width][0]["tables"])
        assert any(t["section"] == "recipe-counted" and t["kind"] == "flags" for t in tables), tables
        for t in tables:
            assert t["scroll"] <= t["client"] + 1, (width, t)
    phone = [t for t in shots[390][0]["tables"] if t["kind"] == "latest" and t["section"] == "recipe-counted"]
    assert phone and phone[0]["first"] <= 390 / 2, phone  # the long name wraps: the figures beside it show


def test_the_counted_recipe_flags_counts_on_its_emulated_target(report: Path) -> None:
    """The data the widths above are checked with: instruction-count flags with their counts, emulated."""
    page = report.read_text()
    section = page.split('id="recipe-counted"')[1].split("<h3>Latest results</h3>")[0]
    assert re.search(r"<td[^>]*>instructions</td>", section), section[:2000]
    assert re.search(r"\d{3},\d{3},\d{3}", section) and "emulated" in section and LONG_BOARD in section


@pytest.mark.parametrize("width", [1120, 1024, 800, 761])
def test_the_flags_fit_between_the_screenshot_widths(report: Path, tmp_path: Path, width: int) -> None:
    """Between 761 and ~1000 px (neither a card nor room for the detail) the counted recipe's flags cut their
    detail off: every width the table is laid out at, on either side of where it turns into cards."""
    tables = [t for t in _layout(report, width, tmp_path)["tables"] if t["kind"] == "flags"]
    assert any(t["section"] == "recipe-counted" for t in tables), tables
    for t in tables:
        assert t["scroll"] <= t["client"] + 1, (width, t)


def test_a_long_target_name_wraps_inside_its_flag_card_and_its_not_judged_box(tmp_path: Path) -> None:
    """A target named with 128 characters (as long as `runs import` takes) ran past the right edge of a 390 px
    phone in the red flag card's detail and in the yellow 'not enough history to judge' box: both break it
    anywhere (overflow-wrap), so every flag cell and box keeps its text inside it; so do the headings, captions and
    route lines that name it ('Runtimes compared', the plots' target headings), and the page stays on the screen."""
    name = "rack2-rpi4-8gb-slot07-" + "x" * 106
    assert len(name) == 128
    result = synthetic_result(
        T0, rng=np.random.default_rng(3), recipe="hostile", targets=("pi4",), threads=(1,), repeat=20,
        formats=(Format.TFLITE_FP32, Format.NCNN_FP32),
    )  # fmt: skip
    failed = result.runs[0].agent.measurements[0]  # type: ignore[union-attr]
    failed.status, failed.error, failed.samples_ms = "failed", "load error", []
    for figure in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms"):
        setattr(failed, figure, None)
    with open_store(f"sqlite:///{tmp_path / 'results.sqlite'}") as store:
        store.record(
            _renamed(result, "pi4", name)
        )  # one run: a failure flag, and too little history to judge
        built = build(store)
    out = tmp_path / "report.html"
    write(built, html=out)
    page = out.read_text()
    assert '<p class="warn">not enough history to judge' in page and '<table class="flags">' in page
    facts = _layout(out, 390, tmp_path)
    boxes = facts["boxes"]
    shown = {b["kind"] for b in boxes}
    assert {"p.warn", "td.l wrap"} <= shown, shown
    assert any(name[:20] in b["text"] for b in boxes if b["kind"] == "p.warn"), boxes
    for b in boxes:
        assert b["box"][2] <= 390 + 0.5 and b["scroll"] <= b["client"] + 1, b
    assert facts["scrollWidth"] <= 390, facts["scrollWidth"]


def test_every_table_fits_a_laptop_screen(tmp_path: Path) -> None:
    """At 1280 px the route table was 1594 px wide in a 1217 px box: its speed-up cell ("vs tflite-fp32: not
    ranked apart by the estimate (1.00x by instruction count) · vs ncnn-fp16: ...") did not wrap, so the column
    saying what the figure cannot tell ("not calibrated: confirm on the board") was off the screen and each row
    ~250 px tall; the latest and device-facts tables scrolled too. A host and an emulated, counted target whose
    board estimates are uncalibrated and tie: every table of the report fits its box. (The host's route said
    '2.34x vs tflite-fp32 · 2.34x vs tflite-fp32' where fp32 was also the slowest: said once.)"""
    from edgekit.route_deploy import routes_for_deploy

    rng = np.random.default_rng(11)
    with open_store(f"sqlite:///{tmp_path / 'results.sqlite'}") as store:
        for night in range(6):
            result = synthetic_result(
                T0 + timedelta(days=night), rng=rng, recipe="laptop", targets=("host", "pi4-emu"),
                formats=(Format.TFLITE_FP32, Format.TFLITE_FP16, Format.TFLITE_INT8, Format.NCNN_FP16),
                threads=(1,), repeat=20, slowdown={("tflite-fp32", "host"): 1.5} if night == 5 else None,
            )  # fmt: skip
            add_estimates(
                result, target="pi4-emu", board="pi4", ms=(0.107, 0.0332, 0.343), calibrated=lambda _m: False
            )
            ms = {
                "tflite-fp32": 0.11,
                "tflite-int8": 0.09,
                "ncnn-fp16": 0.2,
            }  # int8 fastest, inside the others'
            for key, est in result.runs[1].estimates.items():  # intervals: not ranked apart from them
                est["estimate_ms"] = ms.get(key.split()[0], 0.107)
            result.routes = [r.to_dict() for r in routes_for_deploy(result)]
            store.record(result)
        built = build(store)
    out = tmp_path / "report.html"
    write(built, html=out)
    page = out.read_text()
    assert "not ranked apart by the estimate" in page and "confirm on the board" in page
    assert not re.search(r"(vs tflite-fp32) · [0-9.]+x \1<", page)  # fp32 the slowest too: said once
    tables = _layout(out, 1280, tmp_path)["tables"]
    heads = [t["head"] for t in tables]
    assert any("what the figure cannot tell" in h for h in heads), heads  # the route table is there
    assert any(t["kind"] == "latest" for t in tables) and any(t["kind"] == "flags" for t in tables), heads
    assert any("governor" in h for h in heads), heads  # and the device facts
    wide = [(t["head"][:50], t["scroll"], t["client"]) for t in tables if t["scroll"] > t["client"] + 1]
    assert not wide, wide
    routes = next(t for t in tables if "what the figure cannot tell" in t["head"])
    assert routes["tallest"] <= 200, routes["tallest"]  # rows read across, not down (327 px before)


def test_bar_labels_never_run_into_each_other(tmp_path: Path) -> None:
    """r13 #5: at two routes the bar labels were written across, and ncnn's 'same model' (an ncnn-int8 that is
    its fp32 model, so as fast) ran into ncnn-fp16's ratio beside it: '1.04xsame model' at 1400 px. A label
    wider than its bar's room now stands upright, with room above its bar."""
    result = synthetic_result(T0, rng=np.random.default_rng(2), targets=("pi4",), threads=(1,), repeat=20)
    for art in result.artifacts:  # as deploy records it (record_same_models)
        art.same_model_checked = True
        if art.id == "ncnn-int8":
            art.same_model_as, art.same_model_why = "ncnn-fp32", "the speed plan kept every layer float"
    found = {m.artifact: m for m in result.runs[0].agent.measurements}  # type: ignore[union-attr]
    found["ncnn-int8"].p50_ms, found["ncnn-int8"].samples_ms = (
        found["ncnn-fp32"].p50_ms,
        found["ncnn-fp32"].samples_ms,
    )
    with open_store(f"sqlite:///{tmp_path / 'results.sqlite'}") as store:
        store.record(result)
        built = build(store)
    out = tmp_path / "report.html"
    write(built, html=out)
    for width in WIDTHS:
        (fig,) = [f for f in _layout(out, width, tmp_path)["figures"] if "precisions vs fp32" in f["caption"]]
        labels = [t for t in fig["texts"] if t[0] == "same model" or re.fullmatch(r"\d\.\d\dx", t[0])]
        assert len(labels) == 5, fig["texts"]  # tflite's fp16, dynamic and int8; ncnn's fp16 and int8
        for i, (t1, *b1) in enumerate(fig["texts"]):
            for t2, *b2 in fig["texts"][i + 1 :]:
                assert _overlap(b1, b2) < 2.0, f"{width}px: {t1!r} over {t2!r}"
            left, top, right, bottom = fig["svg"]
            assert b1[0] >= left - 1 and b1[2] <= right + 1 and b1[1] >= top - 1 and b1[3] <= bottom + 1, (
                t1,
                b1,
            )
