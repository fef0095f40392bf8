"""The on-device timing agent, run on the host CPU with the real runtimes (ai-edge-litert, ncnn).

The models are tiny and made here: an ncnn .param/.bin written by hand and a .tflite converted by TensorFlow in
a subprocess, both the same conv -> relu -> global mean, so their outputs can be checked against numpy.
"""

from __future__ import annotations

import ast
import fcntl
import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.results import AgentResult, unknown_fields

AGENT = Path(__file__).resolve().parent.parent / "edgekit" / "agent" / "agent.py"
WEIGHTS_OIHW = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
BIAS = np.linspace(-0.5, 0.5, 4).astype(np.float32)

TFLITE_SCRIPT = """
import sys, numpy as np, tensorflow as tf
w = tf.constant(np.load(sys.argv[1]).transpose(2, 3, 1, 0))  # OIHW -> HWIO
b = tf.constant(np.load(sys.argv[2]))
@tf.function(input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
def f(x):
    return tf.reduce_mean(tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME") + b), axis=[1, 2])
conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
open(sys.argv[3], "wb").write(conv.convert())
"""


def reference(x_nchw: np.ndarray) -> np.ndarray:
    """conv3x3 (pad 1) + bias -> relu -> global mean, in numpy: what both tiny models compute."""
    x = np.pad(x_nchw, ((0, 0), (0, 0), (1, 1), (1, 1)))
    n, _, h, w = x_nchw.shape
    out = np.zeros((n, 4, h, w), np.float64)
    for i in range(3):
        for j in range(3):
            out += np.einsum("nchw,oc->nohw", x[:, :, i : i + h, j : j + w], WEIGHTS_OIHW[:, :, i, j])
    return np.maximum(out + BIAS[None, :, None, None], 0).mean(axis=(2, 3))


def write_ncnn(folder: Path) -> list[Path]:
    param = folder / "tiny.param"
    param.write_text(
        "7767517\n4 4\nInput in0 0 1 in0\n"
        "Convolution conv0 1 1 in0 c0 0=4 1=3 4=1 5=1 6=108\n"
        "ReLU relu0 1 1 c0 r0\nPooling pool0 1 1 r0 out0 0=1 4=1\n"
    )
    binary = folder / "tiny.bin"
    binary.write_bytes(struct.pack("<I", 0) + WEIGHTS_OIHW.tobytes() + BIAS.tobytes())
    return [param, binary]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    folder = tmp_path_factory.mktemp("tiny-models")
    np.save(folder / "w.npy", WEIGHTS_OIHW)
    np.save(folder / "b.npy", BIAS)
    tflite = folder / "tiny.tflite"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(
        [sys.executable, "-c", TFLITE_SCRIPT, str(folder / "w.npy"), str(folder / "b.npy"), str(tflite)],
        check=True,
        capture_output=True,
        env=env,
        timeout=300,
    )
    broken = folder / "broken.tflite"
    broken.write_bytes(tflite.read_bytes()[:40] + b"\x00garbage" * 20)
    return {"tflite": [tflite], "ncnn": write_ncnn(folder), "broken": [broken]}


ARTIFACTS = {
    "tflite": ("tflite-fp32", "tflite-fp32"),
    "broken": ("broken", "tflite-fp32"),
    "ncnn": ("ncnn-fp32", "ncnn-fp32"),
}


def make_request(
    work: Path,
    models: dict[str, list[Path]],
    kinds: tuple[str, ...] = ("tflite", "broken", "ncnn"),
    **settings: object,
) -> Path:
    inputs = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    np.save(work / "inputs.npy", inputs)
    arts = [
        {"id": ARTIFACTS[k][0], "format": ARTIFACTS[k][1], "files": [str(p) for p in models[k]]}
        for k in kinds
    ]
    req = {
        "protocol": 1,
        "artifacts": arts,
        "inputs": "inputs.npy",
        "threads": [1],
        "warmup": 1,
        "repeat": 5,
        "number": 2,
        "min_repeat_ms": 0,
        "cooldown_s": 0,
        **settings,
    }
    path = work / "request.json"
    path.write_text(json.dumps(req))
    return path


