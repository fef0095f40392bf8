"""Training the zoo models: deterministic from the seed, cached by config, and accurate enough to mean something."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from edgekit.fidelity.metrics import top1
from edgekit.zoo import digits, digits_train, shapes_train, train

SMALL_DIGITS = digits_train.DEFAULT.model_copy(update={"epochs": 2, "data": {"max_train": 256}})
SMALL_DETECTOR = shapes_train.DEFAULT.model_copy(
    update={
        "epochs": 1,
        "batch_size": 2,
        "data": {"canvas": 96, "images_per_epoch": 4, "bn_images": 2, "test_images": 2, "probe_images": 0},
    }
)


def _state(trained: train.Trained) -> dict[str, np.ndarray]:
    return {k: v.numpy().copy() for k, v in trained.model.state_dict().items()}


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("config", [SMALL_DIGITS, SMALL_DETECTOR], ids=["digits", "detector"])
def test_training_is_deterministic_from_its_seed(config: train.TrainConfig) -> None:
    first = train.train(config, threads=1, cache=False)
    second = train.train(config, threads=1, cache=False)
    other = train.train(config.model_copy(update={"seed": 1}), threads=1, cache=False)
    assert _same(_state(first), _state(second)), "same config and seed gave different weights"
    assert not _same(_state(first), _state(other)), "another seed gave the same weights"
    assert first.meta["metrics"] == second.meta["metrics"]


def test_a_second_run_of_the_same_config_is_taken_from_the_cache() -> None:
    first = train.train(SMALL_DIGITS, threads=1)
    assert not first.cached and first.weights.is_file()
    meta = json.loads(first.weights.with_name("meta.json").read_text())
    assert meta["config_sha256"] == SMALL_DIGITS.digest() and meta["seed"] == 0 and meta["threads"] == 1
    again = train.train(SMALL_DIGITS, threads=1)
    assert again.cached and again.weights == first.weights
    assert _same(_state(first), _state(again))
    changed = SMALL_DIGITS.model_copy(update={"lr": 1e-3})
    assert train.cache_path(changed) != train.cache_path(SMALL_DIGITS)


def test_digits_trained_from_scratch_reaches_sane_accuracy() -> None:
    quick = digits_train.DEFAULT.model_copy(update={"epochs": 6})
    trained = train.train(quick, threads=1, cache=False)
    assert trained.meta["metrics"]["top1"] >= 0.93, trained.meta["metrics"]


def test_shipped_digits_weights_match_the_default_config_and_reach_95_percent() -> None:
    assert train.shipped("digits") is not None, (
        "edgekit/zoo/weights/digits.pt missing or stale: retrain and --ship"
    )
    trained = train.load_trained("digits")
    x, y = digits.test_split()
    import torch

    with torch.no_grad():
        accuracy = top1(trained.model(torch.from_numpy(x)).numpy(), y)
    assert accuracy >= 0.95
    assert accuracy == pytest.approx(trained.meta["metrics"]["top1"])


def test_digits_splits_are_disjoint_and_stratified() -> None:
    x_tr, _ = digits.train_data()
    x_te, y_te = digits.test_data()
    assert len(x_te) == 360 and len(x_tr) == 1437 and x_te.shape[1:] == (1, 16, 16)
    train_rows = {row.tobytes() for row in x_tr}
    assert (
        sum(row.tobytes() in train_rows for row in x_te) <= 2
    )  # the raw data has a couple of duplicate scans
    assert np.bincount(y_te).min() >= 35
    xc, yc = digits.calibration(50, seed=3)
    assert xc.dtype == np.float32 and yc.dtype == np.int64 and len(xc) == 50
    assert np.array_equal(xc, digits.calibration(50, seed=3)[0])


def test_threads_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKIT_TRAIN_THREADS", "1")
    assert train.free_threads() == 1
    monkeypatch.delenv("EDGEKIT_TRAIN_THREADS")
    assert 1 <= train.free_threads() <= (os.cpu_count() or 1)


def test_shipped_detector_weights_match_the_default_config_and_find_the_shapes() -> None:
    from edgekit.fidelity.metrics import detection_metrics
    from edgekit.zoo import shapes

    assert train.shipped("shapes-yolov5-lite") is not None, (
        "detector weights missing or stale: retrain and --ship"
    )
    trained = train.load_trained("shapes-yolov5-lite")
    assert trained.meta["metrics"]["map50"] >= 0.8
    imgs, labels = shapes.test_set(24)
    import torch

    with torch.no_grad():
        boxes, scores = trained.model(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0)
    found = detection_metrics(boxes.numpy(), scores.numpy(), labels)
    assert found["map50"] >= 0.8 and found["map50_95"] >= 0.5, found
