"""Timing models on this host, for `edgekit analyze --fix`'s price of a fix: a one-thread run of an artifact loaded
once, the candidates timed together in interleaved rounds with other processes' share of the CPUs over them, and
why the host runtime refused a candidate, in a line. Relative costs on this machine, never a device figure.
"""

from __future__ import annotations

import gc
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgekit.convert.base import Artifact
from edgekit.formats import Runtime


def refusal(exc: Exception) -> str:
    """Why the host runtime refused a candidate, in a line: TFLite's Select-TF-ops refusal (a long message
    that ends in the node) names the ops, the rest is cut at 300 characters."""
    flex = sorted(set(re.findall(r"\(Flex(\w+)\)", str(exc))))
    if "Select TensorFlow op" in str(exc) and flex:
        return (
            f"needs Select TF ops ({', '.join(flex)}): kept in float they are TensorFlow ops the TFLite builtin "
            "runtime cannot run"
        )
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


HOST_ROUNDS = 21  # each candidate timed once per round: p10 and p90 are the 3rd fastest and slowest


def host_run(art: Artifact, x: np.ndarray) -> Callable[[], None]:
    """One single-thread inference of `art` on `x` on this host, loaded once (a relative cost, never a device
    figure)."""
    if art.format.runtime is Runtime.TFLITE:
        from ai_edge_litert.interpreter import Interpreter

        from edgekit.runtimes import _fit_layout, _quantize
        from edgekit.runtimes.host import layout_axes

        interp = Interpreter(model_path=str(art.main_file), num_threads=1)
        interp.allocate_tensors()
        (inp,) = interp.get_input_details()
        axes, _ = layout_axes(art.provenance.get("layout"), 0)  # as recorded at conversion, else by shape
        interp.set_tensor(
            inp["index"], _quantize(_fit_layout(x.astype(np.float32), tuple(inp["shape"]), axes), inp)
        )
        run: Callable[[], Any] = interp.invoke
    elif art.format.runtime is Runtime.ONNXRUNTIME:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(art.main_file), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x.astype(np.float32)}

        def run() -> None:
            session.run(None, feed)
    else:
        from edgekit.convert.ncnn.runtime import NcnnModel

        param = next(f for f in art.files if f.suffix == ".param")
        model = NcnnModel(param, next(f for f in art.files if f.suffix == ".bin"))

        def run() -> None:
            model.run_one(x)

    return run


def time_interleaved(
    runs: Sequence[Callable[[], Any]], rounds: int = HOST_ROUNDS, warmup: int = 3
) -> tuple[list[list[float]], float | None, dict[int, Exception]]:
    """Each run's latencies (ms) over `rounds` rounds, every run timed once per round in a rotating order, and
    other processes' share of this machine's CPUs over the rounds (the deploy agent's measure: None where
    /proc/stat cannot be read). Timed one after the other, 15 times each, a load that came and went fell on
    some candidates only. A run that raises (in its warmup or a round) is timed no more: what it raised, by its
    index, is the third part."""
    from edgekit.agent.agent import cpu_snapshot, extend_busy_window, others_cpu_share

    failed: dict[int, Exception] = {}

    def ran(k: int) -> bool:
        try:
            runs[k]()
            return True
        except Exception as exc:  # noqa: BLE001 - a runtime failing on a later call fails its candidate only
            failed[k] = exc
            return False

    for k in range(len(runs)):
        for _ in range(warmup):
            if not ran(k):
                break
    times: list[list[float]] = [[] for _ in runs]

    def any_live() -> None:  # the busy window's extension: untimed calls of a model that still runs
        live = [k for k in range(len(runs)) if k not in failed]
        if live:
            ran(live[0])
        else:
            time.sleep(0.01)

    gc.disable()
    try:
        before = cpu_snapshot()
        for r in range(rounds if runs else 0):
            for k in [(r + i) % len(runs) for i in range(len(runs))]:
                if k in failed:
                    continue
                start = time.perf_counter()
                if ran(k):
                    times[k].append((time.perf_counter() - start) * 1000)
        if runs:
            extend_busy_window(any_live, before)  # a window under 0.1 s cannot be told busy or not
        busy = others_cpu_share(before, cpu_snapshot())
    finally:
        gc.enable()
    return times, busy, failed
