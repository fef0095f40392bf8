"""A target's host, proxy command and edgekit's data folder given wrong: each a named error through the real CLI,
never a traceback or an internal error, and a proxy command's secret never printed or stored. Host only: no device
and no sshd (the SSH targets point at 127.0.0.1 port 1, or at a proxy command that fails)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import pytest
from procs import EDGEKIT, board_file, deploy_through_proxy, named, run

from edgekit.deploy.reach import say_unreachable, unreachable
from edgekit.errors import HostNameError, TargetError
from edgekit.target import Target, load_target
from edgekit.transport import open_transport
from edgekit.transport.proxy_text import masked_command
from edgekit.transport.ssh_key_hints import device_proxy

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "S3CRET-TOKEN-4711"


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
    and a raw traceback in deploy: refused by the target schema now, exit 2, given by --set or in the target file
    (deploy's refusal, the same schema's: the test after this one)."""
    board = board_file(tmp_path)
    err = " ".join(
        named(run("targets", "check", str(board), "--set", f"host={host}", cwd=tmp_path, timeout=120)).split()
    )
    _says_host_name_is_bad(err, host, says)
    board.write_text(board.read_text().replace("host: 127.0.0.1", f"host: {host}"))  # in the file itself
    err = named(run("targets", "check", str(board), cwd=tmp_path, timeout=60))
    assert str(board) in err and says in " ".join(err.split()), err


def _says_host_name_is_bad(err: str, host: str, says: str) -> None:
    assert "TargetError" in err and "is not a host name or address" in err and says in err, err
    assert "hint: an IPv4 address is four numbers" in err and "convert:" not in err, err
    assert host not in err or len(host) <= 80, err  # a long name is cut short


def test_deploy_refuses_a_host_name_that_cannot_be_looked_up_before_converting(tmp_path: Path) -> None:
    """deploy's raw traceback for `--set host=192.168.1..23`: the schema's TargetError now, exit 2, before anything
    is converted, a long name cut short. The schema's message for each kind of bad name: the test before this one
    (targets check reads --set as deploy does); a deploy for each of them repeated it at 1-2 s each."""
    recipe = str(ROOT / "recipes" / "tiny.yaml")
    for host, says in (
        ("192.168.1..23", "it has an empty part between dots"),
        ("h" * 300, "it is 300 characters long"),
    ):
        out = run(
            "deploy",
            recipe,
            "-t",
            str(board_file(tmp_path)),
            "--set",
            f"host={host}",
            "--no-store",
            cwd=tmp_path,
            timeout=120,
        )
        _says_host_name_is_bad(" ".join(named(out).split()), host, says)


def test_a_jump_host_or_an_ssh_config_hostname_that_cannot_be_looked_up_is_bad_input(tmp_path: Path) -> None:
    board = board_file(tmp_path)
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


@pytest.mark.parametrize(
    "hop, says",
    [
        ("bastion:2222x", "jump host 'bastion': the port '2222x' is not a number"),
        ("me@bastion:99999", "jump host 'bastion': the port '99999' is not between 1 and 65535"),
        ("gw,bastion:0", "jump host 'bastion': the port '0' is not between 1 and 65535"),
        ("bastion:\u00b2", "jump host 'bastion': the port '\u00b2' is not a number"),
        ("[::1]:abc", "jump host '::1': the port 'abc' is not a number"),
        ("[::1]x", "jump host '::1': 'x' after ']' is not ':PORT'"),
        ("bastion:", "jump host 'bastion': the port after ':' is empty"),
    ],
)
def test_a_jump_hosts_port_that_is_no_port_is_refused_before_anything_connects(
    tmp_path: Path, hop: str, says: str
) -> None:
    """`--set proxy_jump=bastion:2222x` connected to port 22 of the bastion without a word (a port not all digits
    read as 22), `bastion:99999` was "ConnectError: cannot reach jump host", exit 1, a typo blamed on the network,
    and `bastion:` "Input should be a valid string" (YAML read it as a mapping). Each is a TargetError, exit 2,
    naming the hop's port, from --set and from the target file alike."""
    board = board_file(tmp_path)
    out = run("targets", "check", str(board), "--set", f"proxy_jump={hop}", cwd=tmp_path, timeout=60)
    err = " ".join(named(out).split())
    assert "TargetError" in err and f"proxy_jump: {says} (from --set proxy_jump=...)" in err, err
    assert "hint: a port is a number from 1 to 65535" in err and "connect" not in err.lower(), err
    board.write_text(board.read_text() + f"proxy_jump: {json.dumps(hop)}\n")  # in the file itself
    err = " ".join(named(run("targets", "check", str(board), cwd=tmp_path, timeout=60)).split())
    assert f"proxy_jump: {says}" in err and str(board) in err, err
    assert Target(name="b", host="pi", proxy_jump="me@[::1]:2200,bastion:65535").jump_hops == [
        ("me", "::1", 2200),
        (None, "bastion", 65535),
    ]


