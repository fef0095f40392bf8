"""The NCNN INT8 speed plan on shipped recipes too big for the test suite: what it kept and its counts per core.

tests/test_ncnn_speed.py checks the plan on tiny (every layer float: the fp32 model shipped) and digits-keras (a
planned artifact with float layers); this runs the same checks on the detector, yolov5-lite by default (72 s of
the suite's host worker, 2026-12-07: 82 layers counted in int8 and float on two cores, then the planned artifact),
and prints the figures. For each recipe it converts ncnn-fp32 and ncnn-int8 with the plan on (from the
conversion cache when counted before), then checks: the int8 gates pass; the kept artifact is the one the plan
counted (digests) and counts no more guest instructions than ncnn-fp32 on either core; the float leftovers are the
plan's float layers (a detector's constant MemoryData blobs are no layers of it). Exit 1 if any check fails.

    .venv/bin/python bench/ncnn_speed_plan.py [--recipes recipes/yolov5-lite.yaml recipes/mobilenetv2.yaml]

Needs the counting plugin and both emulated cores (`make setup`); EDGEKIT_NCNN_SPEED_PLAN is set to 1 here.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from edgekit.convert.ncnn.plan import SpeedPlan, by_insn, enabled, kept_key, not_counted_because
from edgekit.convert.ncnn.plan_counts import DEVICES, digest
from edgekit.convert.pipeline import convert_recipe
from edgekit.formats import Format
from edgekit.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
RECIPES = [ROOT / "recipes" / "yolov5-lite.yaml"]


def check(recipe_path: Path) -> list[str]:
    """Convert and print one recipe's plan; the failed checks, [] when all hold."""
    recipe = load_recipe(recipe_path)
    fp32, int8 = convert_recipe(recipe, [Format.NCNN_FP32, Format.NCNN_INT8])
    if int8.status != "ok" or fp32.status != "ok":
        return [
            f"{recipe.name}: ncnn-fp32 {fp32.status}, ncnn-int8 {int8.status}: {int8.error or fp32.error}"
        ]
    report = json.loads(int8.files[2].read_text())["int8"]
    plan = report.get("speed_plan")
    if not plan:
        return [
            f"{recipe.name}: no speed plan in the sidecar (counting failed?): {int8.provenance['findings']}"
        ]
    key = kept_key(SpeedPlan(devices=plan["devices"], weights=plan["weights"], kept=plan["kept"]))
    floats = len(plan["float_layers"])
    print(f"{recipe.name}: kept {plan['kept']}, {floats} of {len(plan['layers'])} quantizable layers float")
    failed = []
    for device in DEVICES:
        totals = plan["totals"][device]
        print(
            f"  {device}: fp32 {totals['fp32']:,}, {key} {totals[key]:,} guest instructions "
            f"({by_insn(totals['fp32'], totals[key]):.3f}x fp32 by insn)"
        )
        if totals[key] > totals["fp32"]:
            failed.append(f"{recipe.name}: ncnn-int8 counts more instructions than ncnn-fp32 on {device}")
    if plan["digests"][key] != digest(int8.files[0]) or plan["digests"]["fp32"] != digest(fp32.files[0]):
        failed.append(f"{recipe.name}: the artifacts shipped are not the ones the plan counted")
    leftovers = [f for f in int8.provenance["findings"] if f.startswith("float leftovers: ")]
    print(f"  {leftovers[0] if leftovers else 'no float leftovers'}")
    if floats and not (leftovers and leftovers[0].startswith(f"float leftovers: {floats} layer")):
        failed.append(f"{recipe.name}: float leftovers {leftovers} are not the plan's {floats} float layers")
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="*", type=Path, default=RECIPES)
    args = parser.parse_args()
    os.environ["EDGEKIT_NCNN_SPEED_PLAN"] = "1"
    if not enabled():
        raise SystemExit(f"no speed plan can be counted here: {not_counted_because()}")
    failed = [problem for path in args.recipes for problem in check(path)]
    for problem in failed:
        print(f"FAILED: {problem}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
