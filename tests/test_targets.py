"""Target files: loading, overrides (CLI and environment), ~/.ssh/config aliases, errors, CLI listing."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import procs
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from edgekit.errors import TargetError
from edgekit.target import Target, TransportKind, list_target_names, load_target
from edgekit.target.host_names import parse_hop
from edgekit.transport import open_transport

SSH_CONFIG = """
Host mypi
  HostName 10.20.30.40
  User bob
  Port 2202
  IdentityFile ~/.ssh/mypi_key
"""


def _write(tmp_path: Path, text: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_repo_target_loads() -> None:
    names = list_target_names()
    for required in ("pi4", "pi5", "phone", "local", "pi4-emu", "pi5-emu", "phone-emu"):
        assert required in names
    for name in names:
        target = load_target(name, ssh_config=Path("/nonexistent"))
        assert isinstance(target, Target) and target.name == name
    assert load_target("phone", ssh_config=Path("/nonexistent")).port == 8022
    assert load_target("phone", ssh_config=Path("/nonexistent")).python == "python"
    assert load_target("pi4-emu").emulated.cpu == "cortex-a72"
    assert load_target("pi5-emu").emulated.cpu == "cortex-a76"
    assert load_target("local").transport is TransportKind.LOCAL


def test_cli_overrides_are_typed_and_nested() -> None:
    t = load_target(
        "pi4",
        ["host=192.168.1.20", "port=2222", "accept_new=true", "user=alice"],
        ssh_config=Path("/nonexistent"),
    )
    assert (t.host, t.port, t.accept_new, t.user) == ("192.168.1.20", 2222, True, "alice")
    e = load_target("pi4-emu", {"emulated.counting": "true"})
    assert e.emulated.counting is True and e.emulated.cpu == "cortex-a72"


def test_environment_overrides_and_cli_wins() -> None:
    env = {
        "EDGEKIT_TARGET_PI4_HOST": "10.0.0.7",
        "EDGEKIT_TARGET_PI4_PORT": "2200",
        "EDGEKIT_TARGET_PI5_HOST": "not-me",
    }
    t = load_target("pi4", env=env, ssh_config=Path("/nonexistent"))
    assert (t.host, t.port) == ("10.0.0.7", 2200)
    t = load_target("pi4", ["port=2300"], env=env, ssh_config=Path("/nonexistent"))
    assert (t.host, t.port) == ("10.0.0.7", 2300)
    # pi4-emu's variables are its own, not pi4's (they share the prefix EDGEKIT_TARGET_PI4_)
    assert load_target("pi4", env={"EDGEKIT_TARGET_PI4_EMU_EMULATED__COUNTING": "false"}).emulated is None
    nested = load_target("pi4-emu", env={"EDGEKIT_TARGET_PI4_EMU_EMULATED__COUNTING": "true"})
    assert nested.emulated.counting is True


def test_ssh_config_alias_is_honoured(tmp_path: Path) -> None:
    cfg = _write(tmp_path, SSH_CONFIG, "ssh_config")
    t = load_target("pi4", ["host=mypi"], ssh_config=cfg)
    assert (t.host, t.user, t.port) == ("10.20.30.40", "bob", 2202)
    assert t.key == Path.home() / ".ssh" / "mypi_key"
    explicit = load_target("pi4", ["host=mypi", "user=carol", "port=22"], ssh_config=cfg)
    assert (explicit.host, explicit.user, explicit.port) == ("10.20.30.40", "carol", 22)
    other = load_target("pi4", ssh_config=cfg)  # not an alias: the file's values stay
    assert (other.host, other.user, other.port) == ("raspberrypi.local", "pi", 22)


def test_ssh_config_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKIT_SSH_CONFIG", str(_write(tmp_path, SSH_CONFIG, "cfg")))
    assert load_target("pi4", ["host=mypi"]).host == "10.20.30.40"


@pytest.mark.parametrize(
    "text, match",
    [
        ("name: x\ntransport: ssh\nhost: h\nhots: typo\n", "hots"),
        ("name: x\ntransport: serial\n", "transport"),
        ("name: x\nhost: h\nport: 70000\n", "port"),
        ("name: x\nemulated: {cpu: cortex-a72}\n", "emulated.device"),
        ("- a\n- b\n", "mapping"),
        ("name: [unclosed\n", "YAML"),
        # a name that leaves the data dir: a deploy made a folder outside it and a lock in the current folder
        ('name: "../../tmp/escaped"\ntransport: local\n', "name"),
        ('name: ""\ntransport: local\n', "name"),
        # a password in the host field went into every message, --json, the store and the report
        ('name: x\nhost: "pi:hunter2@127.0.0.1"\n', "no '@'"),
        ("name: x\nhost: h\nuser: pi@h\n", "no '@'"),
        # an infinite timeout is a hang
        ("name: x\nhost: h\nconnect_timeout: .inf\n", "connect_timeout"),
        ("name: x\nhost: h\nio_timeout: .inf\n", "io_timeout"),
        # a misspelt runtime was taken, and `targets setup` on a board dropped it silently
        ("name: x\nhost: h\nruntimes: [ncnn, ncnnn]\n", "runtimes: unknown runtime 'ncnnn'"),
    ],
)
def test_bad_target_files_are_named_errors(tmp_path: Path, text: str, match: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(TargetError, match=match) as info:
        load_target(path, ssh_config=Path("/nonexistent"))
    assert str(path) in str(info.value) and "hunter2" not in str(info.value)


def test_a_folder_given_as_a_target_is_named_as_one(tmp_path: Path) -> None:
    """`--target targets/` said "target file not found" of a folder that exists."""
    with pytest.raises(TargetError, match="this is a folder, not a target file") as info:
        load_target(str(tmp_path) + "/")
    assert "edgekit targets" in (info.value.hint or "")
    with pytest.raises(TargetError, match="target file not found"):
        load_target(str(tmp_path / "nope.yaml"))


def test_unknown_target_and_bad_override() -> None:
    with pytest.raises(TargetError, match=r"known targets: .*pi4") as err:
        load_target("pi9")
    repo_targets = Path(__file__).resolve().parent.parent / "targets"
    assert str(err.value).startswith(f"{repo_targets}: ")  # the folder itself, not edgekit/targets (a link)
    assert load_target("pi4-emu").source == str(repo_targets / "pi4-emu.yaml")
    with pytest.raises(TargetError) as err:  # `deploy -t 4` as `estimate -t 4` means threads
        load_target("4")
    assert "`-t 4` names a target here; for 4 threads give --threads 4" in (err.value.hint or "")
    with pytest.raises(TargetError, match="field=value"):
        load_target("pi4", ["host"])
    # an empty host on an emulated target ran the deploy into "device not running"; '-o...' is no host name
    for name, override in [
        ("pi4", "host="),
        ("pi4-emu", "host="),
        ("pi4", "host=-oProxyCommand=x"),
        ("pi4", "user="),
    ]:
        with pytest.raises(TargetError, match="is not a host name, address or user name"):
            load_target(name, [override], ssh_config=Path("/nonexistent"))


def test_emulated_target_not_running_says_how_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGEKIT_EMU_HOME", str(tmp_path / "emu"))  # a device that was never started
    target = load_target("pi5-emu")
    assert target.host is None
    with pytest.raises(TargetError, match="edgekit emu up pi5-emu"):
        open_transport(target)


def test_targets_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "transport: ssh\nhost: board.lan\nuser: me\n", "myboard.yaml")
    monkeypatch.setenv("EDGEKIT_TARGETS_DIR", str(tmp_path))
    t = load_target("myboard", ssh_config=Path("/nonexistent"))
    assert (t.name, t.host, t.work_dir, t.python) == ("myboard", "board.lan", "~/edgekit", "python3")


def test_cli_lists_targets_and_every_help_has_an_example() -> None:
    from edgekit.cli import app

    runner = CliRunner()
    listing = runner.invoke(app, ["targets"], terminal_width=200)
    assert listing.exit_code == 0, listing.output
    for name in ("pi4-emu", "cortex-a72", "local", "phone"):
        assert name in listing.output
    lab_row = next(line for line in listing.output.splitlines() if "lab-pi4" in line)
    assert "lab board=pi4 via" in lab_row and "this machine" not in lab_row  # a board of the lab
    assert "labgrid.lab:20408" in listing.output  # the coordinator (it may fold onto the next line)
    alias = runner.invoke(app, ["targets", "list"], terminal_width=200)  # what people type
    assert alias.exit_code == 0 and alias.output == listing.output
    for argv in (
        ["targets"],
        ["targets", "check"],
        ["targets", "setup"],
        ["emu"],
        ["emu", "build"],
        ["emu", "up"],
        ["emu", "status"],
        ["emu", "down"],
    ):
        out = runner.invoke(app, [*argv, "--help"], terminal_width=200)
        assert out.exit_code == 0 and "Example: edgekit" in out.output, argv


def test_an_invalid_override_names_where_it_came_from() -> None:
    """`--set port=abc` or EDGEKIT_TARGET_PI4_PORT=abc read as if targets/pi4.yaml itself were broken
    ("invalid target: port: Input should be a valid integer"); a typo'd field said "Extra inputs are not
    permitted". Each problem now names its origin; the file's own fields are not blamed on an override."""
    cases = [
        (["port=abc"], {}, "port: Input should be a valid integer", "(from --set port=...)"),
        (["foo=bar"], {}, "foo: unknown field", "(from --set foo=...)"),
        (
            [],
            {"EDGEKIT_TARGET_PI4_EMU_EMULATED__COUNTING": "maybe"},
            "emulated.counting",
            "(from EDGEKIT_TARGET_PI4_EMU_EMULATED__COUNTING)",
        ),
    ]
    for overrides, env, problem, origin in cases:
        with pytest.raises(TargetError) as err:
            load_target("pi4-emu", overrides, env=env)
        assert problem in str(err.value) and origin in str(err.value), str(err.value)
    # the hint lists the fields of the section the typo is in, not the target's top level
    with pytest.raises(TargetError) as err:
        load_target("pi4-emu", ["emulated.cache=false"], env={})
    assert err.value.hint == "fields of emulated: device, cpu, counting, caches"
    with pytest.raises(TargetError) as err:
        load_target("pi4-emu", ["prot=22"], env={})
    assert err.value.hint.startswith("fields: name, description, transport, host, port")