@pytest.mark.parametrize(
    "config, says",
    [
        (
            "  ProxyJump bastion:2222x\n",
            "`ProxyJump`, given for 'mypi': jump host 'bastion': the port '2222x'",
        ),
        (  # the hop's own alias gives the port
            "  ProxyJump jb\nHost jb\n  HostName 127.0.0.2\n  Port 99999\n",
            "`ProxyJump`, given for 'mypi': jump host '127.0.0.2': the port '99999' is not between 1 and 65535",
        ),
        ("  Port 2222x\n", "`Port`, given for 'mypi': the port '2222x' is not a number"),
        ("  Port 70000\n", "`Port`, given for 'mypi': the port '70000' is not between 1 and 65535"),
    ],
)
def test_a_port_from_the_ssh_config_that_is_no_port_is_bad_input(
    tmp_path: Path, config: str, says: str
) -> None:
    """The same ports through ~/.ssh/config: `ProxyJump bastion:2222x` was port 22, `Port 2222x` an internal error
    (ValueError from int()), `Port 70000` a connection to 127.0.0.1:70000 (port 4464 on the wire). Now a
    TargetError naming the config file, exit 2."""
    board = board_file(tmp_path)
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host mypi\n  HostName 127.0.0.1\n{config}")
    out = subprocess.run(
        [EDGEKIT, "targets", "check", str(board), "--set", "host=mypi"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "EDGEKIT_SSH_CONFIG": str(ssh_config)},
    )
    err = " ".join(named(out).split())
    assert "TargetError" in err and says in err and str(ssh_config) in err, err


def test_a_name_that_slipped_past_the_schema_is_said_at_once_not_as_silence(tmp_path: Path) -> None:
    """The deploy's reach check died on the UnicodeError in its thread (a traceback amid the deploy's output) and
    then said "no answer in 5 s" for a check that had failed at once; connect's was "unexpected UnicodeError". A
    name reaching them another way (model_copy skips validation, as a lab place's or a device's state may) is
    named at once by both."""
    target = load_target(str(board_file(tmp_path))).model_copy(update={"host": "192.168.1..23"})
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
    hop = load_target(str(board_file(tmp_path))).model_copy(update={"proxy_jump": "me@bastion..lab:22"})
    says = re.escape("jump host name 'bastion..lab' cannot be looked up: it has an empty part")
    with pytest.raises(HostNameError, match=says):
        open_transport(hop).connect()


# -- a proxy command that fails ----------------------------------------------------------------------------------


def _tunnel(tmp_path: Path) -> Path:
    """A proxy command that repeats its arguments (the token among them) on stderr and stdout, and fails."""
    script = tmp_path / "tunnel"
    script.write_text('#!/bin/sh\necho "tunnel: refused $*" >&2\necho "got $*"\nexit 1\n')
    script.chmod(0o755)
    return script


def test_a_proxy_command_that_fails_is_blamed_and_its_token_never_shown(tmp_path: Path) -> None:
    """The whole command line, token included, was printed (paramiko's ProxyCommandFailure); a proxy that exited at
    once was "no SSH server answered ... is this the device's SSH port?" after the connect timeout. Now the proxy is
    named by its program, what it said is shown with its arguments masked, exit 1, at once."""
    # a connect bound of 30 s: "at once" is then well under it whatever the machine's start-up (3 s left a margin
    # of 4x at best here, review r17 #13)
    board = board_file(tmp_path)
    proxy = f"proxy_command={_tunnel(tmp_path)} --service-token-secret {TOKEN} %h"
    for _ in range(4):  # paramiko writes first (a broken pipe) or reads first (the end of output): both ways
        start = time.monotonic()
        err = named(
            run("targets", "check", str(board), "--set", proxy, "--set", "connect_timeout=30", cwd=tmp_path),
            code=1,
        )
        text = " ".join(err.split())
        assert TOKEN not in err and "ConnectError" in text, err
        assert (
            f"the proxy_command `{tmp_path / 'tunnel'} ...` failed before any SSH greeting (exit 1)" in text
        ), err
        assert (
            "it said: tunnel: refused *** *** 127.0.0.1" in text
            and "is this the device's SSH port" not in text
        ), err
        assert time.monotonic() - start < 15, err  # well within connect_timeout (30 s)
    for _ in range(4):
        err = named(
            run(
                "targets",
                "check",
                str(board),
                "--set",
                "proxy_command=false --password=hunter2 %h",
                cwd=tmp_path,
            ),
            code=1,
        )
        assert "hunter2" not in err and "the proxy_command `false ...` failed" in err, err
        assert "no SSH server answered" not in err and "is this the device's SSH port" not in err, err


