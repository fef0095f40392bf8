"""Whether a given input shape fits an ncnn model: its batch first (`check_batch_first`), its channels against the
first convolution (`check_input_shape`); the CLI checks a user's shape with them before any guest runs. Reading
and loading the model on this host are the ncnn runtime's (edgekit/runtimes/ncnn.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NoReturn

from edgekit.errors import InputDataError
from edgekit.runtimes.ncnn import parse_param

# layers whose output has their input's channel count: the input blob is followed through them to the convolutions
# that take it (blazeface's first layer is a Padding, a model may normalise first). Padding adds its 7= front and
# 8= behind channels; every other layer here keeps the count.
_KEEPS_CHANNELS = {
    "Split",
    "Padding",
    "ReLU",
    "ReLU6",
    "Clip",
    "Sigmoid",
    "TanH",
    "Swish",
    "HardSwish",
    "HardSigmoid",
    "Mish",
    "ELU",
    "SELU",
    "GELU",
    "PReLU",
    "BNLL",
    "AbsVal",
    "Power",
    "Exp",
    "Log",
    "Threshold",
    "UnaryOp",
    "BatchNorm",
    "Scale",
    "Bias",
    "InstanceNorm",
    "GroupNorm",
    "LRN",
    "MVN",
    "Normalize",
    "Dropout",
    "Noop",
    "Cast",
    "Quantize",
    "Dequantize",
    "Requantize",
    "Interp",
    "Pooling",
    "Pooling1D",
    "Pooling3D",
    "Erf",
    "Softplus",
}


def _channels_taken(kind: str, p: dict[str, str]) -> int | None:
    """The input channels a Convolution / ConvolutionDepthWise takes, from its weight_data_size (6=), outputs
    (0=), kernel (1=, 11=) and groups (7=); None when the params do not say."""
    nout, kw = int(p.get("0", 0)), int(p.get("1", 0))
    kh, wsize = int(p.get("11", kw)), int(p.get("6", 0))
    groups = int(p.get("7", 1)) if kind == "ConvolutionDepthWise" else 1
    if not (nout and kw and kh and wsize):
        return int(p.get("7", 0)) or None if kind == "ConvolutionDepthWise" else None
    return wsize * groups // (nout * kw * kh) or None


def _declared_channels(layers: list) -> int | None:
    """The channel count the Input layer declares (ncnn's Input: 0=w 1=h 2=c), None when it declares none."""
    declared: dict[str, str] = next((p for kind, _, _, p in layers if kind == "Input"), {})
    try:
        return int(declared.get("2", 0)) or None
    except ValueError:
        return None


def check_input_shape(path: Path, input_shape: list[int]) -> None:
    """A given input shape ncnn cannot take, or whose channel count the model cannot take, is bad input: ncnn
    holds at most 4 dimensions besides leading 1s (the batch), and a wrong channel count runs anyway on this host
    (it reads past or short of the weights it expects) and counts a model that does not exist, or crashes the
    guest. The channels are those the convolutions fed by the input take, the input followed through the layers
    that keep its channel count (Split, Padding, activations, BatchNorm...); when no convolution is reached so,
    the Input layer's declared channels (2=), if it declares them. A 1-D (W) or 2-D (H,W) shape is one channel,
    as ncnn makes a Mat of it; one of another rank than the model.io.json beside PATH states is refused (the
    agent reshapes a sample of as many numbers as the stated shape to it: that one runs as stated)."""
    dims = list(input_shape)
    while len(dims) > 3 and dims[0] == 1:  # how the agent hands the sample to ncnn (no batch axis)
        dims = dims[1:]
    if len(dims) > 4:
        raise InputDataError(
            f"input shape {list(input_shape)}: ncnn takes at most 4 dimensions after the batch, this is {len(dims)}",
            where=str(path),
            hint="pass the model's own shape, e.g. --input-shape 1,3,224,224",
        )
    stated = _stated_shape(path)
    other_rank = stated is not None and _ncnn_rank(input_shape) != _ncnn_rank(stated)
    if other_rank and stated is not None and math.prod(stated) == math.prod(input_shape):
        return  # as many numbers as the stated shape: the agent reshapes the sample to it (3072 runs as 1,3,32,32)
    # ncnn.Mat of a numpy array: (w,) and (h, w) are one channel, (c, h, w) c; a 4-D shape is N,C,H,W or C,D,H,W
    given = input_shape[-3] if len(input_shape) >= 3 else 1
    if len(input_shape) <= 4:
        _check_channels(path, input_shape, given)
    if other_rank and stated is not None:
        shown = ",".join(map(str, stated))
        raise InputDataError(
            f"input shape {list(input_shape)} is {_ncnn_rank(input_shape)}-D to ncnn (batch dropped); this model "
            f"states {shown} ({_ncnn_rank(stated)}-D) in {path.with_suffix('.io.json').name}, the shape it was "
            "converted and checked at",
            where=str(path),
            hint=f"pass --input-shape {shown}, or another size of the same rank",
        )


def _stated_shape(path: Path) -> list[int] | None:
    """The input shape the model.io.json beside an ncnn .param states (edgekit's conversions write one), else None."""
    try:
        shapes = json.loads(path.with_suffix(".io.json").read_text()).get("input_shapes") or []
        return [int(d) for d in shapes[0]] if shapes else None
    except (ValueError, OSError, TypeError, AttributeError, IndexError):
        return None


def _ncnn_rank(shape: list[int]) -> int:
    """The dimensions of the Mat ncnn gets for SHAPE: its leading 1s (the batch) dropped down to 3."""
    dims = list(shape)
    while len(dims) > 3 and dims[0] == 1:
        dims = dims[1:]
    return len(dims)


def _check_channels(path: Path, input_shape: list[int], given: int) -> None:
    """GIVEN channels against those the convolutions the input reaches take, else the Input's declared 2=."""
    layers = parse_param(path)
    inputs = [t for kind, _, tops, _ in layers if kind == "Input" for t in tops]
    if len(inputs) != 1:
        return
    channels = {inputs[0]: given}  # blob -> its channel count, for the blobs that carry the input's channels
    reached = False
    for kind, bottoms, tops, p in layers:
        fed = [channels[b] for b in bottoms if b in channels]
        if not fed or len(bottoms) != 1:
            continue
        try:
            if kind in ("Convolution", "ConvolutionDepthWise"):
                reached = True
                takes = _channels_taken(kind, p)
                if takes and takes != fed[0]:
                    _refuse(
                        path,
                        input_shape,
                        given,
                        f"the model's first convolution ({kind} {tops[0] if tops else ''})",
                        takes - fed[0] + given,
                        layers,
                    )
            elif kind in _KEEPS_CHANNELS:
                added = int(p.get("7", 0)) + int(p.get("8", 0)) if kind == "Padding" else 0
                channels.update((t, fed[0] + added) for t in tops)
        except ValueError:  # a param that is not an integer where these layers keep one: not checked
            return
    declared = _declared_channels(layers)
    if not reached and declared and declared != given:
        _refuse(path, input_shape, given, f"the model's Input ({inputs[0]}: 2={declared})", declared, layers)


def _refuse(path: Path, input_shape: list[int], given: int, layer: str, takes: int, layers: list) -> NoReturn:
    flat = len(input_shape) < 3  # (w,) or (h, w): one channel to ncnn, whatever the user meant
    if flat:
        declared: dict[str, str] = next((p for kind, _, _, p in layers if kind == "Input"), {})
        stated = _stated_shape(path)
        hw = (
            [str(d) for d in stated[-2:]]
            if stated and len(stated) >= 3
            else [declared[k] for k in ("1", "0")]
            if all(declared.get(k, "0").isdigit() and int(declared.get(k, "0")) > 0 for k in ("1", "0"))
            else ["H", "W"]
        )
    else:
        hw = [str(d) for d in input_shape[-2:]]
    why = (
        f" (ncnn reads a {len(input_shape)}-D input as {'W' if len(input_shape) == 1 else 'H,W'}: 1 channel)"
    )
    raise InputDataError(
        f"input shape {input_shape} has {given} channel{'s' if given != 1 else ''}{why if flat else ''}; {layer} "
        f"takes {takes}",
        where=str(path),
        hint=f"pass the model's own shape, e.g. --input-shape 1,{takes},{','.join(hw)}"
        + (" (H,W: the model's input size)" if hw == ["H", "W"] else ""),
    )


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