def test_host_as_a_target_name_points_to_local() -> None:
    """Deploy tables name the host 'host'; its target file is 'local': typing --target host is answered."""
    with pytest.raises(TargetError, match="this machine is 'local'") as err:
        load_target("host")
    assert err.value.exit_code == 2
    assert load_target("local").transport.value == "local"


def test_an_emulated_board_counts_with_its_caches_unless_told_not_to(tmp_path: Path) -> None:
    """pi4-emu / pi5-emu hand the plugin their board's cache levels; phone-emu (no board) and
    `emulated.caches=false` count without them."""
    from types import SimpleNamespace

    from edgekit.deploy.agent_run import AgentRunner
    from edgekit.emu.plugin import build as plugin_build

    if not plugin_build.is_built():
        pytest.fail("the counting plugin is not built: make setup builds it")

    def plugin_args(name: str, *overrides: str) -> list[str]:
        target = load_target(name, list(overrides), env={})  # the defaults (the suite turns caches off)
        runner = SimpleNamespace(target=target, local_dir=tmp_path / name)
        env = AgentRunner.counting_env(runner)  # type: ignore[arg-type]
        assert env is not None
        return env["EDGEKIT_QEMU_PLUGIN"].split(",")[2:]

    assert plugin_args("pi4-emu") == ["l1=32768:2", "l2=1048576:16", "pf=1"]
    # the Pi 5's core is the one llvm-mca times: each window's blocks are listed too (emu/plugin/cycles.py)
    blocks = f"blocks={(tmp_path / 'pi5-emu' / 'blocks.txt').resolve()}"
    assert plugin_args("pi5-emu") == ["l1=65536:4", "l2=524288:8", "l3=2097152:16", "pf=1", blocks]
    assert plugin_args("pi4-emu", "emulated.caches=false") == []
    assert plugin_args("pi5-emu", "emulated.caches=false") == []
    assert plugin_args("phone-emu") == []


