"""The runtime registry: one module per runtime declares its formats, files, device packages, converter, host
runner and agent runner; this is the only place a format is mapped to a runtime.

A runtime module subclasses `RuntimeSpec`; the subclass registers itself for its formats
(`__init_subclass__`). Heavy runtimes are imported only inside `run`. A format no module claims raises
`UnknownFormatError` wherever it is looked up: nothing guesses a runtime.
"""

from __future__ import annotations

import abc
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from edgekit.errors import EdgekitError
from edgekit.formats import Format, Precision, Runtime

Outputs = list[tuple[str, np.ndarray]]
# how the host runtimes' outputs are read, part of every cached fidelity result's key: bumped when a fix changes
# what a runtime's run_format returns (2: outputs copied, never views of a runtime's reused buffer)
OUTPUTS_VERSION = 2


def output_array(y: object) -> np.ndarray:
    """A runtime's output as edgekit compares it: float32, except integer and boolean outputs (class indices
    from ArgMax, counts), which keep their type so fidelity compares them exactly (edgekit.fidelity.check).
    Always a copy: a runtime may hand out a view of a buffer its next run reuses (MNN's `read()` does: an
    ArgMax output kept as a view read back as the last sample's, all zeros)."""
    a = np.array(y)
    return a if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_ else a.astype(np.float32)


class UnknownFormatError(EdgekitError):
    """A format (or file suffix, or runtime) no runtime module declares."""

    exit_code = 2


@dataclass(frozen=True)
class DevicePackage:
    """One importable runtime module on a device and how it gets there.

    `module` is the import name a target's `runtimes:` lists; `pip` the distribution installed from wheels on
    glibc boards and the emulated devices (`pin` when constraints.txt does not pin it); `termux` the Termux
    package on Android (None: pip there too); `dists` every distribution that may provide the module (its
    version is read from the first one installed: the host has opencv-python where boards get the headless one).
    """

    module: str
    pip: str
    termux: str | None = None
    pin: str | None = None
    dists: tuple[str, ...] = ()

    @property
    def version_dists(self) -> tuple[str, ...]:
        return (self.pip, *(d for d in self.dists if d != self.pip))


