"""One recipe's result from what the boards of a spread night gave it: every board's run, a board whose deploy
raised as a failed run (its measurements kept), a run the night's stop cut short as interrupted; and why a lab
board takes no more recipes. Pure functions of results: the threads are night.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import EdgekitError, Interrupted
from edgekit.results import DeployResult, TargetRun
from edgekit.target import Target


def error_text(exc: BaseException) -> str:
    """An error's text as the night says it: an EdgekitError's own, anything else with its type (a bug)."""
    return str(exc) if isinstance(exc, EdgekitError) else f"{type(exc).__name__}: {exc}"


@dataclass
class Raised:
    """A deploy that raised on one board: kept per board (another board's success must not hide it)."""

    board: str
    target: Target
    error: Exception


def settled(path: Path, parts: list[DeployResult], raised: list[Raised]) -> DeployResult | Exception:
    """One recipe's result from what its boards gave: every board's run, a raising board's as a failed run (its
    measurements kept when the deploy attached them to the error)."""
    results = list(parts)
    failed: list[TargetRun] = []
    for r in raised:
        why = f"deploy failed: {error_text(r.error)}"
        kept = getattr(r.error, "result", None)
        if isinstance(kept, DeployResult) and kept.runs:
            kept = kept.model_copy(deep=True)
            for run in kept.runs:
                run.status, run.error = "failed", run.error or why
            results.append(kept)
        else:
            failed.append(
                TargetRun(
                    target=r.board,
                    kind=r.target.transport.value,
                    emulated=bool(r.target.emulated),
                    status="failed",
                    error=why,
                )
            )
    merged = merge(results) if results else None
    if merged is not None:
        merged.runs += failed
        merged.ok = merged.ok and not raised
    if parts:
        assert merged is not None  # parts are results
        return merged
    error = EdgekitError("; ".join(f"on {r.board}: {error_text(r.error)}" for r in raised), where=str(path))
    error.result = merged  # type: ignore[attr-defined]  # what the boards measured, recorded by the nightly
    return error


def interrupted_runs(exc: Interrupted) -> DeployResult | None:
    """What a deploy the night's stop cut short had measured (deploy attaches it to its Interrupted), each of its
    runs marked interrupted: recorded as an interrupted run, not a failed deploy; None when it measured nothing."""
    kept = getattr(exc, "result", None)
    if not isinstance(kept, DeployResult) or not kept.runs:
        return None
    kept = kept.model_copy(deep=True)
    kept.ok = False
    for run in kept.runs:
        run.interrupted = True
    return kept


def why_stop(board: str, lost: str | None, result: DeployResult | None) -> str | None:
    """Why a lab board takes no more recipes after this one: its place is no longer ours, or its run failed at
    connect (every recipe would fail there, in a tenth of a second each); None: it goes on."""
    if lost is not None:
        return f"taken from this night ({lost})"
    run = next((r for r in result.runs if r.target == board), None) if result is not None else None
    if run is None or run.status == "ok" or run.interrupted:
        return None
    error = (run.error or "").strip()
    if error.startswith(("connect:", "ensure:")):
        return f"failed at {error.splitlines()[0]}"
    return None


def merge(results: list[DeployResult]) -> DeployResult:
    """One recipe's runs on many boards as one DeployResult (the same artifacts, every board's TargetRun)."""
    base = results[0].model_copy(deep=True)
    for other in results[1:]:
        base.runs += other.runs
        base.routes += other.routes
        base.started_at = min(base.started_at, other.started_at)
        base.finished_at = max(base.finished_at or "", other.finished_at or "") or None
        base.ok = base.ok and other.ok
    return base
