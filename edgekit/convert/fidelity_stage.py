"""The conversion's last stage: every converted artifact checked against the ONNX model on the evaluation inputs
and held to the recipe's gates (edgekit.fidelity computes the numbers); the numbers are cached per artifact,
keyed by what they depend on beyond the artifact itself (`fidelity_digest`), so a second run skips the host
inference too."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import numpy as np

from edgekit.convert import cache
from edgekit.convert.base import Artifact, dist_version
from edgekit.convert.calibration import Labels, data_digest
from edgekit.convert.onnx import OnnxModel
from edgekit.errors import InputDataError
from edgekit.formats import Format
from edgekit.recipe import DataSource, OnnxSource, Recipe, TorchSource
from edgekit.results import GATE_MISSED
from edgekit.runtimes import Outputs, spec_for

Progress = Callable[[str], None]


def reference_outputs(
    onnx: OnnxModel, recipe: Recipe, evaluation: tuple[np.ndarray, Labels | None]
) -> Outputs:
    """The reference ONNX's outputs on the evaluation inputs, checked: finite (check_finite) and, with labels, of
    the class count the labels need. Bad input either way (InputDataError, exit 2)."""
    from edgekit.fidelity import check as fidelity
    from edgekit.runtimes import run_onnx

    inputs, labels = evaluation
    # the user's own file when it was simplified (a copy in the cache: an error names theirs)
    given = recipe.model.path if isinstance(recipe.model, OnnxSource) else None
    ref = run_onnx(onnx.reference_path, inputs, shown=given)
    check_finite(ref, recipe)
    fidelity.check_labels(ref, labels, recipe)
    return ref


def check_fidelity(
    artifacts: list[Artifact],
    onnx: OnnxModel,
    recipe: Recipe,
    evaluation: tuple[np.ndarray, Labels | None],
    say: Progress,
    ref: Outputs | None = None,
) -> None:
    """Each artifact against the reference on the evaluation inputs (cached by artifact and data); `ref`: the
    reference's outputs when the pipeline judged them before converting (reference_outputs)."""
    from edgekit.fidelity import check as fidelity

    todo = [a for a in artifacts if a.status == "ok"]
    if not todo:
        return
    inputs, labels = evaluation
    say(
        f"fidelity: {data_note(recipe.evaluation.data, len(inputs))}, "
        f"{'with' if labels is not None else 'no'} labels"
    )
    data = data_digest(inputs, labels)
    for art in todo:
        digest = fidelity_digest(data, recipe, art.format, onnx.reference_sha256)
        numbers = cache.load_fidelity(art.key, digest)
        cached = numbers is not None
        if numbers is not None:  # the labels against the class count the reference gave, as on a miss
            fidelity.check_cached_labels(numbers, labels, recipe)
        else:
            say(f"{art.format.value}: checking fidelity on {len(inputs)} inputs")
            if ref is None:
                ref = reference_outputs(onnx, recipe, evaluation)
            try:
                numbers = fidelity.compare(ref, fidelity.run_artifact(art, inputs), recipe, labels)
            except Exception as exc:  # noqa: BLE001 - an artifact the host cannot run is a failed artifact
                art.status, art.error = "failed", f"cannot run on this host: {type(exc).__name__}: {exc}"
                continue
            cache.save_fidelity(art.key, digest, numbers)
        gates = fidelity.check_gates(numbers, recipe.gates_for(art.format))
        art.fidelity = {**numbers, "gates": gates, "cached": cached}
        if not gates["passed"]:
            art.status, art.error = "failed", f"{GATE_MISSED}{fidelity.describe_failures(gates, numbers)}"


def check_finite(ref: Outputs, recipe: Recipe) -> None:
    """The reference's outputs hold no NaN or infinity on any evaluation input, else an InputDataError (exit 2)
    naming the first such input, the output and how many values, before any artifact is judged: every artifact
    "missed" its gate with cosine nan, each converter blamed ("that conversion differs from the model itself"),
    onnx-fp32 (the user's own file) too. A PyTorch or Keras source's own outputs were checked when exported, on
    the export check's inputs; here an exported reference is judged on the evaluation inputs."""
    from edgekit.fidelity.finite import NOT_FINITE_HINT, not_finite, not_finite_message

    src = recipe.model
    if isinstance(src, OnnxSource):
        model, by = src.path.name, "onnxruntime's, before any conversion"
    else:
        label = src.label if isinstance(src, TorchSource) else str(src.path)
        model = f"the ONNX exported from {label}"
        by = "onnxruntime's; the export matched the model on the inputs it was checked on"
    for name, values in ref:
        bad = [k for k in range(len(values)) if not_finite(values[k])]
        if not bad:
            continue
        first = bad[0]
        on = f"evaluation input {first + 1} of {len(values)}" + (
            f" (the first of {len(bad)} such inputs)" if len(bad) > 1 else ""
        )
        said = not_finite_message(on, model, f"`{name}`", values[first : first + 1], by)
        raise InputDataError(said or name, where=str(recipe.path), hint=NOT_FINITE_HINT)


def data_note(source: DataSource, count: int) -> str:
    """'100 evaluation inputs (all the .npy holds)': how many and why, since `samples` has a default."""
    if getattr(source, "samples", None) is None and source.kind in ("npy", "images"):
        return f"{count} evaluation inputs (all the {'.npy' if source.kind == 'npy' else 'folder'} holds)"
    return f"{count} evaluation inputs ({source.kind}, samples: {count})"


def fidelity_digest(data: str, recipe: Recipe, fmt: Format, reference: str | None = None) -> str:
    """What an artifact's cached fidelity numbers depend on beyond the artifact itself (its key): the evaluation
    data and labels (`data`, data_digest), the procedure, the task, the output a classifier's top-1 is read from
    (`outputs:`, which a user ONNX's key does not hold), the host runtimes that made the numbers (onnxruntime
    for the reference and the artifact's own runtime: neither is in every format's key) and, for a user's ONNX,
    the reference's own files (`reference`: numbers made against a damaged original.onnx outlived its repair)."""
    from edgekit.fidelity import check as fidelity
    from edgekit.fidelity import detection
    from edgekit.runtimes.base import OUTPUTS_VERSION

    spec = (
        f"{data}:{fidelity.FIDELITY_VERSION}:{OUTPUTS_VERSION}:{recipe.task.value}:"
        f"{detection.DETECT_CONF}:{detection.DETECT_NMS_IOU}:{detection.MATCH_IOU}:{detection.MATCH_SCORE_MARGIN}:"
        f"{json.dumps(list(recipe.outputs))}:{json.dumps(host_runtime_versions(fmt), sort_keys=True)}"
        + (f":reference={reference}" if reference else "")
    )
    return hashlib.sha256(spec.encode()).hexdigest()


def host_runtime_versions(fmt: Format) -> dict[str, str]:
    """The distributions that compute a format's fidelity numbers on this host: onnxruntime (the reference) and,
    for each module of the format's runtime, the first of its distributions installed (opencv-python here,
    where boards get the headless one)."""
    versions = {"onnxruntime": dist_version("onnxruntime")}
    for package in spec_for(fmt).packages:
        found = {d: dist_version(d) for d in package.version_dists}
        name = next((d for d, v in found.items() if v != "absent"), package.pip)
        versions[name] = found[name]
    return versions
