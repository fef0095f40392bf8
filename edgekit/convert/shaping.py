"""The recipe's data as the model's inputs: raw images (uint8, N x H x W x C) resized to input.shape, given the
recipe's preprocessing (channel order, scale, mean/std) and layout; float data checked against the model's
per-sample shape; a detector's boxes rescaled with their images. edgekit.convert.calibration reads the sources
and hands their arrays here, so the converters, the fidelity check and the agent see the same numbers.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from edgekit.errors import InputDataError, RecipeError
from edgekit.recipe import Layout, Recipe

log = logging.getLogger("edgekit.convert.calibration")  # the data's notes keep their logger's name
_SAID: set[str] = set()  # notes already given in this process (the data is loaded more than once a run)


def say_once(note: str) -> None:
    """A warning about the data, once per process (the data is loaded more than once a run)."""
    if note not in _SAID:
        _SAID.add(note)
        log.warning("%s", note)


def to_inputs(raw: np.ndarray, recipe: Recipe, field: str) -> np.ndarray:
    """uint8 -> preprocess as raw images; float -> check it already has the model's per-sample shape."""
    refuse_non_real(raw.dtype, f"field `{field}`", str(recipe.path))
    _refuse_ambiguous_integers(raw, recipe, field)
    if raw.dtype == np.uint8:
        if raw.ndim == 3:
            raw = raw[..., None]
        if raw.ndim != 4 or raw.shape[-1] not in (1, 3, 4):
            raise RecipeError(
                f"field `{field}`: uint8 data must be raw images (N, H, W, C); got {raw.shape}",
                where=str(recipe.path),
            )
        h, w, c = hwc(recipe, field, raw.shape)
        note_resized(field, [(raw.shape[2], raw.shape[1])] * len(raw), h, w)
        return preprocess(resize(raw[..., :3] if raw.shape[-1] == 4 else raw, h, w, c), recipe, field)
    expected = tuple(recipe.input.shape[1:])
    if tuple(raw.shape[1:]) != expected:
        dims = ", ".join(map(str, expected))
        raise RecipeError(
            f"field `{field}`: float data must be model inputs of shape (N, {dims}) in "
            f"{recipe.input.layout.value} layout; got {tuple(raw.shape)}",
            where=str(recipe.path),
            hint="give uint8 (N, H, W, C) images to have the recipe's preprocessing applied",
        )
    with np.errstate(over="ignore"):  # beyond float32's range: infinite, refused by name in load_data
        return np.ascontiguousarray(raw, dtype=np.float32)


def _refuse_ambiguous_integers(raw: np.ndarray, recipe: Recipe, field: str) -> None:
    """Integers other than uint8 whose values all lie in 0..255 (pixels saved as int64, as np.array(image,
    dtype=int) gives): they were taken as model inputs as they are, the recipe's preprocessing skipped, and the
    INT8 formats failed their gate as if quantization were at fault. Raw images or model inputs: the user says
    which by the type."""
    if raw.dtype == np.uint8 or raw.dtype.kind not in "iu" or raw.size == 0:
        return
    low, high = int(raw.min()), int(raw.max())
    if low < 0 or high > 255:
        return  # not pixels: numbers the model takes as they are
    raise RecipeError(
        f"field `{field}`: {raw.dtype} data with values {low}..{high}: raw images (the recipe's preprocessing "
        "applied) or model inputs as they are? edgekit reads uint8 as images and float as model inputs",
        where=str(recipe.path),
        hint="save images as uint8 (N, H, W, C): x.astype('uint8'); or model inputs as float32: "
        "x.astype('float32')",
    )


REAL_KINDS = "biuf"  # booleans, integers, floats: what float32 model inputs hold exactly or by rounding
_NOT_REAL = {
    "c": "complex numbers: a cast would drop the imaginary part",
    "M": "dates and times",
    "m": "time spans",
    "U": "text",
    "S": "bytes",
    "O": "Python objects",
    "V": "a structured array, records of named fields",
}


def refuse_non_real(dtype: np.dtype, what: str, where: str) -> None:
    """Model inputs are real numbers: an array of text, complex numbers, dates or records is refused by its type
    (text was an internal ValueError, complex numbers were cast with a raw ComplexWarning, dates and records
    silently)."""
    if dtype.kind in REAL_KINDS:
        return
    raise InputDataError(
        f"{what}: an array of {dtype} ({_NOT_REAL.get(dtype.kind, 'not numbers')}); model inputs are real numbers",
        where=where,
        hint="save float32 model inputs, or uint8 (N, H, W, C) images, e.g. np.save(path, x.astype('float32'))",
    )


