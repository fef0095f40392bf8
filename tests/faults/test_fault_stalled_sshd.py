"""An SSH server that greets and then stalls (an sshd stuck after accept, a device out of memory): the key exchange
is bounded by connect_timeout and said as what happened. paramiko's own handshake limit (15 s) applied whatever the
target's connect_timeout: with connect_timeout=5 it was "sent no SSH banner" (it did send one), with 40 it failed at
15 s as "the SSH server closed the connection during the key exchange" (it did not close)."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgekit.errors import ConnectError
from edgekit.target import load_target
from edgekit.transport import open_transport


@pytest.fixture()
def greets_then_stalls() -> Iterator[int]:
    """A port on 127.0.0.1 whose server sends an SSH greeting and then nothing, holding the connection."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.sendall(b"SSH-2.0-OpenSSH_9.2p1\r\n")
            held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        for conn in held:
            conn.close()


@pytest.mark.parametrize("connect_timeout", [3, 20])
def test_a_server_that_greets_then_stalls_is_said_so_within_connect_timeout(
    greets_then_stalls: int, tmp_path: Path, connect_timeout: int
) -> None:
    key = tmp_path / "client_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    target = load_target(
        "pi4",
        {
            "host": "127.0.0.1",
            "port": str(greets_then_stalls),
            "connect_timeout": str(connect_timeout),
            "accept_new": "true",
            "key": str(key),
            "known_hosts": str(tmp_path / "known_hosts"),
            "work_dir": str(tmp_path / "w"),
        },
        ssh_config=tmp_path / "none",
    )
    start = time.monotonic()
    with pytest.raises(ConnectError) as info, open_transport(target) as transport:
        transport.connect()
    took = time.monotonic() - start
    message, hint = str(info.value), info.value.hint or ""
    assert connect_timeout - 0.5 < took < connect_timeout + 4, took  # its own bound, not paramiko's 15 s
    assert "greeted (SSH-2.0-OpenSSH_9.2p1)" in message, message
    assert f"did not finish the key exchange within {connect_timeout} s (connect_timeout)" in message, message
    assert "banner" not in message and "closed" not in message, message
    assert "connect_timeout" in hint and "sshd" in hint, hint
