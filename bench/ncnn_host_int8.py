"""ncnn-int8 against ncnn-fp32 on this machine's CPU: CPU time per inference, the two artifacts interleaved.

The host figure of the INT8 work (README, "INT8 that is faster"): both artifacts of each recipe, as `edgekit
convert` writes them (from the cache when converted), one thread, the sidecar's options. Rounds alternate the two
models (ten inferences each per round, after warm-up), so a busy neighbour or a clock change hits both alike; the
figure is CPU time (`time.process_time`), not wall time. Prints per recipe the median and minimum ms of each, the
int8 / fp32 ratio of the medians, and in how many rounds int8 took less CPU time than fp32. A hardware
measurement of this host (x86 here), not of a board.

    .venv/bin/python bench/ncnn_host_int8.py [--recipes recipes/yolov5-lite.yaml ...] [--rounds 40]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from edgekit.convert.ncnn.runtime import NcnnIO, NcnnModel, io_path_for
from edgekit.convert.pipeline import convert_recipe
from edgekit.formats import Format
from edgekit.recipe import load_recipe

ROOT = Path(__file__).resolve().parent.parent
RECIPES = [ROOT / "recipes" / "yolov5-lite.yaml", ROOT / "recipes" / "mobilenetv2.yaml"]
PER_ROUND = 10


def _cpu_ms(model: NcnnModel, x: np.ndarray, outputs: list[str]) -> float:
    start = time.process_time()
    for _ in range(PER_ROUND):
        model.extract(x, outputs)
    return (time.process_time() - start) / PER_ROUND * 1000


def compare(recipe_path: Path, rounds: int) -> dict:
    recipe = load_recipe(recipe_path)
    fp32, int8 = convert_recipe(recipe, [Format.NCNN_FP32, Format.NCNN_INT8])
    for art in (fp32, int8):
        if art.status != "ok":
            raise SystemExit(f"{recipe.name}: {art.format.value} did not convert: {art.error}")
    models = {}
    for art in (fp32, int8):
        param = art.files[0]
        io = NcnnIO.read(io_path_for(param))
        models[art.format.value] = (NcnnModel(param, param.with_suffix(".bin"), io, threads=1), io)
    io = models["ncnn-fp32"][1]
    x = np.random.default_rng(0).standard_normal(io.input_shapes[0]).astype(np.float32)
    for model, io in models.values():
        for _ in range(5):
            model.extract(x, io.outputs)
    times: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(rounds):
        for name, (model, io) in models.items():
            times[name].append(_cpu_ms(model, x, io.outputs))
    wins = sum(i < f for f, i in zip(times["ncnn-fp32"], times["ncnn-int8"]))
    med = {name: statistics.median(v) for name, v in times.items()}
    return {
        "recipe": recipe.name,
        "median": med,
        "min": {name: min(v) for name, v in times.items()},
        "ratio": med["ncnn-int8"] / med["ncnn-fp32"],
        "int8_wins": wins,
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="*", type=Path, default=RECIPES)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    print(
        "CPU time per inference on this host, 1 thread, ncnn-fp32 and ncnn-int8 interleaved (hardware measurement)"
    )
    print(
        "| recipe | ncnn-fp32 median / min ms | ncnn-int8 median / min ms | int8 / fp32 | rounds int8 faster |"
    )
    print("|---|---|---|---|---|")
    for path in args.recipes:
        r = compare(path, args.rounds)
        print(
            f"| {r['recipe']} | {r['median']['ncnn-fp32']:.2f} / {r['min']['ncnn-fp32']:.2f} | "
            f"{r['median']['ncnn-int8']:.2f} / {r['min']['ncnn-int8']:.2f} | {r['ratio']:.3f} | "
            f"{r['int8_wins']} of {r['rounds']} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
