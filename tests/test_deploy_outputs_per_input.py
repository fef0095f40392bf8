"""A model whose output size depends on its input with a different count on different inputs (NonZero: 5 positive
scores on one input, 4 on the next; a detector with NMS built in: 3 boxes on one image, 5 on the next). The agent
stacked each output over the evaluation inputs (np.stack) and failed that artifact's measurement ('all input arrays
must have the same shape'): no outputs, no comparison, no route, though convert passed it. It now saves such an
output input by input in the same .npz (contract.per_input_key) and deploy judges it as 1a0f00a does; an outputs
file that does not hold what the device computed is still refused. On the host, an output whose size depends on
the input on another axis than the first (a raw NonZero's (rank, count)) crashed convert with numpy's concatenate
error; it is an InputDataError naming the output and its shapes now."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from edgekit.results import DeployResult, TargetRun

CLASSES = 10


def varying_model(path: Path, *, transpose: bool = True) -> Path:
    """features -> (erf of the scores, the indices of the positive scores): the scores are spread so that their
    count differs between random inputs (5, 4, 5, 5 on the recipe's). With `transpose` the indices are
    (count, 2), as a detector's boxes; without, a raw NonZero's (2, count)."""
    weight = (np.random.RandomState(0).randn(3, CLASSES) * 100).astype(np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("Sub", ["pooled", "half"], ["centred"]),
        helper.make_node("MatMul", ["centred", "weight"], ["scores"]),
        helper.make_node("Erf", ["scores"], ["out"]),
        helper.make_node("Greater", ["scores", "zero"], ["positive"]),
        helper.make_node("NonZero", ["positive"], ["nz"]),
    ]
    if transpose:
        nodes.append(helper.make_node("Transpose", ["nz"], ["nzt"], perm=[1, 0]))
    nodes.append(helper.make_node("Cast", ["nzt" if transpose else "nz"], ["idx"], to=TensorProto.FLOAT))
    graph = helper.make_graph(
        nodes,
        "varying_count",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [
            helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, CLASSES]),
            helper.make_tensor_value_info("idx", TensorProto.FLOAT, ["k", 2] if transpose else [2, "k"]),
        ],
        [
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(np.array(0.5, np.float32), "half"),
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def recipe_file(folder: Path, *, transpose: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    varying_model(folder / "varying.onnx", transpose=transpose)
    raw = {
        "name": "varying",
        "task": "generic",
        "model": {"kind": "onnx", "path": "varying.onnx"},
        "input": {"name": "input", "shape": [1, 3, 32, 32], "layout": "NCHW"},
        "evaluation": {"data": {"kind": "random", "samples": 4}},
        "formats": ["onnx-fp32"],
    }
    path = folder / "varying.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_count_that_differs_by_input_is_saved_input_by_input_on_the_device_and_judged(
    tmp_path: Path,
) -> None:
    recipe = recipe_file(tmp_path)
    result = tmp_path / "deploy.json"
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(recipe), "--target", "local", "--no-store"]
        + ["--json", str(result)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "must have the same shape" not in said and "not comparable" not in said, said
    data = json.loads(result.read_text())
    (art,) = data["artifacts"]
    (run,) = data["runs"]
    (m,) = [m for m in run["agent"]["measurements"] if m.get("outputs_file")]
    assert m["status"] == "ok" and m["output_keys"] == ["out", "idx@*"], m
    assert m["output_shapes"] == [[4, 1, CLASSES], [4, -1, 2]], m["output_shapes"]
    (comp,) = run["comparisons"]
    assert comp["reference"] == "onnx" and comp["gates_passed"] is True and comp["samples"] == 4, comp
    assert comp["cosine"] == pytest.approx(art["fidelity"]["cosine"])  # convert's own numbers
    assert comp["max_abs_error"] == pytest.approx(art["fidelity"]["max_abs_error"])
    assert data["routes"][0]["artifact"] == "onnx-fp32", data["routes"]


def device_run(tmp_path: Path) -> tuple[TargetRun, list[np.ndarray], object]:
    """The real agent through a `local` target on the varying model's recipe inputs: its run, the inputs and the
    recipe."""
    from edgekit.convert.calibration import evaluation_inputs
    from edgekit.deploy.request import AgentArtifact, Settings
    from edgekit.deploy.session import TargetSession
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe
    from edgekit.target import Target, TransportKind

    recipe = load_recipe(recipe_file(tmp_path / "recipe"))
    data, _ = evaluation_inputs(recipe)
    inputs = tmp_path / "inputs.npy"
    np.save(inputs, np.ascontiguousarray(data, dtype=np.float32))
    target = Target(
        name="dev",
        transport=TransportKind.LOCAL,
        work_dir=str(tmp_path / "device"),
        python=shlex.quote(sys.executable),
        runtimes=["onnxruntime"],
    )
    session = TargetSession(
        target,
        run_id="R",
        local_dir=tmp_path / "host" / "runs" / "R" / "dev",
        settings=Settings(repeat=3, warmup=0, threads=(1,)),
        progress=lambda m: None,
    )
    art = AgentArtifact("onnx-fp32", Format.ONNX_FP32, (tmp_path / "recipe" / "varying.onnx",), key="0" * 64)
    return session.execute([art], inputs), list(data), recipe


def test_an_outputs_file_saved_input_by_input_is_still_checked_against_what_the_device_computed(
    tmp_path: Path,
) -> None:
    from edgekit.agent.contract import per_input_checksum
    from edgekit.deploy.outputs import compare_all, onnx_reference

    run, data, recipe = device_run(tmp_path)
    assert run.status == "ok" and run.agent is not None, run.error
    m = run.agent.measurements[0]
    assert m.outputs_file and m.output_keys == ["out", "idx@*"], m
    with np.load(Path(run.result_dir or "") / m.outputs_file) as saved:
        arrays = {k: saved[k] for k in saved.files}
    assert sorted(arrays) == ["idx@0", "idx@1", "idx@2", "idx@3", "out"]
    assert len({arrays[f"idx@{j}"].shape for j in range(4)}) > 1  # another count on some input

    def copy(name: str, changed: dict[str, np.ndarray], **fields: object) -> TargetRun:
        folder = tmp_path / name
        (folder / "outputs").mkdir(parents=True)
        np.savez(folder / m.outputs_file, **changed)  # type: ignore[operator]
        copied = run.model_copy(update={"target": name, "result_dir": str(folder)}, deep=True)
        assert copied.agent is not None
        for key, value in fields.items():
            setattr(copied.agent.measurements[0], key, value)
        return copied

    moved = dict(
        arrays
    )  # one index moved from the first input to the second: the same bytes in the same order
    moved["idx@0"], moved["idx@1"] = (
        arrays["idx@0"][:-1],
        np.concatenate([arrays["idx@0"][-1:], arrays["idx@1"]]),
    )
    fewer = {k: v for k, v in arrays.items() if k != "idx@3"}
    short = [arrays[f"idx@{j}"] for j in range(3)]
    runs = [
        copy("good", arrays),
        copy("tampered", {**arrays, "idx@2": arrays["idx@2"] + 1.0}),
        copy("moved", moved),
        copy("fewer", fewer, output_checksums={**m.output_checksums, "idx": per_input_checksum(short)}),
        copy("missing", {"out": arrays["out"]}),
    ]
    result = DeployResult(
        recipe="varying", recipe_path="x", recipe_sha256="x", started_at="2026-01-01", runs=runs
    )
    compare_all(result, recipe, onnx_reference(recipe, np.stack(data)), None, "good")  # type: ignore[arg-type]
    comps = {r.target: r.comparisons for r in result.runs}
    assert [(c.reference, c.gates_passed) for c in comps["good"]] == [("onnx", True)], comps["good"]
    for name, why in [
        ("tampered", "idx differ from the result's output_checksums"),
        ("moved", "idx differ from the result's output_checksums"),
        ("fewer", "does not hold every output for the same inputs (inputs per output: 'out' 4, 'idx' 3)"),
        ("missing", "cannot be read (KeyError"),
    ]:
        (failed,) = comps[name]
        assert failed.gates_passed is False and why in failed.gate_failures[0], (name, failed.gate_failures)


def test_a_raw_nonzero_on_the_host_is_a_named_error_not_a_crash(tmp_path: Path) -> None:
    """(2, count) indices cannot be joined over the inputs on their first axis: convert's reference run raised
    numpy's ValueError outside its try and convert ended in an internal error."""
    from edgekit.errors import InputDataError
    from edgekit.runtimes import run_onnx

    recipe = recipe_file(tmp_path, transpose=False)
    x = np.random.default_rng(0).uniform(0, 1, (4, 3, 32, 32)).astype(np.float32)
    with pytest.raises(InputDataError) as caught:
        run_onnx(tmp_path / "varying.onnx", x)
    error = caught.value
    assert error.where == str(tmp_path / "varying.onnx") and error.hint and "Transpose" in error.hint
    assert "the model's output 'idx' has shape (2, 5) on input 1 and (2, 4) on input 2" in error.message
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)], capture_output=True, text=True, timeout=600
    )
    said = done.stdout + done.stderr
    assert done.returncode == 2 and "Traceback" not in said and "internal error" not in said.lower(), said
    assert "output 'idx' has shape (2, " in said and "on an axis other than the first" in said, said
    assert f"{tmp_path / 'varying.onnx'}" in said and "original.onnx" not in said, (
        said
    )  # the user's file, not a copy
