"""Guest-side counting runner: runs artifacts under the counting qemu and reports instructions per invoke.

Run by an emulated device's python (stdlib + numpy + the runtime only; never imports edgekit):
    python3 runner.py REQUEST.json
REQUEST: {"insn_file": path, "jobs": [JOB, ...]}, each JOB {"artifact": path (.tflite or .param),
"runtime": "ncnn" | "ai_edge_litert" | "tflite_runtime", "threads": n, "warmup": w, "number": k, "repeat": r,
"input_shape": [..] (NCHW; only for an ncnn .param without its model.io.json sidecar)}.
Jobs run one after another in this one process (the interpreter and runtimes start once: minutes under
qemu). Each of a job's r windows is k invocations between the marks of the insn_count plugin (syscall 4093
before, 4094 after); the plugin appends the window's guest instruction count to insn_file, read back here.
The last stdout line is the result JSON: per job, counts per window, instructions per invoke, emulated times.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import sys
import time

import numpy as np

MARK_START = 4093
MARK_END = 4094


def main(request_path: str) -> None:
    req = json.loads(open(request_path).read())
    libc = ctypes.CDLL(None, use_errno=True)
    print(json.dumps({"results": [run_job(job, req["insn_file"], libc) for job in req["jobs"]]}))


def run_job(job: dict, insn_file: str, libc: ctypes.CDLL) -> dict:
    """One artifact's windows, or its error: a failing artifact never loses the others."""
    try:
        return count_windows(job, insn_file, libc)
    except Exception as exc:  # noqa: BLE001 (reported as data, like the agent)
        return {"error": f"{type(exc).__name__}: {exc}"}


def count_windows(job: dict, insn_file: str, libc: ctypes.CDLL) -> dict:
    t0 = time.perf_counter()
    invoke = load(job)
    load_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(int(job.get("warmup", 1))):
        invoke()
    number = int(job.get("number", 1))
    counts, wall_ms = [], []
    gc.disable()  # a collection inside one window but not another would make windows differ
    for _ in range(int(job.get("repeat", 1))):
        gc.collect()
        t0 = time.perf_counter()
        libc.syscall(MARK_START)
        for _ in range(number):
            invoke()
        libc.syscall(MARK_END)
        wall_ms.append((time.perf_counter() - t0) * 1e3 / number)
        counts.append(last_count(insn_file))
    gc.enable()
    return {"counts": counts, "number": number, "per_invoke": [c // number for c in counts],
            "emulated_ms_per_invoke": wall_ms, "load_ms": load_ms}


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
    """Honours the artifact's sidecar (model.io.json: blob names, shapes, Option flags) like the agent does;
    a bare .param without one runs with ncnn's default options and the request's input shape."""
    import ncnn

    param = req["artifact"]
    stem = param[: -len(".param")]
    io = json.loads(open(stem + ".io.json").read()) if os.path.exists(stem + ".io.json") else {}
    net = ncnn.Net()
    net.opt.num_threads = int(req["threads"])
    for key, value in (io.get("options") or {}).items():
        setattr(net.opt, key, value)
    if net.load_param(param) != 0 or net.load_model(stem + ".bin") != 0:
        raise RuntimeError(f"ncnn cannot load {param}")
    inputs = io.get("inputs") or net.input_names()
    outputs = io.get("outputs") or net.output_names()
    shapes = io.get("input_shapes") or [req["input_shape"]] * len(inputs)
    mats = [ncnn.Mat(rng.random(shape[1:], dtype=np.float32)) for shape in shapes]  # no batch axis in ncnn

    def invoke() -> None:
        ex = net.create_extractor()
        for name, mat in zip(inputs, mats):
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
