"""A SavedModel is a graph TensorFlow runs: before edgekit loads one (and calls its serving function for the export
check) it reads saved_model.pb and refuses ops that touch files, processes or Python (WriteFile, ReadFile, PyFunc,
PrintV2 to a file, checkpoint writes outside the loader's own restore...) as InputDataError, exit 2. Was: a
SavedModel whose serving function called tf.io.write_file wrote that file during `edgekit convert`, exit 0."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}

# Each hostile model marks a file of its own under MARKS when its serving function runs; the script below builds
# them (one child: importing TensorFlow takes seconds) and, without loading any, lists what the check refuses.
BUILD = r"""
import json, shutil, sys
from pathlib import Path
import tensorflow as tf, keras
from tensorflow.core.protobuf import saved_model_pb2

D, MARKS = Path(sys.argv[1]), Path(sys.argv[2])
SPEC = [tf.TensorSpec([1, 4], tf.float32)]


def module(fn, name):
    class M(tf.Module):
        def __init__(self):
            self.v = tf.Variable([[1.0], [2.0], [3.0], [4.0]])

        @tf.function(input_signature=SPEC)
        def serve(self, x):
            return {"y": fn(self, x)}

    m = M()
    tf.saved_model.save(m, str(D / name), signatures={"serving_default": m.serve})


def mark(name):
    return str(MARKS / name)


module(lambda m, x: tf.matmul(x, m.v), "ok_module")
def write(m, x):
    tf.io.write_file(mark("write"), tf.strings.as_string(tf.reduce_sum(x)))
    return tf.matmul(x, m.v)
module(write, "write")
def nested(m, x):  # the write in a branch function of an If: a function the serving function calls
    def hit():
        tf.io.write_file(mark("nested"), "x")
        return tf.matmul(x, m.v)
    return tf.cond(tf.reduce_sum(x) > -1e9, hit, lambda: tf.matmul(x, m.v))
module(nested, "nested")
module(lambda m, x: tf.matmul(x, m.v) + 0 * tf.cast(tf.strings.length(tf.io.read_file("/etc/hostname")),
       tf.float32), "read")
module(lambda m, x: tf.numpy_function(lambda a: a, [tf.matmul(x, m.v)], tf.float32), "pyfunc")
def printfile(m, x):
    tf.print(x, output_stream="file://" + mark("print"))
    return tf.matmul(x, m.v)
module(printfile, "printfile")
def printerr(m, x):  # tf.print to stderr touches no file: not refused
    tf.print(x)
    return tf.matmul(x, m.v)
module(printerr, "print_stderr")
def savev2(m, x):  # a checkpoint write of its own, outside the saver the loader uses
    tf.raw_ops.SaveV2(prefix=mark("savev2"), tensor_names=["x"], shape_and_slices=[""], tensors=[x])
    return tf.matmul(x, m.v)
module(savev2, "savev2")
def dataset(m, x):
    n = tf.data.TextLineDataset([mark("lines")]).reduce(0.0, lambda a, _: a + 1.0)
    return tf.matmul(x, m.v) + 0 * n
module(dataset, "dataset")

# an op that reads the file an attribute names (its kernel opens vocab_file when the function is first called)
VOCAB = D / "vocab.txt"
VOCAB.write_text("".join(f"w{i},{i + 1}\n" for i in range(10)))
def sampler(m, x):
    ids, _, _ = tf.raw_ops.FixedUnigramCandidateSampler(
        true_classes=tf.constant([[1]], tf.int64), num_true=1, num_sampled=2, unique=True, range_max=10,
        vocab_file=str(VOCAB))
    return tf.matmul(x, m.v) + 0 * tf.cast(tf.reduce_sum(ids), tf.float32)
module(sampler, "sampler")
# ... the same op given an empty vocab_file (its unigrams attribute instead): no file, not refused
def sampler_unigrams(m, x):
    ids, _, _ = tf.raw_ops.FixedUnigramCandidateSampler(
        true_classes=tf.constant([[1]], tf.int64), num_true=1, num_sampled=2, unique=True, range_max=10,
        unigrams=[1.0] * 10)
    return tf.matmul(x, m.v) + 0 * tf.cast(tf.reduce_sum(ids), tf.float32)
module(sampler_unigrams, "ok_sampler_unigrams")
# ... and its vocab_file a placeholder of its function, the path given by the caller's attribute
sm = saved_model_pb2.SavedModel.FromString((D / "sampler" / "saved_model.pb").read_bytes())
for f in sm.meta_graphs[0].graph_def.library.function:
    for n in f.node_def:
        if n.op == "FixedUnigramCandidateSampler":
            n.attr["vocab_file"].placeholder = "vf"
            f.signature.attr.add(name="vf", type="string")
