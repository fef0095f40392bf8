"""Keras and SavedModel sources: TFLite through TensorFlow's own TFLiteConverter, the other formats through
tf2onnx's ONNX (the model's NHWC input kept), and the onnx2tf route beside it as `tflite-onnx2tf-*`; the Keras
digits model of the zoo (recipes/digits-keras.yaml) through both routes on the host and on pi4-emu."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from edgekit.convert.base import Artifact
from edgekit.errors import RecipeError
from edgekit.formats import Format
from edgekit.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "digits-keras.yaml"
HOST_FORMATS = (
    Format.TFLITE_FP32,
    Format.TFLITE_INT8,
    Format.TFLITE_ONNX2TF_INT8,
    Format.NCNN_FP32,
    Format.ONNX_FP32,
)


def test_onnx2tf_route_formats_are_for_keras_sources_only(tmp_path: Path) -> None:
    raw = yaml.safe_load(RECIPE.read_text())
    raw["model"] = {"kind": "torch", "builder": "edgekit.zoo.digits:build"}
    raw["formats"] = ["tflite-fp32", "tflite-onnx2tf-fp32"]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        RecipeError, match=r"tflite-onnx2tf-fp32: the onnx2tf route .* for a `kind: keras` model"
    ):
        load_recipe(path, check_files=False)


def test_route_formats_are_tflite_with_their_own_fp32_base() -> None:
    from edgekit.formats import Runtime

    assert Format.TFLITE_ONNX2TF_INT8.runtime is Runtime.TFLITE
    assert Format.TFLITE_ONNX2TF_INT8.fp32_reference is Format.TFLITE_ONNX2TF_FP32
    assert Format.TFLITE_INT8.fp32_reference is Format.TFLITE_FP32
    assert Format.NCNN_INT8.fp32_reference is Format.NCNN_FP32


def test_keras_source_picks_tensorflows_converter_for_tflite() -> None:
    from edgekit.convert.converter_choice import converters_for
    from edgekit.convert.keras import KerasTfliteConverter, Onnx2tfRouteConverter

    got = converters_for(list(HOST_FORMATS), load_recipe(RECIPE))
    assert got[Format.TFLITE_FP32] is KerasTfliteConverter and got[Format.TFLITE_INT8] is KerasTfliteConverter
    assert got[Format.TFLITE_ONNX2TF_INT8] is Onnx2tfRouteConverter
    assert got[Format.NCNN_FP32].__name__ == "NcnnConverter"


def _input_shape(art: Artifact) -> list[int]:
    from ai_edge_litert.interpreter import Interpreter

    return [int(d) for d in Interpreter(model_path=str(art.main_file)).get_input_details()[0]["shape"]]


@pytest.fixture(scope="module")
def keras_artifacts() -> list[Artifact]:
    from edgekit.convert.pipeline import convert_recipe

    notes: list[str] = []
    arts = convert_recipe(load_recipe(RECIPE), HOST_FORMATS, keep_going=True, progress=notes.append)
    assert any("NHWC as the model takes it" in n and "tf2onnx" in n for n in notes), notes
    return arts


@pytest.fixture(scope="module")
def keras_int8_artifacts() -> list[Artifact]:
    """The two INT8 routes alone, for the pi4-emu test: it runs on the devices worker (pytest-xdist), where
    keras_artifacts' other three formats (tflite-fp32, ncnn-fp32, onnx-fp32: ~7 s) were converted for nothing.
    Each format has its own cache key: in one process these are keras_artifacts' own files, from the cache."""
    from edgekit.convert.pipeline import convert_recipe

    pair = (Format.TFLITE_INT8, Format.TFLITE_ONNX2TF_INT8)
    return convert_recipe(load_recipe(RECIPE), pair, keep_going=True)


