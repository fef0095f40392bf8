"""The speed plan's last resort: when the weighted plan leaves a core counting more than ncnn-fp32 and the strict
plan (int8 only where it wins on every core) does too, the fp32 model is shipped, not the weighted plan. The counts
are given (measure and profiles replaced: the counting itself is tested in tests/test_ncnn_speed.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edgekit.convert.ncnn import plan as ncnn_plan
from edgekit.convert.ncnn.int8 import Int8Report, LayerResult

LAYERS = ["conv0", "conv1", "fc"]
# conv0's int8 loses on the A72 and wins on the A76 (weighted: int8), conv1 loses on both, fc wins on both
COUNTS = {
    "conv0": {"pi4-emu": {"int8": 20, "float": 10}, "pi5-emu": {"int8": 10, "float": 30}},
    "conv1": {"pi4-emu": {"int8": 20, "float": 10}, "pi5-emu": {"int8": 20, "float": 10}},
    "fc": {"pi4-emu": {"int8": 5, "float": 10}, "pi5-emu": {"int8": 5, "float": 10}},
}
FP32 = {"pi4-emu": 100, "pi5-emu": 100}


class Counted:
    def __init__(self, total: int) -> None:
        self.total = total


def plan_with(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    planned: dict[str, int],
    strict: dict[str, int],
    all_int8: dict[str, int] | None = None,
) -> tuple[ncnn_plan.SpeedPlan, Int8Report, list[list[str]]]:
    builds: list[list[str]] = []

    def build(slower: list[str]) -> Int8Report:
        builds.append(sorted(slower))
        return Int8Report(
            "kl", "per-channel", 1, [LayerResult(n, "Convolution", n not in slower) for n in LAYERS]
        )

    def measure(*_args: Any) -> ncnn_plan.SpeedPlan:
        plan = ncnn_plan.SpeedPlan(devices=list(FP32), weights={d: 1 / n for d, n in FP32.items()})
        for name, counts in COUNTS.items():
            gain = sum(plan.weights[d] * (c["float"] - c["int8"]) for d, c in counts.items())
            plan.layers.append(ncnn_plan.LayerChoice(name, "Convolution", gain >= 0, counts, "given"))
        plan.totals = {
            d: {"fp32": FP32[d], "all_int8": (all_int8 or {"pi4-emu": 110, "pi5-emu": 80})[d]} for d in FP32
        }
        plan.digests = {"fp32": "f", "all_int8": "a"}
        return plan

    counted = iter([planned, strict])
    monkeypatch.setattr(ncnn_plan, "enabled", lambda: True)
    monkeypatch.setattr(ncnn_plan, "measure", measure)
    monkeypatch.setattr(ncnn_plan, "profiles", lambda _p: {d: Counted(n) for d, n in next(counted).items()})
    monkeypatch.setattr(ncnn_plan, "digest", lambda _p: "p")
    plan, report, _ = ncnn_plan.plan_and_build(build, tmp_path / "src.param", tmp_path / "m.param", {})
    assert plan is not None
    return plan, report, builds


def test_the_fp32_model_is_shipped_when_the_strict_plan_also_leaves_a_core_slower(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """r11's shufflenet: 'pi4-emu 0.99x (no fewer instructions than ncnn-fp32 there), pi5-emu 1.26x' shipped as
    ncnn-int8, its A76 gain from fp16 float layers, not int8; now the fp32 model (1.00x on both)."""
    plan, report, builds = plan_with(
        monkeypatch, tmp_path, planned={"pi4-emu": 101, "pi5-emu": 79}, strict={"pi4-emu": 102, "pi5-emu": 90}
    )
    assert builds[:3] == [[], ["conv1"], ["conv0", "conv1"]]
    assert plan.kept == "fp32" and not report.quantized, (plan.kept, builds)
    assert not ncnn_plan.slower_cores(plan) and all(not c.int8 for c in plan.layers)
    assert builds[-1] == LAYERS


def test_a_strict_plan_that_slows_no_core_is_still_kept(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    plan, report, builds = plan_with(
        monkeypatch, tmp_path, planned={"pi4-emu": 101, "pi5-emu": 79}, strict={"pi4-emu": 99, "pi5-emu": 90}
    )
    assert plan.kept == "strict" and report.quantized == ["fc"] and builds[-1] == ["conv0", "conv1"]


def test_an_all_int8_artifact_slower_on_a_core_gives_way_to_the_fp32_model(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The weighted plan counted no fewer than all-int8, which is slower than fp32 on the A72; strict too."""
    plan, report, builds = plan_with(
        monkeypatch,
        tmp_path,
        planned={"pi4-emu": 115, "pi5-emu": 85},
        strict={"pi4-emu": 102, "pi5-emu": 90},
        all_int8={"pi4-emu": 110, "pi5-emu": 60},
    )
    assert plan.kept == "fp32" and not report.quantized and builds[-1] == LAYERS, (plan.kept, builds)


def test_an_artifact_planned_by_the_earlier_rules_is_converted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache key said 'counted' for both rules: a cached weighted plan slower on the A72 was still served."""
    from edgekit.convert.ncnn.converter import NcnnConverter
    from edgekit.formats import Format

    monkeypatch.setattr(ncnn_plan, "enabled", lambda: True)
    assert NcnnConverter.format_tools(Format.NCNN_INT8)["edgekit-ncnn-speed-plan"] == "counted, rules 2"
