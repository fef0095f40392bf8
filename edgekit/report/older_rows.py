"""Rows of a recipe's latest table that its latest run alone does not give: the newest older run's measurement
where the latest was interrupted before measuring it, and one row group per machine where several stored
themselves as `host`. Each row says which run it comes from (`run_id`)."""

from __future__ import annotations

from dataclasses import replace

from edgekit.report.regression import HOST, Flag, same_series, series_key
from edgekit.report.rows import Row, latest_rows, measurements
from edgekit.results import NOT_RUN_INTERRUPTED
from edgekit.store import StoredRun


def host_series_rows(rows: list[Row], shown: list[StoredRun], flags: list[Flag]) -> list[Row]:
    """With runs of more than one machine stored as `host` shown (a colleague's laptop beside the runner; each
    its own history: regression.series_key), one row group per machine, the CPU named ('host (Cortex-A72, 4
    cores)'), each from that machine's newest run and with its flags: the table showed the laptop's run under
    `host` below a flag about the runner's. With one machine the rows stay as they are."""
    newest = host_machines(shown)
    if len(newest) < 2:
        return rows
    at = next((i for i, row in enumerate(rows) if row.target == HOST), len(rows))
    grouped = []
    for key, run in newest.items():
        mine = [f for f in flags if f.run_id == run.id]
        grouped += [
            replace(row, target=machine_name(key), run_id=None if run is shown[-1] else run.id)
            for row in latest_rows(run.result, mine, only=HOST)
        ]
    others = [row for row in rows if row.target != HOST]
    return others[:at] + grouped + others[at:]


def host_machines(shown: list[StoredRun]) -> dict[tuple, StoredRun]:
    """Each machine that measured as `host` in the runs shown (its series_key: the CPU model and cores, recorded)
    and its newest run, the newest machine first. Two or more: the latest table groups the host's rows per
    machine and the plots draw each machine's own panels (plots.machine_views)."""
    newest: dict[tuple, StoredRun] = {}
    for run in reversed(shown):
        for t in run.result.runs:
            key = series_key(t)
            known = t.target == HOST and None not in key[1:] and measurements(t)
            if known and not any(same_series(k, key) for k in newest):  # one machine, its CPU named anew
                newest[key] = run
    return newest


def machine_name(key: tuple) -> str:
    """A host machine as the latest table and the plots name it: 'host (AMD EPYC, 2 cores)'."""
    return f"{HOST} ({key[1]}, {key[2]} cores)"


def or_older(row: Row, latest: StoredRun, shown: list[StoredRun]) -> Row:
    """A row the latest run did not measure because it was interrupted (Ctrl-C, SIGTERM): the newest older run's
    measurement of the same artifact, target and threads where one exists (named by its run), so stopping a run
    does not blank the table; the interruption stays a flag."""
    if row.run_id is not None or row.status == "ok" or not (row.error or "").startswith(NOT_RUN_INTERRUPTED):
        return row
    for run in reversed(shown):
        if run.id == latest.id:
            continue
        for older in latest_rows(run.result, (), only=row.target):
            if (older.artifact, older.threads, older.status) == (row.artifact, row.threads, "ok"):
                return replace(older, run_id=run.id)
    return row


def unmeasured_from_older(rows: list[Row], latest: StoredRun, shown: list[StoredRun]) -> list[Row]:
    """An artifact an interrupted target of the latest run has no row for at all (the Ctrl-C came before its
    agent started, or before it printed anything: nothing was recorded as not run): the newest older run's
    measurements of it on that target (named by their run), as or_older does for a row recorded as not run. The
    table said `_no measurements_` though an older complete run existed."""
    asked = [a.id for a in latest.result.artifacts]
    for t in latest.result.runs:
        if not t.interrupted:
            continue
        have = {row.artifact for row in rows if row.target == t.target}
        for run in reversed(shown):
            if run.id == latest.id:
                continue
            older = [
                row
                for row in latest_rows(run.result, (), only=t.target)
                if row.status == "ok" and row.artifact not in have and (not asked or row.artifact in asked)
            ]
            rows += [replace(row, run_id=run.id) for row in older]
            have |= {row.artifact for row in older}
    return rows
