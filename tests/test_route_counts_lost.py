"""A route on an emulated target that was counted but lost its counts (this machine's disk filled under the
counting plugin) does not advise turning counting on: it was on. It says the counts were lost, and why."""

from __future__ import annotations

from edgekit.route import Basis, Route
from edgekit.route_rejections import COUNTS_LOST, UNCOUNTED, why_no_route


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


def test_a_deploy_run_that_was_to_count_and_has_no_counts_says_they_were_lost() -> None:
    """The deploy's route read 'to rank it, count: --set emulated.counting=true' for a run that counted and lost
    its counts to a full disk: the run now records that it was to count."""
    from edgekit.results import AgentResult, DeviceFacts, Measurement, TargetRun
    from edgekit.route_deploy import route_for_run

    facts = DeviceFacts(machine="aarch64", cores=4, python="3.11", emulated=True)
    measured = Measurement(
        artifact="tflite-fp32", format="tflite-fp32", runtime="tflite", threads=1, status="ok"
    )
    agent = AgentResult(
        started_at="2026-12-01T00:00:00", facts_before=facts, measurements=[measured.model_copy()]
    )
    error = "pull: DiskFull: no space left on the disk holding /x/runs (0.0 MB free)\nhint: free some space"
    for counting, said, advice in (
        (True, "DiskFull: no space left", False),
        (False, "emulated.counting", True),
    ):
        run = TargetRun(
            target="pi4-emu",
            kind="ssh",
            emulated=True,
            status="failed",
            error=error,
            agent=agent,
            counting=counting,
        )
        line = route_for_run(run, {"tflite-fp32": True}).summary()
        assert said in line, line
        assert ("--set emulated.counting=true" in line) is advice, line
    assert (
        TargetRun.model_validate({"target": "t", "kind": "ssh", "emulated": True, "status": "ok"}).counting
        is False
    )


def test_a_failed_measurement_on_an_emulated_target_did_not_run_whatever_the_counting() -> None:
    """An agent killed (a link dropped, a disk filled) mid-run on an emulated target: its failed measurements were
    said to have lost their counts (counting on) or to want counting turned on (a qemu machine reached over plain
    SSH), though nothing ran. They did not run, as the same fault before the device's facts were known says; one
    that was measured keeps its own reason, and the line counts the rest."""
    from edgekit.results import AgentResult, DeviceFacts, Measurement, TargetRun
    from edgekit.route_deploy import route_for_run

    facts = DeviceFacts(machine="aarch64", cores=4, python="3.11", emulated=True)
    crashed = Measurement(
        artifact="onnx-fp32",
        format="onnx-fp32",
        runtime="onnxruntime",
        threads=1,
        status="failed",
        error="the agent was killed by SIGKILL",
        error_code="crash",
    )
    measured = Measurement(
        artifact="tflite-fp32", format="tflite-fp32", runtime="tflite", threads=1, status="ok", p50_ms=3.0
    )
    error = "agent: the agent was killed by SIGKILL (out of memory? see dmesg on the device)"
    for counting in (True, False):
        for kept, said in (
            ([], "no route: nothing ran on this target (its error is above)"),
            (
                [measured],
                "were lost (agent: the agent was killed" if counting else "--set emulated.counting=true",
            ),
        ):
            agent = AgentResult(
                started_at="2026-12-01T00:00:00", facts_before=facts, measurements=[crashed, *kept]
            )
            run = TargetRun(
                target="pi4-emu",
                kind="ssh",
                emulated=True,
                status="failed",
                error=error,
                agent=agent,
                counting=counting,
            )
            route = route_for_run(run, {"onnx-fp32": True, "tflite-fp32": True})
            line = route.summary()
            assert route.rejected["onnx-fp32"] == "did not run", route.rejected
            assert said in line, line
            if kept:
                assert line.endswith("; 1 did not run (its error is above)"), line
            else:
                assert "emulated.counting" not in line and "were lost" not in line, line
