"""Whether a given input shape fits an ncnn model: its batch first (`check_batch_first`), its channels against the
first convolution (`check_input_shape`); the CLI checks a user's shape with them before any guest runs. Reading
and loading the model on this host are the ncnn runtime's (edgekit/runtimes/ncnn.py)."""

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


def check_batch_first(path: Path, input_shape: list[int], layers: list) -> None:
    """A shape given without its batch (227,227 or 3,227,227), with a batch other than 1, or with three numbers
    where the model's Input takes C,H,W: bad input, with a hint that runs (`layers`: the parsed .param)."""
    shape = list(input_shape)
    if shape[0] != 1 and len(shape) < 4:  # 227,227 or 3,227,227: batch left out
        guessed = len(shape) == 2  # H,W: the channels are a guess
        raise InputDataError(
            f"input shape {shape}: {len(shape)} numbers; give it batch first as N,C,H,W",
            where=str(path),
            hint=f"e.g. --input-shape {','.join(map(str, [1, *([3] if guessed else []), *shape]))}"
            + (" (3 channels assumed here: the model's Input says how many)" if guessed else ""),
        )
    if shape[0] != 1:  # the cost of one inference of one input
        raise InputDataError(
            f"input shape {shape}: batch {shape[0]}; ncnn has no batch axis and runs one input per inference",
            where=str(path),
            hint=f"give batch 1: --input-shape {','.join(map(str, [1, *shape[1:]]))} (the cost of N inputs is N "
            "inferences)",
        )
    declared: dict[str, str] = next((p for kind, _, _, p in layers if kind == "Input"), {})
    if len(shape) == 3 and all(k in declared for k in ("0", "1", "2")):
        chw = ",".join(declared[k] for k in ("2", "1", "0"))  # ncnn's Input: 0=w 1=h 2=c
        raise InputDataError(  # "1,3,227" read as C=1 said "has 1 channel": the count of numbers was wrong
            f"input shape {shape}: {len(shape)} numbers; this model's Input takes C,H,W = {chw}, given as N,C,H,W "
            "(batch first)",
            where=str(path),
            hint=f"--input-shape 1,{chw}",
        )
