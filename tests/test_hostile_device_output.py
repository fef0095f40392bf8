"""A device that sends back what it should not: terminal escape sequences in the text it prints and writes, more
output and larger files than this machine should hold. The
real agent runs here, through the local transport, behind a small wrapper script given as the target's `python`
(a hostile device); nothing here needs an emulated device."""

from __future__ import annotations

import io
import json
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edgekit.deploy import agent_result
from edgekit.deploy.request import AgentArtifact, Settings
from edgekit.deploy.session import TargetSession
from edgekit.errors import TransportError
from edgekit.results import TargetRun
from edgekit.target import Target, TransportKind
from edgekit.terminal import Console, plain
from edgekit.transport import limits
from edgekit.transport.local import LocalTransport

# a screen clear, an OSC 52 clipboard write, a window title, a bell, a carriage return and a C1 CSI (U+009B)
EVIL = "\x1b[2J\x1b]52;c;cm0gLXJmIH4K\x1b\\\x1b]0;TITLE\x07\r\x9b31m"
CONTROLS = ("\x1b", "\x07", "\r", "\x9b")


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
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path], python: str
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
    art, inputs = relu_model
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
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path]
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
    run, _, said = run_on_device(tmp_path, relu_model, device_python(tmp_path, hostile))
    assert run.agent is not None
    assert all(no_control(message) for message in said), [m for m in said if not no_control(m)]
    assert any("relu\\x1b[2J" in message for message in said)  # said, as its escape
    facts = run.agent.facts_before
    assert facts.cpu_model is not None and no_control(facts.cpu_model) and "cpu\\x1b[2J" in facts.cpu_model
    stored = run.model_dump_json()
    assert "\\\\x1b]52;c;" in stored and "\\u001b" not in stored and "\\u009b" not in stored
    assert no_control(json.dumps(run.model_dump(mode="json"), ensure_ascii=False))


# -- a device that floods this machine's memory ------------------------------------------------------------
def local_target(tmp_path: Path) -> Target:
    return Target(name="dev", transport=TransportKind.LOCAL, work_dir=str(tmp_path / "device"))


