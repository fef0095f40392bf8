"""The runtime registry: every format has exactly one runtime, the agent's standalone copy agrees with it, an
unknown format is a named error, and the new runtimes run the tiny model on this host."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from edgekit.agent import agent
from edgekit.deploy.request import AgentArtifact, runtime_for
from edgekit.errors import UsageError
from edgekit.formats import Format, Runtime
from edgekit.runtimes import UnknownFormatError, all_specs, device_packages, format_for_suffix, spec_for


def test_every_format_has_one_runtime_module() -> None:
    claimed = [f for spec in all_specs() for f in spec.formats]
    assert sorted(claimed) == sorted(Format)
    assert {spec.runtime for spec in all_specs()} == set(Runtime)
    for spec in all_specs():
        assert spec.suffixes and spec.packages and spec.converter and spec.agent_runner
        assert spec.fp32_format() in spec.formats


def test_agent_runner_table_matches_the_registry() -> None:
    assert {f.value: f.runtime.value for f in Format} == agent.FORMAT_RUNTIMES
    assert set(agent.RUNNERS) == {r.value for r in Runtime}
    for spec in all_specs():
        assert agent.RUNNERS[spec.runtime.value].__name__ == spec.agent_runner


def test_agent_package_map_matches_the_registry() -> None:
    assert {p.module: p.version_dists for p in device_packages()} == agent.RUNTIME_DISTS


def test_the_dependency_lists_come_from_the_registry() -> None:
    from edgekit.emu.plugin.counting import RUNTIMES
    from edgekit.emu.wheels import RUNTIME_PACKAGES

    assert {p.module: p.pip for p in device_packages()} == RUNTIME_PACKAGES
    assert set(RUNTIMES) == {p.module for p in device_packages()} - {"numpy"}


def test_unknown_format_is_a_named_error() -> None:
    class Fake:
        value = "nope-fp32"

    with pytest.raises(UnknownFormatError):
        spec_for(Fake())  # type: ignore[arg-type]
    with pytest.raises(UnknownFormatError):
        format_for_suffix(".pt")
    with pytest.raises(ValueError, match="unknown artifact format"):
        agent.open_runner({"format": "nope-fp32", "files": ["m.nope"]}, ".", 1, "auto")


def test_runtime_for_and_user_files(tmp_path: Path) -> None:
    assert runtime_for(Format.ONNX_INT8, ["ai_edge_litert"]) == "onnxruntime"
    assert runtime_for(Format.OPENCV_FP32, []) == "cv2"
    assert runtime_for(Format.TFLITE_FP32, ["ncnn", "tflite_runtime"]) == "tflite_runtime"
    assert runtime_for(Format.TFLITE_FP32, []) == "auto"
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    assert AgentArtifact.from_path(model).format is Format.ONNX_FP32
    with pytest.raises(UsageError):
        AgentArtifact.from_path(tmp_path / "m.pt")


@pytest.mark.skipif(importlib.util.find_spec("cv2") is None, reason="needs OpenCV")
def test_onnxruntime_and_opencv_run_the_tiny_model_here_and_in_the_agent(tmp_path: Path) -> None:
    """Host runner and agent runner agree with the ONNX reference on a tiny model (exported in a second)."""
    torch = pytest.importorskip("torch")
    from edgekit.zoo.tiny import build

    model = build(num_classes=10, width=8).eval()
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(
        model,
        (torch.rand(1, 3, 32, 32),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamo=False,
    )
    x = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    ref = spec_for(Format.ONNX_FP32).run([path], x)
    got = spec_for(Format.OPENCV_FP32).run([path], x)
    np.testing.assert_allclose(got[0][1].reshape(ref[0][1].shape), ref[0][1], atol=1e-4)
    for fmt in (Format.ONNX_FP32, Format.OPENCV_FP32):
        runner = agent.open_runner({"format": fmt.value, "files": [str(path)]}, str(tmp_path), 1, "auto")
        runner.set_input(x[0])
        runner.invoke()
        ((_name, y),) = runner.outputs()
        np.testing.assert_allclose(y.reshape(ref[0][1][:1].shape), ref[0][1][:1], atol=1e-4)


def test_host_only_runtimes_are_sent_to_the_host_alone(tmp_path: Path) -> None:
    from edgekit.deploy.orchestrate import HOST
    from edgekit.deploy.run_targets import sent_to

    files = {}
    for name in ("model.xml", "model.bin", "model.onnx"):
        files[name] = tmp_path / name
        files[name].write_bytes(b"x")
    ov = AgentArtifact.from_path(files["model.xml"], Format.OPENVINO_FP32)
    onnx = AgentArtifact.from_path(files["model.onnx"])
    assert spec_for(Format.OPENVINO_INT8).host_only and not spec_for(Format.ONNX_FP32).host_only
    assert sent_to([ov, onnx], HOST) == [ov, onnx]
    assert sent_to([ov, onnx], "pi4-emu") == [onnx]


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs OpenVINO")
def test_openvino_converts_the_tiny_recipe_and_runs_here_and_in_the_agent(tmp_path: Path) -> None:
    """openvino-fp32 (convert_model) and openvino-int8 (NNCF) meet the tiny recipe's gates; host runner and
    agent runner give the same outputs."""
    from edgekit.convert.calibration import evaluation_inputs
    from edgekit.convert.pipeline import convert_recipe
    from edgekit.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml")
    arts = convert_recipe(recipe, [Format.OPENVINO_FP32, Format.OPENVINO_INT8], keep_going=True)
    x, _ = evaluation_inputs(recipe)
    for art in arts:
        assert art.status == "ok" and art.fidelity["gates"]["passed"], (art.error, art.fidelity)
        assert [f.suffix for f in art.files] == [".xml", ".bin"]
        assert art.provenance["tools"]["openvino"] == "2026.4.1"
        ((name, host),) = spec_for(art.format).run(art.files, x[:1])
        runner = agent.open_runner(
            {"format": art.format.value, "files": [str(f) for f in art.files]}, str(tmp_path), 1, "auto"
        )
        runner.set_input(x[0])
        runner.invoke()
        ((agent_name, y),) = runner.outputs()
        assert agent_name == name == "logits"
        np.testing.assert_allclose(y, host, atol=1e-6)
    assert arts[0].fidelity["cosine"] > 0.9999 and arts[1].fidelity["cosine"] > 0.95


@pytest.mark.skipif(importlib.util.find_spec("executorch") is not None, reason="executorch is installed")
def test_executorch_is_ready_but_says_why_it_cannot_convert(tmp_path: Path) -> None:
    """No executorch release installs beside the pins: its formats are listed as unavailable here and converting
    one is a ConversionError naming the conflict, not an ImportError."""
    from edgekit.convert.executorch import ExecuTorchConverter
    from edgekit.errors import ConversionError
    from edgekit.recipe import load_recipe

    spec = spec_for(Format.EXECUTORCH_INT8)
    assert (
        spec.runtime is Runtime.EXECUTORCH and not spec.converter_available() and spec.host_module() is None
    )
    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml")
    with pytest.raises(ConversionError, match="numpy>=2"):
        ExecuTorchConverter().convert(tmp_path / "m.onnx", recipe, Format.EXECUTORCH_FP32, tmp_path)


def test_runtimes_ranked_per_target_host_beside_arm() -> None:
    """Each runtime's fastest gated format per target; the host's fastest runtime looked up on each ARM target.
    (Synthetic results: the real deploys in tests/test_mnn.py and tests/test_deploy.py feed the same code.)"""
    from edgekit.results import (
        AgentResult,
        ArtifactInfo,
        Comparison,
        DeployResult,
        DeviceFacts,
        Measurement,
        TargetRun,
    )
    from edgekit.runtimes.ranking import rank_runtimes
    from edgekit.runtimes.ranking_table import runtime_html, runtime_table, verdicts

    def run(
        target: str, emulated: bool, figures: dict[str, float], failed: tuple[str, ...] = ()
    ) -> TargetRun:
        ms = [
            Measurement(
                artifact=a,
                format=a,
                runtime="x",
                threads=1,
                status="ok",
                p50_ms=v,
                instructions_per_invoke=int(v * 1e6) if emulated else None,
            )
            for a, v in figures.items()
        ]
        comps = [
            Comparison(
                artifact=a,
                target=target,
                reference="onnx",
                max_abs_error=0.1,
                mean_abs_error=0.01,
                cosine=0.99,
                gates_passed=a not in failed,
            )
            for a in figures
        ]
        facts = DeviceFacts(machine="aarch64", cores=4, python="3.11", emulated=emulated)
        return TargetRun(
            target=target,
            kind="ssh",
            emulated=emulated,
            status="ok",
            comparisons=comps,
            agent=AgentResult(started_at="2026-12-01T00:00:00", facts_before=facts, measurements=ms),
        )

    arts = ["onnx-fp32", "onnx-int8", "ncnn-fp32", "ncnn-int8", "mnn-fp32"]
    result = DeployResult(
        recipe="r",
        recipe_path="r.yaml",
        recipe_sha256="0",
        started_at="2026-12-01T00:00:00",
        artifacts=[
            ArtifactInfo(id=a, format=a, files=[], size_bytes=1, sha256="0", status="ok", gates_passed=True)
            for a in arts
        ],
        runs=[
            run(
                "pi4-emu",
                True,
                {"onnx-fp32": 9, "onnx-int8": 8, "ncnn-fp32": 5, "ncnn-int8": 3, "mnn-fp32": 4},
                failed=("ncnn-int8",),
            ),
            run(
                "host",
                False,
                {"onnx-fp32": 2, "onnx-int8": 1, "ncnn-fp32": 3, "ncnn-int8": 2.5, "mnn-fp32": 1.5},
            ),
        ],
    )
    host, pi4 = rank_runtimes(result)
    assert host.target == "host" and host.basis.value == "p50-ms-measured"
    assert [(e.runtime, e.artifact, e.rank) for e in host.entries] == [
        ("onnxruntime", "onnx-int8", 1),
        ("mnn", "mnn-fp32", 2),
        ("ncnn", "ncnn-int8", 3),
    ]
    assert (
        pi4.basis.value == "instructions-emulated"
    )  # counted, no board estimate: instructions, not wall time
    assert [(e.runtime, e.artifact) for e in pi4.entries] == [
        ("mnn", "mnn-fp32"),
        ("ncnn", "ncnn-fp32"),
        ("onnxruntime", "onnx-int8"),
    ]  # ncnn-int8 gated out
    (line,) = verdicts([host, pi4])
    assert "onnxruntime (onnx-int8) on pi4-emu: ranked 3 of 3; fastest there: mnn (mnn-fp32)" in line
    assert line.endswith(
        "(by guest instruction counts on the emulated core, not latency)"
    )  # what it is judged on
    table = runtime_table(result)
    assert table is not None and [c.header for c in table.columns][:2] == ["runtime", "host\np50 ms"]
    html = runtime_html(result)
    assert "1. onnx-int8 1" in html and "ranked 3 of 3" in html


def test_a_host_only_fastest_runtime_hands_over_to_the_host_s_fastest_board_runtime() -> None:
    from edgekit.route import Basis
    from edgekit.runtimes.ranking import RuntimeEntry, TargetRanking
    from edgekit.runtimes.ranking_table import verdicts

    host = TargetRanking(
        "host",
        Basis.P50_MS,
        False,
        [RuntimeEntry("openvino", "openvino-int8", 30.0, 1), RuntimeEntry("tflite", "tflite-int8", 33.0, 2)],
    )
    pi5 = TargetRanking(
        "pi5-emu",
        Basis.ESTIMATE_MS,
        True,
        [RuntimeEntry("ncnn", "ncnn-int8", 10.0, 1), RuntimeEntry("tflite", "tflite-int8", 12.0, 2)],
    )
    (line,) = verdicts([host, pi5])
    assert line.startswith("host's fastest runtime openvino is host only; its fastest board runtime tflite")
    assert line.endswith("on pi5-emu: ranked 2 of 2; fastest there: ncnn (ncnn-int8) (by board estimates)")


def test_a_runtime_that_did_not_run_on_a_target_is_not_said_to_miss_its_gates() -> None:
    """tflite, fastest on the host, failed to import on pi4-emu: the verdict said 'not within the gates' (read: its
    accuracy failed on ARM); and the instruction counts printed one decimal of a million, so 133,224 and 136,444
    read '0.1M' one above the other."""
    from edgekit.route import Basis
    from edgekit.runtimes.ranking import RuntimeEntry, TargetRanking
    from edgekit.runtimes.ranking_table import _cell, verdicts

    host = TargetRanking("host", Basis.P50_MS, False, [RuntimeEntry("tflite", "tflite-fp32", 0.1, 1)])
    emu = TargetRanking(
        "pi4-emu",
        Basis.INSTRUCTIONS,
        True,
        [
            RuntimeEntry("mnn", "mnn-fp16", 133_224.0, 1),
            RuntimeEntry("ncnn", "ncnn-fp32", 136_444.0, 2),
            RuntimeEntry("tflite", None, None, why="did not run"),
        ],
    )
    (line,) = verdicts([host, emu])
    assert "on pi4-emu: did not run; fastest there: mnn (mnn-fp16)" in line and "gates" not in line, line
    emu.entries[2].why = "gates failed"
    assert "on pi4-emu: not within the gates;" in verdicts([host, emu])[0]
    assert [_cell(emu, rt) for rt in ("mnn", "ncnn")] == ["1. mnn-fp16 0.133M", "2. ncnn-fp32 0.136M"]


def test_a_runtime_verdict_by_estimates_says_when_they_do_not_rank_the_two() -> None:
    """yolov5-lite's verdict said tflite 'ranked 2 of 2' on pi4-emu behind ncnn-int8 at ~101 ms (80-127) with
    tflite-int8 at ~106 ms: inside that interval, so the estimates rank neither; now the line says so."""
    from edgekit.route import Basis
    from edgekit.runtimes.ranking import RuntimeEntry, TargetRanking
    from edgekit.runtimes.ranking_table import verdicts

    host = TargetRanking("host", Basis.P50_MS, False, [RuntimeEntry("tflite", "tflite-int8", 4.0, 1)])
    pi5 = TargetRanking(
        "pi5-emu",
        Basis.ESTIMATE_MS,
        True,
        [RuntimeEntry("ncnn", "ncnn-int8", 10.0, 1), RuntimeEntry("tflite", "tflite-int8", 12.0, 2)],
    )
    # tflite-int8's ~12 ms lies inside ncnn-int8's 8-12.5, so the estimates rank neither
    pi5.estimates = {
        "ncnn-int8": {"estimate_ms": 10.0, "low_ms": 8.0, "high_ms": 12.5},
        "tflite-int8": {"estimate_ms": 12.0, "low_ms": 3.7, "high_ms": 39.0},
    }
    (line,) = verdicts([host, pi5])
    # ranked as the runtimes table shows it ('=1.' both), not 'ranked 2 of 2; fastest there: ncnn'
    assert "on pi5-emu: ranked =1 of 2 with ncnn (ncnn-int8): the estimates do not rank the two" in line, line
    assert "fastest there" not in line, line
    # ncnn-int8 at ~13 ms instead: tflite first, it stays fastest, and the line names what it is not ranked from
    pi5.estimates["ncnn-int8"] = {"estimate_ms": 13.0, "low_ms": 10.4, "high_ms": 16.3}
    pi5.entries = [RuntimeEntry("tflite", "tflite-int8", 12.0, 1), RuntimeEntry("ncnn", "ncnn-int8", 13.0, 2)]
    (line,) = verdicts([host, pi5])
    assert "stays fastest, though the estimates do not rank it apart from ncnn (ncnn-int8)" in line
    pi5.estimates["ncnn-int8"] = {"estimate_ms": 40.0, "low_ms": 32.0, "high_ms": 50.0}  # well apart now
    pi5.entries[1].value = 40.0
    (line,) = verdicts([host, pi5])
    assert "do not rank" not in line


def test_formats_for_a_target_says_setup_only_where_setup_can_install() -> None:
    """`formats --target local` told users to run `edgekit targets setup` for ExecuTorch, which no release of
    installs beside edgekit's pins."""
    import os
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "formats", "--target", "local"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "260"},
        timeout=300,
    )
    rows = {line.split("│")[1].strip(): line for line in out.stdout.splitlines() if line.count("│") > 5}
    assert out.returncode == 0 and "executorch-fp32" in rows, out.stdout + out.stderr
    if "no (" in rows["executorch-fp32"]:  # not installed on this host (edgekit's pins)
        assert (
            "README, Runtimes" in rows["executorch-fp32"] and "targets setup" not in rows["executorch-fp32"]
        )
    assert "targets setup" not in rows["mnn-fp32"] and "MNN" in rows["mnn-fp32"]


