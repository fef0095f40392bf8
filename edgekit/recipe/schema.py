"""A recipe's schema: which trained model, which input, which data, which formats, which benchmark settings.

The pydantic models a recipe file is validated into (`extra="forbid"`, frozen), and the checks that need nothing
but the values themselves. Reading a file, resolving its paths and checking the files they name is load.py's.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import re
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictInt, field_validator, model_validator

from edgekit.formats import Format, Precision, Runtime, int8_io_refusal
from edgekit.recipe.sources import (
    DataSource,
    KerasSource,
    ModelSource,
    RandomData,
    Real,
    TorchSource,
    _Strict,
)
from edgekit.target.benchmark_cap import MAX_THREADS as MAX_THREADS  # the recipe's bound: imported from here
from edgekit.target.benchmark_cap import thread_counts

MAX_DATA_BYTES = 4 << 30  # a recipe's calibration or evaluation inputs, held in memory as float32
MAX_INPUT_ELEMENTS = 1 << 26  # one float32 input of 256 MB; a typo like [1, 3, 64000, 64000] is refused
MAX_INPUT_DIMS = 6  # batch and up to 5 more (a video model's NCDHW); more is a typo
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a recipe's name becomes a folder name


def keras_only_route(formats: Any, model: Any) -> str | None:
    """Why tflite-onnx2tf-* formats cannot be made of this model (the route beside TensorFlow's converter exists for
    a Keras source only), or None: the recipe's `formats` and `convert -f` are refused in these words."""
    route = [f.value for f in formats if f.value.startswith("tflite-onnx2tf-")]
    if not route or isinstance(model, KerasSource):
        return None
    return (
        f"{', '.join(route)}: the onnx2tf route beside TensorFlow's converter is for a `kind: keras` model; "
        f"for a {model.kind} model tflite-* already go through onnx2tf"
    )


def torch_only_route(formats: Any, model: Any) -> tuple[str, str] | None:
    """Why executorch-* cannot be made of this model (ExecuTorch lowers the PyTorch module itself, never an ONNX
    or Keras model) and what to do, or None: the recipe's `formats` and `convert -f` are refused in these words
    when the recipe is read (the ONNX route converted every other format first, then failed, exit 1)."""
    asked = [f.value for f in formats if f.runtime is Runtime.EXECUTORCH]
    if not asked or isinstance(model, TorchSource):
        return None
    said = (
        f"{', '.join(asked)}: ExecuTorch needs a PyTorch model (model.kind: torch), not this recipe's {model.kind} "
        "model"
    )
    if importlib.util.find_spec("executorch") is None:  # a torch recipe would not help here either
        return (
            f"{said}; and on this host executorch is not installed (`edgekit formats`: no release installs beside "
            "edgekit's pins)",
            "leave executorch-* out of the formats",
        )
    return (
        said,
        "give the PyTorch module (model: {kind: torch, builder: ...}) or its .pt2, or leave executorch-* out",
    )


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


# --- input ----------------------------------------------------------------------------------------------------
class Preprocess(_Strict):
    """Applied to raw images (HWC, 0..255) to make model input: x * scale, then (x - mean) / std."""

    scale: Real = 1.0 / 255.0  # strict numbers here and below: '0.5' and `true` were read as numbers
    mean: tuple[Real, ...] = (0.0,)
    std: tuple[Real, ...] = (1.0,)
    channel_order: Literal["RGB", "BGR", "GRAY"] = "RGB"


