"""Overrides of a target file's fields: `EDGEKIT_TARGET_<NAME>_<FIELD>` variables and `--set field=value`, as
nested dicts merged over the file (values read as YAML scalars: `2222`, `true`)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from edgekit.errors import TargetError


def env_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def env_overrides(name: str, env: Mapping[str, str], known: Iterable[str]) -> dict[str, Any]:
    """EDGEKIT_TARGET_<NAME>_<FIELD>[__<SUB>] variables of this target. Another target whose name extends this one
    (pi4-emu of pi4) owns its own: EDGEKIT_TARGET_PI4_EMU_EMULATED__COUNTING is not pi4's field `emu_emulated`."""
    prefix = "EDGEKIT_TARGET_" + env_name(name) + "_"
    others = {f"EDGEKIT_TARGET_{env_name(n)}_" for n in known}
    longer = [p for p in others if len(p) > len(prefix) and p.startswith(prefix)]
    pairs = [
        f"{k[len(prefix) :].lower().replace('__', '.')}={v}"
        for k, v in env.items()
        if k.startswith(prefix) and not any(k.startswith(p) for p in longer)
    ]
    return parse_overrides(pairs, where=f"EDGEKIT_TARGET_{env_name(name)}_*")


def parse_overrides(
    overrides: Mapping[str, str] | list[str] | None, *, where: str = "--set"
) -> dict[str, Any]:
    """`field=value` strings (or a mapping) to a nested dict; values parsed as YAML scalars. A field given a value
    and then fields of its own (`port=22`, `port.x=1`) is a TargetError naming it (`where`: --set or the
    environment's variables), as is a value too deeply nested to read."""
    if not overrides:
        return {}
    items = overrides.items() if isinstance(overrides, Mapping) else [_split(o) for o in overrides]
    result: dict[str, Any] = {}
    for key, value in items:
        node = result
        *parents, leaf = key.strip().split(".")
        for n, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                field = ".".join(parents[: n + 1])
                raise TargetError(
                    f"{key.strip()}: `{field}` is a value ({field}={node!r}), not a group of fields",
                    where=where,
                    hint=f"a dotted field is a block's (emulated.counting, lab.place); {field} takes one value: "
                    f"leave out {key.strip()}=...",
                )
        if isinstance(
            node.get(leaf), dict
        ):  # `port.x=1` first, then `port=22`: the same conflict, in either order
            field = ".".join([*parents, leaf])
            raise TargetError(
                f"{key.strip()}: `{field}` was given fields of its own ({', '.join(f'{field}.{k}' for k in node[leaf])}), "
                "and now a value",
                where=where,
                hint=f"a dotted field is a block's (emulated.counting, lab.place); give {field} either a value or "
                "its fields",
            )
        node[leaf] = _scalar(key.strip(), value, where)
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


def _scalar(key: str, value: Any, where: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        read = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        return value
    except RecursionError:  # `[[[[...` thousands deep: the YAML parser recurses once per level
        raise TargetError(
            f"{key}: the value ({len(value)} characters, not shown) nests brackets too deeply to read",
            where=where,
            hint=f"give {key} a plain value, e.g. --set host=192.168.1.20",
        ) from None
    # `bastion:` and `pi: 2222` read as YAML block mappings, {'bastion': None}: "Input should be a valid string"
    # hid the typo; a mapping is written in braces (`runtime_python={ncnn: python3}`), the rest is text
    if isinstance(read, dict) and not value.lstrip().startswith("{"):
        return value
    return read


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
