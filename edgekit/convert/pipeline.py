"""recipe -> ONNX -> every requested format -> fidelity checked: the one function `convert` and `deploy` call.

Stages, each reported through `progress`: prepare the ONNX model (edgekit.convert.onnx); look every format up
in the cache (edgekit.convert.cache); convert the misses, one converter at a time (each format's converter:
edgekit.convert.converter_choice; a converter whose one tool run yields several formats gets them together);
check each artifact against the ONNX model on the evaluation inputs (edgekit.convert.fidelity_stage, cached too)
and apply the recipe's gates.

Failures are data: an artifact that cannot be converted or misses its gate has status "failed" and a message.
Every format is converted and every converted one checked, whatever failed before it. Then, without `keep_going`,
a failure raises: the converter's own error when one conversion failed (its type, hint and exit code), a
ConversionError naming every failed format when several did, FidelityError when only gates were missed; the
exception carries every artifact in `.artifacts` (the error's wording: failures.py).
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from edgekit import paths
from edgekit.convert import cache
from edgekit.convert.base import Artifact, Converter
from edgekit.convert.calibration import (
    calibration_inputs,
    calibration_note,
    calibration_record,
    constant_calibration_warning,
    evaluation_inputs,
    input_digests,
    overlap_calibration_warning,
    random_calibration_warning,
)
from edgekit.convert.converter_choice import by_converter, converters_for, refuse_int8_io, tool_name
from edgekit.convert.failures import CONVERSION_FAILED, run_failure, told
from edgekit.convert.fidelity_stage import check_fidelity, reference_outputs
from edgekit.convert.findings import dynamic_kept_float, float_leftovers, speed_plan_finding
from edgekit.convert.onnx import OnnxModel, prepare_onnx
from edgekit.convert.peak_rss import PeakRss
from edgekit.errors import CacheWriteError, ConversionError, EdgekitError
from edgekit.formats import Format, Precision
from edgekit.recipe import Recipe

Progress = Callable[[str], None]


def convert_recipe(
    recipe: Recipe,
    formats: Sequence[Format] | None = None,
    keep_going: bool = False,
    progress: Progress | None = None,
) -> list[Artifact]:
    """Artifacts for `formats` (default: the recipe's), in that order, each with its fidelity numbers. A cache
    that cannot be written (a read-only disk, no permission) is CacheWriteError, not any converter's crash."""
    try:
        return _convert_recipe(recipe, formats, keep_going, progress)
    except OSError as exc:
        unwritable = cache_unwritable(exc)
        if unwritable is None:
            raise
        raise unwritable from exc


UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)


def cache_unwritable(exc: BaseException) -> CacheWriteError | None:
    """The named error for an OSError that says edgekit's data dir (its cache) cannot be written, else None."""
    if not isinstance(exc, OSError) or exc.errno not in UNWRITABLE or exc.filename is None:
        return None
    name = Path(os.fsdecode(exc.filename))
    home = paths.data_path()
    if not name.absolute().is_relative_to(home.absolute()):
        return None
    return CacheWriteError(
        f"edgekit cannot write its conversion cache: {exc.strerror or exc}: {name}",
        where=str(home / "cache"),
        hint="set EDGEKIT_HOME to a folder on a writable disk (the cache is made in it)"
        + (
            ", or remount this one read-write"
            if exc.errno == errno.EROFS
            else ", or give your user write permission to this folder (or run as the user who owns it)"
        ),
    )


