"""This machine's own disk filling while a deploy measures the real pi4-emu (sshd + qemu): EDGEKIT_HOME's runs/ (where
the run's requests, results, counts and pulled outputs go) is a small tmpfs, filled once the first agent is started.
The run ends in DiskFull (no internal error), and every artifact left unmeasured is recorded as not run with it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from procs import mount_tmpfs

from edgekit.convert.base import Artifact
from edgekit.deploy import DeployOptions, deploy
from edgekit.formats import Format
from edgekit.recipe import load_recipe
from edgekit.target import load_target

pytestmark = pytest.mark.integration
TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"
FORMATS = (Format.TFLITE_FP32, Format.NCNN_FP32)


@pytest.fixture(scope="module")
def tiny_artifacts() -> list[Artifact]:
    from edgekit.convert.pipeline import convert_recipe

    return convert_recipe(load_recipe(TINY), FORMATS, keep_going=True)


def _fill(folder: Path) -> None:
    with (folder / "filler.bin").open("wb") as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass


def test_a_full_local_disk_mid_run_is_disk_full_and_the_rest_is_recorded_not_run(
    pi4_emu, tiny_artifacts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: 'FAILED pull: unexpected OSError: [Errno 28]', ncnn-fp32 missing from the result (no reason)."""
    said: list[str] = []
    filled = threading.Event()
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("EDGEKIT_HOME", str(home))
    with mount_tmpfs(home / "runs", "8m") as runs:  # the run's own files; the ONNX model's cache has room

        def progress(message: object) -> None:
            said.append(str(message))
            if "agent measuring tflite-fp32" in str(message) and not filled.is_set():
                _fill(runs)  # in the session's thread: full before the agent's first byte comes back
                filled.set()

        target = load_target("pi4-emu", ["io_timeout=10", "connect_timeout=10"])
        opts = DeployOptions(host=False, repeat=1, warmup=0, threads=(1,), samples=2)  # type: ignore[call-arg]
        result = deploy(load_recipe(TINY), [target], opts, progress=progress, artifacts=tiny_artifacts)
    assert filled.is_set(), "\n".join(said)
    (run,) = [r for r in result.runs if r.target == "pi4-emu"]
    error = run.error or ""
    assert run.status == "failed" and "DiskFull: no space left on the disk holding" in error, error
    assert "unexpected" not in error and "OSError" not in error, error
    recorded = {m.artifact: m for m in run.agent.measurements} if run.agent else {}
    assert set(recorded) == {"tflite-fp32", "ncnn-fp32"}, (error, recorded)
    ncnn = recorded["ncnn-fp32"]
    assert ncnn.status == "failed" and ncnn.error_code == "not_run", ncnn
    assert "DiskFull" in (ncnn.error or ""), ncnn.error
