"""What changed between runs of a recipe: recipe settings, git revision, tool and runtime versions, converted
files and device facts. A report lists these under its flags, the first things to look at when one goes up.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from edgekit.report.cpu import cpu_name, same_cpu
from edgekit.report.regression import Flag, Settings, same_series, series_key
from edgekit.results import DeployResult, converted_changed
from edgekit.store import StoredRun


def judged_changes(
    recent: list[StoredRun], flags: Sequence[Flag], settings: Settings = Settings()
) -> tuple[list[str], str]:
    """What differs between each target's judged run and the earlier runs of the same target (on the host, the
    same CPU: regression.series_key) it was judged against, and those runs in words. Per flagged target (every
    target of the newest run when nothing was flagged): the last run of that target in its baseline, then the
    older ones back to the first it was judged against, each difference listed once, an older one naming its
    run ('recipe model.args.width: 40 -> 44 (vs run #9)'). The recipe's previous run on any target hid a
    change: a host-only run in between matched it."""
    if len(recent) < 2:
        return [], ""
    flagged = list(dict.fromkeys(f.target for f in flags if f.is_bad and f.target is not None))
    targets = flagged or [t.target for t in recent[-1].result.runs]
    index = {r.id: i for i, r in enumerate(recent)}
    found: list[str] = []
    seen: set[str] = set()
    lasts = []
    for target in targets:
        judged_id = next((f.run_id for f in flags if f.target == target and f.run_id in index), None)
        at = (
            index[judged_id]
            if judged_id is not None
            else max(i for i, r in enumerate(recent) if any(t.target == target for t in r.result.runs))
        )
        judged = recent[at]
        mine = next(t for t in judged.result.runs if t.target == target)
        same = [
            r
            for r in recent[:at][-settings.history :]
            if any(same_series(series_key(t), series_key(mine)) for t in r.result.runs if t.target == target)
        ]
        ids = {i for f in flags if f.target == target and f.is_bad for i in f.baseline_runs}
        runs = [recent[index[i]] for i in sorted(ids) if i in index] or same
        if not runs:
            continue
        lasts.append((target, runs[-1].id))
        for n, run in enumerate(reversed(runs if flagged else runs[-1:])):  # unflagged: against the last
            for line in changes(run.result, judged.result, only=target):
                key = line.split(": ", 1)[0]
                if key in seen:
                    continue
                seen.add(key)
                found.append(line if n == 0 else f"{line} (vs run #{run.id})")
    if not lasts:
        return [], ""
    if len({i for _, i in lasts}) == 1 and (lasts[0][1] == recent[-2].id and not flagged):
        return found, "the previous run"
    if len(lasts) == 1:
        return found, f"{lasts[0][0]}'s run #{lasts[0][1]}, the last it was judged against"
    against = ", ".join(f"{target}'s run #{i}" for target, i in lasts)
    return found, f"the last runs it was judged against ({against})"


def changes(previous: DeployResult, latest: DeployResult, only: str | None = None) -> list[str]:
    """What differs between two runs of a recipe: the first things to look at when a flag goes up."""
    found = []
    if previous.recipe_sha256 != latest.recipe_sha256:
        fields = _diff("recipe", _flat(previous.recipe_settings), _flat(latest.recipe_settings))
        if previous.recipe_settings and latest.recipe_settings and fields:
            found += fields[:MAX_RECIPE_FIELDS] + (
                [f"recipe: {len(fields) - MAX_RECIPE_FIELDS} more fields"]
                if len(fields) > MAX_RECIPE_FIELDS
                else []
            )
        else:  # a run stored before its settings were: only the digest says
            found.append(
                f"recipe settings changed (sha256 {previous.recipe_sha256[:10]} -> {latest.recipe_sha256[:10]})"
            )
    if previous.git_revision != latest.git_revision:
        found.append(
            f"git revision {(previous.git_revision or '-')[:10]} -> {(latest.git_revision or '-')[:10]}"
        )
    found += _diff("tool", previous.tool_versions, latest.tool_versions)
    old_arts = {a.id: a for a in previous.artifacts}
    found += [  # the model files, not a sidecar (ncnn's model.io.json counts vary run to run)
        f"{a.id}: converted file changed"
        for a in latest.artifacts
        if a.id in old_arts and converted_changed(old_arts[a.id], a)
    ]
    old_targets = {t.target: t.agent.facts_before for t in previous.runs if t.agent}
    for t in latest.runs:
        if t.agent and t.target in old_targets and (only is None or t.target == only):
            before, now = old_targets[t.target], t.agent.facts_before
            found += _diff(f"{t.target} runtime", before.runtimes, now.runtimes)
            for name in ("python", "emulator"):
                if getattr(before, name) != getattr(now, name):
                    found.append(f"{t.target} {name}: {getattr(before, name)} -> {getattr(now, name)}")
            # the CPU by the whole device's parts (cpu.same_cpu), not by the cores the run used
            was, cpu = cpu_name(before), cpu_name(now)
            if was != cpu and (was is None or cpu is None or not same_cpu(was, cpu)):
                found.append(f"{t.target} cpu_model: {was} -> {cpu}")
    return found


MAX_RECIPE_FIELDS = 6  # changed recipe fields named one by one; the rest counted
MAX_VALUE_CHARS = 60


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted field -> its value as short JSON text (`int8.tflite_float_tail` -> `true`); lists are values."""
    out: dict[str, str] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            text = json.dumps(value, sort_keys=True)
            out[f"{prefix}{key}"] = (
                text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 1] + "…"
            )
    return out


def _diff(label: str, old: dict[str, str], new: dict[str, str]) -> list[str]:
    return [
        f"{label} {key}: {old.get(key, 'absent')} -> {new.get(key, 'absent')}"
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key)
    ]
