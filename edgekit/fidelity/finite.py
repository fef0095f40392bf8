"""A model whose own outputs are NaN or infinite cannot be checked (NaN equals nothing, so every artifact "missed"
its gate, each converter blamed) or converted: the words every route to the reference says it in, before any
artifact is judged (a PyTorch module's check in edgekit.convert.torch_check, a Keras model's in the TensorFlow
child, the reference ONNX's in edgekit.convert.fidelity_stage). Each raises it as the user's input (exit 2)."""

from __future__ import annotations

from typing import Any

import numpy as np

NOT_FINITE_HINT = (
    "check the weights (trained to NaN, or not loaded), the model's arithmetic on that input (a division by zero, "
    "log of 0 or sqrt of a negative, an overflow in float32) and the evaluation data's preprocessing; run the "
    "model on that input in Python to see where the values turn"
)


def not_finite(values: Any) -> str:
    """'362 NaN, 2 infinite': what of `values` is no finite number; '' when every value is (integer outputs
    always)."""
    a = np.asarray(values)
    if a.dtype.kind not in "fc":
        return ""
    nan = int(np.isnan(a).sum())
    bad = int((~np.isfinite(a)).sum())
    return ", ".join(f"{n} {label}" for n, label in ((nan, "NaN"), (bad - nan, "infinite")) if n)


def not_finite_message(on: str, model: str, output: str, values: Any, computed_by: str) -> str | None:
    """ "the model's own outputs are not finite: on evaluation input 1 of 4, nanout.onnx's output `y` [1, 3, 16,
    16] holds 768 NaN of its 768 values (onnxruntime's, before any conversion); ...": None when `values` (one
    input's output) are all finite."""
    what = not_finite(values)
    if not what:
        return None
    a = np.asarray(values)
    return (
        f"the model's own outputs are not finite: on {on}, {model}'s output {output} {list(a.shape)} holds {what} "
        f"of its {a.size} values ({computed_by}); a model that computes NaN or infinity cannot be checked or "
        "converted"
    )
