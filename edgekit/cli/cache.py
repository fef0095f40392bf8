"""`edgekit cache [prune]`: what the conversion cache holds, and removing what is no longer used."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from datetime import UTC, datetime

import typer
from rich.table import Table

from edgekit.errors import UsageError
from edgekit.report.figures import megabytes
from edgekit.terminal import Console, plain

console = Console()
cache_app = typer.Typer(
    help="What the conversion cache holds (artifacts, prepared ONNX models, instruction counts, zero-weight copies, "
    "damaged entries, leftovers of killed runs), and beside it the runs' folders and the host's copies of "
    "artifacts, and `prune` to remove what was not used lately.\n\nExample: edgekit cache prune --older-than 30d",
    invoke_without_command=True,
)


@cache_app.callback()
def info_cmd(ctx: typer.Context) -> None:
    """Where the cache is, and per kind of entry how many and how large, with the oldest last use; the runs'
    folders (runs/) and the host's copies of artifacts and inputs (local/) beside it too.

    Example: edgekit cache
    """
    if ctx.invoked_subcommand is not None:
        return
    from edgekit import paths, run_files
    from edgekit.convert import housekeeping
    from edgekit.transport import work_prune

    root = paths.cache_dir()
    entries = housekeeping.scan(root) + run_files.scan(root.parent)
    console.print(
        f"cache: {plain(root)} (instruction counts and zero-weight copies beside it: "
        f"{plain(root.parent / 'counts')}, {plain(root.parent / 'zero-weights')}; runs' folders: "
        f"{plain(root.parent / 'runs')}, the host's copies: {plain(root.parent / 'local')})",
        highlight=False,
    )
    if not entries:
        console.print("empty: `edgekit convert` or `edgekit deploy` fill it", highlight=False)
        return
    table = Table("kind", "entries", "size", "oldest use", "newest use")
    for kind in housekeeping.KINDS + run_files.KINDS:
        of = [e for e in entries if e.kind == kind]
        if of:
            table.add_row(
                kind,
                str(len(of)),
                megabytes(sum(e.size_bytes for e in of)),
                _when(of[0].last_used),
                _when(of[-1].last_used),
            )
    console.print(table)
    recent = [
        e
        for e in entries
        if e.kind == "leftover" and e.last_used >= time.time() - housekeeping.LEFTOVER_AGE_S
    ]
    if recent:  # a running convert's work folder is one: not a killed run's until it is a day old
        console.print(
            f"leftover: {len(recent)} used in the last day, possibly by a command still running (a conversion's "
            "work folder); `cache prune` removes leftovers only once they are a day old",
            highlight=False,
        )
    if any(e.kind in run_files.KINDS for e in entries):
        console.print(
            f"run, host copy: removed on their own when a run starts (not used for "
            f"{work_prune.PRUNE_ARTIFACT_DAYS} days, or the oldest day-old ones beyond "
            f"{work_prune.PRUNE_ARTIFACT_MB / 1024:g} GB; a failed run's agent folder after a day), as on a device; "
            "never a run still going",
            highlight=False,
        )
    formats = Counter(e.label for e in entries if e.kind == "artifact")
    if formats:
        console.print(
            "artifacts: " + plain(", ".join(f"{n} {f}" for f, n in sorted(formats.items()))), highlight=False
        )
    console.print(
        f"total {megabytes(sum(e.size_bytes for e in entries))}; `edgekit cache prune --older-than 30d` removes "
        "what no run used in 30 days (a later run converts or counts it again)",
        highlight=False,
    )


@cache_app.command("prune")
def prune_cmd(
    older_than: str | None = typer.Option(
        None,
        "--older-than",
        help="remove entries not used for this long: 30d (the default), 12h, 2w, 90m (minutes), or a date",
    ),
    everything: bool = typer.Option(False, "--all", help="remove every entry, however recent"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would go; remove nothing"),
    wait: float = typer.Option(
        0.0,
        "--wait",
        min=0.0,
        max=86400.0,
        help="seconds to wait for other edgekit commands to finish (a cron prune beside a nightly); 0: refuse at once",
    ),
) -> None:
    """Remove cache entries no run used within --older-than (default 30 days), every damaged entry, and folders
    that killed runs left behind (older than a day); the runs' folders and the host's copies of artifacts by the
    same --older-than (never a run still going). A removed artifact is converted again when next needed, a
    removed instruction count counted again, a removed host copy copied again.
    Refused while another edgekit command uses the cache (a deploy, convert or nightly).

    Example: edgekit cache prune --older-than 2w --dry-run
    """
    from edgekit import paths, run_files
    from edgekit.convert import housekeeping
    from edgekit.report import parse_since

    now = time.time()
    if everything and older_than is not None:
        raise UsageError(
            "--all and --older-than: give one of them",
            hint="--all removes every entry; --older-than 30d what no run used in 30 days",
        )
    # "" is no duration: it meant the default 30 days in silence (a script's empty variable)
    given = "30d" if older_than is None else older_than
    cutoff = None if everything else parse_since(given, option="--older-than", now=now)
    if not everything and cutoff is None:
        raise UsageError("--older-than: give a duration or a date", hint="to remove every entry use --all")
    if cutoff is not None and cutoff > now:
        raise UsageError(
            f"--older-than {older_than}: {_when(cutoff)} is in the future, so every entry would go",
            hint="give a past date or a duration (30d, 2w); --all removes every entry",
        )
    root = paths.cache_dir()
    if cutoff is not None:
        console.print(f"entries not used since {_when(cutoff)} ({_ago(now - cutoff)})", highlight=False)
    done: list[housekeeping.Entry] = []
    # the lock only while removing: printing (into `less`, a slow terminal) must not hold every command up
    with contextlib.nullcontext() if dry_run else housekeeping.exclusive(root, wait_s=wait):
        found = housekeeping.scan(root) + run_files.scan(root.parent)
        chosen = housekeeping.to_prune(found, cutoff, now=now)
        done = [e for e in chosen if dry_run or housekeeping.remove(e)]
    freed = sum(e.size_bytes for e in done)
    for e in done:
        what = e.label if e.kind.replace("-", " ") in e.label else f"{e.kind} {e.label}"  # not 'onnx onnx'
        console.print(
            f"{'would remove' if dry_run else 'removed'} {plain(what)} "
            f"{plain(e.path.name if e.kind in run_files.KINDS else e.path.name[:12])} "
            f"({megabytes(e.size_bytes)}, last used {_when(e.last_used)})",
            highlight=False,
        )
    verb = "would free" if dry_run else "freed"
    beside = (
        " and its runs' folders and host copies" if any(e.kind in run_files.KINDS for e in chosen) else ""
    )
    console.print(
        f"{len(chosen)} entr{'y' if len(chosen) == 1 else 'ies'}, {verb} {megabytes(freed)} in {plain(root)}{beside}",
        highlight=False,
    )
    running = [e for e in found if e.busy]
    if running:
        console.print(
            f"kept {len(running)} run folder{'s' * (len(running) != 1)} of a command still running",
            highlight=False,
        )


def _ago(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds / size
            return f"{n:.3g} {unit}{'s' * (round(n, 2) != 1)} ago"
    return f"{seconds:.0f} s ago"


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