shutil.copytree(D / "sampler", D / "sampler_placeholder")
(D / "sampler_placeholder" / "saved_model.pb").write_bytes(sm.SerializeToString())

# the serving function calls the model's own checkpoint-save function (allowed only where the saver calls it)
pb = D / "ok_module" / "saved_model.pb"
sm = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
lib = sm.meta_graphs[0].graph_def.library.function
save_fn = next(f.signature.name for f in lib if "_traced_save" in f.signature.name)
serve_fn = next(f for f in lib if f.signature.name.startswith("__inference_serve_"))
node = serve_fn.node_def.add(name="evil", op="StatefulPartitionedCall")
node.attr["f"].func.name = save_fn
shutil_dst = D / "call_saver"
import shutil
shutil.copytree(D / "ok_module", shutil_dst)
(shutil_dst / "saved_model.pb").write_bytes(sm.SerializeToString())
# a checkpoint write in the saver's restore function, which a loader runs
sm = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
lib = sm.meta_graphs[0].graph_def.library.function
restore_fn = next(f for f in lib if "_traced_restore" in f.signature.name)
restore_fn.node_def.add(name="evil_save", op="SaveV2")
shutil.copytree(D / "ok_module", D / "restore_writes")
(D / "restore_writes" / "saved_model.pb").write_bytes(sm.SerializeToString())

# Keras's own exports, as users bring them
i = keras.Input((8, 4)); x = keras.layers.LSTM(5)(i)
km = keras.Model(i, keras.layers.BatchNormalization()(keras.layers.Dense(3)(x)))
km.export(str(D / "ok_keras_export"), verbose=False)
tf.saved_model.save(km, str(D / "ok_keras_tfsave"))

# TensorFlow 1: the saver's RestoreV2 / SaveV2 are nodes of the top-level graph
g = tf.Graph()
with g.as_default():
    xp = tf.compat.v1.placeholder(tf.float32, [1, 4], name="x")
    w = tf.compat.v1.get_variable("w", initializer=tf.ones([4, 2]))
    y = tf.matmul(xp, w, name="y")
    with tf.compat.v1.Session(graph=g) as s:
        s.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.saved_model.simple_save(s, str(D / "ok_tf1"), {"x": xp}, {"y": y})
# ... and a TF1 signature whose output is the saver's save tensor: calling it writes a checkpoint at the
# saver's default file name
shutil.copytree(D / "ok_tf1", D / "tf1_sig_saver")
pb = D / "tf1_sig_saver" / "saved_model.pb"
sm = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
mg = sm.meta_graphs[0]
mg.signature_def["serving_default"].outputs["z"].name = mg.saver_def.save_tensor_name
pb.write_bytes(sm.SerializeToString())

"""

CHECK = r"""
import json, sys
from pathlib import Path
from edgekit.convert.savedmodel_ops import refusals

found = {}
for folder in sorted(p for p in Path(sys.argv[1]).iterdir() if p.is_dir()):
    found[folder.name] = [[r.op, r.function] for r in refusals(folder)]
print("RESULT " + json.dumps(found))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(folder of SavedModels, folder of the marks their serving functions would write)."""
    base = tmp_path_factory.mktemp("savedmodels")
    folder, marks = base / "models", base / "marks"
    folder.mkdir()
    marks.mkdir()
    out = subprocess.run(
        [sys.executable, "-c", BUILD, str(folder), str(marks)],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return folder, marks


def _child_result(code: str, *args: str) -> Any:
    """The JSON a child python running `code` printed after 'RESULT ' (the checks import TensorFlow's protos: a
    child of their own)."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**ENV, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        timeout=600,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert out.returncode == 0 and lines, out.stdout[-2000:] + out.stderr[-3000:]
    return json.loads(lines[0][len("RESULT ") :])


@pytest.fixture(scope="module")
def models(built: tuple[Path, Path]) -> tuple[Path, Path, dict[str, Any]]:
    """(folder of SavedModels, folder of marks, {model: [[op, function], ...] the check refuses}), the check run
    in a child of its own (it imports TensorFlow's protos)."""
    folder, marks = built
    refused = _child_result(CHECK, str(folder))
    assert not any(marks.iterdir()), "building or checking a model ran its serving function"
    return folder, marks, refused


