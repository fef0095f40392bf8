"""What a device sends is held to a bound on this machine, for every transport: of a command's stdout and stderr
the first OUTPUT_HEAD bytes and the latest ones up to OUTPUT_LIMIT are kept (`keep_bounded`; the lines are still
passed on as they come), and a file over DOWNLOAD_LIMIT (or the limit of `download_limit`) is refused before it is
downloaded (DeviceFileTooLarge). A device printing 400 MB held 1.7 GB of this machine's memory."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from edgekit.errors import DeviceFileTooLarge

OUTPUT_LIMIT = 16 << 20  # bytes of a command's stdout, and of its stderr, kept on this machine
OUTPUT_HEAD = 1 << 20  # of them, the first: the agent's start line, the ssh wrapper's process-group line
# the largest file downloaded from a device: an outputs .npz of a detector is tens of MB (yolov5-lite, 50 inputs
# at 320: 8.8 MB); the result file has a lower limit of its own (agent_result.RESULT_LIMIT)
DOWNLOAD_LIMIT = 1 << 30
_download_limit: ContextVar[int | None] = ContextVar("edgekit_download_limit", default=None)


@contextmanager
def download_limit(limit: int) -> Iterator[None]:
    """The downloads of this thread inside the block refuse a file over `limit` bytes (the result file's)."""
    token = _download_limit.set(limit)
    try:
        yield
    finally:
        _download_limit.reset(token)


def check_download_size(size: int, path: str, where: str) -> None:
    """Refuse (DeviceFileTooLarge) a device's file of `size` bytes over the download limit in force."""
    limit = _download_limit.get() or DOWNLOAD_LIMIT
    if size > limit:
        raise DeviceFileTooLarge(
            f"{path} on the device is {size / 1e6:.1f} MB, over the {limit / 1e6:.1f} MB edgekit downloads; "
            "not downloaded",
            where=where,
        )


def keep_bounded(buf: bytearray, limit: int | None = None) -> None:
    """Hold a command's output `buf`, as it grows, to about `limit` bytes (OUTPUT_LIMIT): once it passes it by
    a quarter, what lies between its first OUTPUT_HEAD bytes and its latest ones is replaced by a line saying so (the
    agent's streamed lines were passed on as they came; its start line is in the head)."""
    limit = OUTPUT_LIMIT if limit is None else limit
    if (
        len(buf) <= limit + limit // 4
    ):  # trimmed once in a quarter of the limit: each byte is moved 4 times at most
        return
    head = min(OUTPUT_HEAD, limit // 4)
    marker = f"\n[edgekit: output dropped here: more than {limit} bytes]\n".encode()
    tail = max(limit - head - len(marker), 0)
    del buf[head + len(marker) : len(buf) - tail]
    buf[head : head + len(marker)] = marker
