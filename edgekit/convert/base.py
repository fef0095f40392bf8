"""One small base class for converters; subclasses register themselves for the formats they produce."""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edgekit.formats import Format
from edgekit.recipe import Recipe

SIDECAR_SUFFIX = ".io.json"  # edgekit's record beside an ncnn model: blob names, options, the speed plan


def model_bytes(files: Sequence[Path]) -> int:
    """Bytes of the model itself: its runtime's files, not edgekit's sidecar (5 kB of speed-plan record made tiny's
    ncnn-int8, the fp32 model byte for byte, 19 % bigger than ncnn-fp32, and its float weights 80 % of it)."""
    return sum(f.stat().st_size for f in files if not f.name.endswith(SIDECAR_SUFFIX))


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
    provenance: dict[str, Any] = field(default_factory=dict)  # onnx sha256, tools, shared tool run, ...

    @property
    def main_file(self) -> Path:
        return self.files[0]


class Converter(abc.ABC):
    """Turns an ONNX model into one or more formats. Heavy toolchains are imported inside `convert`."""

    formats: ClassVar[tuple[Format, ...]] = ()
    # the installed distributions whose code writes this converter's artifacts: their versions key its cache
    # entries (`tool_versions`) and are a deploy's provenance (edgekit.deploy.provenance, through `all_dists`)
    dists: ClassVar[tuple[str, ...]] = ()
    registry: ClassVar[dict[Format, type[Converter]]] = {}
    peak_rss_mb: float | None = (
        None  # set by a convert that measured its tool's peak memory (e.g. a subprocess)
    )
    progress: Callable[[str], None] | None = (
        None  # set by the pipeline: a long conversion says what it is doing
    )

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        for fmt in cls.formats:
            Converter.registry[fmt] = cls

    @classmethod
    def for_format(cls, fmt: Format) -> type[Converter]:
        return cls.registry[fmt]

    @classmethod
    @abc.abstractmethod
    def tool_versions(cls) -> dict[str, str]:
        """Versions that go into the cache key: `dist_versions()` and any version of edgekit's own procedure."""

    @classmethod
    def format_tools(cls, fmt: Format) -> dict[str, str]:
        """The versions that key one format's artifacts: `tool_versions()`, and what only that format's
        conversion depends on (a converter whose formats differ so overrides it)."""
        return cls.tool_versions()

    @classmethod
    def dist_versions(cls) -> dict[str, str]:
        """The version of each of `dists` ("absent" when it is not installed)."""
        return {d: dist_version(d) for d in cls.dists}

    def prepare(self, formats: Sequence[Format]) -> None:
        """What a conversion of `formats` needs done before the pipeline samples its memory (PeakRss), e.g. an
        import whose size is no part of the conversion's peak; nothing by default."""
        return

    @abc.abstractmethod
    def convert(self, onnx_path: Path, recipe: Recipe, fmt: Format, out_dir: Path) -> list[Path]:
        """Write the artifact's files into out_dir and return them (main file first)."""

    @classmethod
    def settings(cls, recipe: Recipe, fmt: Format) -> dict[str, Any]:
        """Converter-specific settings that change the artifact, beyond what edgekit.convert.cache already keys
        on (input spec, format; for INT8 the calibration data digest, method and int8 options)."""
        return {}

    def convert_many(
        self, onnx_path: Path, recipe: Recipe, formats: Sequence[Format], out_dir: Path
    ) -> dict[Format, list[Path]]:
        """Convert several formats; the default runs `convert` once per format into out_dir/<format>.
        A converter whose one tool run yields several formats (onnx2tf: fp32 + fp16 + int8) overrides this."""
        result = {}
        for fmt in formats:
            sub = out_dir / fmt.value
            sub.mkdir(parents=True, exist_ok=True)
            result[fmt] = self.convert(onnx_path, recipe, fmt, sub)
        return result


def all_dists() -> tuple[str, ...]:
    """Every distribution a converter names in `dists`, over every runtime's converter (the runtime registry
    names them) and the Keras route, in registry order: the one list a deploy's tool versions come from."""
    import importlib

    from edgekit.runtimes import all_specs

    for module in [*(spec.converter for spec in all_specs()), "edgekit.convert.keras"]:
        try:
            importlib.import_module(module)
        except ImportError:  # a converter whose module cannot load makes no artifact here
            continue
    found: list[str] = []
    todo = list(Converter.__subclasses__())
    while todo:
        cls = todo.pop(0)
        found.extend(cls.dists)
        todo.extend(cls.__subclasses__())
    return tuple(dict.fromkeys(found))


def dist_version(dist: str) -> str:
    """An installed distribution's version, "absent" when it is not installed (cache keys and provenance)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "absent"