def test_a_proxy_command_that_does_not_split_is_bad_input_and_not_repeated(tmp_path: Path) -> None:
    """An unclosed quote was an internal error (shlex's ValueError in paramiko) at connect."""
    out = run(
        "targets", "check", str(board_file(tmp_path)), "--set", f"proxy_command=tunnel '{TOKEN}", cwd=tmp_path
    )
    err = named(out)
    assert "proxy_command: Value error, not a command edgekit can run: No closing quotation" in err, err
    assert TOKEN not in err


def test_a_proxy_command_that_runs_but_never_answers_is_said_as_such(tmp_path: Path) -> None:
    """A proxy still running at the banner timeout (paramiko then stops it) is not called failed, and the port it
    blames is the far end's, through the proxy."""
    board = board_file(tmp_path)
    out = run(
        "targets",
        "check",
        str(board),
        "--set",
        "connect_timeout=1",
        "--set",
        f"proxy_command=sh -c 'sleep 30' {TOKEN}",
        cwd=tmp_path,
        timeout=60,
    )
    err = " ".join(named(out, code=1).split())
    assert "no SSH greeting came through the proxy_command within 1 s" in err and TOKEN not in err, err


def test_a_failed_proxy_commands_token_reaches_neither_the_json_nor_the_store(tmp_path: Path) -> None:
    proxy = f"{_tunnel(tmp_path)} --service-token-secret {TOKEN} %h"
    out, json_text, rows = deploy_through_proxy(tmp_path, proxy)
    assert TOKEN not in out.stdout + out.stderr
    assert "the proxy_command" in json_text and TOKEN not in json_text
    assert (
        TOKEN.encode() not in (tmp_path / "sec.db").read_bytes()
    )  # nor in any text the store holds (its WAL too)
    assert rows and not any(TOKEN in r for r in rows)


def test_a_proxy_command_in_a_hint_has_its_secrets_masked(tmp_path: Path) -> None:
    """The unknown-key hint prints the proxy command to run by hand (and the store keeps it): a secret's value
    masked, a command without one as it is (runnable)."""
    plain = "ssh -W %h:%p bastion.lab"
    assert masked_command(plain) == plain
    target = load_target(
        str(board_file(tmp_path)), [f"proxy_command=tunnel --service-token-secret {TOKEN} %h"]
    )
    how, command = device_proxy(target) or ("", "")
    assert TOKEN not in command and command == "tunnel --service-token-secret '***' %h", command
    assert how.startswith("its ProxyCommand (its secrets shown as ***"), how
    assert device_proxy(load_target(str(board_file(tmp_path)), [f"proxy_command={plain}"])) == (
        "its ProxyCommand",
        plain,
    )
    for command, secret in [
        (f"cloudflared access ssh --hostname %h --service-token-secret {TOKEN}", TOKEN),
        ("tunnel --password=hunter2 %h", "hunter2"),
        ("sshpass -p hunter2 ssh -W %h:%p bastion", "hunter2"),
        ("sshpass -phunter2 ssh -W %h:%p bastion", "hunter2"),
        ("API_TOKEN=abc123 nc %h %p", "abc123"),
        ("corkscrew http://me:hunter2@proxy 8080 %h %p", "hunter2"),
    ]:
        shown = masked_command(command)
        assert secret not in shown and "***" in shown, shown


# -- EDGEKIT_HOME that cannot be a folder ------------------------------------------------------------------------