def test_an_output_is_a_copy_never_a_view_of_the_runtimes_buffer() -> None:
    """MNN's read() returns a view of a buffer the next forward reuses: integer outputs (ArgMax) were kept as views
    and every sample read back as the last one's, so mnn-fp32 missed its gate (cos 0.36) on an exact model."""
    from edgekit.runtimes.base import output_array

    buffer = np.array([[1], [2]], dtype=np.int32)
    for kind in (np.int32, np.bool_, np.float32):
        source = buffer.astype(kind)
        out = output_array(source[0])
        source[0] = 0  # the runtime's next run writes its buffer
        assert out.tolist() == [kind(1)] and not np.shares_memory(out, source), kind


@pytest.mark.integration
@pytest.mark.skipif(importlib.util.find_spec("openvino") is None, reason="needs OpenVINO")
def test_a_host_only_format_is_benched_on_the_host_and_refused_for_a_board(tmp_path: Path) -> None:
    """OpenVINO is a host reference deploy sends to no board: `bench model.xml --target pi5-emu` pushed it and
    failed on the device (exit 1, No module named 'openvino'); it is bad input, refused before anything is sent
    (exit 2). `local` is this machine: `formats --target local` said host only there, and bench runs it."""
    import subprocess
    import sys

    from edgekit.convert.pipeline import convert_recipe
    from edgekit.recipe import load_recipe

    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml")
    (art,) = convert_recipe(recipe, [Format.OPENVINO_FP32])
    xml = str(art.files[0])

    def edgekit(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edgekit", *args],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "COLUMNS": "250"},
        )

    board = edgekit("bench", xml, "--target", "pi5-emu")
    assert board.returncode == 2 and "runs on the host only" in board.stderr, board.stdout + board.stderr
    assert "--target host" in board.stderr and "pushed" not in board.stdout
    here = edgekit("bench", xml, "--target", "local", "--repeat", "2")
    assert here.returncode == 0, here.stdout + here.stderr
    listed = edgekit("formats", "--target", "local")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if "openvino-fp32" in line]
    assert "host only" not in row and "openvino" in row.split("openvino-fp32", 1)[1]