def _convert_recipe(
    recipe: Recipe,
    formats: Sequence[Format] | None,
    keep_going: bool,
    progress: Progress | None,
) -> list[Artifact]:
    say = progress or (lambda message: None)
    fmts = list(dict.fromkeys(formats or recipe.formats))
    refuse_int8_io(fmts, recipe)
    converters = converters_for(fmts, recipe)
    say("model: preparing ONNX")
    onnx = prepare_onnx(recipe)
    say(f"model: ONNX {'from cache' if onnx.cached else f'ready in {onnx.seconds:.1f} s'} ({onnx.path.name})")
    if onnx.note:
        say(onnx.note)
    if onnx.reference is not None:
        say(
            f"model: your ONNX with input {list(recipe.input.shape)} fixed, "
            f"{f'simplified ({onnx.simplifier})' if onnx.simplifier else 'not simplified (onnxsim and onnxslim failed)'}"
            " and shape-inferred for the converters; your file as given is the fidelity reference"
        )
    calib, calibrated = None, dict[str, Any]()  # the calibration data's digest; its record for provenance
    flat = None  # what calibration data without variation means, said as random data is
    seen = set[bytes]()  # the calibration inputs' digests, one per input
    if any(f.precision is Precision.INT8 for f in fmts):
        say("calibration: loading data")
        inputs = calibration_inputs(recipe)
        calibrated = calibration_record(recipe, inputs)
        calib = calibrated["sha256"]
        if recipe.calibration is not None:
            say(f"calibration: {calibration_note(recipe.calibration.data, len(inputs))}")
        flat = constant_calibration_warning(recipe, inputs)
        seen = input_digests(inputs)  # to count the evaluation inputs that are calibration inputs
        del inputs
    # read before any conversion: evaluation data of a shape or type the model cannot take is bad input (exit 2)
    # said now, not after minutes of TensorFlow converting every format
    say("fidelity: loading evaluation data")
    evaluation = evaluation_inputs(recipe)
    warning = random_calibration_warning(recipe, evaluation[0]) if calib else None
    if warning or flat:
        say(f"calibration: warning: {warning or flat}")
        calibrated["warning"] = warning or flat
        calibrated["finding"] = RANDOM_FINDING if warning else CONSTANT_FINDING
    overlap = overlap_calibration_warning(seen, evaluation[0]) if calib else None
    if overlap:  # said besides either of those: random calibration with evaluation's seed is both
        say(f"calibration: warning: {overlap}")
        calibrated["overlap_warning"] = overlap
        calibrated["overlap_finding"] = overlap_finding(overlap)
    keys = {f: cache.artifact_key(onnx.sha256, recipe, f, converters[f], calib) for f in fmts}
    done: dict[Format, Artifact] = {}
    errors: list[EdgekitError] = []  # each failed tool run's error, raised (or summed up) at the end
    for f in fmts:
        hit = cache.lookup(keys[f])
        if hit is not None:
            # an entry made before the calibration was recorded gets it too (its key holds that data's digest)
            hit.provenance = with_calibration(with_plan_finding(hit.provenance, f, hit.files), f, calibrated)
            done[f] = hit
            say(f"{f.value}: cached, no conversion")

    def rekey(f: Format, tools: dict[str, str]) -> str:  # an artifact made otherwise than its key says
        return cache.artifact_key(onnx.sha256, recipe, f, converters[f], calib, tools=tools)

    ref = None
    if any(f not in done for f in fmts):  # a model whose own outputs are not finite: said before converting
        ref = reference_outputs(onnx, recipe, evaluation)  # (ONNX log(x - 0.5): after every format converted)
    for conv_cls, group in by_converter([f for f in fmts if f not in done], converters):
        done.update(_convert_group(conv_cls, group, onnx, recipe, keys, errors, say, rekey, calibrated))
    artifacts = [done[f] for f in fmts]
    check_fidelity(artifacts, onnx, recipe, evaluation, say, ref)
    failed = [a for a in artifacts if a.status != "ok"]
    if failed and not keep_going:
        err = run_failure(failed, errors, recipe)
        err.artifacts = artifacts  # type: ignore[attr-defined]
        raise err
    return artifacts


def _keep_if_named(folder: Path, err: EdgekitError) -> None:
    """A failed conversion's scratch folder is kept for the log its error names (MNN's 'whole log: ...'); one the
    error does not name (ncnn's model.bin/.param when pnnx left operators ncnn lacks) is nobody's to read: it was
    left for a day, listed by `edgekit cache` as a run's leftover, so it is removed."""
    if str(folder) not in str(err):
        shutil.rmtree(folder, ignore_errors=True)


