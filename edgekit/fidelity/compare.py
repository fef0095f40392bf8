"""Outputs compared across runtimes and machines: each artifact against the ONNX model, and ARM against host.

The same evaluation inputs go to the host and to every device; the agent returns each artifact's outputs as an
.npz (keys in output order, names in the Measurement). This module turns two such output sets into a
`Comparison`: max / mean abs error, cosine, and the task's agreement (top-1 for a classifier, boxes matched after
NMS for a detector) plus the task metric where the evaluation data has labels. The numbers are
`edgekit.fidelity.check.compare`'s, so a device's fidelity means exactly what the converter's check means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert.calibration import Labels
from edgekit.fidelity import check as fidelity
from edgekit.formats import Format
from edgekit.recipe import Recipe
from edgekit.results import Comparison, Measurement
from edgekit.runtimes import Outputs

METRIC_KEYS = (
    "top1",
    "top1_agreement",  # with the original model, labels or not
    "top1_reference",
    "top1_drop",
    "map50",
    "map50_95",
    "map50_reference",
    "map50_95_reference",
    "map50_drop",
    "map50_95_drop",
)


def load_outputs(npz: Path, measurement: Measurement) -> Outputs:
    """An agent's .npz as (name, array) pairs in the runtime's output order. The file is opened here: np.load
    leaves its own handle open when the file is not a zip archive (a truncated download)."""
    with open(npz, "rb") as handle:
        data = np.load(handle, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError(f"{npz.name} holds one array, not an .npz of outputs")
        with data:
            keys = measurement.output_keys or list(data.files)
            names = measurement.output_names or keys
            return [(name, np.asarray(data[key])) for name, key in zip(names, keys)]


def compare(
    reference: Outputs,
    got: Outputs,
    *,
    recipe: Recipe,
    labels: Labels | None,
    artifact: str,
    target: str,
    reference_name: str,
    gate: bool = False,
) -> Comparison:
    """One Comparison; with `gate`, the recipe's fidelity gates for the artifact's precision are applied."""
    n = min(len(reference[0][1]), len(got[0][1]))  # a device may have run fewer evaluation samples
    ref = [(name, arr[:n]) for name, arr in reference]
    out = [(name, arr[:n]) for name, arr in got]
    lab = _first(labels, n)
    numbers = fidelity.compare(ref, out, recipe, lab)
    comp = Comparison(
        artifact=artifact,
        target=target,
        reference=reference_name,
        max_abs_error=float(numbers["max_abs_error"]),
        mean_abs_error=float(numbers["mean_abs_error"]),
        cosine=float(numbers["cosine"]),
        top1_agreement=numbers.get("top1_agreement"),
        box_match=numbers.get("box_match"),
        metric={k: float(numbers[k]) for k in METRIC_KEYS if numbers.get(k) is not None},
        samples=n,
        output_mapping=numbers.get("output_mapping"),
    )
    if gate:
        checks = fidelity.check_gates(numbers, recipe.gates_for(Format(artifact)))
        comp.gates_passed = bool(checks["passed"])
        comp.gate_failures = [] if checks["passed"] else [fidelity.describe_failures(checks, numbers)]
    return comp


def failed_comparison(artifact: str, target: str, reference_name: str, error: str) -> Comparison:
    """Outputs that cannot be compared at all (shape mismatch, missing file) are a failed gate, not a crash."""
    nan = float("nan")
    return Comparison(
        artifact=artifact,
        target=target,
        reference=reference_name,
        max_abs_error=nan,
        mean_abs_error=nan,
        cosine=nan,
        gates_passed=False,
        gate_failures=[error],
    )


def _first(labels: Labels | None, n: int) -> Any:
    if labels is None:
        return None
    return labels[:n]
