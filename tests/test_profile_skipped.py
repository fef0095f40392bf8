"""`deploy --profile` on a board or the host: the artifacts it did not time layer by layer are named, with why."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"


@pytest.mark.integration
def test_deploy_profile_names_the_artifacts_it_did_not_time_layer_by_layer_on_the_host(
    tmp_path: Path,
) -> None:
    """deploy times ncnn's layers and onnxruntime's nodes on the host; a tflite-fp32 measured beside them had no
    profile line and no word why; the command it names is one that profiles a .tflite (an emulated core's)."""
    import json

    recipe = tmp_path / "tiny.yaml"  # the tiny recipe with an onnxruntime format too (a builder: no paths)
    recipe.write_text(
        TINY.read_text().replace("formats: [tflite-fp32,", "formats: [onnx-fp32, tflite-fp32,", 1),
        encoding="utf-8",
    )
    out = tmp_path / "deploy.json"
    deploy = [sys.executable, "-m", "edgekit", "deploy", str(recipe), "--target", "local"]
    done = subprocess.run(
        [
            *deploy,
            "-f",
            "ncnn-fp32",
            "-f",
            "tflite-fp32",
            "-f",
            "onnx-fp32",
            "--repeat",
            "2",
            "--threads",
            "1",
        ]
        + ["--profile", "--no-store", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    said = [line for line in done.stdout.splitlines() if "not profiled" in line]
    assert len(said) == 1 and "host: not profiled: tflite-fp32 (" in said[0], done.stdout
    assert "ncnn's and onnxruntime's" in said[0] and "edgekit profile FILE --target pi4-emu" in said[0]
    # it said `edgekit profile FILE --target host`, which refuses a .tflite: only an emulated core counts one
    assert "profile host ncnn-fp32 x1: by wall time (measured)" in done.stdout
    assert "profile host onnx-fp32 x1: by wall time (measured)" in done.stdout
    (run,) = [r for r in json.loads(out.read_text())["runs"] if r["target"] == "host"]
    timed = {m["artifact"]: m["layer_ms"] for m in run["agent"]["measurements"]}
    assert timed["onnx-fp32"] and all(node["ms"] >= node["min_ms"] >= 0 for node in timed["onnx-fp32"])
    assert timed["ncnn-fp32"] and not timed["tflite-fp32"]
