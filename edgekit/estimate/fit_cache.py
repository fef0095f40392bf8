"""Fitted rates kept between runs: the cost model's fits are deterministic, and an estimate made hundreds of them.

Weighting the forms takes each one's leave-one-model-out error (crossval.ensemble), so one `edgekit estimate`
fitted 216 forms at one thread and 644 at four (on a counted model: 1.9 s, 0.9 s with the fits served), and every
deploy to an emulated board did the same for each thread count, every time. A fit's rates
depend only on its form's terms at each calibration point, the published figures and the fitting code: the key
is a digest of exactly those (forms.fit builds the terms and figures it fits) with FIT_VERSION and the numpy and
scipy versions, so new counts, figures or forms miss and are fitted, never served stale.

One JSON file in the data dir (`estimate-fits.json`), read once per process, written at exit when the process
fitted something new (merged with what another process wrote meanwhile; an atomic replace, so a reader never sees
half a file, and a lost update only costs a fit). It is dropped and started again past MAX_ENTRIES. A damaged or
unreadable file is ignored (fits are made again); one that cannot be written is left as it is.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

FIT_VERSION = 1  # bump when forms.fit computes rates another way
MAX_ENTRIES = 50_000  # ~4 MB of JSON; distinct fits of one calibration set are a few thousand
FILE = "estimate-fits.json"

_known: dict[str, list[float]] = {}  # this process's copy of the file, read at its first fit (_load)
_new: dict[str, list[float]] = {}  # fitted here, to write at exit
_read_once: list[bool] = []


def key(form: str, threads: int, terms: np.ndarray, figures: np.ndarray) -> str:
    """The digest of what a fit's rates depend on (module docstring)."""
    spec = [FIT_VERSION, *_versions(), form, threads, terms.tolist(), figures.tolist()]
    return hashlib.sha256(json.dumps(spec).encode()).hexdigest()


@cache
def _versions() -> tuple[str, str]:
    """numpy's and scipy's versions, read from their metadata: importing scipy.optimize takes 0.1 s, and a fit
    served from the file needs none of it."""
    from importlib.metadata import version

    return version("numpy"), version("scipy")


def get(fit_key: str) -> list[float] | None:
    """The rates stored under `fit_key`, or None."""
    return _load().get(fit_key)


def put(fit_key: str, rates: list[float]) -> None:
    """Keep `rates` for this process, and write them with the others at exit."""
    if not _new:
        atexit.register(flush)
    _load()[fit_key] = rates
    _new[fit_key] = rates


def flush() -> None:
    """Write this process's new fits, merged with the file as it is now. Run at exit: it never raises (a data dir
    that cannot be made or written, a full disk: the fits are made again next time)."""
    if not _new:
        return
    path = _path()
    if path is not None:
        merged = {**_read(path), **_new}
        if len(merged) > MAX_ENTRIES:
            merged = dict(_new)
        from edgekit import paths

        with contextlib.suppress(Exception):
            paths.write_atomic(path, json.dumps(merged))
    _new.clear()


def _load() -> dict[str, list[float]]:
    if not _read_once:
        _read_once.append(True)
        _known.update(_read(_path()))
    return _known


def _path() -> Path | None:
    """The file, or None where the data dir cannot be made (an estimate needs none: its fits are made here)."""
    from edgekit import paths

    try:
        return paths.data_dir() / FILE
    except Exception:  # noqa: BLE001 - EDGEKIT_HOME a file, unwritable: said by whatever command needs it
        return None


def _read(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        k: v
        for k, v in data.items()
        if isinstance(v, list) and all(isinstance(x, float | int) and not isinstance(x, bool) for x in v)
    }
