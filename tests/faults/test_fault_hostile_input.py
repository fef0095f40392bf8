"""Hostile or broken recipe and target files are refused by name, fast and in bounded memory, before anything
reads their values (the digest, an error message, a converter)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.errors import RecipeError, TargetError
from edgekit.recipe import load_recipe
from edgekit.target import load_target

BOMB_LEVELS = "\n".join(
    [f"    l0: &l0 [{', '.join(['x'] * 9)}]"]
    + [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
)  # 9**9 = 387 million leaves once expanded, 600 bytes on disk


def recipe_text(name: str = "t", args: str = "", outputs: str = "") -> str:
    return (
        f"name: {name}\nmodel:\n  kind: torch\n  builder: edgekit.zoo.tiny:build\n"
        f"  args:\n    width: 8\n{args}\ninput: {{shape: [1, 3, 8, 8]}}\n{outputs}formats: [tflite-fp32]\n"
    )


def test_alias_bomb_under_model_args_is_refused_fast_through_the_cli(tmp_path: Path, edgekit_cli) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(recipe_text(args=BOMB_LEVELS))
    out = edgekit_cli("convert", str(path), memory_mb=1500, timeout=60)
    assert out.code == 2, out.stderr
    assert "RecipeError" in out.stderr and "alias" in out.stderr
    assert out.seconds < 20
    assert "Traceback" not in out.stderr


def test_alias_bomb_under_outputs_never_reaches_the_error_message(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    bomb = BOMB_LEVELS.replace("    l", "  l")
    path.write_text(recipe_text() + f"extra:\n{bomb}\noutputs: *l8\n")
    with pytest.raises(RecipeError, match="alias") as info:
        load_recipe(path, check_files=False)
    assert len(str(info.value)) < 500


def test_small_alias_use_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(recipe_text(args="    a: &a [1, 2]\n    b: *a"))
    assert load_recipe(path, check_files=False).model.args["b"] == [1, 2]


def test_large_values_in_an_error_message_are_cut_short(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text(recipe_text().replace("formats: [tflite-fp32]", f"formats: [{'x' * 100_000}]"))
    with pytest.raises(RecipeError) as info:
        load_recipe(path, check_files=False)
    assert len(str(info.value)) < 1000


@pytest.mark.parametrize(
    "content, message",
    [
        (b"name: t\n" + b"# " + b"x" * (1 << 20) + b"\n", "larger than"),
        (b'name: "caf\xe9"\n', "not UTF-8"),
        (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "nested deeper"),
        (b"a: &a [*a]\n", "recursive alias"),
    ],
)
def test_oversized_non_utf8_deep_and_recursive_recipes_are_refused(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(content)
    with pytest.raises(RecipeError, match=message):
        load_recipe(path, check_files=False)


@pytest.mark.parametrize("name", ["../../x", "a/b", "", ".hidden", "x" * 65, "a b", "ü"])
def test_recipe_names_are_safe_file_names(tmp_path: Path, name: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(recipe_text(name=f'"{name}"'))
    with pytest.raises(RecipeError, match="name"):
        load_recipe(path, check_files=False)


def test_target_files_are_bounded_too(tmp_path: Path) -> None:
    bomb = BOMB_LEVELS.replace("    l", "l")
    path = tmp_path / "t.yaml"
    path.write_text(f"name: t\nhost: 127.0.0.1\n{bomb}\n")
    with pytest.raises(TargetError, match="alias"):
        load_target(path)
    path.write_bytes(b"name: t\n# " + b"x" * 70_000 + b"\n")
    with pytest.raises(TargetError, match="larger than"):
        load_target(path)
