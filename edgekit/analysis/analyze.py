"""Where INT8 loses accuracy: the quantized model's intermediate tensors compared with fp32's, layer by layer.

For every layer the quantized artifact runs, two numbers against the fp32 artifact of the same runtime on the
same evaluation inputs (relative error = ||q - f|| / ||f|| over all samples; cosine = mean per sample):
- **propagated** (`cosine`, `rel_error`): the quantized model's tensor vs the fp32 model's, errors of earlier
  layers included: what the network downstream actually sees;
- **own** (`own_rel_error`): what this layer adds. NCNN: the layer alone, run in the INT8 model on the fp32
  model's input blob (ncnn lets any blob be fed in), so nothing upstream counts. TFLite (no way to feed an
  intermediate tensor): the propagated error at the output minus the worst propagated error of its inputs.
Layers are ranked by their own error: that is where to spend float precision (edgekit.analysis.float_fallback).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert.base import Artifact
from edgekit.convert.tflite_selective import tensor_key
from edgekit.errors import EdgekitError
from edgekit.formats import Format, Precision, Runtime
from edgekit.recipe import Recipe

Progress = Callable[[str], None]


class AnalysisError(EdgekitError):
    """The layer analysis cannot run (wrong format, an artifact failed to convert)."""


@dataclass
class LayerError:
    name: str  # ncnn layer name, or the TFLite op's output tensor name
    type: str  # ncnn layer type / TFLite op
    output: str  # the blob or tensor compared
    quantized: bool  # does this layer compute in int8
    cosine: float  # propagated
    rel_error: float  # propagated
    own_rel_error: float  # this layer's own contribution (see module docstring)
    own_cosine: float | None = None  # NCNN only: the layer alone

    @property
    def short_name(self) -> str:
        """TFLite names fuse several TF op names with `;`: the first is the one a user recognises."""
        return self.name.split(";")[0]


@dataclass
class Analysis:
    recipe: str
    format: str
    samples: int
    method: str  # "isolated" (ncnn) or "difference" (tflite), how own_rel_error was measured
    layers: list[LayerError]
    fidelity: dict[str, Any] = field(default_factory=dict)  # the artifact's whole-model numbers and gates
    reference: str = ""  # the fp32 format every layer is compared with
    reference_fidelity: dict[str, Any] = field(default_factory=dict)  # its own numbers and gates vs ONNX
    notes: list[str] = field(default_factory=list)  # what the table cannot show (printed under the summary)

    def reference_warning(self, recipe_path: str = "RECIPE") -> str | None:
        """When the fp32 artifact itself misses the recipe's gates against the original model: every layer is
        compared with that float model, so what the float conversion loses shows in no layer here, and keeping
        int8 layers in float (--fix) cannot win it back."""
        gates = self.reference_fidelity.get("gates")
        if not isinstance(gates, dict) or gates.get("passed") is not False:
            return None
        from edgekit.fidelity.check import describe_failures

        return (
            f"{self.reference} itself misses the recipe's gates against the original model "
            f"({describe_failures(gates)}): every layer below is compared with that float model, so what the "
            "float conversion loses shows in no layer, and no int8 layer kept in float wins it back; look at the "
            f"float conversion first (`edgekit convert {recipe_path} --format {self.reference}` prints its check)"
        )

    def worst(self, n: int | None = None) -> list[LayerError]:
        """Quantized layers, most damaging first."""
        ranked = sorted((x for x in self.layers if x.quantized), key=lambda x: -x.own_rel_error)
        return ranked if n is None else ranked[:n]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1, default=str) + "\n")


# runtimes whose intermediate tensors edgekit can read
LAYER_READERS = (Runtime.NCNN, Runtime.TFLITE, Runtime.ONNXRUNTIME)


def check_format(fmt: Format) -> None:
    if fmt.precision is not Precision.INT8:
        raise AnalysisError(
            f"analyze compares an INT8 artifact with fp32; {fmt.value} is not INT8",
            where="--format",  # the user's argument: exit 2
            hint="use --format tflite-int8, ncnn-int8 or onnx-int8",
        )
    if fmt.runtime not in LAYER_READERS:
        raise AnalysisError(
            f"analyze cannot read the layers of {fmt.runtime.value} artifacts ({fmt.value})",
            where="--format",
            hint="use --format tflite-int8, ncnn-int8 or onnx-int8",
        )


def artifacts_for(recipe: Recipe, fmt: Format, progress: Progress) -> tuple[Artifact, Artifact]:
    """The fp32 and INT8 artifacts of one runtime (converted or from the cache), fidelity-checked."""
    from edgekit.convert.pipeline import convert_recipe

    ref_fmt = fmt.fp32_reference
    arts = {a.format: a for a in convert_recipe(recipe, [ref_fmt, fmt], keep_going=True, progress=progress)}
    for f in (ref_fmt, fmt):
        if not arts[f].files:
            raise AnalysisError(f"{f.value} could not be converted: {arts[f].error}", where=str(recipe.path))
    return arts[ref_fmt], arts[fmt]


def analyze(recipe: Recipe, fmt: Format, samples: int = 16, progress: Progress | None = None) -> Analysis:
    """Compare every layer of the recipe's `fmt` artifact with its fp32 counterpart on evaluation inputs."""
    from edgekit.convert.calibration import evaluation_inputs

    say = progress or (lambda _m: None)
    check_format(fmt)
    fp32, int8 = artifacts_for(recipe, fmt, say)
    inputs, _ = evaluation_inputs(recipe)
    held = len(inputs)
    inputs = inputs[:samples]
    said = f" (--samples {samples}: the evaluation data holds {held})" if samples > held else ""
    say(f"analyze: comparing every layer on {len(inputs)} evaluation inputs{said}")
    if fmt.runtime is Runtime.NCNN:
        layers, method = ncnn_layers(fp32.files, int8.files, inputs), "isolated"
    elif fmt.runtime is Runtime.TFLITE:
        layers, method = tflite_layers(fp32.main_file, int8.main_file, inputs), "difference"
    elif fmt.runtime is Runtime.ONNXRUNTIME:
        layers, method = onnx_layers(fp32.main_file, int8.main_file, inputs), "difference"
    else:  # check_format refused it above
        raise AnalysisError(f"analyze cannot read the layers of {fmt.value}")
    return Analysis(
        recipe.name,
        fmt.value,
        len(inputs),
        method,
        layers,
        int8.fidelity,
        reference=fp32.format.value,
        reference_fidelity=fp32.fidelity,
        notes=_fused_loss(layers, int8, fp32) if fmt.runtime is Runtime.ONNXRUNTIME else [],
    )


