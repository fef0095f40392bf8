"""A device that sends back what it should not: terminal escape sequences in the text it prints and writes. The
real agent runs here, through the local transport, behind a small wrapper script given as the target's `python`
(a hostile device); nothing here needs an emulated device."""

from __future__ import annotations

import io
import json
import shlex
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgekit.deploy.request import AgentArtifact, Settings
from edgekit.deploy.session import TargetSession
from edgekit.results import TargetRun
from edgekit.target import Target, TransportKind
from edgekit.terminal import Console, plain

# a screen clear, an OSC 52 clipboard write, a window title, a bell, a carriage return and a C1 CSI (U+009B)
EVIL = "\x1b[2J\x1b]52;c;cm0gLXJmIH4K\x1b\\\x1b]0;TITLE\x07\r\x9b31m"
CONTROLS = ("\x1b", "\x07", "\r", "\x9b")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> tuple[AgentArtifact, Path]:
    """A one-node ONNX model (Relu) and four evaluation inputs for it."""
    folder = tmp_path_factory.mktemp("model")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
    )
    made = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    made.ir_version = 8
    onnx.save(made, str(folder / "relu.onnx"))
    inputs = folder / "inputs.npy"
    np.save(inputs, np.random.default_rng(0).standard_normal((4, 1, 16)).astype(np.float32))
    return AgentArtifact.from_path(folder / "relu.onnx"), inputs


def device_python(tmp_path: Path, after_agent: str) -> str:
    """A target `python` that runs the real agent, then `after_agent` (python; `result` is the result file's path,
    `out` the binary stdout)."""
    script = tmp_path / "device_python.py"
    script.write_text(
        "import json, os, subprocess, sys\n"
        "agent, request, result = sys.argv[1:4]\n"
        "done = subprocess.run([sys.executable, agent, request, result])\n"
        "out = os.fdopen(1, 'wb')\n"
        f"{after_agent}\n"
        "out.flush()\n"
        "sys.exit(done.returncode)\n"
    )
    return f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"


def run_on_device(
    tmp_path: Path, model: tuple[AgentArtifact, Path], python: str
) -> tuple[TargetRun, TargetSession, list[str]]:
    target = Target(
        name="dev",
        transport=TransportKind.LOCAL,
        work_dir=str(tmp_path / "device"),
        python=python,
        runtimes=["onnxruntime"],
    )
    said: list[str] = []
    session = TargetSession(
        target,
        run_id="R",
        local_dir=tmp_path / "host" / "runs" / "R" / "dev",
        settings=Settings(repeat=3, warmup=0, threads=(1,)),
        progress=lambda m: said.append(str(m)),
    )
    art, inputs = model
    return session.execute([art], inputs), session, said


def no_control(text: str) -> bool:
    return not any(c in text for c in CONTROLS)


def test_plain_shows_a_devices_control_characters_as_escapes() -> None:
    """`plain` escaped rich markup only: a device's text printed through it cleared the screen, set the window
    title and wrote the clipboard (OSC 52) of the user's terminal. Tab and newline stay (multi-line errors)."""
    shown = plain(f"cpu{EVIL}[bold]x[/]\n\tnext")
    assert no_control(shown) and "\\x1b[2J" in shown and "\\x1b]52;c;" in shown and "\\x9b" in shown
    assert shown.endswith("\n\tnext")
    out = io.StringIO()
    Console(file=out, color_system=None, width=400).print(f"[red]{plain(EVIL)}[/]", highlight=False)
    assert no_control(out.getvalue())
    assert "\\x1b]0;TITLE\\x07" in out.getvalue()


def test_a_devices_escape_sequences_are_neither_said_nor_stored(
    tmp_path: Path, model: tuple[AgentArtifact, Path]
) -> None:
    """The device streamed a measurement line whose artifact name carried escape sequences and wrote them into its
    facts (cpu_model, hostname), a measurement's error and a field edgekit does not declare: the live progress
    said them raw and the store kept them, so `edgekit runs show` replayed them. Now each is kept as its escape."""
    hostile = (
        "data = json.load(open(result))\n"
        f"evil = {EVIL!r}\n"
        "line = {'artifact': 'relu' + evil, 'threads': 1, 'status': 'ok' + evil, 'p50_ms': 1.0}\n"
        "out.write(('EDGEKIT_MEASUREMENT ' + json.dumps(line) + '\\n').encode())\n"
        "data['facts_before']['cpu_model'] = 'cpu' + evil\n"
        "data['facts_before']['hostname'] = 'host' + evil\n"
        "data['facts_before']['runtimes']['onnxruntime' + evil] = '1' + evil\n"
        "data['measurements'][0]['error'] = 'error' + evil\n"
        "data['note' + evil] = 'extra' + evil\n"
        "json.dump(data, open(result, 'w'))"
    )
    run, _, said = run_on_device(tmp_path, model, device_python(tmp_path, hostile))
    assert run.agent is not None
    assert all(no_control(message) for message in said), [m for m in said if not no_control(m)]
    assert any("relu\\x1b[2J" in message for message in said)  # said, as its escape
    facts = run.agent.facts_before
    assert facts.cpu_model is not None and no_control(facts.cpu_model) and "cpu\\x1b[2J" in facts.cpu_model
    stored = run.model_dump_json()
    assert "\\\\x1b]52;c;" in stored and "\\u001b" not in stored and "\\u009b" not in stored
    assert no_control(json.dumps(run.model_dump(mode="json"), ensure_ascii=False))
