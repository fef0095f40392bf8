"""What a new user's probe gave edgekit (a 4-channel input fed RGB images, NHWC said of a PyTorch input, a format
name in capitals, more samples than the data holds, ...) ends in a named error or one clear line, never
"internal error"; tiny models, real recipe loading, the real `edgekit` command where the bug was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from procs import named, run

from edgekit.convert.calibration import calibration_inputs, evaluation_inputs
from edgekit.errors import RecipeError
from edgekit.recipe import load_recipe

IMAGES = {"kind": "builder", "builder": "edgekit.zoo.tiny:images", "args": {"size": 8}, "samples": 2}


def recipe(tmp_path: Path, **changes: Any) -> Path:
    """A tiny classifier recipe (edgekit.zoo.tiny, 3x8x8) with CHANGES, written to tmp_path/r.yaml."""
    body: dict[str, Any] = {
        "name": "t",
        "task": "classify",
        "model": {"kind": "torch", "builder": "edgekit.zoo.tiny:build"},
        "input": {"name": "input", "shape": [1, 3, 8, 8]},
        "evaluation": {"data": IMAGES},
        "formats": ["onnx-fp32"],
    }
    body.update(changes)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_rgb_images_for_a_four_channel_input_name_the_data_and_the_shape(tmp_path: Path) -> None:
    """input.shape [1, 4, 64, 64] with a builder of RGB images: `cannot reshape array of size 12288 into shape
    (64,64,4)`, an internal error from the resize."""
    path = recipe(
        tmp_path,
        input={"name": "input", "shape": [1, 4, 8, 8]},
        formats=["onnx-int8"],
        calibration={"data": IMAGES},
    )
    with pytest.raises(RecipeError) as err:
        calibration_inputs(load_recipe(path))
    said, hint = str(err.value), err.value.hint or ""
    assert "field `calibration.data`: the data yields 3-channel images" in said, said
    assert "input.shape [1, 4, 8, 8] in layout NCHW (channels at shape[1]) takes 4 channels" in said, said
    assert "set input.shape to [1, 3, 8, 8]" in hint and "float model inputs of shape (N, 4, 8, 8)" in hint, (
        hint
    )


def test_nhwc_said_of_an_nchw_shape_names_the_layout_to_change(tmp_path: Path) -> None:
    """`input.layout: NHWC` with shape [1, 3, 64, 64] on a PyTorch model: `images 64x64 resized to 64x3`, then an
    internal error; now a RecipeError naming evaluation.data and saying to set input.layout: NCHW (exit 2)."""
    path = recipe(tmp_path, input={"name": "input", "shape": [1, 3, 8, 8], "layout": "NHWC"})
    with pytest.raises(RecipeError) as err:
        evaluation_inputs(load_recipe(path))
    assert "field `evaluation.data`: the data yields 3-channel images" in str(err.value), str(err.value)
    assert "input.shape [1, 3, 8, 8] reads as NCHW: set input.layout: NCHW" in (err.value.hint or "")
    said = named(run("convert", str(path), cwd=tmp_path))
    assert "set input.layout: NCHW" in said and "resized to" not in said, said


def test_a_format_name_is_taken_in_any_case_and_a_wrong_one_names_the_nearest(tmp_path: Path) -> None:
    """`-f ONNX-FP32` was click's `Invalid value` listing all 21 names."""
    path = recipe(tmp_path)
    out = run("convert", str(path), "-f", "ONNX-FP32", cwd=tmp_path)
    assert out.returncode == 0 and "onnx-fp32" in out.stdout, (out.stdout[-800:], out.stderr[-2000:])
    said = named(run("convert", str(path), "-f", "onnx-fp33", cwd=tmp_path))
    assert "'onnx-fp33' is no format; did you mean onnx-fp32" in said, said
    assert "tflite-onnx2tf-dynamic" not in said and "`edgekit formats` lists all 21" in said, said


def test_executorch_of_an_onnx_recipe_is_refused_before_any_work(tmp_path: Path) -> None:
    """`-f executorch-fp32` on a `model: {kind: onnx}` recipe said only 'needs a PyTorch model', where ExecuTorch
    does not install at all (`edgekit formats`: convert no): a torch recipe would have failed too. And it said it
    after converting every other format (exit 1), though the recipe says it when read: refused then, exit 2, for
    `-f` and for the recipe's own `formats` alike."""
    import importlib.util

    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
    )
    onnx.save(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
        tmp_path / "m.onnx",
    )
    path = recipe(tmp_path, task="generic", model={"kind": "onnx", "path": "m.onnx"})
    out = run("convert", str(path), "-f", "onnx-fp32", "-f", "executorch-fp32", cwd=tmp_path)
    said = named(out)
    assert "RecipeError" in said and "preparing ONNX" not in out.stdout + said, (out.stdout, said)
    assert (
        "executorch-fp32: ExecuTorch needs a PyTorch model (model.kind: torch), not this recipe's onnx model"
        in said
    ), said
    assert said.count(str(path)) == 1, said  # the place once
    missing = importlib.util.find_spec("executorch") is None
    if missing:
        assert "; and on this host executorch is not installed" in said, said
        assert "hint: leave executorch-* out of the formats" in said, said
    listed = recipe(
        tmp_path,
        task="generic",
        model={"kind": "onnx", "path": "m.onnx"},
        formats=["onnx-fp32", "executorch-fp32", "executorch-int8"],
        calibration={"data": {"kind": "random", "samples": 2}},
    )
    with pytest.raises(
        RecipeError, match="executorch-fp32, executorch-int8: ExecuTorch needs a PyTorch model"
    ):
        load_recipe(listed)
    said = named(run("convert", str(listed), cwd=tmp_path))
    assert "ExecuTorch needs a PyTorch model" in said and "leave executorch-* out" in said, said
