"""`edgekit profile FILE.onnx`: onnxruntime's per-node instructions on an emulated core, by prefix models.

Host tests check the cuts and the prefix models with the real onnxruntime (each prefix runs and returns the full
model's own tensors; a QDQ operator is one group with its Q and DQ nodes); the integration test counts a chain
of four identical convolutions, float and QDQ int8, on the emulated Cortex-A72 with the device's onnxruntime.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CHANNELS, SIZE = 16, 24


def _chain(folder: Path, n: int = 4) -> Path:
    """n identical 3x3 convolutions with ReLU, one input, one output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    prev = "x"
    for i in range(n):
        w = (rng.normal(size=(CHANNELS, CHANNELS, 3, 3)) * 0.1).astype(np.float32)
        inits += [
            numpy_helper.from_array(w, f"w{i}"),
            numpy_helper.from_array(np.zeros(CHANNELS, np.float32), f"b{i}"),
        ]
        nodes.append(
            helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], name=f"conv{i}", pads=[1] * 4)
        )
        out = "y" if i == n - 1 else f"r{i}"
        nodes.append(helper.make_node("Relu", [f"c{i}"], [out], name=f"relu{i}"))
        prev = out
    shape = [1, CHANNELS, SIZE, SIZE]
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        initializer=inits,
    )
    path = folder / "chain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _qdq(source: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            self.it = iter([{"x": rng.random((1, CHANNELS, SIZE, SIZE), dtype=np.float32)} for _ in range(4)])

        def get_next(self) -> dict | None:
            return next(self.it, None)

    out = source.with_name("chain_int8.onnx")
    quantize_static(
        str(source),
        str(out),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out


def test_a_qdq_operator_is_one_group_and_every_prefix_runs_the_models_own_tensors(tmp_path: Path) -> None:
    """A cut after a Conv whose output a QuantizeLinear reads would count a float convolution the int8 model never
    runs: the DequantizeLinear nodes, the Conv (its ReLU folded by the quantizer) and its QuantizeLinear are one
    group. Each prefix returns the very tensors the whole model computes (names and values), and the last is the
    whole model; the weights are written once for all prefixes."""
    import onnx
    import onnxruntime as ort

    from edgekit.profile_onnx import cuts, group_rows, read_model, write_prefixes

    model = read_model(_qdq(_chain(tmp_path)))
    rows = group_rows(model)
    assert [r["type"] for r in rows] == ["QuantizeLinear", *["Conv+QDQ"] * 4, "DequantizeLinear"], rows
    assert [r["precision"] for r in rows] == ["int8"] * 5 + ["fp32"]
    assert rows[1]["name"] == "conv0" and rows[1]["shape"] == [1, CHANNELS, SIZE, SIZE]
    kinds = [n.op_type for n in model.graph.node]
    assert all(kinds[k] not in ("DequantizeLinear", "Conv") for k in cuts(model)[:-1])

    x = np.random.default_rng(2).random((1, CHANNELS, SIZE, SIZE), dtype=np.float32)
    whole = onnx.load(str(tmp_path / "chain_int8.onnx"))
    for (
        node
    ) in whole.graph.node:  # every tensor of the whole model as an output, to compare the prefixes with
        for name in node.output:
            if name not in {o.name for o in whole.graph.output}:
                whole.graph.output.append(onnx.ValueInfoProto(name=name))
    every = tmp_path / "every.onnx"
    onnx.save(whole, str(every))
    opts = ort.SessionOptions()
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )  # the QDQ arithmetic, node by node
    full = ort.InferenceSession(str(every), opts)
    values = dict(zip([o.name for o in full.get_outputs()], full.run(None, {"x": x})))
    folder = tmp_path / "prefixes"
    folder.mkdir()
    prefixes, empty = write_prefixes(model, folder)
    assert len(prefixes) == len(rows)
    for path in prefixes:
        sess = ort.InferenceSession(str(path), opts)
        names = [o.name for o in sess.get_outputs()]
        for name, got in zip(names, sess.run(None, {"x": x})):
            assert np.array_equal(got, values[name]), (path.name, name)
    assert [o.name for o in ort.InferenceSession(str(prefixes[-1])).get_outputs()] == ["y"]
    assert np.array_equal(ort.InferenceSession(str(empty)).run(None, {"x": x})[0], x)
    for path in prefixes:  # the weights are in weights.bin once: a prefix points into it
        inits = onnx.load(str(path), load_external_data=False).graph.initializer
        weights = [t for t in inits if np.prod(t.dims) >= CHANNELS * CHANNELS * 9]  # scales, biases: inline
        assert weights and all(t.data_location == onnx.TensorProto.EXTERNAL for t in weights), path.name


