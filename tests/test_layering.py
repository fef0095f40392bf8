"""How edgekit's parts depend on each other: what a module loads when imported."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType


def _loads(module: str, heavy: str) -> bool:
    """Whether importing `module` in a fresh interpreter puts `heavy` in sys.modules."""
    code = f"import sys, {module}; print({heavy!r} in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.strip() == "True"


def test_local_transport_does_not_load_paramiko() -> None:
    """The host side of every comparison needs no SSH library (sha256_file lives in transport/base.py)."""
    assert not _loads("edgekit.transport.local", "paramiko")
    assert not _loads("edgekit.transport", "paramiko")
    assert _loads("edgekit.transport.ssh", "paramiko")  # the check itself can see paramiko


def test_target_is_configuration_only() -> None:
    """Loading targets needs no transport, emulator or lab code (and no SSH library until ~/.ssh/config is read)."""
    for loaded in ("edgekit.transport", "edgekit.emu", "edgekit.lab", "paramiko"):
        assert not _loads("edgekit.target", loaded), loaded


def _import_graph() -> ModuleType:
    """bench/import_graph.py (the measuring script) as a module."""
    path = Path(__file__).resolve().parent.parent / "bench" / "import_graph.py"
    spec = importlib.util.spec_from_file_location("import_graph", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


# Imports that still go against the layering, each closing a cycle between edgekit's top-level packages (with
# them, one cycle through 12 packages). Each is inside a function. Fix one, then remove it here: the test fails on a
# listed edge that no longer exists, and on any cycle the list does not explain.
KNOWN_BACK_EDGES = {
    (
        "formats",
        "runtimes",
    ): "Format.runtime asks the runtime registry (formats.py); runtimes build on formats",
    ("runtimes", "convert"): "the ncnn runtime runs models through convert/ncnn/runtime.py's NcnnModel",
    (
        "convert",
        "fidelity",
    ): "the conversion pipeline runs the fidelity check, which reads convert's artifacts",
    (
        "emu",
        "lab",
    ): "emu.device.ensure_device acquires lab places too, and the lab's test rig builds emulated boards",
}


def test_no_import_cycle_between_edgekits_packages_but_the_known_back_edges() -> None:
    graph_module = _import_graph()
    graph = graph_module.graph(graph_module.edges())
    for source, target in KNOWN_BACK_EDGES:
        assert target in graph.get(source, set()), (
            f"{source} -> {target} is gone: remove it from KNOWN_BACK_EDGES"
        )
        graph[source].discard(target)
    cycles = graph_module.cycles(graph)
    examples = [" -> ".join(graph_module.shortest_cycle(graph, c[0], set(c))) for c in cycles]
    assert not cycles, (
        f"import cycles between edgekit's packages (python bench/import_graph.py --edges): {examples}"
    )


def test_target_and_transport_are_in_no_import_cycle() -> None:
    """target/ is configuration and transport/ only connects to what a target says: neither is in any cycle,
    counting imports inside functions."""
    graph_module = _import_graph()
    tangled = {
        node
        for component in graph_module.cycles(graph_module.graph(graph_module.edges()))
        for node in component
    }
    assert not tangled & {"target", "transport", "errors", "paths", "results"}, tangled


def test_the_graph_counts_imports_inside_functions_and_skips_type_checking_ones(tmp_path: Path) -> None:
    graph_module = _import_graph()
    pkg = tmp_path / "edgekit"
    (pkg / "a").mkdir(parents=True)
    (pkg / "a" / "__init__.py").write_text("def f():\n    from edgekit.b import x\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from edgekit.a import y\nfrom . import c\n"
    )
    (pkg / "c.py").write_text("import edgekit.a\n")
    found = {(e.source, e.target, e.lazy) for e in graph_module.edges(pkg)}
    assert found == {("a", "b", True), ("b", "c", False), ("c", "a", False)}
    assert graph_module.cycles(graph_module.graph(graph_module.edges(pkg))) == [["a", "b", "c"]]
