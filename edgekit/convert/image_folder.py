"""A folder of images as a recipe's data source (`images:`): which files are images, which class folder each lies
in (torchvision's ImageFolder convention, refused by name where it would give wrong class ids), and reading them as
one 8-bit batch. edgekit.convert.calibration turns that batch into model inputs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.errors import InputDataError, RecipeError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
MAX_FOLDER_ENTRIES = 1_000_000  # files and folders looked at under an images `path` before giving up


def image_files(folder: Path, field: str, where: str) -> list[Path]:
    """Every image file under FOLDER (symlinked folders not followed), sorted; a tree with more than
    MAX_FOLDER_ENTRIES entries (`path: /`, a home folder) is refused instead of walked for minutes."""
    found: list[Path] = []
    seen = 0
    for root, dirs, names in os.walk(folder):
        seen += len(dirs) + len(names)
        if seen > MAX_FOLDER_ENTRIES:
            raise RecipeError(
                f"field `{field}.path`: more than {MAX_FOLDER_ENTRIES:,} files and folders under {folder}: "
                "is this the folder of images you meant?",
                where=where,
                hint="point it at a folder holding only the images (one sub-folder per class for labels)",
            )
        images = [Path(root) / n for n in names if Path(n).suffix.lower() in IMAGE_SUFFIXES]
        odd = next((f for f in images if not f.is_file()), None)  # a FIFO blocked the read for ever
        if odd is not None:
            raise InputDataError(
                f"field `{field}.path`: {odd} is not a regular file (a pipe, a device or a socket, or a link to "
                "nothing): reading it could block for ever",
                where=where,
                hint="remove it from the folder, or point the field at a folder of image files only",
            )
        found += images
    return sorted(found)


def class_of(files: list[Path], root: Path, field: str, where: str) -> dict[Path, str]:
    """Each image's class folder: the immediate sub-folder of ROOT it lies under (at any depth, as torchvision's
    ImageFolder), or '' for every image when none sits in a sub-folder (a flat folder: no labels). A class
    folder holding no image, or images both loose in ROOT and in class folders, is an InputDataError naming it:
    class ids are the sorted class folders' positions, so either would give every image after it a wrong id."""
    top = {f: (f.relative_to(root).parts[0] if len(f.relative_to(root).parts) > 1 else "") for f in files}
    if all(name == "" for name in top.values()):
        return top
    loose = [f for f, name in top.items() if name == ""]
    if loose:
        raise InputDataError(
            f"field `{field}.path`: {len(loose)} image(s) directly in {root} (first: {loose[0].name}) beside "
            "class sub-folders; an image's class is the sub-folder it is in",
            where=where,
            hint="move them into their class's sub-folder, or put every image directly in the folder (no labels)",
        )
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.is_symlink())
    empty = [name for name in folders if name not in set(top.values())]
    if empty:
        raise InputDataError(
            f"field `{field}.path`: class folder(s) {', '.join(repr(n) for n in empty)} in {root} hold no image; "
            "class ids are the sorted sub-folders' positions, so every class after it would get a wrong id",
            where=where,
            hint=f"put that class's images in it, or remove it (image suffixes: {' '.join(sorted(IMAGE_SUFFIXES))})",
        )
    return top


def eight_bit(img: Any, path: Path, field: str, where: str) -> Any:
    """A 16-bit image (Pillow modes I;16*, and I, which 16-bit PNGs also open as) scaled to 0..255 (x / 257): its
    convert() to L or RGB clips every value above 255, an all-white image. A float image (mode F) has no known
    range and is refused by name; every other mode is 8-bit per channel already."""
    from PIL import Image

    if img.mode == "F":
        raise InputDataError(
            f"field `{field}.path`: {path} is a 32-bit float image (Pillow mode F), whose value range is unknown",
            where=where,
            hint="save it as an 8- or 16-bit image, or give the data as a .npy of model inputs",
        )
    if img.mode == "I" or img.mode.startswith("I;16"):
        wide = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8), "L")
    return img


def read_images(files: list[Path], hwc: tuple[int, int, int], field: str, where: str) -> np.ndarray:
    """The image files as one uint8 batch (N, H, W, C): 8-bit (see eight_bit), grey (C = 1) or RGB, resized
    bilinearly to H x W. A file Pillow cannot read is an InputDataError naming it."""
    from PIL import Image  # Pillow comes with matplotlib; pinned in constraints.txt

    h, w, c = hwc
    mode = "L" if c == 1 else "RGB"
    batch = []
    for f in files:
        try:
            with Image.open(f) as img:
                img8 = eight_bit(img, f, field, where)
                arr = np.asarray(img8.convert(mode).resize((w, h), Image.Resampling.BILINEAR), dtype=np.uint8)
        except (
            OSError,
            ValueError,
            Image.DecompressionBombError,
        ) as exc:  # UnidentifiedImageError is an OSError
            raise InputDataError(
                f"field `{field}.path`: cannot read image {f}: {exc}",
                where=where,
                hint="resize it below Pillow's limit (the number of pixels above), or remove it"
                if isinstance(exc, Image.DecompressionBombError)
                else "remove or replace the file (a folder holds only images)",
            ) from None
        batch.append(arr.reshape(h, w, c))
    return np.stack(batch)
