"""`edgekit bench ARTIFACT --target NAME`: one existing model file timed without a recipe, on the host and on
the emulated pi4 (real sshd + qemu)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.formats import Format
from edgekit.recipe import load_recipe
from edgekit.results import TargetRun

TINY = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny recipe's fp32 .tflite and ncnn files copied out of the cache, as a user would have them."""
    from edgekit.convert.pipeline import convert_recipe

    folder = tmp_path_factory.mktemp("user-models")
    arts = {a.format: a for a in convert_recipe(load_recipe(TINY), [Format.TFLITE_FP32, Format.NCNN_FP32])}
    tflite = shutil.copy(arts[Format.TFLITE_FP32].main_file, folder / "tiny.tflite")
    for f in arts[Format.NCNN_FP32].files:
        shutil.copy(f, folder / f.name.replace("model", "tiny"))
    bare = folder / "bare"
    bare.mkdir()
    for suffix in (".param", ".bin"):  # without its model.io.json: the shape must be given
        shutil.copy(folder / f"tiny{suffix}", bare / f"tiny{suffix}")
    broken = folder / "broken.tflite"
    broken.write_bytes(Path(tflite).read_bytes()[:100] + b"\xff" * 64)
    return {
        "tflite": Path(tflite),
        "param": folder / "tiny.param",
        "bare": bare / "tiny.param",
        "broken": broken,
    }


def bench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return edgekit("bench", *args, timeout=timeout)


