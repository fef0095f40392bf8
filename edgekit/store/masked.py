"""Stored text as a report or a listing may show it: the secrets a command in it may carry masked.

The transport masks a proxy command where it words an error (transport/proxy_text.py), but a run imported with
`edgekit runs import`, or recorded by an older edgekit, may hold one whole: `connect: ProxyCommand sshpass -p
hunter2secret ssh -W %h:%p jump@bastion` was shown verbatim in the report's device facts. Imports mask it on the
way in (`masked_result`); the renderers pass every stored error through `masked_text` as well.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from edgekit.results import DeployResult
from edgekit.transport.proxy_text import (
    MASK,
    masked_headers,
    masked_word,
    secret_after,
    secret_name,
    secret_option,
)

_WORD = re.compile(r"\S+")
_QUOTES = "`'\"()[]{}<>,;"
# where a proxy command starts in prose: `ProxyCommand X`, paramiko's `ProxyCommand('X ...')`, `proxy_command=X`
_PROXY = re.compile(r"[`'\"(]*proxy_?command[(=:'\"`]*", re.IGNORECASE)
# the option by which a program takes a password, where a sentence may quote it: `sshpass -p X` (its -P is the
# prompt), `mysql -pX` (its -P is a port), `redis-cli -a X`. Another program's `-p` is a port (`ssh -p 2222`), a
# lab place (`labgrid-client -p pi4-a`), a flag (`mkdir -p x`): it is masked only in a proxy command, as there
_PASSWORD_OPTION = {
    "sshpass": "-p",
    "mysql": "-p",
    "mariadb": "-p",
    "mysqldump": "-p",
    "mysqladmin": "-p",
    "redis-cli": "-a",
}
_COMMAND_END = ("`", ";", ",", ")", ":", "|", "&&")


def masked_text(text: str | None) -> str:
    """`text` with what transport/proxy_text.masked_command masks in a command masked wherever it stands in the
    sentence: the value after an option named as a secret (`--token X`, `--auth X`, `-pw X`), after the password
    option of `sshpass -p`, `mysql -p`, `redis-cli -a`, after `-p`/`-P` of a proxy command (`ProxyCommand
    mytunnel -p X`) but for a port or a path, of `NAME=X` named as one, a URL's password, and an HTTP credential
    (`Authorization: Bearer X`). A quoted value is masked whole (`-p 'correct horse'`). Spacing and the words
    around them are kept as they were."""
    if not text:
        return text or ""
    text = masked_headers(text)
    shown: list[str] = []
    pos = 0
    program, proxy, proxy_next, after_option, secret_next = "", False, False, False, False
    while match := _WORD.search(text, pos):
        start, end = match.span()
        shown.append(text[pos:start])
        word = match.group()
        bare = word.strip(_QUOTES)
        if secret_next:
            value, end = _masked_value(text, start, end)
            shown.append(value)
            secret_next = after_option = False
        elif marker := _PROXY.match(word):  # the proxy command's program is this word's rest or the next word
            shown.append(word)
            rest = word[marker.end() :].strip(_QUOTES)
            program, proxy, proxy_next = Path(rest).name, bool(rest), not rest
        elif proxy_next:
            shown.append(word)
            program, proxy, proxy_next = Path(bare).name, True, False
        elif (
            bare.startswith("-") and "=" not in bare
        ):  # `--token X`, `sshpass -p X`, `-pX`: the value is secret
            password = _PASSWORD_OPTION.get(program)
            following = _WORD.search(text, end)
            value = following.group().strip(_QUOTES) if following else ""
            if password == "-p" and bare.startswith("-p") and len(bare) > 2:
                at = start + word.index("-p") + 2
                masked, end = _masked_value(text, at, end)
                shown.append(text[start:at] + masked)
            else:
                shown.append(word)
                secret_next = bare == password or (
                    secret_after(bare, value) if proxy else secret_option(bare)
                )
            after_option = True
        else:
            name, eq, value = bare.partition("=")
            if eq and value[:1] in "'\"" and secret_name(name):  # `--password='correct horse'`
                at = start + word.index("=") + 1
                masked, end = _masked_value(text, at, end)
                shown.append(text[start:at] + masked)
            else:
                shown.append(
                    word.replace(bare, masked_word(bare)) if bare else word
                )  # NAME=X, a URL's password
            if not proxy and not (program and after_option):  # an option's value leaves its program in charge
                program = Path(bare).name if Path(bare).name in _PASSWORD_OPTION else ""
            after_option = False
        if text[start:end].endswith(_COMMAND_END) or word in ("|", "&&"):
            program, proxy, after_option = "", False, False
        pos = end
    shown.append(text[pos:])
    return "".join(shown)


def _masked_value(text: str, start: int, end: int) -> tuple[str, int]:
    """The secret value that starts at `start` of `text` (a word ending at `end`) masked, and where it ends. A
    quoted value ends at its closing quote, on that line (a password may hold spaces: `'correct horse'`); one whose
    quote does not close there, at the end of the line."""
    word = text[start:end]
    opened = len(word) - len(word.lstrip("`([{<"))
    quote = word[opened : opened + 1]
    if quote not in ("'", '"'):
        bare = word.strip(_QUOTES)
        return (word.replace(bare, MASK) if bare else MASK), end
    line_end = text.find("\n", start)
    line_end = len(text) if line_end < 0 else line_end
    closing = re.compile(rf"{quote}(?!\w)").search(text, start + opened + 1, line_end)
    head = text[start : start + opened + 1]
    return (f"{head}{MASK}{quote}", closing.end()) if closing else (f"{head}{MASK}", line_end)


def masked_result(result: DeployResult) -> DeployResult:
    """`result` with every stored error text (a target's, an artifact's, a measurement's, the agent's) masked
    as `masked_text` does: what `edgekit runs import` records."""
    return DeployResult.model_validate(_masked(result.model_dump(mode="json")))


def _masked(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: masked_text(v) if isinstance(v, str) and k.endswith("error") else _masked(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_masked(v) for v in node]
    return node