def _split_from_its_q(model) -> list[tuple[int, str]]:
    """(cut, node) where a prefix ending at the cut holds an operator whose QuantizeLinear (reached through a Relu
    or Clip) lies after the cut: that prefix runs the operator in float."""
    from edgekit.profile_onnx import cuts

    nodes = list(model.graph.node)
    where = {name: k for k, node in enumerate(nodes) for name in node.output}

    def source(k: int) -> int:  # the operator a Q quantizes, through the activations folded into it
        k = where[nodes[k].input[0]]
        while nodes[k].op_type in ("Relu", "Clip"):
            k = where[nodes[k].input[0]]
        return k

    qs = [
        (source(k), k)
        for k, node in enumerate(nodes)
        if node.op_type == "QuantizeLinear" and node.input[0] in where
    ]
    return [(c, nodes[a].name) for c in cuts(model) for a, q in qs if a <= c < q]


def test_an_operator_and_its_quantize_share_a_prefix_wherever_they_sit(tmp_path: Path) -> None:
    """Measured on yolov5-lite's onnx-int8: the rows summed to 131 % of the whole inference, because a prefix could
    end between an operator and its QuantizeLinear when (a) a Relu the quantizer left sits between them (onnxruntime
    folds it: Conv -> Relu -> Q is one QLinearConv) or (b) the Q comes later in the node order than another branch's
    nodes. Both are built here from the QDQ chain; no cut separates an operator from its Q."""
    import onnx
    from onnx import helper

    from edgekit.profile_onnx import cuts

    model = onnx.load(str(_qdq(_chain(tmp_path))))
    assert _split_from_its_q(model) == []
    nodes = list(model.graph.node)
    # (a) a Relu between conv1 and the QuantizeLinear that reads it
    k = next(i for i, n in enumerate(nodes) if n.name == "conv1")
    out = nodes[k].output[0]
    nodes[k].output[0] = out + "_pre"
    nodes.insert(k + 1, helper.make_node("Relu", [out + "_pre"], [out], name="relu1_kept"))
    # (b) conv3's Q after a node of another branch: a side Identity of conv3's input, placed between them
    k = next(i for i, n in enumerate(nodes) if n.name == "conv3")
    nodes.insert(k + 1, helper.make_node("Identity", [nodes[k].input[0]], ["side"], name="side_branch"))
    model.graph.output.append(
        helper.make_tensor_value_info("side", onnx.TensorProto.FLOAT, [1, CHANNELS, SIZE, SIZE])
    )
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.checker.check_model(model)
    assert _split_from_its_q(model) == [], cuts(model)
    kinds = [model.graph.node[c].op_type for c in cuts(model)]
    assert "Relu" not in kinds and "Identity" not in kinds, kinds


def test_a_model_profile_cannot_feed_is_refused_by_name(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    from edgekit.errors import InputDataError
    from edgekit.profile_onnx import read_model

    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage" * 8)
    with pytest.raises(InputDataError, match="not a readable ONNX model") as raised:
        read_model(junk)
    assert raised.value.exit_code == 2
    a, b = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in "ab")
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        "two",
        [a, b],
        [helper.make_tensor_value_info("y", 1, [1, 4])],
    )
    two = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(two))
    with pytest.raises(InputDataError, match="2 graph inputs"):
        read_model(two)


@pytest.mark.integration
@pytest.mark.parametrize("int8", [False, True])
def test_each_convolution_of_a_chain_counts_a_quarter_on_the_emulated_core(
    tmp_path: Path, int8: bool
) -> None:
    """Four identical convolutions: each one's differenced count is about a quarter of the work, float (Conv and
    its ReLU apart) and QDQ int8 (each Conv with its Q/DQ as the one QLinearConv onnxruntime runs); the groups sum
    to the whole inference; the command prints them."""
    from edgekit.profile_onnx import profile_onnx
    from edgekit.profile_table import format_table

    path = _chain(tmp_path)
    if int8:
        path = _qdq(path)
    prof = profile_onnx(path, "pi4-emu")
    convs = [layer for layer in prof.layers if layer.type.startswith("Conv")]
    assert [layer.name for layer in convs] == [f"conv{i}" for i in range(4)]
    assert {layer.precision for layer in convs} == {"int8" if int8 else "fp32"}
    ops = [layer.instructions for layer in convs]
    assert max(ops) / min(ops) < 1.25, ops
    assert all(0.15 < n / (prof.total - prof.fixed) < 0.35 for n in ops), (ops, prof.total, prof.fixed)
    assert 0.9 < prof.coverage < 1.1, (prof.layer_sum, prof.total, prof.fixed)
    assert 0 < prof.fixed < min(ops)
    table = format_table(prof)
    assert "per node" in table[0] and "onnxruntime's own per-run work" in table[-1]
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "profile", str(path), "--target", "pi4-emu", "--top", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    groups = 6 if int8 else 8  # Q, 4 x Conv+QDQ, DQ; or 4 x (Conv, Relu)
    assert f"counting {groups + 2} models ({groups} prefixes" in out.stderr, out.stderr
    assert "counting" not in out.stdout  # progress on stderr: stdout is the table or the JSON
    rows = [ln.split() for ln in out.stdout.splitlines()[2:5]]
    assert all(r[0].startswith("conv") and r[1] == ("Conv+QDQ" if int8 else "Conv") for r in rows), out.stdout


