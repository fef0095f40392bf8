"""edgekit.torchvision_ops with a torchvision whose C++ extension loads (torch and torchvision builds that match):
its `_C` defines `torchvision::nms` and `torchvision::qnms` in C++ when torchvision imports it, so a stub schema
defined before then aborted the process inside dlopen (c10::Error, rc 134). A fake torchvision package stands in
for it: a `_C` library compiled from the same TORCH_LIBRARY_FRAGMENT torchvision's csrc has, loaded at import as
torchvision/extension.py does; and one whose `_C` does not load (torch's CPU build), which needs the stubs."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

FRAGMENT = """#include <torch/library.h>
TORCH_LIBRARY_FRAGMENT(torchvision, m) {
  m.def("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor");
  m.def("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor");
}
"""

# torchvision/__init__.py as far as the ops go: extension.py loads _C (OSError: imports without its ops), then
# _meta_registrations.py registers fake kernels for nms and qnms unconditionally
INIT = """import os
import torch

try:
    torch.ops.load_library(os.path.join(os.path.dirname(__file__), {c_name!r}))
    HAS_OPS = True
except OSError:
    HAS_OPS = False
torch.library.register_fake("torchvision::nms")(lambda dets, scores, iou_threshold: dets.new_empty(0))
torch.library.register_fake("torchvision::qnms")(lambda dets, scores, iou_threshold: dets.new_empty(0))
"""

USER = "import torch\nimport torchvision\n\n\ndef build():\n    return torch.nn.Linear(2, 2)\n"

RUN = """import torch
from edgekit.recipe.builders import call_builder, check_importable
import edgekit.torchvision_ops as ops

check_importable("tvuser:build", "model.builder", "r.yaml")
net = call_builder("tvuser:build", "model", "r.yaml")
import torchvision
print("has_ops", torchvision.HAS_OPS, "stubs", ops._LIBRARY is not None, "net", type(net).__name__)
print("nms", torch.ops.torchvision.nms.default._schema)
"""


def _compile(folder: Path, name: str) -> Path:
    """FRAGMENT compiled against the running torch (a few seconds)."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("no g++ to compile the fake torchvision extension")
    from torch.utils.cpp_extension import include_paths, library_paths

    source = folder / "fake_tv.cpp"
    source.write_text(FRAGMENT)
    target = folder / name
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    done = subprocess.run(
        [gxx, "-shared", "-fPIC", "-O0", "-std=c++17", f"-D_GLIBCXX_USE_CXX11_ABI={abi}", "-w"]
        + [f"-I{p}" for p in include_paths()]
        + [str(source), "-o", str(target)]
        + [f"-L{p}" for p in library_paths()]
        + ["-lc10", "-ltorch_cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return target


def _package(tmp_path: Path, library: bytes | Path) -> Path:
    """A fake torchvision in tmp_path/pkg with `library` as its _C (the suffix torch's Python would import)."""
    package = tmp_path / "pkg" / "torchvision"
    package.mkdir(parents=True)
    c_name = "_C" + importlib.machinery.EXTENSION_SUFFIXES[-1]  # '.so' on Linux
    if isinstance(library, Path):
        shutil.copy(library, package / c_name)
    else:
        (package / c_name).write_bytes(library)
    (package / "__init__.py").write_text(INIT.format(c_name=c_name))
    (tmp_path / "tvuser.py").write_text(USER)
    return tmp_path / "pkg"


def _run(tmp_path: Path, package: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(package), str(tmp_path), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-c", RUN],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path, "EDGEKIT_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_torchvision_whose_extension_loads_imports(tmp_path: Path) -> None:
    """The user's module importing such a torchvision was rc 134 (`Tried to register an operator
    (torchvision::nms...) with the same name ... registered at edgekit/torchvision_ops.py`); the extension's own
    schemas are used now, no stub defined."""
    package = _package(tmp_path, _compile(tmp_path, "fake_tv.so"))
    done = _run(tmp_path, package)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "has_ops True stubs False net Linear" in done.stdout, out[-3000:]
    assert "torchvision::nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor" in done.stdout, out


def test_a_torchvision_whose_extension_does_not_load_gets_the_stubs(tmp_path: Path) -> None:
    """torch's CPU build with a CUDA torchvision: its _C does not load (here: not a library at all), so the
    stubs are defined, and its fake kernels register on them."""
    package = _package(tmp_path, b"not an ELF file\n")
    done = _run(tmp_path, package)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "has_ops False stubs True net Linear" in done.stdout, out[-3000:]
