"""An ncnn .bin file as per-layer byte ranges, and the weight encodings ncnn's ModelBin reads.

A .bin has no index: each layer's `load_model` reads its own data in .param order, and how much it reads
depends on the layer type and its parameters (dozens of types). Rather than re-implement every type's loader,
`layer_spans` lets ncnn itself load each layer from a reader that counts bytes, so the byte range of every
layer is exact for any layer type ncnn knows. The quantizer then rewrites only the ranges of the layers it
quantizes and copies all others byte for byte.

Encodings of a "type 0" load (ncnn src/modelbin.cpp): a 4-byte little-endian tag, then
- tag 0: float32 values;
- tag 0x01306B47: float16 values, padded to 4 bytes;
- tag 0x000D4B38: int8 values, padded to 4 bytes;
"type 1" loads (bias, scales) are bare float32 values.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import ConversionError

TAG_FP32 = 0
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def layer_spans(param: Path, data: bytes) -> list[tuple[int, int]]:
    """(start, end) byte offsets in `data` (the .bin) of every layer of `param`, in .param order."""
    import ncnn

    reader = _reader_class(ncnn)(data)
    model_bin = ncnn.ModelBinFromDataReader(reader)
    net = ncnn.Net()
    if net.load_param(str(param)) != 0:
        from edgekit.convert.ncnn.runtime import param_load_error

        raise param_load_error(param)
    spans = []
    for layer in net.layers():
        start = reader.pos
        if layer.load_model(model_bin) != 0:
            raise ConversionError(
                f"ncnn cannot load the weights of layer {layer.name} ({layer.type})",
                where=str(param),
                hint="the .bin does not belong to this .param",
            )
        spans.append((start, reader.pos))
    if reader.pos != len(data):
        raise ConversionError(
            f"the layers read {reader.pos} bytes of a {len(data)}-byte .bin", where=str(param)
        )
    return spans


def _reader_class(ncnn: Any) -> type:
    class BytesReader(ncnn.DataReader):  # type: ignore[misc]  # ncnn has no type information
        """Serves `data` sequentially to ncnn and remembers how far it got."""

        def __init__(self, data: bytes) -> None:
            ncnn.DataReader.__init__(self)
            self.data, self.pos = data, 0

        def scan(self, fmt: str, p: Any) -> int:
            return 0

        def read(self, buf: Any, size: int) -> int:
            chunk = self.data[self.pos : self.pos + size]
            ctypes.memmove(_capsule_pointer(buf, None), chunk, len(chunk))
            self.pos += len(chunk)
            return len(chunk)

    return BytesReader


def read_weights(data: bytes, offset: int, count: int) -> tuple[np.ndarray, int]:
    """A tagged ("type 0") array of `count` values at `offset` as float32; returns it and the end offset."""
    tag = int(np.frombuffer(data, "<u4", 1, offset)[0])
    offset += 4
    if tag == TAG_FP32:
        return np.frombuffer(data, "<f4", count, offset).astype(np.float32), offset + 4 * count
    if tag == TAG_FP16:
        return np.frombuffer(data, "<f2", count, offset).astype(np.float32), offset + _align4(2 * count)
    raise ConversionError(
        f"weights stored with tag {tag:#x} (int8 or table-quantized) cannot be quantized",
        hint="quantize the fp32 export (pnnx fp16=0)",
    )


def read_floats(data: bytes, offset: int, count: int) -> tuple[np.ndarray, int]:
    """A bare ("type 1") float32 array; returns it and the end offset."""
    return np.frombuffer(data, "<f4", count, offset).astype(np.float32), offset + 4 * count


def int8_weights(values: np.ndarray) -> bytes:
    """int8 weights in ncnn's tagged encoding, padded to 4 bytes."""
    raw = np.ascontiguousarray(values, dtype=np.int8).tobytes()
    return np.uint32(TAG_INT8).astype("<u4").tobytes() + raw + b"\0" * (_align4(len(raw)) - len(raw))


def floats(values: np.ndarray) -> bytes:
    return np.ascontiguousarray(values, dtype="<f4").tobytes()


def _align4(n: int) -> int:
    return (n + 3) // 4 * 4
