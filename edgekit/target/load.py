"""Reading a target: by name from targets/ (and EDGEKIT_TARGETS_DIR: files.py finds the file) or by path, or inline
as `lab:TAG=VALUE`; the environment and `--set` applied over the file (overrides.py), then ~/.ssh/config
(ssh_config.py); a problem names the field and where its value came from."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel, ValidationError

from edgekit.errors import EdgekitError, TargetError
from edgekit.schema_paths import locate, members
from edgekit.target.files import list_target_names, target_path
from edgekit.target.lab_spec import INLINE_PREFIX, TAG_KEY, TAG_VALUE
from edgekit.target.overrides import deep_merge, env_name, env_overrides, parse_overrides
from edgekit.target.schema import SSH_ONLY, Target, TransportKind
from edgekit.target.ssh_config import apply_ssh_config


def load_target(
    name_or_path: str | Path,
    overrides: Mapping[str, str] | list[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    ssh_config: Path | None = None,
    shared: bool = False,
    note: Callable[[str], None] | None = None,
) -> Target:
    """Read a target by name (targets/NAME.yaml) or path, apply ssh config, environment and overrides.
    `lab:TAG=VALUE` is a lab target with the defaults of the target file named `lab`, if any. `shared`: the
    overrides are given to several targets (deploy's --target list), so a local target leaves out the SSH-only
    ones (`--set user=pi` is for the boards), telling `note` (else stderr) which."""
    if is_inline(str(name_or_path)):
        lab, inline_name = parse_inline(str(name_or_path))
        path = target_path("lab") if "lab" in list_target_names() else Path(str(name_or_path))
        raw = _read_yaml(path) if path.suffix == ".yaml" else {}
        raw = deep_merge(raw, {"name": inline_name, "lab": lab})
    else:
        path = target_path(name_or_path)
        raw = _read_yaml(path)
    raw.setdefault("name", path.stem)
    name = str(raw["name"])
    if not is_inline(str(name_or_path)):
        _check_name_is_its_own(name, path)
    from_env = env_overrides(name, os.environ if env is None else env, list_target_names())
    from_cli = parse_overrides(overrides)
    _check_block_overrides(from_cli, raw, name, str(path))
    if shared:
        from_cli = _without_ssh_fields(from_cli, deep_merge(raw, from_env), name, note)
    explicit = deep_merge(from_env, from_cli)
    _check_file_types(raw, explicit, Target, str(path))  # the file's own values: overrides are text by nature
    data = _file_paths_absolute(deep_merge(raw, explicit), explicit, path)
    if data.get("transport") == TransportKind.LOCAL.value and "python" not in data:
        data["python"] = sys.executable  # the host side runs in edgekit's own environment (its runtimes)
    target = _validate(data, str(path), lambda loc: _origin(loc, name, from_env, from_cli))
    if target.transport is TransportKind.SSH and not target.emulated and not target.lab:
        target = apply_ssh_config(target, explicit, ssh_config, str(path))
    target._source = str(path)
    target._given = str(name_or_path)
    target._overrides = explicit
    return target


def _without_ssh_fields(
    from_cli: dict[str, Any], data: dict[str, Any], name: str, note: Callable[[str], None] | None
) -> dict[str, Any]:
    """--set applies to every --target of a deploy: `--target mypi --target local --set user=pi` was refused
    (exit 2) for local, which takes no SSH field. A shared --set's SSH fields are left out of a local target,
    said in one line; its file's and EDGEKIT_TARGET_<NAME>_* ones are still refused (the schema's)."""
    if deep_merge(data, from_cli).get("transport") != TransportKind.LOCAL.value:
        return from_cli
    skipped = [field for field in SSH_ONLY if field in from_cli]
    if not skipped:
        return from_cli
    said = ", ".join(f"--set {field}" for field in skipped)
    (note or (lambda m: print(m, file=sys.stderr)))(
        f"{name}: {said} not applied here (a local target is this machine, no SSH link): for the SSH targets"
    )
    return {k: v for k, v in from_cli.items() if k not in skipped}


FILE_PATHS = ("key", "known_hosts")  # a target's fields that name files on this machine


def _file_paths_absolute(data: dict[str, Any], explicit: dict[str, Any], path: Path) -> dict[str, Any]:
    """A target file's relative `key:` and `known_hosts:` are the file's folder's, as a recipe's paths are the
    recipe's: they were the current folder's, so `targets check t/board.yaml` found the key and the same command
    from another folder did not. One given by --set or the environment is the current folder's. Either is made
    absolute, so a message names the file tried; `~/...` stays the home's."""
    for field in FILE_PATHS:
        value = data.get(field)
        if not isinstance(value, str) or not value or value.startswith("~") or Path(value).is_absolute():
            continue
        given = (Path.cwd() if field in explicit else path.absolute().parent) / value
        try:
            data[field] = str(given.resolve())
        except (
            OSError,
            RuntimeError,
            ValueError,
        ):  # a loop (3.11: RuntimeError), a NUL: said where it is read
            data[field] = str(given)
    return data


