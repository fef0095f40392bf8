"""Bad arguments and input files end in a named error and exit 2, never a raw traceback; a silent port, a missing
key and a refused port are told apart."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def write_recipe(folder: Path, model: str, extra: str = "", name: str = "r") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmodel: {model}\ninput: {{name: input, shape: [1, 3, 8, 8]}}\n"
        f"formats: [tflite-fp32]\n{extra}"
    )
    return path


@pytest.mark.parametrize(
    "args, message",
    [
        (["deploy", str(RECIPES / "tiny.yaml"), "--target", "local", "--threads", "1,x"], "--threads"),
        (["report", "--since", "30days"], "--since"),
        (["estimate", str(RECIPES / "tiny.yaml"), "--board", "pi3"], "pi3"),
        (["bench", "/nonexistent/model.tflite", "--target", "host"], "file not found"),
        (["bench", "/nonexistent/model.txt", "--target", "host"], "not a model file"),
        (["deploy", str(RECIPES / "tiny.yaml"), "--target", "nosuch"], "unknown target"),
        (["convert", "/nonexistent/recipe.yaml"], "not found"),
        (["estimate", "/nonexistent/model.param", "--board", "pi4"], "no such model file"),
        (["profile", "/nonexistent/model.param", "--target", "pi4-emu"], "no such model file"),
        (["deploy", str(RECIPES / "tiny.yaml"), "--no-host"], "nothing to deploy to"),
        (["runs", "import", "/nonexistent/run.json"], "not a deploy result"),
        (["analyze", str(RECIPES / "tiny.yaml"), "--format", "tflite-fp32"], "is not INT8"),
        (["analyze", str(RECIPES / "tiny.yaml"), "--format", "mnn-int8"], "cannot read the layers"),
        (["runs", "import", str(RECIPES / "tiny.yaml")], "not a deploy result"),
    ],
)
def test_bad_arguments_exit_2_with_a_named_error(args: list[str], message: str, edgekit_cli) -> None:
    out = edgekit_cli(*args, timeout=120)
    assert out.code == 2, (out.code, out.stdout[-500:], out.stderr)
    assert message in out.stderr and out.first_error_line.startswith("error (")
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "content", [os.urandom(3000), b"\x08\x07\x12\x04abc\x3a\x80\x80"], ids=["random", "truncated"]
)
def test_a_random_or_truncated_onnx_is_named_and_never_cached(
    tmp_path: Path, content: bytes, edgekit_cli
) -> None:
    (tmp_path / "m.onnx").write_bytes(content)
    recipe = write_recipe(tmp_path, "{kind: onnx, path: m.onnx}")
    home = tmp_path / "home"
    out = edgekit_cli("convert", str(recipe), env={"EDGEKIT_HOME": str(home)}, timeout=120)
    assert out.code == 2 and "InputDataError" in out.stderr and "ONNX" in out.stderr, out.stderr
    assert not list((home / "cache").rglob("model.onnx")) if (home / "cache").exists() else True
    assert "Traceback" not in out.stderr


def test_a_junk_image_in_the_calibration_folder_is_named(tmp_path: Path) -> None:
    from edgekit.convert.calibration import calibration_inputs
    from edgekit.errors import InputDataError
    from edgekit.recipe import load_recipe

    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(os.urandom(500))
    recipe = load_recipe(
        write_recipe(
            tmp_path,
            "{kind: torch, builder: 'edgekit.zoo.tiny:build'}",
            "calibration: {data: {kind: images, path: imgs}}\n",
        )
    )
    with pytest.raises(InputDataError, match=r"a\.png"):
        calibration_inputs(recipe)


def test_an_unreadable_npy_is_named(tmp_path: Path) -> None:
    from edgekit.convert.calibration import calibration_inputs
    from edgekit.errors import InputDataError
    from edgekit.recipe import load_recipe

    (tmp_path / "x.npy").write_bytes(b"not an array")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for name in ("x.npy", "obj.npy"):
        with pytest.raises(
            InputDataError, match=name
        ):  # at recipe load (samples are counted) or at first read
            recipe = load_recipe(
                write_recipe(
                    tmp_path,
                    "{kind: torch, builder: 'edgekit.zoo.tiny:build'}",
                    f"calibration: {{data: {{kind: npy, path: {name}}}}}\n",
                )
            )
            calibration_inputs(recipe)


def test_an_input_too_large_to_allocate_is_refused_by_the_recipe(tmp_path: Path) -> None:
    from edgekit.errors import RecipeError
    from edgekit.recipe import load_recipe

    path = write_recipe(tmp_path, "{kind: torch, builder: 'edgekit.zoo.tiny:build'}")
    path.write_text(path.read_text().replace("[1, 3, 8, 8]", "[1, 3, 64000, 64000]"))
    with pytest.raises(RecipeError, match=r"input\.shape"):
        load_recipe(path)


def test_a_non_utf8_recipe_exits_2(tmp_path: Path, edgekit_cli) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    out = edgekit_cli("convert", str(path))
    assert out.code == 2 and "UTF-8" in out.stderr and "Traceback" not in out.stderr


@pytest.fixture()
def silent_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word (no SSH banner)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.mark.integration
def test_a_port_that_never_speaks_ssh_is_named_within_the_connect_timeout(
    pi4_emu, silent_port: int, edgekit_cli
) -> None:
    out = edgekit_cli(
        "targets",
        "check",
        "pi4",
        "--set",
        "host=127.0.0.1",
        "--set",
        f"port={silent_port}",
        "--set",
        "connect_timeout=2",
        "--set",
        f"key={pi4_emu.key}",
        timeout=60,
    )
    assert out.code == 1 and "no SSH server answered" in out.stderr, out.stderr
    assert out.seconds < 15 and "Traceback" not in out.stderr and "Exception" not in out.stderr


@pytest.fixture(params=["close", "reset", "greet-then-close"])
def dropping_port(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """A TCP port whose server drops every connection at once, as sshd does a client it refuses (MaxStartups,
    hosts.deny, fail2ban): closed (FIN), reset (RST), or closed just after an SSH greeting."""
    import struct

    mode = request.param
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except OSError:
                continue
            if mode == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            if mode == "greet-then-close":
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(4096)  # the client's greeting and key-exchange offer, then the drop
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield mode, int(server.getsockname()[1])
    stop.set()
    thread.join()
    server.close()


def test_a_port_that_drops_the_connection_at_once_is_not_called_silent(
    dropping_port: tuple[str, int], tmp_path: Path, edgekit_cli
) -> None:
    """A port that closed the connection at once (0.8 s) was reported as "no SSH server answered within 10 s
    (... sent no SSH banner)": paramiko's "Error reading SSH protocol banner" was read without the EOFError
    behind it, and a reset or a close after the greeting was "cannot reach" or an internal error. Each is now
    named as the drop it is, exit 1, at once."""
    import subprocess

    mode, port = dropping_port
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True)
    out = check_pi4(
        edgekit_cli, host="127.0.0.1", port=port, key=tmp_path / "key", known_hosts=tmp_path / "kh"
    )
    text = " ".join(out.stderr.split())
    says = (
        "closed the connection during the key exchange"
        if mode == "greet-then-close"
        else "the SSH port closed the connection before the SSH greeting (sshd refusing this client"
    )
    assert out.code == 1 and says in text, (mode, out.stderr)
    assert "no SSH server answered" not in text and "cannot reach" not in text and "internal" not in text
    # the same check against a port that refuses at once: interpreter start and imports, which a loaded machine
    # stretches; the old bug waited 10 s for a banner on top of them
    base = check_pi4(edgekit_cli, host="127.0.0.1", port=1, key=tmp_path / "key", known_hosts=tmp_path / "kh")
    assert base.code == 1 and "cannot reach" in base.stderr, base.stderr
    assert "Traceback" not in out.stderr and out.seconds < base.seconds + 5, (out.seconds, base.seconds)


def check_pi4(edgekit_cli, **fields: object):  # type: ignore[no-untyped-def]
    """`edgekit targets check pi4 --set FIELD=VALUE ...` (the shipped pi4 target pointed elsewhere)."""
    sets = [arg for name, value in fields.items() for arg in ("--set", f"{name}={value}")]
    return edgekit_cli("targets", "check", "pi4", *sets, timeout=60)


def test_a_missing_key_file_is_not_reported_as_unreachable(tmp_path: Path, edgekit_cli) -> None:
    out = check_pi4(edgekit_cli, host="127.0.0.1", port=1, key=tmp_path / "missing")
    assert out.code == 2 and "KeyFileError" in out.stderr and "missing" in out.stderr, out.stderr
    assert "cannot reach" not in out.stderr


def test_deploy_and_nightly_refuse_a_missing_key_file_before_converting(tmp_path: Path, edgekit_cli) -> None:
    """`deploy --target phone` without the key file converted every format (minutes for a real model), then
    failed at connect with exit 1 and "route phone: no artifact meets every gate (0 rejected)". The key is the
    user's input: exit 2 before any conversion, for deploy and for the nightly's target list."""
    home = tmp_path / "home"
    key = ["--set", f"key={tmp_path / 'missing'}"]
    out = edgekit_cli(
        "deploy", str(RECIPES / "tiny.yaml"), "--target", "pi4", *key, env={"EDGEKIT_HOME": str(home)}
    )
    assert out.code == 2 and "KeyFileError" in out.stderr and "key file not found" in out.stderr, out.stderr
    assert not (home / "cache").exists()  # nothing converted
    board = tmp_path / "board.yaml"
    board.write_text(f"name: board\nhost: 127.0.0.1\nuser: pi\nkey: {tmp_path / 'missing'}\n")
    out = edgekit_cli(
        "nightly",
        "--recipes",
        str(RECIPES / "tiny.yaml"),
        "--targets",
        f"pi4-emu,{board}",
        env={"EDGEKIT_HOME": str(home)},
    )
    assert out.code == 2 and "key file not found" in out.stderr, out.stderr
    assert not (home / "cache").exists()


def test_a_device_or_a_pipe_given_as_a_file_is_refused_not_read_forever(tmp_path: Path, edgekit_cli) -> None:
    """/dev/zero or a FIFO where a model or a result file goes (a hostile recipe, a wrong symlink): `convert`
    read /dev/zero as ONNX until killed and blocked forever on a FIFO, `roofline` the same on a .param, `runs
    import` read it into memory. Each is now a named error, exit 2, at once."""
    import os

    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    (tmp_path / "zero.param").symlink_to("/dev/zero")
    recipe = (RECIPES / "tiny.yaml").read_text()
    recipe = recipe.replace("  kind: torch", f"  kind: onnx\n  path: {fifo}").replace(
        "  builder: edgekit.zoo.tiny:build\n", ""
    )
    recipe = "\n".join(line for line in recipe.splitlines() if not line.startswith("  args: {num_classes"))
    (tmp_path / "hostile.yaml").write_text(recipe + "\n")
    home = {"EDGEKIT_HOME": str(tmp_path / "home")}
    cases = [
        (
            ("convert", str(tmp_path / "hostile.yaml"), "--format", "onnx-fp32"),
            "is not a regular file or folder",
        ),
        (("roofline", str(tmp_path / "zero.param"), "--board", "pi4"), "is not a regular file"),
        (("runs", "import", "/dev/zero"), "not a regular file"),
    ]
    for args, says in cases:
        out = edgekit_cli(*args, env=home, timeout=60)
        text = " ".join(out.stderr.split())
        assert out.code == 2 and says in text and out.seconds < 30, (args, out.stderr)


def test_a_refused_port_says_connection_refused(tmp_path: Path, pi4_emu, edgekit_cli) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = edgekit_cli(
        "targets",
        "check",
        "pi4",
        "--set",
        "host=127.0.0.1",
        "--set",
        f"port={port}",
        "--set",
        f"key={pi4_emu.key}",
        timeout=60,
    )
    assert out.code == 1 and "connection refused" in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_a_bad_option_value_names_the_option_alone(edgekit_cli) -> None:
    """click's own usage errors (exit 2) name the option without a made-up "(env var: 'None')"."""
    out = edgekit_cli("estimate", str(RECIPES / "tiny.yaml"), "--board", "pi4", "--threads", "0", timeout=60)
    assert out.code == 2 and "Invalid value for '--threads' / '-t': 0" in out.stderr, out.stderr
    assert "env var" not in out.stderr


