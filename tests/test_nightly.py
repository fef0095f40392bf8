"""`edgekit nightly` over recorded results: the deploy step is injected, everything after it is real."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import AgentError, RecipeError
from edgekit.formats import Format
from edgekit.nightly import recipe_files, run_nightly
from edgekit.report.regression import FlagKind
from edgekit.report.synthetic import synthetic_result
from edgekit.results import DeployResult
from edgekit.store import open_store

T0 = datetime(2026, 5, 1, 2, 0, tzinfo=UTC)
FORMATS = (Format.TFLITE_FP32, Format.TFLITE_INT8, Format.NCNN_INT8)


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGEKIT_STORE", raising=False)


@pytest.fixture
def recipes(tmp_path: Path) -> Path:
    folder = tmp_path / "recipes"
    folder.mkdir()
    for name in ("detector", "classifier"):
        (folder / f"{name}.yaml").write_text(f"name: {name}\n")
    (folder / "README.md").write_text("not a recipe")
    return folder


class FakeNights:
    """Plays the part of edgekit.deploy.deploy: one synthetic result per recipe per night."""

    def __init__(self, host: bool = False) -> None:
        self.host = host  # as the real deploy does: the host measured beside the targets asked for
        self.night = 0
        self.rng = np.random.default_rng(11)
        self.tonight: dict[str, dict] = {}
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def __call__(self, recipe: Path, targets: Sequence[str]) -> DeployResult:
        self.calls.append((recipe.stem, tuple(targets)))
        special = self.tonight.get(recipe.stem, {})
        if "raise" in special:
            raise special["raise"]
        return synthetic_result(
            T0 + timedelta(days=self.night, minutes=len(self.calls)),
            rng=self.rng,
            recipe=recipe.stem,
            targets=(*targets, "host") if self.host else tuple(targets),
            formats=FORMATS,
            threads=(1,),
            repeat=30,
            **special,
        )


TINY = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"


def _nights(fake: FakeNights, recipes: Path, url: str | None, count: int) -> list[int]:
    codes = []
    for _ in range(count):
        codes.append(run_nightly([recipes], ["pi4", "pi5-emu"], store_url=url, deploy_fn=fake).exit_code)
        fake.night += 1
    return codes


def test_quiet_nights_pass_and_a_slowdown_fails_the_night_with_a_report(
    recipes: Path, tmp_path: Path
) -> None:
    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights()
    assert _nights(fake, recipes, url, 8) == [0] * 8
    assert fake.calls[:2] == [("classifier", ("pi4", "pi5-emu")), ("detector", ("pi4", "pi5-emu"))]
    fake.tonight = {"detector": {"slowdown": {("tflite-int8", "pi4"): 1.2}}}
    html, md = tmp_path / "out" / "nightly.html", tmp_path / "out" / "nightly.md"
    outcome = run_nightly(
        [recipes], ["pi4", "pi5-emu"], store_url=url, deploy_fn=fake, html=html, markdown=md
    )
    assert outcome.exit_code == 1 and not outcome.failures
    assert [(f.kind, f.recipe, f.artifact, f.target) for f in outcome.report.regressions] == [  # type: ignore[union-attr]
        (FlagKind.LATENCY, "detector", "tflite-int8", "pi4")
    ]
    assert outcome.written == [html, md]
    assert "❌ detector" in md.read_text() and "✅ classifier" in md.read_text()
    assert html.read_text().count("<svg") >= 12  # 2 recipes x 2 targets x 3 plots
    with open_store(url) as store:  # every night kept: nightly never overwrites history
        assert len(store.runs(limit=None)) == 9 * 2


def test_a_failed_deploy_fails_the_night_but_keeps_the_other_recipes(recipes: Path, tmp_path: Path) -> None:
    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights()
    fake.tonight = {"classifier": {"raise": AgentError("agent wrote no result", where="pi4")}, "detector": {}}
    outcome = run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake)
    assert outcome.exit_code == 1
    assert list(outcome.failures) == [str((recipes / "classifier.yaml").resolve())]
    assert "agent wrote no result" in outcome.failures[str((recipes / "classifier.yaml").resolve())]
    assert list(outcome.run_ids) == [str((recipes / "detector.yaml").resolve())]
    fake.tonight = {"classifier": {"raise": ZeroDivisionError("a bug")}}
    assert "ZeroDivisionError" in next(
        iter(run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake).failures.values())
    )
    # the report names the recipe that did not deploy: its summary said "no regressions" under a failed night
    md = tmp_path / "summary.md"
    fake.tonight = {"classifier": {"raise": AgentError("agent wrote no result", where="pi4")}}
    run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake, markdown=md)
    text = md.read_text()
    assert text.startswith("## edgekit report: 1 deploy failed") and "`classifier.yaml`: " in text, text[:400]
    assert "agent wrote no result" in text
    # nothing deployed at all: the report is still written (a CI page links it) and says why
    fake.tonight = {
        name: {"raise": AgentError(f"{name} broke", where="pi4")} for name in ("classifier", "detector")
    }
    html = tmp_path / "nightly.html"
    outcome = run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake, markdown=md, html=html)
    assert outcome.exit_code == 1 and md.read_text().startswith("## edgekit report: 2 deploys failed")
    assert "classifier broke" in html.read_text() and "detector broke" in html.read_text()


def test_ctrl_c_stops_the_night_and_keeps_what_was_measured(recipes: Path, tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM during one recipe's deploy was taken as that recipe failing and the matrix went on
    (exit 1). It stops the night: what that deploy measured is recorded, no other recipe is deployed, exit 130;
    a bug after measuring keeps its measurements too."""
    from edgekit.errors import Interrupted

    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights()
    measured = synthetic_result(
        T0, rng=np.random.default_rng(1), recipe="classifier", targets=("pi4",), formats=FORMATS
    )
    stop = Interrupted("interrupted (Ctrl-C or SIGTERM); what was measured is kept", where="edgekit deploy")
    stop.result = measured  # type: ignore[attr-defined]  # as deploy attaches it
    fake.tonight = {"classifier": {"raise": stop}}
    md = tmp_path / "night.md"
    outcome = run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake, markdown=md)
    assert outcome.exit_code == 130 and outcome.interrupted
    assert [c[0] for c in fake.calls] == ["classifier"]  # detector (after it, sorted) never deployed
    # the recipe never reached is listed, not silently missing under a clean headline
    assert outcome.not_reached == ["detector.yaml"] and "`detector.yaml`" in md.read_text(), md.read_text()
    assert md.read_text().startswith("## edgekit report: interrupted, not everything was run"), md.read_text()
    with open_store(url) as db:
        assert [r.recipe for r in db.runs()] == ["classifier"]
    fake.calls.clear()
    fake.tonight = {"classifier": {"raise": KeyboardInterrupt()}}
    assert run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake).exit_code == 130
    bug = ZeroDivisionError("a bug after measuring")
    bug.result = measured.model_copy(update={"started_at": (T0 + timedelta(hours=1)).isoformat()})  # type: ignore[attr-defined]
    fake.tonight = {"classifier": {"raise": bug}}
    outcome = run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake)
    assert outcome.exit_code == 1 and str((recipes / "classifier.yaml").resolve()) in outcome.run_ids