class InputSpec(_Strict):
    name: str = "input"
    shape: tuple[StrictInt, ...]  # `true` was read as 1, `3.0` as 3
    dtype: Literal["float32"] = "float32"
    layout: Layout = Layout.NCHW
    preprocess: Preprocess = Preprocess()

    @field_validator("shape")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(d <= 0 for d in value):
            raise ValueError("every dimension must be a positive integer, batch first, e.g. [1, 3, 224, 224]")
        if value[0] != 1:  # [2, 3, 40, 24] converted, then every comparison failed with an internal error
            raise ValueError(
                f"the first dimension is the batch and must be 1, not {value[0]}: edgekit converts and times one "
                f"sample per invocation, as a device runs it (e.g. [1, {', '.join(map(str, value[1:]))}])"
            )
        if len(value) > MAX_INPUT_DIMS:
            raise ValueError(
                f"{len(value)} dimensions: at most {MAX_INPUT_DIMS}, batch first, e.g. [1, 3, 224, 224]"
            )
        if math.prod(value) > MAX_INPUT_ELEMENTS:
            raise ValueError(
                f"{math.prod(value):,} values per input is more than edgekit handles "
                f"({MAX_INPUT_ELEMENTS:,}, {MAX_INPUT_ELEMENTS * 4 >> 20} MB of float32)"
            )
        return value

    @model_validator(mode="after")
    def _per_channel_preprocess(self) -> InputSpec:
        """mean and std hold one value for every channel, or one for all; an image input's channel count is
        shape[1] (NCHW) or shape[-1] (NHWC). A length that fits neither is a typo that would broadcast wrongly."""
        if len(self.shape) != 4:
            return self
        channels = self.shape[1] if self.layout is Layout.NCHW else self.shape[-1]
        for field in ("mean", "std"):
            values = getattr(self.preprocess, field)
            if len(values) not in (1, channels):
                other, axis = (Layout.NHWC, -1) if self.layout is Layout.NCHW else (Layout.NCHW, 1)
                swapped = (
                    f"; if the input is {other.value} (channels at shape[{axis}] = {self.shape[axis]}), say "
                    f"`layout: {other.value}`"
                    if self.shape[axis] == len(values)
                    else ""
                )
                raise ValueError(
                    f"preprocess.{field} has {len(values)} values; the input has {channels} channels "
                    f"({self.layout.value} {list(self.shape)}): give 1 value or {channels}{swapped}"
                )
        if any(v == 0 for v in self.preprocess.std):
            raise ValueError("preprocess.std must not be 0 (the input is divided by it)")
        return self


class Calibration(_Strict):
    data: DataSource
    method: CalibrationMethod = CalibrationMethod.KL


Cosine = Annotated[Real, Field(ge=-1.0, le=1.0)]  # a gate of '0.9' (text) was read as 0.9
Fraction = Annotated[Real, Field(ge=0.0, le=1.0)]


class Gates(_Strict):
    """Fidelity gates an artifact must meet against the original model on the evaluation inputs."""

    # a cosine is in [-1, 1], a fraction in [0, 1]: a gate outside can never be met or never fail (a typo)
    min_cosine: Cosine | None = None  # mean over the inputs of each output's per-input cosine (worst output)
    min_cosine_worst: Cosine | None = None  # the single worst input's cosine: one broken input fails the gate
    min_cosine_p5: Cosine | None = None  # the 5th-percentile input's cosine: the worst 5 % may fall below
    max_abs_error: Annotated[Real, Field(ge=0)] | None = None
    max_top1_drop: Fraction | None = None  # fraction, 0.01 = one point
    min_top1_agreement: Fraction | None = None
    min_box_match: Fraction | None = None  # fraction of reference boxes matched at IoU >= 0.5
    max_map_drop: Fraction | None = None  # mAP@0.5, fraction
    max_map50_95_drop: Fraction | None = None  # mAP@0.5:0.95, fraction: box precision, which mAP@0.5 hides


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
    device_inputs: Literal["all"] | Annotated[StrictInt, Field(gt=0)] | None = None

    @field_validator("gates")
    @classmethod
    def _fill(cls, value: dict[Precision, Gates]) -> dict[Precision, Gates]:
        return {**_default_gates(), **value}


class Int8Options(_Strict):
    granularity: Granularity = Granularity.PER_CHANNEL
    io: IOType = IOType.FLOAT
    # ncnn-int8: layers the quantizer leaves in float, by their ncnn names (what `edgekit analyze --fix` prints)
    ncnn_float_layers: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=10_000
    )
    # tflite-int8: ops TensorFlow's quantizer leaves in float, by their output tensor, and/or the output tail
    # (every op after the last weighted layers, e.g. box decoding): what analyze --fix prints
    tflite_float_ops: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=10_000
    )
    tflite_float_tail: StrictBool = False  # `"yes"` is a typo, not true
    # onnx-int8: ONNX nodes onnxruntime's quantizer leaves in float, by node name (what analyze --fix prints)
    onnx_float_nodes: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=list, max_length=10_000
    )


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
    disable_group_convolution: StrictBool = False  # grouped Conv as separable convolutions (onnx2tf -dgc)
    batchmatmul_unfold: StrictBool = False  # BatchMatMul split into per-batch MatMul (onnx2tf -ebu)
    allow_select_tf_ops: StrictBool = False


