"""A model whose output size depends on its input (an ONNX graph ending in NonZero; detection models with NMS built in
do this): `edgekit convert` passed it, but deploy judged every target against the outputs of all inputs joined and
failed every artifact, the untouched onnx-fp32 too: 'outputs cannot be compared: an output of shape (4, 3, 2)
cannot stand for the reference's (4, 2)', FAILED, and no route. Deploy now pairs the outputs input by input and
judges them with convert's own numbers (the same verdict: the deploy itself is tested, with a count that also
differs between inputs, in tests/test_deploy_outputs_per_input.py); outputs that truly cannot be paired are 'not
comparable', saying why, not a missed gate."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from edgekit.recipe import load_recipe

CLASSES = 10


def nonzero_model(path: Path) -> Path:
    """The reviewer's weird.onnx rebuilt: features -> (erf of the scores, the indices of the positive scores).
    The bias keeps the same five scores positive on every input, as the agent stacks an output over its inputs."""
    rng = np.random.RandomState(0)
    weight = (rng.randn(3, CLASSES) * 0.01).astype(np.float32)
    bias = np.array([2.0, -2.0] * (CLASSES // 2), np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["pooled"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["pooled", "weight"], ["mm"]),
        helper.make_node("Add", ["mm", "bias"], ["scores"]),
        helper.make_node("Erf", ["scores"], ["out"]),
        helper.make_node("Greater", ["scores", "zero"], ["positive"]),
        helper.make_node("NonZero", ["positive"], ["nz"]),
        helper.make_node("Transpose", ["nz"], ["nzt"], perm=[1, 0]),
        helper.make_node("Cast", ["nzt"], ["idx"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "nonzero_tail",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
        [
            helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, CLASSES]),
            helper.make_tensor_value_info("idx", TensorProto.FLOAT, ["k", 2]),
        ],
        [
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def recipe_file(tmp_path: Path, formats: list[str]) -> Path:
    """The reviewer's weirdemu.yaml, with its model built here."""
    nonzero_model(tmp_path / "weird.onnx")
    raw = {
        "name": "weirdemu",
        "task": "generic",
        "model": {"kind": "onnx", "path": "weird.onnx"},
        "input": {"name": "input", "shape": [1, 3, 32, 32], "layout": "NCHW"},
        "evaluation": {"data": {"kind": "random", "samples": 4}},
        "formats": formats,
    }
    path = tmp_path / "weirdemu.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_outputs_of_another_size_on_one_input_are_not_comparable_and_say_why(tmp_path: Path) -> None:
    """An int8 artifact that finds one positive score fewer on one input: its values cannot be paired with the
    reference's, which is said as such (and is no route), not as a gate it missed."""
    from edgekit.deploy.outputs import onnx_reference
    from edgekit.fidelity.compare import NotComparable, compare, failed_comparison
    from edgekit.route import Basis, Candidate, recommend
    from edgekit.route_rejections import NOT_COMPARABLE

    recipe = load_recipe(recipe_file(tmp_path, ["onnx-fp32"]))
    inputs = np.random.RandomState(1).rand(4, 3, 32, 32).astype(np.float32)
    reference = onnx_reference(recipe, inputs)
    assert [out[1][1].shape for out in reference] == [(5, 2)] * 4  # the indices, input by input
    got = [list(out) for out in reference]
    got[1][1] = ("idx", got[1][1][1][:4])  # one index fewer on the second input
    judge = partial(
        compare,
        recipe=recipe,
        labels=None,
        artifact="onnx-int8",
        target="host",
        reference_name="onnx",
        gate=True,
    )
    with pytest.raises(NotComparable) as caught:
        judge(reference, got)
    why = str(caught.value)
    assert "output 'idx' on input 2 has shape (4, 2) here and (5, 2) in the ONNX model's" in why, why
    assert judge(reference, reference).gates_passed is True
    comp = failed_comparison("onnx-int8", "host", "onnx", f"{NOT_COMPARABLE}: {why}")
    route = recommend(
        "host", [Candidate("onnx-int8", 1.0, False, failures=tuple(comp.gate_failures))], Basis.P50_MS
    )
    assert route.artifact is None and route.rejected["onnx-int8"].startswith("outputs not comparable: output")
    assert "could not be compared with the ONNX model's" in route.summary(), route.summary()
    assert "failed a gate" not in route.summary()


