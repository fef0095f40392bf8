"""The calibration set of the board-latency estimate: 17 of ncnn's benchmark models, their published Raspberry Pi 4
and Pi 5 figures, and the instruction counts measured here for each on the boards' emulated cores.

The models (data/ncnn-benchmark/*.param, with models.json: input shape, output blobs, byte count of the zero
weights) and the figures (board_figures.json, with their source) are ncnn's own: benchncnn runs each with all-zero
weights, an input filled with 0.01 and ncnn's default options (fp16 storage, and on the Cortex-A76 fp16 arithmetic
for float models; int8 inference for the `_int8` models). Counting here does exactly that, on pi4-emu (Cortex-A72)
and pi5-emu (Cortex-A76), at 1 and 4 threads, and `bench/estimate_cv.py --count` writes the result to
data/calibration_counts.json, which the cost model reads. Nothing else is fitted on: other models and published
figures are kept aside to check the estimate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from edgekit.convert.ncnn.param import has_int8_layers, read_param
from edgekit.errors import EdgekitError
from edgekit.estimate.ncnn_kernels import graph_kernels
from edgekit.estimate.zero_weights import write_zeros
from edgekit.paths import data_dir

DATA = Path(__file__).with_name("data")
BENCH = DATA / "ncnn-benchmark"
COUNTS_FILE = DATA / "calibration_counts.json"
DEVICES = {"pi4": "pi4-emu", "pi5": "pi5-emu"}
THREADS = (1, 4)
INPUT_FILL = 0.01  # benchncnn's input value


@dataclass(frozen=True)
class BenchModel:
    """One of ncnn's benchmark models, as benchncnn runs it."""

    name: str
    param: Path
    input_shape: list[int]  # NCHW
    inputs: list[str]
    outputs: list[str]
    zero_bin_bytes: int
    int8: bool  # has int8 layers (int8_scale_term set): ncnn runs them with int8 kernels
    layers: int

    @property
    def kernel_class(self) -> str:
        return "int8" if self.int8 else "float"


@cache
def models() -> dict[str, BenchModel]:
    meta = json.loads((BENCH / "models.json").read_text())
    out = {}
    for name, m in sorted(meta.items()):
        param = BENCH / f"{name}.param"
        out[name] = BenchModel(
            name,
            param,
            list(m["input_shape_nchw"]),
            list(m["inputs"]),
            list(m["outputs"]),
            int(m["zero_bin_bytes"]),
            has_int8_layers(param),
            len(read_param(param).layers),
        )
    return out


@cache
def model_layer_types(name: str) -> frozenset[str]:
    """The layer types of a calibration model, and the kernels within them it runs (ncnn_kernels: a fused
    activation, a dilated convolution, an Interp's mode)."""
    return frozenset(graph_kernels(models()[name].param))


def layer_types() -> frozenset[str]:
    """Every ncnn layer type and kernel some calibration model has: kernels whose speed the published figures
    speak for."""
    return frozenset().union(*(model_layer_types(name) for name in models()))


def uncalibrated_layer_types(types: Iterable[str]) -> list[str]:
    """The layer types and kernels of a model that no calibration model has (their speed is not calibrated)."""
    return sorted(set(types) - layer_types())


@cache
def figures() -> dict[str, Any]:
    return dict(json.loads((BENCH / "board_figures.json").read_text()))


def published_ms(model: str, board: str, threads: int) -> float:
    """The published average (ms) of `model` on `board` at `threads`."""
    try:
        return float(figures()["ms"][model][board][str(threads)]["avg"])
    except KeyError:
        raise EdgekitError(
            f"no published figure for {model} on {board} at {threads} threads",
            where=str(BENCH / "board_figures.json"),
        ) from None


def zero_weights(model: BenchModel) -> Path:
    """The model's .param with an all-zero .bin of the size ncnn reads, as benchncnn loads it (a sparse file: no
    disk is used for the zeros); the folder is edgekit's data dir, made once."""
    folder = data_dir() / "calibration" / "ncnn-benchmark"
    folder.mkdir(parents=True, exist_ok=True)
    param = folder / model.param.name
    if not param.exists() or param.read_bytes() != model.param.read_bytes():
        param.write_bytes(model.param.read_bytes())
    write_zeros(param.with_suffix(".bin"), model.zero_bin_bytes)
    return param


@cache
def counts() -> dict[str, Any]:
    """The stored counts: {"meta": {...}, "counts": {model: {board: {threads: {...}}}}}."""
    if not COUNTS_FILE.exists():
        raise EdgekitError(
            "the calibration counts are missing",
            where=str(COUNTS_FILE),
            hint="run `.venv/bin/python bench/estimate_cv.py --count` (about an hour on 2 cores)",
        )
    return dict(json.loads(COUNTS_FILE.read_text()))


def count_of(model: str, board: str, threads: int) -> dict[str, Any] | None:
    """{"instructions": total per invoke, "busiest_thread": ..., "per_thread": [...]} or None if not counted."""
    found = counts()["counts"].get(model, {}).get(board, {}).get(str(threads))
    return dict(found) if found else None
