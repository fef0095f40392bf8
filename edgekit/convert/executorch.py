"""PyTorch -> ExecuTorch .pte for the XNNPACK delegate: fp32 (torch.export, lowered with XnnpackPartitioner) and
int8 (PT2E: prepare_pt2e with XNNPACKQuantizer's symmetric config, the recipe's calibration inputs, convert_pt2e,
then the same lowering). Needs a `kind: torch` recipe (the module itself, not its ONNX export); the ONNX model
stays the fidelity reference.

The executorch package does not install beside edgekit's pins (edgekit/runtimes/executorch.py says which
versions conflict); until it does, converting is a ConversionError naming the conflict.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from edgekit.convert.base import Converter
from edgekit.errors import ConversionError
from edgekit.formats import Format
from edgekit.recipe import Recipe, TorchSource
from edgekit.recipe.torch_files import torch_file_kind

NOT_INSTALLABLE = (
    "executorch is not installed: no release installs beside edgekit's pins (0.5.0-1.5.1 need "
    "numpy>=2, edgekit pins numpy 1.26.4; 0.2.1-0.4.0 pin torch 2.3.1-2.5.0, edgekit pins 2.13.0)"
)


class ExecuTorchConverter(Converter):
    formats = (Format.EXECUTORCH_FP32, Format.EXECUTORCH_INT8)
    dists = ("executorch", "torch", "torchao")  # torchao: the PT2E quantizer of executorch-int8

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        return cls.dist_versions()

    def convert(self, onnx_path: Path, recipe: Recipe, fmt: Format, out_dir: Path) -> list[Path]:
        src = recipe.model
        if not isinstance(src, TorchSource):  # and where executorch is missing, a torch recipe would not help
            missing = importlib.util.find_spec("executorch") is None
            raise ConversionError(  # no `where`: the pipeline names the recipe and the format
                f"ExecuTorch needs a PyTorch model (model.kind: torch), not this recipe's {src.kind} model"
                + (f"; and on this host {NOT_INSTALLABLE}" if missing else ""),
                hint="leave executorch-* out of the formats (`edgekit formats`: this host cannot convert them)"
                if missing
                else "give the PyTorch module (model: {kind: torch, builder: ...}) or leave executorch-* out",
            )
        if src.path is not None and torch_file_kind(src.path) == "torchscript":
            raise ConversionError(  # no `where`: the pipeline names the recipe and the format
                f"ExecuTorch lowers a torch.export program; {src.path.name} is TorchScript, which torch.export "
                "cannot take",
                hint="give the model as a .pt2 (torch.export.save) or as its builder, or leave executorch-* out",
            )
        try:
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower
        except ImportError:
            raise ConversionError(
                NOT_INSTALLABLE
            ) from None  # no `where`: the pipeline names recipe and format
        import torch

        from edgekit.convert.torch_model import build_torch_model

        model, program = build_torch_model(recipe, src)
        example = (torch.zeros(recipe.input.shape, dtype=torch.float32),)
        exported = program if program is not None else torch.export.export(model, example)
        if fmt is Format.EXECUTORCH_INT8:
            exported = torch.export.export(_quantize(exported.module(), recipe), example)
        program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
        out = out_dir / "model.pte"
        out.write_bytes(program.buffer)
        return [out]


def _quantize(module: Any, recipe: Recipe) -> Any:
    """PT2E post-training quantization for XNNPACK with the recipe's calibration inputs."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgekit.convert.calibration import calibration_inputs

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(module, quantizer)
    with torch.no_grad():
        for sample in calibration_inputs(recipe):
            prepared(torch.from_numpy(sample[None]))
    return convert_pt2e(prepared)
