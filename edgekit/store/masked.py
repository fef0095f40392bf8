"""Stored text as a report or a listing may show it: the secrets a command in it may carry masked.

The transport masks a proxy command where it words an error (transport/proxy_text.py), but a run imported with
`edgekit runs import`, or recorded by an older edgekit, may hold one whole: `connect: ProxyCommand sshpass -p
hunter2secret ssh -W %h:%p jump@bastion` was shown verbatim in the report's device facts. Imports mask it on the
way in (`masked_result`); the renderers pass every stored error through `masked_text` as well.
"""

from __future__ import annotations

import io
import re
import shlex
from pathlib import Path
from typing import Any

from edgekit.results import DeployResult
from edgekit.transport.proxy_text import (
    MASK,
    CommandReader,
    masked_command,
    masked_headers,
    masked_word,
    secret_name,
    secret_option,
)

_WORD = re.compile(r"\S+")
_QUOTES = "`'\"()[]{}<>,;"
# where a proxy command starts in prose: `ProxyCommand X`, paramiko's `ProxyCommand('X ...')`, `proxy_command=X`
_PROXY = re.compile(r"[`'\"(]*proxy_?command[(=:'\"`]*", re.IGNORECASE)
_PROXY_NAME = re.compile(r"proxy_?command", re.IGNORECASE)
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
    """`text` with the secrets a command in it may carry masked wherever it stands in the sentence. A proxy command
    it quotes (`ProxyCommand X`, `ProxyCommand('X')`, `proxy_command=X`, `` proxy_command `X` ``, a hint's `ssh -o
    'ProxyCommand=X'`) is masked as transport/proxy_text shows one, by its reader: only the program, %h %p %r %%,
    numbers, option names, paths that exist and ssh's own words are kept; a bare word is masked too where the
    command is quoted whole (unquoted, it cannot be told from the sentence that goes on after it). Elsewhere: the
    value after an option named as a secret (`--token X`, `--auth X`, `-pw X`), after the password option of
    `sshpass -p`, `mysql -p`, `redis-cli -a`, of `NAME=X` named as one, a URL's password, and an HTTP credential
    (`Authorization: Bearer X`). A quoted value is masked whole (`-p 'correct horse'`). Spacing and the words
    around them are kept as they were."""
    if not text:
        return text or ""
    text = masked_headers(text)
    shown: list[str] = []
    pos = 0
    program, after_option, secret_next = "", False, False
    reader: CommandReader | None = (
        None  # the proxy command being read, its closing quote (none: it runs to a ; , : )
    )
    proxy_next, closing = False, ""
    while match := _WORD.search(text, pos):
        start, end = match.span()
        shown.append(text[pos:start])
        if "\n" in text[pos:start]:  # a command ends with its line
            reader, proxy_next = None, False
        word = match.group()
        bare = word.strip(_QUOTES)
        marker = None if secret_next else _PROXY.match(word)
        if marker:
            program, after_option, reader = "", False, None
            lead = marker.group()
            name = _PROXY_NAME.search(lead)
            assert name is not None
            before, after = lead[: name.start()], lead[name.end() :]
            quoted = _shell_quoted(text, start) if before in ("'", '"') and after == "=" else None
            if quoted:  # `'ProxyCommand=X'`, one word as a shell quotes it (a hint's ssh -o)
                shown.append(quoted[0])
                end = quoted[1]
            else:
                shown.append(word[: marker.end()])
                closing = after[-1] if after[-1:] in ("'", '"', "`") and after[-1] not in before else ""
                proxy_next = marker.end() == len(word)
                if not proxy_next:
                    reader = CommandReader(bare_kept=not closing)
                    inside = start + marker.end()
                    quoted = _quoted_command(text, inside, closing, "(" in lead, reader)
                    if quoted:  # `ProxyCommand('X'): exit 1`: the command is what the quotes hold
                        (masked, end), reader = quoted, None
                    else:
                        masked, end = _proxy_word(text, inside, end, reader)
                    shown.append(masked)
        elif proxy_next or reader is not None:
            quoted = None
            if proxy_next:
                lead_len = len(word) - len(word.lstrip("([{<"))
                opened = word[lead_len : lead_len + 1]
                inside = start  # the quote opened in the marker's word (`ProxyCommand(' X')`)
                if not closing and opened in ("'", '"', "`"):
                    closing, inside = opened, start + lead_len + 1
                reader, proxy_next = CommandReader(bare_kept=not closing), False
                quoted = _quoted_command(text, inside, closing, "(" in word[:lead_len], reader)
            if quoted:  # `` proxy_command `X`: exit 1 ``: the command is what the quotes hold
                inner, end = quoted
                shown.append(text[start:inside] + inner)
                reader = None
            else:
                assert reader is not None
                masked, end = _proxy_word(text, start, end, reader)
                shown.append(masked)
        elif secret_next:
            value, end = _masked_value(text, start, end)
            shown.append(value)
            secret_next = after_option = False
        elif (
            bare.startswith("-") and "=" not in bare
        ):  # `--token X`, `sshpass -p X`, `-pX`: the value is secret
            password = _PASSWORD_OPTION.get(program)
            if password == "-p" and bare.startswith("-p") and len(bare) > 2:
                at = start + word.index("-p") + 2
                masked, end = _masked_value(text, at, end)
                shown.append(text[start:at] + masked)
            else:
                shown.append(word)
                secret_next = bare == password or secret_option(bare)
            after_option = True
        else:
            name_, eq, value = bare.partition("=")
            if eq and value[:1] in "'\"" and secret_name(name_):  # `--password='correct horse'`
                at = start + word.index("=") + 1
                masked, end = _masked_value(text, at, end)
                shown.append(text[start:at] + masked)
            else:
                shown.append(
                    word.replace(bare, masked_word(bare)) if bare else word
                )  # NAME=X, a URL's password
            if not (program and after_option):  # an option's value leaves its program in charge
                program = Path(bare).name if Path(bare).name in _PASSWORD_OPTION else ""
            after_option = False
        said = text[start:end]
        if reader is not None and (
            said.rstrip(")]},;.").endswith(closing)
            if closing
            else said.endswith(_COMMAND_END) or word in ("|", "&&")
        ):
            reader = None
        elif reader is None and (said.endswith(_COMMAND_END) or word in ("|", "&&")):
            program, after_option = "", False
        pos = end
    shown.append(text[pos:])
    return "".join(shown)


