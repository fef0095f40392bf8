"""ONNX -> OpenCV DNN fp32: the ONNX model as prepared, read by cv2.dnn.readNetFromONNX on the device.

There is nothing to convert; whether cv2.dnn can import every operator shows in the fidelity check (a model it
cannot read is a failed artifact with OpenCV's message).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from edgekit.convert.base import Converter
from edgekit.formats import Format
from edgekit.recipe import Recipe


class OpenCvConverter(Converter):
    formats = (Format.OPENCV_FP32,)

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        return {"format": "onnx"}  # a copy: no tool shapes the file

    def convert(self, onnx_path: Path, recipe: Recipe, fmt: Format, out_dir: Path) -> list[Path]:
        out = out_dir / "model.onnx"
        shutil.copyfile(onnx_path, out)
        return [out]
