"""Does the ONNX exported from a PyTorch module reproduce it? The module and onnxruntime run on the same inputs of
the recipe's own kind (as a Keras source's tf2onnx export is checked in edgekit.convert.keras_child); a mismatch
past EXPORT_CHECK_MAX_ABS is a ConversionError naming its likely cause, control flow frozen by tracing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.convert.onnx_export import EXPORT_CHECK_INPUTS, EXPORT_CHECK_MAX_ABS, export_difference
from edgekit.errors import ConversionError, RecipeError
from edgekit.recipe import Recipe, TorchSource

FROZEN_FLOW_HINT = (
    "torch.onnx.export records the operations one input took (the first evaluation input): Python control flow "
    "on tensor values (`if x.mean() > 0.1:`), .item() and data-dependent shapes are frozen to that input's path; "
    "use torch.where (both branches computed) or make the branch static, or save it with torch.export "
    "(torch.export.save(torch.export.export(model, (example,)), 'model.pt2')) and give that file (model: {kind: "
    "torch, path: model.pt2}): nothing is traced then"
)


def check_inputs(recipe: Recipe) -> tuple[Any, str]:
    """Up to EXPORT_CHECK_INPUTS batches (k, *input.shape) of the recipe's own kind of input, float32, and what they are:
    its evaluation inputs when cheap to get (random, .npy, a few images of the folder), else seeded inputs in the
    range its preprocessing gives (raw 0..255 images preprocessed; uniform 0..1 for an input that is no image)."""
    import numpy as np

    from edgekit.convert import calibration, shaping
    from edgekit.recipe import BuilderData, ImagesData, NpyData

    source = recipe.evaluation.data
    batch = recipe.input.shape[0]
    wanted = EXPORT_CHECK_INPUTS * batch
    field = "evaluation.data"
    if isinstance(source, BuilderData):  # the user's own code, which may be slow: not run twice
        rng = np.random.default_rng(0)
        try:
            h, w, c = shaping.hwc(recipe, field)
        except RecipeError:
            inputs = rng.uniform(0, 1, (wanted, *recipe.input.shape[1:])).astype(np.float32)
        else:
            raw = rng.integers(0, 256, (wanted, h, w, c), dtype=np.uint8)
            inputs = shaping.to_inputs(raw, recipe, field)
        kind = "seeded input in the range of its preprocessing"
    else:
        if isinstance(source, ImagesData):  # a few of the folder's images, not every one
            few = source.model_copy(update={"samples": min(source.samples or wanted, wanted)})
            try:
                inputs, _ = calibration.load_data(few, recipe, field)
            except RecipeError:  # a folder holding fewer: all of them
                inputs, _ = calibration.load_data(source, recipe, field)
        elif isinstance(source, NpyData):
            inputs, _ = calibration.load_data(source, recipe, field)
        else:  # random: the first samples are the same whatever the count
            inputs, _ = calibration.load_data(
                source.model_copy(update={"samples": min(source.samples, wanted)}), recipe, field
            )
        kind = "evaluation input"
    inputs = np.asarray(inputs, dtype=np.float32)[:wanted]
    count = max(1, len(inputs) // batch)
    order = np.arange(count * batch) % len(inputs)  # fewer samples than a batch: repeated
    return np.ascontiguousarray(inputs[order].reshape(count, *recipe.input.shape)), kind


def check_export(
    model: Any, onnx_path: Path, batches: Any, kind: str, recipe: Recipe, src: TorchSource, tracer: list[str]
) -> dict[str, Any]:
    """The module and onnxruntime on the same inputs: the worst output difference relative to the outputs'
    magnitude; past EXPORT_CHECK_MAX_ABS a ConversionError (the export does not reproduce the model)."""
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
        got = sess.run(None, {name: x})
        for w, g in zip(want, got, strict=False):
            err = export_difference(w, g)
            worst = max(worst, err)
            if not err <= EXPORT_CHECK_MAX_ABS:
                told = f"; the tracer warned: {tracer[0]}" if tracer else ""
                raise ConversionError(
                    f"the ONNX exported from {src.label} does not reproduce it: on {kind} {i + 1} of "
                    f"{len(batches)} its outputs differ from PyTorch's by {err:.3g} (max abs, relative to the "
                    f"outputs' size; float rounding stays below {EXPORT_CHECK_MAX_ABS:g}){told}",
                    where=str(recipe.path),
                    hint=FROZEN_FLOW_HINT,
                )
    return {"max_abs": worst, "inputs": len(batches), "on": kind}


def returned_tensors(value: Any) -> list[Any]:
    """The tensors a module returned, as the exporter flattens them: tuples, lists, dict values."""
    import torch

    if isinstance(value, (tuple, list)):
        return [t for v in value for t in returned_tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in returned_tensors(v)]
    return [value] if isinstance(value, torch.Tensor) else []
