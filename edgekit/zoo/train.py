"""Train the zoo's demo models here, reproducibly from a seed, once: results are cached by the config's hash.

Why: no weights can be downloaded, and accuracy numbers of converted models mean something only for trained
models. Each model has a default `TrainConfig`; `train(config)` seeds everything, runs the model's loop at the
config's thread count (1 unless asked: the count changes the weights, so it is part of the config and its hash),
evaluates it on its held-out test data and saves an fp32 state_dict plus a JSON (config, seed, threads, time,
metrics) under `edgekit.paths.models_dir()/<model>-<hash>/`. A second call with the same config (threads
included) loads that instead of training; a result trained at another thread count is never returned. The weights shipped in edgekit/zoo/weights/ (written by
`python -m edgekit.zoo.train MODEL --ship`) let users and CI skip training entirely.

Same config + same seed + same thread count -> bit-identical weights (deterministic algorithms, seeded data).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError
from edgekit.paths import models_dir
from edgekit.zoo.train_config import Log, TrainConfig

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


@dataclass
class Trained:
    """A trained model: its weights file, the metadata JSON's content, and the module itself."""

    weights: Path
    meta: dict[str, Any]
    model: Any  # torch.nn.Module in eval mode
    cached: bool


class TrainingError(EdgekitError):
    """A zoo model cannot be trained or its cached weights cannot be read."""


# --- threads and determinism ----------------------------------------------------------------------------------
def free_threads() -> int:
    """The threads free to train with now: EDGEKIT_TRAIN_THREADS, else the cores not busy (1-minute load), at
    least 1. Never the default thread count (that would let the machine's load decide the weights): `train` says
    when the config asks for more, since oversubscribing a busy core makes torch steps ~25x slower (see
    docs/notes/training.md)."""
    env = os.environ.get("EDGEKIT_TRAIN_THREADS")
    if env:
        return max(1, int(env))
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0]
    except OSError:
        return 1
    return max(1, min(cores, int(cores - busy)))


@contextmanager
def deterministic(seed: int, threads: int) -> Iterator[None]:
    """Seed torch, fix its thread count and demand deterministic kernels; restore the settings afterwards."""
    import torch

    old_threads, old_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


# --- the registry of trainable models -------------------------------------------------------------------------
@dataclass(frozen=True)
class Trainer:
    build: Callable[..., Any]  # model_args -> nn.Module
    loop: Callable[[Any, TrainConfig, Log], dict[str, float]]  # trains in place, returns test metrics
    default: TrainConfig


def _trainers() -> dict[str, Trainer]:
    from edgekit.zoo import digits, digits_train, shapes_train, yolov5_lite

    return {
        "digits": Trainer(digits.build, digits_train.loop, digits_train.DEFAULT),
        "shapes-yolov5-lite": Trainer(yolov5_lite.build, shapes_train.loop, shapes_train.DEFAULT),
    }


def trainer(name: str) -> Trainer:
    table = _trainers()
    if name not in table:
        raise TrainingError(f"no trainable zoo model {name!r}", hint=f"one of: {', '.join(sorted(table))}")
    return table[name]


def default_config(name: str) -> TrainConfig:
    return trainer(name).default


# --- train, cache, ship ---------------------------------------------------------------------------------------
def cache_path(config: TrainConfig) -> Path:
    return models_dir() / f"{config.model}-{config.digest()[:16]}"


