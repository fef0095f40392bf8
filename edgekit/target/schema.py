"""A target's fields (pydantic): how to reach a device, what it is, and the `emulated:` block (the `benchmark_cap:`
block is benchmark_cap.py, the `lab:` block lab_spec.py; how a host name or address is written, host_names.py; a
python command line, python_command.py; the runtimes a target may name, runtime_names.py). Validation only: reading
files and applying overrides is load.py."""

from __future__ import annotations

import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from edgekit.target.benchmark_cap import BenchmarkCap
from edgekit.target.host_names import (
    HOST_HINT,
    PORT_HINT,
    USER_HINT,
    host_name_problem,
    parse_hop,
    shown_host,
    user_name_problem,
)
from edgekit.target.lab_spec import LabSpec
from edgekit.target.python_command import python_error, python_problem
from edgekit.target.runtime_names import closest_runtime, runtime_modules


class TransportKind(str, Enum):
    SSH = "ssh"
    LOCAL = "local"


class Emulated(BaseModel):
    """An emulated device: which `edgekit emu` device backs it and the qemu CPU model it runs (stated, not chosen:
    edgekit.emu.device checks it against the device's, as edgekit.target may not import edgekit.emu)."""

    model_config = ConfigDict(extra="forbid")

    device: str
    cpu: str
    counting: bool = (
        True  # the plugin-capable qemu: instruction counts, the basis of board estimates (emu/README.md)
    )
    caches: bool = True  # while counting, simulate the board's data caches: miss features, a tighter estimate


# the fields only an SSH link reads: refused on a local target, which would ignore them
SSH_ONLY = (
    "host",
    "port",
    "user",
    "key",
    "known_hosts",
    "accept_new",
    "proxy_jump",
    "proxy_command",
    "connect_timeout",
    "io_timeout",
)

TARGET_NAME = (
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"  # a target's name (store/imported.py checks imports with it)
)


