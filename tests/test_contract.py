"""One agent contract: the agent's own copies of the protocol agree with edgekit's, the agent reads exactly the
request fields edgekit types, and a result field edgekit does not declare is found (unknown_fields)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edgekit.agent import contract
from edgekit.deploy.request import AGENT_FILE, AgentArtifact, Settings, build_request
from edgekit.recipe import Benchmark
from edgekit.results import AgentResult, unknown_fields


def _agent_module() -> ast.Module:
    return ast.parse(AGENT_FILE.read_text())


def _keys_read_from(tree: ast.Module, names: set[str]) -> set[str]:
    """String keys the agent reads from a variable named in `names`: x["k"], x.get("k")."""
    keys = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id in names
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            keys.add(node.slice.value)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in names
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            keys.add(node.args[0].value)
    return keys


def _constant(tree: ast.Module, name: str) -> object:
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name) and target.id == name:
                    return ast.literal_eval(node.value)
                if isinstance(target, ast.Tuple) and any(
                    isinstance(t, ast.Name) and t.id == name for t in target.elts
                ):
                    values = ast.literal_eval(node.value)
                    return values[[t.id for t in target.elts if isinstance(t, ast.Name)].index(name)]
    raise AssertionError(f"{name} not assigned at the agent's top level")


def test_the_agent_speaks_edgekits_protocol_version_and_error_codes() -> None:
    tree = _agent_module()
    assert _constant(tree, "PROTOCOL_VERSION") == contract.PROTOCOL_VERSION
    agent_codes = {_constant(tree, "LOAD_ERROR"), _constant(tree, "RUN_ERROR")}
    assert agent_codes <= {c.value for c in contract.ErrorCode}
    for status in (
        "EXIT_BAD_REQUEST",
        "EXIT_LOCKED",
        "EXIT_DEADLINE",
        "EXIT_CANNOT_WRITE",
    ):  # the host reads the agent's exit by these
        assert _constant(tree, status) == getattr(contract, status), status


def test_the_agent_reads_exactly_the_typed_request_fields() -> None:
    tree = _agent_module()
    assert _keys_read_from(tree, {"req"}) == set(contract.AgentRequest.model_fields)
    assert _keys_read_from(tree, {"art"}) == set(contract.RequestArtifact.model_fields)
    assert _keys_read_from(tree, {"rnd"}) == set(contract.RandomInputs.model_fields)
    assert _keys_read_from(tree, {"lay"}) == set(contract.TensorLayout.model_fields)  # an artifact's layout


def test_timing_settings_take_their_names_from_the_contract() -> None:
    bench = Benchmark(warmup=3, repeat=7, number=2, min_repeat_ms=5.0, threads=(1, 4), cooldown_s=0.5)
    settings = Settings.from_benchmark(bench)
    assert set(contract.TIMING_FIELDS) <= set(Benchmark.model_fields)
    request = build_request([], settings, "/w/inputs/x.npy", "/w/runs/r1", "auto").model_dump()
    assert {k: request[k] for k in contract.TIMING_FIELDS} == {
        "warmup": 3,
        "repeat": 7,
        "number": 2,
        "min_repeat_ms": 5.0,
        "threads": [1, 4],
        "cooldown_s": 0.5,
    }
    assert request["inputs"] == "../../inputs/x.npy" and request["protocol"] == contract.PROTOCOL_VERSION


def test_a_request_with_an_unknown_field_is_refused() -> None:
    with pytest.raises(ValidationError, match="repeats"):
        contract.AgentRequest.model_validate({"repeats": 3})


def test_a_misspelt_result_field_is_found_at_its_path() -> None:
    ok = {
        "artifact": "a",
        "format": "ncnn-fp32",
        "runtime": "ncnn",
        "threads": 1,
        "status": "ok",
        "p50_ms": 1.0,
    }
    facts = {"machine": "aarch64", "cores": 4, "python": "3.11"}
    good = AgentResult.model_validate({"started_at": "t", "facts_before": facts, "measurements": [ok]})
    assert unknown_fields(good) == []
    bad = AgentResult.model_validate(
        {
            "started_at": "t",
            "facts_before": {**facts, "temp_c": 40},
            "measurements": [ok, {**ok, "p50ms": 1.0}],
        }
    )
    assert unknown_fields(bad) == ["facts_before.temp_c", "measurements[1].p50ms"]


def test_a_real_agent_run_validates_and_names_a_load_failure(tmp_path: Path) -> None:
    """The agent run here (the host's python) on one unreadable artifact: its result parses under the strict
    models, and the failure carries the agent's load_error code."""
    (tmp_path / "model.tflite").write_bytes(b"not a model")
    np.save(tmp_path / "inputs.npy", np.zeros((1, 1, 3, 8, 8), np.float32))
    art = AgentArtifact.from_path(tmp_path / "model.tflite")
    request = contract.AgentRequest(
        artifacts=[contract.RequestArtifact(id=art.id, format=art.format.value, files=["model.tflite"])],
        inputs="inputs.npy",
        warmup=0,
        repeat=2,
        lock_file="lock",
    )
    (tmp_path / "request.json").write_text(json.dumps(request.model_dump()))
    proc = subprocess.run(
        [sys.executable, str(AGENT_FILE), "request.json", "result.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = AgentResult.model_validate_json((tmp_path / "result.json").read_text())
    assert unknown_fields(result) == []  # every field the agent writes is declared in edgekit.results
    (m,) = result.measurements
    assert m.status == "failed" and m.error_code is contract.ErrorCode.LOAD_ERROR and m.error


def test_the_agent_names_its_outputs_file_as_the_host_accepts_it() -> None:
    """The host accepts as a measurement's outputs_file only the name the agent gives (anything else could make
    the download land anywhere on this machine): the agent's copy of the rule agrees with the contract's."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("edgekit_agent_copy", AGENT_FILE)
    assert spec is not None and spec.loader is not None
    agent = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agent)
    for art, threads in [("tflite-int8", 1), ("my model/v2 (old)", 4), ("..", 2), ("", 1)]:
        name = agent.outputs_name(contract.OUTPUTS_DIR, art, threads)
        assert name == contract.outputs_file_name(contract.OUTPUTS_DIR, art, threads)
        assert name.count("/") == 1 and name.startswith("outputs/") and name.endswith(f".t{threads}.npz")


def test_the_agent_saves_an_output_input_by_input_as_the_host_reads_it() -> None:
    """An output whose shape differs between inputs (NonZero, a built-in NMS) is saved input by input: the agent's
    copies of the key rule and of the checksum agree with the contract's, which the host reads and checks by."""
    import importlib.util

    import numpy as np

    spec = importlib.util.spec_from_file_location("edgekit_agent_copy", AGENT_FILE)
    assert spec is not None and spec.loader is not None
    agent = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(agent)
    assert agent.PER_INPUT_MARK == contract.PER_INPUT_MARK
    for key, j in [("idx", 0), ("boxes_1", 12), ("out", None)]:
        assert agent.per_input_key(key, j) == contract.per_input_key(key, j)
    assert contract.per_input_key("idx") == "idx@*" and contract.per_input_key("idx", 3) == "idx@3"
    arrays = [np.arange(6, dtype=np.float32).reshape(3, 2), np.zeros((0, 2), np.float32), np.ones((5, 2)).T]
    assert agent.per_input_checksum(arrays) == contract.per_input_checksum(arrays)
    moved = [arrays[0][:2], np.concatenate([arrays[0][2:], arrays[1]]), arrays[2]]  # same bytes, other inputs
    assert contract.per_input_checksum(moved) != contract.per_input_checksum(arrays)