def test_real_savedmodels_pass_the_check(models: tuple[Path, Path, dict[str, Any]]) -> None:
    """Keras's export and tf.saved_model.save (variables restored by the loader's own RestoreV2 in
    __inference__traced_restore), a tf.Module, a TF1 simple_save (saver nodes in the top-level graph) and tf.print
    to stderr: nothing refused."""
    _, _, found = models
    for name in (
        "ok_module",
        "ok_keras_export",
        "ok_keras_tfsave",
        "ok_tf1",
        "print_stderr",
        "ok_sampler_unigrams",
    ):
        assert found[name] == [], (name, found[name])


def test_file_process_and_python_ops_are_refused_by_name_and_function(
    models: tuple[Path, Path, dict[str, Any]],
) -> None:
    """Each hostile model is refused, naming the op and the function that holds it (a branch function of an If
    too: every function in the library, not only the serving one)."""
    _, _, found = models
    want = {
        "write": "WriteFile",
        "nested": "WriteFile",
        "read": "ReadFile",
        "printfile": "PrintV2",
        "savev2": "SaveV2",
        "dataset": "TextLineDataset",
        "call_saver": "StatefulPartitionedCall",
    }
    for name, op in want.items():
        ops = [o for o, _ in found[name]]
        assert op in ops, (name, found[name])
        assert all(fn for _, fn in found[name]), (name, found[name])  # in a function, named
    assert {o for o, _ in found["pyfunc"]} & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}, found["pyfunc"]
    assert any("cond_true" in fn or "true" in fn for _, fn in found["nested"]), found["nested"]
    assert [o for o, _ in found["restore_writes"]] == ["SaveV2"], found["restore_writes"]
    assert "_traced_restore" in found["restore_writes"][0][1], found["restore_writes"]
    assert found["tf1_sig_saver"] and all(fn is None for _, fn in found["tf1_sig_saver"]), found


def test_an_op_reading_the_file_an_attribute_names_is_refused(
    models: tuple[Path, Path, dict[str, Any]],
) -> None:
    """Was: FixedUnigramCandidateSampler(vocab_file=...) in a serving function passed the check (the deny-list
    named ops only), and calling the function read that file. Now: any node with a non-empty string attribute
    named like a file, path or folder is refused, its value given in place or by the caller (a placeholder)."""
    _, _, found = models
    for name in ("sampler", "sampler_placeholder"):
        assert [o for o, _ in found[name]] == ["FixedUnigramCandidateSampler"], (name, found[name])
        assert found[name][0][1].startswith("__inference_serve_"), (name, found[name])


@pytest.mark.integration
def test_convert_refuses_a_savedmodel_that_writes_a_file_and_writes_nothing(
    tmp_path: Path, built: tuple[Path, Path]
) -> None:
    """Was: exit 0 and the file written by the serving function during the export check. Now: exit 2,
    InputDataError naming the op and function and what to do; the file is not written."""
    folder, marks = built
    saved = Path(shutil.copytree(folder / "write", tmp_path / "sm"))
    recipe = tmp_path / "k_sm.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "ksm",
                "task": "generic",
                "model": {"kind": "keras", "path": str(saved)},
                "input": {"name": "x", "shape": [1, 4]},
                "formats": ["onnx-fp32", "tflite-fp32"],
            }
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")},
    )
    assert not (marks / "write").exists(), "the SavedModel's serving function ran"
    assert out.returncode == 2 and "InputDataError" in out.stderr, out.stdout[-1500:] + out.stderr[-3000:]
    assert "holds the TensorFlow op WriteFile" in out.stderr and "__inference_serve_" in out.stderr, (
        out.stderr
    )
    assert "ONNX yourself" in out.stderr, out.stderr


# op names that look like files, processes, Python, debug URLs or data on disk
SUSPECT = (
    r"File|Reader|Record|Save|Restore|Summary|Writer|^Py|PyFunc|Debug|Checkpoint|Snapshot|Sql|LMDB|CSV|Print|"
    r"Immutable|Proto|Vocab|Remap|FromGraph|DataService|RegisterDataset|CacheDataset|Matching|^Copy|"
    r"Load(?!TPU)|Dump|Socket|Rpc"
)

# every op this process registers: tf.raw_ops lacks some a graph can still hold (RpcClient, DTensorRestoreV2,
# DumpTensor...)
ALL_OPS = r"""
import json, re, sys
import tensorflow as tf, keras
from tensorflow.core.framework import op_def_pb2
from tensorflow.python.client import pywrap_tf_session
from edgekit.convert.savedmodel_denied import DENIED, LOOKALIKES
ops = op_def_pb2.OpList.FromString(pywrap_tf_session.TF_GetBuffer(pywrap_tf_session.TF_GetAllOpList())).op
names = {op.name for op in ops}
assert names > {n for n in dir(tf.raw_ops) if not n.startswith("_")}
print("RESULT " + json.dumps({
    "unsorted": sorted(n for n in names if re.search(sys.argv[1], n, re.I) and n not in set(DENIED) | LOOKALIKES),
    "unknown": sorted(n for n in (set(DENIED) | LOOKALIKES) if n not in names),
    "denied": sorted(DENIED),
}))
"""


