"""The TensorFlow child process of Keras conversion: `python -m edgekit.convert.keras_child JOB.json`.

edgekit.convert.keras writes JOB.json into a work directory and runs this module there; it loads the Keras or
SavedModel source and writes into out/ either tf2onnx's ONNX (checked against the model's own outputs) or
TensorFlow's TFLite files, then result.json. It is a process of its own, as onnx2tf is in edgekit.convert.tflite:
TensorFlow's memory and threads stay out of the caller, and it reports its own peak RSS (and CPU time).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert.keras import BAD_INPUT_EXIT, NCHW_ONNX
from edgekit.convert.onnx_export import EXPORT_CHECK_INPUTS, EXPORT_CHECK_MAX_ABS, export_difference
from edgekit.convert.tool_process import child_figures
from edgekit.fidelity.finite import NOT_FINITE_HINT, not_finite, not_finite_message
from edgekit.recipe import IOType


class ChildError(Exception):
    """A problem with the user's model found in the child: its message is the first line the user sees, and its
    hint (if any) what to do; both reach the parent in error.json (the log holds TensorFlow's noise too)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ModelInputError(ChildError):
    """The model file itself is not one edgekit can take (Keras cannot load it, no serving signature, more than
    one input): the user's input, exit 2, not a conversion failure. The child exits BAD_INPUT_EXIT (keras.py)."""


def _serving(job: dict[str, Any]) -> tuple[Any, Any, list[str]]:
    """(tf.function with the recipe's fixed input, the object holding the variables, output names)."""
    import tensorflow as tf

    source = Path(job["source"])
    if source.is_dir():
        _refuse_outside_ops(source)
        try:
            loaded = tf.saved_model.load(str(source))
        except Exception as exc:  # noqa: BLE001 - whatever TensorFlow says of a folder it cannot load
            raise ModelInputError(
                f"TensorFlow cannot load this SavedModel: {type(exc).__name__}: {exc}"
            ) from None
        sig = loaded.signatures.get("serving_default")
        if sig is None:
            raise ModelInputError(
                f"SavedModelError: {source} has no 'serving_default' signature "
                f"(it has {sorted(loaded.signatures)})"
            )
        keys = list(sig.structured_input_signature[1])
        if len(keys) != 1:
            raise ModelInputError(
                f"SavedModelError: the serving signature takes {len(keys)} inputs {keys}; edgekit "
                "handles single-input models"
            )
        holder: Any = loaded

        def call(x: Any) -> Any:  # through `loaded`: the closure keeps its variables alive
            return loaded.signatures["serving_default"](**{keys[0]: x})
    else:
        import keras  # type: ignore[import-untyped]

        custom = _custom_objects(job.get("custom_objects") or [])
        try:
            holder = keras.models.load_model(str(source), compile=False, custom_objects=custom or None)
        except Exception as exc:
            if "Lambda" in str(exc):  # Keras's safe mode: the parent names it (the model holds code)
                raise
            raise ModelInputError(*_keras_load_error(exc)) from None
        inputs = getattr(holder, "inputs", None) or []
        if len(inputs) > 1:
            raise ModelInputError(
                f"the model takes {len(inputs)} inputs; edgekit handles single-input models"
            )

        def call(x: Any) -> Any:
            return holder(x, training=False)

    spec = tf.TensorSpec(job["shape"], tf.float32, name=job["input_name"])
    probe = call(tf.zeros(job["shape"], tf.float32))
    picked = _output_names(probe, job["outputs"], getattr(holder, "output_names", None))
    names = list(picked)

    def named(x: Any) -> dict[str, Any]:
        y = call(x)
        if isinstance(y, dict):
            return {name: y[name] for name in names}
        ys = list(y) if isinstance(y, (list, tuple)) else [y]
        return {name: ys[int(at)] for name, at in picked.items()}

    return tf.function(named, input_signature=[spec]), holder, names


def _refuse_outside_ops(source: Path) -> None:
    """ModelInputError when the SavedModel holds an op that touches files, processes or Python (savedmodel_ops):
    read from saved_model.pb before TensorFlow loads the model or calls any of its functions."""
    from edgekit.convert.savedmodel_ops import refusal_text, refusals

    try:
        found = refusals(source)
    except Exception as exc:  # noqa: BLE001 - a saved_model.pb TensorFlow cannot parse: it would not load either
        raise ModelInputError(
            f"TensorFlow cannot load this SavedModel: {type(exc).__name__}: {exc}"
        ) from None
    if found:
        raise ModelInputError(*refusal_text(found))


CUSTOM_HINT = (
    "a custom class's code is not saved in a .keras/.h5 file: name it in the recipe, "
    "model: {{kind: keras, path: ..., custom_objects: [{example}]}}, with its package on PYTHONPATH "
    "(PYTHONPATH alone imports nothing); or save the model as a SavedModel where the class is defined "
    "(model.export('my_model'), then model: {{kind: keras, path: my_model}}): it holds the traced graph and needs "
    "no Python code"
)


def _custom_objects(dotted: list[str]) -> dict[str, Any]:
    """The recipe's `model.custom_objects` (`package.module:Name`), imported, by the names Keras looks them up by:
    the class's own name and the name it was registered under (`package>Name`)."""
    import keras

    from edgekit.recipe.builders import resolve_callable

    found: dict[str, Any] = {}
    for name in dotted:
        try:
            obj = resolve_callable(name, any_installed=True)  # a custom layer class, which Keras builds
        except (ImportError, AttributeError) as exc:  # load.py checked it; a module that changed since
            raise ModelInputError(f"model.custom_objects: cannot import {name!r}: {exc}") from None
        found[getattr(obj, "__name__", name.rpartition(":")[2])] = obj
        registered = keras.saving.get_registered_name(obj)
        found.setdefault(registered, obj)
    return found


def _keras_load_error(exc: Exception) -> tuple[str, str | None]:
    """(message, hint) for a .keras/.h5 file Keras cannot load: the custom class it could not find, by name, or
    Keras's own first words on one line (its message runs over lines and ends in the model's whole config)."""
    text = str(exc)
    missing = re.search(r"Could not locate (class|function) '([^']+)'", text)
    # a legacy .h5's deserializer: "Unknown layer: 'mine>Swish2'" (activation function, initializer, object...)
    unknown = re.search(r"Unknown ([a-z][a-z ]*): '([^']+)'", text)
    if missing:
        kind, name = missing.groups()
        registered = re.search(r"'registered_name': '([^']+)'", text[missing.end() :])
        full = registered.group(1) if registered else name
    elif unknown:
        what, full = unknown.groups()
        kind, name = "function" if "function" in what else "class", full.rpartition(">")[2]
    if missing or unknown:
        also = f" (registered as '{full}')" if full != name else ""
        return (
            f"Keras cannot load this file: the custom {kind} '{name}'{also} could not be deserialized: its code "
            "is not in the file and no module the recipe names defines it",
            CUSTOM_HINT.format(example=f"mypackage.layers:{name.rpartition('>')[2]}"),
        )
    unimportable = re.search(
        r"Could not deserialize (\w+) '([^']+)' because its parent module (\S+) cannot", text
    )
    if unimportable:
        kind, name, module = unimportable.groups()
        return (
            f"Keras cannot load this file: the {kind} '{name}' comes from the module {module}, which cannot be "
            "imported here",
            f"install the package that provides {module} (or put it on PYTHONPATH) and convert again",
        )
    first = " ".join(text.split("config=", 1)[0].split("Full object config", 1)[0].split())
    return f"Keras cannot load this file: {type(exc).__name__}: {first[:300]}", None


def _output_names(probe: Any, wanted: list[str], model_names: Any) -> dict[str, str | int]:
    """{name the ONNX/TFLite output gets: the model's output it is (a dict's key, a list's index)}, in the
    recipe's order. Outputs the model names itself (a dict, a Keras model's `output_names`) are taken BY NAME:
    the recipe's `outputs` selects and orders them; a name the model lacks leaves the model's own names, which the
    parent refuses as it refuses any model's (onnx_io.check_io: RecipeError naming the model's outputs). Only a
    model that names none of its outputs has the recipe's names given by position."""
    if isinstance(probe, dict):
        keys = [str(k) for k in probe]
        chosen = [n for n in wanted if n in keys] if wanted and all(n in keys for n in wanted) else keys
        return {n: n for n in chosen}
    count = len(probe) if isinstance(probe, (list, tuple)) else 1
    if isinstance(model_names, (list, tuple)) and len(model_names) == count:
        own = [str(n) for n in model_names]
        if wanted and all(n in own for n in wanted):
            return {n: own.index(n) for n in wanted}
        return {n: i for i, n in enumerate(own)}
    if len(wanted) == count:
        return {n: i for i, n in enumerate(wanted)}
    return {f"output_{i}": i for i in range(count)}


def _child_onnx(job: dict[str, Any]) -> dict[str, Any]:
    import onnxruntime as ort
    import tf2onnx  # type: ignore[import-untyped]

    serve, _, names = _serving(job)
    spec = serve.input_signature
    exported = _frozen(serve)
    Path("out").mkdir()
    tf2onnx.convert.from_function(
        exported, input_signature=spec, opset=job["opset"], output_path="out/model.onnx"
    )
    if job["nchw"]:
        tf2onnx.convert.from_function(
            exported,
            input_signature=spec,
            opset=job["opset"],
            inputs_as_nchw=[job["input_name"]],
            output_path=f"out/{NCHW_ONNX}",
        )
    xs = np.random.default_rng(0).uniform(0, 1, (EXPORT_CHECK_INPUTS, *job["shape"])).astype(np.float32)
    wants = [{k: v.numpy() for k, v in serve(x).items()} for x in xs]
    _check_finite(wants, names, job["source"])
    worst = 0.0
    for file, layout in (("model.onnx", None), (NCHW_ONNX, (0, 3, 1, 2))):
        if not Path("out", file).is_file():
            continue
        sess = ort.InferenceSession(f"out/{file}", providers=["CPUExecutionProvider"])
        onnx_names = [o.name for o in sess.get_outputs()]
        if sorted(onnx_names) != sorted(names):
            raise ChildError(f"ExportError: tf2onnx named the outputs {onnx_names}, the model {names}")
        for i, (x, want) in enumerate(zip(xs, wants)):
            got = dict(
                zip(
                    onnx_names,
                    sess.run(onnx_names, {sess.get_inputs()[0].name: x.transpose(layout) if layout else x}),
                )
            )
            worst = max(worst, _export_difference(want, got, names, i))
    return {
        "opset": job["opset"],
        "outputs": names,
        "check": {"max_abs": worst, "inputs": EXPORT_CHECK_INPUTS},
    }


def _frozen(serve: Any) -> Any:
    """`serve` with every captured value made a constant, as a tf.function tf2onnx takes. tf2onnx drops only the
    captured resources (variables) from a function's inputs: a captured plain tensor, such as the mean and variance
    of Keras's `Normalization` layer (every EfficientNet holds one), stayed an ONNX graph input, and the export
    check failed on "Required inputs ([...normalization/Sub/y:0, ...]) are missing from input feed"."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    concrete = serve.get_concrete_function()
    frozen = convert_variables_to_constants_v2(concrete)

    def named(x: Any) -> Any:  # the frozen function returns a flat list: give back the outputs' names
        return tf.nest.pack_sequence_as(concrete.structured_outputs, frozen(x))

    return tf.function(named, input_signature=serve.input_signature)


def _export_difference(want: dict[str, Any], got: dict[str, Any], names: list[str], i: int) -> float:
    """The worst export_difference of the ONNX's outputs (`got`) from the Keras model's (`want`) on the export
    check's input i; a ChildError past EXPORT_CHECK_MAX_ABS, and for NaN too: `max(worst, nan)` kept 0.0, so an
    ONNX giving NaN where Keras is finite passed ("matches the model within 0.0e+00")."""
    worst = 0.0
    for name in names:
        err = export_difference(want[name], got[name])
        if not err <= EXPORT_CHECK_MAX_ABS:
            bad = not_finite(got[name])
            raise ChildError(
                f"ExportError: tf2onnx's ONNX differs from the Keras model on input {i + 1} of "
                f"{EXPORT_CHECK_INPUTS} (uniform 0..1), output `{name}`: "
                + (
                    f"it holds {bad} of its {np.asarray(got[name]).size} values where the Keras model's are "
                    "finite"
                    if bad
                    else f"by {err:.3g} (relative max abs; float rounding stays below {EXPORT_CHECK_MAX_ABS:g})"
                )
            )
        worst = max(worst, err)
    return worst


def _check_finite(wants: list[dict[str, Any]], names: list[str], source: str) -> None:
    """The Keras model's own outputs on the export check's inputs hold no NaN or infinity, else a ModelInputError
    (exit 2) naming the input, the output and how many values: NaN equals nothing, and the export check
    passed such a model ("matches the model within 0.0e+00"), every artifact then missing its gate."""
    for i, want in enumerate(wants):
        for name in names:
            said = not_finite_message(
                f"the export check's input {i + 1} of {len(wants)} (uniform 0..1)",
                Path(source).name,
                f"`{name}`",
                want[name],
                "Keras's, before any export",
            )
            if said:
                raise ModelInputError(said, NOT_FINITE_HINT)


def _child_tflite(job: dict[str, Any]) -> dict[str, Any]:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from edgekit.convert.onnx2tf_run import flex_ops

    serve, _, _ = _serving(job)
    # frozen: a Keras 3 model's variables saved or passed as they are stay READ_VARIABLE ops the calibrator and
    # the TFLite runtime cannot run
    frozen = convert_variables_to_constants_v2(serve.get_concrete_function())
    calib = np.load(job["calibration"]) if job["calibration"] else None
    Path("out").mkdir()
    flex: dict[str, list[str]] = {}
    for fmt, precision in job["formats"].items():
        conv = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
        ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if precision != "fp32":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if precision == "fp16":
            conv.target_spec.supported_types = [tf.float16]
        if precision == "int8":
            if calib is None:
                raise ChildError("CalibrationError: full INT8 needs the recipe's calibration data")

            def representative(data: np.ndarray = calib) -> Any:
                for sample in data:
                    yield [sample[None]]

            conv.representative_dataset = representative
            ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if job["io"] == IOType.INT8.value:
                conv.inference_input_type = tf.int8
                conv.inference_output_type = tf.int8
            if job["per_tensor"]:
                conv._experimental_disable_per_channel = True
        if job["select_tf_ops"]:
            ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
        conv.target_spec.supported_ops = ops
        path = Path("out", f"{fmt}.tflite")
        path.write_bytes(conv.convert())
        flex[fmt] = flex_ops(path)
    return {"flex_ops": flex}


def _child(job_path: Path) -> None:
    job = json.loads(job_path.read_text())
    start = time.perf_counter()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    threads = int(os.environ.get("EDGEKIT_CONVERT_THREADS", "1"))
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    try:
        report = _child_onnx(job) if job["mode"] == "onnx" else _child_tflite(job)
    except ChildError as exc:
        print(exc, file=sys.stderr)
        Path("error.json").write_text(json.dumps({"message": str(exc), "hint": exc.hint}))
        sys.exit(BAD_INPUT_EXIT if isinstance(exc, ModelInputError) else 1)
    Path("result.json").write_text(json.dumps({**report, **child_figures(start)}))


if __name__ == "__main__":
    from edgekit.convert.tool_process import die_with_parent

    die_with_parent()
    _child(Path(sys.argv[1]))