def test_an_edgekit_home_that_cannot_be_a_folder_is_a_named_error(tmp_path: Path) -> None:
    """EDGEKIT_HOME=/etc/passwd (a file), a path under a file, or one that cannot be made was an internal error
    (FileExistsError, NotADirectoryError, FileNotFoundError) on nearly every command."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for home, says in [
        (a_file, f"{str(a_file)!r} is a file, not a folder"),
        (a_file / "x", f"{str(a_file)!r} is a file, not a folder"),
        (Path("/proc/edgekit-none"), "it cannot be made"),
    ]:
        for args in (["cache"], ["runs"]):
            out = subprocess.run(
                [EDGEKIT, *args],
                capture_output=True,
                text=True,
                timeout=120,
                env={**os.environ, "EDGEKIT_HOME": str(home)},
            )
            err = " ".join(named(out).split())
            assert "UsageError" in err and "$EDGEKIT_HOME" in err and says in err, err
            assert "hint: set EDGEKIT_HOME to a folder you can write" in err, err


def test_a_tilde_in_edgekit_home_is_the_home_folder(tmp_path: Path) -> None:
    out = subprocess.run(
        [EDGEKIT, "cache"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "EDGEKIT_HOME": "~/eh", "HOME": str(tmp_path / "home")},
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "home" / "eh" / "cache").is_dir() and not (tmp_path / "~").exists()


# -- a --set value that cannot be a field's, a python that cannot be split, a misspelt emulated device -----------


def test_a_field_given_a_value_and_then_fields_of_its_own_is_named(tmp_path: Path) -> None:
    """`--set port=22 --set port.x=1` was an internal error (TypeError: 'int' object does not support item
    assignment): port is a value, not a group of fields."""
    board = board_file(tmp_path)
    for sets, says in [
        (["port=22", "port.x=1"], "port.x: `port` is a value (port=22), not a group of fields"),
        (["emulated.device=x", "emulated.device.y.z=1"], "`emulated.device` is a value"),
        # the other order: the value silently replaced the fields (EDGEKIT_TARGET_* variables come in any order)
        (["port.x=1", "port=22"], "port: `port` was given fields of its own (port.x), and now a value"),
    ]:
        args = [a for s in sets for a in ("--set", s)]
        err = " ".join(named(run("targets", "check", str(board), *args, cwd=tmp_path, timeout=60)).split())
        assert "error (TargetError): --set:" in err and says in err, err


def test_a_set_value_nested_too_deeply_to_read_is_named_not_repeated(tmp_path: Path) -> None:
    """`--set host=[[[[...` (5000 brackets) was an internal error (RecursionError in the YAML parser)."""
    value = "[" * 5000
    out = run(
        "targets", "check", str(board_file(tmp_path)), "--set", f"host={value}", cwd=tmp_path, timeout=60
    )
    err = " ".join(named(out).split())
    assert "error (TargetError): --set: host: the value (5000 characters, not shown) nests" in err, err
    assert "[" * 100 not in err


@pytest.mark.parametrize(
    "field", ["python=python3 '", 'python=python3 "', 'runtime_python.ncnn=python3 "', "python="]
)
def test_a_python_that_does_not_split_into_a_command_is_bad_input(tmp_path: Path, field: str) -> None:
    """`--set 'python=python3 "'` was an internal error (shlex's ValueError: No closing quotation) once an emulated
    device had been started and connected (an empty one: "cannot reach" the device on a board at port 1, as this
    one); refused by the schema now, exit 2, before anything starts or connects."""
    out = run("targets", "check", str(board_file(tmp_path)), "--set", field, cwd=tmp_path, timeout=60)
    err = " ".join(named(out).split())
    name = field.split("=")[0].split(".")[0]
    says = (
        "an empty command"
        if field.endswith("=")
        else "is not a command edgekit can run: No closing quotation"
    )
    assert f"invalid target: {name}: " in err and says in err and f"(from --set {name}=...)" in err, err
    assert "hint: a python is a command line, split as a shell splits it" in err, err


def test_edgekits_own_python_is_never_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """A local target's python is edgekit's interpreter, a path: a quote in it is no shell quote."""
    import sys

    from edgekit.target import Target

    monkeypatch.setattr(sys, "executable", "/home/o'brien/My Projects/.venv/bin/python")
    target = Target.model_validate({"name": "mine", "transport": "local", "python": sys.executable})
    assert target.python == sys.executable


def test_a_misspelt_emulated_device_is_refused_naming_the_file_and_the_field(tmp_path: Path) -> None:
    """`emulated: {device: phon-emu}` was listed by `edgekit targets` as a valid emulated target "(not running)";
    `targets check` said "edgekit emu: unknown emulated device" naming neither the file nor the field."""
    (tmp_path / "myphone.yaml").write_text(
        "name: myphone\ntransport: ssh\nemulated: {device: phon-emu, cpu: cortex-a76}\n"
    )
    env = {**os.environ, "EDGEKIT_TARGETS_DIR": str(tmp_path), "COLUMNS": "400"}
    out = subprocess.run(
        [EDGEKIT, "targets", "check", "myphone"], capture_output=True, text=True, timeout=60, env=env
    )
    err = " ".join(named(out).split())
    assert (
        f"error (TargetError): {tmp_path / 'myphone.yaml'}: emulated.device: unknown emulated device 'phon-emu' "
        "(did you mean phone-emu?)" in err
    ), err
    assert "hint: known devices: phone-emu, pi4-emu, pi5-emu" in err, err
    listing = subprocess.run([EDGEKIT, "targets"], capture_output=True, text=True, timeout=60, env=env)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "myphone" in line)
    assert "invalid" in row and "emulated.device: unknown emulated device 'phon-emu'" in row, listing.stdout
    assert "not running" not in row


def test_a_target_file_named_as_another_target_is_refused_and_a_name_of_its_own_is_listed(
    tmp_path: Path,
) -> None:
    """mypi.yaml saying `name: pi4` was listed as a second pi4 (which `--target pi4` never reaches) and its runs
    were stored under pi4, mixed with the real Pi 4's history; mismatch.yaml saying `name: other` was listed as
    `other`, which `targets check other` called unknown. The first is refused (exit 2); the second is listed by
    the file name to use, with the name its results are stored under."""
    (tmp_path / "mypi.yaml").write_text("name: pi4\ntransport: ssh\nhost: 10.0.0.9\nuser: pi\n")
    (tmp_path / "mismatch.yaml").write_text("name: other\ntransport: ssh\nhost: 10.0.0.8\nuser: pi\n")
    env = {**os.environ, "EDGEKIT_TARGETS_DIR": str(tmp_path), "COLUMNS": "400"}
    out = subprocess.run(
        [EDGEKIT, "targets", "check", "mypi"], capture_output=True, text=True, timeout=60, env=env
    )
    err = " ".join(named(out).split())
    assert out.returncode == 2 and "`name: pi4` is the name of another target" in err, err
    listing = subprocess.run([EDGEKIT, "targets"], capture_output=True, text=True, timeout=60, env=env)
    assert listing.returncode == 0, listing.stderr
    rows = listing.stdout.splitlines()
    assert any("mismatch (name: other)" in r for r in rows), listing.stdout
    assert any("mypi" in r and "invalid" in r for r in rows), listing.stdout
    assert sum(" pi4 " in r or "│ pi4 " in r for r in rows) == 1, listing.stdout  # the shipped pi4 alone


def test_targets_with_an_emu_home_that_cannot_be_a_folder_is_a_usage_error(tmp_path: Path) -> None:
    """EDGEKIT_EMU_HOME naming a file listed every emulated target "invalid" and exited 0 (`emu status`: exit 2)."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for args in (["targets"], ["targets", "list"]):
        out = subprocess.run(
            [EDGEKIT, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "EDGEKIT_EMU_HOME": str(a_file)},
        )
        err = " ".join(named(out).split())
        assert "UsageError" in err and "$EDGEKIT_EMU_HOME" in err and "is a file, not a folder" in err, err
        assert "invalid" not in out.stdout, out.stdout


def test_setup_that_could_install_none_of_the_runtimes_says_what_to_set() -> None:
    """`targets setup --set 'runtimes=[openvino]'` on a board ended with the hint `... out of the target's
    runtimes:` and nothing after the colon."""
    from edgekit.emu.device_info import DeviceInfo
    from edgekit.emu.provision import require_installed
    from edgekit.errors import RuntimeInstallError
    from edgekit.target import Target

    board = Target(name="pi4", host="192.168.1.23", user="pi", runtimes=["openvino"])
    missing = DeviceInfo(raw={}, not_installed={"openvino": "no wheel for aarch64"})
    with pytest.raises(RuntimeInstallError) as err:
        require_installed(board, missing)
    hint = err.value.hint or ""
    assert "leave openvino out of the target's runtimes (--set 'runtimes=[]': numpy alone)" in hint, hint
    board = Target(name="pi4", host="192.168.1.23", user="pi", runtimes=["ncnn", "openvino"])
    with pytest.raises(RuntimeInstallError) as err:
        require_installed(board, missing)
    assert "runtimes (--set 'runtimes=[ncnn]')" in (err.value.hint or "")


# -- shell characters in a host or user name (a proxy_command's %h, %r) -------------------------------------------


@pytest.mark.parametrize(
    "field, value, says",
    [
        (
            "host",
            "127.0.0.1;touch${IFS}INJECTED;:",
            "is not a host name or address: it has '$', ':', ';', '{', '}'",
        ),
        ("host", "pi`touch${IFS}INJECTED`", "is not a host name or address: it has '$', '`', '{', '}'"),
        ("user", "pi;touch${IFS}INJECTED;:", "is not a user name: it has '$', ':', ';', '{', '}'"),
        ("user", "pi$(touch${IFS}INJECTED)", "is not a user name: it has '$', '(', ')'"),
    ],
)
def test_shell_characters_in_a_host_or_user_are_refused_before_a_proxy_command_runs(
    tmp_path: Path, field: str, value: str, says: str
) -> None:
    """`host: '127.0.0.1;touch${IFS}HOSTINJ;:'` with `proxy_command: sh -c '... %h %p'` ran the `touch` (%h, %r
    were pasted into the command as they were). Host and user are now names or addresses (ssh 9.6's rule,
    CVE-2023-51385): TargetError naming the field, exit 2, nothing run."""
    board = board_file(tmp_path, f"proxy_command: sh -c 'echo %h %r > {tmp_path / 'said'}'\n")
    board.write_text(board.read_text().replace(f"{field}: ", f"{field}: '{value}'\n#", 1))
    err = " ".join(named(run("targets", "check", str(board), cwd=tmp_path, timeout=60)).split())
    assert "TargetError" in err and f"{field}: " in err and says in err, err
    assert not (tmp_path / "INJECTED").exists() and not (tmp_path / "said").exists()


@pytest.mark.parametrize(
    "host", ["::1", "[::1]", "my_pi.local", "RaspberryPi.LOCAL", "10.0.0.9", "fe80::fc:ff:fe00:1%eth0"]
)
def test_names_and_addresses_are_still_taken(tmp_path: Path, host: str) -> None:
    target = load_target(str(board_file(tmp_path)), [f"host={host}", "user=pi.admin_2"])
    assert target.host == host and target.user == "pi.admin_2"


def _proxy_once(target: Target, said: Path) -> None:
    """Start the target's proxy_command as a connect does, and wait (10 s at most) for it to write `said`."""
    from edgekit.transport.ssh_jump import JumpChain

    chain = JumpChain(target)
    try:
        chain.open(None, None)  # type: ignore[arg-type]  # a ProxyCommand: the client is not used
        deadline = time.monotonic() + 10
        while not (said.exists() and said.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        chain.close()


def test_a_proxy_command_gets_the_host_and_user_as_shell_words(tmp_path: Path) -> None:
    """A host that reached the proxy command unchecked (model_copy validates nothing) was pasted in as it was: in
    `sh -c "... %h"` its `;` ran a second command. %h and %r are quoted now."""
    said, marker = tmp_path / "said", tmp_path / "INJECTED"
    target = load_target(
        str(board_file(tmp_path)), [f'proxy_command=sh -c "echo %h %r %p > {said}; sleep 5"']
    ).model_copy(update={"host": f"x;touch {marker}", "user": "me;touch$IFS" + str(marker)})
    _proxy_once(target, said)
    assert said.read_text() == f"x;touch {marker} me;touch$IFS{marker} 1\n" and not marker.exists()


def test_a_link_local_zone_reaches_the_proxy_command_as_written(tmp_path: Path) -> None:
    """A link-local host (fe80::1%eth0, a board on a direct cable) was refused by the new host rule, and %h, %p, %r
    were replaced one after another: a zone such as `%rack` put there by %h was then read as %r. One pass now,
    and `%%` is a `%`, as in ssh's ProxyCommand."""
    said = tmp_path / "said"
    target = load_target(
        str(board_file(tmp_path)),
        ["host=fe80::1%rack", "user=pi", f"proxy_command=sh -c 'echo %h %r %p 100%% > {said}; sleep 5'"],
    )
    _proxy_once(target, said)
    assert said.read_text() == f"fe80::1%rack pi {target.port} 100%\n", said.read_text()


def test_a_lab_place_whose_address_has_shell_characters_is_refused() -> None:
    """A coordinator's NetworkService address `127.0.0.1;touch${IFS}LABINJ;:` (labgrid has no authentication:
    anyone who reaches its port publishes one) became the target's host and ran through the proxy command. The
    place is refused now, naming the field."""
    from edgekit.lab.acquire import place_target
    from edgekit.lab.errors import LabError
    from edgekit.lab.place import Place, Service
    from edgekit.target import Target

    template = Target(name="lab-board", proxy_command="sh -c 'nc %h %p'")
    for address, user, field in (
        ("127.0.0.1;touch${IFS}LABINJ;:", "root", "its NetworkService's address"),
        ("127.0.0.1", "root;touch${IFS}LABINJ", "its NetworkService's username"),
    ):
        service = Service(address=address, username=user, port=22, available=True, path="e/g/NetworkService")
        place = Place("pi4-03", {"board": "pi4"}, None, None, "", None, [service])
        with pytest.raises(LabError) as info:
            place_target(template, place, None)
        assert f"place 'pi4-03' of the lab is refused: {field}: " in str(info.value), info.value
        assert "it has '$'" in str(info.value), info.value


# -- a private key others can read ----------------------------------------------------------------------------------


def test_a_private_key_others_can_read_is_refused_as_ssh_refuses_it(tmp_path: Path) -> None:
    """A key file of mode 644 was used silently (ssh refuses it: UNPROTECTED PRIVATE KEY FILE). KeyFileError now,
    exit 2, with the chmod that fixes it; at 600 the key is taken (the connection to port 1 then fails, exit 1)."""
    board = board_file(tmp_path)
    key = tmp_path / "key"
    for mode in (0o644, 0o640, 0o604):
        key.chmod(mode)
        err = " ".join(named(run("targets", "check", str(board), cwd=tmp_path, timeout=60)).split())
        assert "KeyFileError" in err and f"private key {key} is open to other users (mode {mode:o}" in err, (
            err
        )
        assert f"hint: chmod 600 {key}" in err, err
    key.chmod(0o600)
    err = named(run("targets", "check", str(board), cwd=tmp_path, timeout=60), code=1)
    assert "KeyFileError" not in err and "ConnectError" in err, err
    # a key another user owns (a team's lab key, root's, group-readable): ssh takes it, and so does edgekit
    if os.getuid() == 0:
        key.chmod(0o640)
        os.chown(key, 65534, -1)  # nobody
        err = named(run("targets", "check", str(board), cwd=tmp_path, timeout=60), code=1)
        assert "KeyFileError" not in err and "ConnectError" in err, err


def test_the_ssh_keyscan_hint_runs_as_printed_with_a_space_in_the_known_hosts_path(tmp_path: Path) -> None:
    """The unknown-key hint said `ssh-keyscan -p 22 HOST >> /my keys/kh`: run as printed, it appended to `/my`
    and ran `keys/kh`. Its host and path are quoted now, as the changed-key hint's are."""
    from edgekit.transport.ssh_key_hints import record_key_hint

    known = tmp_path / "my keys" / "known hosts"
    target = load_target(str(board_file(tmp_path)), [f"known_hosts={known}"])
    hint = record_key_hint(target, "127.0.0.1", 22, "pi", None)
    command = re.search(r"then: (.*?)  \(or trust", hint)
    assert command and shlex.split(command.group(1)) == [
        "ssh-keyscan",
        "-p",
        "22",
        "127.0.0.1",
        ">>",
        str(known),
    ]
    fingerprint = re.search(
        r"\(ssh-keygen -lf (.*?)\) with", record_key_hint(target, "h", 22, None, ("x", "y"))
    )
    assert fingerprint and shlex.split(fingerprint.group(1)) == [str(known)], fingerprint


def test_ssh_fields_on_a_local_target_are_refused_naming_them(tmp_path: Path) -> None:
    """`transport: local` with `host: 1.2.3.4` and `port: 2222` measured this machine under that target's name, the
    SSH fields ignored without a word (exit 0). Refused now: each field named, exit 2; a local target without them
    (targets/local.yaml) still loads."""
    given = tmp_path / "mylocal.yaml"
    given.write_text("transport: local\nhost: 1.2.3.4\nport: 2222\n")
    err = " ".join(named(run("targets", "check", str(given), cwd=tmp_path, timeout=60)).split())
    assert "invalid target: host: SSH only: a local target (transport: local) is this machine" in err, err
    assert "; port: SSH only" in err and "hint: a local target takes none of host, port, user, key" in err, (
        err
    )
    err = " ".join(
        named(run("targets", "check", "local", "--set", "user=pi", cwd=tmp_path, timeout=60)).split()
    )
    assert "user: SSH only" in err and "(from --set user=...)" in err, err
    for field, value in (("key", "~/.ssh/id"), ("proxy_jump", "bastion"), ("connect_timeout", "5")):
        with pytest.raises(TargetError, match=f"{field}: SSH only"):
            load_target("local", {field: value})
    local = load_target("local")
    assert local.host is None and local.is_this_host


@pytest.mark.parametrize(
    "setting, says",
    [
        (
            "user=pi:hunter2SECRET",
            "user: a value with ':' (not shown: a password?) is not a user name: it has ':'",
        ),
        (
            "user=pi:hunter2 SECRET",
            "user: Value error, a value with ':' (not shown: a password?) is not a host",
        ),
        (
            "host=pi:hunter2SECRET",
            "host: a value with ':' (not shown: a password?) is not a host name or address",
        ),
        (
            "proxy_jump=pi:hunter2SECRET@127.0.0.1:2222",
            "proxy_jump: a jump host's user: a value with ':' (not shown: a password?) is not a user name",
        ),
        (
            "proxy_jump=pi@hunter2SECRET@127.0.0.1",
            "a jump host's user: a value with '@' (not shown: a password?)",
        ),
    ],
)
def test_a_password_typed_with_a_user_or_host_is_refused_and_never_repeated(
    tmp_path: Path, setting: str, says: str
) -> None:
    """`--set user=pi:hunter2SECRET` was refused as "'pi:hunter2SECRET' is not a user name" (the password on the
    console, in CI logs); `--set proxy_jump=pi:hunter2SECRET@bastion` was taken, and the password sent to the jump
    host as the user name. Each hop's user is now a user name as `user` is, and no value with ':' is repeated."""
    out = run("targets", "check", str(board_file(tmp_path)), "--set", setting, cwd=tmp_path, timeout=60)
    err = " ".join(named(out).split())
    assert "SECRET" not in out.stdout + out.stderr and "TargetError" in err and says in err, err


def test_relative_key_and_known_hosts_are_the_target_files_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`key: ../keys/k` was read from the current folder: `targets check t/board.yaml` from the file's parent worked,
    the same file checked from / said "KeyFileError: key file not found: ../keys/k". A target file's relative paths
    are now its folder's (as a recipe's are), a --set one the current folder's; a message names the absolute path."""
    keys, folder, elsewhere = tmp_path / "keys", tmp_path / "t", tmp_path / "elsewhere"
    for made in (keys, folder, elsewhere):
        made.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "k")], check=True)
    (keys / "kh").write_text("")
    board = folder / "board.yaml"
    board.write_text(
        "name: board\nhost: 127.0.0.1\nport: 1\nuser: pi\nkey: ../keys/k\nknown_hosts: ../keys/kh\nconnect_timeout: 3\n"
    )
    monkeypatch.chdir(elsewhere)
    target = load_target(str(board))
    assert (target.key, target.known_hosts) == (keys / "k", keys / "kh"), (target.key, target.known_hosts)
    assert load_target(str(board), {"key": "mine"}).key == elsewhere / "mine"  # typed here: this folder's
    out = run("targets", "check", str(board), cwd=Path("/"), timeout=60)
    said = " ".join((out.stdout + out.stderr).split())
    assert "KeyFileError" not in said and "ConnectError" in said, said  # the key was found: port 1 refused
    err = " ".join(named(run("targets", "check", str(board), "--set", "key=nokey", cwd=elsewhere)).split())
    assert f"key file not found: {elsewhere / 'nokey'}" in err, err


