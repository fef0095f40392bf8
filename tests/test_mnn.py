"""MNN end to end with the real MNN package: recipes/tiny.yaml converted by MNN's converter (fp32, fp16 weights) and
quantization tool (int8, the recipe's calibration data), checked against ONNX on this host; then deployed to the
emulated pi4 (real sshd + qemu, MNN's aarch64 wheel) and the host by the real agent, with instruction counts and
an estimate marked uncalibrated."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from edgekit.convert.base import Artifact
from edgekit.formats import Format, Runtime
from edgekit.recipe import load_recipe
from edgekit.runtimes import spec_for

pytestmark = pytest.mark.skipif(importlib.util.find_spec("MNN") is None, reason="needs the MNN package")

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "tiny.yaml"
FORMATS = (Format.MNN_FP32, Format.MNN_FP16, Format.MNN_INT8)


@pytest.fixture(scope="module")
def mnn_artifacts() -> list[Artifact]:
    from edgekit.convert.pipeline import convert_recipe

    return convert_recipe(load_recipe(TINY), FORMATS, keep_going=True)


def test_registry_knows_mnn() -> None:
    from edgekit.agent import agent
    from edgekit.runtimes.mnn import PRECISION

    for fmt in FORMATS:
        assert fmt.runtime is Runtime.MNN and fmt.files == (".mnn",)
        assert agent.MNN_PRECISION[fmt.precision.value] == PRECISION[fmt.precision]
    assert spec_for(Format.MNN_INT8).modules() == ("MNN",)


@pytest.mark.integration
def test_convert_tiny_to_every_mnn_format(mnn_artifacts: list[Artifact]) -> None:
    by = {a.format: a for a in mnn_artifacts}
    assert set(by) == set(FORMATS)
    for art in by.values():
        assert art.status == "ok", art.error
        assert art.main_file.suffix == ".mnn" and art.main_file.read_bytes()[:4]
        assert art.fidelity["gates"]["passed"], art.fidelity
        assert art.provenance["tools"]["MNN"] == "3.6.1"
    fp32, fp16, int8 = (by[f] for f in FORMATS)
    assert fp32.fidelity["cosine"] > 0.9999
    assert fp16.size_bytes < fp32.size_bytes and int8.size_bytes < fp32.size_bytes  # fp16 / int8 weights
    assert int8.fidelity["cosine"] > 0.95 and int8.fidelity["max_abs_error"] > fp32.fidelity["max_abs_error"]


@pytest.mark.integration
def test_a_second_conversion_comes_from_the_cache(mnn_artifacts: list[Artifact]) -> None:
    from edgekit.convert.pipeline import convert_recipe

    again = convert_recipe(load_recipe(TINY), FORMATS)
    assert all(a.cached for a in again)
    assert [a.key for a in again] == [a.key for a in mnn_artifacts]


@pytest.mark.integration
def test_host_runner_and_agent_runner_agree(mnn_artifacts: list[Artifact], tmp_path: Path) -> None:
    from edgekit.agent import agent
    from edgekit.convert.calibration import evaluation_inputs

    x, _ = evaluation_inputs(load_recipe(TINY))
    for art in mnn_artifacts:
        ((name, host),) = spec_for(art.format).run_format(art.format, art.files, x[:2])
        runner = agent.open_runner(
            {"format": art.format.value, "files": [str(art.main_file)]}, str(tmp_path), 1, "auto"
        )
        runner.set_input(x[0])
        runner.invoke()
        ((agent_name, y),) = runner.outputs()
        assert agent_name == name == "logits"
        np.testing.assert_allclose(y, host[:1], atol=1e-6)


@pytest.mark.integration
def test_an_input_shape_mnn_cannot_take_is_never_timed(mnn_artifacts: list[Artifact], tmp_path: Path) -> None:
    """MNN answers a shape the model cannot take with "Compute Shape Error" and no outputs: bench timed those
    empty forwards as an 'ok' measurement (0.017 ms). The agent refuses them; bench refuses the --shape first, from
    the shape the .mnn states (exit 2)."""
    import subprocess
    import sys

    from edgekit.agent import agent

    fp32 = next(a for a in mnn_artifacts if a.format is Format.MNN_FP32)
    runner = agent.open_runner(
        {"format": "mnn-fp32", "files": [str(fp32.main_file)]}, str(tmp_path), 1, "auto"
    )
    runner.set_input(np.zeros((1, 1, 32, 32), np.float32))
    with pytest.raises(RuntimeError, match="no outputs"):
        runner.invoke()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit",
            "bench",
            str(fp32.main_file),
            "--target",
            "host",
            "--shape",
            "1,1,32,32",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "1,3,32,32" in out.stderr, out.stdout + out.stderr


@pytest.mark.integration
def test_quantization_failure_is_a_named_error(tmp_path: Path) -> None:
    """A model MNN cannot read: the tool's own output, no artifact, a ConversionError (never a crash here)."""
    from edgekit.convert.mnn import _quantize
    from edgekit.errors import ConversionError

    broken = tmp_path / "float.mnn"
    broken.write_bytes(b"not an mnn model" * 64)
    with pytest.raises(ConversionError, match="MNN's quant"):
        _quantize(broken, tmp_path / "out.mnn", load_recipe(TINY), tmp_path)
    assert not (tmp_path / "out.mnn").exists()


