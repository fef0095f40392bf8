"""`edgekit runs [show ID | import FILE | accept ID]`: what the results store holds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from edgekit.cli.report import STORE_HELP
from edgekit.cli.runs_import import import_cmd
from edgekit.terminal import Console, plain

if TYPE_CHECKING:
    from edgekit.results import DeployResult
    from edgekit.store.store import RunSummary

runs_app = typer.Typer(
    help="List recent runs in the results store; `show ID` prints one; `import FILE.json` records a "
    "`edgekit deploy --json` file; `accept ID` takes a flagged run's level as expected.\n\n"
    "Example: edgekit runs --limit 10 --recipe yolov5-lite",
    invoke_without_command=True,
)
console = Console()
if not console.is_terminal:  # logs and CI: keep table rows on one line
    console.width = max(console.width, 160)
# the listing's options, shared by `edgekit runs` and its `list` alias
LIMIT = typer.Option(20, "--limit", "-n", min=1, help="how many runs, newest first")
RECIPE = typer.Option(None, "--recipe", help="only runs of this recipe")
TARGET = typer.Option(None, "--target", help="only runs on this target")
STORE = typer.Option(None, "--store", help=STORE_HELP)


@runs_app.callback()
def list_cmd(
    ctx: typer.Context,
    limit: int = LIMIT,
    recipe: str | None = RECIPE,
    target: str | None = TARGET,
    store: str | None = STORE,
) -> None:
    """List recent runs: id, time, recipe, targets, measurement counts, ok (or interrupted), git revision.

    Example: edgekit runs --limit 5 --target pi4
    """
    if ctx.invoked_subcommand is None:
        _print_runs(limit, recipe, target, store)


@runs_app.command("list", hidden=True)
def list_alias(
    limit: int = LIMIT,
    recipe: str | None = RECIPE,
    target: str | None = TARGET,
    store: str | None = STORE,
) -> None:
    """The same list as `edgekit runs` (`list` is what people type).

    Example: edgekit runs list --limit 5 --target pi4
    """
    _print_runs(limit, recipe, target, store)


def _print_runs(limit: int, recipe: str | None, target: str | None, store: str | None) -> None:
    from edgekit.store import open_store
    from edgekit.target import lab_stored_note, stored_name

    with open_store(store, create=False) as db:
        found = db.runs(limit=limit, recipe=recipe, target=stored_name(target) if target else None)
        url = db.url
        known = (
            (db.recipes(), sorted({t for r in db.runs(limit=None) for t in r.targets})) if not found else None
        )
    table = Table(title=f"runs in {plain(url)}")
    for col in ("id", "started (UTC)", "recipe", "targets", "measurements", "ok", "git", "recorded by"):
        # names fold, never cut: two boards 'rack2-rpi4-8gb-slot07-a' and '-b' both read 'rack2-rpi4-8gb-slot0…'
        table.add_column(
            col,
            justify="right" if col in ("id", "measurements") else "left",
            overflow="fold" if col in ("recipe", "targets") else "ellipsis",
        )
    for r in found:
        targets = plain(", ".join(f"{t} (emulated)" if t in r.emulated_targets else t for t in r.targets))
        counts = (  # taken (failures among them), then what a Ctrl-C left untaken: '9 (+5 not measured...)'
            f"{r.measurements - r.unmeasured}"
            + (f" [red]({r.failed} failed)[/]" if r.failed else "")
            + (f" [yellow]({r.skipped} skipped: runtime not installed)[/]" if r.skipped else "")
            + (f" [yellow](+{r.unmeasured} not measured: interrupted)[/]" if r.unmeasured else "")
        )
        failed = [t for t in r.failed_targets if t not in r.interrupted_targets]  # those: the ok column
        if failed:  # a target that failed at connect has no measurement to count
            counts += (
                f" [red]({len(failed)} target{'s' * (len(failed) > 1)} failed: {plain(', '.join(failed))})[/]"
            )
        if r.left_out:  # deploy said "nothing is wrong with it": not a failure
            counts += f" [dim]({plain(', '.join(r.left_out))} not measured: no device reached)[/]"
        table.add_row(
            str(r.id),
            _utc(r.started_at),
            plain(r.recipe),
            targets,
            counts,
            _ok_text(r),
            plain((r.git_revision or "-")[:10]),
            plain(r.recorded_by or "-"),
        )
    if found:
        console.print(table)
        return
    asked = [f"of recipe {recipe}"] if recipe else []
    asked += [f"on {target}"] if target else []
    said = f"no runs {' '.join(asked)} in {url}" if asked else f"no runs in {url}: the store holds none yet"
    stored_recipes, stored_targets = known or ([], [])
    if asked and stored_recipes:  # a typo read as an empty store: say what it holds
        said += f"; recipes in it: {', '.join(stored_recipes)}; targets: {', '.join(stored_targets) or '-'}"
    note = lab_stored_note(target) if target else None
    console.print(plain(said + (f"; {note}" if note else "")))


def _utc(started_at: str) -> str:
    """'2026-12-04 23:00': a recorded start in UTC, as the report's times are. The text is the writing machine's
    local clock (08:00+09:00 from a runner in Tokyo), listed under "started (UTC)" as it was."""
    from edgekit.store.codec import timestamp

    return datetime.fromtimestamp(timestamp(started_at), UTC).strftime("%Y-%m-%d %H:%M")


def _ok_text(run: RunSummary) -> str:
    """yes / no, or 'interrupted' (naming the targets when only some were) for a run stopped by Ctrl-C or
    SIGTERM: what it measured is kept, the rest was never run."""
    stopped = run.interrupted_targets
    if stopped:
        some = f" ({plain(', '.join(stopped))})" if set(stopped) != set(run.targets) else ""
        return f"[yellow]interrupted[/]{some}"
    from edgekit.report.run_view import not_ok_why  # the report's recipe heading says the same

    why = not_ok_why(
        ok=run.ok,
        finished=run.finished_at is not None,  # not: an imported result of a deploy that was killed
        artifact_problems=run.artifact_problems,
        failed_targets=[t for t in run.failed_targets if t not in run.interrupted_targets],
    )
    if why is None:
        return "[green]yes[/]"
    return "[red]no[/]" + (f" [red]({plain(', '.join(why))})[/]" if why else "")


@runs_app.command("show")
def show_cmd(
    run_id: int = typer.Argument(..., help="run id, as `edgekit runs` lists it"),
    store: str | None = STORE,
    json_out: bool = typer.Option(False, "--json", help="print the stored deploy result as JSON"),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="also the emulated wall and load times of a counted emulated target"
    ),
) -> None:
    """Print one run: recipe, tool versions, artifacts with fidelity, and per target the device facts and
    every measurement (an emulated target: board estimate and instruction count; its emulated wall times, not
    device latency, with --verbose or --json).

    Example: edgekit runs show 42
    """
    from edgekit.store import open_store
    from edgekit.store.masked import masked_result

    with open_store(store, create=False) as db:
        result = masked_result(db.load(run_id))  # a secret in a stored error, as the report masks it
    if json_out:
        typer.echo(result.model_dump_json(indent=2))
        return
    from edgekit.report.run_view import print_run

    print_run(console, run_id, result, verbose)


@runs_app.command("accept")
def accept_cmd(
    run_id: int = typer.Argument(..., help="the run whose level is expected, as the report names it"),
    target: str | None = typer.Option(None, "--target", help="only on this target (default: every target)"),
    artifact: str | None = typer.Option(None, "--artifact", help="only this artifact (default: every one)"),
    min_change: float = typer.Option(
        0.05,
        "--min-change",
        min=0.0,
        max=10.0,
        help="the --min-change the report or nightly that flagged the run used (its command names it)",
    ),
    store: str | None = STORE,
) -> None:
    """Accept a run's latency (or instruction count) as the new level: a regression flagged in it (a kernel or
    firmware update, a board swapped, anything edgekit's fingerprint does not see) stops being flagged; the runs
    after it are judged against the regression's runs up to it. Without this a held regression stays flagged
    while a run from before it is in the 42-run lookback.

    Example: edgekit runs accept 27 --target pi4
    """
    from edgekit.errors import UsageError
    from edgekit.report.regression import Settings, regressed_keys, threads_text
    from edgekit.store import open_store
    from edgekit.target import stored_name

    asked = target
    if target is not None:
        target = stored_name(target)  # `local` is stored as `host`: `runs` and `report` find it there too
    with open_store(store, create=False) as db:
        result = db.load(run_id)
        targets = [t.target for t in result.runs]
        if target is not None and target not in targets:
            raise UsageError(
                f"--target {asked}: run {run_id} has no target {target!r}",
                hint=f"its targets: {', '.join(targets) or 'none'}",
            )
        arts = sorted(
            {
                m.artifact
                for t in result.runs
                if target in (None, t.target)
                for m in (t.agent.measurements if t.agent else [])
            }
        )
        if artifact is not None and artifact not in arts:
            raise UsageError(
                f"--artifact {artifact}: run {run_id} measured no artifact {artifact!r}"
                + (f" on {target}" if target else ""),
                hint=f"its artifacts: {', '.join(arts) or 'none'}",
            )
        history = db.history(recipe=result.recipe)  # the run judged as on its own night
        at = next(i for i, r in enumerate(history) if r.id == run_id)
        keys = [
            k
            # each target's window is its own runs (judge), judged as the report that flagged it judged
            for k in regressed_keys(history[: at + 1], Settings(min_change=min_change))
            if target in (None, k[0]) and artifact in (None, k[1])
        ]
        if not keys:
            scope = " ".join(
                x for x in (f"of {artifact}" if artifact else "", f"on {target}" if target else "") if x
            )
            done = _already_accepted(result, target, artifact)
            if done:  # a second accept of the same run: what was asked holds already, nothing to record
                console.print(
                    f"run {run_id} ({plain(result.recipe)}): its level{' ' + scope if scope else ''} is already "
                    f"accepted ({plain(done)}); nothing recorded",
                    highlight=False,
                )
                return
            raise UsageError(
                f"run {run_id} has no latency or instruction-count regression{' ' + scope if scope else ''} "
                "to accept; nothing recorded",
                hint="the report names the run and target to accept under its flags (with its --min-change, if "
                "it was given one)",
            )
        db.accept(run_id, target=target, artifact=artifact, keys=keys)
    named = ", ".join(f"{a} at {threads_text(n)} on {t}" for t, a, n in keys)
    console.print(
        f"run {run_id} ({plain(result.recipe)}) accepted as the new level of {plain(named)}: later runs are judged against it "
        "(with the slow runs of the regression before it), and it is no longer flagged",
        highlight=False,
    )


def _already_accepted(result: DeployResult, target: str | None, artifact: str | None) -> str:
    """What `runs accept` recorded of this run within the asked target and artifact, and when ('on
    2026-12-07T02:00:00+00:00 by ana@lab: tflite-fp32 at 1 thread on host'); '' when it recorded nothing there.
    A second accept found no regression left to accept and said so, exit 2, as of a run that never had one."""
    from edgekit.report.regression import threads_text

    said = []
    for mark in (result.model_extra or {}).get("accepted") or []:
        if not isinstance(mark, dict):
            continue
        keys = mark.get("keys")
        if keys is None:  # a mark of every key its target and artifact (None: all) cover
            # asked of every target (artifact): a mark of one counts. No flagged key is left, so the marks
            # within the asked scope cover every key that was (a plain `runs accept 6` after `--target host`)
            if (target is not None and mark.get("target") not in (None, target)) or (
                artifact is not None and mark.get("artifact") not in (None, artifact)
            ):
                continue
            which = " ".join(
                x
                for x in (
                    mark.get("artifact") or "every artifact",
                    f"on {mark.get('target') or 'every target'}",
                )
            )
        else:
            mine = [k for k in keys if len(k) == 3 and target in (None, k[0]) and artifact in (None, k[1])]
            if not mine:
                continue
            which = ", ".join(f"{a} at {threads_text(int(n))} on {t}" for t, a, n in mine)
        by = f" by {mark['by']}" if mark.get("by") else ""
        said.append(f"on {mark.get('at') or 'an unknown date'}{by}: {which}")
    return "; ".join(said)


runs_app.command("import")(import_cmd)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
