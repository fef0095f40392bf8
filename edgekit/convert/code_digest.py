"""Which code a PyTorch builder's model is made of, for the export's cache key: a digest of the builder's module
and every module of the user's own code it imports, transitively, and the versions of the installed
distributions that code imports (see builder_code), found without importing anything."""

from __future__ import annotations

import dis
import hashlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import logging
import os
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec
from pathlib import Path

import edgekit
from edgekit.pyfiles import direct_url, from_local_files, in_site_packages, installed

# What the builder's code digest reads at most: reading a module's imports costs ~12 ms a file (compiling it),
# so a model's own code (tens of modules) adds well under a second and the cap a few seconds to a torch recipe.
MAX_CODE_FILES = 400
MAX_CODE_BYTES = 8 << 20
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuilderCode:
    """What a builder's model is made of: `digest` of the code read, and `packages`, the installed distributions
    that code imports (name -> version), which stand for their code."""

    digest: str
    packages: dict[str, str] = field(default_factory=dict)


def builder_code_digest(builder: str) -> str:
    """builder_code's digest of the code read."""
    return builder_code(builder).digest


def builder_code(builder: str) -> BuilderCode:
    """sha256 of the builder's module and of every module of the user's own code it imports, transitively, and
    the versions of the installed distributions it imports: an edited model definition or an upgraded package it
    uses is exported again, an edit elsewhere is not.

    Followed: `import a.b`, `from a import b` (a, and a.b if it is a module) and relative imports (`from .blocks
    import f`, `from .. import x`), at module level or inside functions, read from the compiled bytecode; and
    the packages above each module (importing a.b runs a/__init__.py). Each module is read once, so an import
    cycle ends there. Names are located as Python's import would (sys.meta_path, sys.path) without importing.
    Read: a module outside the standard library's folders (a .py as its source; a .so or sourceless .pyc of the
    user's as its bytes; one inside a zip through its loader) and, in a site-packages or dist-packages folder,
    one that no version stands for: no distribution installed it (a folder on PYTHONPATH), or one installed from
    a local folder or file (`pip install .`: its version does not change with an edit; an editable install's
    files are the user's folder anyway); never edgekit's own code outside edgekit.zoo (the export is keyed by
    EXPORT_VERSION). Any other installed package is its distribution's name and version in `packages` (and its
    direct_url.json, which holds a VCS commit), not read: reading torch's or timm's code on every run would cost
    seconds, and a version changes when they do. The builder's own module is always read. Not seen: a module
    imported by a computed name (importlib.import_module(name)), data files the code reads, and the
    dependencies of the installed packages it imports, and what a compiled module (a .so, a sourceless .pyc: its
    own bytes are read) imports. Bounded by MAX_CODE_FILES modules and MAX_CODE_BYTES
    bytes: past either, the modules read so far make the digest and a warning says edits past them are not
    seen."""
    module = builder.partition(":")[0]
    finder = _ModuleFinder()
    packages = dict(finder.versions(module.partition(".")[0]) or {})
    root = finder.spec(module)
    if root is None or not root.origin:
        return BuilderCode("unknown", packages)
    if not root.origin.endswith(".py"):  # a compiled module (.so, a sourceless .pyc): its bytes are its code
        try:
            compiled = Path(root.origin).read_bytes()
        except OSError:
            return BuilderCode("unknown", packages)
        return BuilderCode(hashlib.sha256(b"compiled\0" + compiled).hexdigest(), packages)
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
        source = _read_module(finder, name, path)
        seen[name] = source
        total += len(source)
        package = name if is_package else name.rpartition(".")[0]
        for wanted in _imported_names(source, path, package):
            found = finder.user_module(wanted)
            if found is None:
                packages.update(finder.versions(wanted.partition(".")[0]) or {})
            elif found[0] not in seen:
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
    return BuilderCode(h.hexdigest(), dict(sorted(packages.items())))


def _read_module(finder: _ModuleFinder, name: str, path: Path) -> bytes:
    """A module's code as the digest reads it: its file's bytes, or through its loader (a module inside a zip on
    PYTHONPATH: its path is no file, and every version of it was hashed as the same placeholder). Code that
    cannot be read at all makes the digest unique to this run: exported again, never served stale."""
    try:
        return path.read_bytes()
    except OSError:
        pass
    spec = finder.spec(name)
    get_data = getattr(spec.loader, "get_data", None) if spec is not None else None
    if get_data is not None:
        try:
            return bytes(get_data(str(path)))
        except OSError:
            pass
    log.warning(
        "model code: %s (%s) cannot be read, so the PyTorch export's cache key cannot cover it: exported again "
        "on every run",
        name,
        path,
    )
    return b"\0unreadable\0" + os.urandom(16)


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
            if ins.opname in ("EXTENDED_ARG", "NOP", "CACHE"):
                continue  # past a module's 256th constant or name, LOAD_CONST comes after an EXTENDED_ARG
            recent = [*recent[-1:], ins]
    return found


