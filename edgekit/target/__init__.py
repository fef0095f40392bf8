"""Targets: where a model runs. A target file (targets/NAME.yaml) says how to reach a device and what it is;
it never holds a secret (keys are referenced by path).

Precedence, lowest first: the target file < the user's ~/.ssh/config entry for `host` (HostName, User, Port,
IdentityFile, ProxyJump, ProxyCommand, UserKnownHostsFile: the user's own truth about that host beats the repo's shared template) < the environment
(`EDGEKIT_TARGET_<NAME>_<FIELD>`, NAME upper-cased with `-` as `_`, nested fields with `__`, e.g.
`EDGEKIT_TARGET_PI4_HOST=10.0.0.7`, `EDGEKIT_TARGET_PI4_EMU_EMULATED__COUNTING=true`) < command-line
`--set field=value` (`--set emulated.counting=true`). Values are read as YAML scalars (`2222`, `true`).

This module is configuration only: it never imports a transport or the emulator. An emulated target (`emulated:`
block) gets host, port, user, key, known_hosts (its pinned host key), python and work_dir from its running
device (`edgekit.emu.device.ensure_device` starts it, `running_target` reads it; environment and `--set`
overrides win over the device state too); `edgekit.transport.open_transport` connects to the result.
"""

from edgekit.target.benchmark_cap import BenchmarkCap
from edgekit.target.files import list_target_names, target_dirs, target_path
from edgekit.target.lab_spec import LabSpec
from edgekit.target.load import (
    HOST_COLUMN,
    is_inline,
    lab_stored_note,
    load_target,
    parse_inline,
    stored_name,
)
from edgekit.target.python_command import python_argv
from edgekit.target.schema import Emulated, Target, TransportKind

__all__ = [
    "HOST_COLUMN",
    "BenchmarkCap",
    "Emulated",
    "LabSpec",
    "Target",
    "TransportKind",
    "is_inline",
    "lab_stored_note",
    "list_target_names",
    "load_target",
    "parse_inline",
    "python_argv",
    "stored_name",
    "target_dirs",
    "target_path",
]
