"""An agent that died before measuring anything: by a signal (most often the kernel's OOM killer's SIGKILL) or in
its start-up (a python or runtime that cannot load). Either ends its own (python, runtime) group only: the session
still runs the next group (another runtime, another agent process), and the target fails with this error after.
A death by signal is said as one, without the shell's echo of the whole remote command and its environment
('bash: line 1: 1269 Killed EDGEKIT_QEMU_PLUGIN=...'), and without the python hint a runtime's import failure takes.
"""

from __future__ import annotations

import re
import shlex
import signal

from edgekit.errors import AgentError
from edgekit.target import Target, python_argv

# bash's (or sh's) report of a child killed by a signal: 'bash: line 1:  1269 Killed   <the command line>'
_SHELL_ECHO = re.compile(r"^\S*sh: line \d+:\s+\d+\s")


class DiedBeforeMeasuring(AgentError):
    """The agent of one runtime group died before measuring anything: the other groups still run."""


class PythonNotFound(DiedBeforeMeasuring):
    """The group's python command did not start on the device (the shell's 127, command not found or no such
    file; 126, not executable): the target's `python` (or `runtime_python`) field is wrong, bad input as
    `targets check` says it (exit 2)."""

    exit_code = 2


class BadAffinity(AgentError):
    """The target's `affinity` names cpus the device cannot pin to exactly (a cpu it does not have or has offline):
    the agent refused the request (EXIT_BAD_REQUEST) before measuring, bad input as README says (exit 2), not a
    failed run (it ran unpinned and its figures were another pinning's, before f926395)."""

    exit_code = 2


NOT_STARTED = (126, 127)  # the shell's statuses for a command it could not find or execute (local: 127)


def python_not_found(
    target: Target, python: str, status: int, stdout: str, stderr: str
) -> PythonNotFound | None:
    """The error of a python command that never started (it printed nothing and exited 126 or 127), naming the
    target's field that holds it; None for any other exit. Was 'AgentError: agent exited with status 127: ...
    command not found (before measuring anything; result-0.json could not be downloaded ...)', exit 1."""
    if status not in NOT_STARTED or stdout.strip():
        return None
    keys = [runtime for runtime, own in target.runtime_python.items() if own == python]
    field = "python" if python == target.python or not keys else f"runtime_python.{keys[0]}"
    said = [line for line in stderr.strip().splitlines() if line.strip()][-1:]
    return PythonNotFound(
        f"the python command `{python}` did not start on the device (exit {status}"
        + (f": {said[0].strip()}" if said else "")
        + "): nothing was measured",
        where=f"target {target.name}, field `{field}`",
        hint=f"give the target a python the device has: --set {field}=python3, or `{field}:` in "
        f"{target.source or 'the target file'} (`targets check` runs it)",
    )


def killed_by(status: int) -> str | None:
    """'killed by SIGKILL (out of memory? see dmesg on the device)' for an exit by a signal (a negative status, or
    the shell's 128 + the signal), None for an exit of the agent's own."""
    number = -status if status < -1 else status - 128 if 128 < status < 160 else None
    if number is None:
        return "killed by a signal" if status == -1 else None
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    oom = " (out of memory? see dmesg on the device)" if number == signal.SIGKILL else ""
    return f"killed by {name}{oom}"


def without_shell_echo(stderr: str) -> str:
    """The agent's stderr without the shell's line about the signal (it repeats the whole remote command)."""
    return "\n".join(line for line in stderr.splitlines() if not _SHELL_ECHO.match(line))


def before_measuring(
    target: Target, status: int, stderr: str, said: str, detail: str = "", left: str = ""
) -> DiedBeforeMeasuring:
    """The error of an agent that ended in error having measured nothing: `said` is how it exited with the tail
    of its stderr (the caller's words), `detail` what else is known (why its result file could not be read),
    `left` that its run folder is left on the device."""
    killed = killed_by(status)
    if killed is not None:
        last = without_shell_echo(stderr).strip().splitlines()[-1:]
        return DiedBeforeMeasuring(
            f"the agent was {killed} before measuring anything{f': {last[0]}' if last else ''}{left}",
            where=target.name,
            hint="a kill by the kernel's OOM killer is said in `dmesg` on the device: measure fewer artifacts or "
            "threads at once, or free memory there",
        )
    return DiedBeforeMeasuring(
        f"{said} (before measuring anything{detail}){left}",
        where=target.name,
        hint=f"run `{shlex.join(python_argv(target.python))} -c 'import numpy'` on the device to check its python "
        "and runtimes",
    )
