"""The ops of a SavedModel that reach outside the model, found before TensorFlow loads it.

A SavedModel is a graph TensorFlow runs: its serving function (which the Keras child calls to check the export),
the loader's restore and init functions, and every function they call can hold ops that write or read files
(WriteFile writes any path, gs:// too), run Python (PyFunc), send tensors to debug URLs, or read data sets from
files. Keras's safe mode covers .keras/.h5 files only; `tf.saved_model.load` has no such mode. So the child reads
saved_model.pb as the loader does (`loader_impl.parse_saved_model`: .pb or .pbtxt) and refuses a model holding any
op of DENIED (the lists: edgekit.convert.savedmodel_denied), or any node with a string attribute named like a file, folder or URL (PATH_ATTR: an op's kernel opens
FixedUnigramCandidateSampler's vocab_file), in the top-level graph or in any function of its library (reachable or
not: the loader registers them all, and one function calls another through attributes).

A deny-list, not an allow-list: Keras exports use hundreds of compute ops (and TensorFlow adds some with each
release, as DisableCopyOnRead), while the ops that touch files, processes or Python are a few named families;
every op TensorFlow registers (tf.raw_ops and the ops outside it) is checked against them by
tests/test_savedmodel_ops.py, so a new file op of a newer TensorFlow fails that test until it is sorted into DENIED
or LOOKALIKES (and a new path-like attribute until it is refused or reviewed).

Checkpoint ops (SaveV2, RestoreV2, MergeV2Checkpoints...) are how the saver stores variables, so they are allowed
where the saver (the meta graph's `saver_def`) has them: in the functions its top-level nodes call (TensorFlow 2:
`__inference__traced_save/_restore`, which nothing else may call; writes in the save function only, as the loader
runs the restore) or, in a TensorFlow 1 graph, in the nodes its save tensor and restore op depend on (no write
under the restore op), when nothing outside the saver, no signature and no collection depends on them. Anywhere
else they write or read a checkpoint at a path the model chooses.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekit.convert.savedmodel_denied import (
    CHECKPOINT,
    DENIED,
    HARMLESS_PATH_ATTRS,
    PATH_ATTR,
    RESTORES,
    STREAMS,
    WRITES,
)


@dataclass(frozen=True)
class Refusal:
    """One op the check refuses: its type, its node, the function holding it (None: the top-level graph)."""

    op: str
    node: str
    function: str | None
    why: str

    def where(self) -> str:
        return f"function '{self.function}'" if self.function else "the top-level graph"


def refusals(folder: Path) -> list[Refusal]:
    """The ops of the SavedModel in `folder` that reach outside the model ([] when none), read without loading."""
    from tensorflow.python.saved_model import loader_impl

    return saved_model_refusals(loader_impl.parse_saved_model(str(folder)))


def saved_model_refusals(saved_model: Any) -> list[Refusal]:
    found: list[Refusal] = []
    for meta in saved_model.meta_graphs:
        found.extend(_meta_graph_refusals(meta))
    return found


def _meta_graph_refusals(meta: Any) -> list[Refusal]:
    graph = meta.graph_def
    saver_nodes = {
        _node_name(name) for name in (meta.saver_def.restore_op_name, meta.saver_def.save_tensor_name) if name
    }
    top = {node.name: node for node in graph.node}
    saver_functions = {fn for name in saver_nodes if name in top for fn in _called(top[name])}
    restore = _node_name(meta.saver_def.restore_op_name)
    restore_functions = set(_called(top[restore])) if restore in top else set()
    save_functions = saver_functions - restore_functions
    found: list[Refusal] = []
    for fn in graph.library.function:
        name = fn.signature.name
        # the loader runs the restore function only: checkpoint writes are allowed in the save function alone
        allowed = RESTORES if name in restore_functions else WRITES if name in save_functions else frozenset()
        for node in fn.node_def:
            found.extend(_node_refusals(node, name, saver_functions, allowed))
    saver_closure = _ancestors(top, saver_nodes)
    for node in graph.node:
        calls_ok = node.name in saver_nodes  # the saver's own calls of its functions
        found.extend(_node_refusals(node, None, set() if calls_ok else saver_functions, CHECKPOINT))
    found.extend(_top_level_checkpoint_refusals(meta, top, saver_closure, saver_functions))
    for node_name in sorted(_ancestors(top, [restore]) if restore in top else ()):
        if top[node_name].op in WRITES:  # the restore the loader runs would write a checkpoint
            found.append(
                Refusal(top[node_name].op, node_name, None, "writes a checkpoint when the saver restores")
            )
    object_graph = str(meta.object_graph_def)
    for name in sorted(saver_functions):
        if f'"{name}"' in object_graph:
            found.append(
                Refusal("(saver function)", name, name, "the object graph names the saver's function")
            )
    return found


def _node_refusals(
    node: Any, function: str | None, saver_functions: set[str], allowed: frozenset[str]
) -> Iterator[Refusal]:
    if node.op in DENIED and node.op not in allowed:
        yield Refusal(node.op, node.name, function, DENIED[node.op])
    elif attr := _path_attr(node):
        yield Refusal(node.op, node.name, function, f"reads or writes the file its attribute {attr} names")
    if node.op == "PrintV2" and _print_to_file(node):
        yield Refusal(node.op, node.name, function, "prints to a file")
    for called in _called(node):
        if called in saver_functions:
            yield Refusal(node.op, node.name, function, f"calls the saver's function '{called}'")


def _top_level_checkpoint_refusals(
    meta: Any, top: dict[str, Any], closure: set[str], saver_functions: set[str]
) -> Iterator[Refusal]:
    """Checkpoint ops in the top-level graph (TensorFlow 1's saver: save/SaveV2, save/RestoreV2): refused unless
    they are the saver's, nothing outside the saver depends on them, and no signature or collection names a node
    that does (running it would save or restore at the file name the graph holds)."""
    holders = {
        name
        for name, node in top.items()
        if node.op in CHECKPOINT or any(fn in saver_functions for fn in _called(node))
    }
    if not holders:
        return
    users: dict[str, set[str]] = {}
    for name, node in top.items():
        for inp in node.input:
            users.setdefault(_node_name(inp), set()).add(name)
    dependent = set(holders)
    todo = list(holders)
    while todo:
        for user in users.get(todo.pop(), ()):
            if user not in dependent:
                dependent.add(user)
                todo.append(user)
    named = set(_named_nodes(meta))
    for name in sorted(dependent):
        node = top[name]
        if name not in closure:
            yield Refusal(node.op, name, None, "depends on a checkpoint op outside the saver")
        elif name in named:
            yield Refusal(
                node.op, name, None, "is run by a signature or collection: a checkpoint save or restore"
            )


def _named_nodes(meta: Any) -> Iterator[str]:
    """Nodes a signature or a collection names (what the TensorFlow 1 loader and a signature call run)."""
    for sig in meta.signature_def.values():
        for info in (*sig.inputs.values(), *sig.outputs.values()):
            if info.name:
                yield _node_name(info.name)
    for collection in meta.collection_def.values():
        for name in collection.node_list.value:
            yield _node_name(name)


def _ancestors(top: dict[str, Any], roots: Iterable[str]) -> set[str]:
    seen: set[str] = set()
    todo = [r for r in roots if r in top]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_node_name(i) for i in top[name].input if _node_name(i) in top)
    return seen


def _node_name(tensor: str) -> str:
    """'^a' / 'a:0' / 'a:out:0' (a function body's output) -> 'a'."""
    return tensor.lstrip("^").split(":", 1)[0]


def _called(node: Any) -> Iterator[str]:
    """The functions a node calls through its attributes (f, then_branch, body, a list of branches...)."""
    for value in node.attr.values():
        yield from _attr_functions(value)


def _attr_functions(value: Any) -> Iterator[str]:
    if value.HasField("func"):
        yield value.func.name
        for inner in value.func.attr.values():
            yield from _attr_functions(inner)
    if value.HasField("list"):
        for func in value.list.func:
            yield func.name
            for inner in func.attr.values():
                yield from _attr_functions(inner)


def _path_attr(node: Any) -> str | None:
    """The first attribute of `node` named like a file, folder or URL that holds a path (a non-empty string, in a
    list too) or a placeholder (the path comes from the caller), or None."""
    for name in sorted(node.attr):
        if not PATH_ATTR.search(name) or name in HARMLESS_PATH_ATTRS:
            continue
        value = node.attr[name]
        if value.placeholder or value.s or any(value.list.s):
            return str(name)
    return None


def _print_to_file(node: Any) -> bool:
    stream = (
        node.attr["output_stream"].s.decode(errors="replace") if "output_stream" in node.attr else "stderr"
    )
    return stream not in STREAMS


def refusal_text(found: list[Refusal]) -> tuple[str, str]:
    """(message, hint) of the InputDataError for a SavedModel holding `found` (the error's `where` names it)."""
    first = found[0]
    others = sorted({r.op for r in found[1:]} - {first.op})
    more = f"; also {', '.join(others)}" if others else ""
    message = (
        f"SavedModelError: the model holds the TensorFlow op {first.op} (node '{first.node}' in "
        f"{first.where()}), which {first.why}{more}: edgekit does not load a SavedModel that touches files, "
        "processes or Python (loading it and calling its serving function would run it)"
    )
    hint = (
        "export the model without that op (a serving function computes its outputs from its input and "
        "variables only), or convert it to ONNX yourself where you trust it and give that file "
        "(model: {kind: onnx, path: ...})"
    )
    return message, hint
