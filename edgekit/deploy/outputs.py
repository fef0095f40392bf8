"""Every target's outputs judged: each artifact's outputs vs the user's ONNX model (gated, as convert's fidelity
check) and, on an ARM target, vs the host's outputs of the same artifact (output drift). An outputs file that
cannot be used (it does not load, its keys are not the result's, an array's sha256 is not the one the device took,
an array's header asks for more than its file holds: saved_npz) is that artifact's failed comparison, naming why;
every other artifact and target is compared as usual."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from edgekit.agent.contract import per_input_checksum
from edgekit.convert.calibration import Labels
from edgekit.deploy.agent_result import lies_under
from edgekit.fidelity.compare import Saved, compare, failed_comparison, load_outputs, per_input
from edgekit.fidelity.saved_npz import OutputsFileRefused
from edgekit.recipe import Recipe
from edgekit.results import Comparison, DeployResult, Measurement, TargetRun
from edgekit.route_rejections import NOT_COMPARABLE
from edgekit.runtimes import Outputs


def onnx_reference(recipe: Recipe, inputs: np.ndarray) -> list[Outputs]:
    """The outputs every target is judged against, input by input (an output whose size depends on the input,
    NonZero or a detector's built-in NMS, cannot be split back into inputs once joined): the user's ONNX as given
    (not the simplified copy the converters get), as the convert step's fidelity check does."""
    from edgekit.convert.onnx import prepare_onnx
    from edgekit.runtimes.base import output_array
    from edgekit.runtimes.host import onnx_session

    session = onnx_session(prepare_onnx(recipe).reference_path)
    (feed,) = session.get_inputs()
    names = [o.name for o in session.get_outputs()]
    return [
        list(zip(names, map(output_array, session.run(names, {feed.name: x[None].astype(np.float32)}))))
        for x in inputs
    ]


def compare_all(
    result: DeployResult,
    recipe: Recipe,
    reference: list[Outputs],
    labels: Labels | None,
    host: str,
) -> None:
    """Per target: each artifact's outputs vs ONNX (gated), and vs the host's outputs of the same artifact."""
    outputs = {run.target: _outputs_of(run) for run in result.runs}
    on_host = {art: got for art, got in outputs.get(host, {}).items() if not isinstance(got, str)}
    for run in result.runs:
        comps: list[Comparison] = []
        for art, got in outputs[run.target].items():
            if isinstance(got, str):  # its file cannot be used: no gate judged (none missed), the rest go on
                comps.append(failed_comparison(art, run.target, "onnx", f"{NOT_COMPARABLE}: {got}"))
                continue
            judge = partial(
                compare, got=per_input(got), recipe=recipe, labels=labels, artifact=art, target=run.target
            )
            comps.append(
                _safe(partial(judge, reference, reference_name="onnx", gate=True), art, run.target, "onnx")
            )
            if run.target != host and art in on_host:
                comps.append(
                    _safe(
                        partial(judge, per_input(on_host[art]), reference_name="host"),
                        art,
                        run.target,
                        "host",
                    )
                )
        run.comparisons = comps


def _outputs_of(run: TargetRun) -> dict[str, Saved | str]:
    """Each artifact's outputs as the device saved them, or why its file cannot be used (one that does not load,
    whose keys are not the result's, or whose arrays are not what the device checksummed: a damaged download)."""
    found: dict[str, Saved | str] = {}
    if run.agent is None or run.result_dir is None:
        return found
    folder = Path(run.result_dir)
    for m in run.agent.measurements:
        if m.status != "ok" or not m.outputs_file or m.artifact in found:
            continue
        path = folder / m.outputs_file
        if not lies_under(path, folder):  # a result not from a deploy (runs import): nothing outside is read
            found[m.artifact] = (
                f"outputs file {m.outputs_file[:200]!r} lies outside the run's folder: not read"
            )
        elif path.is_file():
            found[m.artifact] = _checked_outputs(path, m)
    return found


def _checked_outputs(path: Path, m: Measurement) -> Saved | str:
    """The .npz's outputs, checked against the sha256 the agent took of each output before saving it (one over
    every input's array for an output saved input by input), each covering the same number of inputs."""
    try:
        outputs = load_outputs(path, m)
    except OutputsFileRefused as exc:  # what it says of itself asks too much of this machine
        return f"outputs file {m.outputs_file} refused, not read: {exc}"
    except (OSError, ValueError, KeyError, EOFError, MemoryError, zipfile.BadZipFile) as exc:
        return f"outputs file {m.outputs_file} cannot be read ({type(exc).__name__}: {exc})"
    arrays = dict(outputs)  # by name, the last of a repeated name wins: how the agent keyed its checksums
    bad = [
        name
        for name, digest in m.output_checksums.items()
        if name not in arrays or _digest(arrays[name]) != digest
    ]
    if bad:
        return (
            f"outputs file {m.outputs_file} does not hold what the device computed: {', '.join(bad[:5])} "
            "differ from the result's output_checksums (damaged in the download or on a disk)"
        )
    counts = {
        name: len(out) if isinstance(out, list) else (len(out) if out.ndim else 0) for name, out in outputs
    }
    if len(set(counts.values())) > 1 or 0 in counts.values():
        said = ", ".join(f"{name!r} {n}" for name, n in list(counts.items())[:5])
        return (
            f"outputs file {m.outputs_file} does not hold every output for the same inputs (inputs per output: "
            f"{said})"
        )
    return outputs


def _digest(out: np.ndarray | list[np.ndarray]) -> str:
    """The agent's checksum of one output: sha256 of the stacked array, or per_input_checksum of its inputs'."""
    if isinstance(out, list):
        return per_input_checksum(out)
    return hashlib.sha256(np.ascontiguousarray(out).tobytes()).hexdigest()


def _safe(fn: Callable[[], Comparison], art: str, target: str, ref: str) -> Comparison:
    try:
        return fn()
    except (ValueError, KeyError, IndexError) as exc:
        return failed_comparison(art, target, ref, f"{NOT_COMPARABLE}: {exc}")
