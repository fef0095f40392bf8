"""Which code a PyTorch builder's model is made of, as a digest for the export's cache key: the builder's module
and every module of the user's own code it imports, transitively (see builder_code_digest), found without
importing anything."""

from __future__ import annotations

import dis
import hashlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
import types
from importlib.machinery import ModuleSpec
from pathlib import Path

import edgekit
from edgekit.pyfiles import installed

# What the builder's code digest reads at most: reading a module's imports costs ~12 ms a file (compiling it),
# so a model's own code (tens of modules) adds well under a second and the cap a few seconds to a torch recipe.
MAX_CODE_FILES = 400
MAX_CODE_BYTES = 8 << 20
log = logging.getLogger(__name__)


def builder_code_digest(builder: str) -> str:
    """sha256 of the builder's module and of every module of the user's own code it imports, transitively: an
    edited model definition is exported again, an edit elsewhere is not.

    Followed: `import a.b`, `from a import b` (a, and a.b if it is a module) and relative imports (`from .blocks
    import f`, `from .. import x`), at module level or inside functions, read from the compiled bytecode; and
    the packages above each module (importing a.b runs a/__init__.py). Each module is read once, so an import
    cycle ends there. Names are located as Python's import would (sys.meta_path, sys.path) without importing.
    The user's own code: a .py module that is neither in the standard library's folders nor in a site-packages
    or dist-packages folder (installed packages are what their version says; torch's is in the key), and is
    not edgekit's own code outside edgekit.zoo (the export is keyed by EXPORT_VERSION). The builder's own
    module is always read. Not seen: a module imported by a computed name (importlib.import_module(name)) and
    data files the code reads. Bounded by MAX_CODE_FILES modules and MAX_CODE_BYTES bytes: past either, the
    modules read so far make the digest and a warning says edits past them are not seen."""
    module = builder.partition(":")[0]
    finder = _ModuleFinder()
    root = finder.spec(module)
    if root is None or not root.origin or not root.origin.endswith(".py"):
        return "unknown"
    is_package = root.submodule_search_locations is not None
    todo: list[tuple[str, Path, bool]] = [(module, Path(root.origin), is_package)]
    todo += finder.parents(module)
    seen: dict[str, bytes] = {}
    total = 0
    capped = False
    while todo:
        name, path, is_package = todo.pop()
        if name in seen:
            continue
        if len(seen) >= MAX_CODE_FILES or total >= MAX_CODE_BYTES:
            capped = True
            break
        try:
            source = path.read_bytes()
        except OSError:
            source = b"\0unreadable"
        seen[name] = source
        total += len(source)
        package = name if is_package else name.rpartition(".")[0]
        for wanted in _imported_names(source, path, package):
            found = finder.user_module(wanted)
            if found is not None and found[0] not in seen:
                todo += [found, *finder.parents(found[0])]
    if capped:
        log.warning(
            "model code: %s imports more than %d of your modules (%.0f MB); the PyTorch export's cache key "
            "covers only those read, so an edit past them does not export the model again",
            builder,
            len(seen),
            total / 1e6,
        )
    h = hashlib.sha256()
    for name in sorted(seen):
        h.update(f"{name}\0{len(seen[name])}\0".encode() + seen[name])
    if capped:
        h.update(b"\0capped")
    return h.hexdigest()


def _imported_names(source: bytes, path: Path, package: str) -> list[str]:
    """The absolute names of what a module imports (see _imports); a relative import is resolved against
    `package` (the module's package: its own name for an __init__.py); one reaching above the top is skipped."""
    try:
        found = _imports(source, path)
    except (SyntaxError, ValueError):  # a broken file: hashed, not followed (importing it fails anyway)
        return []
    names: list[str] = []
    for level, module, fromlist in found:
        if level:
            parts = package.split(".") if package else []
            if level - 1 >= len(parts):
                continue
            base = ".".join(parts[: len(parts) - (level - 1)])
            module = f"{base}.{module}" if module else base
        names.append(module)
        names += [f"{module}.{item}" for item in fromlist if item != "*"]
    return names


def _imports(source: bytes, path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """Every import statement in a module's code, functions included, as (level, module, fromlist): `import
    a.b` gives (0, "a.b", ()), `from a import b` (0, "a", ("b",)), `from ..c import d` (2, "c", ("d",)).
    Read from the compiled bytecode, not from ast.parse: CPython 3.11's ast.parse is not thread-safe (its
    recursion-depth check is shared by threads, so a paramiko thread formatting a traceback at the same moment
    raised "SystemError: AST constructor recursion depth mismatch" in CI)."""
    found: list[tuple[int, str, tuple[str, ...]]] = []
    todo = [compile(source, str(path), "exec", dont_inherit=True)]
    while todo:
        code = todo.pop()
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        recent: list[dis.Instruction] = []
        for ins in dis.get_instructions(code):
            if ins.opname == "IMPORT_NAME":  # after LOAD_CONST level, LOAD_CONST fromlist
                consts = [i.argval for i in recent if i.opname == "LOAD_CONST"]
                level, fromlist = consts if len(consts) == 2 else (0, None)
                found.append((int(level or 0), str(ins.argval), tuple(fromlist or ())))
            recent = [*recent[-1:], ins]
    return found


class _ModuleFinder:
    """Finds modules by name without importing them (importlib.util.find_spec would import a submodule's
    parent packages: torch, for `from torch import nn`), and says which are the user's own code."""

    def __init__(self) -> None:
        self._specs: dict[str, ModuleSpec | None] = {}
        edgekit_dir = Path(os.path.realpath(edgekit.__file__)).parent
        self._edgekit = (edgekit_dir, edgekit_dir / "zoo")

    def spec(self, name: str) -> ModuleSpec | None:
        if name not in self._specs:
            self._specs[name] = self._find(name)
        return self._specs[name]

    def _find(self, name: str) -> ModuleSpec | None:
        parent, _, _ = name.rpartition(".")
        if not parent:
            if name in sys.builtin_module_names:
                return None
            try:  # a top-level name: the finders on sys.meta_path locate it without importing anything
                return importlib.util.find_spec(name)
            except (ImportError, ValueError):
                return None
        outer = self.spec(parent)
        if outer is None or outer.submodule_search_locations is None:
            return None  # not a package (`from a import b`: b is a name in a, not a module)
        try:
            return importlib.machinery.PathFinder.find_spec(name, list(outer.submodule_search_locations))
        except (ImportError, ValueError):
            return None

    def user_module(self, name: str) -> tuple[str, Path, bool] | None:
        """(name, file, is a package) if `name` is a module of the user's own code, else None."""
        top = self.spec(name.partition(".")[0])
        if top is None or (top.origin and top.has_location and installed(Path(top.origin))):
            return None  # torch.nn and the like are never looked for
        spec = self.spec(name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            return None
        path = Path(spec.origin)
        return (name, path, spec.submodule_search_locations is not None) if self._is_user(path) else None

    def parents(self, name: str) -> list[tuple[str, Path, bool]]:
        """The user's packages above module `name` (importing a.b.c runs a and a.b first)."""
        parts = name.split(".")
        found = [self.user_module(".".join(parts[:i])) for i in range(1, len(parts))]
        return [f for f in found if f is not None]

    def _is_user(self, path: Path) -> bool:
        if installed(path):
            return False
        real = Path(os.path.realpath(path))
        edgekit_dir, zoo = self._edgekit
        return not real.is_relative_to(edgekit_dir) or real.is_relative_to(zoo)
