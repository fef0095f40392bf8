"""Bad input a new user gives (an empty .npy, an ONNX onnxruntime cannot load, a NUL byte in a path, a model bench
cannot feed) ends in a named error and exit 2, through the real `edgekit` command; never "this is a bug"."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from procs import named, run


def small_onnx(
    path: Path,
    *,
    op: tuple[str, str] = ("", "Relu"),
    opset: int = 17,
    batch: str | int = "N",
    inputs: tuple[str, ...] = ("x",),
) -> Path:
    """x (batch, 3, 16, 16) -> OP -> GlobalAveragePool -> Flatten: logits (batch, 3); a second input is added in."""
    domain, name = op
    nodes = [helper.make_node(name, ["x"], ["a"], domain=domain)]
    first = "a"
    for extra in inputs[1:]:
        nodes.append(helper.make_node("Add", [first, extra], [f"{first}_{extra}"]))
        first = f"{first}_{extra}"
    nodes += [
        helper.make_node("GlobalAveragePool", [first], ["p"]),
        helper.make_node("Flatten", ["p"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [batch, 3, 16, 16]) for n in inputs],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3])],
    )
    opsets = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def recipe(folder: Path, model: str, extra: str = "", formats: str = "[onnx-fp32]") -> Path:
    path = folder / "r.yaml"
    path.write_text(
        f"name: r\nmodel: {{kind: onnx, path: {model}}}\ninput: {{name: x, shape: [1, 3, 16, 16]}}\n"
        f"formats: {formats}\n{extra}"
    )
    return path


# --- A: named errors instead of internal ones ---------------------------------------------------------------
@pytest.mark.parametrize(
    "section, formats",
    [("evaluation", "[onnx-fp32]"), ("calibration", "[onnx-fp32, ncnn-int8]")],
)
def test_an_empty_npy_is_a_recipe_error_naming_its_field(tmp_path: Path, section: str, formats: str) -> None:
    small_onnx(tmp_path / "m.onnx")
    np.save(tmp_path / "zero.npy", np.zeros((0, 3, 16, 16), np.float32))
    extra = f"{section}: {{data: {{kind: npy, path: zero.npy}}}}\n"
    if section == "calibration":
        extra += "evaluation: {data: {kind: random, samples: 2}}\n"
    recipe(tmp_path, "m.onnx", extra, formats)
    err = named(run("convert", "r.yaml", cwd=tmp_path))
    assert "error (RecipeError)" in err and f"field `{section}.data.path`" in err and "holds 0 samples" in err


@pytest.mark.parametrize(
    "op, opset, said",
    [(("com.me", "MyOp"), 17, "com.me:MyOp"), (("", "Relu"), 30, "Opset 30")],
)
def test_an_onnx_onnxruntime_cannot_load_is_refused_before_converting(
    tmp_path: Path, op: tuple[str, str], opset: int, said: str
) -> None:
    small_onnx(tmp_path / "m.onnx", op=op, opset=opset)
    recipe(tmp_path, "m.onnx", formats="[onnx-fp32, ncnn-fp32]")
    err = named(run("convert", "r.yaml", cwd=tmp_path))
    assert "error (InputDataError)" in err and "field `model.path`" in err, err
    assert said in err and str(tmp_path / "m.onnx") in err and "cannot load" in err and "hint:" in err
    assert "converting with" not in err  # refused before any converter ran
    cache = Path(os.environ["EDGEKIT_HOME"]) / "cache" / "onnx"
    assert not any(cache.glob("*/original.onnx")) or all(
        "MyOp" not in p.read_bytes().decode("latin-1") for p in cache.glob("*/original.onnx")
    )


def test_run_onnx_names_a_model_it_cannot_load(tmp_path: Path) -> None:
    from edgekit.errors import InputDataError
    from edgekit.runtimes import run_onnx

    path = small_onnx(tmp_path / "m.onnx", op=("com.me", "MyOp"))
    with pytest.raises(InputDataError, match=r"cannot load .*m\.onnx: .*com\.me:MyOp"):
        run_onnx(path, np.zeros((1, 3, 16, 16), np.float32))


@pytest.mark.parametrize(
    "model, extra, field",
    [
        ('"m.onnx\\0.txt"', "", "model.path"),
        ("m.onnx", 'evaluation: {data: {kind: npy, path: "/tmp/a\\0b.npy"}}\n', "evaluation.data.path"),
    ],
)
def test_a_nul_byte_in_a_path_is_a_recipe_error_naming_the_field(
    tmp_path: Path, model: str, extra: str, field: str
) -> None:
    small_onnx(tmp_path / "m.onnx")
    recipe(tmp_path, model, extra)
    err = named(run("convert", "r.yaml", cwd=tmp_path))
    assert "error (RecipeError)" in err and f"field `{field}`" in err and "NUL byte" in err


# --- B: bench checks a dynamic-batch ONNX before the agent starts ------------------------------------------
@pytest.mark.parametrize(
    "shape, takes",
    [("1,3,17,16", "1,3,16,16"), ("1,4,16,16", "1,3,16,16"), ("1,3,16", "1,3,16,16")],
)
def test_bench_refuses_a_shape_a_dynamic_batch_onnx_cannot_take(
    tmp_path: Path, shape: str, takes: str
) -> None:
    small_onnx(
        tmp_path / "m.onnx", batch="batch"
    )  # the README's export style: dynamic_axes={"x": {0: "batch"}}
    err = named(run("bench", "m.onnx", "--target", "host", "--shape", shape, cwd=tmp_path))
    assert "error (UsageError): --shape:" in err and f"this model takes {takes}" in err, err
    assert "does not fit" in err


def test_bench_runs_a_dynamic_batch_onnx_at_a_shape_that_fits(tmp_path: Path) -> None:
    small_onnx(tmp_path / "m.onnx", batch="batch")
    # --input-shape, as estimate and profile spell it, is the same option as --shape
    out = run(
        "bench", "m.onnx", "--target", "host", "--repeat", "2", "--input-shape", "1,3,16,16", cwd=tmp_path
    )
    assert out.returncode == 0, (out.stdout[-800:], out.stderr[-1500:])


@pytest.mark.parametrize("args", [[], ["--shape", "1,3,16,16"]])
def test_bench_refuses_an_onnx_of_two_inputs(tmp_path: Path, args: list[str]) -> None:
    small_onnx(tmp_path / "m.onnx", batch=1, inputs=("x", "y"))
    err = named(run("bench", "m.onnx", "--target", "host", *args, cwd=tmp_path))
    assert "error (UsageError)" in err and "2 inputs ('x', 'y')" in err and "bench feeds one input" in err


def test_bench_refuses_an_input_file_a_dynamic_batch_onnx_cannot_take(tmp_path: Path) -> None:
    small_onnx(tmp_path / "m.onnx", batch="batch")
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 3, 17, 16), np.float32))
    err = named(run("bench", "m.onnx", "--target", "host", "--input", "x.npy", cwd=tmp_path))
    assert "error (UsageError): --input:" in err and "samples of shape [1, 3, 16, 16]" in err, err


def test_bench_refuses_an_input_file_of_complex_numbers_by_type(tmp_path: Path) -> None:
    """`--input c64.npy` printed a raw ComplexWarning and timed the real parts."""
    small_onnx(tmp_path / "m.onnx", batch=1)
    np.save(tmp_path / "c.npy", np.ones((2, 1, 3, 16, 16), np.complex64))
    err = named(run("bench", "m.onnx", "--target", "host", "--input", "c.npy", cwd=tmp_path))
    assert "error (InputDataError): c.npy: --input: an array of complex64 (complex numbers" in err, err
    assert "ComplexWarning" not in err


def test_bench_refuses_shape_beside_input_and_inputs_holding_nan(tmp_path: Path) -> None:
    """`--input good.npy --shape 1,3,64,64` timed the file and ignored --shape (which did not fit the model);
    `--input nan.npy` timed all-NaN inputs, which recipe data refuses by name."""
    small_onnx(tmp_path / "m.onnx", batch=1)
    good = np.zeros((2, 1, 3, 16, 16), np.float32)
    np.save(tmp_path / "good.npy", good)
    err = named(
        run("bench", "m.onnx", "-t", "host", "--input", "good.npy", "--shape", "1,3,64,64", cwd=tmp_path)
    )
    assert "error (UsageError): --shape: --shape sets the shape of random inputs" in err, err
    good[1, 0, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", good)
    err = named(run("bench", "m.onnx", "-t", "host", "--input", "nan.npy", cwd=tmp_path))
    assert "error (InputDataError): nan.npy: sample 1 (index from 0; 1 of 2 samples) holds NaN" in err, err
    np.save(tmp_path / "big.npy", np.full((1, 1, 3, 16, 16), 1e39))  # float64 beyond float32: infinite
    err = named(run("bench", "m.onnx", "-t", "host", "--input", "big.npy", cwd=tmp_path))
    assert "big.npy: sample 0" in err and "RuntimeWarning" not in err, err


def test_bench_on_the_host_refuses_set_as_profile_does(tmp_path: Path) -> None:
    """`bench X -t host --set key=x` ignored --set without a word (profile refused it)."""
    small_onnx(tmp_path / "m.onnx", batch=1)
    err = named(run("bench", "m.onnx", "-t", "host", "--set", "key=x", cwd=tmp_path))
    assert "error (UsageError): --set: --set overrides a target's fields; host has none" in err, err


# --- E: a failed run's summary: one line per format, each hint once, at the recipe and format ----------------
def argmax_onnx(path: Path) -> Path:
    """x -> GlobalAveragePool -> Flatten: logits, and ArgMax(logits): a layer this ncnn build leaves out."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Flatten", ["p"], ["logits"]),
        helper.make_node("ArgMax", ["logits"], ["cls"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3]),
            helper.make_tensor_value_info("cls", TensorProto.INT64, [1]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def final_error(stderr: str) -> str:
    return stderr[stderr.index("\nerror (") + 1 :]


def test_two_failed_formats_are_summed_up_one_line_each_with_their_hint_once(tmp_path: Path) -> None:
    argmax_onnx(tmp_path / "m.onnx")
    recipe(tmp_path, "m.onnx", "calibration: {data: {kind: random, samples: 4}}\n", "[ncnn-fp32, ncnn-int8]")
    out = run("convert", "r.yaml", cwd=tmp_path)
    assert out.returncode == 1, (out.stdout[-800:], out.stderr[-2000:])
    error = final_error(out.stderr)
    assert error.startswith("error (ConversionError): r.yaml: 2 formats failed:\n"), error
    lines = error.splitlines()
    said = [line for line in lines if "has no layer for ArgMax" in line]
    assert [line.split(":")[0].strip() for line in said] == ["ncnn-fp32", "ncnn-int8"], error
    assert len(lines) == 4 and error.count("hint:") == 1 and lines[-1].startswith("  hint: compute it after")
    assert "edgekit-int8-" not in out.stderr  # a temporary copy, gone before the error was read
    assert "/work/" not in error  # no scratch file as the place


def test_one_failed_format_is_located_at_the_recipe_and_format(tmp_path: Path) -> None:
    argmax_onnx(tmp_path / "m.onnx")
    recipe(tmp_path, "m.onnx", formats="[ncnn-fp32, onnx-fp32]")
    out = run("convert", "r.yaml", cwd=tmp_path)
    assert out.returncode == 1, (out.stdout[-800:], out.stderr[-2000:])
    error = final_error(out.stderr)
    assert error.startswith(
        "error (ConversionError): r.yaml: ncnn-fp32: this ncnn build has no layer for ArgMax"
    )
    assert error.count("hint:") == 1 and "/work/" not in error, error


# --- C: -f of the Keras-only onnx2tf route is refused as the recipe's own formats are --------------------------
def test_int8_only_with_formats_none_of_which_is_int8_says_so(tmp_path: Path) -> None:
    """`convert tiny.yaml --int8-only -f onnx-fp32` said 'no INT8 format in this recipe, nothing to do' (exit 0) of
    a recipe listing two: the selection has none, a usage error naming the recipe's INT8 formats."""
    tiny = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
    err = named(run("convert", str(tiny), "--int8-only", "-f", "onnx-fp32", cwd=tmp_path, timeout=120))
    assert "--int8-only: none of the formats chosen with --format (onnx-fp32) is INT8" in err, err
    assert "this recipe's: tflite-int8, ncnn-int8" in err and "in this recipe, nothing to do" not in err, err
    path = recipe(
        tmp_path, "m.onnx"
    )  # no INT8 format: nothing to do, as `make quantize` runs it on every recipe
    small_onnx(tmp_path / "m.onnx", batch=1)
    out = run("convert", str(path), "--int8-only", cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and "r: no INT8 format in this recipe, nothing to do" in out.stdout, out


@pytest.mark.skipif(importlib.util.find_spec("executorch") is not None, reason="executorch is installed here")
def test_a_format_whose_converter_is_not_installed_is_named_once(tmp_path: Path) -> None:
    """`convert tiny.yaml -f executorch-fp32` said `executorch-fp32: executorch-fp32: executorch is not installed`:
    the converter named the format and the pipeline named it again."""
    tiny = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
    out = run("convert", str(tiny), "-f", "executorch-fp32", cwd=tmp_path, timeout=300)
    assert out.returncode == 1 and "tiny.yaml: executorch-fp32: executorch is not installed" in out.stderr, (
        out
    )
    assert "executorch-fp32: executorch-fp32" not in out.stderr + out.stdout, out


def test_dash_f_onnx2tf_route_on_an_onnx_recipe_is_a_recipe_error(tmp_path: Path) -> None:
    small_onnx(tmp_path / "m.onnx")
    recipe(tmp_path, "m.onnx")
    err = named(run("convert", "r.yaml", "-f", "tflite-onnx2tf-fp32", cwd=tmp_path))
    assert (
        "error (RecipeError): r.yaml: tflite-onnx2tf-fp32: the onnx2tf route" in err
        and "`kind: keras`" in err
    )
    assert "ask for tflite-fp32 instead" in err and "toolchain" not in err


# --- F: model files that crashed or broke edgekit's own reading of them ---------------------------------------
TINY = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
MNN_LOAD = "import sys, MNN; MNN.nn.load_module_from_file(sys.argv[1], [], [])"


@pytest.mark.skipif(importlib.util.find_spec("MNN") is None, reason="needs the MNN package")
def test_a_mnn_file_that_crashes_mnn_is_named_not_a_segfault(tmp_path: Path) -> None:
    """One flipped byte in a .mnn can make MNN's loader crash (SIGSEGV) rather than raise: bench checked the file
    with MNN inside edgekit's own process, which died with exit 139. The check now loads it in a child process
    and names the signal (exit 2)."""
    from edgekit.convert.pipeline import convert_recipe
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe

    (art,) = convert_recipe(load_recipe(TINY), [Format.MNN_FP32])
    good = art.main_file.read_bytes()
    bad = tmp_path / "one_byte.mnn"
    rng = np.random.default_rng(0)
    for offset in [24064, *rng.integers(len(good) // 2, len(good), 80).tolist()]:  # ~1 flip in 10 crashes MNN
        data = bytearray(good)
        data[offset] = 0xBA
        bad.write_bytes(bytes(data))
        crashed = subprocess.run([sys.executable, "-c", MNN_LOAD, str(bad)], capture_output=True, timeout=60)
        if crashed.returncode < 0:
            break
    else:
        pytest.fail(
            "no one-byte change of tiny's .mnn crashed MNN's loader: the test needs another corruption"
        )
    err = named(run("bench", "one_byte.mnn", "--target", "host", cwd=tmp_path, timeout=120))
    assert "error (InputDataError): one_byte.mnn: not a readable .mnn model (MNN crashed loading it" in err, (
        err
    )
    assert "SIGSEGV" in err or "signal" in err
    assert "hint:" in err


@pytest.mark.parametrize(
    "text, said",
    [
        (
            b"7767517\n1 1\nInput in0 x 1 in0\n",
            "line 3: layer 'in0' (Input): its input and output blob counts",
        ),
        (b"7767517\n1 1\nInput in0 0 1 in0 0=\xff\n", "line 3: byte 0xff is not UTF-8 text"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [
        ("bench", "a.param", "--target", "host", "--shape", "1,3,32,32"),
        ("estimate", "a.param", "--board", "pi4", "--input-shape", "1,3,32,32"),
        ("roofline", "a.param", "--board", "pi4", "--input-shape", "1,3,32,32"),
        ("profile", "a.param", "--target", "host"),
        ("profile", "a.param", "--target", "pi4"),  # refused on the host, before any connection
        ("bench", "a.bin", "--target", "host"),
    ],
)
def test_a_malformed_ncnn_param_is_named_with_its_line(
    tmp_path: Path, text: bytes, said: str, command: tuple[str, ...]
) -> None:
    """A layer line whose blob counts are not numbers, or a byte that is not UTF-8, was "internal error
    (ValueError / UnicodeDecodeError)" (exit 1) in bench, estimate and roofline: now the file and line, exit 2."""
    (tmp_path / "a.param").write_bytes(text)
    (tmp_path / "a.bin").write_bytes(b"")
    if command[-1] == "pi4":  # a board: its key checked first; port 1 of this host, which nothing reaches
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "key")], check=True
        )
        command += ("--set", f"key={tmp_path / 'key'}", "--set", "host=127.0.0.1", "--set", "port=1")
    err = named(run(*command, cwd=tmp_path, timeout=120))
    assert "error (InputDataError): a.param: not a readable ncnn .param file" in err and said in err, err
    assert "hint:" in err


@pytest.mark.parametrize(
    "text, said",
    [
        (b"7767517\n", "error (InputDataError): a.param: ncnn cannot load this .param"),
        (b"hello\n", "error (InputDataError): a.param: not an ncnn .param file (bad magic"),
    ],
)
@pytest.mark.parametrize("command", [("profile", "a.param"), ("bench", "a.bin")])
def test_an_ncnn_param_edgekits_reader_cannot_parse_is_bad_input_in_profile_and_bench_of_a_bin(
    tmp_path: Path, text: bytes, said: str, command: tuple[str, ...]
) -> None:
    """profile of a .param holding only the magic line, or none, and bench of its .bin, said "error
    (ConversionError): malformed .param file: list index out of range" with exit 1: a file that cannot be read
    is bad input, named as `bench a.param` names it (exit 2)."""
    (tmp_path / "a.param").write_bytes(text)
    (tmp_path / "a.bin").write_bytes(b"")
    err = named(run(*command, "--target", "host", cwd=tmp_path, timeout=120))
    assert said in err and "ConversionError" not in err, err


def _relu_param(folder: Path) -> str:
    """An ncnn model ncnn loads (Input 8x8x3, ReLU), no weights and no sidecar: its shape must be given."""
    (folder / "m.param").write_text("7767517\n2 2\nInput in0 0 1 in0 0=8 1=8 2=3\nReLU r 1 1 in0 out0\n")
    (folder / "m.bin").write_bytes(b"")
    return "m.param"


def test_profile_names_its_own_shape_option(tmp_path: Path) -> None:
    """profile's --input-shape errors said `--shape: bad input shape` (profile has no --shape), and its hints
    `pass --shape ... or --input x.npy` (profile has no --input either)."""
    param = _relu_param(tmp_path)
    err = named(run("profile", param, "--target", "host", "--input-shape", "abc", cwd=tmp_path, timeout=120))
    assert "error (UsageError): --input-shape: bad input shape 'abc'" in err, err
    assert "--shape" not in err.replace("--input-shape", ""), err
    err = named(run("profile", param, "--target", "host", cwd=tmp_path, timeout=120))
    assert "pass --input-shape 1,3,224,224" in err and "--input x.npy" not in err, err


def test_profile_threads_are_capped_as_bench_and_deploy_cap_them(tmp_path: Path) -> None:
    """`profile --threads 99999` had no bound: the agent started that many threads (a hang, or SIGSEGV and exit 1);
    256 at most, as the recipe, bench and deploy."""
    param = _relu_param(tmp_path)
    args = ("profile", param, "--target", "host", "--input-shape", "1,3,8,8", "--threads", "99999")
    err = named(run(*args, cwd=tmp_path, timeout=120))
    assert "--threads" in err and "1<=x<=256" in err, err


def test_bench_of_an_ncnn_bin_without_its_param_says_both_are_needed(tmp_path: Path) -> None:
    """`bench b/junk.bin` with no junk.param beside it said only `b/junk.param: file not found`."""
    (tmp_path / "a.bin").write_bytes(b"")
    err = named(run("bench", "a.bin", "--target", "host", cwd=tmp_path, timeout=120))
    assert "a.param: file not found" in err and "ncnn needs .param and .bin beside each other" in err, err


def test_a_state_dict_zip_with_a_corrupt_entry_name_is_a_recipe_error(tmp_path: Path) -> None:
    """A .pt whose zip central directory holds a name that is not UTF-8 (its UTF-8 flag set, as torch.save
    writes): the TorchScript sniffing let zipfile's UnicodeDecodeError out as "internal error" (exit 1). Any zip
    it cannot read is now not TorchScript, and reading the weights names the file (exit 2)."""
    import torch

    from edgekit.zoo.tiny import build

    torch.save(build(width=4).state_dict(), tmp_path / "w.pt")
    data = bytearray((tmp_path / "w.pt").read_bytes())
    entry = data.find(b"PK\x01\x02")  # the central directory's first entry: its name starts 46 bytes in
    assert entry > 0 and int.from_bytes(data[entry + 8 : entry + 10], "little") & 0x800  # names are UTF-8
    data[entry + 46 : entry + 48] = b"\xff\xfe"
    (tmp_path / "bad.pt").write_bytes(bytes(data))
    (tmp_path / "r.yaml").write_text(
        'name: r\nmodel: {kind: torch, builder: "edgekit.zoo.tiny:build", args: {width: 4}, weights: bad.pt}\n'
        "input: {name: x, shape: [1, 3, 32, 32]}\nformats: [onnx-fp32]\n"
    )
    err = named(run("convert", "r.yaml", cwd=tmp_path))
    assert "error (RecipeError): r.yaml: field `model.weights`: cannot read" in err, err
    assert str(tmp_path / "bad.pt") in err and "hint: save the trained model's weights" in err


def test_a_recipe_onnx_of_two_inputs_is_refused_naming_them(tmp_path: Path) -> None:
    """The README says a second input is refused by name: `convert` said only 'the model has 2 inputs'."""
    small_onnx(tmp_path / "m.onnx", batch=1, inputs=("x", "z"))
    recipe(tmp_path, "m.onnx")
    err = named(run("convert", "r.yaml", cwd=tmp_path))
    said = " ".join(err.split())
    assert "error (RecipeError)" in said and "the model has 2 inputs ('x', 'z')" in said, said
    assert "hint: export the model with one input" in said and "`x`" in said, said
