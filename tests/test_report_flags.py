"""What a user reads when an artifact misses its fidelity gate: a real deploy of the tiny recipe on the host with a
gate it cannot meet (int8 min_cosine 1.0), recorded in a real SQLite store, then `runs show` and `report`."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import procs
import pytest

from edgekit.report.figures import apart, gate_check

TINY = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"


_edgekit = partial(procs.run, columns=300)


def _one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def missed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One deploy to the host whose tflite-int8 (cosine ~0.99999) misses `int8: {min_cosine: 1.0}`, and what
    `runs show` and `report --html --markdown` make of it."""
    folder = tmp_path_factory.mktemp("flags")
    text = TINY.read_text()
    text = text.replace("int8: {min_cosine: 0.95}", "int8: {min_cosine: 1.0}")
    text = re.sub(r"^formats: .*$", "formats: [tflite-fp32, tflite-int8]", text, flags=re.M)
    text = re.sub(
        r"^benchmark: .*$", "benchmark: {warmup: 1, repeat: 5, threads: [1], cooldown_s: 0}", text, flags=re.M
    )
    recipe = folder / "recipes" / "tiny.yaml"
    recipe.parent.mkdir()
    recipe.write_text(text)
    store = f"sqlite:///{folder / 'results.sqlite'}"
    deploy = _edgekit("deploy", str(recipe), "--target", "local", "--store", store)
    assert deploy.returncode == 1, deploy.stdout + deploy.stderr  # a gate missed: the deploy failed
    shown = _edgekit("runs", "show", "1", "--store", store)
    assert shown.returncode == 0, shown.stderr
    html, md = folder / "report.html", folder / "summary.md"
    report = _edgekit(
        "report", "--since", "all", "--store", store, "--html", str(html), "--markdown", str(md)
    )
    assert report.returncode == 0, report.stderr  # report lists; only with --fail-on-regression does it fail
    failing = _edgekit("report", "--since", "all", "--store", store, "--fail-on-regression")
    assert failing.returncode == 1 and "fidelity" in failing.stdout, failing.stdout + failing.stderr
    return {
        "deploy": _one_line(deploy.stdout + deploy.stderr),
        "show": _one_line(shown.stdout),
        "html": html.read_text(),
        "markdown": md.read_text(),
    }


def test_apart_prints_a_figure_below_its_limit_below_it() -> None:
    assert gate_check(0.999991, 1.0) == "0.99999 vs limit 1"  # .4g printed "1 vs limit 1"
    assert gate_check(0.0100001, 0.01) == "0.0100001 vs limit 0.01"
    assert gate_check(0.99996, 0.999961) == "0.99996 vs limit 0.999961"  # never rounded past the limit
    assert gate_check(0.5, 0.95) == "0.5 vs limit 0.95"  # no more digits than it takes
    assert apart(1.23456, 1.23461) == "1.23456" and apart(1.23456) == "1.235" and apart(1.0, 1.0) == "1"


def test_a_missed_gate_never_prints_its_value_equal_to_its_limit(missed: dict[str, object]) -> None:
    """`int8: {min_cosine: 1.0}` missed with cosine 0.99999 printed `min_cosine: 1 vs limit 1` in deploy's
    lines, `runs show`, the route, the Markdown flags and the HTML Flags table."""
    for where in ("deploy", "show", "markdown", "html"):
        text = str(missed[where])
        found = re.findall(r"min_cosine: (\S+) vs limit 1\b", text)
        assert found, (where, text[-3000:])
        assert all(float(v) < 1.0 for v in found), (where, found)
    html = str(missed["html"])
    flags = html[html.index("<h3>Flags</h3>") : html.index("<h3>Latest results</h3>")]
    rows = [row for row in flags.split("<tr") if "data-label=kind>fidelity</td>" in row]
    cells = [c for row in rows for c in re.findall(r"<td data-label=(?:old|new)[^>]*>([^< ]*)", row)]
    figures = [float(c) for c in cells if c != "-"]
    assert figures and all(f < 1.0 for f in figures), flags


