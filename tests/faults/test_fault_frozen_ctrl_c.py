"""Ctrl-C while the device is frozen (its sshd SIGSTOPped after the agent streamed a measurement): stopping the
agent cannot reach the device, yet the run still exits 130 keeping what the agent streamed, and records every
artifact it did not measure as not run (interrupted), in --json and in the store."""

from __future__ import annotations

import pytest
from test_fault_cli import deploy_frozen_after_a_measurement, stored

from edgekit.results import NOT_RUN_INTERRUPTED, DeployResult

pytestmark = pytest.mark.integration


def test_ctrl_c_with_the_device_frozen_keeps_the_streamed_measurement_and_records_the_rest(
    pi4_emu, tmp_path
) -> None:
    proc, stdout, stderr, seconds, out, store = deploy_frozen_after_a_measurement(tmp_path, ctrl_c=True)
    said = stdout[-3000:] + stderr[-3000:]
    assert proc.returncode == 130, said
    assert seconds < 60, seconds  # the kill of the agent's group waits io_timeout (3 s), the pull is skipped
    assert "Traceback" not in stderr, said
    assert "interrupted: kept 1 measurements" in stdout, said
    for result in (DeployResult.model_validate_json(out.read_text()), stored(store, stdout + stderr)):
        (run,) = result.runs
        assert run.interrupted and run.agent is not None, said
        got = {m.artifact: m for m in run.agent.measurements}
        assert (
            got["tflite-fp32"].status == "ok" and got["tflite-fp32"].samples_ms
        )  # streamed before the freeze
        assert got["ncnn-fp32"].status == "failed"
        assert (got["ncnn-fp32"].error or "").startswith(NOT_RUN_INTERRUPTED), got["ncnn-fp32"].error
