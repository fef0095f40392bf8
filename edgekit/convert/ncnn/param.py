"""An ncnn .param file as data: read it, change a layer's parameters, write it back byte-for-byte otherwise.

Text format (ncnn's docs "param and model file structure"):

    7767517                       magic
    <layer count> <blob count>
    <Type> <name> <#bottoms> <#tops> <bottom names...> <top names...> <id>=<value> ...

A value is an int, a float, or an array written as `-233xx=<n>,<v1>,...` (id = -(-233xx) - 23300). Values are
kept as the text that was read, so a layer nobody edits is written back exactly; typed getters read the few
parameters the INT8 quantizer needs. The .bin is read in the same layer order (see weights.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgekit.errors import ConversionError

MAGIC = 7767517
ARRAY_KEY_BASE = -23300


@dataclass
class NcnnLayer:
    """One line of a .param file; `params` maps the id as written ("8", "-23303") to its value text."""

    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[str, str] = field(default_factory=dict)

    def get_int(self, pid: int, default: int = 0) -> int:
        value = self.params.get(str(pid))
        return default if value is None else int(float(value))

    def get_float(self, pid: int, default: float = 0.0) -> float:
        value = self.params.get(str(pid))
        return default if value is None else float(value)

    def get_array(self, pid: int) -> list[str] | None:
        """An array parameter's elements as text, or None when the layer does not set it."""
        value = self.params.get(str(ARRAY_KEY_BASE - pid))
        return None if value is None else value.split(",")[1:]

    def set_param(self, pid: int, value: int | float) -> None:
        self.params[str(pid)] = repr(float(value)) if isinstance(value, float) else str(int(value))

    def to_line(self) -> str:
        head = f"{self.type:<24} {self.name:<24} {len(self.bottoms)} {len(self.tops)}"
        parts = [head, *self.bottoms, *self.tops, *(f"{k}={v}" for k, v in self.params.items())]
        return " ".join(parts)


@dataclass
class NcnnGraph:
    """All layers of a .param file in file order (which is also the order of the .bin)."""

    layers: list[NcnnLayer]
    blob_count: int

    def layer(self, name: str) -> NcnnLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def input_blobs(self) -> list[str]:
        return [t for layer in self.layers if layer.type == "Input" for t in layer.tops]

    def output_blobs(self) -> list[str]:
        """Blobs produced but never consumed, in file order (pnnx names them out0, out1, ...)."""
        consumed = {b for layer in self.layers for b in layer.bottoms}
        return [t for layer in self.layers for t in layer.tops if t not in consumed]

    def to_text(self) -> str:
        lines = [str(MAGIC), f"{len(self.layers)} {self.blob_count}"]
        lines += [layer.to_line() for layer in self.layers]
        return "\n".join(lines) + "\n"


def read_param(path: Path) -> NcnnGraph:
    """Parse a text .param file; a malformed file raises ConversionError naming the line."""
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError as exc:  # random bytes, a .bin given for the .param: no internal error
        raise ConversionError(
            f"not an ncnn text .param file ({exc.reason} at byte {exc.start})", where=str(path)
        ) from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != str(MAGIC):
        raise ConversionError(f"not an ncnn text .param file (magic {MAGIC} missing)", where=str(path))
    try:
        layer_count, blob_count = (int(v) for v in lines[1].split())
        layers = [_parse_layer(line) for line in lines[2:]]
    except (ValueError, IndexError) as exc:
        raise ConversionError(f"malformed .param file: {exc}", where=str(path)) from None
    if len(layers) != layer_count:
        raise ConversionError(f"header says {layer_count} layers, file has {len(layers)}", where=str(path))
    return NcnnGraph(layers=layers, blob_count=blob_count)


def write_param(graph: NcnnGraph, path: Path) -> None:
    Path(path).write_text(graph.to_text())


def _parse_layer(line: str) -> NcnnLayer:
    tokens = line.split()
    ltype, name, nb, nt = tokens[0], tokens[1], int(tokens[2]), int(tokens[3])
    bottoms = tokens[4 : 4 + nb]
    tops = tokens[4 + nb : 4 + nb + nt]
    if len(tops) != nt:
        raise ValueError(f"layer {name}: expected {nb} bottoms and {nt} tops")
    params: dict[str, str] = {}
    for token in tokens[4 + nb + nt :]:
        key, sep, value = token.partition("=")
        if not sep:
            raise ValueError(f"layer {name}: parameter {token!r} is not id=value")
        params[key] = value
    return NcnnLayer(type=ltype, name=name, bottoms=bottoms, tops=tops, params=params)


def has_int8_layers(path: Path) -> bool:
    """True when any layer asks for int8 inference (int8_scale_term non-zero): ncnn then runs it with its int8
    kernels, whatever the file is called."""
    return any(int8_scale_term(layer) for layer in read_param(path).layers)


def int8_scale_term(layer: NcnnLayer) -> int:
    """The layer's int8_scale_term (0: float). Its param id depends on the type (8 on convolutions and
    InnerProduct, 18 on Gemm and attention, where 8 is Gemm's constantN); other types have none."""
    key = INT8_SCALE_TERM_ID.get(layer.type)
    return layer.get_int(key) if key is not None else 0


# the param id of int8_scale_term in each ncnn layer type that has one (ncnn's load_param of each)
INT8_SCALE_TERM_ID = {
    "Convolution": 8,
    "ConvolutionDepthWise": 8,
    "InnerProduct": 8,
    "Gemm": 18,
    "MultiHeadAttention": 18,
    "SDPA": 18,
}
