"""A proxy command as errors and hints may show it. It often carries a secret (a tunnel's token, `sshpass -p`, an
`--access-key X`, a bare key), and what edgekit says of a failed connection goes to the console, the results JSON,
the store and the report: errors name its program alone, hints show what an allow-list keeps (the program, %h %p
%r %%, numbers, host names and addresses, option names, paths that exist, ssh's own words, where a relay such as
nc or corkscrew is told to connect) and *** for every other argument, and for every value of an option named as a
secret; what it printed is shown with its arguments and each masked value masked (a tool that fails often
repeats its password alone). Stored text (store/masked.py) masks a proxy command it quotes by the same reader."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

MASK = "***"
# an option or NAME=VALUE whose name says it holds a secret: its value is masked, in a proxy command before any
# rule of CommandReader's allow-list (`--token 123456789012`: a secret may be all digits), in other text alike
# (`--service-token-secret X`, `--password=X`, `TOKEN=X`, `--auth X`, `PROXY_AUTH=X`, PuTTY's `-pw X`,
# `--access-key X`, `--authkey X`, `--pat X`, `--pin 4821`, `--otp X`; not `--author`, `--key PATH`)
_SECRET_NAME = re.compile(
    r"token|secret|passw|passphrase|pwd|(?:api|access|auth|session|private)[-_]?key|credential|bearer|(?:^|[-_])auth$"
    r"|^pw$|^pat$|proxyauth|(?:^|[-_])(?:pin|otp|totp|passcode)$",
    re.I,
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s]+)@")
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


# what a proxy command's argument may show (an allow-list: anything else is ***): %h %p %r %% and numbers
# (`%h:%p`, `%r@%h`, `2222`, `10.0.0.5`, `[%h]:%p`), edgekit's `...`
_PLAIN = re.compile(r"(?:%+[hpr]|%%|[\d:.@,\[\]])+$")  # `%%h`: a nested ProxyCommand's %h
# a host name with a port after it or without (`ssh.example.com`, `proxy.corp:3128`): a lowercase DNS name of two
# labels and more, the last one letters only (a token with dots, `eyJhbGci.eyJzdWIi.Sfl`, is none)
_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_NAME = re.compile(rf"(?:{_DNS_LABEL}\.)+[a-z]{{2,24}}\.?(?::(?:\d+|%p))?$")
# programs that relay the connection, whose arguments say where to (a proxy's host and port, its protocol): no
# secret but in an option named as one (`ncat --proxy-auth X`, socat's `proxyauth=X`)
_RELAYS = {
    "nc",
    "ncat",
    "netcat",
    "nc.openbsd",
    "nc.traditional",
    "corkscrew",
    "connect-proxy",
    "connect",
    "socat",
    "proxytunnel",
}
# a piece of a relay's address between its `:` and `,` (`proxy`, `PROXY`, `3128`, `%h`)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_RELAY_PIECE = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*\.?|%+[hpr]|%%|\d+)?$")
_LONG_NAME = re.compile(r"--[A-Za-z0-9][\w.-]*$")
# a short option's name: `-k`, `-4`, or a word of a few lowercase letters (PuTTY's `-pw`, `-batch`); `-kX...` is
# `-k` and a value
_SHORT_NAME = re.compile(r"-(?:[A-Za-z0-9]|[a-z]{2,5})$")
_ASSIGNED = re.compile(r"([A-Za-z_]\w*)=([^=].*)$", re.DOTALL)
# words a program names what it does by, right after it (`cloudflared access ssh --hostname %h`)
_SUBCOMMANDS = {
    "cloudflared": ("access", "ssh", "tcp"),
    "tailscale": ("nc",),
    "gcloud": ("compute", "ssh", "start-iap-tunnel"),
    "aws": ("ssm", "start-session"),
}
# ssh's options that take a value (its values are no secrets: ports, hosts, paths, forwardings), `-o`'s aside
_SSH_VALUE = set("BbcDEeFIiJLlmOoPpQRSWw")
# PuTTY plink's: `-pw`'s value is a password, `-proxycmd`'s a command
_PLINK_VALUE = {
    "-P",
    "-l",
    "-i",
    "-L",
    "-R",
    "-D",
    "-m",
    "-nc",
    "-load",
    "-hostkey",
    "-sercfg",
    "-pwfile",
    "-J",
}


def _existing_path(word: str) -> bool:
    if "/" not in word and not word.startswith("~"):
        return False  # a bare word that names a file of the current folder may still be a secret
    try:
        return Path(word).expanduser().exists()
    except (OSError, ValueError, RuntimeError):
        return False


class CommandReader:
    """Reads a proxy command's words in turn and says how each is shown: the program, %h %p %r %%, numbers,
    host names (`proxy.example.com:3128`), option names and paths that exist are kept, the value of an option or
    NAME named as a secret never (`--token 123456789012`), every other argument (an option's value, `--opt=X`'s X, a bare
    word) is ***. The words of programs whose arguments are known to hold no secret are kept as well: ssh's
    options' values and destination (`ssh -W %h:%p jump`), the command `sshpass` runs. `bare_kept`: a bare word
    is kept (a sentence quoting a command: its words cannot be told from the sentence's)."""

    def __init__(self, *, bare_kept: bool = False) -> None:
        self.bare_kept = bare_kept
        self.secrets: list[str] = []
        self._start("")

    def _start(self, program: str) -> None:
        self.program = Path(program).name
        self.pending = ""  # what the next word is: "secret", "value", "keep", "ssh-o", "command"
        self.options_done = False
        self.subcommand = True  # no bare word but a subcommand yet

    def expects_value(self) -> bool:
        """Whether the next word is an option's value that may be masked."""
        return self.pending in ("secret", "value", "command")

    def show(self, word: str) -> str:
        """How `word`, the next word of the command, is shown."""
        if not self.program:  # the program's place; `NAME=X` before it is a shell's form (a secret, often)
            assigned = _ASSIGNED.match(word)
            if assigned:
                return self._assigned(assigned)
            self._start(word)
            return word
        pending, self.pending = self.pending, ""
        if pending == "secret":
            return self._mask(word)
        if pending == "keep":
            return word
        if pending == "ssh-o":
            return self._ssh_option(word)
        if pending == "command":
            return self._command(word)
        if pending == "value" and not (word.startswith("-") and len(word) > 1):
            return self._allowed(word)
        if self.program == "sshpass":
            return self._sshpass(word)
        if self.program == "ssh":
            return self._ssh(word)
        if self.program in ("plink", "plink.exe"):
            return self._plink(word)
        return self._generic(word)

    def _mask(self, word: str) -> str:
        if word and word != MASK:
            self.secrets += [word, *(m.group(2) for m in _URL_PASSWORD.finditer(word))]
        return MASK

    def _allowed(self, word: str) -> str:
        if _PLAIN.match(word) or _HOST_NAME.match(word) or _existing_path(word):
            return word
        relayed = self._relay(word) if self.program in _RELAYS else None
        return self._mask(word) if relayed is None else relayed

    def _relay(self, word: str) -> str | None:
        """A relay's argument as shown when it says where to connect (`proxy:8080`, `connect`, socat's `-` and
        `PROXY:proxy:%h:%p,proxyport=3128`, its options named as secrets masked: `proxyauth=X`), else None."""
        if word == "-":
            return word
        shown = []
        for at, part in enumerate(word.split(",")):
            name, eq, value = part.partition("=")
            if at and eq and secret_name(name):
                shown.append(f"{name}={MASK}")
            elif all(_RELAY_PIECE.match(piece) for piece in (value if at and eq else part).split(":")):
                shown.append(part)
            else:
                return None
        for at, part in enumerate(word.split(",")):
            name, eq, value = part.partition("=")
            if at and eq and secret_name(name):
                self._mask(value)
        return ",".join(shown)

    def _assigned(self, assigned: re.Match[str]) -> str:
        """`NAME=X`: X masked whatever it looks like when NAME is named as a secret (`TOKEN=987654321`)."""
        name, value = assigned.groups()
        return f"{name}={self._mask(value) if secret_name(name) else self._allowed(value)}"

    def _command(self, command: str) -> str:
        reader = CommandReader()
        words = _words(command)
        shown = [reader.show(w) for w in words]
        self.secrets += reader.secrets
        return command if shown == words else shlex.join(shown)

    def _option(self, word: str) -> str | None:
        """`word` as shown when it is an option (`--name`, `--name=X`, `-k`, `-kX`), else None."""
        if self.options_done or not word.startswith("-") or len(word) < 2:
            return None
        if word == "--":
            self.options_done = True
            return word
        name, eq, value = word.partition("=")
        if word.startswith("--"):
            if not _LONG_NAME.match(name):
                return self._mask(word)
            if eq:  # `--password=20240517`: a secret's value is masked, numbers and all
                return f"{name}={self._mask(value) if secret_name(name) else self._allowed(value)}"
            self.pending = "secret" if secret_option(word) else "value"
            return word
        if _SHORT_NAME.match(word):
            self.pending = "secret" if secret_option(word) else "value"
            return word
        return word[:2] + self._allowed(word[2:]) if word[1].isalnum() else self._mask(word)

    def _generic(self, word: str) -> str:
        option = self._option(word)
        if option is not None:
            return option
        if self.subcommand and word in _SUBCOMMANDS.get(self.program, ()):
            return word
        self.subcommand = False
        if self.bare_kept:
            return _masked_word(word)[0]
        assigned = _ASSIGNED.match(word)
        if assigned:
            return self._assigned(assigned)
        return self._allowed(word)

    def _sshpass(self, word: str) -> str:
        """sshpass's options (`-p X`: a password; `-f FILE`, `-d N`, `-P PROMPT`), then the command it runs."""
        if word.startswith("-") and len(word) > 1:
            if word == "-p":
                self.pending = "secret"
            elif word.startswith("-p"):
                return "-p" + self._mask(word[2:])
            elif word in ("-f", "-d", "-P"):
                self.pending = "value"
            elif word[:2] in ("-f", "-d", "-P"):
                return word[:2] + self._allowed(word[2:])
            return word
        self._start(word)
        return word

    def _ssh(self, word: str) -> str:
        """ssh's options and their values, its destination, then the command it runs there (its own words)."""
        if not self.options_done and word.startswith("-") and len(word) > 1:
            if word == "--":
                self.options_done = True
                return word
            for at, letter in enumerate(word[1:], start=2):
                if letter in _SSH_VALUE:
                    rest = word[at:]
                    if not rest:
                        self.pending = "ssh-o" if letter == "o" else "keep"
                        return word
                    return word[:at] + (self._ssh_option(rest) if letter == "o" else rest)
            return word
        self._start("")  # the destination; the next word is the program it runs there
        return word

    def _ssh_option(self, option: str) -> str:
        """`-o Name=value`: the value of a command (ProxyCommand=...) masked as a command, of SetEnv masked."""
        parts = re.match(r"(\w+)(\s*=\s*|\s+)(.*)$", option, re.DOTALL)
        if not parts:
            return option
        name, sep, value = parts.groups()
        if name.lower().endswith("command"):
            return f"{name}{sep}{self._command(value)}"
        if name.lower() == "setenv":
            return f"{name}{sep}{self._mask(value)}"
        return option

    def _plink(self, word: str) -> str:
        """PuTTY plink's options (`-pw X`: a password), its destination, then the command it runs there."""
        if word.startswith("-") and len(word) > 1:
            self.pending = (
                "secret"
                if word == "-pw"
                else "command"
                if word == "-proxycmd"
                else "keep"
                if word in _PLINK_VALUE
                else ""
            )
            return word
        self._start("")  # the destination; the next word is the program it runs there
        return word


def _shown(words: list[str]) -> tuple[list[str], list[str]]:
    """The words with what is not known to be no secret shown as ***, and the values masked."""
    reader = CommandReader()
    return [reader.show(word) for word in words], reader.secrets


def masked_command(command: str) -> str:
    """`command` as a hint, an error or a report shows it: the program, %h %p %r %%, numbers, host names, option
    names and paths that exist kept (where a relay connects: `nc -X connect -x proxy:8080 %h %p`) (and ssh's own words: `ssh -W %h:%p jump`), every other argument shown as *** (`--key
    X`, `--key=X`, `-kX`, `TOKEN=X`, a bare word); the command itself when nothing is masked (still runnable as
    printed)."""
    words = _words(command)
    shown = _shown(words)[0]
    return command if shown == words else shlex.join(shown)


def secrets_of(command: str) -> list[str]:
    """The secret values `masked_command` masks in `command` (longest first), each as the command gives it."""
    return sorted({s for s in _shown(_words(command))[1] if s and s != MASK}, key=len, reverse=True)


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
