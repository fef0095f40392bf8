"""A device busy with another benchmark (another deploy holds its work dir's .edgekit.lock), against the real
pi4-emu: the agent waits for the lock, and says so on the live line, instead of looking hung after 'agent measuring
...'; once the other benchmark lets go, the run completes."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from edgekit.convert.base import Artifact
from edgekit.deploy import DeployOptions, deploy
from edgekit.formats import Format
from edgekit.recipe import load_recipe
from edgekit.results import DeployResult
from edgekit.target import load_target

pytestmark = pytest.mark.integration
TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def tiny_artifacts() -> list[Artifact]:
    from edgekit.convert.pipeline import convert_recipe

    return convert_recipe(load_recipe(TINY), (Format.TFLITE_FP32,), keep_going=True)


def test_a_device_busy_with_another_benchmark_says_who_holds_it_then_runs(
    pi4_emu, tiny_artifacts, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    lock = os.open(work / ".edgekit.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)  # as another deploy's agent holds it, its pid and start written in it
    os.pwrite(lock, f"pid {os.getpid()} since 2026-12-06T06:00:00+00:00\n".encode(), 0)
    said: list[str] = []
    waiting = threading.Event()

    def progress(message: object) -> None:
        said.append(str(message))
        if ": waiting: " in str(message):
            waiting.set()

    target = load_target("pi4-emu", [f"work_dir={work}"])
    opts = DeployOptions(host=False, repeat=1, warmup=0, threads=(1,), samples=2)  # type: ignore[call-arg]
    results: list[DeployResult] = []
    runner = threading.Thread(
        target=lambda: results.append(
            deploy(load_recipe(TINY), [target], opts, progress=progress, artifacts=tiny_artifacts)
        )
    )
    runner.start()
    try:
        seen = waiting.wait(90)
        held_for = time.monotonic()
    finally:
        os.close(lock)  # the other benchmark ends
    runner.join(300)
    assert seen, "\n".join(said)
    (line,) = [m for m in said if ": waiting: " in m][:1]
    assert line.startswith("pi4-emu: waiting: another benchmark holds the device (pid ") and (
        f"pid {os.getpid()} since 2026-12-06T06:00:00+00:00" in line
    ), line
    assert time.monotonic() - held_for < 300
    (run,) = [r for r in results[0].runs if r.target == "pi4-emu"]
    assert run.status == "ok", run.error
    assert [m.status for m in run.agent.measurements] == ["ok"] if run.agent else False, run.agent
