"""torchvision importable with torch's CPU build.

PyPI's torchvision 0.28.0 is the build for torch 2.13.0, but its C++ extension (`_C.so`) links CUDA libraries the
CPU torch does not have, so it does not load; torchvision then imports without its ops, except that two fake
(meta) kernels are registered unconditionally for `torchvision::nms` and `torchvision::qnms`, which fails when
the operators were never defined. `define_stub_ops` defines those two schemas first (no kernel: calling them
raises), which is all model code needs: no classification architecture runs an op of the extension in its
forward pass (SSDlite's NMS is post-processing, outside the exported backbone + head).

A torchvision whose extension does load (torch and torchvision builds that match) defines the same schemas in C++
when it loads `_C`: a schema defined before then aborts the process inside dlopen (c10::Error thrown from a
static initializer: uncatchable, rc 134). So `define_stub_ops` first loads torchvision's own `_C` as
torchvision/extension.py would (found without importing torchvision), and defines the stubs only when there is
none or it does not load; torchvision's own load of it later is then the same library, already loaded.

Its own module, below every package: user_source.py defines the stubs before a builder's module imports
torchvision (torchvision_stubbed, an import hook), and edgekit.zoo's builders do it too; the zoo package imports fidelity and convert, which import the
recipe, so the recipe cannot import the zoo.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_LIBRARY: Any = None  # the torch.library.Library defining the stub schemas (kept alive)


def define_stub_ops() -> None:
    """The two schemas torchvision's import registers fake kernels for, defined when no extension defined them
    (module docstring); before any import of torchvision."""
    global _LIBRARY  # noqa: PLW0603 - the schemas are process-wide, defined once
    import torch

    if _LIBRARY is None and not hasattr(torch.ops.torchvision, "nms") and not _load_extension():
        _LIBRARY = torch.library.Library("torchvision", "DEF")  # type: ignore[no-untyped-call]  # schemas only
        _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def _load_extension() -> bool:
    """Whether torchvision's own C++ extension (`_C` beside its `__init__.py`, with any of Python's extension
    suffixes, as torchvision/extension.py looks for it) is installed and loads: torchvision's spec is found without
    importing it. A `_C` that does not load (torch's CPU build: CUDA libraries it links are missing) is False, as
    it is for torchvision, which imports without its ops then."""
    import importlib.machinery
    import importlib.util

    import torch

    try:
        spec = importlib.util.find_spec("torchvision")
    except (ImportError, ValueError):
        return False
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            library = Path(folder) / f"_C{suffix}"
            if library.is_file():
                try:
                    torch.ops.load_library(str(library))  # type: ignore[no-untyped-call]
                except (OSError, RuntimeError):
                    return False
                return hasattr(torch.ops.torchvision, "nms")
    return False


def import_torchvision() -> Any:
    """`torchvision`, importable with torch's CPU build (module docstring)."""
    define_stub_ops()
    with warnings.catch_warnings():  # "Failed to load image Python extension": the same missing C++ library
        warnings.simplefilter("ignore", UserWarning)
        import torchvision  # type: ignore[import-untyped]

    return torchvision


class _TorchvisionStubs:
    """Finds nothing; asked for `torchvision` (a zoo's `torchvision.models:...`, or imported by the user's module or
    by timm), defines the stub ops it needs with torch's CPU build first (define_stub_ops): its import raised
    `operator torchvision::nms does not exist` otherwise, an internal error of edgekit's."""

    _busy = False

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torchvision" and name not in sys.modules and not cls._busy:
            cls._busy = True  # torch's own import may look for torchvision
            try:
                define_stub_ops()
            finally:
                cls._busy = False
        return None


@contextlib.contextmanager
def torchvision_stubbed() -> Iterator[None]:
    """While inside, an import of torchvision (by a recipe's builder module, or when a builder is called) defines
    the stub ops first (user_source.py, recipe/builders.py)."""
    sys.meta_path.insert(0, _TorchvisionStubs)
    try:
        yield
    finally:
        sys.meta_path.remove(_TorchvisionStubs)
