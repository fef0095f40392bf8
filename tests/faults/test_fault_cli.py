"""The whole `edgekit deploy` command against pi4-emu, faulted mid-run: the device frozen (its sshd SIGSTOPped by
pid, resumed in a finally) and Ctrl-C (SIGINT to the edgekit process). Each exits with its code within a bound,
says what happened, and keeps what the device measured in --json and in the store."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from procs import ctrl_c_when

from edgekit.results import DeployResult

pytestmark = pytest.mark.integration
TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"
EDGEKIT = [str(Path(sys.executable).parent / "edgekit")]


def start_deploy(
    tmp_path: Path,
    recipe: Path = TINY,
    formats: tuple[str, ...] = ("tflite-fp32", "ncnn-fp32"),
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[str], Path, Path, Path]:
    work, out, store = tmp_path / "device", tmp_path / "run.json", tmp_path / "store.sqlite"
    args = [
        *EDGEKIT,
        "deploy",
        str(recipe),
        "--target",
        "pi4-emu",
        *[arg for f in formats for arg in ("--format", f)],
        "--no-host",
        "--repeat",
        "1",
        "--warmup",
        "0",
        "--samples",
        "2",
        "--json",
        str(out),
        "--store",
        str(store),
        "--set",
        f"work_dir={work}",
        "--set",
        "io_timeout=3",
        "--set",
        "connect_timeout=3",
    ]
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    return proc, work, out, store


def wait_measured(
    work: Path, proc: subprocess.Popen[str], timeout: float = 300, every_s: float = 0.1
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for result in work.glob("runs/*/result-0.json"):
            try:
                if json.loads(result.read_text())["measurements"]:
                    return True
            except (ValueError, KeyError, OSError):
                pass
        time.sleep(every_s)
    return False


def sshd_tree() -> list[int]:
    from edgekit.emu.runner import running_state

    state = running_state("pi4-emu")
    assert state is not None
    master = psutil.Process(state.sshd_pid)
    pids = []
    for p in [master, *master.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # a session that ended meanwhile
            if p.name() == "sshd":
                pids.append(p.pid)
    return pids


def stored(store: Path, said: str = "") -> DeployResult:
    from edgekit.store import open_store

    with open_store(str(store)) as db:
        runs = db.runs()
        assert len(runs) == 1, f"{len(runs)} runs recorded; edgekit said:\n{said[-3000:]}"
        return db.load(runs[0].id)


def deploy_frozen_after_a_measurement(
    tmp_path: Path, ctrl_c: bool = False
) -> tuple[subprocess.Popen[str], str, str, float, Path, Path]:
    """A deploy to pi4-emu whose sshd (and its children) is SIGSTOPped once the agent streamed a measurement, then,
    with `ctrl_c`, SIGINT a second later: (process, stdout, stderr, seconds from the freeze or the Ctrl-C to the
    end, --json file, store). The sshd is resumed on every way out."""
    proc, work, out, store = start_deploy(tmp_path)
    stopped: list[int] = []
    try:
        # looked for every 10 ms (a 3 kB read), not 0.1 s: the freeze must land before ncnn-fp32's measurement is
        # streamed (its own agent's start-up and run under qemu, 2-5 s here). No cool-down there: nothing could stop
        # the sleeping agent behind a frozen link, and it would hold pi4-emu's lock for the next tests
        assert wait_measured(work, proc, every_s=0.01), proc.communicate(timeout=60)
        for pid in sshd_tree():
            with contextlib.suppress(ProcessLookupError):  # a session that ended meanwhile
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
        if ctrl_c:
            time.sleep(1)
            proc.send_signal(signal.SIGINT)
        since = time.monotonic()
        stdout, stderr = proc.communicate(timeout=180)
        seconds = time.monotonic() - since
    finally:
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc, stdout, stderr, seconds, out, store


def test_deploy_to_a_device_frozen_mid_run_exits_1_in_bounded_time_and_keeps_the_measurement(
    pi4_emu, tmp_path
) -> None:
    proc, stdout, stderr, seconds, out, store = deploy_frozen_after_a_measurement(tmp_path)
    assert proc.returncode == 1, stdout[-2000:] + stderr[-2000:]
    assert seconds < 60, seconds  # probe (io_timeout/2 + io_timeout), one reconnect (connect_timeout), report
    assert "DeviceTimeout" in stdout + stderr and "Traceback" not in stderr
    for result in (DeployResult.model_validate_json(out.read_text()), stored(store, stdout + stderr)):
        (run,) = result.runs
        got = {m.artifact: m for m in run.agent.measurements} if run.agent else {}
        assert (
            got["tflite-fp32"].status == "ok" and got["tflite-fp32"].samples_ms
        )  # streamed before the freeze
        assert got["ncnn-fp32"].status == "failed" and "DeviceTimeout" in (got["ncnn-fp32"].error or "")


def test_ctrl_c_mid_deploy_exits_130_and_keeps_the_measurement(pi4_emu, tmp_path) -> None:
    # two formats of one runtime (one agent) with a 10-minute cool-down between its measurements: the Ctrl-C
    # lands while the agent waits to measure the second, however fast the device (tflite-fp32 then ncnn-fp32, one
    # agent each, left the second agent's start-up and measurement, 2-5 s here, to outlast the poll and the stop)
    recipe = tmp_path / "tiny.yaml"
    text = TINY.read_text()
    assert "cooldown_s: 0}" in text
    recipe.write_text(text.replace("cooldown_s: 0}", "cooldown_s: 600}"))
    proc, work, out, store = start_deploy(tmp_path, recipe, ("ncnn-fp32", "ncnn-fp16"))
    stdout, stderr, seconds = ctrl_c_when(proc, lambda: wait_measured(work, proc))
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert seconds < 30, seconds
    assert "interrupted: kept 1 measurements" in stdout, stdout[-2000:]
    for result in (DeployResult.model_validate_json(out.read_text()), stored(store)):
        (run,) = result.runs
        assert run.interrupted and run.agent is not None
        got = {m.artifact: m for m in run.agent.measurements}
        assert got["ncnn-fp32"].status == "ok"
        assert got["ncnn-fp16"].status == "failed" and "interrupted" in (got["ncnn-fp16"].error or "")
    # the link was whole: what the agent saved was fetched and its run folder removed (it was left in silence)
    assert "interrupted: fetching what was measured and removing runs/" in stdout + stderr, stdout[-2000:]
    runs = work / "runs"
    assert not runs.is_dir() or not any(runs.iterdir()), list(runs.iterdir())
    time.sleep(1)
    leftover = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "agent.py" in " ".join(p.info["cmdline"] or []) and str(work) in _cwd(p)
    ]
    assert not leftover  # the device's agent was stopped


def test_ctrl_c_while_counting_a_thread_split_keeps_the_measurement(pi4_emu, tmp_path) -> None:
    """After measuring, deploy counts how an ncnn artifact splits between the recipe's 4 threads (pi4-emu timed 1
    thread, its cap). Ctrl-C then: exit 130, said, and the 1-thread measurement in --json and in the store."""
    recipe = tmp_path / "tiny.yaml"
    text = TINY.read_text()
    assert "threads: [1, 2]" in text
    recipe.write_text(text.replace("threads: [1, 2]", "threads: [1, 4]"))
    # a count cache of its own (an earlier deploy of tiny in this worker may have counted the split: then it is
    # never counted here); the session's conversion cache, so nothing is converted again
    home, session_cache = tmp_path / "home", Path(os.environ["EDGEKIT_HOME"]) / "cache"
    session_cache.mkdir(parents=True, exist_ok=True)
    home.mkdir()
    (home / "cache").symlink_to(session_cache, target_is_directory=True)
    proc, _, out, store = start_deploy(tmp_path, recipe, ("ncnn-fp32",), {"EDGEKIT_HOME": str(home)})
    seen: list[str] = []

    def counting_split() -> bool:
        """True once the split is said and its qemu guest runs below edgekit: the Ctrl-C then lands while it
        counts, however fast the guest (a fixed 0.5 s after the line assumed a guest of over 0.5 s)."""
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "splits between 4 threads" in line:
                return _qemu_below(proc, within_s=120)
        return False

    stdout, stderr, seconds = ctrl_c_when(proc, counting_split)
    said = "".join(seen) + stdout
    assert proc.returncode == 130, said[-2000:] + stderr[-2000:]
    assert seconds < 30, seconds
    assert "interrupted (Ctrl-C or SIGTERM) after measuring" in said + stderr, said[-2000:]
    for result in (DeployResult.model_validate_json(out.read_text()), stored(store, said)):
        (run,) = result.runs
        (m,) = run.agent.measurements if run.agent else []
        assert m.artifact == "ncnn-fp32" and m.status == "ok" and m.threads == 1 and m.instructions_per_invoke
        assert run.interrupted  # `runs` lists it as interrupted, not as a run that failed ('ok: no')


def _qemu_below(proc: subprocess.Popen[str], within_s: float) -> bool:
    """True once a qemu-aarch64 guest runs below `proc`; False when `proc` ended first or `within_s` passed."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if "qemu-aarch64" in child.name():
                        return True
        time.sleep(0.01)
    return False