def _quoted_command(
    text: str, start: int, closing: str, paren: bool, reader: CommandReader
) -> tuple[str, int] | None:
    """The proxy command quoted from text[start:] up to its closing quote (`closing`, on that line: `')` first
    where it opened with `('`; else the first `closing` no word goes on from) with its words as `reader` shows
    them, and where the closing quote stands: the sentence goes on after it (`: exit 1`, `? is it up`, `...`).
    None when no closing quote is there (unclosed, the rest of the line is read as the command)."""
    if not closing:
        return None
    line_end = text.find("\n", start)
    line_end = len(text) if line_end < 0 else line_end
    close = text.find(closing + ")", start, line_end) if paren else -1
    if close < 0:
        found = re.compile(rf"{re.escape(closing)}(?![\w%])").search(text, start, line_end)
        if not found:
            return None
        close = found.start()
    inside = text[:close]  # a quoted value in it (`-p 'a b'`) ends within it too
    shown, pos = [], start
    while match := _WORD.search(inside, pos):
        shown.append(inside[pos : match.start()])
        masked, pos = _proxy_word(inside, match.start(), match.end(), reader)
        shown.append(masked)
    shown.append(inside[pos:])
    return "".join(shown), close


def _proxy_word(text: str, start: int, end: int, reader: CommandReader) -> tuple[str, int]:
    """The word of a proxy command at text[start:end] as `reader` shows it, and where it ends: a quoted value
    (`-p 'correct horse'`, `--password="a b"`) runs to its closing quote and is masked whole."""
    word = text[start:end]
    opened = word.lstrip("`([{<")[:1]
    nested = reader.pending == "ssh-o"  # `-o "ProxyCommand=X"`: X is read as a command, in its quotes
    if (reader.expects_value() or nested) and opened in ("'", '"'):
        masked, value_end = _masked_value(text, start, end)
        said = text[start:value_end]
        value = said.strip(_QUOTES)
        if MASK in value and not nested:  # masked already
            reader.show(MASK)
            return said, value_end
        known = len(reader.secrets)
        if reader.show(value) == value:
            return said, value_end
        if nested:  # each of its secrets masked where it stands, its quotes as they were
            for secret in sorted(reader.secrets[known:], key=len, reverse=True):
                said = re.sub(rf"(?<![^\s'\"=]){re.escape(secret)}(?![^\s'\"])", MASK, said)
            if not any(secret in said for secret in reader.secrets[known:]):
                return said, value_end
        return masked, value_end
    bare = word.strip(_QUOTES)
    if not bare:
        return word, end
    if MASK in bare:  # masked already
        reader.show(bare)
        return word, end
    shown = reader.show(bare)
    if shown == bare:
        return word, end
    at = word.index(bare)
    prefix = shown[: shown.index(MASK)] if MASK in shown else ""
    if prefix and bare.startswith(prefix) and bare[len(prefix) : len(prefix) + 1] in ("'", '"'):
        masked, end = _masked_value(text, start + at + len(prefix), end)  # `--password="correct horse"`
        return text[start : start + at + len(prefix)] + masked, end
    return word[:at] + shown + word[at + len(bare) :], end


def _shell_quoted(text: str, start: int) -> tuple[str, int] | None:
    """The word at `start` of `text` as a shell reads it (`'ProxyCommand=X'`, quotes and escapes and all) with the
    command after its `=` masked as proxy_text.masked_command shows it, and where it ends; None when it does not
    parse (a quote not closed on its line)."""
    line_end = text.find("\n", start)
    segment = text[start : len(text) if line_end < 0 else line_end]
    stream = io.StringIO(segment)
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split, lexer.commenters = True, ""
    try:
        token = lexer.get_token()
    except ValueError:
        return None
    stop = stream.tell()  # it read one character past the word (a space), or to the end
    while stop > 0 and segment[stop - 1].isspace():
        stop -= 1
    name, _, command = (token or "").partition("=")
    masked = masked_command(command)
    said = segment[:stop]
    return (said if masked == command else shlex.quote(f"{name}={masked}")), start + stop


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
