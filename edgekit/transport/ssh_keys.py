"""Host-key policy of the SSH transport: the target's own known_hosts file is the only trust.

An unknown key is refused unless the target opts in with `accept_new: true` (then it is recorded, and a warning
names the host, the key type, its SHA256 fingerprint and the file, as OpenSSH says "Permanently added"), and a changed
key is always refused. Emulated devices pin their key (the device's known_hosts file written by `edgekit emu up`).
Jump hosts share the device's host keys and policy, so every hop's key is checked the same way.

The file is read as OpenSSH reads it: host patterns with `*` and `?` wildcards and `!` negation match as ssh
matches them (paramiko alone matches a name only exactly or hashed, so a `*.lab.example` line was an unknown
key), `@cert-authority` lines are skipped (edgekit does no certificate
authentication), and a key on a `@revoked` line is never trusted: a server presenting it is refused right after the
key exchange, before any other check (accept_new never records it) and before authentication. The file is only
ever appended to, so its marker lines and comments are kept.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import paramiko

from edgekit.errors import HostKeyError, TargetError
from edgekit.target import Target

log = logging.getLogger(__name__)


class RecordNewKey(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]  # paramiko: no stubs here
    """accept_new: trust a first-seen key and append it to the target's known_hosts file (never rewrite the file:
    paramiko's save_host_keys would drop its comments and marker lines)."""

    def __init__(self, known_hosts: Path) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with self.known_hosts.open("a+b") as fh:
            fh.seek(0, 2)
            if fh.tell() > 0:  # a last line without its newline would be joined to ours
                fh.seek(-1, 2)
                ends_a_line = fh.read(1) == b"\n"
                fh.seek(0, 2)
                if not ends_a_line:
                    fh.write(b"\n")
            fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n".encode())
        # OpenSSH says it too ("Permanently added ..."): a first key is trusted on first use, and only the one who
        # can compare its fingerprint with the device's own knows it was the device's
        log.warning(
            "Permanently added the %s host key of %s (%s) to %s (accept_new: true); compare it with the device's "
            "own: ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub on the device",
            key_type(key),
            hostname,
            key.fingerprint,
            self.known_hosts,
            key_type(key).lower(),
        )


def key_type(key: paramiko.PKey) -> str:
    """A key's type as OpenSSH says it: ED25519, RSA, ECDSA (of ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256)."""
    return key.get_name().removeprefix("ssh-").split("-")[0].upper()


@dataclass(frozen=True)
class RevokedKey:
    """A key of a `@revoked` line: never trusted for a host its patterns match."""

    patterns: tuple[str, ...]
    key: paramiko.PKey
    line: int

    def matches(self, name: str, key: paramiko.PKey) -> bool:
        return key.asbytes() == self.key.asbytes() and _names_match(self.patterns, name)


def _names_match(patterns: tuple[str, ...], name: str) -> bool:
    """OpenSSH's host-pattern matching of a known_hosts line: `*` and `?` wildcards, `!` negation, hashed names."""
    matched = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern[1:] if negated else pattern
        if pattern.startswith("|1|"):
            try:
                hit = paramiko.HostKeys.hash_host(name, pattern) == pattern
            except (AssertionError, ValueError, IndexError):  # a hashed name that is not one (binascii.Error)
                hit = False
        else:
            wildcard = "".join(
                ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower()
            )
            hit = re.fullmatch(wildcard, name.lower()) is not None
        if hit and negated:
            return False
        matched = matched or hit
    return matched


class KnownHosts(paramiko.HostKeys):  # type: ignore[misc]  # paramiko: no stubs here
    """paramiko's HostKeys with OpenSSH's matching of a line's host patterns (wildcards, negation, hashed names),
    and OpenSSH's acceptance of any of a host's keys of one type (a host key being rotated is listed twice):
    paramiko compares the server's key with the first of that type only, so the new key read as CHANGED."""

    presented: paramiko.PKey | None = None  # the server's key, set once the key exchange has shown it

    def _hostname_matches(self, hostname: str, entry: paramiko.hostkeys.HostKeyEntry) -> bool:
        return _names_match(tuple(entry.hostnames), hostname)

    def lookup(self, hostname: str) -> _KeysOf | None:
        entries = [e for e in self._entries if e.key is not None and self._hostname_matches(hostname, e)]
        return _KeysOf(entries, self) if entries else None