@pytest.mark.integration
def test_keras_digits_converts_by_both_tflite_routes(keras_artifacts: list[Artifact]) -> None:
    arts = {a.format: a for a in keras_artifacts}
    for fmt, art in arts.items():
        assert art.status == "ok", (fmt, art.error)
        assert art.fidelity["gates"]["samples"] == 360  # the whole test split, with labels
        assert art.fidelity["top1"] >= 0.97, (fmt, art.fidelity)  # accuracy against the labels
    assert arts[Format.TFLITE_FP32].provenance["converter"] == "KerasTfliteConverter"
    assert arts[Format.TFLITE_ONNX2TF_INT8].provenance["converter"] == "Onnx2tfRouteConverter"
    assert arts[Format.TFLITE_FP32].fidelity["max_abs_error"] < 1e-4
    for fmt in (Format.TFLITE_FP32, Format.TFLITE_INT8, Format.TFLITE_ONNX2TF_INT8):
        assert _input_shape(arts[fmt]) == [1, 16, 16, 1], fmt  # NHWC in, whichever route
    direct, via_onnx = arts[Format.TFLITE_INT8], arts[Format.TFLITE_ONNX2TF_INT8]
    assert direct.main_file.read_bytes() != via_onnx.main_file.read_bytes()
    assert direct.size_bytes < 0.5 * arts[Format.TFLITE_FP32].size_bytes


BUILD_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
KERAS_FILE = ROOT / "edgekit" / "zoo" / "weights" / "digits-keras.keras"
CUSTOM_LAYER = (
    "@keras.saving.register_keras_serializable(package='mine')\n"
    "class Swish2(keras.layers.Layer):\n"
    "    def call(self, x):\n"
    "        return x * keras.ops.sigmoid(x)\n"
)


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small Keras files the tests below convert, and the digits model's SavedModel export, made by ONE child:
    each child importing Keras took ~5 s, seven of them. Only read by the tests: each copies the file it
    converts (a recipe is written beside it). `custom-code.keras`'s Swish2 comes from the module mylayers.act,
    `custom.keras`'s from the script itself, as when each was made by its own `python -c`."""
    folder = tmp_path_factory.mktemp("keras-files")
    code = folder / "code"
    (code / "mylayers").mkdir(parents=True)
    (code / "mylayers" / "__init__.py").write_text("")
    (code / "mylayers" / "act.py").write_text(f"import keras\n\n\n{CUSTOM_LAYER}")
    script = f"""
import sys, zipfile
import keras
sys.path.insert(0, r'{code}')
from mylayers.act import Swish2
i = keras.Input((4,)); keras.Model(i, Swish2()(i)).save(r'{folder / "custom-code.keras"}')
{CUSTOM_LAYER}
i = keras.Input((4,)); keras.Model(i, Swish2()(i)).save(r'{folder / "custom.keras"}')
a = keras.Input((4,)); b = keras.Input((4,))
keras.Model([a, b], keras.layers.Add()([a, b])).save(r'{folder / "two-inputs.keras"}')
i = keras.Input((4,))
keras.Model(i, keras.layers.Activation('gelu')(keras.layers.Dense(3)(i))).save(r'{folder / "gelu.keras"}')
zipfile.ZipFile(r'{folder / "not-keras.keras"}', 'w').writestr('x.txt', 'not a model')
i = keras.Input((4,)); keras.Model(i, keras.layers.Lambda(lambda x: x * 2)(i)).save(r'{folder / "lam.keras"}')
keras.models.load_model(r'{KERAS_FILE}').export(r'{folder / "saved"}', verbose=False)
"""
    subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, env=BUILD_ENV, timeout=600
    )
    return folder


def _copy(keras_files: Path, name: str, tmp_path: Path) -> Path:
    return Path(shutil.copy(keras_files / name, tmp_path / name))


@pytest.mark.integration
def test_int8_io_of_a_keras_source(tmp_path: Path) -> None:
    """int8.io: int8 gives TensorFlow's converter int8 input and output tensors; fidelity still holds."""
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.convert.pipeline import convert_recipe

    raw: dict[str, Any] = yaml.safe_load(RECIPE.read_text())
    raw.update(formats=["tflite-int8"], int8={"io": "int8"})
    raw["model"]["path"] = str(ROOT / "edgekit" / "zoo" / "weights" / "digits-keras.keras")
    path = tmp_path / "io.yaml"
    path.write_text(yaml.safe_dump(raw))
    (art,) = convert_recipe(load_recipe(path))
    interp = Interpreter(model_path=str(art.main_file))
    assert (
        interp.get_input_details()[0]["dtype"] == np.int8
        and interp.get_output_details()[0]["dtype"] == np.int8
    )
    assert art.status == "ok" and art.fidelity["top1"] >= 0.97


