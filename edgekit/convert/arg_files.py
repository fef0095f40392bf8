"""The files a builder's `args` name, by content: a builder that loads its own checkpoint (`args: {ckpt:
model.pth}`) is another model when that file is overwritten, so the export's cache key holds the file's digest,
not the path's text alone. Any string among the args (in lists and dicts too) naming an existing file or folder
counts; a relative one as the builder opens it: edgekit passes args as written and runs in the user's working
directory, so relative to that (not to the recipe)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgekit.convert.onnx_export import tree_sha256

# a string longer than this, or with a line break, is text, not a path
_MAX_PATH_CHARS = 4096


def arg_file_digests(args: Any) -> dict[str, str]:
    """{the arg's text: sha256 of the file, or of the folder's files and their relative paths} for every string
    among `args` naming an existing file or folder; empty when none does (the key of a builder without file args
    stays as it was)."""
    digests: dict[str, str] = {}
    for text in _strings(args):
        path = _existing(text)
        if path is not None and text not in digests:
            digests[text] = tree_sha256(path)
    return digests


def _strings(value: Any) -> Iterator[str]:
    """The strings (and paths) in `value`, through dicts' values, lists and tuples."""
    if isinstance(value, str | Path):
        yield str(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _strings(item)


def _existing(text: str) -> Path | None:
    """`text` as a path the builder would open (relative to the working directory), if a file or folder is there."""
    if not text.strip() or len(text) > _MAX_PATH_CHARS or "\n" in text or "\0" in text:
        return None
    path = Path(text)
    try:
        return path if path.is_file() or path.is_dir() else None
    except (OSError, ValueError):  # a name too long for the filesystem, say: not a path
        return None