def test_throttling_is_reported_but_does_not_fail_the_night(recipes: Path, tmp_path: Path) -> None:
    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights()
    _nights(fake, recipes, url, 5)
    fake.tonight = {"detector": {"slowdown": {("tflite-fp32", "pi4"): 1.4}, "throttled": {"pi4": "0x50005"}}}
    outcome = run_nightly([recipes], ["pi4", "pi5-emu"], store_url=url, deploy_fn=fake)
    assert outcome.exit_code == 0
    assert [f.kind for f in outcome.report.flags] == [FlagKind.UNRELIABLE]  # type: ignore[union-attr]


def test_a_night_timed_entirely_while_busy_says_nothing_was_judged(recipes: Path, tmp_path: Path) -> None:
    """A lab night whose every measurement was timed beside other work ended 'nightly: no regressions, 28
    unreliable' under the headline '## edgekit report: no regressions': nothing had been judged. Both say so now;
    the night still passes (unreliable runs do not fail it), and a night with a judged key keeps its words."""
    from edgekit.nightly_outcome import verdict
    from edgekit.report import markdown as md

    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights()
    _nights(fake, recipes, url, 4)

    def busy(recipe: Path, targets: Sequence[str]) -> DeployResult:
        result = fake(recipe, targets)
        for run in result.runs:
            for m in run.agent.measurements if run.agent else []:
                m.others_cpu_share = 0.45  # a shared runner timing it beside qemu devices
        return result

    outcome = run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=busy)
    assert outcome.exit_code == 0
    assert verdict(outcome) == "nightly: nothing judged: 6 of 6 timings unreliable", verdict(outcome)
    headline = md.render(outcome.report).splitlines()[0]  # type: ignore[arg-type]
    assert headline == "## edgekit report: nothing judged: 6 of 6 timings unreliable", headline
    from edgekit.report.html import render as render_html

    page = render_html(outcome.report)  # type: ignore[arg-type]
    assert ">nothing judged: 6 of 6 timings unreliable</span>" in page and ">0 regressions<" not in page
    fake.night += 1  # the emulated target's counts are exact whatever the load: judged, so 'no regressions'
    outcome = run_nightly([recipes], ["pi4", "pi5-emu"], store_url=url, deploy_fn=busy)
    assert verdict(outcome) == "nightly: no regressions, 6 unreliable", verdict(outcome)
    assert md.render(outcome.report).startswith("## edgekit report: no regressions\n")  # type: ignore[arg-type]
    assert ">0 regressions<" in render_html(outcome.report)  # type: ignore[arg-type]


