"""How a device's host is written: a name or an address that can be looked up as given (and carries no shell
characters into a proxy_command's %h), the way a message shows it, a port as written, and a ProxyJump hop's
[user@]host[:port]."""

from __future__ import annotations

import ipaddress
import re

HOST_HINT = (
    "an IPv4 address is four numbers joined by single dots (192.168.1.23); a name is parts of 1 to 63 letters, "
    "digits, '-' or '_' joined by single dots (raspberrypi.local); an IPv6 address may end in %ZONE (fe80::1%eth0)"
)


def host_name_problem(host: str) -> str | None:
    """Why `host` cannot be looked up as written, or None. Python's name lookup encodes a name with the idna codec,
    which refuses an empty part between dots (`192.168.1..23`, `.local`) and a part over 63 characters with a
    UnicodeError, not "no such host": a typo was an internal error, or a traceback in deploy's reach check."""
    if len(host) > 253:
        return f"it is {len(host)} characters long (a host name has at most 253)"
    bad = sorted(set(re.sub(r"[A-Za-z0-9._-]", "", host)))
    # a proxy_command gets the host as %h, which a `sh -c '... %h'` runs: ssh 9.6's rule (CVE-2023-51385)
    if bad and not _ipv6(host):
        return f"it has {', '.join(map(repr, bad))} (a name or address is letters, digits, '.', '-', '_'; or IPv6)"
    try:
        host.encode("idna")
    except UnicodeError as exc:
        parts = (host[:-1] if host.endswith(".") else host).split(".")  # one trailing dot is the DNS root
        if any(not part for part in parts):
            return "it has an empty part between dots"
        longest = max(parts, key=len)
        if len(longest) > 63:
            return f"a part of it between dots is {len(longest)} characters long (at most 63)"
        return f"it is not a name this machine can look up ({exc.__cause__ or exc})"
    return None


def _ipv6(host: str) -> bool:
    """An IPv6 address, bare or in brackets, with a zone of letters, digits, '.', '_' or '-' where it has one (a
    link-local fe80::...%eth0 over a direct cable to a freshly flashed board; a proxy_command's %h substitution
    reads no token in it, ssh_jump)."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    address, _, zone = bare.partition("%")
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return "%" not in bare or bool(re.fullmatch(r"[A-Za-z0-9._-]+", zone))


def shown_host(host: str) -> str:
    """`host` quoted for a message, cut short when long (a 300-character name is not said in full). A value with
    ':' that is no IPv6 address is not shown at all: `pi:hunter2` typed for a host or a user name is a password."""
    if ":" in host and not _ipv6(host):
        return "a value with ':' (not shown: a password?)"
    return repr(host) if len(host) <= 80 else repr(host[:60]) + f"... ({len(host)} characters)"


USER_HINT = (
    "a user name is letters, digits, '.', '_' or '-' (not first): the login on the device, e.g. user: pi; edgekit "
    "takes no passwords (use a key, or ssh-agent)"
)


def user_name_problem(user: str) -> str | None:
    """Why `user` is not a login name, or None. A proxy_command gets it as %r, which a `sh -c '... %r'` runs; a
    value with ':' or '@' (`pi:hunter2`, a password) is never repeated."""
    if re.fullmatch(r"[A-Za-z0-9._][A-Za-z0-9._-]*", user):
        return None
    # `pi:hunter2`, or the `pi@hunter2` of a hop `pi@hunter2@bastion`: not repeated
    mark = next((m for m in ":@" if m in user), None)
    shown = shown_host(user) if mark is None else f"a value with {mark!r} (not shown: a password?)"
    bad = sorted(set(re.sub(r"[A-Za-z0-9._-]", "", user)))
    return f"{shown} is not a user name: " + (
        f"it has {', '.join(map(repr, bad))}" if bad else "it starts with '-'"
    )


PORT_HINT = (
    "a port is a number from 1 to 65535; a jump host is [user@]host[:port] (port 22 if not given), "
    "e.g. proxy_jump: pi@bastion:2222"
)


def port_problem(port: str) -> str | None:
    """Why `port` (as written in a hop or ~/.ssh/config) is not a TCP port, or None. ASCII digits only:
    str.isdigit() holds for '²' too, which int() refuses."""
    shown = repr(port) if len(port) <= 12 else f"({len(port)} characters)"
    if not port:
        return "the port after ':' is empty"
    if not re.fullmatch(r"[0-9]+", port):
        return f"the port {shown} is not a number"
    if not 1 <= int(port) <= 65535:
        return f"the port {shown} is not between 1 and 65535"
    return None


def parse_hop(hop: str) -> tuple[str | None, str, int]:
    """(user, host, port) of one ProxyJump hop, `[user@]host[:port]` as `ssh -J` reads it (an IPv6 address in
    brackets, `[::1]:2222`; port 22 if not given). A port that is no port (`bastion:2222x`, `bastion:99999`,
    `[::1]x`) is a ValueError saying why: it was port 22 without a word, or left to be blamed on the network."""
    user, _, rest = hop.strip().rpartition("@")
    port: str | None = None
    if rest.startswith("[") and "]" in rest:  # the brackets are ssh's syntax, not the address
        host, _, tail = rest[1:].partition("]")
        if tail and not tail.startswith(":"):
            raise ValueError(f"jump host {shown_host(host)}: {tail[:12]!r} after ']' is not ':PORT'")
        port = tail[1:] if tail else None
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host = rest  # a bare IPv6 address (ssh -J reads no port in it)
    problem = None if port is None else port_problem(port)
    if problem is not None:
        raise ValueError(f"jump host {shown_host(host)}: {problem}")
    return user or None, host, 22 if port is None else int(port)
