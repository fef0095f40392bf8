"""ONNX Runtime: the ONNX model itself (fp32) or its static QDQ INT8 quantization, run by onnxruntime's CPU
execution provider on boards and here (the host's onnxruntime is the one onnx2tf pins)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekit.formats import Format, Runtime
from edgekit.runtimes.base import DevicePackage, Outputs, RuntimeSpec
from edgekit.runtimes.host import run_onnx


class OnnxRuntime(RuntimeSpec):
    runtime = Runtime.ONNXRUNTIME
    formats = (Format.ONNX_FP32, Format.ONNX_INT8)
    suffixes = (".onnx",)
    packages = (DevicePackage("onnxruntime", "onnxruntime", termux="python-onnxruntime", pin="1.23.0"),)
    converter = "edgekit.convert.onnxrt"
    agent_runner = "OnnxRuntimeRunner"

    @classmethod
    def run(cls, files: Sequence[Path], inputs: np.ndarray, threads: int = 1) -> Outputs:
        return run_onnx(Path(files[0]), inputs, threads)

    @classmethod
    def check_file(cls, files: Sequence[Path]) -> None:
        from edgekit.convert.onnx import external_data_files, read_onnx
        from edgekit.errors import InputDataError

        path = Path(files[0])
        data = external_data_files(read_onnx(path, str(path)), path, str(path))
        if data:  # bench sends one file per artifact (a recipe's ONNX is copied into the cache with its data)
            raise InputDataError(
                f"its weights are in {', '.join(f.name for f in data)}, beside it: bench sends the one model file",
                where=str(path),
                hint=f"save it with the weights inside: python -c \"import onnx; onnx.save(onnx.load('{path}'), "
                "'whole.onnx')\", or give it to a recipe (model: {kind: onnx, path: ...})",
            )