@pytest.mark.integration
def test_an_onnx_on_the_host_is_timed_node_by_node_by_onnxruntimes_profiler(tmp_path: Path) -> None:
    """On a board or the host an .onnx is timed node by node by onnxruntime's own profiler (it was refused: the
    Python API runs a graph as one call): one row per node of the graph onnxruntime optimised for this machine,
    in the order they run, named as it names them, at any thread count; a junk .onnx is refused before a run."""
    import json

    import onnx
    import onnxruntime as ort

    path = _chain(tmp_path)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])  # writes the optimised graph
    optimised = [n.name for n in onnx.load(str(tmp_path / "optimised.onnx")).graph.node]
    profile = [sys.executable, "-m", "edgekit", "profile"]
    out = subprocess.run(
        [*profile, str(path), "--target", "host", "--threads", "2", "--passes", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert data["label"].startswith("wall time per node") and "onnxruntime's profiler" in data["label"]
    assert data["runtime"] == "onnxruntime" and data["threads"] == 2 and data["layer_passes"] == 4
    assert [node["name"] for node in data["layer_ms"]] == optimised  # 4 convolutions with their ReLU fused
    assert all(node["ms"] >= node["min_ms"] > 0 for node in data["layer_ms"])
    out = subprocess.run(
        [*profile, str(path), "--target", "host", "--passes", "3", "--top", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    # a busy machine's timing caveat ('! host: other processes used up to 55% ...') and the profiler's microsecond
    # note ('~ 4 of 4 nodes took under 0.01 ms') follow the table: not counted
    lines = [ln for ln in out.stdout.splitlines() if not ln.startswith(("! ", "~ "))]
    assert "hardware measurement" in lines[0] and lines[1].split()[0] == "node" and len(lines) == 5, (
        out.stdout
    )
    assert f"{len(optimised)} nodes sum to" in lines[-1]
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model" * 10)
    out = subprocess.run(
        [*profile, str(junk), "--target", "host"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 2 and "junk.onnx" in out.stderr and "agent" not in out.stderr, out.stderr


def test_another_runtimes_onnx_or_a_counted_onnx_at_n_threads_is_refused_before_any_run(
    tmp_path: Path,
) -> None:
    """An .onnx edgekit made for OpenCV DNN would be counted under the wrong runtime; at 4 threads onnxruntime's
    per-node differences are its thread pool's noise: each exits 2 with what to do instead."""
    import json

    path = _chain(tmp_path)
    (tmp_path / "artifact.json").write_text(json.dumps({"format": "opencv-fp32", "files": ["chain.onnx"]}))
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "profile", str(path), "--target", "pi4-emu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = " ".join(out.stderr.split())
    assert out.returncode == 2 and "opencv-fp32" in said and "edgekit bench" in said, said
    assert "run by opencv;" in said and "Runtime." not in said, said  # the runtime's name, not the enum's
    (tmp_path / "artifact.json").unlink()
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "profile", str(path), "--target", "pi4-emu", "--threads", "4"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    said = " ".join(out.stderr.split())
    assert out.returncode == 2 and "one thread only" in said and "--threads 1" in said, said


def test_a_symbolic_batch_is_shown_as_the_one_the_count_ran(tmp_path: Path) -> None:
    """A model exported with a dynamic batch ("N") runs with batch 1 under the counting runner; its rows said -1."""
    import onnx

    from edgekit.profile_onnx import group_rows

    model = onnx.load(str(_chain(tmp_path)))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    rows = group_rows(model)
    assert rows and all(r["shape"] == [1, CHANNELS, SIZE, SIZE] for r in rows), rows


@pytest.mark.integration
def test_an_onnx_on_an_arm_board_is_timed_node_by_node_over_ssh(pi4_emu: object, tmp_path: Path) -> None:
    """The same on an ARM board over SSH: pi4-emu's device reached as a board is (a target without `emulated`,
    so nothing counts and the agent times), its aarch64 onnxruntime's profiler gives each node of the graph it
    optimised for that core: there each convolution with its ReLU is one FusedConv, named as the convolution."""
    import json

    import yaml

    t = pi4_emu
    board = tmp_path / "a72-board.yaml"
    board.write_text(
        yaml.safe_dump(
            {
                "name": "a72-board",
                "transport": "ssh",
                **{k: str(getattr(t, k)) for k in ("host", "user", "key", "known_hosts", "python")},
                "port": t.port,  # type: ignore[attr-defined]
                "work_dir": f"{t.work_dir}/board-profile",  # type: ignore[attr-defined]
                "runtimes": ["onnxruntime"],
            }
        )
    )
    path = _chain(tmp_path)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgekit",
            "profile",
            str(path),
            "--target",
            str(board),
            "--passes",
            "2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert data["target"] == "a72-board" and data["label"].startswith("wall time per node")
    nodes = [(node["name"], node["type"]) for node in data["layer_ms"]]
    assert nodes == [(f"conv{i}", "FusedConv") for i in range(4)], nodes
    assert all(node["ms"] >= node["min_ms"] > 0 for node in data["layer_ms"])
