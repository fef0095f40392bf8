"""Accuracy reported as accuracy: labels checked when the recipe loads (length, dtype, one-hot, class range),
`samples` defaulting to all the data given, worst-input gates, gates that say how many inputs they saw, and
percentages that never round up to 100 %."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edgekit.convert.calibration import evaluation_inputs
from edgekit.errors import RecipeError
from edgekit.recipe import Gates, load_recipe
from edgekit.report.figures import agreement, judged_on, megabytes, percent, task_metric

ROOT = Path(__file__).resolve().parents[1]


def recipe_with_npy(tmp_path: Path, labels: Any, n: int = 10, task: str = "classify", **data: Any) -> Path:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(n, 3, 8, 8)).astype(np.float32))
    if labels is not None:
        np.save(tmp_path / "y.npy", np.asarray(labels))
    source = {"kind": "npy", "path": "x.npy", **({"labels": "y.npy"} if labels is not None else {}), **data}
    recipe = {
        "name": "t",
        "task": task,
        "model": {"kind": "torch", "builder": "edgekit.zoo.tiny:build"},
        "input": {"name": "input", "shape": [1, 3, 8, 8]},
        "formats": ["tflite-fp32"],
        "evaluation": {"data": source},
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_samples_default_to_all_the_data(tmp_path: Path) -> None:
    x, labels = evaluation_inputs(load_recipe(recipe_with_npy(tmp_path, np.arange(250) % 10, n=250)))
    assert len(x) == 250 and labels is not None and len(labels) == 250


def test_samples_beyond_the_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"evaluation\.data\.samples.*20 asked for.*holds 10"):
        load_recipe(recipe_with_npy(tmp_path, None, samples=20))


def test_one_hot_labels_are_converted(tmp_path: Path) -> None:
    ids = np.arange(10) % 4
    _, labels = evaluation_inputs(load_recipe(recipe_with_npy(tmp_path, np.eye(4, dtype=np.float32)[ids])))
    assert labels is not None and labels.tolist() == ids.tolist()


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.arange(7), r"7 labels for 10 inputs"),
        (np.full((10, 4), 0.25, np.float32), r"not one-hot"),
        (np.linspace(0, 3, 10), r"not whole numbers"),
        (np.array(["cat"] * 10), r"dtype <U3"),
        (np.arange(10) - 1, r"negative class id -1"),
        (np.zeros((10, 2, 2), np.int64), r"shape \(10, 2, 2\)"),
    ],
)
def test_bad_labels_are_a_recipe_error_naming_the_field(
    tmp_path: Path, labels: np.ndarray, message: str
) -> None:
    with pytest.raises(RecipeError, match=r"evaluation\.data\.labels.*" + message):
        load_recipe(recipe_with_npy(tmp_path, labels))


def test_npy_labels_need_a_classifier(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"labels.*task: classify"):
        load_recipe(recipe_with_npy(tmp_path, np.arange(10), task="generic"))


def test_class_ids_beyond_the_model_are_refused() -> None:
    from edgekit.recipe import check_class_range

    check_class_range(np.array([0, 9]), 10, "evaluation.data.labels", "r.yaml")
    with pytest.raises(RecipeError, match=r"class id 10, but the model has 10 classes"):
        check_class_range(np.array([0, 10]), 10, "evaluation.data.labels", "r.yaml")


def test_worst_input_gate_catches_what_the_mean_hides() -> None:
    from edgekit.fidelity.check import check_gates

    numbers = {"cosine": 0.97, "cosine_worst": -0.23, "cosine_p5": 0.9, "samples": 100}
    assert check_gates(numbers, Gates(min_cosine=0.95))["passed"]
    worst = check_gates(numbers, Gates(min_cosine=0.95, min_cosine_worst=0.5))
    assert not worst["passed"] and worst["samples"] == 100
    assert not check_gates(numbers, Gates(min_cosine_p5=0.95))["passed"]


def test_figures() -> None:
    assert percent(0.997) == "99.7 %" and percent(0.99996) == "99.9 %" and percent(1.0) == "100.0 %"
    assert percent(0.983) == "98.3 %" and percent(0.0) == "0.0 %"
    assert (
        task_metric({"top1": 0.923, "top1_reference": 0.925, "top1_agreement": 0.99})
        == "top-1 92.3 % (ONNX 92.5 %)"
    )
    assert task_metric({"top1_agreement": 0.99}) is None
    # a detector's box precision is gated too (max_map50_95_drop): the table showed mAP50 alone
    detector = {"map50": 0.973, "map50_reference": 0.977, "map50_95": 0.763, "map50_95_reference": 0.785}
    assert task_metric(detector) == "mAP50 0.973 (ONNX 0.977), mAP50-95 0.763 (ONNX 0.785)"
    assert agreement({"top1_agreement": 0.997}) == "agree 99.7 %"
    assert judged_on(4, 100) == "on 4 of 100 inputs" and judged_on(8, 8) == "on 8 inputs"
    assert megabytes(4_880_000) == "4.88 MB" and megabytes(12_000) == "0.012 MB"


@pytest.mark.parametrize(("device_inputs", "sent"), [(None, 4), ("all", None), (100, 100)])
def test_emulated_gates_can_be_judged_on_every_input(
    tmp_path: Path, device_inputs: Any, sent: int | None
) -> None:
    """evaluation.device_inputs lifts an emulated target's 4-input cap for outputs (gates) while its timing plan
    stays capped (repeat, warmup, threads; timing is on one input anyway); left out, the cap applies."""
    from edgekit.deploy.plan import DeployOptions, capped_settings
    from edgekit.deploy.plan import device_inputs as recipe_device_inputs
    from edgekit.deploy.request import Settings
    from edgekit.target import load_target

    raw = yaml.safe_load((ROOT / "recipes" / "digits.yaml").read_text())
    raw["model"]["weights"] = str(ROOT / "edgekit" / "zoo" / "weights" / "digits.pt")
    if device_inputs is not None:
        raw["evaluation"]["device_inputs"] = device_inputs
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(raw))
    recipe = load_recipe(path)
    base = Settings.from_benchmark(recipe.benchmark, samples=recipe_device_inputs(recipe))
    said: list[str] = []
    own = capped_settings(
        recipe, DeployOptions(), base, load_target(ROOT / "targets" / "pi4-emu.yaml"), said.append
    )
    assert own.samples == sent and own.repeat == 3 and own.threads == (1,)
    assert any("timing stays on one input" in s for s in said) == (device_inputs is not None)


def test_device_inputs_must_be_all_or_a_positive_count(tmp_path: Path) -> None:
    raw = yaml.safe_load((ROOT / "recipes" / "digits.yaml").read_text())
    raw["evaluation"]["device_inputs"] = "most"
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RecipeError, match=r"evaluation\.device_inputs"):
        load_recipe(path, check_files=False)
