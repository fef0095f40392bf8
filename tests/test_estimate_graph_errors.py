"""Graph errors `edgekit estimate` / `edgekit roofline` find on the host, before ncnn or qemu runs the model (r19):
a Concat of a 40x40 and a 39x39 branch aborted edgekit (exit 134, "malloc_consolidate(): invalid chunk size"), an
Eltwise or BinaryOp of unequal inputs was taken, a blob read twice without a Split and a second Input were found
only after a whole count under qemu (exit 1, naming edgekit's zero-weight copy), and roofline's MAC-based interval
reached below its own lower bound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import procs

# a detector's neck: a stride-16 skip (c3) beside the stride-32 branch (c4) upsampled x2; 310 is no multiple of 32
DETECTOR = """7767517
9 10
Input                data     0 1 data 0=320 1=320 2=3
Convolution          c1       1 1 data c1 0=16 1=3 3=2 4=1 5=1 6=432 9=1
Convolution          c2       1 1 c1 c2 0=32 1=3 3=2 4=1 5=1 6=4608 9=1
Convolution          c3       1 1 c2 c3 0=64 1=3 3=2 4=1 5=1 6=18432 9=1
Split                s3       1 2 c3 c3a c3b
Convolution          c4       1 1 c3a c4 0=128 1=3 3=2 4=1 5=1 6=73728 9=1
Interp               up4      1 1 c4 u4 0=1 1=2.0 2=2.0
Concat               cat      2 1 {first} {second} cat 0=0
Convolution          head     1 1 cat out 0=8 1=1 5=1 6=1536
"""

# two branches of one input at strides 1 and 4, joined by `{join}`
UNEQUAL = """7767517
6 7
Input            data   0 1 data 0=64 1=64 2=3
Split            sp     1 2 data d1 d2
Convolution      c1     1 1 d1 a 0=64 1=3 4=1 5=1 6=1728
Convolution      c2     1 1 d2 b 0=64 1=3 3=4 4=1 5=1 6=1728
{join}           cat    2 1 a b cat 0={param}
ReLU             relu   1 1 cat out
"""

NO_SPLIT = """7767517
5 5
Input            data   0 1 data 0=32 1=32 2=3
Convolution      c1     1 1 data c1 0=8 1=3 4=1 5=1 6=216
Convolution      c2     1 1 c1 c2 0=8 1=3 4=1 5=1 6=576
BinaryOp         add    2 1 c1 c2 s 0=0
Convolution      c3     1 1 s out 0=8 1=1 5=1 6=64
"""

TWO_INPUTS = """7767517
4 4
Input            data   0 1 data 0=16 1=16 2=3
Input            data2  0 1 data2 0=16 1=16 2=3
BinaryOp         add    2 1 data data2 s 0=0
Convolution      c1     1 1 s out 0=8 1=1 5=1 6=24
"""

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


def test_a_concat_of_branches_an_input_size_leaves_unequal_is_refused_naming_the_layer(
    tmp_path: Path,
) -> None:
    """At 310 the upsampled branch is 40x40 and the skip 39x39: ncnn's Concat wrote past its buffer and edgekit
    died with SIGABRT (inputs in this order) or counted a model that does not run (the other order)."""
    _write(tmp_path, "det.param", DETECTOR.format(first="c3b", second="u4"))
    _write(tmp_path, "det_swapped.param", DETECTOR.format(first="u4", second="c3b"))
    for name in ("det.param", "det_swapped.param"):
        for command in ("roofline", "estimate"):
            out = procs.run(command, name, "--board", "pi4", "--input-shape", "1,3,310,310", cwd=tmp_path)
            stderr = procs.named(out)
            assert f"error (InputDataError): {name}: layer 'cat' (Concat, axis 0" in stderr, stderr
            assert "c3b [64, 39, 39]" in stderr and "u4 [128, 40, 40]" in stderr, stderr
            assert "--input-shape 1,3,320,320" in stderr and "zero-weights" not in stderr, stderr
    fits = procs.run("roofline", "det.param", "--board", "pi4", "--input-shape", "1,3,320,320", cwd=tmp_path)
    assert fits.returncode == 0, fits.stderr


def test_an_eltwise_or_binaryop_of_unequal_inputs_is_refused(tmp_path: Path) -> None:
    """64x64 beside 16x16: Eltwise was taken (ncnn reads past the smaller input), BinaryOp cannot broadcast."""
    for join, param in (("Eltwise", 1), ("BinaryOp", 0), ("Concat", 0)):
        _write(tmp_path, f"{join}.param", UNEQUAL.format(join=join, param=param))
        out = procs.run(
            "roofline", f"{join}.param", "--board", "pi4", "--input-shape", "1,3,64,64", cwd=tmp_path
        )
        stderr = procs.named(out)
        assert f"layer 'cat' ({join}" in stderr and "a [64, 64, 64], b [64, 16, 16]" in stderr, stderr
        assert "hint: check the params of the layers making those inputs" in stderr, stderr


# a BinaryOp of a convolution's [8, 16, 16] and a constant of another rank: MemoryData {md} (0=w 1=h 2=c)
RANKS = """7767517
4 4
Input            data   0 1 data 0=16 1=16 2=3
Convolution      c1     1 1 data c1 0=8 1=1 5=1 6=24
MemoryData       k      0 1 k {md}
BinaryOp         add    2 1 c1 k out 0=0
"""


def test_a_binaryop_of_two_ranks_is_judged_by_ncnns_broadcasting_rule(tmp_path: Path) -> None:
    """Inputs of different ranks were never judged: ncnn computes them whatever they are, reading past the smaller
    one ([5] beside [8, 16, 16]; [16, 16] beside it made a [16, 16, 16] output from 8 channels). ncnn's rule,
    outermost first: a lower-rank operand matches the other's outermost dimensions ([8]: per channel; [8, 1]) or,
    for one dimension, its innermost ([16]); all ones is a scalar. Checked by roofline, before ncnn runs it."""
    for md, fits in (
        ("0=8", True),
        ("0=16", True),
        ("0=1 1=8", True),
        ("0=1 1=1", True),
        ("0=5", False),
        ("0=16 1=16", False),
    ):
        _write(tmp_path, "ranks.param", RANKS.format(md=md))
        out = procs.run(
            "roofline", "ranks.param", "--board", "pi4", "--input-shape", "1,3,16,16", cwd=tmp_path
        )
        if fits:
            assert out.returncode == 0, (md, out.stderr)
            continue
        stderr = procs.named(out)
        assert "layer 'add' (BinaryOp: its inputs must be equal or 1 in each dimension" in stderr, (
            md,
            stderr,
        )
        assert "c1 [8, 16, 16], k [" in stderr, stderr


def test_a_blob_read_twice_without_a_split_and_a_second_input_are_refused_before_counting(
    tmp_path: Path,
) -> None:
    """Both were found only in the guest's light-mode run after a whole count (exit 1, naming the zero-weight
    copy, no blob); roofline took both (exit 0, the second input left out: 0.0 M MACs)."""
    _write(tmp_path, "nosplit.param", NO_SPLIT)
    _write(tmp_path, "twoin.param", TWO_INPUTS)
    for command in ("roofline", "estimate"):
        out = procs.run(
            command, "nosplit.param", "--board", "pi4", "--input-shape", "1,3,32,32", cwd=tmp_path
        )
        stderr = procs.named(out)
        assert "nosplit.param: blob 'c1' is read by 2 layers ('c2', 'add') without a Split" in stderr, stderr
        assert "add a Split layer" in stderr and "zero-weights" not in stderr, stderr
        out = procs.run(command, "twoin.param", "--board", "pi4", "--input-shape", "1,3,16,16", cwd=tmp_path)
        stderr = procs.named(out)
        assert "twoin.param: the model has 2 inputs (Input layers 'data', 'data2')" in stderr, stderr
        assert "edgekit handles single-input models" in stderr, stderr


COUNT_FAILS = """
import sys
import edgekit.cli.estimate as estimate
from edgekit.errors import EmulatorError

def fail(artifact, *args, **kwargs):
    raise EmulatorError("counting failed: ncnn extract('out') returned -100", where=str(artifact))

estimate._count = fail
from edgekit.cli import main
sys.argv = ["edgekit", *sys.argv[1:]]
main()
"""


def test_a_counting_error_names_the_users_file_not_the_zero_weight_copy(tmp_path: Path) -> None:
    """`_count` ran outside named_as_given: "error (EmulatorError): /tmp/.../zero-weights/<digest>/m.param"."""
    _write(
        tmp_path,
        "mine.param",
        "7767517\n2 2\nInput data 0 1 data 0=8 1=8 2=3\nConvolution c1 1 1 data out 0=4 1=1 6=12\n",
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            COUNT_FAILS,
            "estimate",
            "mine.param",
            "--board",
            "pi4",
            "--input-shape",
            "1,3,8,8",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 1, out.stderr
    assert "error (EmulatorError): mine.param: counting failed" in out.stderr, out.stderr
    assert "zero-weights" not in out.stderr, out.stderr


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
