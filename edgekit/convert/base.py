"""One small base class for converters; subclasses register themselves for the formats they produce."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from edgekit.formats import Format
from edgekit.recipe import Recipe


@dataclass
class Artifact:
    """One converted model: its format, its files (a .tflite, or .param + .bin) and how it was made."""

    format: Format
    files: list[Path]
    key: str  # cache key
    size_bytes: int
    convert_s: float = 0.0
    peak_rss_mb: float | None = None
    cached: bool = False
    fidelity: dict = field(default_factory=dict)  # filled by convert.fidelity
    status: str = "ok"  # ok | failed
    error: str | None = None

    @property
    def main_file(self) -> Path:
        return self.files[0]


class Converter(abc.ABC):
    """Turns an ONNX model into one or more formats. Heavy toolchains are imported inside `convert`."""

    formats: ClassVar[tuple[Format, ...]] = ()
    registry: ClassVar[dict[Format, type["Converter"]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for fmt in cls.formats:
            Converter.registry[fmt] = cls

    @classmethod
    def for_format(cls, fmt: Format) -> type["Converter"]:
        return cls.registry[fmt]

    @classmethod
    @abc.abstractmethod
    def tool_versions(cls) -> dict[str, str]:
        """Versions that go into the cache key."""

    @abc.abstractmethod
    def convert(self, onnx_path: Path, recipe: Recipe, fmt: Format, out_dir: Path) -> list[Path]:
        """Write the artifact's files into out_dir and return them (main file first)."""
