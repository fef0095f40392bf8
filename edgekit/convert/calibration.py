"""Calibration and evaluation inputs: turn a recipe's data source into model-ready float32 arrays.

Every source ends as an array of shape (N, *recipe.input.shape[1:]) in the model's layout, so the converters,
the fidelity check and the on-device agent all see the same numbers.

Sources (see edgekit.recipe.DataSource):
- `images`: a folder of image files (png/jpg/bmp/...), read with Pillow, sorted by path; `samples` of them
  (default: all) evenly spread over that order (so every class folder contributes). If the images sit in sub-folders,
  the folder's immediate sub-folders (sorted by name) are the classes, as torchvision's ImageFolder: class id k is the
  k-th of them, and an image nested deeper belongs to the class folder it is under. Labels come with two or more
  class folders. A class folder with no image, or images loose beside class folders, is refused by name (it would
  shift every class id); symlinked folders are not followed. 16-bit images are scaled to 0..255 (x / 257) before
  the preprocessing; 32-bit float images are refused.
- `npy`: an array of model inputs (float: used as is) or raw images (uint8 N,H,W,C: preprocessed); the first
  `samples` (default: all); optional labels .npy of class ids or one-hot rows (validated by recipe.class_labels).
- `builder`: `package.module:function`, called as `function(samples, seed, **args)` (call_data_builder: a function
  that cannot take that call is told so in these words), returning inputs (N, ...), or the tuple (inputs, labels);
  any other tuple, or a list that does not stack into one array ([inputs, labels]), is a RecipeError naming it.
- `random`: seeded uniform inputs; fine for timing, meaningless for accuracy.

`samples` is a count the source must hold: a folder with fewer images, a .npy with fewer rows (or none) or a builder
returning fewer is refused (RecipeError); a builder returning more has its first `samples` used, said once as a warning.

Raw images vs model inputs: an array of dtype uint8 is a batch of raw images (N, H, W, C), RGB, 0..255; the
recipe's preprocessing (resize, channel order, scale, mean/std, layout) is applied to it; images of another size
than the input's are resized (bilinear), said once as a warning; images fill an input of 1 or 3 channels, any other
count (input.shape, or its layout read the wrong way) is a RecipeError naming both fields. Any float array is
taken as model inputs already and must have exactly the model's per-sample shape.

Labels: for a classifier, an int array (N,) of class ids. For a detector, a list of N arrays (k, 5) with rows
(class, x1, y1, x2, y2) in the pixels of the image given; they are rescaled when the image is resized.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert.image_folder import IMAGE_SUFFIXES, class_of, image_files, read_images
from edgekit.errors import InputDataError, RecipeError
from edgekit.recipe import (
    BuilderData,
    DataSource,
    ImagesData,
    Layout,
    NpyData,
    RandomData,
    Recipe,
    Task,
    call_data_builder,
    class_labels,
)
from edgekit.recipe.schema import MAX_DATA_BYTES

Labels = np.ndarray | list[np.ndarray]
log = logging.getLogger(__name__)


def calibration_inputs(recipe: Recipe) -> np.ndarray:
    """The calibration inputs for INT8 conversion, float32 (N, *input.shape[1:])."""
    if recipe.calibration is None:
        raise RecipeError(
            "no `calibration:` section, but INT8 conversion needs calibration data",
            where=str(recipe.path),
            hint="add calibration: {data: {kind: images, path: ...}}",
        )
    inputs, _ = load_data(recipe.calibration.data, recipe, "calibration.data")
    return inputs


def evaluation_inputs(recipe: Recipe) -> tuple[np.ndarray, Labels | None]:
    """The evaluation inputs (float32, model layout) and their labels if the source has any."""
    return load_data(recipe.evaluation.data, recipe, "evaluation.data")


def data_digest(inputs: np.ndarray, labels: Labels | None = None) -> str:
    """sha256 of inputs (and labels), so cached fidelity results are tied to the exact data."""
    h = hashlib.sha256(np.ascontiguousarray(inputs).tobytes())
    h.update(str(inputs.shape).encode())
    if labels is not None:
        for item in labels if isinstance(labels, list) else [labels]:
            h.update(np.ascontiguousarray(item).tobytes())
    return h.hexdigest()


def load_data(source: DataSource, recipe: Recipe, field: str) -> tuple[np.ndarray, Labels | None]:
    """Read one data source into (inputs, labels); inputs holding NaN or infinity are refused (InputDataError
    naming the source and the first such sample): every figure computed on them would be NaN, and a
    quantizer's calibration fails on them, both far from the cause."""
    inputs, labels = _load(source, recipe, field)
    _check_finite(inputs, source, field, str(recipe.path))
    return inputs, labels