def _fused_loss(layers: list[LayerError], int8: Artifact, fp32: Artifact) -> list[str]:
    """onnx-int8's layers are compared with graph optimisations off (the QDQ arithmetic); onnxruntime as deployed
    fuses them into integer kernels. When the whole model's check (as deployed) is much worse than the table's
    last output, the loss is in a fused kernel, which no row shows (a saturated int32 bias wraps around in QGemm:
    torchvision's random-weight shufflenet_v2, 0.917 deployed, 0.99 in the QDQ arithmetic)."""
    outputs = set((fp32.fidelity or {}).get("outputs") or [])
    last = [x for x in layers if x.output in outputs] or layers[-1:]
    deployed = (int8.fidelity or {}).get("cosine")
    if not last or not isinstance(deployed, (int, float)):
        return []
    qdq = min(x.cosine for x in last)
    if (1.0 - deployed) <= 2.0 * max(1.0 - qdq, 1e-6) + 1e-4:
        return []
    return [
        f"the whole model as onnxruntime runs it (cosine {deployed:.6f}) loses much more than its QDQ arithmetic "
        f"layer by layer (cosine {qdq:.6f} at the output, graph optimisations off): the loss is in a kernel "
        "onnxruntime fuses, which no row below shows; see the conversion's findings (a saturated int32 bias "
        "wraps around in a fused QGemm) and keep that node in float (int8.onnx_float_nodes)"
    ]


