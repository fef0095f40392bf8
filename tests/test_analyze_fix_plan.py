"""`analyze --fix --format ncnn-int8` built each candidate through the whole ncnn-int8 conversion, speed plan
included: 5 to 9 guest runs a candidate under qemu (40 s each for the digits CNN here, minutes for yolov5-lite),
silently, and a plan that failed to count left that candidate all-int8 but its float set, unmarked (review r16 #5).
Now the candidates hold the plain artifact's plan (`held_plan`): its float layers stay float beside the candidate's
own, nothing is counted, and the sidecar says the plan was held. A real conversion of the digits CNN, the plan on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_analyze import _recipe

from edgekit.convert.calibration import calibration_inputs
from edgekit.convert.ncnn.converter import convert_model
from edgekit.convert.onnx import prepare_onnx
from edgekit.formats import Format
from edgekit.recipe import load_recipe


def test_a_candidate_holding_the_plain_artifacts_plan_counts_nothing_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEKIT_NCNN_SPEED_PLAN", "1")  # the suite has it off: on, only held_plan stops it
    recipe = load_recipe(_recipe(tmp_path))
    onnx = prepare_onnx(recipe)
    said: list[str] = []
    files = convert_model(
        onnx.path,
        tuple(recipe.input.shape),
        Format.NCNN_INT8,
        tmp_path / "float-1",
        calibration=calibration_inputs(recipe),
        recipe=recipe,
        float_layers=frozenset({"convrelu_3"}),
        progress=said.append,
        on_plan_not_counted=said.append,
        held_plan=["convrelu_0", "linear_13"],
    )
    assert not [m for m in said if "speed plan" in m or "guest" in m], said
    sidecar = json.loads(next(f for f in files if f.name.endswith(".io.json")).read_text())
    rows = {row[0]: row for row in sidecar["int8"]["layers"]}
    assert len(rows) == 7
    assert {name for name, row in rows.items() if not row[2]} == {"convrelu_0", "convrelu_3", "linear_13"}
    assert sidecar["int8"]["speed_plan_held"] == ["convrelu_0", "linear_13"]
    assert "speed_plan" not in sidecar["int8"]
    notes = " ".join(sidecar["notes"])
    assert (
        "speed plan not counted for this float set: the 2 layers another artifact's plan keeps float" in notes
    )
    assert "no speed plan" not in notes
    held_reasons = [r for name, row in rows.items() for r in row if isinstance(r, str) and "held from" in r]
    assert len(held_reasons) == 2, rows