def test_a_first_night_partly_busy_says_the_rest_lacked_history(recipes: Path, tmp_path: Path) -> None:
    """A first night with some timings taken while busy and the others without history said 'nothing judged: 2
    of 14 timings unreliable', as if the other 12 were unreliable too (review r13): it says they lacked
    history."""
    from edgekit.nightly_outcome import verdict

    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights()

    def busy(recipe: Path, targets: Sequence[str]) -> DeployResult:
        result = fake(recipe, targets)
        for run in result.runs:
            for m in run.agent.measurements[:1] if run.agent else []:
                m.others_cpu_share = 0.45
        return result

    outcome = run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=busy)
    assert outcome.exit_code == 0
    said = verdict(outcome)
    assert "nothing judged: 2 of 6 timings unreliable, 4 without enough history" in said, said


def test_a_night_whose_report_shows_no_run_does_not_say_no_regressions(recipes: Path, tmp_path: Path) -> None:
    """Runs dated before the report's window (a clock set wrong, `--since` too short) left the report empty, and
    the night said 'nightly: no regressions' over it; it says it had no runs to judge."""
    from edgekit.nightly_outcome import verdict

    outcome = run_nightly(
        [recipes], ["pi4"], store_url=f"sqlite:///{tmp_path / 'n.sqlite'}", deploy_fn=FakeNights(), since=4e9
    )
    assert outcome.report is not None and not outcome.report.recipes
    assert verdict(outcome) == "nightly: no runs to judge", verdict(outcome)