@pytest.mark.integration
def test_savedmodel_source(tmp_path: Path, keras_files: Path) -> None:
    """A SavedModel folder (Keras's export) converts like the .keras file and gives the same outputs."""
    from edgekit.convert.pipeline import convert_recipe

    saved = Path(shutil.copytree(keras_files / "saved", tmp_path / "saved"))
    raw: dict[str, Any] = yaml.safe_load(RECIPE.read_text())
    raw.update(
        formats=["tflite-fp32", "onnx-fp32"],
        model={"kind": "keras", "path": str(saved)},
        outputs=["output_0"],
    )  # the output's name in Keras's serving signature
    raw["evaluation"]["data"]["samples"] = 50
    path = tmp_path / "saved.yaml"
    path.write_text(yaml.safe_dump(raw))
    for art in convert_recipe(load_recipe(path)):
        assert art.status == "ok" and art.fidelity["cosine_worst"] > 0.9999, (art.format, art.error)


@pytest.mark.integration
def test_keras_digits_on_pi4_emu_judged_on_every_input(
    pi4_emu: Any, keras_int8_artifacts: list[Artifact]
) -> None:
    """Both INT8 routes on the emulated Pi 4: gates judged on all 360 test images (evaluation.device_inputs:
    all), timing on one input within the target's cap."""
    from edgekit.deploy import DeployOptions, deploy

    arts = keras_int8_artifacts
    assert [a.format for a in arts] == [Format.TFLITE_INT8, Format.TFLITE_ONNX2TF_INT8]
    result = deploy(load_recipe(RECIPE), [pi4_emu], DeployOptions(host=False), None, arts)
    (run,) = result.runs
    assert run.status == "ok", run.error
    for m in run.agent.measurements:  # type: ignore[union-attr]
        assert m.status == "ok" and len(m.samples_ms) == 3, m.error  # the cap's repeat 3
        assert getattr(m, "accuracy_inputs", None) == 360 and getattr(m, "timed_inputs", None) == 1
        assert m.instructions_per_invoke and m.instructions_per_invoke > 0
    gated = [c for c in run.comparisons if c.reference == "onnx"]
    assert {c.artifact for c in gated} == {"tflite-int8", "tflite-onnx2tf-int8"}
    for comp in gated:
        assert comp.samples == 360 and comp.gates_passed, comp
        assert comp.metric["top1"] >= 0.97, comp


@pytest.mark.integration
def test_a_lambda_layer_is_refused_as_code_in_the_model_file(tmp_path: Path, keras_files: Path) -> None:
    """Keras loads in safe mode (a Lambda's bytecode is not run): the model is bad input (exit 2) and the error
    says what to do instead, not a truncated tool error with a safe_mode flag edgekit does not take."""
    model = _copy(keras_files, "lam.keras", tmp_path)
    out = _convert_keras_file(model, "tflite-fp32")
    assert out.returncode == 2 and "error (InputDataError)" in out.stderr, out.stderr
    assert "Lambda layer holds Python code" in out.stderr and "kind: onnx" in out.stderr, out.stderr


@pytest.mark.integration
def test_an_input_shape_the_keras_model_cannot_take_is_a_recipe_error(tmp_path: Path) -> None:
    """Was ConversionError (exit 1, tf2onnx's ValueError); the recipe's input.shape is what is wrong: exit 2, the
    recipe file named as every other RecipeError names it; the failed export's work folder is gone."""
    raw: dict[str, Any] = yaml.safe_load(RECIPE.read_text())
    raw["input"]["shape"] = [1, 9, 9, 1]
    raw["model"]["path"] = str(ROOT / "edgekit" / "zoo" / "weights" / "digits-keras.keras")
    recipe = tmp_path / "shape.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe), "--format", "onnx-fp32"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")},
    )
    assert out.returncode == 2 and "error (RecipeError)" in out.stderr, out.stderr
    assert f"{recipe}: field `input.shape`" in out.stderr and "[1, 9, 9, 1]" in out.stderr, out.stderr
    assert _work_folders(tmp_path / "home") == []


