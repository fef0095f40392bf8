"""ONNX Runtime: the ONNX model itself (fp32) or its static QDQ INT8 quantization, run by onnxruntime's CPU
execution provider on boards and here (the host's onnxruntime is the one onnx2tf pins)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edgekit.formats import Format, Runtime
from edgekit.runtimes.base import DevicePackage, Outputs, RuntimeSpec
from edgekit.runtimes.host import run_onnx


class OnnxRuntime(RuntimeSpec):
    runtime = Runtime.ONNXRUNTIME
    formats = (Format.ONNX_FP32, Format.ONNX_INT8)
    suffixes = (".onnx",)
    packages = (DevicePackage("onnxruntime", "onnxruntime", termux="python-onnxruntime", pin="1.23.0"),)
    converter = "edgekit.convert.onnxrt"
    agent_runner = "OnnxRuntimeRunner"

    @classmethod
    def run(cls, files: Sequence[Path], inputs: np.ndarray, threads: int = 1) -> Outputs:
        return run_onnx(Path(files[0]), inputs, threads)

    @classmethod
    def check_file(cls, files: Sequence[Path]) -> None:
        """The file checks every .onnx runtime shares (`check_onnx_file`), then onnxruntime loads it here: a model
        it cannot load (an op of a custom domain, an opset it does not know) is named before anything is sent."""
        check_onnx_file(files)
        if cls.host_module() is None:
            return
        check_ort_file(Path(files[0]))  # InputDataError naming the file and onnxruntime's reason


# onnxruntime optimises the graph as it loads it (constant folding): a 195-byte model folding a 20000x20000
# constant took 34 s and 4.8 GB in edgekit's own process. The check loads it in a child process, its address
# space limited (2 GiB, or 8 times the file for a model with big weights) and its time too.
CHECK_TIMEOUT_S = 120
CHECK_MEMORY_BYTES = 2 * 1024**3
_CHECK_CHILD = (
    "import resource, sys\n"
    "limit = int(sys.argv[2])\n"
    "resource.setrlimit(resource.RLIMIT_AS, (limit, limit))\n"
    "try:\n"
    "    import onnxruntime as ort\n"
    "    opts = ort.SessionOptions()\n"
    "    opts.intra_op_num_threads = 1\n"
    "    opts.inter_op_num_threads = 1\n"
    "    ort.InferenceSession(sys.argv[1], opts, providers=['CPUExecutionProvider'])\n"
    "except BaseException as exc:\n"
    "    said = ' '.join(str(exc).split()) or type(exc).__name__\n"
    "    sys.stderr.write('edgekit-ort-check: ' + said + '\\n')\n"
    "    sys.exit(3)\n"
)


def check_ort_file(path: Path) -> None:
    """InputDataError (which file, onnxruntime's reason) when onnxruntime cannot load the .onnx at PATH: it
    raises, it needs more memory than the check allows, it crashes, or it does not finish in CHECK_TIMEOUT_S."""
    from importlib.metadata import version

    from edgekit.errors import InputDataError
    from edgekit.runtimes.child_check import check_in_child
    from edgekit.runtimes.host import ort_reason

    limit = max(CHECK_MEMORY_BYTES, 8 * path.stat().st_size)
    hint = (
        "onnxruntime runs the fidelity reference and the onnx-* formats: re-export the model with standard ONNX "
        "ops (no custom domain), an opset onnxruntime supports (e.g. opset 17), and no constant it would build "
        "at load time bigger than the model"
    )
    cannot = f"onnxruntime {version('onnxruntime')} cannot load {path}"
    try:
        outcome = check_in_child(
            _CHECK_CHILD, "edgekit-ort-check", [str(path), str(limit)], CHECK_TIMEOUT_S, "loading"
        )
    except subprocess.TimeoutExpired:
        raise InputDataError(
            f"{cannot}: loading it did not finish in {CHECK_TIMEOUT_S} s", where=str(path), hint=hint
        ) from None
    if outcome is None:
        return
    kind, why = outcome
    if kind == "said":
        why = ort_reason(RuntimeError(why))
        if "bad_alloc" in why or "MemoryError" in why:
            why = f"loading it needs more than {limit / 1024**3:.1f} GiB of memory ({why})"
    raise InputDataError(f"{cannot}: {why}", where=str(path), hint=hint)


def check_onnx_file(files: Sequence[Path]) -> None:
    """InputDataError when the .onnx is no file bench can send: unreadable, an IR version newer than the boards'
    onnxruntime reads, or weights in a file beside it."""
    from edgekit.convert.onnx_file import ORT_MAX_IR_VERSION, external_data_files, read_onnx
    from edgekit.errors import InputDataError

    path = Path(files[0])
    model = read_onnx(path, str(path))
    if model.ir_version > ORT_MAX_IR_VERSION:  # onnxruntime refuses the file whatever its operators
        raise InputDataError(
            f"its IR version is {model.ir_version}; onnxruntime {OnnxRuntime.packages[0].pin} reads up to "
            f"{ORT_MAX_IR_VERSION}",
            where=str(path),
            hint=f"write it as IR {ORT_MAX_IR_VERSION} (the operators are the opset's, unchanged): python -c "
            f"\"import onnx; m = onnx.load('{path}'); m.ir_version = {ORT_MAX_IR_VERSION}; onnx.save(m, 'ir11.onnx')\""
            ", or give it to a recipe (model: {kind: onnx, path: ...}), which does so",
        )
    data = external_data_files(model, path, str(path))
    if data:  # bench sends one file per artifact (a recipe's ONNX is copied into the cache with its data)
        raise InputDataError(
            f"its weights are in {', '.join(f.name for f in data)}, beside it: bench sends the one model file",
            where=str(path),
            hint=f"save it with the weights inside: python -c \"import onnx; onnx.save(onnx.load('{path}'), "
            "'whole.onnx')\", or give it to a recipe (model: {kind: onnx, path: ...})",
        )