def test_a_flood_on_stdout_is_kept_to_a_bound_and_every_line_still_passed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command printing 400 MB was held whole in this machine's memory (communicate()): what is kept is now its
    head and its latest bytes, while every chunk still reaches on_output as it comes (the agent's lines)."""
    monkeypatch.setattr(limits, "OUTPUT_LIMIT", 256 << 10)
    flood = (
        "import os, sys\nout = os.fdopen(1, 'wb')\nout.write(b'FIRST\\n')\n"
        "for _ in range(8 * 1024): out.write(b'x' * 1023 + b'\\n')\n"
        "out.write(b'LAST\\n'); out.flush(); sys.stderr.write('e' * (4 << 20) + '\\nERRLAST\\n')\n"
    )
    seen: list[int] = []
    done = LocalTransport(local_target(tmp_path)).run(
        [sys.executable, "-c", flood], timeout=60, on_output=lambda text: seen.append(text.count("\n"))
    )
    assert done.exit_status == 0 and sum(seen) == 8 * 1024 + 2
    assert len(done.stdout) <= (256 << 10) * 2 and done.stdout.startswith("FIRST\n")
    assert done.stdout.endswith("LAST\n") and "output dropped here" in done.stdout
    assert len(done.stderr) <= (256 << 10) * 2 and done.stderr.endswith("ERRLAST\n")


def test_the_ssh_reader_keeps_a_flood_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """ssh_exec.collect grew its stdout and stderr buffers without end; a fake channel sends 8 MB of each."""
    from edgekit.transport import ssh_exec

    monkeypatch.setattr(limits, "OUTPUT_LIMIT", 256 << 10)

    class Flooding:
        """A channel whose command printed `chunks` chunks of 64 KB on stdout and on stderr, then exited."""

        def __init__(self, chunks: int) -> None:
            self.out, self.err = chunks, chunks
            self.eof_received, self.closed = True, False

        def recv_ready(self) -> bool:
            return self.out > 0

        def recv(self, n: int) -> bytes:
            self.out -= 1
            return (b"o" * 1023 + b"\n") * 64

        def recv_stderr_ready(self) -> bool:
            return self.err > 0

        def recv_stderr(self, n: int) -> bytes:
            self.err -= 1
            return (b"e" * 1023 + b"\n") * 64

        def exit_status_ready(self) -> bool:
            return True

        def fileno(self) -> int:
            return 0

    seen: list[int] = []
    out, err, timed_out = ssh_exec.collect(
        Flooding(128),  # type: ignore[arg-type]
        time.monotonic() + 60,
        on_out=lambda text: seen.append(len(text)),
    )
    assert not timed_out and sum(seen) == 128 * 65536
    assert len(out) <= (256 << 10) * 2 and len(err) <= (256 << 10) * 2


def test_a_device_file_over_the_limit_is_refused_before_its_download(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pulled file had no size limit: the local transport and SFTP refuse one over it, naming it, its size
    and the limit, before reading a byte of it."""
    monkeypatch.setattr(limits, "DOWNLOAD_LIMIT", 1 << 20)
    target = local_target(tmp_path)
    big = tmp_path / "device" / "outputs" / "m.t1.npz"
    big.parent.mkdir(parents=True)
    big.write_bytes(b"\0" * (3 << 20))
    with pytest.raises(TransportError, match=r"m\.t1\.npz on the device is 3\.1 MB, over the 1\.0 MB"):
        LocalTransport(target).get("outputs/m.t1.npz", tmp_path / "host" / "m.t1.npz")
    assert not (tmp_path / "host" / "m.t1.npz").exists()

    from edgekit.transport.ssh_files import RemoteFiles

    got: list[str] = []

    class Sftp:
        def stat(self, path: str) -> object:
            return type("Attributes", (), {"st_size": 3 << 20})()

        def get(self, path: str, local: str) -> None:
            got.append(path)

    class Link:
        target, address = Target(name="dev", host="device"), "me@device"

        @contextmanager
        def deadline(self, what: str, seconds: float) -> Iterator[None]:
            yield

    files = RemoteFiles(Link(), lambda remote: f"/work/{remote}")  # type: ignore[arg-type]
    files._sftp = Sftp()  # type: ignore[assignment]
    with pytest.raises(TransportError, match=r"/work/outputs/m\.t1\.npz on the device is 3\.1 MB"):
        files.get("outputs/m.t1.npz", tmp_path / "host" / "m.t1.npz")
    assert got == []


def test_a_padded_result_file_is_refused_and_the_streamed_measurements_kept(
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The device padded result.json with blanks (still valid JSON): it was copied and parsed whole (314 MB). It is
    refused over the result limit (the error names it, its size and the limit) and what the agent streamed is
    kept."""
    monkeypatch.setattr(agent_result, "RESULT_LIMIT", 2 << 20)
    pad = "open(result, 'ab').write(b' ' * (5 << 20))\nout.write(b'z' * (3 << 20) + b'\\n')"
    run, _, said = run_on_device(tmp_path, relu_model, device_python(tmp_path, pad))
    assert any("kept 1 streamed measurements" in message for message in said)
    assert run.status == "failed" and "AgentError" in (run.error or "")
    assert "result-0.json" in (run.error or "") and "over the 2.1 MB" in (run.error or "")
    assert run.agent is not None and [m.status for m in run.agent.measurements] == ["ok"]
    assert not list((tmp_path / "host").rglob("result-0.json"))


def test_stdout_lines_nested_too_deeply_are_dropped_and_the_run_kept(
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path]
) -> None:
    """r9 (same class as the outputs file): a MEASUREMENT and a WAITING line of 100,000 nested brackets raised
    RecursionError out of json.loads on the host, the target's run ended in 'unexpected RecursionError' and its
    measurement was lost ('nothing ran on this target'). Such lines are now dropped as any garbled line is."""
    deep = "'[' * 100000 + ']' * 100000"
    lines = (
        f"out.write(('EDGEKIT_MEASUREMENT ' + {deep} + '\\n').encode())\n"
        f"out.write(('EDGEKIT_WAITING ' + {deep} + '\\n').encode())"
    )
    run, _, said = run_on_device(tmp_path, relu_model, device_python(tmp_path, lines))
    assert run.status == "ok" and run.error is None, run.error
    assert run.agent is not None and [m.status for m in run.agent.measurements] == ["ok"]
    assert not any("Recursion" in message for message in said), said


def test_a_streamed_measurement_nested_deeply_is_dropped_as_the_result_file_would_be(
    tmp_path: Path, relu_model: tuple[AgentArtifact, Path]
) -> None:
    """The result file is read by pydantic's JSON parser, which refuses nesting past its limit; the streamed lines
    (kept when the result file cannot be read) went through json.loads, which took a measurement with a field 300
    deep: it was kept, and writing the run's result.json then failed ('Circular reference detected (depth
    exceeded)'). The line is now refused as the result file would be, and the agent's own line is kept."""
    deep = "'[' * 300 + ']' * 300"
    garble = (
        "line = json.dumps({'artifact': 'relu', 'format': 'onnx-fp32', 'runtime': 'onnxruntime', 'threads': 2, "
        "'status': 'ok', 'p50_ms': 1.0})\n"
        f"out.write(('EDGEKIT_MEASUREMENT ' + line[:-1] + ', \"x\": ' + {deep} + '}}\\n').encode())\n"
        "open(result, 'w').write('{not json')"
    )
    run, _, said = run_on_device(tmp_path, relu_model, device_python(tmp_path, garble))
    assert any("kept 1 streamed measurements" in message for message in said), said
    assert run.agent is not None and [(m.threads, m.status) for m in run.agent.measurements] == [(1, "ok")]
    assert "result-0.json is not a result edgekit reads" in (run.error or ""), run.error
    run.model_dump_json()  # the run can be stored
    reader = agent_result.ResultReader(Target(name="dev"), tmp_path, said.append)
    assert reader.streamed("EDGEKIT_START []\n") is None  # a start line of a list: AttributeError before


def test_the_live_board_shows_a_devices_control_characters_as_escapes() -> None:
    """The live progress board printed its status line through rich Text, not plain(): a device's sequence in a
    message reached the terminal."""
    from edgekit.progress import Board

    board = Board("tiny")
    board.feed("pi4: onnx-fp32\x1b[2J\x1b]0;TITLE\x07 x1 ok")
    shown = "".join(str(t) for t in board.render().renderables)
    assert "\x1b" not in shown and "\x07" not in shown and "\\x1b[2J" in shown, shown
