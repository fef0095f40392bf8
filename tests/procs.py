"""Helpers for tests that run the edgekit CLI as a child process and interrupt it as a terminal would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

EDGEKIT = str(Path(sys.executable).parent / "edgekit")


def run(
    *args: str,
    cwd: Path | None = None,
    home: Path | None = None,
    columns: int | None = None,
    timeout: float = 600,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """`edgekit ARGS` in a child process, as a user runs it: EDGEKIT_HOME `home` (else the session's temporary
    home, tests/conftest.py), no store named by an EDGEKIT_STORE of this process (one in `env` is kept), COLUMNS
    `columns` where given (tables wide enough not to wrap), `env` on top of this process's environment."""
    environ = {**os.environ}
    environ.pop("EDGEKIT_STORE", None)
    if home is not None:
        environ["EDGEKIT_HOME"] = str(home)
    if columns is not None:
        environ["COLUMNS"] = str(columns)
    environ.update(env)
    return subprocess.run(
        [EDGEKIT, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=environ
    )


def named(out: subprocess.CompletedProcess[str], code: int = 2) -> str:
    """stderr of a run that ended in a named error with exit `code` (no traceback, no 'this is a bug')."""
    assert out.returncode == code, (out.returncode, out.stdout[-800:], out.stderr[-2000:])
    assert "this is a bug" not in out.stderr and "Traceback" not in out.stderr, out.stderr
    return out.stderr


def ctrl_c_when(
    proc: subprocess.Popen[str],
    ready: Callable[[], bool],
    *,
    settle: float = 0.0,
    timeout: float = 120,
    sig: int = signal.SIGINT,
    times: int = 1,
) -> tuple[str, str, float]:
    """Once `ready()` (which waits as long as it needs) says so, SIGINT to `proc` (Ctrl-C; or `sig`), then its
    stdout, stderr and the seconds it took to exit. The process is killed if anything fails or it outlives
    `timeout`."""
    try:
        assert ready(), proc.communicate(timeout=60)
        time.sleep(settle)
        start = time.monotonic()
        for n in range(times):  # `timeout` signals the process, then its group; people press Ctrl-C twice
            if n:
                time.sleep(0.05)
            proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=timeout)
        return stdout, stderr, time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def board_file(tmp_path: Path, extra: str = "", port: int = 1) -> Path:
    """An SSH target file `my-board` on 127.0.0.1:`port` (port 1: nothing listens there), its own key and
    known_hosts in tmp_path."""
    key = tmp_path / "key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    path = tmp_path / "board.yaml"
    path.write_text(
        f"name: my-board\ntransport: ssh\nhost: 127.0.0.1\nport: {port}\nuser: pi\nkey: {key}\n"
        f"known_hosts: {tmp_path / 'kh'}\nconnect_timeout: 3\n{extra}"
    )
    return path


def deploy_through_proxy(
    tmp_path: Path, proxy_command: str
) -> tuple[subprocess.CompletedProcess[str], str, list[str]]:
    """`edgekit deploy recipes/tiny.yaml -f onnx-fp32` to board_file's target through `proxy_command` (which
    fails): the run, the --json file's text and every row of every table of the --store SQLite file, as text."""
    import sqlite3

    recipe = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
    store, json_path = tmp_path / "sec.db", tmp_path / "sec.json"
    out = run(
        "deploy",
        str(recipe),
        "-f",
        "onnx-fp32",
        "-t",
        str(board_file(tmp_path)),
        "--store",
        str(store),
        "--json",
        str(json_path),
        "--set",
        f"proxy_command={proxy_command}",
        cwd=tmp_path,
        timeout=300,
    )
    assert out.returncode == 1 and "my-board: FAILED connect" in out.stdout + out.stderr, out.stderr[-2000:]
    with sqlite3.connect(store) as db:
        rows = [
            str(r)
            for (table,) in db.execute("select name from sqlite_master where type='table'")
            for r in db.execute(f'select * from "{table}"')
        ]
    return out, json_path.read_text(), rows


def keras_tflite(script: str, path: Path) -> Path:
    """Run a Keras `script` (it writes a .tflite to sys.argv[1]) in a child Python, quiet and on the CPU: `path`."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(
        [sys.executable, "-c", script, str(path)], check=True, capture_output=True, env=env, timeout=300
    )
    return path


@contextmanager
def mount_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` ("3m") mounted on `folder` (made here) for the block, unmounted after; the test is
    skipped where mounting is not allowed (not root, a container without the capability)."""
    import pytest

    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill_disk(folder: Path) -> Path:
    """Write zeros into `folder` until its disk is full; the filler file (remove it to free the disk)."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * (1 << 20))
                f.flush()
        except OSError:
            pass
    return filler
