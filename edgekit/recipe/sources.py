"""Where a recipe's model and data come from: the model sources (an ONNX file, a PyTorch builder, a Keras model)
and the data sources (a folder of images, a .npy, a builder, seeded random inputs), as pydantic models.

Like schema.py, which builds the rest of the recipe on these, they check only the values themselves; the files
they name are load.py's to check.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from edgekit.recipe.builders import check_dotted

MAX_RANDOM_VALUE = 1e30  # random data's bounds: float32 inputs (3.4e38 at most) with a finite range


# PyYAML reads YAML 1.1, where a number with an exponent but no dot and signed exponent (`1e-3`, `1.0e3`) is text:
# such text is the number it spells. Any other text where a number goes ('0.9' quoted) is refused, not converted.
_YAML11_EXPONENT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")


def _exponent_number(value: Any) -> Any:
    if isinstance(value, str) and _YAML11_EXPONENT.fullmatch(value.strip()):
        return float(value)
    return value


Real = Annotated[StrictFloat, BeforeValidator(_exponent_number)]
"""A recipe's real number: an int or a float as YAML reads them (and `1e-3`), never text or a bool ('0.9' and
`true` were read as numbers)."""


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False
    )  # .inf, .nan: typos, never values


# --- model source ---------------------------------------------------------------------------------------------
class OnnxSource(_Strict):
    kind: Literal["onnx"] = "onnx"
    path: Path


class TorchSource(_Strict):
    """A PyTorch model: a builder `package.module:function` returning an nn.Module (optional weights: a state
    dict), or a saved model file, `path`: a TorchScript archive (torch.jit.save) or an ExportedProgram
    (torch.export.save, .pt2). Either is a program (PyTorch's security policy says so of TorchScript): a recipe
    from someone else is code to read before running, whichever it names."""

    kind: Literal["torch"] = "torch"
    builder: str | None = None
    path: Path | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    weights: Path | None = None

    @field_validator("builder")
    @classmethod
    def _dotted(cls, value: str | None) -> str | None:
        return None if value is None else check_dotted(value)

    @model_validator(mode="after")
    def _builder_or_file(self) -> TorchSource:
        if (self.builder is None) == (self.path is None):
            raise ValueError(
                "give `builder:` (a function returning the nn.Module, with `weights:` for its state dict) or "
                "`path:` (a TorchScript archive from torch.jit.save, or a .pt2 from torch.export.save)"
                + (", not both" if self.builder is not None else "")
            )
        if self.path is not None and (self.args or self.weights is not None):
            raise ValueError(
                "`args:` and `weights:` go with a `builder:`; a saved model file (`path:`) holds its weights"
            )
        return self

    @property
    def label(self) -> str:
        """What the messages call the model: the builder, or the file's name."""
        return self.builder if self.builder is not None else str(self.path)


class KerasSource(_Strict):
    """A Keras .keras/.h5 file or a SavedModel folder (its `serving_default` signature, one input).

    `input.shape` is the model's own input (Keras is channels-last: `layout: NHWC`, [1, H, W, C]). tflite-* are
    written by TensorFlow's TFLiteConverter, the other formats from tf2onnx's ONNX; tflite-onnx2tf-* are the
    TFLite formats through ONNX and onnx2tf, to compare the routes (edgekit/convert/keras.py)."""

    kind: Literal["keras"] = "keras"
    path: Path
    # `package.module:Name` of each custom layer, loss or function the .keras/.h5 file names (its code is not in
    # the file): imported before Keras loads it and handed to Keras by name. A SavedModel needs none.
    custom_objects: list[str] = Field(default_factory=list, max_length=256)

    @field_validator("custom_objects")
    @classmethod
    def _dotted(cls, value: list[str]) -> list[str]:
        return [check_dotted(v, what="custom object", example="package.module:ClassName") for v in value]


ModelSource = Annotated[OnnxSource | TorchSource | KerasSource, Field(discriminator="kind")]


# --- data -----------------------------------------------------------------------------------------------------
class ImagesData(_Strict):
    """A folder of images; `samples` of them evenly spread over the sorted files (default: every image; a folder
    holding fewer is refused, as a .npy is)."""

    kind: Literal["images"] = "images"
    path: Path
    samples: StrictInt | None = Field(None, gt=0)  # strict: '16' and `true` were read as 16 and 1


class NpyData(_Strict):
    """A .npy array of model inputs, first axis = sample; `labels` an optional .npy of class ids (N,) or one-hot
    (N, classes), checked when the recipe is loaded. `samples`: the first that many (default: all of them)."""

    kind: Literal["npy"] = "npy"
    path: Path
    labels: Path | None = None
    samples: StrictInt | None = Field(None, gt=0)


class BuilderData(_Strict):
    """`package.module:function(n, seed, **args)` returning inputs, or (inputs, labels)."""

    kind: Literal["builder"] = "builder"
    builder: str
    args: dict[str, Any] = Field(default_factory=dict)
    samples: StrictInt = Field(100, gt=0)
    seed: StrictInt = 0

    @field_validator("builder")
    @classmethod
    def _dotted(cls, value: str) -> str:
        return check_dotted(value)


class RandomData(_Strict):
    """Seeded uniform random inputs: fine for timing, meaningless for accuracy."""

    kind: Literal["random"] = "random"
    samples: StrictInt = Field(8, gt=0)
    seed: StrictInt = Field(0, ge=0)  # numpy's seeds are non-negative
    low: Real = 0.0
    high: Real = 1.0

    @field_validator("low", "high")
    @classmethod
    def _in_float_range(cls, value: float) -> float:
        if abs(value) > MAX_RANDOM_VALUE:  # float32 inputs, and high - low must stay finite
            raise ValueError(f"{value:g} is beyond +-{MAX_RANDOM_VALUE:g} (the inputs are float32)")
        return value

    @model_validator(mode="after")
    def _low_below_high(self) -> RandomData:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        return self


DataSource = Annotated[ImagesData | NpyData | BuilderData | RandomData, Field(discriminator="kind")]