def test_an_infinite_timeout_given_on_the_command_line_is_refused() -> None:
    """`--set connect_timeout=1e999` hung a connect to a silent port (the file's `.inf` is in the list above)."""
    with pytest.raises(TargetError, match="connect_timeout"):
        load_target("pi4", ["connect_timeout=1e999"], ssh_config=Path("/nonexistent"))


def test_a_known_hosts_file_that_cannot_be_read_is_the_targets_error(tmp_path: Path) -> None:
    """A folder, a path under a file or a malformed line as `known_hosts` were a ConnectError with the hint "is the
    device on?" (exit 1) or an internal error (paramiko's InvalidHostKey): the target file is what is wrong."""
    from edgekit.transport.ssh_keys import checked_client

    bad_line = tmp_path / "kh"
    bad_line.write_text("[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\n")  # truncated key
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    for known_hosts, says in (
        (tmp_path, "not a file"),
        (a_file / "kh", "is a file, not a folder"),
        (bad_line, "malformed"),
    ):
        target = load_target(
            "pi4", [f"known_hosts={known_hosts}", "host=127.0.0.1"], ssh_config=Path("/nonexistent")
        )
        with pytest.raises(TargetError, match=says) as err:
            checked_client(target)
        assert err.value.exit_code == 2 and "known_hosts" in str(err.value)


