"""The target's private key file, read before anything connects: a missing file, a public key, a passphrase-protected
key or any other file is bad input named as such (KeyFileError, exit 2), not "SSH failed" after the device answered.
"""

from __future__ import annotations

import os
import shlex
import stat
from pathlib import Path

import paramiko

from edgekit.errors import KeyFileError
from edgekit.target import Target


def check_key(target: Target) -> str | None:
    """The target's private key file, read (None: ssh-agent's keys). A missing file, a public key, a
    passphrase-protected key or any other file is bad input (KeyFileError, exit 2): deploy and nightly check it
    before converting anything, connect before dialling."""
    if not target.key:
        return None
    key = str(Path(target.key).expanduser())
    if not Path(key).is_file():
        raise KeyFileError(
            f"key file not found: {key}" if not Path(key).exists() else f"{key} is not a file (a folder?)",
            where=f"target {target.name}, field `key`",
            hint="--set key=PATH (a private key file; a relative `key:` in a target file is the file's folder's), "
            "or remove `key` to use ssh-agent",
        )
    _check_key_file(key, target.name)
    _check_key_mode(key, target.name)
    return key


def _check_key_mode(key: str, target: str) -> None:
    """A private key of this user's that others can read or write is refused, as ssh refuses it ("UNPROTECTED
    PRIVATE KEY FILE"): it was used silently, and a key others can read may be theirs already. As ssh, only a key
    this user owns: a team's lab key owned by root and readable by a group (0640) works with ssh, and its user
    could not chmod it anyway."""
    info = os.stat(key)
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077 and info.st_uid == os.getuid():
        raise KeyFileError(
            f"private key {key} is open to other users (mode {mode:o}; only its owner may read it): ssh refuses "
            "such a key (UNPROTECTED PRIVATE KEY FILE), and so does edgekit",
            where=f"target {target}, field `key`",
            hint=f"chmod 600 {shlex.quote(key)}",
        )


def _check_key_file(key: str, target: str) -> None:
    """Read the private key before connecting, so a wrong file (a public key, a passphrase-protected key, any other
    file) is bad input named as such (exit 2), not "SSH failed" after the device answered."""
    where = f"target {target}, field `key`"
    try:
        paramiko.PKey.from_path(key)
    except (
        paramiko.PasswordRequiredException,
        TypeError,
    ) as exc:  # cryptography: TypeError("...password...")
        if not isinstance(exc, paramiko.PasswordRequiredException) and "password" not in str(exc).lower():
            raise KeyFileError(f"{key} is not a private key edgekit can read ({exc})", where=where) from None
        raise KeyFileError(
            f"{key} is protected by a passphrase, which edgekit does not ask for",
            where=where,
            hint="load it into ssh-agent (ssh-add) and remove `key` from the target, or use a key without one",
        ) from None
    except (paramiko.SSHException, ValueError, OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(
            f"{key} is not a private key edgekit can read ({str(exc).split('. See ')[0]})",
            where=where,
            hint="--set key=PATH of the private key (id_ed25519, not id_ed25519.pub)",
        ) from None
