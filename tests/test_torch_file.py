"""A PyTorch model given as a saved file (`model: {kind: torch, path: ...}`), as users who deploy PyTorch hold one:
a TorchScript archive (torch.jit.save) and an ExportedProgram (torch.export.save, .pt2) convert through the real
CLI to ONNX Runtime, ncnn and TFLite and reproduce the builder route's model; a torch.save file, a junk file and a
recipe that mixes the two routes are refused when the recipe is read (exit 2), saying what the file is."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.errors import RecipeError

pytest.importorskip("torch")

TINY = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
BUILDER = "  kind: torch                      # or: {kind: onnx, path: my_model.onnx}\n  builder: edgekit.zoo.tiny:build\n  args: {num_classes: 10, width: 8}\n"


def _recipe(folder: Path, name: str, model: str) -> Path:
    """recipes/tiny.yaml with its model section replaced (its data come from builders: no paths to move)."""
    text = TINY.read_text()
    assert BUILDER in text
    path = folder / f"{name}.yaml"
    path.write_text(text.replace(BUILDER, model).replace("name: tiny\n", f"name: {name}\n"))
    return path


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny recipe's own module (the builder's, same seed) saved the three ways torch saves a model."""
    import torch

    from edgekit.zoo.tiny import build

    folder = tmp_path_factory.mktemp("torch-files")
    torch.manual_seed(0)  # as the builder route builds it (torch_model.build_torch_model)
    model = build(num_classes=10, width=8).eval()
    example = torch.rand(1, 3, 32, 32)
    torch.jit.save(torch.jit.trace(model, example), str(folder / "tiny.pt"))
    torch.export.save(torch.export.export(model, (example,)), str(folder / "tiny.pt2"))
    torch.save(model.state_dict(), folder / "state.pth")
    (folder / "junk.pt").write_bytes(bytes(range(256)) * 4)
    return {
        "torchscript": folder / "tiny.pt",
        "pt2": folder / "tiny.pt2",
        "state": folder / "state.pth",
        "junk": folder / "junk.pt",
        "folder": folder,
    }


def _convert(recipe: Path, home: Path, *formats: str) -> subprocess.CompletedProcess[str]:
    args = [a for f in formats for a in ("-f", f)]
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe), *args],
        env={**os.environ, "EDGEKIT_HOME": str(home), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.integration
@pytest.mark.parametrize(
    ("kind", "said"),
    [
        (
            "torchscript",
            "exported to ONNX by torch.onnx.export (opset 17), from the archive's TorchScript graph;",
        ),
        ("pt2", "exported to ONNX by torch.export's exporter (opset 18);"),
    ],
)
def test_a_saved_torch_model_converts_and_matches_its_builder(
    saved: dict[str, Path], tmp_path: Path, kind: str, said: str
) -> None:
    import onnxruntime as ort

    from edgekit.convert.onnx import prepare_onnx
    from edgekit.recipe import load_recipe

    path = saved[kind]
    recipe = _recipe(path.parent, f"tiny-{kind}", f"  kind: torch\n  path: {path.name}\n")
    done = _convert(recipe, tmp_path / "home", "onnx-fp32", "ncnn-fp32", "tflite-fp32")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert said in out and re.search(r"matches the model within \S+ on 8 inputs", out), out[-3000:]
    rows = {
        line.split()[0]: line
        for line in done.stdout.splitlines()
        if line.strip().startswith(("onnx-", "ncnn-", "tflite-"))
    }
    assert all("pass (8)" in rows[f] for f in ("onnx-fp32", "ncnn-fp32", "tflite-fp32")), done.stdout
    assert "Warning" not in done.stderr, done.stderr  # torch's own deprecations are not the user's to read
    # the file's ONNX computes what the builder's does (the same module, saved)
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    outs = []
    for r in (recipe, TINY):
        onnx = prepare_onnx(load_recipe(r)).path
        sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
        outs.append(sess.run(None, {sess.get_inputs()[0].name: x})[0])
    np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5)


