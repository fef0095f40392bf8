"""How an ncnn artifact is run: its sidecar (model.io.json) and a host runner that honours it.

ncnn has no names for a model's inputs and outputs beyond its blob names (pnnx writes in0.. / out0..) and no
batch axis, and its arithmetic depends on runtime options: on ARMv8.2 cores (Cortex-A76, A55) ncnn uses fp16
storage and arithmetic by default, so an "fp32" model would silently run in fp16 there. The sidecar records,
next to the .param/.bin, what every runner (this host's fidelity check, the on-device agent) must do:

    {"version": 1, "format": "ncnn-fp32",
     "inputs": ["in0"],   "input_names": ["input"],   "input_shapes": [[1, 3, 224, 224]],
     "outputs": ["out0"], "output_names": ["logits"], "output_shapes": [[1, 1000]],   # ONNX output order
     "options": {"use_fp16_packed": false, "use_fp16_storage": false, "use_fp16_arithmetic": false,
                 "use_bf16_storage": false, "use_int8_inference": false},
     "notes": ["..."], "int8": {...quantizer report, ncnn-int8 only...}}

`inputs`/`outputs` are ncnn blob names (flat lists, so the stdlib-only agent reads them directly).
A runner sets every `options` key on `ncnn.Net().opt` before loading, feeds each input without its batch axis
(ncnn Mat from `x[0]`), and reshapes each output blob to its `output_shapes` entry (batch axis back).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert.ncnn.param import read_param
from edgekit.errors import ConversionError
from edgekit.formats import Format, Precision

IO_VERSION = 1  # bump when the sidecar or RUNTIME_OPTIONS change: part of the artifact cache key
IO_SUFFIX = ".io.json"

# ncnn Option flags per precision. fp32 and int8 switch every reduced-precision float path off, so "fp32" is
# fp32 on every CPU and int8 layers sit between fp32 layers; fp16 keeps ncnn's own defaults (fp16 storage and,
# where the CPU has it, fp16 arithmetic), which is what a user of ncnn gets without asking.
_FLOAT_OFF = {
    "use_fp16_packed": False,
    "use_fp16_storage": False,
    "use_fp16_arithmetic": False,
    "use_bf16_storage": False,
}
RUNTIME_OPTIONS: dict[Precision, dict[str, bool]] = {
    Precision.FP32: {**_FLOAT_OFF, "use_int8_inference": False},
    Precision.FP16: {
        "use_fp16_packed": True,
        "use_fp16_storage": True,
        "use_fp16_arithmetic": True,
        "use_bf16_storage": False,
        "use_int8_inference": False,
    },
    Precision.INT8: {**_FLOAT_OFF, "use_int8_inference": True},
}


@dataclass
class NcnnIO:
    """The sidecar of one ncnn artifact (see the module docstring); shapes include the batch axis of 1."""

    format: str
    inputs: list[str]
    outputs: list[str]
    options: dict[str, bool]
    input_names: list[str] = field(default_factory=list)
    input_shapes: list[list[int]] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    output_shapes: list[list[int] | None] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    int8: dict[str, Any] | None = None
    version: int = IO_VERSION

    def write(self, path: Path) -> None:
        data = asdict(self)
        if data["int8"] is None:
            del data["int8"]
        # compact: it ships with the model and counts in the artifact's size
        Path(path).write_text(json.dumps(data, separators=(",", ":")) + "\n")

    @classmethod
    def read(cls, path: Path) -> NcnnIO:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except (OSError, ValueError, TypeError) as exc:
            raise ConversionError(
                f"unreadable ncnn sidecar: {exc}",
                where=str(path),
                hint="convert the model again (edgekit convert)",
            ) from None


def io_path_for(param: Path) -> Path:
    """model.param -> model.io.json"""
    return param.with_suffix(IO_SUFFIX)


def options_for(fmt: Format) -> dict[str, bool]:
    return dict(RUNTIME_OPTIONS[fmt.precision])


def input_mat(array: np.ndarray) -> Any:
    """An ncnn.Mat owning a copy of `array` (its batch axis already dropped). `ncnn.Mat(array)` borrows the
    buffer with no reference count, and ncnn reads that count before an in-place layer (ReLU, BatchNorm, ...)
    consumes a blob fed in: a borrowed input whose first consumer works in place is a segfault. An owned Mat is
    copied by ncnn before such a layer, so the caller's array is never written either."""
    import ncnn

    return ncnn.Mat(np.ascontiguousarray(array, dtype=np.float32)).clone()


