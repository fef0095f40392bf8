"""A recipe: which trained model, which input, which data, which formats, which benchmark settings.

from edgekit.recipe import load_recipe
recipe = load_recipe("recipes/tiny.yaml")   # a validated, frozen Recipe; its paths resolved, its files checked

schema.py holds the pydantic models (sources.py those of the model and data sources); load.py reads a YAML file into a checked Recipe (the only place recipe YAML
is read) and checks labels. Everything after it receives a validated `Recipe`.
"""

from edgekit.recipe.builders import call_builder, call_data_builder, resolve_callable
from edgekit.recipe.load import check_class_range, class_labels, load_recipe
from edgekit.recipe.schema import (
    FLEX_PRONE_OPS,
    Benchmark,
    CalibrationMethod,
    Gates,
    Granularity,
    IOType,
    Layout,
    Recipe,
    Task,
    TfliteOptions,
)
from edgekit.recipe.sources import (
    BuilderData,
    DataSource,
    ImagesData,
    KerasSource,
    NpyData,
    OnnxSource,
    RandomData,
    TorchSource,
)

__all__ = [
    "FLEX_PRONE_OPS",
    "Benchmark",
    "BuilderData",
    "CalibrationMethod",
    "DataSource",
    "Gates",
    "Granularity",
    "IOType",
    "ImagesData",
    "KerasSource",
    "Layout",
    "NpyData",
    "OnnxSource",
    "RandomData",
    "Recipe",
    "Task",
    "TfliteOptions",
    "TorchSource",
    "call_builder",
    "call_data_builder",
    "check_class_range",
    "class_labels",
    "load_recipe",
    "resolve_callable",
]
