"""Run an ncnn artifact on an emulated device's CPython under qemu, as the agent runs it: the sidecar's ncnn
options, one thread, every output the sidecar names. For tests of what a core computes (fp16 arithmetic on the
Cortex-A76, the int8 kernels of the A72), not of timing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

SCRIPT = """
import json, sys
import numpy as np
import ncnn

param, x_path, out_path = sys.argv[1:4]
io = json.load(open(param[: -len(".param")] + ".io.json"))
net = ncnn.Net()
for key, value in io["options"].items():
    setattr(net.opt, key, value)
net.opt.num_threads = 1
assert net.load_param(param) == 0 and net.load_model(param[: -len(".param")] + ".bin") == 0
x = np.load(x_path)
outs = {name: [] for name in io["outputs"]}
for sample in x:
    data = np.ascontiguousarray(sample.reshape(sample.shape[-3:]))  # held while ncnn reads it
    ex = net.create_extractor()
    ex.input(io["inputs"][0], ncnn.Mat(data))
    for name in io["outputs"]:
        outs[name].append(np.array(ex.extract(name)[1]))
    del ex
np.savez(out_path, **{name: np.stack(v) for name, v in outs.items()})
"""


def run_on_device(device: str, param: Path, x: np.ndarray, work: Path) -> list[tuple[str, np.ndarray]]:
    """(output name, outputs stacked over the samples of x) in the sidecar's order; skips the test when the
    emulated device is not built."""
    from edgekit.emu.layout import device_dir

    python = device_dir(device).python
    if not python.exists():
        pytest.skip(f"emulated device {device} is not built (edgekit emu build {device})")
    work.mkdir(parents=True, exist_ok=True)
    np.save(work / "x.npy", x)
    (work / "run.py").write_text(SCRIPT)
    out = work / "out.npz"
    argv = [str(python), str(work / "run.py"), str(param), str(work / "x.npy"), str(out)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    with np.load(out) as got:
        return [(name, got[name]) for name in got.files]
