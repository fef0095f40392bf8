"""A route on an emulated target that was counted but lost its counts (this machine's disk filled under the
counting plugin) does not advise turning counting on: it was on. It says the counts were lost, and why."""

from __future__ import annotations

from edgekit.route import COUNTS_LOST, UNCOUNTED, Basis, Route, why_no_route


def test_lost_counts_say_why_and_never_advise_counting() -> None:
    why = f"{COUNTS_LOST}: DiskFull: no space left on the disk holding /x/runs (0.0 MB free)"
    line = Route(
        "pi4-emu", Basis.INSTRUCTIONS, 1, None, rejected={"tflite-fp32": why, "ncnn-fp32": why}
    ).summary()
    assert "emulated.counting=true" not in line, line
    assert (
        "counts it was counted for were lost (DiskFull: no space left on the disk holding /x/runs" in line
    ), line


def test_never_counted_still_advises_counting() -> None:
    line = why_no_route({"tflite-fp32": UNCOUNTED})
    assert "--set emulated.counting=true" in line, line
