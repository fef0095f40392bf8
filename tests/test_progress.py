"""Live progress: the ETA from the measurements so far, the board's lines at terminal widths, the agent's streamed
lines read as they arrive, and runtime INFO noise kept off the display."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest
from rich.console import Console

from edgekit.progress import Board, Measured, Planned, Tracker, clock, eta_seconds

ITEMS = [(a, t) for a in ("tflite-fp32", "tflite-int8", "ncnn-fp32", "ncnn-int8") for t in (1, 4)]


def test_eta_comes_from_the_measurements_so_far() -> None:
    assert eta_seconds([], 8) is None  # no sample yet: no guess
    assert eta_seconds([40.0, 60.0], 6) == pytest.approx(6 * 50.0)
    assert eta_seconds([40.0, 60.0], 6, running_for=20.0) == pytest.approx(5 * 50.0 + 30.0)
    assert eta_seconds([40.0, 60.0], 6, running_for=90.0) == pytest.approx(
        5 * 50.0
    )  # overdue: never negative
    assert eta_seconds([40.0], 0) == 0.0
    assert [clock(s) for s in (0.4, 42, 386, 3725)] == ["0 s", "42 s", "6:26", "1:02:05"]


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_board_counts_per_target_and_estimates_what_is_left() -> None:
    now = FakeClock()
    board = Board("yolov5-lite", clock_=now)
    board.feed("convert: tflite-fp32: cached, no conversion")
    board.feed(Planned("pi4-emu", ITEMS, "pi4-emu: 4 artifacts x 2 thread counts to measure"))
    board.feed(Planned("host", ITEMS[:2], "host: 1 artifacts x 2 thread counts to measure"))
    assert (
        board.lines()[1]
        == "  pi4-emu: 0/8 measured, now tflite-fp32 x1, 0 s elapsed, ETA after the first measurement"
    )
    now.t += 50.0
    board.feed(Measured("pi4-emu", "tflite-fp32", 1, "ok", "pi4-emu: tflite-fp32 x1 ok"))
    now.t += 30.0
    board.feed(Measured("pi4-emu", "tflite-fp32", 4, "ok", "pi4-emu: tflite-fp32 x4 ok"))
    now.t += 10.0
    board.feed(Measured("pi4-emu", "tflite-int8", 1, "failed", "pi4-emu: tflite-int8 x1 failed"))
    lines = board.lines()
    assert lines[0] == "yolov5-lite: 1:30, pi4-emu: tflite-int8 x1 failed"
    # 3 of 8 done (one failed, its time not a sample); mean of the two ok ones 40 s; 5 left, none running yet
    assert lines[1] == "  pi4-emu: 3/8 measured (1 failed), now tflite-int8 x4, 1:30 elapsed, ETA 3:20"
    now.t += 25.0  # the current one has run 25 of its expected 40 s
    assert board.lines()[1].endswith("1:55 elapsed, ETA 2:55")  # 4 x 40 + 15
    assert (
        board.lines()[2]
        == "  host: 0/2 measured, now tflite-fp32 x1, 1:55 elapsed, ETA after the first measurement"
    )
    for item in ITEMS[3:]:
        board.feed(Measured("pi4-emu", *item, "ok", "..."))
    now.t += 60.0
    assert board.lines()[1] == "  pi4-emu: 8/8 measured (1 failed) in 1:55"  # stopped ticking


@pytest.mark.parametrize("width", [80, 100, 200])
def test_the_board_stays_one_line_per_target_at_any_width(width: int) -> None:
    board = Board("a-recipe-with-a-long-name", clock_=FakeClock())
    board.feed(Planned("phone-emu-with-a-long-target-name", ITEMS, "phone-emu: planned"))
    board.feed(
        Planned(
            "pi4-emu",
            ITEMS,
            "pi4-emu: agent measuring tflite-fp32, tflite-fp16, tflite-dynamic, "
            "tflite-int8 (threads [1, 4], repeat 20)",
        )
    )
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(board.render())
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # one per line: a wrapped status line is what broke the old spinner
    assert all(len(line) <= width for line in lines)


def test_tracker_keeps_a_restarted_plan_once() -> None:
    tracker = Tracker("pi4")
    tracker.plan(ITEMS[:4], 0.0)
    tracker.measured(ITEMS[0], "ok", 10.0)
    tracker.plan(ITEMS[:4], 10.0)  # the agent restarted for the rest: nothing counted twice
    assert len(tracker.planned) == 4 and tracker.current() == ITEMS[1]


def test_the_session_says_each_streamed_measurement_as_it_arrives() -> None:
    from pathlib import Path

    from edgekit.deploy import Settings
    from edgekit.deploy.session import TargetSession
    from edgekit.target import load_target

    said: list[str] = []
    session = TargetSession(
        load_target("pi4-emu"),
        run_id="t",
        local_dir=Path("/nonexistent"),
        settings=Settings(threads=(1,)),
        progress=said.append,
    )
    feed = session.measured_lines()
    feed(
        'EDGEKIT_START {"started_at": "x"}\nEDGEKIT_MEASUREMENT {"artifact": "tflite-fp32", "thr'
    )  # cut mid-line
    assert said == []
    feed(
        'eads": 1, "status": "ok", "p50_ms": 5996.2}\nprogress noise\nEDGEKIT_MEASUREMENT {"artifact": "ncnn-'
    )
    feed('int8", "threads": 1, "status": "failed"}\n')
    assert [type(m) for m in said] == [Measured, Measured]
    first, second = said
    assert isinstance(first, Measured) and (first.artifact, first.threads, first.status) == (
        "tflite-fp32",
        1,
        "ok",
    )
    assert first == "pi4-emu: tflite-fp32 x1 ok, p50 5996 ms (emulated wall time)"
    assert isinstance(second, Measured) and second.status == "failed"


def test_runtime_info_lines_are_kept_out_and_warnings_kept() -> None:
    # C++ runtimes write to fd 2 directly: the child writes there with os.write, as TF Lite does
    code = (
        "import os, sys\n"
        "from rich.console import Console\n"
        "from edgekit.progress import live_progress\n"
        "with live_progress(Console(force_terminal=True, width=80), 'tiny') as say:\n"
        "    os.write(2, b'INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\\n')\n"
        "    os.write(2, b'I0000 00:00:1732000000.1 12345 cpu_client.cc:42] TfrtCpuClient created.\\n')\n"
        "    os.write(2, b'W0000 00:00:1732000000.2 12345 op.cc:7] a real warning\\n')\n"
        "    say('host: measuring')\n"
        "    print('python stderr', file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "XNNPACK" not in out.stderr + out.stdout and "TfrtCpuClient" not in out.stderr + out.stdout
    assert "a real warning" in out.stderr and "python stderr" in out.stderr  # written back after the display
    assert "host: measuring" in out.stdout


def test_the_board_names_what_the_agent_measures_in_the_agents_order(tmp_path: object) -> None:
    """r10: the agent measures each artifact at one thread count before the next, fewest threads first, but the
    plan the board follows listed artifact by artifact in the plan's order: 'now onnx-fp32 x2' while the agent ran
    onnx-int8 x1. A real deploy to the host with --threads 2,1: the items planned come in the order measured."""
    from pathlib import Path

    from edgekit.convert.pipeline import convert_recipe
    from edgekit.deploy import DeployOptions, deploy
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe

    tiny = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
    formats = [Format.ONNX_FP32, Format.ONNX_INT8]
    artifacts = convert_recipe(load_recipe(tiny), formats, keep_going=True)
    said: list[object] = []
    deploy(
        load_recipe(tiny),
        [],
        DeployOptions(repeat=2, warmup=0, threads=(2, 1), samples=1, formats=formats),  # type: ignore[arg-type]
        said.append,
        artifacts,
    )
    planned = [item for m in said if isinstance(m, Planned) and m.target == "host" for item in m.items]
    measured = [(m.artifact, m.threads) for m in said if isinstance(m, Measured) and m.target == "host"]
    assert len(measured) == 4 and planned == measured, (planned, measured)


def test_a_failed_measurement_is_said_with_why_not_with_a_figure() -> None:
    """The agent timed the model, then could not save its outputs: the line said `tflite-fp32 x1 failed, p50 2 ms`,
    a figure for a measurement that failed. It says why it failed instead."""
    from edgekit.deploy.agent_result import measured_lines
    from edgekit.target import load_target

    said: list[str] = []
    feed = measured_lines(load_target("pi4"), said.append)
    feed(
        'EDGEKIT_MEASUREMENT {"artifact": "tflite-fp32", "threads": 1, "status": "failed", "p50_ms": 2.0, '
        '"error": "outputs not saved: [Errno 13] Permission denied\\nmore"}\n'
    )
    assert said == ["pi4: tflite-fp32 x1 failed: outputs not saved: [Errno 13] Permission denied"], said
