"""The SSH transport against OpenSSH servers this test starts on 127.0.0.1 (this host's shell and coreutils as the
device's), for what a real board may differ in: a python in the login's home (`~/venv/bin/python3`), no SFTP
subsystem, a first host key recorded with accept_new, a work dir holding deep folders of the user's own."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_transport_ssh import _sshd

from edgekit.errors import ConnectionLost, TransportError
from edgekit.target import Target, load_target
from edgekit.transport import open_transport


def _keys(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The client key, the host key and the authorized_keys file of a device of this test's own."""
    key, host_key = tmp_path / "client_ed25519", tmp_path / "host_ed25519"
    for k in (key, host_key):
        if not k.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(key.with_suffix(".pub").read_text())
    return key, host_key, authorized


@contextlib.contextmanager
def _device(tmp_path: Path, sshd_extra: str, **fields: str) -> Iterator[Target]:
    """A `pi4` target reaching an OpenSSH server started here with `sshd_extra` config lines; its host key known
    unless `fields` name another known_hosts file."""
    key, host_key, authorized = _keys(tmp_path)
    with _sshd(tmp_path, "quirks", host_key, authorized, sshd_extra) as port:
        kind, blob = host_key.with_suffix(".pub").read_text().split()[:2]
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        given = {
            "host": "127.0.0.1",
            "port": str(port),
            "user": user,
            "key": str(key),
            "known_hosts": str(known),
            "connect_timeout": "10",
            "work_dir": str(tmp_path / "work"),
            "python": sys.executable,
            **fields,
        }
        yield load_target("pi4", given, ssh_config=tmp_path / "none")


SFTP = "Subsystem sftp internal-sftp\n"


# -- a python in the device login's home -------------------------------------------------------------------------
def test_a_python_in_the_device_home_runs_and_hashes(tmp_path: Path) -> None:
    """`python: ~/venv/bin/python3` (a venv in the board's home, as the README describes) did not run over SSH:
    the `~` was single-quoted (`bash: ~/venv/bin/python3: No such file or directory`, exit 127), in the command
    of `run` and in the sha256 fallback alike. A leading `~/` is the device's $HOME now (the rest still quoted:
    no text of the target's is ever read by the shell)."""
    from edgekit.emu.device_info import check_target
    from edgekit.target import python_argv

    venv = Path.home() / f"edgekit-test-quirks-{os.getpid()}"  # the device is this host: its home is ours
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python3").symlink_to(sys.executable)
    marker = tmp_path / "marker"
    relative = f"~/{venv.name}/bin/python3"
    try:
        with _device(tmp_path, SFTP, python=relative) as target:
            with open_transport(target) as transport:
                home = transport.run(["sh", "-c", 'printf %s "$HOME"'], timeout=30).stdout
                assert home == str(Path.home())
                for python in (relative, f"taskset -c 0 {relative}"):
                    res = transport.run(
                        [*python_argv(python), "-c", "import sys; print(sys.executable)"], timeout=60
                    )
                    assert res.ok and res.stdout.strip() == str(venv / "bin" / "python3"), res
                local = tmp_path / "blob.bin"
                local.write_bytes(os.urandom(4096))
                put = transport.put(local, "blob.bin")
                without = "PATH=/nonexistent; " + transport._sha_cmd(put.remote)  # type: ignore[attr-defined]
                res = transport.run(["/bin/sh", "-c", without], timeout=60)  # the device python's sha256
                assert res.ok and res.stdout.strip() == put.sha256, res
                # the rest of the word is still quoted: neither a `$(...)` nor a `;` of it runs
                for hostile in (f"~/$(touch {marker})", f"~/x;touch {marker}", f"~/x' ; touch {marker}; '"):
                    transport.run([hostile, "-V"], timeout=30)
                    sha = _sha_with(transport, hostile, put.remote)
                    transport.run(["sh", "-c", f"PATH=/nonexistent; {sha}"], timeout=30)
                assert not marker.exists()
            info = check_target(target, log=lambda _m: None)  # what `edgekit targets check` runs
            assert info.raw["python"] == ".".join(map(str, sys.version_info[:3])), info.raw
    finally:
        shutil.rmtree(venv, ignore_errors=True)


def _sha_with(transport: object, python: str, path: str) -> str:
    """The device's sha256 command of `path` with `python` as the device's python."""
    files = transport._files  # type: ignore[attr-defined]
    saved = files.target
    files.target = saved.model_copy(update={"python": python})
    try:
        return str(files.sha_cmd(path))
    finally:
        files.target = saved


# -- a device whose SSH server has no SFTP -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "extra",
    ["", "Subsystem sftp /nonexistent/sftp-server\n"],
    ids=["no-subsystem", "sftp-server-missing"],
)
def test_a_device_without_sftp_is_said_as_such_not_as_a_dropped_link(tmp_path: Path, extra: str) -> None:
    """sshd without `Subsystem sftp` (or dropbear without sftp-server) refuses the subsystem: the upload failed as
    "ConnectionLost: the connection dropped during opening SFTP: Channel closed." with the hint to check the
    device's power, and the link was cut. It is a TransportError naming what to install now (exit 1), and the link
    is still there."""
    local = tmp_path / "model.bin"
    local.write_bytes(b"x" * 1000)
    with _device(tmp_path, extra) as target, open_transport(target) as transport:
        for attempt in (
            lambda: transport.put(local, "model.bin"),
            lambda: transport.get("x", tmp_path / "x"),
        ):
            with pytest.raises(TransportError) as err:
                attempt()
            assert not isinstance(err.value, ConnectionLost), err.value
            assert "offers no SFTP subsystem" in err.value.message, err.value
            assert "openssh-sftp-server" in str(err.value) and "pkg install openssh" in str(err.value)
            assert err.value.exit_code == 1
            assert transport.run(["echo", "still here"], timeout=30).stdout == "still here\n"


