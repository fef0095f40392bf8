"""Guest-side counting runner: runs artifacts under the counting qemu and reports instructions per invoke.

Run by an emulated device's python (stdlib + numpy + the runtime only; never imports edgekit):
    python3 runner.py REQUEST.json
REQUEST: {"insn_file": path, "jobs": [JOB, ...]}, each JOB {"artifact": path (.tflite, .param, .onnx or .mnn),
"runtime": "ncnn" | "ai_edge_litert" | "tflite_runtime" | "onnxruntime" | "cv2" | "MNN", "threads": n, "warmup": w,
"number": k, "repeat": r, "input_shape": [..] (NCHW, for an ncnn .param without its model.io.json sidecar; a .tflite
with free dimensions is resized to it, NHWC or NCHW), "fill": v (optional: every input element v, as ncnn's
benchncnn fills 0.01; default seeded uniform [0, 1)), "options": {ncnn Option flags, over the sidecar's},
"site": folder (optional: put first on sys.path, another release of the runtime than the device's; every job of
a request has the same)}.
Loading, inputs and the counting windows are the on-device agent's own (edgekit/agent/agent.py, imported from
its file beside this package: one implementation of how an artifact runs and how a window is marked). Jobs run
one after another in this one process (the interpreter and runtimes start once: minutes under qemu). Each of a
job's r windows is k invocations between the plugin's marks. The last stdout line is the result JSON: per job,
counts per window, instructions per invoke, each guest thread's share, emulated times.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "agent"))
import agent


def main(request_path: str) -> None:
    with open(request_path) as handle:
        req = json.load(handle)
    os.environ["EDGEKIT_INSN_FILE"] = req["insn_file"]
    sites = {job.get("site") for job in req["jobs"]}
    if len(sites) > 1:
        raise SystemExit(f"one site per guest: {sorted(map(str, sites))}")
    site = sites.pop() if sites else None
    if site:
        sys.path.insert(0, site)
    counter = agent.InsnCounter()
    print(json.dumps({"results": [run_job(job, counter) for job in req["jobs"]]}))


def run_job(job: dict, counter: agent.InsnCounter) -> dict:
    """One artifact's windows, or its error: a failing artifact never loses the others."""
    try:
        return count_windows(job, counter)
    except Exception as exc:  # noqa: BLE001 (reported as data, like the agent)
        return {"error": f"{type(exc).__name__}: {exc}"}


def count_windows(job: dict, counter: agent.InsnCounter) -> dict:
    t0 = time.perf_counter()
    runner = load(job)
    load_ms = (time.perf_counter() - t0) * 1e3
    for _ in range(int(job.get("warmup", 1))):
        runner.invoke()
    number = int(job.get("number", 1))
    counts, splits, mixes, misses, wall_ms = [], [], [], [], []
    gc.disable()  # a collection inside one window but not another would make windows differ
    for _ in range(int(job.get("repeat", 1))):
        gc.collect()
        invoke = runner.invoke
        t0 = time.perf_counter()  # clocks outside the marks: their values must not change the count
        counter.start()
        for _ in range(number):
            invoke()
        count = counter.stop()
        elapsed = time.perf_counter() - t0
        if count is None:
            raise RuntimeError(
                f"the counting plugin wrote nothing to {counter.path}: is qemu running with -plugin?"
            )
        wall_ms.append(elapsed * 1e3 / number)
        counts.append(count)
        splits.append([c // number for c in counter.last_split])
        mixes.append([c // number for c in counter.last_mix])
        misses.append([c // number for c in counter.last_misses])
    gc.enable()
    return {
        "counts": counts,
        "number": number,
        "per_invoke": [c // number for c in counts],
        "per_thread": splits,
        "mix": mixes,
        "misses": misses,
        "emulated_ms_per_invoke": wall_ms,
        "load_ms": load_ms,
        "outputs": getattr(runner, "out_blobs", None),
    }


def load(job: dict) -> Any:
    """The agent's runner for the artifact, with its input set (fixed: seeded, or `fill` everywhere)."""
    threads = int(job["threads"])
    if job["runtime"] == "ncnn":
        param = job["artifact"]
        stem = param[: -len(".param")]
        io: dict = {}
        if os.path.exists(stem + ".io.json"):
            with open(stem + ".io.json") as handle:
                io = json.load(handle)
        if job.get("input_shape"):
            io["input_shapes"] = [job["input_shape"]]
        io["options"] = {**(io.get("options") or {}), **(job.get("options") or {})}
        runner = agent.NcnnRunner(param, stem + ".bin", threads, io)
        shape = (io.get("input_shapes") or [None])[0]
        if not shape:
            raise ValueError(f"{param}: no input shape (no model.io.json sidecar and no input_shape)")
    elif job["runtime"] in ("ai_edge_litert", "tflite_runtime"):
        runner = agent.TfliteRunner(job["artifact"], threads, job["runtime"])
        if job.get("input_shape"):
            _resize_tflite(runner, list(job["input_shape"]))
        shape = list(runner.input_shape())
    elif job["runtime"] == "onnxruntime":
        runner = agent.OnnxRuntimeRunner(job["artifact"], threads)
        shape = list(runner.input_shape())
    elif job["runtime"] == "MNN":
        runner = agent.MnnRunner(job["artifact"], threads, "high")  # as mnn-fp32 runs
        shape = job.get("input_shape")
        if not shape:
            raise ValueError(
                f"{job['artifact']}: an .mnn file does not say its input shape: give input_shape"
            )
    elif job["runtime"] == "cv2":
        runner = agent.OpenCvRunner(job["artifact"], threads)
        shape = job.get("input_shape")
        if not shape:
            raise ValueError(f"{job['artifact']}: cv2.dnn does not say its input shape: give input_shape")
    else:
        raise ValueError(f"unknown runtime {job['runtime']!r}")
    if job.get("fill") is not None:
        x = np.full(shape, float(job["fill"]), dtype=np.float32)
    else:
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
    runner.set_input(x)
    return runner


def _resize_tflite(runner: Any, given: list[int]) -> None:
    """A .tflite whose input has free dimensions (shape_signature -1, but the batch) runs at the given shape, NHWC
    as the file or NCHW (resize_tensor_input + allocate_tensors); one whose shape is fixed runs as it states (the
    host checked a given shape against it). Unresized, free dimensions ran at the converter's 1x1 placeholder."""
    detail = runner.inp
    signature = [int(d) for d in detail.get("shape_signature", detail["shape"])]
    if all(d >= 0 for d in signature[1:]):
        return
    nhwc = [given[0], *given[2:], given[1]] if len(given) == 4 else given
    for shape in (given, nhwc):
        if len(shape) == len(signature) and all(d < 0 or n == d for n, d in zip(shape, signature)):
            runner.interp.resize_tensor_input(detail["index"], shape)
            runner.interp.allocate_tensors()
            runner.inp = runner.interp.get_input_details()[0]
            runner.outs = runner.interp.get_output_details()
            return
    raise ValueError(f"input_shape {given} does not fit the .tflite's input {signature}")


if __name__ == "__main__":
    main(sys.argv[1])
