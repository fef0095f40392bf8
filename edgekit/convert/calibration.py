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
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.convert.image_folder import IMAGE_SUFFIXES, class_of, image_files, read_images
from edgekit.convert.shaping import (
    hwc,
    image_size,
    note_resized,
    preprocess,
    refuse_non_real,
    rescale_boxes,
    say_once,
    to_inputs,
)
from edgekit.errors import InputDataError, RecipeError
from edgekit.recipe import (
    BuilderData,
    DataSource,
    ImagesData,
    NpyData,
    RandomData,
    Recipe,
    Task,
    call_data_builder,
    class_labels,
)
from edgekit.recipe.schema import MAX_DATA_BYTES

Labels = np.ndarray | list[np.ndarray]


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


def source_text(source: DataSource) -> str:
    """Where a data source's inputs come from, in the recipe's words: 'builder edgekit.zoo.tiny:images, seed 0'."""
    if isinstance(source, RandomData):
        return f"random, uniform {source.low:g}..{source.high:g}, seed {source.seed}"
    if isinstance(source, BuilderData):
        return f"builder {source.builder}, seed {source.seed}"
    if isinstance(source, ImagesData | NpyData):
        return f"{source.kind} {source.path}"
    return source.kind


def count_reason(source: DataSource) -> str:
    """Why a source gave that many inputs, since `samples` has a default: 'samples: 16', 'all the .npy holds',
    'samples: 8, the default for random data'."""
    samples = getattr(source, "samples", None)
    if samples is None:
        return f"all the {'.npy' if source.kind == 'npy' else 'folder'} holds"
    if "samples" not in source.model_fields_set:
        return f"samples: {samples}, the default for {source.kind} data"
    return f"samples: {samples}"


def calibration_note(source: DataSource, count: int) -> str:
    """The progress line: '16 calibration inputs (builder edgekit.zoo.tiny:images, seed 0; samples: 16)'."""
    return f"{count} calibration inputs ({source_text(source)}; {count_reason(source)})"


def random_calibration_warning(recipe: Recipe, evaluation: np.ndarray | None = None) -> str | None:
    """What INT8 calibrated on `kind: random` data means, None for any other source. Random inputs are drawn as
    they are, never through input.preprocess: their range (0..1 by default) is not the one the model's real inputs
    span (-2.1..2.6 for ImageNet's mean/std), so the INT8 scales fit neither, and int8 accuracy is far below what
    real calibration data gives (tiny: max abs error 0.0009 -> 0.017). More random samples cannot mend that."""
    source = recipe.calibration.data if recipe.calibration else None
    if not isinstance(source, RandomData):
        return None
    span = ""
    if evaluation is not None and evaluation.size and not isinstance(recipe.evaluation.data, RandomData):
        span = (
            f", where the evaluation inputs span {float(evaluation.min()):.3g}..{float(evaluation.max()):.3g}"
        )
    return (
        f"calibration.data is random (uniform {source.low:g}..{source.high:g}, not through input.preprocess"
        f"{span}): INT8 scales calibrated on it do not match real inputs, so int8 accuracy is worse than "
        "real calibration data gives, and more random samples do not help; give real samples "
        "(calibration.data kind: images, npy or builder)"
    )


def constant_calibration_warning(recipe: Recipe, inputs: np.ndarray) -> str | None:
    """What INT8 calibrated on data without variation means (all zeros, each input one flat value, or the same
    input repeated), None otherwise. Such data passed without a word, where random data is warned about: an
    all-zero .npy gave ncnn-int8 layers whose input was 'always zero' (left float) and scales from a single value
    elsewhere, fitting no real input, and the gate judged on other data passed."""
    source = recipe.calibration.data if recipe.calibration else None
    if source is None or not inputs.size:
        return None
    flat = inputs.reshape(len(inputs), -1)
    low, high = flat.min(axis=1), flat.max(axis=1)
    if (low == high).all():
        values = np.unique(low)
        what = (
            f"every value of every input is {float(values[0]):g}"
            if len(values) == 1
            else f"each input is one value throughout ({len(values)} values, {float(low.min()):g}..{float(high.max()):g})"
        )
    elif len(flat) > 1 and (flat == flat[0]).all():
        what = f"all {len(flat)} inputs are the same input"
    else:
        return None
    return (
        f"calibration.data ({source_text(source)}) has no variation: {what}, as the model takes them (after any "
        "preprocessing): INT8 scales calibrated on it fit no real input (a layer fed only zeros stays float, "
        "the others get the range of that one value), so int8 accuracy on real inputs is worse than real "
        "calibration data gives; give real samples (calibration.data kind: images, npy or builder)"
    )


def _row_digests(inputs: np.ndarray) -> list[bytes]:
    rows = np.ascontiguousarray(inputs).reshape(len(inputs), -1)
    return [hashlib.sha256(row.dtype.str.encode() + row.tobytes()).digest() for row in rows]


def input_digests(inputs: np.ndarray) -> set[bytes]:
    """One sha256 per input (row), its dtype in it, so two data sets' common inputs can be counted without
    holding both in memory."""
    return set(_row_digests(inputs))