# --- accumulating errors --------------------------------------------------------------------------------------
class _Acc:
    """Running sums for relative error and mean cosine of one tensor over samples."""

    def __init__(self) -> None:
        self.err2 = self.ref2 = self.cos = 0.0
        self.n = 0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        r, g = ref.astype(np.float64).ravel(), got.astype(np.float64).ravel()
        if r.shape != g.shape:
            raise ValueError(f"shapes differ: {ref.shape} vs {got.shape}")
        self.err2 += float(np.sum((r - g) ** 2))
        self.ref2 += float(np.sum(r * r))
        nr, ng = np.linalg.norm(r), np.linalg.norm(g)
        self.cos += 1.0 if nr == 0 and ng == 0 else float(r @ g / max(nr * ng, 1e-30))
        self.n += 1

    @property
    def rel(self) -> float:
        return float(np.sqrt(self.err2 / self.ref2)) if self.ref2 > 0 else float(np.sqrt(self.err2) > 0)

    @property
    def cosine(self) -> float:
        return self.cos / max(self.n, 1)


# --- NCNN -----------------------------------------------------------------------------------------------------
def ncnn_layers(
    fp32_files: Sequence[Path], int8_files: Sequence[Path], inputs: np.ndarray
) -> list[LayerError]:
    """Propagated and isolated errors of every ncnn layer (see the module docstring)."""
    from edgekit.convert.ncnn.param import int8_scale_term, read_param
    from edgekit.convert.ncnn.runtime import NcnnIO, NcnnModel, io_path_for

    f_param, f_bin = _ncnn_pair(fp32_files)
    q_param, q_bin = _ncnn_pair(int8_files)
    graph = read_param(q_param)
    qio = NcnnIO.read(io_path_for(q_param))
    int8_names = {ly.name for ly in graph.layers if int8_scale_term(ly)}  # the layer runs in int8
    layers = [ly for ly in graph.layers if ly.type not in ("Input", "Split") and ly.tops]
    blobs = list(dict.fromkeys(b for ly in layers for b in (*ly.bottoms, *ly.tops)))
    inputs_set = set(qio.inputs)
    prop = {b: _Acc() for b in blobs}
    own = {ly.name: _Acc() for ly in layers if ly.name in int8_names}
    source = _ncnn_sources(graph)
    scale = _requantized_scales(graph, qio, source)
    with NcnnModel(f_param, f_bin) as fm, NcnnModel(q_param, q_bin) as qm:
        for x in inputs:
            ref = dict(zip(blobs, fm.extract([x[None]], blobs)))
            got = dict(zip(blobs, qm.extract([x[None]], blobs)))
            for b in blobs:
                prop[b].add(ref[b], got[b] / scale.get(b, 1.0))
            for ly in layers:
                if ly.name in own:
                    own[ly.name].add(ref[ly.tops[0]], _ncnn_alone(qm, ly, ref) / scale.get(ly.tops[0], 1.0))
    out = []
    for ly in layers:
        top = ly.tops[0]
        ins = [prop[source(b)].rel for b in ly.bottoms if source(b) not in inputs_set and source(b) in prop]
        alone = own.get(ly.name)
        out.append(
            LayerError(
                ly.name,
                ly.type,
                top,
                ly.name in int8_names,
                prop[top].cosine,
                prop[top].rel,
                alone.rel if alone else max(0.0, prop[top].rel - max(ins, default=0.0)),
                alone.cosine if alone else None,
            )
        )
    return out


def _requantized_scales(graph: Any, qio: Any, source: Callable[[str], str]) -> dict[str, float]:
    """Blob -> scale for the outputs of requantize-fused layers (and the Splits of them): ncnn hands those out
    as int8 values (x scale), not dequantized floats; dividing by the layer's top scale compares like with like."""
    report = qio.int8 or {}
    fields = report.get("layer_fields") or []
    if "top_scale" not in fields:
        return {}
    at_name, at_scale = fields.index("name"), fields.index("top_scale")
    by_layer = {row[at_name]: float(row[at_scale]) for row in report.get("layers", []) if row[at_scale]}
    producer = {top: ly.name for ly in graph.layers for top in ly.tops}
    out = {}
    for blob in producer:
        layer = producer.get(source(blob))
        if layer in by_layer:
            out[blob] = by_layer[layer]
    return out


def _ncnn_pair(files: Sequence[Path]) -> tuple[Path, Path]:
    return next(f for f in files if f.suffix == ".param"), next(f for f in files if f.suffix == ".bin")


