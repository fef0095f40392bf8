"""`edgekit runs import`: deploy results written by `edgekit deploy --json` (on another machine, or kept when the
store failed) read whole, checked, and recorded; a file that is not one is refused before the store is touched."""

from __future__ import annotations

import codecs
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgekit.cli.report import STORE_HELP
from edgekit.terminal import Console, plain, plain_line

if TYPE_CHECKING:
    from edgekit.results import DeployResult

console = Console()
if not console.is_terminal:  # logs and CI: keep lines whole
    console.width = max(console.width, 160)
STORE = typer.Option(None, "--store", help=STORE_HELP)


def _why_not_a_result(exc: Exception) -> str:
    """What is wrong with a file given to `runs import`: the first problem, with the field it is in."""
    from pydantic import ValidationError

    if isinstance(exc, OSError):
        return f"cannot read it ({exc.strerror or exc})"
    assert isinstance(exc, ValidationError)
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    more = exc.error_count() - 1
    return (
        f"{first['msg']}"
        + (f" (at {where})" if where else "")
        + (f"; and {more} more problem{'s' if more > 1 else ''}" if more else "")
    )


def import_cmd(
    files: list[Path] = typer.Argument(..., help="deploy result JSON files (`edgekit deploy --json PATH`)"),
    store: str | None = STORE,
) -> None:
    """Record deploy results written by `edgekit deploy --json` (for example on another machine).

    Example: edgekit runs import results/yolov5-lite-pi4.json
    """
    from pydantic import ValidationError

    from edgekit.errors import EdgekitError, InputDataError
    from edgekit.results import DeployResult
    from edgekit.store import open_store
    from edgekit.store.masked import masked_result

    results = []
    for path in files:  # every file is read before the store is touched: a bad one imports nothing
        try:
            if (
                path.exists() and not path.is_file()
            ):  # a folder, or /dev/zero and FIFOs: read forever or block
                raise IsADirectoryError(0, "not a regular file")
            result = _importable(path, DeployResult.model_validate_json(_read_capped(path)))
            results.append((path, masked_result(result)))  # a proxy command's password in an error: masked
        except (OSError, ValidationError) as exc:
            raise InputDataError(  # the file given is bad input (exit 2), not a store fault
                f"not a deploy result: {_why_not_a_result(exc)}"
                + ("; nothing was imported" if len(files) > 1 else ""),
                where=str(path),
                hint="pass a file written by `edgekit deploy --json PATH`",
            ) from exc
    try:
        opened = open_store(store)
    except EdgekitError as exc:  # nothing was recorded: said, as a bad file says it
        if len(results) > 1:
            exc.message += "; nothing was imported"
        raise
    with opened as db:
        for k, (path, result) in enumerate(results):
            if result.finished_at is None:
                stopped = [r.target for r in result.runs if r.interrupted]
                said = (
                    f"recorded as interrupted on {', '.join(stopped)}, what it measured kept"
                    if stopped
                    else "every target had finished measuring: recorded with what it measured, as not ok (what "
                    "deploy does after measuring, the comparisons and estimates, may be missing)"
                )
                console.print(
                    f"{plain_line(path)}: this deploy did not finish (the file has no finished_at: killed before it "
                    f"ended?); {plain(said)}",
                    highlight=False,
                )
            try:
                run_id, new = db.record_new(result)  # looked for and recorded in one transaction
            except (
                EdgekitError
            ) as exc:  # a full disk, a server gone: which file failed, and which were not tried
                left = [plain_line(p) for p, _ in results[k + 1 :]]
                exc.message += f" (recording {plain_line(path)}" + (
                    f"; not tried: {', '.join(left)}; import them again once it is fixed)" if left else ")"
                )
                raise
            if not new:
                console.print(
                    f"{plain_line(path)}: already recorded as run {run_id}; not imported again",
                    highlight=False,
                )
                continue
            console.print(
                f"{plain_line(path)}: recorded as run {run_id} ({plain(result.recipe)}, {plain(result.started_at)})",
                highlight=False,
            )