def _deployed(tmp_path: Path):  # type: ignore[no-untyped-def]
    """The weird model deployed for real to `--target local` (onnx-fp32), then judged against an ONNX reference
    that found one index fewer on the second input: a real comparison whose outputs cannot be paired."""
    from edgekit.deploy.outputs import compare_all, onnx_reference
    from edgekit.results import DeployResult

    recipe_path = recipe_file(tmp_path, ["onnx-fp32"])
    out = tmp_path / "deploy.json"
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(recipe_path), "--target", "local", "--no-store"]
        + ["--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = DeployResult.model_validate_json(out.read_text())
    (run,) = result.runs
    assert run.result_dir is not None
    recipe = load_recipe(recipe_path)
    reference = onnx_reference(recipe, np.load(Path(run.result_dir).parent / "inputs.npy"))
    reference[1] = [reference[1][0], ("idx", reference[1][1][1][:4])]
    compare_all(result, recipe, reference, None, "host")
    return result


def test_outputs_not_comparable_are_said_so_in_the_lines_and_the_table_not_as_a_missed_gate(
    tmp_path: Path,
) -> None:
    """Deploy recorded 'outputs not comparable: ...' (no gate judged), but its lines said 'missed its gate on this
    target: outputs not comparable: ...' and the table's gates column 'MISS'. They say 'outputs not comparable
    with the ONNX model's: why' and 'not comparable' now, the table fitting from 80 columns up."""
    import io
    import re

    from rich.console import Console

    from edgekit.report.lines import failures
    from edgekit.report.table import deploy_table
    from edgekit.route_rejections import NOT_COMPARABLE

    result = _deployed(tmp_path)
    (comp,) = [c for c in result.runs[0].comparisons if c.reference == "onnx"]
    assert comp.gates_passed is False and comp.gate_failures[0].startswith(f"{NOT_COMPARABLE}: "), comp
    (line,) = [ln for ln in failures(result) if "onnx-fp32" in ln]
    assert line.startswith(
        "host onnx-fp32: outputs not comparable with the ONNX model's: output 'idx' on input 2 "
    ), line
    assert "missed its gate" not in line and "not comparable: outputs not comparable" not in line, line
    for width in (80, 100, 150):
        buffer = io.StringIO()
        Console(file=buffer, width=width, color_system=None).print(deploy_table(result))
        text = buffer.getvalue()
        assert max(len(ln) for ln in text.splitlines()) <= width, text
        (row,) = [ln for ln in text.splitlines() if re.match(r"│ onnx-fp32 +│ +1 │", ln)]
        assert row.rstrip(" │").endswith("not comparable") and "MISS" not in row, (width, row)
    from edgekit.report.run_view import print_run  # `edgekit runs show`: not 'gate missed' either
    from edgekit.terminal import Console as EdgekitConsole

    shown = io.StringIO()
    print_run(EdgekitConsole(file=shown, width=300, color_system=None), 1, result)
    # the host's figures; its load and memory are stacked under them, a row per measurement too
    row = next(ln for ln in shown.getvalue().splitlines() if re.match(r"│ onnx-fp32 +│ +1 │", ln))
    assert "outputs not comparable (timed ok)" in row and "gate missed" not in row, row
    # the report: its latest table and the target's fidelity flag say the same, not 'below gate'
    from edgekit.report import build
    from edgekit.report.html import render as render_html
    from edgekit.report.markdown import render as render_md
    from edgekit.store import open_store

    with open_store(f"sqlite:///{tmp_path / 'report.sqlite'}") as store:
        store.record(result)
        report = build(store)
    html, md = render_html(report), render_md(report)
    assert "(not comparable)" in html and "(below gate)" not in html
    assert "onnx-fp32 on host: outputs not comparable with the ONNX model's, no gate judged" in md, md
    assert "below its fidelity gate" not in md, md
