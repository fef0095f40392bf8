"""The PyTorch route's export (edgekit.convert.torch_export), through the real CLI: the ONNX is traced on the
recipe's own kind of input and checked against the module (a branch frozen by tracing is a named error, a match
is said once, on a cache hit too); nn.TransformerEncoderLayer exports (PyTorch's fused fast path is off while
exporting); a failing export is a short error whose full log is in a file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            if x.mean() > 0.1:  # data-dependent: tracing keeps the branch its input took
                return self.c(x).mean((2, 3)) * 2.0
            return -self.c(x).mean((2, 3))


    def branchy():
        torch.manual_seed(0)
        return Branchy()


    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(8, 16, batch_first=True)
            self.enc = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, dropout=0.0)
            self.fc = nn.Linear(16, 3)

        def forward(self, x):
            y, _ = self.lstm(x)
            return self.fc(self.enc(y)[:, -1])


    def seq():
        torch.manual_seed(0)
        return Seq()


    class Inverse(nn.Module):
        def forward(self, x):
            return torch.linalg.inv(x[0, 0] + 2 * torch.eye(x.shape[-1]))


    def inverse():
        return Inverse()


    class Attend(nn.Module):
        def __init__(self, branch):
            super().__init__()
            self.branch = branch
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

        def forward(self, x):
            y = self.attn(x, x, x)[0]
            if self.branch and x.mean() > 0.1:  # ATTEND-BRANCH: the user's own data-dependent branch
                return y * 2.0
            return y


    def attend():
        torch.manual_seed(0)
        return Attend(False)


    def attend_branchy():
        torch.manual_seed(0)
        return Attend(True)


    class Counted(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
            self.calls = 0

        def forward(self, x):
            self.calls += 1
            return self.attn(x, x, x)[0] + torch.tensor(float(self.calls))  # COUNTED: a Python value, traced


    def counted():
        torch.manual_seed(0)
        return Counted()
    """
)


def _project(tmp_path: Path, name: str, builder: str, shape: list[int], data: str) -> Path:
    (tmp_path / "tmods").mkdir(exist_ok=True)
    (tmp_path / "tmods" / "__init__.py").write_text("")
    (tmp_path / "tmods" / "nets.py").write_text(MODELS)
    recipe = tmp_path / f"{name}.yaml"
    recipe.write_text(
        f"name: {name}\n"
        f'model: {{kind: torch, builder: "tmods.nets:{builder}"}}\n'
        f"input: {{name: x, shape: {shape}}}\n"
        f"evaluation:\n  data: {data}\n"
        "formats: [onnx-fp32]\n"
    )
    return recipe


