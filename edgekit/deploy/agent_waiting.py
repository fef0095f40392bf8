"""The agent's WAITING lines, said on the live line: another benchmark holds the device's lock, and the agent waits
for it (up to the request's lock_timeout_s) instead of measuring. Without them a wait of minutes looked like a hang
after 'agent measuring ...'. The agent streams one at once and one every contract.WAITING_EVERY_S."""

from __future__ import annotations

from collections.abc import Callable

from edgekit.agent.contract import STREAM_WAITING
from edgekit.deploy.agent_result import line_json
from edgekit.target import Target
from edgekit.terminal import one_line

LINE = f"EDGEKIT_{STREAM_WAITING} "
LIMIT = 4096  # characters: a WAITING line is short; a longer unfinished line is none of them


def waiting_lines(
    target: Target, say: Callable[[str], None], then: Callable[[str], None]
) -> Callable[[str], None]:
    """A reader of the agent's stdout as it arrives that says each WAITING line, handing every piece on to `then`
    (the measurements' reader)."""
    pending = [""]

    def feed(text: str) -> None:
        then(text)
        *lines, pending[0] = (pending[0] + text).split("\n")
        pending[0] = pending[0][:LIMIT]  # a flood without a newline (a measurement's line): none of them
        for line in lines:
            if line.startswith(LINE):
                said = waiting_text(target.name, line[len(LINE) :])
                if said:
                    say(said)

    return feed


def waiting_text(name: str, body: str) -> str | None:
    """'pi4-emu: waiting: another benchmark holds the device (pid N since T); waited 30 s of 600 s'."""
    try:
        event = line_json(body)  # nesting past pydantic's limit: a ValueError, not a RecursionError
        holder = one_line(str(event.get("holder") or "unknown"))[:200]  # another process's text: one line
        waited, limit = float(event.get("waited_s") or 0), float(event.get("lock_timeout_s") or 0)
    except (ValueError, TypeError, AttributeError):
        return None
    return (
        f"{name}: waiting: another benchmark holds the device ({holder}); waited {waited:.0f} s of {limit:.0f} s "
        "(lock_timeout_s), then it gives up"
    )
