"""The SSH transport against real OpenSSH servers (pi4-emu's, and one the test starts on this host): host keys,
quoting, env, cwd, errors, uploads, keys."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from edgekit.errors import ConnectError, HostKeyError, TargetError
from edgekit.target import load_target
from edgekit.transport import open_transport


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _other_key_line(tmp_path: Path, port: int) -> str:
    key = tmp_path / "other_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    kind, blob = key.with_suffix(".pub").read_text().split()[:2]
    name = "127.0.0.1" if port == 22 else f"[127.0.0.1]:{port}"  # OpenSSH's naming of a host's keys
    return f"{name} {kind} {blob}\n"


PIPE = """import os, socket, sys, threading
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    while data := os.read(0, 65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
threading.Thread(target=up, daemon=True).start()
while data := sock.recv(65536):
    os.write(1, data)
"""


def _piped_fields(pi4_emu, tmp_path: Path) -> dict[str, str]:
    """Target fields reaching pi4-emu's sshd as `127.0.0.1` port 22 through a ProxyCommand (a tiny stdin/stdout
    to TCP pipe), so the device's key is looked up as a port-22 host's."""
    pipe = tmp_path / "pipe.py"
    pipe.write_text(PIPE)
    fields = {
        "host": "127.0.0.1",
        "port": "22",
        "user": pi4_emu.user,
        "key": str(pi4_emu.key),
        "connect_timeout": "10",
        "proxy_command": f"{sys.executable} {pipe} 127.0.0.1 {pi4_emu.port}",
    }
    return fields


def test_unreachable_host_names_host_and_port(tmp_path: Path) -> None:
    port = _free_port()  # nothing listens there
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "nokey")], check=True)
    target = load_target(
        "pi4",
        {
            "host": "127.0.0.1",
            "port": str(port),
            "connect_timeout": "3",
            "known_hosts": str(tmp_path / "kh"),
            "key": str(tmp_path / "nokey"),
        },
        ssh_config=tmp_path / "none",
    )
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
        open_transport(target).connect()


@pytest.mark.integration
def test_changed_host_key_is_refused_and_nothing_uploaded(
    pi4_emu, pi4_transport, tmp_path, small_file, scratch_name
) -> None:
    wrong = tmp_path / "known_hosts"
    wrong.write_text(line := _other_key_line(tmp_path, pi4_emu.port))
    bad = pi4_emu.model_copy(update={"known_hosts": wrong})
    with pytest.raises(HostKeyError, match="CHANGED") as info, open_transport(bad) as transport:
        transport.put(small_file, f"{scratch_name}/never.py")
    assert pi4_transport.sha256(f"{scratch_name}/never.py") is None
    bad_accepting = bad.model_copy(update={"accept_new": True})  # accept_new never accepts a *changed* key
    with pytest.raises(HostKeyError):
        open_transport(bad_accepting).connect()
    _run_the_hint_and_expect_no_key_left(str(info.value), wrong, line)


def _run_the_hint_and_expect_no_key_left(error: str, known_hosts: Path, line: str) -> None:
    """The `ssh-keygen -R` command of a "host key CHANGED" hint, run: it must remove the recorded `line`."""
    command = re.search(r"(ssh-keygen -R .+?), then", " ".join(error.split()))
    assert command and line in known_hosts.read_text(), error
    subprocess.run(shlex.split(command.group(1)), check=True, capture_output=True)
    assert line not in known_hosts.read_text(), (command.group(1), known_hosts.read_text())


@pytest.mark.integration
def test_the_changed_key_hint_of_a_port_22_host_removes_its_key(pi4_emu, tmp_path: Path) -> None:
    """OpenSSH files a port-22 host's keys under the bare host, but the hint said `ssh-keygen -R
    '[127.0.0.1]:22'`, which removes nothing. pi4-emu is reached as 127.0.0.1 port 22 through a ProxyCommand."""
    wrong = tmp_path / "known_hosts"
    wrong.write_text(line := _other_key_line(tmp_path, 22))
    fields = {**_piped_fields(pi4_emu, tmp_path), "known_hosts": str(wrong)}
    target = load_target("pi4", fields, ssh_config=tmp_path / "none")
    with pytest.raises(HostKeyError, match="CHANGED") as info, open_transport(target) as transport:
        transport.connect()
    assert "ssh-keygen -R 127.0.0.1 -f" in str(info.value)
    _run_the_hint_and_expect_no_key_left(str(info.value), wrong, line)


@pytest.mark.integration
def test_unknown_host_key_is_refused_unless_accept_new(pi4_emu, tmp_path) -> None:
    empty = tmp_path / "kh"
    unknown = pi4_emu.model_copy(update={"known_hosts": empty})
    with pytest.raises(HostKeyError, match="unknown host key") as info:
        open_transport(unknown).connect()
    assert "ssh-keyscan" in str(info.value) and "accept_new=true" in str(info.value)
    # the form for a command without --set (nightly), named for this target, is one load_target reads
    var = re.search(r"(EDGEKIT_TARGET_\w+_ACCEPT_NEW)=true", str(info.value))
    assert var and load_target("pi4-emu", env={var.group(1): "true"}).accept_new
    assert not empty.exists()
    accepting = unknown.model_copy(update={"accept_new": True})
    with open_transport(accepting) as transport:
        assert transport.run(["true"], timeout=30).ok
    recorded = empty.read_text()
    assert recorded.startswith(f"[127.0.0.1]:{pi4_emu.port} ssh-ed25519 ")
    assert recorded.split()[2] == pi4_emu.known_hosts.read_text().split()[2]  # the pinned key
    with open_transport(unknown) as transport:  # now known: accepted without the opt-in
        assert transport.run(["true"], timeout=30).ok


@pytest.mark.integration
def test_known_hosts_marker_lines_are_read_as_openssh_reads_them(pi4_emu, tmp_path: Path) -> None:
    """A valid OpenSSH known_hosts with a `@cert-authority` or `@revoked` line was refused whole ("malformed
    line"): paramiko cannot read marker lines. Now `@cert-authority` lines are skipped, a `@revoked` key is never
    trusted (not even with accept_new, which then records nothing), and accept_new appends to the file, its marker
    lines and comments kept."""
    device = pi4_emu.known_hosts.read_text()
    name, kind, blob = device.split()[:3]
    other_kind, other_blob = _other_key_line(tmp_path, 22).split()[1:3]
    markers = (
        "# corporate file\n"
        f"@cert-authority *.corp.example,{name} {other_kind} {other_blob} ca@corp\n"
        f"@revoked\tbuild-*.corp.example {other_kind} {other_blob}\n"
    )
    known = tmp_path / "known_hosts"
    known.write_text(markers + device)
    with open_transport(pi4_emu.model_copy(update={"known_hosts": known})) as transport:
        assert transport.run(["true"], timeout=30).ok

    fresh = tmp_path / "fresh_known_hosts"
    fresh.write_text(markers.rstrip("\n"))  # and no newline at its end: the record must not join that line
    with open_transport(pi4_emu.model_copy(update={"known_hosts": fresh, "accept_new": True})) as transport:
        assert transport.run(["true"], timeout=30).ok
    assert fresh.read_text() == f"{markers}{name} {kind} {blob}\n"

    for revoked, accept_new in (
        (f"@revoked * {kind} {blob}\n" + device, False),
        (f"@revoked {name} {kind} {blob}\n", True),
    ):
        known.write_text(markers + revoked)
        target = pi4_emu.model_copy(update={"known_hosts": known, "accept_new": accept_new})
        with pytest.raises(
            HostKeyError, match=f"host key of 127.0.0.1:{pi4_emu.port} is marked @revoked in {known}"
        ):
            open_transport(target).connect()
        assert known.read_text() == markers + revoked  # nothing recorded

    known.write_text(f"@trusted {name} {kind} {blob}\n")  # not an OpenSSH marker: still a malformed line
    with pytest.raises(TargetError, match="malformed line"):
        open_transport(pi4_emu.model_copy(update={"known_hosts": known})).connect()


@pytest.mark.integration
def test_known_hosts_patterns_match_as_openssh_matches_them(pi4_emu, tmp_path: Path) -> None:
    """paramiko matches a known_hosts name only exactly (or hashed): a line for `[127.0.0.?]:PORT` or `*` was an
    unknown key. Wildcards match now, a negated pattern keeps a line from a host, and a pattern line with another
    key is a changed key, as in OpenSSH."""
    name, kind, blob = pi4_emu.known_hosts.read_text().split()[:3]
    other = _other_key_line(tmp_path, pi4_emu.port).split()
    known = tmp_path / "known_hosts"
    for patterns in (f"[127.0.0.?]:{pi4_emu.port}", "*", "pi.example,[127.0.0.*]:*"):
        known.write_text(f"{patterns} {kind} {blob}\n")
        with open_transport(pi4_emu.model_copy(update={"known_hosts": known})) as transport:
            assert transport.run(["true"], timeout=30).ok, patterns
    known.write_text(f"!{name},* {kind} {blob}\n")  # every host but this one
    with pytest.raises(HostKeyError, match="unknown host key"):
        open_transport(pi4_emu.model_copy(update={"known_hosts": known})).connect()
    known.write_text(f"[127.0.0.*]:* {other[1]} {other[2]}\n")
    with pytest.raises(HostKeyError, match="host key CHANGED"):
        open_transport(pi4_emu.model_copy(update={"known_hosts": known})).connect()
    # two keys of one type for the host (one being rotated in): OpenSSH accepts either; paramiko compared the
    # first only and called the device's key CHANGED
    known.write_text(f"{name} {other[1]} {other[2]}\n{name} {kind} {blob}\n")
    with open_transport(pi4_emu.model_copy(update={"known_hosts": known})) as transport:
        assert transport.run(["true"], timeout=30).ok


@pytest.mark.integration
def test_arguments_env_and_cwd_are_quoted(pi4_transport, scratch_name) -> None:
    pi4_transport.mkdir(f"{scratch_name}/dir with space")
    nasty = ["a b", "$HOME", "`id`", "x;rm -rf /", "it's", '"q"', "*"]
    res = pi4_transport.run(
        ["printf", "%s\\n", *nasty],
        timeout=30,
        cwd=f"{scratch_name}/dir with space",
        env={"EDGEKIT_X": "v a l;$(id)"},
    )
    assert res.ok and res.stdout.splitlines() == nasty
    res = pi4_transport.run(
        ["sh", "-c", 'pwd; printf %s "$EDGEKIT_X"'],
        timeout=30,
        cwd=f"{scratch_name}/dir with space",
        env={"EDGEKIT_X": "v a l;$(id)"},
    )
    pwd, value = res.stdout.splitlines()
    assert pwd.endswith("/dir with space") and value == "v a l;$(id)"


@pytest.mark.integration
def test_exit_status_and_stderr_are_returned(pi4_transport) -> None:
    res = pi4_transport.run(["sh", "-c", "echo out; echo err >&2; exit 7"], timeout=30)
    assert (res.exit_status, res.stdout, res.stderr) == (7, "out\n", "err\n")


@pytest.mark.integration
def test_put_creates_parents_and_keeps_no_temp_files(pi4_transport, tmp_path, scratch_name) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    put = pi4_transport.put(blob, f"{scratch_name}/a/b/blob.bin")
    assert put.bytes_sent == blob.stat().st_size
    listing = pi4_transport.run(["ls", "-A", f"{scratch_name}/a/b"], timeout=30).stdout.split()
    assert listing == ["blob.bin"]


@pytest.mark.integration
def test_put_many_uploads_in_two_round_trips_and_skips_what_the_device_holds(
    pi4_transport, tmp_path, scratch_name
) -> None:
    """A deploy's push: every file up (parents made, no temp files left), checked and renamed in one script, the
    ones already there skipped and touched; a parent that cannot be made is a WorkDirError before any upload. The
    check before it (upload_room) is one round trip too."""
    from edgekit.errors import WorkDirError
    from edgekit.transport import ssh_files

    files = [tmp_path / name for name in ("a.bin", "b.bin", "c.bin")]
    for n, f in enumerate(files):
        f.write_bytes(bytes([n]) * (1000 + n))
    pairs = [(files[0], f"{scratch_name}/x/a.bin"), (files[1], f"{scratch_name}/y/b.bin")]
    pi4_transport.put(files[2], f"{scratch_name}/x/c.bin")
    pairs.append((files[2], f"{scratch_name}/x/c.bin"))
    execs = []
    real = ssh_files.exec_simple
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ssh_files, "exec_simple", lambda *a, **k: execs.append(a[1]) or real(*a, **k))
        # a file twice: sent once, as its last pair (the earlier one superseded); a folder made beside them (a
        # run's outputs/)
        got = pi4_transport.put_many([*pairs, pairs[0]], dirs=[f"{scratch_name}/z/outputs"])
    assert len(execs) == 2, execs
    assert pi4_transport.run(["test", "-d", f"{scratch_name}/z/outputs"], timeout=30).ok
    assert [(p.skipped, p.bytes_sent) for p in got] == [(True, 0), (False, 1001), (True, 0), (False, 1000)]
    for (local, _remote), put in zip([*pairs, pairs[0]], got, strict=True):
        assert pi4_transport.sha256(put.remote) == put.sha256 == ssh_files.sha256_file(local)
    for folder in ("x", "y"):
        listing = pi4_transport.run(["ls", "-A", f"{scratch_name}/{folder}"], timeout=30).stdout.split()
        assert listing == (["a.bin", "c.bin"] if folder == "x" else ["b.bin"])
    assert all(p.skipped for p in pi4_transport.put_many(pairs))  # the second push sends nothing
    # what check_space asks first: the work dir made, its free bytes and the bytes to send, in one round trip
    fresh = tmp_path / "d.bin"
    fresh.write_bytes(b"d" * 777)
    execs.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ssh_files, "exec_simple", lambda *a, **k: execs.append(a[1]) or real(*a, **k))
        free, to_send = pi4_transport.upload_room([*pairs, (fresh, f"{scratch_name}/y/d.bin")])
    df = pi4_transport.free_bytes(".")  # the same disk, which other processes write meanwhile
    assert len(execs) == 1 and to_send == 777 and free is not None and abs(free - df) < 100e6, (
        execs,
        free,
        df,
    )
    pi4_transport.put(files[0], f"{scratch_name}/file")
    with pytest.raises(WorkDirError):
        pi4_transport.put_many([(files[1], f"{scratch_name}/y/b2.bin"), (files[0], f"{scratch_name}/file/a")])
    assert pi4_transport.run(["ls", "-A", f"{scratch_name}/y"], timeout=30).stdout.split() == ["b.bin"]


@pytest.mark.integration
def test_sha256_falls_back_to_the_device_python(pi4_transport, small_file, scratch_name) -> None:
    """A device without sha256sum (PATH emptied here) still gets its files verified, by its python."""
    put = pi4_transport.put(small_file, f"{scratch_name}/f.py")
    command = "PATH=/nonexistent; " + pi4_transport._sha_cmd(put.remote)
    res = pi4_transport.run(["sh", "-c", command], timeout=60)
    assert res.ok and res.stdout.strip() == put.sha256, res.stderr


# -- ssh config: ProxyJump (chains), ProxyCommand, UserKnownHostsFile, through a second sshd as the jump host -----
@pytest.fixture()
def jump_host(pi4_emu, tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A second OpenSSH server on 127.0.0.1 (TCP forwarding allowed) taking pi4-emu's client key, started as
    `edgekit emu up` starts a device's; yields its port and its known_hosts line."""
    from edgekit.emu import layout

    dev = layout.device_dir("pi4-emu")
    key = tmp_path / "jump_host_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    with _sshd(tmp_path, "jump", key, dev.authorized_keys, "AllowTcpForwarding yes\n") as port:
        kind, blob = key.with_suffix(".pub").read_text().split()[:2]
        yield port, f"[127.0.0.1]:{port} {kind} {blob}\n"


@contextlib.contextmanager
def _sshd(tmp_path: Path, name: str, host_key: Path, authorized: Path, extra: str = "") -> Iterator[int]:
    """An OpenSSH server on 127.0.0.1 (keys only, `extra` config lines), running until the block ends: its port."""
    port = _free_port()
    config = tmp_path / f"{name}_sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\nAuthorizedKeysFile {authorized}\n"
        f"PidFile {tmp_path / f'{name}.pid'}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n"
        f"StrictModes no\n{extra}LogLevel ERROR\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-f", str(config), "-E", str(tmp_path / f"{name}.log")])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    if s.recv(64).startswith(b"SSH-"):
                        break
            except OSError:
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _through_jump(pi4_emu, tmp_path: Path, jump_line: str, entry: str) -> object:
    """The `pi4` target (a real board's file) reaching pi4-emu's sshd by an ssh config alias."""
    known = tmp_path / "user_known_hosts"
    known.write_text(pi4_emu.known_hosts.read_text() + jump_line)
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host lab-pi\n  HostName 127.0.0.1\n  Port {pi4_emu.port}\n  User {pi4_emu.user}\n"
        f"  IdentityFile {pi4_emu.key}\n  UserKnownHostsFile {known}\n{entry}"
    )
    return load_target(
        "pi4", {"host": "lab-pi", "connect_timeout": "5", "work_dir": str(tmp_path / "w")}, ssh_config=config
    )


@pytest.mark.integration
def test_proxyjump_chains_from_the_ssh_config_are_honoured(pi4_emu, jump_host, tmp_path: Path) -> None:
    port, line = jump_host
    target = _through_jump(
        pi4_emu,
        tmp_path,
        line,
        f"  ProxyJump bastion,{pi4_emu.user}@bastion\nHost bastion\n  HostName 127.0.0.1\n  Port {port}\n",
    )
    assert (
        target.proxy_jump == f"127.0.0.1:{port},{pi4_emu.user}@127.0.0.1:{port}"
    )  # hops resolved by the config
    assert str(target.known_hosts) == str(tmp_path / "user_known_hosts")  # UserKnownHostsFile
    with open_transport(target) as transport:
        assert transport.run(["echo", "through"], timeout=30).stdout == "through\n"
        assert len(transport._jumps) == 2  # type: ignore[attr-defined]
    unknown_jump = _through_jump(pi4_emu, tmp_path, "", f"  ProxyJump 127.0.0.1:{port}\n")
    with pytest.raises(HostKeyError, match="jump host"):  # every hop's key is checked
        open_transport(unknown_jump).connect()
    wrong = _other_key_line(tmp_path, port)
    changed_jump = _through_jump(pi4_emu, tmp_path, wrong, f"  ProxyJump 127.0.0.1:{port}\n")
    with pytest.raises(HostKeyError, match="CHANGED for jump host") as info:
        open_transport(changed_jump).connect()
    _run_the_hint_and_expect_no_key_left(str(info.value), tmp_path / "user_known_hosts", wrong)
    revoked = f"@revoked * {' '.join(line.split()[1:3])}\n"  # the jump host's own key, revoked
    revoked_jump = _through_jump(pi4_emu, tmp_path, line + revoked, f"  ProxyJump 127.0.0.1:{port}\n")
    with pytest.raises(HostKeyError, match=f"host key of 127.0.0.1:{port} is marked @revoked"):
        open_transport(revoked_jump).connect()


@pytest.mark.integration
def test_proxycommand_is_honoured_and_a_dead_jump_host_is_named(pi4_emu, jump_host, tmp_path: Path) -> None:
    port, line = jump_host
    known = tmp_path / "jump_known"
    known.write_text(line)
    command = (
        f"ssh -q -i {pi4_emu.key} -o BatchMode=yes -o UserKnownHostsFile={known} -p {port} "
        f"-W %h:%p {pi4_emu.user}@127.0.0.1"
    )
    target = _through_jump(pi4_emu, tmp_path, "", f"  ProxyCommand {command}\n")
    assert target.proxy_command and f"-W 127.0.0.1:{pi4_emu.port}" in target.proxy_command
    with open_transport(target) as transport:
        assert transport.run(["echo", "piped"], timeout=30).stdout == "piped\n"
        assert isinstance(transport._client.get_transport().sock, paramiko.ProxyCommand)  # type: ignore[attr-defined]
    jumped = _through_jump(pi4_emu, tmp_path, line, f"  ProxyJump 127.0.0.1:{port}\n")
    dead = jumped.model_copy(update={"proxy_jump": f"127.0.0.1:{_free_port()}"})  # nothing listens there
    with pytest.raises(ConnectError, match="jump host"):
        open_transport(dead).connect()


@pytest.mark.integration
def test_close_after_the_link_broke_under_an_open_sftp_session_does_not_raise(pi4_emu) -> None:
    """CI found it: after a dropped link, reconnect() closed the old SFTP session, whose close message could not
    be sent (EOFError from paramiko), so the reconnect raised instead of connecting again."""
    with open_transport(pi4_emu) as transport:
        transport.connect()
        transport.sftp.listdir(".")  # an SFTP session is open
        sock = transport._client.get_transport().sock  # type: ignore[attr-defined]
        sock.shutdown(socket.SHUT_WR)  # nothing more can be sent: the channel's close message fails
        transport.close()
        transport.connect()  # and the transport is usable again
        assert transport.run(["true"], timeout=30).exit_status == 0


@pytest.mark.integration
def test_a_changed_key_behind_a_proxycommand_ends_in_the_named_error_alone(pi4_emu, tmp_path: Path) -> None:
    """The connect-error paths closed the client without joining its transport thread, then reaped the
    ProxyCommand: the thread's last act (or paramiko's exit hook) signalled the reaped process, and a
    ProcessLookupError traceback followed the named error ("Exception ignored in atexit callback")."""
    wrong = tmp_path / "known_hosts"
    wrong.write_text(_other_key_line(tmp_path, 22))
    edgekit = Path(sys.executable).parent / "edgekit"
    command = [
        str(edgekit),
        "targets",
        "check",
        "pi4",
        *[
            arg
            for name, value in _piped_fields(pi4_emu, tmp_path).items()
            for arg in ("--set", f"{name}={value}")
        ],
        "--set",
        f"known_hosts={wrong}",
    ]
    for _ in range(8):  # the race lost 1 to 3 runs in 4
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and "host key CHANGED" in done.stderr, done.stderr
        assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr


def _record_the_key_as_the_hint_says(error: HostKeyError) -> None:
    """Run the ssh command of an unknown-key hint (it records the key, then logs in and runs `true`)."""
    hint = error.hint or ""
    assert "ssh-keyscan -p" not in hint, hint  # it only connects directly: it cannot go through a proxy
    assert "accept_new=true" in hint and "compare its fingerprint" in hint, (
        hint
    )  # the other way, and the risk
    command = re.search(r"record its key the same way: (ssh .*? true)  ", hint)
    assert command, hint
    argv = shlex.split(command.group(1))
    assert "StrictHostKeyChecking=accept-new" in argv, argv
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert done.returncode == 0, (argv, done.stderr)


@pytest.mark.integration
def test_an_unknown_key_behind_a_proxycommand_is_recorded_as_the_hint_says(pi4_emu, tmp_path: Path) -> None:
    """The unknown-key hint said `ssh-keyscan -p PORT HOST >> FILE` for a device reached through a ProxyCommand,
    where ssh-keyscan cannot go (it connects directly: here to 127.0.0.1 port 22, nothing or another host).
    It now gives an ssh through the same ProxyCommand recording the first key (or accept_new for one run),
    naming the risk; running it records the key, and edgekit then connects."""
    known = tmp_path / "known_hosts"
    known.write_text("")
    fields = {**_piped_fields(pi4_emu, tmp_path), "known_hosts": str(known)}
    target = load_target("pi4", fields, ssh_config=tmp_path / "none")
    with pytest.raises(HostKeyError, match="unknown host key") as info:
        open_transport(target).connect()
    assert "is reached through its ProxyCommand" in str(info.value), str(info.value)
    _record_the_key_as_the_hint_says(info.value)
    with open_transport(target) as transport:  # accept_new stays off: the key is now known
        assert transport.run(["true"], timeout=30).ok


@pytest.mark.integration
def test_an_unknown_key_behind_a_proxyjump_is_recorded_as_the_hint_says(
    pi4_emu, jump_host, tmp_path: Path
) -> None:
    """The same through a ProxyJump host: the hint's ssh goes through the jump host, whose key it checks against
    the target's known_hosts as edgekit does (`ssh -J` would use ~/.ssh/known_hosts)."""
    port, line = jump_host
    target = _through_jump(pi4_emu, tmp_path, line, f"  ProxyJump 127.0.0.1:{port}\n")
    Path(target.known_hosts).write_text(line)  # the jump host's key only: the device's is unknown
    with pytest.raises(HostKeyError, match="unknown host key") as info:
        open_transport(target).connect()
    assert f"is reached through ProxyJump 127.0.0.1:{port}" in str(info.value), str(info.value)
    _record_the_key_as_the_hint_says(info.value)
    with open_transport(target) as transport:
        assert transport.run(["true"], timeout=30).ok


@pytest.mark.integration
def test_an_unknown_key_behind_two_jump_hosts_is_recorded_as_the_hint_says(
    pi4_emu, jump_host, tmp_path: Path
) -> None:
    """Behind a chain of jump hosts the hint's ssh went `-J first`, whose inner ssh checks the first hop's key
    against ~/.ssh/known_hosts, not the target's file: the command failed ("Host key verification failed").
    Earlier hops are nested ProxyCommands now, each checked against the target's known_hosts."""
    port, line = jump_host
    chain = f"  ProxyJump 127.0.0.1:{port},127.0.0.1:{port}\n"  # the jump host, then itself again
    target = _through_jump(pi4_emu, tmp_path, line, chain)
    Path(target.known_hosts).write_text(line)  # the jump host's key only: the device's is unknown
    with pytest.raises(HostKeyError, match="unknown host key") as info:
        open_transport(target).connect()
    assert f"is reached through ProxyJump 127.0.0.1:{port},127.0.0.1:{port}" in str(info.value), str(
        info.value
    )
    _record_the_key_as_the_hint_says(info.value)
    with open_transport(target) as transport:
        assert transport.run(["true"], timeout=30).ok


# -- file names GNU sha256sum escapes, through an OpenSSH server of this test's own (no emulated device) ---------
@pytest.fixture()
def local_sshd(tmp_path: Path) -> Iterator[object]:
    """A `pi4` target reaching an OpenSSH server on 127.0.0.1 started here (its own host and client keys), with
    this host's shell and coreutils as the device's; the work dir is in tmp_path."""
    key, host_key = tmp_path / "client_ed25519", tmp_path / "host_ed25519"
    for k in (key, host_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(key.with_suffix(".pub").read_text())
    with _sshd(tmp_path, "local", host_key, authorized, "Subsystem sftp internal-sftp\n") as port:
        kind, blob = host_key.with_suffix(".pub").read_text().split()[:2]
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        yield load_target(
            "pi4",
            {
                "host": "127.0.0.1",
                "port": str(port),
                "user": user,
                "key": str(key),
                "known_hosts": str(known),
                "connect_timeout": "10",
                "work_dir": str(tmp_path / "work"),
                "python": sys.executable,
            },
            ssh_config=tmp_path / "none",
        )


@pytest.mark.parametrize("name", ["back\\slash.tflite", "new\nline.tflite", "both \\ and\n.tflite"])
def test_a_file_name_sha256sum_escapes_is_uploaded_and_verified(
    local_sshd, tmp_path: Path, name: str
) -> None:
    """GNU sha256sum escapes a name holding a backslash or a newline and starts its line with `\\`: the remote
    sha256 of such a file never matched the local one, so its upload was refused ("does not match")."""
    local = tmp_path / name
    local.write_bytes(bytes(range(256)) * 64)
    with open_transport(local_sshd) as transport:
        put = transport.put(local, f"models/{name}")
        assert not put.skipped and transport.sha256(f"models/{name}") == put.sha256
        assert (Path(put.remote)).read_bytes() == local.read_bytes()  # the device here is this host
        assert transport.put(local, f"models/{name}").skipped  # the second upload is known unchanged
        assert transport.bytes_to_send([(local, f"models/{name}")]) == 0
        for command in (
            transport._sha_cmd(put.remote),
            "PATH=/nonexistent; " + transport._sha_cmd(put.remote),
        ):
            res = transport.run(["sh", "-c", command], timeout=60)  # sha256sum, and the python fallback
            assert res.ok and res.stdout.strip() == put.sha256, res.stderr


def test_no_key_anywhere_is_said_with_where_to_set_one(
    local_sshd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A target with no `key`, no key in ~/.ssh and no ssh-agent: paramiko's "No authentication methods
    available" came through bare, with no hint (a new lab user following the README met it)."""
    from edgekit.errors import ConnectError

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ssh
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    keyless = local_sshd.model_copy(update={"key": None})
    with pytest.raises(ConnectError, match="no key to log in") as err:
        open_transport(keyless).connect()
    assert "set `key:`" in (err.value.hint or "") and "lab.yaml" in (err.value.hint or "")


def test_a_lab_places_accept_new_hint_names_the_lab_targets_variable() -> None:
    """A lab board's target is named after its place (pi4-a), so the hint named EDGEKIT_TARGET_PI4_A_ACCEPT_NEW,
    which nothing reads: the lab target's own name is what its environment override is read under."""
    from edgekit.transport.ssh_key_hints import _accept_new

    lab = load_target("lab-pi4")
    place = lab.model_copy(update={"name": "pi4-a"})  # as lab.acquire.place_target names it
    hint = _accept_new(place)
    assert "PI4_A" not in hint and "EDGEKIT_TARGET_<LAB TARGET>_ACCEPT_NEW=true" in hint and "LAB_PI4" in hint
    assert load_target("lab-pi4", env={"EDGEKIT_TARGET_LAB_PI4_ACCEPT_NEW": "true"}).accept_new
    assert load_target("lab:board=pi4", env={"EDGEKIT_TARGET_LAB_BOARD_PI4_ACCEPT_NEW": "true"}).accept_new


def test_a_relative_work_dir_is_the_same_folder_after_a_reconnect(local_sshd) -> None:  # type: ignore[no-untyped-def]
    """A relative work_dir (`--set work_dir=bench`) is the device home's; reconnecting joined it onto the last
    connection's work dir (/home/pi/edgekit became /home/pi/edgekit/edgekit), so the lost-link recovery looked
    for the result in the wrong folder."""
    name = f"edgekit-test-{os.getpid()}"
    target = local_sshd.model_copy(update={"work_dir": name})
    home = Path.home()
    try:
        with open_transport(target) as transport:
            transport.connect()
            first = transport.work_dir
            transport.close()
            transport.connect()
            assert transport.work_dir == first == str(home / name)
    finally:
        shutil.rmtree(home / name, ignore_errors=True)


def test_a_host_known_only_by_its_rsa_key_is_accepted_directly_and_as_a_jump_host(tmp_path: Path) -> None:
    """known_hosts holding only the host's ssh-rsa key (`ssh-keyscan -t rsa`): paramiko asked first for the
    algorithm named as the key (`ssh-rsa`, SHA-1, which current OpenSSH no longer offers), so the server showed its
    ed25519 key and edgekit refused it as "host key CHANGED", where OpenSSH accepts the same file. The RSA key's
    algorithms (rsa-sha2-512, rsa-sha2-256) are now asked for first, for the device and for every jump host."""
    key, ed_key, rsa_key = tmp_path / "client_ed25519", tmp_path / "host_ed25519", tmp_path / "host_rsa"
    for k, kind in ((key, "ed25519"), (ed_key, "ed25519"), (rsa_key, "rsa")):
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(k)], check=True)
    authorized = tmp_path / "authorized_keys"
    authorized.write_text(key.with_suffix(".pub").read_text())
    extra = f"HostKey {rsa_key}\nAllowTcpForwarding yes\n"  # ed25519 first: what the server prefers
    with _sshd(tmp_path, "rsa", ed_key, authorized, extra) as port:
        kind, blob = rsa_key.with_suffix(".pub").read_text().split()[:2]
        assert kind == "ssh-rsa"
        known = tmp_path / "known_hosts"
        known.write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")
        ssh = [
            "ssh",
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
        ]
        done = subprocess.run(
            [*ssh, "-i", str(key), "-p", str(port), "127.0.0.1", "true"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr  # OpenSSH accepts the file
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        fields = {
            "host": "127.0.0.1",
            "port": str(port),
            "user": user,
            "key": str(key),
            "known_hosts": str(known),
            "connect_timeout": "10",
            "work_dir": str(tmp_path / "work"),
            "python": sys.executable,
        }
        for extra_fields in ({}, {"proxy_jump": f"{user}@127.0.0.1:{port}"}):  # directly, then through itself
            target = load_target("pi4", {**fields, **extra_fields}, ssh_config=tmp_path / "none")
            with open_transport(target) as transport:
                assert transport.run(["echo", "rsa"], timeout=30).stdout == "rsa\n"
                shown = transport._client.get_transport().get_remote_server_key()  # type: ignore[attr-defined]
                assert shown.get_name() == "ssh-rsa"
                assert len(transport._jumps) == len(extra_fields)  # type: ignore[attr-defined]


def test_a_python_path_holding_an_equals_sign_runs_over_ssh(local_sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`--set python=/opt/py=3/python3` failed over SSH with "env: '-c': No such file": the command ran as
    `env ASSIGNMENTS COMMAND`, and env took the path for one more assignment. The environment is given as shell
    assignments now, with or without any."""
    folder = tmp_path / "py=3"
    folder.mkdir()
    python = folder / "python3"
    python.symlink_to(sys.executable)
    with open_transport(local_sshd.model_copy(update={"python": str(python)})) as transport:
        for env in ({"EDGEKIT_X": "v a l;$(id)"}, None):
            res = transport.run(
                [str(python), "-c", "import os; print(os.environ.get('EDGEKIT_X'))"], timeout=60, env=env
            )
            assert res.ok and res.stdout == f"{(env or {}).get('EDGEKIT_X')}\n", res.stderr
        res = transport.run(["X=1"], timeout=60)  # a program named like an assignment is still the program
        assert res.exit_status == 127 and "X=1" in res.stderr, res