class Target(BaseModel):
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False
    )  # an infinite timeout is a hang, not a value

    name: str = Field(pattern=f"^{TARGET_NAME}$")  # names folders (runs/, locks): no '..', '/'
    description: str = ""
    transport: TransportKind = TransportKind.SSH
    host: str | None = None
    port: int = Field(22, ge=1, le=65535)
    user: str | None = None
    key: Path | None = None  # private key file (path only)
    known_hosts: Path = Path("~/.ssh/known_hosts")
    accept_new: bool = (
        False  # trust (and record) a host key never seen before; a changed key is never accepted
    )
    proxy_jump: str | None = None  # "[user@]host[:port][,...]" as `ssh -J`: a bastion (or a chain) in front
    proxy_command: str | None = None  # as ssh's ProxyCommand (%h %p %r): its stdin/stdout is the connection
    # under a second is no timeout a link can keep (a keepalive's round trip alone can take longer): refused
    # as bad input, not found later as a device that "did not answer"
    connect_timeout: float = Field(10.0, ge=1, le=3600)
    io_timeout: float = Field(
        20.0, ge=1, le=86400
    )  # a device silent this long on one operation is frozen (DeviceTimeout)
    work_dir: str = "~/edgekit"
    python: str = "python3"
    runtime_python: dict[str, str] = Field(
        default_factory=dict
    )  # runtime -> python command, where it differs
    runtimes: list[str] = Field(default_factory=lambda: ["ai_edge_litert", "ncnn"])
    expected_cpu: str | None = None  # for reports, e.g. "Cortex-A72"
    # the cores the agent pins itself to: big / little (by per-core max frequency), all, or a list such as "4-7"
    affinity: str | None = Field(None, pattern=r"^(big|little|all|\d+(-\d+)?(,\d+(-\d+)?)*)$")
    emulated: Emulated | None = None
    benchmark_cap: BenchmarkCap | None = None
    lab: LabSpec | None = None  # a place of a labgrid lab, acquired for the run (edgekit/lab, docs/lab.md)

    _source: str | None = PrivateAttr(default=None)
    _given: str | None = PrivateAttr(
        default=None
    )  # as the command line named it: a name, a path, lab:TAG=VALUE
    _overrides: dict[str, Any] = PrivateAttr(default_factory=dict)  # environment and --set: they always win
    _lease: Any = PrivateAttr(default=None)  # edgekit.lab.lease.Lease of an acquired lab place
    _place: Any = PrivateAttr(default=None)  # edgekit.lab.place.Place it acquired

    @field_validator(*SSH_ONLY)
    @classmethod
    def _ssh_only(cls, value: object, info: ValidationInfo) -> object:
        """A `transport: local` target with `host: 1.2.3.4` measured this machine under that target's name: the
        SSH fields were ignored without a word. Refused, each named (the fields before them are validated first:
        `transport` is one)."""
        if info.data.get("transport") is TransportKind.LOCAL and value is not None:
            raise PydanticCustomError(
                "ssh_only",
                "{message}",
                {
                    "message": "SSH only: a local target (transport: local) is this machine, never connected to",
                    "hint": f"a local target takes none of {', '.join(SSH_ONLY)}: remove them, or make it "
                    "`transport: ssh` to reach a device (a --set applies to every --target of a command)",
                },
            )
        return value

    @field_validator("host", "user")
    @classmethod
    def _host_or_user(cls, value: str | None) -> str | None:
        """A name or address: `--set host=` (empty) failed later as "device not running"; spaces, control
        characters or a leading '-' are never part of one."""
        if value is None:
            return None
        if not value or value.startswith("-") or any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError(f"{shown_host(value)} is not a host name, address or user name")
        if (
            "@" in value or "/" in value
        ):  # 'pi:password@host' would carry a password into every log and report
            raise ValueError(
                "a host name, address or user name has no '@' or '/': give the user in `user:`, the key in `key:`; "
                "edgekit takes no passwords (use a key, or ssh-agent)"
            )
        return value

    @field_validator("user")
    @classmethod
    def _user_name(cls, value: str | None) -> str | None:
        """A login name (`-` not first): a proxy_command gets it as %r, which a `sh -c '... %r'` runs."""
        problem = None if value is None else user_name_problem(value)
        if problem is not None:
            raise PydanticCustomError("user_name", "{message}", {"message": problem, "hint": USER_HINT})
        return value

    @field_validator("host")
    @classmethod
    def _host_looks_up(cls, value: str | None) -> str | None:
        """A name the system cannot look up as written (an empty or over-long part) is bad input here, exit 2."""
        problem = None if value is None else host_name_problem(value)
        if problem is None:
            return value
        raise PydanticCustomError(
            "host_name",
            "{message}",
            {
                "message": f"{shown_host(value or '')} is not a host name or address: {problem}",
                "hint": HOST_HINT,
            },
        )

    @field_validator("proxy_jump")
    @classmethod
    def _hops_look_up(cls, value: str | None) -> str | None:
        """Each jump host is looked up like `host`, its port is a port like `port` (`bastion:2222x` was port 22),
        and its user is a login name like `user` (`pi:hunter2@bastion` sent the password as the user name to the
        jump host): the same checks, naming the hop."""
        for hop in (value or "").split(","):
            try:
                user, host = parse_hop(hop)[:2] if hop.strip() else (None, "")
            except ValueError as exc:
                raise PydanticCustomError(
                    "port", "{message}", {"message": str(exc), "hint": PORT_HINT}
                ) from None
            problem = None if user is None else user_name_problem(user)
            if problem is not None:
                raise PydanticCustomError(
                    "user_name",
                    "{message}",
                    {
                        "message": f"a jump host's user: {problem}",
                        "hint": f"proxy_jump is [user@]host[:port],...: {USER_HINT}",
                    },
                )
            problem = host_name_problem(host) if host else None
            if problem is not None:
                raise PydanticCustomError(
                    "host_name",
                    "{message}",
                    {
                        "message": f"jump host {shown_host(host)} is not a host name or address: {problem}",
                        "hint": HOST_HINT,
                    },
                )
        return value

    @field_validator("proxy_command")
    @classmethod
    def _proxy_command_splits(cls, value: str | None) -> str | None:
        """Run as paramiko runs it (split as a shell would, no shell): an unclosed quote was an internal error at
        connect. The value is never repeated in the message: a proxy command often holds a token."""
        if value is None:
            return None
        try:
            words = shlex.split(value)
        except ValueError as exc:
            raise ValueError(
                f"not a command edgekit can run: {exc} (the command is not shown: it may hold a secret)"
            ) from None
        if not words:
            raise ValueError("an empty command: remove `proxy_command` to connect directly")
        return value

    @field_validator("work_dir", mode="before")
    @classmethod
    def _work_dir_given(cls, value: object) -> object:
        """An empty `--set work_dir=` was taken: every file went straight into the login's home (the relative
        paths of a run are the work dir's), and the leftovers pruned there. A blank one (`work_dir:` in a file,
        `--set 'work_dir=  '`) reads as nothing and is refused the same way."""
        if value is None or (isinstance(value, str) and not value.strip()):
            raise PydanticCustomError(
                "work_dir",
                "{message}",
                {
                    "message": f"an empty folder ({value or ''!r}): give the folder on the device edgekit works in",
                    "hint": "e.g. work_dir: ~/edgekit (the default; a relative path is in the login's home), or a "
                    "folder on a larger disk: --set work_dir=/mnt/ssd/edgekit",
                },
            )
        return value

    @field_validator("python")
    @classmethod
    def _python_splits(cls, value: str) -> str:
        """Run as python_argv runs it (split as a shell would): an unclosed quote was an internal error after an
        emulated device had been started and connected."""
        problem = python_problem(value)
        if problem:
            raise python_error(problem)
        return value

    @field_validator("runtime_python")
    @classmethod
    def _runtime_pythons_split(cls, value: dict[str, str]) -> dict[str, str]:
        """Keys are runtimes as `runtimes:` lists them: a misspelt one (`ncnnn`) was taken and never used."""
        cls._runtimes_known(list(value))
        for runtime, python in value.items():
            problem = python_problem(python)
            if problem:
                raise python_error(f"{runtime}: {problem}")
        return value

    @field_validator("runtimes")
    @classmethod
    def _runtimes_known(cls, value: list[str]) -> list[str]:
        """A misspelt runtime (`ncnnn`) was taken: `targets check` passed, and `targets setup` on a board dropped
        it silently. Each entry must be a runtime module edgekit knows; the hint lists them."""
        known = runtime_modules()
        unknown = [r for r in value if r not in known]
        if not unknown:
            return value
        said = []
        for name in unknown:
            closest = closest_runtime(name)
            said.append(f"{name!r}" + (f" (did you mean {closest}?)" if closest else ""))
        raise PydanticCustomError(
            "unknown_runtime",
            "{message}",
            {
                "message": f"unknown runtime{'s' if len(said) > 1 else ''} {', '.join(said)}",
                "hint": f"runtimes: lists Python modules: {', '.join(known)}",
            },
        )

    @field_validator("affinity", mode="before")
    @classmethod
    def _affinity_as_text(cls, value: object) -> object:
        """`affinity: 0` (one core) reads as a number in YAML and --set: it means the cpu list "0"."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("affinity")
    @classmethod
    def _affinity_cpus_exist(cls, value: str | None) -> str | None:
        """A cpu list names cpus below 4096: `0-999999999999` passed, and the agent built the whole list
        (gigabytes) before pinning. Each range runs upward."""
        from edgekit.agent.agent import MAX_CPU

        for part in (value or "").split(","):
            low, _, high = part.partition("-")
            if not low.isdigit():
                continue  # big, little, all
            if int(high or low) > MAX_CPU or int(low) > int(high or low):
                raise PydanticCustomError(
                    "affinity",
                    "{message}",
                    {
                        "message": f"{part!r} is not a cpu or a range of cpus, low-high, from 0 to {MAX_CPU}",
                        "hint": "affinity: big, little, all, or cpu numbers as the board counts them: 4-7 or 0,2",
                    },
                )
        return value

    @property
    def source(self) -> str | None:
        """The file this target was loaded from."""
        return self._source

    @property
    def given_as(self) -> str:
        """This target as a command to paste names it: as it was given (a name, a file's path, `lab:TAG=VALUE`),
        else its name. A target given as a path has a name no lookup finds (`targets check mypi` of t/good.yaml
        said "unknown target")."""
        return self._given or self.name

    @property
    def is_this_host(self) -> bool:
        """A plain local target (edgekit's own python, no emulator, lab, pinning or override of its own): the
        machine every deploy measures and stores as `host`. A local target with a python of its own (another
        interpreter, a wrapper) is a target of its own."""
        return (
            self.transport is TransportKind.LOCAL
            and self.python == sys.executable
            and not self.runtime_python
            and self.affinity is None
            and self.emulated is None
            and self.lab is None
            and not self._overrides
        )

    @property
    def jump_hops(self) -> list[tuple[str | None, str, int]]:
        """(user, host, port) of each ProxyJump hop, in order (`[user@]host[:port]` as `ssh -J` reads it, an IPv6
        address in brackets, `[::1]:2222`; port 22 if not given)."""
        return [parse_hop(hop) for hop in (self.proxy_jump or "").split(",") if hop.strip()]

    @property
    def kind(self) -> str:
        if self.lab is not None:
            return "labgrid"
        return "emulated" if self.emulated else self.transport.value

    def python_for(self, runtime: str) -> str:
        """The python command that has `runtime` (e.g. tflite_runtime lives in its own site dir)."""
        return self.runtime_python.get(runtime, self.python)
