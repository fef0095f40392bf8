"""Progress a person can trust during long device runs: per target, how many measurements are done out of how
many, the one running now, the elapsed time and an ETA from the measurements finished so far.

Progress messages stay plain strings (every `progress` callback takes one); the two that carry data are str
subclasses, so a consumer that only prints them loses nothing:

    say(Planned("pi4-emu", [("tflite-fp32", 1), ("tflite-fp32", 4)], "pi4-emu: agent measuring ..."))
    say(Measured("pi4-emu", "tflite-fp32", 1, "ok", "pi4-emu: tflite-fp32 x1 ok, p50 512 ms"))

`Board` folds them into one line per target; `live_progress` shows that board under the log lines on a terminal
(a plain log elsewhere) and keeps runtime log noise (TensorFlow Lite's `INFO: Created TensorFlow Lite XNNPACK
delegate`, absl `I0000 ...` lines written by C++ straight to the process's stderr) out of the display.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from edgekit.terminal import plain, printable


class Planned(str):
    """A progress message saying which (artifact, threads) measurements a target is about to make."""

    target: str
    items: tuple[tuple[str, int], ...]

    def __new__(cls, target: str, items: Sequence[tuple[str, int]], text: str) -> Planned:
        message = super().__new__(cls, text)
        message.target, message.items = target, tuple(items)
        return message


class Measured(str):
    """A progress message saying that one measurement (artifact x threads) on a target has finished."""

    target: str
    artifact: str
    threads: int
    status: str

    def __new__(cls, target: str, artifact: str, threads: int, status: str, text: str) -> Measured:
        message = super().__new__(cls, text)
        message.target, message.artifact, message.threads, message.status = target, artifact, threads, status
        return message


def eta_seconds(durations: Sequence[float], remaining: int, running_for: float = 0.0) -> float | None:
    """Seconds left for `remaining` measurements (the one running now included), from the mean duration of
    those finished so far; None before the first has finished (no sample, no estimate). The running one
    counts as nearly done once it has lasted as long as the mean (it cannot take negative time)."""
    if not durations or remaining <= 0:
        return None if not durations else 0.0
    mean = sum(durations) / len(durations)
    return mean * (remaining - 1) + max(mean - running_for, 0.0)


def clock(seconds: float) -> str:
    """'42 s', '6:26', '1:02:05'."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass
class Tracker:
    """One target's measurements: planned, finished, how long each took (wall time on this machine, from the
    end of the one before: agent start-up and cool-down included, as they are in the time still to wait)."""

    target: str
    planned: list[tuple[str, int]] = field(default_factory=list)
    finished: dict[tuple[str, int], str] = field(default_factory=dict)  # -> status
    durations: list[float] = field(default_factory=list)  # of the successful ones
    started: float | None = None  # when the current measurement began
    first: float | None = None  # when the first plan arrived

    def plan(self, items: Sequence[tuple[str, int]], now: float) -> None:
        self.planned += [i for i in items if i not in self.planned]
        self.started = now if self.started is None else self.started
        self.first = now if self.first is None else self.first

    def measured(self, item: tuple[str, int], status: str, now: float) -> None:
        self.finished[item] = status
        if status == "ok" and self.started is not None:
            self.durations.append(now - self.started)  # a failure's time says nothing about the next one's
        self.started = now

    def current(self) -> tuple[str, int] | None:
        return next((i for i in self.planned if i not in self.finished), None)

    def line(self, now: float) -> str:
        """'pi4-emu: 3/8 measured, now tflite-int8 x4, 2:13 elapsed, ETA 3:40'."""
        if not self.planned:
            return f"{self.target}: preparing"
        done, total, now_on = len(self.finished), len(self.planned), self.current()
        elapsed = clock(now - self.first) if self.first is not None else "-"
        failed = sum(1 for s in self.finished.values() if s != "ok")
        failed_text = f" ({failed} failed)" if failed else ""
        if now_on is None:  # all done: the time it took, no longer ticking
            took = clock((self.started or now) - (self.first or now))
            return f"{self.target}: {done}/{total} measured{failed_text} in {took}"
        eta = eta_seconds(self.durations, total - done, now - (self.started or now))
        guess = f"ETA {clock(eta)}" if eta is not None else "ETA after the first measurement"
        return (
            f"{self.target}: {done}/{total} measured{failed_text}, now {now_on[0]} x{now_on[1]}, "
            f"{elapsed} elapsed, {guess}"
        )


class Board:
    """Every target's tracker and the latest message; safe to feed from the deploy's per-target threads."""

    def __init__(self, title: str, clock_: Callable[[], float] = time.monotonic) -> None:
        self.title = title
        self.now = clock_
        self.start = clock_()
        self.trackers: dict[str, Tracker] = {}
        self.status = "starting"
        self._lock = threading.Lock()

    def feed(self, message: str) -> None:
        with self._lock:
            now = self.now()
            if isinstance(message, Planned):
                self._tracker(message.target).plan(message.items, now)
            elif isinstance(message, Measured):
                self._tracker(message.target).measured(
                    (message.artifact, message.threads), message.status, now
                )
            self.status = message.splitlines()[0] if message else self.status

    def lines(self) -> list[str]:
        with self._lock:
            now = self.now()
            head = f"{self.title}: {clock(now - self.start)}, {self.status}"
            return [head] + [f"  {t.line(now)}" for t in self.trackers.values()]

    def render(self) -> Group:
        return Group(*(Text(printable(line), no_wrap=True, overflow="ellipsis") for line in self.lines()))

    def _tracker(self, target: str) -> Tracker:
        return self.trackers.setdefault(target, Tracker(target))


@contextmanager
def live_progress(console: Console, title: str) -> Iterator[Callable[[str], None]]:
    """A `progress` callback for a long command: each message printed as a log line (elapsed seconds first),
    and on a terminal a live board of every target under them. Runtime INFO noise on stderr is kept out."""
    board = Board(title)

    def say(message: str) -> None:
        board.feed(message)
        live_or_console.print(
            f"[dim]{board.now() - board.start:7.1f} s  {plain(message)}[/]", highlight=False
        )

    with quiet_runtime_logs():
        if not console.is_terminal:
            live_or_console = console
            yield say
            return
        with Live(
            get_renderable=board.render,
            console=console,
            refresh_per_second=4,
            transient=True,
            redirect_stderr=False,
        ) as live:  # stderr is kept quiet and written back after
            live_or_console = live.console
            yield say


# C++ runtimes log to the process's stderr directly: TF Lite ("INFO: Created TensorFlow Lite XNNPACK delegate
# for CPU."), absl/glog ("I0000 00:00:1732 123 file.cc:42] ..."), TensorFlow ("2026-01-01 10:00:00.0: I tensor...")
RUNTIME_INFO = re.compile(r"^(INFO: |I\d{4} \d\d:\d\d:\d\d|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: I )")


@contextmanager
def quiet_runtime_logs() -> Iterator[None]:
    """Send file descriptor 2 (what C++ code writes, and Python's stderr) to a temporary file while a live
    display runs; afterwards write back every line except runtime INFO lines (warnings and errors stay)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to keep quiet
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [
                line
                for line in sink.read().decode(errors="replace").splitlines(keepends=True)
                if not RUNTIME_INFO.match(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