def test_targets_are_listed_base_first_in_name_order(tmp_path: Path) -> None:
    """`edgekit targets` listed phone-emu before phone and pi4-emu before pi4 (file names sorted: '-' before
    '.'), and a user's EDGEKIT_TARGETS_DIR names all before the shipped ones. Names are now in one order, a
    base before its variants, numbers by value; a user's file still shadows the shipped one of its name."""
    import os
    import subprocess

    _write(tmp_path, "transport: ssh\nhost: my-own-pi4.lan\n", "pi4.yaml")  # shadows the shipped pi4
    _write(tmp_path, "transport: ssh\nhost: rack.lan\n", "pi10.yaml")
    _write(tmp_path, "transport: ssh\nhost: bench.lan\n", "pi4-b.yaml")
    _write(tmp_path, "transport: ssh\nhost: aaa.lan\n", "aaa.yaml")
    env = {**os.environ, "EDGEKIT_TARGETS_DIR": str(tmp_path), "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "targets", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split("│")[1].strip() for line in out.stdout.splitlines() if line.count("│") > 2]
    names = [r for r in rows if r and r != "name"]
    expected = ["aaa", "lab-pi4", "lab-pi5", "local", "phone", "phone-emu", "pi4", "pi4-b", "pi4-emu"]
    assert names == [*expected, "pi5", "pi5-emu", "pi10"], out.stdout
    pi4_row = next(
        line
        for line in out.stdout.splitlines()
        if line.count("│") > 2 and line.split("│")[1].strip() == "pi4"
    )
    assert "my-own-pi4.lan" in pi4_row


def test_a_misspelt_runtime_is_refused_naming_the_field_and_the_runtimes_edgekit_knows() -> None:
    """`targets check phone-emu --set 'runtimes=[ncnnn]'` exited 0, where every other misspelt field is refused:
    `runtimes:` entries are checked against the runtime registry, with the closest name and the valid ones."""
    import subprocess

    from edgekit.runtimes import device_packages

    registry = [p.module for p in device_packages()]
    with pytest.raises(TargetError) as err:
        load_target("phone-emu", ["runtimes=[ncnnn, mnn, openvino]"])
    said = str(err.value)
    assert "runtimes: unknown runtimes 'ncnnn' (did you mean ncnn?), 'mnn' (did you mean MNN?)" in said, said
    assert "(from --set runtimes=...)" in said and "'openvino'" not in said and err.value.exit_code == 2
    assert err.value.hint == f"runtimes: lists Python modules: {', '.join(registry)}"
    for name in registry:  # each module of the registry is a valid entry
        assert load_target("phone-emu", [f"runtimes=[{name}]"]).runtimes == [name]
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "targets", "check", "phone-emu", "--set", "runtimes=[ncnnn]"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 2 and "error (TargetError)" in out.stderr and "did you mean ncnn?" in out.stderr
    assert "hint: runtimes: lists Python modules: numpy, ai_edge_litert" in out.stderr


def test_an_emulated_cpu_the_device_does_not_run_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """`emulated.cpu` (file, --set or environment) was accepted whatever it said (cortex-a53, bogus) and shown by
    `edgekit targets` while the device ran its own core: refused by name (exit 2) before the device is used."""
    from typer.testing import CliRunner

    from edgekit.cli import app
    from edgekit.emu.device import ensure_device, running_target
    from edgekit.errors import TargetError

    for wrong in (
        load_target("phone-emu", ["emulated.cpu=cortex-a53"]),
        load_target("pi4-emu", ["emulated.cpu=x"]),
    ):
        with pytest.raises(TargetError, match=r"emulated\.cpu: \S+ runs cortex-a7[26]"):
            running_target(wrong)
        with pytest.raises(TargetError, match="cannot change it"):
            ensure_device(wrong)  # before anything is started
    assert (
        running_target(load_target("phone-emu")).emulated is not None
    )  # the shipped files state their cores
    monkeypatch.setenv("EDGEKIT_TARGET_PHONE_EMU_EMULATED__CPU", "cortex-a53")
    listing = CliRunner().invoke(app, ["targets"], terminal_width=250)
    row = next(line for line in listing.output.splitlines() if "phone-emu" in line)
    assert "invalid" in row and "emulated" not in row, listing.output  # it listed the device as cortex-a53


def test_set_of_a_block_the_target_does_not_have_names_the_cause() -> None:
    """`deploy --target phone-emu --target phone --set emulated.counting=false`: --set applies to every target, and
    phone said "emulated.device: Field required; emulated.cpu: Field required". It says phone is not emulated and
    how to set the field for one target."""
    with pytest.raises(
        TargetError, match=r"--set emulated\.counting: phone is not an emulated target"
    ) as err:
        load_target("phone", ["emulated.counting=false"])
    assert "EDGEKIT_TARGET_" in (err.value.hint or "")
    with pytest.raises(TargetError, match="pi4 is not a lab target"):
        load_target("pi4", ["lab.wait_s=5"])
    assert load_target("phone-emu", ["emulated.counting=false"]).emulated.counting is False  # type: ignore[union-attr]
    assert load_target("lab:board=pi4", ["lab.wait_s=5"]).lab.wait_s == 5  # type: ignore[union-attr]


def test_a_timeout_under_a_second_is_refused_as_bad_input_not_blamed_on_the_device() -> None:
    """`--set io_timeout=0.001` was accepted: every keepalive then "did not answer", and the run failed with a
    frozen device (exit 1). Under a second is refused when the target is loaded, naming the field."""
    for field in ("io_timeout", "connect_timeout"):
        with pytest.raises(TargetError, match=rf"{field}: Input should be greater than or equal to 1"):
            load_target("pi4", [f"{field}=0.001"])
        assert getattr(load_target("pi4", [f"{field}=1"]), field) == 1.0


def test_proxy_jump_hops_parse_as_ssh_j_reads_them() -> None:
    t = Target(name="b", host="board", proxy_jump=" ops@bastion:2222, gw ,admin@[::1], 10.0.0.1 ")
    assert t.jump_hops == [
        ("ops", "bastion", 2222),
        (None, "gw", 22),
        ("admin", "::1", 22),
        (None, "10.0.0.1", 22),
    ]
    assert Target(name="b", host="board").jump_hops == []
    # an IPv6 hop: the address without ssh's brackets (paramiko resolves "::1", not "[::1]"), its port read
    assert Target(name="b", host="board", proxy_jump="[fe80::1]:2200,::1").jump_hops == [
        (None, "fe80::1", 2200),
        (None, "::1", 22),
    ]
    assert parse_hop("a@b@c:2200") == ("a@b", "c", 2200)  # the last @, as ssh -J reads it
    with pytest.raises(ValidationError, match="a jump host's user"):  # a hop's user is a user name, as `user`
        Target(name="b", host="board", proxy_jump="a@b@c:2200")


def test_a_target_folder_and_fields_with_brackets_are_listed_as_written(tmp_path: Path) -> None:
    """rich read `[red]` as markup: a broken target file in `/data/t[x]/` was listed as `/data/t/bad.yaml: ...`
    and an expected CPU `Cortex[red]-A72` as `Cortex-A72` in red. Both print as written; `invalid` stays red."""
    import os
    import subprocess

    folder = tmp_path / "t[x]"
    folder.mkdir()
    _write(folder, "transport: ssh\nhost: [oops\n", "bad.yaml")
    _write(folder, "transport: ssh\nhost: my.lan\nexpected_cpu: Cortex[red]-A72\n", "mine.yaml")
    env = {**os.environ, "EDGEKIT_TARGETS_DIR": str(folder), "COLUMNS": "300"}
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "targets"], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    rows = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if line.count("│") > 2}
    assert f"{folder / 'bad.yaml'}: not valid YAML" in rows["bad"], out.stdout
    assert "Cortex[red]-A72" in rows["mine"], out.stdout


