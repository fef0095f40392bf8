"""A target's `python` (and each `runtime_python`) as the command line it is: split as a shell would split it
(no shell runs it), why a value cannot be split, and the error the schema raises for one."""

from __future__ import annotations

import shlex
import sys

from pydantic_core import PydanticCustomError


def python_problem(python: str) -> str | None:
    """Why `python` is not a command python_argv can split into one (an unclosed quote, nothing), or None."""
    try:
        words = python_argv(python)
    except ValueError as exc:
        return f"{python!r} is not a command edgekit can run: {exc}"
    return None if words else "an empty command: give a python, e.g. python3"


def python_error(message: str) -> PydanticCustomError:
    return PydanticCustomError(
        "python_command",
        "{message}",
        {
            "message": message,
            "hint": "a python is a command line, split as a shell splits it (no shell runs it; every quote "
            "closed), e.g. python: taskset -c 4-7 python3",
        },
    )


def python_argv(python: str) -> list[str]:
    """A target's `python` as argv: its command line split as a shell would (`taskset -c 4-7 python3`), except
    edgekit's own interpreter (the host's, a local target's default), which is a path and may hold a space (a
    venv under `My Projects/`): never split."""
    return [python] if python == sys.executable else shlex.split(python)
