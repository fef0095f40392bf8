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

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from edgekit.errors import TargetError
from edgekit.paths import SHIPPED_TARGETS
from edgekit.schema_paths import locate

TARGETS_DIR = SHIPPED_TARGETS  # package data: also there in a non-editable install

# The `lab:` block (docs/lab.md): what a lab target asks the labgrid coordinator for. Also read from
# `lab:TAG=VALUE[:TAG=VALUE]`, which takes every other field from the target file named `lab`, if any.
DEFAULT_COORDINATOR = "127.0.0.1:20408"  # labgrid's own default
INLINE_PREFIX = "lab:"
_TAG_KEY = re.compile(r"^[a-z][a-z0-9_]+$")  # labgrid's TAG_KEY
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_.-]+$")


class LabSpec(BaseModel):
    """A place to acquire: by name, or any free place carrying every tag."""

    model_config = ConfigDict(extra="forbid")

    coordinator: str | None = None  # HOST[:PORT]; default $LG_COORDINATOR, else 127.0.0.1:20408
    tags: dict[str, str] = Field(default_factory=dict)
    place: str | None = None
    wait_s: float = Field(600.0, ge=0)  # how long to wait for a free place before LabWaitTimeout

    def address(self) -> str:
        return self.coordinator or os.environ.get("LG_COORDINATOR") or DEFAULT_COORDINATOR

    def wanted(self) -> str:
        """`board=pi4` or `place pi4-03`, as a user reads it."""
        parts = ([f"place {self.place}"] if self.place else []) + [f"{k}={v}" for k, v in self.tags.items()]
        return " ".join(parts) or "any place"


class TransportKind(str, Enum):
    SSH = "ssh"
    LOCAL = "local"


class Emulated(BaseModel):
    """An emulated device: which `edgekit emu` device backs it and the qemu CPU model it runs."""

    model_config = ConfigDict(extra="forbid")

    device: str
    cpu: str
    counting: bool = (
        True  # the plugin-capable qemu: instruction counts, the basis of board estimates (emu/README.md)
    )
    caches: bool = True  # while counting, simulate the board's data caches: miss features, a tighter estimate


class BenchmarkCap(BaseModel):
    """Upper bounds a target puts on a recipe's benchmark settings (command-line flags still win).

    Emulated devices run about 600x slower than the board, and their wall times are not device latency
    anyway: a recipe's full timing plan (say repeat 20 at 1 and 4 threads on 50 images) would take hours.
    """

    model_config = ConfigDict(extra="forbid")

    threads: tuple[int, ...] | None = None
    repeat: int | None = Field(None, gt=0)
    warmup: int | None = Field(None, ge=0)
    samples: int | None = Field(None, gt=0)


