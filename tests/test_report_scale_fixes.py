"""Review of the report at scale: what the plots mark, the times and texts it prints, how its Markdown parses."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import procs

from edgekit.formats import Format
from edgekit.report import build
from edgekit.report.synthetic import add_estimates, synthetic_result
from edgekit.store import open_store

T0 = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
RING = re.compile(r"<use [^>]*stroke: #ff0000")  # a red circle drawn around a point (mec="red")


def test_an_instruction_count_regression_is_circled_on_its_count_and_estimate_panels(tmp_path: Path) -> None:
    """The Flags table listed `instructions (emulated) ncnn-int8 at 1 thread on pi5-emu: 108,000,000 ->
    110,160,000 instr. (+2.0%)` and no panel circled it: the circle was drawn only on qemu's wall-time panel,
    which an emulated board's estimates replace. Now on the count and estimate panels of that thread count."""
    from edgekit.report import trend_plots

    rng = np.random.default_rng(4)
    formats = (Format.TFLITE_FP32, Format.TFLITE_INT8, Format.NCNN_INT8)
    with open_store(f"sqlite:///{tmp_path / 'counts.sqlite'}") as store:
        for night in range(8):
            slow = {("ncnn-int8", "pi5-emu"): 1.02} if night == 7 else None
            result = synthetic_result(
                T0 + timedelta(days=night),
                rng=rng,
                targets=("pi5-emu",),
                formats=formats,
                threads=(1, 4),
                slowdown=slow,
            )
            store.record(add_estimates(result))
        (view,) = build(store).recipes
    flags = {(f.kind.value, f.artifact, f.threads, f.run_id) for f in view.flags if f.is_bad}
    assert flags == {("instructions", "ncnn-int8", n, 8) for n in (1, 4)}, flags
    panels = {p.caption: p.svg or "" for p in trend_plots.trend(view, "pi5-emu")}
    for n in ("1 thread", "4 threads"):
        for what in ("estimated board latency over time", "guest instruction count over time"):
            caption = f"pi5-emu, {n}: {what}"
            assert len(RING.findall(panels[caption])) == 1, (
                caption,
                list(panels),
            )  # ncnn-int8's newest point