def _ncnn_alone(model: Any, layer: Any, ref: dict[str, np.ndarray]) -> np.ndarray:
    """One layer of the INT8 model on the fp32 model's input blobs: its own quantization error only."""
    from edgekit.convert.ncnn.runtime import input_mat

    ex = model.net.create_extractor()
    for b in layer.bottoms:
        ex.input(b, input_mat(ref[b]))
    ret, mat = ex.extract(layer.tops[0])
    if ret != 0:
        raise AnalysisError(f"ncnn could not compute layer {layer.name} alone (error {ret})")
    return np.array(mat, dtype=np.float32)


def _ncnn_sources(graph: Any) -> Callable[[str], str]:
    copied = {top: ly.bottoms[0] for ly in graph.layers if ly.type == "Split" for top in ly.tops}

    def source(blob: str) -> str:
        while blob in copied:
            blob = copied[blob]
        return blob

    return source


# --- ONNX Runtime (QDQ) ---------------------------------------------------------------------------------------
def onnx_layers(fp32_file: Path, int8_file: Path, inputs: np.ndarray) -> list[LayerError]:
    """Propagated errors of every node output of a QDQ model against the fp32 model, and the error each node
    adds (the difference method, as for TFLite). The quantizer keeps the float graph's tensor names: a node's
    output T is re-quantized as T -> QuantizeLinear -> DequantizeLinear, and the dequantized value is what the
    nodes after it read, so that is the value compared. A node computes in int8 when an input comes through a
    DequantizeLinear (onnxruntime then fuses it into an integer kernel). Both run with graph optimisations off,
    so every tensor keeps its name: the QDQ model's own arithmetic, not a fused kernel's."""
    import onnx

    qmodel = onnx.load(str(int8_file))
    dq_of = {n.input[0]: n.output[0] for n in qmodel.graph.node if n.op_type == "DequantizeLinear"}
    q_of = {n.input[0]: n.output[0] for n in qmodel.graph.node if n.op_type == "QuantizeLinear"}
    dequantized = {n.output[0] for n in qmodel.graph.node if n.op_type == "DequantizeLinear"}
    source = {dq_of[q_of[t]]: t for t in q_of if q_of[t] in dq_of}  # a dequantized copy -> the float tensor
    nodes = [
        n for n in qmodel.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear", "Constant")
    ]
    outputs = [n.output[0] for n in nodes if n.output and n.output[0]]
    fp32_names = _onnx_tensor_names(fp32_file)
    seen = {t: dq_of.get(q_of.get(t, ""), t) for t in outputs}  # what downstream reads of T
    # a graph output keeps its name on the dequantized copy: the node writes `logits_QuantizeLinear_Input`
    named = {t: t if t in fp32_names else seen[t] for t in outputs}
    compared = [t for t in outputs if named[t] in fp32_names]
    ref = _onnx_values(fp32_file, list(dict.fromkeys(named[t] for t in compared)), inputs)
    got = _onnx_values(int8_file, list(dict.fromkeys(seen[t] for t in compared)), inputs)
    prop: dict[str, _Acc] = {}
    for t in compared:
        acc = _Acc()
        for r, g in zip(ref[named[t]], got[seen[t]]):
            acc.add(r, g)
        prop[t] = acc
    out = []
    for node in nodes:
        t = node.output[0] if node.output else ""
        if t not in prop:
            continue
        ins = [prop[source.get(i, i)].rel for i in node.input if source.get(i, i) in prop]
        acc = prop[t]
        out.append(
            LayerError(
                node.name or t,
                node.op_type,
                named[t],
                any(i in dequantized for i in node.input),
                acc.cosine,
                acc.rel,
                max(0.0, acc.rel - max(ins, default=0.0)),
            )
        )
    return out


def _onnx_tensor_names(path: Path) -> set[str]:
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return {o for n in graph.node for o in n.output}


