"""torchvision's own model code, random weights, as the architectures users bring (bench/torchvision_matrix.py).

torchvision is imported through edgekit.torchvision_ops (torch's CPU build lacks the two ops its import needs).
"""

from __future__ import annotations

from typing import Any

from edgekit.torchvision_ops import import_torchvision

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