def test_every_file_looking_op_of_this_tensorflow_is_sorted() -> None:
    """The deny-list stays complete as TensorFlow grows: every op TensorFlow registers (tf.raw_ops and the ops
    outside it: was tf.raw_ops only, which missed RpcClient, RpcServer, DTensorRestoreV2...) whose name looks like
    files, Python, debug URLs, the network or data on disk is either refused (DENIED) or reviewed as harmless
    (LOOKALIKES); both name only ops this TensorFlow has (a typo refuses nothing)."""
    got = _child_result(ALL_OPS, SUSPECT)
    assert got["unsorted"] == [] and got["unknown"] == [], got
    for op in (
        "WriteFile",
        "ReadFile",
        "PyFunc",
        "EagerPyFunc",
        "TFRecordDataset",
        "DebugIdentityV2",
        "RpcClient",
    ):
        assert op in got["denied"], op


# string attributes whose names look like a file, a folder, a URL or an output: each is refused by the check or
# reviewed here as harmless (attribute -> the ops that have it, a regex)
SUSPECT_ATTR = r"file|path|dir|folder|url|uri|prefix|stream|source|location|region|disk|dump"
REVIEWED_ATTRS = {
    "direction": r"CudnnRNN.*|RiscSort",  # unidirectional/bidirectional, ascending/descending
    "source": r"TensorArrayGrad.*",  # names a gradient accumulator
    "output_stream": r"PrintV2",  # refused unless stderr, stdout or the log (_print_to_file)
    "step_marker_location": r"_?TPUReplicate.*",  # where a TPU loop's step marker goes
}

ALL_ATTRS = r"""
import json, re, sys
import tensorflow as tf, keras
from tensorflow.core.framework import op_def_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.client import pywrap_tf_session
from edgekit.convert.savedmodel_denied import DENIED
from edgekit.convert.savedmodel_ops import saved_model_refusals
ops = op_def_pb2.OpList.FromString(pywrap_tf_session.TF_GetBuffer(pywrap_tf_session.TF_GetAllOpList())).op
reviewed = json.loads(sys.argv[2])
got = {"unsorted": [], "refused": [], "harmless_refused": [], "checked": 0}
for op in ops:
    if op.name in DENIED:
        continue
    for attr in op.attr:
        if attr.type not in ("string", "list(string)") or not re.search(sys.argv[1], attr.name, re.I):
            continue
        got["checked"] += 1
        sm = saved_model_pb2.SavedModel()
        fn = sm.meta_graphs.add().graph_def.library.function.add()
        fn.signature.name = "__inference_serve_1"
        node = fn.node_def.add(name="n", op=op.name)
        if attr.type == "string":
            node.attr[attr.name].s = b"/tmp/somewhere"
        else:
            node.attr[attr.name].list.s.append(b"/tmp/somewhere")
        refused = [r.op for r in saved_model_refusals(sm)] == [op.name]
        harmless = re.fullmatch(reviewed.get(attr.name, "(?!)"), op.name) is not None
        if refused and not harmless:
            got["refused"].append([op.name, attr.name])
        elif harmless and refused and op.name != "PrintV2":
            got["harmless_refused"].append([op.name, attr.name])
        elif not refused and not harmless:
            got["unsorted"].append([op.name, attr.name])
print("RESULT " + json.dumps(got))
"""


def test_every_op_with_a_path_like_string_attribute_is_refused_or_reviewed() -> None:
    """Was: the check and its completeness test looked at op names only, so FixedUnigramCandidateSampler's
    vocab_file (and DumpTensor's log_dir_path, Skipgram's filename...) read a file unseen. Now every op TensorFlow
    registers (tf.raw_ops and the ops outside it) with a string attribute named like a file, folder or URL, given
    a path there, is refused by saved_model_refusals or reviewed as harmless above."""
    got = _child_result(ALL_ATTRS, SUSPECT_ATTR, json.dumps(REVIEWED_ATTRS))
    assert got["unsorted"] == [] and got["harmless_refused"] == [], got
    refused = {tuple(r) for r in got["refused"]}
    for pair in (("FixedUnigramCandidateSampler", "vocab_file"), ("Skipgram", "filename")):
        assert pair in refused, (pair, got)