def _check_name_is_its_own(name: str, path: Path) -> None:
    """A target file whose `name:` is another target file's name (mypi.yaml saying `name: pi4` beside pi4.yaml):
    its results were stored under pi4, mixed with the real Pi 4's history, and `edgekit targets` listed two pi4
    rows, one of which no `--target pi4` reaches. Refused (exit 2). A `name:` of its own that differs from the
    file name is kept (results are stored under it; `edgekit targets` says the file name to use)."""
    if name == path.stem or name not in list_target_names():
        return
    other = target_path(name)
    if other.resolve() == path.resolve():
        return
    raise TargetError(
        f"`name: {name}` is the name of another target ({other}): this file's results would be stored under it, "
        "mixed with that target's history",
        where=str(path),
        hint=f"give it a name of its own (e.g. `name: {path.stem}`), or leave `name:` out (the file name is used)",
    )


_SCALARS = {bool: ("a YAML boolean", "true"), int: ("a YAML integer", "22"), float: ("a YAML number", "10")}
_TEXT = {str: "text (quoted)", bool: "a boolean", int: "an integer", float: "a decimal number"}


def _scalar_kind(annotation: Any) -> tuple[type | None, bool]:
    """(bool, int or float when a field holds one, `int | None` too, else None; whether a list of them)."""
    for option in (annotation, *get_args(annotation)):
        if option in _SCALARS:
            return option, False
        inner = get_args(option)
        if get_origin(option) in (tuple, list) and inner and inner[0] in _SCALARS:
            return inner[0], True
    return None, False


def _check_file_types(raw: Any, explicit: Any, model: type[BaseModel], where: str, prefix: str = "") -> None:
    """A target FILE's booleans and numbers must be YAML's own: `accept_new: "yes"` (text) read as true switched
    on trust-on-first-use of host keys, `port: "22"` became 22. `--set` and EDGEKIT_TARGET_* values (`explicit`)
    are text by nature and still convert; a file value they replace is not checked."""
    if not isinstance(raw, dict):
        return
    for key, value in raw.items():
        field = model.model_fields.get(key) if isinstance(key, str) else None
        over = explicit.get(key) if isinstance(explicit, dict) else None
        replaced = isinstance(explicit, dict) and key in explicit and not isinstance(over, dict)
        if field is None or value is None or replaced:
            continue  # an unknown field is the schema's error; a value --set replaces is not the file's
        name = f"{prefix}{key}"
        if members(field.annotation):
            _check_file_types(value, over or {}, members(field.annotation)[0], where, f"{name}.")
            continue
        kind, listed = _scalar_kind(field.annotation)
        for item in value if listed and isinstance(value, list) else [] if kind is None else [value]:
            if kind is not None and (
                isinstance(item, bool) != (kind is bool)
                or not isinstance(item, int if kind is int else kind | int)
            ):
                what, example = _SCALARS[kind]
                raise TargetError(
                    f"{name}: {item!r} in the target file is {_TEXT.get(type(item), type(item).__name__)}; "
                    f"{name} takes {what}{' list' if listed else ''} (a target file's values are not converted)",
                    where=where,
                    hint=f"write it without quotes: `{name}: {'[1, 4]' if listed else example}`"
                    + (" (or false)" if kind is bool else "")
                    + "; --set and EDGEKIT_TARGET_* values are text and are still read as YAML",
                )


