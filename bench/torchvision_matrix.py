"""The 9 x 7 matrix: nine torchvision architectures a user would bring, exported to ONNX as a user would, through
edgekit's seven TFLite and NCNN formats (`--runtimes`: ONNX Runtime, OpenCV DNN and MNN's six instead). Each cell is an artifact that runs on the host (its cosine against the
user's ONNX on the evaluation inputs, size, conversion time, and whether the default gates held) or the named
finding that says why not, in its first line.

How each model gets in, as a user's would: torchvision's model code (edgekit.zoo.torchvision_models: random
weights, seed 0, C++ ops stubbed), exported with `torch.onnx.export(..., opset_version=17, dynamo=False)` and a
dynamic batch axis, 224x224 (ssdlite320: backbone + head at 320x320), then a `kind: onnx` recipe: the file as
given is the fidelity reference and edgekit fixes the batch, simplifies and converts a copy. Calibration: 8
seeded uniform random inputs; evaluation: 4 others (random weights: the cosine says whether the conversion
is faithful, not whether a trained model would keep its accuracy).

    .venv/bin/python bench/torchvision_matrix.py                      # all nine (hours on 2 busy cores)
    .venv/bin/python bench/torchvision_matrix.py --arch resnet18 --arch squeezenet1_1 --json out.json
    .venv/bin/python bench/torchvision_matrix.py -f ncnn-fp32 -f ncnn-fp16 -f ncnn-int8 --json m.json  # adds to m.json
    .venv/bin/python bench/torchvision_matrix.py --runtimes --json m.json      # onnx, opencv and mnn formats

Converted artifacts are cached (EDGEKIT_HOME), so a second run only re-reads them. The NCNN INT8 speed plan
(qemu profiling) is off here unless EDGEKIT_NCNN_SPEED_PLAN says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("EDGEKIT_NCNN_SPEED_PLAN", "0")

FORMATS = (
    "tflite-fp32",
    "tflite-fp16",
    "tflite-dynamic",
    "tflite-int8",
    "ncnn-fp32",
    "ncnn-fp16",
    "ncnn-int8",
)
# the other runtimes a user weighs for CPU inference (README, "Runtimes"): `-f` any of them, or `--runtimes`
RUNTIME_FORMATS = (
    "onnx-fp32",
    "onnx-int8",
    "opencv-fp32",
    "mnn-fp32",
    "mnn-fp16",
    "mnn-int8",
)
EVERY = FORMATS + RUNTIME_FORMATS


def export(arch: str, folder: Path) -> tuple[Path, list[str], int]:
    """The architecture exported as a user would (module docstring): path, output names, input size."""
    import torch

    from edgekit.zoo.torchvision_models import INPUT_SIZE, build

    size = INPUT_SIZE.get(arch, 224)
    outputs = ["boxes", "logits"] if arch == "ssdlite320" else ["logits"]
    path = folder / f"{arch}.onnx"
    if not path.is_file():
        torch.manual_seed(0)
        model = build(arch).eval()
        with torch.no_grad():
            torch.onnx.export(
                model,
                (torch.zeros(1, 3, size, size),),
                str(path),
                input_names=["input"],
                output_names=outputs,
                opset_version=17,
                dynamo=False,
                dynamic_axes={"input": {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
            )
    return path, outputs, size


def recipe_for(arch: str, onnx: Path, outputs: list[str], size: int, formats: list[str]) -> Any:
    import yaml

    from edgekit.recipe import load_recipe

    raw = {
        "name": f"tv-{arch}",
        "task": "generic" if arch == "ssdlite320" else "classify",
        "model": {"kind": "onnx", "path": onnx.name},
        "input": {"name": "input", "shape": [1, 3, size, size], "layout": "NCHW"},
        "outputs": outputs,
        "calibration": {"data": {"kind": "random", "samples": 8, "seed": 1}},
        "evaluation": {"data": {"kind": "random", "samples": 4, "seed": 2}},
        "formats": formats,
    }
    path = onnx.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(raw))
    return load_recipe(path)


def cell(art: Any) -> dict[str, Any]:
    """One matrix cell: ok (runs on the host) with its figures, or the finding's first line."""
    fid = art.fidelity or {}
    runs = bool(art.files) and "cosine" in fid
    out: dict[str, Any] = {
        "runs": runs,
        "status": art.status,
        "mb": art.size_bytes / 1e6 if art.files else None,
        "convert_s": art.convert_s,
        "findings": art.provenance.get("findings", []) if art.provenance else [],
    }
    if runs:
        out.update(cosine=fid["cosine"], cosine_worst=fid.get("cosine_worst"), gates=fid["gates"]["passed"])
    if art.error:
        out["finding"] = str(art.error).splitlines()[0][:160]
    return out


def reference_scale(onnx: Path, size: int) -> float:
    """The largest output of the user's ONNX on one evaluation-like input: a random-weight network whose outputs
    are ~1e-10 (torchvision initialises some classifier heads that small) leaves an INT8 artifact nothing to keep,
    and its cosine says nothing about the converter."""
    import numpy as np

    from edgekit.runtimes import run_onnx

    x = np.random.default_rng(2).uniform(0, 1, (1, 3, size, size)).astype(np.float32)
    return max(float(np.abs(y).max()) for _, y in run_onnx(onnx, x))


