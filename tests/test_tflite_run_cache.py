"""onnx2tf's INT8 runs are kept in the conversion cache (edgekit.convert.tflite_runs): `analyze --fix`'s selective
quantization and the convert that ships its `int8.tflite_float_ops` start from the SavedModel of the run that
converted the plain tflite-int8, instead of running onnx2tf again each (three runs, now one); the artifact made
from the cached run is the one made with onnx2tf run again; the run's key follows the calibration data (which
reaches the SavedModel: onnx2tf checks its layouts on the first sample), the recipe's onnx2tf options and the
tool versions; a damaged run is made again; `edgekit cache prune` lists and removes the runs."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgekit.convert import cache, housekeeping, onnx2tf_run, tflite, tflite_runs
from edgekit.convert.base import Artifact
from edgekit.convert.pipeline import convert_recipe
from edgekit.convert.tflite import TfliteConverter
from edgekit.convert.tflite_selective import build_selective, tensor_key
from edgekit.formats import Format
from edgekit.recipe import Recipe, load_recipe

REPO = Path(__file__).resolve().parent.parent
INT8 = Format.TFLITE_INT8


def tiny_recipe(tmp_path: Path, name: str = "r.yaml", **changes: Any) -> Recipe:
    raw = yaml.safe_load((REPO / "recipes" / "tiny.yaml").read_text())
    raw.update(changes)
    raw["formats"] = ["tflite-int8"]
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return load_recipe(path)


def _count_onnx2tf_runs(mp: pytest.MonkeyPatch, runs: list[str]) -> None:
    """Append to RUNS each child that runs onnx2tf: "convert" (the converter's) or "selective" (the selective
    quantization's own run, when it was given no SavedModel)."""
    real = onnx2tf_run.run_child

    def counted(cmd: list[str], work: Path, *args: Any, **kwargs: Any) -> int:
        if "edgekit.convert.tflite" in cmd:
            runs.append("convert")
        elif (
            "edgekit.convert.tflite_selective" in cmd
            and not json.loads((work / cmd[-1]).read_text())["saved_model"]
        ):
            runs.append("selective")
        return real(cmd, work, *args, **kwargs)

    mp.setattr(onnx2tf_run, "run_child", counted)  # build_selective's (imported when it runs)
    mp.setattr(tflite, "run_child", counted)  # the converter's


@pytest.fixture(scope="module")
def plain_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], bytes]:
    """tiny's plain tflite-int8 converted once for the module in a fresh EDGEKIT_HOME: (that home, the onnx2tf
    runs it took, the artifact's bytes). Tests only copy the home (they remove and damage what is in theirs)."""
    folder = tmp_path_factory.mktemp("plain")
    runs: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEKIT_HOME", str(folder / "home"))
        _count_onnx2tf_runs(mp, runs)
        plain = only(convert_recipe(tiny_recipe(folder), [INT8]))
        made = plain.files[0].read_bytes()
    return folder / "home", runs, made


@pytest.fixture
def onnx2tf_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plain_home: tuple[Path, list[str], bytes]
) -> list[str]:
    """A fresh EDGEKIT_HOME holding a copy of plain_home's (the plain tflite-int8 and its onnx2tf run, in the
    cache); each child that runs onnx2tf, after the runs that converted the plain one (_count_onnx2tf_runs)."""
    home, plain_runs, _ = plain_home
    shutil.copytree(home, tmp_path / "home")
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    runs = list(plain_runs)
    _count_onnx2tf_runs(monkeypatch, runs)
    return runs


def plain_from_the_copy(recipe: Recipe, plain_home: tuple[Path, list[str], bytes]) -> Artifact:
    """The plain tflite-int8 of RECIPE, taken from the copied cache: the one onnx2tf run converted it."""
    plain = only(convert_recipe(recipe, [INT8]))
    assert plain.cached and plain.files[0].read_bytes() == plain_home[2]
    return plain


