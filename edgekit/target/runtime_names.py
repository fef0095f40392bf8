"""The runtimes a target's `runtimes:` (and `runtime_python:` keys) may name, and the one a misspelt entry most
likely meant: read from the agent's copy of the runtime registry."""

from __future__ import annotations

import difflib


def runtime_modules() -> tuple[str, ...]:
    """What a target's `runtimes:` may list: the Python module of each device package of the runtime registry
    (edgekit/runtimes/), numpy included. Read from the agent's copy of the registry (RUNTIME_DISTS, which
    tests/test_runtimes.py checks against it): target/ is configuration, and the registry's package imports the
    converters and, through them, the emulator."""
    from edgekit.agent.agent import RUNTIME_DISTS

    return tuple(RUNTIME_DISTS)


def closest_runtime(name: str) -> str | None:
    """The module a misspelt entry most likely meant: `ncnnn` ncnn, `mnn` MNN, `opencv-python` cv2."""
    from edgekit.agent.agent import RUNTIME_DISTS

    spellings = {m.lower(): m for m in RUNTIME_DISTS} | {
        d.lower().replace("-", "_"): m for m, dists in RUNTIME_DISTS.items() for d in dists
    }
    wanted = name.lower().replace("-", "_")
    if wanted in spellings:
        return spellings[wanted]
    close = difflib.get_close_matches(wanted, list(spellings), n=1, cutoff=0.6)
    return spellings[close[0]] if close else None
