"""A runtime the device's python does not have: the artifacts it runs are skipped, said with the fix.

The agent tries every artifact it is sent; one whose runtime is not installed fails to load with Python's own
words (`ModuleNotFoundError: No module named 'MNN'`; TFLite's runner names each module it tried). That was
recorded as a failed measurement and the target as `status ok`, exit 1, while `edgekit formats --target` knew
the runtime was missing. Here the host reads those load errors, for the runtime's own modules only (a module of
the runtime that is there but cannot import a part of itself is a broken install, still a failure), and records
each as `skipped` (ErrorCode.RUNTIME_MISSING) naming the runtime and what sets the device up; the session then
ends the target in RuntimeMissing: a target set-up problem, bad input as a `python` the device lacks is (exit 2).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from edgekit.agent.contract import ErrorCode
from edgekit.deploy.request import AgentArtifact
from edgekit.errors import RuntimeMissing
from edgekit.formats import Format
from edgekit.results import TargetRun
from edgekit.runtimes import spec_for
from edgekit.target import Target

# Python's words for an import of a module that is not there, as the agent records them ("%s: %s" % (type, exc))
_NO_MODULE = re.compile(r"No module named '([^']+)'")
_IMPORT_ERRORS = ("ModuleNotFoundError: ", "RuntimeError: no TFLite runtime importable")


def missing_modules(error: str, modules: tuple[str, ...]) -> list[str]:
    """The runtime modules a load error says are not installed: every module it names as missing must be one of
    the runtime's (`modules`), else [] (a dependency or a part of an installed runtime missing: not this case)."""
    if not error.startswith(_IMPORT_ERRORS):
        return []
    named = list(dict.fromkeys(_NO_MODULE.findall(error)))
    return named if named and all(n in modules for n in named) else []


def _python_field(target: Target, python: str) -> str | None:
    """The target field that gave this group's python, when it was given for this run (--set or
    EDGEKIT_TARGET_*): `targets setup` must be given it too, or it would set up another python."""
    overrides: dict[str, Any] = target._overrides
    own = overrides.get("runtime_python") or {}
    for runtime, command in target.runtime_python.items():
        if command == python and runtime in own:
            return f"runtime_python.{runtime}"
    return "python" if python == target.python and "python" in overrides else None


def fix(target: Target, python: str, modules: list[str], artifact_format: str) -> str:
    """What sets the device up for these modules: `edgekit targets setup` (with the python given for this run),
    after adding the runtime to the target's `runtimes:` where it is not listed; or why no device can have it."""
    spec = spec_for(Format(artifact_format))
    if spec.not_installable:
        return f"no device can have it: {spec.not_installable}"
    if target.is_this_host:  # edgekit's own python: `targets setup` is for devices
        package = spec.packages[0].pip if spec.packages else modules[0]
        return f"install {package} in edgekit's environment (`edgekit formats` shows what this machine has)"
    field = _python_field(target, python)
    command = f"edgekit targets setup {shlex.quote(target.given_as)}" + (
        f" --set {field}={shlex.quote(python)}" if field else ""
    )
    if any(m in target.runtimes for m in modules):
        return f"`{command}` installs it"
    return f"add {modules[0]} to the target's `runtimes:`, then `{command}` installs it"


def skip_text(target: Target, python: str, modules: list[str], artifact_format: str) -> str:
    """'skipped: runtime MNN not installed on pi4-emu (`edgekit targets setup pi4-emu` installs it)'."""
    given = f" for `{python}`" if _python_field(target, python) else ""
    return (
        f"skipped: runtime {' or '.join(modules)} not installed on {target.name}{given} "
        f"({fix(target, python, modules, artifact_format)})"
    )


def skip_missing(
    run: TargetRun, arts: list[AgentArtifact], target: Target, python: str
) -> dict[str, tuple[str, str]]:
    """Turn the failed loads of `arts` (one group's, run with `python`) whose runtime is not installed into
    skipped measurements saying so and how to fix it; returns artifact id -> ('MNN not installed', naming the
    python given for this run if one was; the fix)."""
    if run.agent is None:
        return {}
    formats = {a.id: a.format.value for a in arts}
    skipped: dict[str, tuple[str, str]] = {}
    for i, m in enumerate(run.agent.measurements):
        fmt = formats.get(m.artifact)
        if fmt is None or m.status != "failed" or m.error_code is not ErrorCode.LOAD_ERROR:
            continue
        modules = missing_modules(m.error or "", spec_for(Format(fmt)).modules())
        if not modules:
            continue
        run.agent.measurements[i] = m.model_copy(
            update={
                "status": "skipped",
                "error": skip_text(target, python, modules, fmt),
                "error_code": ErrorCode.RUNTIME_MISSING,
            }
        )
        given = f" for `{python}`" if _python_field(target, python) else ""
        skipped[m.artifact] = (
            f"{' or '.join(modules)} not installed{given}",
            fix(target, python, modules, fmt),
        )
    return skipped


def runtime_missing(target: Target, skipped: dict[str, tuple[str, str]]) -> RuntimeMissing:
    """The target's error once every group ran: which runtimes it lacks, which artifacts were skipped, the fix."""
    by_module: dict[str, list[str]] = {}
    for artifact, (missing, _) in skipped.items():
        by_module.setdefault(missing, []).append(artifact)
    return RuntimeMissing(
        "; ".join(f"runtime {m}: {', '.join(arts)} skipped" for m, arts in by_module.items()),
        where=target.name,
        hint="; ".join(dict.fromkeys(f for _, f in skipped.values())),
    )
