"""`edgekit deploy` end to end: recipes/tiny.yaml converted for real, timed by the real agent on the emulated pi4
(real sshd + qemu) and on the host, outputs pulled back and compared. Small repeat counts: qemu is tens of times slower.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from edgekit.convert.base import Artifact
from edgekit.deploy import DeployOptions, HostCpu, deploy, host_target, is_ok
from edgekit.deploy.answers import attach_estimates
from edgekit.formats import Format
from edgekit.recipe import load_recipe
from edgekit.report.lines import failures
from edgekit.report.table import deploy_table
from edgekit.results import DeployResult, TargetRun
from edgekit.target import Target, TransportKind

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "tiny.yaml"
FORMATS = (Format.TFLITE_FP32, Format.TFLITE_INT8, Format.NCNN_FP32, Format.NCNN_INT8)

CRASH_SHIM = """
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("agent", sys.argv[1])
agent = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agent)
real = agent.open_runner
def crashing(art, *args):
    if art["id"] == os.environ.get("CRASH_ON", "tflite-fp32"):
        os.kill(os.getpid(), signal.SIGSEGV)  # what a runtime's segfault looks like to the host
    return real(art, *args)
agent.open_runner = crashing
sys.exit(agent.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def tiny_artifacts() -> list[Artifact]:
    from edgekit.convert.pipeline import convert_recipe

    return convert_recipe(load_recipe(TINY), FORMATS, keep_going=True)


def corrupt(art: Artifact, folder: Path) -> Artifact:
    """The same artifact with its .tflite bytes garbled after the header (a truncated/damaged download)."""
    folder.mkdir(parents=True, exist_ok=True)
    broken = folder / "model.tflite"
    data = art.main_file.read_bytes()
    broken.write_bytes(data[:64] + bytes(b ^ 0x5A for b in data[64:200]) + data[200:])
    return Artifact(
        art.format, [broken], key=f"broken-{art.key}", size_bytes=len(data), fidelity=art.fidelity
    )


def measurements(run: TargetRun) -> dict[tuple[str, int], object]:
    assert run.agent is not None, run.error
    return {(m.artifact, m.threads): m for m in run.agent.measurements}


@pytest.mark.integration
def test_deploy_tiny_to_pi4_emu_and_host(
    pi4_emu: Target, tiny_artifacts: list[Artifact], tmp_path: Path
) -> None:
    arts = [corrupt(a, tmp_path / "broken") if a.format is Format.TFLITE_INT8 else a for a in tiny_artifacts]
    json_path = tmp_path / "deploy.json"
    seen: list[str] = []
    assert pi4_emu.emulated is not None
    with_caches = pi4_emu.model_copy(
        update={"emulated": pi4_emu.emulated.model_copy(update={"caches": True})}
    )
    result = deploy(
        load_recipe(TINY),
        [with_caches],
        DeployOptions(repeat=3, warmup=1, threads=(1,), samples=4, json_path=json_path),
        seen.append,
        arts,
    )
    runs = {r.target: r for r in result.runs}
    assert set(runs) == {"pi4-emu", "host"}
    pi4, host = runs["pi4-emu"], runs["host"]
    assert pi4.status == "ok" and host.status == "ok", (pi4.error, host.error)
    facts = pi4.agent.facts_before  # type: ignore[union-attr]
    assert facts.machine == "aarch64" and facts.emulated and facts.cpu_part == "0xd08"
    assert host.agent.facts_before.machine == os.uname().machine  # type: ignore[union-attr]
    assert not host.agent.facts_before.emulated and pi4.emulated and not host.emulated  # type: ignore[union-attr]
    assert pi4.emulated_as == "target" and host.emulated_as is None  # its `emulated:` block says if it counts
    for run in (pi4, host):
        got = measurements(run)
        assert set(got) == {(f.value, 1) for f in FORMATS}
        broken = got["tflite-int8", 1]
        assert broken.status == "failed" and "Flatbuffer" in (broken.error or "")  # type: ignore[attr-defined]
        for fmt in (Format.TFLITE_FP32, Format.NCNN_FP32, Format.NCNN_INT8):
            m = got[fmt.value, 1]
            assert m.status == "ok", m.error  # type: ignore[attr-defined]
            assert len(m.samples_ms) == 3 and m.p50_ms <= m.p90_ms <= m.p99_ms  # type: ignore[attr-defined]
            assert (Path(run.result_dir) / m.outputs_file).is_file()  # type: ignore[arg-type, attr-defined]
        assert {"ensure", "connect", "push", "run", "pull", "cleanup"} <= set(run.stage_seconds)
    for fmt in ("tflite-fp32", "ncnn-fp32", "ncnn-int8"):
        vs_onnx = [c for c in pi4.comparisons if c.artifact == fmt and c.reference == "onnx"]
        vs_host = [c for c in pi4.comparisons if c.artifact == fmt and c.reference == "host"]
        assert len(vs_onnx) == 1 and vs_onnx[0].gates_passed and vs_onnx[0].samples == 4
        assert len(vs_host) == 1 and vs_host[0].cosine > 0.9999 and vs_host[0].top1_agreement == 1.0
    assert not any(c.artifact == "tflite-int8" for c in pi4.comparisons)  # nothing to compare
    assert result.ok is False and not is_ok(result, [f.value for f in FORMATS])
    assert any("tflite-int8" in line and "Flatbuffer" in line for line in failures(result))
    assert any(s.startswith("pi4-emu: run") for s in seen) and any(s.startswith("compare") for s in seen)
    stored = DeployResult.model_validate_json(json_path.read_text())
    assert stored.finished_at and len(stored.runs) == 2 and stored.runs[0].agent is not None
    text = _render(result)  # an emulated target leads with the Pi 4 estimate and count ratios, not wall time
    assert "pi4 ESTIMATE" in text and "by insn" in text and "emulated ms" not in text
    assert pi4.estimates["ncnn-int8 x1"]["status"] == "ok"
    est = pi4.estimates["ncnn-fp32 x1"]
    assert est["low_ms"] < est["estimate_ms"] < est["high_ms"] and est["label"].startswith("estimate")
    accesses, l1, l2 = measurements(pi4)["ncnn-fp32", 1].cache_misses  # type: ignore[attr-defined]
    assert accesses > l1 >= l2 >= 0 and l1 > 0  # the Pi 4's L1 and L2, simulated while counting
    assert not measurements(host)["ncnn-fp32", 1].cache_misses  # type: ignore[attr-defined]
    assert any(
        "l1" in form for form in est["cross_validation"]["weights"]
    )  # the miss forms join the estimate
    section = text[text.index("tiny on pi4-emu") :]  # one stacked table per target
    row = next(line for line in section.splitlines() if line.startswith("│ ncnn-fp32"))
    assert f"~{est['estimate_ms']:.3g}" in row
    verbose = _render(result, verbose=True)
    assert "p50 emulated" in verbose  # the wall time is there on request, labelled


@pytest.mark.integration
def test_cli_deploy_host_only_exits_zero_when_everything_passes(
    tiny_artifacts: list[Artifact], tmp_path: Path
) -> None:
    out = tmp_path / "host.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit",
            "deploy",
            str(TINY),
            "--format",
            "tflite-fp32",
            "--format",
            "ncnn-fp32",
            "--threads",
            "1,2",
            "--repeat",
            "4",
            "--warmup",
            "1",
            "--json",
            str(out),
            "--no-store",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = DeployResult.model_validate_json(out.read_text())
    assert result.ok and [r.target for r in result.runs] == ["host"]
    assert result.benchmark["threads"] == [1, 2] and result.benchmark["repeat"] == 4
    assert {(m.artifact, m.threads) for m in result.runs[0].agent.measurements} == {  # type: ignore[union-attr]
        (a, t) for a in ("tflite-fp32", "ncnn-fp32") for t in (1, 2)
    }
    assert "tflite-fp32" in done.stdout and "ok" in done.stdout


@pytest.mark.integration
def test_failed_targets_are_recorded_and_the_others_kept(
    tiny_artifacts: list[Artifact], tmp_path: Path
) -> None:
    unreachable = Target(
        name="nowhere",
        transport=TransportKind.SSH,
        host="127.0.0.1",
        port=_closed_port(),
        user="nobody",
        connect_timeout=3,
    )
    shim = tmp_path / "crash_shim.py"
    shim.write_text(CRASH_SHIM)
    crashy = Target(
        name="crashy",
        transport=TransportKind.LOCAL,
        python=f"{sys.executable} {shim}",
        work_dir=str(tmp_path / "crashy"),
        runtimes=["ai_edge_litert", "ncnn"],
    )
    no_python = Target(
        name="no-python",
        transport=TransportKind.LOCAL,
        python=str(tmp_path / "missing-python3"),
        work_dir=str(tmp_path / "no-python"),
    )
    json_path = tmp_path / "partial.json"
    result = deploy(
        load_recipe(TINY),
        [unreachable, crashy, no_python],
        DeployOptions(repeat=2, warmup=0, threads=(1,), json_path=json_path),
        artifacts=[
            a
            for a in tiny_artifacts
            if a.format in (Format.TFLITE_FP32, Format.TFLITE_INT8, Format.NCNN_FP32)
        ],
    )
    runs = {r.target: r for r in result.runs}
    assert runs["nowhere"].status == "failed" and runs["nowhere"].error.startswith("connect:")  # type: ignore[union-attr]
    assert runs["host"].status == "ok" and all(m.status == "ok" for m in runs["host"].agent.measurements)  # type: ignore[union-attr]
    got = measurements(runs["crashy"])
    crashed = got["tflite-fp32", 1]
    assert crashed.status == "failed" and "SIGSEGV" in (crashed.error or "")  # type: ignore[attr-defined]
    assert got["tflite-int8", 1].status == "ok" and got["ncnn-fp32", 1].status == "ok"  # type: ignore[attr-defined]
    assert len(runs["crashy"].agent.request["requests"]) == 3  # type: ignore[union-attr]  tflite, restart, ncnn
    assert not result.ok
    stored = DeployResult.model_validate_json(json_path.read_text())
    assert {r.target: r.status for r in stored.runs} == {
        "nowhere": "failed",
        "crashy": "ok",
        "no-python": "failed",
        "host": "ok",
    }
    assert "PythonNotFound" in (runs["no-python"].error or "")  # the target's `python`, named as such
    assert "did not start on the device (exit 127" in (runs["no-python"].error or "")
    assert "missing-python3" in (runs["no-python"].error or "")
    assert (
        runs["no-python"].bad_input and not runs["nowhere"].bad_input
    )  # exit 2 is the input's, 1 the link's


def test_host_cpu_gate_keeps_the_host_benchmark_alone() -> None:
    gate, events, lock = HostCpu(), [], threading.Lock()

    def work(name: str, exclusive: bool) -> None:
        with gate.hold(exclusive):
            with lock:
                events.append(("start", name))
            time.sleep(0.15)
            with lock:
                events.append(("end", name))

    threads = [threading.Thread(target=work, args=(n, n == "host")) for n in ("emu1", "host", "emu2")]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join()
    running: set[str] = set()
    for kind, name in events:
        if kind == "start":
            assert "host" not in running and (name != "host" or not running), events
            running.add(name)
        else:
            running.discard(name)
    starts = [n for k, n in events if k == "start"]
    assert set(starts) == {"emu1", "emu2", "host"}


def test_host_target_uses_this_python() -> None:
    target = host_target()
    assert target.transport is TransportKind.LOCAL and target.python == sys.executable
    assert shutil.which(target.python) or Path(target.python).is_file()


def _render(result: DeployResult, verbose: bool = False) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=260, color_system=None).print(deploy_table(result, verbose=verbose))
    return buffer.getvalue()