def test_recipe_files_from_folders_and_files(recipes: Path, tmp_path: Path) -> None:
    files = recipe_files([recipes, recipes / "detector.yaml"])
    assert [p.name for p in files] == ["classifier.yaml", "detector.yaml"]
    with pytest.raises(RecipeError, match="no such recipe"):
        recipe_files([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecipeError, match="no recipe files"):
        recipe_files([tmp_path / "empty"])


def test_cli_exit_status_for_bad_arguments(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit",
            "nightly",
            "--recipes",
            str(tmp_path / "nope"),
            "--targets",
            "pi4",
            "--store",
            str(tmp_path / "s.sqlite"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "no such recipe file or folder" in " ".join(out.stderr.split())
    assert not (tmp_path / "s.sqlite").exists()  # refused before the store was created


def test_cli_refuses_an_unknown_target_before_any_deploy(tmp_path: Path) -> None:
    """A typo in the nightly's target list is bad input: exit 2 at once, not one failed deploy per recipe."""
    out = _nightly(tmp_path, "--recipes", str(TINY), "--targets", "pi4-emu,no-such-board")
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 2 and "unknown target 'no-such-board'" in text, text
    assert "deploying" not in text


def test_cli_refuses_host_as_a_target_with_the_nightly_s_own_hint(tmp_path: Path) -> None:
    """`--targets host,...` was refused with deploy's hint ('--no-host leaves it out'): the nightly has no
    --no-host. The hint is the nightly's: the host is always measured; `local` names this machine as a target."""
    out = _nightly(tmp_path, "--recipes", str(TINY), "--targets", "host,pi4-emu")
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 2 and "--targets: unknown target 'host'" in text, text
    assert (
        "--no-host" not in text and "drop host from --targets (it is always measured); `local` names" in text
    )
    assert "deploying" not in text and not (tmp_path / "s.sqlite").exists()


def test_cli_fails_the_night_when_a_target_cannot_be_reached(tmp_path: Path) -> None:
    """The real default deploy to a target file whose port refuses: exit 1, the target's failure printed as the
    night goes, and the never-measured check under the target's name (not the file's path)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    board = tmp_path / "board.yaml"
    board.write_text(
        f"name: my-board\ntransport: ssh\nhost: 127.0.0.1\nport: {port}\nuser: pi\nkey: {tmp_path / 'key'}\n"
        "connect_timeout: 3\n"
    )
    out = _nightly(tmp_path, "--recipes", str(TINY), "--targets", str(board))
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 1, text
    assert "tiny.yaml on my-board: failed: connect" in text and "connection refused" in text, text
    assert "never measured my-board" in text and f"never measured {board}" not in text
    last = out.stdout.strip().splitlines()[-1]  # the verdict ends the log: why the night failed
    assert last.startswith(
        "nightly: 1 failed (no earlier run), no regressions, 1 target never measured: tiny failed my-board: "
        "connect: "
    ), last


def _nightly(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    store = str(tmp_path / "s.sqlite")
    cmd = [sys.executable, "-m", "edgekit", "nightly", *args, "--store", store]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"}
    )


def test_a_target_that_never_measured_fails_every_night_until_it_does(recipes: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'never.db'}"
    fake = FakeNights()

    def broken_pi4(recipe: Path, targets: Sequence[str]) -> DeployResult:
        result = fake(recipe, targets)
        for run in result.runs:
            if run.target == "pi4":
                run.status, run.error, run.agent = "failed", "connect: cannot reach 10.0.0.7:22", None
        return result

    for _night in range(3):
        outcome = run_nightly([recipes], ["pi4", "pi5-emu"], store_url=url, deploy_fn=broken_pi4)
        assert outcome.exit_code == 1 and list(outcome.never_measured) == ["pi4"]
        assert "cannot reach" in outcome.never_measured["pi4"]
        fake.night += 1
    outcome = run_nightly([recipes], ["pi4", "pi5-emu"], store_url=url, deploy_fn=fake)
    assert outcome.never_measured == {}


def test_a_store_that_fails_mid_night_loses_nothing(recipes: Path, tmp_path: Path) -> None:
    """The store failing while a night records (a server stopped, a damaged file) raised out of the night: tonight's
    measurements went nowhere, no report was written and later recipes were not deployed. Now each result is
    kept in a file with its import command and the summary says the night failed."""
    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights()
    run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake)  # a store with history

    def breaking(recipe: Path, targets: Sequence[str]) -> DeployResult:
        with open(tmp_path / "nightly.sqlite", "r+b") as fh:  # a damaged page under the open store
            fh.seek(4096)
            fh.write(os.urandom(8192))
        return fake(recipe, targets)

    md = tmp_path / "summary.md"
    outcome = run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=breaking, markdown=md)
    assert outcome.exit_code == 1 and len(fake.calls) == 4  # both recipes deployed tonight
    kept = sorted((tmp_path / "home" / "unrecorded").glob("*.json"))
    assert len(kept) == 2 and all(DeployResult.model_validate_json(p.read_text()).runs for p in kept)
    # the printed command records into this store: without --store it went to the default SQLite file
    assert all(
        f"edgekit runs import {kept[0].parent}" in why for k, why in outcome.failures.items() if k != "report"
    )
    assert all(why.endswith(f"--store {url})") for k, why in outcome.failures.items() if k != "report")
    assert md.read_text().startswith("## edgekit report: ") and "not recorded" in md.read_text()
    # the report's own failure is said as the store's, not counted as a deploy nor read as an empty store
    said = md.read_text()
    assert "`report`" not in said and "No runs in the store" not in said, said
    assert "the report could not be built from the store" in said and "regressions not judged" in said, said


def test_a_local_target_is_judged_under_the_host_column_it_is_stored_in(recipes: Path) -> None:
    """deploy measures `local` once, as `host`: the nightly looked for `local` in the store, found nothing, and
    failed every night with an empty report that said 'no regressions'."""
    from edgekit.nightly import _target_names

    assert _target_names(["local", "pi4", "pi4-a"]) == ["host", "pi4", "pi4-a"]  # pi4-a: a lab place's name


def test_cli_nightly_on_this_machine_passes_a_quiet_night(tmp_path: Path) -> None:
    """`nightly --targets local` with the real deploy: exit 0 and a report of the host column (it exited 1 every
    night: 'never measured local')."""
    md = tmp_path / "n.md"
    out = _nightly(tmp_path, "--recipes", str(TINY), "--targets", "local", "--markdown", str(md))
    text = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 0 and "never measured" not in text, text
    last = out.stdout.strip().splitlines()[-1]  # a first night judges no timing; one timed while busy says so
    assert last.startswith(("nightly: no regressions", "nightly: nothing judged: ")), out.stdout[-500:]
    assert "host" in md.read_text() and "No runs in the store" not in md.read_text()
    store = str(tmp_path / "s.sqlite")  # `runs --target local` finds them too (stored under host)
    listed = subprocess.run(
        [sys.executable, "-m", "edgekit", "runs", "--target", "local", "--store", store],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert listed.returncode == 0 and "tiny" in listed.stdout and "no runs" not in listed.stdout, (
        listed.stdout
    )


def test_two_recipe_files_with_one_name_are_refused_before_the_night(recipes: Path, tmp_path: Path) -> None:
    """Two files with the same `name:` (tiny.yaml and a bigger copy) merged into one history: one model judged
    against the other's runs, only one ever shown."""
    (recipes / "classifier-big.yaml").write_text("name: classifier\n")
    fake = FakeNights()
    with pytest.raises(RecipeError, match="2 recipe files are named 'classifier'"):
        run_nightly([recipes], ["pi4"], store_url=f"sqlite:///{tmp_path / 'n.sqlite'}", deploy_fn=fake)
    assert fake.calls == [] and not (tmp_path / "n.sqlite").exists()


def test_the_host_every_deploy_measures_is_in_the_nightly_report_and_judged(
    recipes: Path, tmp_path: Path
) -> None:
    """Each deploy measures the host beside the targets asked for, but the nightly's report kept only those
    targets: the host had no column, trend or route, and a slowdown on it passed the night (exit 0). Now the
    report shows every target the night measured and its verdict judges them all."""
    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights(host=True)
    for _ in range(6):
        assert run_nightly([recipes], ["pi5-emu"], store_url=url, deploy_fn=fake).exit_code == 0
        fake.night += 1
    fake.tonight = {"detector": {"slowdown": {("tflite-int8", "host"): 1.3}}}
    md, html = tmp_path / "n.md", tmp_path / "n.html"
    outcome = run_nightly([recipes], ["pi5-emu"], store_url=url, deploy_fn=fake, markdown=md, html=html)
    assert outcome.exit_code == 1
    assert [(f.kind, f.recipe, f.artifact, f.target) for f in outcome.report.regressions] == [  # type: ignore[union-attr]
        (FlagKind.LATENCY, "detector", "tflite-int8", "host")
    ]
    assert all(view.targets == ["pi5-emu", "host"] for view in outcome.report.recipes)  # type: ignore[union-attr]
    assert (
        "host p50 ms" in md.read_text() and "- **latency** tflite-int8 at 1 thread on host" in md.read_text()
    )
    routes = html.read_text().split("Route to ship, per target")[1].split("Latency trend")[0]
    assert routes.count("<td class=l>host</td>") == 7  # the first recipe's host route of each night
    assert outcome.measured == ["pi5-emu", "host"]


def test_the_verdict_line_says_why_the_night_failed(recipes: Path, tmp_path: Path) -> None:
    """A night that failed printed only 'deploying ...', 'recorded as run N', 'wrote ...' and exited 1: a cron log
    never said why. The nightly ends with one line: the counts, then each reason in the summary's words."""
    from edgekit.nightly_outcome import verdict

    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights()
    _nights(fake, recipes, url, 6)
    fake.tonight = {
        "detector": {"slowdown": {("tflite-int8", "pi4"): 1.3}, "fidelity_drop": {"ncnn-int8": 0.1}}
    }
    outcome = run_nightly([recipes], ["pi4", "pi5-emu"], store_url=url, deploy_fn=fake)
    line = verdict(outcome)
    assert outcome.exit_code == 1 and "\n" not in line
    assert line.startswith("nightly: 2 regressions: detector fidelity ncnn-int8: below its fidelity gate"), (
        line
    )
    assert "; detector latency tflite-int8 at 1 thread on pi4: " in line and " ms (+" in line, line
    fake.night += 1
    fake.tonight = {"detector": {"throttled": {"pi4": "0x50005"}}}
    assert verdict(run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake)) == (
        "nightly: no regressions, 1 unreliable"
    )
    fake.tonight = {"classifier": {"raise": AgentError("agent wrote no result", where="pi4", hint="look")}}
    line = verdict(run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake))
    assert line == "nightly: 1 deploy failed, no regressions: classifier.yaml: pi4: agent wrote no result", (
        line
    )
    # a reason that starts on its second line ('invalid recipe:' then the field) is kept on the one line, and a
    # long one is cut in its middle, so the command at its end stays
    from edgekit.nightly_outcome import NightlyOutcome

    said = "broken.yaml: invalid recipe:\n  field `formats`: unknown format 'tflit-fp32'"
    long = "not recorded: " + "x" * 600 + " (edgekit runs import /d/tiny.json --store postgresql://u@db/n)"
    line = verdict(NightlyOutcome(failures={"a/broken.yaml": said, "a/tiny.yaml": long}))
    assert "broken.yaml: broken.yaml: invalid recipe: field `formats`: unknown format 'tflit-fp32'" in line, (
        line
    )
    assert line.endswith("(edgekit runs import /d/tiny.json --store postgresql://u@db/n)"), line
    # a recipe file's name with a newline, an escape or a bidi control is one line of printable text: it forged a
    # line of its own ('nightly: no regressions, all ok') in a cron log's tail, or set the terminal's title
    forged = {
        "r/n\nnightly: no regressions, all ok.yaml": "failed",
        "r/a\x1b]0;PWN\x07b\u202e.yaml": "failed",
    }
    line = verdict(NightlyOutcome(failures=forged))
    assert "\n" not in line and "\x1b" not in line and "\x07" not in line and "\u202e" not in line, repr(line)
    assert "n\\x0anightly: no regressions, all ok.yaml: failed" in line and "a\\x1b]0;PWN\\x07b" in line, line


def test_a_full_disk_is_named_in_the_night_not_as_a_raw_oserror(recipes: Path, tmp_path: Path) -> None:
    """A deploy that ran out of disk failed the recipe with `OSError: [Errno 28] No space left on device:
    '/tmp/edgekit-pnnx-.../model.ncnn.param' -> '...'`: the night names it DiskFull, with what to do."""
    import errno

    def full(recipe: Path, targets: Sequence[str]) -> DeployResult:
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/edgekit-pnnx-x/model.ncnn.param")

    outcome = run_nightly([recipes], ["pi4"], store_url=f"sqlite:///{tmp_path / 's.sqlite'}", deploy_fn=full)
    said = list(outcome.failures.values())
    assert (
        outcome.exit_code == 1
        and said
        and all(w.startswith("DiskFull: no space left on the disk") for w in said)
    )
    assert not any("Errno" in w or "edgekit-pnnx" in w for w in said), said
    assert all("the disk holding /tmp has" in w for w in said), (
        said
    )  # the disk written to, not the data dir's


def test_a_regressed_night_prints_how_to_accept_its_level(recipes: Path, tmp_path: Path) -> None:
    """A latency regression nobody's change explains holds for the lookback's six weeks: the nightly's output
    names the command that accepts it when it is expected, for the store it was judged in."""
    from edgekit.cli.nightly import accept_lines

    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights()
    _nights(fake, recipes, url, 6)
    fake.tonight = {"detector": {"slowdown": {("tflite-int8", "pi4"): 1.3}}}
    outcome = run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake)
    run = outcome.run_ids[str((recipes / "detector.yaml").resolve())]
    assert accept_lines(outcome) == [
        f"if this level is expected: edgekit runs accept {run} --target pi4 --store {url}"
    ]
    fake.night += 1
    fake.tonight = {}
    assert accept_lines(run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake)) == []


