"""OpenVINO: the host-side reference runtime on x86 (Intel's CPU plugin), for the host-vs-ARM contrast: the ONNX
model converted by OpenVINO's model converter (fp32: .xml + .bin) and quantized by NNCF's post-training
quantization with the recipe's calibration data (int8), run by the OpenVINO runtime here.

Host only (`host_only`): deploy measures these formats on the host and sends them to no board. Inference
precision is pinned to f32 (`INFERENCE_PRECISION_HINT`), so a host CPU with bf16 or fp16 units does not quietly
run the "fp32" format in lower precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekit.errors import InputDataError
from edgekit.formats import Format, Runtime
from edgekit.runtimes.base import DevicePackage, Outputs, RuntimeSpec, output_array


class OpenVino(RuntimeSpec):
    runtime = Runtime.OPENVINO
    formats = (Format.OPENVINO_FP32, Format.OPENVINO_INT8)
    suffixes = (".xml", ".bin")
    packages = (DevicePackage("openvino", "openvino", termux=None, pin="2026.4.1"),)
    converter = "edgekit.convert.openvino"
    agent_runner = "OpenVinoRunner"
    host_only = True
    converter_needs = ("openvino", "nncf")

    @classmethod
    def run(cls, files: Sequence[Path], inputs: np.ndarray, threads: int = 1) -> Outputs:
        import openvino as ov

        xml = next(Path(f) for f in files if Path(f).suffix == ".xml")
        compiled = ov.Core().compile_model(
            str(xml), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
        )
        request = compiled.create_infer_request()
        names = [o.any_name for o in compiled.outputs]
        results: list[list[np.ndarray]] = [[] for _ in names]
        for sample in inputs:
            request.infer({0: np.ascontiguousarray(sample[None], dtype=np.float32)})
            for k in range(len(names)):
                results[k].append(output_array(np.array(request.get_output_tensor(k).data)))
        return [(name, np.concatenate(r)) for name, r in zip(names, results)]

    @classmethod
    def check_file(cls, files: Sequence[Path]) -> None:
        if cls.host_module() is None:
            return
        import openvino as ov

        xml = next(Path(f) for f in files if Path(f).suffix == ".xml")
        try:
            ov.Core().read_model(str(xml))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError kinds for a bad .xml/.bin
            raise InputDataError(
                f"not a readable OpenVINO model: {str(exc).strip().splitlines()[-1][:200]}",
                where=str(xml),
                hint="give the .xml and .bin OpenVINO's converter wrote, side by side with the same name",
            ) from None
