"""The import graph between edgekit's top-level packages and modules (target, transport, emu, deploy, ...), and
its cycles.

Every `import` in edgekit/ counts, including the ones inside functions (a lazy import is still a dependency: it
only moves the ImportError to run time); imports under `if TYPE_CHECKING:` do not (they never run). A node is a
top-level name: edgekit/target/ is `target`, everything under edgekit/transport/ is `transport`.

    python bench/import_graph.py            # edges and cycles
    python bench/import_graph.py --edges    # also which file and line makes each edge

tests/test_import_graph.py fails on any cycle.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "edgekit"


@dataclass(frozen=True)
class Edge:
    source: str  # top-level node importing
    target: str  # top-level node imported
    where: str  # file:line
    lazy: bool  # inside a function


def node_of(module: str) -> str | None:
    """`edgekit.transport.ssh` -> `transport`; `edgekit` itself (its __init__) -> `edgekit`; others -> None."""
    parts = module.split(".")
    if parts[0] != "edgekit":
        return None
    return parts[1] if len(parts) > 1 else "edgekit"


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_pkg: bool, root: Path) -> Iterator[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import that can run."""

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[str, int, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.orelse:
                    yield from visit(stmt, in_function)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, in_function
            elif isinstance(child, ast.ImportFrom):
                yield from _from_targets(child, module, is_pkg, in_function, root)
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from visit(child, inner)

    yield from visit(tree, False)


def _from_targets(
    node: ast.ImportFrom, module: str, is_pkg: bool, in_function: bool, root: Path
) -> Iterator[tuple[str, int, bool]]:
    if node.level:
        base = module.split(".") if is_pkg else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        stem = ".".join(base + ([node.module] if node.module else []))
    else:
        stem = node.module or ""
    for (
        alias
    ) in node.names:  # `from edgekit import target` imports the module edgekit.target (a name is not one)
        submodule = stem == "edgekit" and (
            (root / f"{alias.name}.py").exists() or (root / alias.name).is_dir()
        )
        yield (f"{stem}.{alias.name}" if submodule else stem), node.lineno, in_function


def edges(root: Path = PACKAGE) -> list[Edge]:
    found: list[Edge] = []
    for path in sorted(root.rglob("*.py")):
        module = module_name(path, root)
        source = node_of(module)
        if source is None:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for imported, line, lazy in _imports(tree, module, path.name == "__init__.py", root):
            target = node_of(imported)
            if target is not None and target != source:
                found.append(Edge(source, target, f"{path.relative_to(root.parent)}:{line}", lazy))
    return found


def graph(found: list[Edge]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for e in found:
        out[e.source].add(e.target)
    return out


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), each sorted: every node of one
    reaches every other, so each component holds at least one cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    sys.setrecursionlimit(max(1000, sys.getrecursionlimit()))
    for v in sorted(set(g) | {w for ws in g.values() for w in ws}):
        if v not in index:
            strong(v)
    return sorted(components)


def shortest_cycle(g: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """One shortest cycle through `start` inside a component (breadth-first), for a readable example."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(g.get(v, ())):
            if w == start:
                return paths[v] + [start]
            if w in within and w not in paths:
                paths[w] = paths[v] + [w]
                queue.append(w)
    return []


def main(argv: list[str]) -> int:
    found = edges()
    g = graph(found)
    where: dict[tuple[str, str], list[Edge]] = defaultdict(list)
    for e in found:
        where[(e.source, e.target)].append(e)
    print(f"{len(g)} importing nodes, {sum(len(v) for v in g.values())} edges")
    for source in sorted(g):
        print(f"  {source} -> {', '.join(sorted(g[source]))}")
        if "--edges" in argv:
            for target in sorted(g[source]):
                for e in where[(source, target)]:
                    print(f"      {target:12} {e.where}{' (in a function)' if e.lazy else ''}")
    components = cycles(g)
    print(f"cycles: {len(components)} strongly connected component(s)")
    for comp in components:
        print(f"  {{{', '.join(comp)}}}")
        for v in comp:
            print(f"    e.g. {' -> '.join(shortest_cycle(g, v, set(comp)))}")
            break
        inner = sorted((s, t) for s in comp for t in g.get(s, ()) if t in comp)
        for s, t in inner:
            refs = where[(s, t)]
            lazy = all(e.lazy for e in refs)
            print(
                f"      {s} -> {t}: {refs[0].where}{' +' + str(len(refs) - 1) if len(refs) > 1 else ''}"
                f"{' (only in functions)' if lazy else ''}"
            )
    return 1 if components else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
