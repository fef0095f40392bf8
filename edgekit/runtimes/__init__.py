"""Runtimes: one module per runtime (edgekit/runtimes/<name>.py) declaring its formats and file suffixes, its
device packages (pip and Termux names), its converter, how this host runs it for fidelity and which runner of
the on-device agent runs it. `edgekit formats` lists them.

Adding a runtime: its module here (a `RuntimeSpec` subclass, listed in RUNTIME_MODULES), its converter in
edgekit/convert/, its runner in edgekit/agent/agent.py (RUNNERS, FORMAT_RUNTIMES, RUNTIME_DISTS: a test checks
them against this registry), its format names in edgekit/formats.py.
"""

from __future__ import annotations

import importlib

from edgekit.runtimes.base import (
    DevicePackage,
    Outputs,
    RuntimeSpec,
    UnknownFormatError,
    all_specs,
    device_packages,
    format_for_suffix,
    host_only_artifact,
    spec_for,
    spec_for_module,
    spec_for_runtime,
)
from edgekit.runtimes.host import _fit_layout, _quantize, run_onnx, run_tflite

RUNTIME_MODULES = (
    "edgekit.runtimes.tflite",
    "edgekit.runtimes.ncnn",
    "edgekit.runtimes.ort",
    "edgekit.runtimes.opencv",
    "edgekit.runtimes.mnn",
    "edgekit.runtimes.openvino",
    "edgekit.runtimes.executorch",
)

for _module in RUNTIME_MODULES:
    importlib.import_module(_module)

__all__ = [
    "RUNTIME_MODULES",
    "DevicePackage",
    "Outputs",
    "RuntimeSpec",
    "UnknownFormatError",
    "_fit_layout",
    "_quantize",
    "all_specs",
    "device_packages",
    "format_for_suffix",
    "host_only_artifact",
    "run_onnx",
    "run_tflite",
    "spec_for",
    "spec_for_module",
    "spec_for_runtime",
]
