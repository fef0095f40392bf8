"""An error about a path names what the path is: `bench --input` given a folder, /dev/zero or a FIFO, a target file
that is a FIFO, a recipe that is a symlink loop and an ONNX whose external data file is a FIFO were all said to be
"not found" or "missing" though they are there; a large plain YAML file was refused as "an alias bomb?" though it
holds no alias. Real `edgekit` commands in child processes, real FIFOs, symlinks and /dev/zero; host only."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from onnx_graphs import shuffle_classifier
from procs import named, run
from test_any_onnx import onnx_recipe
from test_onnx_external_data import external
from test_symlink_loops import loop

from edgekit.errors import RecipeError, TargetError
from edgekit.yamlfile import MAX_EXPANDED_NODES, parse_yaml


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def folder(path: Path) -> Path:
    path.mkdir()
    return path


def looped(path: Path) -> Path:
    return loop(path.parent, path.name)


KINDS: list[tuple[str, Callable[[Path], Path], str]] = [
    ("folder", folder, "is a folder"),
    ("fifo", fifo, "not a regular file"),
    ("device", lambda p: Path("/dev/zero"), "not a regular file"),
    ("loop", looped, "symlink loop"),
]


@pytest.mark.parametrize(
    ("kind", "make", "said"),
    [*KINDS, ("missing", lambda p: p, "not found")],
    ids=[*(k[0] for k in KINDS), "missing"],
)
def test_bench_input_says_what_the_path_is(
    tmp_path: Path, kind: str, make: Callable[[Path], Path], said: str
) -> None:
    given = make(tmp_path / "inputs.npy")
    model = shuffle_classifier(tmp_path / "m.onnx")
    out = run("bench", str(model), "--target", "host", "--input", str(given), cwd=tmp_path, timeout=180)
    err = named(out)
    assert "error (UsageError):" in err and said in err and str(given) in err, err
    assert kind == "missing" or "not found" not in err, err


@pytest.mark.parametrize(("kind", "make", "said"), KINDS[1:], ids=[k[0] for k in KINDS[1:]])
def test_a_target_file_that_is_no_regular_file_says_what_it_is(
    tmp_path: Path, kind: str, make: Callable[[Path], Path], said: str
) -> None:
    path = make(tmp_path / "board.yaml") if kind != "device" else Path("/dev/zero")
    err = named(run("targets", "check", str(path), cwd=tmp_path, timeout=120))
    assert "error (TargetError):" in err and said in err and "not found" not in err, err
    from edgekit.target.files import target_path

    with pytest.raises(TargetError, match=said):
        target_path(path)
    with pytest.raises(TargetError, match="target file not found"):  # a missing one is still said so
        target_path(tmp_path / "nothing.yaml")


def test_a_symlink_loop_as_the_recipe_is_said_to_be_one(tmp_path: Path) -> None:
    at = loop(tmp_path)
    err = named(run("convert", at.name, cwd=tmp_path, timeout=120))
    assert "error (RecipeError):" in err and "symlink loop" in err and "not found" not in err, err


@pytest.mark.parametrize(
    ("kind", "make", "said"),
    [KINDS[0], KINDS[1]],
    ids=["folder", "fifo"],
)
def test_onnx_external_data_that_is_no_regular_file_says_what_it_is(
    tmp_path: Path, kind: str, make: Callable[[Path], Path], said: str
) -> None:
    """model.onnx keeps its weights in model.onnx.data; that file replaced by a folder or a FIFO (never read: a
    FIFO would block the reader)."""
    path = external(tmp_path)
    (tmp_path / "model.onnx.data").unlink()
    make(tmp_path / "model.onnx.data")
    err = named(run("convert", str(onnx_recipe(tmp_path, path, ["onnx-fp32"])), cwd=tmp_path, timeout=120))
    assert "error (InputDataError):" in err and said in err and "missing" not in err, err
    assert "model.onnx.data" in err, err


def test_many_plain_yaml_nodes_are_refused_without_calling_them_an_alias_bomb(tmp_path: Path) -> None:
    keys = MAX_EXPANDED_NODES // 2 + 10_000  # each key and its value is a node: past the limit, no alias
    text = "".join(f"k{i}: {i}\n" for i in range(keys))
    assert "*" not in text and "&" not in text and len(yaml.safe_load(text)) == keys  # valid YAML, only large
    with pytest.raises(RecipeError) as plain:
        parse_yaml(text, "big.yaml", RecipeError)
    said = str(plain.value)
    assert f"more than {MAX_EXPANDED_NODES} YAML nodes" in said and "alias" not in said, said
    bomb = 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcde", "bcdef", strict=True)
    )
    with pytest.raises(RecipeError, match="aliases expand to more than"):  # an alias bomb is still called one
        parse_yaml(bomb, "bomb.yaml", RecipeError)
    path = tmp_path / "big.yaml"
    path.write_text(text)
    err = named(run("convert", str(path), cwd=tmp_path, timeout=120))
    assert f"more than {MAX_EXPANDED_NODES} YAML nodes" in err and "alias" not in err, err


@pytest.mark.parametrize("command", ["estimate", "roofline", "profile"])
def test_a_model_path_that_is_a_folder_or_a_loop_says_so(tmp_path: Path, command: str) -> None:
    """`estimate`, `roofline` and `profile` said "no such model file" of a symlink loop; each now says what the path
    is (a folder was already said to be one), exit 2, before any count."""
    extra = ["--target", "pi4-emu"] if command == "profile" else ["--board", "pi4"]
    for make, said in ((looped, "a symlink loop"), (folder, "folder")):
        path = make(tmp_path / f"model-{make.__name__}.param")
        err = named(run(command, str(path), *extra, cwd=tmp_path, timeout=120))
        assert said in err and "no such model file" not in err, err
    err = named(run(command, str(tmp_path / "absent.param"), *extra, cwd=tmp_path, timeout=120))
    assert "no such model file" in err, err


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_store_that_is_no_regular_file_is_said_so_not_waited_on(tmp_path: Path, kind: str) -> None:
    """`--store s.sqlite` at a FIFO blocked for ever (the store check read its first bytes); /dev/null was SQLite's
    'disk I/O error', exit 1. Both are a named error now, exit 2, at once."""
    store = fifo(tmp_path / "s.sqlite") if kind == "fifo" else Path("/dev/null")
    for args in (["runs", "--store", str(store)], ["report", "--store", str(store), "--html", "r.html"]):
        err = named(run(*args, cwd=tmp_path, timeout=60))
        assert "error (StorePathError):" in err and "not a regular file" in err, err