def test_emu_status_shows_the_devices_named_and_refuses_an_unknown_one(edgekit_cli) -> None:
    one = edgekit_cli("emu", "status", "pi5-emu", timeout=60)
    assert one.code == 0 and "pi5-emu" in one.stdout and "pi4-emu" not in one.stdout, one.stdout
    bad = edgekit_cli("emu", "status", "pi9-emu", timeout=60)
    assert bad.code == 2 and "unknown emulated device 'pi9-emu'" in bad.stderr and "pi4-emu" in bad.stderr


@pytest.mark.parametrize("command", ["convert", "deploy", "analyze", "report", "bench"])
def test_an_output_file_that_cannot_be_written_is_refused_before_any_work(
    command: str, tmp_path: Path, edgekit_cli
) -> None:
    """--json/--html naming a folder, or a path under a file, is a usage error (exit 2) read with the command line,
    not an internal error after the conversion or the run; a missing parent folder is created."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    recipe = str(RECIPES / "tiny.yaml")
    args = {
        "convert": ["convert", recipe, "--format", "tflite-fp32", "--json"],
        "deploy": ["deploy", recipe, "--format", "tflite-fp32", "--json"],
        "analyze": ["analyze", recipe, "--format", "tflite-int8", "--json"],
        "report": ["report", "--store", f"sqlite:///{tmp_path}/s.sqlite", "--html"],
        "bench": ["bench", "/nonexistent/m.tflite", "--target", "host", "--json"],
    }[command]
    for bad, says in ((tmp_path, "is a folder"), (a_file / "out.json", "is a file, not a folder")):
        out = edgekit_cli(*args, str(bad), timeout=60)
        assert out.code == 2 and says in out.stderr, (out.code, out.stderr[-800:])
        assert "internal error" not in out.stderr + out.stdout
        if bad == tmp_path:  # the example name fits the option: an HTML report is not out.json
            assert ("report.html" if command == "report" else "out.json") in out.stderr, out.stderr
    if command == "report":
        from edgekit.store import open_store

        open_store(f"sqlite:///{tmp_path}/s.sqlite").close()  # report reads a store that exists
        made = tmp_path / "new" / "folder" / "r.html"
        out = edgekit_cli(*args, str(made), timeout=120)
        assert out.code == 0 and made.is_file(), out.stderr


def test_an_onnx_with_an_integer_input_is_refused_before_conversion(tmp_path: Path, edgekit_cli) -> None:
    """A model fed int64 ids (not float32 tensors) is named at the ONNX check, exit 2: before, the conversion ran
    and the fidelity check ended in an internal error from ONNX Runtime."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("input", TensorProto.INT64, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [1, 3, 8, 8])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(tmp_path / "ids.onnx"))
    recipe = write_recipe(tmp_path, "{kind: onnx, path: ids.onnx}")
    out = edgekit_cli("convert", str(recipe), env={"EDGEKIT_HOME": str(tmp_path / "home")}, timeout=120)
    assert out.code == 2 and "input 'input' is int64" in out.stderr and "float32" in out.stderr, out.stderr


