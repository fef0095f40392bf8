"""ONNX -> OpenVINO IR fp32 (openvino.convert_model, weights kept fp32) and INT8 (NNCF's post-training
quantization, `nncf.quantize`, with the recipe's calibration inputs), for the host-side reference runtime.

Both run in a child process whose HOME is edgekit's own folder holding OpenVINO's telemetry consent file set to
"declined": OpenVINO's converter and NNCF send usage telemetry unless that file says no (their documented
opt-out, `opt_in_out --opt_out`, writes the same file into the user's home; edgekit leaves the user's home alone).
NNCF's default preset (`performance`: symmetric weights per output channel and symmetric activations); a
recipe's `int8.granularity: per-tensor` is not applied and is said as a finding, as is `calibration.method` (NNCF
sets its own activation ranges: neither kl nor absmax is applied). The biases are corrected by NNCF's full bias
correction (`fast_bias_correction=False`), not its default fast one: with the fast one both shipped digits recipes
missed their int8 gates (cosine mean 0.9746 / worst 0.7652, top-1 98.3 % against 99.4 %; digits-keras 0.9687 /
0.8045) where onnx-int8 and mnn-int8 met them on the same calibration data; with the full one mean 0.9995 / worst
0.9961. The mixed preset and leaving the Gemm or the first Conv in float did not help (0.9746).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgekit import paths
from edgekit.convert.base import Converter
from edgekit.convert.tool_process import PEAK_TAG, peak_mb_from_log, plain_output
from edgekit.errors import ConversionError, exit_text
from edgekit.formats import Format
from edgekit.recipe import Granularity, Recipe

OV_TIMEOUT_S = 900
QUANT_SETTINGS_VERSION = 2  # 2: full bias correction (fast_bias_correction=False)

# prints its own peak RSS (kB) last (edgekit.convert.tool_process: VmHWM, not ru_maxrss, which holds edgekit's)
CHILD = r"""
import json, sys
import numpy as np
from edgekit.convert.tool_process import peak_line
import openvino as ov
job = json.loads(sys.argv[1])
model = ov.convert_model(job["onnx"])
if job.get("calibration"):
    import nncf
    calib = np.load(job["calibration"])
    data = nncf.Dataset([x[None] for x in calib])
    model = nncf.quantize(model, data, subset_size=len(calib), fast_bias_correction=False)
ov.save_model(model, job["out"], compress_to_fp16=False)
print(peak_line(), flush=True)
"""


class OpenVinoConverter(Converter):
    formats = (Format.OPENVINO_FP32, Format.OPENVINO_INT8)
    dists = ("openvino", "nncf")

    @classmethod
    def tool_versions(cls) -> dict[str, str]:
        return cls.dist_versions()

    @classmethod
    def settings(cls, recipe: Recipe, fmt: Format) -> dict[str, Any]:
        return (
            {"quant": QUANT_SETTINGS_VERSION, "preset": "performance", "bias_correction": "full"}
            if fmt is Format.OPENVINO_INT8
            else {}
        )

    def convert(self, onnx_path: Path, recipe: Recipe, fmt: Format, out_dir: Path) -> list[Path]:
        self.findings: dict[Format, list[str]] = getattr(self, "findings", {})
        xml = out_dir / "model.xml"
        job: dict[str, Any] = {"onnx": str(onnx_path), "out": str(xml)}
        if fmt is Format.OPENVINO_INT8:
            from edgekit.convert.calibration import calibration_inputs

            calib = out_dir / "calibration.npy"
            np.save(calib, np.ascontiguousarray(calibration_inputs(recipe), dtype=np.float32))
            job["calibration"] = str(calib)
            if recipe.int8.granularity is Granularity.PER_TENSOR:
                self.findings.setdefault(fmt, []).append(
                    "openvino-int8: weights quantized per channel (NNCF's default; per-tensor is not applied)"
                )
            # true of every openvino-int8 whatever the recipe's method: the cache shares one entry between kl and
            # absmax recipes (the method is no part of its key), so a cached conversion says it too
            self.findings.setdefault(fmt, []).append(
                "openvino-int8: activation ranges by NNCF's own range estimation whatever calibration.method says "
                "(the method, kl or absmax, is for ncnn-int8 and mnn-int8)"
            )
        try:
            log = _run_child(job, out_dir)
        finally:
            if "calibration" in job:
                Path(job["calibration"]).unlink(missing_ok=True)
        if not xml.exists() or not xml.with_suffix(".bin").exists():
            raise ConversionError("OpenVINO wrote no model: " + _tail(log), where=str(onnx_path))
        self.peak_rss_mb = peak_mb_from_log(log)
        return [xml, xml.with_suffix(".bin")]


def telemetry_declined_home() -> Path:
    """A HOME for OpenVINO's tools whose consent file declines telemetry (see the module docstring)."""
    home = paths.cache_dir() / "openvino-home"
    consent = home / "intel" / "openvino_telemetry"
    if not consent.exists() or consent.read_text().strip() != "0":
        consent.parent.mkdir(parents=True, exist_ok=True)
        consent.write_text("0")
    return home


def _run_child(job: dict[str, Any], work: Path) -> str:
    threads = os.environ.get("EDGEKIT_CONVERT_THREADS", "1")
    dead = "http://127.0.0.1:9"  # nothing listens there: a download or telemetry attempt fails at once
    env = {
        **os.environ,
        "HOME": str(telemetry_declined_home()),
        "OMP_NUM_THREADS": threads,
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "http_proxy": dead,
        "https_proxy": dead,
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, json.dumps(job)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=OV_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise ConversionError(f"OpenVINO did not finish in {OV_TIMEOUT_S} s", where=job["onnx"]) from None
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise ConversionError(
            f"OpenVINO failed ({exit_text(proc.returncode)}): " + _tail(log), where=job["onnx"]
        )
    return log


def _tail(log: str, lines: int = 12) -> str:
    keep = [
        ln for ln in plain_output(log).replace("\r", "\n").splitlines() if ln.strip() and PEAK_TAG not in ln
    ]
    return "\n".join(keep[-lines:])
