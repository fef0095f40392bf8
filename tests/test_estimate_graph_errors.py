"""Graph errors `edgekit estimate` / `edgekit roofline` find on the host, before ncnn or qemu runs the model (r19):
a Concat of a 40x40 and a 39x39 branch aborted edgekit (exit 134, "malloc_consolidate(): invalid chunk size"), an
Eltwise or BinaryOp of unequal inputs was taken, a blob read twice without a Split and a second Input were found
only after a whole count under qemu (exit 1, naming edgekit's zero-weight copy), and roofline's MAC-based interval
reached below its own lower bound."""

from __future__ import annotations

import json
from pathlib import Path

import procs

# r19's mbv3.param: its MAC-based interval's low end (1.89 ms on pi4) was below its lower bound (5.01 ms)
MBV3 = """7767517
31 33
Input                data     0 1 data 0=224 1=224 2=3
Convolution          conv1    1 1 data c1 0=16 1=3 3=2 4=1 5=1 6=432
HardSwish            hs1      1 1 c1 h1 0=1.666667e-01 1=5.000000e-01
ConvolutionDepthWise dw2      1 1 h1 d2 0=16 1=3 3=2 4=1 5=1 6=144 7=16 9=1
Split                sp2      1 2 d2 d2a d2b
Pooling              gp2      1 1 d2a g2 0=1 4=1
InnerProduct         fc2a     1 1 g2 f2a 0=8 1=1 2=128 9=1
InnerProduct         fc2b     1 1 f2a f2b 0=16 1=1 2=128
HardSigmoid          hsg2     1 1 f2b s2 0=1.666667e-01 1=5.000000e-01
BinaryOp             mul2     2 1 d2b s2 m2 0=2
Convolution          pw2      1 1 m2 p2 0=24 1=1 5=1 6=384
Convolution          ex3      1 1 p2 e3 0=72 1=1 5=1 6=1728 9=6 -23310=2,1.666667e-01,5.000000e-01
ConvolutionDepthWise dw3      1 1 e3 d3 0=72 1=5 3=2 4=2 5=1 6=1800 7=72 9=6 -23310=2,1.666667e-01,5.000000e-01
Split                sp3      1 2 d3 d3a d3b
Pooling              gp3      1 1 d3a g3 0=1 4=1 5=1
Convolution          se3a     1 1 g3 s3a 0=24 1=1 5=1 6=1728 9=1
Convolution          se3b     1 1 s3a s3b 0=72 1=1 5=1 6=1728
Sigmoid              sg3      1 1 s3b s3
BinaryOp             mul3     2 1 d3b s3 m3 0=2
Convolution          pw3      1 1 m3 p3 0=40 1=1 5=1 6=2880
Convolution          ex4      1 1 p3 e4 0=240 1=1 5=1 6=9600
HardSwish            hs4      1 1 e4 h4 0=1.666667e-01 1=5.000000e-01
ConvolutionDepthWise dw4      1 1 h4 d4 0=240 1=3 3=2 4=1 5=1 6=2160 7=240
Swish                sw4      1 1 d4 w4
Convolution          pw4      1 1 w4 p4 0=80 1=1 5=1 6=19200
Convolution          ex5      1 1 p4 e5 0=480 1=1 5=1 6=38400 9=6 -23310=2,1.666667e-01,5.000000e-01
Pooling              gp5      1 1 e5 g5 0=1 4=1
Flatten              fl5      1 1 g5 f5
InnerProduct         fc6      1 1 f5 f6 0=1000 1=1 2=480000
Noop                 nop      1 1 f6 f6n
Softmax              prob     1 1 f6n prob 0=0
"""


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_roofline_clips_its_interval_at_its_own_lower_bound(tmp_path: Path) -> None:
    """mbv3 at 224 on pi4: "lower bound 5.01 ms" beside "interval 1.89 .. 25.3 ms"."""
    _write(tmp_path, "mbv3.param", MBV3)
    args = ("roofline", "mbv3.param", "--board", "pi4", "--input-shape", "1,3,224,224")
    out = procs.run(*args, "--json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    bound, est = data["roofline"]["lower_bound_ms"], data["estimate"]
    assert est["estimate_ms"] > bound, data  # the case clipped: an estimate above its bound
    assert est["low_clipped_at_lower_bound"] is True, est
    assert est["low_ms"] >= round(bound, 3) and est["low_ms_before_clip"] < bound, est
    assert any("the interval's low end is the roofline lower bound" in c for c in est["caveats"]), est
    shown = procs.run(*args, cwd=tmp_path)
    line = next(x for x in shown.stdout.splitlines() if " interval " in x)
    low = float(line.split("interval ")[1].split(" ..")[0])
    assert low >= round(bound, 2), line
    assert "the cost model's own low end" in shown.stdout, shown.stdout