def test_a_link_dropping_as_sftp_opens_is_still_a_lost_connection(tmp_path: Path) -> None:
    """The other side of the above: the SSH session killed as its SFTP subsystem starts (the link drops there) is
    still ConnectionLost, with the hint to check the device."""
    local = tmp_path / "model.bin"
    local.write_bytes(b"x" * 1000)
    killer = tmp_path / "kill_session.sh"
    killer.write_text("#!/bin/sh\nkill -KILL $PPID\n")  # $PPID: the sshd process of this session
    killer.chmod(0o755)
    with _device(tmp_path, f"Subsystem sftp {killer}\n") as target, open_transport(target) as transport:
        with pytest.raises(ConnectionLost) as err:
            transport.put(local, "model.bin")
        assert "SFTP subsystem" not in str(err.value) and "opening SFTP" in str(err.value), err.value


# -- accept_new says the key it recorded --------------------------------------------------------------------------
def test_accept_new_says_the_host_key_it_records(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`accept_new: true` recorded a first-seen host key without a word (OpenSSH prints "Permanently added ...").
    A warning names the host and port, the key type, its SHA256 fingerprint as ssh-keygen prints it, and the
    file; a key already known is not said again."""
    known = tmp_path / "kh_new"
    with _device(tmp_path, SFTP, accept_new="true", known_hosts=str(known)) as target:
        keygen = subprocess.run(
            ["ssh-keygen", "-lf", str(tmp_path / "host_ed25519.pub")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        fingerprint, kind = keygen[1], keygen[-1].strip("()")
        assert fingerprint.startswith("SHA256:") and kind == "ED25519"
        name = f"[127.0.0.1]:{target.port}"
        with caplog.at_level(logging.WARNING, logger="edgekit.transport.ssh_keys"):
            with open_transport(target) as transport:
                transport.connect()
            said = [r.getMessage() for r in caplog.records if r.name == "edgekit.transport.ssh_keys"]
            assert len(said) == 1, said
            assert name in said[0] and kind in said[0] and fingerprint in said[0] and str(known) in said[0]
            assert known.read_text().split()[0] == name
            caplog.clear()
            with open_transport(target) as transport:
                transport.connect()
            assert not [r for r in caplog.records if r.name == "edgekit.transport.ssh_keys"]
        known.unlink()
        board = tmp_path / "board.yaml"  # the same device as a target file of the user's
        board.write_text(
            f"host: 127.0.0.1\nport: {target.port}\nuser: {target.user}\nkey: {target.key}\n"
            f"known_hosts: {known}\naccept_new: true\npython: {sys.executable}\nwork_dir: {tmp_path / 'work'}\n"
        )
        cli = subprocess.run(  # the CLI shows it on stderr, as its other warnings
            [sys.executable, "-m", "edgekit", "targets", "check", str(board)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "EDGEKIT_SSH_CONFIG": str(tmp_path / "none")},
        )
        assert cli.returncode == 0, cli.stderr
        assert fingerprint in cli.stderr and name in cli.stderr and fingerprint not in cli.stdout, cli


# -- the prune of partial uploads stays where edgekit writes them -------------------------------------------------
def test_the_partial_upload_prune_walks_only_the_depths_edgekit_writes(tmp_path: Path) -> None:
    """The prune of partial uploads at connect (`find . -name '.*.edgekit-*'`) had no depth bound: with work_dir
    `~` it walked the whole home on every connect. edgekit uploads to the work dir itself (agent.py), one folder
    down (inputs/, wheels/) and two (artifacts/KEY/, runs/RUN/): deeper, nothing is edgekit's to touch."""
    work = tmp_path / "work"
    old = time.time() - 3 * 3600
    places = {
        ".agent.py.edgekit-0a0a0a0a": True,
        "inputs/.x.npy.edgekit-0b0b0b0b": True,
        "artifacts/0123456789abcdef/.m.tflite.edgekit-0c0c0c0c": True,
        "runs/20261206-101010-abcdef-pi4/.request-0.json.edgekit-0d0d0d0d": True,
        "datasets/coco/val/.img.jpg.edgekit-0e0e0e0e": False,  # the user's own folder, deeper
        "datasets/a/b/c/d/.y.edgekit-0f0f0f0f": False,
    }
    for rel in places:
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
        os.utime(path, (old, old))
    with _device(tmp_path, SFTP) as target, open_transport(target) as transport:
        transport.connect()  # the prune runs here
    left = {rel: (work / rel).exists() for rel in places}
    assert left == {rel: not pruned for rel, pruned in places.items()}, left
