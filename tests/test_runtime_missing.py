"""A runtime the device's python does not have: its artifacts are `skipped`, said with the fix, and the target is a
set-up problem (exit 2), not `status ok` with a raw `ModuleNotFoundError: No module named 'MNN'` per artifact (exit
1) while `edgekit formats --target` already said `no (edgekit targets setup)`.

Against the real pi4-emu (its sshd, qemu and the real agent), run with the device's own python launcher minus MNN's
site dir: the python a board set up without MNN has. The logic above (the exit code's rule, the agent's words read)
is checked on records."""

from __future__ import annotations

import importlib.util
import json
import re
from functools import partial
from pathlib import Path

import procs
import pytest

from edgekit.agent.contract import ErrorCode
from edgekit.deploy.orchestrate import only_bad_input
from edgekit.deploy.runtime_missing import missing_modules
from edgekit.formats import Format
from edgekit.results import (
    AgentResult,
    ArtifactInfo,
    Comparison,
    DeployResult,
    DeviceFacts,
    Measurement,
    TargetRun,
)
from edgekit.runtimes import spec_for

REPO = Path(__file__).resolve().parent.parent
needs_mnn = pytest.mark.skipif(importlib.util.find_spec("MNN") is None, reason="needs the MNN package")


_edgekit = partial(procs.run, columns=200)


def _without_mnn(device_python: str, folder: Path) -> Path:
    """The device's python launcher with MNN's shared site dir left off its PYTHONPATH."""
    text = Path(device_python).read_text()
    lacking = re.sub(r':[^:"]*/runtimes/mnn(?=")', "", text)
    assert lacking != text, "the device's launcher names no MNN site dir: nothing to leave out"
    wrapper = folder / "py-nomnn"
    wrapper.write_text(lacking)
    wrapper.chmod(0o755)
    return wrapper


def test_the_agents_words_for_a_runtime_not_installed_are_read_and_nothing_else() -> None:
    """The agent records a load error as `Type: message`: a missing runtime module is a skip; a missing part or
    dependency of an installed runtime (a broken install) stays a failure."""
    mnn = spec_for(Format.MNN_FP32).modules()
    tflite = spec_for(Format.TFLITE_FP32).modules()
    assert missing_modules("ModuleNotFoundError: No module named 'MNN'", mnn) == ["MNN"]
    both = (
        "RuntimeError: no TFLite runtime importable (ai_edge_litert: No module named 'ai_edge_litert'; "
        "tflite_runtime: No module named 'tflite_runtime')"
    )
    assert missing_modules(both, tflite) == ["ai_edge_litert", "tflite_runtime"]
    broken = "RuntimeError: no TFLite runtime importable (ai_edge_litert: No module named 'ai_edge_litert.interpreter')"
    for error in (
        broken,
        "ModuleNotFoundError: No module named '_mnncengine'",  # MNN there, its compiled part not
        "ImportError: libgomp.so.1: cannot open shared object file: No such file or directory",
        "RuntimeError: MNN could not load model.mnn",
        "ModuleNotFoundError: No module named 'ncnn'",  # another runtime's module: not this artifact's
    ):
        assert missing_modules(error, mnn if "TFLite" not in error else tflite) == [], error


def _result(*, onnx_gate_on_target: bool, host_ok: bool = True) -> DeployResult:
    """A deploy of onnx-fp32 and mnn-fp32: the board's python lacked MNN (mnn-fp32 skipped, RuntimeMissing)."""
    facts = DeviceFacts(machine="aarch64", cores=4, python="3.11.2")

    def run(target: str, skipped: bool, gate: bool) -> TargetRun:
        ms = [
            Measurement(
                artifact="onnx-fp32", format="onnx-fp32", runtime="onnxruntime", threads=1, status="ok"
            )
        ]
        ms.append(
            Measurement(
                artifact="mnn-fp32",
                format="mnn-fp32",
                runtime="MNN",
                threads=1,
                status="skipped" if skipped else "ok",
                error_code=ErrorCode.RUNTIME_MISSING if skipped else None,
            )
        )
        return TargetRun(
            target=target,
            kind="ssh",
            emulated=False,
            status="failed" if skipped else "ok",
            bad_input=skipped,
            agent=AgentResult(started_at="2026-12-07T00:00:00+00:00", facts_before=facts, measurements=ms),
            comparisons=[
                Comparison(
                    artifact=a,
                    target=target,
                    reference="onnx",
                    max_abs_error=0.0,
                    mean_abs_error=0.0,
                    cosine=1.0,
                    gates_passed=gate if a == "onnx-fp32" else True,
                )
                for a in ("onnx-fp32", "mnn-fp32")
                if a == "onnx-fp32" or not skipped
            ],
            benchmark={"threads": [1]},
        )

    arts = [
        ArtifactInfo(id=a, format=a, files=[], sha256="0", size_bytes=1) for a in ("onnx-fp32", "mnn-fp32")
    ]
    return DeployResult(
        recipe="r",
        recipe_path="r.yaml",
        recipe_sha256="0",
        started_at="2026-12-07T00:00:00+00:00",
        artifacts=arts,
        runs=[run("board", True, onnx_gate_on_target), run("host", False, host_ok)],
    )