def _onnx_values(path: Path, names: list[str], inputs: np.ndarray) -> dict[str, list[np.ndarray]]:
    """The named tensors of an ONNX model per sample (made graph outputs; optimisations off so none is fused)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(path))
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in present)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    values: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for sample in inputs:
        results = session.run(names, {feed: sample[None].astype(np.float32)})
        for n, v in zip(names, results):
            values[n].append(np.asarray(v, dtype=np.float32))
    return values


# --- TFLite ---------------------------------------------------------------------------------------------------
def tflite_layers(fp32_file: Path, int8_file: Path, inputs: np.ndarray) -> list[LayerError]:
    """Propagated errors of every TFLite op output that both models have, and the error each op adds."""
    f_ops, f_vals = _tflite_tensors(fp32_file, inputs)
    q_ops, q_vals = _tflite_tensors(int8_file, inputs)
    f_by_key = {tensor_key(op["out"]): op for op in f_ops}
    # an INT8 model's last op writes an int8 tensor that a DEQUANTIZE turns into the named float output
    alias = {op["ins"][0]: op["out"] for op in q_ops if op["op"] == "DEQUANTIZE" and op["ins"]}
    prop: dict[str, _Acc] = {}
    pairs = []
    for op in q_ops:
        ref = f_by_key.get(tensor_key(alias.get(op["out"], op["out"])))
        if ref is None:
            continue
        acc = _Acc()
        for r, g in zip(f_vals[ref["out"]], q_vals[op["out"]]):
            if r.shape != g.shape:
                break
            acc.add(r, g)
        else:
            prop[op["out"]] = acc
            pairs.append(op)
    out = []
    for op in pairs:
        if op["op"] in (
            "QUANTIZE",
            "DEQUANTIZE",
        ):  # requantizations: carried through, not layers of their own
            continue
        acc = prop[op["out"]]
        ins = [prop[i].rel for i in op["ins"] if i in prop]
        name = alias.get(op["out"], op["out"])  # the float model's name: what selective quantization takes
        out.append(
            LayerError(
                name,
                op["op"],
                op["out"],
                op["int8"],
                acc.cosine,
                acc.rel,
                max(0.0, acc.rel - max(ins, default=0.0)),
            )
        )
    return out


def _tflite_tensors(
    path: Path, inputs: np.ndarray
) -> tuple[list[dict[str, Any]], dict[str, list[np.ndarray]]]:
    """Each op (type, input and output tensor names, int8 or not) and every op output, dequantized, per sample."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "preserve_all_tensors is for debugging": it is
        interp = Interpreter(
            model_path=str(path),
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    interp.allocate_tensors()
    details = {t["index"]: t for t in interp.get_tensor_details()}
    ops = []
    for op in interp._get_ops_details():
        if op["op_name"] == "DELEGATE" or not len(op["outputs"]):
            continue
        out = details[op["outputs"][0]]
        ops.append(
            {
                "op": op["op_name"],
                "out": out["name"],
                "index": out["index"],
                "ins": [details[i]["name"] for i in op["inputs"] if i >= 0 and i in details],
                "int8": out["dtype"] in (np.int8, np.uint8, np.int16),
            }
        )
    (inp,) = interp.get_input_details()
    values: dict[str, list[np.ndarray]] = {op["out"]: [] for op in ops}
    from edgekit.runtimes import _fit_layout, _quantize

    for sample in inputs:
        x = _fit_layout(sample[None].astype(np.float32), tuple(inp["shape"]))
        interp.set_tensor(inp["index"], _quantize(x, inp))
        interp.invoke()
        for op in ops:
            values[op["out"]].append(_dequantized(interp, details[op["index"]]))
    return ops, values


def _dequantized(interp: Any, detail: dict[str, Any]) -> np.ndarray:
    raw = interp.get_tensor(detail["index"])
    if raw.dtype in (np.float32, np.float16):
        return raw.astype(np.float32)
    q = detail.get("quantization_parameters") or {}
    scales, zeros = np.asarray(q.get("scales", [])), np.asarray(q.get("zero_points", []))
    if scales.size == 0:
        scale, zero = detail["quantization"]
        return (raw.astype(np.float32) - zero) * scale
    axis = q.get("quantized_dimension", 0)
    shape = [1] * raw.ndim
    if scales.size > 1:
        shape[axis] = scales.size
    return (raw.astype(np.float32) - zeros.reshape(shape)) * scales.reshape(shape).astype(np.float32)