def test_a_gate_missed_at_conversion_is_one_fidelity_flag_not_a_failed_conversion(
    missed: dict[str, object],
) -> None:
    """The miss was filed as `failed` ('conversion failed: missed its fidelity gate') and again as `fidelity` on
    the host: '2 regressions' for one artifact that converted and only missed its gate."""
    md = str(missed["markdown"])
    assert "conversion failed" not in md and "**failed**" not in md, md
    flags = [line for line in md.splitlines() if line.startswith("- **fidelity**")]
    assert len(flags) == 1 and "tflite-int8" in flags[0], md
    # a first run: one failure with nothing earlier to regress from, counted apart from regressions
    # (a first run judges no timing: one timed beside the suite's other work says so rather than "no regressions")
    assert re.search(r"edgekit report: 1 failed \(no earlier run\), (no regressions|nothing judged: )", md), (
        md
    )
    html = str(missed["html"])
    assert "conversion failed" not in html and "1 failed (no earlier run)<" in html
    assert ">0 regressions<" in html or ">nothing judged: " in html  # as the Markdown's headline, above


def test_a_latency_regression_says_how_to_accept_it_and_accepting_it_clears_the_report(
    tmp_path: Path,
) -> None:
    """A held regression the fingerprint cannot explain stayed flagged for six weeks and the report never said
    there was a way out: the Markdown and HTML name `edgekit runs accept RUN --target T --store URL` once per
    target (not for a fidelity or unreliable flag), and once it is run the report lists no regression. The
    command names the store the report read (without it, pasted from a team store's report, it went to the
    default SQLite file), never its password."""
    import shlex
    from datetime import UTC, datetime, timedelta
    from html import escape

    import numpy as np
    from markdown_it import MarkdownIt

    from edgekit.formats import Format
    from edgekit.report import html, markdown
    from edgekit.report.flag_text import accept_commands
    from edgekit.report.regression import Flag, FlagKind
    from edgekit.report.synthetic import synthetic_result
    from edgekit.report.view import build
    from edgekit.store import open_store

    t0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    (tmp_path / "team&co").mkdir()
    url = f"sqlite:///{tmp_path / 'team&co' / 'results.sqlite'}"
    with open_store(url) as store:
        for day in range(17):
            store.record(
                synthetic_result(
                    t0 + timedelta(days=day),
                    rng=np.random.default_rng(day),
                    formats=(Format.TFLITE_FP32, Format.TFLITE_INT8),
                    targets=("pi4",),
                    threads=(1,),
                    slowdown={("tflite-fp32", "pi4"): 1.3, ("tflite-int8", "pi4"): 1.3}
                    if day >= 14
                    else None,
                )
            )
        report = build(store)
        assert len(report.regressions) == 2
        command = f"edgekit runs accept 17 --target pi4 --store {shlex.quote(url)}"
        assert (
            f"If this is expected (a kernel or firmware update, a board swapped for the same model): `{command}`"
            in markdown.render(report)
        )
        assert markdown.render(report).count("runs accept") == 1
        shown = MarkdownIt("commonmark").render(markdown.render(report))  # as pasted from a rendered summary
        assert f"<code>{escape(command, quote=False)}</code>" in shown, shown
        assert f"<code>{escape(command)}</code>" in html.render(report)
        store.accept(17, target="pi4")
        after = build(store)
        assert after.regressions == [] and "runs accept" not in markdown.render(after)
    others = [
        Flag(FlagKind.FIDELITY, "r", 3, "pi4", "tflite-int8"),
        Flag(FlagKind.UNRELIABLE, "r", 3, "pi4", "tflite-int8"),
        Flag(FlagKind.INSTRUCTIONS, "r", 3, "pi5-emu", "ncnn-int8"),
    ]
    assert accept_commands(others) == ["edgekit runs accept 3 --target pi5-emu"]
    assert accept_commands(others, "postgresql://bob:***@db/results?password=***&sslmode=require") == [
        "edgekit runs accept 3 --target pi5-emu --store 'postgresql://bob@db/results?sslmode=require'"
    ]


