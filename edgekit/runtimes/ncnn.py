"""ncnn: pnnx's .param + .bin (and edgekit's model.io.json sidecar), run by the ncnn Python package."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert.ncnn.runtime import param_load_error
from edgekit.errors import InputDataError
from edgekit.formats import Format, Runtime
from edgekit.runtimes.base import DevicePackage, Outputs, RuntimeSpec


class Ncnn(RuntimeSpec):
    runtime = Runtime.NCNN
    formats = (Format.NCNN_FP32, Format.NCNN_FP16, Format.NCNN_INT8)
    suffixes = (".param", ".bin")
    packages = (DevicePackage("ncnn", "ncnn", termux="ncnn", pin="1.0.20261020"),)
    converter = "edgekit.convert.ncnn.converter"
    agent_runner = "NcnnRunner"

    @classmethod
    def run(cls, files: Sequence[Path], inputs: np.ndarray, threads: int = 1) -> Outputs:
        """The ncnn converter's own runner reads the sidecar (blob names, shapes, runtime options) and returns
        the outputs in the ONNX model's order, named by that index (out0, out1, .. as pnnx does)."""
        from edgekit.convert.ncnn.runtime import NcnnModel

        param = next(Path(f) for f in files if Path(f).suffix == ".param")
        bin_path = next(Path(f) for f in files if Path(f).suffix == ".bin")
        with NcnnModel(param, bin_path, threads=threads) as model:
            outs = model.run(inputs)
        return [(f"out{k}", np.asarray(a, np.float32)) for k, a in enumerate(outs)]

    @classmethod
    def check_file(cls, files: Sequence[Path]) -> None:
        load_ncnn(next(Path(f) for f in files if Path(f).suffix == ".param"))


def parse_param(path: Path) -> list[tuple[str, list[str], list[str], dict[str, str]]]:
    """Layers of an ncnn .param: (type, bottom blobs, top blobs, {param id: value}). A file that is no text .param
    (not UTF-8, a layer line whose blob counts are not numbers) is InputDataError naming the file and line."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _bad_param(
            path, data[: exc.start].count(b"\n") + 1, f"byte 0x{data[exc.start]:02x} is not UTF-8 text"
        ) from None
    lines = text.split("\n")
    if not lines or lines[0].strip() != "7767517":
        raise InputDataError(
            "not an ncnn .param file (bad magic: its first line is not 7767517)",
            where=str(path),
            hint="give the .param ncnn writes (pnnx or onnx2ncnn output), with its .bin beside it",
        )
    layers = []
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if len(parts) < 4:
            continue
        kind = parts[0]
        try:
            nb, nt = int(parts[2]), int(parts[3])
        except ValueError:
            nb = nt = -1
        if nb < 0 or nt < 0:
            raise _bad_param(
                path,
                number,
                f"layer {parts[1]!r} ({parts[0]}): its input and output blob counts "
                f"({parts[2]!r}, {parts[3]!r}) are not numbers",
            )
        bottoms, tops = parts[4 : 4 + nb], parts[4 + nb : 4 + nb + nt]
        params = dict(kv.split("=", 1) for kv in parts[4 + nb + nt :] if "=" in kv)
        layers.append((kind, bottoms, tops, params))
    return layers


def _bad_param(path: Path, line: int, why: str) -> InputDataError:
    return InputDataError(
        f"not a readable ncnn .param file (line {line}: {why})",
        where=str(path),
        hint="give the .param ncnn writes (pnnx or onnx2ncnn output: text, a layer a line: type name inputs outputs "
        "blob names... key=value...), with its .bin beside it",
    )


def load_ncnn(path: Path, options: dict[str, bool] | None = None) -> Any:
    """An ncnn.Net of the .param at PATH and its .bin, loaded on this host (1 thread, `options` set); a model
    ncnn cannot load is bad input (InputDataError), named: the .param, a missing .bin, or weights that do not
    fit. Run before any emulated guest so a broken file is refused at once with exit 2."""
    import ncnn

    parse_param(path)  # the magic line
    net = ncnn.Net()
    net.opt.num_threads = 1
    for key, value in (options or {}).items():
        setattr(net.opt, key, value)
    if net.load_param(str(path)) != 0:  # the user's file: the reason as conversion names it, as bad input
        why = param_load_error(path)
        raise InputDataError(why.message, where=str(path), hint=why.hint)
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise InputDataError(
            "no .bin beside this .param", where=str(weights), hint="ncnn needs both files, with the same name"
        )
    if net.load_model(str(weights)) != 0:
        raise InputDataError(
            "ncnn cannot load the weights of this model (ncnn's message above says which layer)",
            where=str(weights),
            hint="the .bin must sit beside the .param with the same name and match it (a truncated or other "
            "model's .bin fails here)",
        )
    return net
