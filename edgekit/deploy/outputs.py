"""Every target's outputs judged: each artifact's outputs vs the user's ONNX model (gated, as convert's fidelity
check) and, on an ARM target, vs the host's outputs of the same artifact (output drift)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from edgekit.convert.calibration import Labels
from edgekit.deploy.agent_run import lies_under
from edgekit.fidelity.compare import compare, failed_comparison, load_outputs
from edgekit.recipe import Recipe
from edgekit.results import Comparison, DeployResult, TargetRun


def onnx_reference(recipe: Recipe, inputs: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """The outputs every target is judged against: the user's ONNX as given (not the simplified copy the
    converters get), as the convert step's fidelity check does."""
    from edgekit.convert.onnx import prepare_onnx
    from edgekit.runtimes import run_onnx

    return run_onnx(prepare_onnx(recipe).reference_path, inputs)


def compare_all(
    result: DeployResult,
    recipe: Recipe,
    reference: list[tuple[str, np.ndarray]],
    labels: Labels | None,
    host: str,
) -> None:
    """Per target: each artifact's outputs vs ONNX (gated), and vs the host's outputs of the same artifact."""
    outputs = {run.target: _outputs_of(run) for run in result.runs}
    on_host = outputs.get(host, {})
    for run in result.runs:
        comps: list[Comparison] = []
        for art, got in outputs[run.target].items():
            judge = partial(compare, got=got, recipe=recipe, labels=labels, artifact=art, target=run.target)
            comps.append(
                _safe(partial(judge, reference, reference_name="onnx", gate=True), art, run.target, "onnx")
            )
            if run.target != host and art in on_host:
                comps.append(
                    _safe(partial(judge, on_host[art], reference_name="host"), art, run.target, "host")
                )
        run.comparisons = comps


def _outputs_of(run: TargetRun) -> dict[str, list[tuple[str, np.ndarray]]]:
    found: dict[str, list[tuple[str, np.ndarray]]] = {}
    if run.agent is None or run.result_dir is None:
        return found
    folder = Path(run.result_dir)
    for m in run.agent.measurements:
        path = folder / (m.outputs_file or "")
        if not lies_under(path, folder):  # a result not from a deploy (runs import): nothing outside is read
            continue
        if m.status == "ok" and m.outputs_file and path.is_file() and m.artifact not in found:
            found[m.artifact] = load_outputs(path, m)
    return found


def _safe(fn: Callable[[], Comparison], art: str, target: str, ref: str) -> Comparison:
    try:
        return fn()
    except (ValueError, KeyError, IndexError) as exc:
        return failed_comparison(art, target, ref, f"outputs cannot be compared: {exc}")