def test_a_torch_file_that_is_no_saved_model_is_refused_when_the_recipe_is_read(
    saved: dict[str, Path],
) -> None:
    from edgekit.recipe import load_recipe

    folder = saved["folder"]
    cases = [
        ("state", "  kind: torch\n  path: state.pth\n", "is a torch.save file"),
        ("junk", "  kind: torch\n  path: junk.pt\n", "is not a PyTorch model archive"),
        ("missing", "  kind: torch\n  path: gone.pt\n", "file not found"),
        ("both", "  kind: torch\n  path: tiny.pt\n  builder: edgekit.zoo.tiny:build\n", "not both"),
        ("neither", "  kind: torch\n", "give `builder:`"),
        ("weights", "  kind: torch\n  path: tiny.pt\n  weights: state.pth\n", "go with a `builder:`"),
    ]
    for name, model, said in cases:
        with pytest.raises(RecipeError, match=re.escape(said)) as info:
            load_recipe(_recipe(folder, f"bad-{name}", model))
        if name == "state":  # what to do instead: the state dict beside its builder, or save the model whole
            assert "torch.jit.save" in (info.value.hint or "") and "weights:" in str(info.value)
    done = _convert(_recipe(folder, "bad-cli", "  kind: torch\n  path: state.pth\n"), folder / "home")
    assert done.returncode == 2 and "RecipeError" in done.stderr and "state.pth" in done.stderr, done.stderr


def test_the_file_is_the_cache_key(saved: dict[str, Path], tmp_path: Path) -> None:
    """Another file under the same name is another model: its ONNX is not taken from the cache."""
    import shutil

    from edgekit.convert.torch_export import torch_key
    from edgekit.recipe import load_recipe

    shutil.copy(saved["torchscript"], tmp_path / "model.pt")
    recipe = _recipe(tmp_path, "keyed", "  kind: torch\n  path: model.pt\n")
    key = torch_key(first := load_recipe(recipe), first.model)  # type: ignore[arg-type]
    again = load_recipe(recipe)
    assert torch_key(again, again.model) == key  # type: ignore[arg-type]
    shutil.copy(saved["pt2"], tmp_path / "model.pt")
    second = load_recipe(recipe)
    assert torch_key(second, second.model) != key  # type: ignore[arg-type]


def test_executorch_says_it_cannot_take_torchscript(saved: dict[str, Path], tmp_path: Path) -> None:
    """ExecuTorch lowers a torch.export program: a TorchScript file is named as the reason (before executorch's own
    absence on this host is), with the .pt2 route in the hint."""
    from edgekit.convert.executorch import ExecuTorchConverter
    from edgekit.errors import ConversionError
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe

    recipe = load_recipe(_recipe(saved["folder"], "et", "  kind: torch\n  path: tiny.pt\n"))
    with pytest.raises(ConversionError, match=r"tiny\.pt is TorchScript") as info:
        ExecuTorchConverter().convert(tmp_path / "unused.onnx", recipe, Format.EXECUTORCH_FP32, tmp_path)
    assert ".pt2" in (info.value.hint or "")


def test_a_pt2_torch_cannot_read_is_named_with_torchs_own_reason(saved: dict[str, Path]) -> None:
    """torch.export.load logs the archive's error (a traceback on stderr) and raises "check the warnings above":
    the user got both. The reason is the error's first line now, and torch's log stays out of the output."""
    import zipfile

    folder = saved["folder"]
    with zipfile.ZipFile(folder / "fake.pt2", "w") as z:  # named like a .pt2, holding none
        z.writestr("m/archive_format", "pt2")
        z.writestr("m/models/model.json", "{not json")
    done = _convert(_recipe(folder, "fake", "  kind: torch\n  path: fake.pt2\n"), folder / "home")
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert "torch.export.load could not read fake.pt2: RuntimeError:" in said, said
    assert "warnings above" not in said and "Traceback" not in said and "torch/export/" not in said, said