def test_a_broken_builder_or_keras_path_is_a_recipe_error(tmp_path: Path, edgekit_cli) -> None:
    """The recipe's own code and files, named before any conversion (exit 2): a builder that raises or returns
    something that is not a model, a Keras path that is neither a .keras/.h5 file nor a SavedModel folder."""
    (tmp_path / "user_models.py").write_text(
        "def boom(**kw):\n    raise RuntimeError('kaboom in builder')\n\ndef number(**kw):\n    return 42\n"
    )
    (tmp_path / "folder").mkdir()
    (tmp_path / "weights.txt").write_text("x")
    (tmp_path / "damaged.keras").write_bytes(b"\x00" * 4096)  # a partly copied archive
    (tmp_path / "damaged.h5").write_bytes(b"PK\x03\x04" + b"\x00" * 4096)  # a .keras renamed .h5
    cases = {
        "{kind: torch, builder: 'user_models:boom'}": "user_models:boom raised RuntimeError: kaboom in builder",
        "{kind: torch, builder: 'user_models:number'}": "returned int, not a torch.nn.Module",
        "{kind: keras, path: folder}": "without saved_model.pb: not a SavedModel",
        "{kind: keras, path: weights.txt}": "neither a .keras / .h5 file nor a SavedModel folder",
        "{kind: keras, path: damaged.keras}": "not a readable Keras v3 archive",
        "{kind: keras, path: damaged.h5}": "not a readable HDF5 file",
    }
    env = {"EDGEKIT_HOME": str(tmp_path / "home"), "PYTHONPATH": str(tmp_path)}
    for i, (model, says) in enumerate(cases.items()):
        recipe = write_recipe(tmp_path, model, name=f"r{i}")
        out = edgekit_cli("convert", str(recipe), env=env, timeout=120)
        assert out.code == 2 and "RecipeError" in out.stderr and says in out.stderr, (model, out.stderr)
        assert "internal error" not in out.stderr


