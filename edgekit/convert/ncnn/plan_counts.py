"""The speed plan's counts: per-layer profiles of ncnn artifacts on the emulated cores (several single-threaded
guests at a time, each guest's count independent of what runs beside it), how many guest runs a plan takes, and
the digest of the files counted. Instruction counts, not cycles.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgekit.profile import Profile

DEVICES = ("pi4-emu", "pi5-emu")  # Cortex-A72 (Pi 4) and Cortex-A76 (Pi 5)


def digest(param: Path) -> str:
    """The content counted: sha256 over an ncnn artifact's .param and .bin (its sidecar's options are the
    format's, fixed per key)."""
    h = hashlib.sha256()
    for suffix in (".param", ".bin"):
        h.update(param.with_suffix(suffix).read_bytes())
    return h.hexdigest()


def guests_at_once() -> int:
    """Profiles run side by side, one single-threaded guest per host core (EDGEKIT_PLAN_GUESTS overrides): a
    guest's count does not depend on what runs beside it, only the wall time does."""
    wanted = os.environ.get("EDGEKIT_PLAN_GUESTS")
    return max(1, int(wanted) if wanted else min(len(DEVICES), os.cpu_count() or 1))


def float_runs_as_fp32(device: str) -> bool:
    """Whether the int8 artifact's options run a float layer on this core as ncnn-fp32's own options do: ncnn
    takes fp16 storage and arithmetic only on cores with fp16 arithmetic (asimdhp), so on the Cortex-A72 the two
    count the same but for heap noise (yolov5-lite's fp32 model: 139,747,127 and 139,739,726 instructions, every
    layer within 0.03 %), and the plan's float profile there is the fp32 model's."""
    from edgekit.emu.specs import DEVICES as SPECS

    spec = SPECS.get(device)
    return spec is not None and "asimdhp" not in spec.features.split()


def profiles_of(
    params: Sequence[Path],
    devices: tuple[str, ...] = DEVICES,
    say: Callable[[str], None] | None = None,
    names: Sequence[str] = (),
    skip: Sequence[tuple[int, str]] = (),
) -> list[dict[str, Profile]]:
    """Per-layer profiles of each artifact on each core (one dict per artifact), several guests at a time; `say`
    hears each guest run that ends ('speed plan: 2 of 5 guest runs counted (int8 on pi5-emu, 21 s)'), `names`
    naming the artifacts; (artifact index, device) pairs in `skip` are not run and missing from the result."""
    import threading
    import time

    from edgekit.emu.guests import Guests
    from edgekit.profile import profile_ncnn

    skipped = set(skip)
    jobs = [
        (k, param, device)
        for k, param in enumerate(params)
        for device in devices
        if (k, device) not in skipped
    ]
    start, lock, finished = time.monotonic(), threading.Lock(), [0]

    def run(job: tuple[int, Path, str]) -> Profile:
        k, param, device = job
        prof = profile_ncnn(param, device, guests=guests)
        if say is not None:
            with lock:
                finished[0] += 1
                what = names[k] if k < len(names) else param.parent.name
                say(
                    f"speed plan: {finished[0]} of {len(jobs)} guest runs counted ({what} on {device}, "
                    f"{time.monotonic() - start:.0f} s)"
                )
        return prof

    guests = Guests()
    pool = ThreadPoolExecutor(max_workers=guests_at_once(), thread_name_prefix="edgekit-plan")
    try:
        done = list(pool.map(run, jobs))
    except (
        BaseException
    ):  # Ctrl-C or SIGTERM (here, in the main thread), a guest run that failed: the running
        # guests are killed and the queued runs dropped, not waited for (exit 130 came after every run had ended)
        guests.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    out: list[dict[str, Profile]] = [{} for _ in params]
    for (k, _, device), prof in zip(jobs, done):
        out[k][device] = prof
    return out


def guest_runs() -> int:
    """The plan's guest runs: the fp32 model, the all-int8 artifact, and the float graph under the int8 options
    where it does not run as fp32 (float_runs_as_fp32), on each core."""
    return sum(2 if float_runs_as_fp32(d) else 3 for d in DEVICES)


def profiles(param: Path, devices: tuple[str, ...] = DEVICES) -> dict[str, Profile]:
    return profiles_of([param], devices)[0]