def _estimate_json(param: Path, threads: int) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "estimate", str(param), "--board", "pi4", "--threads", str(threads)]
        + ["--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return dict(json.loads(done.stdout))


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_deploy_profile_puts_per_layer_data_in_the_json(pi4_emu: Target, tmp_path: Path) -> None:
    """`deploy --profile`: on the emulated target every ncnn artifact counted layer by layer (exact, summing to
    the whole inference), on the host each ncnn layer's wall time from the agent; other formats say why not."""
    out = tmp_path / "deploy.json"
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(TINY), "--target", "pi4-emu", "-f", "ncnn-fp32"]
        + [
            "-f",
            "tflite-fp32",
            "--repeat",
            "2",
            "--threads",
            "1",
            "--profile",
            "--json",
            str(out),
            "--no-store",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = DeployResult.model_validate_json(out.read_text())
    runs = {r.target: r for r in result.runs}
    param = next(
        Path(f) for a in result.artifacts if a.id == "ncnn-fp32" for f in a.files if f.endswith(".param")
    )
    names = [line.split()[1] for line in param.read_text().splitlines()[2:] if line.split()[0] != "Input"]
    prof = runs["pi4-emu"].profiles["ncnn-fp32"]
    assert prof["status"] == "ok" and prof["cpu"] == "cortex-a72" and prof["threads"] == 1
    assert [layer["name"] for layer in prof["layers"]] == names
    # the layers' own counts make up the whole inference but ncnn's own per-inference work, counted apart (a net
    # of the Input alone): coverage of the rest is near 100 % (100.64 % here, 100.41 % for tiny on pi5-emu)
    assert 0.9 < prof["coverage"] <= 1.1 and all(layer["instructions"] > 0 for layer in prof["layers"])
    assert runs["pi4-emu"].profiles["tflite-fp32"]["status"] == "skipped"
    host = measurements(runs["host"])
    assert [layer.name for layer in host["ncnn-fp32", 1].layer_ms] == names  # type: ignore[attr-defined]
    assert host["ncnn-fp32", 1].layer_passes == 10 and not host["tflite-fp32", 1].layer_ms  # type: ignore[attr-defined]
    assert not any(m.layer_ms for m in measurements(runs["pi4-emu"]).values())  # type: ignore[attr-defined]
    assert "profile pi4-emu ncnn-fp32: by instructions (exact count)" in done.stdout
    assert "profile host ncnn-fp32 x1: by wall time (measured)" in done.stdout


def test_a_json_write_that_fails_while_targets_measure_does_not_stop_them() -> None:
    """The partial --json written after each measurement: a failure there (a full disk) must not stop the
    measuring (update() keeps going); the write after the targets finish names it (OutputFileError)."""
    from edgekit.deploy.result_file import ResultFile
    from edgekit.errors import OutputFileError

    result = DeployResult(
        recipe="tiny", recipe_path="r.yaml", recipe_sha256="0" * 64, started_at="2026-12-01"
    )
    writer = ResultFile(Path("/proc/edgekit-none/run.json"), result)  # cannot be made, even by root
    writer.update()  # said nothing, raised nothing
    with pytest.raises(OutputFileError, match=r"cannot write /proc/edgekit-none/run\.json"):
        writer.write()


@pytest.mark.integration
def test_a_deploy_in_a_worker_thread_stops_when_its_stop_event_is_set(
    pi4_emu: Target, tiny_artifacts: list[Artifact], tmp_path: Path
) -> None:
    """A lab nightly deploys each board in a worker thread, where no Ctrl-C arrives: its Ctrl-C released the
    places while the agents went on measuring on the boards. DeployOptions.stop, set from another thread, stops
    the deploy as a Ctrl-C does: the device's agent is stopped and what it measured is kept (Interrupted with
    the result), in a bounded time."""
    from edgekit.errors import Interrupted

    stop, said = threading.Event(), []
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["result"] = deploy(
                load_recipe(TINY),
                [pi4_emu],
                DeployOptions(repeat=100000, warmup=0, threads=(1,), samples=1, host=False, stop=stop),
                said.append,
                [a for a in tiny_artifacts if a.format is Format.TFLITE_FP32],
            )
        except Interrupted as exc:
            outcome["interrupted"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    deadline = time.monotonic() + 120
    while "pi4-emu: run ..." not in said and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(5)  # measuring: the agent runs its (long) plan on the device
    t0 = time.monotonic()
    stop.set()
    worker.join(90)
    assert not worker.is_alive() and time.monotonic() - t0 < 90, said
    exc = outcome.get("interrupted")
    assert isinstance(exc, Interrupted), (outcome, said)
    kept = exc.result  # type: ignore[attr-defined]
    (run_,) = kept.runs
    assert run_.target == "pi4-emu" and run_.interrupted, run_
    assert any("stopping the agents" in line for line in said), said


@pytest.mark.integration
def test_what_was_counted_before_a_ctrl_c_keeps_its_board_estimate_and_nothing_new_is_counted(
    pi4_emu: Target, tiny_artifacts: list[Artifact], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An emulated target's headline is the board estimate from its counts; a deploy stopped after one artifact
    was counted kept that count but no estimate (runs show: no board figure at all). The estimates of what was
    counted are made on the way out, from the counts made and cached only: no new counting under qemu (the 4-thread
    split is said as not counted)."""
    from edgekit.errors import Interrupted

    # a count cache of its own: every deploy of tiny before it (threads [1, 2]) counts its 4-thread split into the
    # session's, and this test needs that split uncounted (a clean clone's run found it cached)
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    stop, said = threading.Event(), []
    outcome: dict[str, object] = {}
    wanted = (Format.NCNN_FP32, Format.NCNN_INT8)  # ncnn: its 4-thread estimate wants a split counted
    # the plan asks 1 and 4 threads; pi4-emu's cap measures 1: the 4-thread estimate needs a split counted
    # and a 10-minute cool-down before each measurement after the first: the stop lands while the agent waits
    # to measure ncnn-int8, however fast the device counts (no cool-down left ~1 s for it)
    recipe = tmp_path / "tiny.yaml"
    text = TINY.read_text()
    assert "threads: [1, 2]" in text and "cooldown_s: 0}" in text
    recipe.write_text(
        text.replace("threads: [1, 2]", "threads: [1, 4]").replace("cooldown_s: 0}", "cooldown_s: 600}")
    )
    measured = threading.Event()

    def hear(line: str) -> None:
        said.append(line)
        if "ncnn-fp32 x1 ok" in line:
            measured.set()

    def run() -> None:
        try:
            deploy(
                load_recipe(recipe),
                [pi4_emu],
                DeployOptions(repeat=300, warmup=0, samples=1, host=False, stop=stop),
                hear,
                [a for a in tiny_artifacts if a.format in wanted],
            )
        except Interrupted as exc:
            outcome["interrupted"] = exc

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    assert measured.wait(300), said
    stop.set()
    worker.join(120)
    assert not worker.is_alive(), said
    exc = outcome.get("interrupted")
    assert isinstance(exc, Interrupted), (outcome, said)
    (run_,) = exc.result.runs  # type: ignore[attr-defined]
    assert run_.interrupted and run_.agent is not None, run_
    counted = [m for m in run_.agent.measurements if m.instructions_per_invoke]
    assert [(m.artifact, m.threads) for m in counted] == [("ncnn-fp32", 1)], run_.agent.measurements
    one = run_.estimates["ncnn-fp32 x1"]
    assert one["board"] == "pi4" and one["estimate_ms"] > 0 and one["label"].startswith("estimate"), one
    for (
        key,
        est,
    ) in run_.estimates.items():  # the rest was cut short: no figure, and not blamed on the setting
        if key != "ncnn-fp32 x1" and est.get("status") != "ok":
            assert "emulated.counting: true" not in est.get("reason", ""), (key, est)
    assert not any("counting how" in line or "counting instructions" in line for line in said), said
    four = run_.estimates["ncnn-fp32 x4"]  # from the one-thread count, without the split (not counted now)
    assert four["status"] == "ok" and any("interrupted" in line and "split" in line for line in said), said


@pytest.mark.integration
def test_deploys_two_thread_estimate_is_estimates_for_the_same_counts(
    pi4_emu: Target, tiny_artifacts: list[Artifact], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recipe's threads [1, 2] on pi4-emu (its cap times 1): 2 threads are interpolated towards a 4-thread
    estimate, which deploy made without the 4-thread split `edgekit estimate --threads 2` counts (tiny ncnn-fp32:
    ~0.145 ms beside 0.166 at 1 thread, where estimate said 0.185, slower), saying 'no split between 2 threads
    counted (deploy counts it for ncnn artifacts only)' of an ncnn artifact, in --json only. Now the 4-thread
    split is counted: given estimate's counts deploy gives its figure and interval; a TFLite artifact's caveat says
    that split was not counted, and the table shows it."""
    # a count cache of its own: the split is counted here (the Ctrl-C test wants tiny's uncounted)
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    said: list[str] = []
    wanted = (Format.NCNN_FP32, Format.TFLITE_FP32)
    arts = [a for a in tiny_artifacts if a.format in wanted]
    opts = DeployOptions(repeat=1, warmup=0, samples=1, host=False)
    result = deploy(load_recipe(TINY), [pi4_emu], opts, said.append, arts)
    (run,) = result.runs
    assert {(m.artifact, m.threads) for m in run.agent.measurements} == {  # type: ignore[union-attr]
        ("ncnn-fp32", 1),
        ("tflite-fp32", 1),
    }
    one, two = run.estimates["ncnn-fp32 x1"], run.estimates["ncnn-fp32 x2"]
    param = next(a.main_file for a in arts if a.format is Format.NCNN_FP32)
    estimated = _estimate_json(param, 2)
    # with each one's own counts, the same direction: 2 threads slower than 1 for tiny on the Pi 4
    est_one = _estimate_json(param, 1)["estimate"]["estimate_ms"]
    est_two = estimated["estimate"]["estimate_ms"]
    assert est_two > est_one and two["estimate_ms"] > one["estimate_ms"], (
        (one["estimate_ms"], two["estimate_ms"]),
        (est_one, est_two),
    )
    # the same counts (estimate's one-thread count, misses and mix in deploy's measurement): the same figure
    count = estimated["count"]
    measured = measurements(run)["ncnn-fp32", 1]
    measured.instructions_per_invoke = count["instructions"]  # type: ignore[attr-defined]
    measured.instruction_mix = list(count["mix"][0])  # type: ignore[attr-defined]
    measured.cache_misses = list(count["window_misses"])  # type: ignore[attr-defined]
    measured.cycles_per_invoke = count["cycles"]  # type: ignore[attr-defined]
    attach_estimates(result, {"pi4-emu": pi4_emu}, said.append)
    again, theirs = run.estimates["ncnn-fp32 x2"], estimated["estimate"]
    assert (again["estimate_ms"], again["low_ms"], again["high_ms"]) == (
        theirs["estimate_ms"],
        theirs["low_ms"],
        theirs["high_ms"],
    )
    assert estimated["count"]["threads_split"]["cached"]  # the very split deploy counted
    counted = "split between 4 threads (the 4-thread end of the 2-thread interpolation) counted on pi4-emu"
    assert any(counted in c for c in again["caveats"]), again["caveats"]
    assert not any("no split" in c for c in again["caveats"]) and "split_not_counted" not in again
    # a TFLite artifact: its 4-thread split is not counted, said truly in --json and under the table
    tfl = run.estimates["tflite-fp32 x2"]
    missing = tfl["split_not_counted"]
    assert missing.startswith("no split between 4 threads (the 4-thread end of the 2-thread interpolation)")
    assert "only an ncnn artifact's is counted" in missing and missing in tfl["caveats"]
    assert f"pi4-emu tflite-fp32 x2: {missing}" in " ".join(_render(result).split())


def test_a_waiting_host_goes_before_a_devices_next_stage() -> None:
    """An emulated device's upload then its run each hold the host's cores shared; the host, arriving during
    the upload, waited for the whole emulated run too (make demo: 4.5 min, the host's reference last). A
    waiting exclusive hold now goes before any new shared one."""
    gate, order, lock = HostCpu(), [], threading.Lock()
    pushing = threading.Event()

    waited: list[bool] = []

    def device() -> None:
        with gate.hold(exclusive=False):  # the upload, until the host waits for the cores (not a fixed 0.3 s)
            pushing.set()
            deadline = time.monotonic() + 10
            while not gate._exclusive_waiting and time.monotonic() < deadline:
                time.sleep(0.001)
            waited.append(bool(gate._exclusive_waiting))
        with gate.hold(exclusive=False), lock:  # the run
            order.append("device run")

    def host() -> None:
        pushing.wait(5)
        with gate.hold(exclusive=True), lock:
            order.append("host run")

    threads = [threading.Thread(target=device), threading.Thread(target=host)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert waited == [True]  # the host arrived during the upload
    assert order == ["host run", "device run"], order


def test_more_samples_than_the_data_holds_are_said_not_silently_capped(tmp_path: Path) -> None:
    """`--samples 100` on data of 16 inputs used 16 and said nothing (analyze's --samples too)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(TINY), "-f", "onnx-fp32", "--target", "local"]
        + ["--no-store", "--repeat", "1", "--warmup", "0", "--threads", "1", "--samples", "5000"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, said[-3000:]
    assert "5000 evaluation inputs asked for" in said and "using all" in said, said[-3000:]


def test_a_json_path_with_brackets_is_said_as_written(tmp_path: Path) -> None:
    """`deploy --json /data/d[x]/out[red].json` ended with `results: /data/d/out.json`, in red: rich read the
    brackets as markup. The path is said as written."""
    import subprocess
    import sys

    folder = tmp_path / "d[x]"
    folder.mkdir()
    written = folder / "out[red].json"
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(TINY), "-f", "onnx-fp32", "--target", "local"]
        + ["--no-store", "--repeat", "1", "--warmup", "0", "--threads", "1", "--json", str(written)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert f"results: {written}" in done.stdout, done.stdout[-3000:]


DIE_IN_COOLDOWN_SHIM = """
import importlib.util, os, signal, sys
spec = importlib.util.spec_from_file_location("agent", sys.argv[1])
agent = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agent)
real = agent.log
def dying(message):
    real(message)
    marker = os.environ["DIE_MARKER"]
    if " threads=1 ok " in message and not os.path.exists(marker):  # its result written, before the next one
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGSEGV)
agent.log = dying
sys.exit(agent.main(sys.argv[1:]))
"""


@contextlib.contextmanager
def _shimmed_board(
    tmp_path: Path,
    shim: str,
    sshd_extra: str = "",
    runtimes: tuple[str, ...] = ("ai_edge_litert",),
    **fields: Any,
) -> Iterator[Target]:
    """A board reached over a real OpenSSH server on 127.0.0.1 (its own host key, pinned), whose python runs
    the real agent through `shim` (a script that breaks it at a chosen moment)."""
    from test_transport_ssh import _sshd

    key, host_key = tmp_path / "client_ed25519", tmp_path / "host_ed25519"
    for k in (key, host_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
    (tmp_path / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
    script = tmp_path / "shim.py"
    script.write_text(shim)
    extra = "Subsystem sftp internal-sftp\n" + sshd_extra
    with _sshd(tmp_path, "board", host_key, tmp_path / "authorized_keys", extra) as port:
        kind, blob = host_key.with_suffix(".pub").read_text().split()[:2]
        (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")
        user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
        yield Target(
            name="board",
            transport=TransportKind.SSH,
            host="127.0.0.1",
            port=port,
            user=user,
            key=str(key),
            known_hosts=str(tmp_path / "known_hosts"),
            work_dir=str(tmp_path / "work"),
            python=f"{sys.executable} {script}",
            runtimes=list(runtimes),
            **{"connect_timeout": 10, **fields},
        )


@pytest.mark.integration
def test_an_agent_dying_between_thread_counts_is_restarted_for_the_missing_ones(
    tiny_artifacts: list[Artifact], tmp_path: Path
) -> None:
    """The agent died (SIGSEGV) between tflite-fp32's 1-thread and 2-thread measurements, on a board reached by
    a real OpenSSH server: 'restarting for the rest' restarted nothing for tflite-fp32 (any artifact with one
    measurement counted as done), so its 2-thread row was 'not measured: the agent ended before this thread
    count' and the run FAILED. The restarted agent now measures tflite-fp32 at 2 threads only, then ncnn-fp32 runs as planned."""
    marker = tmp_path / "died-once"
    said: list[str] = []
    with _shimmed_board(
        tmp_path, DIE_IN_COOLDOWN_SHIM, f"SetEnv DIE_MARKER={marker}\n", runtimes=("ai_edge_litert", "ncnn")
    ) as board:
        result = deploy(
            load_recipe(TINY),
            [board],
            DeployOptions(repeat=2, warmup=0, threads=(1, 2), host=False),
            progress=lambda m: said.append(str(m)),
            artifacts=[a for a in tiny_artifacts if a.format in (Format.TFLITE_FP32, Format.NCNN_FP32)],
        )
    assert marker.exists(), said  # the agent did die once
    (run,) = result.runs
    got = measurements(run)
    assert {k: m.status for k, m in got.items()} == {  # type: ignore[attr-defined]
        ("tflite-fp32", 1): "ok",
        ("tflite-fp32", 2): "ok",
        ("ncnn-fp32", 1): "ok",
        ("ncnn-fp32", 2): "ok",
    }, [(k, m.error) for k, m in got.items()]  # type: ignore[attr-defined]
    assert run.status == "ok" and result.ok, run.error
    _first, restart, ncnn = run.agent.request["requests"]  # type: ignore[union-attr]  one per runtime, a restart
    assert [(a["id"], a["threads"]) for a in restart["artifacts"]] == [("tflite-fp32", [2])]
    assert [(a["id"], a["threads"]) for a in ncnn["artifacts"]] == [("ncnn-fp32", None)]
    assert any("restarting for the rest: tflite-fp32 (threads 2 only)" in s for s in said), said


HANG_AFTER_FIRST_SHIM = """
import importlib.util, os, sys, time
spec = importlib.util.spec_from_file_location("agent", sys.argv[1])
agent = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agent)
real = agent.log
def hanging(message):
    real(message)
    if " threads=1 ok " in message:  # measured, outputs saved on the device: now the device freezes
        open(os.environ["MEASURED_MARKER"], "w").close()
        time.sleep(120)
agent.log = hanging
sys.exit(agent.main(sys.argv[1:]))
"""


def _freeze_when(marker: Path, pidfile: Path, stopped: list[int], deadline_s: float = 60) -> None:
    """SIGSTOP an OpenSSH server and every sshd below it once `marker` exists (a frozen device)."""
    import psutil

    end = time.monotonic() + deadline_s
    while not marker.exists() and time.monotonic() < end:
        time.sleep(0.05)
    master = psutil.Process(int(pidfile.read_text()))
    for proc in [master, *master.children(recursive=True)]:
        if proc.name() == "sshd":
            os.kill(proc.pid, signal.SIGSTOP)
            stopped.append(proc.pid)


@pytest.mark.integration
def test_a_run_whose_outputs_were_never_pulled_names_no_route(
    tiny_artifacts: list[Artifact], tmp_path: Path
) -> None:
    """A board (a real OpenSSH server) froze after tflite-fp32 was measured and its outputs saved on it
    (DeviceTimeout): the outputs were never pulled, so no comparison exists, and the route still said 'ship
    tflite-fp32' with its on-device gates never checked (a missing comparison counted as passed). It is now no
    route, saying why; the measurement itself is kept."""
    marker = tmp_path / "measured"
    stopped: list[int] = []
    with _shimmed_board(
        tmp_path, HANG_AFTER_FIRST_SHIM, f"SetEnv MEASURED_MARKER={marker}\n", connect_timeout=3, io_timeout=3
    ) as board:
        freezer = threading.Thread(target=_freeze_when, args=(marker, tmp_path / "board.pid", stopped))
        freezer.start()
        try:
            result = deploy(
                load_recipe(TINY),
                [board],
                DeployOptions(repeat=2, warmup=0, threads=(1,), host=False),
                artifacts=[a for a in tiny_artifacts if a.format is Format.TFLITE_FP32],
            )
        finally:
            freezer.join()
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
    assert stopped, "the board was never frozen"
    (run,) = result.runs
    assert run.status == "failed" and "DeviceTimeout" in (run.error or ""), run.error
    assert measurements(run)["tflite-fp32", 1].status == "ok"  # type: ignore[attr-defined]  kept
    assert not [c for c in run.comparisons if c.reference == "onnx"]  # never pulled, never compared
    (route,) = result.routes
    assert route["artifact"] is None, route
    assert route["rejected"] == {"tflite-fp32": "gates not judged on the device: outputs not pulled"}, route


RESULT_IS_A_FOLDER_SHIM = """
import importlib.util, os, sys
os.makedirs(sys.argv[3])  # the result file's name is taken by a folder: every write of it fails (EISDIR)
spec = importlib.util.spec_from_file_location("agent", sys.argv[1])
agent = importlib.util.module_from_spec(spec)
spec.loader.exec_module(agent)
sys.exit(agent.main(sys.argv[1:]))
"""


@pytest.mark.integration
def test_an_agent_that_cannot_write_its_result_is_named_not_a_bad_request(
    tiny_artifacts: list[Artifact], tmp_path: Path
) -> None:
    """On a board reached by a real OpenSSH server the agent could not write its result file (here a folder
    holds its name): the run said 'bad request runs/.../request-0.json: IsADirectoryError', blaming the request
    edgekit wrote. It now says the agent could not write on the device, naming the file, and not a request."""
    with _shimmed_board(tmp_path, RESULT_IS_A_FOLDER_SHIM) as board:
        result = deploy(
            load_recipe(TINY),
            [board],
            DeployOptions(repeat=2, warmup=0, threads=(1,), host=False),
            artifacts=[a for a in tiny_artifacts if a.format is Format.TFLITE_FP32],
        )
    (run,) = result.runs
    error = run.error or ""
    assert run.status == "failed" and "bad request" not in error, error
    assert "the agent could not write on the device: edgekit-agent: cannot write " in error, error
    assert "result-0.json" in error and "Is a directory" in error, error
