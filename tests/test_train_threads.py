"""torch's thread count changes the trained weights (another summation order), so it is part of what a training
run is: 1 by default whatever the machine's load, in the config's digest and cache folder, and a cached result
trained at another thread count is never returned for this one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgekit.zoo import digits_train, train

# small and apart from test_train.py's configs (the session's cache is shared)
SMALL = digits_train.DEFAULT.model_copy(update={"epochs": 1, "data": {"max_train": 128}, "seed": 7})


def test_the_default_is_one_thread_and_it_keeps_the_shipped_weights_digest() -> None:
    assert SMALL.threads == 1 and digits_train.DEFAULT.threads == 1
    shipped = json.loads((train.WEIGHTS_DIR / "digits.json").read_text())
    assert shipped["threads"] == 1 and shipped["config_sha256"] == digits_train.DEFAULT.digest()
    two = SMALL.model_copy(update={"threads": 2})
    assert two.digest() != SMALL.digest() and train.cache_path(two) != train.cache_path(SMALL)


def test_training_defaults_to_one_thread_whatever_cores_are_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """Was free_threads(): int(cores - load), so the machine's load decided the weights."""
    monkeypatch.delenv("EDGEKIT_TRAIN_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    config = SMALL.model_copy(update={"seed": 8})
    trained = train.train(config, cache=False)
    assert trained.meta["threads"] == 1 and trained.meta["config"]["threads"] == 1


def test_a_result_cached_at_another_thread_count_is_not_returned() -> None:
    """Was: `--threads 2` returned the 1-thread result from the cache, no word said."""
    one = train.train(SMALL, threads=1)
    assert not one.cached and one.meta["threads"] == 1
    two = train.train(SMALL, threads=2)
    assert not two.cached and two.meta["threads"] == 2, two.meta
    assert two.weights != one.weights and one.weights.is_file()  # both kept, each under its own key
    again = train.train(SMALL, threads=2)
    assert again.cached and again.weights == two.weights and again.meta["threads"] == 2
    back = train.train(SMALL)
    assert back.cached and back.weights == one.weights and back.meta["threads"] == 1


def test_a_cache_entry_whose_meta_says_another_thread_count_is_trained_again() -> None:
    """A folder written before threads keyed the cache (trained at free_threads()) holds the 1-thread digest's
    folder; its meta.json says what it was trained at, and a 1-thread run does not take it."""
    config = SMALL.model_copy(update={"seed": 9})
    first = train.train(config)
    meta_file = Path(first.weights).with_name("meta.json")
    meta = json.loads(meta_file.read_text())
    meta["threads"] = 2
    meta_file.write_text(json.dumps(meta))
    notes: list[str] = []
    again = train.train(config, log=notes.append)
    assert not again.cached and again.meta["threads"] == 1
    assert json.loads(meta_file.read_text())["threads"] == 1
    assert any("2 threads" in n for n in notes), notes
