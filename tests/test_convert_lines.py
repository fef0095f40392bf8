"""What `edgekit convert` prints around its work (edgekit.cli.convert): a first line before the recipe is read (its
builders imported: torch alone takes seconds, tens of them on a loaded machine, and nothing was said), and each
artifact's findings under the table once prefixed with its format (a converter's text naming it too was printed
"onnx-int8: onnx-int8: activation ranges ...")."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

NET = textwrap.dedent(
    """
    import torch
    from torch import nn


    def tiny():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    """
)


def test_first_line_before_the_recipe_is_read_and_findings_prefixed_once(tmp_path: Path) -> None:
    (tmp_path / "linemods").mkdir()
    (tmp_path / "linemods" / "__init__.py").write_text("")
    (tmp_path / "linemods" / "nets.py").write_text(NET)
    recipe = tmp_path / "lines.yaml"
    recipe.write_text(
        "name: lines\n"
        'model: {kind: torch, builder: "linemods.nets:tiny"}\n'
        "input: {name: x, shape: [1, 3, 8, 8]}\n"
        "calibration:\n  data: {kind: random, samples: 4}\n"
        "evaluation:\n  data: {kind: random, samples: 4}\n"
        "formats: [onnx-fp32, onnx-int8]\n"
    )
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)],
        cwd=tmp_path,
        env={**os.environ, "EDGEKIT_HOME": str(tmp_path / "home"), "PYTHONPATH": path, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert done.stdout.splitlines()[0] == "recipe: reading lines.yaml (and importing any builder it names)", (
        out
    )
    assert "onnx-int8: activation ranges by min/max" in out, out
    assert "onnx-int8: onnx-int8:" not in out, out
