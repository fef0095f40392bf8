"""Does the artifact still compute what the original did? Run both on this host and compare.

The reference is the ONNX model in onnxruntime. Each artifact runs in its runtime (edgekit.runtimes) on the
recipe's evaluation inputs. Numbers (JSON-ready, stored in Artifact.fidelity and cached):
- per output: max abs error, mean abs error, cosine similarity (per sample, flattened; mean, min, 5th
  percentile); overall `max_abs_error` (worst output), `cosine` (worst output's mean), `cosine_worst` (the worst
  single input) and `cosine_p5` (the 5th-percentile input): a mean can hide one input the artifact ruins;
- a float output the ONNX model gives as 0 on every evaluation input (a dead layer, weights not loaded, data the
  model does not respond to) that the artifact gives as ~0 too (|value| <= ZERO_OUTPUT) has no direction to
  compare: its cosine figures are not judged (`not_judged`; its cosine was 1 and every gate passed). The overall
  cosine figures are the other outputs', absent when there are none, and `check_gates` names it for each cosine
  gate, which is then no pass. Its distance from 0 is judged as any output's (`max_abs_error`), and where the
  artifact gives values there its cosine is judged as ever: 0 on each such input, a miss;
- a float output the ONNX model gives the same on every evaluation input (spread over the inputs at most
  SAME_SPREAD of its largest value; softmax of vanishing logits reads [0.1]*10 on any image) proves nothing when
  the artifact agrees with it (every artifact, int8 too, read cosine 1 and top-1 agreement 100 %): its cosine
  figures and a classifier's top-1 agreement and drop are not judged (`not_judged`, `same_every_input`), said as
  for an output 0 in the model. Its cosine figures are kept apart (`unjudged`): an artifact whose cosine misses
  a gate there differs from the model, a miss, and so are a constant detector's box match and mAP drops (boxes
  the artifact moves or loses are a difference). The top-1 of tied logits is arbitrary, so agreement never misses;
- classifier (`task: classify`; the logits are the first output the recipe's `outputs:` names, else the model's
  first output): top-1 agreement with the reference; with labels also top-1 accuracy of both and the drop;
- detector (`task: detect`, outputs `boxes` [1,N,4] xyxy and `scores` [1,N,C], see zoo/yolov5_lite.py): boxes
  after NMS (score >= 0.25, IoU 0.45) matched to the reference's at IoU >= 0.5 and same class (`box_match`,
  None when the reference finds no box; a reference box the artifact scores just under 0.25, down to 0.20, is
  found, not lost); with labels also mAP@0.5 and mAP@0.5:0.95 of both and the drop (edgekit.fidelity.detection).

Output names differ between runtimes (a known trap): edgekit.fidelity.alignment maps them to the ONNX outputs
and records which rule won.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgekit.convert.base import Artifact
from edgekit.convert.calibration import Labels
from edgekit.fidelity.alignment import align_outputs
from edgekit.fidelity.detection import detect_numbers, detector_outputs
from edgekit.formats import Runtime
from edgekit.recipe import Gates, Recipe, Task, check_class_range
from edgekit.report.figures import gate_failures
from edgekit.results import VANISHED
from edgekit.runtimes import Outputs, spec_for

# Part of the cached results' digest: bump when the numbers are computed differently. 13: a constant detector's box
# match and mAP drops may still miss (`unjudged`). 12: a detector whose boxes and scores are both the same on every
# input has no box_match or mAP drop (a match then proves nothing). 11: an output the ONNX model gives the same on
# every input is not judged (`same_every_input`; cosine 1, top-1 agreement 1 and a pass before). 10: an output 0 in
# the model is judged where the artifact gives values there (cosine 0), and its abs errors are always in the overall
# figures (9 passed an artifact giving 50 where the model gives 0). 9: a float output the ONNX model gives as 0 on
# every input is not judged (`not_judged`; cosine 1 and a pass before). 8: a classifier's class count kept (`classes`:
# labels are checked against it on a cache hit too), and the digest holds `outputs:`, the host runtimes' versions and
# each detection image's labels apart (edgekit.convert.fidelity_stage.fidelity_digest). 7: each output's largest
# reference value and whether the artifact's output is all zeros (vanished_note). 5: a classifier's top-1 read from
# the output the recipe names; 4: integer outputs compared exactly, TFLite's unquantized integer outputs taken as they
# are; 3: map50_95_drop.
FIDELITY_VERSION = (
    13  # 6: a reference box is matched among the artifact's boxes down to DETECT_CONF - MATCH_SCORE_MARGIN
)
# A reference output whose largest value is below this, read back as all zeros, vanished in the arithmetic (int8
# output scales, fp16's smallest subnormal 6e-8): what a random-weight network's outputs do (torchvision's
# initialisation gives ~1e-10 to 1e-14; README, "Nine torchvision architectures").
VANISHING = 1e-4
# An artifact's output at most this large where the ONNX model's is 0 on every input is ~0 too: values this small
# are the arithmetic's rounding (VANISHING), not an answer; its cosine figures are not judged (module docstring)
ZERO_OUTPUT = VANISHING
# Why an output's cosine gates are not checked (check_gates), after "output y is"
NOT_JUDGED = (
    f"0 on every evaluation input in the ONNX model itself and at most {ZERO_OUTPUT:g} in the artifact: no "
    "direction to compare, its cosine not judged"
)
# A float output whose spread over the evaluation inputs (largest minus smallest, element by element) is at most this
# share of its largest value is the same on every input (float32's rounding is ~1e-7 of a value); module docstring
SAME_SPREAD = 1e-6
SAME_EVERY_INPUT = (
    "the same on every evaluation input in the ONNX model itself: agreeing with it proves nothing, its cosine and "
    "agreement (top-1; a detector's box match and mAP drop) not judged"
)
# The overall cosine figures, taken from every output's own (compare): an output not judged is left out of them
COSINES = ("cosine", "cosine_worst", "cosine_p5")


def run_artifact(artifact: Artifact, inputs: np.ndarray, threads: int = 1) -> Outputs:
    """The artifact's outputs on `inputs`, named as its runtime names them (its runtime module runs it). A TFLite
    artifact with a recorded layout (provenance `layout`, edgekit.convert.tflite_layout) is fed and read back by
    it, so its outputs come in the ONNX model's layout; without one the shape rule of
    edgekit.fidelity.alignment._fit applies."""
    layout = artifact.provenance.get("layout")
    if layout and artifact.format.runtime is Runtime.TFLITE:
        from edgekit.runtimes.host import run_tflite

        return run_tflite(artifact.files[0], inputs, threads, layout=layout)
    return spec_for(artifact.format).run_format(artifact.format, artifact.files, inputs, threads)


def compare(ref: Outputs, got: Outputs, recipe: Recipe, labels: Labels | None) -> dict[str, Any]:
    """All fidelity numbers of one artifact (see the module docstring)."""
    arrays, rule = align_outputs(ref, got)
    numbers: dict[str, Any] = {
        "version": FIDELITY_VERSION,
        "samples": int(len(ref[0][1])),
        "output_mapping": rule,
        "outputs": {},
    }
    for (name, r), g in zip(ref, arrays):
        numbers["outputs"][name] = _errors(r, g)
    outputs = list(numbers["outputs"].values())
    zero = [name for name, o in numbers["outputs"].items() if o["cosine"] is None]
    if zero:
        numbers["not_judged"] = zero
    same = [name for name, o in numbers["outputs"].items() if o.get("same_every_input")]
    if same:  # their cosines may only miss (check_gates): an artifact that differs from a constant output
        numbers["same_every_input"] = same
        kept = [o["same_every_input"] for o in outputs if o.get("same_every_input")]
        numbers["unjudged"] = {key: min(k[key] for k in kept) for key in COSINES}
    if outputs:  # distance from 0 is defined: every output's counts
        numbers["max_abs_error"] = max(o["max_abs"] for o in outputs)
        numbers["mean_abs_error"] = max(o["mean_abs"] for o in outputs)
    per = [o for o in outputs if o["cosine"] is not None]
    if per:  # else no overall cosine: not 1, which reads as a pass
        numbers["cosine"] = min(o["cosine"] for o in per)
        numbers["cosine_worst"] = min(o["cosine_min"] for o in per)
        numbers["cosine_p5"] = min(o["cosine_p5"] for o in per)
    if recipe.task is Task.CLASSIFY:
        k = logits_index(ref, recipe)
        numbers["classes"] = int(
            np.prod(ref[k][1].shape[1:])
        )  # what check_cached_labels checks labels against
        if ref[k][0] not in zero:  # ~0 logits on both sides: every top-1 is class 0, in the artifact too
            top1 = _classify(ref[k][1], arrays[k], labels)
            if (
                ref[k][0] in same
            ):  # one class on every input: agreeing proves nothing, tied logits none either way
                top1 = {key: v for key, v in top1.items() if key not in ("top1_agreement", "top1_drop")}
            numbers.update(top1)
    elif recipe.task is Task.DETECT:
        b, s = detector_outputs(ref)
        found = detect_numbers(ref[b][1], ref[s][1], arrays[b], arrays[s], labels)
        if (
            ref[b][0] in same and ref[s][0] in same
        ):  # the same boxes on every input: matching them proves nothing
            found = _only_to_miss(numbers, found, ("box_match", "map50_drop", "map50_95_drop"))
        numbers.update(found)
    return numbers


def _only_to_miss(numbers: dict[str, Any], found: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """`found` without `keys`, which move to numbers["unjudged"]: figures of an output the ONNX model gives the
    same on every input, where agreeing proves nothing but missing still misses (check_gates): a constant
    detector's boxes moved 150 px by the artifact passed `min_box_match` (box match 0.0) as not checked."""
    held = {key: found[key] for key in keys if found.get(key) is not None}
    if held:
        numbers["unjudged"] = {**(numbers.get("unjudged") or {}), **held}
    return {key: v for key, v in found.items() if key not in keys}


