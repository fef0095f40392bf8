"""Every error edgekit raises on purpose, each saying what went wrong, where, and what to try.

    EdgekitError
     +-- UsageError           a bad command-line argument or input file (exit 2)
     +-- RecipeError          a recipe file is malformed, names a missing file or an unknown format (exit 2)
     +-- TargetError          a target file is malformed or unknown (exit 2)
     +-- InputDataError       a model, image or data file cannot be read (exit 2)
     +-- ConversionError      a converter failed (tool output attached)
     +-- FidelityError        an artifact missed its recipe's fidelity gate
     +-- TransportError       SSH/local transport failures
     |    +-- HostKeyError    unknown or changed host key (refused; says how to accept)
     |    +-- ConnectError    the host is unreachable, silent, or refused authentication
     |    |    +-- KeyFileError     the target's key file is missing or unreadable (exit 2)
     |    |    +-- HostNameError    the host name cannot be looked up as written: an empty or over-long part (exit 2)
     |    +-- RemoteTimeout   a remote command outlived its timeout and was stopped
     |    +-- DeviceTimeout   the device stopped answering: which stage, after how long
     |    +-- ConnectionLost  the connection dropped during a stage
     |    +-- DeviceDiskFull  the device's work dir has less free space than the run needs (free vs needed)
     |    +-- DeviceFileTooLarge  a file on the device over what edgekit downloads (refused before reading it)
     |    +-- RemotePathIsFolder  an upload's remote path is a folder on the device (refused, the partial removed)
     |    +-- WorkDirError    the target's work dir (or a folder in it) cannot be created or written on the device
     |                        (exit 2; 1 when the device's disk is at fault: read-only, full, an I/O error)
     |    +-- Interrupted     Ctrl-C: what was measured is kept, marked interrupted (exit 130)
     +-- AgentError           the on-device agent crashed or wrote no result
     +-- RuntimeMissing       the device's python lacks a runtime the run needs: those artifacts skipped (exit 2)
     +-- EmulatorError        an emulated device cannot be built, started or stopped
     +-- RuntimeInstallError  `targets setup` could not install a runtime the target lists (which, where, why)
     +-- StoreError           the results store cannot be opened, migrated or written
          +-- StorePathError  the SQLite path named is a folder, another kind of file, or (to read) absent (exit 2)
          +-- UnknownRunError a run id the store does not hold (exit 2)
     +-- OutputFileError      a file edgekit was asked to write (--json, --html, ...) cannot be written

The CLI catches EdgekitError, prints its message and exits with its `exit_code`: 2 for a bad argument or
input file, 1 for a failed run, 130 for Ctrl-C. An error whose `where` is a command-line option (`--threads`)
is a usage error and exits 2 whatever its class. Anything else is a bug: one line, and the traceback only
with `--debug`.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base class: `str(err)` is the full message shown to the user."""

    exit_code = 1

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.where = where
        self.hint = hint
        if (where or "").startswith("--") or message.startswith("--"):
            self.exit_code = 2  # the user typed it: a usage error
        super().__init__(self.__str__())

    def __str__(self) -> str:
        # where: a place (a file, a target, a URL), one line: a newline in a file's name added a forged line
        where = self.where.replace("\r", "\\x0d").replace("\n", "\\x0a") if self.where else None
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UsageError(EdgekitError):
    exit_code = 2


class RecipeError(EdgekitError):
    exit_code = 2


class TargetError(EdgekitError):
    exit_code = 2


class InputDataError(EdgekitError):
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


class KeyFileError(ConnectError):
    exit_code = 2


class HostNameError(ConnectError):
    """A host name the system cannot look up as written (`192.168.1..23`): the user's typo, not an unreachable device.
    The target schema refuses one; this is for a name that came another way (a lab place, a device's state)."""

    exit_code = 2


class RemoteTimeout(TransportError):
    pass


class DeviceFileTooLarge(TransportError):
    """A file on the device is larger than edgekit downloads: refused before any byte of it is read."""


class RemotePathIsFolder(TransportError):
    """An upload's remote `path` is a folder on the device: the file is not moved into it (mv would), its partial
    upload is removed and nothing is reported sent."""

    def __init__(
        self, message: str, *, path: str = "", where: str | None = None, hint: str | None = None
    ) -> None:
        self.path = path
        super().__init__(message, where=where, hint=hint)