def test_a_host_name_that_does_not_resolve_is_named_as_such(tmp_path: Path, edgekit_cli) -> None:
    """A typo in `host` (or a .local name without mDNS) says the name has no address and how to give an IP, not
    "is the device on?"."""
    import subprocess

    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    out = check_pi4(edgekit_cli, host="no-such-board.invalid", key=key)
    assert out.code == 1 and "no address for the host name 'no-such-board.invalid'" in out.stderr, out.stderr
    assert "--set host=" in out.stderr and out.seconds < 30


def test_a_key_file_that_is_not_a_usable_private_key_is_bad_input(tmp_path: Path, edgekit_cli) -> None:
    """The public half, a passphrase-protected key or any other file given as `key` is named (exit 2) before any
    connection (port 1 would refuse), not "SSH failed" or an internal error once a device answers."""
    import subprocess

    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-f"]
    subprocess.run([*keygen, str(tmp_path / "plain"), "-N", ""], check=True)
    subprocess.run([*keygen, str(tmp_path / "locked"), "-N", "a passphrase"], check=True)
    cases = {
        tmp_path / "plain.pub": "is not a private key edgekit can read",
        tmp_path / "locked": "is protected by a passphrase",
        RECIPES / "tiny.yaml": "is not a private key edgekit can read",
    }
    for key, says in cases.items():
        out = check_pi4(edgekit_cli, host="127.0.0.1", port=1, key=key)
        assert out.code == 2 and "KeyFileError" in out.stderr and says in out.stderr, (key, out.stderr)
        assert "connection refused" not in out.stderr