class RuntimeSpec(abc.ABC):
    """One runtime: what edgekit needs to know to convert for it, run it here and run it on a device."""

    runtime: ClassVar[Runtime]
    formats: ClassVar[tuple[Format, ...]] = ()
    suffixes: ClassVar[tuple[str, ...]] = ()  # the files of one artifact, main file first
    packages: ClassVar[tuple[DevicePackage, ...]] = ()  # on a device, in order of preference
    converter: ClassVar[str] = ""  # the module whose Converter subclass makes these formats
    agent_runner: ClassVar[str] = ""  # the runner class in edgekit/agent/agent.py
    host_only: ClassVar[bool] = (
        False  # a host-side reference (OpenVINO): measured on the host, sent to no board
    )
    converter_needs: ClassVar[
        tuple[str, ...]
    ] = ()  # modules the converter imports lazily (looked up, not imported)
    not_installable: ClassVar[str | None] = (
        None  # why `edgekit targets setup` cannot install it, if it cannot
    )
    registry: ClassVar[dict[Runtime, type[RuntimeSpec]]] = {}
    by_format: ClassVar[dict[Format, type[RuntimeSpec]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        RuntimeSpec.registry[cls.runtime] = cls
        for fmt in cls.formats:
            if fmt in RuntimeSpec.by_format:
                raise TypeError(f"{fmt.value} is claimed by two runtimes")
            RuntimeSpec.by_format[fmt] = cls

    @classmethod
    @abc.abstractmethod
    def run(cls, files: Sequence[Path], inputs: np.ndarray, threads: int = 1) -> Outputs:
        """Every sample of `inputs` (N, ...) through the artifact on this host, outputs named as the runtime
        names them (fidelity aligns them to the ONNX outputs)."""

    @classmethod
    def run_format(cls, fmt: Format, files: Sequence[Path], inputs: np.ndarray, threads: int = 1) -> Outputs:
        """`run` for an artifact of `fmt`: a runtime whose settings differ per format (MNN's precision)
        overrides this; the others run every format alike."""
        return cls.run(files, inputs, threads)

    @classmethod
    def check_file(cls, files: Sequence[Path]) -> None:
        """Raise InputDataError (what is wrong, which file) when this host can tell that the artifact is no model
        its runtime reads (corrupt, truncated, another format), before it is sent to a device. Returns when it
        reads, or when this host cannot tell (the runtime is not installed here)."""
        return None  # the default: nothing this host can check

    @classmethod
    def modules(cls) -> tuple[str, ...]:
        return tuple(p.module for p in cls.packages)

    @classmethod
    def host_module(cls) -> str | None:
        """The first of the runtime's modules importable on this host, or None."""
        return next((m for m in cls.modules() if importlib.util.find_spec(m) is not None), None)

    @classmethod
    def converter_available(cls) -> bool:
        try:
            importlib.import_module(cls.converter)
        except ImportError:
            return False
        return all(importlib.util.find_spec(m) is not None for m in cls.converter_needs)

    @classmethod
    def fp32_format(cls) -> Format:
        return next(f for f in cls.formats if f.precision is Precision.FP32)


def host_only_artifact(artifact: str) -> bool:
    """Whether deploy measures this artifact (named by its format) on the host alone (OpenVINO); False for a
    user's file named otherwise."""
    try:
        return spec_for(Format(artifact)).host_only
    except (ValueError, UnknownFormatError):
        return False


def spec_for(fmt: Format) -> type[RuntimeSpec]:
    """The runtime that runs `fmt`; UnknownFormatError if no runtime module declares it."""
    from edgekit import runtimes  # noqa: F401 - importing the package registers every runtime module

    try:
        return RuntimeSpec.by_format[fmt]
    except KeyError:
        raise UnknownFormatError(
            f"no runtime module declares the format {getattr(fmt, 'value', fmt)!r}",
            hint="known formats: " + ", ".join(f.value for f in RuntimeSpec.by_format),
        ) from None


def spec_for_runtime(runtime: Runtime) -> type[RuntimeSpec]:
    from edgekit import runtimes  # noqa: F401

    try:
        return RuntimeSpec.registry[runtime]
    except KeyError:
        raise UnknownFormatError(f"no runtime module for {runtime.value!r}") from None


def spec_for_module(module: str) -> type[RuntimeSpec]:
    """The runtime a target's `runtimes:` entry (an import name: ai_edge_litert, ncnn, cv2, ..) belongs to."""
    for spec in all_specs():
        if module in spec.modules():
            return spec
    raise UnknownFormatError(
        f"no runtime module provides the Python module {module!r}",
        hint="known: " + ", ".join(m for s in all_specs() for m in s.modules()),
    )


def all_specs() -> list[type[RuntimeSpec]]:
    from edgekit import runtimes  # noqa: F401

    return list(RuntimeSpec.registry.values())


def device_packages() -> list[DevicePackage]:
    """numpy and every runtime's device packages, in registry order."""
    numpy = DevicePackage("numpy", "numpy", termux="python-numpy")
    return [numpy, *(p for spec in all_specs() for p in spec.packages)]


def format_for_suffix(suffix: str) -> Format:
    """The default format of a user's model file by its suffix (the fp32 format of the first runtime whose
    main file has it: .onnx is onnx-fp32)."""
    for spec in all_specs():
        if suffix in spec.suffixes[:1] or (suffix in spec.suffixes and len(spec.suffixes) > 1):
            return spec.fp32_format()
    raise UnknownFormatError(
        f"no runtime reads {suffix or 'files without a suffix'}",
        hint="known: " + ", ".join(sorted({s for x in all_specs() for s in x.suffixes})),
    )
