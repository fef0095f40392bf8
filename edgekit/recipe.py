"""A recipe: which trained model, which input, which data, which formats, which benchmark settings.

This is the only module that reads recipe YAML. Everything after it receives a validated `Recipe`. Paths in a
recipe are relative to the recipe file. Errors name the file, the field's path and what was expected.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import re
import reprlib
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edgekit.errors import RecipeError
from edgekit.formats import Format, Precision
from edgekit.yamlfile import read_yaml

MAX_INPUT_ELEMENTS = 1 << 26  # one float32 input of 256 MB; a typo like [1, 3, 64000, 64000] is refused
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a recipe's name becomes a folder name


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Task(str, Enum):
    CLASSIFY = "classify"
    DETECT = "detect"
    GENERIC = "generic"


class Layout(str, Enum):
    NCHW = "NCHW"
    NHWC = "NHWC"


class Granularity(str, Enum):
    PER_CHANNEL = "per-channel"
    PER_TENSOR = "per-tensor"


class IOType(str, Enum):
    FLOAT = "float"
    INT8 = "int8"


class CalibrationMethod(str, Enum):
    KL = "kl"
    ABSMAX = "absmax"


# --- model source ---------------------------------------------------------------------------------------------
class OnnxSource(_Strict):
    kind: Literal["onnx"] = "onnx"
    path: Path


class TorchSource(_Strict):
    """A PyTorch builder `package.module:function` returning an nn.Module; optional weights (state_dict)."""

    kind: Literal["torch"] = "torch"
    builder: str
    args: dict[str, Any] = Field(default_factory=dict)
    weights: Path | None = None

    @field_validator("builder")
    @classmethod
    def _dotted(cls, value: str) -> str:
        return _check_dotted(value)


class KerasSource(_Strict):
    """A Keras .keras/.h5 file or a SavedModel folder (its `serving_default` signature, one input).

    `input.shape` is the model's own input (Keras is channels-last: `layout: NHWC`, [1, H, W, C]). tflite-* are
    written by TensorFlow's TFLiteConverter, the other formats from tf2onnx's ONNX; tflite-onnx2tf-* are the
    TFLite formats through ONNX and onnx2tf, to compare the routes (edgekit/convert/keras.py)."""

    kind: Literal["keras"] = "keras"
    path: Path


ModelSource = Annotated[OnnxSource | TorchSource | KerasSource, Field(discriminator="kind")]


# --- input ----------------------------------------------------------------------------------------------------
class Preprocess(_Strict):
    """Applied to raw images (HWC, 0..255) to make model input: x * scale, then (x - mean) / std."""

    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    channel_order: Literal["RGB", "BGR", "GRAY"] = "RGB"


class InputSpec(_Strict):
    name: str = "input"
    shape: tuple[int, ...]
    dtype: Literal["float32"] = "float32"
    layout: Layout = Layout.NCHW
    preprocess: Preprocess = Preprocess()

    @field_validator("shape")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(d <= 0 for d in value):
            raise ValueError("every dimension must be a positive integer, batch first, e.g. [1, 3, 224, 224]")
        if math.prod(value) > MAX_INPUT_ELEMENTS:
            raise ValueError(
                f"{math.prod(value):,} values per input is more than edgekit handles "
                f"({MAX_INPUT_ELEMENTS:,}, {MAX_INPUT_ELEMENTS * 4 >> 20} MB of float32)"
            )
        return value


# --- data -----------------------------------------------------------------------------------------------------
class ImagesData(_Strict):
    """A folder of images; `samples` of them evenly spread over the sorted files (default: every image)."""

    kind: Literal["images"] = "images"
    path: Path
    samples: int | None = Field(None, gt=0)


class NpyData(_Strict):
    """A .npy array of model inputs, first axis = sample; `labels` an optional .npy of class ids (N,) or one-hot
    (N, classes), checked when the recipe is loaded. `samples`: the first that many (default: all of them)."""

    kind: Literal["npy"] = "npy"
    path: Path
    labels: Path | None = None
    samples: int | None = Field(None, gt=0)


class BuilderData(_Strict):
    """`package.module:function(n, seed, **args)` returning inputs, or (inputs, labels)."""

    kind: Literal["builder"] = "builder"
    builder: str
    args: dict[str, Any] = Field(default_factory=dict)
    samples: int = Field(100, gt=0)
    seed: int = 0

    @field_validator("builder")
    @classmethod
    def _dotted(cls, value: str) -> str:
        return _check_dotted(value)


class RandomData(_Strict):
    """Seeded uniform random inputs: fine for timing, meaningless for accuracy."""

    kind: Literal["random"] = "random"
    samples: int = Field(8, gt=0)
    seed: int = 0
    low: float = 0.0
    high: float = 1.0


DataSource = Annotated[ImagesData | NpyData | BuilderData | RandomData, Field(discriminator="kind")]


class Calibration(_Strict):
    data: DataSource
    method: CalibrationMethod = CalibrationMethod.KL


class Gates(_Strict):
    """Fidelity gates an artifact must meet against the original model on the evaluation inputs."""

    min_cosine: float | None = None  # mean over the inputs of each output's per-input cosine (worst output)
    min_cosine_worst: float | None = None  # the single worst input's cosine: one broken input fails the gate
    min_cosine_p5: float | None = None  # the 5th-percentile input's cosine: the worst 5 % may fall below
    max_abs_error: float | None = None
    max_top1_drop: float | None = None  # fraction, 0.01 = one point
    min_top1_agreement: float | None = None
    min_box_match: float | None = None  # fraction of reference boxes matched at IoU >= 0.5
    max_map_drop: float | None = None  # mAP@0.5, fraction
    max_map50_95_drop: float | None = None  # mAP@0.5:0.95, fraction: box precision, which mAP@0.5 hides


def _default_gates() -> dict[Precision, Gates]:
    return {
        Precision.FP32: Gates(min_cosine=0.9999),
        Precision.FP16: Gates(min_cosine=0.999),
        Precision.DYNAMIC: Gates(min_cosine=0.98),
        Precision.INT8: Gates(min_cosine=0.95),
    }


class Evaluation(_Strict):
    """`device_inputs`: how many evaluation inputs each deploy target runs for outputs (the gates are judged on
    them): `all`, a number, or left out, when a target's `benchmark_cap.samples` lowers it (the emulated targets'
    4). Timing is never on more than one input, so `all` costs one inference per input, not a timed run each."""

    data: DataSource = RandomData()
    gates: dict[Precision, Gates] = Field(default_factory=_default_gates)
    device_inputs: Literal["all"] | Annotated[int, Field(gt=0)] | None = None

    @field_validator("gates")
    @classmethod
    def _fill(cls, value: dict[Precision, Gates]) -> dict[Precision, Gates]:
        return {**_default_gates(), **value}


class Int8Options(_Strict):
    granularity: Granularity = Granularity.PER_CHANNEL
    io: IOType = IOType.FLOAT


class PseudoOp(str, Enum):
    """ONNX operators onnx2tf can rewrite into builtin TFLite operators (its `replace_to_pseudo_operators`)."""

    ERF = "Erf"
    GELU = "GeLU"
    ASIN = "Asin"
    ACOS = "Acos"
    ATAN = "Atan"
    ABS = "Abs"
    NEG = "Neg"
    PRELU = "PReLU"
    LEAKY_RELU = "LeakyReLU"
    POWER = "Power"
    HARD_SWISH = "HardSwish"
    GATHER_ND = "GatherND"
    MATMUL_INTEGER = "MatMulInteger"


FLEX_PRONE_OPS = (
    PseudoOp.ERF,
    PseudoOp.ASIN,
    PseudoOp.ACOS,
    PseudoOp.ATAN,
)  # no builtin TFLite kernel: Flex ops


class TfliteOptions(_Strict):
    """The onnx2tf options a user may need, typed (never a free string of flags).

    `replace_ops`: operators rewritten as builtin TFLite operators; left out, edgekit replaces those of
    FLEX_PRONE_OPS the model contains (Erf from GELU would otherwise become the Select TF op FlexErf); `[]` turns
    replacement off. `allow_select_tf_ops`: accept an artifact that needs Select TF (Flex) ops with a warning
    instead of failing its conversion (the device's TFLite runtime must then link the Flex delegate)."""

    replace_ops: tuple[PseudoOp, ...] | None = None
    disable_group_convolution: bool = False  # grouped Conv as separable convolutions (onnx2tf -dgc)
    batchmatmul_unfold: bool = False  # BatchMatMul split into per-batch MatMul (onnx2tf -ebu)
    allow_select_tf_ops: bool = False


class Benchmark(_Strict):
    """Timing vocabulary as in TVM: `repeat` samples, each `number` invocations or >= `min_repeat_ms`."""

    warmup: int = Field(2, ge=0)
    repeat: int = Field(10, gt=0)
    number: int = Field(1, gt=0)
    min_repeat_ms: float = Field(0.0, ge=0)
    threads: tuple[int, ...] = (1,)
    cooldown_s: float = Field(0.0, ge=0)
    timeout_s: float = Field(1800.0, gt=0)

    @field_validator("threads")
    @classmethod
    def _threads(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(t <= 0 for t in value):
            raise ValueError("threads must be a non-empty list of positive integers, e.g. [1, 4]")
        return value


class Recipe(_Strict):
    name: str
    description: str = ""
    task: Task = Task.GENERIC
    model: ModelSource
    input: InputSpec
    outputs: tuple[str, ...] = ()  # names, for the detector: which output is boxes/scores (see zoo)
    calibration: Calibration | None = None
    evaluation: Evaluation = Evaluation()
    formats: tuple[Format, ...]
    int8: Int8Options = Int8Options()
    tflite: TfliteOptions = TfliteOptions()
    benchmark: Benchmark = Benchmark()
    path: Path = Field(Path("."), exclude=True)  # the recipe file, set by load_recipe

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not SAFE_NAME.fullmatch(value):
            raise ValueError(
                "a name is 1-64 letters, digits, '.', '_' or '-' (it names folders), e.g. mobilenetv2"
            )
        return value

    @model_validator(mode="after")
    def _int8_needs_calibration(self) -> Recipe:
        if self.calibration is None and any(f.precision is Precision.INT8 for f in self.formats):
            raise ValueError("formats include an INT8 format, so `calibration:` must name calibration data")
        if not self.formats:
            raise ValueError("`formats` must list at least one format")
        route = [f.value for f in self.formats if f.value.startswith("tflite-onnx2tf-")]
        if route and not isinstance(self.model, KerasSource):
            raise ValueError(
                f"{', '.join(route)}: the onnx2tf route beside TensorFlow's converter is for a "
                f"`kind: keras` model; for a {self.model.kind} model tflite-* already go through onnx2tf"
            )
        if self.int8.io is IOType.INT8 and Format.NCNN_INT8 in self.formats:
            raise ValueError(
                "int8.io: int8 is implemented for tflite-int8 only: an ncnn-int8 model takes and gives "
                "float32 (each int8 layer quantizes its own input); set int8.io: float, or convert "
                "ncnn-int8 from a recipe without it"
            )
        return self

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def gates_for(self, fmt: Format) -> Gates:
        return self.evaluation.gates[fmt.precision]

    def digest(self) -> str:
        """sha256 of the recipe's settings (not its path), for results and cache keys."""
        text = self.model_dump_json(exclude={"path", "description"})
        return hashlib.sha256(text.encode()).hexdigest()


def load_recipe(path: str | Path, *, check_files: bool = True) -> Recipe:
    """Read and validate a recipe; relative paths in it are resolved against the recipe's folder."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError("recipe file not found", where=str(path), hint="pass a YAML file under recipes/")
    raw = read_yaml(path, RecipeError)  # size, encoding, nesting and alias expansion bounded
    if not isinstance(raw, dict):
        raise RecipeError("a recipe must be a YAML mapping (key: value)", where=str(path))
    try:
        recipe = Recipe.model_validate({**raw, "path": path})
    except ValidationError as exc:
        raise RecipeError(_describe(exc), where=str(path)) from None
    recipe = _resolve_paths(recipe, path.parent)
    if check_files:
        _check_files(recipe)
    return recipe


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        if err["type"] == "extra_forbidden":
            lines.append(f"field `{loc}`: unknown key (check its spelling; see README 'Recipes')")
        elif err["type"] == "enum" and "formats" in loc:
            allowed = ", ".join(f.value for f in Format)
            lines.append(
                f"field `{loc}`: unknown format {_brief(err.get('input'))}; expected one of {allowed}"
            )
        else:
            lines.append(f"field `{loc or '(top level)'}`: {err['msg']} (got {_brief(err.get('input'))})")
    return "invalid recipe:\n  " + "\n  ".join(lines)


def _brief(value: Any, limit: int = 120) -> str:
    """A value as the user wrote it, cut short: an error message never prints a whole (hostile) document."""
    text = reprlib.repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _resolve_paths(recipe: Recipe, base: Path) -> Recipe:
    def fix(obj: BaseModel) -> BaseModel:
        updates: dict[str, Any] = {}
        for name in type(obj).model_fields:
            value = getattr(obj, name)
            if name == "path" and isinstance(obj, Recipe):
                continue
            if isinstance(value, Path) and not value.is_absolute():
                updates[name] = (base / value).resolve()
            elif isinstance(value, BaseModel):
                updates[name] = fix(value)
        return obj.model_copy(update=updates) if updates else obj

    return fix(recipe)  # type: ignore[return-value]


def _check_files(recipe: Recipe) -> None:
    where = str(recipe.path)
    checks: list[tuple[str, Path | None]] = []
    model = recipe.model
    if isinstance(model, (OnnxSource, KerasSource)):
        checks.append(("model.path", model.path))
    elif isinstance(model, TorchSource):
        checks.append(("model.weights", model.weights))
        _check_importable(model.builder, "model.builder", where)
    for section, data in (
        ("calibration.data", recipe.calibration and recipe.calibration.data),
        ("evaluation.data", recipe.evaluation.data),
    ):
        if isinstance(data, (ImagesData, NpyData)):
            checks.append((f"{section}.path", data.path))
        if isinstance(data, NpyData):
            checks.append((f"{section}.labels", data.labels))
        if isinstance(data, BuilderData):
            _check_importable(data.builder, f"{section}.builder", where)
    for field, p in checks:
        if p is not None and not p.exists():
            raise RecipeError(f"field `{field}`: file not found: {p}", where=where)
    for section, data in (
        ("calibration.data", recipe.calibration and recipe.calibration.data),
        ("evaluation.data", recipe.evaluation.data),
    ):
        if isinstance(data, NpyData):
            _check_npy_data(data, recipe, section)


def _check_npy_data(data: NpyData, recipe: Recipe, section: str) -> None:
    """`samples` within the file, and labels that are class ids, one per input (read memory-mapped)."""
    where = str(recipe.path)
    count = len(_npy_header(data.path, f"{section}.path", where))
    if data.samples is not None and data.samples > count:
        raise RecipeError(
            f"field `{section}.samples`: {data.samples} asked for, {data.path.name} holds {count}",
            where=where,
            hint="lower samples, or leave it out to use every input in the file",
        )
    if data.labels is None:
        return
    if recipe.task is not Task.CLASSIFY:
        raise RecipeError(
            f"field `{section}.labels`: a labels .npy holds class ids, which only `task: classify` "
            f"uses (this recipe's task is {recipe.task.value})",
            where=where,
            hint="detector labels come from a builder (see README 'Data')",
        )
    class_labels(_npy_header(data.labels, f"{section}.labels", where), count, f"{section}.labels", where)


def _npy_header(path: Path, field: str, where: str) -> np.ndarray:
    from edgekit.errors import InputDataError

    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputDataError(
            f"field `{field}`: cannot read {path} as a .npy array: {exc}",
            where=where,
            hint="save it with numpy.save (no pickled objects)",
        ) from None
    if arr.ndim == 0:
        raise RecipeError(
            f"field `{field}`: {path.name} holds a single value, not one row per sample", where=where
        )
    return arr


def class_labels(labels: Any, count: int | None, field: str, where: str) -> np.ndarray:
    """Class ids (N,) int64 from what a user gives: integer ids, floats holding whole numbers, or one-hot rows
    (converted to ids). Soft or multi-hot rows, fractions, negative ids, other dtypes and a length other than the
    inputs' are a RecipeError naming the field: a wrong label array must never turn into a plausible accuracy."""
    arr = np.asarray(labels)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        if not (np.isin(arr, (0, 1)).all() and (arr.sum(axis=1) == 1).all()):
            raise RecipeError(
                f"field `{field}`: labels of shape {arr.shape} are not one-hot rows (one 1 per row)",
                where=where,
                hint="give class ids, shape (N,), e.g. y.argmax(1) of one-hot rows",
            )
        arr = arr.argmax(axis=1)
    if arr.ndim != 1:
        raise RecipeError(
            f"field `{field}`: labels must be class ids of shape (N,) or one-hot (N, classes); got "
            f"shape {arr.shape}",
            where=where,
        )
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise RecipeError(
                f"field `{field}`: float labels that are not whole numbers (class ids are integers)",
                where=where,
                hint="save class ids as integers: np.save(path, y.astype('int64'))",
            )
    elif arr.dtype.kind not in "iu":
        raise RecipeError(
            f"field `{field}`: labels of dtype {arr.dtype} (class ids are integers)", where=where
        )
    ids = arr.astype(np.int64)
    if count is not None and len(ids) != count:
        raise RecipeError(
            f"field `{field}`: {len(ids)} labels for {count} inputs (one label per input)", where=where
        )
    if len(ids) and ids.min() < 0:
        raise RecipeError(f"field `{field}`: negative class id {int(ids.min())}", where=where)
    return ids


def check_class_range(labels: np.ndarray, classes: int, field: str, where: str) -> None:
    """Every class id names one of the model's `classes` outputs."""
    if len(labels) and int(labels.max()) >= classes:
        raise RecipeError(
            f"field `{field}`: class id {int(labels.max())}, but the model has {classes} classes "
            f"(ids 0..{classes - 1})",
            where=where,
            hint="are the labels for this model?",
        )


def _check_dotted(value: str) -> str:
    module, sep, attr = value.partition(":")
    if not sep or not module or not attr:
        raise ValueError("expected `package.module:function`")
    return value


def _check_importable(dotted: str, field: str, where: str) -> None:
    try:
        resolve_callable(dotted)
    except (ImportError, AttributeError) as exc:
        raise RecipeError(f"field `{field}`: cannot import {dotted!r}: {exc}", where=where) from None


def resolve_callable(dotted: str) -> Any:
    """Import `package.module:function` and return the function."""
    module, _, attr = dotted.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
