"""A slow but live link is not a frozen device: uploads and downloads through a TCP proxy that throttles (or
freezes) the link to an OpenSSH server on this host (no emulated device). The transfer's deadline is a limit on
silence (nothing acknowledged for io_timeout), not on its whole: it was size / 100 kB/s + io_timeout, so any upload
slower than ~100 kB/s was reported as a frozen device ("no answer within 5.98432 s to upload of inputs.npy")."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_transport_ssh import _free_port, local_sshd  # noqa: F401  (a fixture)

from edgekit.errors import DeviceTimeout
from edgekit.transport import open_transport


class LinkProxy:
    """A TCP proxy on 127.0.0.1 in front of `port`: `rate` bytes/s each way (0: unthrottled), `frozen` holds
    every byte (a device that stopped answering, its link still up)."""

    def __init__(self, port: int) -> None:
        self.rate = 0.0
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self.port = _free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._target = port
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._target))
            self._socks += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while not self.closed.is_set():
                data = a.recv(512 if self.rate else 65536)
                if not data:
                    break
                while self.frozen.is_set() and not self.closed.is_set():
                    time.sleep(0.05)
                b.sendall(data)
                if self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.closed.set()
        self._server.close()
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture()
def proxied(local_sshd) -> Iterator[tuple[object, LinkProxy]]:  # type: ignore[no-untyped-def]  # noqa: F811
    """The local sshd's target reached through a LinkProxy, io_timeout 4 s."""
    proxy = LinkProxy(local_sshd.port)
    known = Path(local_sshd.known_hosts)
    line = known.read_text().splitlines()[0]  # the sshd's key, known under the proxy's port too
    known.write_text(f"{line}\n[127.0.0.1]:{proxy.port} {line.split(' ', 1)[1]}\n")
    target = local_sshd.model_copy(update={"port": proxy.port, "io_timeout": 4.0})
    try:
        yield target, proxy
    finally:
        proxy.close()


def test_a_slow_live_upload_is_not_a_frozen_device(proxied, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """256 kB at 32 kB/s (8 s; a 32 kB SFTP write acknowledged every second) with io_timeout 4: the old deadline
    (2.56 s + io_timeout) cut it at 6.6 s as a frozen device. (96 kB at 16 kB/s acknowledged every 2 s, half the
    silence allowed: a loaded CI machine once stalled the download twin past it.)"""
    target, proxy = proxied
    local = tmp_path / "inputs.npy"
    local.write_bytes(os.urandom(256_000))
    with open_transport(target) as transport:
        transport.connect()
        proxy.rate = 32_000
        start = time.monotonic()
        put = transport.put(local, "slow/inputs.npy")
        took = time.monotonic() - start
    assert not put.skipped and Path(put.remote).read_bytes() == local.read_bytes()
    assert took > 7, took  # it was slow: past the old deadline


def test_a_slow_live_download_is_not_a_frozen_device(proxied, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The same for a download: the SFTP channel's own timeout (io_timeout) cut a read slower than it. 256 kB at
    32 kB/s, a 32 kB read answered every second: at 16 kB/s (every 2 s, half the 4 s allowed) a loaded CI machine
    once went 4 s without one ('33 kB of 96 kB received')."""
    target, proxy = proxied
    remote = Path(target.work_dir) / "out.npz"
    remote.parent.mkdir(parents=True, exist_ok=True)
    remote.write_bytes(os.urandom(256_000))
    with open_transport(target) as transport:
        transport.connect()
        proxy.rate = 32_000
        start = time.monotonic()
        got = transport.get("out.npz", tmp_path / "got.npz")
        took = time.monotonic() - start
    assert got.read_bytes() == remote.read_bytes()
    assert took > 4 + 1, took  # longer than io_timeout in all: no whole-transfer deadline of that size cut it


def test_a_frozen_link_mid_upload_is_cut_after_io_timeout_of_silence(proxied, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A device that stops answering mid-upload is still a DeviceTimeout, within about io_timeout of silence,
    the seconds said whole and how much was sent."""
    target, proxy = proxied
    local = tmp_path / "model.tflite"
    local.write_bytes(os.urandom(3_000_000))
    with open_transport(target) as transport:
        transport.connect()
        proxy.rate = 200_000
        threading.Timer(1.0, proxy.frozen.set).start()
        start = time.monotonic()
        with pytest.raises(DeviceTimeout) as info:
            transport.put(local, "frozen/model.tflite")
        took = time.monotonic() - start
    message = str(info.value)
    assert 4 < took < 12, took
    assert "nothing acknowledged for 4 s during upload of model.tflite" in message, message
    assert " kB of 3000 kB sent" in message, message
