"""edgekit.recipe's public face: the schema and the loading behind one small `__init__`."""

from __future__ import annotations

import ast
import types
from pathlib import Path

import edgekit.recipe
from edgekit.recipe import load, schema, sources


def test_public_names() -> None:
    """`__all__` is what the package exports: every name there exists and nothing public is left out of it."""
    module = edgekit.recipe
    assert len(module.__all__) == len(set(module.__all__))
    assert all(getattr(module, name) is not None for name in module.__all__)
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(module.__all__)
    assert module.Recipe is schema.Recipe and module.load_recipe is load.load_recipe


def _imports(module: types.ModuleType) -> set[str]:
    tree = ast.parse(Path(str(module.__file__)).read_text())
    return {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
        if not isinstance(node, ast.ImportFrom) or node.module
    }


def test_the_schema_does_not_import_the_loading() -> None:
    """load.py builds on schema.py, never the other way: the models need no file, YAML or numpy. The schema checks a
    `builder:`'s name with builders.py's rules, which need none of them either."""
    from edgekit.recipe import builders

    for module in (schema, sources):  # the models, and those of the model and data sources they build on
        imported = _imports(module)
        below = {"edgekit.recipe.builders", "edgekit.recipe.sources"}
        assert {m for m in imported if m.startswith("edgekit.recipe")} <= below, imported
        assert not {"numpy", "edgekit.yamlfile", "edgekit.errors"} & imported, imported
    assert not {m for m in _imports(sources) if m.startswith("edgekit.recipe.s")}, (
        "sources.py is below schema.py"
    )
    below = _imports(builders)
    assert not {m for m in below if m.startswith("edgekit.recipe")}, below
    assert not {"numpy", "edgekit.yamlfile", "yaml"} & below, below
