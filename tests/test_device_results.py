"""What the host does with what a device sends back: the result file, the streamed measurements, the outputs
files. The real agent runs here, through the local transport (a `local` target with a work dir of its own); a
device that misbehaves is the real agent behind a small wrapper script given as the target's `python`, which
alters what the agent wrote, or a local transport whose download fails."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.deploy.request import AgentArtifact, Settings
from edgekit.deploy.session import TargetSession
from edgekit.errors import AgentError, ConnectionLost
from edgekit.results import AgentResult, DeviceFacts, Measurement, TargetRun
from edgekit.target import Target, TransportKind
from edgekit.transport.local import LocalTransport


def wrapper(tmp_path: Path, after_agent: str) -> str:
    """A target `python` that runs the real agent, then `after_agent` (python, with `result` the result file's
    path and `data` its JSON, written back after it): a device that alters what the agent wrote."""
    script = tmp_path / "device_python.py"
    script.write_text(
        "import json, os, subprocess, sys\n"
        "agent, request, result = sys.argv[1:4]\n"
        "done = subprocess.run([sys.executable, agent, request, result])\n"
        "data = json.load(open(result))\n"
        f"{after_agent}\n"
        "json.dump(data, open(result, 'w'))\n"
        "sys.exit(done.returncode)\n"
    )
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def run_on_device(
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path], python: str = "", **settings: object
) -> tuple[TargetRun, TargetSession, list[str]]:
    target = Target(
        name="dev",
        transport=TransportKind.LOCAL,
        work_dir=str(tmp_path / "device"),
        python=python or shlex.quote(sys.executable),
        runtimes=["onnxruntime"],
    )
    said: list[str] = []
    session = TargetSession(
        target,
        run_id="R",
        local_dir=tmp_path / "host" / "runs" / "R" / "dev",
        settings=Settings(**{"repeat": 3, "warmup": 0, "threads": (1,), **settings}),  # type: ignore[arg-type]
        progress=lambda m: said.append(str(m)),
    )
    art, inputs = relu_model
    return session.execute([art], inputs), session, said


@pytest.mark.parametrize("where", ["absolute", "dotdot"])
def test_an_outputs_file_outside_the_run_folder_is_refused_and_nothing_written_there(
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path], where: str
) -> None:
    """The device's result named `outputs_file` (an absolute path, or one climbing out with ..) and served a file
    of its choosing there: the host downloaded it to local_dir / outputs_file, i.e. anywhere on this machine
    (~/.ssh/authorized_keys). Only the agent's own name is accepted; the rest is an AgentError naming the field,
    nothing is downloaded for it, and the timings are kept."""
    victim = tmp_path / "victim.txt"
    name = str(victim) if where == "absolute" else "../../../../victim.txt"
    plant = (
        "m = data['measurements'][0]\n"
        f"m['outputs_file'] = {name!r}\n"
        f"served = os.path.join(os.path.dirname(result), {name.lstrip('/')!r})\n"
        "os.makedirs(os.path.dirname(served), exist_ok=True)\n"
        "open(served, 'w').write('chosen by the device')"
    )
    run, session, _ = run_on_device(tmp_path, relu_model, wrapper(tmp_path, plant))
    assert not victim.exists()
    assert run.status == "failed" and "AgentError" in (run.error or "")
    assert "measurements[0].outputs_file" in (run.error or "") and "relu.t1.npz" in (run.error or "")
    assert run.agent is not None
    (m,) = run.agent.measurements
    assert m.status == "ok" and m.p50_ms and len(m.samples_ms) == 3 and m.outputs_file is None
    assert "outputs_file" in json.dumps(run.model_dump()) and session.runner.reader.refused


def test_the_agents_own_outputs_file_is_pulled(
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path]
) -> None:
    run, session, _ = run_on_device(tmp_path, relu_model)
    assert run.status == "ok", run.error
    assert run.agent is not None
    (m,) = run.agent.measurements
    assert m.outputs_file == "outputs/relu.t1.npz" and (session.local_dir / m.outputs_file).is_file()


def test_the_pull_never_writes_outside_the_run_folder(tmp_path: Path) -> None:
    """The last guard, in the pull itself: a measurement whose outputs_file would land outside local_dir (however
    it got there) is not downloaded, and the pull says so."""
    target = Target(name="dev", transport=TransportKind.LOCAL, work_dir=str(tmp_path / "device"))
    session = TargetSession(target, run_id="R", local_dir=tmp_path / "host", settings=Settings())
    victim = tmp_path / "victim.txt"
    served = tmp_path / "device" / session.run_dir / str(victim).lstrip("/")
    served.parent.mkdir(parents=True)
    served.write_text("chosen by the device")
    bad = Measurement(
        artifact="a",
        format="onnx-fp32",
        runtime="onnxruntime",
        threads=1,
        status="ok",
        outputs_file=str(victim),
    )
    facts = DeviceFacts(machine="aarch64", cores=4, python="3.11")
    session.run.agent = AgentResult(started_at="t", facts_before=facts, measurements=[bad])
    with pytest.raises(AgentError, match="outside this run's folder"):
        session.pull_outputs(LocalTransport(target))
    assert not victim.exists() and bad.outputs_file is None


class DropsAtResult(LocalTransport):
    """The local device, whose link drops while result-N.json downloads (`drops` times); reconnect works unless
    `reachable` is False (the link then stays down)."""

    def __init__(self, target: Target, drops: int = 1, reachable: bool = True) -> None:
        super().__init__(target)
        self.drops, self.reachable, self.down, self.events = drops, reachable, False, []  # type: ignore[var-annotated]

    def get(self, remote: str, local: Path) -> Path:
        if self.down:
            raise ConnectionLost("the link is down", stage="download")
        if "result-" in remote and self.drops > 0:
            self.drops -= 1
            self.down = True
            raise ConnectionLost(f"the connection dropped during download of {remote}", stage="download")
        return super().get(remote, local)

    def reconnect(self) -> bool:
        self.events.append("reconnect")
        self.down = not self.reachable
        return self.reachable

    @property
    def usable(self) -> bool:
        return not self.down


def session_with(tmp_path: Path, reachable: bool = True) -> tuple[TargetSession, list[str]]:
    """A session on the local device whose link drops once while result-0.json downloads."""
    target = Target(
        name="dev",
        transport=TransportKind.LOCAL,
        work_dir=str(tmp_path / "device"),
        python=shlex.quote(sys.executable),
        runtimes=["onnxruntime"],
    )
    said: list[str] = []
    session = TargetSession(
        target,
        run_id="R",
        local_dir=tmp_path / "host",
        settings=Settings(repeat=3, warmup=0, threads=(1, 2)),
        progress=lambda m: said.append(str(m)),
        transport=DropsAtResult(target, reachable=reachable),
    )
    return session, said


def test_a_link_dropped_while_the_result_downloads_reconnects_and_pulls_it(
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path]
) -> None:
    """The agent measured and exited 0; the link dropped while result-0.json came down. It was reported as
    'agent exited with status 0 ... (before measuring anything)' with nothing kept: the drop now goes the lost-link
    way (reconnect, read the result again)."""
    session, said = session_with(tmp_path)
    art, inputs = relu_model
    run = session.execute([art], inputs)
    assert run.status == "ok", run.error
    assert run.agent is not None and [(m.threads, m.status) for m in run.agent.measurements] == [
        (1, "ok"),
        (2, "ok"),
    ]
    assert any("reconnected after ConnectionLost" in s for s in said), said
    assert run.agent.measurements[0].outputs_file and not (tmp_path / "device" / session.run_dir).exists()


def test_a_link_that_stays_down_after_the_agent_ended_keeps_the_streamed_measurements(
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path]
) -> None:
    session, said = session_with(tmp_path, reachable=False)
    art, inputs = relu_model
    run = session.execute([art], inputs)
    assert (
        run.status == "failed" and "ConnectionLost" in (run.error or "") and "download" in (run.error or "")
    )
    assert "before measuring anything" not in (run.error or "")
    assert run.agent is not None
    assert [(m.threads, m.status) for m in run.agent.measurements] == [(1, "ok"), (2, "ok")]
    assert all(m.p50_ms and m.outputs_file is None for m in run.agent.measurements)  # from the stream
    assert any("kept 2 streamed measurements" in s for s in said), said
    assert (tmp_path / "device" / session.run_dir / "result-0.json").is_file()  # never removed unread


def test_a_result_file_edgekit_refuses_names_the_field_and_keeps_the_streamed_measurements(
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path]
) -> None:
    """The agent exited 0 and streamed both measurements, but its result file held one value the host refuses
    (contract drift, a damaged write): 'agent exited with status 0 ... (before measuring anything)', nothing kept,
    and the run folder removed unread. Now: what failed, with the field, the streamed measurements, the folder
    left on the device."""
    drift = "data['measurements'][1]['peak_rss_scope'] = 'thread'"
    run, session, _ = run_on_device(tmp_path, relu_model, wrapper(tmp_path, drift), threads=(1, 2))
    error = run.error or ""
    assert run.status == "failed" and "AgentError" in error and "before measuring anything" not in error
    assert "result-0.json is not a result edgekit reads" in error and "measurements.1.peak_rss_scope" in error
    assert "kept the 2 measurements it streamed" in error and "left on the device" in error
    assert run.agent is not None
    assert [(m.threads, m.status) for m in run.agent.measurements] == [(1, "ok"), (2, "ok")]
    assert (tmp_path / "device" / session.run_dir / "result-0.json").is_file()


def test_a_crash_whose_result_file_cannot_be_read_says_so_and_keeps_what_was_streamed(
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path]
) -> None:
    garbled = "open(result, 'w').write('{not json'); sys.exit(139)"
    run, _, _ = run_on_device(tmp_path, relu_model, wrapper(tmp_path, garbled), threads=(1, 2))
    error = run.error or ""
    assert run.status == "failed" and "agent exited with status 139" in error, error
    assert "result-0.json is not a result edgekit reads" in error and "before measuring anything" not in error
    assert run.agent is not None and len(run.agent.measurements) == 2


def test_a_damaged_outputs_file_fails_that_artifacts_comparison_only(tmp_path: Path) -> None:
    """One target's outputs .npz that is truncated, whose keys are not the result's, or whose arrays are not what
    the device checksummed: BadZipFile / KeyError escaped the comparison and no target got comparisons, gates or
    routes (and output_checksums were never checked). Each is now that artifact's failed comparison, naming why."""
    from edgekit.convert.calibration import evaluation_inputs
    from edgekit.convert.onnx import prepare_onnx
    from edgekit.deploy.outputs import compare_all, onnx_reference
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe
    from edgekit.results import DeployResult

    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml")
    data, labels = evaluation_inputs(recipe)
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, np.ascontiguousarray(data, dtype=np.float32))
    art = AgentArtifact("onnx-fp32", Format.ONNX_FP32, (prepare_onnx(recipe).reference_path,), key="0" * 64)
    run, _, _ = run_on_device(tmp_path, (art, inputs))
    assert run.status == "ok" and run.agent is not None, run.error
    m = run.agent.measurements[0]
    assert m.outputs_file and m.output_checksums

    def copy(name: str) -> tuple[TargetRun, Path]:
        folder = tmp_path / name
        (folder / "outputs").mkdir(parents=True)
        npz = folder / m.outputs_file  # type: ignore[operator]
        npz.write_bytes((Path(run.result_dir or "") / m.outputs_file).read_bytes())  # type: ignore[operator]
        return run.model_copy(update={"target": name, "result_dir": str(folder)}, deep=True), npz

    host, _ = copy("host")
    good, _ = copy("good")
    truncated, npz = copy("truncated")
    npz.write_bytes(npz.read_bytes()[:100])
    tampered, npz = copy("tampered")
    with np.load(npz) as saved:
        arrays = {k: saved[k] + 1.0 for k in saved.files}
    np.savez(npz, **arrays)  # a valid file with other numbers: only the checksums tell
    single, npz = copy("single")
    with np.load(npz) as saved:
        first = saved[saved.files[0]]
    with open(npz, "wb") as handle:
        np.save(handle, first)  # one array where the .npz should be
    renamed, _ = copy("renamed")
    assert renamed.agent is not None
    renamed.agent.measurements[0].output_keys = ["not_in_the_file"]
    result = DeployResult(
        recipe="tiny",
        recipe_path=str(recipe.path),
        recipe_sha256="x",
        started_at="2026-01-01T00:00:00",
        runs=[host, good, truncated, tampered, single, renamed],
    )
    compare_all(result, recipe, onnx_reference(recipe, data), labels, "host")
    comps = {r.target: r.comparisons for r in result.runs}
    assert [(c.reference, c.gates_passed) for c in comps["host"]] == [("onnx", True)]
    assert [(c.reference, c.gates_passed) for c in comps["good"]] == [("onnx", True), ("host", None)]
    for name, why in [
        ("truncated", "cannot be read (BadZipFile"),
        ("tampered", "differ from the result's output_checksums"),
        ("single", "cannot be read (ValueError: onnx-fp32.t1.npz holds one array"),
        ("renamed", "cannot be read (KeyError"),
    ]:
        (failed,) = comps[name]
        assert failed.artifact == "onnx-fp32" and failed.gates_passed is False, name
        assert why in failed.gate_failures[0] and m.outputs_file in failed.gate_failures[0], (
            failed.gate_failures
        )


