"""What a report's selection (`--recipe`, `--target`, `--since`) matches in the store, and what the store holds
when it matches nothing: a typo in a CI gate's selection is said, never shown as an empty report that passes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from edgekit.store import Store
from edgekit.target import lab_stored_note


def empty_hint(store: Store, since: float | None, recipes: Sequence[str], targets: Sequence[str]) -> str:
    """What the store holds, for a report with nothing to show: a filter's typo or a window with no runs."""
    known = store.recipes()
    if not known:
        return "The store holds no runs yet: `edgekit deploy` records each run."
    asked = [f"recipe {', '.join(recipes)}"] if recipes else []
    asked += [f"target {', '.join(targets)}"] if targets else []
    window = f" since {when(since)} UTC" if since is not None and not store.recipes(since=since) else ""
    stored_targets = sorted({t for run in store.runs(limit=None) for t in run.targets}) if targets else []
    unknown = [t for t in targets if t not in stored_targets]
    return (
        f"Nothing for {' and '.join(asked) or 'this selection'}{window}; recipes in the store: {', '.join(known)}"
        + (
            f"; no run in the store measured {', '.join(unknown)}: its targets are {', '.join(stored_targets)}"
            if unknown
            else ""
        )
        + "".join(f"; {note}" for note in map(lab_stored_note, unknown) if note)
        + " (`edgekit runs` lists runs and their targets)."
    )


def unmatched(store: Store, recipes: Sequence[str], targets: Sequence[str]) -> tuple[str, str] | None:
    """(what, hint) when a named recipe or target matches no run in the whole store (any time), or the two
    together match none, with what the store holds; None when the selection matches a run. A typo in a CI
    gate's `report --fail-on-regression --target nosuch` gave an empty report headed 'no regressions', exit 0."""
    if not recipes and not targets:
        return None
    known = store.recipes()
    held = f"recipes in the store: {', '.join(known) or 'none'}"
    listed = " (`edgekit runs` lists runs and their targets)"
    unknown = [r for r in recipes if r not in known]
    if unknown:
        return f"--recipe {', '.join(unknown)}: no run of {' or '.join(unknown)} in the store", held + listed
    if not targets:
        return None
    summaries = store.runs(limit=None)
    stored_targets = sorted({t for run in summaries for t in run.targets})
    missing = [t for t in targets if t not in stored_targets]
    if missing:
        notes = "".join(f"; {note}" for note in map(lab_stored_note, missing) if note)
        return (
            f"--target {', '.join(missing)}: no run in the store measured {' or '.join(missing)}",
            f"its targets: {', '.join(stored_targets) or 'none'}{notes}{listed}",
        )
    if any(run.recipe in (recipes or known) and set(run.targets) & set(targets) for run in summaries):
        return None
    return (
        f"--recipe {', '.join(recipes)} --target {', '.join(targets)}: no run in the store of "
        f"{' or '.join(recipes)} measured {' or '.join(targets)}",
        "; ".join(
            f"{r} measured {', '.join(sorted({t for run in summaries if run.recipe == r for t in run.targets}))}"
            for r in recipes
        )
        + listed,
    )


def when(ts: float) -> str:
    """'2026-06-11 02:00' (UTC), as the reports print a run's time."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")
