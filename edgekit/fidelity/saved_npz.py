"""An .npz a device wrote (an agent's outputs file), read without trusting what it says of itself.

np.load allocates whatever a member's .npy header states before a byte is read: a header claiming shape
(200000000000, 10) in a member of 64 bytes asked for 7.28 TiB and ended the whole deploy in a MemoryError. Here each
member's header is read first and refused (OutputsFileRefused) when its array is more than the bytes the member holds,
not of numbers, or not the shape the result gives; the zip's own directory and the members' unpacked total are
bounded before zipfile reads them. Nothing is unpickled.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import numpy as np

from edgekit.fidelity.npy_header import HeaderTooLong, read_header
from edgekit.transport.limits import DOWNLOAD_LIMIT

# bytes of arrays read from one outputs file: no more than edgekit downloads (np.savez stores its members
# uncompressed, so an agent's file never unpacks to more than its own size); a deflated member could unpack to a
# thousand times its download
ARRAYS_LIMIT = DOWNLOAD_LIMIT
# bytes of the zip's central directory: zipfile keeps about 860 bytes of memory per member it lists (1,000,000 empty
# members, an 88 MB file: 880 MB), so a 1 GiB file of members was ~10 GB. 8 MiB is some 80,000 members of an agent's
# names (3 outputs saved input by input over 10,000 inputs: 30,000)
DIRECTORY_LIMIT = 8 << 20
CHUNK = 16 << 20  # bytes read at a time into the array
NUMBERS = "biufc"  # dtype kinds an output can have: bool, integers, floats, complex


class OutputsFileRefused(ValueError):
    """An outputs file whose own words (its zip directory, a member's .npy header) ask for more than the file holds
    or than edgekit reads: refused before anything is allocated for it."""


class SavedNpz:
    """The arrays of an agent's .npz by key (its member's name less `.npy`), each read on request and checked
    first; `files` lists the keys. A file that is one .npy, not an .npz, is a ValueError."""

    def __init__(self, path: Path, limit: int = ARRAYS_LIMIT) -> None:
        self.name = path.name
        self._handle = open(path, "rb")  # noqa: SIM115  closed by close(), also when opening fails below
        try:
            self._zip = self._opened(limit)
        except BaseException:
            self._handle.close()
            raise
        self.files = [n[: -len(".npy")] if n.endswith(".npy") else n for n in self._zip.namelist()]
        self._names = set(
            self._zip.namelist()
        )  # once: a set per array made 30,000 members take minutes (r10)

    def _opened(self, limit: int) -> zipfile.ZipFile:
        if self._handle.read(6) == b"\x93NUMPY":
            raise ValueError(f"{self.name} holds one array, not an .npz of outputs")
        self._handle.seek(0)
        # what zipfile reads of the end record (the zip64 one where present): the directory's stated size, which
        # it reads whole and turns into one ZipInfo per member. None: no end record, and zipfile says BadZipFile
        end = zipfile._EndRecData(self._handle)  # type: ignore[attr-defined]
        if end is not None and end[5] > DIRECTORY_LIMIT:  # _ECD_SIZE
            raise OutputsFileRefused(
                f"its zip directory is {end[5]:,} bytes, more than the {DIRECTORY_LIMIT:,} edgekit reads (an agent "
                "writes one member per output, or per output and input)"
            )
        try:
            archive = zipfile.ZipFile(self._handle)
        except (
            NotImplementedError,
            RuntimeError,
        ) as exc:  # a zip version or feature zipfile lacks: no numpy's
            raise ValueError(f"{self.name} is no .npz numpy writes ({exc})") from None
        total = sum(info.file_size for info in archive.infolist())
        if total > limit:
            archive.close()
            raise OutputsFileRefused(
                f"its members unpack to {total:,} bytes, more than the {limit:,} edgekit reads of one outputs file"
            )
        return archive

    def array(self, key: str, expected: Sequence[int] | None = None) -> np.ndarray:
        """The array under `key` (KeyError when the file has none), its header checked before it is read: numbers,
        no more bytes than its member holds, and the `expected` shape when given (-1: any size on that axis)."""
        member = f"{key}.npy" if f"{key}.npy" in self._names else key
        if member not in self._names:
            raise KeyError(f"{key} is not a file in the archive")
        info = self._zip.getinfo(member)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x1:
            raise OutputsFileRefused(  # zipfile's other methods and encryption: NotImplementedError, RuntimeError
                f"{key}: its member is {'encrypted' if info.flag_bits & 0x1 else 'compressed'} in a way np.savez "
                f"and np.savez_compressed never write (method {info.compress_type})"
            )
        try:
            return self._read(key, info, expected)
        except (zlib.error, NotImplementedError, RuntimeError) as exc:  # zipfile's own, of a damaged member
            raise ValueError(f"{key}: its member does not unpack ({exc})") from None

    def _read(self, key: str, info: zipfile.ZipInfo, expected: Sequence[int] | None) -> np.ndarray:
        with self._zip.open(info) as stream:
            shape, fortran, dtype = _header(stream, key)
            size = math.prod(shape) * dtype.itemsize
            held = info.file_size - stream.tell()
            if size > held:
                raise OutputsFileRefused(
                    f"{key}: its header says an array of shape {list(shape)} and type {dtype} ({size:,} bytes), but "
                    f"the member holds {held:,} bytes after its header"
                )
            if expected is not None and not _fits(shape, expected):
                raise OutputsFileRefused(
                    f"{key}: its header says an array of shape {list(shape)}, the result's output_shapes "
                    f"{list(expected)}"
                )
            data, got = bytearray(size), 0  # writable, unlike np.frombuffer of bytes
            while got < size:
                chunk = stream.read(min(size - got, CHUNK))
                if not chunk:
                    raise ValueError(f"{key}: the member ends after {got:,} of its array's {size:,} bytes")
                data[got : got + len(chunk)] = chunk
                got += len(chunk)
        return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")

    def close(self) -> None:
        self._zip.close()
        self._handle.close()

    def __enter__(self) -> SavedNpz:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _header(stream: IO[bytes], key: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """A member's .npy header (shape, Fortran order, dtype), its length checked before it is read (npy_header);
    only the formats numpy writes for numbers (1.0, 2.0) and dtypes of numbers."""
    try:
        shape, fortran, dtype = read_header(stream, f"{key}: ")
    except HeaderTooLong as exc:
        raise OutputsFileRefused(str(exc)) from None
    if dtype.kind not in NUMBERS or dtype.hasobject:
        raise OutputsFileRefused(f"{key}: an array of type {dtype}, not numbers (nothing is unpickled)")
    return shape, fortran, dtype


def _fits(shape: tuple[int, ...], expected: Sequence[int]) -> bool:
    """`shape` is the `expected` one, where -1 (an axis whose size differs by input) takes any size."""
    return len(shape) == len(expected) and all(e < 0 or e == s for s, e in zip(shape, expected))