def test_the_host_is_measured_when_edgekits_python_path_holds_a_space(
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venv under `My Projects/`: the host target's python is sys.executable, which was split as a command line
    (['/.../My', 'Projects/.../python']): the host run failed with 127 and the host was never measured."""
    from edgekit.deploy.orchestrate import host_target

    spaced = tmp_path / "My Projects" / "venv" / "python"
    spaced.parent.mkdir(parents=True)
    spaced.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    spaced.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(spaced))
    host = host_target()
    assert host.python == str(spaced) and host.is_this_host
    target = host.model_copy(update={"work_dir": str(tmp_path / "device")})
    session = TargetSession(
        target, run_id="R", local_dir=tmp_path / "host", settings=Settings(repeat=2, warmup=0)
    )
    art, inputs = relu_model
    run = session.execute([art], inputs)
    assert run.status == "ok", run.error
    assert run.agent is not None and [m.status for m in run.agent.measurements] == ["ok"]
    assert (tmp_path / "device").is_dir()  # its own work dir, not the data dir's local/host
    session = TargetSession(
        target.model_copy(update={"work_dir": str(tmp_path / "other")}),
        run_id="R2",
        local_dir=tmp_path / "host2",
        settings=Settings(repeat=2, warmup=0),
    )
    spaced.write_text("#!/bin/sh\nexit 1\n")  # a python without numpy, say: the hint is a command to paste
    failed = session.execute([art], inputs)
    assert f"run `{shlex.quote(str(spaced))} -c 'import numpy'`" in (failed.error or ""), failed.error


def test_the_agent_gets_a_deadline_of_its_own_and_its_stop_is_a_timeout(
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path]
) -> None:
    """The request carries the run's time limit plus a grace as deadline_s (the agent stops itself there, for a
    host that is gone); an agent that did stop itself is a timeout of what it had not measured, not a crash."""
    from edgekit.agent.contract import ErrorCode
    from edgekit.deploy.agent_run import AGENT_DEADLINE_GRACE_S

    run, session, _ = run_on_device(tmp_path, relu_model, timeout_s=30.0)
    assert run.status == "ok", run.error
    sent = json.loads((session.local_dir / "request-0.json").read_text())
    assert 30.0 < sent["deadline_s"] <= 30.0 + AGENT_DEADLINE_GRACE_S

    script = tmp_path / "short_deadline.py"  # a device whose agent gets a deadline of 1 s and a long run
    script.write_text(
        "import json, os, sys\n"
        "agent, request, result = sys.argv[1:4]\n"
        "req = json.load(open(request))\n"
        "req.update(deadline_s=1, repeat=100000, number=1000)\n"
        "json.dump(req, open(request, 'w'))\n"
        "os.execv(sys.executable, [sys.executable, agent, request, result])\n"
    )
    python = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    run, _, _ = run_on_device(tmp_path / "short", relu_model, python, threads=(1, 2))
    assert run.status == "failed" and "the agent stopped itself at its deadline" in (run.error or ""), (
        run.error
    )
    assert run.agent is not None
    assert [(m.threads, m.error_code) for m in run.agent.measurements] == [
        (1, ErrorCode.TIMEOUT),
        (2, ErrorCode.TIMEOUT),
    ]


def test_targets_check_probes_the_host_when_edgekits_python_path_holds_a_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same split in the device probe (`edgekit targets check local`, `targets setup`): the probe ran
    ['/.../My', 'Projects/.../python'] and said the python did not run."""
    from edgekit.deploy.orchestrate import host_target
    from edgekit.emu.device_info import probe
    from edgekit.transport import open_transport

    spaced = tmp_path / "My Projects" / "venv" / "python"
    spaced.parent.mkdir(parents=True)
    spaced.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
    spaced.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(spaced))
    target = host_target().model_copy(update={"work_dir": str(tmp_path / "device")})
    with open_transport(target) as transport:
        info = probe(transport, target)
    assert info.raw["machine"]
