"""A target's `python` that is not there, or never ends, is named as the target's field, with what to set: a
python that does not exist was an AgentError about a result file that "could not be downloaded"; one that hangs
was a RemoteTimeout quoting the whole 1.8 KB probe script, with no hint. Through an OpenSSH server on this host
(local_sshd) and the local transport."""

from __future__ import annotations

from pathlib import Path

import pytest
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
    assert out.code == 2 and "PythonNotFound: target board, field `python`:" in said, (
        out.code,
        said,
    )  # input
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
    assert out.code == 2 and "PythonNotFound: target mine, field `runtime_python.onnxruntime`:" in said, (
        out.code,
        said,
    )
    assert f"the python command `{tmp_path / 'no' / 'python3'}` did not start" in said, said
    assert "could not be downloaded" not in said, said


def test_a_python_that_hangs_is_named_briefly_with_its_field(local_sshd, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """`python:` a script that never ends: `targets check` printed RemoteTimeout followed by the whole 1.8 KB
    probe script, no hint; `formats --target` called the device "not probed (... unreachable ...)", exit 0. Now
    a short message naming the field and what to set; formats says the same error."""
    from edgekit.cli.formats import formats_cmd
    from edgekit.emu import device_info
    from edgekit.emu.device_info import check_target
    from edgekit.errors import RemoteTimeout

    hang = tmp_path / "hang.sh"
    hang.write_text("#!/bin/sh\nsleep 600\n")
    hang.chmod(0o755)
    monkeypatch.setattr(device_info, "PROBE_S", 3.0)  # 120 s on a device
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh/config
    with pytest.raises(RemoteTimeout) as info:
        check_target(local_sshd.model_copy(update={"python": str(hang)}))
    said = str(info.value)
    assert "import json" not in said and len(said) < 600, said
    assert f"`{hang}` did not answer edgekit's probe" in said and "within 3 s and was stopped" in said, said
    assert "field `python`" in (info.value.where or ""), info.value.where
    assert "--set python=python3" in (info.value.hint or ""), info.value.hint
    board = _board(local_sshd, tmp_path, str(hang))
    with pytest.raises(RemoteTimeout) as info:
        formats_cmd(target=str(board), set_=None)
    assert f"`{hang}` did not answer edgekit's probe" in str(info.value), str(info.value)


def test_a_timeout_quotes_a_long_command_by_its_first_line(tmp_path: Path) -> None:
    """Any command's timeout (here the local transport's) quotes its first line, at most 100 characters."""
    from edgekit.errors import RemoteTimeout
    from edgekit.target import Target, TransportKind
    from edgekit.transport.local import LocalTransport

    transport = LocalTransport(Target(name="t", transport=TransportKind.LOCAL, work_dir=str(tmp_path / "w")))
    script = "sleep 30\n" + "# a long script\n" * 100
    with pytest.raises(RemoteTimeout) as info:
        transport.run(["sh", "-c", script], timeout=1)
    said = str(info.value)
    assert "`sh -c 'sleep 30... (" in said and "a long script" not in said and len(said) < 200, said


def test_deploy_exits_2_only_when_bad_input_is_all_that_failed(edgekit_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """deploy exits 2 when a target failed on its input (PythonNotFound) and nothing else failed, whether the host
    was measured or skipped (a python that fails at once made the host's skip an AgentError: exit 1, a slower one
    exit 2: a race); a missed gate elsewhere in the same deploy is a failed run, exit 1 (it was 2)."""
    recipes = Path(__file__).resolve().parents[2] / "recipes"
    tiny = (recipes / "tiny.yaml").read_text()
    base = tmp_path / "tiny.yaml"
    formats = next(line for line in tiny.splitlines() if line.startswith("formats:"))
    base.write_text(tiny.replace(formats, "formats: [ncnn-fp32]"))
    strict = tmp_path / "strict.yaml"  # ncnn-int8 cannot meet a cosine of 1 - 1e-8: its gate is missed
    strict.write_text(tiny.replace("int8: {min_cosine: 0.95}", "int8: {min_cosine: 0.99999999}"))
    slow = tmp_path / "slowpy"
    slow.write_text("#!/bin/sh\nsleep 4\necho 'slowpy: no such python' >&2\nexit 127\n")
    slow.chmod(0o755)
    mine = tmp_path / "mine.yaml"
    env = _home(tmp_path)

    def deploy(recipe: Path, python: Path, *formats: str) -> tuple[int, str]:
        mine.write_text(f"name: mine\ntransport: local\nwork_dir: {tmp_path / 'work'}\npython: {python}\n")
        args = ["deploy", str(recipe), "--target", str(mine), "--no-store"]
        for fmt in formats:
            args += ["-f", fmt]
        out = edgekit_cli(*args, env=env, timeout=600)
        return out.code, " ".join((out.stdout + out.stderr).split())

    for python in (tmp_path / "no" / "python3", slow):  # fails at once; fails after the host has measured
        code, said = deploy(base, python)
        assert code == 2 and "PythonNotFound: target mine, field `python`" in said, (
            python,
            code,
            said[-3000:],
        )
    code, said = deploy(strict, slow, "ncnn-fp32", "ncnn-int8")
    assert code == 1 and "PythonNotFound" in said and "missed" in said, (code, said[-3000:])
