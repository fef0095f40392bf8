"""Why an emulated target's column has no instruction count, as the Markdown summary says it: every uncounted
emulated target was said to have had `emulated.counting: false`, lab places too (qemu machines reached as lab
boards: they cannot count and have no such setting). The reason is now the run's own."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from edgekit.formats import Format
from edgekit.report import build
from edgekit.report.markdown import render
from edgekit.report.synthetic import synthetic_result
from edgekit.results import TargetRun
from edgekit.store import open_store

TAIL = ", so neither a board estimate nor an instruction count"


def test_each_uncounted_target_says_its_own_reason(tmp_path: Path) -> None:
    result = synthetic_result(
        datetime(2026, 12, 1, 2, 0, tzinfo=UTC),
        rng=np.random.default_rng(0),
        targets=("pi4-emu", "pi5-emu", "phone-emu", "pi4"),
        formats=(Format.TFLITE_FP32, Format.NCNN_FP32),
        threads=(1,),
    )
    _, lost, old, board = result.runs
    lost.counting, lost.error = True, "pull: DiskFull: no space left on the disk holding /x/runs"
    old.target = "old-emu"  # recorded before edgekit kept how a run is emulated
    old_fields = old.model_dump()
    old_fields.pop("emulated_as")
    result.runs[2] = TargetRun.model_validate(old_fields)
    board.target, board.emulated, board.emulated_as = (
        "pi4-b",
        True,
        "board",
    )  # a lab place: its facts said qemu
    for run in result.runs:
        for m in run.agent.measurements if run.agent else []:
            m.instructions_per_invoke = None
    with open_store(f"sqlite:///{tmp_path / 's.sqlite'}") as store:
        store.record(result)
        md = render(build(store))
    assert f"pi4-emu: not counted (the run had `emulated.counting: false`){TAIL}" in md, md
    assert (
        f"pi4-b: not counted (a qemu machine reached as a plain or lab board, which cannot count){TAIL}" in md
    ), md
    assert f"pi5-emu: not counted (it was to count, and its counts were lost: see its error){TAIL}" in md, md
    assert (
        "old-emu: not counted (no count came back: `emulated.counting: false`, or a qemu machine reached as a "
        f"plain or lab board){TAIL}"
    ) in md, md