def test_the_accept_command_names_a_store_given_by_edgekit_store(
    recipes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The systemd unit and CI give the store by EDGEKIT_STORE: the command printed then named no --store, while the
    report's named it, and pasted where EDGEKIT_STORE is not set it accepted run N of the default store."""
    from edgekit.cli.nightly import accept_lines

    url, fake = f"sqlite:///{tmp_path / 'team.sqlite'}", FakeNights()
    monkeypatch.setenv("EDGEKIT_STORE", url)
    _nights(fake, recipes, None, 6)
    fake.tonight = {"detector": {"slowdown": {("tflite-int8", "pi4"): 1.3}}}
    outcome = run_nightly([recipes], ["pi4"], store_url=None, deploy_fn=fake)
    run = outcome.run_ids[str((recipes / "detector.yaml").resolve())]
    assert accept_lines(outcome) == [
        f"if this level is expected: edgekit runs accept {run} --target pi4 --store {url}"
    ]


def test_the_host_left_out_when_every_device_failed_is_not_a_regression_of_its_own(
    recipes: Path, tmp_path: Path
) -> None:
    """Now that the nightly judges the host: a deploy whose every device failed before measuring leaves the host
    out on purpose (it is only their reference), and that was a second `failed` regression beside the board's."""
    fake = FakeNights(host=True)

    def board_down(recipe: Path, targets: Sequence[str]) -> DeployResult:
        result = fake(recipe, targets)
        for run in result.runs:
            run.status, run.agent = "failed", None
            run.error = (
                "connect: cannot reach 10.0.0.7:22" if run.target == "pi4" else "not measured: every target"
            )
        return result

    outcome = run_nightly(
        [recipes], ["pi4"], store_url=f"sqlite:///{tmp_path / 'n.sqlite'}", deploy_fn=board_down
    )
    assert outcome.exit_code == 1
    # its first night: a failure, not a regression (nothing earlier to regress from)
    assert {(f.kind, f.target) for f in outcome.report.failures} == {(FlagKind.FAILED, "pi4")}  # type: ignore[union-attr]
    assert not outcome.report.regressions  # type: ignore[union-attr]


def test_a_recipe_not_run_is_told_by_its_class_not_its_words(recipes: Path, tmp_path: Path) -> None:
    """ "not run" was told apart by prefix-matching the error's text (`PATH: not run: the night was`): any
    rewording, or a path written otherwise, made it a failed deploy. It is now the NotRun class: skipped and
    said, whatever its words; an error that only reads like one is a failure."""
    from edgekit.errors import EdgekitError
    from edgekit.lab.errors import NotRun

    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights()
    fake.tonight = {"classifier": {"raise": NotRun("no board got to it", where="elsewhere")}}
    said: list[str] = []
    outcome = run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake, log=said.append)
    assert not outcome.failures and "classifier.yaml: not run (the night was interrupted)" in said
    assert list(outcome.run_ids) == [str((recipes / "detector.yaml").resolve())]
    path = (recipes / "classifier.yaml").resolve()
    fake.tonight = {"classifier": {"raise": EdgekitError("not run: the night was over", where=str(path))}}
    outcome = run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake)
    assert list(outcome.failures) == [str(path)]


