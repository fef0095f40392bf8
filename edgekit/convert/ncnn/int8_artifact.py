"""The ncnn-int8 artifact, built from the fp32 export pnnx wrote: every layer ncnn can run in int8 quantized
(int8.py), then the speed plan's float layers (plan.py), and its sidecar (the options it runs with, the plan, the
notes a user reads). The converter (converter.py) calls quantize_artifact once the fp32 files are in place.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert.ncnn.runtime import NcnnIO, io_path_for, options_for
from edgekit.errors import EdgekitError, RecipeError
from edgekit.formats import Format
from edgekit.recipe import Recipe

# int8 artifacts run with ncnn's default options: the float layers between int8 ones use fp16 where the core
# has fp16 arithmetic (ARMv8.2: A76), as a user of ncnn gets them; fp32 on the A72 and on x86.
INT8_OPTIONS = {
    "use_fp16_packed": True,
    "use_fp16_storage": True,
    "use_fp16_arithmetic": True,
    "use_bf16_storage": False,
    "use_int8_inference": True,
}


def quantize_artifact(
    param: Path,
    bin_path: Path,
    io: NcnnIO,
    calibration: np.ndarray,
    recipe: Recipe | None,
    float_layers: frozenset[str] | set[str],
    progress: Callable[[str], None] | None = None,
    on_plan_failure: Callable[[str], None] | None = None,
    on_plan_not_counted: Callable[[str], None] | None = None,
    held_plan: Sequence[str] | None = None,
) -> NcnnIO:
    """Quantize every layer ncnn can run in int8, then (where the emulated cores are built) keep in float the
    layers whose int8 kernel counts more instructions (plan.py); the plan goes into the sidecar.

    `held_plan`: no plan counted; these layers (another artifact's plan, `analyze --fix`'s plain INT8 one) stay
    float beside `float_layers`, and the sidecar says the plan was held, not counted for this float set."""
    from edgekit.convert.ncnn import plan as ncnn_plan
    from edgekit.convert.ncnn.int8 import Int8Report, quantize_ncnn

    method = recipe.calibration.method.value if recipe and recipe.calibration else "kl"
    granularity = recipe.int8.granularity.value if recipe else "per-channel"
    fp32_io = replace(io, format=Format.NCNN_FP32.value, options=options_for(Format.NCNN_FP32))
    with tempfile.TemporaryDirectory(prefix="edgekit-int8-") as tmp, _named_as_artifact(tmp, param, bin_path):
        src_param, src_bin = Path(tmp) / "model.param", Path(tmp) / "model.bin"
        shutil.copyfile(param, src_param)
        shutil.copyfile(bin_path, src_bin)
        fp32_io.write(io_path_for(src_param))

        stats_cache: dict = {}  # calibration statistics, shared by every build of this conversion

        def build(slower: list[str]) -> Int8Report:
            """Write the int8 artifact with `slower` (and the caller's float layers) left in float."""
            report = quantize_ncnn(
                src_param,
                src_bin,
                calibration,
                fp32_io,
                param,
                bin_path,
                method=method,
                granularity=granularity,
                float_layers=set(float_layers) | set(slower),
                stats_cache=stats_cache,
            )
            replace(io, options=dict(INT8_OPTIONS), int8=report.to_dict()).write(io_path_for(param))
            return report

        float_options = {**INT8_OPTIONS, "use_int8_inference": False}  # a float layer in the int8 artifact
        try:
            if held_plan is not None:  # 5 to 9 guest runs saved per candidate of `analyze --fix`
                plan, report, why_none = None, build(list(held_plan)), ncnn_plan.HELD
            else:
                plan, report, why_none = ncnn_plan.plan_and_build(
                    build, src_param, param, float_options, progress
                )
        except RecipeError as exc:  # `ncnn_float_layers: [nosuch]`: the recipe's mistake, said at the recipe
            if recipe is not None:  # (it named the scratch copy of the model, removed before anyone reads it)
                exc.where = str(recipe.path)
            raise
        if plan is not None and not report.quantized:  # int8 lost on every layer: ship the fp32 model as is
            shutil.copyfile(src_param, param)
            shutil.copyfile(src_bin, bin_path)
    if plan is None and why_none.startswith(ncnn_plan.COUNT_FAILED) and on_plan_failure is not None:
        on_plan_failure(why_none)
    elif plan is None and why_none not in (ncnn_plan.SWITCHED_OFF, ncnn_plan.HELD) and on_plan_not_counted:
        on_plan_not_counted(why_none)
    return _described(io, report, plan, why_none, recipe, float_layers, held_plan)


@contextlib.contextmanager
def _named_as_artifact(tmp: str, param: Path, bin_path: Path) -> Iterator[None]:
    """An error naming the fp32 copy in TMP (removed before anyone reads the error) names the artifact's own
    files instead."""
    try:
        yield
    except EdgekitError as exc:
        if exc.where and exc.where.startswith(tmp):
            copies = {str(Path(tmp) / "model.param"): str(param), str(Path(tmp) / "model.bin"): str(bin_path)}
            exc.where = copies.get(exc.where, exc.where.replace(tmp, str(param.parent)))
            exc.args = (str(exc),)
        raise


def _described(
    io: NcnnIO,
    report: Any,
    plan: Any,
    why_none: str,
    recipe: Recipe | None,
    float_layers: frozenset[str] | set[str],
    held_plan: Sequence[str] | None = None,
) -> NcnnIO:
    """The sidecar of the kept artifact: its layers (each float layer with its reason), the plan, the options
    it runs with and the notes a user reads."""
    reasons = {c.name: c.reason for c in (plan.layers if plan else []) if not c.int8}
    held = set(held_plan or ())
    for row in report.layers:
        if row.name in reasons and not row.int8 and row.name not in float_layers:
            row.reason = f"int8 kernel counts more instructions ({reasons[row.name]})"
        elif row.name in held and not row.int8 and row.name not in float_layers:
            row.reason = "int8 kernel counts more instructions (held from another artifact's speed plan)"
    io.int8 = report.to_dict()
    io.notes.extend(report.notes())
    if plan is not None:
        io.int8["speed_plan"] = plan.to_dict()
        io.notes.extend(plan.notes())
    elif held_plan is not None:
        io.int8["speed_plan_held"] = sorted(held)
        io.notes.append(
            f"speed plan not counted for this float set: the {len(held)} layers another artifact's plan keeps "
            "float are held (`edgekit analyze --fix` builds its candidates so); `edgekit convert` counts the "
            "plan for the float set a recipe names"
        )
    else:
        io.notes.append(f"no speed plan: {why_none}; every quantizable layer is int8")
    if plan is not None and not report.quantized:  # int8 lost on every layer (a tiny model): say it plainly
        io.options = dict(options_for(Format.NCNN_FP32))
        io.notes.append(
            "no layer counts fewer instructions in int8 on the emulated cores: this artifact runs "
            "every layer in float: it is the fp32 model, files and options"
        )
        return io
    io.options = dict(INT8_OPTIONS)
    io.notes.append(
        "ncnn's default options (fp16 storage and arithmetic for the float layers where the core has "
        "them, as on the Cortex-A76; fp32 elsewhere): turning them off made int8 artifacts count 1.1x "
        "to 2.2x more instructions on the A76"
    )
    if recipe is not None and recipe.int8.io.value == "int8":
        io.notes.append(
            "int8.io=int8 is not applicable to ncnn: inputs and outputs stay float32 "
            "(ncnn quantizes inside each int8 layer)"
        )
    return io
