"""The artifact formats edgekit produces, each knowing its file suffix, runtime and precision in one place."""

from __future__ import annotations

from enum import Enum


class Runtime(str, Enum):
    TFLITE = "tflite"
    NCNN = "ncnn"


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
    NCNN_FP32 = "ncnn-fp32"
    NCNN_FP16 = "ncnn-fp16"
    NCNN_INT8 = "ncnn-int8"

    @property
    def runtime(self) -> Runtime:
        return Runtime(self.value.split("-")[0])

    @property
    def precision(self) -> Precision:
        return Precision(self.value.split("-")[1])

    @property
    def files(self) -> tuple[str, ...]:
        """File suffixes of one artifact: a .tflite, or an ncnn .param + .bin pair."""
        return (".tflite",) if self.runtime is Runtime.TFLITE else (".param", ".bin")

    @property
    def quantized(self) -> bool:
        return self.precision in (Precision.DYNAMIC, Precision.INT8)

    @property
    def fp32_reference(self) -> Format:
        """The fp32 format of the same runtime, the base of every speed-up figure."""
        return Format(f"{self.runtime.value}-fp32")
