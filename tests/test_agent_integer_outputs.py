"""Integer outputs on a device (review r8). The agent's ONNX Runtime, OpenCV, MNN, OpenVINO and ExecuTorch runners
cast every output to float32 where the host's runners (runtimes.base.output_array) and the agent's TFLite runner
keep integer and boolean types: an id above 2**24 (ArgMax + 16777217) came back another number, so deploy to
`local` judged onnx-fp32, the reference file itself under the same onnxruntime, 'missed its gate on this target:
min_cosine: 0.375' and blamed the runtime. The runners now keep the type, and a device's figures are convert's.

ExecuTorch's runner also added a batch axis to every sample that was not 4-D, where the others go by the model's
input rank (with_batch_axis): bench's (1, 16) sample for a [1, 16] program was fed as (1, 1, 16). It now reads the
rank from the program's method metadata. No executorch release installs beside edgekit's pins, so that runner runs
here on a stand-in of executorch.runtime's API (the real agent file in a subprocess, real torch)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

AGENT = Path(__file__).resolve().parent.parent / "edgekit" / "agent" / "agent.py"
OFFSET = 16777217  # 2**24 + 1: float32 cannot hold it, nor most ids above it
# each runtime whose agent runner an .onnx model reaches, with the module it needs on this host
FORMATS = {
    "onnx-fp32": "onnxruntime",
    "opencv-fp32": "cv2",
    "mnn-fp32": "MNN",
    "openvino-fp32": "openvino",
    "tflite-fp32": "ai_edge_litert",
}


def ids_model(path: Path) -> Path:
    """x [1, 16] -> y = Gemm (4 scores, float) and ids = ArgMax(y) + 16777217 (int64, [1])."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "W", "B"], ["y"]),
            helper.make_node("ArgMax", ["y"], ["am"], axis=1, keepdims=0),
            helper.make_node("Add", ["am", "offset"], ["ids"]),
        ],
        "ids",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, [1]),
        ],
        [
            numpy_helper.from_array(rng.standard_normal((16, 4)).astype(np.float32), "W"),
            numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "B"),
            numpy_helper.from_array(np.array([OFFSET], np.int64), "offset"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path, str]:
    """One deploy of the ids model to `local` in every format whose runtime is on this host: its --json, recipe
    and what it said."""
    folder = tmp_path_factory.mktemp("ids")
    ids_model(folder / "ids.onnx")
    formats = [f for f, module in FORMATS.items() if importlib.util.find_spec(module) is not None]
    raw = {
        "name": "ids",
        "task": "generic",
        "model": {"kind": "onnx", "path": "ids.onnx"},
        "input": {"name": "x", "shape": [1, 16]},
        "evaluation": {"data": {"kind": "random", "samples": 8}, "gates": {"fp32": {"min_cosine": 0.9999}}},
        "formats": formats,
        "benchmark": {"warmup": 1, "repeat": 3, "number": 2, "threads": [1]},
    }
    recipe = folder / "ids.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    result = folder / "deploy.json"
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(recipe), "--target", "local", "--keep-going"]
        + ["--no-store", "--json", str(result)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    said = done.stdout + done.stderr
    data = json.loads(result.read_text())
    assert {a["format"] for a in data["artifacts"]} == set(formats), said
    assert done.returncode == (0 if all(a["gates_passed"] for a in data["artifacts"]) else 1), said
    return data, recipe, said


@pytest.mark.integration
@pytest.mark.parametrize("fmt", FORMATS)
def test_a_device_keeps_integer_outputs_and_judges_them_as_convert_did(
    deployed: tuple[dict[str, Any], Path, str], fmt: str
) -> None:
    from edgekit.convert.calibration import evaluation_inputs
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe
    from edgekit.runtimes.base import spec_for

    if importlib.util.find_spec(FORMATS[fmt]) is None:
        pytest.skip(f"{FORMATS[fmt]} is not installed here")
    data, recipe, said = deployed
    art = next(a for a in data["artifacts"] if a["format"] == fmt)
    assert art["status"] in ("ok", "failed") and art["fidelity"], art  # converted; `failed`: its gate
    (run,) = data["runs"]
    comp = next(c for c in run["comparisons"] if c["artifact"] == fmt)
    fidelity = art["fidelity"]
    # the device's verdict and figure are convert's: the same runtime on the same machine
    assert comp["gates_passed"] == fidelity["gates"]["passed"], (comp, fidelity["gates"])
    assert comp["cosine"] == pytest.approx(fidelity["cosine"], abs=1e-12), (comp, fidelity)
    (m,) = [m for m in run["agent"]["measurements"] if m["artifact"] == fmt and m.get("outputs_file")]
    with np.load(Path(run["result_dir"]) / m["outputs_file"]) as saved:
        device = saved["ids"]
    inputs, _ = evaluation_inputs(load_recipe(recipe))
    host = dict(spec_for(Format(fmt)).run([Path(f) for f in art["files"]], inputs))["ids"]
    assert device.dtype.kind == host.dtype.kind, (
        device.dtype,
        host.dtype,
    )  # float only where the runtime's own
    assert np.array_equal(device.reshape(-1), host.reshape(-1)), (device, host)
    if fmt != "opencv-fp32":  # OpenCV DNN computes the ids in float32 itself (its convert fidelity says so)
        assert device.dtype.kind == "i" and comp["gates_passed"] is True, (device.dtype, comp)
        assert device.min() >= OFFSET, device
        assert f"x host {fmt}: missed its gate" not in said, (
            said
        )  # it was: 'min_cosine: 0.375 vs limit 0.9999'


STAND_IN = '''
"""A stand-in for executorch.runtime's Python API (Runtime.get().load_program(path).load_method("forward"),
Method.metadata.input_tensor_meta(i).sizes(), Method.execute): the program file is JSON giving the input's sizes;
forward is x @ W -> (scores, ArgMax + OFFSET as int64). A tensor of other sizes is refused, as ExecuTorch refuses
to resize a static input to another rank."""
import json

import torch

OFFSET = @OFFSET@


class TensorInfo:
    def __init__(self, sizes):
        self._sizes = tuple(sizes)

    def sizes(self):
        return self._sizes


class MethodMeta:
    def __init__(self, sizes):
        self._sizes = sizes

    def input_tensor_meta(self, index):
        return TensorInfo(self._sizes)


class Method:
    def __init__(self, sizes):
        self.sizes = tuple(sizes)
        self.weight = torch.linspace(-1.0, 1.0, sizes[-1] * 4).reshape(sizes[-1], 4)

    @property
    def metadata(self):
        return MethodMeta(self.sizes)

    def execute(self, inputs):
        (x,) = inputs
        if tuple(x.shape) != self.sizes:
            raise RuntimeError("input 0 of sizes %s, the program's are %s" % (list(x.shape), list(self.sizes)))
        y = x @ self.weight
        return [y, torch.argmax(y, dim=1) + OFFSET]


class Program:
    def __init__(self, path):
        with open(path) as handle:
            self.sizes = json.load(handle)["sizes"]

    def load_method(self, name):
        return Method(self.sizes)


class Runtime:
    @staticmethod
    def get():
        return Runtime()

    def load_program(self, path):
        return Program(path)
'''.replace("@OFFSET@", str(OFFSET))


@pytest.mark.parametrize("batched", [False, True], ids=["deploy-sample", "bench-sample"])
def test_executorch_runner_keeps_integer_outputs_and_batches_by_the_programs_rank(
    tmp_path: Path, batched: bool
) -> None:
    """A [1, 16] program: deploy's samples (16,) and bench's (1, 16) both run as (1, 16) (bench's ran as
    (1, 1, 16) and failed), and the ids come back int64 and exact (they were float32: 16777217 read 16777216)."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("ExecuTorch's runner needs torch")
    site = tmp_path / "site" / "executorch"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("")
    (site / "runtime.py").write_text(STAND_IN)
    program = tmp_path / "model.pte"
    program.write_text(json.dumps({"sizes": [1, 16]}))
    inputs = np.random.default_rng(3).standard_normal((4, 1, 16) if batched else (4, 16)).astype(np.float32)
    np.save(tmp_path / "inputs.npy", inputs)
    request = tmp_path / "request.json"
    art = {"id": "executorch-fp32", "format": "executorch-fp32", "files": [str(program)]}
    request.write_text(
        json.dumps(
            {"protocol": 1, "artifacts": [art], "inputs": "inputs.npy", "threads": [1], "warmup": 1}
            | {"repeat": 3, "number": 1, "min_repeat_ms": 0, "cooldown_s": 0}
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(AGENT), str(request), str(tmp_path / "result.json")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    result = json.loads((tmp_path / "result.json").read_text())
    (m,) = result["measurements"]
    assert done.returncode == 0 and m["status"] == "ok", (m.get("error"), done.stderr)
    with np.load(tmp_path / m["outputs_file"]) as saved:
        scores, ids = saved["output_0"], saved["output_1"]
    weight = np.linspace(-1.0, 1.0, 64, dtype=np.float32).reshape(16, 4)
    want = np.argmax(inputs.reshape(4, 16) @ weight, axis=1) + OFFSET
    assert scores.dtype == np.float32 and scores.shape == (4, 1, 4), (scores.dtype, scores.shape)
    assert ids.dtype == np.int64 and ids.reshape(-1).tolist() == want.tolist(), (ids.dtype, ids)