def _cwd(proc: psutil.Process) -> str:
    try:
        return proc.cwd()
    except psutil.Error:
        return ""


def _appears(proc: subprocess.Popen[str], work: Path, pattern: str, within_s: float) -> Any:
    """A wait for ctrl_c_when: True once a folder matching `pattern` is in `work` (the tool has started), False
    when `proc` ended first or `within_s` passed."""

    def started() -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline and proc.poll() is None:
            if work.is_dir() and any(work.glob(pattern)):
                return True
            time.sleep(0.1)
        return False

    return started


def _child_runs(proc: subprocess.Popen[str], module: str, within_s: float) -> Any:
    """A wait for ctrl_c_when: True once a child of `proc` runs `module` (its cmdline names it once it is
    exec'd), False when `proc` ended first or `within_s` passed."""

    def runs() -> bool:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(proc.pid).children():
                    with contextlib.suppress(psutil.Error):
                        if module in child.cmdline():
                            return True
            time.sleep(0.05)
        return False

    return runs


def test_ctrl_c_mid_conversion_says_so_and_leaves_no_half_written_folder(tmp_path: Path) -> None:
    """Ctrl-C while onnx2tf runs: click turned it into a silent exit 130 (nothing printed) and onnx2tf's folder
    stayed in cache/work; the next convert picks up where it stopped."""
    home = tmp_path / "home"
    env = {**os.environ, "EDGEKIT_HOME": str(home)}
    args = [sys.executable, "-m", "edgekit", "convert", str(TINY), "-f", "ncnn-fp32", "-f", "tflite-fp32"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    work = home / "cache" / "work"

    stdout, stderr, seconds = ctrl_c_when(
        proc, _appears(proc, work, "onnx2tf-*", 180), settle=1.0, timeout=60
    )
    assert proc.returncode == 130 and "interrupted (Ctrl-C" in stderr, stdout + stderr
    assert seconds < 30  # onnx2tf stopped with edgekit, not left to finish
    assert not list(work.glob("onnx2tf-*")), list(work.glob("*"))
    again = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "1 converted, 1 from the cache" in again.stdout, again.stdout  # ncnn-fp32 was done before Ctrl-C


def test_ctrl_c_while_keeping_tflite_ops_in_float_leaves_no_folder(tmp_path: Path) -> None:
    """Ctrl-C during the second TensorFlow run of a tflite-int8 with ops kept in float (int8.tflite_float_ops):
    the plain artifact copied into the converter's folder stayed in cache/work (a plain tflite-int8 left none)."""
    import yaml

    home = tmp_path / "home"
    recipe = yaml.safe_load(TINY.read_text())
    recipe["int8"] = {"tflite_float_ops": ["any/op"]}  # stopped before the names are looked up
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "EDGEKIT_HOME": str(home)}
    args = [sys.executable, "-m", "edgekit", "convert", str(path), "-f", "tflite-int8"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    work = home / "cache" / "work"

    # at once when the TensorFlow child runs: it cannot have finished then, however fast the machine (1 s after
    # its folder appeared assumed a TensorFlow import of over 1 s)
    stdout, stderr, _ = ctrl_c_when(
        proc, _child_runs(proc, "edgekit.convert.tflite_selective", 300), timeout=60
    )
    assert proc.returncode == 130 and "interrupted (Ctrl-C" in stderr, stdout + stderr
    assert not list(work.glob("*")), list(work.glob("*"))


def _host_agents(home: Path) -> list[psutil.Process]:
    """The agents a deploy with EDGEKIT_HOME=`home` runs on this host."""
    return [
        p
        for p in psutil.process_iter(["cmdline"])
        if "agent.py" in " ".join(p.info["cmdline"] or []) and str(home) in _cwd(p)
    ]


def _host_agent_started(proc: subprocess.Popen[str], home: Path) -> bool:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if _host_agents(home):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.parametrize(
    "sig,times",
    [(signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGINT, 2)],
    ids=["term", "term-twice", "int-twice"],
)
def test_sigterm_mid_deploy_stops_the_local_agent_and_frees_the_host(
    tmp_path: Path, sig: int, times: int
) -> None:
    """SIGTERM (what `timeout`, systemd and a cancelled CI job send) killed edgekit and left the host's agent
    running, holding the host's lock: the next deploy waited for it. Now it ends the run as Ctrl-C does: the
    agent stopped, exit 130, the interrupted run kept in --json. The same signal twice at once (`timeout` signals
    the process and then its group; a double Ctrl-C) killed edgekit with exit 143, or cut the stopping short: the
    run was lost and the agent left running. Now the repeat is the same request."""
    home, out, recipe = tmp_path / "home", tmp_path / "run.json", tmp_path / "tiny.yaml"
    # a 10-minute cool-down between the two thread counts: the agent is busy when the SIGTERM comes
    recipe.write_text(TINY.read_text().replace("cooldown_s: 0}", "cooldown_s: 600}"))
    env = {**os.environ, "EDGEKIT_HOME": str(home), "COLUMNS": "200"}
    args = [*EDGEKIT, "deploy", str(recipe), "-f", "ncnn-fp32", "--repeat", "1"]
    proc = subprocess.Popen(
        [*args, "--no-store", "--json", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )

    stdout, stderr, seconds = ctrl_c_when(
        proc, lambda: _host_agent_started(proc, home), settle=2.0, timeout=60, sig=sig, times=times
    )
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert seconds < 30 and "SIGTERM" in stdout + stderr and "Traceback" not in stderr, stderr[-2000:]
    time.sleep(1)
    assert not _host_agents(home)  # stopped with edgekit: the host is free for the next run
    (run,) = DeployResult.model_validate_json(out.read_text()).runs
    assert run.interrupted


def test_the_repeat_of_a_stop_that_comes_while_edgekit_exits_is_the_same_request(tmp_path: Path) -> None:
    """The second signal of one stop request (`timeout` signals edgekit, then its group) could arrive while
    edgekit was already exiting, the measurement kept: Python puts the default action of SIGINT / SIGTERM back
    while it shuts down, and the repeat killed the process (exit -2, seen in CI), so the caller saw a crash
    instead of 130. Here the repeat comes again and again from the moment edgekit names the stop until it is gone."""
    home, out, recipe = tmp_path / "home", tmp_path / "run.json", tmp_path / "tiny.yaml"
    recipe.write_text(TINY.read_text().replace("cooldown_s: 0}", "cooldown_s: 600}"))
    env = {**os.environ, "EDGEKIT_HOME": str(home), "COLUMNS": "200"}
    args = [
        *EDGEKIT,
        "deploy",
        str(recipe),
        "-f",
        "ncnn-fp32",
        "--repeat",
        "1",
        "--no-store",
        "--json",
        str(out),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    try:
        assert _host_agent_started(proc, home)
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        deadline, repeats = time.monotonic() + 60, 0
        while proc.poll() is None and time.monotonic() < deadline:
            if any("error (Interrupted)" in line for line in lines):
                proc.send_signal(signal.SIGTERM)
                repeats += 1
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        reader.join(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
    assert proc.returncode == 130 and repeats > 0, (proc.returncode, repeats, "".join(lines)[-2000:])
    (run,) = DeployResult.model_validate_json(out.read_text()).runs
    assert run.interrupted


def test_tool_folders_are_removed_after_a_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekit import paths

    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path))
    old, recent = paths.work_dir("onnx2tf"), paths.work_dir("mnn")
    for folder in (old, recent):
        folder.mkdir(parents=True)
        (folder / "log.txt").write_text("x")
    day_ago = time.time() - paths.WORK_KEPT_S - 60
    os.utime(old, (day_ago, day_ago))
    fresh = paths.work_dir("onnx2tf")
    assert not old.exists() and recent.is_dir() and not fresh.exists() and fresh.parent == old.parent


def _wide_onnx(path: Path, outputs: int = 400) -> Path:
    """A [1, 3, 16, 16] -> [1, outputs] ONNX whose weights take outputs x 3 KB (1.2 MB by default)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(size=(768, outputs)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["y"])],
        "wide",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, outputs])],
        [numpy_helper.from_array(w, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def test_a_full_disk_while_converting_is_disk_full_and_leaves_no_partial_cache_entry(
    tmp_path: Path, tmpfs: Path, edgekit_cli: Any
) -> None:
    """EDGEKIT_HOME on a 3 MB disk: the user's ONNX and its prepared copy fit, the artifacts do not. A converter's
    failed write is no converter crash: DiskFull, exit 1, the disk named; no half-written entry left in the cache."""
    import yaml

    model = _wide_onnx(tmp_path / "wide.onnx")
    recipe = tmp_path / "wide.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "wide",
                "task": "generic",
                "model": {"kind": "onnx", "path": model.name},
                "input": {"name": "input", "shape": [1, 3, 16, 16]},
                "formats": ["onnx-fp32", "ncnn-fp32", "ncnn-fp16"],
                "evaluation": {"data": {"kind": "random", "samples": 2, "seed": 0}},
            }
        )
    )
    out = edgekit_cli("convert", str(recipe), "--keep-going", timeout=300, env={"EDGEKIT_HOME": str(tmpfs)})
    assert out.code == 1, out.stdout + out.stderr
    assert out.first_error_line.startswith("error (DiskFull):") and str(tmpfs) in out.stderr, out.stderr
    assert "free some space" in out.stderr
    cache = tmpfs / "cache"
    assert not list(cache.glob("*.tmp-*")), list(cache.iterdir())
    for entry in cache.glob(
        "[0-9a-f]" * 8 + "*"
    ):  # every entry there is whole: its files as its meta lists them
        meta = json.loads((entry / "artifact.json").read_text())
        assert all((entry / f).is_file() for f in meta["files"]), entry


def test_a_cache_entry_that_cannot_be_written_leaves_nothing_behind(
    tmp_path: Path, tmpfs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files from another disk are copied into the cache; a copy that runs out of space removed nothing, and the
    half-written folder kept the disk full for the next run."""
    import errno

    from edgekit.convert import cache
    from edgekit.formats import Format

    monkeypatch.setenv("EDGEKIT_HOME", str(tmpfs))
    big = tmp_path / "model.onnx"  # on another file system: no hard link, a copy
    big.write_bytes(os.urandom(4 << 20))
    with pytest.raises(OSError) as info:
        cache.store("ab" * 32, Format.ONNX_FP32, [big], 1.0, None, {})
    assert info.value.errno == errno.ENOSPC
    assert not list((tmpfs / "cache").iterdir()), list((tmpfs / "cache").iterdir())


def test_a_json_file_the_disk_cannot_hold_leaves_no_stale_copy(tmp_path: Path) -> None:
    """--json on a disk that fills: the interim copy written while measuring (every target still 'failed', no
    measurements) was left behind and read as a failed run. Now it is removed, the error named (exit 1), and the
    measurements kept in the data dir for `runs import`."""
    small = tmp_path / "small"
    small.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=20k", "tmpfs", str(small)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        home, out = tmp_path / "home", small / "run.json"
        env = {**os.environ, "EDGEKIT_HOME": str(home), "COLUMNS": "200"}
        run = subprocess.run(
            [
                *EDGEKIT,
                "deploy",
                str(TINY),
                "--target",
                "local",
                # one quick conversion in this fresh data dir; the interim copy (13 KB) fits in 20 KiB, the
                # final one (16 KB) written beside it does not
                "--format",
                "ncnn-fp32",
                "--repeat",
                "2",
                "--no-store",
                "--json",
                str(out),
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )
        assert run.returncode == 1 and "OutputFileError" in run.stderr, (
            run.stdout[-2000:] + run.stderr[-2000:]
        )
        assert not out.exists()
        (kept,) = (home / "unrecorded").glob("*.json")
        result = DeployResult.model_validate_json(kept.read_text())
        assert result.finished_at and all(m.status == "ok" for r in result.runs for m in r.agent.measurements)  # type: ignore[union-attr]
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_ctrl_c_while_comparing_keeps_the_board_estimates_of_what_was_counted(pi4_emu, tmp_path) -> None:
    """Ctrl-C after measuring, while deploy compares the outputs: the emulated target's counted measurements keep
    their board estimates, made from the counts already made (they were all dropped: `estimates: {}`)."""
    proc, _, out, store = start_deploy(tmp_path)
    seen: list[str] = []

    def comparing() -> bool:
        assert proc.stdout is not None
        for line in proc.stdout:
            seen.append(line)
            if "compare: outputs vs" in line:
                return True
        return False

    stdout, stderr, seconds = ctrl_c_when(proc, comparing)
    said = "".join(seen) + stdout
    assert proc.returncode == 130, said[-2000:] + stderr[-2000:]
    assert seconds < 30, seconds
    for result in (DeployResult.model_validate_json(out.read_text()), stored(store, said)):
        (run,) = result.runs
        assert run.interrupted and run.agent is not None
        counted = {m.artifact for m in run.agent.measurements if m.instructions_per_invoke}
        assert counted == {"tflite-fp32", "ncnn-fp32"}, run.agent.measurements
        assert run.estimates, said[-2000:] + stderr[-2000:]
        assert counted <= {key.split(" ")[0] for key in run.estimates}, run.estimates
