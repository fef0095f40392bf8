"""Checks, labels, rounding and files of `edgekit estimate` / `edgekit roofline` that were wrong: a channel count
the model cannot take passed when a Padding came first, a tiny estimate was 0 ms, the roofline JSON said
"compute-bound" beside "no bound here", a calibration model counted again was "smaller than any calibration
model", errors named edgekit's zero-weight copy, concurrent runs tore the digest memo, a --format a .tflite's
tensors contradict was taken, and a widened interval sat beside the ordinary one's "held"."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import procs
import pytest
from test_counting import CHANNELS, SIZE, write_chain

from edgekit.convert.ncnn.param import read_param
from edgekit.errors import InputDataError
from edgekit.estimate import calibration, cost_model
from edgekit.estimate.ncnn_model import check_input_shape
from edgekit.formats import Format
from edgekit.runtimes.ncnn import parse_param

BENCHMARK = Path(calibration.__file__).parent / "data" / "ncnn-benchmark"


def test_the_channels_are_checked_through_the_layers_that_keep_them() -> None:
    """blazeface begins with a Padding: 4 channels passed the host check and crashed qemu (SIGSEGV); the input is
    followed now through the layers that keep its channel count to the convolutions it feeds."""
    for param in sorted(BENCHMARK.glob("*.param")):
        declared = next(p for kind, _, _, p in parse_param(param) if kind == "Input")
        if "2" not in declared:
            continue
        c, h, w = (int(declared[k]) for k in ("2", "1", "0"))
        check_input_shape(param, [1, c, h, w])  # its own shape passes
        with pytest.raises(InputDataError, match=f"has {c + 1} channels; .* takes {c}\\n"):
            check_input_shape(param, [1, c + 1, h, w])


def test_padding_that_adds_channels_and_the_declared_input_are_taken_into_account(tmp_path: Path) -> None:
    padded = tmp_path / "padded.param"  # Padding's 7=1 adds a front channel: the convolution takes 3 + 1
    padded.write_text(
        "7767517\n4 4\nInput in0 0 1 in0 0=8 1=8 2=3\nPadding pad 1 1 in0 p0 0=1 1=1 2=1 3=1 7=1\n"
        "ReLU relu 1 1 p0 r0\nConvolution conv 1 1 r0 out0 0=2 1=3 11=3 6=72\n"
    )
    check_input_shape(padded, [1, 3, 8, 8])
    with pytest.raises(
        InputDataError, match=r"has 4 channels; the model's first convolution \(Convolution out0\) takes 3"
    ):
        check_input_shape(padded, [1, 4, 8, 8])
    reshaped = tmp_path / "reshaped.param"  # no convolution reached: the Input's declared 2= says
    reshaped.write_text("7767517\n2 2\nInput in0 0 1 in0 0=8 1=8 2=3\nReshape r 1 1 in0 out0 0=-1\n")
    check_input_shape(reshaped, [1, 3, 8, 8])
    with pytest.raises(InputDataError, match=r"has 5 channels; the model's Input \(in0: 2=3\) takes 3"):
        check_input_shape(reshaped, [1, 5, 8, 8])


def test_a_1d_or_2d_shape_is_one_channel_and_another_rank_than_the_sidecar_states_is_refused(
    tmp_path: Path,
) -> None:
    """`bench --shape 1,32` (or 32) of a 3-channel model ran and printed a board ESTIMATE (pi4-emu, exit 0) or
    failed in ncnn's extract (local, -100): a 1-D or 2-D shape skipped the check, though ncnn makes a one-channel
    Mat of it. It is one channel now; and a shape of another rank than model.io.json states is refused where the
    channels do not tell (a one-channel model), unless it holds as many numbers (the agent reshapes it)."""
    rgb = tmp_path / "rgb.param"
    rgb.write_text("7767517\n2 2\nInput in0 0 1 in0\nConvolution conv 1 1 in0 out0 0=2 1=3 11=3 6=54\n")
    for shape in ([1, 32], [32], [32, 32]):
        with pytest.raises(
            InputDataError, match=r"has 1 channel \(ncnn reads a [12]-D input as (W|H,W): 1 channel\)"
        ):
            check_input_shape(rgb, shape)
    check_input_shape(rgb, [1, 3, 32, 32])
    gray = tmp_path / "gray.param"
    gray.write_text("7767517\n2 2\nInput in0 0 1 in0\nConvolution conv 1 1 in0 out0 0=2 1=3 11=3 6=18\n")
    (tmp_path / "gray.io.json").write_text(json.dumps({"input_shapes": [[1, 1, 8, 8]]}))
    with pytest.raises(
        InputDataError, match=r"input shape \[16, 16\] is 2-D to ncnn .* states 1,1,8,8 \(3-D\)"
    ):
        check_input_shape(gray, [16, 16])
    for runs in ([64], [1, 1, 16, 16], [1, 16, 16]):  # as many numbers (reshaped), or the stated rank
        check_input_shape(gray, runs)


def test_a_bare_params_errors_name_the_users_file_its_sidecar_and_its_declared_shape(tmp_path: Path) -> None:
    """Errors named /root/.local/share/edgekit/zero-weights/<hash>/blazeface.param, "its model.io.json sidecar"
    and hinted 1,3,224,224; a wrong channel count exited 0 (roofline) or crashed the guest (estimate)."""
    shutil.copy(BENCHMARK / "blazeface.param", tmp_path / "bf.param")
    for command in ("roofline", "estimate"):
        out = procs.run(command, "bf.param", "--board", "pi4", cwd=tmp_path)
        assert out.returncode == 2, out.stderr
        assert "error (InputDataError): bf.param: an ncnn model without its bf.io.json sidecar" in out.stderr
        assert "--input-shape 1,3,128,128" in out.stderr and "zero-weights" not in out.stderr, out.stderr
        wrong = procs.run(command, "bf.param", "--board", "pi4", "--input-shape", "1,4,128,128", cwd=tmp_path)
        assert wrong.returncode == 2, wrong.stderr
        assert "bf.param: input shape [1, 4, 128, 128] has 4 channels" in wrong.stderr, wrong.stderr
        assert "--input-shape 1,3,128,128" in wrong.stderr and "zero-weights" not in wrong.stderr
    missing = procs.run("roofline", "nothere.param", "--board", "pi4", cwd=tmp_path)
    assert missing.returncode == 2 and "no such model file" in missing.stderr, missing.stderr


def test_a_tiny_estimate_keeps_significant_figures() -> None:
    """A 64x10 MatMul's estimate was stored and printed as 0 ms (3 decimals)."""
    est = cost_model.estimate("pi5", cost_model.Features(0, 650, False, {}, 640))
    d = est.to_dict()
    for key in ("estimate_ms", "low_ms", "high_ms"):
        assert d[key] > 0 and d[key] == pytest.approx(getattr(est, key), rel=1e-3), (key, d[key])
    assert cost_model.significant(12345.6789) == 12345.679  # never fewer decimals than before
    assert cost_model.significant(0.000123456) == 0.0001235


