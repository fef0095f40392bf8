"""Every error edgekit raises on purpose, each saying what went wrong, where, and what to try.

    EdgekitError
     +-- RecipeError          a recipe file is malformed, names a missing file or an unknown format
     +-- TargetError          a target file is malformed or unknown
     +-- ConversionError      a converter failed (tool output attached)
     +-- FidelityError        an artifact missed its recipe's fidelity gate
     +-- TransportError       SSH/local transport failures
     |    +-- HostKeyError    unknown or changed host key (refused; says how to accept)
     |    +-- ConnectError    the host is unreachable or refused authentication
     |    +-- RemoteTimeout   a remote command outlived its timeout and was stopped
     +-- AgentError           the on-device agent crashed or wrote no result
     +-- EmulatorError        an emulated device cannot be built, started or stopped
     +-- StoreError           the results store cannot be opened, migrated or written

The CLI catches EdgekitError, prints its message and exits non-zero; anything else is a bug.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base class: `str(err)` is the full message shown to the user."""

    exit_code = 1

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class RecipeError(EdgekitError):
    exit_code = 2


class TargetError(EdgekitError):
    exit_code = 2


class ConversionError(EdgekitError):
    pass


class FidelityError(EdgekitError):
    pass


class TransportError(EdgekitError):
    pass


class HostKeyError(TransportError):
    pass


class ConnectError(TransportError):
    pass


class RemoteTimeout(TransportError):
    pass


class AgentError(EdgekitError):
    pass


class EmulatorError(EdgekitError):
    pass


class StoreError(EdgekitError):
    pass
