"""An ncnn model file on this host: its layers as the .param writes them, the model loaded by ncnn (a file ncnn
cannot load refused by name, exit 2, before any guest runs), and whether a given input shape fits its first
convolution. graph.py counts MACs and sizes from these; the CLI checks a user's file with them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.errors import InputDataError


def parse_param(path: Path) -> list[tuple[str, list[str], list[str], dict[str, str]]]:
    """Layers of an ncnn .param: (type, bottom blobs, top blobs, {param id: value})."""
    lines = path.read_text().split("\n")
    if not lines or lines[0].strip() != "7767517":
        raise InputDataError(
            "not an ncnn .param file (bad magic: its first line is not 7767517)",
            where=str(path),
            hint="give the .param ncnn writes (pnnx or onnx2ncnn output), with its .bin beside it",
        )
    layers = []
    for line in lines[2:]:
        parts = line.split()
        if len(parts) < 4:
            continue
        kind, nb, nt = parts[0], int(parts[2]), int(parts[3])
        bottoms, tops = parts[4 : 4 + nb], parts[4 + nb : 4 + nb + nt]
        params = dict(kv.split("=", 1) for kv in parts[4 + nb + nt :] if "=" in kv)
        layers.append((kind, bottoms, tops, params))
    return layers


def check_input_channels(path: Path, input_shape: list[int]) -> None:
    """A given input shape whose channel count the model's first convolution cannot take is bad input: ncnn runs
    it anyway (it reads past or short of the weights it expects) and counts a model that does not exist."""
    if len(input_shape) not in (3, 4):
        return
    given = input_shape[-3]  # NCHW or CHW
    layers = parse_param(path)
    blobs = {t for kind, _, tops, _ in layers if kind == "Input" for t in tops}
    if len(blobs) != 1:
        return
    for kind, bottoms, tops, p in layers:
        if not blobs & set(bottoms):
            continue
        if kind == "Split":
            blobs |= set(tops)
            continue
        takes = None
        try:
            if kind == "Convolution":
                nout, kw = int(p.get("0", 0)), int(p.get("1", 0))
                kh = int(p.get("11", kw))
                takes = int(p.get("6", 0)) // (nout * kw * kh) if nout and kw and kh else None
            elif kind == "ConvolutionDepthWise":
                takes = int(p.get("7", 0)) or None
        except ValueError:
            return
        if takes and takes != given:
            raise InputDataError(
                f"input shape {input_shape} has {given} channel{'s' if given != 1 else ''}; the model's first "
                f"layer ({kind} "
                f"{tops[0] if tops else ''}) takes {takes}",
                where=str(path),
                hint=f"pass the model's own shape, e.g. --input-shape 1,{takes},H,W",
            )
        if kind in ("Convolution", "ConvolutionDepthWise"):
            return


def load_ncnn(path: Path, options: dict[str, bool] | None = None) -> Any:
    """An ncnn.Net of the .param at PATH and its .bin, loaded on this host (1 thread, `options` set); a model
    ncnn cannot load is bad input (InputDataError), named: the .param, a missing .bin, or weights that do not
    fit. Run before any emulated guest so a broken file is refused at once with exit 2."""
    import ncnn

    parse_param(path)  # the magic line
    net = ncnn.Net()
    net.opt.num_threads = 1
    for key, value in (options or {}).items():
        setattr(net.opt, key, value)
    if net.load_param(str(path)) != 0:
        raise InputDataError(
            "ncnn cannot parse this .param (ncnn's message above says which layer)",
            where=str(path),
            hint="a layer type this ncnn build lacks, or a malformed line; check it loads in ncnn itself",
        )
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise InputDataError(
            "no .bin beside this .param", where=str(weights), hint="ncnn needs both files, with the same name"
        )
    if net.load_model(str(weights)) != 0:
        raise InputDataError(
            "ncnn cannot load the weights of this model (ncnn's message above says which layer)",
            where=str(weights),
            hint="the .bin must sit beside the .param with the same name and match it (a truncated or other "
            "model's .bin fails here)",
        )
    return net
