"""OpenCV DNN: the ONNX model read by cv2.dnn (the "OpenCV zoo" route), its own CPU backend, fp32.

No fp16 format: cv2.dnn's fp16 target for the CPU (DNN_TARGET_CPU_FP16) computes in fp16 only on ARMv8.2 cores
with fp16 arithmetic (the A76, not the A72) and falls back to fp32 elsewhere, so the same file would mean two
different things on the boards edgekit compares; fp16 is left out until it can be told apart in the results.
Boards get opencv-python-headless 4.11.0.86, the last release that installs beside numpy<2 (4.12 needs numpy 2);
the host uses the opencv-python 4.11.0.86 that onnx2tf brings (the same cv2).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekit.errors import InputDataError
from edgekit.formats import Format, Runtime
from edgekit.runtimes.base import DevicePackage, Outputs, RuntimeSpec, output_array
from edgekit.runtimes.child_check import check_in_child
from edgekit.runtimes.ort import check_onnx_file


class OpenCvError(RuntimeError):
    """cv2.dnn failed reading or running a model; the message is OpenCV's reason in one line."""


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
        """A cv2.error is raised again as OpenCvError, its message one line (opencv_reason); cv2's own log (an
        `[ERROR:0@0.021] global onnx_importer.cpp ...` line on stderr, through convert's output) is silenced."""
        import cv2

        cv2.setNumThreads(threads)
        level = cv2.setLogLevel(0)  # LOG_LEVEL_SILENT; returns the level it replaces
        try:
            net = cv2.dnn.readNetFromONNX(str(files[0]))
            net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
            names = list(net.getUnconnectedOutLayersNames())
            results: list[list[np.ndarray]] = [[] for _ in names]
            for sample in inputs:
                net.setInput(np.ascontiguousarray(sample[None], dtype=np.float32))
                for k, y in enumerate(net.forward(names)):
                    results[k].append(output_array(y))
        except cv2.error as exc:
            raise OpenCvError(f"OpenCV {cv2.__version__} DNN: {opencv_reason(str(exc))}") from None
        finally:
            cv2.setLogLevel(level)
        return [(name, np.concatenate(r)) for name, r in zip(names, results)]

    @classmethod
    def check_file(cls, files: Sequence[Path]) -> None:
        """The .onnx checks ONNX Runtime's file gets (the same file is sent), then cv2.dnn reads it here: a model
        OpenCV's DNN cannot create (an op it has no layer for, such as GridSample) is named before anything is
        sent."""
        check_onnx_file(files)
        if cls.host_module() is None:
            return
        check_opencv_file(Path(files[0]))


# cv2.dnn reads an ONNX with its own protobuf parser and layer factory (a malformed graph could crash it): the
# check reads the file in a child process, never in edgekit's own (about 0.3 s)
CHECK_TIMEOUT_S = 60
_CHECK_CHILD = (
    "import sys\n"
    "import cv2\n"
    "cv2.setLogLevel(0)\n"
    "try:\n"
    "    cv2.dnn.readNetFromONNX(sys.argv[1])\n"
    "except Exception as exc:\n"
    "    sys.stderr.write('edgekit-opencv-check: ' + ' '.join(str(exc).split()) + '\\n')\n"
    "    sys.exit(3)\n"
)


def check_opencv_file(path: Path) -> None:
    """InputDataError (which file, OpenCV's reason) when cv2.dnn cannot read the .onnx at PATH: it raises, it
    crashes (the signal named), or it does not finish in CHECK_TIMEOUT_S."""
    import cv2

    hint = (
        f"OpenCV {cv2.__version__}'s DNN module has no layer for some ONNX ops (GridSample, custom domains): bench "
        "the file as onnx-fp32 (onnxruntime), or re-export the model without that op"
    )
    try:
        outcome = check_in_child(
            _CHECK_CHILD, "edgekit-opencv-check", [str(path)], CHECK_TIMEOUT_S, "reading"
        )
    except subprocess.TimeoutExpired:
        raise InputDataError(
            f"OpenCV DNN did not finish reading it in {CHECK_TIMEOUT_S} s", where=str(path), hint=hint
        ) from None
    if outcome is None:
        return
    kind, why = outcome
    if kind == "said":
        why = opencv_reason(why)
    raise InputDataError(f"OpenCV {cv2.__version__} DNN cannot read it: {why}", where=str(path), hint=hint)


def opencv_reason(text: str) -> str:
    """cv2.error's message without its source locations, error codes and function names: 'Node
    [GridSample@ai.onnx]:(onnx_node!/GridSample) parse error: Can't create layer "onnx_node!/GridSample" of type
    "GridSample"'."""
    text = re.sub(r"OpenCV\([\w.-]+\) \S+:\d+: error: \(-?\d+:[^)]*\) ", "", text)
    text = re.sub(r"\s?in function '[^']*'", "", text)
    text = re.sub(r"(\s*>\s*)+", " ", text).strip(" >")
    return text[:400] or "cv2.error"
