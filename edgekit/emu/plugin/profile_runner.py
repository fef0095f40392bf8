"""Guest-side per-layer profiler: guest instructions of every ncnn layer of one artifact, exactly.

Run by an emulated device's python under the counting qemu (stdlib + numpy + ncnn only; never imports edgekit):
    python3 profile_runner.py REQUEST.json
REQUEST: {"insn_file": path, "artifact": path (.param), "threads": n, "warmup": w,
"input_shape": [..] (NCHW; only without the model.io.json sidecar), "fill": v (optional: every input
element v)}.

How: one extractor, layers visited in .param order (which is topological). For each layer, window A extracts
its first top blob (ncnn computes exactly that layer: everything it needs is already computed), then window B
extracts the same blob again (cached: the same extraction and copy-out work, no layer). A - B is the layer's
own instructions. Each window is marked by the on-device agent's own InsnCounter (edgekit/agent/agent.py,
imported from its file beside this package, as runner.py does: one implementation of a counting window). A last window counts one
whole inference in a fresh extractor, so the host can say how much of it the layers account for.
The last stdout line is the result JSON.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from typing import Any

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "agent"))
import agent


def main(request_path: str) -> None:
    req = json.loads(read_text(request_path))
    try:
        result = profile(req)
    except Exception as exc:  # noqa: BLE001 (reported as data, like the counting runner)
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result))


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def read_layers(param: str) -> list[dict]:
    """(type, name, tops, params) of every layer of a text .param, in file order."""
    lines = [ln for ln in read_text(param).splitlines() if ln.strip()]
    layers = []
    for line in lines[2:]:
        tok = line.split()
        nb, nt = int(tok[2]), int(tok[3])
        params = dict(t.split("=", 1) for t in tok[4 + nb + nt :] if "=" in t)
        layers.append({"type": tok[0], "name": tok[1], "tops": tok[4 + nb : 4 + nb + nt], "params": params})
    return layers


def own_split(window: list, twin: list) -> list:
    """A layer's own instructions per guest thread: its window's shares less its twin's (thread by thread; the
    twin's re-extraction runs on the calling thread). [] when the plugin gave no shares."""
    if not window:
        return []
    twin = list(twin) + [0] * (len(window) - len(twin))
    return [max(0, int(a) - int(b)) for a, b in zip(window, twin)]


def unpacked_shape(mat: Any) -> list[int]:
    """(c, h, w) / (h, w) / (w,) with the packed axis (the outermost) multiplied back by elempack."""
    if mat.dims == 0:
        return []
    dims = [int(mat.c), int(mat.h), int(mat.w)][3 - min(mat.dims, 3) :]
    dims[0] *= int(mat.elempack)
    return dims


def profile(req: dict) -> dict:
    import ncnn

    param = req["artifact"]
    stem = param[: -len(".param")]
    io = json.loads(read_text(stem + ".io.json")) if os.path.exists(stem + ".io.json") else {}
    net = ncnn.Net()
    net.opt.num_threads = int(req.get("threads", 1))
    for key, value in (io.get("options") or {}).items():
        setattr(net.opt, key, value)
    if net.load_param(param) != 0 or net.load_model(stem + ".bin") != 0:
        raise RuntimeError(f"ncnn cannot load {param}")
    inputs = io.get("inputs") or net.input_names()
    outputs = io.get("outputs") or net.output_names()
    shapes = io.get("input_shapes") or [req["input_shape"]] * len(inputs)
    rng = np.random.default_rng(0)
    fill = req.get("fill")  # a bare .param: every element this value, as benchncnn
    arrays = [  # no batch axis in ncnn
        np.full(shape[1:], fill, dtype=np.float32)
        if fill is not None
        else rng.random(shape[1:], dtype=np.float32)
        for shape in shapes
    ]
    mats = [ncnn.Mat(a).clone() for a in arrays]  # owned: a borrowed input crashes an in-place first layer
    layers = [layer for layer in read_layers(param) if layer["type"] != "Input"]
    os.environ["EDGEKIT_INSN_FILE"] = req["insn_file"]
    counter = agent.InsnCounter()
    got: list = []
    splits: list = []  # each window's per-thread shares: which guest threads did a layer's work

    def window(work: Any, *args: Any) -> Any:
        counter.start()
        out = work(*args)
        got.append(counter.stop())
        splits.append(list(counter.last_split))
        return out

    def extractor() -> Any:
        ex = net.create_extractor()
        for name, mat in zip(inputs, mats):
            ex.input(name, mat)
        return ex

    for _ in range(int(req.get("warmup", 1))):
        ex = extractor()
        for name in outputs:
            ex.extract(name)
    gc.disable()  # a collection inside one window but not its twin would make the difference wrong
    ex = extractor()
    shapes_out = []
    no_twin = set()  # layers whose output is empty: nothing is cached to extract again
    for k, layer in enumerate(layers):
        blob = layer["tops"][0]
        # type 1 in both windows: the blob as stored (packed, int8 / fp16 / fp32), no conversion to count
        ret, mat = window(ex.extract, blob, 1)
        if ret != 0:
            raise RuntimeError(f"ncnn failed to compute blob {blob!r} of layer {layer['name']} (error {ret})")
        if mat.dims == 0:  # an empty result (a detector that found nothing): ncnn would run the layer again
            no_twin.add(k)
            got.append(None)
            splits.append([])
        else:
            ret2, mat = window(ex.extract, blob, 1)
            if ret2 != 0:
                raise RuntimeError(
                    f"ncnn failed to extract blob {blob!r} of layer {layer['name']} again (error {ret2})"
                )
        shapes_out.append(
            {
                "shape": unpacked_shape(mat),
                "elembits": int(mat.elemsize * 8 // max(1, mat.elempack)) if mat.dims else 0,
            }
        )
        del mat
    ex = None
    gc.collect()

    def whole() -> None:
        ex = extractor()
        for name in outputs:
            ex.extract(name)

    window(whole)
    gc.enable()
    twins = sorted(got[2 * k + 1] for k in range(len(layers)) if k not in no_twin)
    counted = [c for i, c in enumerate(got) if not (i % 2 == 1 and i // 2 in no_twin)]  # every window run
    if len(got) != 2 * len(layers) + 1 or None in counted:
        raise RuntimeError(f"expected {2 * len(layers) + 1} counted windows, the plugin wrote {len(got)}")
    for (
        k
    ) in no_twin:  # its extraction's own work taken as the other layers' median: a few thousand instructions
        got[2 * k + 1] = twins[len(twins) // 2] if twins else 0
    rows = []
    for k, layer in enumerate(layers):
        rows.append(
            {
                "name": layer["name"],
                "type": layer["type"],
                "params": layer["params"],
                "window": got[2 * k],
                "overhead": got[2 * k + 1],
                "split": own_split(splits[2 * k], splits[2 * k + 1]),
                **shapes_out[k],
            }
        )
    return {
        "layers": rows,
        "total": got[-1],
        "threads": net.opt.num_threads,
        "options": io.get("options") or {},
        "format": io.get("format"),
    }


if __name__ == "__main__":
    main(sys.argv[1])
