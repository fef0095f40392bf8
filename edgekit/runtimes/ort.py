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
        from edgekit.convert.onnx import read_onnx

        read_onnx(Path(files[0]), str(files[0]))