def test_a_pt2_saved_with_dynamic_dims_gets_the_recipes_input_shape(saved: dict[str, Path]) -> None:
    """A .pt2 saved with torch.export Dims on batch, H and W was exported with symbolic input dims, simplified
    without a shape, and TFLite fixed them wrong ("input of shape (1, 3, 32, 32) does not fit the model's input
    (1, 1, 1, 3)"). The recipe's shape is pinned in the graph now, as a user's ONNX gets it."""
    import onnx
    import onnxruntime as ort
    import torch
    from torch.export import Dim

    from edgekit.convert.onnx import prepare_onnx
    from edgekit.recipe import load_recipe
    from edgekit.zoo.tiny import build

    folder = saved["folder"]
    torch.manual_seed(0)
    model = build(num_classes=10, width=8).eval()
    example = torch.rand(2, 3, 32, 32)  # a batch of 2: a batch of 1 is specialised to 1
    dims = {"x": {0: Dim("batch", max=64), 2: Dim("h", min=16, max=128), 3: Dim("w", min=16, max=128)}}
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes=dims), str(folder / "dyn.pt2"))
    prepared = prepare_onnx(load_recipe(_recipe(folder, "dyn", "  kind: torch\n  path: dyn.pt2\n")))
    graph = onnx.load(str(prepared.path)).graph
    shape = [
        d.dim_value if d.HasField("dim_value") else d.dim_param
        for d in graph.input[0].type.tensor_type.shape.dim
    ]
    assert shape == [1, 3, 32, 32], shape
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
    sess = ort.InferenceSession(str(prepared.path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sess.run(None, {"input": x})[0], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["torchscript", "pt2"])
def test_a_saved_model_taking_two_inputs_is_refused_by_name(saved: dict[str, Path], kind: str) -> None:
    """A two-input file was run on the recipe's one input and blamed on `input.shape` ("forward() is missing value
    for argument 'z'"; a .pt2's a TreeSpec dump): the inputs are counted first now and named, as an ONNX file's."""
    import torch
    from torch import nn

    from edgekit.convert.onnx import prepare_onnx
    from edgekit.recipe import load_recipe

    class TwoIn(nn.Module):
        def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            return x + z

    folder = saved["folder"]
    x = torch.rand(1, 3, 32, 32)
    name = "twoin.pt" if kind == "torchscript" else "twoin.pt2"
    if kind == "torchscript":
        torch.jit.save(torch.jit.trace(TwoIn(), (x, x)), str(folder / name))
    else:
        torch.export.save(torch.export.export(TwoIn(), (x, x)), str(folder / name))
    recipe = load_recipe(_recipe(folder, f"twoin-{kind}", f"  kind: torch\n  path: {name}\n"))
    with pytest.raises(RecipeError) as info:
        prepare_onnx(recipe)
    said = str(info.value)
    assert "the model has 2 inputs (x, z); edgekit handles single-input models" in said, said
    assert "input.shape" not in said, said


def test_a_builders_module_taking_two_inputs_is_refused_by_name(
    saved: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same for a builder's module (its forward() read before anything runs)."""
    from edgekit.convert.onnx import prepare_onnx
    from edgekit.recipe import load_recipe

    folder = saved["folder"]
    (folder / "twoin_builder.py").write_text(
        "from torch import nn\n\n\nclass TwoIn(nn.Module):\n    def forward(self, x, z):\n        return x + z\n\n\n"
        "def two():\n    return TwoIn()\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    recipe = load_recipe(_recipe(folder, "twoin-builder", '  kind: torch\n  builder: "twoin_builder:two"\n'))
    with pytest.raises(RecipeError, match=r"the model has 2 inputs \(x, z\)") as info:
        prepare_onnx(recipe)
    assert "input.shape" not in str(info.value)


def test_a_builders_module_with_a_defaulted_argument_exports_with_one_input(
    saved: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`forward(self, x, scale=1.0)`: the legacy exporter made the default a graph input of its own
    ('onnx::Cast_1') that nothing fed, an internal error. The ONNX now takes the input alone and matches."""
    import onnx

    from edgekit.convert.onnx import prepare_onnx
    from edgekit.recipe import load_recipe

    folder = saved["folder"]
    (folder / "scaled_builder.py").write_text(
        "from torch import nn\n\n\nclass Scaled(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.fc = nn.Linear(3 * 32 * 32, 10)\n\n    def forward(self, x, scale=2.0):\n"
        "        return self.fc(x.flatten(1)) * scale\n\n\ndef build():\n    return Scaled()\n"
    )
    monkeypatch.syspath_prepend(str(folder))
    recipe = load_recipe(_recipe(folder, "scaled", '  kind: torch\n  builder: "scaled_builder:build"\n'))
    prepared = prepare_onnx(recipe)  # the export check compares it with the module on the evaluation inputs
    graph = onnx.load(str(prepared.path)).graph
    weights = {init.name for init in graph.initializer}
    assert [i.name for i in graph.input if i.name not in weights] == ["input"]
