"""TFLite: onnx2tf's .tflite files, run by ai_edge_litert (or the older tflite_runtime) on boards and here."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InputDataError
from edgekit.formats import Format, Runtime
from edgekit.runtimes.base import DevicePackage, Outputs, RuntimeSpec
from edgekit.runtimes.host import run_tflite


class Tflite(RuntimeSpec):
    runtime = Runtime.TFLITE
    formats = (
        Format.TFLITE_FP32,
        Format.TFLITE_FP16,
        Format.TFLITE_DYNAMIC,
        Format.TFLITE_INT8,
        Format.TFLITE_ONNX2TF_FP32,
        Format.TFLITE_ONNX2TF_FP16,
        Format.TFLITE_ONNX2TF_DYNAMIC,
        Format.TFLITE_ONNX2TF_INT8,
    )  # the onnx2tf route of a Keras source (edgekit/convert/keras.py)
    suffixes = (".tflite",)
    # tflite-runtime 2.14 is the last release and needs numpy<2; it has its own site dir on emulated devices
    packages = (
        DevicePackage("ai_edge_litert", "ai-edge-litert", termux=None, pin="2.1.0"),
        DevicePackage("tflite_runtime", "tflite-runtime", termux="python-tflite-runtime", pin="2.14.0"),
    )
    converter = "edgekit.convert.tflite"
    agent_runner = "TfliteRunner"

    @classmethod
    def run(cls, files: Sequence[Path], inputs: np.ndarray, threads: int = 1) -> Outputs:
        return run_tflite(files[0], inputs, threads)

    @classmethod
    def check_file(cls, files: Sequence[Path]) -> None:
        load_tflite(Path(files[0]))


def load_tflite(path: Path) -> Any:
    """A TFLite Interpreter of the model at PATH on this host; a file it cannot read is bad input (InputDataError).
    model_content is verified: a corrupt file raises here instead of crashing the interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    content = Path(path).read_bytes()
    if not content:  # the interpreter's own words would be "model_path or model_content must be specified"
        raise InputDataError("not a readable .tflite model: the file is empty", where=str(path))
    try:
        return Interpreter(model_content=content)
    except (ValueError, RuntimeError) as exc:
        raise InputDataError(
            f"not a readable .tflite model: {exc}", where=str(path), hint="give the .tflite a converter wrote"
        ) from None
