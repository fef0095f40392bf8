"""A nightly spread over a lab, against a real labgrid coordinator and exporter on 127.0.0.1 (edgekit/lab/rig.py's
bare rig: NetworkServices with no board behind them). The places are acquired, checked and given back for real;
each recipe's deploy on a board is a stand-in (the boards' measuring is tests/test_lab.py's), the conversions are
skipped. A board taken from the night, a board failing at connect, a board type with no place tonight, and input
the night must refuse before any work."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from lab_helpers import holders, kick_held, serving, teammate
from typer.testing import CliRunner

from edgekit.lab import rig as lab_rig
from edgekit.lab.client import lab_python
from edgekit.results import AgentResult, DeployResult, TargetRun

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_rig.Rig]:
    lab_python()  # no .venv-lab: LabSetupError naming `make setup`
    root = tmp_path_factory.mktemp("lab")
    places = {"pi4-a": {"board": "pi4"}, "pi4-b": {"board": "pi4"}, "pi5-a": {"board": "pi5"}}
    started = lab_rig.start_bare(root / "rig", places)
    targets = root / "targets"
    targets.mkdir()
    (targets / "lab.yaml").write_text(f"lab: {{coordinator: '{started.coordinator}', wait_s: 20}}\n")
    (targets / "lab-pi5.yaml").write_text(
        f"lab: {{coordinator: '{started.coordinator}', tags: {{board: pi5}}, wait_s: 2}}\n"
    )
    (targets / "lab-down.yaml").write_text("lab: {coordinator: '127.0.0.1:1', tags: {board: pi4}}\n")
    with serving(started, targets) as served:
        yield served


@pytest.fixture
def free_lab(rig: lab_rig.Rig) -> Iterator[lab_rig.Rig]:
    """The lab free before and after the test (a failing test leaves nothing held for the next)."""
    yield rig
    kick_held(rig)


def recipes(folder: Path, count: int) -> list[Path]:
    folder.mkdir(exist_ok=True)
    text = TINY.read_text()
    for i in range(count):
        (folder / f"r{i}.yaml").write_text(text.replace("name: tiny\n", f"name: r{i}\n"))
    return [folder / f"r{i}.yaml" for i in range(count)]


def no_conversion(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The conversions skipped; the names of the recipes the night would have converted."""
    from edgekit.lab import spread as spread_module

    converted: list[str] = []

    def convert(recipe: Any, _log: object) -> list[object]:
        converted.append(recipe.name)
        return []

    monkeypatch.setattr(spread_module, "_convert", convert)
    return converted


def result(recipe: Any, board: str, run: TargetRun | None = None) -> DeployResult:
    """A recipe's run on one board as a deploy returns it: ok, with one measurement, unless `run` says."""
    if run is None:
        agent = AgentResult.model_validate(
            {
                "started_at": "2026-01-01T00:00:00",
                "facts_before": {"machine": "aarch64", "cores": 4, "python": "3.11"},
                "measurements": [
                    {
                        "artifact": "ncnn-fp32",
                        "format": "ncnn-fp32",
                        "runtime": "ncnn",
                        "threads": 1,
                        "status": "ok",
                        "samples_ms": [1.0, 1.1],
                    }
                ],
            }
        )
        run = TargetRun(target=board, kind="ssh", emulated=True, status="ok", agent=agent)
    return DeployResult(
        recipe=recipe.name,
        recipe_path=str(recipe.path),
        recipe_sha256="0",
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        runs=[run],
        ok=run.status == "ok",
    )


def runs_on(outcome: Any, path: Path) -> list[tuple[str, str]]:
    found = outcome.results[path]
    assert isinstance(found, DeployResult), found
    return sorted((r.target, r.status) for r in found.runs)