MAX_WARMUP = MAX_REPEAT = 100_000  # the timing options' upper bounds (recipe and command line)
MAX_NUMBER, MAX_MIN_REPEAT_MS = 1_000_000, 60_000.0


class Benchmark(_Strict):
    """Timing vocabulary as in TVM: `repeat` samples, each `number` invocations or >= `min_repeat_ms`."""

    # upper bounds: a value past them is a typo that would hang a run (warmup: 10**20) or overflow a timer; strict
    # types: `warmup: true` was read as 1, `threads: ['4']` as [4]
    warmup: StrictInt = Field(2, ge=0, le=MAX_WARMUP)
    repeat: StrictInt = Field(10, gt=0, le=MAX_REPEAT)
    number: StrictInt = Field(1, gt=0, le=MAX_NUMBER)
    min_repeat_ms: Real = Field(0.0, ge=0, le=MAX_MIN_REPEAT_MS)
    threads: tuple[StrictInt, ...] = (1,)
    cooldown_s: Real = Field(0.0, ge=0, le=3600)
    timeout_s: Real = Field(1800.0, gt=0, le=7 * 24 * 3600)

    @field_validator("threads")
    @classmethod
    def _threads(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        return thread_counts(value)  # a target's benchmark_cap checks its threads by the same rule


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
            int8 = ", ".join(f.value for f in self.formats if f.precision is Precision.INT8)
            raise ValueError(
                f"formats include INT8 ({int8}), so `calibration:` must name calibration data: e.g. "
                "`calibration: {data: {kind: images, path: calib/}}` (a folder of typical inputs; kinds: images, "
                "npy, builder; README 'Recipes'), or leave the INT8 formats out of `formats`"
            )
        if not self.formats:
            raise ValueError("`formats` must list at least one format")
        refused = keras_only_route(self.formats, self.model)
        if refused:
            raise ValueError(refused)
        torch_only = torch_only_route(self.formats, self.model)
        if torch_only:
            raise ValueError(f"{torch_only[0]}; {torch_only[1]}")
        per_sample = 4 * math.prod(self.input.shape[1:])  # float32, batch of one
        for where, data in (
            ("calibration", self.calibration.data if self.calibration else None),
            ("evaluation", self.evaluation.data),
        ):
            samples = getattr(data, "samples", None)
            if samples and samples * per_sample > MAX_DATA_BYTES:
                raise ValueError(
                    f"{where}.data.samples: {samples:,} inputs of {list(self.input.shape)} are "
                    f"{samples * per_sample / 2**30:,.1f} GiB of float32, more than edgekit holds in memory "
                    f"({MAX_DATA_BYTES >> 30} GiB): give fewer samples (a few hundred calibrate INT8 well)"
                )
        keep_float = [
            f"int8.{name}" for name in ("tflite_float_ops", "tflite_float_tail") if getattr(self.int8, name)
        ]
        if keep_float and (isinstance(self.model, KerasSource) or self.int8.io is IOType.INT8):
            raise ValueError(
                f"{' and '.join(keep_float)}: TFLite ops are kept in float by onnx2tf and TensorFlow's selective "
                "quantization, with float input/output, from a PyTorch or ONNX model's graph: not for a `kind: "
                "keras` model nor with int8.io: int8 (ncnn_float_layers works for both)"
            )
        refused = int8_io_refusal(self.formats) if self.int8.io is IOType.INT8 else None
        if refused:
            raise ValueError(refused)
        return self

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def gates_for(self, fmt: Format) -> Gates:
        return self.evaluation.gates[fmt.precision]

    def settings(self) -> dict[str, Any]:
        """The recipe's settings (not its path or description): what `digest` hashes, as JSON values."""
        return self.model_dump(mode="json", exclude={"path", "description"})

    def digest(self) -> str:
        """sha256 of the recipe's settings (not its path), for results and cache keys."""
        text = self.model_dump_json(exclude={"path", "description"})
        return hashlib.sha256(text.encode()).hexdigest()