def test_an_emulated_wall_time_flag_says_so_in_the_line_the_nightly_verdict_prints() -> None:
    """The nightly's verdict line (cron log) printed an emulated target's wall-time regression as plain
    'latency ... ms', read as device latency; the Markdown and HTML said 'emulated' beside it, the verdict did
    not. The line itself says emulated wall time; a board's latency and a count are worded as before."""
    from edgekit.report.flag_text import flag_line
    from edgekit.report.regression import Flag, FlagKind

    def line(kind: FlagKind, target: str, emulated: bool, message: str = "") -> str:
        return flag_line(
            Flag(kind, "r", 8, target, "tflite-int8", 1, 3793.0, 5403.0, 0.425, 3e-28, emulated, message)
        )

    assert line(FlagKind.LATENCY, "pi4-emu", True) == (
        "tflite-int8 at 1 thread on pi4-emu: 3793 → 5403 ms emulated wall time (+42.5%, p=3e-28)"
    )
    busy = "timings unreliable (other processes used 60% of the CPUs): "
    assert line(FlagKind.UNRELIABLE, "pi4-emu", True, busy).startswith(
        "tflite-int8 at 1 thread on pi4-emu: 3793 → 5403 ms emulated wall time (+42.5%), not judged"
    )
    assert (
        line(FlagKind.LATENCY, "pi4", False)
        == "tflite-int8 at 1 thread on pi4: 3793 → 5403 ms (+42.5%, p=3e-28)"
    )
    assert "instr. (+42.5%" in line(FlagKind.INSTRUCTIONS, "pi4-emu", True)


def test_a_target_missing_its_gate_on_its_first_deploy_there_is_a_failure_not_a_regression() -> None:
    """A recipe's first deploy to pi5 whose ncnn-fp16 passes its gate at conversion and misses it on the A76's
    own outputs (README's own example) was counted as a regression, with nothing to have regressed from; a miss
    at conversion already said 'failed (no earlier run)'. With the target's earlier runs known, a miss no earlier
    run of that target compared is a failure (first_run); one an earlier run compared is a regression."""
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from edgekit.formats import Format
    from edgekit.report.fidelity_flags import target_fidelity_flags
    from edgekit.report.synthetic import synthetic_result
    from edgekit.store import StoredRun

    t0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)

    def night(day: int, formats: tuple[Format, ...]) -> StoredRun:
        result = synthetic_result(
            t0 + timedelta(days=day),
            rng=np.random.default_rng(day),
            targets=("pi5", "host"),
            threads=(1,),
            formats=formats,
        )
        return StoredRun(day + 1, (t0 + timedelta(days=day)).timestamp(), result)

    both = (Format.NCNN_FP32, Format.NCNN_FP16)
    tonight = night(2, both)
    pi5 = tonight.result.runs[0]
    assert pi5.target == "pi5"
    missed = next(c for c in pi5.comparisons if c.reference == "onnx" and c.artifact == "ncnn-fp16")
    missed.gates_passed, missed.gate_failures = False, ["min_cosine: 0.990 vs limit 0.999"]

    def flags(earlier: list[StoredRun] | None) -> list[tuple[bool, bool]]:
        runs = None if earlier is None else [t for r in earlier for t in r.result.runs]
        found = target_fidelity_flags(tonight, pi5, runs)
        assert [(f.target, f.artifact) for f in found] == [("pi5", "ncnn-fp16")]
        return [(f.is_failure, f.is_regression) for f in found]

    assert flags([]) == [(True, False)]  # the first deploy to pi5
    assert flags([night(0, (Format.NCNN_FP32,))]) == [(True, False)]  # pi5 ran, but never ncnn-fp16
    assert flags([night(0, both)]) == [(False, True)]  # pi5 compared ncnn-fp16 before and met its gate
    host_only = night(1, both)
    host_only.result.runs = [t for t in host_only.result.runs if t.target == "host"]
    assert flags([host_only]) == [(True, False)]  # another target's comparison is not this target's
    assert flags(None) == [(False, True)]  # the earlier runs not known: a regression, as before


