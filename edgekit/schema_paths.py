"""Where a pydantic validation error points, in the words of the YAML the user wrote (recipes and targets).

pydantic's location of an error inside a discriminated union carries the member's tag (`model.torch.bilder` for
the `bilder:` key under `model: {kind: torch}`); `locate` drops those tags and names the section (the model
class) that holds the last part, so an error can list the keys that section takes.
"""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel


def members(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (`X | None`, a union of several), each once."""
    found = (a for option in (annotation, *get_args(annotation)) for a in (option, *get_args(option)))
    return list(dict.fromkeys(a for a in found if isinstance(a, type) and issubclass(a, BaseModel)))


def tagged(annotation: Any) -> dict[str, type[BaseModel]]:
    """A discriminated union's members by their `kind:` value ({} for anything else)."""
    by_kind = {
        str(m.model_fields["kind"].default): m for m in members(annotation) if "kind" in m.model_fields
    }
    return by_kind if len(by_kind) > 1 else {}


def locate(root: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[str], type[BaseModel] | None]:
    """(the location without `kind:` tags, the model holding its last part, or None where the walk leaves the
    schema: a list item, a mapping)."""
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    clean: list[str] = []
    model: type[BaseModel] | None = root
    parent: type[BaseModel] | None = None
    i = 0
    while i < len(parts):
        parent = model
        clean.append(parts[i])
        field = model.model_fields.get(parts[i]) if model is not None else None
        i += 1
        if field is None or i == len(parts):
            model = None
            continue
        union = tagged(field.annotation)
        if parts[i] in union:  # a discriminated union: the next part is the member's tag
            model = union[parts[i]]
            i += 1
        else:
            inner = members(field.annotation)
            model = inner[0] if len(inner) == 1 else None
    return clean, parent
