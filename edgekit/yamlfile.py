"""Reading a YAML file someone else may have written: bounded in size, in alias expansion and in time.

Recipes and targets are shared files. A 585-byte alias bomb ("billion laughs") expands past gigabytes once
anything walks it (the recipe digest, an error message), and the pure-Python loader takes minutes on a 17 MB
file. So a file is read only up to a size limit, composed (aliases stay shared nodes, nothing expands), its
expanded size counted on the node graph (memoised, so the count itself never expands), and only then built
into Python objects, with the C safe loader when PyYAML has it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from edgekit.errors import EdgekitError

MAX_FILE_BYTES = 1 << 20  # 1 MiB: the largest shipped recipe is ~3 KB
MAX_EXPANDED_NODES = 100_000  # scalars + collections after every alias is expanded
MAX_DEPTH = 64  # nested collections; the C composer recurses (and crashes) on deep nesting

SafeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_yaml(
    path: Path,
    error: type[EdgekitError],
    *,
    max_bytes: int = MAX_FILE_BYTES,
    max_nodes: int = MAX_EXPANDED_NODES,
) -> Any:
    """The document in `path`, or `error` naming the file and what limit it broke."""
    where = str(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror or exc}", where=where) from None
    if len(data) > max_bytes:
        raise error(
            f"file is larger than {max_bytes // 1024} KiB; refused",
            where=where,
            hint="recipes and targets are small settings files; is this the right file?",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"not UTF-8 text (byte {exc.start}: {data[exc.start : exc.start + 1]!r})",
            where=where,
            hint="save the file as UTF-8",
        ) from None
    return parse_yaml(text, where, error, max_nodes=max_nodes)


def parse_yaml(
    text: str, where: str, error: type[EdgekitError], *, max_nodes: int = MAX_EXPANDED_NODES
) -> Any:
    """Parse one YAML document, refusing deep nesting, recursive aliases and alias graphs that expand beyond
    `max_nodes`."""
    _check_depth(text, where, error)
    loader = SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        expanded, shared = _expanded_size(node, max_nodes)
        if expanded > max_nodes and shared:
            raise error(
                f"aliases expand to more than {max_nodes} YAML nodes; refused (an alias bomb?)",
                where=where,
                hint="write the values out instead of nesting *aliases",
            )
        if expanded > max_nodes:  # no alias: the file itself is that large (a data dump, not settings)
            raise error(
                f"more than {max_nodes} YAML nodes (keys, values and list items); refused",
                where=where,
                hint="recipes and targets are small settings files; is this the right file?",
            )
        _check_duplicate_keys(node, where, error)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise error(f"not valid YAML: {_said(exc)}", where=where) from None
    finally:
        loader.dispose()


def _said(exc: yaml.YAMLError) -> str:
    """PyYAML's error by line and column of the file (`where` names it): its own text says `in "<unicode
    string>"`, as it parsed a string."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return _short(str(exc))

    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    text = exc.problem or exc.context or "unreadable"
    if exc.problem_mark is not None:
        text += f" at {at(exc.problem_mark)}"
    if exc.problem and exc.context:
        same = exc.context_mark is None or (
            exc.problem_mark is not None and at(exc.context_mark) == at(exc.problem_mark)
        )
        text += f" ({exc.context}{'' if same else f' started at {at(exc.context_mark)}'})"
    return _short(text)


def _check_duplicate_keys(root: yaml.Node, where: str, error: type[EdgekitError]) -> None:
    """A key given twice in one mapping is refused: YAML loaders keep the last one silently, so a second `name:`
    or `formats:` further down a recipe would quietly win. Walks each distinct node once (aliases are shared)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            keys: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                    line = key.start_mark.line + 1
                    if key.value in keys:
                        raise error(
                            f"key `{key.value}` given twice in one mapping (lines {keys[key.value]} and {line})",
                            where=where,
                            hint="keep one of them: YAML would take the last silently",
                        )
                    keys[key.value] = line
                stack += [key, value]
        elif isinstance(node, yaml.SequenceNode):
            stack += node.value


def _check_depth(text: str, where: str, error: type[EdgekitError]) -> None:
    """Walk the event stream (flat, no recursion) and refuse collections nested deeper than MAX_DEPTH."""
    loader = SafeLoader(text)
    depth = 0
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise error(f"collections nested deeper than {MAX_DEPTH} levels; refused", where=where)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError as exc:
        raise error(f"not valid YAML: {_said(exc)}", where=where) from None
    finally:
        loader.dispose()


def _expanded_size(root: yaml.Node, limit: int) -> tuple[int, bool]:
    """Nodes in the document with every alias expanded, counted once per distinct node (memoised), and whether
    any node was reached twice (an alias: the composer shares the anchored node).

    Stops early once past `limit`; a node reached again while it is being counted is a recursive alias."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    shared = False

    def size(node: yaml.Node) -> int:
        nonlocal shared
        key = id(node)
        if key in sizes:
            shared = True
            return sizes[key]
        if key in active:
            raise yaml.YAMLError("a recursive alias (an anchor used inside itself)")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [part for pair in node.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        active.discard(key)
        sizes[key] = total
        return total

    return size(root), shared


def _short(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."