@pytest.mark.integration
def test_deploy_mnn_to_pi4_emu_and_host(
    pi4_emu: object, mnn_artifacts: list[Artifact], tmp_path: Path
) -> None:
    from edgekit.deploy import DeployOptions, deploy

    result = deploy(
        load_recipe(TINY),
        [pi4_emu],
        DeployOptions(
            repeat=2,
            warmup=1,
            threads=(1,),
            samples=4,  # type: ignore[list-item]
            formats=FORMATS,
        ),
        lambda m: None,
        mnn_artifacts,
    )
    runs = {r.target: r for r in result.runs}
    pi4, host = runs["pi4-emu"], runs["host"]
    assert pi4.status == "ok" and host.status == "ok", (pi4.error, host.error)
    assert pi4.agent is not None and host.agent is not None
    assert pi4.agent.facts_before.runtimes.get("MNN") == "3.6.1"
    for run in (pi4, host):
        got = {m.artifact: m for m in run.agent.measurements}  # type: ignore[union-attr]
        for fmt in FORMATS:
            m = got[fmt.value]
            assert m.status == "ok", m.error
            assert m.runtime == "MNN" and len(m.samples_ms) == 2
    counts = {m.artifact: m.instructions_per_invoke for m in pi4.agent.measurements}
    assert all(counts[f.value] for f in FORMATS), counts
    for fmt in FORMATS:
        vs_onnx = [c for c in pi4.comparisons if c.artifact == fmt.value and c.reference == "onnx"]
        vs_host = [c for c in pi4.comparisons if c.artifact == fmt.value and c.reference == "host"]
        assert len(vs_onnx) == 1 and vs_onnx[0].gates_passed, vs_onnx
        assert len(vs_host) == 1 and vs_host[0].cosine > 0.999
    est = pi4.estimates["mnn-fp32 x1"]
    assert est["status"] == "ok" and est["interval_calibrated"] is False  # fitted on ncnn only: said so
    assert any("no calibration figure exists for this runtime" in n for n in est["caveats"])


@pytest.mark.integration
def test_a_conversion_error_leaves_the_other_formats_checked_and_the_run_failed(
    mnn_artifacts: list[Artifact],
) -> None:
    """A failed conversion: the table once said 'pass (no gate)' for mnn-fp32 (tiny.yaml has an fp32 gate) and
    left the failed format out; then 'not checked' (the run stopped at the failure). Now every format is
    converted and checked, the failed one is listed, and the exit is 1 (no --keep-going)."""
    import subprocess
    import sys

    from edgekit import paths

    scratch = paths.cache_dir() / "work"
    before = set(scratch.glob("ExecuTorchConverter-*"))
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(TINY), "-f", "mnn-fp32", "-f", "executorch-fp32"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    if "executorch is not installed" not in out.stderr + out.stdout:
        pytest.skip("executorch converts on this host: no failing format to test with")
    rows = {
        line.split()[0]: line for line in out.stdout.splitlines() if line.strip().startswith(("mnn", "exec"))
    }
    assert out.returncode == 1 and "pass" in rows["mnn-fp32"] and "not checked" not in rows["mnn-fp32"]
    assert "FAIL" in rows["executorch-fp32"], out.stdout
    assert set(scratch.glob("ExecuTorchConverter-*")) == before  # no empty scratch folder left per attempt


