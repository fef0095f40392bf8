"""A target's host, proxy command and edgekit's data folder given wrong: each a named error through the real CLI,
never a traceback or an internal error, and a proxy command's secret never printed or stored. Host only: no device
and no sshd (the SSH targets point at 127.0.0.1 port 1, or at a proxy command that fails)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
from procs import EDGEKIT, named, run

from edgekit.deploy.reach import say_unreachable, unreachable
from edgekit.errors import HostNameError
from edgekit.target import load_target
from edgekit.transport import open_transport

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "S3CRET-TOKEN-4711"


def _board(tmp_path: Path, extra: str = "") -> Path:
    """An SSH target file on 127.0.0.1 port 1 (nothing listens there), its own key and known_hosts."""
    key = tmp_path / "key"
    if not key.exists():
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    path = tmp_path / "board.yaml"
    path.write_text(
        f"name: my-board\ntransport: ssh\nhost: 127.0.0.1\nport: 1\nuser: pi\nkey: {key}\n"
        f"known_hosts: {tmp_path / 'kh'}\nconnect_timeout: 3\n{extra}"
    )
    return path


# -- a host name with an empty or over-long part -------------------------------------------------------------


@pytest.mark.parametrize(
    "host, says",
    [
        ("192.168.1..23", "it has an empty part between dots"),
        ("raspberrypi..local", "it has an empty part between dots"),
        (".local", "it has an empty part between dots"),
        ("a" * 64 + ".local", "a part of it between dots is 64 characters long (at most 63)"),
        ("h" * 300, "it is 300 characters long (a host name has at most 253)"),
    ],
)
def test_a_host_name_that_cannot_be_looked_up_is_bad_input(tmp_path: Path, host: str, says: str) -> None:
    """`192.168.1..23` was an internal error (UnicodeError from the idna codec) in targets check, bench and profile,
    and a raw traceback in deploy: refused by the target schema now, exit 2, before anything is converted."""
    board = _board(tmp_path)
    for args in (
        ["targets", "check", str(board), "--set", f"host={host}"],
        [
            "deploy",
            str(ROOT / "recipes" / "tiny.yaml"),
            "-t",
            str(board),
            "--set",
            f"host={host}",
            "--no-store",
        ],
    ):
        err = " ".join(named(run(*args, cwd=tmp_path, timeout=120)).split())
        assert "TargetError" in err and "is not a host name or address" in err and says in err, err
        assert "hint: an IPv4 address is four numbers" in err and "convert:" not in err, err
        assert host not in err or len(host) <= 80, err  # a long name is cut short
    board.write_text(board.read_text().replace("host: 127.0.0.1", f"host: {host}"))  # in the file itself
    err = named(run("targets", "check", str(board), cwd=tmp_path, timeout=60))
    assert str(board) in err and says in " ".join(err.split()), err


def test_a_jump_host_or_an_ssh_config_hostname_that_cannot_be_looked_up_is_bad_input(tmp_path: Path) -> None:
    board = _board(tmp_path)
    err = named(run("targets", "check", str(board), "--set", "proxy_jump=me@bastion..lab:22", cwd=tmp_path))
    assert "jump host 'bastion..lab' is not a host name or address" in err, err
    config = tmp_path / "ssh_config"
    config.write_text("Host mypi\n  HostName 10.0.0..7\n")
    out = subprocess.run(
        [EDGEKIT, "targets", "check", str(board), "--set", "host=mypi"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "EDGEKIT_SSH_CONFIG": str(config)},
    )
    err = named(out)
    assert "HostName '10.0.0..7', given for 'mypi', is not a host name or address" in err, err
    assert str(config) in err, err


def test_a_name_that_slipped_past_the_schema_is_said_at_once_not_as_silence(tmp_path: Path) -> None:
    """The deploy's reach check died on the UnicodeError in its thread (a traceback amid the deploy's output) and
    then said "no answer in 5 s" for a check that had failed at once; connect's was "unexpected UnicodeError". A
    name reaching them another way (model_copy skips validation, as a lab place's or a device's state may) is
    named at once by both."""
    target = load_target(str(_board(tmp_path))).model_copy(update={"host": "192.168.1..23"})
    start = time.monotonic()
    said: list[str] = []
    assert say_unreachable([target], said.append) == ["my-board"]
    assert time.monotonic() - start < 2, said
    text = " ".join(said)
    assert "the host name '192.168.1..23' cannot be looked up: it has an empty part between dots" in text, (
        text
    )
    assert "no answer" not in text
    assert "empty part" in (unreachable(target) or "")
    with pytest.raises(HostNameError, match="cannot be looked up: it has an empty part between dots") as info:
        open_transport(target).connect()
    assert info.value.exit_code == 2 and "field `host`" in str(info.value)
    hop = load_target(str(_board(tmp_path))).model_copy(update={"proxy_jump": "me@bastion..lab:22"})
    says = re.escape("jump host name 'bastion..lab' cannot be looked up: it has an empty part")
    with pytest.raises(HostNameError, match=says):
        open_transport(hop).connect()