def test_formats_names_a_target_given_as_a_path_with_brackets_as_written(tmp_path: Path) -> None:
    """`edgekit formats --target /data/f[x]/loc[red].yaml` headed its column `/data/f/loc.yaml`, in red."""
    import os
    import subprocess

    folder = tmp_path / "f[x]"
    folder.mkdir()
    given = _write(folder, "name: loc\ntransport: local\nruntimes: [ncnn]\n", "loc[red].yaml")
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "formats", "--target", str(given)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert str(given) in out.stdout, out.stdout


_cli = partial(procs.run, columns=200, timeout=120)


def test_options_that_would_change_nothing_are_refused_not_dropped(tmp_path: Path) -> None:
    """Accepted without a word: EDGEKIT_TARGETS_DIR naming a missing folder or a file (searched nowhere),
    `formats --set` without a target (it overrides a target's fields), `deploy --no-store --store X`."""
    for bad, said in (
        (tmp_path / "nowhere", "no such folder"),
        (Path("/etc/passwd"), "is a file, not a folder"),
    ):
        out = _cli("targets", "list", EDGEKIT_TARGETS_DIR=str(bad), EDGEKIT_HOME=str(tmp_path / "home"))
        assert out.returncode == 2 and f"EDGEKIT_TARGETS_DIR={bad}: {said}" in out.stderr, out.stderr
    out = _cli("formats", "--set", "port=1", EDGEKIT_HOME=str(tmp_path / "home"))
    assert out.returncode == 2 and "give the target with --target" in out.stderr, out.stderr
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
    out = _cli(
        "deploy",
        str(recipe),
        "--no-store",
        "--store",
        str(tmp_path / "x.db"),
        EDGEKIT_HOME=str(tmp_path / "home"),
    )
    assert out.returncode == 2 and "--no-store and --store" in out.stderr, out.stderr
    assert not (tmp_path / "x.db").exists()


def test_formats_of_a_target_not_at_hand_are_what_its_file_lists_and_say_so(tmp_path: Path) -> None:
    """`edgekit formats --target phone` (README) needed the phone: a missing key was exit 2, an unreachable host
    exit 1, and nothing said what the target lists. Now its column is the file's runtimes, marked as not probed."""
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    home = str(tmp_path / "home")
    for sets, why in (
        (["--set", "key=/nonexistent/key"], "key file not found"),
        (["--set", f"key={key}", "--set", "host=127.0.0.1", "--set", "port=1"], "127.0.0.1:1"),
    ):
        out = _cli("formats", "--target", "phone", *sets, EDGEKIT_HOME=home)
        assert out.returncode == 0, out.stderr
        rows = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if line.count("│") > 5}
        assert rows["ncnn-fp32"].rstrip("│ ").endswith("listed"), out.stdout  # phone.yaml lists ncnn
        assert "not listed" in rows["mnn-fp32"], out.stdout  # and not MNN
        said = " ".join(out.stdout.split())
        assert "phone was not probed" in said and why in said, said
        assert "what the target file lists (tflite_runtime, ncnn, onnxruntime, cv2)" in said, said