def test_a_deploy_where_nothing_can_run_is_refused_before_converting(tmp_path: Path) -> None:
    """Only host-only formats and --no-host: it converted, said 'no route: its error is above' with no error
    anywhere and exit 1, and the report showed the run as fine. Bad input now, before any conversion."""
    import subprocess
    import sys

    import yaml

    raw = yaml.safe_load((Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml").read_text())
    raw["formats"] = ["openvino-fp32"]
    recipe = tmp_path / "ov.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit",
            "deploy",
            str(recipe),
            "--target",
            "pi5-emu",
            "--no-host",
            "--no-store",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "run on the host only" in done.stderr and "--no-host" in done.stderr
    assert (
        "convert" not in done.stdout + done.stderr.split("error (UsageError)")[0]
    )  # refused before converting


def test_a_runtime_ranking_says_what_one_timed_invocation_covers_in_each_runtime() -> None:
    """The ranking put runtimes side by side whose timed invocation covers different work (TFLite's
    Interpreter.invoke() alone; onnxruntime's run with the input fed and the outputs copied out; ncnn's new
    extractor, input and every output extracted) without saying so. The table and the HTML say each one's scope."""
    from rich.console import Console

    from edgekit.report.table import deploy_table
    from edgekit.results import AgentResult, ArtifactInfo, DeployResult, DeviceFacts, Measurement, TargetRun
    from edgekit.runtimes.ranking_table import runtime_html, runtime_table

    figures = {"tflite-fp32": 2.0, "onnx-fp32": 1.5, "ncnn-fp32": 3.0}
    ms = [
        Measurement(artifact=a, format=a, runtime="x", threads=1, status="ok", p50_ms=v)
        for a, v in figures.items()
    ]
    facts = DeviceFacts(machine="x86_64", cores=4, python="3.11")
    result = DeployResult(
        recipe="r",
        recipe_path="r.yaml",
        recipe_sha256="0",
        started_at="2026-12-01T00:00:00",
        artifacts=[
            ArtifactInfo(id=a, format=a, files=[], size_bytes=1, sha256="0", status="ok", gates_passed=True)
            for a in figures
        ],
        runs=[
            TargetRun(
                target="host",
                kind="local",
                emulated=False,
                status="ok",
                agent=AgentResult(started_at="2026-12-01T00:00:00", facts_before=facts, measurements=ms),
            )
        ],
    )
    assert runtime_table(result) is not None
    console = Console(width=120, record=True, color_system=None)
    console.print(deploy_table(result))
    caption = " ".join(console.export_text().split())
    assert "one timed invocation: " in caption, caption
    assert "too few samples" not in caption, caption  # no samples recorded: no count to say anything of
    assert "tflite Interpreter.invoke() (outputs left in the interpreter)" in caption, caption
    assert "onnxruntime InferenceSession.run (the input fed, the outputs copied out" in caption, caption
    assert "ncnn a new extractor, its input and every output extracted" in caption, caption
    assert "one timed invocation: " in runtime_html(result)


def test_an_estimate_whose_interval_is_not_validated_is_marked_as_such_not_as_uncalibrated() -> None:
    """ncnn is the runtime the estimate is calibrated on; a tiny ncnn model outside the calibration range has an
    interval that is not validated, and the table called it '*uncalibrated' ('by uncalibrated estimates')."""
    from edgekit.route import Basis
    from edgekit.runtimes.ranking import RuntimeEntry, TargetRanking
    from edgekit.runtimes.ranking_table import _cell, _unit, verdicts

    host = TargetRanking("host", Basis.P50_MS, False, [RuntimeEntry("ncnn", "ncnn-fp32", 0.1, 1)])
    pi4 = TargetRanking("pi4-emu", Basis.ESTIMATE_MS, True, [RuntimeEntry("ncnn", "ncnn-fp32", 0.163, 1)])
    pi4.not_validated = ["ncnn-fp32"]
    assert _cell(pi4, "ncnn") == "1. ncnn-fp32 0.163*"
    assert _unit(Basis.ESTIMATE_MS) == "ESTIMATE ms (*interval not validated)"
    (line,) = verdicts([host, pi4])
    assert line.endswith("(by board estimates, * interval not validated: confirm on the board)"), line
    assert "uncalibrated" not in line