def test_a_count_within_a_percent_of_the_calibration_range_is_inside_it() -> None:
    """blazeface counted again (14,524,113 instructions, 0.016 % under its stored count) was "fewer than any
    calibration model" and its interval widened from -14/+17 % to -21/+26 %."""
    lo, hi = cost_model.calibration_range("pi4")
    at = cost_model.estimate("pi4", cost_model.Features(lo), 1)
    for work in (int(lo * 0.99984), int(lo * 0.995), int(hi * 1.005)):
        est = cost_model.estimate("pi4", cost_model.Features(work), 1)
        assert not any("calibration model" in c and "than any" in c for c in est.caveats), est.caveats
        assert est.high_ms / est.estimate_ms == pytest.approx(at.high_ms / at.estimate_ms)
    beyond = cost_model.estimate("pi4", cost_model.Features(int(lo * 0.98)), 1)
    assert any("fewer than any calibration model" in c for c in beyond.caveats)


def test_a_widened_interval_says_which_interval_held(capsys: pytest.CaptureFixture[str]) -> None:
    """An int8 estimate's interval is widened; "interval held 15 of 17" beside it counted the ordinary one, and
    cross_validation.heaviest was the forms heaviest in some fold, not this estimate's."""
    from edgekit.cli import estimate as cli

    lo, hi = cost_model.calibration_range("pi4")
    est = cost_model.estimate("pi4", cost_model.Features(int((lo * hi) ** 0.5), int8=True), 1)
    cv = est.to_dict()["cross_validation"]
    assert cv["interval"] != cv["procedure_interval"] == cv["held_interval"]
    assert "heaviest" not in cv and cv["heaviest_in_folds"]
    bound = {"bound": "compute", "lower_bound_ms": 0.1, "precision": "int8", "peak_gmacs": 1.0, "label": "b"}
    out = {
        "artifact": "m.param",
        "threads": 1,
        "runs_as": "ncnn",
        "estimate": est.to_dict(),
        "roofline": bound,
    }
    cli._print_estimate(out, "Pi 4")
    said = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert f"the ordinary {cv['procedure_interval']} interval held {cv['held']} of {cv['n']}" in said, said
    plain = cost_model.estimate("pi4", cost_model.Features(int((lo * hi) ** 0.5)), 1)
    cli._print_estimate({**out, "estimate": plain.to_dict()}, "Pi 4")
    assert "ordinary" not in capsys.readouterr().out