def check_gates(numbers: dict[str, Any], gates: Gates) -> dict[str, Any]:
    """Each gate the recipe sets, with the measured value and the number of inputs it was judged on; a gate
    whose number is unavailable is skipped. `passed` says no checked gate was missed (what fails a conversion);
    `verdict` says whether every gate the recipe set held: "not checked" when none was missed but one could not
    be judged (a drop without labels; an output 0 in the model and ~0 in the artifact, for every cosine gate: judged
    on the other outputs where there are any, and said not checked on that one), which is no pass
    (`unchecked_gates`)."""
    rules = {
        "min_cosine": ("cosine", ">="),
        "min_cosine_worst": ("cosine_worst", ">="),
        "min_cosine_p5": ("cosine_p5", ">="),
        "max_abs_error": ("max_abs_error", "<="),
        "max_top1_drop": ("top1_drop", "<="),
        "min_top1_agreement": ("top1_agreement", ">="),
        "min_box_match": ("box_match", ">="),
        "max_map_drop": ("map50_drop", "<="),
        "max_map50_95_drop": ("map50_95_drop", "<="),
    }
    zero = list(numbers.get("not_judged") or [])
    groups = _unjudged(zero, list(numbers.get("same_every_input") or []))
    said = "; ".join(
        f"{named} {'are' if named.startswith('outputs ') else 'is'} {why}" for named, why in groups
    )
    unjudged = numbers.get("unjudged") or {}
    checks, skipped = [], []
    for gate, limit in gates.model_dump().items():
        if limit is None:
            continue
        key, op = rules[gate]
        value = numbers.get(key)
        held = unjudged.get(key)  # an output the same on every input: its figures may only miss
        if held is not None and not (held >= limit if op == ">=" else held <= limit):
            checks.append({"gate": gate, "limit": limit, "value": held, "passed": False})
            continue
        if value is None:
            why = f"no {key}: {'needs labels' if 'drop' in gate else 'not measurable'}"
            skipped.append(
                f"{gate} ({(said or why) if key in COSINES else '; '.join(filter(None, (why, said)))})"
            )
            continue
        ok = value >= limit if op == ">=" else value <= limit
        checks.append({"gate": gate, "limit": limit, "value": value, "passed": bool(ok)})
        if key in COSINES:  # judged on the other outputs, not on these
            skipped += [f"{gate} on {named} ({why})" for named, why in groups]
    passed = all(c["passed"] for c in checks)
    return {
        "passed": passed,
        "verdict": "missed" if not passed else "not checked" if skipped else "ok",
        "checks": checks,
        "skipped": skipped,
        "samples": numbers.get("samples"),
    }


