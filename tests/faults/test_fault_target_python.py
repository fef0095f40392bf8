"""A target's `python` that is not there, or never ends, is named as the target's field, with what to set: a
python that does not exist was an AgentError about a result file that "could not be downloaded"; one that hangs
was a RemoteTimeout quoting the whole 1.8 KB probe script, with no hint. Through an OpenSSH server on this host
(local_sshd) and the local transport."""

from __future__ import annotations

from pathlib import Path

from onnx_graphs import gelu_classifier
from test_transport_ssh import local_sshd  # noqa: F401  (a fixture)


def _board(target, tmp_path: Path, python: str) -> Path:  # type: ignore[no-untyped-def]
    """A target file reaching local_sshd's server, running `python`."""
    t = target
    board = tmp_path / "board.yaml"
    board.write_text(
        f"name: board\nhost: 127.0.0.1\nport: {t.port}\nuser: {t.user}\nkey: {t.key}\n"
        f"known_hosts: {t.known_hosts}\npython: {python}\nwork_dir: {tmp_path / 'work'}\nruntimes: [onnxruntime]\n"
    )
    return board


def _home(tmp_path: Path) -> dict[str, str]:
    return {"EDGEKIT_HOME": str(tmp_path / "home"), "HOME": str(tmp_path)}  # HOME: no ~/.ssh/config


def test_bench_names_a_python_the_device_does_not_have(local_sshd, edgekit_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """`python: python3.99`: 'AgentError: agent exited with status 127: command not found (before measuring
    anything; result-0.json could not be downloaded ...)', hint to run it by hand; now the target's field."""
    model = gelu_classifier(tmp_path / "m.onnx")
    board = _board(local_sshd, tmp_path, "python3.99")
    out = edgekit_cli("bench", str(model), "--target", str(board), env=_home(tmp_path), timeout=300)
    said = " ".join((out.stdout + out.stderr).split())
    assert out.code != 0 and "PythonNotFound: target board, field `python`:" in said, (out.code, said)
    assert "the python command `python3.99` did not start on the device (exit 127:" in said, said
    assert (
        "command not found" in said and "--set python=python3" in said and f"`python:` in {board}" in said
    ), said
    assert "could not be downloaded" not in said and "result-0.json" not in said, said


def test_bench_names_a_runtime_python_that_is_not_there(edgekit_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same on the local transport, for a runtime's own python: its `runtime_python` entry is named."""
    model = gelu_classifier(tmp_path / "m.onnx")
    target = tmp_path / "mine.yaml"
    target.write_text(
        f"name: mine\ntransport: local\nwork_dir: {tmp_path / 'work'}\nruntimes: [onnxruntime]\n"
        f"runtime_python: {{onnxruntime: {tmp_path / 'no' / 'python3'}}}\n"
    )
    out = edgekit_cli("bench", str(model), "--target", str(target), env=_home(tmp_path), timeout=300)
    said = " ".join((out.stdout + out.stderr).split())
    assert "PythonNotFound: target mine, field `runtime_python.onnxruntime`:" in said, (out.code, said)
    assert f"the python command `{tmp_path / 'no' / 'python3'}` did not start" in said, said
    assert "could not be downloaded" not in said, said
