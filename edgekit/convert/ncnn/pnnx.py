"""Running pnnx, the converter from ONNX or TorchScript to an ncnn .param/.bin: the binary shipped in the pnnx
wheel, run in a temporary folder (it writes a dozen files next to its input), bounded in time, its failure said in
the last lines of its own output."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from edgekit.convert.tool_process import plain_output
from edgekit.errors import ConversionError, exit_text

PNNX_TIMEOUT_S = 900
_TAIL_LINES = 25


def pnnx_executable() -> Path:
    """The pnnx binary shipped in the pnnx wheel (importing `pnnx` itself would import torch)."""
    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError("pnnx is not installed", hint="make setup (installs the pnnx wheel)")
    exe = Path(next(iter(spec.submodule_search_locations))) / "pnnx"
    if not exe.is_file():
        raise ConversionError(f"the pnnx wheel has no executable at {exe}", hint="reinstall: make setup")
    return exe


def run_pnnx(
    model_path: Path, input_shape: tuple[int, ...], *, fp16: bool, param: Path, bin_path: Path
) -> None:
    """Run pnnx on a copy of the model in a temporary folder; move its ncnn .param/.bin to param/bin_path."""
    if not model_path.is_file():
        raise ConversionError("model file not found", where=str(model_path))
    suffix = model_path.suffix.lower() if model_path.suffix.lower() in (".onnx", ".pt", ".pth") else ".onnx"
    with tempfile.TemporaryDirectory(prefix="edgekit-pnnx-") as tmp:
        src = Path(tmp) / f"model{suffix}"
        _copy_for_pnnx(model_path, src)
        shape = "[" + ",".join(str(d) for d in input_shape) + "]"
        cmd = [
            str(pnnx_executable()),
            src.name,
            f"inputshape={shape}",
            f"fp16={int(fp16)}",
            "device=cpu",
            "ncnnparam=model.ncnn.param",
            "ncnnbin=model.ncnn.bin",
        ]
        try:
            proc = subprocess.run(
                cmd, cwd=tmp, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S, errors="replace"
            )
        except subprocess.TimeoutExpired:
            raise ConversionError(
                f"pnnx did not finish within {PNNX_TIMEOUT_S} s", where=str(model_path)
            ) from None
        out_param, out_bin = Path(tmp) / "model.ncnn.param", Path(tmp) / "model.ncnn.bin"
        if proc.returncode != 0 or not out_param.is_file() or not out_bin.is_file():
            tail = _tail(proc.stdout + proc.stderr)
            raise ConversionError(
                f"pnnx failed ({exit_text(proc.returncode)}):\n{tail}",
                where=str(model_path),
                # the ONNX it gets is already simplified and exported at opset 17: saying so helped no one
                hint="pnnx stopped on this graph (its last lines above, where it got to): ncnn may have no layer "
                "for one of its ops (TopK, CumSum, NonMaxSuppression, ...); leave ncnn-* out of the recipe's "
                "formats, or change that part of the model",
            )
        shutil.move(str(out_param), param)
        shutil.move(str(out_bin), bin_path)


def _copy_for_pnnx(model_path: Path, src: Path) -> None:
    """Copy the model for pnnx, naming the mode of each ONNX Pad that leaves it to its default ("constant").

    pnnx turns a Pad into F.pad (ncnn's Padding) only when the node says its mode; tf2onnx writes Keras's
    ZeroPadding2D (MobileNetV2/V3, ResNet, EfficientNet) without one, and pnnx then left a raw `Pad` that ncnn
    cannot load, failing every ncnn format. The mode named is the one ONNX gives an unnamed one: same model."""
    if src.suffix != ".onnx":
        shutil.copyfile(model_path, src)
        return
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # noqa: BLE001 - not readable as ONNX here: pnnx gets the file as it is and says why
        shutil.copyfile(model_path, src)
        return
    unnamed = [
        node
        for node in model.graph.node
        if node.op_type == "Pad"
        and node.domain in ("", "ai.onnx")
        and not any(a.name == "mode" for a in node.attribute)
    ]
    if not unnamed:
        shutil.copyfile(model_path, src)
        return
    for node in unnamed:
        node.attribute.append(helper.make_attribute("mode", "constant"))
    onnx.save(model, str(src))


_PASS_TIME = re.compile(r"(\.\.\.)\s+\d+(\.\d+)?ms\b")  # `fold_constants ...   0.01ms`: differs run to run


def _tail(text: str) -> str:
    """The last lines of pnnx's output, without its echo of every option (`key = value`), colour codes and
    times: ncnn-fp32, -fp16 and -int8 each run pnnx (-int8 unless the ncnn-fp32 artifact is cached), and one failure
    of the three then reads the same."""
    lines = [
        _PASS_TIME.sub(r"\1", ln)
        for ln in plain_output(text).splitlines()
        if ln.strip() and not re.fullmatch(r"\w+ =( .*)?", ln.strip())
    ]
    return "\n".join("    " + ln for ln in lines[-_TAIL_LINES:])
