"""The lab's named errors (all EdgekitError: the CLI prints them and exits with their code)."""

from __future__ import annotations

import shlex

from edgekit.errors import EdgekitError


class LabError(EdgekitError):
    """The coordinator could not be reached or refused, or a place offers no way in (no NetworkService)."""


class LabSetupError(LabError):
    """labgrid's own environment (.venv-lab) is missing."""

    exit_code = 2


class NoMatchingPlace(LabError):
    """No place of the coordinator carries the tags (or the name) asked for."""

    exit_code = 2


class LabWaitTimeout(LabError):
    """Every matching place stayed held by someone else for the whole wait."""


class NoReachablePlace(LabError):
    """Every place that matches has no available NetworkService: its exporter is down (or it matches none)."""


class SamePlaceTwice(LabError):
    """Every place a lab target could take is already held by this same edgekit, for another target of its run:
    a board is measured once per run (two lab targets of one deploy that resolve to the same places)."""

    exit_code = 2


class NotRun(EdgekitError):
    """A recipe of a lab nightly that no board took before a Ctrl-C or SIGTERM: not run, not a failed deploy
    (edgekit.nightly says it and goes on; it is no failure of the night)."""


def no_reachable_place(wanted: str, places: list[str], coordinator: str) -> NoReachablePlace:
    return NoReachablePlace(
        f"every place matching {wanted} ({', '.join(places)}) has no available NetworkService: the exporter that "
        "publishes it is down (or the place matches no exporter's resource)",
        where=coordinator,
        hint=f"{lab_command(coordinator)} (the ssh column); start the exporter of {', '.join(places)} again "
        "(labgrid-exporter ... exporter.yaml), or `labgrid-client -p PLACE show` to see what it matches",
    )


def no_matching_place(wanted: str, known: list[str], coordinator: str, typo: str = "") -> NoMatchingPlace:
    return NoMatchingPlace(
        f"no place of the lab matches {wanted}" + (f": {typo}" if typo else ""),
        where=coordinator,
        hint=f"places: {', '.join(known) or 'none'} ({lab_command(coordinator)} lists them with their tags); "
        "the target's lab.tags or lab.place, or --target lab:TAG=VALUE",
    )


def lab_command(coordinator: str, *words: str) -> str:
    """`edgekit lab WORDS -x COORDINATOR`, as a hint names it: the command reaches the coordinator the hint came
    from (a lab target file's), not the one `edgekit lab` would default to ($LG_COORDINATOR, the `lab` file's)."""
    return " ".join(["edgekit lab", *(shlex.quote(w) for w in words), "-x", shlex.quote(coordinator)])
