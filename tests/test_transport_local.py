"""The local transport: the same put/run/get semantics on this machine."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from edgekit.errors import RemoteTimeout, TransportError
from edgekit.target import load_target
from edgekit.transport import open_transport


@pytest.fixture()
def local(tmp_path: Path):
    target = load_target("local", {"work_dir": str(tmp_path / "work")})
    with open_transport(target) as transport:
        yield transport


def test_local_python_is_edgekits_own(tmp_path: Path) -> None:
    assert load_target("local").python == sys.executable


def test_put_skip_and_get(local, tmp_path: Path) -> None:
    src = tmp_path / "f.txt"
    src.write_text("hello")
    first = local.put(src, "sub/f.txt")
    assert first.bytes_sent == 5 and Path(first.remote) == tmp_path / "work" / "sub" / "f.txt"
    assert local.put(src, "sub/f.txt").bytes_sent == 0
    src.write_text("hello again")
    assert local.put(src, "sub/f.txt").bytes_sent == 11
    back = local.get("sub/f.txt", tmp_path / "back.txt")
    assert back.read_text() == "hello again"
    assert sorted(p.name for p in (tmp_path / "work" / "sub").iterdir()) == ["f.txt"]
    with pytest.raises(TransportError):
        local.get("sub/missing.txt", tmp_path / "x")


def test_run_in_work_dir_with_env_and_status(local, tmp_path: Path) -> None:
    res = local.run(
        [
            sys.executable,
            "-c",
            "import os,sys; print(os.getcwd()); print(os.environ['EK_V']);"
            " sys.stderr.write('e'); sys.exit(3)",
        ],
        timeout=30,
        env={"EK_V": "a b;$x"},
    )
    assert res.exit_status == 3 and res.stderr == "e"
    assert res.stdout.splitlines() == [str(tmp_path / "work"), "a b;$x"]
    assert local.run(["definitely-not-a-command-xyz"], timeout=5).exit_status == 127


def test_timeout_kills_the_whole_process_group(local) -> None:
    marker = f"edgekit_local_{uuid.uuid4().hex[:8]}"
    code = f"import subprocess,sys,time  # {marker}\nsubprocess.Popen([sys.executable,'-c','import time  # {marker}\\ntime.sleep(60)'])\ntime.sleep(60)"
    start = time.monotonic()
    with pytest.raises(RemoteTimeout, match="within 1 s"):
        local.run([sys.executable, "-c", code], timeout=1)
    assert time.monotonic() - start < 10
    time.sleep(0.3)
    alive = [
        p
        for p in psutil.process_iter(["cmdline", "status"])
        if marker in " ".join(p.info["cmdline"] or []) and p.info["status"] != psutil.STATUS_ZOMBIE
    ]
    assert alive == []


def test_a_command_runs_with_more_than_1024_files_open(local, tmp_path: Path) -> None:
    """The output reader used select(), which refuses a descriptor numbered 1024 or more: with 1,100 files open
    (a long deploy's threads and connections) run() raised ValueError and left the command running."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on open files is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    held = [open(tmp_path / "held", "a") for _ in range(1100)]  # noqa: SIM115 - held open on purpose
    try:
        res = local.run(["sh", "-c", "echo hi"], timeout=30)
    finally:
        for f in held:
            f.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert res.exit_status == 0 and res.stdout.strip() == "hi"


def test_a_failing_output_callback_stops_the_command(local, tmp_path: Path) -> None:
    """on_output raising (a progress line printed into a closed pipe: `edgekit deploy ... | head`) left the command
    running in its own session, out of Ctrl-C's reach: its process group is stopped before the error goes on."""
    marker = tmp_path / "survived"

    def broken(_text: str) -> None:
        raise BrokenPipeError("stdout closed")

    with pytest.raises(BrokenPipeError):
        local.run(["sh", "-c", f"echo hi; sleep 3; echo done > {marker}"], timeout=30, on_output=broken)
    time.sleep(4)
    assert not marker.exists()


_PUT_CHILD = r"""
import sys
from pathlib import Path
from edgekit.target import load_target
from edgekit.transport import open_transport

with open_transport(load_target("local", {"work_dir": sys.argv[1]})) as transport:
    print("putting", flush=True)
    transport.put(Path(sys.argv[2]), "sub/big.bin")
print("done", flush=True)
"""


def test_a_put_interrupted_mid_copy_leaves_no_partial_file(tmp_path: Path) -> None:
    """A Ctrl-C while the local transport copied a file left its half-written `.big.bin.edgekit-XXXX` beside it
    for good (nothing prunes a local work dir). A real process, a real SIGINT while the copy is under way."""
    import signal
    import subprocess

    big = tmp_path / "big.bin"
    with big.open("wb") as f:  # sparse: read fast, written for real by the copy
        f.truncate(2 * 1024**3)
    work = tmp_path / "work"
    with subprocess.Popen(
        [sys.executable, "-c", _PUT_CHILD, str(work), str(big)], stdout=subprocess.PIPE, text=True
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "putting"
            deadline = time.monotonic() + 60
            seen: list[Path] = []
            while not seen and time.monotonic() < deadline and child.poll() is None:
                seen = list((work / "sub").glob(".big.bin.edgekit-*")) if (work / "sub").is_dir() else []
                time.sleep(0.005)
            assert seen, "the copy ended before it could be interrupted"
            child.send_signal(signal.SIGINT)
            child.wait(timeout=120)
        finally:
            child.kill()
    assert child.returncode != 0
    assert list((work / "sub").iterdir()) == [], list((work / "sub").iterdir())
