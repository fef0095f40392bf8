"""ExecuTorch: PyTorch's on-device runtime (successor of PyTorch Mobile), for recipes with a PyTorch model: the
module exported by torch.export, lowered to the XNNPACK delegate (fp32) or PT2E-quantized for XNNPACK with the
recipe's calibration data first (int8), written as a .pte program and run by ExecuTorch's Python runtime.

Ready but not installable here: no executorch release installs beside edgekit's pins (README, "Runtimes":
0.5.0 to 1.5.1 need numpy>=2 where edgekit pins numpy 1.26.4, 1.5.1 also scikit-learn>=1.7.1 and coremltools
9.0; 0.2.1 to 0.4.0 pin torch 2.3.1 / 2.4.0 / 2.5.0 where edgekit pins torch 2.13.0). `edgekit formats` lists
its formats as unavailable; converting one is a ConversionError that says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekit.errors import InputDataError
from edgekit.formats import Format, Runtime
from edgekit.runtimes.base import DevicePackage, Outputs, RuntimeSpec, output_array

# the release edgekit is written against (its Python runtime API: executorch.runtime.Runtime)
PIN = "1.5.1"


class ExecuTorch(RuntimeSpec):
    runtime = Runtime.EXECUTORCH
    formats = (Format.EXECUTORCH_FP32, Format.EXECUTORCH_INT8)
    suffixes = (".pte",)
    packages = (DevicePackage("executorch", "executorch", termux=None, pin=PIN),)
    converter = "edgekit.convert.executorch"
    agent_runner = "ExecuTorchRunner"
    converter_needs = ("executorch", "torchao")
    not_installable = "no executorch release installs beside edgekit's pins: README, Runtimes"

    @classmethod
    def run(cls, files: Sequence[Path], inputs: np.ndarray, threads: int = 1) -> Outputs:
        import torch
        from executorch.runtime import Runtime as EtRuntime

        method = EtRuntime.get().load_program(Path(files[0])).load_method("forward")
        results: list[list[np.ndarray]] = []
        for sample in inputs:
            outs = method.execute([torch.from_numpy(np.ascontiguousarray(sample[None], dtype=np.float32))])
            for k, y in enumerate(outs):
                if len(results) <= k:
                    results.append([])
                results[k].append(output_array(y))
        return [(f"output_{k}", np.concatenate(r)) for k, r in enumerate(results)]

    @classmethod
    def check_file(cls, files: Sequence[Path]) -> None:
        if cls.host_module() is None:
            return
        from executorch.runtime import Runtime as EtRuntime

        try:
            EtRuntime.get().load_program(Path(files[0]))
        except Exception as exc:  # noqa: BLE001 - ExecuTorch raises RuntimeError for a program it cannot read
            raise InputDataError(
                f"not a readable ExecuTorch program: {str(exc).strip()[:200]}",
                where=str(files[0]),
                hint="give the .pte ExecuTorch's exporter wrote (to_executorch().buffer, or edgekit convert)",
            ) from None