def edgekit(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.mark.integration
def test_bench_tflite_on_host_with_random_input(model_files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = bench(
        str(model_files["tflite"]),
        "--target",
        "host",
        "--threads",
        "1,2",
        "--repeat",
        "4",
        "--json",
        str(out),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run = TargetRun.model_validate_json(out.read_text())
    assert run.agent is not None and [m.threads for m in run.agent.measurements] == [1, 2]
    for m in run.agent.measurements:
        assert m.status == "ok" and len(m.samples_ms) == 4 and m.p50_ms <= m.p99_ms  # type: ignore[operator]
    assert "p50 ms" in done.stdout and "tflite-fp32" in done.stdout


@pytest.mark.integration
def test_bench_ncnn_needs_a_shape_without_sidecar(model_files: dict[str, Path], tmp_path: Path) -> None:
    done = bench(str(model_files["bare"]), "--target", "host")
    assert done.returncode == 2 and "--shape" in done.stderr, done.stderr
    done = bench(
        str(model_files["bare"]),
        "--target",
        "host",
        "--shape",
        "1,3,32,32",
        "--repeat",
        "3",
        "--json",
        str(tmp_path / "bare.json"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    bare = json.loads((tmp_path / "bare.json").read_text())["agent"]["measurements"][0]
    assert bare["format"] == "ncnn-fp16"  # no sidecar: ncnn's default options, which edgekit calls ncnn-fp16
    assert "format ncnn-fp16 (the .param default" in done.stdout  # said, not only in the JSON
    sample = tmp_path / "x.npy"
    np.save(sample, np.zeros((2, 3, 32, 32), np.float32))
    done = bench(
        str(model_files["param"]),
        "--target",
        "host",
        "--input",
        str(sample),
        "--repeat",
        "3",
        "--json",
        str(tmp_path / "r.json"),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run = json.loads((tmp_path / "r.json").read_text())
    assert run["agent"]["measurements"][0]["format"] == "ncnn-fp32"  # from the sidecar
    assert "format ncnn-fp32 (as edgekit made it" in done.stdout
    assert run["agent"]["measurements"][0]["output_shapes"] == [[2, 1, 10]]


@pytest.mark.integration
def test_bench_broken_file_fails_clearly(model_files: dict[str, Path], tmp_path: Path) -> None:
    """A corrupt model is the user's input: refused on the host, named, exit 2, with or without an input."""
    done = bench(str(model_files["broken"]), "--target", "host")
    assert done.returncode == 2 and "not a readable .tflite" in done.stderr, done.stderr
    sample = tmp_path / "x.npy"
    np.save(sample, np.zeros((1, 1, 32, 32, 3), np.float32))
    done = bench(str(model_files["broken"]), "--target", "host", "--input", str(sample))
    assert done.returncode == 2 and "not a readable .tflite" in done.stderr, done.stderr


@pytest.mark.integration
def test_bench_and_profile_refuse_a_target_deploy_would_refuse_before_any_run(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    """A missing key file and an emulated target stating a core its device does not run were exit 2 in deploy and
    exit 1 in bench and profile (said when connecting or starting the device): now the same refusal, exit 2."""
    missing = tmp_path / "no_such_key"
    cases = [
        (["--target", "phone", "--set", f"key={missing}"], "key file not found"),
        (["--target", "phone-emu", "--set", "emulated.cpu=cortex-a72"], "phone-emu runs cortex-a76"),
    ]
    for args, said in cases:
        for command, model in (("bench", model_files["tflite"]), ("profile", model_files["param"])):
            done = edgekit(command, str(model), *args, timeout=120)
            text = " ".join(done.stderr.split())
            assert done.returncode == 2 and said in text, (command, args, done.stdout, done.stderr)
    done = edgekit(
        "deploy",
        str(Path(__file__).resolve().parents[1] / "recipes" / "tiny.yaml"),
        *cases[1][0],
        "--no-host",
        timeout=120,
    )
    assert done.returncode == 2 and "convert:" not in done.stdout + done.stderr, done.stdout + done.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    ("suffix", "message"),
    [
        (".onnx", "not a readable ONNX model"),
        (".mnn", "not a readable .mnn model"),
        (".xml", "not a readable OpenVINO model"),
        (".pte", "executorch (which runs executorch-fp32) is not installed on this machine"),
    ],
)
def test_bench_refuses_a_corrupt_model_of_every_runtime_on_the_host(
    model_files: dict[str, Path], tmp_path: Path, suffix: str, message: str
) -> None:
    """Only .tflite and .param were read on the host: a corrupt .onnx or .mnn went to the device and failed
    there (exit 1, "SystemError: <built-in function load_module_from_file> returned a result with an exception
    set"). Each runtime now reads its file here first (exit 2); a runtime this machine lacks is named."""
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(model_files["broken"].read_bytes())
    if suffix == ".xml":
        bad.write_text('<?xml version="1.0"?><net name="cut">')  # a truncated IR, its .bin beside it
        bad.with_suffix(".bin").write_bytes(b"\0" * 64)
    done = bench(str(bad), "--target", "host", "--shape", "1,3,8,8")
    text = " ".join(done.stderr.split())
    assert done.returncode == 2 and message in text, done.stdout + done.stderr
    assert "agent measuring" not in done.stdout  # refused before any agent ran


@pytest.mark.integration
def test_bench_inputs_that_do_not_fit_are_refused_before_the_agent_runs(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    """An --input whose samples fit no input of the model (it failed in the agent, exit 1), a file that is no
    .npy or holds no samples, and a --format of another runtime (it said "model.param: file not found")."""
    cases = {
        "wrong-shape": (np.zeros((2, 5, 5), np.float32), "does not fit the model input"),
        "no-samples": (np.float32(3.0), "holds no input samples"),
    }
    for name, (array, message) in cases.items():
        np.save(tmp_path / f"{name}.npy", array)
        done = bench(str(model_files["tflite"]), "--target", "host", "--input", str(tmp_path / f"{name}.npy"))
        assert done.returncode == 2 and message in done.stderr, (name, done.stderr)
    (tmp_path / "text.npy").write_text("1 2 3\n")
    done = bench(str(model_files["tflite"]), "--target", "host", "--input", str(tmp_path / "text.npy"))
    assert done.returncode == 2 and "not a numeric .npy array" in done.stderr, done.stderr
    done = bench(str(model_files["tflite"]), "--target", "host", "--format", "ncnn-int8")
    assert done.returncode == 2 and "runs on ncnn" in done.stderr and "--format tflite-fp32" in done.stderr
    # a label contradicting the artifact's own metadata (model.io.json: ncnn-fp32) was taken: now refused
    done = bench(str(model_files["param"]), "--target", "host", "--format", "ncnn-int8")
    assert done.returncode == 2 and "metadata says ncnn-fp32" in done.stderr, done.stderr
    np.save(tmp_path / "nchw.npy", np.zeros((2, 1, 3, 32, 32), np.float32))  # NCHW samples for an NHWC model
    done = bench(
        str(model_files["tflite"]), "--target", "host", "--repeat", "2", "--input", str(tmp_path / "nchw.npy")
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--timeout", "nan"),
        ("--timeout", "0"),
        ("--timeout", "-5"),
        ("--timeout", "inf"),
        ("--timeout", "604801"),
        ("--min-repeat-ms", "nan"),
    ],
)
def test_bench_refuses_a_timeout_or_min_repeat_that_is_no_finite_number_in_range(
    model_files: dict[str, Path], option: str, value: str
) -> None:
    """--timeout took any number: nan failed the run (exit 1) with a DeviceTimeout about a "whole-run deadline
    (nan s", 0 and -5 with an AgentError after a second, inf ran unbounded; --min-repeat-ms nan passed its
    range check. Each is now refused before any run (exit 2), naming the option and its range (the recipe's)."""
    done = bench(str(model_files["tflite"]), "--target", "host", f"{option}={value}", timeout=120)
    text = " ".join(done.stderr.split())
    assert done.returncode == 2 and f"Invalid value for '{option}'" in text, done.stdout + done.stderr
    assert ("604800" if option == "--timeout" else "60000") in text, text
    assert "agent measuring" not in done.stdout


@pytest.mark.integration
def test_bench_timeout_hint_names_the_timeout_option(model_files: dict[str, Path]) -> None:
    """An agent that outlived bench's --timeout was told to "raise benchmark.timeout_s", a recipe field bench has
    no recipe for: the hint now names --timeout (exit 1: a failed run)."""
    done = bench(
        str(model_files["tflite"]),
        "--target",
        "host",
        "--timeout",
        "0.5",
        "--min-repeat-ms",
        "3000",
        "--repeat",
        "2",
        timeout=300,
    )
    text = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1 and "did not finish within 1 s" in text, text
    assert "hint: raise --timeout, or lower repeat/threads" in text and "benchmark.timeout_s" not in text, (
        text
    )


@pytest.mark.integration
def test_bench_refuses_an_input_whose_header_the_file_or_memory_cannot_hold(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    """A 200-byte .npy whose header claims shape (1e11, 3, 32, 32) was "internal error (MemoryError)" (np.load
    allocated it), an .npz named .npy "internal error (AttributeError)", and --input had no size limit: the
    header is now read first and the file named (exit 2) before anything is allocated."""
    from numpy.lib import format as npy

    from edgekit.recipe.schema import MAX_DATA_BYTES

    def header(name: str, descr: str, shape: tuple[int, ...], size: int) -> Path:
        path = tmp_path / name
        with path.open("wb") as f:
            npy.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
            f.truncate(size)  # sparse: nothing written
        return path

    huge = header("hugehdr.npy", "<f4", (100_000_000_000, 3, 32, 32), 200)
    over = header("over.npy", "|u1", (MAX_DATA_BYTES // 4 + 1, 1), MAX_DATA_BYTES // 4 + 1 + 128)
    np.savez(tmp_path / "zipped.npz", x=np.zeros((2, 1, 32, 32, 3), np.float32))
    zipped = (tmp_path / "zipped.npz").rename(tmp_path / "zipped.npy")
    # a negative axis, which np.load sized from the bytes there are: benched as shape [2, 3, 32, 32]
    negative = header("negative.npy", "<f4", (-1, 3, 32, 32), 128 + 2 * 3 * 32 * 32 * 4)
    for path, said in [
        (negative, "not a numeric .npy array: its header says shape [-1, 3, 32, 32]: a negative dimension"),
        (huge, "its header says an array of shape [100000000000, 3, 32, 32]"),
        (
            over,
            f"an array of shape [{MAX_DATA_BYTES // 4 + 1}, 1] is {MAX_DATA_BYTES / (1 << 30):.1f} GiB as float32",
        ),
        (zipped, "not a numeric .npy array: the magic string is not correct"),
    ]:
        done = bench(str(model_files["tflite"]), "--target", "host", "--input", str(path), timeout=120)
        text = " ".join(done.stderr.split())
        assert done.returncode == 2 and f"error (InputDataError): {path}: {said}" in text, done.stderr
        assert "internal error" not in done.stderr and "hint:" in done.stderr


@pytest.mark.integration
def test_bench_on_pi4_emu_is_labelled_emulated(
    pi4_emu: object, model_files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "emu.json"
    done = bench(
        str(model_files["param"]), "--target", "pi4-emu", "--repeat", "2", "--warmup", "1", "--json", str(out)
    )
    assert done.returncode == 0, done.stdout + done.stderr
    run = TargetRun.model_validate_json(out.read_text())
    assert run.agent is not None and run.agent.facts_before.machine == "aarch64" and run.emulated
    assert "emulated" in done.stdout and "not device latency" in done.stdout


def test_onnx_runtime_counted_at_n_threads_turns_its_pools_spinning_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORT's idle pool threads spin, and under the counting plugin spinning is instructions: 4 threads counted
    12.1 M for 3.9 M of work, the busiest thread all of it. A counted run (EDGEKIT_INSN_FILE set) turns spinning
    off; a timed run keeps ORT's default. The 4-thread count still varies from run to run (4.5 M to 11.6 M
    measured on pi4-emu: the pool's dispatcher waits by polling, and how often depends on the host's load), so
    what is asserted is the session's own configuration, on the host's onnxruntime, not a count."""
    import onnx
    from test_estimate import write_onnx

    from edgekit.agent import agent

    model = write_onnx(tmp_path / "chain.onnx", 1)
    written = onnx.load(str(model))
    written.ir_version = 10  # what onnxruntime reads
    onnx.save(written, str(model))
    monkeypatch.setenv("EDGEKIT_INSN_FILE", str(tmp_path / "insns.txt"))
    counted = agent.OnnxRuntimeRunner(str(model), 4).sess.get_session_options()
    assert counted.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    monkeypatch.delenv("EDGEKIT_INSN_FILE")
    timed = agent.OnnxRuntimeRunner(str(model), 4).sess.get_session_options()
    with pytest.raises(RuntimeError):  # timing keeps ORT's default (no entry: spinning on)
        timed.get_session_config_entry("session.intra_op.allow_spinning")


@pytest.mark.integration
def test_a_bare_param_benched_with_a_chw_shape_is_estimated_from_its_graph(
    pi4_emu: object, model_files: dict[str, Path], tmp_path: Path
) -> None:
    """`--shape 3,8,8` runs the same model as 1,3,8,8 (ncnn has no batch axis): the estimate reads the graph at
    that shape too (it was estimated without the graph: no MACs, weights or roofline)."""
    from edgekit.emu.plugin import build as plugin_build

    if not plugin_build.is_built():
        pytest.skip("the counting plugin is not built (edgekit emu build pi4-emu builds it)")
    out = tmp_path / "chw.json"
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "bench", str(model_files["bare"]), "--target", "pi4-emu"]
        + ["--shape", "3,8,8", "--repeat", "1", "--warmup", "0", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200", "EDGEKIT_TARGET_PI4_EMU_EMULATED__COUNTING": "true"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (est,) = TargetRun.model_validate_json(out.read_text()).estimates.values()
    assert est["status"] == "ok" and est["roofline_lower_bound_ms"] > 0


@pytest.mark.parametrize("command", ["bench", "profile"])
def test_an_ncnn_model_ncnn_cannot_load_is_refused_before_any_run(tmp_path: Path, command: str) -> None:
    """A .param whose .bin does not fit is the user's input: exit 2, named, before a device or guest starts."""
    param = tmp_path / "m.param"
    param.write_text(
        "7767517\n2 2\nInput in0 0 1 data 0=8 1=8 2=3\nConvolution c 1 1 data out0 0=4 1=3 5=1 6=108\n"
    )
    param.with_suffix(".bin").write_bytes(bytes(100))  # 108 weights need 436 bytes
    shape = ["--shape", "1,3,8,8"] if command == "bench" else ["--input-shape", "1,3,8,8"]
    target = "host" if command == "bench" else "pi4-emu"
    done = edgekit(command, str(param), "--target", target, *shape, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "cannot load the weights" in done.stderr and "m.bin" in done.stderr


@pytest.mark.integration
def test_bench_onnx_takes_its_fixed_input_shape(tmp_path: Path) -> None:
    """An .onnx states its input shape: benched as is when every dimension is fixed (a free batch alone is taken as
    1: tests/test_free_batch_onnx.py)."""
    import onnx
    from onnx_graphs import gelu_classifier

    free = gelu_classifier(tmp_path / "free.onnx")  # batch "N"
    model = onnx.load(str(free))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    out = tmp_path / "fixed.json"
    done = bench(str(fixed), "--target", "host", "--repeat", "3", "--json", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    (m,) = json.loads(out.read_text())["agent"]["measurements"]
    assert m["status"] == "ok" and m["output_shapes"] == [[1, 1, 10]]


def test_profile_refuses_a_file_it_cannot_profile(tmp_path: Path) -> None:
    """`edgekit profile` counts ncnn layers, TFLite ops or ONNX Runtime nodes: any other file is bad input, named,
    exit 2, before a guest starts."""
    other = tmp_path / "model.mnn"
    other.write_bytes(b"\x00" * 64)
    done = edgekit("profile", str(other), "--target", "pi4-emu", timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "a .mnn file is none of them" in done.stderr and "model.mnn" in done.stderr


@pytest.mark.integration
def test_profile_on_the_host_times_each_ncnn_layer(model_files: dict[str, Path]) -> None:
    """On a board or the host, `edgekit profile` is each ncnn layer's own wall time from the agent: every layer of
    the .param but its input, in file order, medians over the passes asked for; a .tflite there is refused."""
    param = model_files["param"]
    expected = [line.split()[1] for line in param.read_text().splitlines()[2:] if line.split()[0] != "Input"]

    def profile(*args: str) -> subprocess.CompletedProcess[str]:
        return edgekit("profile", *args, "--target", "host")

    done = profile(str(param), "--passes", "5", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["label"].startswith("wall time per layer") and data["layer_passes"] == 5
    assert [layer["name"] for layer in data["layer_ms"]] == expected
    assert all(layer["ms"] >= layer["min_ms"] >= 0 for layer in data["layer_ms"])
    assert sum(layer["ms"] for layer in data["layer_ms"]) > 0 and data["p50_ms"] > 0
    done = profile(str(param), "--passes", "3", "--top", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hardware measurement" in done.stdout and f"{len(expected)} layers sum to" in done.stdout
    done = profile(str(model_files["tflite"]))
    assert done.returncode == 2 and "pi4-emu" in done.stderr, done.stderr


@pytest.mark.integration
def test_profile_wall_times_say_more_threads_than_usable_cores(model_files: dict[str, Path]) -> None:
    """`profile --target local --threads 8` on a 2-core machine printed its wall times without a word, though
    bench says "! local: 8 threads on 2 usable cores ..." (and "other processes used up to 68% ...") of the same
    times: profile prints bench's timing caveats under its table, and --json holds them."""
    usable = len(os.sched_getaffinity(0))
    args = (str(model_files["param"]), "--target", "host", "--threads", str(usable + 1), "--passes", "2")
    done = edgekit("profile", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    said = f"! host: {usable + 1} threads on {usable} usable core"
    assert said in done.stdout and done.stdout.index(said) > done.stdout.index("layers sum to"), done.stdout
    done = edgekit("profile", *args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert any(
        f"{usable + 1} threads on {usable} usable" in c for c in json.loads(done.stdout)["timing_caveats"]
    )


@pytest.mark.integration
def test_profile_on_the_host_times_a_detector_that_finds_nothing() -> None:
    """ncnn's mobilenet_ssd with zero weights detects nothing: re-extracting its empty DetectionOutput blob made
    ncnn run the layer again and fail (-100), and the whole per-layer timing failed. Now every layer is timed."""
    from edgekit.estimate import calibration

    param = calibration.zero_weights(calibration.models()["mobilenet_ssd"])
    done = edgekit(
        "profile", str(param), "--target", "host", "--input-shape", "1,3,96,96", "--passes", "1", "--json"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    layers = {layer["name"]: layer for layer in json.loads(done.stdout)["layer_ms"]}
    assert (
        layers["detection_out"]["ms"] >= 0 and len(layers) == calibration.models()["mobilenet_ssd"].layers - 1
    )


@pytest.mark.integration
def test_ctrl_c_during_a_wall_time_profile_exits_130(model_files: dict[str, Path]) -> None:
    """Ctrl-C while the agent times layers on the host: the interrupt is named and exits 130, as bench's does,
    not "per-layer timing failed" (exit 1), and no agent is left running."""
    import time

    import psutil
    from procs import ctrl_c_when

    args = [sys.executable, "-m", "edgekit", "profile", str(model_files["param"]), "--target", "host"]
    proc = subprocess.Popen(
        [*args, "--passes", "1000000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    agents: list = []

    def agent_started() -> bool:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not agents:
            agents.extend(_agents(proc.pid))
            time.sleep(0.2)
        return bool(agents)

    stdout, stderr, seconds = ctrl_c_when(proc, agent_started, settle=1.0, timeout=60)
    assert proc.returncode == 130, stdout + stderr
    assert seconds < 30 and "interrupted (Ctrl-C" in stderr, stderr
    assert "per-layer timing failed" not in stderr
    time.sleep(1)
    assert not [a.pid for a in agents if a.is_running() and a.status() != psutil.STATUS_ZOMBIE]


def _agents(pid: int) -> list:
    import psutil

    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c for c in children if "agent" in " ".join(c.cmdline())]


@pytest.mark.integration
def test_someone_elses_int8_tflite_is_benched_as_int8(tmp_path: Path) -> None:
    """A full-integer .tflite without edgekit's metadata was benched and recorded as `tflite-fp32` (the suffix's
    default): its precision is read from its tensors, and the line says so."""
    from edgekit.convert.pipeline import convert_recipe

    (art,) = convert_recipe(load_recipe(TINY), [Format.TFLITE_INT8])
    mine = Path(shutil.copy(art.main_file, tmp_path / "theirs.tflite"))
    done = bench(str(mine), "--target", "host", "--repeat", "3", "--json", str(tmp_path / "b.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "format tflite-int8 (read from its tensors" in done.stdout, done.stdout
    record = json.loads((tmp_path / "b.json").read_text())
    assert {m["format"] for m in record["agent"]["measurements"]} == {"tflite-int8"}


@pytest.mark.integration
def test_bench_input_samples_an_ncnn_model_cannot_take_are_refused_as_shape_is(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    """`--input` of 5-channel samples, or of H,W samples, for an ncnn model whose first layer takes 3 channels was
    timed and reported ok (ncnn runs a wrong channel count anyway: a model that does not exist), though the same
    shape given to --shape is refused: the first sample is now checked as --shape is, exit 2, before any agent.
    Samples the agent reshapes to the sidecar's shape (as many numbers) still run."""
    cases = {"c5": ((2, 5, 32, 32), "has 5 channels"), "hw": ((2, 32, 32), "has 1 channel")}
    for model in ("param", "bare"):
        for name, (shape, said) in cases.items():
            np.save(tmp_path / f"{name}.npy", np.zeros(shape, np.float32))
            done = bench(
                str(model_files[model]), "--target", "host", "--input", str(tmp_path / f"{name}.npy")
            )
            text = " ".join(done.stderr.split())
            assert done.returncode == 2 and said in text and "takes 3" in text, (model, name, done.stderr)
            assert "--input" in text and "agent measuring" not in done.stdout, (model, name, done.stdout)
    np.save(tmp_path / "flat.npy", np.zeros((2, 3 * 32 * 32), np.float32))
    done = bench(
        str(model_files["param"]), "--target", "host", "--repeat", "2", "--input", str(tmp_path / "flat.npy")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "input: 2 samples of shape 3072 from flat.npy, run by ncnn at 1,3,32,32" in done.stdout, (
        done.stdout
    )


@pytest.mark.integration
def test_bench_a_1d_or_2d_shape_of_an_ncnn_model_is_refused_before_anything_runs(
    model_files: dict[str, Path],
) -> None:
    """`bench tiny.param --target pi4-emu --shape 1,32` timed the model and printed `pi4 ESTIMATE ... ~0.106 ms`,
    exit 0 (and `--target local --shape 32` failed in ncnn's extract, exit 1): ncnn reads a 2-D shape as H,W, one
    channel, which the model's first convolution (3 channels) cannot take. Refused now as --shape 1,5,32,32 is."""
    for model in ("param", "bare"):
        for shape in ("1,32", "32"):
            done = bench(str(model_files[model]), "--target", "host", "--shape", shape)
            text = " ".join(done.stderr.split())
            assert done.returncode == 2, (model, shape, done.stdout + done.stderr)
            assert "has 1 channel" in text and "takes 3" in text, (model, shape, text)
            assert ("1,3,32,32" if model == "param" else "1,3,H,W (H,W: the model's input size)") in text, (
                text
            )
            assert "agent measuring" not in done.stdout, (model, shape, done.stdout)


@pytest.fixture(scope="module")
def emulated_bench_at_64(
    _pi4_emu_session: None, model_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[subprocess.CompletedProcess[str], TargetRun]:
    """The tiny ncnn model (its model.io.json states 1,3,32,32) benched on pi4-emu, counted, at --shape 1,3,64,64:
    one small run for the tests of what bench says of it."""
    from edgekit.emu.device import ensure_device
    from edgekit.emu.plugin import build as plugin_build
    from edgekit.target import load_target

    if not plugin_build.is_built():
        pytest.skip("the counting plugin is not built (edgekit emu build pi4-emu builds it)")
    ensure_device(load_target("pi4-emu"))  # a device a fault test left frozen is started afresh
    out = tmp_path_factory.mktemp("bench64") / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "bench", str(model_files["param"]), "--target", "pi4-emu"]
        + ["--shape", "1,3,64,64", "--repeat", "2", "--warmup", "0", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "400", "EDGEKIT_TARGET_PI4_EMU_EMULATED__COUNTING": "true"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done, TargetRun.model_validate_json(out.read_text())


@pytest.mark.integration
def test_bench_counts_guest_instructions_on_a_counting_target(
    emulated_bench_at_64: tuple[subprocess.CompletedProcess[str], TargetRun],
) -> None:
    """A bench on a counting target counts the guest's instructions per invoke and heads its output with the real
    board's estimate from that count. The fixture's run (--shape 1,3,64,64) is the same counted bench as one at
    the sidecar's shape: the shape is only what the agent feeds (its own tests are below)."""
    done, run = emulated_bench_at_64
    m = run.agent.measurements[0]  # type: ignore[union-attr]
    assert m.instructions_per_invoke and m.instructions_per_invoke > 10_000
    assert "-plugin" in (run.agent.facts_before.emulator or "")  # type: ignore[union-attr]
    assert "guest insn / invoke" in done.stdout
    # the headline on an emulated target: the real board's estimate from that count, labelled, in --json too
    (est,) = run.estimates.values()
    assert est["status"] == "ok" and est["board"] == "pi4" and est["label"].startswith("estimate")
    assert est["low_ms"] < est["estimate_ms"] < est["high_ms"] and "p50_ms" not in est
    assert est["instructions_per_invoke"] == m.instructions_per_invoke
    assert "pi4 ESTIMATE" in done.stdout and "not a measurement" in done.stdout


@pytest.mark.integration
def test_an_emulated_bench_estimates_the_graph_at_the_shape_it_timed(
    emulated_bench_at_64: tuple[subprocess.CompletedProcess[str], TargetRun], model_files: dict[str, Path]
) -> None:
    """--shape 1,3,64,64 on a model whose sidecar states 1,3,32,32: the instructions were counted at 64x64 but the
    estimate's graph features (MACs, bytes, roofline) read at 32x32, and no line said which shape was timed. Now
    the graph is read at the shape timed, and the output says it."""
    from edgekit.estimate.boards import board
    from edgekit.estimate.graph import analyze
    from edgekit.estimate.roofline import roofline
    from edgekit.estimate.runs_as import runs_as

    done, run = emulated_bench_at_64
    runs = runs_as(model_files["param"], Format.NCNN_FP32)

    def roofline_at(side: int) -> float:  # the bare copy (no sidecar) is read at any shape
        cost = analyze(model_files["bare"], [1, 3, side, side])
        return round(roofline(cost, board("pi4"), 1, runs.precision, runs.storage_bytes).lower_bound_ms, 3)

    (est,) = run.estimates.values()
    assert est["status"] == "ok" and roofline_at(64) != roofline_at(32)
    assert est["roofline_lower_bound_ms"] == roofline_at(64), (est, roofline_at(32))
    text = " ".join(done.stdout.split())
    assert "input: 1 random sample (uniform in [0, 1)) of shape 1,3,64,64 from --shape" in text, text
    sidecar = model_files["param"].with_suffix(".io.json").name  # tiny.io.json
    assert f"(not the 1,3,32,32 {sidecar} states)" in text, text
    assert (
        f"the estimate reads the graph (MACs, bytes, roofline) at the shape timed, 1,3,64,64, not {sidecar}'s"
        in text
    )


@pytest.mark.integration
def test_every_emulated_time_in_the_bench_table_says_it_is_emulated_wall_time(
    emulated_bench_at_64: tuple[subprocess.CompletedProcess[str], TargetRun],
) -> None:
    """Only the p50 column said "emulated wall ms": load ms, p90, p99, mean, std, min and the note's
    runtime_init_ms are qemu's wall times too and read as plain ms. Each now says so."""
    import re

    done, run = emulated_bench_at_64
    for name in ("load", "p50", "p90", "p99", "mean", "std", "min"):
        assert f"{name} emulated wall ms" in done.stdout, (name, done.stdout)
    assert not re.search(r"\b(load ms|p90|p99|mean|std|min)\s*┃", done.stdout), done.stdout  # no bare header
    text = " ".join(done.stdout.split())
    assert "load emulated wall ms = opening the model" in text, text
    init = run.agent.measurements[0].runtime_init_ms  # type: ignore[union-attr]
    assert init is not None and re.search(r"runtime_init_ms: ncnn [\d.]+ emulated wall ms\)", text), text


def test_a_tflite_named_from_the_cache_is_benched_in_the_original_models_layout(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    """`convert` lists the cache's paths for bench; bench on that .tflite made its random input in the file's
    NHWC shape and the agent moved it again by the recorded layout: 'input sample of shape [1, 32, 32, 3] moved by
    the recorded layout [0, 2, 3, 1] does not fit the model input', exit 1, unless given the NCHW shape. The
    shape made, checked and said is the original model's now; the file's own NHWC shape is refused by name."""
    from edgekit.convert.pipeline import convert_recipe

    (art,) = convert_recipe(load_recipe(TINY), [Format.TFLITE_FP32])  # from the cache the fixture filled
    cached = art.main_file
    assert (cached.parent / "artifact.json").is_file()
    plain = bench(str(cached), "--target", "host", "--repeat", "2")
    assert plain.returncode == 0, plain.stdout[-1500:] + plain.stderr[-1500:]
    assert "of shape 1,3,32,32" in plain.stdout + plain.stderr, plain.stdout + plain.stderr
    given = bench(str(cached), "--target", "host", "--repeat", "2", "--shape", "1,3,32,32")
    assert given.returncode == 0, given.stdout[-1500:] + given.stderr[-1500:]
    nhwc = bench(str(cached), "--target", "host", "--shape", "1,32,32,3")
    assert nhwc.returncode == 2 and "pass --shape 1,3,32,32" in nhwc.stderr, nhwc.stdout + nhwc.stderr
    sample = tmp_path / "nhwc.npy"
    np.save(sample, np.zeros((2, 1, 32, 32, 3), np.float32))
    refused = bench(str(cached), "--target", "host", "--input", str(sample))
    assert refused.returncode == 2 and "samples of shape [1, 3, 32, 32]" in refused.stderr, refused.stderr


def test_percentiles_and_std_are_not_claimed_from_too_few_samples(tmp_path: Path) -> None:
    """p99 of bench's 10 samples was numpy's interpolation 91 % of the way to the max, printed as p99; one sample
    gave std 0 and p50 = p90 = p99. The agent records no std of one sample, and the table shows p90 from 10 samples
    and p99 from 100 ('-' below, said under it with the samples taken)."""
    import onnx
    from onnx_graphs import gelu_classifier

    from edgekit.report.bench_table import bench_table

    model = onnx.load(str(gelu_classifier(tmp_path / "free.onnx")))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    for repeat in (1, 10):
        out = tmp_path / f"r{repeat}.json"
        done = bench(
            str(fixed), "--target", "host", "--repeat", str(repeat), "--threads", "1", "--json", str(out)
        )
        assert done.returncode == 0, done.stdout + done.stderr
        run = TargetRun.model_validate_json(out.read_text())
        assert run.agent is not None
        (m,) = run.agent.measurements
        table = bench_table(run.agent, "host")
        cells = {str(c.header): str(c._cells[0]) for c in table.columns}
        caption = str(table.caption)
        assert cells["p99"] == "-", cells
        assert "too few samples" in caption and "p99 needs 100" in caption, caption
        if repeat == 1:
            assert m.std_ms is None and cells["std"] == "-" and cells["p90"] == "-", (m.std_ms, cells)
            assert "p90 needs 10" in caption and "1 taken" in caption, caption
        else:
            assert m.std_ms is not None and cells["std"] != "-" and cells["p90"] != "-", cells
            assert "p90 needs" not in caption, caption
    said = " ".join(done.stdout.split())
    assert "too few samples" in said, said


@pytest.mark.integration
def test_bench_at_more_threads_than_the_board_has_cores_estimates_as_edgekit_estimate_does(
    _pi4_emu_session: None, model_files: dict[str, Path], tmp_path: Path
) -> None:
    """`bench --target pi4-emu --threads 99` took the 99-thread count (641k instructions, 3.4x the one-thread
    work: mostly the threads' synchronisation) as the work, labelled it "instructions (1 thread)", and estimated
    ~2x what `edgekit estimate --threads 99` says. It estimates from the one-thread count and the split between
    the board's 4 threads now, as estimate does: one figure and one interval (the cost model's own)."""
    from edgekit.emu.device import ensure_device
    from edgekit.emu.plugin import build as plugin_build
    from edgekit.target import load_target

    if not plugin_build.is_built():
        pytest.skip("the counting plugin is not built (edgekit emu build pi4-emu builds it)")
    ensure_device(load_target("pi4-emu"))
    env = {**os.environ, "COLUMNS": "400", "EDGEKIT_TARGET_PI4_EMU_EMULATED__COUNTING": "true"}
    param = str(model_files["param"])
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "bench", param, "--target", "pi4-emu", "--threads", "6"]
        + ["--repeat", "2", "--warmup", "0", "--json", str(tmp_path / "run.json")],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (benched,) = TargetRun.model_validate_json((tmp_path / "run.json").read_text()).estimates.values()
    said = " ".join(done.stdout.split())
    assert "is mostly the threads' synchronisation" in said and "estimate --threads 6" in said, said
    one = benched["instructions_per_invoke"]  # the one-thread count, labelled so where it is out of range
    assert f"{one / 1e6:.3g} M instructions (1 thread)" in said, said
    estimated = subprocess.run(
        [sys.executable, "-m", "edgekit", "estimate", param, "--board", "pi4", "--threads", "6", "--json"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert estimated.returncode == 0, estimated.stderr
    est = json.loads(estimated.stdout)["estimate"]
    assert [benched[k] for k in ("estimate_ms", "low_ms", "high_ms")] == [
        est[k] for k in ("estimate_ms", "low_ms", "high_ms")
    ], (benched, est)
    assert benched["instructions_per_invoke"] == json.loads(estimated.stdout)["count"]["instructions"]


@pytest.mark.integration
def test_a_bench_on_an_emulated_device_no_board_stands_for_says_why_it_has_no_estimate(
    model_files: dict[str, Path], tmp_path: Path
) -> None:
    """`bench model.param --target phone-emu` printed no board estimate and no word why (`estimates: {}` in its
    --json), where deploy says "no board estimate: no calibrated board stands for this device". Bench says it in
    the same words, and its --json keeps the reason among the run's caveats."""
    from edgekit.emu.device import ensure_device
    from edgekit.emu.runner import down, running_state
    from edgekit.report.table_caption import NO_BOARD
    from edgekit.target import load_target

    started = running_state("phone-emu") is None
    ensure_device(load_target("phone-emu"))
    try:
        out = tmp_path / "phone.json"
        done = bench(
            str(model_files["param"]),
            "--target",
            "phone-emu",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--json",
            str(out),
        )
    finally:
        if started:
            down("phone-emu")
    assert done.returncode == 0, done.stdout + done.stderr
    said = " ".join(done.stdout.split())
    assert f"no board estimate: {NO_BOARD}" in said, said
    run = TargetRun.model_validate_json(out.read_text())
    assert run.estimates == {} and run.caveats == [f"no board estimate: {NO_BOARD}"], run.caveats


@pytest.mark.integration
def test_bench_exits_2_for_a_cpu_list_the_device_cannot_pin_to(model_files: dict[str, Path]) -> None:
    """A cpu list naming a cpu the device does not have online is a bad request, as README says (exit 2, naming
    the cpus); the agent refused it (EXIT_BAD_REQUEST) and the host made it a failed run, exit 1 (review r15 #2)."""
    missing = os.cpu_count() or 1  # cpus are 0 to cpu_count - 1
    done = bench(
        str(model_files["tflite"]), "--target", "local", "--set", f"affinity={missing}", "--repeat", "3"
    )
    assert done.returncode == 2, done.stdout + done.stderr
    said = " ".join((done.stdout + done.stderr).split())
    assert "BadAffinity" in said and f"cpu {missing} not online on this device" in said, said


def test_bench_says_an_affinity_it_could_not_apply(model_files: dict[str, Path]) -> None:
    """`affinity: big` on a machine whose cores report no max frequency pins to every core, and the facts say so
    (review r14 #3): said under the table, as deploy and runs show say it; bench said nothing, exit 0."""
    if any(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq")):
        pytest.skip("this machine's cores report a max frequency: big pins to its fastest cores")
    done = bench(str(model_files["tflite"]), "--target", "local", "--set", "affinity=big", "--repeat", "3")
    assert done.returncode == 0, done.stdout + done.stderr
    text = " ".join(done.stdout.split())
    assert (
        "local: affinity big not applied as asked: no per-core max frequency readable: big = all cores"
        in text
    ), text
