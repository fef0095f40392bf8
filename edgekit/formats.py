"""The artifact formats edgekit produces and the runtimes that run them.

The names live here (recipes and results refer to them); everything else about a format (its runtime, its
files, its device packages, how it runs) is declared by its runtime module in edgekit/runtimes/, the only place
a format is mapped to a runtime: a format no runtime module claims raises UnknownFormatError.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum


class Runtime(str, Enum):
    TFLITE = "tflite"
    NCNN = "ncnn"
    ONNXRUNTIME = "onnxruntime"
    OPENCV = "opencv"
    MNN = "mnn"
    OPENVINO = "openvino"
    EXECUTORCH = "executorch"


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    DYNAMIC = "dynamic"
    INT8 = "int8"


class Format(str, Enum):
    TFLITE_FP32 = "tflite-fp32"
    TFLITE_FP16 = "tflite-fp16"
    TFLITE_DYNAMIC = "tflite-dynamic"
    TFLITE_INT8 = "tflite-int8"
    # A Keras source's tflite-* come from TensorFlow's TFLiteConverter; these are the same through ONNX + onnx2tf,
    # to compare the two routes side by side (edgekit/convert/keras.py)
    TFLITE_ONNX2TF_FP32 = "tflite-onnx2tf-fp32"
    TFLITE_ONNX2TF_FP16 = "tflite-onnx2tf-fp16"
    TFLITE_ONNX2TF_DYNAMIC = "tflite-onnx2tf-dynamic"
    TFLITE_ONNX2TF_INT8 = "tflite-onnx2tf-int8"
    NCNN_FP32 = "ncnn-fp32"
    NCNN_FP16 = "ncnn-fp16"
    NCNN_INT8 = "ncnn-int8"
    ONNX_FP32 = "onnx-fp32"
    ONNX_INT8 = "onnx-int8"
    OPENCV_FP32 = "opencv-fp32"
    MNN_FP32 = "mnn-fp32"
    MNN_FP16 = "mnn-fp16"
    MNN_INT8 = "mnn-int8"
    OPENVINO_FP32 = "openvino-fp32"
    OPENVINO_INT8 = "openvino-int8"
    EXECUTORCH_FP32 = "executorch-fp32"
    EXECUTORCH_INT8 = "executorch-int8"

    @property
    def runtime(self) -> Runtime:
        from edgekit.runtimes.base import spec_for

        return spec_for(self).runtime

    @property
    def precision(self) -> Precision:
        return Precision(self.value.rsplit("-", 1)[1])

    @property
    def files(self) -> tuple[str, ...]:
        """File suffixes of one artifact, main file first (a .tflite; an ncnn .param + .bin pair; an .onnx)."""
        from edgekit.runtimes.base import spec_for

        return spec_for(self).suffixes

    @property
    def quantized(self) -> bool:
        return self.precision in (Precision.DYNAMIC, Precision.INT8)

    @property
    def fp32_reference(self) -> Format:
        """The fp32 format of the same runtime (and route: tflite-onnx2tf-int8 -> tflite-onnx2tf-fp32), the base
        of every speed-up figure."""
        from edgekit.runtimes.base import spec_for

        same_route = Format._value2member_map_.get(self.value.rsplit("-", 1)[0] + "-fp32")
        if isinstance(same_route, Format) and spec_for(same_route) is spec_for(self):
            return same_route
        return spec_for(self).fp32_format()


# the INT8 formats with int8 input and output tensors (TensorFlow's): the ones `int8.io: int8` applies to
INT8_IO_FORMATS = frozenset({Format.TFLITE_INT8, Format.TFLITE_ONNX2TF_INT8})


def int8_io_refusal(formats: Iterable[Format]) -> str | None:
    """Why `int8.io: int8` cannot go with these formats (INT8 ones without int8 input and output: their models take
    and give float32), or None. One rule for a recipe's own `formats` (refused when it is read) and for the formats
    a command is given (`convert -f`: edgekit.convert.pipeline)."""
    floats = [f.value for f in formats if f.precision is Precision.INT8 and f not in INT8_IO_FORMATS]
    if not floats:
        return None
    return (
        f"int8.io: int8 is implemented for {', '.join(sorted(f.value for f in INT8_IO_FORMATS))} only: "
        f"{', '.join(floats)} {'takes and gives' if len(floats) == 1 else 'take and give'} float32 (the "
        f"quantization is inside the model); set int8.io: float, or convert {', '.join(floats)} from a recipe "
        "without it"
    )
