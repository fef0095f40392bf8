"""A format whose runtime the target's `runtimes:` does not list (MNN on phone-emu, whose file lists TFLite and
ncnn) was measured, ranked and routed without a word: a device set up from that file would not have it. Deploy
says so, keeps it on the run (`unlisted_runtimes`) and the route carries it as a caveat."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"


def test_a_runtime_the_target_does_not_list_is_said_and_carried_to_the_route(tmp_path: Path) -> None:
    target = tmp_path / "lrt.yaml"  # a local target of its own (a wrapper python), listing ncnn only
    target.write_text(
        f"name: lrt\ntransport: local\npython: env {sys.executable}\nwork_dir: {tmp_path / 'work'}\n"
        "runtimes: [ncnn]\n"
    )
    out = tmp_path / "run.json"
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(RECIPE), "-f", "onnx-fp32", "--target", str(target)]
        + ["--no-host", "--no-store", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "lrt: onnx-fp32 (onnxruntime): not in the target's runtimes (ncnn)" in said, said
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert run["unlisted_runtimes"] == {"onnx-fp32": "onnxruntime"}
    (route,) = result["routes"]
    assert route["artifact"] == "onnx-fp32"
    assert any("which lrt's `runtimes:` does not list" in c for c in route["caveats"]), route