@pytest.mark.integration
def test_bench_of_a_cached_artifact_runs_it_as_the_format_it_was_made(
    mnn_artifacts: list[Artifact], tmp_path: Path
) -> None:
    """bench labelled and ran edgekit's own mnn-fp16 file as mnn-fp32 (MNN's high precision), unlike deploy:
    the cache entry's artifact.json says what it is."""
    import json
    import subprocess
    import sys

    fp16 = next(a for a in mnn_artifacts if a.format is Format.MNN_FP16)
    bench = [
        sys.executable,
        "-m",
        "edgekit",
        "bench",
        str(fp16.main_file),
        "--target",
        "host",
        "--repeat",
        "2",
    ]
    out = subprocess.run(
        [*bench, "--json", str(tmp_path / "b.json")], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr
    (m,) = json.loads((tmp_path / "b.json").read_text())["agent"]["measurements"]
    assert m["format"] == "mnn-fp16" and m["status"] == "ok"
    wrong = subprocess.run([*bench, "--format", "mnn-fp32"], capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "says mnn-fp16" in wrong.stderr, wrong.stderr


def test_an_input_name_that_is_no_file_name_is_refused_for_mnn_int8(tmp_path: Path) -> None:
    """mnn-int8's calibration samples are files named after the model's input (MNN's quantization tool reads
    NAME.txt): an ONNX whose input is named `../../../escaped` had edgekit write its calibration data outside the
    work folder (found by a review). Refused as the recipe's bad input (exit 2), nothing written outside; the
    other formats of the same recipe still convert."""
    import subprocess
    import sys

    import onnx
    import yaml
    from onnx import TensorProto, helper

    name = "../../../../../../../../../../" + str(tmp_path / "escaped").lstrip("/")
    graph = helper.make_graph(
        [helper.make_node("Relu", [name], ["y"])],
        "relu",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        tmp_path / "m.onnx",
    )
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "escape",
                "task": "generic",
                "model": {"kind": "onnx", "path": "m.onnx"},
                "input": {"name": name, "shape": [1, 3, 8, 8]},
                "outputs": ["y"],
                "calibration": {"data": {"kind": "random", "samples": 4}},
                "evaluation": {"data": {"kind": "random", "samples": 4, "seed": 1}},
                "formats": ["mnn-fp32", "mnn-int8"],
            }
        )
    )
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")}
    edgekit = [str(Path(sys.executable).parent / "edgekit")]
    proc = subprocess.run(
        [*edgekit, "convert", str(recipe)], capture_output=True, text=True, env=env, timeout=600
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "input.name" in proc.stderr and "not a plain file name" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("escaped*")), list(tmp_path.iterdir())
    assert any(line.split()[:1] == ["mnn-fp32"] and "pass" in line for line in proc.stdout.splitlines()), (
        proc.stdout
    )


def _token_mixer_onnx(path: Path) -> Path:
    """MNN 3.x's quantization tool dies of SIGSEGV calibrating this one with KL (its head's `mean(dim=(2, 3))`)."""
    from token_model import token_mixer_onnx

    return token_mixer_onnx(path, dim=4, size=16)


def _mixer_recipe(tmp_path: Path) -> Path:
    import yaml

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "mixer",
                "task": "generic",
                "model": {"kind": "onnx", "path": "m.onnx"},
                "input": {"name": "input", "shape": [1, 3, 16, 16]},
                "calibration": {"data": {"kind": "random", "samples": 4}},
                "evaluation": {"data": {"kind": "random", "samples": 4, "seed": 1}},
                "formats": ["mnn-int8"],
            }
        )
    )
    return recipe