class Target(BaseModel):
    model_config = ConfigDict(
        extra="forbid", allow_inf_nan=False
    )  # an infinite timeout is a hang, not a value

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
    )  # names folders (runs/, locks): no '..', '/'
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
    connect_timeout: float = Field(10.0, gt=0, le=3600)
    io_timeout: float = Field(
        20.0, gt=0, le=86400
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
    _overrides: dict[str, Any] = PrivateAttr(default_factory=dict)  # environment and --set: they always win
    _lease: Any = PrivateAttr(default=None)  # edgekit.lab.client.Lease of an acquired lab place
    _place: Any = PrivateAttr(default=None)  # edgekit.lab.client.Place it acquired

    @field_validator("host", "user")
    @classmethod
    def _host_or_user(cls, value: str | None) -> str | None:
        """A name or address: `--set host=` (empty) failed later as "device not running"; spaces, control
        characters or a leading '-' are never part of one."""
        if value is None:
            return None
        if not value or value.startswith("-") or any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError(f"{value!r} is not a host name, address or user name")
        if (
            "@" in value or "/" in value
        ):  # 'pi:password@host' would carry a password into every log and report
            raise ValueError(
                "a host name, address or user name has no '@' or '/': give the user in `user:`, the key in `key:`; "
                "edgekit takes no passwords (use a key, or ssh-agent)"
            )
        return value

    @field_validator("affinity", mode="before")
    @classmethod
    def _affinity_as_text(cls, value: object) -> object:
        """`affinity: 0` (one core) reads as a number in YAML and --set: it means the cpu list "0"."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def source(self) -> str | None:
        """The file this target was loaded from."""
        return self._source

    @property
    def kind(self) -> str:
        if self.lab is not None:
            return "labgrid"
        return "emulated" if self.emulated else self.transport.value

    def python_for(self, runtime: str) -> str:
        """The python command that has `runtime` (e.g. tflite_runtime lives in its own site dir)."""
        return self.runtime_python.get(runtime, self.python)


def load_target(
    name_or_path: str | Path,
    overrides: Mapping[str, str] | list[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    ssh_config: Path | None = None,
) -> Target:
    """Read a target by name (targets/NAME.yaml) or path, apply ssh config, environment and overrides.
    `lab:TAG=VALUE` is a lab target with the defaults of the target file named `lab`, if any."""
    if is_inline(str(name_or_path)):
        lab, inline_name = parse_inline(str(name_or_path))
        path = target_path("lab") if "lab" in list_target_names() else Path(str(name_or_path))
        raw = _read_yaml(path) if path.suffix == ".yaml" else {}
        raw = _deep_merge(raw, {"name": inline_name, "lab": lab})
    else:
        path = target_path(name_or_path)
        raw = _read_yaml(path)
    raw.setdefault("name", path.stem)
    name = str(raw["name"])
    from_env = _env_overrides(name, os.environ if env is None else env)
    from_cli = _parse_overrides(overrides)
    explicit = _deep_merge(from_env, from_cli)
    data = _deep_merge(raw, explicit)
    if data.get("transport") == TransportKind.LOCAL.value and "python" not in data:
        data["python"] = sys.executable  # the host side runs in edgekit's own environment (its runtimes)
    target = _validate(data, str(path), lambda loc: _origin(loc, name, from_env, from_cli))
    if target.transport is TransportKind.SSH and not target.emulated and not target.lab:
        target = _apply_ssh_config(target, explicit, ssh_config, str(path))
    target._source = str(path)
    target._overrides = explicit
    return target


def target_path(name_or_path: str | Path) -> Path:
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise TargetError("target file not found", where=str(path))
        return path
    for folder in target_dirs():
        candidate = folder / f"{text}.yaml"
        if candidate.is_file():
            return folder.resolve() / candidate.name  # messages name targets/, not the package's link to it
    if text == "host" and "local" in list_target_names():
        raise TargetError(
            "unknown target 'host': the host is measured by every deploy (its 'host' column; --no-host leaves it "
            "out); as a target of its own, this machine is 'local'",
            hint="deploy: no --target needed for the host; targets check, formats --target: use local",
        )
    raise TargetError(
        f"unknown target {text!r}",
        where=", ".join(str(d.resolve()) for d in target_dirs()),  # the repository's targets/, not the link
        hint=f"known targets: {', '.join(list_target_names()) or 'none'}; a new board: a {text}.yaml in one of "
        "these folders (EDGEKIT_TARGETS_DIR names a folder of your own), or a path to a target file",
    )


def target_dirs() -> list[Path]:
    """The repo's targets/ plus EDGEKIT_TARGETS_DIR (a user's own folder of target files), if set."""
    extra = os.environ.get("EDGEKIT_TARGETS_DIR")
    return ([Path(extra).expanduser()] if extra else []) + [TARGETS_DIR]


def list_target_names() -> list[str]:
    names: dict[str, None] = {}
    for folder in target_dirs():
        for f in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
            names.setdefault(f.stem)
    return list(names)


def is_inline(name: str) -> bool:
    return str(name).startswith(INLINE_PREFIX)


def parse_inline(text: str) -> tuple[dict[str, Any], str]:
    """`lab:board=pi4:rack=2` -> ({"tags": {...}}, target name `lab-board-pi4-rack-2`); `name=X` picks a place."""
    body = text[len(INLINE_PREFIX) :]
    tags: dict[str, str] = {}
    place: str | None = None
    for part in filter(None, body.split(":")):
        key, sep, value = part.partition("=")
        if not sep or not _TAG_KEY.match(key) or not _TAG_VALUE.match(value):
            raise TargetError(
                f"{text!r}: {part!r} is not TAG=VALUE",
                where="--target",
                hint="e.g. lab:board=pi4, lab:board=pi5:rack=2, lab:name=pi4-03",
            )
        if key == "name":
            place = value
        else:
            tags[key] = value
    if not tags and not place:
        raise TargetError(f"{text!r} names no tag", where="--target", hint="e.g. lab:board=pi4")
    name = "lab-" + "-".join(f"{k}-{v}" for k, v in [*([("name", place)] if place else []), *tags.items()])
    lab: dict[str, Any] = {"tags": tags}
    if place:
        lab["place"] = place
    return lab, re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def _read_yaml(path: Path) -> dict[str, Any]:
    from edgekit.yamlfile import read_yaml

    data = read_yaml(path, TargetError, max_bytes=64 * 1024)  # size, encoding, nesting, aliases bounded
    if not isinstance(data, dict):
        raise TargetError("a target file must be a mapping of fields", where=str(path))
    return data


def _origin(loc: tuple[Any, ...], name: str, from_env: dict[str, Any], from_cli: dict[str, Any]) -> str:
    """Where an overridden field came from (` (from --set port=...)`), or "" for the target file's own."""

    def holds(tree: Any) -> bool:
        for part in loc:
            if not isinstance(tree, dict) or str(part) not in tree:
                return False
            tree = tree[str(part)]
        return True

    field = ".".join(str(p) for p in loc)
    if holds(from_cli):
        return f" (from --set {field}=...)"
    if holds(from_env):
        return f" (from EDGEKIT_TARGET_{_env_name(name)}_{field.upper().replace('.', '__')})"
    return ""


