"""A .npy header, read and checked before its array is: np.load allocates whatever a header states, so the readers
of files edgekit did not write (an agent's outputs .npz, bench's --input) read the header first and judge the
array it announces against the bytes there are.
"""

from __future__ import annotations

import io
from typing import IO

import numpy as np
from numpy.lib import format as npy

HEADER_LIMIT = 10_000  # bytes of one .npy header: numpy's own limit (np.load's max_header_size)


class HeaderTooLong(ValueError):
    """A header whose stated length is more than HEADER_LIMIT: refused before it is read."""


def read_header(stream: IO[bytes], named: str = "") -> tuple[tuple[int, ...], bool, np.dtype]:
    """The header at the stream's position (shape, Fortran order, dtype), the stream left at the array's first
    byte: only the formats numpy writes for numbers (1.0, 2.0; ValueError else), its length checked before it is
    read (HeaderTooLong). `named` goes before each message ('logits: ')."""
    version = npy.read_magic(stream)  # type: ignore[no-untyped-call]
    if version not in ((1, 0), (2, 0)):  # 3.0: non-Latin-1 field names, never an array of numbers
        raise ValueError(f"{named}unsupported .npy format version {version[0]}.{version[1]}")
    prefix = stream.read(2 if version == (1, 0) else 4)
    length = int.from_bytes(prefix, "little")
    if length > HEADER_LIMIT:
        raise HeaderTooLong(
            f"{named}its .npy header is {length:,} bytes, more than numpy reads ({HEADER_LIMIT:,})"
        )
    text = io.BytesIO(prefix + stream.read(length))
    read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    shape, fortran, dtype = read(text)  # type: ignore[no-untyped-call]
    if any(
        d < 0 for d in shape
    ):  # np.load would size such an axis from the bytes there are: corrupt, not data
        raise ValueError(f"{named}its header says shape {list(shape)}: a negative dimension")
    return tuple(shape), bool(fortran), dtype
