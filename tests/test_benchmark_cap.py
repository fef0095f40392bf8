"""A target's benchmark_cap limits that target only; command-line flags still win; a mixed deploy runs the host
with the recipe's full plan while the emulated device runs its capped one."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.deploy import DeployOptions, deploy
from edgekit.deploy.plan import capped_settings
from edgekit.deploy.request import Settings
from edgekit.formats import Format
from edgekit.recipe import load_recipe
from edgekit.target import Target, load_target

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "tiny.yaml"


def _base(recipe_path: Path, **flags: object) -> tuple[object, Settings]:
    recipe = load_recipe(recipe_path)
    return recipe, Settings.from_benchmark(recipe.benchmark, **flags)


def test_emulated_target_caps_what_the_user_did_not_choose() -> None:
    recipe, base = _base(REPO / "recipes" / "yolov5-lite.yaml", repeat=7)
    said: list[str] = []
    own = capped_settings(
        recipe, DeployOptions(repeat=7), base, load_target(REPO / "targets" / "pi4-emu.yaml"), said.append
    )
    assert own.repeat == 7  # the user's flag wins
    assert own.threads == (1,) and own.warmup == 1 and own.samples == 4
    assert said and "capped" in said[0] and "pi4-emu only" in said[0]


def test_real_board_and_host_keep_the_recipe_plan() -> None:
    recipe, base = _base(REPO / "recipes" / "yolov5-lite.yaml")
    said: list[str] = []
    own = capped_settings(
        recipe, DeployOptions(), base, load_target(REPO / "targets" / "pi4.yaml"), said.append
    )
    assert own == base and not said


def test_a_real_boards_own_cap_is_not_said_to_be_an_emulators() -> None:
    """A cap in a real board's target file was said as '(emulated: tens of times slower than the board)'."""
    recipe, base = _base(REPO / "recipes" / "yolov5-lite.yaml")
    board = load_target(REPO / "targets" / "pi4.yaml", overrides={"benchmark_cap.repeat": "3"})
    said: list[str] = []
    own = capped_settings(recipe, DeployOptions(), base, board, said.append)
    assert own.repeat == 3 and said, said
    assert (
        "benchmark capped for pi4 only (its benchmark_cap): repeat 3" in said[0] and "emulated" not in said[0]
    )


@pytest.mark.integration
def test_mixed_deploy_caps_only_the_emulated_target(pi4_emu: Target, tmp_path: Path) -> None:
    """pi4-emu runs 1 thread, repeat 3, 4 inputs (its cap); the host in the same deploy runs the recipe's
    threads [1, 2], repeat 10 on all 8 evaluation inputs."""
    from edgekit.convert.pipeline import convert_recipe

    recipe = load_recipe(TINY)
    arts = convert_recipe(recipe, (Format.NCNN_FP32,), keep_going=True)
    result = deploy(recipe, [pi4_emu], DeployOptions(json_path=tmp_path / "d.json"), lambda _m: None, arts)
    runs = {r.target: r for r in result.runs}
    emu, host = runs["pi4-emu"], runs["host"]
    assert emu.agent is not None and host.agent is not None, (emu.error, host.error)
    assert emu.benchmark["threads"] == [1] and emu.benchmark["repeat"] == 3 and emu.benchmark["samples"] == 4
    assert host.benchmark["threads"] == [1, 2] and host.benchmark["repeat"] == 10
    assert sorted(m.threads for m in host.agent.measurements) == [1, 2]
    assert [m.threads for m in emu.agent.measurements] == [1]
    assert all(len(m.samples_ms) == 10 for m in host.agent.measurements)
    assert all(len(m.samples_ms) == 3 for m in emu.agent.measurements)
    host_vs_onnx = next(c for c in host.comparisons if c.reference == "onnx")
    emu_vs_onnx = next(c for c in emu.comparisons if c.reference == "onnx")
    assert host_vs_onnx.samples == 8 and emu_vs_onnx.samples == 4
    assert result.ok, [r.error for r in result.runs]
