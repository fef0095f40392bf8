"""`calibration.method: kl` for onnx-int8: onnxruntime's quantize_static builds its Entropy calibrator with 128 bins
searched for 128 quantized bins, one candidate, the whole range: kl gave byte for byte absmax's model. Real
onnxruntime quantizer, real recipe loading and fidelity gates."""

from __future__ import annotations

import hashlib
import io
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization.calibrate import HistogramCollector

from edgekit.convert.onnxrt import KL_BINS, KL_QUANTIZED_BINS, entropy_threshold
from edgekit.convert.pipeline import convert_recipe
from edgekit.formats import Format
from edgekit.recipe import load_recipe


def _model_and_data(folder: Path) -> np.ndarray:
    """x (1, 64) -> Gemm -> y (1, 16); calibration inputs of N(0, 1) values with two outliers (40, -35), the
    evaluation inputs without: the activation range KL keeps is narrower than min/max."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(16, 64)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(size=16).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)],
        "fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.save(model, folder / "m.onnx")
    calib = rng.normal(size=(64, 64)).astype(np.float32)
    calib[3, 5], calib[40, 7] = 40.0, -35.0
    np.save(folder / "calib.npy", calib)
    np.save(folder / "eval.npy", rng.normal(size=(16, 64)).astype(np.float32))
    return calib


def _recipe(folder: Path, method: str) -> Path:
    path = folder / f"{method}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "fc",
                "task": "generic",
                "model": {"kind": "onnx", "path": "m.onnx"},
                "input": {"name": "x", "shape": [1, 64]},
                "outputs": ["y"],
                "calibration": {"data": {"kind": "npy", "path": "calib.npy"}, "method": method},
                "evaluation": {
                    "data": {"kind": "npy", "path": "eval.npy"},
                    "gates": {"int8": {"min_cosine": 0.99}},
                },
                "formats": ["onnx-int8"],
                "int8": {"granularity": "per-tensor"},
            }
        )
    )
    return path


def _input_range(path: Path) -> tuple[float, float]:
    """The float range the uint8 QuantizeLinear of the model's input x covers: (0 - zp) * s .. (255 - zp) * s."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    (node,) = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "x"]
    scale, zero = float(inits[node.input[1]]), int(inits[node.input[2]])
    return -zero * scale, (255 - zero) * scale


def test_kl_and_absmax_give_different_int8_models_both_within_the_gates(tmp_path: Path) -> None:
    calib = _model_and_data(tmp_path)
    arts = {}
    for method in ("kl", "absmax"):
        (art,) = convert_recipe(load_recipe(_recipe(tmp_path, method)), (Format.ONNX_INT8,), keep_going=True)
        assert art.files and art.status != "failed", art.error
        assert art.fidelity["gates"]["passed"] is True and art.fidelity["cosine"] >= 0.99, art.fidelity
        arts[method] = art
    digests = {m: hashlib.sha256(a.main_file.read_bytes()).hexdigest() for m, a in arts.items()}
    assert digests["kl"] != digests["absmax"], "kl made the same model as absmax"
    kl_low, kl_high = _input_range(arts["kl"].main_file)
    abs_low, abs_high = _input_range(arts["absmax"].main_file)
    # absmax (MinMax) covers the calibration data's min and max; kl leaves the two outliers out
    assert abs_low <= calib.min() + 0.5 and abs_high >= calib.max() - 0.5, (abs_low, abs_high)
    assert kl_high - kl_low < 0.5 * (abs_high - abs_low), ((kl_low, kl_high), (abs_low, abs_high))
    assert kl_high > 2.0 and kl_low < -2.0, (kl_low, kl_high)  # the bulk of N(0, 1) stays inside
    # on inputs without outliers the finer steps of kl's narrower range are closer to the float model
    assert arts["kl"].fidelity["cosine"] > arts["absmax"].fidelity["cosine"], {
        m: a.fidelity for m, a in arts.items()
    }


def test_the_numpy_search_finds_onnxruntimes_own_thresholds() -> None:
    """entropy_threshold is onnxruntime's get_entropy_threshold made numpy: the same range on the same
    histograms (grown by merging as onnxruntime's collector grows them, skewed, with outliers)."""
    rng = np.random.default_rng(1)
    for bins, values in [
        (KL_BINS, np.concatenate([rng.normal(size=4000), [40.0, -35.0]])),
        (512, np.abs(rng.standard_t(2, size=4000))),
        (300, rng.exponential(size=4000) - 0.2),
    ]:
        collector = HistogramCollector("entropy", False, bins, KL_QUANTIZED_BINS, None, None)
        with redirect_stdout(io.StringIO()):
            collector.collect({"t": values.astype(np.float32)})
            collector.collect({"t": (values * 1.7).astype(np.float32)})
        histogram = collector.histogram_dict["t"]
        theirs = collector.get_entropy_threshold(histogram, KL_QUANTIZED_BINS)
        ours = entropy_threshold(histogram, KL_QUANTIZED_BINS)
        assert (float(ours[0]), float(ours[1])) == (float(theirs[0]), float(theirs[1])), (bins, ours, theirs)
        assert float(ours[1]) - float(ours[0]) <= float(values.max() * 1.7 - values.min() * 1.7) + 1e-3


def test_a_minmax_calibrator_made_while_a_kl_one_runs_is_onnxruntimes_own(tmp_path: Path) -> None:
    """While a kl onnx-int8 converts, onnxruntime's create_calibrator is swapped for one with 2048 bins and the
    numpy search; a MinMax calibrator another thread made meanwhile got it too and failed (a MinMax calibrator
    has no num_bins). Only an Entropy calibrator is changed."""
    import importlib

    from onnxruntime.quantization.calibrate import CalibrationMethod, MinMaxCalibrater

    from edgekit.convert.onnxrt import _kl_bins

    _model_and_data(tmp_path)
    ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")
    with _kl_bins(True):
        minmax = ort_quantize.create_calibrator(
            str(tmp_path / "m.onnx"),
            augmented_model_path=str(tmp_path / "aug.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
        )
        entropy = ort_quantize.create_calibrator(
            str(tmp_path / "m.onnx"),
            augmented_model_path=str(tmp_path / "aug2.onnx"),
            calibrate_method=CalibrationMethod.Entropy,
        )
    assert isinstance(minmax, MinMaxCalibrater)
    assert entropy.num_bins == KL_BINS and entropy.num_quantized_bins == KL_QUANTIZED_BINS
