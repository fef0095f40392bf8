"""Reading what the agent wrote: its result file (downloaded, validated, outputs names checked), and the
measurements it streams on stdout (said as they arrive; kept when the result file cannot be read).

A result names each artifact's outputs file, which the session downloads to the same name under its own folder:
any name but the one the agent gives (contract.outputs_file_name: outputs/<artifact>.t<threads>.npz) is
refused, nothing is downloaded for it, its timings are kept and the target ends in an AgentError naming the field.
A result file that cannot be read keeps its reason (read_failure) and, when the agent had written it, its remote
path (unread): the session then leaves the device's run folder in place.

Every string the device wrote (its facts, artifact names, errors; the fields edgekit does not declare too) has its
control characters shown as escapes (terminal.printable) as it is read: a hostile device's terminal sequences
never reach the store, a report or the user's terminal.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import from_json

from edgekit.agent.contract import OUTPUTS_DIR, outputs_file_name
from edgekit.errors import (
    AgentError,
    ConnectionLost,
    DeviceFileTooLarge,
    DeviceTimeout,
    EdgekitError,
    TransportError,
)
from edgekit.progress import Measured
from edgekit.results import AgentResult, DeviceFacts, Measurement, unknown_fields
from edgekit.target import Target
from edgekit.terminal import printable
from edgekit.transport import Transport
from edgekit.transport.limits import download_limit

Progress = Callable[[str], None]
STREAM = "EDGEKIT_"  # the agent's stdout lines: EDGEKIT_START {...}, EDGEKIT_MEASUREMENT {...}
# bytes: the largest result file read (refused before its download beyond): 10,000 samples of each of 100
# measurements, with a layer profile, are under 30 MB
RESULT_LIMIT = 64 << 20
LINE_LIMIT = 8 << 20  # characters: the longest streamed line read (one measurement: its samples, its layers)


class ResultReader:
    """One target's result files, read into AgentResults under `local_dir` (result-<n>.json), and what could not
    be read or was refused."""

    def __init__(self, target: Target, local_dir: Path, say: Progress) -> None:
        self.target = target  # the runner sets the place a lab target got
        self.local_dir = local_dir
        self.say = say
        self.refused: list[str] = []  # outputs_file values a result named that the agent never writes
        self.refused_said = False  # raised as this target's AgentError
        self.read_failure = ""  # why the last result file could not be read (fetch)
        # remote result files the agent wrote that were never read (a failed download, a result edgekit refused):
        # the session leaves their run folder on the device instead of removing it
        self.unread: dict[str, str] = {}

    def streamed(self, stdout: str) -> AgentResult | None:
        """The measurements the agent printed (one JSON line each) before the link dropped, or when its result
        file could not be read."""
        start: dict[str, Any] | None = None
        measured: list[Measurement] = []
        for line in stdout.splitlines():
            kind, _, body = line.partition(" ")
            try:
                if kind == f"{STREAM}START":
                    start = line_json(body)
                elif kind == f"{STREAM}MEASUREMENT":
                    measured.append(Measurement.model_validate_json(body))
            except (ValueError, ValidationError):
                continue  # a line cut by the drop
        # no start line, or one of another JSON value than an object (a list: AttributeError below)
        if not isinstance(start, dict):
            return None
        try:
            facts = DeviceFacts.model_validate(start.get("facts_before"))
        except ValidationError:
            return None
        kept = [m.model_copy(update={"outputs_file": None}) for m in measured]  # outputs stayed on the device
        self.say(f"{self.target.name}: {self.read_failure}; kept {len(kept)} streamed measurements")
        return printable_strings(
            AgentResult(started_at=str(start.get("started_at", "")), facts_before=facts, measurements=kept)
        )

    def or_streamed(self, part: AgentResult | None, stdout: str) -> AgentResult | None:
        """The result file read after a stop (a lost link, a Ctrl-C, a timeout), or what the agent streamed when it
        could not be read. A file read lags the stream when the agent was stopped between streaming a measurement
        and writing its file (that write's fsync, on a slow disk): the measurements streamed and not written are
        added, with their outputs file (the agent saves the outputs before it streams the measurement; only its
        own name for them is kept)."""
        if part is None:
            return self.streamed(stdout)
        have = {(m.artifact, m.threads) for m in part.measurements}
        for line in stdout.splitlines():
            kind, _, body = line.partition(" ")
            if kind != f"{STREAM}MEASUREMENT":
                continue
            try:
                m = Measurement.model_validate_json(body)
            except (ValueError, ValidationError):
                continue  # a line cut by the drop
            if (m.artifact, m.threads) in have:
                continue
            if m.outputs_file != outputs_file_name(OUTPUTS_DIR, m.artifact, m.threads):
                m.outputs_file = None
            part.measurements.append(printable_strings(m))
            have.add((m.artifact, m.threads))
            if part.in_progress == f"{m.artifact} threads={m.threads}":
                part.in_progress = None
        return part

    def fetch(self, transport: Transport, remote: str, n: int, *, started: bool = True) -> AgentResult | None:
        """The invocation's result file, downloaded and read; None when it cannot be, with why in read_failure
        (and in `unread` when the agent had written it: `started`, it printed its start line). A lost link
        (ConnectionLost, DeviceTimeout) is raised, for the caller's reconnect."""
        local = self.local_dir / f"result-{n}.json"
        name = PurePosixPath(remote).name
        written = started
        try:
            with download_limit(RESULT_LIMIT):  # refused before the download, on the transports that can tell
                transport.get(remote, local)
            written = True
            if (size := local.stat().st_size) > RESULT_LIMIT:  # the last guard, before it is read into memory
                local.unlink()
                raise DeviceFileTooLarge(
                    f"{name} is {size / 1e6:.1f} MB, over the {RESULT_LIMIT / 1e6:.1f} MB edgekit reads",
                    where=self.target.name,
                )
            result = AgentResult.model_validate_json(local.read_bytes())
        except (ConnectionLost, DeviceTimeout) as exc:
            self.read_failure = f"the download of {name} failed: {type(exc).__name__}: {exc}"
            if written:
                self.unread[remote] = self.read_failure
            raise
        except ValidationError as exc:
            self.read_failure = f"{name} is not a result edgekit reads ({_first_error(exc)})"
        except (TransportError, OSError) as exc:
            self.read_failure = f"{name} could not be {'read' if written else 'downloaded'} ({exc})"
        else:
            self.unread.pop(remote, None)
            return self.checked(result, name)
        if written:
            self.unread[remote] = self.read_failure
        return None

    def try_fetch(self, transport: Transport, remote: str, n: int) -> AgentResult | None:
        """fetch, where a lost link is one more reason the result could not be read (after a failure already)."""
        try:
            return self.fetch(transport, remote, n)
        except (ConnectionLost, DeviceTimeout):
            return None

    def checked(self, result: AgentResult, name: str) -> AgentResult:
        """A result read: its strings made printable, undeclared fields said, outputs files other than the agent's
        own refused."""
        printable_strings(result)
        if unknown := unknown_fields(result):  # kept (and stored), but the agent and edgekit are out of step
            self.say(
                f"{self.target.name}: warning: the agent wrote fields edgekit does not declare: "
                f"{', '.join(unknown[:5])}"
            )
        self.refuse_foreign_outputs(result, name)
        return result

    def refuse_foreign_outputs(self, result: AgentResult, name: str) -> None:
        """Every outputs_file but the agent's own name for that measurement (or one that would still land outside
        local_dir) is dropped before anything is downloaded, and said (raise_refused); the timings stay."""
        for i, m in enumerate(result.measurements):
            if m.outputs_file is None:
                continue
            expected = outputs_file_name(OUTPUTS_DIR, m.artifact, m.threads)
            if m.outputs_file == expected and lies_under(self.local_dir / expected, self.local_dir):
                continue
            self.refused.append(
                f"{name}: measurements[{i}].outputs_file ({m.artifact} at {m.threads} threads) is "
                f"{m.outputs_file[:200]!r}, not the agent's {expected!r}"
            )
            m.outputs_file = None

    def raise_refused(self) -> None:
        """The refused outputs_file values as this target's AgentError (the measurements are merged already)."""
        error = self.take_refusal()
        if error is not None:
            raise error

    def take_refusal(self) -> AgentError | None:
        """The AgentError naming every refused outputs_file, once (the session says it when a run ended in
        another error first: a timeout, a lost link, Ctrl-C)."""
        if not self.refused or self.refused_said:
            return None
        self.refused_said = True
        return AgentError(
            f"the device's result names an outputs file edgekit's agent never writes: {'; '.join(self.refused)}; "
            "nothing was downloaded for it (its timings are kept, its outputs are not compared)",
            where=self.target.name,
            hint="the agent's result was altered on the device: check who else can write to its work dir",
        )


def measured_lines(target: Target, say: Progress) -> Callable[[str], None]:
    """A reader of the agent's stdout as it arrives: says as it arrives and says each measurement it streams (the live progress
    counts them and estimates the time left from them)."""
    pending: list[
        str
    ] = []  # the line begun and not yet ended, in pieces (a flood without a newline is dropped)
    size = [0]

    def feed(text: str) -> None:
        first, newline, rest = text.partition("\n")
        if size[0] + len(first) > LINE_LIMIT:  # no line the agent streams is that long: dropped to its end
            pending[:], size[0] = [], LINE_LIMIT + 1
        elif size[0] <= LINE_LIMIT:
            pending.append(first)
            size[0] += len(first)
        if not newline:
            return
        *lines, last = rest.split("\n")
        if size[0] <= LINE_LIMIT:
            lines.insert(0, "".join(pending))
        pending[:], size[0] = [last], len(last)
        for line in lines:
            kind, _, body = line.partition(" ")
            if kind != f"{STREAM}MEASUREMENT":  # as agent.stream() writes it
                continue
            try:
                m = line_json(body)
                artifact, threads = printable(str(m["artifact"])), int(m["threads"])
                status = printable(str(m["status"]))
            except (ValueError, KeyError, TypeError):
                continue
            p50, error = m.get("p50_ms"), m.get("error")
            if status != "ok":  # a failed measurement is said with why, never with a figure it may carry
                figure = f": {printable(str(error).splitlines()[0])[:200]}" if error else ""
            elif isinstance(p50, (int, float)):
                figure = f", p50 {p50:.4g} ms{' (emulated wall time)' if target.emulated else ''}"
            else:
                figure = ""
            missing = _missing_runtime(m)
            if missing:  # the session records it so (deploy/runtime_missing.py): said so as it streams
                status, figure = "skipped", f": runtime {printable(missing)} not installed"
            say(
                Measured(
                    target.name,
                    artifact,
                    threads,
                    status,
                    f"{target.name}: {artifact} x{threads} {status}{figure}",
                )
            )

    return feed


def _missing_runtime(m: dict[str, Any]) -> str | None:
    """'MNN' for a streamed measurement that failed to load because its runtime is not installed, else None."""
    from edgekit.deploy.runtime_missing import missing_modules
    from edgekit.formats import Format
    from edgekit.runtimes import spec_for

    if (
        m.get("status") != "failed"
        or m.get("error_code") != "load_error"
        or not isinstance(m.get("error"), str)
    ):
        return None
    try:
        modules = spec_for(Format(m.get("format"))).modules()
    except (ValueError, EdgekitError):  # a format this edgekit does not know
        return None
    return " or ".join(missing_modules(m["error"], modules)) or None


def line_json(body: str) -> Any:
    """One JSON line the agent printed, parsed as its result file is (pydantic's parser): nesting past its limit is
    a ValueError, as any garbled line (json.loads raised RecursionError on 100,000 brackets, which ended the run)."""
    return from_json(body)


def started(stdout: str) -> bool:
    """Whether the agent printed its start line: it writes its result file first, so the file exists."""
    return any(line.startswith(f"{STREAM}START ") for line in stdout.splitlines())


def printable_strings(value: Any) -> Any:
    """`value` (a model read from the device, changed in place; a list, a dict, a string) with every string and
    dict key made printable (control characters as escapes); enums and numbers as they are."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            current = getattr(value, name)
            if (cleaned := printable_strings(current)) != current:  # a field set stays unset when it is clean
                setattr(value, name, cleaned)
        if value.model_extra:  # undeclared fields: their names too (said in a warning, kept in the store)
            extra = printable_strings(dict(value.model_extra))
            value.model_extra.clear()
            value.model_extra.update(extra)
        return value
    if isinstance(value, Enum):
        return value
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list):
        return [printable_strings(item) for item in value]
    if isinstance(value, dict):
        return {printable_strings(key): printable_strings(item) for key, item in value.items()}
    return value


def _first_error(exc: ValidationError) -> str:
    """A pydantic error as `field.path: message`, with how many more there are."""
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "the file"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{field}: {first['msg']}{more}"


def lies_under(path: Path, folder: Path) -> bool:
    """Whether `path`, resolved (symlinks, `..`), is inside `folder`."""
    return Path(path).resolve().is_relative_to(Path(folder).resolve())
