"""`edgekit deploy RECIPE --target NAME`: convert, push, run the timing agent on each target and on the host CPU,
pull the results back, compare, and print one table. Exit 0 only when every artifact ran everywhere and met its
recipe's fidelity gates."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from edgekit.cli.formats import FORMATS_OPTION
from edgekit.cli.outputs import check_output_file
from edgekit.errors import Interrupted, OutputFileError, StoreError, UsageError
from edgekit.formats import Format
from edgekit.paths import write_atomic
from edgekit.recipe.schema import MAX_REPEAT, MAX_WARMUP
from edgekit.terminal import Console, plain

if TYPE_CHECKING:
    from edgekit.results import DeployResult

console = Console()
if not console.is_terminal:  # logs and CI: keep table rows on one line
    console.width = max(console.width, 160)

EPILOG = """Examples:

  edgekit deploy recipes/yolov5-lite.yaml --target pi4-emu

  edgekit deploy recipes/tiny.yaml --target pi4 --target pi5 --threads 1,4 --repeat 20 --json run.json

  edgekit deploy recipes/yolov5-lite.yaml --target pi4-emu --set emulated.caches=false --verbose

(the last: counting without the board's simulated data caches, ~1.2-1.6x quicker for a wider estimate interval,
and qemu's emulated wall times shown too)

Emulated targets (pi4-emu, ...) count guest instructions: their table leads with the real board's ESTIMATE (from
the counts, with its interval: 80% where cross-validated, * where not; not a measurement) and ratios by instruction count; qemu's emulated wall times,
never device latency, only with --verbose or in --json. Their timing plan is their benchmark_cap (pi4-emu: 1
thread, repeat 3, warmup 1, 4 inputs) unless --threads, --repeat, --warmup or --samples choose."""


def parse_threads(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        values = ()
    from edgekit.recipe.schema import MAX_THREADS

    if not values or any(v <= 0 or v > MAX_THREADS for v in values):
        raise UsageError(
            f"{text!r}: expected integers from 1 to {MAX_THREADS} separated by commas",
            where="--threads",
            hint="e.g. --threads 1,2,4",
        )
    return tuple(dict.fromkeys(values))  # 1,1,4 measures 1 thread once


def deploy_cmd(
    recipe: Path = typer.Argument(..., help="recipe YAML, e.g. recipes/yolov5-lite.yaml"),
    target: list[str] | None = typer.Option(None, "--target", "-t", help="target name or file (repeatable)"),
    json_path: Path | None = typer.Option(
        None,
        "--json",
        callback=check_output_file,
        help="write everything (request, device facts, every "
        "sample, comparisons, tool versions) to this file, also as it goes",
    ),
    threads: str | None = typer.Option(
        None, "--threads", help="thread counts, e.g. 1,2,4 (overrides recipe)"
    ),
    repeat: int | None = typer.Option(
        None, "--repeat", min=1, max=MAX_REPEAT, help="timed samples per artifact and thread count"
    ),
    warmup: int | None = typer.Option(
        None, "--warmup", min=0, max=MAX_WARMUP, help="discarded runs before timing"
    ),
    samples: int | None = typer.Option(
        None,
        "--samples",
        min=1,
        help="evaluation inputs sent to targets (default: the recipe's evaluation.device_inputs, else all; an "
        "emulated target's benchmark_cap sends 4 unless the recipe sets device_inputs)",
    ),
    fmt: list[Format] | None = FORMATS_OPTION,
    no_host: bool = typer.Option(
        False, "--no-host", help="do not measure the host CPU (no host-vs-ARM drift)"
    ),
    keep_going: bool = typer.Option(
        False, "--keep-going", help="deploy the formats that converted even if another failed to convert"
    ),
    set_: list[str] | None = typer.Option(
        None,
        "--set",
        help="override a field of every named target, e.g. --set emulated.caches=false (repeatable)",
    ),
    store: str | None = typer.Option(
        None,
        "--store",
        help="results store: a SQLAlchemy URL or a SQLite file (default: $EDGEKIT_STORE, else the data dir)",
    ),
    no_store: bool = typer.Option(False, "--no-store", help="do not record the run in the results store"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="also show emulated wall times in the table"),
    profile: bool = typer.Option(
        False,
        "--profile",
        help="per-layer data in the result (--json): instructions per ncnn layer on emulated targets, wall "
        "time per ncnn layer and per onnxruntime node on boards and the host (as `edgekit profile`)",
    ),
) -> None:
    """Convert a recipe's formats, time them on each target and on the host CPU, compare outputs, print a table.

    Per artifact and target: p50 / p90 and speed-up over the same runtime's fp32 (real boards, host); for an
    emulated board, its estimated latency with the cross-validated interval and instruction-count ratios; host-vs-ARM
    output drift, and whether the recipe's fidelity gates held on that target's outputs.
    """
    from edgekit.deploy import DeployOptions, deploy
    from edgekit.recipe import load_recipe
    from edgekit.report.lines import busy_lines, failures, route_lines
    from edgekit.report.table import deploy_table

    loaded = load_recipe(recipe)
    if not target and no_host:
        raise UsageError(
            "nothing to deploy to",
            where="edgekit deploy",
            hint="name a target with --target NAME (or drop --no-host to measure the host)",
        )
    if not target:  # the README's `deploy RECIPE --target T`: a table of the host alone is said to be one
        console.print(
            "no --target: measuring this machine only (host); add --target pi4-emu (edgekit targets lists them)",
            highlight=False,
        )
    options = DeployOptions(
        threads=parse_threads(threads),
        repeat=repeat,
        warmup=warmup,
        samples=samples,
        formats=tuple(fmt) if fmt else None,
        host=not no_host,
        keep_going=keep_going,
        json_path=json_path,
        target_overrides=tuple(set_ or ()),
        profile=profile,
    )
    if no_store and store:  # one says record nowhere, the other where: neither is dropped without a word
        raise UsageError(
            f"--no-store and --store {store} contradict each other",
            hint="leave out --no-store to record the run there, or --store to record it nowhere",
        )
    if not no_store:  # a bad --store is said now, not after minutes of conversion and measurement
        from edgekit.store.opening import open_store

        open_store(store).close()
    from edgekit.progress import live_progress

    start = time.perf_counter()
    with live_progress(console, loaded.name) as progress:  # per target: measured / planned, elapsed, ETA
        try:
            result = deploy(loaded, list(target or []), options, progress)
        except Interrupted as exc:  # Ctrl-C while measuring: keep and record what was measured, exit 130
            _keep_interrupted(exc, json_path, store, no_store)
            raise
        except Exception as exc:  # failed after measuring (comparison, a bug): the measurements are kept
            if getattr(exc, "result", None) is not None:
                written = None if isinstance(exc, OutputFileError) else json_path  # it is --json that failed
                _keep_measured(exc.result, written, store, no_store)  # type: ignore[attr-defined]
            raise
    # recorded before anything is drawn: a table that fails to render must not cost the measurements
    run_id, store_error = None, None
    unmeasured = _bad_input_alone_measured_nothing(result)
    if not no_store and not unmeasured:
        try:
            run_id = _record_or_keep(result, store, json_path)
        except (StoreError, Interrupted) as exc:  # said after the table: the results are in a file (the error
            store_error = exc  # says where), or, when no disk could take one, only in the table
    console.print(deploy_table(result, verbose=verbose))
    for line in failures(result):
        console.print(f"[red]x[/] {plain(line)}", highlight=False)
    for line in busy_lines(result):
        console.print(f"[yellow]![/] {plain(line)}", highlight=False)
    for run in result.runs:  # a device that is not the expected_cpu (a wrong host reached another board)
        for caveat in run.caveats:
            console.print(f"[yellow]![/] {plain(run.target)}: {plain(caveat)}", highlight=False)
    for line in route_lines(result):
        console.print(plain(line), highlight=False)
    if profile:
        for line in profile_lines(result):
            console.print(plain(line), highlight=False)
    if json_path:
        console.print(f"results: {plain(json_path)}", highlight=False)
    if store_error is not None:
        raise store_error
    if run_id is not None:
        console.print(f"recorded as run {run_id} ({plain(follow_ups(store))})", highlight=False)
    elif unmeasured and not no_store:
        console.print("not recorded: bad input (above) and nothing was measured", highlight=False)
    took = f"{time.perf_counter() - start:.0f} s"
    verdict = f"[green]ok[/] in {took}" if result.ok else f"[red]FAILED[/] after {took} (what failed: above)"
    console.print(f"{loaded.name}: {verdict}", highlight=False)
    if not result.ok:
        raise typer.Exit(2 if result.bad_input else 1)  # 2: bad input alone failed (fix it); 1: a failed run


def follow_ups(store: str | None) -> str:
    """'`edgekit runs --store S` / `edgekit report --store S`': the commands that show a recorded run, naming the
    --store it was recorded in (without it, pasted, they looked in the default store). The store is named as the
    report's `runs accept` line names it (location.command_url): without its password, which libpq then reads
    from PGPASSWORD or ~/.pgpass, so what is printed can be pasted and never shows a secret."""
    import shlex

    from edgekit.store.location import command_url

    given = f" --store {shlex.quote(command_url(store))}" if store else ""
    return f"`edgekit runs{given}` / `edgekit report{given}`"


def profile_lines(result: DeployResult, top: int = 3) -> list[str]:
    """deploy --profile, in one line per target and ncnn artifact: its heaviest layers and their shares."""
    lines = []
    for run in result.runs:
        for artifact, prof in run.profiles.items():
            if prof.get("status") != "ok":
                lines.append(f"profile {run.target} {artifact}: {prof.get('status')} ({prof.get('reason')})")
                continue
            if prof.get("nothing_to_split"):  # as `edgekit profile` says it: no share to give
                lines.append(
                    f"profile {run.target} {artifact}: the whole inference is ncnn's own per-inference work "
                    "within the count's noise: nothing to split"
                )
                continue
            # the base of `edgekit profile`'s share column (Profile.share): the layer/whole share read 24 % where
            # profile said 30.9 % of the same count
            rest = max(1, int(prof["total"]) - int(prof.get("fixed") or 0))
            heavy = sorted(prof["layers"], key=lambda layer: -layer["instructions"])[:top]
            shares = ", ".join(
                f"{layer['name']} ({layer['type']}) {layer['instructions'] / rest:.0%}" for layer in heavy
            )
            lines.append(
                f"profile {run.target} {artifact}: by instructions (exact count), shares of the inference "
                f"less ncnn's own per-inference work: {shares}"
            )
        for m in run.agent.measurements if run.agent else []:
            if m.layer_ms:
                total_ms = max(1e-12, sum(layer.ms for layer in m.layer_ms))  # profile's wall-time base too
                heavy_ms = sorted(m.layer_ms, key=lambda layer: -layer.ms)[:top]
                shares = ", ".join(
                    f"{layer.name} ({layer.type}) {layer.ms / total_ms:.0%}" for layer in heavy_ms
                )
                lines.append(
                    f"profile {run.target} {m.artifact} x{m.threads}: by wall time (measured), shares of the "
                    f"{'nodes' if m.runtime == 'onnxruntime' else 'layers'}' sum: {shares}"
                )
            elif m.layer_error:
                lines.append(f"profile {run.target} {m.artifact} x{m.threads}: {m.layer_error}")
    where = []  # the --json paths of what this run has (DeployResult: TargetRun.profiles, Measurement.layer_ms)
    if any(prof.get("status") == "ok" for run in result.runs for prof in run.profiles.values()):
        where.append("runs[].profiles.<artifact>.layers (emulated: instructions counted)")
    if any(m.layer_ms for run in result.runs for m in (run.agent.measurements if run.agent else [])):
        where.append("runs[].agent.measurements[].layer_ms (wall time measured)")
    if where:
        lines.append(f"per-layer data in --json: {' and '.join(where)}")
    return lines


def _bad_input_alone_measured_nothing(result: DeployResult) -> bool:
    """Every target that failed failed on its input (an affinity naming cpus the device has not online, a
    `python` it lacks: exit 2) and no target measured anything: not a failed run to record (the report flagged
    the misconfiguration as a failed target, the nightly failed on it)."""
    return result.bad_input and not any(
        m.status == "ok" for r in result.runs if r.agent is not None for m in r.agent.measurements
    )


def _record_or_keep(result: DeployResult, store: str | None, json_path: Path | None) -> int:
    """Record the run; if the store fails now (a server gone, a full disk), the measurements are not lost: the
    result is in --json or a file in the data dir (the system's temporary folder when the data dir's disk is full
    too), and the error says where and how to import it later; when no file could be written either, it says so
    and why (a full disk: which, its free space). A Ctrl-C while the store waits (its write lock) keeps the file
    the same way: Interrupted, exit 130."""
    from edgekit.store.opening import record

    try:
        return record(result, store)
    except StoreError as exc:
        raise _not_recorded(result, store, json_path, exc.message + _store_disk(store), exc) from exc
    except KeyboardInterrupt:
        said = "interrupted (Ctrl-C or SIGTERM) while recording the run"
        raise _not_recorded(result, store, json_path, said, None) from None


def _store_disk(store: str | None) -> str:
    """' (DiskFull: no space left on the disk holding ...)' when the store is a SQLite file on a disk that has
    almost no room (SQLite says 'disk I/O error' for it), else ''."""
    from edgekit.paths import disk_full
    from edgekit.store.location import _sqlite_file, resolve_url

    try:
        path = _sqlite_file(resolve_url(store))
    except Exception:  # noqa: BLE001 - only a note on an error already being said
        return ""
    if path is None or not disk_full(path.parent):
        return ""
    from edgekit.paths import disk_full_text

    return f" ({disk_full_text(path.parent)})"


def _not_recorded(
    result: DeployResult, store: str | None, json_path: Path | None, reason: str, exc: StoreError | None
) -> StoreError | Interrupted:
    """The error of a run the store did not take (`reason`), once its result is kept in a file: where it is and
    the command that imports it, or, when no file could be written, why and that the table is all there is."""
    from edgekit.store.unrecorded import import_command, keep_somewhere, spare_folder

    kept, failed = (json_path, []) if json_path else keep_somewhere(result)
    where = exc.where if exc is not None else "edgekit deploy"
    if kept is None:
        message = f"{reason}; the results could not be kept in a file either: {'; '.join(failed)}"
        hint = "the measurements are only in what was printed: free some space and run the deploy again"
    else:
        message = f"{reason}; the results are kept in {kept}"
        if failed:
            message += f" (not in the data dir: {'; '.join(failed)})"
        hint = f"once the store is back: {import_command(kept, store)}"
        if kept.parent == spare_folder():
            hint += " (before a reboot may empty the temporary folder)"
    if exc is None:
        return Interrupted(message, where=where, hint=hint)
    return StoreError(message, where=where, hint=hint)


def _keep_interrupted(exc: Interrupted, json_path: Path | None, store: str | None, no_store: bool) -> None:
    """Write the partial result (--json) and record it (runs marked interrupted); say what was kept. A store that
    cannot take it (a full disk, a server gone) keeps it in a file as at a normal end, said with the command that
    imports it; nothing here raises: the Ctrl-C's own exit (130) follows."""
    result = getattr(exc, "result", None)
    if result is None:
        return
    kept = sum(1 for run in result.runs if run.agent for m in run.agent.measurements if m.status == "ok")
    where = ""
    if json_path:
        try:
            write_atomic(json_path, result.model_dump_json(indent=1))
            where = f"; results: {json_path}"
        except OutputFileError as failed:  # a full disk: the store (or a file elsewhere) keeps them
            where = f"; --json not written: {failed.message}"
            json_path = None
    problem = None
    if not no_store:
        try:
            where += f"; recorded as run {_record_or_keep(result, store, json_path)} (interrupted)"
        except (StoreError, Interrupted) as failed:  # said on the next lines
            problem = failed
    elif json_path is None:  # --no-store and no --json: "kept" would be on the screen only
        from edgekit.store.unrecorded import keep_somewhere

        kept_at, failed_at = keep_somewhere(result)  # after the --json note, if any
        where += f"; results: {kept_at}" if kept_at else f"; not kept in a file: {'; '.join(failed_at)}"
    console.print(f"interrupted: kept {kept} measurements{plain(where)}", highlight=False)
    if problem is not None:
        console.print(f"[red]x[/] not recorded: {plain(problem.message)}", highlight=False)
        if problem.hint:
            console.print(f"  hint: {plain(problem.hint)}", highlight=False)