MAX_RESULT_BYTES = 256 * 1024 * 1024  # a deploy's --json is kilobytes to a few MB; a bigger file is not one


def _read_capped(path: Path) -> bytes:
    """The file's bytes without a leading UTF-8 byte-order mark, refused beyond MAX_RESULT_BYTES before it is read
    whole (a file of any size was read into memory, then parsed)."""
    from edgekit.errors import InputDataError

    with path.open("rb") as f:  # its size first (nothing read), then at most one byte more (a file growing)
        too_big = os.fstat(f.fileno()).st_size > MAX_RESULT_BYTES
        data = b"" if too_big else f.read(MAX_RESULT_BYTES + 1)
    if too_big or len(data) > MAX_RESULT_BYTES:
        raise InputDataError(
            f"not a deploy result: larger than {MAX_RESULT_BYTES // (1024 * 1024)} MiB (a deploy's --json is a few MB)",
            where=str(path),
            hint="pass a file written by `edgekit deploy --json PATH`",
        )
    # a UTF-8 byte-order mark (Windows PowerShell 5's `Out-File -Encoding utf8` writes one) is no JSON: it was
    # refused as `Invalid JSON: expected value at line 1 column 1`
    return data.removeprefix(codecs.BOM_UTF8)


FUTURE_SLACK_S = 3600.0  # clocks of two machines may disagree this much
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # a time before it is a clock unset or a file edited


def _importable(path: Path, result: DeployResult) -> DeployResult:
    """A result the store can order and read: not from a newer edgekit (its protocol), not started in the future
    (the report takes the latest run by its time: a run dated next year hid every later night). A deploy killed
    before it ended (its --json written along the way, no finished_at) is marked interrupted, each target it did
    not finish saying so: imported as it was, it showed as a failure without a reason. Such a run is not ok
    (deploy says ok as it ends): a file that said ok was listed as ok, every target finished or not."""

    from edgekit.agent.contract import PROTOCOL_VERSION
    from edgekit.errors import InputDataError
    from edgekit.store.imported import import_problem

    if result.protocol > PROTOCOL_VERSION:
        raise InputDataError(
            f"written by a newer edgekit (result protocol {result.protocol}; this one reads up to "
            f"{PROTOCOL_VERSION})",
            where=str(path),
            hint="import it with the edgekit that wrote it, or upgrade this one",
        )
    started = datetime.fromisoformat(result.started_at)
    started = started if started.tzinfo else started.replace(tzinfo=UTC)
    for name, text in (("started_at", result.started_at), ("finished_at", result.finished_at)):
        when = datetime.fromisoformat(text) if text else None
        if when is not None and when.replace(tzinfo=when.tzinfo or UTC) < EARLIEST:
            raise InputDataError(  # year 0001 was recorded, then the report's time axis crashed on it
                f"{name} {text} is before 2000: no edgekit deploy ran then, and the report cannot draw it",
                where=str(path),
                hint="check the clock of the machine that wrote it, and correct the time in the file",
            )
    ahead = (started - datetime.now(UTC)).total_seconds()
    if ahead > FUTURE_SLACK_S:
        raise InputDataError(
            f"started_at {result.started_at} is {ahead / 86400:.1f} days in the future: the report takes the "
            "latest run by its time, so it would hide every run after it",
            where=str(path),
            hint="check the clock of the machine that wrote it, and correct started_at in the file",
        )
    problem = import_problem(result)
    if problem is not None:  # a hand-edited or foreign file: 1e30 reached the database, `../../etc` a report
        raise InputDataError(
            f"not a deploy result edgekit can record: {problem}",
            where=str(path),
            hint="pass a file written by `edgekit deploy --json PATH`, or correct that field",
        )
    if result.finished_at is not None:
        return result
    said = "did not finish: the deploy ended before writing its result (killed?)"
    runs = [
        r if r.status == "ok" or r.error else r.model_copy(update={"error": said, "interrupted": True})
        for r in result.runs
    ]
    return result.model_copy(update={"runs": runs, "ok": False})