class DeviceTimeout(TransportError):
    """The device stopped answering (frozen, link down without a reset): `stage` and `seconds` say where."""

    def __init__(
        self,
        message: str,
        *,
        stage: str = "",
        seconds: float = 0.0,
        where: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.stage = stage
        self.seconds = seconds
        super().__init__(message, where=where, hint=hint)


class ConnectionLost(TransportError):
    """The SSH connection dropped during `stage`."""

    def __init__(
        self, message: str, *, stage: str = "", where: str | None = None, hint: str | None = None
    ) -> None:
        self.stage = stage
        super().__init__(message, where=where, hint=hint)


class DeviceDiskFull(TransportError):
    """The device's disk cannot hold what the run needs: `free` and `needed` bytes say by how much."""

    def __init__(
        self,
        message: str,
        *,
        free: int | None = None,
        needed: int | None = None,
        where: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.free = free
        self.needed = needed
        super().__init__(message, where=where, hint=hint)


class WorkDirError(TransportError):
    """A folder edgekit writes on the device cannot be made or written there: `path` is the folder, `why` mkdir's
    own words (the message carries them). The path itself (under a file, no permission, in /proc) is bad input,
    exit 2: the target's `work_dir` is the user's to change. A device fault (a disk remounted read-only, full, an
    I/O error, or words not known to be the path's) is a failed run, exit 1, as any device that fails mid-run."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        why: str = "",
        where: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.path = path
        super().__init__(message, where=where, hint=hint)
        if self.device_fault(path, why):
            self.exit_code = 1

    @staticmethod
    def device_fault(path: str, why: str) -> bool:
        """Whether mkdir's (or the write test's) words `why` for `path` tell a fault of the device's disk rather
        than a path the user gave wrong. Remote mkdir gives its message, not errno: the C library's strerror
        words, the same on every Linux; EROFS, ENOSPC, EIO are faults even when the message also says the folder
        is not writable, and unknown words are too (a path is bad input only when it certainly is)."""
        words = why.lower()
        if any(w in words for w in _FAULT_WORDS):
            return True
        if path == "/proc" or path.startswith(("/proc/", "/sys/")) or path == "/sys":
            return False
        return not any(w in words for w in _PATH_WORDS)


_FAULT_WORDS = (  # strerror(EROFS, ENOSPC, EIO, EDQUOT, EUCLEAN, ESTALE, ENOTCONN)
    "read-only file system",
    "no space left on device",
    "input/output error",
    "disk quota exceeded",
    "structure needs cleaning",
    "stale file handle",
    "transport endpoint is not connected",
)
_PATH_WORDS = (  # strerror(ENOTDIR, EACCES, EPERM, EEXIST, ENOENT, ENAMETOOLONG, ELOOP) and the write test's
    "not a directory",
    "permission denied",
    "operation not permitted",
    "file exists",
    "no such file or directory",
    "file name too long",
    "too many levels of symbolic links",
    "not writable by this user",
)


class Interrupted(TransportError):
    """Ctrl-C stopped the run; what was measured is kept and marked interrupted."""

    exit_code = 130


class AgentError(EdgekitError):
    pass


class RuntimeMissing(EdgekitError):
    """The device's python has no module of a runtime the run's artifacts need (MNN on a board set up without it):
    those artifacts were skipped, the others measured. The target is not set up for the run, as a `python` it
    does not have is bad input (exit 2); the hint says how to set it up (`edgekit targets setup`)."""

    exit_code = 2


class EmulatorError(EdgekitError):
    pass


class RuntimeInstallError(EdgekitError):
    """`edgekit targets setup` left runtimes of the target's `runtimes:` missing (a Termux package that does not
    exist, a runtime the emulated devices cannot have): exit 1, after the device's table, so a script can tell."""


class StoreError(EdgekitError):
    pass


class StorePathError(StoreError):
    exit_code = 2


class UnknownRunError(StoreError):
    exit_code = 2


class DamagedRunError(StoreError):
    """A stored run whose rows do not read back (a value changed outside edgekit, a damaged file): exit 1."""


class OutputFileError(EdgekitError):
    """A file edgekit was asked to write (--json, --html, --markdown) could not be written (a full disk, a folder
    that cannot hold files): exit 1, what was measured is already in the store."""


def exit_text(code: int) -> str:
    """How a child process ended, from subprocess's returncode: 'exit 1', or 'killed by SIGSEGV (signal 11)' for
    a negative code (the signal that ended it: MNN's quantization tool crashing read 'exit -11')."""
    if code >= 0:
        return f"exit {code}"
    import signal

    try:
        name = signal.Signals(-code).name
    except ValueError:
        return f"killed by signal {-code}"
    return f"killed by {name} (signal {-code})"


class CacheWriteError(EdgekitError):
    """edgekit's conversion cache (under EDGEKIT_HOME) cannot be written: a read-only file system, no permission.
    The setting's fault, as a data dir that cannot be made is (edgekit.paths): exit 2."""

    exit_code = 2