def test_the_roofline_in_the_json_is_the_one_the_note_judged(tmp_path: Path) -> None:
    """bound_note sets the bound "none" when the count cannot hold the graph's MACs; the JSON's roofline was
    taken before it, so it said "compute" beside "no bound here"."""
    param = write_chain(tmp_path / "chain", 2)
    script = (
        "import sys; import edgekit.estimate.roofline as r; r.macs_the_count_can_hold = lambda mix, p: 1; "
        "from edgekit.cli import main; sys.argv = ['edgekit', *sys.argv[1:]]; main()"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "estimate",
            str(param),
            "--board",
            "pi4",
            "--json",
            "--input-shape",
            f"1,{CHANNELS},{SIZE},{SIZE}",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert any("is no bound here" in c for c in data["estimate"]["caveats"])
    assert data["roofline"]["bound"] == "none"


DIGESTS = """
import os, sys
from pathlib import Path
from edgekit.estimate.counts import _file_digest
for i in range(40):
    p = Path(sys.argv[1]) / f"f_{sys.argv[2]}_{i}.bin"
    p.write_bytes(os.urandom(64))
    _file_digest(p)
"""


def test_concurrent_runs_keep_the_digest_memo_whole(tmp_path: Path) -> None:
    """Every run wrote the memo through one `digests.tmp`: 4 at once renamed it from under each other
    (FileNotFoundError)."""
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", DIGESTS, str(tmp_path), str(n)], env=env, stderr=subprocess.PIPE, text=True
        )
        for n in range(4)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    counts = next((tmp_path / "home").rglob("digests.json")).parent
    assert json.loads((counts / "digests.json").read_text())
    assert not [p.name for p in counts.iterdir() if p.suffix == ".tmp"]