def test_setups_hint_names_a_target_given_as_a_path_by_its_path(tmp_path: Path) -> None:
    """A target file given as a path (`targets setup /data/my boards/good.yaml`, `name: mypi` inside) was told to
    run `edgekit targets check mypi`, which no lookup finds ("unknown target"). The hint repeats what was given."""
    from edgekit.emu.device_info import DeviceInfo
    from edgekit.emu.provision import require_installed
    from edgekit.errors import RuntimeInstallError

    folder = tmp_path / "my boards"
    folder.mkdir()
    given = folder / "good.yaml"
    given.write_text("name: mypi\nhost: 192.168.1.23\nuser: pi\nruntimes: [ncnn]\n")
    missing = DeviceInfo(raw={}, not_installed={"ncnn": "no wheel for aarch64"})
    for target, says in ((load_target(str(given)), shlex.quote(str(given))), (load_target("pi4"), "pi4")):
        with pytest.raises(RuntimeInstallError) as err:
            require_installed(target, missing)
        hint = err.value.hint or ""
        assert f"(then `edgekit targets check {says}`)" in hint, hint
        assert load_target(shlex.split(says)[0]).source == target.source  # the command finds the same file


def test_a_set_shared_with_ssh_targets_skips_a_local_targets_ssh_fields(tmp_path: Path) -> None:
    """Review of 4bcdd9f: --set applies to every --target of a deploy, so `--target my-board --target local --set
    user=pi --set io_timeout=600` (which worked before) was refused, exit 2, for local. The board gets them; local
    leaves them out with a one-line note, and is measured. Given to local targets only they are refused still, as
    are ones in a local target's file or its EDGEKIT_TARGET_<NAME>_* variables."""
    from edgekit.deploy.orchestrate import _load_targets

    out = run(
        "deploy",
        str(ROOT / "recipes" / "tiny.yaml"),
        "-f",
        "onnx-fp32",
        "-t",
        str(board_file(tmp_path)),
        "-t",
        "local",
        "--no-host",
        "--no-store",
        "--samples",
        "1",
        "--set",
        "user=pi",
        "--set",
        "io_timeout=600",
        "--json",
        str(tmp_path / "run.json"),
        cwd=tmp_path,
        timeout=600,
    )
    said = " ".join((out.stdout + out.stderr).split())
    assert out.returncode == 1 and "my-board: FAILED connect" in said, (out.returncode, said[-2000:])
    assert "local: --set user, --set io_timeout not applied here (a local target is this machine" in said, (
        said
    )
    runs = {r["target"]: r for r in json.loads((tmp_path / "run.json").read_text())["runs"]}
    assert runs["local"]["agent"]["measurements"], runs["local"]  # measured
    notes: list[str] = []
    loaded = _load_targets([str(board_file(tmp_path)), "local"], ["user=ana"], notes.append)
    assert loaded["my-board"].user == "ana" and loaded["local"].user is None and len(notes) == 1
    mine = tmp_path / "mylocal.yaml"
    mine.write_text("transport: local\n")
    with pytest.raises(TargetError, match="user: SSH only"):  # local targets only: nothing for the SSH fields
        _load_targets(["local", str(mine)], ["user=pi"], notes.append)
    with pytest.raises(TargetError, match="user: SSH only"):  # its own variables are its own: refused
        load_target("local", ["user=pi"], env={"EDGEKIT_TARGET_LOCAL_USER": "pi"}, shared=True)
    mine.write_text("transport: local\nport: 2222\n")
    with pytest.raises(TargetError, match="port: SSH only"):  # its file's too
        load_target(mine, ["port=22"], shared=True, note=notes.append)
