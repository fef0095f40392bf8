"""What INT8 was calibrated on, said and kept: the progress line names the count, the source and why that many; each
INT8 artifact's provenance (--json, artifact.json) records kind, count and digest; `kind: random` calibration data
(drawn as is, never through input.preprocess) is a warning, a finding and an analyze note, since its INT8 scales fit
no real input. int8.io: int8 with an INT8 format that has no int8 input and output is refused, as with ncnn-int8.
Real onnxruntime quantizer, real recipe loading, real cache."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from edgekit.convert import cache
from edgekit.convert.calibration import calibration_inputs, data_digest
from edgekit.convert.pipeline import CONSTANT_FINDING, RANDOM_FINDING, convert_recipe
from edgekit.errors import RecipeError
from edgekit.formats import Format
from edgekit.recipe import load_recipe


def _recipe(tmp_path: Path, calibration: dict[str, Any], **changes: Any) -> Path:
    """A Gemm + Relu model whose real inputs span about -2.1..2.6, as ImageNet's mean/std make them."""
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.normal(size=(8, 16)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(size=8).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1), helper.make_node("Relu", ["h"], ["y"])],
        "fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])],
        initializer=[weights, bias],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        tmp_path / "m.onnx",
    )
    np.save(tmp_path / "real.npy", rng.uniform(-2.1, 2.6, size=(12, 16)).astype(np.float32))
    np.save(tmp_path / "calib.npy", rng.uniform(-2.1, 2.6, size=(12, 16)).astype(np.float32))  # other samples
    raw: dict[str, Any] = {
        "name": "fc",
        "task": "generic",
        "model": {"kind": "onnx", "path": "m.onnx"},
        "input": {"name": "x", "shape": [1, 16]},
        "outputs": ["y"],
        "calibration": calibration,
        "evaluation": {"data": {"kind": "npy", "path": "real.npy"}, "gates": {"int8": {"min_cosine": 0.0}}},
        "formats": ["onnx-int8"],
        **changes,
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _convert(path: Path, fmts: tuple[Format, ...] = (Format.ONNX_INT8,)) -> tuple[list[Any], list[str]]:
    said: list[str] = []
    arts = convert_recipe(load_recipe(path), fmts, keep_going=True, progress=said.append)
    return arts, said


def test_random_calibration_is_warned_recorded_and_a_finding(tmp_path: Path) -> None:
    path = _recipe(tmp_path, {"data": {"kind": "random", "samples": 16}})
    for run in ("converted", "cached"):
        (art,), said = _convert(path)
        assert art.files and art.cached is (run == "cached"), art.error
        assert "calibration: 16 calibration inputs (random, uniform 0..1, seed 0; samples: 16)" in said, said
        (warning,) = [m for m in said if m.startswith("calibration: warning: ")]
        assert "calibration.data is random (uniform 0..1, not through input.preprocess" in warning
        assert "do not match real inputs" in warning and "-2.1" in warning  # the real inputs' span, named
        assert RANDOM_FINDING in art.provenance["findings"]
        record = art.provenance["calibration"]
        assert record["kind"] == "random" and record["count"] == 16
        assert record["sha256"] == data_digest(calibration_inputs(load_recipe(path)))
    stored = json.loads((cache.entry_dir(art.key) / cache.META).read_text())["provenance"]
    assert stored["calibration"]["count"] == 16 and RANDOM_FINDING in stored["findings"]


def test_real_calibration_source_count_and_why(tmp_path: Path) -> None:
    path = _recipe(tmp_path, {"data": {"kind": "npy", "path": "calib.npy"}})
    (art,), said = _convert(path)
    assert art.files, art.error
    assert f"calibration: 12 calibration inputs (npy {tmp_path / 'calib.npy'}; all the .npy holds)" in said, (
        said
    )
    assert not [m for m in said if "warning" in m]  # nor the overlap's: calib.npy is not the evaluation data
    assert not [t for t in art.provenance["findings"] if t.startswith(("calibrated on", "its INT8 gates"))]
    assert art.provenance["calibration"] == {
        "kind": "npy",
        "source": f"npy {tmp_path / 'calib.npy'}",
        "count": 12,
        "why": "all the .npy holds",
        "sha256": data_digest(calibration_inputs(load_recipe(path))),
    }
    (fp32,), _ = _convert(path, (Format.ONNX_FP32,))
    assert "calibration" not in fp32.provenance  # a float artifact was calibrated on nothing


def test_evaluation_inputs_that_are_calibration_inputs_are_warned_and_a_finding(tmp_path: Path) -> None:
    """Calibration and evaluation data naming the same .npy passed without a word: the INT8 gate was judged on the
    samples its ranges were set from. Counted input by input (4 of 12 shared here: 'partly'); a cached artifact
    loses the finding once the evaluation data no longer overlaps (the cache key does not hold that data)."""
    path = _recipe(tmp_path, {"data": {"kind": "npy", "path": "mine.npy"}})
    calib = (
        np.random.default_rng(7).uniform(-2.1, 2.6, size=(12, 16)).astype(np.float32)
    )  # its own cache entry
    np.save(tmp_path / "mine.npy", calib)
    np.save(tmp_path / "real.npy", np.concatenate([calib[:4], np.load(tmp_path / "real.npy")[4:]]))
    for run in ("converted", "cached"):
        (art,), said = _convert(path)
        assert art.files and art.cached is (run == "cached"), art.error
        (warning,) = [m for m in said if m.startswith("calibration: warning: ")]
        assert warning == (
            "calibration: warning: 4 of 12 evaluation inputs are also calibration inputs: the INT8 gates are "
            "judged partly on the data the ranges were set from, so they overstate int8 accuracy on unseen inputs; "
            "give calibration.data and evaluation.data different samples (another folder, file or seed)"
        ), warning
        (finding,) = [t for t in art.provenance["findings"] if "calibration inputs" in t]
        assert finding.startswith(
            "its INT8 gates are judged on calibration inputs (4 of 12 evaluation inputs"
        )
        assert "overlap_finding" not in art.provenance["calibration"]
    stored = json.loads((cache.entry_dir(art.key) / cache.META).read_text())["provenance"]
    assert finding in stored["findings"]
    np.save(tmp_path / "real.npy", np.load(tmp_path / "real.npy")[4:])  # no overlap now, the same cache entry
    (art,), said = _convert(path)
    assert art.cached and not [m for m in said if "warning" in m], said
    assert not [t for t in art.provenance["findings"] if "calibration inputs" in t], art.provenance[
        "findings"
    ]


def test_leak_recipe_tiny_builder_with_one_seed_for_both_is_warned(tmp_path: Path) -> None:
    """r16's leak.yaml: recipes/tiny.yaml with evaluation samples: 16, seed: 0, the calibration's builder and seed.
    onnx-int8 (ncnn-int8 in the report) passed its gate with no word."""
    raw = yaml.safe_load((Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml").read_text())
    raw["evaluation"]["data"] = {**raw["calibration"]["data"]}
    assert raw["evaluation"]["data"]["seed"] == 0 and raw["evaluation"]["data"]["samples"] == 16
    raw["formats"] = ["onnx-int8"]
    path = tmp_path / "leak.yaml"
    path.write_text(yaml.safe_dump(raw))
    (art,), said = _convert(path)
    assert art.files, art.error
    (warning,) = [m for m in said if m.startswith("calibration: warning: ")]
    assert warning.startswith(
        "calibration: warning: 16 of 16 evaluation inputs are also calibration inputs: the INT8 gates are judged "
        "on the data the ranges were set from"
    ), warning
    findings = art.provenance["findings"]
    assert any(t.startswith("its INT8 gates are judged on calibration inputs (16 of 16") for t in findings)
    raw["evaluation"]["data"]["seed"] = 1  # recipes/tiny.yaml's own evaluation seed differs: no warning
    path.write_text(yaml.safe_dump(raw))
    (art,), said = _convert(path)
    assert art.files and not [m for m in said if "warning" in m], said


@pytest.mark.parametrize(
    "data,said",
    [
        (np.zeros((12, 16), np.float32), "every value of every input is 0"),
        (
            np.repeat(np.arange(12, dtype=np.float32)[:, None], 16, axis=1),
            "each input is one value throughout",
        ),
        (np.tile(np.linspace(-2, 2, 16, dtype=np.float32), (12, 1)), "all 12 inputs are the same input"),
    ],
    ids=["all-zero", "flat-inputs", "one-input-repeated"],
)
def test_calibration_data_without_variation_is_warned_and_a_finding(
    tmp_path: Path, data: np.ndarray, said: str
) -> None:
    """An all-zero calibration .npy converted INT8 with no word (ncnn-int8 of tiny passed its gate), where random
    data is warned about: its scales fit no real input either."""
    path = _recipe(tmp_path, {"data": {"kind": "npy", "path": "flat.npy"}})
    np.save(tmp_path / "flat.npy", data)
    for run in ("converted", "cached"):
        (art,), lines = _convert(path)
        assert art.files and art.cached is (run == "cached"), art.error
        (warning,) = [m for m in lines if m.startswith("calibration: warning: ")]
        assert f"calibration.data (npy {tmp_path / 'flat.npy'}) has no variation: {said}" in warning, warning
        assert "fit no real input" in warning and "give real samples" in warning
        assert (
            CONSTANT_FINDING in art.provenance["findings"]
            and RANDOM_FINDING not in art.provenance["findings"]
        )
        assert "finding" not in art.provenance["calibration"]


def test_analyze_says_the_calibration_data_is_random(tmp_path: Path) -> None:
    from edgekit.analysis.analyze import analyze

    path = _recipe(tmp_path, {"data": {"kind": "random", "samples": 16}})
    result = analyze(load_recipe(path), Format.ONNX_INT8)
    (note,) = [n for n in result.notes if "calibration.data is random" in n]
    assert "calibrate on real samples" in note and "more random samples do not help" in note


@pytest.mark.parametrize("fmt", [Format.ONNX_INT8, Format.MNN_INT8])
def test_int8_io_is_refused_for_a_format_without_int8_io(tmp_path: Path, fmt: Format) -> None:
    """ncnn-int8 with int8.io: int8 is refused; onnx-int8 and mnn-int8 were converted to float input and output
    without a word."""
    path = _recipe(
        tmp_path, {"data": {"kind": "npy", "path": "real.npy"}}, int8={"io": "int8"}, formats=[fmt.value]
    )
    with pytest.raises(
        RecipeError,
        match=f"int8.io: int8 is implemented for tflite-int8, tflite-onnx2tf-int8 only: {fmt.value}",
    ):
        convert_recipe(load_recipe(path), keep_going=True)
