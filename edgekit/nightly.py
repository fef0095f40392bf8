"""`edgekit nightly`: deploy every recipe to every target, record each result, report, fail on regressions.

The deploy step is injectable (`deploy_fn`): the command line uses edgekit.deploy.deploy, tests and dry runs
pass a function that returns recorded or synthetic results, so everything after the deploy (recording,
regression detection, report, exit status) runs exactly as it does at night.

Exit status: 0 when nothing regressed (unreliable runs are reported but do not fail the night), 1 when a
recipe regressed, missed a fidelity gate, failed where it used to work, or could not be deployed at all, and
every night while a target has never produced a measurement (a board that failed at connect from its first
night has no history to regress from, so it is flagged by name until it measures something), and when a lab
target ran nothing, or not every recipe, tonight (no free place of its kind, the holders named; every board it got
was taken from the night or failed at connect): it is said as such, not as a target never measured. The report and
its verdict cover every target the night's deploys measured: the targets asked for and the host, which each
deploy measures beside them.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from edgekit.errors import EdgekitError, Interrupted, RecipeError
from edgekit.lab.errors import NotRun
from edgekit.nightly_outcome import NightlyOutcome, by_name
from edgekit.report import Report, Settings, build, write
from edgekit.results import DeployResult
from edgekit.store import Store, open_store

DeployFn = Callable[[Path, Sequence[str]], DeployResult]
Log = Callable[[str], None]


def recipe_files(paths: Sequence[Path]) -> list[Path]:
    """Every *.yaml/*.yml in the given folders, plus the given files, sorted and without duplicates."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise RecipeError(
                "no such recipe file or folder",
                where=str(path),
                hint="pass --recipes recipes/ or a recipe file",
            )
    unique = list(dict.fromkeys(p.resolve() for p in found))
    if not unique:
        raise RecipeError("no recipe files (*.yaml) found", where=", ".join(map(str, paths)))
    return unique


def run_nightly(
    recipes: Sequence[Path],
    targets: Sequence[str],
    *,
    store_url: str | None = None,
    html: Path | None = None,
    markdown: Path | None = None,
    since: float | None = None,
    settings: Settings = Settings(),
    deploy_fn: DeployFn | None = None,
    log: Log = lambda _msg: None,
) -> NightlyOutcome:
    """Deploy each recipe to `targets`, record every result, then build and write the report."""
    deploy = deploy_fn or default_deploy
    outcome = NightlyOutcome()
    names: list[str] = []
    targets = _once_each(targets, log)
    files = recipe_files(recipes)  # a wrong --recipes is refused before the store is created or opened
    _check_unique_names(files)
    with open_store(store_url) as store:
        if deploy_fn is None and _has_lab(targets):  # every free matching place at once (docs/lab.md)
            deploy, targets = _lab_spread(files, targets, outcome, log)
        for path in files:
            if outcome.lab is None:  # a lab's recipes ran already, spread over its boards: recorded here
                log(f"deploying {path.name} to {', '.join(targets)}")
            try:
                result = deploy(path, targets)
            except (
                Interrupted,
                KeyboardInterrupt,
            ) as exc:  # Ctrl-C, SIGTERM: the night stops, not one recipe
                kept = _record_kept(exc, store, outcome, path, names)
                log(f"{path.name}: interrupted; the night stops here" + (f" ({kept})" if kept else ""))
                outcome.interrupted = True
                after = files[files.index(path) + 1 :]
                outcome.not_reached += ([] if kept else [path.name]) + [p.name for p in after]
                break
            except Exception as exc:  # noqa: BLE001 - one recipe's failure, even a bug, never stops the night
                if isinstance(exc, NotRun):  # no board took it before the Ctrl-C: not run, not a failure
                    log(f"{path.name}: not run (the night was interrupted)")
                    outcome.not_reached.append(path.name)
                    continue
                said = _failure_words(exc)
                outcome.failures[str(path)] = said
                kept = _record_kept(exc, store, outcome, path, names)
                log(f"{path.name}: deploy failed: {said}" + (f" ({kept})" if kept else ""))
                if outcome.interrupted:  # stopped while recording what it kept
                    outcome.not_reached += [p.name for p in files[files.index(path) + 1 :]]
                    break
                continue
            if not _record(store, result, outcome, path, names, log):
                if outcome.interrupted:  # Ctrl-C while recording (a store's lock wait): kept in a file
                    outcome.not_reached += [p.name for p in files[files.index(path) + 1 :]]
                    break
                continue
            log(f"{path.name}: recorded as run {outcome.run_ids[str(path)]}")
            for run in result.runs:  # a target that failed tonight is said now, not only in the report
                if run.interrupted:  # a lab board the night's Ctrl-C stopped: not a failure
                    log(
                        f"{path.name} on {run.target}: interrupted, not finished (what it measured is recorded)"
                    )
                elif run.status != "ok" and run.error:
                    log(f"{path.name} on {run.target}: failed: {_first_and_hint(run.error)}")
            raised = outcome.lab.raised.get(path) if outcome.lab is not None else None
            if raised:  # the deploy raised on some boards (recorded as their failed runs): a failed deploy
                outcome.failures[str(path)] = "; ".join(f"on {board}: {why}" for board, why in raised.items())
        if outcome.lab is not None and outcome.lab.interrupted and not outcome.interrupted:
            outcome.interrupted = True  # what the boards finished is recorded; the night ends with 130
            log("lab: the night was interrupted (Ctrl-C or SIGTERM): what the boards finished is recorded")
        if outcome.lab is not None:
            outcome.unreached = _unreached(outcome.lab)
        _judge_night(store, _target_names(targets), names, since, settings, outcome, log)
    if outcome.report is not None:
        # the report's own failure is no deploy's (the Markdown said '2 deploys failed', one of them `report`)
        outcome.report.failed_deploys = by_name(outcome.failures)
        if "report" in outcome.failures:  # not 'No runs in the store' and 'no regressions'
            outcome.report.unreadable = outcome.failures["report"]
        outcome.report.not_reached = list(outcome.not_reached)  # the report lists them: not silently missing
        outcome.written = write(outcome.report, html=html, markdown=markdown)
    if outcome.lab_lines and markdown is not None and markdown.exists():  # per board and board type
        with markdown.open("a") as fh:
            fh.write("\n## Lab: boards and board types\n\n```\n" + "\n".join(outcome.lab_lines) + "\n```\n")
    return outcome


def _failure_words(exc: BaseException) -> str:
    """One recipe's failed deploy as the night says it: the error (its type when not edgekit's own); a full disk
    as DiskFull with the free space where the write went (not the raw errno and two temporary paths)."""
    said = ("" if isinstance(exc, EdgekitError) else f"{type(exc).__name__}: ") + str(exc)
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        from edgekit.paths import free_space_note, low_disk_note

        # the disk the write went to (the last path named: a move's destination), else the data dir's
        written = next((Path(str(f)) for f in (exc.filename2, exc.filename) if f), None)
        said = f"DiskFull: no space left on the disk ({exc.strerror}); " + (
            (written and free_space_note(written)) or low_disk_note(1 << 62) or "free some space"
        )
    return said


def _judge_night(
    store: Store,
    targets: list[str],
    names: list[str],
    since: float | None,
    settings: Settings,
    outcome: NightlyOutcome,
    log: Log,
) -> None:
    """After the deploys: the targets never measured, the lab's board lines, and the report of tonight's runs
    (`targets` by name), into `outcome`; a store that went away is a failure the summary still says."""
    try:
        outcome.never_measured = _never_measured(store, targets, list(outcome.run_ids.values()))
        if outcome.lab is not None:
            from edgekit.lab.boards import board_lines

            outcome.lab_lines = board_lines(store, outcome.lab)
            for line in outcome.lab_lines:
                log(line)
        for target, why in outcome.never_measured.items():
            log(f"{target}: has never produced a measurement" + (f" (tonight: {why})" if why else ""))
        if names:  # every target the night measured: the ones asked for and the host each deploy adds
            shown = list(dict.fromkeys([*targets, *outcome.measured]))
            outcome.report = build(  # tonight's runs judged, not a run someone recorded after them
                store,
                since=since,
                recipes=list(dict.fromkeys(names)),
                targets=shown,
                settings=settings,
                judge_only=list(outcome.run_ids.values()),
            )
    except Exception as exc:  # noqa: BLE001 - the store went away after the deploys (or a bug): the
        # summary is still written and says what failed
        reason = exc.message if isinstance(exc, EdgekitError) else f"{type(exc).__name__}: {str(exc)[:200]}"
        outcome.failures["report"] = f"the report could not be built from the store: {reason}"
        log(f"report: {outcome.failures['report']}")
    if outcome.report is None and (
        outcome.failures or outcome.interrupted
    ):  # still said (a CI page links it)
        outcome.report = Report([], datetime.now(UTC).isoformat(timespec="seconds"), since, store.url)


def _first_and_hint(error: str) -> str:
    """An error's first line and its hint (what to try), without the rest: the night's log stays one line per
    failure, the report has the whole text."""
    lines = [line.strip() for line in error.splitlines()]
    hint = next((line for line in lines[1:] if line.startswith("hint:")), "")
    return lines[0] + (f" ({hint})" if hint else "")


def _check_unique_names(files: Sequence[Path]) -> None:
    """Two recipe files with one `name:` would share one history in the store (runs are kept by recipe name): the
    second model's runs judged against the first's, and only one shown. Refused before the night (exit 2). A
    file that cannot be read is left to its deploy, which names the problem."""
    from edgekit.yamlfile import read_yaml

    by_name: dict[str, list[Path]] = {}
    for path in files:
        try:
            data = read_yaml(path, RecipeError)
        except EdgekitError:
            continue
        name = data.get("name") if isinstance(data, dict) else None
        if isinstance(name, str):
            by_name.setdefault(name, []).append(path)
    shared = {name: paths for name, paths in by_name.items() if len(paths) > 1}
    if shared:
        name, paths = next(iter(shared.items()))
        raise RecipeError(
            f"{len(paths)} recipe files are named {name!r}: their runs would share one history",
            where=", ".join(str(p) for p in paths),
            hint="give each recipe its own `name:` (the store keeps history by recipe name)",
        )


def _record_kept(
    exc: BaseException, store: Any, outcome: NightlyOutcome, path: Path, names: list[str]
) -> str:
    """What a deploy that stopped had measured (deploy attaches it to the exception: Ctrl-C, a bug after
    measuring), recorded like any other run; the words that say so, or ""."""
    kept = getattr(exc, "result", None)
    if not isinstance(kept, DeployResult) or not kept.runs:
        return ""
    if not _record(store, kept, outcome, path, names, lambda _m: None):
        return f"what it measured is kept: {outcome.failures[str(path)]}"
    return f"what it measured is recorded as run {outcome.run_ids[str(path)]}"


def _record(
    store: Any, result: DeployResult, outcome: NightlyOutcome, path: Path, names: list[str], log: Log
) -> bool:
    """Record tonight's result; when the store fails (a server gone, a damaged file), the result goes to a file
    with the command that imports it later, the recipe counts as failed and the night goes on."""
    try:
        outcome.run_ids[str(path)] = store.record(result)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - whatever the store raised, or a Ctrl-C or
        # SIGTERM while it waited for its write lock: tonight's measurements are kept in a file
        from edgekit.store.unrecorded import import_command, keep_unrecorded

        kept = keep_unrecorded(result)
        stop = isinstance(exc, (KeyboardInterrupt, Interrupted))
        reason = (
            "interrupted (Ctrl-C or SIGTERM) while recording"
            if stop
            else exc.message
            if isinstance(exc, EdgekitError)
            else f"{type(exc).__name__}: {str(exc)[:200]}"
        )
        why = f"not recorded: {reason}; the results are in {kept} ({import_command(kept, store.command_url)})"
        outcome.failures[str(path)] = why
        outcome.interrupted = outcome.interrupted or stop
        log(f"{path.name}: {why}")
        return False
    names.append(result.recipe)
    outcome.measured += [run.target for run in result.runs if run.target not in outcome.measured]
    return True


def _once_each(targets: Sequence[str], log: Log) -> list[str]:
    """The targets in their order, each once: a lab target named twice would share one queue of recipes (the
    second, finding its places held by the first, emptied it), a board named twice would run two benchmarks
    at once."""
    once = list(dict.fromkeys(targets))
    for name in dict.fromkeys(t for t in targets if list(targets).count(t) > 1):
        log(f"{name}: named {list(targets).count(name)} times in the targets: measured once")
    return once


def _has_lab(targets: Sequence[str]) -> bool:
    from edgekit.lab.spread import is_lab

    return is_lab(targets)


def _lab_spread(
    files: list[Path], targets: Sequence[str], outcome: NightlyOutcome, log: Log
) -> tuple[DeployFn, list[str]]:
    """Run the matrix now, spread over the lab's free places; the loop then records what each recipe got.
    Lab targets are replaced by the places they ran on (the report and the never-measured check are per board): a
    board that took at least one recipe or stopped taking them; a board acquired but left idle (its siblings
    emptied the queue first: fewer recipes than boards) ran nothing tonight and is no target of the night (its
    board line says it was idle). A lab target that got no place is left out of both (no run is ever stored under
    its name: it is said as not reached, with why, not as never measured)."""
    from edgekit.lab.spread import is_lab, spread

    done = outcome.lab = spread(files, targets, log)

    def tonight(path: Path, _targets: Sequence[str]) -> DeployResult:
        found = done.results.get(path)
        if isinstance(found, Exception):
            raise found
        if found is None:
            raise EdgekitError("no board ran this recipe", where=str(path))
        return found

    def worked(name: str) -> list[str]:  # the boards of lab target `name` that took a recipe or stopped
        return [
            b for b, k in done.board_type.items() if k == name and (done.jobs.get(b) or b in done.stopped)
        ]

    boards = [t for name in targets for t in (worked(name) if is_lab([name]) else [name])]
    return tonight, boards


def _unreached(lab: Any) -> dict[str, str]:
    """Lab targets that ran nothing tonight (no free place: the holders named; exporters down; the lab down), or
    left recipes unrun (every board they got was taken from the night or failed at connect), with why."""
    found = {name: f"no place tonight: {why.splitlines()[0]}" for name, why in lab.unavailable.items()}
    for name, recipes in lab.unrun.items():
        boards = "; ".join(
            f"{board}: {why}" for board, why in lab.stopped.items() if lab.board_type.get(board) == name
        )
        found[name] = (
            f"{len(recipes)} recipe(s) ran on no board of it ({', '.join(recipes)}): every board it got stopped "
            f"taking recipes ({boards})"
        )
    return found


def _target_names(targets: Sequence[str]) -> list[str]:
    """The names results are stored under (edgekit.target.stored_name: `local` as `host`, a target file by the
    name inside it, a lab place's name as it is)."""
    from edgekit.target import stored_name

    return list(dict.fromkeys(stored_name(t) for t in targets))


def _never_measured(store: Any, targets: Sequence[str], tonight: list[int]) -> dict[str, str]:
    """Targets without one successful measurement in the whole store, with tonight's error for each."""
    result: dict[str, str] = {}
    tonight_runs = store.load_many(tonight)
    for target in targets:
        if not _measured_since_ever(store, target):
            errors = [
                r.error for run in tonight_runs.values() for r in run.runs if r.target == target and r.error
            ]
            result[target] = errors[0].splitlines()[0] if errors else ""
    return result


def _measured_since_ever(store: Any, target: str, batch: int = 20) -> bool:
    """True when any stored run has an ok measurement on `target` (newest runs first, loaded in batches)."""
    ids = [r.id for r in store.runs(target=target, limit=None)]
    for start in range(0, len(ids), batch):
        for run in store.load_many(ids[start : start + batch]).values():
            for t in run.runs:
                if t.target == target and t.agent and any(m.status == "ok" for m in t.agent.measurements):
                    return True
    return False


def default_deploy(recipe: Path, targets: Sequence[str]) -> DeployResult:
    """`edgekit deploy RECIPE --target ...` with the recipe's own settings (host CPU measured too).

    Imported only when a real night runs: deploy pulls in the conversion toolchain.
    """
    from edgekit.deploy import deploy
    from edgekit.recipe import load_recipe

    return deploy(load_recipe(recipe), list(targets))
