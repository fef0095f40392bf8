"""Whether the calibration speaks for an artifact: the calibration models are ncnn models run with ncnn's
default options, so another runtime, or ncnn's fp32 kernels on a core with fp16 arithmetic, is a kernel class
no calibration figure measured (cost_model states the widest interval for it, marked as not validated)."""

from __future__ import annotations

from typing import Any

from edgekit.formats import Format, Precision, Runtime


def format_calibrated(fmt: Format | None) -> bool:
    """The calibration set is ncnn models run with ncnn's default options: other runtimes are not covered, the
    forms on MACs alone included (their rates are ncnn's time per MAC: onnxruntime's or TFLite's kernels do
    other work per MAC, which no calibration figure measured)."""
    return fmt is None or fmt.runtime is Runtime.NCNN


def fp32_kernels(board: Any, fp16_off: str, int8: bool, fmt: Format | None) -> bool:
    """An ncnn float model with fp16 off runs kernels no calibration model ran on a core with fp16 arithmetic
    (the Cortex-A76: ncnn's defaults compute in fp16 there, fp16 off in fp32). A core without it (the Cortex-A72)
    computed the calibration models in fp32 too."""
    return (
        bool(fp16_off)
        and not int8
        and (fmt is None or fmt.runtime is Runtime.NCNN)
        and has_fp16_arithmetic(board)
    )


def has_fp16_arithmetic(board: Any) -> bool:
    return bool(board.macs_per_cycle[Precision.FP16] > board.macs_per_cycle[Precision.FP32])


def fp16_off_note(board: Any, fp16_off: str, fp32_kernels: bool) -> str:
    """What fp16 off (edgekit's ncnn-fp32) means for the estimate on this board's core."""
    if fp32_kernels:
        return (
            f"runs with {fp16_off}: fp32 kernels, which no calibration model ran on the {board.core} (they ran "
            "ncnn's defaults there: fp16 storage and fp16 arithmetic); the count holds the fp32 kernels' extra "
            "instructions, but their time per instruction is not calibrated, so the interval is the largest "
            "held-out error, at least the widest of any calibrated group, and is not validated for them"
        )
    return (
        f"runs with {fp16_off}; the {board.core} has no fp16 arithmetic, so the calibration models (ncnn's "
        "defaults) computed in fp32 there too: fp16 storage only changes loads and conversions, which the count "
        "and the simulated misses include (blazeface and squeezenet counted both ways on it: instructions and "
        "misses within 0.03 %), so the calibration holds for it"
    )


def uncalibrated_note(fmt: Format | None) -> str:
    what = fmt.value if fmt is not None else "this format"
    return (
        f"{what}: no calibration figure exists for this runtime (the cost model is fitted on ncnn's benchmark "
        "models only); its instructions per cycle may differ, so the interval is the widest of any calibrated "
        "group and is not validated for it"
    )