class _KeysOf(Mapping[str, Any]):
    """One host's keys by type, as paramiko's lookup returns them; of several keys of a type, the one the server
    presented, if it is among them (else the first, which paramiko then reports as the changed key)."""

    def __init__(self, entries: list[Any], owner: KnownHosts) -> None:
        self.entries = entries
        self.owner = owner

    def keys(self) -> list[str]:  # type: ignore[override]  # paramiko indexes it: keys()[0]
        return list(dict.fromkeys(e.key.get_name() for e in self.entries))

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __getitem__(self, kind: str) -> Any:
        keys = [e.key for e in self.entries if e.key.get_name() == kind]
        if not keys:
            raise KeyError(kind)
        shown = self.owner.presented
        return next((k for k in keys if shown is not None and k.asbytes() == shown.asbytes()), keys[0])


# The signature algorithms a known key of a type is checked with, best first: an RSA key is recorded as
# `ssh-rsa`, which is also the name of its SHA-1 algorithm (no longer offered by current OpenSSH servers).
_ALGORITHMS_OF = {"ssh-rsa": ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")}


def host_key_algorithms(known_types: tuple[str, ...], offered: list[str] | tuple[str, ...]) -> list[str]:
    """`offered` (the transport's host-key algorithms) with every algorithm of a known key type first, in the
    order of the known types: the server then shows a key known_hosts holds (as OpenSSH orders them)."""
    first = [a for kind in known_types for a in _ALGORITHMS_OF.get(kind, (kind,)) if a in offered]
    first = list(dict.fromkeys(first))
    return first + [a for a in offered if a not in first]


class _RevocationCheckedTransport(paramiko.Transport):  # type: ignore[misc]  # paramiko: no stubs here
    """A transport that shows its client the server's key as soon as the key exchange has: a revoked key is
    refused there, before paramiko's own check. It asks first for the algorithms of the host's known key types:
    paramiko moves the first known type's name to the front, and for an RSA key that name is `ssh-rsa`, the SHA-1
    algorithm current OpenSSH no longer offers, so a host known only by its RSA key showed its ed25519 key and
    was refused as CHANGED."""

    check_key: Callable[[paramiko.PKey], None] | None = None
    known_types: tuple[str, ...] = ()

    def start_client(self, event: Any = None, timeout: float | None = None) -> None:
        if self.known_types:  # here, after paramiko's own reordering (SSHClient.connect)
            options = self.get_security_options()
            options.key_types = host_key_algorithms(self.known_types, list(options.key_types))
        super().start_client(event=event, timeout=timeout)
        if self.check_key is not None and event is None:  # SSHClient.connect: synchronous, negotiated
            try:
                self.check_key(self.get_remote_server_key())
            except HostKeyError:
                self.close()
                raise


class CheckedClient(paramiko.SSHClient):  # type: ignore[misc]  # paramiko: no stubs here
    """An SSH client trusting the keys of one known_hosts file, except those it marks `@revoked`."""

    def __init__(self, known_hosts: Path, revoked: tuple[RevokedKey, ...] = ()) -> None:
        super().__init__()
        self.known_hosts = known_hosts
        self.revoked = revoked

    def connect(
        self, hostname: str, port: int = 22, *args: Any, handshake_timeout: float | None = None, **kwargs: Any
    ) -> None:
        """paramiko's connect; `handshake_timeout` bounds the key exchange after the server's greeting (paramiko's
        own is 15 s whatever the connect's timeouts: a server that greets and then stalls failed after 15 s, or
        with a shorter connect_timeout as a port that sent no SSH banner)."""
        kwargs["transport_factory"] = partial(self._transport_for, hostname, port, handshake_timeout)
        super().connect(hostname, port, *args, **kwargs)

    def _transport_for(
        self, hostname: str, port: int, handshake_timeout: float | None, sock: Any, **options: Any
    ) -> paramiko.Transport:
        transport = _RevocationCheckedTransport(sock, **options)
        if handshake_timeout is not None:
            transport.handshake_timeout = handshake_timeout
        transport.check_key = partial(self._shown, hostname, port)
        known = self.get_host_keys().lookup(host_key_name(hostname, port))
        transport.known_types = tuple(known.keys()) if known is not None else ()
        return transport

    def _shown(self, hostname: str, port: int, key: paramiko.PKey) -> None:
        """The key exchange showed the server's key: a revoked one is refused; any other is what the host-key
        lookup prefers among a host's keys of its type (checked by paramiko right after)."""
        self.refuse_revoked(hostname, port, key)
        known = self.get_host_keys()
        if isinstance(known, KnownHosts):
            known.presented = key

    def refuse_revoked(self, hostname: str, port: int, key: paramiko.PKey) -> None:
        name = host_key_name(hostname, port)
        line = next((r.line for r in self.revoked if r.matches(name, key)), None)
        if line is not None:
            raise HostKeyError(
                f"host key of {hostname}:{port} is marked @revoked in {self.known_hosts} (line {line}): "
                f"{key.get_name()} {key.fingerprint}; refusing to connect (nothing was sent)",
                where=f"{hostname}:{port}",
                hint="a revoked key is never trusted, not even with accept_new: give the host new keys (and "
                f"record the new one), or, if the revocation is a mistake, remove line {line} of {self.known_hosts}",
            )


def known_hosts_of(target: Target) -> Path:
    """The target's known_hosts file (the only one consulted)."""
    return Path(target.known_hosts).expanduser()


def checked_client(target: Target) -> CheckedClient:
    """A client that trusts the keys in the target's known_hosts file and applies its policy to any other."""
    known_hosts = known_hosts_of(target)
    where = f"target {target.name}, field `known_hosts`"
    folder = next((p for p in known_hosts.parents if p.exists()), None)
    if (known_hosts.exists() and not known_hosts.is_file()) or (folder is not None and not folder.is_dir()):
        raise TargetError(
            f"{known_hosts} cannot be a known_hosts file: "
            + ("it is not a file" if known_hosts.exists() else f"{folder} is a file, not a folder"),
            where=where,
            hint="--set known_hosts=PATH of a file (it may not exist yet with accept_new: true)",
        )
    revoked: tuple[RevokedKey, ...] = ()
    trusted = KnownHosts()
    if known_hosts.is_file():
        try:
            revoked = read_known_hosts(known_hosts, trusted)
        except (paramiko.hostkeys.InvalidHostKey, ValueError, UnicodeDecodeError) as exc:
            line = getattr(exc, "line", "")
            raise TargetError(
                f"{known_hosts} has a malformed line" + (f" ({line[:48]}...)" if line else f": {exc}"),
                where=where,
                hint=f"remove it (ssh-keygen -R HOST -f {known_hosts}), then add the key again: "
                f"ssh-keyscan -p PORT HOST >> {known_hosts}",
            ) from None
    client = CheckedClient(known_hosts, revoked)
    client._host_keys = trusted  # what load_host_keys fills, without a file name to save back to
    client.set_missing_host_key_policy(
        RecordNewKey(known_hosts) if target.accept_new else paramiko.RejectPolicy()
    )
    return client


def read_known_hosts(path: Path, trusted: paramiko.HostKeys) -> tuple[RevokedKey, ...]:
    """Add the keys of an OpenSSH known_hosts file to `trusted` as paramiko's HostKeys.load does, and return its
    `@revoked` keys. paramiko refuses a marker line (InvalidHostKey): `@cert-authority` lines are skipped here,
    an unknown marker is a malformed line (InvalidHostKey, as any other)."""
    revoked: list[RevokedKey] = []
    with path.open() as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            marker = ""
            if line.startswith("@"):
                marker, *rest = re.split(r"[ \t]+", line, maxsplit=1)
                line = rest[0] if rest else ""
                if marker == "@cert-authority":
                    log.debug(
                        "%s line %d: @cert-authority skipped (no certificate authentication)", path, number
                    )
                    continue
                if marker != "@revoked":
                    raise paramiko.hostkeys.InvalidHostKey(
                        raw.strip(), ValueError(f"unknown marker {marker}")
                    )
            try:
                entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
            except paramiko.SSHException:  # a key paramiko cannot load: skipped, as HostKeys.load does
                continue
            if entry is None:  # too few fields or an unknown key type: skipped, as HostKeys.load does
                continue
            if marker:
                revoked.append(RevokedKey(tuple(entry.hostnames), entry.key, number))
                continue
            entry.hostnames = [h for h in entry.hostnames if not trusted.check(h, entry.key)]
            if entry.hostnames:
                trusted._entries.append(entry)  # HostKeys.load's own step (it has no public one)
    return tuple(revoked)


def hop_client(device: CheckedClient) -> CheckedClient:
    """A client for a jump host with the device client's host keys, revoked keys and policy (the same
    known_hosts)."""
    jump = CheckedClient(device.known_hosts, device.revoked)
    jump.set_missing_host_key_policy(device._policy)
    jump._host_keys = device.get_host_keys()  # the same known_hosts: every hop's key is checked
    return jump


def is_unknown_key(exc: BaseException) -> bool:
    """Whether paramiko refused the connection because the server's key is not in known_hosts."""
    return "not found in known_hosts" in str(exc)


def host_key_name(host: str, port: int) -> str:
    """The name a host's keys are filed under in known_hosts, as OpenSSH (and paramiko's lookup and
    RecordNewKey) writes it: the bare host on port 22, `[host]:port` on any other."""
    return host if port == 22 else f"[{host}]:{port}"