def test_a_full_local_disk_is_named(tmpfs: Path, edgekit_cli) -> None:
    """edgekit's own data dir on a full disk: onnx2tf died with an empty message (its log could not be
    written either) and a write of edgekit's own was an internal OSError. Now the disk is named, exit 1."""
    home = tmpfs / "home"
    for fmt, room in (("tflite-fp32", 2_000_000), ("ncnn-fp32", 16 * 1024)):  # onnx2tf fails / ncnn's write
        (tmpfs / "filler").unlink(missing_ok=True)
        (tmpfs / "filler").write_bytes(b"\0" * max(0, shutil.disk_usage(tmpfs).free - room))
        out = edgekit_cli(
            "convert",
            str(RECIPES / "tiny.yaml"),
            "--format",
            fmt,
            env={"EDGEKIT_HOME": str(home)},
            timeout=300,
        )
        assert out.code == 1 and "internal error" not in out.stderr, (fmt, out.stderr)
        assert f"the disk holding {home}" in out.stderr and "EDGEKIT_HOME" in out.stderr, (fmt, out.stderr)
        # nothing half-written keeps the disk full: the tools' work folders and temporary files are gone
        left = [p for p in home.rglob("*") if p.parent.name == "work" or p.name.startswith(".fidelity-")]
        assert left == [], (fmt, left)


