"""ONNX Runtime: the ONNX model itself (fp32) or its static QDQ INT8 quantization, run by onnxruntime's CPU
execution provider on boards and here (the host's onnxruntime is the one onnx2tf pins)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekit.formats import Format, Runtime
from edgekit.runtimes.base import DevicePackage, Outputs, RuntimeSpec
from edgekit.runtimes.host import onnx_session, run_onnx


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
        """The file checks every .onnx runtime shares (`check_onnx_file`), then onnxruntime loads it here: a model
        it cannot load (an op of a custom domain, an opset it does not know) is named before anything is sent."""
        check_onnx_file(files)
        if cls.host_module() is None:
            return
        onnx_session(Path(files[0]))  # InputDataError naming the file and onnxruntime's reason


def check_onnx_file(files: Sequence[Path]) -> None:
    """InputDataError when the .onnx is no file bench can send: unreadable, an IR version newer than the boards'
    onnxruntime reads, or weights in a file beside it."""
    from edgekit.convert.onnx_file import ORT_MAX_IR_VERSION, external_data_files, read_onnx
    from edgekit.errors import InputDataError

    path = Path(files[0])
    model = read_onnx(path, str(path))
    if model.ir_version > ORT_MAX_IR_VERSION:  # onnxruntime refuses the file whatever its operators
        raise InputDataError(
            f"its IR version is {model.ir_version}; onnxruntime {OnnxRuntime.packages[0].pin} reads up to "
            f"{ORT_MAX_IR_VERSION}",
            where=str(path),
            hint=f"write it as IR {ORT_MAX_IR_VERSION} (the operators are the opset's, unchanged): python -c "
            f"\"import onnx; m = onnx.load('{path}'); m.ir_version = {ORT_MAX_IR_VERSION}; onnx.save(m, 'ir11.onnx')\""
            ", or give it to a recipe (model: {kind: onnx, path: ...}), which does so",
        )
    data = external_data_files(model, path, str(path))
    if data:  # bench sends one file per artifact (a recipe's ONNX is copied into the cache with its data)
        raise InputDataError(
            f"its weights are in {', '.join(f.name for f in data)}, beside it: bench sends the one model file",
            where=str(path),
            hint=f"save it with the weights inside: python -c \"import onnx; onnx.save(onnx.load('{path}'), "
            "'whole.onnx')\", or give it to a recipe (model: {kind: onnx, path: ...})",
        )
