"""The lab's named errors (all EdgekitError: the CLI prints them and exits with their code)."""

from __future__ import annotations

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
