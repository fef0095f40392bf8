"""The record of a running emulated device (devices/<name>/state.json), written by `emu up` and read by
the target loader: where to connect, which host key to pin, which client key to use, what to stop."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from edgekit.emu import layout


class DeviceState(BaseModel):
    # a field another edgekit version writes is ignored: what this one needs is still checked (owned, the pid)
    model_config = ConfigDict(extra="ignore")

    name: str
    cpu: str
    host: str = "127.0.0.1"
    port: int
    user: str
    host_key: str  # "ssh-ed25519 AAAA..." (public)
    known_hosts: str  # file holding the pinned "[127.0.0.1]:PORT ssh-ed25519 ..." line
    client_key: str  # path of the private key (never its content)
    python: str  # the wrapper running the arm64 interpreter under qemu, as a command line (path shell-quoted)
    python_tflite_runtime: str
    work_dir: str
    sshd_pid: int  # the sshd master; also its process group and session id (started with setsid)
    sshd_config: str
    started_at: float
    home: str | None = (
        None  # the emu dir that started it (edgekit.paths.emu_dir); a copied file names another
    )


_warned: set[str] = set()


def load_state(name: str) -> tuple[DeviceState | None, str | None]:
    """(the recorded state of device NAME, None), (None, None) when there is none, or (None, why) when its file
    cannot be read: truncated by a full disk or a crash, not JSON, a field missing or of another type."""
    path = layout.device_dir(name).state_file
    try:
        return DeviceState.model_validate_json(path.read_bytes()), None
    except FileNotFoundError:
        return None, None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return None, f"{where}: {first['msg']}" if where else str(first["msg"])
    except (OSError, ValueError) as exc:
        return None, str(exc)


def read_state(name: str, warn: Callable[[str], None] | None = None) -> DeviceState | None:
    """The recorded state of device NAME, or None when it was never started or was stopped. A state file that
    cannot be read is treated as stale: None, with a warning naming the file (through `warn`; by default on
    stderr, once per file and reason)."""
    state, why = load_state(name)
    if why is not None:
        message = f"{stale_message(name, why)}; `edgekit emu down {name}` removes it and stops what is left of the device"
        if warn is not None:
            warn(message)
        elif message not in _warned:
            _warned.add(message)
            print(f"edgekit: warning: {message}", file=sys.stderr, flush=True)
    return state


def stale_message(name: str, why: str) -> str:
    """The warning for a state file that cannot be read."""
    path = layout.device_dir(name).state_file
    return (
        f"{name}: its state file {path} cannot be read ({why}): treated as stale (the device as not running)"
    )


def write_state(state: DeviceState) -> Path:
    path = layout.device_dir(state.name).state_file
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.model_dump(), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def clear_state(name: str) -> None:
    layout.device_dir(name).state_file.unlink(missing_ok=True)
