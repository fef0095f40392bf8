"""A key's configuration fingerprint: what explains a regression's change of level.

A regression whose first night came with a change of configuration against the last good run (the recipe's
settings, the artifact's converted file, the version of the runtime module that ran it, the target's CPU,
Python or emulator) is explained: flagged on that night with what changed, then the baseline starts again
from that run, so the new level is judged on its own history once `min_runs` runs of it exist. A change on
a later night of a regression explains nothing (it began before), another runtime's upgrade is no change of
this artifact's, and a run whose device facts were not recorded is unknown, not a change (baseline.walk_key
restarts the baseline).
"""

from __future__ import annotations

from edgekit.report.cpu import Cpu, cpu_of, same_cpu
from edgekit.results import ArtifactInfo, Measurement, TargetRun, converted_changed
from edgekit.store import StoredRun


def fingerprint(run: StoredRun, t: TargetRun, m: Measurement) -> tuple:
    """What this key's figure depends on besides edgekit's code: the recipe's settings, the artifact's converted
    file (its ArtifactInfo, compared by differs through its digests), the version of the runtime module that ran it, and the target's CPU, Python and emulator; None where a
    run does not say (compared by differs as unknown, not as a change). Only the artifact's own runtime: every
    entry of facts.runtimes made an MNN upgrade explain a TFLite regression."""
    art = next((a for a in run.result.artifacts if a.id == m.artifact), None)
    facts = t.agent.facts_before if t.agent else None
    if facts is None:
        return (run.result.recipe_sha256, art, None, None, None, None)
    return (
        run.result.recipe_sha256,
        art,
        facts.runtimes.get(m.runtime) if m.runtime else None,
        cpu_of(facts),  # the whole device's parts: a run pinned to its big cores is no other CPU
        facts.python,
        facts.emulator,
    )


def differs(a: tuple, b: tuple) -> bool:
    """Two fingerprints name a change: some part known in both and different (a run whose facts were not
    recorded is unknown, not a change). The artifacts compare by their model files (results.converted_changed):
    a sidecar that changed (ncnn's model.io.json, whose speed-plan counts vary run to run) explains nothing."""
    return any(x is not None and y is not None and _changed(x, y) for x, y in zip(a, b, strict=True))


def _changed(x: object, y: object) -> bool:
    if isinstance(x, ArtifactInfo) and isinstance(y, ArtifactInfo):
        return converted_changed(x, y)
    if isinstance(x, Cpu) and isinstance(y, Cpu):
        return not same_cpu(x.name, y.name)
    return x != y