def _check_finite(inputs: np.ndarray, source: DataSource, field: str, where: str) -> None:
    finite = np.isfinite(inputs.reshape(len(inputs), -1)).all(axis=1)
    if finite.all():
        return
    bad = np.flatnonzero(~finite)
    first = inputs[int(bad[0])]
    what = "NaN" if np.isnan(first).any() else "an infinite value"
    name = {"npy": "path", "builder": "builder", "images": "path"}.get(source.kind, "")
    named = f" ({getattr(source, name)})" if name else ""
    raise InputDataError(
        f"field `{field}`: the {source.kind} data{named} holds {what} in sample {int(bad[0])} (index from 0; "
        f"{len(bad)} of {len(inputs)} samples hold NaN or infinity once float32)",
        where=where,
        hint="fix or drop those samples; float64 values beyond float32's range (3.4e38) become infinite",
    )


def _load(source: DataSource, recipe: Recipe, field: str) -> tuple[np.ndarray, Labels | None]:
    if isinstance(source, RandomData):
        rng = np.random.default_rng(source.seed)
        shape = (source.samples, *recipe.input.shape[1:])
        return rng.uniform(source.low, source.high, size=shape).astype(np.float32), None
    if isinstance(source, ImagesData):
        return _from_folder(source, recipe, field)
    if isinstance(source, NpyData):  # samples: the first that many, default all (checked at recipe load)
        raw = _npy(source.path, f"{field}.path", recipe)
        if raw.ndim == 0 or len(raw) == 0:  # as a builder returning no samples: nothing to convert or compare
            raise RecipeError(
                f"field `{field}.path`: {source.path} holds 0 samples (shape {list(raw.shape)})",
                where=str(recipe.path),
                hint="save the inputs stacked as (N, ...) with N of at least 1",
            )
        labels = None
        if source.labels is not None:
            labels = class_labels(
                _npy(source.labels, f"{field}.labels", recipe), len(raw), f"{field}.labels", str(recipe.path)
            )[: source.samples]
        return _to_inputs(raw[: source.samples], recipe, field), labels
    if isinstance(source, BuilderData):
        return _from_builder(source, recipe, field)
    raise RecipeError(f"field `{field}`: unknown data source {source!r}", where=str(recipe.path))


_SAID: set[str] = set()  # notes already given in this process (the data is loaded more than once a run)


def _say_once(note: str) -> None:
    if note not in _SAID:
        _SAID.add(note)
        log.warning("%s", note)


# --- sources ------------------------------------------------------------------------------------------------
def _npy(path: Path, field: str, recipe: Recipe) -> np.ndarray:
    try:
        return np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError, EOFError) as exc:
        raise InputDataError(
            f"field `{field}`: cannot read {path} as a .npy array: {exc}",
            where=str(recipe.path),
            hint="save it with numpy.save (no pickled objects)",
        ) from None


def _from_folder(source: ImagesData, recipe: Recipe, field: str) -> tuple[np.ndarray, Labels | None]:
    files = image_files(source.path, field, str(recipe.path))
    if not files:
        raise RecipeError(
            f"field `{field}.path`: no image files in {source.path}",
            where=str(recipe.path),
            hint=f"put images with one of the suffixes {sorted(IMAGE_SUFFIXES)} there",
        )
    top = class_of(files, source.path, field, str(recipe.path))
    names = sorted(set(top.values()))  # class ids from every class folder, not only the ones sampled
    classes = names if len(names) > 1 else []
    if source.samples is not None and len(files) < source.samples:  # as a .npy or a builder holding fewer
        raise RecipeError(
            f"field `{field}.samples`: {source.samples} asked for, {source.path} holds {len(files)} images",
            where=str(recipe.path),
            hint="lower samples, or leave it out to use every image in the folder",
        )
    if source.samples is not None and len(files) > source.samples:  # evenly spread: every class folder counts
        files = [files[int(i)] for i in np.linspace(0, len(files) - 1, source.samples).round()]
    h, w, c = _hwc(recipe, field)
    per_sample = 4 * int(np.prod(recipe.input.shape[1:]))
    if len(files) * per_sample > MAX_DATA_BYTES:  # `samples` unset: every image of a large folder
        raise RecipeError(
            f"field `{field}`: {len(files):,} images in {source.path} are {len(files) * per_sample / 2**30:,.1f} "
            f"GiB of float32 inputs, more than edgekit holds in memory ({MAX_DATA_BYTES >> 30} GiB)",
            where=str(recipe.path),
            hint=f"set `{field}.samples` (a few hundred calibrate INT8 well; they are spread over the "
            "class folders)",
        )
    _note_resized(field, [_image_size(f) for f in files], h, w)
    inputs = _preprocess(read_images(files, (h, w, c), field, str(recipe.path)), recipe, field)
    labels = np.array([classes.index(top[f]) for f in files], dtype=np.int64) if classes else None
    return inputs, labels