def hwc(recipe: Recipe, field: str, images: tuple[int, ...] | None = None) -> tuple[int, int, int]:
    """The input's (height, width, channels) as image data fills it; `images`, the data's (N, H, W, C) when known,
    is named in the error. Images fill 1 (grey) or 3 (RGB) channels: any other count is a RecipeError naming
    input.shape and layout (a channel count of 4 made a reshape fail deep in the resize)."""
    shape = recipe.input.shape
    if len(shape) != 4:
        raise RecipeError(
            f"field `{field}`: image data needs a 4-D image input; input.shape is {list(shape)}",
            where=str(recipe.path),
            hint="use kind: npy or builder with float model inputs",
        )
    nchw = recipe.input.layout is Layout.NCHW
    h, w, c = (shape[2], shape[3], shape[1]) if nchw else (shape[1], shape[2], shape[3])
    if c not in (1, 3):
        raise RecipeError(
            _channels_message(recipe, field, images, c),
            where=str(recipe.path),
            hint=_channels_hint(recipe, c),
        )
    return h, w, c


def _channels_message(recipe: Recipe, field: str, images: tuple[int, ...] | None, c: int) -> str:
    layout = recipe.input.layout.value
    given = (
        f"yields {images[-1]}-channel images (N, H, W, C) = {list(images)}"
        if images is not None
        else "holds images (grey or RGB)"
    )
    return (
        f"field `{field}`: the data {given}, but input.shape {list(recipe.input.shape)} in layout {layout} "
        f"(channels at shape[{1 if layout == 'NCHW' else 3}]) takes {c} channels; images fill 1 (grey) or 3 (RGB)"
    )


def _channels_hint(recipe: Recipe, c: int) -> str:
    shape = list(recipe.input.shape)
    nchw = recipe.input.layout is Layout.NCHW
    other = shape[3] if nchw else shape[1]
    if other in (1, 3):  # the channels sit where the other layout has them
        swapped = "NHWC" if nchw else "NCHW"
        return f"input.shape {shape} reads as {swapped}: set input.layout: {swapped}"
    fixed = [1, 3, shape[2], shape[3]] if nchw else [1, shape[1], shape[2], 3]
    return (
        f"set input.shape to {fixed} if the model takes RGB images, or give float model inputs of shape "
        f"(N, {', '.join(map(str, shape[1:]))}) (kind: npy, or a builder returning float32) for a {c}-channel input"
    )


def image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header (Pillow reads no pixels for it), or None: read_images names it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except (
        OSError,
        ValueError,
        Image.DecompressionBombError,
    ):  # over Pillow's pixel limit: read_images names it
        return None


def note_resized(field: str, sizes: list[tuple[int, int] | None], h: int, w: int) -> None:
    """Images of another size than the input's are resized (bilinear) before preprocessing: said once, as
    '... images 48x48 resized to 64x64 (bilinear)', since a wrong input.shape or data set converts without error."""
    other = Counter(size for size in sizes if size is not None and size != (w, h))
    if not other:
        return
    shown = ", ".join(f"{sw}x{sh}" for sw, sh in sorted(other)[:3]) + (", ..." if len(other) > 3 else "")
    count = sum(other.values())
    which = "images" if count == len(sizes) else f"{count} of {len(sizes)} images"
    say_once(
        f"{field}: {which} {shown} resized to {w}x{h} (bilinear) to fit input.shape; "
        "resize them yourself to choose how"
    )


def resize(raw: np.ndarray, h: int, w: int, c: int) -> np.ndarray:
    from PIL import Image

    if raw.shape[1:3] == (h, w) and raw.shape[3] == c:
        return raw
    mode = "L" if c == 1 else "RGB"
    out = []
    for img in raw:
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        resized = pil.convert(mode).resize((w, h), Image.Resampling.BILINEAR)
        out.append(np.asarray(resized, dtype=np.uint8).reshape(h, w, c))
    return np.stack(out)


def preprocess(images: np.ndarray, recipe: Recipe, field: str) -> np.ndarray:
    """(N, H, W, C) uint8 RGB -> channel order, x * scale, (x - mean) / std, model layout, float32."""
    pre = recipe.input.preprocess
    x = images.astype(np.float32)
    if pre.channel_order == "BGR":
        x = x[..., ::-1]
    c = x.shape[-1]
    for name, values in (("mean", pre.mean), ("std", pre.std)):
        if len(values) not in (1, c):
            raise RecipeError(
                f"field `input.preprocess.{name}`: {len(values)} values for {c} channels",
                where=str(recipe.path),
                hint=f"give 1 or {c} values",
            )
    x = (x * pre.scale - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    if recipe.input.layout is Layout.NCHW:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=np.float32)


def rescale_boxes(
    labels: list[np.ndarray], src_hw: tuple[int, ...], dst_hw: tuple[int, ...]
) -> list[np.ndarray]:
    sy, sx = dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1]
    out = []
    for lab in labels:
        lab = np.asarray(lab, dtype=np.float32).reshape(-1, 5).copy()
        lab[:, [1, 3]] *= sx
        lab[:, [2, 4]] *= sy
        out.append(lab)
    return out