def test_an_output_file_on_a_full_disk_is_named_and_leaves_nothing_half_written(
    tmpfs: Path, edgekit_cli, tmp_path: Path
) -> None:
    """--html (or --json) on a full disk, or in a folder that cannot be made (/proc as root): was an internal
    OSError. Now OutputFileError names the file, exit 1, and no temporary file is left beside it."""
    (tmpfs / "filler").write_bytes(b"\0" * shutil.disk_usage(tmpfs).free)
    env = {"EDGEKIT_HOME": str(tmp_path / "home")}
    out = edgekit_cli("report", "--since", "30d", "--html", str(tmpfs / "r.html"), env=env)
    assert out.code == 1 and "error (OutputFileError)" in out.stderr, out.stderr
    assert f"cannot write {tmpfs / 'r.html'}" in out.stderr and "No space left" in out.stderr, out.stderr
    assert sorted(p.name for p in tmpfs.iterdir()) == ["filler"]
    out = edgekit_cli("report", "--since", "30d", "--html", "/proc/edgekit-none/r.html", env=env)
    assert out.code in (1, 2) and "internal error" not in out.stderr and "/proc" in out.stderr, out.stderr


def test_text_that_looks_like_terminal_markup_is_printed_as_text(tmp_path: Path, edgekit_cli) -> None:
    """rich reads `[...]` as markup: a path or a device's error holding `[/x]` raised MarkupError, so a named
    error became a traceback (exit 1) and `runs show` of such a run crashed. Both print the text as it is."""
    from datetime import UTC, datetime

    from edgekit.report.synthetic import synthetic_result

    folder = tmp_path / "[/x] [red]"  # the folders "[" and "x] [red]"
    folder.mkdir(parents=True)
    out = edgekit_cli("convert", str(folder / "r.yaml"))
    assert out.code == 2 and "Traceback" not in out.stderr, out.stderr
    assert f"error (RecipeError): {folder / 'r.yaml'}: recipe file not found" in out.stderr, out.stderr

    said = "bad value [/] and [/x] and [red]red[/red]"
    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC), rng=np.random.default_rng(0), targets=("pi4",), threads=(1,)
    )
    for run in result.runs:
        run.status, run.error = "failed", said
        for m in run.agent.measurements if run.agent else []:
            m.status, m.error = "failed", said
    (tmp_path / "r.json").write_text(result.model_dump_json())
    env = {"EDGEKIT_HOME": str(tmp_path / "home")}
    assert edgekit_cli("runs", "import", str(tmp_path / "r.json"), env=env).code == 0
    for args in (("runs",), ("runs", "show", "1")):
        shown = edgekit_cli(*args, env={**env, "COLUMNS": "400"})
        assert shown.code == 0 and "Traceback" not in shown.stderr, shown.stderr
    assert said in shown.stdout, shown.stdout  # every bracket shown, none taken as a style


def test_an_output_option_never_writes_over_a_file_of_another_kind(tmp_path: Path, edgekit_cli) -> None:
    """`report --html pyproject.toml` or `deploy --json recipe.yaml` (a typo) wrote over the file; an existing
    file is written over only when it is of the kind the option writes (an earlier output)."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text((RECIPES / "tiny.yaml").read_text())
    store = tmp_path / "results.sqlite"
    store.write_bytes(b"SQLite format 3\0")
    env = {"EDGEKIT_HOME": str(tmp_path / "home")}
    for args, victim in (
        (("report", "--html", str(recipe)), recipe),
        (("report", "--markdown", str(store)), store),
        (("deploy", str(recipe), "--json", str(recipe)), recipe),
    ):
        before = victim.read_bytes()
        out = edgekit_cli(*args, env=env)
        assert out.code == 2 and "is an existing file that is not" in out.stderr, (args, out.stderr)
        assert victim.read_bytes() == before
    earlier = tmp_path / "report.html"
    earlier.write_text("an earlier report")
    assert edgekit_cli("report", "--html", str(earlier), env=env).code == 0
    assert "an earlier report" not in earlier.read_text()
    # a device or a named pipe (`--markdown /dev/full` as root replaced the device with a regular file)
    pipe = tmp_path / "pipe.md"
    os.mkfifo(pipe)
    for option in ("--markdown", "--html", "--json"):
        args = (
            ("report", option, str(pipe))
            if option != "--json"
            else ("deploy", str(recipe), "--json", str(pipe))
        )
        out = edgekit_cli(*args, env=env)
        assert out.code == 2 and "is not a regular file" in out.stderr, (args, out.stderr)
        assert stat.S_ISFIFO(pipe.lstat().st_mode)
    from edgekit.errors import OutputFileError
    from edgekit.paths import write_atomic

    with pytest.raises(
        OutputFileError, match="not a regular file"
    ):  # the writer refuses too, whoever calls it
        write_atomic(pipe, "text")
    assert stat.S_ISFIFO(pipe.lstat().st_mode)


def test_an_input_shape_the_pytorch_model_cannot_take_is_a_recipe_error(tmp_path: Path, edgekit_cli) -> None:
    """input.shape with 1 channel for a 3-channel model: was ConversionError (exit 1, "torch.onnx.export ...
    failed"); the recipe is what is wrong: RecipeError naming input.shape, exit 2."""
    import yaml

    raw = yaml.safe_load((RECIPES / "tiny.yaml").read_text())
    raw["input"]["shape"] = [1, 1, 32, 32]
    raw["input"].pop("preprocess", None)  # its 3-value mean would be refused first
    recipe = tmp_path / "one-channel.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    out = edgekit_cli(
        "convert", str(recipe), "--format", "ncnn-fp32", env={"EDGEKIT_HOME": str(tmp_path / "h")}
    )
    assert out.code == 2 and "error (RecipeError)" in out.stderr, out.stderr
    assert "field `input.shape`" in out.stderr and "[1, 1, 32, 32]" in out.stderr, out.stderr