# --- conversion ---------------------------------------------------------------------------------------------
def _disk_full_at(work: Path) -> bool:
    """Whether the disk a converter's work folder is on (or would have been) is full (paths.disk_full)."""
    folder = work
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return paths.disk_full(folder)


def _convert_group(
    conv_cls: type[Converter],
    group: list[Format],
    onnx: OnnxModel,
    recipe: Recipe,
    keys: dict[Format, str],
    errors: list[EdgekitError],
    say: Progress,
    rekey: Callable[[Format, dict[str, str]], str],
    calibrated: dict[str, Any],
) -> dict[Format, Artifact]:
    """One tool run for several formats if the converter offers it, else one conversion per format. A failed run
    makes failed artifacts and adds its error to `errors`; the next run goes on. A converter that made a format
    otherwise than its tool versions say (`key_tools`: the ncnn-int8 speed plan could not be counted) gets it
    stored under the key of what it did (`rekey`), never under the key a later run would look up for the
    planned artifact."""
    shared = conv_cls.convert_many is not Converter.convert_many  # overridden: one run, several formats
    batches = [group] if shared else [[f] for f in group]
    out: dict[Format, Artifact] = {}
    for batch in batches:
        names = ", ".join(f.value for f in batch)
        say(f"{names}: converting with {tool_name(conv_cls, batch)}")
        work = paths.work_dir(conv_cls.__name__)
        conv = conv_cls()
        conv.progress = partial(_say_for, say, names)
        start = time.perf_counter()
        try:
            conv.prepare(batch)
            with PeakRss() as peak:
                files = conv.convert_many(onnx.path, recipe, batch, work)
        except (
            KeyboardInterrupt
        ):  # stopped: a half-made artifact is nobody's to keep (the cache never saw it)
            shutil.rmtree(work, ignore_errors=True)
            raise
        except Exception as exc:  # a converter crash is a failed artifact / ConversionError
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                shutil.rmtree(work, ignore_errors=True)  # its half-written files kept the disk full
                raise  # a full disk is no converter's fault, and the next format would fail too (cli: DiskFull)
            if isinstance(exc, OSError) and exc.errno is None and _disk_full_at(work):
                # a short write (numpy's 'N requested and M written') has no errno: the disk is full all the same
                shutil.rmtree(work, ignore_errors=True)
                raise OSError(
                    errno.ENOSPC, f"{conv_cls.__name__}: {exc}; its work folder is removed", str(work.parent)
                ) from exc
            if cache_unwritable(exc) is not None:  # nor is a read-only cache (convert_recipe names it)
                shutil.rmtree(work, ignore_errors=True)
                raise
            err = (
                exc
                if isinstance(exc, EdgekitError)
                else ConversionError(f"{conv_cls.__name__} crashed on {names}: {type(exc).__name__}: {exc}")
            )
            _keep_if_named(work, err)  # a recipe's mistake names no tool log: removed too
            for f in batch:
                out[f] = Artifact(f, [], keys[f], 0, status="failed", error=f"{CONVERSION_FAILED}{told(err)}")
            if err is not exc:
                err.__cause__ = exc
            errors.append(err)
            say(f"{names}: conversion failed")
            continue
        elapsed = time.perf_counter() - start
        mem = conv.peak_rss_mb if conv.peak_rss_mb is not None else peak.peak_mb
        tools = conv_cls.tool_versions()
        prov = {
            "onnx_sha256": onnx.sha256,
            "tools": tools,
            "converter": conv_cls.__name__,
            "shared_run": [f.value for f in batch] if len(batch) > 1 else [],
            "memory": "tool process" if conv.peak_rss_mb is not None else "sampled process tree",
            "tool_cpu_s": getattr(conv, "tool_cpu_s", None),
        }
        for (
            f
        ) in batch:  # findings: what the artifact holds that its name does not say (Flex ops, float layers)
            found = [
                *getattr(conv, "findings", {}).get(f, []),
                *filter(
                    None,
                    [
                        speed_plan_finding(f, files[f]),
                        float_leftovers(f, files[f]),
                        dynamic_kept_float(f, files[f]),
                    ],
                ),
            ]
            layout = getattr(conv, "layouts", {}).get(f)  # a TFLite file's (edgekit.convert.tflite_layout)
            extra = {"layout": layout} if layout else {}
            key, changed = keys[f], getattr(conv, "key_tools", {}).get(f)
            own = conv_cls.format_tools(f)  # the versions its key holds (ncnn-int8's: the speed plan's too)
            if changed:
                key = rekey(f, changed)
            if changed or own != tools:
                extra["tools"] = {**own, **(changed or {})}
            made = with_calibration({**prov, "findings": found, **extra}, f, calibrated)
            out[f] = cache.store(key, f, files[f], elapsed, mem, made)
        shutil.rmtree(work, ignore_errors=True)
        say(f"{names}: converted in {elapsed:.1f} s")
    return out


