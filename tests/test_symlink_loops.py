"""A symlink loop (loop1 -> loop2 -> loop1) given where a command takes a path crashed Path.resolve() into
"internal error (RuntimeError): Symlink loop from ... this is a bug in edgekit", exit 1: a recipe's model or data
path, --html/--markdown, --store, an ONNX's external data file. Each is now the module's own named error saying
"symlink loop at PATH", exit 2, before any work. Real `edgekit` commands in child processes and real symlinks;
host only (nothing is deployed to a device)."""

from __future__ import annotations

from pathlib import Path

import pytest
from procs import named, run
from test_any_onnx import onnx_recipe
from test_onnx_external_data import external, relocated

REPO = Path(__file__).resolve().parent.parent


def loop(folder: Path, name: str = "loop1") -> Path:
    """`name` -> loop2 -> `name`: any stat of it fails with ELOOP."""
    (folder / "loop2").symlink_to(name)
    (folder / name).symlink_to("loop2")
    with pytest.raises(OSError, match="symbolic links"):
        (folder / name).stat()
    return folder / name


def tiny_with(tmp_path: Path, old: str, new: str) -> Path:
    """recipes/tiny.yaml copied into tmp_path with `old` replaced by `new`."""
    text = (REPO / "recipes" / "tiny.yaml").read_text()
    assert old in text
    path = tmp_path / "recipe.yaml"
    path.write_text(text.replace(old, new))
    return path


TORCH_MODEL = """  kind: torch                      # or: {kind: onnx, path: my_model.onnx}
  builder: edgekit.zoo.tiny:build
  args: {num_classes: 10, width: 8}"""
CALIBRATION = (
    'data: {kind: builder, builder: "edgekit.zoo.tiny:images", args: {size: 32}, samples: 16, seed: 0}'
)


@pytest.mark.parametrize(
    ("field", "old", "new", "formats"),
    [
        ("model.path", TORCH_MODEL, "  kind: onnx\n  path: {loop}", "onnx-fp32"),
        (
            "calibration.data.path",
            CALIBRATION,
            "data: {{kind: images, path: {loop}, samples: 16}}",
            "tflite-int8",
        ),
    ],
    ids=["model", "calibration"],
)
@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "absolute"])
def test_a_symlink_loop_in_a_recipe_field_is_a_recipe_error(
    tmp_path: Path, field: str, old: str, new: str, formats: str, absolute: bool
) -> None:
    """Relative: resolve() crashed; absolute (not resolved): said 'file not found' though the link is there."""
    at = loop(tmp_path)
    recipe = tiny_with(tmp_path, old, new.format(loop=at if absolute else at.name))
    err = named(run("convert", str(recipe), "-f", formats, cwd=tmp_path, timeout=120))
    assert "error (RecipeError):" in err and f"field `{field}`" in err, err
    assert f"symlink loop at {at}" in err and "not found" not in err, err


def test_a_recipe_path_through_a_folder_that_is_a_symlink_loop_is_named(tmp_path: Path) -> None:
    """`model.path: loop1/m.onnx`: ELOOP on a folder on the way, not on the file itself."""
    at = loop(tmp_path)
    recipe = tiny_with(tmp_path, TORCH_MODEL, f"  kind: onnx\n  path: {at.name}/m.onnx")
    err = named(run("convert", str(recipe), "-f", "onnx-fp32", cwd=tmp_path, timeout=120))
    assert "error (RecipeError):" in err and f"symlink loop at {at}/m.onnx" in err, err


@pytest.mark.parametrize("option", ["--html", "--markdown"])
@pytest.mark.parametrize("under", [False, True], ids=["file", "folder"])
def test_a_symlink_loop_as_a_report_file_is_a_usage_error(tmp_path: Path, option: str, under: bool) -> None:
    """The loop as the file, or as a folder on the way to it (which the writer met only after the work)."""
    at = loop(tmp_path)
    given = f"{at.name}/r.out" if under else at.name
    err = named(
        run("report", option, given, "--store", str(tmp_path / "s.sqlite"), cwd=tmp_path, timeout=120)
    )
    assert f"symlink loop at {given}" in err, err
    assert not (tmp_path / "s.sqlite").exists()  # refused as the command line was read


def test_two_report_options_through_a_symlink_loop_are_a_usage_error(tmp_path: Path) -> None:
    """check_distinct resolves each name to compare them: a loop there is a UsageError, not a RuntimeError."""
    from edgekit.cli.outputs import check_distinct
    from edgekit.errors import UsageError

    at = loop(tmp_path)
    with pytest.raises(UsageError, match=f"--html: symlink loop at {at}/r.html"):
        check_distinct({"--html": at / "r.html", "--markdown": tmp_path / "s.md"})


@pytest.mark.parametrize(
    "command",
    [["runs"], ["deploy", str(REPO / "recipes" / "tiny.yaml"), "-f", "onnx-fp32"]],
    ids=["runs", "deploy"],
)
@pytest.mark.parametrize("as_url", [False, True], ids=["path", "url"])
def test_a_symlink_loop_as_the_store_is_a_store_path_error(
    tmp_path: Path, command: list[str], as_url: bool
) -> None:
    """A plain path crashed resolve(); sqlite:///LOOP (not resolved) read as a missing store or failed in SQLite."""
    at = loop(tmp_path)
    out = run(*command, "--store", f"sqlite:///{at}" if as_url else at.name, cwd=tmp_path, timeout=120)
    err = named(out)
    assert "error (StorePathError):" in err and f"symlink loop at {at}" in err, err
    assert "convert" not in (out.stdout + err).lower(), out.stdout  # said before the model is converted


@pytest.mark.parametrize("data_file", [True, False], ids=["data-file", "location"])
def test_onnx_external_data_at_a_symlink_loop_is_named(tmp_path: Path, data_file: bool) -> None:
    """model.onnx.data replaced by a loop, or a tensor's location naming one: resolve() crashed (the check that
    the data stays inside the model's folder)."""
    path = external(tmp_path)
    if data_file:
        (tmp_path / "model.onnx.data").unlink()
        loop(tmp_path, "model.onnx.data")
    else:
        loop(tmp_path, "w.data")
        path = relocated(path, "w.data")
    name = "model.onnx.data" if data_file else "w.data"
    err = named(run("convert", str(onnx_recipe(tmp_path, path, ["onnx-fp32"])), cwd=tmp_path, timeout=120))
    assert "error (InputDataError):" in err and f"symlink loop at {tmp_path / name}" in err, err
