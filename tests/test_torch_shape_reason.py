"""A TorchScript file that cannot take the recipe's input shape (convert/torch_export.py), through the real CLI:
the error says torch's own reason (the last line of its message), not the TorchScript traceback's first lines."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")


def _convert(recipe: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)],
        cwd=recipe.parent,
        env={**os.environ, "EDGEKIT_HOME": str(home), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_a_torchscript_file_that_cannot_take_the_shape_says_torchs_reason(tmp_path: Path) -> None:
    """tiny.pt (3 channels) on [1, 4, 64, 64]: the message was cut at 300 characters inside the TorchScript
    traceback; torch's reason (its last line: expected 3 channels, got 4) is kept now, the message bounded."""
    import torch

    from edgekit.zoo.tiny import build

    model = build(num_classes=10, width=8).eval()
    torch.jit.save(torch.jit.trace(model, torch.rand(1, 3, 32, 32)), str(tmp_path / "tiny.pt"))
    recipe = tmp_path / "pt4.yaml"
    recipe.write_text(
        "name: pt4\nmodel: {kind: torch, path: tiny.pt}\ninput: {name: input, shape: [1, 4, 64, 64]}\n"
        "evaluation:\n  data: {kind: random, samples: 4}\nformats: [onnx-fp32]\n"
    )
    done = _convert(recipe, tmp_path / "home")
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "does not run on an input of shape [1, 4, 64, 64]" in said, said
    assert re.search(r"expected input\[1, 4, 64, 64\] to have 3 channels, but got 4", said), said
    assert len(done.stderr) < 1500, done.stderr


TOKENS = """
import torch


class Tok(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.e, self.f = torch.nn.Embedding(100, 8), torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.f(self.e(x).mean(1))


def tok():
    torch.manual_seed(0)
    return Tok().eval()
"""


def test_a_builder_taking_token_ids_is_told_its_input_is_integer_not_its_shape(tmp_path: Path) -> None:
    """An Embedding fed float32 raised 'got torch.FloatTensor', said as `field input.shape: ... does not run on an
    input of shape [1, 12]` with a hint about shapes; the cause is the dtype, as the ONNX route says it."""
    (tmp_path / "tokmods.py").write_text(TOKENS)
    recipe = tmp_path / "tok.yaml"
    recipe.write_text(
        'name: tok\nmodel: {kind: torch, builder: "tokmods:tok"}\ninput: {name: x, shape: [1, 12]}\n'
        "evaluation:\n  data: {kind: random, samples: 2}\nformats: [onnx-fp32]\n"
    )
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)],
        cwd=tmp_path,
        env={**os.environ, "EDGEKIT_HOME": str(tmp_path / "home"), "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=900,
    )
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        "the model's input 'x' is an integer tensor (it runs on int64 of shape [1, 12], not on float32"
        in said
    )
    assert "edgekit feeds float32 tensors" in said and "got torch.FloatTensor" in said, said
    assert "field `input.shape`" not in said and "batch first" not in said, said


def test_a_builder_raising_in_libtorch_is_said_without_its_cpp_backtrace(tmp_path: Path) -> None:
    """tiny's builder with width 1e20: torch's message holds libtorch's C++ backtrace ('Exception raised from
    THPUtils_unpackLong ...', 'frame #4: <unknown function> + 0x595108 (0x7f5e... in libtorch_python.so)'), which
    the RecipeError printed; torch's reason is said without it."""
    recipe = tmp_path / "big.yaml"
    recipe.write_text(
        "name: big\nmodel: {kind: torch, builder: edgekit.zoo.tiny:build, args: {num_classes: 10, width: "
        "100000000000000000000}}\ninput: {name: input, shape: [1, 3, 32, 32]}\n"
        "evaluation:\n  data: {kind: random, samples: 2}\nformats: [onnx-fp32]\n"
    )
    done = _convert(recipe, tmp_path / "home")
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stdout + done.stderr
    assert (
        "edgekit.zoo.tiny:build raised TypeError: empty(): argument 'size' failed to unpack the object at pos 1 "
        'with error "Overflow when unpacking long long"'
    ) in said, said
    assert "frame #" not in said and "0x" not in said and "omitting python frames" not in said, said
