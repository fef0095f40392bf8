"""Is each board there before the conversions? A TCP connect to every plain SSH board, side by side, before
`deploy` converts (seconds for tiny, minutes for a zoo model with the INT8 speed plan): a board that is off or
whose address is wrong was found only after them. One that does not answer is said at once, so the user can stop
(Ctrl-C) and fix it; its stage still connects after the conversions as always (the board may come up meanwhile,
and a night's other targets are measured either way), with its named error then. Emulated devices (started by
edgekit), lab places (acquired later) and boards behind a jump host or ProxyCommand (no direct route from here)
are not probed; nothing here is a measurement or an SSH login, only whether the port accepts a connection.
An emulated device that is not built on this machine, and whose build would download (set-up skipped or half done,
EDGEKIT_EMU_HOME pointing elsewhere), is refused here (`startable`): it would only fail after the conversions.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence

from edgekit.target import Target, TransportKind
from edgekit.target.host_names import host_name_problem, shown_host

PROBE_S = 5.0  # at most this long per board (or its connect_timeout if shorter): a silent port costs no more


def probed(target: Target) -> bool:
    """Whether a direct TCP connect says anything about this target."""
    return (
        target.transport is TransportKind.SSH
        and target.emulated is None
        and target.lab is None
        and not target.proxy_jump
        and not target.proxy_command
        and bool(target.host)
    )


def startable(targets: Sequence[Target]) -> None:
    """EmulatorError for the first emulated target whose device is not built here and would need a download to
    build (only the set-up commands download): the deploy refuses before converting, and records nothing."""
    from edgekit.emu.runner import check_startable

    for target in targets:
        if target.emulated is not None and target.lab is None:  # a lab's place is the lab's to start
            check_startable(target.emulated.device)


def unreachable(target: Target) -> str | None:
    """Why the board's SSH port does not accept a connection now ('connection refused', 'no answer in 5 s', 'no
    address for the host name ...'), or None when it does."""
    timeout = min(PROBE_S, target.connect_timeout)
    try:
        with socket.create_connection((str(target.host), target.port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        return f"no address for the host name {target.host!r} ({exc.strerror})"
    except ValueError as exc:  # UnicodeError: the idna codec refuses an empty or over-long part of the name
        problem = host_name_problem(str(target.host)) or f"{type(exc).__name__}: {exc}"
        return f"the host name {shown_host(str(target.host))} cannot be looked up: {problem}"
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer in {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def say_unreachable(targets: Sequence[Target], say: Callable[[str], None]) -> list[str]:
    """Probe the plain SSH boards side by side; say each one that does not answer. Returns their names."""
    boards = [t for t in targets if probed(t)]
    found: dict[str, str | None] = {}

    def probe(target: Target) -> None:
        try:
            found[target.name] = unreachable(target)
        except Exception as exc:  # noqa: BLE001 - a failed check is said as what it is, not as a silent board
            found[target.name] = f"the check failed: {type(exc).__name__}: {exc}"

    # daemon threads, waited for PROBE_S + 1 s at most: a host name's lookup (getaddrinfo, mDNS for a .local
    # name) has no timeout of its own, and must not hold the deploy up
    threads = [threading.Thread(target=probe, args=(t,), daemon=True, name="edgekit-reach") for t in boards]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + PROBE_S + 1.0
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    down = []
    for target in boards:
        reason = found.get(target.name, f"no answer in {PROBE_S:g} s (looking up the name or connecting)")
        if reason is not None:
            down.append(target.name)
            say(
                f"{target.name}: not reachable now ({target.host}:{target.port}: {reason}); converting first, then "
                "it is tried again: Ctrl-C to stop and check the board (is it on, sshd running, the address right?)"
            )
    return down
