"""ncnn: pnnx's .param + .bin (and edgekit's model.io.json sidecar), run by the ncnn Python package."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

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
        from edgekit.estimate.ncnn_model import load_ncnn

        load_ncnn(next(Path(f) for f in files if Path(f).suffix == ".param"))