def test_a_board_taken_mid_night_stops_taking_recipes_and_its_run_is_lost(
    free_lab: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A teammate kicked the nightly off pi4-a and took it: the night's boards were plain SSH targets, so every
    later recipe ran on the teammate's board and was stored as pi4-a's history, ok, and the release at the end
    said 'queue empty, released'. Now the board's transport checks its place after each recipe (the deploy fails
    that run with place_lost, as a deploy of its own does), the board takes no more recipes, its recipe goes to a
    sibling, and the place is left to the teammate."""
    from edgekit.lab.spread import spread
    from edgekit.transport import open_transport

    paths = recipes(tmp_path / "recipes", 4)
    no_conversion(monkeypatch)
    calls: list[tuple[str, str]] = []

    def deploy_one(recipe: Any, target: Any, _arts: object) -> DeployResult:
        calls.append((target.name, recipe.name))
        if target.name == "pi4-a":
            teammate(free_lab, "pi4-a", "release --kick", "acquire")  # while its first recipe runs
        time.sleep(0.3)
        transport = open_transport(target)  # what the deploy's session opens and closes on the board
        transport.close()
        lost = transport.lost_hold()  # what the session then records (edgekit/deploy/finish.py _check_held)
        run = TargetRun(target=target.name, kind="ssh", emulated=True, status="failed" if lost else "ok")
        run.place_lost = lost
        return result(recipe, target.name, run)

    said: list[str] = []
    done = spread(paths, ["lab:board=pi4"], said.append, deploy_one=deploy_one, night=0)
    assert [c for c in calls if c[0] == "pi4-a"] == [calls[[c[0] for c in calls].index("pi4-a")]], calls
    first = next(p for p in paths if ("pi4-a", p.stem) in calls)
    kept = done.results[first]
    assert isinstance(kept, DeployResult)
    lost_run = next(r for r in kept.runs if r.target == "pi4-a")
    assert lost_run.status == "failed" and lost_run.place_lost == "now held by other/bob", lost_run
    assert all(("pi4-b", "ok") in runs_on(done, p) for p in paths), {p.name: runs_on(done, p) for p in paths}
    assert done.stopped["pi4-a"] == "taken from this night (now held by other/bob)"
    assert not done.unrun
    assert any(m.startswith("lab: pi4-a: taken from this night") for m in said), said
    assert not any(m.startswith("pi4-a: ") and "released" in m for m in said), said
    assert holders(free_lab) == {"pi4-a": "other/bob", "pi4-b": None, "pi5-a": None}


def test_a_board_failing_at_connect_stops_and_its_siblings_run_the_queue(
    free_lab: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A board failing at connect (a re-flashed board's new host key) finished each 'deploy' in a tenth of a
    second and took 7 of 8 recipes while its healthy sibling measured one: those recipes were not measured on
    the type tonight. It now stops after its first failure, is given back, and its sibling runs the queue; a
    type whose every board stops says which recipes ran on none of its boards, and why."""
    from edgekit.lab.spread import spread

    paths = recipes(tmp_path / "recipes", 6)
    no_conversion(monkeypatch)
    calls: list[tuple[str, str]] = []
    lock = threading.Lock()

    def deploy_one(recipe: Any, target: Any, _arts: object) -> DeployResult:
        with lock:
            calls.append((target.name, recipe.name))
        if target.name == "pi4-b":
            time.sleep(0.05)
            error = "connect: HostKeyError: the host key of pi4-b changed"
            return result(
                recipe,
                "pi4-b",
                TargetRun(target="pi4-b", kind="ssh", emulated=True, status="failed", error=error),
            )
        time.sleep(0.3)
        return result(recipe, target.name)

    said: list[str] = []
    done = spread(paths, ["lab:board=pi4"], said.append, deploy_one=deploy_one, night=0)
    on_b = [r for b, r in calls if b == "pi4-b"]
    assert len(on_b) == 1, calls
    assert all(("pi4-a", "ok") in runs_on(done, p) for p in paths), {p.name: runs_on(done, p) for p in paths}
    failed = next(p for p in paths if p.stem == on_b[0])
    assert runs_on(done, failed) == [("pi4-a", "ok"), ("pi4-b", "failed")]  # the broken board's run is kept
    assert done.stopped == {"pi4-b": "failed at connect: HostKeyError: the host key of pi4-b changed"}
    assert "pi4-b: stopped, released" in " ".join(said) and not done.unrun, said

    calls.clear()
    said.clear()
    three = paths[:3]
    done = spread(three, ["lab:name=pi4-b"], said.append, deploy_one=deploy_one, night=0)
    assert [b for b, _ in calls] == ["pi4-b"], calls
    assert done.unrun == {"lab:name=pi4-b": [p.name for p in three[1:]]}
    for path in three[1:]:
        error = done.results[path]
        assert isinstance(
            error, Exception
        ) and "no board ran this recipe: every board of lab:name=pi4-b stopped" in str(error), error
        assert "pi4-b: failed at connect: HostKeyError" in str(error)
    assert any("not run on it tonight: r1.yaml, r2.yaml" in m for m in said), said
    assert all(h is None for h in holders(free_lab).values())


