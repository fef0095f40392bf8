"""MNN: MNN's converter's .mnn files (fp32, fp16 weights, INT8 from MNN's own quantization tool), run by the MNN
Python package's Module API on boards and here.

How each format runs (the agent's MnnRunner does the same): mnn-fp32 with MNN's `precision: high` (fp32 compute
everywhere, as ncnn-fp32 is run in fp32); mnn-fp16 with `precision: low` (fp16 arithmetic where the core has it,
ARMv8.2 such as the A76; fp32 on the A72 and on x86); mnn-int8 with MNN's default `precision: normal`.
The package is MNN 3.6.1 on the host and the boards (aarch64 CPython 3.11 wheels exist); its import prints the
CPU features it found ("The device supports: ...") on stdout.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from edgekit.errors import InputDataError
from edgekit.formats import Format, Precision, Runtime
from edgekit.runtimes.base import DevicePackage, Outputs, RuntimeSpec, output_array
from edgekit.runtimes.child_check import check_in_child

# MNN runtime precision per artifact precision (the agent keeps its own copy: MNN_PRECISION)
PRECISION = {Precision.FP32: "high", Precision.FP16: "low", Precision.INT8: "normal"}


class Mnn(RuntimeSpec):
    runtime = Runtime.MNN
    formats = (Format.MNN_FP32, Format.MNN_FP16, Format.MNN_INT8)
    suffixes = (".mnn",)
    packages = (DevicePackage("MNN", "mnn", termux=None, pin="3.6.1"),)
    converter = "edgekit.convert.mnn"
    agent_runner = "MnnRunner"
    converter_needs = ("_tools",)  # MNN's compiled converter and quantization tool

    @classmethod
    def run(cls, files: Sequence[Path], inputs: np.ndarray, threads: int = 1) -> Outputs:
        return run_mnn(Path(files[0]), inputs, threads)

    @classmethod
    def run_format(cls, fmt: Format, files: Sequence[Path], inputs: np.ndarray, threads: int = 1) -> Outputs:
        return run_mnn(Path(files[0]), inputs, threads, PRECISION[fmt.precision])

    @classmethod
    def check_file(cls, files: Sequence[Path]) -> None:
        if cls.host_module() is None:
            return
        check_mnn_file(Path(files[0]))


# MNN verifies most of a file's flatbuffer (a corrupt one raises SystemError), but some damaged files crash it
# (SIGSEGV): the check loads the file in a child process, never in edgekit's own
CHECK_TIMEOUT_S = 60
_CHECK_CHILD = (
    "import sys\n"
    "import MNN\n"
    "try:\n"
    "    MNN.nn.load_module_from_file(sys.argv[1], [], [])\n"
    "except Exception as exc:\n"
    "    sys.stderr.write('edgekit-mnn-check: ' + type(exc).__name__ + '\\n')\n"
    "    sys.exit(3)\n"
)


def check_mnn_file(path: Path) -> None:
    """InputDataError (which file, why) when MNN cannot load the .mnn at PATH: it raises, it crashes (the signal
    named), or it does not finish in CHECK_TIMEOUT_S. MNN loads it in a child process (about 0.2 s)."""
    hint = "give the .mnn MNN's converter wrote (MNNConvert, or edgekit convert)"
    try:
        outcome = check_in_child(_CHECK_CHILD, "edgekit-mnn-check", [str(path)], CHECK_TIMEOUT_S, "loading")
    except subprocess.TimeoutExpired:
        raise InputDataError(
            f"not a readable .mnn model (MNN did not finish loading it in {CHECK_TIMEOUT_S} s)",
            where=str(path),
            hint=hint,
        ) from None
    if outcome is None:
        return
    kind, why = outcome  # 'said': MNN raised, the file is not a model it reads; else it crashed or failed
    if kind == "other":  # 'it crashed loading it: ...' / 'its check ended with ...', said of MNN
        why = "MNN's " + why[4:] if why.startswith("its ") else "MNN" + why.removeprefix("it")
    raise InputDataError(f"not a readable .mnn model ({why})", where=str(path), hint=hint)


def run_mnn(path: Path, inputs: np.ndarray, threads: int = 1, precision: str = "high") -> Outputs:
    """Every sample of `inputs` (N, ...) through a .mnn model, in the ONNX model's layout, outputs named as the
    ONNX graph names them (MNN's converter keeps the names)."""
    with c_stdout_silenced():
        import MNN

        manager = MNN.nn.create_runtime_manager(
            ({"backend": "CPU", "numThread": threads, "precision": precision},)
        )
        module = MNN.nn.load_module_from_file(str(path), [], [], runtime_manager=manager)
    names = list(module.get_info()["outputNames"])
    results: list[list[np.ndarray]] = [[] for _ in names]
    for sample in inputs:
        x = np.ascontiguousarray(sample[None], dtype=np.float32)
        ys = module.forward([MNN.expr.const(x, list(x.shape), MNN.expr.NCHW)])
        for k, y in enumerate(ys):
            y = MNN.expr.convert(y, MNN.expr.NCHW)
            results[k].append(output_array(y.read()).reshape(y.shape))
    return [(name, np.concatenate(r)) for name, r in zip(names, results)]


@contextlib.contextmanager
def c_stdout_silenced() -> Iterator[None]:
    """MNN prints from C ("The device supports: ...", "MNN use high precision") straight to fd 1, through any
    table edgekit is printing: fd 1 goes to /dev/null while MNN loads."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