def test_a_target_named_twice_is_deployed_to_once(recipes: Path, tmp_path: Path) -> None:
    """`--targets pi4,pi4`: a target named twice is taken once, in order, and said (over a lab, two queues of
    one name were one queue, and a board named twice ran two benchmarks at once)."""
    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights()
    said: list[str] = []
    run_nightly(
        [recipes], ["pi5-emu", "pi4", "pi5-emu", "pi4"], store_url=url, deploy_fn=fake, log=said.append
    )
    assert {targets for _, targets in fake.calls} == {("pi5-emu", "pi4")}
    assert "pi5-emu: named 2 times in the targets: measured once" in said
    assert "pi4: named 2 times in the targets: measured once" in said


@pytest.mark.parametrize(
    ("colleague_on", "recorded_during"),
    [(("host",), "detector"), (("pi4",), "classifier")],
    ids=["host-only-deploy", "same-board"],
)
def test_the_night_judges_its_own_runs_not_one_recorded_after_them(
    recipes: Path, tmp_path: Path, colleague_on: tuple[str, ...], recorded_during: str
) -> None:
    """The report judged each recipe's newest run: a colleague's host-only deploy of the same recipe, recorded
    while the night ran and started after it, was judged instead of the night's, which regressed on pi4; the
    night passed (exit 0, 'no regressions'). And a colleague's quick deploy to the same board, started after the
    night's run of it, was taken as that board's newest run: not the night's, so not judged, and the night's own
    +50 % regression behind it was skipped as if judged."""
    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights(host=colleague_on == ("host",))
    for _ in range(6):
        assert run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake).exit_code == 0
        fake.night += 1
    colleague = synthetic_result(
        T0 + timedelta(days=fake.night, hours=1),
        rng=np.random.default_rng(5),
        recipe="detector",
        targets=colleague_on,
        formats=FORMATS if colleague_on == ("host",) else (Format.TFLITE_FP32,),
        threads=(1,),
        repeat=5,
    )

    def with_a_colleague(recipe: Path, targets: Sequence[str]) -> DeployResult:
        if recipe.stem == recorded_during:
            with open_store(url) as other:
                other.record(colleague)
        return fake(recipe, targets)

    fake.tonight = {"detector": {"slowdown": {("ncnn-int8", "pi4"): 1.5}}}
    outcome = run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=with_a_colleague)
    assert outcome.exit_code == 1
    assert [(f.recipe, f.artifact, f.target) for f in outcome.report.regressions] == [  # type: ignore[union-attr]
        ("detector", "ncnn-int8", "pi4")
    ]