def _validate(
    data: dict[str, Any], where: str, origin: Callable[[tuple[Any, ...]], str] | None = None
) -> Target:
    """The Target of `data`; a problem in a field that came from an override says so (`origin`: `--set` or the
    environment variable), not only the target file."""
    try:
        return Target.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: "
            + ("unknown field" if e["type"] == "extra_forbidden" else e["msg"])
            + (origin(tuple(e["loc"])) if origin else "")
            for e in exc.errors()
        )
        raise TargetError(
            f"invalid target: {problems}", where=where, hint=_fields_hint(exc.errors()[0]["loc"])
        ) from None


def _fields_hint(loc: tuple[Any, ...]) -> str:
    """The fields where the first problem is: a section's own (`emulated.cache` -> emulated's), else the target's."""
    for n in range(len(loc), 0, -1):  # the deepest section the location reaches (not a list item's index)
        parts, holder = locate(Target, loc[:n])
        if holder is not None:
            where = f" of {'.'.join(parts[:-1])}" if len(parts) > 1 else ""
            return f"fields{where}: {', '.join(holder.model_fields)}"
    return f"fields: {', '.join(Target.model_fields)}"


def _env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def _env_overrides(name: str, env: Mapping[str, str]) -> dict[str, Any]:
    """EDGEKIT_TARGET_<NAME>_<FIELD>[__<SUB>] variables of this target. Another target whose name extends this one
    (pi4-emu of pi4) owns its own: EDGEKIT_TARGET_PI4_EMU_EMULATED__COUNTING is not pi4's field `emu_emulated`."""
    prefix = "EDGEKIT_TARGET_" + _env_name(name) + "_"
    others = {f"EDGEKIT_TARGET_{_env_name(n)}_" for n in list_target_names()}
    longer = [p for p in others if len(p) > len(prefix) and p.startswith(prefix)]
    pairs = [
        f"{k[len(prefix) :].lower().replace('__', '.')}={v}"
        for k, v in env.items()
        if k.startswith(prefix) and not any(k.startswith(p) for p in longer)
    ]
    return _parse_overrides(pairs)


def _parse_overrides(overrides: Mapping[str, str] | list[str] | None) -> dict[str, Any]:
    """`field=value` strings (or a mapping) to a nested dict; values parsed as YAML scalars."""
    if not overrides:
        return {}
    items = overrides.items() if isinstance(overrides, Mapping) else [_split(o) for o in overrides]
    result: dict[str, Any] = {}
    for key, value in items:
        node = result
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = _scalar(value)
    return result


def _split(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise TargetError(
            f"override {item!r} is not field=value",
            where="--set",
            hint="e.g. --set host=192.168.1.20 --set port=2222",
        )
    key, value = item.split("=", 1)
    return key, value


def _scalar(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        return value


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _apply_ssh_config(target: Target, explicit: dict[str, Any], path: Path | None, where: str) -> Target:
    """Resolve `host` through ~/.ssh/config (or EDGEKIT_SSH_CONFIG): HostName, User, Port, IdentityFile."""
    import paramiko

    if not target.host:
        raise TargetError("an ssh target needs a host", where=where, hint="--set host=raspberrypi.local")
    cfg_path = path or Path(os.environ.get("EDGEKIT_SSH_CONFIG", "~/.ssh/config")).expanduser()
    update: dict[str, Any] = {}
    if cfg_path.is_file():
        try:
            entry = paramiko.SSHConfig.from_path(str(cfg_path)).lookup(target.host)
        except Exception as exc:  # noqa: BLE001 - paramiko raises several types for a malformed file
            raise TargetError(f"cannot read ssh config: {exc}", where=str(cfg_path)) from None
        update["host"] = entry.get("hostname", target.host)
        if "user" in entry and "user" not in explicit:
            update["user"] = entry["user"]
        if "port" in entry and "port" not in explicit:
            update["port"] = int(entry["port"])
        if entry.get("identityfile") and "key" not in explicit:
            update["key"] = Path(entry["identityfile"][0])
        if entry.get("userknownhostsfile") and "known_hosts" not in explicit:
            update["known_hosts"] = Path(entry["userknownhostsfile"].split()[0])
        if entry.get("proxycommand") and "proxy_command" not in explicit and entry["proxycommand"] != "none":
            update["proxy_command"] = entry["proxycommand"]
        if entry.get("proxyjump") and "proxy_jump" not in explicit and entry["proxyjump"] != "none":
            config = paramiko.SSHConfig.from_path(str(cfg_path))
            update["proxy_jump"] = ",".join(
                _resolve_hop(config, hop) for hop in entry["proxyjump"].split(",")
            )
    if not (update.get("user") or target.user):
        update["user"] = getpass.getuser()
    return target.model_copy(update=update)


def _resolve_hop(config: Any, hop: str) -> str:
    """One ProxyJump hop `[user@]alias[:port]` resolved through the ssh config (HostName, User, Port)."""
    user, _, rest = hop.strip().rpartition("@")
    host, _, port = rest.partition(":")
    entry = config.lookup(host)
    user = user or entry.get("user") or ""
    port = port or entry.get("port") or "22"
    return f"{user + '@' if user else ''}{entry.get('hostname', host)}:{port}"
