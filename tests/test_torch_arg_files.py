"""A PyTorch builder that loads its own checkpoint from a path in `args` (`args: {ckpt: ck.pth}`): the export's
cache key holds that file's content (edgekit.convert.arg_files), so overwriting the checkpoint exports again; the
key held the path's text only, and the old model's ONNX (and its "matches the model" line) was served."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

BUILDER = textwrap.dedent(
    """
    import torch
    from torch import nn


    def build_ckpt(ckpt):
        model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(1))
        model.load_state_dict(torch.load(ckpt))
        return model.eval()
    """
)


def _save_weights(path: Path, seed: int) -> None:
    torch.manual_seed(seed)
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.Flatten(1)).state_dict(), path)


def _convert(recipe: Path, home: Path) -> str:
    path = os.pathsep.join(p for p in (str(recipe.parent), os.environ.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)],
        cwd=recipe.parent,  # the builder opens the relative `ck.pth` from here, as edgekit's key reads it
        env={**os.environ, "EDGEKIT_HOME": str(home), "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    return out


def test_overwritten_checkpoint_named_in_args_is_exported_again(tmp_path: Path) -> None:
    (tmp_path / "ckmods.py").write_text(BUILDER)
    _save_weights(tmp_path / "ck.pth", seed=0)
    recipe = tmp_path / "ck.yaml"
    recipe.write_text(
        "name: ck\n"
        'model: {kind: torch, builder: "ckmods:build_ckpt", args: {ckpt: ck.pth}}\n'
        "input: {name: x, shape: [1, 3, 6, 6]}\n"
        "evaluation:\n  data: {kind: random, samples: 2}\n"
        "formats: [onnx-fp32]\n"
    )
    home = tmp_path / "home"
    assert "model: ONNX ready" in _convert(recipe, home)
    assert "model: ONNX from cache" in _convert(recipe, home)  # the same file: served
    _save_weights(tmp_path / "ck.pth", seed=1)  # other weights, same path
    out = _convert(recipe, home)
    assert "model: ONNX from cache" not in out and "model: ONNX ready" in out, out
    assert "matches the model within" in out, out


def test_arg_file_digests_follow_lists_dicts_folders_and_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekit.convert.arg_files import arg_file_digests

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.pth").write_bytes(b"a")
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards" / "0.bin").write_bytes(b"0")
    args = {"n": 3, "name": "resnet", "more": [{"ckpt": "a.pth"}, ("shards",)], "gone": "missing.pth"}
    first = arg_file_digests(args)
    assert set(first) == {"a.pth", "shards"}
    (tmp_path / "shards" / "0.bin").write_bytes(b"1")  # a file inside the folder changed
    second = arg_file_digests(args)
    assert second["a.pth"] == first["a.pth"] and second["shards"] != first["shards"]
    assert arg_file_digests({"n": 3, "name": "resnet"}) == {}  # no file named: the key is as before