def test_the_accept_command_printed_for_a_min_change_regression_accepts_it(tmp_path: Path) -> None:
    """`report --min-change 0.02` flagged a +3.5 % step and printed `edgekit runs accept 10 --target pi4 ...`,
    which judged the run again at the default 5 % and refused ('run 10 has no latency or instruction-count
    regression on pi4 to accept', exit 2): a nightly with --min-change 0.02 failed for six weeks with no way out.
    The printed command carries --min-change, and runs as printed."""
    import shlex
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from edgekit.formats import Format
    from edgekit.report.synthetic import synthetic_result
    from edgekit.store import open_store

    t0, rng = datetime(2026, 11, 20, 2, 0, tzinfo=UTC), np.random.default_rng(5)
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    with open_store(url) as store:
        for night in range(10):
            store.record(
                synthetic_result(
                    t0 + timedelta(days=night),
                    rng=rng,
                    formats=(Format.TFLITE_FP32, Format.TFLITE_INT8),
                    threads=(1,),
                    repeat=60,
                    night_sd=0.002,
                    sample_sd=0.02,
                    slowdown={("tflite-int8", "pi4"): 1.035} if night == 9 else None,
                    targets=("pi4",),
                )
            )
    shown = _edgekit("report", "--since", "all", "--min-change", "0.02", "--store", url)
    assert shown.returncode == 0, shown.stderr
    (command,) = re.findall(r"`(edgekit runs accept [^`]*)`", shown.stdout)
    assert command == f"edgekit runs accept 10 --target pi4 --min-change 0.02 --store {shlex.quote(url)}"
    accepted = _edgekit(*shlex.split(command)[1:])
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "accepted as the new level of tflite-int8 at 1 thread on pi4" in _one_line(accepted.stdout)
    after = _edgekit("report", "--since", "all", "--min-change", "0.02", "--store", url)
    assert "runs accept" not in after.stdout and "no regressions" in after.stdout


def test_a_clock_that_fell_during_the_run_is_said_and_judged_only_under_a_governor_that_holds_it() -> None:
    """Throttling was told only by the Pi's vcgencmd flags or 80 °C: four cores at 2.4 GHz (55 °C) before the run
    and 1.0 GHz (79 °C) after, no flags, read 'throttle_reason: None', and the HTML facts showed the clock before
    the run only. Under the performance governor (which holds the top clock) such a fall is throttling; under
    schedutil or ondemand (an idle core's clock falls too) it is said as a caution, not judged; the facts show the
    clock after the run."""
    from edgekit.report.html_facts import _facts_row
    from edgekit.report.unreliable import throttle_reason
    from edgekit.results import AgentResult, CpuFreq, DeviceFacts, TargetRun

    def facts(khz: int, temp: float, governor: str) -> DeviceFacts:
        freqs = [CpuFreq(cpu=i, governor=governor, cur_khz=khz, max_khz=2_400_000) for i in range(4)]
        return DeviceFacts(machine="aarch64", cores=4, python="3.11", temperature_c=temp, freqs=freqs)

    def run(governor: str, after_khz: int) -> TargetRun:
        agent = AgentResult(
            started_at="2026-12-05T00:00:00+00:00",
            facts_before=facts(2_400_000, 55.0, governor),
            facts_after=facts(after_khz, 79.0, governor),
        )
        return TargetRun(target="jetson", kind="ssh", emulated=False, status="ok", agent=agent)

    held = run("performance", 1_000_000)
    reason = throttle_reason(held)
    assert reason is not None and "clock fell on cpu0-3: 2400 -> 1000 MHz" in reason, reason
    assert "-58%" in reason and "performance" in reason, reason
    assert held.agent is not None and "2400 → 1000 / 2400" in _facts_row(1, 0.0, held, held.agent)
    from edgekit.report.unreliable import clock_caution

    idle = run("schedutil", 1_000_000)
    assert throttle_reason(idle) is None
    caution = clock_caution(idle)
    assert (
        caution is not None
        and "clock fell on cpu0-3: 2400 -> 1000 MHz" in caution
        and "not judged" in caution
    )
    assert idle.agent is not None and "not judged" in _facts_row(1, 0.0, idle, idle.agent)
    steady = run("performance", 2_300_000)  # 4 %: within what the clock reads from moment to moment
    assert throttle_reason(steady) is None and clock_caution(steady) is None