def run_arch(arch: str, folder: Path, formats: list[str]) -> dict[str, dict[str, Any]]:
    from edgekit.convert.pipeline import convert_recipe

    start = time.perf_counter()
    try:
        onnx, outputs, size = export(arch, folder)
        arts = convert_recipe(
            recipe_for(arch, onnx, outputs, size, formats),
            keep_going=True,
            progress=lambda m: print(f"  {arch}: {m}", file=sys.stderr, flush=True),
        )
    except Exception as exc:  # noqa: BLE001 - a whole row failing is a finding of its own, the rest go on
        first = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:160]
        return {f: {"runs": False, "status": "failed", "finding": first} for f in formats}
    scale = reference_scale(onnx, size)
    row = {a.format.value: {**cell(a), "reference_max_abs": scale} for a in arts}
    print(f"  {arch}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    return row


def render(matrix: dict[str, dict[str, dict[str, Any]]], formats: list[str]) -> str:
    lines = []
    for arch, row in matrix.items():
        lines.append(arch)
        for f in formats:
            c = row.get(f, {})
            if c.get("runs"):
                gate = "gates ok" if c.get("gates") else "gate MISSED"
                if not c.get("gates") and (c.get("reference_max_abs") or 1.0) < 1e-6:
                    gate += (
                        f" (the random-weight model's outputs are ~{c['reference_max_abs']:.0e}: nothing for "
                        "the converter to keep, not a converter fault)"
                    )
                extra = f"; {c['findings'][0]}" if c.get("findings") else ""
                lines.append(
                    f"  {f:<15} ok  cosine {c['cosine']:.5f} (worst {c.get('cosine_worst') or 0:.5f})  "
                    f"{c['mb']:.2f} MB  {c['convert_s']:.0f} s  {gate}{extra}"
                )
            else:
                lines.append(f"  {f:<15} --  {c.get('finding', 'not converted')}")
    cells = [c for row in matrix.values() for c in row.values()]
    runs = sum(1 for c in cells if c.get("runs"))
    named = sum(1 for c in cells if not c.get("runs") and c.get("finding"))
    gates = sum(1 for c in cells if c.get("runs") and c.get("gates"))
    lines.append(
        f"{len(cells)} conversions: {runs} artifacts run on the host ({gates} within the default gates), "
        f"{named} named findings, {len(cells) - runs - named} unexplained"
    )
    return "\n".join(lines)


def markdown(matrix: dict[str, dict[str, dict[str, Any]]], formats: list[str]) -> str:
    """The matrix as a Markdown table: `cosine mean / MB` per cell (a missed gate marked), or the finding."""
    lines = ["| architecture | " + " | ".join(formats) + " |", "|---" * (len(formats) + 1) + "|"]
    for arch, row in matrix.items():
        cells = []
        for f in formats:
            c = row.get(f)
            if c is None:
                cells.append("not run")
            elif c.get("runs"):
                miss = "" if c.get("gates") else " (gate missed)"
                cells.append(f"{c['cosine']:.4f} / {c['mb']:.2f}{miss}")
            else:
                cells.append(c.get("finding", "not converted"))
        lines.append(f"| {arch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    from edgekit.zoo.torchvision_models import ARCHITECTURES, INPUT_SIZE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", choices=ARCHITECTURES, help="default: all nine")
    parser.add_argument("-f", "--format", action="append", choices=EVERY, help="default: all seven")
    parser.add_argument(
        "--runtimes", action="store_true", help="the other runtimes' formats: " + ", ".join(RUNTIME_FORMATS)
    )
    parser.add_argument(
        "--json",
        type=Path,
        help="the matrix as JSON, written after every architecture (an existing file is added to)",
    )
    parser.add_argument(
        "--work", type=Path, help="folder for the exported ONNX files (default: a temporary one)"
    )
    parser.add_argument(
        "--show", action="store_true", help="only print the --json matrix (text and Markdown)"
    )
    args = parser.parse_args()
    formats = args.format or list(RUNTIME_FORMATS if args.runtimes else FORMATS)
    if args.show:
        matrix = json.loads(args.json.read_text())
        for arch, row in matrix.items():  # matrices from before cells recorded it: from the --work ONNX files
            onnx = args.work / f"{arch}.onnx" if args.work else None
            if (
                onnx is not None
                and onnx.is_file()
                and any("reference_max_abs" not in c for c in row.values())
            ):
                scale = reference_scale(onnx, INPUT_SIZE.get(arch, 224))
                for c in row.values():
                    c.setdefault("reference_max_abs", scale)
        shown = [f for f in EVERY if any(f in row for row in matrix.values())]
        print(render(matrix, shown) + "\n\n" + markdown(matrix, shown))
        return
    folder = args.work or Path(tempfile.mkdtemp(prefix="tv-matrix-"))
    folder.mkdir(parents=True, exist_ok=True)
    matrix: dict[str, dict[str, dict[str, Any]]] = {}
    if args.json and args.json.is_file():  # a run of other formats or architectures adds to the same matrix
        matrix = json.loads(args.json.read_text())
    for arch in args.arch or ARCHITECTURES:
        matrix[arch] = {**matrix.get(arch, {}), **run_arch(arch, folder, formats)}
        if args.json:
            args.json.write_text(json.dumps(matrix, indent=1, default=str))
        print(render({arch: matrix[arch]}, formats), flush=True)
    every = [f for f in EVERY if any(f in row for row in matrix.values())]
    print("\n" + render(matrix, every))


if __name__ == "__main__":
    main()
