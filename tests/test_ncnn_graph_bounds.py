"""A crafted ncnn .param that asks for gigabytes is refused, named, before ncnn allocates them on this host."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.errors import InputDataError
from edgekit.estimate.graph import analyze
from edgekit.estimate.ncnn_bounds import ModelTooLargeError
from edgekit.estimate.zero_weights import write_zeros, zero_bin_bytes

SHAPE = [1, 3, 224, 224]
INPUT = "Input data 0 1 data 0=224 1=224 2=3"


def _param(folder: Path, *lines: str, weights: bool = True) -> Path:
    """A .param of the Input and `lines`, with the all-zero .bin ncnn reads for it beside it (`weights`)."""
    path = folder / "m.param"
    path.write_text(f"7767517\n{len(lines) + 1} {len(lines) + 1}\n{INPUT}\n" + "\n".join(lines) + "\n")
    if weights:
        write_zeros(path.with_suffix(".bin"), zero_bin_bytes(path))
    return path


def _limit_memory() -> None:
    """The code before the bound allocated ~20 GB here: the test fails on a 4 GB cap instead of OOM-killing."""
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def _roofline_under_4gb(param: Path) -> subprocess.CompletedProcess[str]:
    """`edgekit roofline` on a bare .param, its address space capped at 4 GB."""
    args = ["roofline", str(param), "--input-shape", "1,3,224,224", "--board", "pi4"]
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_limit_memory,
    )


def test_a_convolution_whose_output_takes_gigabytes_is_refused_by_name(tmp_path: Path) -> None:
    """100000 outputs on a 224x224 input: 19 GB of float32, from 2.7 M weights (10 MB) that load fine."""
    path = _param(tmp_path, "Convolution c 1 1 data out 0=100000 1=3 4=1 5=1 6=2700000")
    with pytest.raises(ModelTooLargeError) as err:
        analyze(path, SHAPE)
    assert "layer 'c' (Convolution): its output would hold up to" in err.value.message
    assert "GB of float32" in err.value.message and "smaller input shape" in (err.value.hint or "")
    assert isinstance(err.value, InputDataError) and err.value.exit_code == 2


def test_the_roofline_command_refuses_it_with_exit_2_and_no_input_blamed(tmp_path: Path) -> None:
    param = tmp_path / "bigconv.param"  # bare: the command reads its weights as zeros
    param.write_text(f"7767517\n2 2\n{INPUT}\nConvolution c 1 1 data out 0=100000 1=3 4=1 5=1 6=2700000\n")
    done = _roofline_under_4gb(param)
    assert done.returncode == 2, done.stderr
    assert "error (ModelTooLargeError)" in done.stderr and "layer 'c' (Convolution)" in done.stderr
    assert "cannot take that input" not in done.stderr


def test_weights_over_the_cap_are_refused_before_ncnn_loads_them(tmp_path: Path) -> None:
    """300 M weight values (1.1 GB): refused from the params alone, before the .bin is even looked for."""
    path = _param(tmp_path, "InnerProduct fc 1 1 data out 0=10 1=1 2=300000000", weights=False)
    with pytest.raises(
        ModelTooLargeError, match=r"layer 'fc' \(InnerProduct\): its weights would hold up to"
    ):
        analyze(path, SHAPE)


def test_a_bare_params_huge_weights_are_refused_before_its_zero_weights_are_made(tmp_path: Path) -> None:
    """A .param without a .bin is given zero weights by loading it in ncnn: 2,000,000,000 weight values (8 GB)
    were allocated there before any bound was checked."""
    param = tmp_path / "bigweights.param"
    param.write_text(f"7767517\n2 2\n{INPUT}\nConvolution c 1 1 data out 0=16 1=3 5=1 6=2000000000\n")
    done = _roofline_under_4gb(param)
    assert done.returncode == 2, done.stderr
    assert "error (ModelTooLargeError)" in done.stderr and "its weights would hold up to" in done.stderr


@pytest.mark.parametrize(
    ("line", "name"),
    [
        ("Interp up 1 1 data out 0=1 1=1000.0 2=1000.0", "up"),  # a 224,000 x 224,000 resize
        ("Padding pad 1 1 data out 0=100000 1=100000 2=100000 3=100000", "pad"),
        ("Deconvolution dc 1 1 data out 0=64 1=3 3=200 6=1728", "dc"),  # stride 200: 44,800 x 44,800 x 64
    ],
)
def test_layers_that_grow_their_input_are_bounded_from_its_shape(
    tmp_path: Path, line: str, name: str
) -> None:
    path = _param(tmp_path, line)
    with pytest.raises(ModelTooLargeError, match=f"layer '{name}'"):
        analyze(path, SHAPE)


def test_a_model_of_ordinary_size_is_read_as_before(tmp_path: Path) -> None:
    path = _param(
        tmp_path,
        "Convolution c 1 1 data c1 0=16 1=3 4=1 5=1 6=432",
        "Interp up 1 1 c1 out 0=1 1=2.0 2=2.0",
    )
    cost = analyze(path, SHAPE)
    assert cost.macs == 432 * 224 * 224
    assert cost.activation_bytes == 4 * (3 + 16 + 16 + 64) * 224 * 224  # conv in/out, resize in/out (2x2)
