"""The record of a running emulated device (devices/<name>/state.json), written by `emu up` and read by
the target loader: where to connect, which host key to pin, which client key to use, what to stop."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from edgekit.emu import layout


class DeviceState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    cpu: str
    host: str = "127.0.0.1"
    port: int
    user: str
    host_key: str  # "ssh-ed25519 AAAA..." (public)
    known_hosts: str  # file holding the pinned "[127.0.0.1]:PORT ssh-ed25519 ..." line
    client_key: str  # path of the private key (never its content)
    python: str  # the wrapper running the arm64 interpreter under qemu
    python_tflite_runtime: str
    work_dir: str
    sshd_pid: int  # the sshd master; also its process group and session id (started with setsid)
    sshd_config: str
    started_at: float
    home: str | None = (
        None  # the emu dir that started it (edgekit.paths.emu_dir); a copied file names another
    )


def read_state(name: str) -> DeviceState | None:
    """The recorded state of device NAME, or None when it was never started or was stopped."""
    path = layout.device_dir(name).state_file
    if not path.exists():
        return None
    return DeviceState.model_validate_json(path.read_text())


def write_state(state: DeviceState) -> Path:
    path = layout.device_dir(state.name).state_file
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.model_dump(), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def clear_state(name: str) -> None:
    layout.device_dir(name).state_file.unlink(missing_ok=True)
