"""An output the ONNX model gives the same on every evaluation input (softmax of vanishing logits: an untrained
Keras MobileNetV3Small read [0.1]*10 on any image) proves nothing when the artifact agrees with it: every artifact,
int8 ones included, read cosine 1.000000, agreement 100 % and `pass (8)`. Its cosine and top-1 agreement are not
judged, said as for an output 0 in the model; an artifact whose cosine misses a gate there still misses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgekit.fidelity.check import SAME_EVERY_INPUT, check_gates, compare
from edgekit.recipe import Gates, Recipe, load_recipe


def _recipe(tmp_path: Path, task: str = "classify") -> Recipe:
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "s",
                "task": task,
                "formats": ["onnx-fp32"],
                "model": {"kind": "torch", "builder": "edgekit.zoo.tiny:build"},
                "input": {"shape": [1, 3, 8, 8]},
            }
        )
    )
    return load_recipe(path)


def test_a_constant_output_is_not_judged(tmp_path: Path) -> None:
    same = np.full((8, 10), 0.1, np.float32)
    int8 = np.full((8, 10), 0.09765625, np.float32)  # an int8 artifact's reading of it: the same too
    numbers = compare([("p", same)], [("p", int8)], _recipe(tmp_path), None)
    assert numbers["not_judged"] == ["p"] and numbers["same_every_input"] == ["p"], numbers
    assert "cosine" not in numbers and "top1_agreement" not in numbers, numbers
    assert numbers["max_abs_error"] > 0.002, numbers  # the distance is judged
    gates = check_gates(numbers, Gates(min_cosine=0.95, min_top1_agreement=0.9, max_abs_error=0.01))
    assert gates["verdict"] == "not checked" and gates["passed"], gates
    assert [c["gate"] for c in gates["checks"]] == ["max_abs_error"], gates
    assert gates["skipped"] == [
        f"min_cosine (output p is {SAME_EVERY_INPUT})",
        f"min_top1_agreement (no top1_agreement: not measurable; output p is {SAME_EVERY_INPUT})",
    ], gates


def test_an_artifact_that_differs_from_a_constant_output_misses(tmp_path: Path) -> None:
    same = np.full((4, 10), 0.1, np.float32)
    wrong = np.random.default_rng(0).normal(size=(4, 10)).astype(np.float32)
    numbers = compare([("p", same)], [("p", wrong)], _recipe(tmp_path), None)
    gates = check_gates(numbers, Gates(min_cosine=0.95))
    assert gates["verdict"] == "missed" and not gates["passed"], gates
    assert gates["checks"][0]["value"] < 0.95 and not gates["skipped"], gates


def test_outputs_that_vary_and_a_single_input_are_judged_as_ever(tmp_path: Path) -> None:
    live = np.random.default_rng(1).normal(size=(4, 10)).astype(np.float32)
    numbers = compare([("p", live)], [("p", live)], _recipe(tmp_path), None)
    assert "not_judged" not in numbers and numbers["cosine"] == 1.0 and numbers["top1_agreement"] == 1.0
    one = np.full((1, 10), 0.1, np.float32)  # one input: nothing to vary over
    assert compare([("p", one)], [("p", one)], _recipe(tmp_path), None)["cosine"] == pytest.approx(1.0)
    # a constant output beside a live one: the live one is judged, the constant one named
    ref = [("a", live), ("p", np.full((4, 3), 2.0, np.float32))]
    both = compare(ref, ref, _recipe(tmp_path, "generic"), None)
    gates = check_gates(both, Gates(min_cosine=0.99))
    assert gates["verdict"] == "not checked" and gates["checks"][0]["value"] == 1.0, gates
    assert gates["skipped"] == [f"min_cosine on output p ({SAME_EVERY_INPUT})"], gates


def test_convert_of_a_model_that_ignores_its_input_judges_nothing(tmp_path: Path) -> None:
    """The r11 repro in small: the ONNX model's logits vanish (weights ~1e-12), its softmax is 0.1 everywhere."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.full((10, 48), 1e-12, np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["f"]),
            helper.make_node("Gemm", ["f", "w"], ["l"], transB=1),
            helper.make_node("Softmax", ["l"], ["predictions"], axis=1),
        ],
        "same",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("predictions", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, tmp_path / "same.onnx")
    recipe = tmp_path / "same.yaml"
    recipe.write_text(
        "name: same\ntask: classify\nmodel: {kind: onnx, path: same.onnx}\ninput: {name: x, shape: [1, 3, 4, 4]}\n"
        "calibration: {data: {kind: random, samples: 4}}\n"
        "evaluation: {data: {kind: random, samples: 8}, gates: {int8: {min_cosine: 0.95}}}\n"
        "formats: [onnx-fp32, onnx-int8]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe), "--json", str(tmp_path / "out.json")],
        cwd=tmp_path,
        env={**os.environ, "EDGEKIT_HOME": str(tmp_path / "home"), "COLUMNS": "220"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    said = " ".join(out.split())
    assert f"(output predictions is {SAME_EVERY_INPUT})" in said, said
    record = json.loads((tmp_path / "out.json").read_text())
    fidelity = {a["format"]: a["fidelity"] for a in record["artifacts"]}
    assert all(f.get("same_every_input") == ["predictions"] for f in fidelity.values()), fidelity
    assert all("top1_agreement" not in f and "cosine" not in f for f in fidelity.values()), fidelity
    assert fidelity["onnx-int8"]["gates"]["verdict"] == "not checked", fidelity


def test_a_detector_that_finds_the_same_boxes_on_every_input_is_not_judged(tmp_path: Path) -> None:
    """A detector whose boxes and scores are the same on every input (an untrained head, a bias that drowns the
    image) found the same boxes in the artifact too: box match 1.0 and a pass, proving nothing, as a constant
    classifier's top-1 agreement did. Its box match and mAP drop are not judged now; a detector whose boxes vary is
    judged as ever."""
    boxes = np.tile(np.array([[[10, 10, 50, 50], [60, 60, 90, 90]]], np.float32), (6, 1, 1))
    scores = np.tile(np.array([[[0.9, 0.05], [0.1, 0.8]]], np.float32), (6, 1, 1))
    ref = [("boxes", boxes), ("scores", scores)]
    labels = [
        np.array([[0, 10, 10, 50, 50]], np.float32)
    ] * 6  # class, xyxy: mAP is computed, its drop is not
    numbers = compare(ref, ref, _recipe(tmp_path, "detect"), labels)  # type: ignore[arg-type]
    assert numbers["same_every_input"] == ["boxes", "scores"], numbers
    assert "box_match" not in numbers and "map50_drop" not in numbers, numbers
    assert numbers["boxes"] == numbers["boxes_reference"] == 12, numbers
    gates = check_gates(numbers, Gates(min_box_match=0.9, max_map_drop=0.05))
    assert gates["verdict"] == "not checked" and not gates["checks"], gates
    assert all(SAME_EVERY_INPUT in skipped for skipped in gates["skipped"]), gates
    moving = boxes + np.arange(6, dtype=np.float32)[:, None, None]  # the boxes follow the image: judged
    live = compare(
        [("boxes", moving), ("scores", scores)],
        [("boxes", moving), ("scores", scores)],
        _recipe(tmp_path, "detect"),
        labels,
    )  # type: ignore[arg-type]
    assert live["box_match"] == 1.0 and "map50_drop" in live, live


def test_a_constant_detectors_boxes_the_artifact_moves_still_miss(tmp_path: Path) -> None:
    """Review r18 #1: the rule above dropped a constant detector's box match and mAP drops whatever their values,
    so a recipe gating on `min_box_match` or `max_map_drop` alone passed an artifact whose boxes were all 150 px
    off (box match 0.0) as not checked. Agreeing with constant boxes proves nothing; losing them is a miss."""
    boxes = np.tile(np.array([[[10, 10, 50, 50], [100, 100, 160, 160]]], np.float32), (6, 1, 1))
    scores = np.tile(np.array([[[0.9, 0.05], [0.05, 0.9]]], np.float32), (6, 1, 1))
    labels = [np.array([[0, 10, 10, 50, 50], [1, 100, 100, 160, 160]], np.float32)] * 6
    ref, moved = [("boxes", boxes), ("scores", scores)], [("boxes", boxes + 150.0), ("scores", scores)]
    numbers = compare(ref, moved, _recipe(tmp_path, "detect"), labels)  # type: ignore[arg-type]
    assert "box_match" not in numbers and "map50_drop" not in numbers, numbers
    for gates, gate in (
        (Gates(min_box_match=0.9), "min_box_match"),
        (Gates(max_map_drop=0.05), "max_map_drop"),
    ):
        judged = check_gates(numbers, gates)
        assert judged["verdict"] == "missed" and not judged["passed"], judged
        assert [(c["gate"], c["passed"]) for c in judged["checks"]] == [(gate, False)], judged
    assert check_gates(numbers, Gates(min_box_match=0.9))["checks"][0]["value"] == 0.0
    same = compare(ref, ref, _recipe(tmp_path, "detect"), labels)  # type: ignore[arg-type]
    agreed = check_gates(same, Gates(min_box_match=0.9, max_map_drop=0.05))  # agreeing is still not a pass
    assert agreed["verdict"] == "not checked" and not agreed["checks"], agreed