def _from_builder(source: BuilderData, recipe: Recipe, field: str) -> tuple[np.ndarray, Labels | None]:
    where = str(recipe.path)
    out: Any = call_data_builder(source.builder, field, where, source.samples, source.seed, source.args)
    must = "return inputs (N, ...) as a numpy array, or the tuple (inputs, labels)"
    if isinstance(out, tuple) and len(out) != 2:
        raise RecipeError(
            f"field `{field}.builder`: {source.builder} returned a tuple of {len(out)} items",
            where=where,
            hint=f"{must}: nothing more",
        )
    raw, labels = out if isinstance(out, tuple) else (out, None)
    if (
        isinstance(raw, np.ndarray)
        and isinstance(labels, np.ndarray)
        and labels.shape == raw.shape
        and labels.ndim > 1
    ):  # (x0, x1): two samples, not (inputs, labels): labels never have the inputs' own shape
        raise RecipeError(
            f"field `{field}.builder`: {source.builder} returned a tuple of two arrays of one shape "
            f"{list(raw.shape)}: read as (inputs, labels), the labels would be a second set of inputs",
            where=where,
            hint=f"{must}; samples stacked into one array (np.stack), not a tuple of samples",
        )
    try:
        raw = np.asarray(raw)
    except ValueError:  # ragged: items of different shapes, [inputs, labels] given as a list
        count = f" of {len(raw)} items" if hasattr(raw, "__len__") else ""
        raise RecipeError(
            f"field `{field}.builder`: {source.builder} returned {'inputs as ' if labels is not None else ''}"
            f"a {type(raw).__name__}{count} of different shapes, not one array of samples",
            where=where,
            hint=f"{must} (a tuple, not a list)",
        ) from None
    if raw.ndim == 0 or not np.issubdtype(raw.dtype, np.number):
        raise RecipeError(
            f"field `{field}.builder`: {source.builder} returned {type(out).__name__} "
            f"({raw.dtype}, shape {list(raw.shape)}), not an array of samples",
            where=where,
            hint="return inputs (N, ...) as a numpy array, or (inputs, labels)",
        )
    if labels is not None and recipe.task is Task.CLASSIFY:
        labels = class_labels(labels, len(raw), f"{field}.builder (its labels)", str(recipe.path))
    if len(raw) < source.samples:
        raise RecipeError(
            f"field `{field}.builder`: {source.builder} returned {len(raw)} samples, "
            f"{source.samples} were asked for",
            where=str(recipe.path),
        )
    if len(raw) > source.samples:  # a builder that ignores n: the first `samples`, as from a .npy
        _say_once(
            f"{field}: {source.builder} returned {len(raw)} samples for samples: {source.samples}; "
            f"using the first {source.samples}"
        )
        raw = raw[: source.samples]
        labels = labels[: source.samples] if labels is not None else None
    inputs = _to_inputs(raw, recipe, field)  # first: image data the input cannot take is named there
    if labels is not None and raw.dtype == np.uint8 and not isinstance(labels, np.ndarray):
        labels = _rescale_boxes(list(labels), raw.shape[1:3], _hwc(recipe, field)[:2])
    return inputs, labels


# --- shaping and preprocessing ------------------------------------------------------------------------------
def _to_inputs(raw: np.ndarray, recipe: Recipe, field: str) -> np.ndarray:
    """uint8 -> preprocess as raw images; float -> check it already has the model's per-sample shape."""
    if raw.dtype == np.uint8:
        if raw.ndim == 3:
            raw = raw[..., None]
        if raw.ndim != 4 or raw.shape[-1] not in (1, 3, 4):
            raise RecipeError(
                f"field `{field}`: uint8 data must be raw images (N, H, W, C); got {raw.shape}",
                where=str(recipe.path),
            )
        h, w, c = _hwc(recipe, field, raw.shape)
        _note_resized(field, [(raw.shape[2], raw.shape[1])] * len(raw), h, w)
        return _preprocess(_resize(raw[..., :3] if raw.shape[-1] == 4 else raw, h, w, c), recipe, field)
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


def _hwc(recipe: Recipe, field: str, images: tuple[int, ...] | None = None) -> tuple[int, int, int]:
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


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the file's header (Pillow reads no pixels for it), or None: read_images names it."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, ValueError):
        return None


def _note_resized(field: str, sizes: list[tuple[int, int] | None], h: int, w: int) -> None:
    """Images of another size than the input's are resized (bilinear) before preprocessing: said once, as
    '... images 48x48 resized to 64x64 (bilinear)', since a wrong input.shape or data set converts without error."""
    other = Counter(size for size in sizes if size is not None and size != (w, h))
    if not other:
        return
    shown = ", ".join(f"{sw}x{sh}" for sw, sh in sorted(other)[:3]) + (", ..." if len(other) > 3 else "")
    count = sum(other.values())
    which = "images" if count == len(sizes) else f"{count} of {len(sizes)} images"
    _say_once(
        f"{field}: {which} {shown} resized to {w}x{h} (bilinear) to fit input.shape; "
        "resize them yourself to choose how"
    )


def _resize(raw: np.ndarray, h: int, w: int, c: int) -> np.ndarray:
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


def _preprocess(images: np.ndarray, recipe: Recipe, field: str) -> np.ndarray:
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


def _rescale_boxes(
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
