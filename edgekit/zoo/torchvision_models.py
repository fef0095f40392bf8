"""torchvision's own model code, random weights, as the architectures users bring (bench/torchvision_matrix.py).

PyPI's torchvision 0.28.0 is the build for torch 2.13.0, but its C++ extension (`_C.so`) links CUDA libraries the
CPU torch does not have, so it does not load; torchvision then imports without its ops, except that two fake
(meta) kernels are registered unconditionally for `torchvision::nms` and `torchvision::qnms`, which fails when
the operators were never defined. `import_torchvision` defines those two schemas first (no kernel: calling
them raises), which is all the model code needs: none of these architectures runs an op of the extension in
its forward pass (SSDlite's NMS is post-processing, outside the exported backbone + head).
"""

from __future__ import annotations

import warnings
from typing import Any

ARCHITECTURES = (
    "mobilenet_v3_small",
    "shufflenet_v2_x1_0",
    "squeezenet1_1",
    "resnet18",
    "efficientnet_b0",
    "mnasnet0_5",
    "regnet_y_400mf",
    "convnext_tiny",
    "ssdlite320",
)
INPUT_SIZE = {"ssdlite320": 320}  # the others at 224x224
_LIBRARY: Any = None  # the torch.library.Library defining the stub schemas (kept alive)


def define_stub_ops() -> None:
    """The two schemas torchvision's import registers fake kernels for, defined when no extension defined them
    (module docstring); before any import of torchvision (recipe/builders.py does it for a builder's module)."""
    global _LIBRARY  # noqa: PLW0603 - the schemas are process-wide, defined once
    import torch

    if _LIBRARY is None and not hasattr(torch.ops.torchvision, "nms"):
        _LIBRARY = torch.library.Library("torchvision", "DEF")  # type: ignore[no-untyped-call]  # schemas only
        _LIBRARY.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARY.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")


def import_torchvision() -> Any:
    """`torchvision`, importable with torch's CPU build (module docstring)."""
    define_stub_ops()
    with warnings.catch_warnings():  # "Failed to load image Python extension": the same missing C++ library
        warnings.simplefilter("ignore", UserWarning)
        import torchvision  # type: ignore[import-untyped]

    return torchvision


def build(arch: str, num_classes: int = 1000) -> Any:
    """Recipe model builder: torchvision's `arch` with random weights (no download); `ssdlite320` is
    ssdlite320_mobilenet_v3_large's backbone + head (raw box regressions and class logits, no NMS)."""
    tv = import_torchvision()
    if arch == "ssdlite320":
        return SsdliteBackboneHead(
            tv.models.detection.ssdlite320_mobilenet_v3_large(
                weights=None, weights_backbone=None, num_classes=91
            )
        )
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; one of {', '.join(ARCHITECTURES)}")
    return getattr(tv.models, arch)(weights=None, num_classes=num_classes)


def _module_base() -> Any:
    import torch

    return torch.nn.Module


class SsdliteBackboneHead(_module_base()):  # type: ignore[misc]
    """SSDlite320's exportable part: features of the MobileNetV3 backbone -> (box regressions, class logits)."""

    def __init__(self, ssd: Any) -> None:
        super().__init__()
        self.backbone = ssd.backbone
        self.head = ssd.head

    def forward(self, x: Any) -> tuple[Any, Any]:
        features = list(self.backbone(x).values())
        out = self.head(features)
        return out["bbox_regression"], out["cls_logits"]