def missing_layers(param: Path) -> list[str]:
    """Layer types of a .param that this ncnn build cannot create (unknown, or compiled out: ArgMax is)."""
    import ncnn

    try:
        kinds = sorted({layer.type for layer in read_param(param).layers})
    except ConversionError:
        return []
    return [k for k in kinds if ncnn.create_layer(k) is None]


def param_load_error(param: Path) -> ConversionError:
    """Why ncnn could not load `param`: a layer type this build lacks (named), or bad syntax."""
    missing = missing_layers(param)
    if missing:
        return ConversionError(
            f"this ncnn build has no layer for {', '.join(missing)} (ncnn leaves some layers out of its builds), "
            "so it cannot load the model",
            where=str(param),
            hint="compute it after the model's last layer, in your own code (e.g. argmax over the scores), and "
            "export the model without it",
        )
    return ConversionError(
        "ncnn cannot load this .param (bad syntax)", where=str(param), hint="see ncnn's error above"
    )


class NcnnModel:
    """An ncnn artifact loaded on this host with its sidecar's options; `run` maps inputs to named outputs."""

    def __init__(self, param: Path, bin_path: Path, io: NcnnIO | None = None, threads: int = 1) -> None:
        import ncnn

        self.io = io or NcnnIO.read(io_path_for(Path(param)))
        self.net = ncnn.Net()
        self.net.opt.num_threads = threads
        for key, value in self.io.options.items():
            setattr(self.net.opt, key, value)
        if self.net.load_param(str(param)) != 0:
            raise param_load_error(Path(param))
        if self.net.load_model(str(bin_path)) != 0:
            raise ConversionError(
                "ncnn cannot load this .bin (it does not match the .param)", where=str(bin_path)
            )

    def close(self) -> None:
        self.net.clear()

    def __enter__(self) -> NcnnModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def extract(self, inputs: np.ndarray | Sequence[np.ndarray], blobs: Sequence[str]) -> list[np.ndarray]:
        """One inference; each input has its batch axis of 1 (one array for a one-input model). Returns the
        named blobs in ncnn's layout (no batch axis): outputs, or intermediate activations (calibration)."""

        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if len(inputs) != len(self.io.inputs):
            raise ConversionError(f"model takes {len(self.io.inputs)} inputs, got {len(inputs)}")
        ex = self.net.create_extractor()
        # light mode recycles intermediate blobs once consumed: fine for outputs (never consumed), but an
        # intermediate blob extracted after it was recycled comes back as an error
        ex.set_light_mode(set(blobs) <= set(self.io.outputs))
        for blob, x in zip(self.io.inputs, inputs):
            ex.input(blob, input_mat(np.asarray(x, dtype=np.float32)[0]))
        return [self._extract(ex, blob) for blob in blobs]

    def run_one(self, inputs: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        """One inference; outputs in the original model's order and shapes (batch axis of 1)."""
        raw = self.extract(inputs, self.io.outputs)
        shapes = self.io.output_shapes or [None] * len(raw)
        return [out.reshape(shape) if shape else out[None] for shape, out in zip(shapes, raw)]

    def run(self, inputs: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        """Every sample of a batch (N, ...) through the model one by one; outputs stacked to (N, ...)."""
        batches = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
        per_sample = [self.run_one([b[i : i + 1] for b in batches]) for i in range(len(batches[0]))]
        return [np.concatenate([s[k] for s in per_sample]) for k in range(len(self.io.outputs))]

    @staticmethod
    def _extract(ex: Any, blob: str) -> np.ndarray:
        ret, mat = ex.extract(blob)
        if ret != 0:
            raise ConversionError(f"ncnn failed to compute blob {blob!r} (error {ret})")
        if mat.empty():  # a detector with nothing detected: an empty result (np.array of it crashes)
            return np.zeros((0,), dtype=np.float32)
        return np.array(mat, dtype=np.float32)
