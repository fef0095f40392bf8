"""Does the ONNX exported from a PyTorch module reproduce it? The module and onnxruntime run on the same inputs of
the recipe's own kind (as a Keras source's tf2onnx export is checked in edgekit.convert.keras_child); a mismatch
past EXPORT_CHECK_MAX_ABS is a ConversionError naming its likely cause, control flow frozen by tracing; a module
whose own outputs are NaN or infinite is an InputDataError saying so (the model is wrong, not its export)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from edgekit.convert.onnx_export import EXPORT_CHECK_MAX_ABS, export_difference
from edgekit.errors import ConversionError, InputDataError, RecipeError
from edgekit.recipe import Recipe, TorchSource

FROZEN_FLOW_HINT = (
    "torch.onnx.export records the operations one input took (the first evaluation input): Python control flow "
    "on tensor values (`if x.mean() > 0.1:`), .item() and data-dependent shapes are frozen to that input's path; "
    "use torch.where (both branches computed) or make the branch static, or save it with torch.export "
    "(torch.export.save(torch.export.export(model, (example,)), 'model.pt2')) and give that file (model: {kind: "
    "torch, path: model.pt2}): nothing is traced then"
)


# The export is checked on every evaluation input the recipe has, up to this many (evenly spread over them beyond):
# a model whose code branches on its input is caught on whichever input takes the other path, not only when one of
# the first few does. Each is a run of the module and one of onnxruntime, as each artifact's evaluation is.
EXPORT_CHECK_MAX_INPUTS = 64
# What the tracer says when the module's code turned a tensor into a Python value (bool, number, index): the
# control flow that value steered is frozen into the ONNX, whatever the inputs it was checked on
FROZEN_VALUE = "Converting a tensor to a Python"


def check_inputs(recipe: Recipe) -> tuple[Any, str, int]:
    """The batches (k, *input.shape) the export is traced and checked on, float32, what they are and how many
    batches the recipe's evaluation data holds: every evaluation input (random, .npy, the folder's images), up to
    EXPORT_CHECK_MAX_INPUTS (evenly spread over them beyond: random ones, the first); for data from a builder, the
    user's own code which may be slow (not run twice), as many seeded inputs in the range its preprocessing gives
    (raw 0..255 images preprocessed; uniform 0..1 for an input that is no image)."""
    import numpy as np

    from edgekit.convert import calibration, shaping
    from edgekit.convert.image_folder import image_files
    from edgekit.recipe import BuilderData, ImagesData, NpyData

    source = recipe.evaluation.data
    batch = recipe.input.shape[0]
    wanted = EXPORT_CHECK_MAX_INPUTS * batch
    field = "evaluation.data"
    if isinstance(source, BuilderData):
        rng = np.random.default_rng(0)
        seeded = min(source.samples, wanted)
        try:
            h, w, c = shaping.hwc(recipe, field)
        except RecipeError:
            inputs = rng.uniform(0, 1, (seeded, *recipe.input.shape[1:])).astype(np.float32)
        else:
            raw = rng.integers(0, 256, (seeded, h, w, c), dtype=np.uint8)
            inputs = shaping.to_inputs(raw, recipe, field)
        kind, total = "seeded input in the range of its preprocessing", source.samples
    else:
        if isinstance(
            source, ImagesData
        ):  # the folder's images, spread over it past `wanted` (as samples: is)
            total = source.samples or len(image_files(source.path, field, str(recipe.path)))
            spread = source.model_copy(update={"samples": min(total, wanted)})
            try:
                inputs, _ = calibration.load_data(spread, recipe, field)
            except RecipeError:  # a folder holding fewer (or none): its own error, as the evaluation says it
                inputs, _ = calibration.load_data(source, recipe, field)
        elif isinstance(source, NpyData):
            inputs, _ = calibration.load_data(source, recipe, field)
            total = len(inputs)
            if total > wanted:
                inputs = inputs[np.linspace(0, total - 1, wanted).round().astype(int)]
        else:  # random: the first samples are the same whatever the count
            total = source.samples
            inputs, _ = calibration.load_data(
                source.model_copy(update={"samples": min(source.samples, wanted)}), recipe, field
            )
        kind = "evaluation input"
    inputs = np.asarray(inputs, dtype=np.float32)[:wanted]
    count = max(1, len(inputs) // batch)
    order = np.arange(count * batch) % len(inputs)  # fewer samples than a batch: repeated
    batches = np.ascontiguousarray(inputs[order].reshape(count, *recipe.input.shape))
    return batches, kind, max(count, total // batch)


def frozen_flow(tracer: list[str]) -> list[str]:
    """The tracer's warnings that a tensor became a Python value (`if x.mean() > 0:`, .item(), int(x.shape...)
    of a traced value): where control flow may be frozen to the path the traced input took."""
    return [w for w in tracer if FROZEN_VALUE in w]


# A frozen place ("FILE:LINE: message") inside an installed torch, for a meta.json written by another environment
_TORCH_PLACE = re.compile(r"[/\\](?:site|dist)-packages[/\\]torch[/\\]")


def in_torch(place: str) -> bool:
    """Is this tracer warning's place in torch's own code (nn.MultiheadAttention's `embed_dim != embed_dim_to_check`
    in torch/nn/functional.py)? There the tensors made Python values are shapes (traced as tensors), not the data:
    no branch the input steers, and nothing the user can change. Their code's own places are still said, and the
    export is checked against the module on every evaluation input either way."""
    import importlib.util

    if _TORCH_PLACE.search(place):
        return True
    spec = importlib.util.find_spec("torch")
    roots = list(spec.submodule_search_locations or []) if spec else []
    return any(place.startswith(root.rstrip(os.sep) + os.sep) for root in roots)


def check_export(
    model: Any,
    onnx_path: Path,
    batches: Any,
    kind: str,
    recipe: Recipe,
    src: TorchSource,
    tracer: list[str],
    total: int | None = None,
) -> dict[str, Any]:
    """The module and onnxruntime on the same inputs: the worst output difference relative to the outputs'
    magnitude; past EXPORT_CHECK_MAX_ABS a ConversionError (the export does not reproduce the model); the module's
    own outputs not finite, an InputDataError (_check_finite). The record
    (meta.json's `check`) holds how many inputs it ran on, of how many (`of`), and the tracer's warnings that
    control flow was frozen (`frozen`: said with every run's match, see torch_export.describe)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    worst = 0.0
    for i, x in enumerate(batches):
        with torch.no_grad():
            want = [
                t.detach().numpy().astype(np.float64) for t in returned_tensors(model(torch.from_numpy(x)))
            ]
        _check_finite(want, i, len(batches), kind, recipe, src)
        got = sess.run(None, {name: x})
        for w, g in zip(want, got, strict=False):
            err = export_difference(w, g)
            worst = max(worst, err)
            if not err <= EXPORT_CHECK_MAX_ABS:
                # the user's own places: torch's (nn.MultiheadAttention's shape checks) are no branch they steer
                mine = [w for w in tracer if not in_torch(w)]
                frozen = frozen_flow(mine) or mine
                told = f"; the tracer warned: {frozen[0]}" if frozen else ""
                raise ConversionError(
                    f"the ONNX exported from {src.label} does not reproduce it: on {kind} {i + 1} of "
                    f"{len(batches)} its outputs differ from PyTorch's by {err:.3g} (max abs, relative to the "
                    f"outputs' size; float rounding stays below {EXPORT_CHECK_MAX_ABS:g}){told}",
                    where=str(recipe.path),
                    hint=FROZEN_FLOW_HINT,
                )
    return {
        "max_abs": worst,
        "inputs": len(batches),
        "of": max(total or 0, len(batches)),
        "on": kind,
        "frozen": frozen_flow(tracer),
    }


def _check_finite(
    outputs: list[Any], i: int, count: int, kind: str, recipe: Recipe, src: TorchSource
) -> None:
    """PyTorch's own outputs on one input hold no NaN or infinity: a model computing NaN cannot be checked (NaN
    equals nothing), and its export was blamed for it, with the frozen-flow hint. An InputDataError (exit 2), as
    for a model that computes nothing: the model is what is wrong, not a converter."""
    from edgekit.fidelity.finite import NOT_FINITE_HINT, not_finite_message

    for j, out in enumerate(outputs):
        named = f"`{recipe.outputs[j]}`" if j < len(recipe.outputs) else f"{j + 1} of {len(outputs)}"
        said = not_finite_message(
            f"{kind} {i + 1} of {count}", src.label, named, out, "PyTorch's, before any export"
        )
        if said:
            raise InputDataError(said, where=str(recipe.path), hint=NOT_FINITE_HINT)


def returned_tensors(value: Any) -> list[Any]:
    """The tensors a module returned, as the exporter flattens them: tuples, lists, dict values."""
    import torch

    if isinstance(value, (tuple, list)):
        return [t for v in value for t in returned_tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in returned_tensors(v)]
    return [value] if isinstance(value, torch.Tensor) else []
