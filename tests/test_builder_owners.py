"""Whose code a builder is, for the builder allowlist (recipe/builders.py, pyfiles.someone_elses): a namespace
package shared by the user's own wheel and an index-installed one, a functools.partial of the user's function, and
tf_keras's applications (defined under tf_keras.src)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from edgekit.recipe.builders import resolve_callable


def _dist(site: Path, name: str, files: dict[str, str], local: bool) -> None:
    """A distribution `name` installed into `site` with `files`, its RECORD listing them; from this machine's own
    files (direct_url.json, file: URL) when `local`, else as from a package index."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text("".join(f"{rel},,\n" for rel in files) + f"{info.name}/RECORD,,\n")
    (info / "top_level.txt").write_text("acme\n")
    if local:
        (info / "direct_url.json").write_text(json.dumps({"url": f"file://{site}/src", "dir_info": {}}))


def test_in_a_shared_namespace_each_module_is_judged_by_the_distribution_that_installed_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """acme.models from the user's own wheel vouched for acme.tools from an index (any local distribution of the
    namespace counted): acme.tools:make, which runs os.system, was a builder."""
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    _dist(site, "acme-models", {"acme/models.py": "def build():\n    return 1\n"}, local=True)
    _dist(
        site,
        "acme-tools",
        {"acme/tools.py": "import os\n\ndef make(cmd):\n    return os.system(cmd)\n"},
        False,
    )
    monkeypatch.syspath_prepend(str(site))
    for name in [m for m in sys.modules if m == "acme" or m.startswith("acme.")]:
        monkeypatch.delitem(sys.modules, name)
    assert resolve_callable("acme.models:build")() == 1
    with pytest.raises(AttributeError, match="not of a model zoo"):
        resolve_callable("acme.tools:make")


def test_a_partial_of_the_users_own_function_is_a_builder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`build_small = functools.partial(build, width=4)` in the user's module was refused as functools' code."""
    (tmp_path / "mine_partial.py").write_text(
        "import functools\n\ndef build(width=8):\n    return width\n\nbuild_small = functools.partial(build, width=4)\n"
        "\nfrom sympy import sympify\nevil = functools.partial(sympify)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_callable("mine_partial:build_small")() == 4
    for imported in (
        "mine_partial:sympify",
        "mine_partial:evil",
    ):  # someone else's code under the user's name
        with pytest.raises(AttributeError, match="not of a model zoo"):
            resolve_callable(imported)
