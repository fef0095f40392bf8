"""Guest instruction counts of every artifact of the yolov5-lite and mobilenetv2 recipes on the emulated
Cortex-A72 (pi4-emu) and Cortex-A76 (pi5-emu): repeated runs and their spread, and the INT8 / fp32 ratio.

Each run is a separate guest process (all of one device's artifacts in it), each artifact counted over
`--windows` windows of one invocation after one warm-up. "identical" says whether every run gave exactly the
same counts; "spread" is (max - min) / median over all windows of all runs. The cost model's calibration counts
and its cross-validation are bench/estimate_cv.py's.

    .venv/bin/python bench/counts.py [--recipes recipes/mobilenetv2.yaml ...] [--runs 2] [--windows 2]
        [--devices pi4-emu,pi5-emu] [--threads 1] [--json out.json]

Needs the devices and the plugin built (`edgekit emu build pi4-emu`, `edgekit emu build pi5-emu`) and the
artifacts converted (`edgekit convert RECIPE`; done here through the cache when missing). Slow under qemu:
about 15 to 60 s per invocation of a real model on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from edgekit.convert.pipeline import convert_recipe
from edgekit.emu.plugin.counting import CountJob, count_artifacts
from edgekit.formats import Format, Precision
from edgekit.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ("recipes/yolov5-lite.yaml", "recipes/mobilenetv2.yaml")


def artifacts_of(recipe_path: str) -> tuple[str, dict[Format, Path]]:
    recipe = load_recipe(ROOT / recipe_path)
    arts = convert_recipe(recipe, keep_going=True, progress=lambda m: None)
    return recipe.name, {a.format: a.main_file for a in arts if a.files and a.main_file.exists()}


def count_runs(
    files: dict[Format, Path], device: str, runs: int, windows: int, threads: int
) -> dict[Format, list]:
    """Per format: one list of per-window counts per run."""
    out: dict[Format, list] = {f: [] for f in files}
    for _ in range(runs):
        jobs = [CountJob(path, threads=threads, repeat=windows) for path in files.values()]
        for fmt, res in zip(files, count_artifacts(jobs, device)):
            out[fmt].append(res.per_invoke)
    return out


def summarize(runs: list[list[int]]) -> dict:
    flat = [c for run in runs for c in run]
    med = statistics.median(flat)
    return {
        "instructions": int(med),
        "spread": (max(flat) - min(flat)) / med,
        "identical": all(run == runs[0] for run in runs),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--devices", default="pi4-emu,pi5-emu")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every count here")
    args = parser.parse_args()

    table: dict[str, dict] = {}
    for recipe_path in args.recipes:
        name, files = artifacts_of(recipe_path)
        for device in args.devices.split(","):
            start = time.monotonic()
            counted = count_runs(files, device, args.runs, args.windows, args.threads)
            print(f"# {name} on {device}: {time.monotonic() - start:.0f} s", flush=True)
            for fmt, runs in counted.items():
                s = summarize(runs)
                table[f"{name}|{device}|{fmt.value}"] = s
                print(
                    f"{name:12s} {device:8s} {fmt.value:15s} {s['instructions']:>14,d} instructions/invoke  "
                    f"spread {100 * s['spread']:.4f} %  identical across runs: {s['identical']}",
                    flush=True,
                )
    print_ratios(table)
    if args.json:
        args.json.write_text(json.dumps(table, indent=1))


def print_ratios(table: dict[str, dict]) -> None:
    """INT8 / fp32 instruction ratio per model, runtime and core."""
    print("\nINT8 / fp32 instruction ratio (guest instructions per invoke, 1 window median)")
    for key, s in sorted(table.items()):
        name, device, fmt = key.split("|")
        f = Format(fmt)
        if f.precision is not Precision.INT8:
            continue
        base = table.get(f"{name}|{device}|{f.fp32_reference.value}")
        if base:
            print(
                f"  {name:12s} {device:8s} {f.runtime.value:7s} {s['instructions'] / base['instructions']:.3f}"
            )


if __name__ == "__main__":
    main()