@pytest.mark.integration
@pytest.mark.parametrize(
    "case,code,said",
    [
        (
            "two-inputs",
            2,
            "the model takes 2 inputs; edgekit handles single-input models",
        ),
        ("not-keras", 2, "Keras cannot load this file"),
        ("gelu", 1, "tf2onnx: no ONNX for the TensorFlow op(s) Erfc"),
        (
            "custom",
            2,
            "Keras cannot load this file: the custom class 'Swish2' (registered as 'mine>Swish2') could not be "
            "deserialized",
        ),
    ],
)
def test_a_keras_model_edgekit_cannot_take_is_named(
    tmp_path: Path, keras_files: Path, case: str, code: int, said: str
) -> None:
    """A two-input model, a .keras that is no Keras model: bad input (exit 2), said in a line; they were
    ConversionErrors (exit 1) quoting tf2onnx's traceback. A model using an op tf2onnx has no ONNX for (the exact
    GELU's Erfc) named the op instead of 'tf2onnx: failed (exit 1)'. A custom layer whose code is not loaded was
    `config={'module': 'keras.src.model` (Keras's message cut at 300 characters, its last line kept): the class
    is named, with what to do. No failure leaves its work folder (child.log, job.json) behind."""
    model = _copy(keras_files, f"{case}.keras", tmp_path)  # made by the fixture's one child
    home = tmp_path / "home"
    out = _convert_keras_file(model, "onnx-fp32", home)
    assert out.returncode == code and said in out.stderr, out.stdout[-1500:] + out.stderr[-1500:]
    assert "Traceback" not in out.stderr and "config=" not in out.stderr and "child.log" not in out.stderr
    if case == "custom":  # what to do: name the class in the recipe, or a SavedModel (no Python code needed)
        assert "custom_objects: [mypackage.layers:Swish2]" in out.stderr, out.stderr
        assert "model.export(" in out.stderr
    assert _work_folders(home) == []