def test_a_skip_alone_is_a_set_up_problem_but_a_missed_gate_beside_it_is_a_failed_run() -> None:
    """exit 2 when the runtime the device lacks is all that failed; what the target did measure is judged as
    anywhere: a missed gate there (or elsewhere) is a failed run, exit 1."""
    expected = ["onnx-fp32", "mnn-fp32"]
    assert only_bad_input(_result(onnx_gate_on_target=True), expected) is True
    assert only_bad_input(_result(onnx_gate_on_target=False), expected) is False  # was hidden as "bad input"
    assert only_bad_input(_result(onnx_gate_on_target=True, host_ok=False), expected) is False


@needs_mnn
@pytest.mark.integration
def test_deploy_and_bench_skip_a_runtime_the_devices_python_lacks(pi4_emu: object, tmp_path: Path) -> None:
    """Measured before the fix: `x pi4-emu mnn-fp32 threads=1: ModuleNotFoundError: No module named 'MNN'`, the run
    recorded `status ok`, exit 1; bench the same. Now: skipped, the runtime and the fix named, the target failed
    for it (RuntimeMissing), exit 2; onnx-fp32 still measured and routed."""
    python = _without_mnn(pi4_emu.python, tmp_path)  # type: ignore[attr-defined]
    tiny = (REPO / "recipes" / "tiny.yaml").read_text()
    formats = next(line for line in tiny.splitlines() if line.startswith("formats:"))
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(tiny.replace(formats, "formats: [onnx-fp32, mnn-fp32]"))
    store, out = tmp_path / "runs.sqlite", tmp_path / "run.json"
    setup = f"edgekit targets setup pi4-emu --set python={python}"
    done = _edgekit(
        "deploy", str(recipe), "--target", "pi4-emu", "--set", f"python={python}", "--no-host",
        "--json", str(out), "--store", str(store),
    )  # fmt: skip
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 2, said[-3000:]
    assert "ModuleNotFoundError" not in said, said[-3000:]
    assert "pi4-emu: mnn-fp32 x1 skipped: runtime MNN not installed" in said, (
        said
    )  # the live line, as it streams
    assert (
        f"x pi4-emu: run: RuntimeMissing: pi4-emu: runtime MNN not installed for `{python}`: mnn-fp32 skipped "
        f"hint: `{setup}` installs it"
    ) in said, said[-3000:]
    assert re.search(r"│ mnn-fp32 +│ +1 │ +skipped │", done.stdout), done.stdout  # not 'n/a' as an estimate
    assert "route pi4-emu: ship onnx-fp32" in said, said[-3000:]
    # the runtimes table said 'did not run' of MNN there, as of a runtime never asked for
    assert "skipped: not installed" in said and "did not run" not in said, said[-3000:]
    (run,) = json.loads(out.read_text())["runs"]
    assert run["status"] == "failed" and run["bad_input"] and "RuntimeMissing" in run["error"], run["error"]
    got = {m["artifact"]: m for m in run["agent"]["measurements"]}
    assert got["onnx-fp32"]["status"] == "ok", got["onnx-fp32"]
    skipped = got["mnn-fp32"]
    assert skipped["status"] == "skipped" and skipped["error_code"] == "runtime_missing", skipped
    assert skipped["error"] == (
        f"skipped: runtime MNN not installed on pi4-emu for `{python}` (`{setup}` installs it)"
    ), skipped["error"]
    listed = " ".join(_edgekit("runs", "--store", str(store)).stdout.split())
    assert "(1 skipped: runtime not installed)" in listed and "1 failed)" not in listed, listed
    shown = " ".join(_edgekit("runs", "show", "1", "--store", str(store)).stdout.split())
    assert "status ok" not in shown.split("pi4-emu", 1)[1], shown  # the target is not called ok
    model = next(
        Path(a["files"][0]) for a in json.loads(out.read_text())["artifacts"] if a["id"] == "mnn-fp32"
    )
    bench = _edgekit(
        "bench", str(model), "--target", "pi4-emu", "--set", f"python={python}", "--repeat", "2", "--json",
        str(tmp_path / "bench.json"),
    )  # fmt: skip
    said = " ".join((bench.stdout + bench.stderr).split())
    assert bench.returncode == 2 and "ModuleNotFoundError" not in said, said
    assert (
        "RuntimeMissing: pi4-emu: runtime MNN not installed" in said and f"`{setup}` installs it" in said
    ), said
    (m,) = json.loads((tmp_path / "bench.json").read_text())["agent"]["measurements"]
    assert m["status"] == "skipped" and m["error_code"] == "runtime_missing", m
