"""A long count under the counting qemu says it is still going (`still counting ... (N s, model i of n)`) on
stderr every HEARTBEAT_EVERY_S (15 s; EDGEKIT_HEARTBEAT_S makes it 0.2 s here), as convert says its children are:
`edgekit estimate` and `edgekit profile --target pi4-emu` printed nothing for a minute and more. Never in the
--json on stdout. Real counts of a small ncnn model made here, on the built pi4-emu (no sshd: qemu-user here)."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.emu.plugin import build as plugin_build
from edgekit.emu.plugin.counting import CountJob, count_artifacts, heartbeat

BEAT = re.compile(r"still counting (.+) \((\d+) s(?:, model (\d+) of (\d+))?\)")


@pytest.fixture(autouse=True)
def plugin_built() -> None:
    if not plugin_build.is_built():
        pytest.fail("the counting plugin is not built: run `edgekit emu build-plugin`")


def write_convs(folder: Path, name: str = "convs") -> Path:
    """Three 3x3 convolutions of 8 channels (pad 1), with a sidecar: input 1x3x64x64."""
    rng = np.random.default_rng(0)
    lines, weights, blob = [], b"", "in0"
    for k, (cin, cout) in enumerate([(3, 8), (8, 8), (8, 8)]):
        top = "out0" if k == 2 else f"c{k}"
        lines.append(f"Convolution conv{k} 1 1 {blob} {top} 0={cout} 1=3 4=1 5=1 6={cout * cin * 9}")
        w = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32)
        weights += struct.pack("<I", 0) + w.tobytes() + np.zeros(cout, np.float32).tobytes()
        blob = top
    param = folder / f"{name}.param"
    param.write_text("7767517\n4 4\nInput in0 0 1 in0\n" + "\n".join(lines) + "\n")
    param.with_suffix(".bin").write_bytes(weights)
    io = {"format": "ncnn-fp32", "inputs": ["in0"], "outputs": ["out0"], "input_shapes": [[1, 3, 64, 64]]}
    param.with_suffix(".io.json").write_text(json.dumps(io))
    return param


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # a beat every 0.2 s: the guest runs here last 1.5-4 s, and a machine faster than that ends one before a 1 s beat
    env = {**os.environ, "EDGEKIT_HOME": str(home), "EDGEKIT_HEARTBEAT_S": "0.2"}
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=600, env=env
    )


def beats(stderr: str) -> list[re.Match[str]]:
    return [m for m in map(BEAT.search, stderr.splitlines()) if m]


def test_estimate_says_it_is_still_counting_on_stderr_only(tmp_path: Path) -> None:
    param = write_convs(tmp_path)
    out = cli(tmp_path / "home", "estimate", str(param), "--board", "pi4", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # the JSON alone on stdout
    assert data["count"]["instructions"] > 0
    said = beats(out.stderr)
    assert said, out.stderr
    assert all(param.name in m.group(1) and "pi4-emu" in m.group(1) for m in said)
    seconds = [int(m.group(2)) for m in said]
    assert seconds == sorted(seconds) and seconds[0] >= 0  # said as whole seconds: a 0.2 s beat says "0 s"
    assert "still counting" not in out.stdout
    # counted now: a second estimate takes the count cache's entry and has nothing to wait for
    again = cli(tmp_path / "home", "estimate", str(param), "--board", "pi4", "--json")
    assert again.returncode == 0 and not beats(again.stderr), again.stderr


def test_ncnn_profile_on_an_emulated_core_says_it_is_still_counting(tmp_path: Path) -> None:
    param = write_convs(tmp_path)
    out = cli(tmp_path / "home", "profile", str(param), "--target", "pi4-emu", "--json")
    assert out.returncode == 0, out.stderr
    assert [layer["name"] for layer in json.loads(out.stdout)["layers"]] == ["conv0", "conv1", "conv2"]
    said = beats(out.stderr)
    assert said and all(f"{param.name}'s layers on pi4-emu" == m.group(1) for m in said), out.stderr


def test_a_guest_counting_several_models_says_which_one_it_is_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One guest counts a small model then two at 16x the pixels and three windows each: the lines say model i
    of 3, i never going back, and past the first while the big ones run. A beat every 0.2 s and big models of
    ~0.8 s each here: at 4x the pixels and a beat a second, a faster CI machine counted both big ones between
    two beats (1.4 s of guest start-up is model 1's)."""
    monkeypatch.setenv("EDGEKIT_HEARTBEAT_S", "0.2")
    param = write_convs(tmp_path)
    jobs = [CountJob(param, threads=1, repeat=1)] + [
        CountJob(param, threads=1, repeat=3, input_shape=[1, 3, 256, 256]) for _ in range(2)
    ]
    said: list[str] = []
    with heartbeat(said.append, "three models"):
        counted = count_artifacts(jobs, "pi4-emu")
    assert [c.instructions > 0 for c in counted] == [True] * 3
    at = [int(m.group(3)) for m in beats("\n".join(said))]
    assert at and at == sorted(at) and set(at) <= {1, 2, 3}, said
    assert max(at) >= 2, said