def conv_op(model: Path) -> str:
    """The short name (what a recipe's tflite_float_ops takes) of the first convolution of a .tflite."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model))
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    op = next(op for op in interp._get_ops_details() if op["op_name"] == "CONV_2D")
    return tensor_key(names[int(op["outputs"][0])]).split(";")[0]


def only(arts: list[Artifact]) -> Artifact:
    (art,) = arts
    assert art.status == "ok", art.error
    return art


@pytest.mark.integration
def test_fix_and_its_float_ops_convert_start_from_the_cached_int8_run(
    tmp_path: Path, onnx2tf_runs: list[str], plain_home: tuple[Path, list[str], bytes]
) -> None:
    recipe = tiny_recipe(tmp_path)
    plain = plain_from_the_copy(recipe, plain_home)
    assert onnx2tf_runs == ["convert"]
    onnx_path = next((tmp_path / "home" / "cache" / "onnx").glob("*/model.onnx"))
    op = conv_op(plain.files[0])

    # analyze --fix's selective quantization: from the cached run's SavedModel (it ran onnx2tf itself before)
    said: list[str] = []
    (built,) = build_selective(onnx_path, recipe, [[op]], tmp_path / "sel", progress=said.append)
    assert onnx2tf_runs == ["convert"] and built.kept == [op]
    assert any("from the cache" in line for line in said), said

    # the convert that ships it (a new tflite-int8 key): onnx2tf is not run again
    floated = tiny_recipe(
        tmp_path, "f.yaml", int8={"granularity": "per-channel", "io": "float", "tflite_float_ops": [op]}
    )
    said.clear()
    shipped = only(convert_recipe(floated, [INT8], progress=said.append))
    assert not shipped.cached and shipped.key != plain.key
    assert onnx2tf_runs == ["convert"], said
    assert shipped.files[0].read_bytes() == built.path.read_bytes()  # what --fix measured is what ships

    # the same artifact as with onnx2tf run again (no cached run, no cached artifact)
    figures, made = shipped.fidelity, shipped.files[0].read_bytes()
    shutil.rmtree(tflite_runs.runs_dir())
    shutil.rmtree(cache.entry_dir(shipped.key))
    again = only(convert_recipe(floated, [INT8]))
    assert onnx2tf_runs == ["convert", "convert"]
    assert again.key == shipped.key
    assert again.fidelity["cosine"] == pytest.approx(figures["cosine"], abs=1e-6)
    assert again.fidelity["gates"] == figures["gates"]
    assert again.files[0].read_bytes() == made


@pytest.mark.integration
def test_the_run_key_follows_what_the_savedmodel_depends_on(
    tmp_path: Path,
    onnx2tf_runs: list[str],
    monkeypatch: pytest.MonkeyPatch,
    plain_home: tuple[Path, list[str], bytes],
) -> None:
    recipe = tiny_recipe(tmp_path)
    plain = plain_from_the_copy(recipe, plain_home)
    assert onnx2tf_runs == ["convert"]
    (key,) = [p.name for p in tflite_runs.runs_dir().iterdir()]
    onnx_path = next((tmp_path / "home" / "cache" / "onnx").glob("*/model.onnx"))
    job = onnx2tf_run.onnx2tf_job(onnx_path, recipe, int8=True, dynamic=False)
    calib = tmp_path / "calibration.npy"
    onnx2tf_run.write_calibration(recipe, calib)
    assert tflite_runs.run_key(onnx_path, job, calib) == key  # what the selective build looks up
    # the run kept what tflite-int8 with float io reads, and wrote neither the int8-io (full-integer) file nor the
    # dynamic-range one nor the int16 ones: onnx2tf's log names each as skipped, and onnx2tf_cause never does
    written = sorted(p.name for p in (tflite_runs.runs_dir() / key / "out").glob("*.tflite"))
    assert written == ["model_float16.tflite", "model_float32.tflite", "model_integer_quant.tflite"], written
    assert job["int8_io"] == "float" and not job["dynamic"]

    # other calibration data (its first sample steers onnx2tf's layout check): another run
    other = tiny_recipe(
        tmp_path,
        "c.yaml",
        calibration={
            "data": {
                "kind": "builder",
                "builder": "edgekit.zoo.tiny:images",
                "args": {"size": 32},
                "samples": 16,
                "seed": 5,
            },
            "method": "kl",
        },
    )
    calib_other = tmp_path / "calibration-other.npy"
    onnx2tf_run.write_calibration(other, calib_other)
    assert tflite_runs.run_key(onnx_path, job, calib_other) != key
    only(convert_recipe(other, [INT8]))
    assert onnx2tf_runs == ["convert", "convert"]
    # an onnx2tf option of the recipe, and the tool versions
    grouped = onnx2tf_run.onnx2tf_job(
        onnx_path,
        tiny_recipe(tmp_path, "g.yaml", tflite={"disable_group_convolution": True}),
        int8=True,
        dynamic=False,
    )
    assert tflite_runs.run_key(onnx_path, grouped, calib) != key
    real = TfliteConverter.tool_versions.__func__  # type: ignore[attr-defined]
    with monkeypatch.context() as m:
        m.setattr(
            TfliteConverter, "tool_versions", classmethod(lambda cls: {**real(cls), "onnx2tf": "0.0.0"})
        )
        assert tflite_runs.run_key(onnx_path, job, calib) != key

    # a damaged run (a file rewritten) is set aside and made again
    shutil.rmtree(cache.entry_dir(plain.key))
    out = tflite_runs.runs_dir() / key / "out"
    victim = next(p for p in out.rglob("*") if p.is_file() and p.suffix != ".tflite")
    victim.write_bytes(victim.read_bytes() + b"\0")
    again = only(convert_recipe(recipe, [INT8]))
    assert onnx2tf_runs == ["convert", "convert", "convert"]
    assert (tflite_runs.runs_dir() / f"{key}.damaged").is_dir() and (tflite_runs.runs_dir() / key).is_dir()
    assert again.files[0].read_bytes() == plain_home[2]  # as made before the entry was removed

    # `edgekit cache prune` sees the runs: the damaged one always, a used one only once out of its window
    entries = housekeeping.scan()
    runs = [e for e in entries if e.kind == "onnx2tf"]
    assert {e.path.name for e in runs} == {
        p.name for p in tflite_runs.runs_dir().iterdir() if len(p.name) == 64
    }
    assert any(e.kind == "damaged" and e.path.name == f"{key}.damaged" for e in entries)
    assert all(e.size_bytes > 0 for e in runs)
    cutoff = time.time() - 3600
    assert not [e for e in housekeeping.to_prune(entries, cutoff) if e.kind == "onnx2tf"]
    old = time.time() - 7200
    for e in runs:
        os.utime(e.path / "meta.json", (old, old))
    pruned = [e for e in housekeeping.to_prune(housekeeping.scan(), cutoff) if e.kind == "onnx2tf"]
    assert len(pruned) == len(runs)
    for e in pruned:
        assert housekeeping.remove(e)
    assert not [p for p in tflite_runs.runs_dir().iterdir() if len(p.name) == 64]
