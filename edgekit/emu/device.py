"""An emulated target's live device: the connection details of its running device (state file), and starting
it when it does not run. A target file holds only what never changes; host, port, user, key, pinned host key,
python and work dir come from the device `edgekit emu up` started, and environment and `--set` overrides still
win over them (`--set user=nobody` really connects as nobody).

`ensure_device` is the one call that makes any target reachable before `open_transport`: an emulated device is
started, a lab target acquires a matching place (closing its transport releases it), real boards and local
targets are returned unchanged.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from edgekit.emu.runner import running_state, up
from edgekit.emu.specs import DEVICES
from edgekit.errors import EmulatorError, HostKeyError, KeyFileError, TargetError
from edgekit.target import Target


def check_emulated_cpu(target: Target) -> None:
    """An emulated target's `emulated.device` is one `edgekit emu` knows (a misspelt one: TargetError, exit 2,
    naming the file, the field and the known devices), and its `emulated.cpu` states the core its device runs
    (the device's qemu -cpu); it does not choose it. A value that differs was shown by `edgekit targets` while
    the device ran its own core: TargetError (exit 2) naming the field and the core."""
    spec = DEVICES.get(target.emulated.device) if target.emulated else None
    if target.emulated and spec is None:  # a misspelt device was listed as "(not running)", then an emu error
        device = target.emulated.device
        close = difflib.get_close_matches(device, list(DEVICES), n=1)
        overridden = "device" in (target._overrides.get("emulated") or {})
        raise TargetError(
            f"emulated.device: unknown emulated device {device!r}"
            + (f" (did you mean {close[0]}?)" if close else "")
            + (" (from --set emulated.device or EDGEKIT_TARGET_..._EMULATED__DEVICE)" if overridden else ""),
            where=target.source or target.name,
            hint=f"known devices: {', '.join(sorted(DEVICES))}",
        )
    if target.emulated and spec is not None and target.emulated.cpu != spec.cpu:
        raise TargetError(
            f"emulated.cpu: {target.emulated.device} runs {spec.cpu} (its qemu -cpu), not {target.emulated.cpu!r}: "
            "the field states the device's core, it cannot change it",
            where=target.source or target.name,
            hint=f"write emulated.cpu: {spec.cpu} (known devices: {', '.join(sorted(DEVICES))})",
        )


def running_target(target: Target) -> Target:
    """`target` with the live connection details of its emulated device when that device runs; otherwise (and
    for any other target) `target` unchanged. Never starts anything."""
    check_emulated_cpu(target)
    state = running_state(target.emulated.device) if target.emulated else None
    if state is None:
        return target
    explicit = target._overrides
    live: dict[str, Any] = {
        "host": state.host,
        "port": state.port,
        "user": state.user,
        "key": Path(state.client_key),
        "known_hosts": Path(state.known_hosts),
        "accept_new": False,
        "python": state.python,
        "work_dir": state.work_dir,
        "runtime_python": {"tflite_runtime": state.python_tflite_runtime, **target.runtime_python},
    }
    refreshed = target.model_copy(update={k: v for k, v in live.items() if k not in explicit})
    refreshed._source = target.source
    refreshed._overrides = explicit
    return refreshed


def check_available(target: Target) -> None:
    """Before any work, what ensure_device can tell at once: a lab target's lab has a place of its kind
    (NoMatchingPlace, exit 2: not after the conversions), an emulated target's stated core is its device's
    (exit 2 too). Whether a place is free is for ensure_device to wait on."""
    check_emulated_cpu(target)
    if target.lab is not None and target._lease is None:
        from edgekit.lab.acquire import check_matchable

        check_matchable(target)


def check_distinct_places(targets: list[Target]) -> None:
    """Before any work: the lab targets of one run have a place each between them (SamePlaceTwice, exit 2, not
    one of them failing at whichever acquires last)."""
    from edgekit.lab.acquire import check_distinct_places as check

    check(targets)


def ensure_device(
    target: Target, log: Callable[[str], None] | None = None, provision: bool = False
) -> Target:
    """Start the emulated device behind `target` if it is not running; return the target with its live
    connection details. A lab target acquires a matching place (waiting for one) and returns that board's
    target; closing its transport releases the place. Real boards and local targets are returned unchanged."""
    if target.lab is not None and target._lease is None:
        from edgekit.lab.acquire import acquire_target

        return acquire_target(target, log)
    if not target.emulated:
        return target
    check_emulated_cpu(target)
    # `provision`: a set-up command (`targets setup`) builds the device, downloading what it needs; a deploy or a
    # check does not
    up(target.emulated.device, log or (lambda _m: None), provision=provision)
    return running_target(target)


@contextlib.contextmanager
def emulated_key_errors(target: Target) -> Iterator[None]:
    """A KeyFileError or HostKeyError about an emulated device's own key files (its client key, its pinned host
    key: not ones given with --set) advised `--set key=PATH` or `ssh-keygen -R`, neither of which applies (an
    emulated target never accepts a new host key): the device's files changed while it ran. EmulatorError (exit
    1) naming the restart instead."""
    try:
        yield
    except (KeyFileError, HostKeyError) as exc:
        own = target.emulated is not None and not {"key", "known_hosts"} & set(target._overrides)
        if not own or target.emulated is None:
            raise
        name = target.emulated.device
        raise EmulatorError(
            f"{exc.message} (the emulated device's own key files changed while it ran)",
            where=exc.where,
            hint=f"edgekit emu down {name} && edgekit emu up {name} (re-creates its keys and pins its host key)",
        ) from exc
