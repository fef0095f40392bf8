"""Whether a given input shape fits an ncnn model's first convolution (the CLI checks a user's shape with it before
any guest runs). Reading and loading the model on this host are the ncnn runtime's (edgekit/runtimes/ncnn.py)."""

from __future__ import annotations

from pathlib import Path

from edgekit.errors import InputDataError
from edgekit.runtimes.ncnn import parse_param


def check_input_shape(path: Path, input_shape: list[int]) -> None:
    """A given input shape ncnn cannot take, or whose channel count the model's first convolution cannot take, is
    bad input: ncnn holds at most 4 dimensions besides leading 1s (the batch), and a wrong channel count runs
    anyway (it reads past or short of the weights it expects) and counts a model that does not exist."""
    dims = list(input_shape)
    while len(dims) > 3 and dims[0] == 1:  # how the agent hands the sample to ncnn (no batch axis)
        dims = dims[1:]
    if len(dims) > 4:
        raise InputDataError(
            f"input shape {list(input_shape)}: ncnn takes at most 4 dimensions after the batch, this is {len(dims)}",
            where=str(path),
            hint="pass the model's own shape, e.g. --input-shape 1,3,224,224",
        )
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