def _conv_param(folder: Path) -> Path:
    """A one-convolution ncnn model (3 -> 4 channels, 3x3) with zero weights."""
    folder.mkdir(parents=True, exist_ok=True)
    param = folder / "model.param"
    param.write_text(
        "7767517\n2 2\nInput in0 0 1 in0 0=32 1=32 2=3\nConvolution conv0 1 1 in0 out0 0=4 1=3 4=1 5=1 6=108\n"
    )
    param.with_suffix(".bin").write_bytes(b"\0" * 4 * (1 + 108 + 4))
    return param


def _conv_onnx(path: Path, dims: list[int | str]) -> Path:
    """A one-convolution ONNX model (3 -> 4 channels, 3x3) whose input has `dims` (a name: a free dimension)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[3, 3])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10  # what onnxruntime 1.23 reads (onnx 1.19 writes 12; bench refuses that first)
    onnx.save(model, str(path))
    return path


def test_input_shapes_a_model_cannot_take_are_usage_errors(tmp_path: Path, edgekit_cli) -> None:
    """Found by a new-user probe: '1,3,x,224' was read as [1, 3, 224]; 12 dimensions crashed inside ncnn (an
    internal error); bench took a channel count or a size the model cannot take and failed on the device (exit
    1); roofline ignored --input-shape on ONNX. Each is bad input now: exit 2, named, before any run."""
    param = _conv_param(tmp_path / "ncnn")
    cases = [
        (("roofline", str(param), "--board", "pi4", "--input-shape", "1,3,x,32"), "expected integers"),
        (("estimate", str(param), "--board", "pi4", "--input-shape", "1,3,32,32,1,1,1"), "at most 6"),
        (
            ("roofline", str(param), "--board", "pi4", "--input-shape", "1,2,3,32,32,2"),
            "at most 4 dimensions",
        ),
        (("bench", str(param), "--target", "host", "--shape", "1,5,32,32"), "has 5 channels"),
    ]
    fixed = _conv_onnx(tmp_path / "fixed.onnx", [1, 3, 32, 32])
    cases.append((("roofline", str(fixed), "--board", "pi4", "--input-shape", "1,3,64,64"), "does not fit"))
    cases.append((("bench", str(fixed), "--target", "host", "--shape", "1,3,64,64"), "does not fit"))
    corrupt = tmp_path / "corrupt" / "model.param"
    corrupt.parent.mkdir()
    corrupt.write_text("not a param\n")
    corrupt.with_suffix(".bin").write_bytes(b"\0" * 16)
    cases.append((("bench", str(corrupt), "--target", "host", "--shape", "1,3,32,32"), "not an ncnn .param"))
    for args, says in cases:
        out = edgekit_cli(*args, timeout=120)
        assert out.code == 2 and says in out.stderr, (args, out.code, out.stderr[-1500:])
        assert "Traceback" not in out.stderr and "internal error" not in out.stderr
    # a free dimension takes the given value: the multiply-adds of a 3x3 convolution, 3 -> 4 channels, no padding
    free = _conv_onnx(tmp_path / "free.onnx", [1, 3, "h", "w"])
    for side in (32, 64):
        shape = f"1,3,{side},{side}"
        out = edgekit_cli("roofline", str(free), "--board", "pi4", "--input-shape", shape, "--json")
        assert out.code == 0, out.stderr
        assert json.loads(out.stdout)["roofline"]["macs"] == 4 * (side - 2) ** 2 * 27


def test_report_since_longer_ago_than_1970_is_all_history(tmp_path: Path, edgekit_cli) -> None:
    """`--since 99999999999d` was an internal error (year out of range); it means everything the store holds."""
    env = {"EDGEKIT_HOME": str(tmp_path / "home")}
    out = edgekit_cli("report", "--since", "99999999999d", "--markdown", str(tmp_path / "s.md"), env=env)
    assert out.code == 0 and "Traceback" not in out.stderr, out.stderr


def test_runs_import_refuses_a_bad_time_or_thread_count_as_bad_input(tmp_path: Path, edgekit_cli) -> None:
    """A hand-edited result with `started_at: banana` was a StoreError (exit 1) from inside the store, and
    `threads: -4` was recorded and shown; both are the file's fault: exit 2, nothing imported."""
    env = {"EDGEKIT_HOME": str(tmp_path / "home")}
    good = {"recipe": "t", "recipe_path": "r.yaml", "recipe_sha256": "0", "started_at": "2026-12-01T10:00:00"}
    measurement = {"artifact": "ncnn-fp32", "format": "ncnn-fp32", "runtime": "ncnn", "status": "ok"}
    agent = {
        "started_at": "2026-12-01T10:00:00",
        "facts_before": {"machine": "x86_64", "cores": 2, "python": "3"},
    }
    bad_threads = {
        **good,
        "runs": [
            {
                "target": "host",
                "kind": "local",
                "emulated": False,
                "status": "ok",
                "agent": {**agent, "measurements": [{**measurement, "threads": -4}]},
            }
        ],
    }
    for content, says in (({**good, "started_at": "banana"}, "started_at"), (bad_threads, "threads")):
        path = tmp_path / "r.json"
        path.write_text(json.dumps(content))
        out = edgekit_cli("runs", "import", str(path), env=env)
        assert out.code == 2 and "not a deploy result" in out.stderr and says in out.stderr, out.stderr
    path.write_text(json.dumps(good))
    assert edgekit_cli("runs", "import", str(path), env=env).code == 0  # the same file, well formed


