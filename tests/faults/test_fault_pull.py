"""Faults after the measurements: the whole `edgekit deploy` against an OpenSSH server on 127.0.0.1 of this test's
own, reached through a TCP proxy of this test's own that can slow, freeze or drop the link (no emulated device).
A Ctrl-C while the outputs are pulled, a link dropped or frozen under the pull or the cleanup, and a Ctrl-C while
connecting each end with their exit code within a bound, keep what was measured, and leave the device clean where
the link allows it (a folder left there is named)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edgekit.results import DeployResult

pytestmark = pytest.mark.integration
TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"
EDGEKIT = [str(Path(sys.executable).parent / "edgekit")]
NMEASURED = 2  # tflite-fp32 and ncnn-fp32 at 1 thread


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _sshd(tmp_path: Path, host_key: Path, authorized: Path) -> Iterator[int]:
    """An OpenSSH server on 127.0.0.1 (keys only, internal sftp), running until the block ends: its port (a port
    taken meanwhile by another process: started again on another)."""
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    for _attempt in range(3):
        port = _free_port()
        config = tmp_path / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\nAuthorizedKeysFile {authorized}\n"
            f"PidFile {tmp_path / 'sshd.pid'}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
            "StrictModes no\nSubsystem sftp internal-sftp\nLogLevel ERROR\n"
        )
        proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(tmp_path / "sshd.log")])
        ready = False
        deadline = time.monotonic() + 20
        while not ready and proc.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    ready = s.recv(64).startswith(b"SSH-")
            except OSError:
                time.sleep(0.1)
        if ready:
            break
        proc.terminate()
        proc.wait(timeout=10)
    else:
        pytest.fail(f"sshd did not start: {(tmp_path / 'sshd.log').read_text()[-1000:]}")
    try:
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class LinkProxy:
    """A TCP proxy in front of the sshd: `rate` (bytes/s, 0: as fast as it goes) slows it, `frozen` holds every
    byte (a board that hangs, new connections too), `drop()` cuts every connection and closes new ones until
    `restore()` (a cable pulled)."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.rate = 0.0
        self.frozen = False
        self.dropped = False
        self.closed = False
        self._conns: list[socket.socket] = []
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(16)
        self.port = int(self._srv.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self._srv.accept()
            except OSError:
                return
            if self.closed:
                c.close()
                return
            if self.dropped:
                c.close()
                continue
            u = socket.create_connection(("127.0.0.1", self.upstream))
            self._conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while not self.dropped:
                data = a.recv(512 if self.rate else 65536)
                while self.frozen and not self.dropped:
                    time.sleep(0.05)
                if not data or self.dropped:
                    break
                b.sendall(data)
                if self.rate:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()

    def drop(self) -> None:
        self.dropped = True
        for s in list(self._conns):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        self._conns.clear()

    def restore(self) -> None:
        self.dropped = self.frozen = False
        self.rate = 0.0

    def close(self) -> None:
        """Every connection cut and the listener shut (which wakes its accept: a listener closed under a blocked
        accept went on taking connections in its thread)."""
        self.closed = True
        self.drop()
        with contextlib.suppress(OSError):
            self._srv.shutdown(socket.SHUT_RDWR)
        self._srv.close()


@pytest.fixture()
def board(tmp_path: Path) -> Iterator[tuple[Path, Path, LinkProxy]]:
    """A target file `lhp` reaching this test's sshd through a LinkProxy: the file, the device's work dir, the
    proxy."""
    key, host_key = tmp_path / "client_ed25519", tmp_path / "host_ed25519"
    for k in (key, host_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(key.with_suffix(".pub").read_text())
    with _sshd(tmp_path, host_key, authorized) as port:
        proxy = LinkProxy(port)
        kind, blob = host_key.with_suffix(".pub").read_text().split()[:2]
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{proxy.port} {kind} {blob}\n")
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        work = tmp_path / "device"
        target = tmp_path / "lhp.yaml"
        target.write_text(
            f"name: lhp\ntransport: ssh\nhost: 127.0.0.1\nport: {proxy.port}\nuser: {user}\nkey: {key}\n"
            f"known_hosts: {known}\naccept_new: false\nconnect_timeout: 3\nio_timeout: 3\nwork_dir: {work}\n"
            f"python: {sys.executable}\nruntimes: [ai_edge_litert, ncnn]\n"
        )
        try:
            yield target, work, proxy
        finally:
            proxy.close()


def deploy_with(
    tmp_path: Path,
    target: Path,
    on_line: Callable[[str, subprocess.Popen[str]], None],
    *extra: str,
    recipe: Path = TINY,
) -> tuple[int, str, float, DeployResult | None]:
    """`edgekit deploy` of the tiny recipe (or `recipe`) to `target` (no host), `on_line` called with each line it
    says as it says it; its exit code, everything it said, when it exited (time.monotonic()), its --json."""
    out = tmp_path / "run.json"
    args = [
        *EDGEKIT,
        "deploy",
        str(recipe),
        "--target",
        str(target),
        "--format",
        "tflite-fp32",
        "--format",
        "ncnn-fp32",
        "--no-host",
        "--threads",
        "1",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--samples",
        "2",
        "--json",
        str(out),
        "--store",
        str(tmp_path / "store.sqlite"),
        *extra,
    ]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env={**os.environ, "COLUMNS": "200"},
    )
    said: list[str] = []
    timer = threading.Timer(90, proc.kill)  # a hang fails the test, never the session
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            said.append(line)
            on_line(line, proc)
        proc.wait()
    finally:
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    text = "".join(said)
    result = DeployResult.model_validate_json(out.read_text()) if out.is_file() else None
    return proc.returncode, text, time.monotonic(), result


class At:
    """Calls `act` once, on the first line holding `when` (after the slow-down: the proxy slowed to `rate` from
    the line `lhp: run done`, so the pull and the cleanup take long enough to be faulted)."""

    def __init__(
        self, proxy: LinkProxy, when: str, act: Callable[[subprocess.Popen[str]], None], rate: float
    ):
        self.proxy, self.when, self.act, self.rate = proxy, when, act, rate
        self.at: float | None = None

    def __call__(self, line: str, proc: subprocess.Popen[str]) -> None:
        if "lhp: run done" in line:
            self.proxy.rate = self.rate
        if self.at is None and self.when in line:
            self.at = time.monotonic()
            self.act(proc)


def leftovers(work: Path) -> list[str]:
    runs = work / "runs"
    return sorted(p.name for p in runs.iterdir()) if runs.is_dir() else []


def pulled(result: DeployResult) -> list[Path]:
    (run,) = result.runs
    assert run.agent is not None and run.result_dir
    return [Path(run.result_dir) / m.outputs_file for m in run.agent.measurements if m.outputs_file]


# -- 3: Ctrl-C or SIGTERM while the outputs are pulled -------------------------------------------------------------
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_during_the_pull_still_removes_the_run_folder(board, tmp_path: Path, sig: int) -> None:
    """The interrupt came while the outputs were being pulled: the pull finished, then the removal of the run
    folder was stopped at once ('rm -rf ... stopped (Ctrl-C or SIGTERM)', FAILED cleanup) and the folder stayed,
    though the README promises it is removed while the link is whole."""
    target, work, proxy = board
    at = At(proxy, "lhp: pull ...", lambda p: p.send_signal(sig), rate=1500)
    code, said, end, result = deploy_with(tmp_path, target, at)
    seconds = end - (at.at or 0)
    assert code == 130, said[-3000:]
    assert seconds < 40, seconds
    assert "FAILED cleanup" not in said and "stopped (Ctrl-C" not in said, said[-3000:]
    assert "lhp: cleanup done" in said, said[-3000:]
    assert leftovers(work) == [], said[-3000:]
    assert result is not None
    (run,) = result.runs
    assert run.interrupted and run.agent is not None
    assert all(m.status == "ok" for m in run.agent.measurements)
    files = pulled(result)
    assert len(files) == NMEASURED and all(f.is_file() for f in files), said[-3000:]


# -- 4: a link dropped or frozen under the pull -------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["drop", "freeze"])
def test_a_link_lost_during_the_pull_reconnects_and_pulls_the_outputs(
    board, tmp_path: Path, fault: str
) -> None:
    """A link dropped (back a second later) or frozen (back four seconds later) under the outputs' download: the
    pull failed at once with no reconnect, the outputs were never fetched (gates not judged on the device) and
    the run folder was left on the device without a word."""
    target, work, proxy = board

    def cut(_proc: subprocess.Popen[str]) -> None:
        if fault == "drop":
            proxy.drop()
            threading.Timer(1.0, proxy.restore).start()
        else:
            proxy.frozen = True
            threading.Timer(4.0, proxy.restore).start()

    at = At(proxy, "lhp: pull ...", cut, rate=1500)
    code, said, end, result = deploy_with(tmp_path, target, at)
    seconds = end - (at.at or 0)
    assert code == 0, said[-3000:]
    assert seconds < 40, seconds
    lost = "ConnectionLost" if fault == "drop" else "DeviceTimeout"
    assert f"lhp: reconnected after {lost}" in said, said[-3000:]
    assert "FAILED" not in said and "nothing ran on this target" not in said, said[-3000:]
    assert result is not None and result.ok
    files = pulled(result)
    assert len(files) == NMEASURED and all(f.is_file() for f in files), said[-3000:]
    assert leftovers(work) == [], said[-3000:]


def test_a_link_that_never_comes_back_during_the_pull_is_named_with_the_folder_left(
    board, tmp_path: Path
) -> None:
    """The device cannot be reached again: the pull fails naming the error's class and the folder left on the
    device; the route line does not claim nothing ran (two measurements were kept)."""
    target, work, proxy = board
    at = At(proxy, "lhp: pull ...", lambda _p: proxy.drop(), rate=1500)
    code, said, end, result = deploy_with(tmp_path, target, at)
    seconds = end - (at.at or 0)
    assert code == 1, said[-3000:]
    assert seconds < 40, seconds
    assert "FAILED pull: ConnectionLost: " in said, said[-3000:]
    assert "is left on it" in said and "older than a day at a later connect" in said, said[-3000:]
    assert "nothing ran on this target" not in said, said[-3000:]
    assert result is not None
    (run,) = result.runs
    assert run.agent is not None and all(m.status == "ok" for m in run.agent.measurements)
    assert len(leftovers(work)) == 1


# -- 10: a link frozen only during the cleanup ---------------------------------------------------------------------
def test_a_cleanup_the_frozen_link_stops_is_a_warning_not_a_failed_run(board, tmp_path: Path) -> None:
    """Everything was measured and fetched; the link froze (for good) while the run folder was removed: the whole
    target failed (exit 1). It is a warning naming the folder left on the device."""
    target, _work, proxy = board

    def freeze(_proc: subprocess.Popen[str]) -> None:
        proxy.frozen = True

    at = At(proxy, "lhp: cleanup ...", freeze, rate=1500)
    code, said, end, result = deploy_with(tmp_path, target, at)
    seconds = end - (at.at or 0)
    assert code == 0, said[-3000:]
    assert seconds < 40, seconds
    assert "FAILED" not in said, said[-3000:]
    assert "lhp: warning: cleanup: runs/" in said and "left on the device (DeviceTimeout" in said, said[
        -3000:
    ]
    assert "older than a day at a later connect" in said
    assert result is not None and result.ok
    files = pulled(result)
    assert len(files) == NMEASURED and all(f.is_file() for f in files)


# -- 6: one Ctrl-C while connecting ---------------------------------------------------------------------------------
def test_one_ctrl_c_while_connecting_exits_130_at_once(tmp_path: Path) -> None:
    """A port that accepts and never greets, connect_timeout 120 s: one Ctrl-C said 'interrupted' at once, but
    edgekit exited 61 s later (the deploy waited a minute for the connect); a second Ctrl-C was needed."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(silent.accept()[0]), daemon=True).start()
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    target = tmp_path / "lhp.yaml"
    target.write_text(
        f"name: lhp\ntransport: ssh\nhost: 127.0.0.1\nport: {silent.getsockname()[1]}\nuser: pi\nkey: {key}\n"
        f"known_hosts: {tmp_path / 'kh'}\nconnect_timeout: 120\nio_timeout: 3\nwork_dir: {tmp_path / 'device'}\n"
    )
    (tmp_path / "kh").write_text("")

    pressed: list[float] = []

    def press(proc: subprocess.Popen[str]) -> None:
        pressed.append(time.monotonic())
        proc.send_signal(signal.SIGINT)

    def ctrl_c(line: str, proc: subprocess.Popen[str]) -> None:
        if "lhp: connect ..." in line:
            threading.Timer(1.0, press, args=(proc,)).start()

    try:
        code, said, end, result = deploy_with(tmp_path, target, ctrl_c)
        seconds = end - pressed[0]
    finally:
        silent.close()
        for s in held:
            s.close()
    assert code == 130, said[-3000:]
    assert seconds < 15, (seconds, said[-3000:])
    assert "Traceback" not in said
    assert result is not None
    (run,) = result.runs
    assert run.interrupted and run.error and "connect" in run.error, run.error


# -- r12 #1: a link dropped while the agent runs, back within connect_timeout ---------------------------------------
MID_RUN = ("--threads", "1,2")  # two measurements in one agent: a cool-down between them (mid_run_recipe)


def mid_run_recipe(tmp_path: Path) -> Path:
    """tiny with a 30 s cool-down between measurements: the agent still runs when the 1-thread one is said, however
    fast the device (a 2-thread measurement of 1500 invocations left a few tenths of a second)."""
    text = TINY.read_text()
    assert "cooldown_s: 0}" in text
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(text.replace("cooldown_s: 0}", "cooldown_s: 30}"))
    return recipe


@pytest.mark.parametrize("back", [True, False])
def test_a_link_dropped_mid_run_reconnects_within_connect_timeout_and_pulls(
    board, tmp_path: Path, back: bool
) -> None:
    """The link dropped while the agent ran and came back 1.5 s later (connect_timeout 3 s): edgekit tried one
    reconnect at once, which the dropped link refused, then skipped the pull and the cleanup without a word:
    result-0.json and the measured outputs stayed on the device, no gate was judged. It now tries again until
    connect_timeout has passed, fetches the result and outputs and removes the folder. A link that does not come
    back fails the pull naming the folder left on the device and what it holds."""
    target, work, proxy = board

    def cut(_proc: subprocess.Popen[str]) -> None:
        proxy.drop()
        if back:
            threading.Timer(1.5, proxy.restore).start()

    at = At(proxy, "lhp: tflite-fp32 x1 ok", cut, rate=0)
    code, said, end, result = deploy_with(tmp_path, target, at, *MID_RUN, recipe=mid_run_recipe(tmp_path))
    seconds = end - (at.at or 0)
    assert at.at is not None, said[-3000:]
    assert code == 1, said[-3000:]  # the 2-thread measurement and ncnn-fp32 were not run
    assert seconds < 40, seconds
    assert "FAILED run: ConnectionLost" in said, said[-3000:]
    assert result is not None
    (run,) = result.runs
    assert run.agent is not None
    measured = {(m.artifact, m.threads): m for m in run.agent.measurements}
    assert measured[("tflite-fp32", 1)].status == "ok", said[-3000:]
    if back:
        assert "lhp: reconnected after ConnectionLost" in said, said[-3000:]
        files = pulled(result)
        assert files and all(f.is_file() for f in files), said[-3000:]
        assert any(c.artifact == "tflite-fp32" for c in run.comparisons), run.comparisons  # the gates judged
        assert leftovers(work) == [], said[-3000:]
    else:
        assert "FAILED pull: ConnectionLost" in said, said[-3000:]
        (left,) = leftovers(work)
        assert f"runs/{left} is left on it, holding result-0.json" in said, said[-3000:]
        assert "outputs/tflite-fp32.t1.npz" in said and "older than a day" in said, said[-3000:]