def test_more_threads_than_the_boards_cores_are_not_a_validated_interval(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`-t 8` on a Pi 4 printed the 4-thread estimate as a validated 80 % interval under "8 thread(s)": eight
    workers on four cores wait on each other, which no calibration figure measured."""
    from edgekit.cli import estimate as cli

    lo, hi = cost_model.calibration_range("pi4")
    features = cost_model.Features(int((lo * hi) ** 0.5))
    four, eight = (cost_model.estimate("pi4", features, t) for t in (4, 8))
    assert four.calibrated and not four.not_validated
    assert not eight.calibrated and "8 threads on 4 cores" in eight.not_validated
    assert eight.estimate_ms == pytest.approx(four.estimate_ms) and eight.high_ms > four.high_ms
    bound = {"bound": "compute", "lower_bound_ms": 0.1, "precision": "fp32", "peak_gmacs": 1.0, "label": "b"}
    out = {
        "artifact": "m.param",
        "threads": 8,
        "runs_as": "ncnn",
        "estimate": eight.to_dict(),
        "roofline": bound,
    }
    cli._print_estimate(out, "Pi 4")
    said = re.sub(r"\s+", " ", capsys.readouterr().out)
    assert "8 threads, estimated as 4" in said and "not validated" in said, said


def test_a_not_validated_interval_states_no_level(capsys: pytest.CaptureFixture[str]) -> None:
    """`estimate --json` kept "interval_level": 0.8 beside "interval_calibrated": false and the widest interval of
    any group (-69/+221 %), a level no cross-validation backs; the text said "80 % interval" before "not
    validated". A not validated interval now states no level (null), and the text says "interval"."""
    from edgekit.cli import estimate as cli

    lo, hi = cost_model.calibration_range("pi4")
    features = cost_model.Features(int((lo * hi) ** 0.5))
    validated = cost_model.estimate("pi4", features, 1).to_dict()
    assert validated["interval_calibrated"] and validated["interval_level"] == 0.8
    tflite = cost_model.estimate("pi4", features, 1, fmt=Format.TFLITE_FP32).to_dict()
    two = cost_model.estimate("pi4", features, 2).to_dict()  # interpolated: no calibration figure at 2
    for shown in (tflite, two):
        assert shown["interval_calibrated"] is False and shown["interval_level"] is None, shown
    bound = {"bound": "compute", "lower_bound_ms": 0.1, "precision": "fp32", "peak_gmacs": 1.0, "label": "b"}
    for est, level in ((validated, "80 % interval"), (tflite, "interval"), (two, "interval")):
        out = {
            "artifact": "m.param",
            "threads": est["threads"],
            "runs_as": "ncnn",
            "estimate": est,
            "roofline": bound,
        }
        cli._print_estimate(out, "Pi 4")
        line = next(x for x in capsys.readouterr().out.splitlines() if "estimate " in x)
        assert f" ms, {level} " in line and ("80 %" in line) == (level != "interval"), line


def test_a_mac_estimate_below_every_published_figure_is_not_validated() -> None:
    """blazeface's MACs gave 5.58 ms "80 % interval 2.3 .. 13.5 ms" as validated, beside a note that the figure is
    below every calibration model's (12.7 ms) and nothing the calibration set covers speaks for it."""
    lo, _ = cost_model.calibration_range("pi4", counted=False)
    small = cost_model.estimate("pi4", cost_model.Features(0, 100_000, False, {}, lo))  # within the MAC range
    assert any("below the fastest figure" in c for c in small.caveats), small.caveats
    assert not small.calibrated and "below every calibration model" in small.not_validated
    big = cost_model.estimate("pi4", cost_model.Features(0, 3_500_000, False, {}, 300_000_000))
    assert not any("below the fastest figure" in c for c in big.caveats)
    assert big.calibrated, big.not_validated


def test_roofline_says_when_its_interval_is_not_validated(tmp_path: Path) -> None:
    """`roofline` printed "80 % interval" with no "not validated" where `estimate` says it: a 0.000006 ms interval
    for a 144-MAC model, extrapolated 50,000x below anything cross-validated."""
    param = BENCHMARK / "blazeface.param"
    args = ("roofline", str(param), "--input-shape", "1,3,128,128", "--board", "pi4")
    shown = procs.run(*args, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if " interval " in x)
    assert "not validated" in line and "80 %" not in line, shown.stdout
    data = json.loads(procs.run(*args, "--json", cwd=tmp_path).stdout)
    assert data["estimate"]["interval_calibrated"] is False


def test_a_count_beyond_the_calibration_range_says_the_threads_it_was_taken_at() -> None:
    """A count taken at 99 threads was called "641k instructions (1 thread)" in the out-of-range caveat: the
    caveat names the threads the count was taken at."""
    feats = cost_model.Features(641_000, 3_000, False, {}, 100_000)
    notes = " ".join(cost_model.estimate("pi4", feats, 4, count_threads=99).caveats)
    assert "0.641 M instructions (99 threads): fewer than any calibration model" in notes, notes
    notes = " ".join(cost_model.estimate("pi4", feats, 1).caveats)
    assert "0.641 M instructions (1 thread): fewer" in notes, notes


@pytest.mark.parametrize("board", ["pi4", "pi5"])
def test_a_one_thread_graph_estimate_reads_the_stored_cross_validation(
    board: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A graph-only estimate at one thread (`roofline`, `estimate` of a model without counts) has the split
    ('busiest') among its features, which no stored procedure key held: each run cross-validated the whole
    procedure again (614 fits, ~1.5 s). At one thread no form reads the split, so the stored figures without it
    are the same procedure's: the same summary as computing it, without computing it."""
    from edgekit.estimate import crossval

    available = ("busiest", "macs", "params")
    assert crossval.procedure_key(board, 1, available) not in crossval.stored_procedure_errors()
    compute = crossval.procedure_errors

    def computed_again(*args: object) -> None:
        raise AssertionError(f"the procedure was cross-validated again for {args}")

    crossval.procedure_cv.cache_clear()
    with monkeypatch.context() as patch:
        patch.setattr(crossval, "procedure_errors", computed_again)
        stored = crossval.procedure_cv(board, 1, available)
    crossval.procedure_cv.cache_clear()
    computed = crossval.procedure_summary(compute(board, 1, available))
    assert stored == pytest.approx(computed, rel=1e-6), (stored, computed)  # stored to 8 digits


FUSED_KERNELS = """7767517
4 4
Input            data             0 1 data 0=32 1=32 2=3
Convolution      conv1            1 1 data c1 0=16 1=3 3=2 4=1 5=1 6=432 9=6 -23310=2,1.666667e-01,5.000000e-01
Convolution      conv2            1 1 c1 c2 0=16 1=3 2=2 4=2 5=1 6=2304 9=1
Interp           up               1 1 c2 out 0=3 1=2.0 2=2.0
"""


def test_kernels_no_calibration_model_runs_widen_the_interval_inside_known_layer_types(
    tmp_path: Path,
) -> None:
    """Review r19 #3: a model with only the calibration models' layer types but a HardSwish fused into its
    convolution (ncnnoptimize's MobileNetV3), a dilated convolution and a bicubic Interp, kernels none of the 17
    runs, got the ordinary interval as validated, where the same HardSwish as a layer of its own widened it."""
    from edgekit.estimate import groups
    from edgekit.estimate.ncnn_kernels import layer_kernels

    assert layer_kernels("Convolution", {"0": "16", "9": "6"}) == {"Convolution", "fused hardswish"}
    assert layer_kernels("ConvolutionDepthWise", {"2": "2"}) == {
        "ConvolutionDepthWise",
        "ConvolutionDepthWise dilated",
    }
    assert layer_kernels("Convolution", {"2": "1", "12": "2"}) == {"Convolution", "Convolution dilated"}
    assert layer_kernels("InnerProduct", {"2": "4096"}) == {"InnerProduct"}  # 2 is its weight size there
    assert layer_kernels("Interp", {"0": "2"}) == {"Interp", "Interp bilinear"}
    assert layer_kernels("HardSwish", {"9": "6"}) == {"HardSwish"}  # 9 means nothing there
    # every calibration model's own kernels are calibrated, and the six models with a kernel the other 16 lack
    # (the held-out figures behind the wide interval, README) are the six they were by layer type alone
    for name in calibration.models():
        assert not calibration.uncalibrated_layer_types(calibration.model_layer_types(name)), name
    by_type = {
        name: {layer.type for layer in read_param(m.param).layers} for name, m in calibration.models().items()
    }
    alone = [n for n, own in by_type.items() if own - set().union(*(t for k, t in by_type.items() if k != n))]
    assert groups.novel_layer_models() == sorted(alone) and len(alone) == 6, alone
    (tmp_path / "k.param").write_text(FUSED_KERNELS)
    out = procs.run(
        "roofline", "k.param", "--board", "pi4", "--input-shape", "1,3,32,32", "--json", cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    caveats = " ".join(json.loads(out.stdout)["estimate"]["caveats"])
    assert (
        "layer types no calibration model has: Convolution dilated, Interp bicubic, fused hardswish;"
        in caveats
    ), caveats
