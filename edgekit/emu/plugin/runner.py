"""Guest-side counting runner: runs one artifact under the counting qemu and reports instructions per invoke.

Run by an emulated device's python (stdlib + numpy + the runtime only; never imports edgekit):
    python3 runner.py REQUEST.json
REQUEST: {"artifact": path (.tflite or .param), "runtime": "ncnn" | "ai_edge_litert" | "tflite_runtime",
"threads": n, "input_shape": [..] (ncnn; NCHW), "warmup": w, "number": k, "repeat": r, "insn_file": path}.
Each of the r windows is k invocations between the marks of the insn_count plugin (syscall 4093 before,
4094 after); the plugin appends the window's guest instruction count to insn_file, which is read back here.
The last stdout line is the result JSON: counts per window, instructions per invoke, emulated wall times.
"""

from __future__ import annotations

import ctypes
import gc
import json
import sys
import time

import numpy as np

MARK_START = 4093
MARK_END = 4094


def main(request_path: str) -> None:
    req = json.loads(open(request_path).read())
    libc = ctypes.CDLL(None, use_errno=True)
    t0 = time.perf_counter()
    invoke = load(req)
    load_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(int(req.get("warmup", 1))):
        invoke()
    number = int(req.get("number", 1))
    counts, wall_ms = [], []
    gc.disable()  # a collection inside one window but not another would make windows differ
    for _ in range(int(req.get("repeat", 1))):
        gc.collect()
        t0 = time.perf_counter()
        libc.syscall(MARK_START)
        for _ in range(number):
            invoke()
        libc.syscall(MARK_END)
        wall_ms.append((time.perf_counter() - t0) * 1e3 / number)
        counts.append(last_count(req["insn_file"]))
    result = {"counts": counts, "number": number, "per_invoke": [c // number for c in counts],
              "emulated_ms_per_invoke": wall_ms, "load_ms": load_ms, "runtime": req["runtime"],
              "threads": req["threads"]}
    print(json.dumps(result))


def last_count(path: str) -> int:
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    if not lines:
        raise RuntimeError(f"the counting plugin wrote nothing to {path}: is qemu running with -plugin?")
    return int(lines[-1])


def load(req: dict):
    """Load the artifact and return a function that runs one inference on fixed (seeded) inputs."""
    rng = np.random.default_rng(0)
    if req["runtime"] == "ncnn":
        return load_ncnn(req, rng)
    return load_tflite(req, rng)


def load_ncnn(req: dict, rng: np.random.Generator):
    import ncnn

    param = req["artifact"]
    net = ncnn.Net()
    net.opt.num_threads = int(req["threads"])
    if net.load_param(param) != 0 or net.load_model(param[: -len(".param")] + ".bin") != 0:
        raise RuntimeError(f"ncnn cannot load {param}")
    shape = [d for d in req["input_shape"]]
    data = rng.random(shape[1:] if len(shape) == 4 else shape, dtype=np.float32)  # drop N of NCHW
    mat = ncnn.Mat(data)
    inputs, outputs = net.input_names(), net.output_names()

    def invoke() -> None:
        ex = net.create_extractor()
        for name in inputs:
            ex.input(name, mat)
        for name in outputs:
            ex.extract(name)

    return invoke


def load_tflite(req: dict, rng: np.random.Generator):
    if req["runtime"] == "tflite_runtime":
        from tflite_runtime.interpreter import Interpreter
    else:
        from ai_edge_litert.interpreter import Interpreter
    interp = Interpreter(model_path=req["artifact"], num_threads=int(req["threads"]))
    interp.allocate_tensors()
    for detail in interp.get_input_details():
        dtype = np.dtype(detail["dtype"])
        if dtype.kind == "f":
            value = rng.random(detail["shape"], dtype=np.float32).astype(dtype)
        else:
            info = np.iinfo(dtype)
            value = rng.integers(info.min, info.max, size=detail["shape"], endpoint=True).astype(dtype)
        interp.set_tensor(detail["index"], value)
    return interp.invoke


if __name__ == "__main__":
    main(sys.argv[1])
