"""A proxy command as errors and hints may show it. It often carries a secret (a tunnel's token, `sshpass -p`), and
what edgekit says of a failed connection goes to the console, the results JSON, the store and the report: errors
name its program alone, hints mask the values of options named as secrets, and what it printed is shown with its
arguments masked."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

MASK = "***"
# an option or NAME=VALUE whose name says it holds a secret: its value is masked (`--service-token-secret X`,
# `--password=X`, `TOKEN=X`)
_SECRET_NAME = re.compile(r"token|secret|passw|passphrase|pwd|api[-_]?key|credential|bearer", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]+@")


def _words(command: str) -> list[str]:
    """The command's words as paramiko runs it; split at spaces when it does not parse (an unclosed quote: the
    target schema refuses one, a ProxyCommand of ~/.ssh/config may hold one)."""
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def masked_command(command: str) -> str:
    """`command` with the values of options named as secrets (`--token X`, `--password=X`, `TOKEN=X`, `sshpass
    -p X`) and a URL's password shown as ***; the command itself when it has none (still runnable as printed)."""
    words = _words(command)
    shown = []
    secret_next = False
    for index, word in enumerate(words):
        name, eq, _value = word.partition("=")
        if secret_next:
            word, secret_next = MASK, False
        elif eq and _SECRET_NAME.search(name):
            word = f"{name}={MASK}"
        elif word.startswith("-") and _SECRET_NAME.search(word):
            secret_next = True
        elif index and Path(words[0]).name == "sshpass" and word.startswith("-p"):
            word, secret_next = ("-p", True) if word == "-p" else (f"-p{MASK}", False)
        shown.append(_URL_PASSWORD.sub(rf"\1{MASK}@", word))
    return command if shown == words else shlex.join(shown)


def program_of(command: str) -> str:
    """How an error names a proxy command: its program, `...` for the arguments it does not show."""
    words = _words(command)
    if not words:
        return "(empty)"
    # `TOKEN=x cmd` is a shell's form (paramiko runs no shell): its first word is no program, and a secret
    program = words[0] if "=" not in words[0] else MASK
    return f"`{program}{' ...' if len(words) > 1 else ''}`"


def masked_output(text: str, command: str, keep: tuple[str, ...]) -> str:
    """What a proxy command printed, its arguments (but `keep`: the host, port, user filled in) shown as ***: a
    tool that fails often repeats its command line, token included."""
    words = sorted({w for w in _words(command)[1:] if len(w) >= 3 and w not in keep}, key=len, reverse=True)
    for word in words:
        text = text.replace(word, MASK)
    return _URL_PASSWORD.sub(rf"\1{MASK}@", text)
