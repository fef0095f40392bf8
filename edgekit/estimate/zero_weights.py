"""Zero weights for a bare ncnn .param, the way ncnn's benchncnn runs its models: ncnn's benchmark folder ships
.param files only, and benchncnn loads them with an empty data reader (every weight byte zero).

`edgekit estimate`, `roofline` and `profile` on an emulated core take such a .param: the .bin ncnn would read is
written beside a copy of it in edgekit's data dir, all zeros and sparse (no disk is used for the zeros), sized by
letting this host's ncnn load the .param from a reader that counts the bytes it is asked for and hands back
zeros (the size of each layer's weights depends on the flags ncnn reads first, so zeros must come back, as in
benchncnn). Instruction counts of zero weights are the calibration's own basis (every calibration model is
counted so); outputs of zero weights mean nothing, so `deploy` and `bench` still need the real .bin.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edgekit.errors import EdgekitError, InputDataError
from edgekit.paths import data_dir

NOTE = (
    "no .bin beside the .param: its weights are read as zeros, as benchncnn reads them (counts, not outputs)"
)


def needs_zero_weights(param: Path) -> bool:
    """A bare .param (no edgekit sidecar) with no .bin beside it. An edgekit artifact without its .bin is broken,
    not bare: that stays an error."""
    return (
        param.suffix == ".param"
        and not param.with_suffix(".bin").exists()
        and not param.with_suffix(".io.json").exists()
    )


def _pointer(capsule: object) -> int:
    """The address a pybind11 capsule holds (ncnn's read buffer)."""
    name = ctypes.pythonapi.PyCapsule_GetName
    name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    return int(get(capsule, name(capsule)))


def zero_bin_bytes(param: Path) -> int:
    """How many bytes ncnn reads for this .param's weights when every byte it reads is zero."""
    import ncnn

    class Zeros(ncnn.DataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            ncnn.DataReader.__init__(self)
            self.size = 0

        def scan(self, fmt: str, p: object) -> int:
            return 0

        def read(self, buf: object, size: int) -> int:
            ctypes.memset(_pointer(buf), 0, size)
            self.size += size
            return size

    net = ncnn.Net()
    if net.load_param(str(param)) != 0:
        from edgekit.convert.ncnn.runtime import param_load_error

        why = param_load_error(param)
        raise InputDataError(why.message, where=str(param), hint=why.hint)
    reader = Zeros()
    if net.load_model(reader) != 0:
        raise InputDataError(
            "ncnn cannot load this model even with zero weights (ncnn's message above says which layer)",
            where=str(param),
            hint="check the .param with ncnn's own tools, or give its .bin beside it",
        )
    return reader.size


def write_zeros(path: Path, size: int) -> None:
    """An all-zero file of `size` bytes, sparse: the zeros take no disk."""
    if not path.exists() or path.stat().st_size != size:
        with open(path, "wb") as handle:
            handle.truncate(size)


def with_zero_weights(param: Path) -> Path:
    """A copy of the bare .param with an all-zero .bin of the size ncnn reads beside it, under the data dir (one
    folder per .param content, made once): the path to count, profile or analyse in its place."""
    from edgekit.runtimes.ncnn import parse_param

    text = param.read_bytes()
    folder = data_dir() / "zero-weights" / hashlib.sha256(text).hexdigest()[:16]
    copy = folder / param.name
    weights = copy.with_suffix(".bin")
    if copy.exists() and copy.read_bytes() == text and weights.exists():
        try:
            os.utime(folder)  # a use: `edgekit cache prune` keeps what was used lately
        except OSError:
            pass
        return copy
    from edgekit.estimate.ncnn_bounds import HostBudget

    HostBudget(param, parse_param(param))  # the user's file named in any error; weights over the caps refused
    size = zero_bin_bytes(param)  # before ncnn allocates them here
    folder.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(text)
    write_zeros(weights, size)
    return copy


def weights_for(artifact: Path) -> tuple[Path, str]:
    """(the path to load, a note): a bare .param without a .bin gives its zero-weight copy and NOTE; anything
    else itself and ""."""
    if needs_zero_weights(artifact):
        return with_zero_weights(artifact), NOTE
    return artifact, ""


@contextmanager
def named_as_given(given: Path, loaded: Path) -> Iterator[None]:
    """An error about `loaded` (weights_for's zero-weight copy under the data dir) names the user's file `given`
    instead: "/root/.local/share/edgekit/zero-weights/<hash>/m.param: ..." named a file the user never gave."""
    try:
        yield
    except EdgekitError as err:
        if Path(loaded) == Path(given):
            raise
        copy, user = str(loaded), str(given)
        where = user if err.where == copy else err.where
        try:
            renamed = type(err)(err.message.replace(copy, user), where=where, hint=err.hint)
        except TypeError:  # an error class with its own arguments: as it was
            raise err from None
        raise renamed from err