def test_a_crash_of_the_quantization_tool_is_one_line_and_its_log_is_kept(tmp_path: Path) -> None:
    """MNN's quantization tool killed by SIGSEGV: its 13 lines of progress were the error, repeated in every list of
    failures. Now one line (how it ended, its last line, no time stamps) and the whole log's path in the hint. The
    graph is handed to the tool as MNN converts it, without edgekit's split of its reductions (next test), so the
    tool crashes as it does on any graph it cannot calibrate."""
    from edgekit.convert.mnn import _convert, _quantize
    from edgekit.errors import ConversionError

    _token_mixer_onnx(tmp_path / "m.onnx")
    work = tmp_path / "work"
    work.mkdir()
    _convert(tmp_path / "m.onnx", work / "float.mnn", fp16=False, work=work, logs=tmp_path / "logs")
    with pytest.raises(ConversionError) as raised:
        _quantize(work / "float.mnn", tmp_path / "out.mnn", load_recipe(_mixer_recipe(tmp_path)), work)
    said = raised.value.message
    if "SIGSEGV" not in said:
        pytest.skip(f"MNN's quantization tool no longer crashes on this model: {said}")
    assert "MNN's quant tool failed (killed by SIGSEGV (signal 11)); its last line: " in said, said
    assert "] @ " not in said and ">>> modelFile" not in said and "\n" not in said, said
    hint = raised.value.hint or ""
    log = Path(hint.split("whole log: ", 1)[1].split(";", 1)[0])
    assert log.name == "mnn-quant.log" and ">>> modelFile" in log.read_text(), hint
    assert "calibration.method: absmax" in hint, hint
    assert not (tmp_path / "out.mnn").exists()


def test_a_reduction_over_several_axes_is_calibrated_with_kl(tmp_path: Path) -> None:
    """The graph above through `edgekit convert` (KL, the default): a user's classifier with `x.mean((2, 3))` as its
    pool had mnn-int8 fail with the tool's SIGSEGV (and a hint blaming LayerNorm + GELU). edgekit now hands MNN the
    reductions one axis at a time: mnn-int8 converts and passes its gate against the original model."""
    import subprocess
    import sys

    _token_mixer_onnx(tmp_path / "m.onnx")
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(_mixer_recipe(tmp_path))],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", "EDGEKIT_HOME": str(tmp_path / "home")},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    row = next(ln for ln in out.stdout.splitlines() if ln.split()[:1] == ["mnn-int8"])
    assert "pass" in row, out.stdout


def test_bench_of_a_file_with_brackets_names_it_as_written(
    mnn_artifacts: list[Artifact], tmp_path: Path
) -> None:
    """bench of `/data/b[x]/m[red].mnn` (run under its own name) listed it as `m.mnn`, in red, and said
    `results: /data/b/o.json`: rich read the brackets as markup. Both print as written."""
    import subprocess
    import sys

    folder = tmp_path / "b[x]"
    folder.mkdir()
    given, written = folder / "m[red].mnn", folder / "o[red].json"
    fp32 = next(a for a in mnn_artifacts if a.format is Format.MNN_FP32)
    given.write_bytes(fp32.main_file.read_bytes())
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "bench", str(given), "--target", "host", "--repeat", "2"]
        + ["--json", str(written)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "300"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line.split("│")[1].strip() for line in out.stdout.splitlines() if line.count("│") > 2]
    assert "m[red].mnn" in rows, out.stdout
    assert f"results: {written}" in out.stdout, out.stdout


# Runs the real agent (agent.run) in a fresh process and counts that process's OS threads (/proc/self/task) right
# after each timed MNN invocation, per thread count asked.
_THREAD_COUNT_CHILD = r"""
import json, os, sys
from edgekit.agent import agent

seen = {}
opened, invoked = agent.MnnRunner.__init__, agent.MnnRunner.invoke

def init(self, path, threads, precision="high"):
    opened(self, path, threads, precision)
    self.asked = threads

def invoke(self):
    invoked(self)
    seen[self.asked] = max(seen.get(self.asked, 0), len(os.listdir("/proc/self/task")))

agent.MnnRunner.__init__, agent.MnnRunner.invoke = init, invoke
code = agent.run(sys.argv[1], sys.argv[2])
result = json.load(open(sys.argv[2]))
print(json.dumps({"code": code, "seen": seen, "status": [m["status"] for m in result["measurements"]]}))
"""