def test_ctrl_c_while_a_result_is_recorded_keeps_it_in_a_file(
    recipes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C or SIGTERM while the store's write lock was waited for (edgekit says it waits up to 60 s) lost
    the recipe's measurements: not in the store, not in unrecorded/, no report. Now they are kept in a file
    with the command that imports them, the night stops there (exit 130) and the summary is written."""
    from edgekit.store.store import Store

    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights()

    def interrupted(self: Store, result: DeployResult) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(Store, "record", interrupted)
    md = tmp_path / "night.md"
    outcome = run_nightly([recipes], ["pi4"], store_url=url, deploy_fn=fake, markdown=md)
    assert outcome.exit_code == 130 and [c[0] for c in fake.calls] == ["classifier"]
    assert outcome.not_reached == ["detector.yaml"]
    (kept,) = (tmp_path / "home" / "unrecorded").glob("*.json")
    assert DeployResult.model_validate_json(kept.read_text()).recipe == "classifier"
    (why,) = outcome.failures.values()
    assert "interrupted (Ctrl-C or SIGTERM) while recording" in why and f"runs import {kept}" in why
    assert "not recorded" in md.read_text()


def test_two_recipe_files_of_one_file_name_fail_as_two(tmp_path: Path) -> None:
    """Failed deploys were keyed by file name: `--recipes team-a/ team-b/` with a detector.yaml in each, both
    failing, counted and listed as one."""
    from edgekit.nightly_outcome import verdict

    for team in ("team-a", "team-b"):
        (tmp_path / team).mkdir()
        (tmp_path / team / "detector.yaml").write_text(f"name: {team}-detector\n")

    def failing(recipe: Path, targets: Sequence[str]) -> DeployResult:
        raise AgentError("the agent crashed", where=str(recipe))

    url = f"sqlite:///{tmp_path / 'nightly.sqlite'}"
    md = tmp_path / "night.md"
    outcome = run_nightly(
        [tmp_path / "team-a", tmp_path / "team-b"], ["pi4"], store_url=url, deploy_fn=failing, markdown=md
    )
    assert verdict(outcome).startswith("nightly: 2 deploys failed")
    assert outcome.report is not None and len(outcome.report.failed_deploys) == 2
    assert str(tmp_path / "team-b" / "detector.yaml") in md.read_text()


def test_a_report_the_store_could_not_give_is_not_printed_as_a_failed_deploy(
    recipes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store going away after the night's deploys (PostgreSQL stopped) was printed as 'deploy failed report:
    the report could not be built from the store: ...', as if a recipe named `report` had failed to deploy."""
    from typer.testing import CliRunner

    import edgekit.nightly
    from edgekit.cli import app

    url, fake = f"sqlite:///{tmp_path / 'nightly.sqlite'}", FakeNights()

    def unreachable(*args: object, **kwargs: object) -> None:
        raise ConnectionError("server closed the connection unexpectedly")

    monkeypatch.setattr("edgekit.nightly.build", unreachable)
    fake.tonight = {"detector": {"raise": AgentError("connect: timed out")}}
    real = edgekit.nightly.run_nightly
    monkeypatch.setattr(  # the CLI's night, deployed by FakeNights
        "edgekit.nightly.run_nightly",
        lambda found, names, **kw: real(found, ["pi4"], **kw, deploy_fn=fake),
    )
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True)
    board = tmp_path / "pi4.yaml"
    board.write_text(f"name: pi4\ntransport: ssh\nhost: 127.0.0.1\nuser: pi\nkey: {tmp_path / 'key'}\n")
    out = CliRunner().invoke(
        app,
        ["nightly", "--recipes", str(recipes), "--targets", str(board), "--store", url],
        terminal_width=400,
    )
    said = "".join(out.output.split())  # the console wraps long lines where it likes
    assert out.exit_code == 1, out.output
    assert f"deployfailed{recipes / 'detector.yaml'}:connect:timedout" in said, out.output
    assert "deployfailedreport" not in said, out.output
    assert (
        "reportnotbuilt:thereportcouldnotbebuiltfromthestore:ConnectionError:serverclosedtheconnectionunexpectedly"
        in said
    ), out.output