class _ModuleFinder:
    """Finds modules by name without importing them (importlib.util.find_spec would import a submodule's
    parent packages: torch, for `from torch import nn`), and says which are the user's own code."""

    def __init__(self) -> None:
        self._specs: dict[str, ModuleSpec | None] = {}
        self._versions: dict[str, dict[str, str] | None] = {}
        self._by_top: Mapping[str, list[str]] | None = (
            None  # packages_distributions(), read if a name needs it
        )
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
        """(name, file, is a package) if `name` is a module whose code is read (builder_code), else None."""
        if self.versions(name.partition(".")[0]) is not None:
            return None  # torch.nn and the like are never looked for
        spec = self.spec(name)
        if spec is None or not spec.origin or spec.origin in ("built-in", "frozen"):
            return None  # a compiled module of the user's (a .so, a sourceless .pyc) is read as its bytes
        path = Path(spec.origin)
        return (name, path, spec.submodule_search_locations is not None) if self._is_user(path) else None

    def versions(self, top: str) -> dict[str, str] | None:
        """What stands for top-level module `top` instead of its code: the installed distributions that hold it
        (name -> version), {} for the standard library or a name not found, None when its code is read."""
        if top not in self._versions:
            self._versions[top] = self._stands_for(top)
        return self._versions[top]

    def _stands_for(self, top: str) -> dict[str, str] | None:
        spec = self.spec(top)
        if spec is None:
            return {}
        if spec.origin and spec.has_location:
            where = Path(spec.origin)  # a package's __init__.py sits in its folder, in the site folder
            site = where.parent.parent if spec.submodule_search_locations is not None else where.parent
        elif spec.submodule_search_locations:  # a namespace package: its first folder
            where = Path(next(iter(spec.submodule_search_locations)))
            site = where.parent
        else:
            return {}  # built in, frozen
        if not installed(where):
            return None  # the user's own code
        if not in_site_packages(where):
            return {}  # the standard library: Python's version
        dists = self._distributions(top, site)
        if not dists or any(from_local_files(d) for d in dists):
            return None  # no version stands for it: read as the user's own
        return {str(d.metadata["Name"]): _version(d) for d in dists}

    def _distributions(self, top: str, site: Path) -> list[importlib.metadata.Distribution]:
        """The distributions in folder `site` that installed top-level module `top`: the one named as the module
        (torch, timm, most), else those whose files hold it (cv2: opencv-python; PIL: pillow)."""

        def here(dist: importlib.metadata.Distribution) -> bool:
            return os.path.realpath(str(dist.locate_file(""))) == os.path.realpath(site)

        try:
            named = importlib.metadata.distribution(top)
            if here(named):
                return [named]
        except (importlib.metadata.PackageNotFoundError, ValueError):
            pass
        if self._by_top is None:
            self._by_top = importlib.metadata.packages_distributions()
        found = []
        for name in dict.fromkeys(self._by_top.get(top) or []):
            try:
                dist = importlib.metadata.distribution(name)
            except importlib.metadata.PackageNotFoundError:
                continue
            if here(dist):
                found.append(dist)
        return found

    def parents(self, name: str) -> list[tuple[str, Path, bool]]:
        """The user's packages above module `name` (importing a.b.c runs a and a.b first)."""
        parts = name.split(".")
        found = [self.user_module(".".join(parts[:i])) for i in range(1, len(parts))]
        return [f for f in found if f is not None]

    def _is_user(self, path: Path) -> bool:
        if installed(path) and not in_site_packages(path):
            return False  # the standard library's (a namespace package's folder there)
        real = Path(os.path.realpath(path))
        edgekit_dir, zoo = self._edgekit
        return not real.is_relative_to(edgekit_dir) or real.is_relative_to(zoo)


def _version(dist: importlib.metadata.Distribution) -> str:
    """Its version, with where it came from when not an index (a VCS commit, an archive's hash)."""
    url = direct_url(dist)
    return f"{dist.version} {json.dumps(url, sort_keys=True)}" if url else str(dist.version)