def _keep_measured(result: DeployResult, json_path: Path | None, store: str | None, no_store: bool) -> None:
    """A deploy that failed after its targets were measured: what they measured is recorded (ok=False) and
    written, and said, before the error itself is printed."""
    kept = sum(1 for run in result.runs if run.agent for m in run.agent.measurements if m.status == "ok")
    where = ""
    if not no_store:
        try:
            run_id = _record_or_keep(result, store, json_path)
            where = f"; recorded as run {run_id} ({_shown_by(run_id, store)} shows its table and route)"
        except (StoreError, Interrupted) as exc:
            where = f"; {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
    elif json_path is None:
        from edgekit.store.unrecorded import keep_somewhere

        kept_at, failed = keep_somewhere(result)
        where = f"; results: {kept_at}" if kept_at else f"; not kept in a file: {'; '.join(failed)}"
    if json_path:
        where += f"; results: {json_path}"
    console.print(
        f"the deploy failed after measuring: kept {kept} measurements{plain(where)}", highlight=False
    )


def _shown_by(run_id: int, store: str | None) -> str:
    """'`edgekit runs show N --store S`': a deploy that failed after measuring (its --json's disk full) printed no
    table and no route, only that the run was recorded; this command shows them."""
    import shlex

    from edgekit.store.location import command_url

    given = f" --store {shlex.quote(command_url(store))}" if store else ""
    return f"`edgekit runs show {run_id}{given}`"


def register(app: typer.Typer) -> None:
    app.command("deploy", epilog=EPILOG)(deploy_cmd)