def _unjudged(names: list[str], same: list[str]) -> list[tuple[str, str]]:
    """('output y', NOT_JUDGED), ('outputs p, q', SAME_EVERY_INPUT): the outputs not judged, by why."""
    groups = [
        ([n for n in names if n not in same], NOT_JUDGED),
        ([n for n in names if n in same], SAME_EVERY_INPUT),
    ]
    return [(f"output{'s' if len(g) > 1 else ''} {', '.join(g)}", why) for g, why in groups if g]


def describe_failures(gates: dict[str, Any], numbers: dict[str, Any] | None = None) -> str:
    """'min_cosine: 0.99999 vs limit 1 (on 8 inputs)': the checks of `check_gates` that failed (report.figures),
    then why, where the numbers show it (vanished_note)."""
    note = vanished_note(numbers or {})
    return gate_failures(gates) + (f"; {note}" if note else "")


def vanished_note(numbers: dict[str, Any]) -> str:
    """Outputs the artifact gave as all zeros while the reference's were not: 'output logits is 0 everywhere,
    where the ONNX model's values are at most 2e-13: ...'. A cosine of 0 alone sent users to `analyze --fix` for
    a model whose outputs are too small for any int8 or fp16 arithmetic to hold (an untrained network)."""
    notes = []
    for name, o in (numbers.get("outputs") or {}).items():
        if not isinstance(o, dict) or not o.get("all_zero"):
            continue
        peak = o.get("ref_max_abs")
        if isinstance(peak, float) and peak < VANISHING:
            notes.append(
                f"output {name} is 0 everywhere, where the ONNX model's values are at most {peak:.1g}: values "
                f"this small {VANISHED} (an untrained or random-weight network's outputs "
                "do; a trained one's do not)"
            )
        else:
            notes.append(f"output {name} is 0 on every input")
    return "; ".join(notes)


