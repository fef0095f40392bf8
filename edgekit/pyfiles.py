"""Whose Python file is it: the standard library's or an installed package's, or someone's own code. The builder
guard (edgekit.recipe.builders) and the PyTorch export's code digest (edgekit.convert.code_digest) both ask."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import sysconfig
from pathlib import Path


@functools.cache
def _stdlib() -> tuple[Path, ...]:
    return tuple(
        Path(os.path.realpath(p)) for p in {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
    )


def installed(path: Path) -> bool:
    """In the standard library or a site-packages / dist-packages folder (the link or its target)."""
    real = Path(os.path.realpath(path))
    if {"site-packages", "dist-packages"} & {*Path(path).parts, *real.parts}:
        return True
    return any(real.is_relative_to(p) for p in _stdlib())


def in_site_packages(path: Path) -> bool:
    """In a site-packages or dist-packages folder (the link or its target): installed, not the standard library."""
    return bool({"site-packages", "dist-packages"} & {*path.parts, *Path(os.path.realpath(path)).parts})


def direct_url(dist: importlib.metadata.Distribution) -> dict[str, object]:
    """The distribution's direct_url.json (PEP 610: where pip installed it from, when not from an index)."""
    try:
        found = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def from_local_files(dist: importlib.metadata.Distribution) -> bool:
    """Installed from a folder or a file of this machine (`pip install .`, a wheel built here), not a VCS."""
    url = direct_url(dist)
    return str(url.get("url", "")).startswith("file:") and "vcs_info" not in url


def someone_elses(top: str, path: Path) -> bool:
    """Module file `path` (of top-level module `top`) is a package someone else published: the standard library's,
    or installed by a distribution from a package index or a VCS. Code no distribution stands for, or one installed
    from this machine's own files (`pip install .` of the user's model package), is the user's own."""
    if not installed(path):
        return False
    if not in_site_packages(path):
        return True  # the standard library
    names = [top, *(importlib.metadata.packages_distributions().get(top) or [])]
    dists = []
    for name in dict.fromkeys(names):
        try:
            dists.append(importlib.metadata.distribution(name))
        except (importlib.metadata.PackageNotFoundError, ValueError):
            continue
    owner = _owner(
        path, dists
    )  # in a namespace shared by several distributions, the one that installed the file
    if owner is not None:
        return not from_local_files(owner)
    return bool(dists) and not any(from_local_files(d) for d in dists)


def _owner(
    path: Path, dists: list[importlib.metadata.Distribution]
) -> importlib.metadata.Distribution | None:
    """The distribution whose record lists `path`, or None: one local distribution of a namespace package (acme)
    vouched for another's index-installed module (acme.tools)."""
    if len(dists) < 2:
        return dists[0] if dists else None
    real = os.path.realpath(path)
    for dist in dists:
        for file in dist.files or []:
            if file.name == path.name and os.path.realpath(str(dist.locate_file(file))) == real:
                return dist
    return None
