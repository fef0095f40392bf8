"""A builder's module and the user's modules it imports, compiled from their source while edgekit imports them
(never from a stale .pyc), with torchvision's stub ops in place."""

from __future__ import annotations

import contextlib
import importlib.machinery
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgekit.pyfiles import installed
from edgekit.torchvision_ops import torchvision_stubbed


class _SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """A user's .py compiled from its source, never from a .pyc in __pycache__: Python trusts a .pyc whose
    recorded source size and mtime (to the second) match, so an edit of the same size within a second, or one
    whose mtime a copy kept (`cp -p`, rsync -a, tar, a normalised SOURCE_DATE_EPOCH), ran the old code while the
    export's cache key (edgekit.convert.code_digest) read the new source: the old model stored under the new key."""

    def get_code(self, fullname: str) -> types.CodeType:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)


class _UserSourceFinder:
    """Finds a module as the path finder does and, when it is the user's own .py (not installed), loads it with
    _SourceOnlyLoader; anything else is left to the finders behind it."""

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> Any:
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        loader = getattr(spec, "loader", None)
        if spec is None or type(loader) is not importlib.machinery.SourceFileLoader or not spec.origin:
            return None
        if installed(Path(spec.origin)):
            return None
        spec.loader = _SourceOnlyLoader(name, spec.origin)
        return spec


@contextlib.contextmanager
def from_source() -> Iterator[None]:
    """While a builder's module is imported, the user's own modules come from their source (_SourceOnlyLoader),
    and torchvision, if imported, has the stub ops it needs (edgekit.torchvision_ops.torchvision_stubbed)."""
    sys.meta_path.insert(0, _UserSourceFinder)
    try:
        with torchvision_stubbed():
            yield
    finally:
        sys.meta_path.remove(_UserSourceFinder)
