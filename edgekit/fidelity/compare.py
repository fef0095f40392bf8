"""Outputs compared across runtimes and machines: each artifact against the ONNX model, and ARM against host.

The same evaluation inputs go to the host and to every device; the agent returns each artifact's outputs as an
.npz (keys in output order, names in the Measurement; an output whose shape differs between inputs saved input by
input, edgekit.agent.contract.per_input_key). This module turns two such output sets into a
`Comparison`: max / mean abs error, cosine, and the task's agreement (top-1 for a classifier, boxes matched after
NMS for a detector) plus the task metric where the evaluation data has labels. The numbers are
`edgekit.fidelity.check.compare`'s, so a device's fidelity means exactly what the converter's check means.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekit.agent.contract import per_input_key
from edgekit.convert.calibration import Labels
from edgekit.fidelity import check as fidelity
from edgekit.fidelity.alignment import output_order
from edgekit.fidelity.saved_npz import SavedNpz
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


# Each output as the agent saved it: stacked over the inputs (one array, first axis = input), or one array per input
# where its shape differs between them (edgekit.agent.contract.per_input_key: NonZero, a built-in NMS)
Saved = list[tuple[str, np.ndarray | list[np.ndarray]]]


def load_outputs(npz: Path, measurement: Measurement) -> Saved:
    """An agent's .npz as (name, outputs) pairs in the runtime's output order. A device's file is not trusted
    (saved_npz): each array's header is checked against the bytes its member holds and the result's
    output_shapes before anything is allocated for it (OutputsFileRefused)."""
    with SavedNpz(npz) as data:
        keys = measurement.output_keys or list(data.files)
        names = measurement.output_names or keys
        shapes: list[list[int] | None] = [*measurement.output_shapes]
        if len(shapes) != len(keys):  # a result without them: the headers are checked against the bytes only
            shapes = [None] * len(keys)
        return [(name, _saved(data, key, shape)) for name, key, shape in zip(names, keys, shapes)]


def _saved(data: SavedNpz, key: str, shape: list[int] | None) -> np.ndarray | list[np.ndarray]:
    """One output: the array under `key`, or for an output saved input by input ("KEY@*") its arrays
    KEY@0, KEY@1, ... in input order (as many as the file holds in a row; KeyError when none). `shape` is the
    result's (samples, *output shape), -1 on an axis whose size differs by input."""
    mark = per_input_key("")  # "@*": what output_keys ends an output saved input by input with
    if not key.endswith(mark):
        return data.array(key, shape)
    base = key[: -len(mark)]
    files = set(data.files)
    # each input's shape; [samples, -1] is also what the agent records when the rank differs by input: unchecked
    each = shape[1:] if shape is not None and shape[1:] not in ([], [-1]) else None
    arrays: list[np.ndarray] = []
    while (name := per_input_key(base, len(arrays))) in files:
        arrays.append(data.array(name, each))
    if not arrays:
        raise KeyError(f"{per_input_key(base, 0)} (the first input's {base!r}) is not in the file")
    return arrays


def per_input(outputs: Saved) -> list[Outputs]:
    """An agent's outputs (each output stacked over the inputs it ran, or saved input by input) as one output set
    per input, for as many inputs as every output covers."""
    count = min((len(arr) for _, arr in outputs), default=0)
    return [[(name, np.asarray(arr[j])) for name, arr in outputs] for j in range(count)]


def compare(
    reference: list[Outputs],
    got: list[Outputs],
    *,
    recipe: Recipe,
    labels: Labels | None,
    artifact: str,
    target: str,
    reference_name: str,
    gate: bool = False,
) -> Comparison:
    """One Comparison of two output sets given input by input (`per_input`); with `gate`, the recipe's fidelity
    gates for the artifact's precision are applied. Each side's outputs are joined over the inputs as convert's
    host runners join them and judged by convert's own numbers, so the verdict is convert's; an output whose size
    depends on the input (NonZero, a detector's built-in NMS) is matched input by input first, and one that
    differs in size on an input is NotComparable, naming it."""
    n = min(len(reference), len(got))  # a device may have run fewer evaluation samples
    ref, out = _joined(reference[:n], "the reference"), _joined(got[:n], artifact)
    order, _ = output_order(ref, out)
    _check_sizes(reference[:n], got[:n], order, reference_name)
    numbers = {**fidelity.compare(ref, out, recipe, _first(labels, n)), "samples": n}
    comp = Comparison(
        artifact=artifact,
        target=target,
        reference=reference_name,
        # a cosine is absent when no output's is judged (0 in the reference, ~0 here: check.compare): NaN
        max_abs_error=float(numbers.get("max_abs_error", float("nan"))),
        mean_abs_error=float(numbers.get("mean_abs_error", float("nan"))),
        cosine=float(numbers.get("cosine", float("nan"))),
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


class NotComparable(ValueError):
    """Two output sets whose values cannot be paired (an output of another size on one input): no gate was
    judged, and none can be."""


def _joined(per: list[Outputs], side: str) -> Outputs:
    """Each output's arrays over the inputs joined on the first axis, as convert's host runners join them."""
    if not per:
        raise NotComparable(f"{side} has no outputs for any input")
    joined = []
    for k, (name, _) in enumerate(per[0]):
        arrays = [np.atleast_1d(outputs[k][1]) for outputs in per]
        try:
            joined.append((name, np.concatenate(arrays)))
        except ValueError:
            shapes = sorted({a.shape for a in arrays})
            raise NotComparable(
                f"{side}'s output {name!r} has shapes {', '.join(map(str, shapes[:3]))} on different inputs "
                "(its shape depends on the input beyond its first axis)"
            ) from None
    return joined


def _check_sizes(ref: list[Outputs], got: list[Outputs], order: list[int], reference_name: str) -> None:
    """Every output the same size as the reference's on every input: an output whose size depends on the input
    (NonZero, NMS built in) found another count on one, and its values cannot be paired with the reference's."""
    for j, (r, g) in enumerate(zip(ref, got)):
        for k, (name, a) in enumerate(r):
            b = g[order[k]][1]
            if a.size != b.size:
                raise NotComparable(
                    f"output {name!r} on input {j + 1} has shape {tuple(b.shape)} here and "
                    f"{tuple(a.shape)} in {_REFERENCE_WORDS.get(reference_name, reference_name)} (its size "
                    "depends on the input: the two found a different number of values), so its values cannot "
                    "be paired and no gate was judged; to have it judged, export the model with that step (NMS, a "
                    "threshold) left out and run it on the outputs yourself"
                )


_REFERENCE_WORDS = {"onnx": "the ONNX model's", "host": "the host's run of the same artifact"}


def failed_comparison(artifact: str, target: str, reference_name: str, error: str) -> Comparison:
    """Outputs that cannot be compared at all (NotComparable, a missing or damaged file) are no pass and no crash:
    `error` says why."""
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