def _check_block_overrides(from_cli: dict[str, Any], raw: dict[str, Any], name: str, where: str) -> None:
    """`--set emulated.X=...` (or lab.X) on a target without that block named the fields the block would need
    ("emulated.device: Field required") instead of the cause: --set applies to every --target of the command,
    and this one is not emulated (not a lab target)."""
    for block in ("emulated", "lab"):
        if isinstance(from_cli.get(block), dict) and block not in raw:
            fields = ", ".join(f"{block}.{k}" for k in from_cli[block])
            raise TargetError(
                f"--set {fields}: {name} is not {'an emulated' if block == 'emulated' else 'a lab'} target (its "
                f"file has no `{block}:` block), and --set applies to every --target of the command",
                where=where,
                hint=f"run the {block} targets in a deploy of their own, or set it for one target only: in its file "
                f"or as EDGEKIT_TARGET_<NAME>_{block.upper()}__<FIELD> (e.g. "
                f"EDGEKIT_TARGET_PHONE_EMU_EMULATED__COUNTING=false)",
            )


def is_inline(name: str) -> bool:
    return str(name).startswith(INLINE_PREFIX)


def parse_inline(text: str) -> tuple[dict[str, Any], str]:
    """`lab:board=pi4:rack=2` -> ({"tags": {...}}, target name `lab-board-pi4-rack-2`); `name=X` picks a place."""
    body = text[len(INLINE_PREFIX) :]
    tags: dict[str, str] = {}
    place: str | None = None
    for part in filter(None, body.split(":")):
        key, sep, value = part.partition("=")
        if not sep or not TAG_KEY.match(key) or not TAG_VALUE.match(value):
            raise TargetError(
                f"{text!r}: {part!r} is not TAG=VALUE",
                where="--target",
                hint="e.g. lab:board=pi4, lab:board=pi5:rack=2, lab:name=pi4-03",
            )
        if key in tags or (key == "name" and place is not None):
            raise TargetError(
                f"{text!r}: {key} given twice; a place carries one value of a tag",
                where="--target",
                hint=f"one {key}=VALUE; two kinds of board are two targets: --target lab:board=pi4 --target "
                "lab:board=pi5",
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
        return f" (from EDGEKIT_TARGET_{env_name(name)}_{field.upper().replace('.', '__')})"
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
        first = exc.errors()[0]  # a validator's own hint (the runtimes edgekit knows), else the fields
        hint = (first.get("ctx") or {}).get("hint") or _fields_hint(first["loc"])
        raise TargetError(f"invalid target: {problems}", where=where, hint=hint) from None


def _fields_hint(loc: tuple[Any, ...]) -> str:
    """The fields where the first problem is: a section's own (`emulated.cache` -> emulated's), else the target's."""
    for n in range(len(loc), 0, -1):  # the deepest section the location reaches (not a list item's index)
        parts, holder = locate(Target, loc[:n])
        if holder is not None:
            where = f" of {'.'.join(parts[:-1])}" if len(parts) > 1 else ""
            return f"fields{where}: {', '.join(holder.model_fields)}"
    return f"fields: {', '.join(Target.model_fields)}"


HOST_COLUMN = "host"  # what deploy calls this machine's column (edgekit.deploy.orchestrate.HOST)


def stored_name(name: str) -> str:
    """The name a target's results are stored under: `local` (a plain target of this machine) as the host column
    deploy measures it in; a target file by the name inside it; anything else (a lab place's name, a target no
    file describes any more) as it is."""
    file_like = name.endswith((".yaml", ".yml")) or "/" in name
    if not file_like and name not in list_target_names():
        return name
    target = load_target(name)
    return HOST_COLUMN if target.is_this_host else target.name


def lab_stored_note(name: str) -> str | None:
    """For a lab target (`lab:board=pi4`, a file with a `lab:` block), where its runs are: under the place each
    took, never under the lab target's own name; None for any other name."""
    try:
        lab = is_inline(name) or (name in list_target_names() and load_target(name).lab is not None)
    except EdgekitError:
        lab = False
    if not lab:
        return None
    return (
        f"{name} is a lab target: its runs are stored under the place each ran on (`edgekit lab` lists them)"
    )