@pytest.mark.integration
def test_a_custom_layer_named_in_the_recipe_is_imported_and_its_code_keys_the_cache(
    tmp_path: Path, keras_files: Path
) -> None:
    """`model.custom_objects: [package.module:Name]`: the module (on PYTHONPATH) is imported and the class handed to
    Keras, so a .keras with a registered custom layer converts through both routes (tf2onnx's ONNX, TensorFlow's
    TFLite) and matches the model; an edit to the layer's code exports again (the cache is keyed by it); a name
    the module does not have is bad input (exit 2), a module that cannot be found the recipe's error when read."""
    code = tmp_path / "code"
    (code / "mylayers").mkdir(parents=True)
    (code / "mylayers" / "__init__.py").write_text("")
    layer = code / "mylayers" / "act.py"
    layer.write_text(f"import keras\n\n\n{CUSTOM_LAYER}")  # this test's own copy: it edits it below
    model = Path(
        shutil.copy(keras_files / "custom-code.keras", tmp_path / "custom.keras")
    )  # Swish2 of mylayers.act
    home = tmp_path / "home"
    names = ["mylayers.act:Swish2"]
    # both routes in one command (one edgekit process, TensorFlow's two children): each format said converted
    out = _convert_keras_file(
        model, ["onnx-fp32", "tflite-fp32"], home, custom_objects=names, pythonpath=code
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Keras cannot load" not in out.stderr
    for fmt in ("onnx-fp32", "tflite-fp32"):
        assert fmt in out.stdout, out.stdout[-2000:]
    onnx_keys = {p.parent.name for p in (home / "cache").glob("**/meta.json")}
    layer.write_text(layer.read_text().replace("keras.ops.sigmoid(x)", "keras.ops.sigmoid(2.0 * x)"))
    out = _convert_keras_file(model, "onnx-fp32", home, custom_objects=names, pythonpath=code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert {p.parent.name for p in (home / "cache").glob("**/meta.json")} - onnx_keys, "the edit was not seen"
    out = _convert_keras_file(
        model, "onnx-fp32", home, custom_objects=["mylayers.act:Swish3"], pythonpath=code
    )
    # the module is found when the recipe is read (not imported: it imports TensorFlow), the name in the child
    assert out.returncode == 2 and "model.custom_objects: cannot import 'mylayers.act:Swish3'" in out.stderr
    out = _convert_keras_file(
        model, "onnx-fp32", home, custom_objects=["mylayerz.act:Swish2"], pythonpath=code
    )
    assert out.returncode == 2 and "field `model.custom_objects`: cannot import 'mylayerz.act" in out.stderr
    assert _work_folders(home) == []


@pytest.mark.integration
def test_ctrl_c_during_a_keras_export_leaves_no_work_folder(tmp_path: Path) -> None:
    """Ctrl-C while TensorFlow's child exports: exit 130, and the work folder (job.json, child.log) is removed
    as on every other way out."""
    import time

    from procs import ctrl_c_when

    raw: dict[str, Any] = yaml.safe_load(RECIPE.read_text())
    raw["model"]["path"] = str(ROOT / "edgekit" / "zoo" / "weights" / "digits-keras.keras")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    home = tmp_path / "home"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgekit", "convert", str(recipe), "--format", "onnx-fp32"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "EDGEKIT_HOME": str(home)},
    )

    def child_running() -> bool:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if any((w / "child.log").is_file() for w in _work_folders(home)):
                return True
            time.sleep(0.1)
        return False

    # at once: the export (TensorFlow's import first) could end inside a 1 s settle on a fast machine (r17 #6)
    stdout, stderr, _ = ctrl_c_when(proc, child_running, timeout=60)
    assert proc.returncode == 130, stdout[-800:] + stderr[-1500:]
    assert _work_folders(home) == []


def test_a_child_killed_without_a_word_is_told_by_its_last_lines(tmp_path: Path) -> None:
    """The child killed (the OOM killer's SIGKILL) leaves no error of its own: the message carries its last lines,
    without TensorFlow's start-up noise, since the work folder and its log are removed."""
    from edgekit.convert.keras import _child_failure
    from edgekit.errors import ConversionError

    (tmp_path / "child.log").write_text(
        "W0000 00:00:1796281837.852473   11962 computation_placer.cc:177] computation placer already registered.\n"
        "2026-12-03 07:10:40.747176: E external/local_xla/xla/stream_executor/cuda/cuda_platform.cc:51] cuInit\n"
        "converting layer 3 of 9\n"
    )
    job = {"source": "/m.keras", "shape": [1, 4]}
    err = _child_failure(job, tmp_path, "tf2onnx", "/r.yaml", -9)
    assert isinstance(err, ConversionError)
    assert (
        str(err)
        == "tf2onnx: failed (killed by SIGKILL (signal 9)); the last lines it wrote:\n  converting layer 3 of 9"
    )


def _work_folders(home: Path) -> list[Path]:
    return sorted((home / "cache" / "work").glob("keras-*"))


def _convert_keras_file(
    model: Path,
    fmt: str | list[str],
    home: Path | None = None,
    custom_objects: list[str] | None = None,
    pythonpath: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`edgekit convert` of a recipe beside `model` (a Keras file taking [1, 4]) for one format, or several."""
    recipe = model.with_suffix(".yaml")
    source: dict[str, Any] = {"kind": "keras", "path": model.name}
    if custom_objects:
        source["custom_objects"] = custom_objects
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": model.stem,
                "task": "generic",
                "model": source,
                "input": {"name": "x", "shape": [1, 4]},
                "formats": [fmt] if isinstance(fmt, str) else fmt,
            }
        )
    )
    env = {**os.environ, **({"EDGEKIT_HOME": str(home)} if home else {})}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
