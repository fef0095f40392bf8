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

  edgekit deploy recipes/yolov5-lite.yaml --target pi4-emu --threads 1 --repeat 3 --samples 4 --set emulated.counting=true

(the last: a quick emulated run, with guest instruction counts and labelled board estimates)

Emulated targets (pi4-emu, ...) report emulated wall times, labelled as such: never device latency."""


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
        help="evaluation inputs sent to targets (default: all the recipe's; fewer keeps emulated runs short)",
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
        help="override a field of every named target, e.g. --set emulated.counting=true (repeatable)",
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
        from edgekit.store.store import open_store

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
    if not no_store:
        try:
            run_id = _record_or_keep(result, store, json_path)
        except StoreError as exc:  # said after the table (the results are in a file, the error says where)
            store_error = exc
    console.print(deploy_table(result, verbose=verbose))
    for line in failures(result):
        console.print(f"[red]x[/] {plain(line)}", highlight=False)
    for line in busy_lines(result):
        console.print(f"[yellow]![/] {plain(line)}", highlight=False)
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
        console.print(f"recorded as run {run_id} (edgekit runs / edgekit report)", highlight=False)
    took = f"{time.perf_counter() - start:.0f} s"
    verdict = f"[green]ok[/] in {took}" if result.ok else f"[red]FAILED[/] after {took} (what failed: above)"
    console.print(f"{loaded.name}: {verdict}", highlight=False)
    if not result.ok:
        raise typer.Exit(1)


def profile_lines(result: DeployResult, top: int = 3) -> list[str]:
    """deploy --profile, in one line per target and ncnn artifact: its heaviest layers and their shares."""
    lines = []
    for run in result.runs:
        for artifact, prof in run.profiles.items():
            if prof.get("status") != "ok":
                lines.append(f"profile {run.target} {artifact}: {prof.get('status')} ({prof.get('reason')})")
                continue
            total = max(1, int(prof["total"]))
            heavy = sorted(prof["layers"], key=lambda layer: -layer["instructions"])[:top]
            shares = ", ".join(
                f"{layer['name']} ({layer['type']}) {layer['instructions'] / total:.0%}" for layer in heavy
            )
            lines.append(f"profile {run.target} {artifact}: by instructions (exact count): {shares}")
        for m in run.agent.measurements if run.agent else []:
            if m.layer_ms:
                total_ms = max(1e-12, sum(layer.ms for layer in m.layer_ms))
                heavy_ms = sorted(m.layer_ms, key=lambda layer: -layer.ms)[:top]
                shares = ", ".join(
                    f"{layer.name} ({layer.type}) {layer.ms / total_ms:.0%}" for layer in heavy_ms
                )
                lines.append(
                    f"profile {run.target} {m.artifact} x{m.threads}: by wall time (measured): {shares}"
                )
            elif m.layer_error:
                lines.append(f"profile {run.target} {m.artifact} x{m.threads}: {m.layer_error}")
    if lines:
        lines.append("per-layer data: runs[].profiles (emulated) and measurements[].layer_ms in --json")
    return lines


def _record_or_keep(result: DeployResult, store: str | None, json_path: Path | None) -> int:
    """Record the run; if the store fails now (a server gone, a full disk), the measurements are not lost: the
    result is in --json or a file in the data dir, and the error says how to import it later."""
    from edgekit.store.store import record

    try:
        return record(result, store)
    except StoreError as exc:
        from edgekit.store.unrecorded import import_command, keep_unrecorded

        kept = json_path or keep_unrecorded(result)
        raise StoreError(
            f"{exc.message}; the results are kept in {kept}",
            where=exc.where,
            hint=f"once the store is back: {import_command(kept, store)}",
        ) from exc


def _keep_interrupted(exc: Interrupted, json_path: Path | None, store: str | None, no_store: bool) -> None:
    """Write the partial result (--json) and record it (runs marked interrupted); say what was kept."""
    result = getattr(exc, "result", None)
    if result is None:
        return
    kept = sum(1 for run in result.runs if run.agent for m in run.agent.measurements if m.status == "ok")
    if json_path:
        write_atomic(json_path, result.model_dump_json(indent=1))
    where = f"; results: {json_path}" if json_path else ""
    if not no_store:
        from edgekit.store.store import record

        where += f"; recorded as run {record(result, store)} (interrupted)"
    console.print(f"interrupted: kept {kept} measurements{plain(where)}", highlight=False)


def _keep_measured(result: DeployResult, json_path: Path | None, store: str | None, no_store: bool) -> None:
    """A deploy that failed after its targets were measured: what they measured is recorded (ok=False) and
    written, and said, before the error itself is printed."""
    kept = sum(1 for run in result.runs if run.agent for m in run.agent.measurements if m.status == "ok")
    where = ""
    if not no_store:
        try:
            where = f"; recorded as run {_record_or_keep(result, store, json_path)}"
        except StoreError as exc:
            where = f"; {exc.message}"
    elif json_path is None:
        from edgekit.store.unrecorded import keep_unrecorded

        kept_at = keep_unrecorded(result)
        where = f"; results: {kept_at}"
    if json_path:
        where += f"; results: {json_path}"
    console.print(
        f"the deploy failed after measuring: kept {kept} measurements{plain(where)}", highlight=False
    )


def register(app: typer.Typer) -> None:
    app.command("deploy", epilog=EPILOG)(deploy_cmd)