@pytest.mark.integration
def test_every_thread_count_of_one_agent_run_gets_its_own_pool_size(
    mnn_artifacts: list[Artifact], tmp_path: Path
) -> None:
    """MNN builds its worker pool the first time more than one thread is asked and never enlarges it: an agent
    run of --threads 2,4 timed its '4 threads' row on the 2-thread pool (5 OS threads in a bench where asking 4
    alone had 7). The 4-thread row of a 2,4 run must run in a process with as many threads as a 4-only run's."""
    import json
    import subprocess
    import sys

    fp32 = next(a for a in mnn_artifacts if a.format is Format.MNN_FP32)

    def threads_seen(order: list[int]) -> dict[int, int]:
        folder = tmp_path / "t".join(map(str, order))
        folder.mkdir()
        request = {
            "protocol": 1,
            "artifacts": [{"id": "m", "format": "mnn-fp32", "files": [str(fp32.main_file)]}],
            "threads": order,
            "random_inputs": {"shape": [3, 32, 32], "samples": 1},
            "warmup": 1,
            "repeat": 3,
            "number": 2,
        }
        (folder / "request.json").write_text(json.dumps(request))
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                _THREAD_COUNT_CHILD,
                str(folder / "request.json"),
                str(folder / "result.json"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        got = json.loads(out.stdout.strip().splitlines()[-1])
        assert got["code"] == 0 and got["status"] == ["ok"] * len(order), got
        return {int(k): v for k, v in got["seen"].items()}

    alone_4, alone_2 = threads_seen([4])[4], threads_seen([2])[2]
    assert alone_4 > alone_2  # MNN's pool for 4 threads has more workers than the one for 2
    both = threads_seen([2, 4])
    assert both[4] == alone_4, (both, alone_4)
    one_four = threads_seen([1, 4])
    assert one_four[4] == alone_4
    # and no pool yet while the one-thread row runs: a pool started for the 4-thread row spun in its windows
    assert one_four[1] == threads_seen([1])[1], one_four
    # in whatever order the plan names them (r10: --threads 2,1 put the pool first again)
    assert threads_seen([4, 1]) == one_four


@pytest.mark.integration
@pytest.mark.parametrize("plan", [(1, 2), (2, 1)])
def test_one_thread_counts_hold_only_the_inference_thread_whatever_the_thread_plan(
    pi4_emu: object, mnn_artifacts: list[Artifact], plan: tuple[int, int]
) -> None:
    """The agent started MNN at the most threads asked before its one-thread rows: under --threads 1,2 that
    pool's idle workers ran in every one-thread window (split [866526, 228584] for tiny's mnn-fp32), and a
    spinning one counted as the model's work (digits' mnn-fp32 x1: 332,022 instructions under [1], 503,159 under
    [1, 2]). Each thread count is now measured for every artifact before the next, the pool sized only then."""
    from edgekit.deploy import DeployOptions, deploy

    result = deploy(
        load_recipe(TINY),
        [pi4_emu],
        DeployOptions(repeat=2, warmup=1, threads=plan, samples=1, formats=FORMATS, host=False),
        lambda m: None,
        mnn_artifacts,
    )
    (pi4,) = [r for r in result.runs if r.target == "pi4-emu"]
    assert pi4.status == "ok" and pi4.agent is not None, pi4.error
    ones = [m for m in pi4.agent.measurements if m.threads == 1]
    assert len(ones) == len(FORMATS) and all(m.instructions_per_invoke for m in ones), ones
    for m in ones:
        assert len(m.instructions_per_thread) == 1, (m.artifact, m.instructions_per_thread)
    twos = [m for m in pi4.agent.measurements if m.threads == 2]
    assert all(len(m.instructions_per_thread) >= 2 for m in twos), [m.instructions_per_thread for m in twos]