def test_a_board_type_with_no_place_tonight_is_not_reached_not_never_measured(
    free_lab: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pi5-a measured last night; tonight bob holds it for the whole wait. The night said 'lab:board=pi5 has
    never produced a measurement' (it looked up the lab target's own name, under which no run is stored) and
    failed for that. It now says the type was not reached and why (who held its place), and fails for that."""
    from edgekit.lab import night as night_module
    from edgekit.nightly import run_nightly
    from edgekit.nightly_outcome import verdict

    recipes(tmp_path / "recipes", 1)
    no_conversion(monkeypatch)
    monkeypatch.setattr(night_module, "_deploy_one", lambda recipe, target, _a: result(recipe, target.name))
    store = f"sqlite:///{tmp_path / 's.sqlite'}"
    first = run_nightly([tmp_path / "recipes"], ["lab:name=pi4-a", "lab-pi5"], store_url=store)
    assert first.exit_code == 0, (first.failures, first.never_measured)

    teammate(free_lab, "pi5-a", "acquire")
    said: list[str] = []
    night = run_nightly(
        [tmp_path / "recipes"], ["lab:name=pi4-a", "lab-pi5"], store_url=store, log=said.append
    )
    assert night.never_measured == {} and night.failures == {}, (night.never_measured, night.failures)
    why = night.unreached["lab-pi5"]
    assert why.startswith("no place tonight: ") and "pi5-a held by other/bob" in why, why
    assert night.exit_code == 1
    line = verdict(night)
    assert "1 lab target not reached" in line and "lab-pi5 not reached: no place tonight" in line, line
    assert "never measured" not in line and "never produced" not in " ".join(said), line

    alone = run_nightly([tmp_path / "recipes"], ["lab-pi5"], store_url=store)  # no other type ran it either
    (why,) = alone.failures.values()
    assert "no board ran this recipe: lab-pi5 got no place tonight" in why and "other/bob" in why, why
    assert alone.never_measured == {} and "lab-pi5" in alone.unreached and alone.exit_code == 1


def test_a_lab_nightly_refuses_bad_input_before_converting_anything(
    free_lab: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt tag, or no .venv-lab, converted every recipe (tens of minutes cold), then failed each with 'no
    board ran this recipe', exit 1: deploy refuses the same input at once, exit 2. The night now does too; and
    with no target reachable (the coordinator down) nothing is converted for no board."""
    from edgekit.cli import app
    from edgekit.lab.errors import LabSetupError, NoMatchingPlace
    from edgekit.nightly import run_nightly

    recipes(tmp_path / "recipes", 2)
    converted = no_conversion(monkeypatch)
    store = f"sqlite:///{tmp_path / 's.sqlite'}"
    with pytest.raises(
        NoMatchingPlace, match=r"no place has board=pi44 \(did you mean board=pi4\?\)"
    ) as typo:
        run_nightly([tmp_path / "recipes"], ["lab:board=pi4", "lab:board=pi44"], store_url=store)
    assert typo.value.exit_code == 2 and converted == []
    shown = CliRunner().invoke(
        app,
        ["nightly", "--recipes", str(tmp_path / "recipes"), "--targets", "lab:board=pi44", "--store", store],
        terminal_width=200,
    )
    refused = shown.exception  # edgekit's main() prints it and exits with its code
    assert isinstance(refused, NoMatchingPlace) and refused.exit_code == 2 and converted == [], shown.output
    monkeypatch.setenv("EDGEKIT_LAB_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(LabSetupError) as missing:
        run_nightly([tmp_path / "recipes"], ["lab:board=pi4"], store_url=store)
    assert missing.value.exit_code == 2 and converted == []
    monkeypatch.delenv("EDGEKIT_LAB_PYTHON")

    said: list[str] = []
    down = run_nightly([tmp_path / "recipes"], ["lab-down"], store_url=store, log=said.append)
    assert (
        converted == []
        and "lab: no target can be reached tonight: nothing converted, no place acquired" in said
    )
    assert "cannot reach the labgrid coordinator" in down.unreached["lab-down"] and down.exit_code == 1
    assert all(
        "no board ran this recipe: lab-down got no place tonight" in why for why in down.failures.values()
    )