def _edgekit(tmp_path: Path, *args: str) -> str:
    out = procs.run(*args, home=tmp_path / "home", columns=400, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_runs_lists_start_times_in_utc_as_its_heading_says(tmp_path: Path) -> None:
    """A run written by a runner in Tokyo (08:00+09:00, 23:00 UTC the day before) was listed under
    'started (UTC)' at 08:00, later than a run written in UTC at 02:30 that the list (rightly) put above it."""
    rng = np.random.default_rng(1)
    tokyo = datetime(2026, 12, 5, 8, 0, tzinfo=timezone(timedelta(hours=9)))
    files = []
    for name, started in (("a", tokyo), ("b", datetime(2026, 12, 5, 2, 30, tzinfo=UTC))):
        result = synthetic_result(
            started, rng=rng, recipe="digits", targets=("pi4",), formats=(Format.TFLITE_FP32,), threads=(1,)
        )
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(result.model_dump_json())
    url = f"sqlite:///{tmp_path / 'tz.sqlite'}"
    _edgekit(tmp_path, "runs", "import", *map(str, files), "--store", url)
    listed = _edgekit(tmp_path, "runs", "--store", url)
    rows = [ln for ln in listed.splitlines() if "digits" in ln]
    assert "2026-12-05 02:30" in rows[0] and "2026-12-04 23:00" in rows[1], listed
    assert "2026-12-05 08:00" not in listed
    shown = _edgekit(tmp_path, "runs", "show", "1", "--store", url)
    assert "started 2026-12-05T08:00:00+09:00" in shown, shown  # the recorded time, its offset with it


def test_precision_bars_are_centred_on_their_runtime_without_slots_for_missing_precisions() -> None:
    """tflite-fp32, tflite-int8 and ncnn-int8: ncnn's one bar sat in int8's slot, right of its tick and beside
    tflite-fp32, and the axis started at the bar, so the 'ncnn' tick label fell on the y-axis corner by its '0'.
    Now only the bars present, centred on their runtime's tick, and a margin either side of the groups."""
    import matplotlib.pyplot as plt

    from edgekit.report.panels import new_panel
    from edgekit.report.plots import _precision_bars

    formats = (Format.TFLITE_FP32, Format.TFLITE_INT8, Format.NCNN_INT8)
    result = synthetic_result(
        T0, rng=np.random.default_rng(0), targets=("pi4",), formats=formats, threads=(1,)
    )
    assert result.runs[0].agent is not None
    fig, ax = new_panel()
    _precision_bars(ax, result.runs[0].agent.measurements, use_counts=False)
    ticks = {t.get_text(): x for t, x in zip(ax.get_xticklabels(), ax.get_xticks())}
    centres = sorted(round(p.get_x() + p.get_width() / 2, 6) for p in ax.patches)
    plt.close(fig)
    assert set(ticks) == {"ncnn", "tflite"}, ticks
    ncnn, tflite = ticks["ncnn"], ticks["tflite"]
    assert len(centres) == 3 and centres[0] == ncnn, (centres, ticks)  # ncnn-int8 alone, on its tick
    assert centres[1] < tflite < centres[2] and centres[1] + centres[2] == 2 * tflite, (centres, ticks)
    low, high = ax.get_xlim()
    assert low <= ncnn - 0.4 and high >= tflite + 0.4, (low, high)


ACCEPTED_MARK = re.compile(r"<use [^>]*stroke: #006d2c")  # the green diamond at an accepted run's point


def test_an_accepted_level_is_marked_on_the_trend_and_said_in_the_recipe_section(tmp_path: Path) -> None:
    """`edgekit runs accept 11 --target pi4` stopped the flags and left no trace in the report: the trend showed a
    step with nothing on it, the section nothing. The accepted run's point is marked (a diamond, in the legend)
    and the section says 'level accepted at run #11 on pi4 (date)', in the HTML and the Markdown."""
    from edgekit.report import trend_plots
    from edgekit.report.html import render as render_html
    from edgekit.report.markdown import render

    rng = np.random.default_rng(7)
    with open_store(f"sqlite:///{tmp_path / 'accepted.sqlite'}") as store:
        for day in range(14):
            store.record(
                synthetic_result(
                    T0 + timedelta(days=day),
                    rng=rng,
                    targets=("pi4",),
                    formats=(Format.TFLITE_FP32,),
                    threads=(1,),
                    slowdown={("tflite-fp32", "pi4"): 1.3} if day >= 10 else None,
                )
            )
        assert len(build(store).regressions) == 1
        html = render_html(build(store))
        assert "level accepted" not in html and not ACCEPTED_MARK.search(html)
        store.accept(11, target="pi4", keys=[("pi4", "tflite-fp32", 1)])
        report = build(store)
    (view,) = report.recipes
    assert report.regressions == []
    line = "level accepted at run #11 on pi4 (2026-06-11 02:00 UTC): tflite-fp32 at 1 thread"
    md, html = render(report), render_html(report)
    assert line in md and line in html, md
    assert "level accepted (<code>edgekit runs accept</code>)" in html  # the legend's key for the diamond
    (trend,) = trend_plots.trend(view, "pi4")
    assert len(ACCEPTED_MARK.findall(trend.svg or "")) == 1


PROXY_ERROR = (
    "connect: ProxyCommand sshpass -p hunter2secret ssh -W %h:%p jump@bastion.lab exited with status 255 "
    "(key /home/alice/.ssh/id_lab_ed25519)"
)


def _unreachable(day: int) -> object:
    """A night whose pi4 failed at connect with the proxy command, password and all, in its error."""
    result = synthetic_result(
        T0 + timedelta(days=day),
        rng=np.random.default_rng(day),
        targets=("pi4",),
        formats=(Format.TFLITE_FP32,),
        threads=(1,),
    )
    result.runs[0] = result.runs[0].model_copy(
        update={"status": "failed", "agent": None, "error": PROXY_ERROR}
    )
    return result


def test_a_password_in_a_stored_error_is_masked_in_the_report_and_on_import(tmp_path: Path) -> None:
    """A run imported with `runs import` (or recorded by an older edgekit) held `sshpass -p hunter2secret` in its
    error, and the HTML's device facts showed it verbatim. The renderers mask stored error text as the
    transport masks a proxy command, and `runs import` masks it on the way in."""
    from edgekit.report.html import render as render_html
    from edgekit.report.markdown import render
    from edgekit.store.masked import masked_text

    masked = PROXY_ERROR.replace("hunter2secret", "***")
    assert masked_text(PROXY_ERROR) == masked
    assert masked_text("proxy `x --service-token-secret abc1 -h y`, TOKEN=zz") == (
        "proxy `x --service-token-secret *** -h y`, TOKEN=***"
    )
    assert masked_text("load failed: no such file (model.param)") == "load failed: no such file (model.param)"
    nights = [
        synthetic_result(
            T0 + timedelta(days=d),
            rng=np.random.default_rng(d),
            targets=("pi4",),
            formats=(Format.TFLITE_FP32,),
            threads=(1,),
        )
        for d in range(3)
    ]
    url = f"sqlite:///{tmp_path / 'secret.sqlite'}"
    with open_store(url) as store:
        for result in [*nights, _unreachable(3)]:
            store.record(result)  # as an older edgekit recorded it: verbatim
        report = build(store)
    md, html = render(report), render_html(report)
    assert "hunter2secret" not in html and "hunter2secret" not in md
    assert masked in html and "sshpass -p ***" in md, md
    path = tmp_path / "night.json"
    path.write_text(_unreachable(4).model_dump_json())  # type: ignore[attr-defined]
    _edgekit(tmp_path, "runs", "import", str(path), "--store", url)
    with open_store(url) as store:
        assert store.load(5).runs[0].error == masked
    for show in (("runs", "show", "4"), ("runs", "show", "4", "--json")):  # run 4: recorded verbatim
        said = _edgekit(tmp_path, *show, "--store", url)
        assert "hunter2secret" not in said and "sshpass -p ***" in said, said


def test_the_markdown_verdict_after_the_bullets_is_a_paragraph_of_its_own(tmp_path: Path) -> None:
    """`- **not judged** ... (1 earlier run; 3 needed)` followed directly by `No regressions in what could be
    judged.` made the sentence part of the list item in CommonMark (a lazy continuation line)."""
    from markdown_it import MarkdownIt

    from edgekit.report.markdown import render

    rng = np.random.default_rng(3)
    nights = [
        synthetic_result(
            T0 + timedelta(days=d), rng=rng, targets=("pi4",), formats=(Format.TFLITE_FP32,), threads=(1,)
        )
        for d in range(2)
    ]
    with open_store(f"sqlite:///{tmp_path / 'two.sqlite'}") as store:
        for night in nights:
            store.record(night)
        md = render(build(store))
    assert "- **not judged** " in md
    shown = MarkdownIt("commonmark").render(md)
    assert "<p>No regressions in what could be judged.</p>" in shown, shown
    assert not re.search(r"<li>[^<]*not enough history[^<]*\n?No regressions", shown), shown
