"""`edgekit formats --target` falls back to what a target file lists when the device cannot be reached (no phone at
hand), but a device that answers with a CHANGED host key is a security fault: named, with how to fix it, exit 1 —
never "not probed", exit 0. A real sshd on 127.0.0.1 whose key is not the one known_hosts records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_fault_pull import _sshd


def _key(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True, timeout=30)
    return path


def test_a_changed_host_key_is_said_not_taken_as_a_device_not_at_hand(tmp_path: Path) -> None:
    client, server, other = _key(tmp_path / "ck"), _key(tmp_path / "hk"), _key(tmp_path / "other")
    authorized = tmp_path / "auth"
    authorized.write_text(client.with_suffix(".pub").read_text())
    with _sshd(tmp_path, server, authorized) as port:
        kind, blob = other.with_suffix(".pub").read_text().split()[:2]  # not the server's key
        known = tmp_path / "kh"
        known.write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")
        target = tmp_path / "dev.yaml"
        target.write_text(
            f"name: dev\ntransport: ssh\nhost: 127.0.0.1\nport: {port}\nuser: root\nkey: {client}\n"
            f"known_hosts: {known}\nconnect_timeout: 5\npython: {sys.executable}\n"
        )
        out = subprocess.run(
            [sys.executable, "-m", "edgekit", "formats", "--target", str(target)],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200", "EDGEKIT_HOME": str(tmp_path / "home")},
            timeout=120,
        )
    said = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 1 and "HostKeyError" in said and "not probed" not in said, said