def overlap_calibration_warning(calibration: set[bytes], evaluation: np.ndarray) -> str | None:
    """What evaluation inputs that are also calibration inputs mean (`calibration` from input_digests), None when
    none are. The same folder, .npy or builder and seed in both passed without a word: an INT8 gate judged on the
    samples its ranges were set from is met in-sample (r16's leak.yaml, tiny: 16 of 16)."""
    if not calibration or not len(evaluation):
        return None
    common = sum(d in calibration for d in _row_digests(evaluation))
    if not common:
        return None
    return (
        f"{common} of {len(evaluation)} evaluation inputs are also calibration inputs: the INT8 gates are judged "
        f"{'' if common == len(evaluation) else 'partly '}on the data the ranges were set from, so they overstate "
        "int8 accuracy on unseen inputs; give calibration.data and evaluation.data different samples (another "
        "folder, file or seed)"
    )


def calibration_record(recipe: Recipe, inputs: np.ndarray) -> dict[str, Any]:
    """What an INT8 artifact was calibrated on, for its provenance: kind, source, count and the inputs' sha256."""
    source = recipe.calibration.data if recipe.calibration else None
    if source is None:
        return {}
    return {
        "kind": source.kind,
        "source": source_text(source),
        "count": int(len(inputs)),
        "why": count_reason(source),
        "sha256": data_digest(inputs),
    }


def evaluation_inputs(recipe: Recipe) -> tuple[np.ndarray, Labels | None]:
    """The evaluation inputs (float32, model layout) and their labels if the source has any."""
    return load_data(recipe.evaluation.data, recipe, "evaluation.data")


def data_digest(inputs: np.ndarray, labels: Labels | None = None) -> str:
    """sha256 of inputs (and labels), so cached fidelity results are tied to the exact data. Each label array's
    shape and type go in before its bytes: a detector's boxes moved from one image to another (`[[b1, b2], []]`,
    `[[b1], [b2]]`) are other labels, with the same bytes."""
    h = hashlib.sha256(np.ascontiguousarray(inputs).tobytes())
    h.update(str(inputs.shape).encode())
    if labels is not None:
        items = labels if isinstance(labels, list) else [labels]
        h.update(f"\0{type(labels).__name__}:{len(items)}".encode())
        for item in items:
            array = np.ascontiguousarray(item)
            h.update(f"\0{array.shape}:{array.dtype.str}\0".encode())
            h.update(array.tobytes())
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
        refuse_non_real(raw.dtype, f"field `{field}.path`: {source.path}", str(recipe.path))
        labels = None
        if source.labels is not None:
            labels = class_labels(
                _npy(source.labels, f"{field}.labels", recipe), len(raw), f"{field}.labels", str(recipe.path)
            )[: source.samples]
        return to_inputs(raw[: source.samples], recipe, field), labels
    if isinstance(source, BuilderData):
        return _from_builder(source, recipe, field)
    raise RecipeError(f"field `{field}`: unknown data source {source!r}", where=str(recipe.path))


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


def _note_numeric_order(classes: list[str], field: str) -> None:
    """Class folders named by numbers (0 .. 11) take their ids in torchvision ImageFolder's order, the names'
    text order ('10' is id 2): a model whose class k is folder 'k' was judged on wrong labels in silence (top-1
    16.6 % where it is 100 %). The order is kept (a model trained with ImageFolder needs it) and said."""
    if not all(name.isdigit() for name in classes) or classes == sorted(classes, key=int):
        return
    moved = [f"'{name}' is id {i}" for i, name in enumerate(classes) if int(name) != i][:3]
    say_once(
        f"{field}: the class folders are numbers and take their ids in text order, as torchvision's ImageFolder "
        f"gives them ({', '.join(moved)}): if the model's class k is the folder named k, name the folders with "
        f"leading zeros ({', '.join(str(k).zfill(len(max(classes, key=len))) for k in range(3))}, ...) so that "
        "both orders agree"
    )


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
    _note_numeric_order(classes, field)
    if source.samples is not None and len(files) < source.samples:  # as a .npy or a builder holding fewer
        raise RecipeError(
            f"field `{field}.samples`: {source.samples} asked for, {source.path} holds {len(files)} images",
            where=str(recipe.path),
            hint="lower samples, or leave it out to use every image in the folder",
        )
    if source.samples is not None and len(files) > source.samples:  # evenly spread: every class folder counts
        files = [files[int(i)] for i in np.linspace(0, len(files) - 1, source.samples).round()]
    h, w, c = hwc(recipe, field)
    per_sample = 4 * int(np.prod(recipe.input.shape[1:]))
    if len(files) * per_sample > MAX_DATA_BYTES:  # `samples` unset: every image of a large folder
        raise RecipeError(
            f"field `{field}`: {len(files):,} images in {source.path} are {len(files) * per_sample / 2**30:,.1f} "
            f"GiB of float32 inputs, more than edgekit holds in memory ({MAX_DATA_BYTES >> 30} GiB)",
            where=str(recipe.path),
            hint=f"set `{field}.samples` (a few hundred calibrate INT8 well; they are spread over the "
            "class folders)",
        )
    note_resized(field, [image_size(f) for f in files], h, w)
    inputs = preprocess(read_images(files, (h, w, c), field, str(recipe.path)), recipe, field)
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
        say_once(
            f"{field}: {source.builder} returned {len(raw)} samples for samples: {source.samples}; "
            f"using the first {source.samples}"
        )
        raw = raw[: source.samples]
        labels = labels[: source.samples] if labels is not None else None
    inputs = to_inputs(raw, recipe, field)  # first: image data the input cannot take is named there
    if labels is not None and raw.dtype == np.uint8 and not isinstance(labels, np.ndarray):
        labels = rescale_boxes(list(labels), raw.shape[1:3], hwc(recipe, field)[:2])
    return inputs, labels