def logits_index(ref: Outputs, recipe: Recipe) -> int:
    """Which output a classifier's top-1 is read from: the first the recipe's `outputs:` names (by name), else
    the model's first output."""
    names = [n for n, _ in ref]
    return names.index(recipe.outputs[0]) if recipe.outputs and recipe.outputs[0] in names else 0


def check_labels(ref: Outputs, labels: Labels | None, recipe: Recipe) -> None:
    """A classifier's class ids must name its outputs (RecipeError naming the field otherwise)."""
    if recipe.task is Task.CLASSIFY and isinstance(labels, np.ndarray) and ref:
        logits = ref[logits_index(ref, recipe)][1]
        check_class_range(
            labels, int(np.prod(logits.shape[1:])), "evaluation.data (its labels)", str(recipe.path)
        )


def check_cached_labels(numbers: dict[str, Any], labels: Labels | None, recipe: Recipe) -> None:
    """check_labels for numbers from the cache (no reference run): against the class count compare() kept."""
    classes = numbers.get("classes")
    if recipe.task is Task.CLASSIFY and isinstance(labels, np.ndarray) and isinstance(classes, int):
        check_class_range(labels, classes, "evaluation.data (its labels)", str(recipe.path))


# --- numbers ------------------------------------------------------------------------------------------------
def _errors(r: np.ndarray, g: np.ndarray) -> dict[str, Any]:
    diff = np.abs(r.astype(np.float64) - g.astype(np.float64))
    rf, gf = r.reshape(len(r), -1).astype(np.float64), g.reshape(len(g), -1).astype(np.float64)
    nr, ng = np.linalg.norm(rf, axis=1), np.linalg.norm(gf, axis=1)
    dot = np.sum(rf * gf, axis=1)
    cos = np.where((nr == 0) & (ng == 0), 1.0, dot / np.maximum(nr * ng, 1e-30))
    exact = np.issubdtype(r.dtype, np.integer) or r.dtype == np.bool_
    if exact:  # class indices, counts: a direction means nothing ([2] and [1] have cosine 1); equal or not
        cos = np.all(rf == gf, axis=1).astype(np.float64)
    ref_zero = bool(not exact and r.size and not np.any(r))  # module docstring: an integer 0 is a value
    if ref_zero:  # an input where the artifact gives ~0 too agrees (1), one where it gives values misses (0)
        cos = (np.abs(gf).max(axis=1, initial=0.0) <= ZERO_OUTPUT).astype(np.float64)
    if not exact and not ref_zero and len(rf) > 1:  # one value on every input (module docstring)
        spread = float((rf.max(axis=0) - rf.min(axis=0)).max(initial=0.0))
        if spread <= SAME_SPREAD * float(np.abs(rf).max()):
            figures = {"cosine": float(cos.mean()), "cosine_worst": float(cos.min())}
            return {
                "same_every_input": {**figures, "cosine_p5": float(np.percentile(cos, 5))},
                "max_abs": float(diff.max()),
                "mean_abs": float(diff.mean()),
                "cosine": None,
                "cosine_min": None,
                "cosine_p5": None,
                "ref_max_abs": float(np.abs(rf).max()),
                "all_zero": bool(g.size and not np.any(g)),
            }
    if ref_zero and cos.all():  # ~0 on both sides: no direction to compare
        return {
            "ref_zero": True,
            "max_abs": float(diff.max()),
            "mean_abs": float(diff.mean()),
            "cosine": None,
            "cosine_min": None,
            "cosine_p5": None,
            "ref_max_abs": 0.0,
            "all_zero": False,
        }
    return {
        **({"ref_zero": True} if ref_zero else {}),
        **(
            {"compared": "exact (integer output): cosine figures are the share of inputs it equals"}
            if exact
            else {}
        ),
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "cosine": float(cos.mean()),
        "cosine_min": float(cos.min()),
        "cosine_p5": float(np.percentile(cos, 5)),
        "ref_max_abs": float(np.abs(r.astype(np.float64)).max()) if r.size else 0.0,
        "all_zero": bool(not exact and g.size and not np.any(g) and np.any(r)),
    }


def _classify(ref: np.ndarray, got: np.ndarray, labels: Labels | None) -> dict[str, Any]:
    r, g = ref.reshape(len(ref), -1).argmax(1), got.reshape(len(got), -1).argmax(1)
    out: dict[str, Any] = {"top1_agreement": float(np.mean(r == g))}
    if isinstance(labels, np.ndarray):
        if len(labels) != len(r):  # validated at recipe load; a mismatch here is a bug, not a figure
            raise ValueError(f"{len(labels)} labels for {len(r)} outputs")
        lab = labels
        out["top1_reference"] = float(np.mean(r == lab))
        out["top1"] = float(np.mean(g == lab))
        out["top1_drop"] = out["top1_reference"] - out["top1"]
    return out
