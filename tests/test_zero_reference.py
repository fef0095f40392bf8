"""An output the ONNX model gives as 0 on every evaluation input (Relu(-x) on positive data; a dead layer, weights
not loaded, wrong preprocessing) that the artifact gives as ~0 too has no direction for a cosine: every artifact had
cosine 1.000000, `pass (4)` and exit 0 with no word. Its cosine gates are named under convert's table as NOT checked
(a `*` in its gate column), as a gate the data cannot judge (a top-1 drop without labels) is, and never taken as met;
the other outputs are still judged, its distance from 0 (max_abs_error) is judged, and an artifact giving values
where the model gives 0 is judged as ever (cosine 0: a miss)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from edgekit.fidelity.check import NOT_JUDGED, check_gates, compare
from edgekit.fidelity.compare import compare as compare_sides
from edgekit.recipe import Gates, Recipe, load_recipe


def _recipe(tmp_path: Path, task: str = "generic") -> Recipe:
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "z",
                "task": task,
                "formats": ["onnx-fp32"],
                "model": {"kind": "torch", "builder": "edgekit.zoo.tiny:build"},
                "input": {"shape": [1, 3, 8, 8]},
            }
        )
    )
    return load_recipe(path)


def test_an_output_zero_on_every_input_passes_no_cosine_gate(tmp_path: Path) -> None:
    zero = np.zeros((4, 8), np.float32)
    near = zero.copy()
    near[1, 2] = 3e-7  # the arithmetic's rounding: ~0 too
    for got in (zero.copy(), near):
        numbers = compare([("y", zero)], [("y", got)], _recipe(tmp_path), None)
        assert numbers["not_judged"] == ["y"] and numbers["outputs"]["y"]["cosine"] is None, numbers
        assert "cosine" not in numbers and numbers["max_abs_error"] == float(got.max()), numbers
        gates = check_gates(numbers, Gates(min_cosine=0.9999, max_abs_error=0.1))
        assert gates["verdict"] == "not checked" and gates["passed"], gates
        # the distance from 0 is judged; the direction is not
        assert [c["gate"] for c in gates["checks"]] == ["max_abs_error"], gates
        assert gates["skipped"] == [f"min_cosine (output y is {NOT_JUDGED})"], gates


def test_an_artifact_giving_values_where_the_model_gives_0_misses(tmp_path: Path) -> None:
    """r7: the artifact outputs 50 where the model outputs 0; 0a93f37 said 'not checked', passed: True (convert and
    deploy exit 0), max_abs_error 50 skipped. Distance from 0 is defined, and a cosine of 0 is a miss as before."""
    zero = np.zeros((4, 8), np.float32)
    numbers = compare([("y", zero)], [("y", np.full((4, 8), 50.0, np.float32))], _recipe(tmp_path), None)
    assert "not_judged" not in numbers and numbers["cosine"] == 0.0 and numbers["max_abs_error"] == 50.0, (
        numbers
    )
    gates = check_gates(numbers, Gates(min_cosine=0.99, max_abs_error=0.1))
    assert not gates["passed"] and gates["verdict"] == "missed" and not gates["skipped"], gates
    assert {c["gate"]: (c["value"], c["passed"]) for c in gates["checks"]} == {
        "min_cosine": (0.0, False),
        "max_abs_error": (50.0, False),
    }, gates
    # values on one input of four: that input misses, the others agree
    one = zero.copy()
    one[2, 3] = 3.0
    partial = compare([("y", zero)], [("y", one)], _recipe(tmp_path), None)
    assert (partial["cosine"], partial["cosine_worst"], partial["max_abs_error"]) == (0.75, 0.0, 3.0), partial
    assert check_gates(partial, Gates(min_cosine_worst=0.5))["verdict"] == "missed"


def test_the_other_outputs_are_still_judged(tmp_path: Path) -> None:
    live = np.random.default_rng(0).normal(size=(4, 8)).astype(np.float32)
    zero = np.zeros((4, 8), np.float32)
    ref = [("a", live), ("y", zero)]
    good = compare(ref, [("a", live), ("y", zero)], _recipe(tmp_path), None)
    assert good["cosine"] == 1.0 and good["not_judged"] == ["y"], good
    gates = check_gates(good, Gates(min_cosine=0.9999))
    assert gates["passed"] and gates["verdict"] == "not checked", gates
    assert gates["skipped"] == [f"min_cosine on output y ({NOT_JUDGED})"], gates
    bad = compare(ref, [("a", -live), ("y", zero)], _recipe(tmp_path), None)
    assert check_gates(bad, Gates(min_cosine=0.9999))["verdict"] == "missed"
    # an integer output of zeros (class 0 every time) is a value, compared exactly as before
    ints = np.zeros((4, 1), np.int64)
    exact = compare([("k", ints)], [("k", ints)], _recipe(tmp_path), None)
    assert "not_judged" not in exact and exact["cosine"] == 1.0


def test_a_classifier_whose_logits_are_zero_has_no_top1_figure(tmp_path: Path) -> None:
    zero = np.zeros((4, 10), np.float32)
    numbers = compare([("logits", zero)], [("logits", zero)], _recipe(tmp_path, "classify"), None)
    assert "top1_agreement" not in numbers and numbers["classes"] == 10, numbers
    gates = check_gates(numbers, Gates(min_top1_agreement=0.99))
    assert gates["skipped"] == [
        f"min_top1_agreement (no top1_agreement: not measurable; output logits is {NOT_JUDGED})"
    ]


def test_a_device_comparison_of_an_unjudged_output_is_not_a_number(tmp_path: Path) -> None:
    """deploy's comparison of a target's outputs takes check's numbers: no cosine to give, so NaN (its table: n/a);
    the distance from 0 is a number."""
    zero = [[("y", np.zeros((1, 8), np.float32))] for _ in range(3)]
    comp = compare_sides(
        zero,
        zero,
        recipe=_recipe(tmp_path),
        labels=None,
        artifact="onnx-fp32",
        target="t",
        reference_name="onnx",
        gate=True,
    )
    assert np.isnan(comp.cosine) and comp.max_abs_error == 0.0 and comp.gates_passed is True, comp


def test_convert_says_the_gate_was_not_checked(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Neg", ["x"], ["n"]),
            helper.make_node("Relu", ["n"], ["r"]),
            helper.make_node("Conv", ["r", "w"], ["y"], pads=[1, 1, 1, 1]),
        ],
        "zero",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, tmp_path / "zero.onnx")
    recipe = tmp_path / "zero.yaml"
    recipe.write_text(
        "name: zero\nmodel: {kind: onnx, path: zero.onnx}\ninput: {name: x, shape: [1, 3, 8, 8]}\n"
        "evaluation: {data: {kind: random, samples: 4}}\nformats: [onnx-fp32, ncnn-fp32]\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe), "--json", str(tmp_path / "out.json")],
        cwd=tmp_path,
        env={**os.environ, "EDGEKIT_HOME": str(tmp_path / "home"), "COLUMNS": "220"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    # as a gate the data cannot judge: named under the table, never taken as met, no failure of the converters
    assert proc.returncode == 0, out
    said = " ".join(out.split())
    assert f"gate NOT checked: min_cosine (output y is {NOT_JUDGED}) for ncnn-fp32, onnx-fp32" in said, said
    rows = [line for line in out.splitlines() if line.split()[:1] in (["onnx-fp32"], ["ncnn-fp32"])]
    assert len(rows) == 2 and all("not checked *" in row and "1.000000" not in row for row in rows), rows
    record = json.loads((tmp_path / "out.json").read_text())
    verdicts = {a["format"]: a["fidelity"]["gates"]["verdict"] for a in record["artifacts"]}
    assert verdicts == {"onnx-fp32": "not checked", "ncnn-fp32": "not checked"}, verdicts


def test_a_route_whose_outputs_were_not_judged_states_no_cosine() -> None:
    """A device comparison with no judged output has a NaN cosine; the route line said 'cosine nan; gates judged
    on 4 inputs here' before its 'gate NOT checked' note. It states no cosine."""
    from datetime import UTC, datetime

    from edgekit.report.synthetic import synthetic_result
    from edgekit.route_deploy import candidates_for_run, route_for_run

    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC), rng=np.random.default_rng(0), targets=("pi4",), threads=(1,)
    )
    run = result.runs[0]
    for comp in run.comparisons:
        if comp.reference == "onnx":
            comp.cosine = float("nan")
    _, _, candidates = candidates_for_run(run, {}, threads=1)
    assert candidates and all(c.cosine is None for c in candidates), [c.cosine for c in candidates]
    route = route_for_run(run, {}, threads=None)
    said = " ".join([route.summary(), *route.caveats])
    assert route.artifact and "cosine" not in said and "nan" not in said, said


def test_the_html_table_says_n_a_for_a_comparison_with_no_judged_output() -> None:
    """r7: a device comparison with no judged output has a NaN cosine; the HTML report's fidelity and drift cells
    printed 'nan' where deploy's table prints n/a."""
    import re
    from datetime import UTC, datetime

    from edgekit.report.html_latest import latest_table
    from edgekit.report.rows import latest_rows
    from edgekit.report.synthetic import synthetic_result

    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC), rng=np.random.default_rng(0), targets=("pi4",), threads=(1,)
    )
    for comp in result.runs[0].comparisons:
        comp.cosine = float("nan")
    html = latest_table(latest_rows(result))
    assert not re.search(r"\bnan\b", html, re.IGNORECASE), html
    rows = html.split("<tr")[2:]
    assert rows and all(row.count(">n/a</span>") == 2 for row in rows), rows
