"""The convert table's "peak mem" of onnx-int8 was 43 MiB when the ONNX had just been exported (torch already
imported) and 302 MiB when it came from the cache, for the same work: the sampled growth counted the first
`import onnxruntime.quantization`, which imports torch. Each conversion here runs in a fresh Python with its own
edgekit home (nothing cached), real onnxruntime quantizer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_onnxrt_kl import _model_and_data, _recipe

CONVERT = """
import sys
if sys.argv[2] == "torch-first":
    import torch  # noqa: F401  - as after a fresh torch export in the same process
from edgekit.convert.pipeline import convert_recipe
from edgekit.formats import Format
from edgekit.recipe import load_recipe

(art,) = convert_recipe(load_recipe(sys.argv[1]), (Format.ONNX_INT8,))
assert art.files, art.error
print("peak", art.peak_rss_mb)
"""


def _peak(recipe: Path, home: Path, order: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", CONVERT, str(recipe), order],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "EDGEKIT_HOME": str(home)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (line,) = [ln for ln in done.stdout.splitlines() if ln.startswith("peak ")]
    return float(line.split()[1])


def test_onnx_int8_peak_mem_does_not_depend_on_what_was_imported_before(tmp_path: Path) -> None:
    _model_and_data(tmp_path)
    recipe = _recipe(tmp_path, "kl")
    cold = _peak(recipe, tmp_path / "home-cold", "cold")
    warm = _peak(recipe, tmp_path / "home-torch", "torch-first")
    # the quantization of a 64x16 Gemm: a few MiB either way; torch and onnxruntime's quantizer are ~300 MiB
    assert abs(cold - warm) < 40, (cold, warm)
    assert cold < 120, cold


FP32_ONLY = """
import sys
from edgekit.convert.pipeline import convert_recipe
from edgekit.formats import Format
from edgekit.recipe import load_recipe

(art,) = convert_recipe(load_recipe(sys.argv[1]), (Format.ONNX_FP32,))
assert art.status == "ok" and art.files, art.error
print("torch imported" if "torch" in sys.modules else "torch not imported")
"""


def test_an_onnx_fp32_conversion_does_not_import_the_quantizer(tmp_path: Path) -> None:
    """onnx-fp32 is a copy of the prepared ONNX, but the converter imported onnxruntime's quantizer (and with it
    torch: 2 s of CPU) for every format, in every `edgekit convert`; only onnx-int8 imports it now."""
    _model_and_data(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", FP32_ONLY, str(_recipe(tmp_path, "kl"))],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "torch not imported" in done.stdout, done.stdout