def _convert(recipe: Path, home: Path) -> subprocess.CompletedProcess[str]:
    # the recipe's folder for its builder, before the caller's path (a checkout's own edgekit, say)
    path = os.pathsep.join(p for p in (str(recipe.parent), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "EDGEKIT_HOME": str(home), "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)],
        cwd=recipe.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_export_checked_against_module_and_said_on_cache_hit(tmp_path: Path) -> None:
    """The prober's case: evaluation inputs in 0.5..1 take the first branch; traced on zeros the ONNX took the
    other, and every artifact passed against that wrong reference. Now traced on the first evaluation input,
    checked on every one, and the match said on the export and on the cache hit, with a warning where the tracer
    froze the branch (the raw TracerWarning was printed by the export alone, never on a cache hit)."""
    recipe = _project(
        tmp_path, "branchy", "branchy", [1, 3, 16, 16], "{kind: random, samples: 8, low: 0.5, high: 1.0}"
    )
    for _run in range(2):  # the export, then a cache hit: said both times
        proc = _convert(recipe, tmp_path / "home")
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        said = re.findall(
            r"traced on the first evaluation input; matches the model within (\S+) on 8 inputs "
            r"\(every evaluation input\)",
            out,
        )
        assert len(said) == 1, out
        assert float(said[0]) < 1e-5, out
        warned = re.findall(
            r"model: warning: tracing froze control flow on a tensor's value at (\S+nets\.py:\d+)", out
        )
        assert len(warned) == 1, out
        assert "torch.where" in out[out.index("model: warning:") :], out


def test_export_that_does_not_reproduce_the_module_is_a_named_error(tmp_path: Path) -> None:
    """Evaluation inputs on both sides of the branch: the traced ONNX computes the first one's branch for both,
    so it is not the model; a ConversionError saying so, where the tracer froze the flow, and what to do."""
    x = np.ones((4, 3, 16, 16), np.float32)
    x[1] *= -1.0  # mean -1: the other branch
    np.save(tmp_path / "eval.npy", x)
    recipe = _project(
        tmp_path, "split", "branchy", [1, 3, 16, 16], f"{{kind: npy, path: {tmp_path / 'eval.npy'}}}"
    )
    proc = _convert(recipe, tmp_path / "home")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "error (ConversionError)" in out, out
    assert "does not reproduce it: on evaluation input 2 of 4" in out, out
    assert "nets.py:" in out and "Converting a tensor to a Python boolean" in out, out  # the user's line
    assert "torch.where" in out, out
    assert not list((tmp_path / "home").rglob("model.onnx")), "a model that failed its check is not cached"


def test_export_is_checked_on_every_evaluation_input(tmp_path: Path) -> None:
    """The reviewer's case: 8 evaluation inputs, the first 4 on one side of the branch and the last 4 on the other.
    The check ran on the first 4 only: "matches the model ... on 4 inputs", every artifact passed, and inputs 5-8
    were sign-flipped against the module. Every evaluation input is checked now: the fifth fails it."""
    x = np.ones((8, 3, 16, 16), np.float32)
    x[4:] *= -1.0  # the other branch, from the fifth on
    np.save(tmp_path / "eval.npy", x)
    recipe = _project(
        tmp_path, "late", "branchy", [1, 3, 16, 16], f"{{kind: npy, path: {tmp_path / 'eval.npy'}}}"
    )
    proc = _convert(recipe, tmp_path / "home")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "does not reproduce it: on evaluation input 5 of 8" in out, out
    assert not list((tmp_path / "home").rglob("model.onnx")), "a model that failed its check is not cached"


def test_check_inputs_spread_over_a_large_evaluation_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past EXPORT_CHECK_MAX_INPUTS the check takes that many spread over the whole set (its last input too), and
    knows how many the set holds (said as "on 64 inputs (spread over the 100 evaluation inputs)")."""
    from edgekit.convert.torch_check import EXPORT_CHECK_MAX_INPUTS, check_inputs
    from edgekit.convert.torch_export import describe
    from edgekit.recipe import load_recipe

    x = np.arange(100, dtype=np.float32)[:, None, None, None] * np.ones((1, 1, 2, 2), np.float32)
    np.save(tmp_path / "many.npy", x)
    recipe = _project(
        tmp_path, "many", "branchy", [1, 1, 2, 2], f"{{kind: npy, path: {tmp_path / 'many.npy'}}}"
    )
    monkeypatch.syspath_prepend(str(tmp_path))  # the recipe's builder is imported when it is read
    for name in ("tmods", "tmods.nets"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    batches, kind, total = check_inputs(load_recipe(recipe))
    assert len(batches) == EXPORT_CHECK_MAX_INPUTS and total == 100 and kind == "evaluation input"
    seen = batches[:, 0, 0, 0, 0]
    assert seen[0] == 0 and seen[-1] == 99 and len(set(seen.tolist())) == EXPORT_CHECK_MAX_INPUTS
    check = {"max_abs": 0.0, "inputs": len(batches), "of": total, "on": kind}
    line = describe({"check": check, "traced": True}) or ""
    assert f"on {EXPORT_CHECK_MAX_INPUTS} inputs (spread over the 100 evaluation inputs)" in line, line


def test_export_is_keyed_by_the_inputs_it_is_traced_and_checked_on(tmp_path: Path) -> None:
    """The export's key held neither the evaluation data nor the preprocessing: after a recipe evaluated on one
    side of the branch, one evaluated on both sides got its ONNX from the cache (traced for the other branch,
    'matches the model ... on 4 inputs' reprinted for data it never saw) and every artifact passed against it.
    Now the second recipe exports and checks again, and fails as it does alone."""
    x = np.ones((4, 3, 16, 16), np.float32)
    np.save(tmp_path / "same.npy", x)
    x[1] *= -1.0  # mean -1: the other branch
    np.save(tmp_path / "split.npy", x)
    for name, code in (("same", 0), ("split", 1)):
        recipe = _project(
            tmp_path, name, "branchy", [1, 3, 16, 16], f"{{kind: npy, path: {tmp_path / f'{name}.npy'}}}"
        )
        proc = _convert(recipe, tmp_path / "home")  # one data dir: the first export is in the cache
        out = proc.stdout + proc.stderr
        assert proc.returncode == code, out
    assert "does not reproduce it: on evaluation input 2 of 4" in out, out


def test_transformer_encoder_layer_exports(tmp_path: Path) -> None:
    """Under torch.no_grad nn.TransformerEncoderLayer took its fused fast path
    (aten::_transformer_encoder_layer_fwd), which has no ONNX form: the export failed."""
    recipe = _project(tmp_path, "seq", "seq", [1, 10, 8], "{kind: random, samples: 4}")
    proc = _convert(recipe, tmp_path / "home")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "_transformer_encoder_layer_fwd" not in out
    assert re.search(r"matches the model within \S+ on 4 inputs", out), out


def test_failed_export_is_short_with_log(tmp_path: Path) -> None:
    """An operator the exporter cannot write: the cause first and a hint; the TorchScript graph torch dumps (tens
    of lines) only in the log file the hint names."""
    recipe = _project(tmp_path, "inv", "inverse", [1, 1, 4, 4], "{kind: random, samples: 4}")
    proc = _convert(recipe, tmp_path / "home")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "graph(" not in out and "Torch IR graph" not in out, out
    assert len(out.splitlines()) < 12, out
    error = out[out.index("error (ConversionError)") :]
    assert (
        "torch.onnx.export of tmods.nets:inverse failed: Exporting the operator 'aten::linalg_inv'" in error
    )
    assert "hint:" in error and "dynamo=True" in error
    log = Path(re.search(r"whole log: (\S+)", error).group(1))  # type: ignore[union-attr]
    assert "Torch IR graph at exception" in log.read_text()


def test_attention_alone_is_no_frozen_flow_warning(tmp_path: Path) -> None:
    """The reviewer's vit: every nn.MultiheadAttention warned "tracing froze control flow on a tensor's value at
    .../torch/nn/functional.py:6838", torch's own `embed_dim != embed_dim_to_check` shape check, which no input
    steers and the user cannot change. Torch's own places are not said; the user's own branch beside an attention
    still is, named by its line, with no "more place(s)" counted in torch."""
    recipe = _project(
        tmp_path, "attend", "attend", [1, 6, 16], "{kind: random, samples: 4, low: 0.5, high: 1.0}"
    )
    for _run in range(2):  # the export, then a cache hit (meta.json's `check` holds torch's places: not said)
        proc = _convert(recipe, tmp_path / "home")
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out
        assert re.search(r"matches the model within \S+ on 4 inputs", out), out
        assert "froze control flow" not in out, out
    line = 1 + MODELS.splitlines().index(next(t for t in MODELS.splitlines() if "ATTEND-BRANCH" in t))
    recipe = _project(
        tmp_path, "attend2", "attend_branchy", [1, 6, 16], "{kind: random, samples: 4, low: 0.5, high: 1.0}"
    )
    proc = _convert(recipe, tmp_path / "home")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    warned = re.findall(r"model: warning: tracing froze control flow on a tensor's value at (\S+):", out)
    assert warned == [f"{tmp_path / 'tmods' / 'nets.py'}:{line}"], out
    assert "more place(s)" not in out, out


def test_an_export_that_does_not_reproduce_names_the_users_line_not_torchs(tmp_path: Path) -> None:
    """The error of an export that does not reproduce the module cited the first tracer warning that a tensor
    became a Python value, and beside an nn.MultiheadAttention that is torch's own shape check
    (`.../torch/nn/functional.py:6838: Converting a tensor to a Python boolean`) even when the user's own line
    the tracer warned about is another warning (`torch.tensor results are registered as constants`: a value
    that changes between calls, baked into the ONNX). Torch's places are never cited; the user's line is."""
    recipe = _project(
        tmp_path, "counted", "counted", [1, 6, 16], "{kind: random, samples: 4, low: 0.5, high: 1.0}"
    )
    proc = _convert(recipe, tmp_path / "home")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    line = 1 + MODELS.splitlines().index(next(t for t in MODELS.splitlines() if "COUNTED:" in t))
    error = out[out.index("error (ConversionError)") :]
    told = re.findall(r"the tracer warned: (\S+):", error)
    assert told == [f"{tmp_path / 'tmods' / 'nets.py'}:{line}"], error
    assert "registered as constants" in error, error
