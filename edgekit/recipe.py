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
    """A Keras .keras/.h5 file or a SavedModel folder."""

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
            raise ValueError(f"{math.prod(value):,} values per input is more than edgekit handles "
                             f"({MAX_INPUT_ELEMENTS:,}, {MAX_INPUT_ELEMENTS * 4 >> 20} MB of float32)")
        return value


# --- data -----------------------------------------------------------------------------------------------------
class ImagesData(_Strict):
    kind: Literal["images"] = "images"
    path: Path
    samples: int = Field(100, gt=0)


class NpyData(_Strict):
    """A .npy array of model inputs, first axis = sample; `labels` an optional .npy of class ids."""

    kind: Literal["npy"] = "npy"
    path: Path
    labels: Path | None = None
    samples: int = Field(100, gt=0)


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

    min_cosine: float | None = None
    max_abs_error: float | None = None
    max_top1_drop: float | None = None  # fraction, 0.01 = one point
    min_top1_agreement: float | None = None
    min_box_match: float | None = None  # fraction of reference boxes matched at IoU >= 0.5
    max_map_drop: float | None = None


def _default_gates() -> dict[Precision, Gates]:
    return {
        Precision.FP32: Gates(min_cosine=0.9999),
        Precision.FP16: Gates(min_cosine=0.999),
        Precision.DYNAMIC: Gates(min_cosine=0.98),
        Precision.INT8: Gates(min_cosine=0.95),
    }


class Evaluation(_Strict):
    data: DataSource = RandomData()
    gates: dict[Precision, Gates] = Field(default_factory=_default_gates)

    @field_validator("gates")
    @classmethod
    def _fill(cls, value: dict[Precision, Gates]) -> dict[Precision, Gates]:
        return {**_default_gates(), **value}


class Int8Options(_Strict):
    granularity: Granularity = Granularity.PER_CHANNEL
    io: IOType = IOType.FLOAT


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
    benchmark: Benchmark = Benchmark()
    path: Path = Field(Path("."), exclude=True)  # the recipe file, set by load_recipe

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        if not SAFE_NAME.fullmatch(value):
            raise ValueError("a name is 1-64 letters, digits, '.', '_' or '-' (it names folders), e.g. mobilenetv2")
        return value

    @model_validator(mode="after")
    def _int8_needs_calibration(self) -> Recipe:
        if self.calibration is None and any(f.precision is Precision.INT8 for f in self.formats):
            raise ValueError("formats include an INT8 format, so `calibration:` must name calibration data")
        if not self.formats:
            raise ValueError("`formats` must list at least one format")
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
            lines.append(f"field `{loc}`: unknown format {_brief(err.get('input'))}; expected one of {allowed}")
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
    for section, data in (("calibration.data", recipe.calibration and recipe.calibration.data),
                          ("evaluation.data", recipe.evaluation.data)):
        if isinstance(data, (ImagesData, NpyData)):
            checks.append((f"{section}.path", data.path))
        if isinstance(data, NpyData):
            checks.append((f"{section}.labels", data.labels))
        if isinstance(data, BuilderData):
            _check_importable(data.builder, f"{section}.builder", where)
    for field, p in checks:
        if p is not None and not p.exists():
            raise RecipeError(f"field `{field}`: file not found: {p}", where=where)


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
