"""A user's ONNX whose weights live in an external data file (`model.onnx` + `model.onnx.data`, as exporters
write models over 2 GB, or with `save_as_external_data`): converted and judged with its weights, cached by the
weights' bytes too, and a data location outside the model's folder refused as bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from onnx_graphs import shuffle_classifier
from test_any_onnx import onnx_recipe

from edgekit.errors import InputDataError
from edgekit.recipe import load_recipe


def external(tmp_path: Path, scale: float = 1.0) -> Path:
    """The shuffle classifier, saved again with every initializer in model.onnx.data (its first convolution's
    weights times `scale`)."""
    inline = tmp_path / "inline.onnx"
    if not inline.is_file():
        shuffle_classifier(inline)
    model = onnx.load(str(inline))
    (w,) = [t for t in model.graph.initializer if t.name == "w"]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * np.float32(scale), "w"))
    path = tmp_path / "model.onnx"
    (tmp_path / "model.onnx.data").unlink(missing_ok=True)  # onnx.save appends to an existing data file
    onnx.save(model, str(path), save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    assert (tmp_path / "model.onnx.data").stat().st_size > 0
    return path


def relocated(path: Path, location: str) -> Path:
    """A copy of the external-data model at `path` (hostile.onnx beside it) whose tensors name `location`."""
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    hostile = path.with_name("hostile.onnx")
    onnx.save(model, str(hostile))
    return hostile


def edgekit_run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=300
    )


def test_external_weights_are_converted_with_the_model_and_key_its_cache(tmp_path: Path) -> None:
    from edgekit.convert.onnx import prepare_onnx
    from edgekit.runtimes.host import run_onnx

    path = external(tmp_path)
    recipe = load_recipe(onnx_recipe(tmp_path, path, ["onnx-fp32"]))
    first = prepare_onnx(recipe)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    want = run_onnx(tmp_path / "inline.onnx", x)[0][1]
    for model_file in (first.path, first.reference_path):  # both self-contained in the cache
        np.testing.assert_allclose(run_onnx(model_file, x)[0][1], want, rtol=1e-4, atol=1e-5)
    assert prepare_onnx(recipe).cached
    before = path.read_bytes()
    external(tmp_path, scale=2.0)
    assert path.read_bytes() == before  # the same .onnx file, other weights in model.onnx.data
    second = prepare_onnx(recipe)
    assert not second.cached and second.path != first.path
    assert not np.allclose(run_onnx(second.reference_path, x)[0][1], want)


def test_external_data_outside_the_models_folder_or_missing_is_bad_input(tmp_path: Path) -> None:
    from edgekit.convert.onnx import prepare_onnx

    path = external(tmp_path)
    hostile = relocated(path, "../" + tmp_path.name + "/model.onnx.data")  # leaves the folder, comes back
    with pytest.raises(InputDataError, match="outside the model's folder"):
        prepare_onnx(load_recipe(onnx_recipe(tmp_path, hostile, ["onnx-fp32"])))
    (tmp_path / "model.onnx.data").unlink()
    with pytest.raises(InputDataError, match=r"model\.onnx\.data.*missing"):
        prepare_onnx(load_recipe(onnx_recipe(tmp_path, path, ["onnx-fp32"])))
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(tmp_path / "hostile.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "error (InputDataError)" in out.stderr, out.stderr
    assert "internal error" not in out.stderr


def test_bench_refuses_an_onnx_whose_weights_are_beside_it(tmp_path: Path) -> None:
    """bench pushes one file: an ONNX with external weights would fail on the device without them."""
    path = external(tmp_path)
    out = edgekit_run("bench", str(path), "--target", "host")
    assert out.returncode == 2 and "error (InputDataError)" in out.stderr, out.stderr
    assert "model.onnx.data" in out.stderr and "onnx.save" in out.stderr, out.stderr


def test_roofline_reads_external_weights_only_from_the_models_folder(tmp_path: Path) -> None:
    """The estimate's graph reader takes an ONNX with external weights as convert does: its weights counted, a
    data location leaving the model's folder refused (it read whatever file the model named)."""
    from edgekit.estimate.graph import analyze

    path = external(tmp_path)
    assert analyze(path).params == analyze(tmp_path / "inline.onnx").params > 0
    hostile = relocated(path, str((tmp_path / "model.onnx.data").resolve()))  # an absolute path: any file
    out = edgekit_run("roofline", str(hostile), "--board", "pi4")
    assert out.returncode == 2 and "outside the model's folder" in out.stderr, out.stderr