def run_agent(
    request: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> tuple[int, AgentResult]:
    result = request.parent / "result.json"
    done = subprocess.run(
        [sys.executable, str(AGENT), str(request), str(result)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    parsed = AgentResult.model_validate_json(result.read_text())
    assert unknown_fields(parsed) == []  # every field the agent writes is declared in edgekit.results
    return done.returncode, parsed


def test_agent_is_standalone_and_python39_compatible() -> None:
    tree = ast.parse(AGENT.read_text(), feature_version=(3, 9))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    allowed_third_party = {
        "numpy",
        "ncnn",
        "onnxruntime",
        "cv2",
        "MNN",  # runtimes, imported inside their runners
        "openvino",
        "executorch",
        "torch",
    }
    assert "edgekit" not in imported
    assert imported - set(sys.stdlib_module_names) <= allowed_third_party


def test_measures_every_artifact_and_isolates_the_broken_one(tmp_path: Path, models: dict) -> None:
    code, res = run_agent(make_request(tmp_path, models, threads=[1, 2]))
    assert code == 0 and res.error is None and res.finished_at and res.facts_after is not None
    by = {(m.artifact, m.threads): m for m in res.measurements}
    assert set(by) == {(a, t) for a in ("tflite-fp32", "broken", "ncnn-fp32") for t in (1, 2)}
    assert by["broken", 1].status == "failed" and by["broken", 1].error
    expected = reference(np.load(tmp_path / "inputs.npy"))
    for art in ("tflite-fp32", "ncnn-fp32"):
        for threads in (1, 2):
            m = by[art, threads]
            assert m.status == "ok", m.error
            assert len(m.samples_ms) == 5 and m.number == 2
            assert 0 < m.min_ms <= m.p50_ms <= m.p90_ms <= m.p99_ms  # type: ignore[operator]
            assert m.load_ms is not None and m.load_ms > 0 and m.peak_rss_mb and m.peak_rss_mb > 10
        first = by[art, 1]
        assert first.outputs_file and by[art, 2].outputs_file is None  # outputs once per artifact
        out = np.load(tmp_path / first.outputs_file)[first.output_keys[0]]
        assert out.shape[0] == 3 and set(first.output_checksums) == set(first.output_names)
        np.testing.assert_allclose(out.reshape(3, 4), expected, rtol=1e-4, atol=1e-5)
    assert by["tflite-fp32", 1].runtime == "ai_edge_litert" and by["ncnn-fp32", 1].runtime == "ncnn"


def test_load_time_leaves_the_runtimes_start_up_out_and_records_it_apart(
    tmp_path: Path, models: dict
) -> None:
    """The first artifact of each runtime in an agent run paid the runtime's start-up in its load time (onnx-fp32
    24.8 ms, onnx-int8 after it 4.0; ncnn-fp32 8.1, ncnn-fp16 0.44): load ms could not be compared across formats.
    The agent starts each runtime first (an untimed load of that artifact) and records it as runtime_init_ms."""
    request = make_request(tmp_path, models, ("ncnn", "tflite"), threads=[1, 2], repeat=2)
    req = json.loads(request.read_text())
    twin = {**req["artifacts"][0], "id": "ncnn-fp16", "format": "ncnn-fp16"}  # a second model of one runtime
    req["artifacts"].insert(1, twin)
    request.write_text(json.dumps(req))
    code, res = run_agent(request)
    assert code == 0 and not unknown_fields(res), unknown_fields(res)
    by = {(m.artifact, m.threads): m for m in res.measurements}
    assert all(m.status == "ok" for m in res.measurements), [m.error for m in res.measurements]
    firsts = {("ncnn-fp32", 1), ("tflite-fp32", 1)}  # the first of each runtime in this agent process
    for key, m in by.items():
        assert m.load_ms is not None and m.load_ms > 0
        if key in firsts:
            # 6-18x the load here; half of it leaves room for a preempted load on a loaded machine (review r17)
            assert m.runtime_init_ms is not None and m.runtime_init_ms > 0.5 * m.load_ms, (key, m)
        else:
            assert m.runtime_init_ms is None, (key, m.runtime_init_ms)  # its runtime had started
    raw = json.loads((tmp_path / "result.json").read_text())["measurements"]
    assert [("runtime_init_ms" in m) for m in raw] == [(m["artifact"], m["threads"]) in firsts for m in raw]


def test_device_facts_and_emulated_flag(tmp_path: Path, models: dict) -> None:
    env = {"EDGEKIT_EMULATOR": "qemu-aarch64 -cpu cortex-a72"}
    nicer = min(os.getpriority(os.PRIO_PROCESS, 0) + 1, 19)  # lowering priority is always permitted
    code, res = run_agent(make_request(tmp_path, models, ("tflite", "ncnn"), repeat=2, nice=nicer), env=env)
    facts = res.facts_before
    assert code == 0 and facts.nice == nicer
    assert facts.machine == os.uname().machine and facts.cores == os.cpu_count()
    assert facts.emulated and facts.emulator == env["EDGEKIT_EMULATOR"] and facts.throttled is None
    assert facts.python == ".".join(map(str, sys.version_info[:3]))
    assert {"ncnn", "ai_edge_litert", "numpy"} <= set(facts.runtimes) and facts.mem_total_mb
    assert facts.cpu_model and facts.cpu_features


def test_lock_keeps_a_second_benchmark_out(tmp_path: Path, models: dict) -> None:
    request = make_request(tmp_path, models, lock_timeout_s=1)
    with open(tmp_path / ".edgekit.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write("pid 1 since test\n")
        held.flush()
        started = time.monotonic()
        code, res = run_agent(request)
        assert time.monotonic() - started >= 1.0
    assert code == 3 and res.measurements == []
    assert "another benchmark holds" in (res.error or "") and "pid 1 since test" in (res.error or "")
    code, res = run_agent(request)  # released: runs
    assert code == 0 and len(res.measurements) == 3


def test_overhead_is_small_and_min_repeat_ms_raises_number(tmp_path: Path, models: dict) -> None:
    code, res = run_agent(
        make_request(tmp_path, models, ("tflite", "ncnn"), number=1, min_repeat_ms=20, repeat=5)
    )
    assert code == 0
    for m in res.measurements:
        assert m.number > 1, "a ~10 us model needs many invocations per 20 ms window"
        # windows near min_repeat_ms (20), not single calls (~0.01 ms): a preempted calibration window may stop
        # it at a few ms
        assert np.median(m.samples_ms) * m.number >= 5
        assert m.overhead_ms_per_sample is not None and m.overhead_ms_per_sample > 0
        assert m.overhead_ms_per_sample < 0.05 * m.p50_ms * m.number  # type: ignore[operator]


@pytest.mark.parametrize("min_repeat_ms", [50, 0])
def test_other_processes_cpu_use_while_timing_is_recorded(
    tmp_path: Path, models: dict, min_repeat_ms: int
) -> None:
    """Processes that keep every core busy while the agent times a model (a shared runner, a board running
    something else): the measurement says what share of the CPUs they took (it is ~1.0 here: one spinning
    process per core), so its times are marked, not trusted. On a 2-core host, ncnn at 2 threads under such
    load measured 137 ms p50 for a 0.04 ms model. A timed window under 0.1 s (min_repeat_ms 0: a small model's
    whole timing) had no share at all, so a busy night's small models were judged and kept as baselines."""
    spinners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)
    ]
    try:
        time.sleep(0.5)
        code, res = run_agent(
            make_request(tmp_path, models, ("tflite",), number=1, min_repeat_ms=min_repeat_ms, repeat=5)
        )
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert code == 0
    (m,) = res.measurements
    assert m.others_cpu_share is not None and m.others_cpu_share >= 0.4, m.others_cpu_share
    assert m.timed_while_busy


def test_instruction_marks_read_the_plugin_file(tmp_path: Path, models: dict) -> None:
    insn = tmp_path / "insn.txt"
    insn.write_text("1\n12345\n")  # what the counting plugin leaves after a window (marks are -ENOSYS here)
    code, res = run_agent(make_request(tmp_path, models, number=5), env={"EDGEKIT_INSN_FILE": str(insn)})
    assert code == 0
    assert [m.instructions_per_invoke for m in res.measurements if m.status == "ok"] == [2469, 2469]
    code, res = run_agent(make_request(tmp_path, models))
    assert all(m.instructions_per_invoke is None for m in res.measurements)


def test_result_is_written_incrementally_and_survives_a_kill(tmp_path: Path, models: dict) -> None:
    make_request(tmp_path, models)
    req = {
        "protocol": 1,
        "inputs": "inputs.npy",
        "threads": [1, 2],
        "warmup": 0,
        "repeat": 30000,
        "number": 1,
        "artifacts": [{"id": "n", "format": "ncnn-fp32", "files": [str(p) for p in models["ncnn"]]}],
    }
    (tmp_path / "request.json").write_text(json.dumps(req))
    result = tmp_path / "result.json"
    proc = subprocess.Popen(
        [sys.executable, str(AGENT), str(tmp_path / "request.json"), str(result)], stderr=subprocess.DEVNULL
    )
    partial = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if result.exists():
                partial = AgentResult.model_validate_json(result.read_text())  # always whole: atomic writes
                if partial.in_progress == "n threads=2":
                    break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(10)
    assert partial is not None and partial.in_progress == "n threads=2", (
        "the run ended before it could be killed"
    )
    kept = AgentResult.model_validate_json(result.read_text())
    assert [(m.artifact, m.threads, m.status) for m in kept.measurements] == [("n", 1, "ok")]
    assert len(kept.measurements[0].samples_ms) == 30000 and kept.finished_at is None


def test_random_inputs_runtime_preference_and_bad_request(tmp_path: Path, models: dict) -> None:
    req = {
        "protocol": 1,
        "threads": [1],
        "warmup": 0,
        "repeat": 3,
        "random_inputs": {"shape": [1, 3, 8, 8]},
        "tflite_runtime": "tflite_runtime",
        "artifacts": [
            {"id": "a", "format": "tflite-fp32", "files": [str(models["tflite"][0])]},
            {"id": "b", "format": "ncnn-fp32", "files": [str(p) for p in models["ncnn"]]},
        ],
    }
    (tmp_path / "request.json").write_text(json.dumps(req))
    code, res = run_agent(tmp_path / "request.json")
    a, b = res.measurements
    assert code == 0 and a.status == "failed" and "tflite_runtime" in (a.error or "")
    assert b.status == "ok" and len(b.samples_ms) == 3
    missing = tmp_path / "missing.json"
    done = subprocess.run(
        [sys.executable, str(AGENT), str(missing), str(tmp_path / "r.json")], capture_output=True, text=True
    )
    assert done.returncode == 2 and "bad request" in done.stderr
    req = {**req, "protocol": 99}
    (tmp_path / "request.json").write_text(json.dumps(req))
    code, res = run_agent(tmp_path / "request.json")
    assert code == 2 and "protocol" in (res.error or "")


def test_ncnn_io_sidecar_names_blobs_and_sets_options(tmp_path: Path, models: dict) -> None:
    """An io sidecar names the blobs and sets ncnn options (e.g. fp16 arithmetic off)."""
    sidecar = tmp_path / "model.io.json"
    sidecar.write_text(
        json.dumps(
            {
                "inputs": ["in0"],
                "outputs": ["out0"],
                "options": {"use_fp16_arithmetic": False, "use_fp16_storage": False},
            }
        )
    )
    req = {
        "protocol": 1,
        "threads": [1],
        "warmup": 0,
        "repeat": 2,
        "random_inputs": {"shape": [1, 3, 8, 8]},
        "artifacts": [
            {"id": "n", "format": "ncnn-fp32", "files": [str(p) for p in models["ncnn"]], "io": str(sidecar)}
        ],
    }
    (tmp_path / "request.json").write_text(json.dumps(req))
    code, res = run_agent(tmp_path / "request.json")
    assert code == 0 and res.measurements[0].status == "ok" and res.measurements[0].output_names == ["out0"]


# --- ncnn outputs the runner must take from the model, and results it must not crash on -------------------------
def _import_agent():  # the standalone file, as the device runs it
    import importlib.util

    spec = importlib.util.spec_from_file_location("edgekit_agent_file", AGENT)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def write_two_heads(stem: Path) -> Path:
    """Input -> two 1x1 convolutions (2 and 3 channels) gathered by a Noop layer, as ncnn's detectors mark their
    several output heads: the outputs are the heads, not the Noop's blob."""
    lines = [
        "7767517",
        "5 6",
        "Input in0 0 1 data 0=4 1=4 2=3",
        "Split split 1 2 data d0 d1",
        "Convolution head_a 1 1 d0 out_a 0=2 1=1 5=1 6=6",
        "Convolution head_b 1 1 d1 out_b 0=3 1=1 5=1 6=9",
        "Noop gather 2 1 out_a out_b all",
    ]
    weights = [
        struct.pack("<I", 0),
        np.ones(6, "<f4").tobytes(),
        np.zeros(2, "<f4").tobytes(),
        struct.pack("<I", 0),
        np.full(9, 2.0, "<f4").tobytes(),
        np.zeros(3, "<f4").tobytes(),
    ]
    stem.with_suffix(".param").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".bin").write_bytes(b"".join(weights))
    return stem.with_suffix(".param")


def test_ncnn_outputs_behind_a_noop_are_the_heads(tmp_path: Path) -> None:
    agent = _import_agent()
    param = write_two_heads(tmp_path / "heads")
    inputs, outputs = agent._ncnn_io_from_param(str(param))
    assert inputs == ["data"] and outputs == ["out_a", "out_b"]
    runner = agent.NcnnRunner(str(param), str(param.with_suffix(".bin")), 1, None)
    runner.set_input(np.full((3, 4, 4), 0.5, np.float32))
    runner.invoke()
    (name_a, a), (name_b, b) = runner.outputs()
    assert (name_a, name_b) == ("out_a", "out_b")
    assert a.size == 2 * 16 and np.allclose(a, 1.5) and b.size == 3 * 16 and np.allclose(b, 3.0)


def test_ncnn_model_with_several_inputs_is_a_named_error(tmp_path: Path) -> None:
    """The agent feeds one input tensor: a two-input model is refused by name, not run with one input left empty
    (ncnn's extract then failed with a bare -100)."""
    agent = _import_agent()
    param = tmp_path / "two.param"
    param.write_text(
        "7767517\n3 3\nInput in0 0 1 a 0=4 1=4 2=3\nInput in1 0 1 b 0=4 1=4 2=3\nBinaryOp add 2 1 a b out0 0=0\n"
    )
    param.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(RuntimeError, match="2 inputs \\(a, b\\)"):
        agent.NcnnRunner(str(param), str(param.with_suffix(".bin")), 1, None)


def test_ncnn_input_outlives_its_array_and_empty_outputs_are_results(tmp_path: Path) -> None:
    """The runner keeps the input array alive (ncnn.Mat borrows it): a temporary freed before the run gave
    garbage or SIGSEGV. An empty output (a detector that found nothing) is an empty array, not a crash."""
    import gc

    import ncnn

    agent = _import_agent()
    param = write_two_heads(tmp_path / "heads")
    runner = agent.NcnnRunner(str(param), str(param.with_suffix(".bin")), 1, None)
    runner.set_input(np.full((1, 3, 4, 4), 0.25, np.float32))  # a temporary, with its batch axis
    gc.collect()
    [np.full((3, 4, 4), 99.0, np.float32) for _ in range(50)]  # reuse freed memory if the input was freed
    runner.invoke()
    assert np.allclose(runner.outputs()[0][1], 0.75)
    runner._last = [ncnn.Mat(), ncnn.Mat()]  # what extract() gives for an empty detection result
    assert [y.shape for _, y in runner.outputs()] == [(0,), (0,)]


def test_a_file_the_agent_cannot_write_is_said_as_such_not_as_a_bad_request(
    tmp_path: Path, models: dict
) -> None:
    """Any OSError was 'bad request': a result or lock the device would not let the agent write (a full disk,
    EACCES, EIO) read 'edgekit-agent: bad request runs/.../request-0.json: OSError: ...'. It now says 'cannot
    write PATH: ...' and exits 5 (the host's EXIT_CANNOT_WRITE); an unreadable request is still a bad request."""
    req = {
        "protocol": 1,
        "threads": [1],
        "warmup": 0,
        "repeat": 2,
        "random_inputs": {"shape": [1, 3, 8, 8]},
        "artifacts": [{"id": "b", "format": "ncnn-fp32", "files": [str(p) for p in models["ncnn"]]}],
    }
    (tmp_path / "request.json").write_text(json.dumps(req))
    (tmp_path / "a-file").write_text("not a folder")  # ENOTDIR below it, whoever runs the test (root too)
    for result, lock in ((tmp_path / "a-file" / "result.json", None), (tmp_path / "r.json", "a-file/lock")):
        body = {**req, "lock_file": lock} if lock else req
        (tmp_path / "request.json").write_text(json.dumps(body))
        done = subprocess.run(
            [sys.executable, str(AGENT), str(tmp_path / "request.json"), str(result)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 5, done.stderr
        assert "bad request" not in done.stderr and "edgekit-agent: cannot write " in done.stderr, done.stderr
        assert ("a-file/result.json" if lock is None else "a-file/lock") in done.stderr, done.stderr
    (tmp_path / "request.json").write_text("{not json")
    done = subprocess.run(
        [sys.executable, str(AGENT), str(tmp_path / "request.json"), str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "bad request" in done.stderr, done.stderr
    from edgekit.agent.contract import EXIT_CANNOT_WRITE

    assert EXIT_CANNOT_WRITE == 5  # the host reads the agent's exit status by this