RANDOM_FINDING = (
    "calibrated on random inputs (calibration.data kind: random), not real ones: its INT8 scales do not match "
    "real inputs; give real calibration samples (kind: images, npy or builder)"
)
CONSTANT_FINDING = (
    "calibrated on data without variation (all zeros, flat inputs or one input repeated), not real inputs: its "
    "INT8 scales do not match real inputs; give real calibration samples (kind: images, npy or builder)"
)


OVERLAP_FINDING = "its INT8 gates are judged on calibration inputs"


def overlap_finding(warning: str) -> str:
    """The convert table's finding for evaluation inputs that are calibration inputs (its count from the warning)."""
    return (
        f"{OVERLAP_FINDING} ({warning.split(':')[0]}): met in-sample, they overstate "
        "int8 accuracy on unseen inputs; give calibration.data and evaluation.data different samples"
    )


def with_plan_finding(provenance: dict[str, Any], fmt: Format, files: list[Path]) -> dict[str, Any]:
    """A cached ncnn-int8's speed-plan finding said again from its sidecar in today's words: the one stored at
    conversion said int8/fp32 ('pi5-emu 0.421x', deploy's 2.37x) and, for an all-int8 artifact, the layers the
    plan had wanted float."""
    findings = list(provenance.get("findings", []))
    said = [i for i, text in enumerate(findings) if text.startswith("speed plan")]
    now = speed_plan_finding(fmt, files) if said else None
    if now is None:
        return provenance
    findings[said[0]] = now
    return {**provenance, "findings": [t for i, t in enumerate(findings) if i not in said[1:]]}


def with_calibration(provenance: dict[str, Any], fmt: Format, calibrated: dict[str, Any]) -> dict[str, Any]:
    """An INT8 artifact's provenance with what it was calibrated on (kind, source, count, sha256) and, for random
    data, data without variation or evaluation inputs that are calibration inputs, a finding that says so (shown
    under the convert table, kept in --json and artifact.json)."""
    if fmt.precision is not Precision.INT8 or not calibrated:
        return provenance
    said = ("warning", "finding", "overlap_warning", "overlap_finding")
    record = {k: v for k, v in calibrated.items() if k not in said}
    # the overlap depends on the evaluation data, which the cache key does not hold: a stored one is said again
    # only if it is true today
    findings = [t for t in provenance.get("findings", []) if not t.startswith(OVERLAP_FINDING)]
    for key in ("finding", "overlap_finding"):
        if calibrated.get(key) and calibrated[key] not in findings:
            findings.append(calibrated[key])
    return {**provenance, "calibration": record, "findings": findings}


def _say_for(say: Progress, names: str, message: str) -> None:
    say(f"{names}: {message}")
