"""Emulated targets cap the recipe's timing plan; command-line flags still win."""

from __future__ import annotations

from pathlib import Path

from edgekit.deploy.orchestrate import DeployOptions, apply_caps
from edgekit.recipe import load_recipe
from edgekit.target import load_target

REPO = Path(__file__).resolve().parent.parent


def test_emulated_target_caps_what_the_user_did_not_choose() -> None:
    recipe = load_recipe(REPO / "recipes" / "yolov5-lite.yaml")
    said: list[str] = []
    opts = apply_caps(recipe, DeployOptions(repeat=7), [load_target(REPO / "targets" / "pi4-emu.yaml")], said.append)
    assert opts.repeat == 7  # the user's flag wins
    assert opts.threads == (1,) and opts.warmup == 1 and opts.samples == 4
    assert said and "capped" in said[0] and "pi4-emu" in said[0]


def test_real_board_keeps_the_recipe_plan() -> None:
    recipe = load_recipe(REPO / "recipes" / "yolov5-lite.yaml")
    opts = apply_caps(recipe, DeployOptions(), [load_target(REPO / "targets" / "pi4.yaml")], print)
    assert opts == DeployOptions()
