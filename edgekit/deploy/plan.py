"""What each target of a deploy runs: the command line's options, a target's own benchmark cap, the inputs
it is sent. A cap belongs to the target that carries it; the host and real boards run the recipe's full plan."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.deploy.request import Settings
from edgekit.formats import Format
from edgekit.recipe import Recipe
from edgekit.target import Target, TransportKind

Progress = Callable[[str], None]


@dataclass(frozen=True)
class DeployOptions:
    """Command-line overrides of the recipe's benchmark block, and what to run."""

    threads: tuple[int, ...] | None = None
    repeat: int | None = None
    warmup: int | None = None
    number: int | None = None
    timeout_s: float | None = None
    samples: int | None = None  # evaluation samples sent to the targets (default: all of them)
    formats: tuple[Format, ...] | None = None  # a subset of the recipe's formats (default: all)
    host: bool = True  # also measure the host CPU (the reference for host-vs-ARM drift)
    keep_going: bool = False  # deploy what converted even if a conversion failed
    json_path: Path | None = None
    target_overrides: tuple[str, ...] = ()  # `field=value` for every target given by name (--set)
    profile: bool = False  # per-layer data in the result: counts on emulated cores, wall times elsewhere
    profile_passes: int = 10  # with `profile`, on boards and the host: passes each layer's median is over
    # set from another thread (a lab nightly's Ctrl-C): stop as on Ctrl-C (agents stopped, what was measured kept)
    stop: threading.Event | None = field(default=None, compare=False)


def capped_settings(
    recipe: Recipe, opts: DeployOptions, settings: Settings, target: Target, say: Progress
) -> Settings:
    """The timing plan for one target: the recipe's, bounded by that target's own `benchmark_cap` (emulated
    devices keep runs short). A cap limits only the target that carries it: the host and real boards in the same
    deploy run the full plan. Settings given on the command line are never capped; what was capped is said."""
    cap = target.benchmark_cap
    if cap is None:
        return settings
    bench = recipe.benchmark
    changes: dict[str, Any] = {}
    if opts.repeat is None and cap.repeat is not None and cap.repeat < settings.repeat:
        changes["repeat"] = cap.repeat
    if opts.warmup is None and cap.warmup is not None and cap.warmup < settings.warmup:
        changes["warmup"] = cap.warmup
    if opts.samples is None and cap.samples is not None and recipe.evaluation.device_inputs is None:
        changes["samples"] = cap.samples
    elif opts.samples is None and cap.samples is not None:
        asked = recipe.evaluation.device_inputs
        say(
            f"{target.name}: outputs on {'every evaluation input' if asked == 'all' else f'{asked} inputs'} "
            f"(evaluation.device_inputs), not the cap's {cap.samples}; timing stays on one input"
        )
    if opts.threads is None and cap.threads is not None and tuple(cap.threads) != tuple(settings.threads):
        changes["threads"] = tuple(t for t in bench.threads if t in cap.threads) or tuple(cap.threads)
    if changes:
        told = ", ".join(f"{k} {list(v) if isinstance(v, tuple) else v}" for k, v in changes.items())
        why = (
            " (emulated: tens of times slower than the board)" if target.emulated else " (its benchmark_cap)"
        )
        say(
            f"benchmark capped for {target.name} only{why}: {told}; "
            "pass --repeat/--threads/--warmup/--samples to choose"
        )
    return replace(settings, **changes)


def device_inputs(recipe: Recipe) -> int | None:
    """The recipe's `evaluation.device_inputs` as a count of inputs to send (None: all of them)."""
    value = recipe.evaluation.device_inputs
    return value if isinstance(value, int) else None


@dataclass(frozen=True)
class TargetPlan:
    target: Target
    settings: Settings
    inputs: Path


def check_before_work(target: Target) -> None:
    """What every command that reaches a target can refuse at once (exit 2), before converting, uploading or
    waiting: a missing or unusable key file, a local target's work dir that cannot be made (WorkDirError), a lab
    with no place of this kind, an emulated target stating a core its device does not run, or whose device is not
    built here (its build would download: exit 1)."""
    from edgekit.deploy.reach import startable
    from edgekit.emu.device import check_available

    check_target_key(target)
    if target.transport is TransportKind.LOCAL:
        from edgekit.transport.local import make_work_dir

        make_work_dir(target)
    check_available(target)
    startable([target])


def check_target_key(target: Target) -> None:
    """A board's `key` file and `known_hosts` file read before any work (KeyFileError, TargetError: exit 2).
    Emulated targets make their key when started and lab places have known_hosts of their own: checked when they
    connect; a lab target's key is checked now unless it names one key per place (`{place}`)."""
    if target.lab is not None and target.key is not None and "{place}" not in str(target.key):
        from edgekit.transport.ssh_key_file import check_key

        check_key(target)
    if target.transport is TransportKind.SSH and target.emulated is None and target.lab is None:
        from edgekit.transport.ssh_key_file import check_key
        from edgekit.transport.ssh_keys import checked_client

        check_key(target)
        checked_client(target).close()


def plan_for(
    target: Target, recipe: Recipe, opts: DeployOptions, settings: Settings, inputs: Path, say: Progress
) -> TargetPlan:
    """The target's settings and inputs file (the first `samples` of the evaluation inputs when capped)."""
    own = capped_settings(recipe, opts, settings, target, say)
    if opts.profile and target.emulated is None:  # emulated cores: exact counts per layer instead (_profiles)
        own = replace(own, layer_times=opts.profile_passes)
    if own.samples is None or own.samples == settings.samples:
        return TargetPlan(target, own, inputs)
    data = np.load(inputs)
    if own.samples >= len(data):
        return TargetPlan(target, own, inputs)
    path = inputs.with_name(f"inputs-{own.samples}.npy")
    if not path.exists():
        np.save(path, np.ascontiguousarray(data[: own.samples]))
    return TargetPlan(target, own, path)
