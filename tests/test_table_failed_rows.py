"""A counting emulated target whose agent was killed (r12 #6): its measured 1-thread row showed a dim `n/a` (which
reads as "not applicable") in the ESTIMATE column while its never-run 2-thread row said `failed`. A row whose
measurement failed or never ran says `failed`; an estimate that is unavailable for a measurement that did run
keeps its `n/a`."""

from __future__ import annotations

from edgekit.report.table import _target_cells
from edgekit.results import AgentResult, DeviceFacts, Measurement, TargetRun

KILLED = "not measured: the agent was killed by SIGKILL (out of memory? see dmesg on the device)"


def _run() -> TargetRun:
    ok = Measurement(
        artifact="tflite-fp32",
        format="tflite-fp32",
        runtime="ai_edge_litert",
        threads=1,
        status="ok",
        samples_ms=[6.4, 6.5],
        p50_ms=6.4,
        p90_ms=6.5,
        instructions_per_invoke=136_608,
    )
    killed = Measurement(
        artifact="ncnn-fp32", format="ncnn-fp32", runtime="ncnn", threads=1, status="failed", error=KILLED
    )
    unavailable = {"board": "pi4", "status": "unavailable", "reason": "no instruction count"}
    return TargetRun(
        target="pi4-emu",
        kind="ssh",
        emulated=True,
        status="failed",
        error=f"run: AgentError: {KILLED}",
        agent=AgentResult(
            started_at="2026-12-07T10:00:00",
            facts_before=DeviceFacts(machine="aarch64", cores=4, python="3.11", emulated=True),
            measurements=[ok, killed],
        ),
        estimates={
            "tflite-fp32 x1": {
                "board": "pi4",
                "status": "ok",
                "estimate_ms": 0.109,
                "low_ms": 0.03,
                "high_ms": 0.35,
            },
            "tflite-fp32 x2": dict(unavailable),  # measured at 1 thread only: the 2-thread one has no figure
            "ncnn-fp32 x1": {**unavailable, "reason": "no instruction count: the measurement did not finish"},
        },
        counting=True,
        emulated_as="target",
    )


def test_a_killed_agents_rows_say_failed_in_the_estimate_column() -> None:
    run = _run()
    measured_row = str(_target_cells(run, "ncnn-fp32", 1)[0])
    never_run_row = str(_target_cells(run, "ncnn-fp32", 2)[0])
    assert measured_row == never_run_row == "failed", (measured_row, never_run_row)


def test_an_unavailable_estimate_of_a_measurement_that_ran_is_still_n_a() -> None:
    run = _run()
    assert str(_target_cells(run, "tflite-fp32", 1)[0]).startswith("~0.109")
    run.estimates["tflite-fp32 x1"] = {"board": "pi4", "status": "unavailable", "reason": "no calibration"}
    assert str(_target_cells(run, "tflite-fp32", 1)[0]) == "n/a"