def test_an_empty_onnx_or_tflite_is_named_as_unreadable(tmp_path: Path, edgekit_cli) -> None:
    """An empty .onnx parsed as a model with no graph ("this graph has none (no convolution ...)"), an empty
    .tflite gave the interpreter's "model_path or model_content must be specified"."""
    for name, says in (("m.onnx", "no graph nodes"), ("m.tflite", "the file is empty")):
        (tmp_path / name).write_bytes(b"")
        out = edgekit_cli("roofline", str(tmp_path / name), "--board", "pi4")
        assert out.code == 2 and "not a readable" in out.stderr and says in out.stderr, out.stderr


def test_a_dash_for_an_output_file_is_refused_not_written_as_a_file(tmp_path: Path, edgekit_cli) -> None:
    """`convert --json -` (stdout, as many tools read it) wrote a file named '-' in the current folder."""
    env = {"EDGEKIT_HOME": str(tmp_path / "home")}
    for args in (
        ("convert", str(RECIPES / "tiny.yaml"), "--json", "-"),
        ("report", "--html", "-"),
    ):
        out = edgekit_cli(*args, env=env, cwd=tmp_path)
        assert out.code == 2 and "'-' is not standard output here" in out.stderr, (args, out.stderr)
    assert not (tmp_path / "-").exists()
