"""Whether an ONNX model is one edgekit takes, said before anything is converted: one float32 input with the
recipe's name and shape, the recipe's named outputs present, two outputs for a detector, and layers that compute
something."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.convert.onnx_file import read_onnx
from edgekit.errors import InputDataError, RecipeError
from edgekit.recipe import Recipe, Task


def _dtype_name(elem: int) -> str:
    """An ONNX element type as numpy names it (int64, uint8, float16, ...)."""
    import onnx

    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem).name)
    except (KeyError, ValueError, TypeError):
        return f"element type {elem}"


def check_io(onnx_path: Path, recipe: Recipe) -> None:
    """The ONNX model's single input must have the recipe's name and shape; named outputs must exist."""
    check_graph(read_onnx(onnx_path, str(recipe.path)).graph, recipe)


def check_graph(graph: Any, recipe: Recipe) -> None:
    """check_io on a graph already read."""
    inits = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    where = str(recipe.path)
    if len(inputs) != 1:
        listed = ", ".join(repr(i.name) for i in inputs[:8]) + (", ..." if len(inputs) > 8 else "")
        raise RecipeError(
            f"the model has {len(inputs)} inputs"
            + (f" ({listed})" if inputs else "")
            + "; edgekit handles single-input models",
            where=where,
            hint="export the model with one input (fold the others in as constants, or a wrapper that fills them "
            f"in), named as the recipe's input.name `{recipe.input.name}`"
            if inputs
            else "the graph's inputs are all initializers: export it with its input as a graph input",
        )
    inp = inputs[0]
    elem = inp.type.tensor_type.elem_type
    if elem != 1:  # TensorProto.FLOAT: calibration, evaluation and every runtime here feed float32
        kind = _dtype_name(elem)
        raise RecipeError(
            f"the model's input {inp.name!r} is {kind}; edgekit feeds float32 tensors (images, features)",
            where=where,
            hint="export the model with a float32 input (cast inside the model if it needs integers, e.g. ids)",
        )
    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim)
    if inp.name != recipe.input.name:
        raise RecipeError(
            f"field `input.name`: the model's input is called {inp.name!r}, the recipe says "
            f"{recipe.input.name!r}",
            where=where,
            hint=f"set input.name: {inp.name}",
        )
    want = recipe.input.shape
    if len(dims) != len(want) or any(d > 0 and d != r for d, r in zip(dims, want)):
        raise RecipeError(
            f"field `input.shape`: the model's input shape is {list(dims)} (-1 = dynamic), the "
            f"recipe says {list(recipe.input.shape)}",
            where=where,
        )
    if all(n.op_type in ("Identity", "Dropout") for n in graph.node):  # no converter makes a model of this
        raise InputDataError(
            "the model computes nothing: its outputs are its input (or constants) through no-op nodes only",
            where=where,
            hint="export the trained model itself (its layers), not a pass-through",
        )
    names = [o.name for o in graph.output]
    missing = [n for n in recipe.outputs if n not in names]
    if missing:
        raise RecipeError(f"field `outputs`: {missing} not among the model's outputs {names}", where=where)
    used = list(recipe.outputs) or names
    if (
        recipe.task is Task.DETECT and len(used) != 2
    ):  # said before converting, not as a failed fidelity check
        raise RecipeError(
            f"field `task`: detect needs two outputs, `boxes` [1, N, 4] and `scores` [1, N, classes]; the model "
            f"has {len(used)}: {used}",
            where=where,
            hint="set task: classify (one output of class scores) or generic, or export the detector's boxes and "
            "scores (see edgekit/zoo/yolov5_lite.py)",
        )
