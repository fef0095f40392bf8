"""A proxy command as errors and hints may show it. It often carries a secret (a tunnel's token, `sshpass -p`), and
what edgekit says of a failed connection goes to the console, the results JSON, the store and the report: errors
name its program alone, hints mask the values of options named as secrets, and what it printed is shown with its
arguments and each of its secret values masked (a tool that fails often repeats its password alone)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

MASK = "***"
# an option or NAME=VALUE whose name says it holds a secret: its value is masked (`--service-token-secret X`,
# `--password=X`, `TOKEN=X`, `--auth X`, `PROXY_AUTH=X`, PuTTY's `-pw X`; not `--author`)
_SECRET_NAME = re.compile(
    r"token|secret|passw|passphrase|pwd|api[-_]?key|credential|bearer|(?:^|[-_])auth$|^pw$", re.I
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s]+)@")
# `-p X`, `-P X` give a password to many tools (sshpass, mysql, tunnels), but a port to others: a number or `%p`,
# an option or a path (`ssh -p 2222`, `mkdir -p /x`) is no secret
_NO_SECRET_AFTER_P = re.compile(r"\d+$|[%/~.-]|$")
# what a tool prints of an HTTP credential: `Authorization: Bearer X` (or Basic, Token...), `Bearer X` (but not
# `bearer token`: a lowercase word is no credential)
_HEADER = re.compile(
    r"(\bauthorization:\s*(?:bearer|basic|token|digest|negotiate)\s+|\bbearer\s+(?!(?-i:[a-z]+)\b))"
    r"([^\s'\"`,;()\[\]{}<>]+)",
    re.IGNORECASE,
)
# `Authorization: X` without a scheme masks X only when it looks like a token (16 characters and more, not a plain
# word): `HTTP 401 Authorization: failed for user bob` says no secret
_HEADER_TOKEN = re.compile(
    r"(\bauthorization:\s*)(?!(?-i:[a-z]+(?:-[a-z]+)*)(?![\w.~+/=-]))[\w.~+/=-]{16,}(?![\w.~+/=-])",
    re.IGNORECASE,
)
_SHORTEST = 3  # a shorter value cannot be told from ordinary text where a proxy's output repeats it


def _words(command: str) -> list[str]:
    """The command's words as paramiko runs it; split at spaces when it does not parse (an unclosed quote: the
    target schema refuses one, a ProxyCommand of ~/.ssh/config may hold one)."""
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def secret_after(option: str, value: str) -> bool:
    """Whether `value`, the word after `option` in a proxy command, is a secret: `option` is named as one
    (`--token`, `--auth`), or is `-p`/`-P` and `value` no port or path."""
    if option in ("-p", "-P"):
        return not _NO_SECRET_AFTER_P.match(value)
    return secret_option(option)


def secret_option(option: str) -> bool:
    """Whether `option` is named as one holding a secret, whatever the program (`--token`, `--auth`, `-pw`)."""
    return option.startswith("-") and "=" not in option and bool(_SECRET_NAME.search(option.lstrip("-")))


def secret_name(name: str) -> bool:
    """Whether `name` of `NAME=X` or `--name=X` says X is a secret (`TOKEN`, `--password`)."""
    return bool(_SECRET_NAME.search(name.lstrip("-")))


def masked_word(word: str) -> str:
    """`word` with the value of `NAME=X` / `--name=X` named as a secret, and a URL's password, shown as ***."""
    return _masked_word(word)[0]


def _masked_word(word: str) -> tuple[str, list[str]]:
    name, eq, value = word.partition("=")
    secrets = []
    if eq and secret_name(name):
        word, secrets = f"{name}={MASK}", [value]
    secrets += [m.group(2) for m in _URL_PASSWORD.finditer(word)]
    return _URL_PASSWORD.sub(rf"\1{MASK}@", word), secrets


def _shown(words: list[str]) -> tuple[list[str], list[str]]:
    """The words with their secrets shown as ***, and the secret values they held."""
    shown: list[str] = []
    secrets: list[str] = []
    sshpass = bool(words) and Path(words[0]).name == "sshpass"  # its options, up to the command it runs
    secret_next = False
    for index, word in enumerate(words):
        following = words[index + 1] if index + 1 < len(words) else ""
        if secret_next:
            secrets.append(word)
            word, secret_next = MASK, False
        elif index and sshpass and word.startswith("-p"):
            if word == "-p":
                secret_next = True
            else:
                secrets.append(word[2:])
                word = f"-p{MASK}"
        else:
            sshpass = sshpass and (index == 0 or word.startswith("-"))
            secret_next = secret_after(word, following)
            word, found = _masked_word(word)
            secrets += found
        shown.append(word)
    return shown, secrets


def masked_command(command: str) -> str:
    """`command` with the values of options named as secrets (`--token X`, `--password=X`, `TOKEN=X`, `sshpass
    -p X`, `--auth X`, `-P X`) and a URL's password shown as ***; the command itself when it has none (still
    runnable as printed)."""
    words = _words(command)
    shown = _shown(words)[0]
    return command if shown == words else shlex.join(shown)


def secrets_of(command: str) -> list[str]:
    """The secret values `masked_command` masks in `command` (longest first), each as the command gives it."""
    return sorted({s for s in _shown(_words(command))[1] if s}, key=len, reverse=True)


def masked_headers(text: str) -> str:
    """`text` with an HTTP credential a tool printed (`Authorization: Bearer X`, `Bearer X`, `Authorization: X`
    where X looks like a token) shown as ***."""
    return _HEADER_TOKEN.sub(rf"\1{MASK}", _HEADER.sub(rf"\1{MASK}", text))


def program_of(command: str) -> str:
    """How an error names a proxy command: its program, `...` for the arguments it does not show."""
    words = _words(command)
    if not words:
        return "(empty)"
    # `TOKEN=x cmd` is a shell's form (paramiko runs no shell): its first word is no program, and a secret
    program = words[0] if "=" not in words[0] else MASK
    return f"`{program}{' ...' if len(words) > 1 else ''}`"


def masked_output(text: str, command: str, keep: tuple[str, ...]) -> str:
    """What a proxy command printed, its arguments (but `keep`: the host, port, user filled in) and every secret
    value of its command line (`--password=X`'s X, printed alone) shown as ***: a tool that fails often repeats
    its command line or its password."""
    words = sorted(
        {w for w in _words(command)[1:] if len(w) >= _SHORTEST and w not in keep}, key=len, reverse=True
    )
    for word in words + [s for s in secrets_of(command) if len(s) >= _SHORTEST]:
        text = text.replace(word, MASK)
    return masked_headers(_URL_PASSWORD.sub(rf"\1{MASK}@", text))
