"""OpenCV DNN: the ONNX model read by cv2.dnn (the "OpenCV zoo" route), its own CPU backend, fp32.

No fp16 format: cv2.dnn's fp16 target for the CPU (DNN_TARGET_CPU_FP16) computes in fp16 only on ARMv8.2 cores
with fp16 arithmetic (the A76, not the A72) and falls back to fp32 elsewhere, so the same file would mean two
different things on the boards edgekit compares; fp16 is left out until it can be told apart in the results.
Boards get opencv-python-headless 4.11.0.86, the last release that installs beside numpy<2 (4.12 needs numpy 2);
the host uses the opencv-python 4.11.0.86 that onnx2tf brings (the same cv2).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekit.formats import Format, Runtime
from edgekit.runtimes.base import DevicePackage, Outputs, RuntimeSpec, output_array
from edgekit.runtimes.ort import OnnxRuntime


class OpenCv(RuntimeSpec):
    runtime = Runtime.OPENCV
    formats = (Format.OPENCV_FP32,)
    suffixes = (".onnx",)
    packages = (
        DevicePackage(
            "cv2", "opencv-python-headless", termux="opencv-python", pin="4.11.0.86", dists=("opencv-python",)
        ),
    )
    converter = "edgekit.convert.opencv"
    agent_runner = "OpenCvRunner"

    @classmethod
    def run(cls, files: Sequence[Path], inputs: np.ndarray, threads: int = 1) -> Outputs:
        import cv2

        cv2.setNumThreads(threads)
        net = cv2.dnn.readNetFromONNX(str(files[0]))
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        names = list(net.getUnconnectedOutLayersNames())
        results: list[list[np.ndarray]] = [[] for _ in names]
        for sample in inputs:
            net.setInput(np.ascontiguousarray(sample[None], dtype=np.float32))
            for k, y in enumerate(net.forward(names)):
                results[k].append(output_array(y))
        return [(name, np.concatenate(r)) for name, r in zip(names, results)]

    check_file = OnnxRuntime.check_file  # the same .onnx file ONNX Runtime reads