def train(
    config: TrainConfig, *, threads: int | None = None, cache: bool = True, log: Log = lambda _msg: None
) -> Trained:
    """Train `config` (or load its cached result) and return the model in eval mode with its metadata.
    `threads` sets the config's thread count (config.threads, 1 by default): it is part of the cache key."""
    import torch

    if threads is not None and threads != config.threads:  # validated: at least 1
        config = TrainConfig.model_validate({**config.model_dump(), "threads": threads})
    threads = config.threads
    spec = trainer(config.model)
    folder = cache_path(config)
    if cache and (folder / "weights.pt").is_file() and (folder / "meta.json").is_file():
        cached = _load(spec, folder / "weights.pt", cached=True)
        if cached.meta.get("threads") == threads:
            return cached
        # written before threads keyed the cache (trained at whatever cores were free): other weights
        log(
            f"{folder}: trained at {cached.meta.get('threads')} threads, not the {threads} asked for; "
            "training again"
        )
    free = free_threads()
    if threads > free:
        log(f"training at {threads} threads with {free} free: a busy core can make it many times slower")
    with deterministic(config.seed, threads):
        model = spec.build(**config.model_args)
        start, cpu_start = time.perf_counter(), time.process_time()
        metrics = spec.loop(model, config, log)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    model.eval()
    meta = {
        "model": config.model,
        "config": config.model_dump(mode="json"),
        "config_sha256": config.digest(),
        "seed": config.seed,
        "threads": threads,
        "train_seconds": round(seconds, 2),
        "train_cpu_seconds": round(cpu_seconds, 2),  # on a shared machine, what an idle one would need
        "metrics": metrics,
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if cache:
        folder.mkdir(parents=True, exist_ok=True)
        _save(model, meta, folder / "weights.pt")
    return Trained(folder / "weights.pt", meta, model, cached=False)


def _save(model: Any, meta: dict[str, Any], weights: Path) -> None:
    import torch

    state = {k: v.detach().float() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    tmp = weights.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(weights)
    _meta_file(weights).write_text(json.dumps(meta, indent=2) + "\n")


def _meta_file(weights: Path) -> Path:
    """meta.json beside a cached weights.pt; NAME.json beside a shipped NAME.pt."""
    return weights.with_name("meta.json") if weights.name == "weights.pt" else weights.with_suffix(".json")


def _load(spec: Trainer, weights: Path, cached: bool) -> Trained:
    import torch

    try:
        meta = json.loads(_meta_file(weights).read_text())
        model = spec.build(**meta["config"]["model_args"])
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise TrainingError(
            f"cannot load trained weights: {exc}",
            where=str(weights),
            hint="delete the folder to retrain, or retrain with `python -m edgekit.zoo.train`",
        ) from None
    return Trained(weights, meta, model.eval(), cached)


def shipped(name: str) -> Path | None:
    """The weights shipped with the package for the default config of `name`, if they match it."""
    weights = WEIGHTS_DIR / f"{name}.pt"
    meta = weights.with_suffix(".json")
    if not (weights.is_file() and meta.is_file()):
        return None
    if json.loads(meta.read_text()).get("config_sha256") != default_config(name).digest():
        return None
    return weights


def load_trained(name: str, *, log: Log = lambda _msg: None) -> Trained:
    """The default-config model `name`: shipped weights, else the cache, else trained now (once)."""
    path = shipped(name)
    if path is not None:
        return _load(trainer(name), path, cached=True)
    return train(default_config(name), log=log)


def ship(trained: Trained, name: str) -> Path:
    """Copy trained weights and metadata into edgekit/zoo/weights/ (what the recipes reference)."""
    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    target = WEIGHTS_DIR / f"{name}.pt"
    shutil.copyfile(trained.weights, target)
    target.with_suffix(".json").write_text(json.dumps(trained.meta, indent=2) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m edgekit.zoo.train", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="digits | shapes-yolov5-lite")
    parser.add_argument("--seed", type=int, default=None, help="override the default config's seed")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default 1); the count changes the weights, so it is part of the cache key",
    )
    parser.add_argument("--ship", action="store_true", help="copy the result into edgekit/zoo/weights/")
    parser.add_argument("--force", action="store_true", help="retrain even if a cached result exists")
    args = parser.parse_args(argv)
    config = default_config(args.model)
    if args.seed is not None:
        config = config.model_copy(update={"seed": args.seed})
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads: at least 1")
        config = config.model_copy(update={"threads": args.threads})
    trained = (
        train(config, threads=args.threads, cache=True, log=print)
        if not args.force
        else _retrain(config, args.threads)
    )
    print(
        json.dumps(
            {
                k: trained.meta.get(k)
                for k in ("train_seconds", "train_cpu_seconds", "threads", "metrics", "parameters")
            }
        )
    )
    if args.ship:
        print("shipped:", ship(trained, args.model))
    return 0


def _retrain(config: TrainConfig, threads: int | None) -> Trained:
    shutil.rmtree(cache_path(config), ignore_errors=True)
    return train(config, threads=threads, cache=True, log=print)


if __name__ == "__main__":
    raise SystemExit(main())
