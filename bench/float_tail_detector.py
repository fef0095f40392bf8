"""`int8.tflite_float_tail: true` on the zoo's real detector: how many ops its output tail keeps in float.

tests/test_analyze.py checks the flag on a detector's shape at toy size (two heads, each one's decoding after its
convolution); this is the same conversion on yolov5_lite (width 0.25, 64x64, ~300 ops: 27-60 s of onnx2tf and
TensorFlow), which the suite ran before. Prints the conversion's time, the tail's length (79 ops when it was
measured; > 20 expected), the dtypes its ops write (float32 expected) and those the convolutions write (int8
expected), and the artifact's finding. Runs in a fresh EDGEKIT_HOME unless one is set.

    .venv/bin/python bench/float_tail_detector.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

DETECTOR = """
name: det-tail
task: detect
model: {kind: torch, builder: "edgekit.zoo.yolov5_lite:build", args: {num_classes: 3, width: 0.25, size: 64, neck: 16}}
input: {name: images, shape: [1, 3, 64, 64], layout: NCHW}
outputs: [boxes, scores]
calibration: {data: {kind: builder, builder: "edgekit.zoo.shapes:images", args: {size: 64}, samples: 8, seed: 0}}
evaluation: {data: {kind: builder, builder: "edgekit.zoo.shapes:test_set", args: {size: 64}, samples: 4, seed: 0}}
formats: [tflite-int8]
int8: {tflite_float_tail: true}
"""


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="float-tail-"))
    os.environ.setdefault("EDGEKIT_HOME", str(folder / "home"))
    from ai_edge_litert.interpreter import Interpreter

    from edgekit.convert.pipeline import convert_recipe
    from edgekit.convert.tflite_selective import TFLITE_WEIGHTED, tflite_output_tail
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe

    path = folder / "det-tail.yaml"
    path.write_text(DETECTOR)
    start = time.perf_counter()
    (art,) = convert_recipe(load_recipe(path), (Format.TFLITE_INT8,))
    print(f"tflite-int8 with its output tail in float: {art.status} in {time.perf_counter() - start:.1f} s")
    if art.status != "ok":
        print(art.error)
        return
    interp = Interpreter(model_path=str(art.files[0]))
    dtype = {t["name"]: t["dtype"].__name__ for t in interp.get_tensor_details()}
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    tail = tflite_output_tail(art.files[0])
    convs = [
        names[int(op["outputs"][0])] for op in interp._get_ops_details() if op["op_name"] in TFLITE_WEIGHTED
    ]
    print(f"output tail: {len(tail)} ops, writing {sorted({dtype[n] for n in tail})}")
    print(f"convolutions: {len(convs)}, writing {sorted({dtype[n] for n in convs})}")
    for finding in art.provenance["findings"]:
        print(f"finding: {finding}")


if __name__ == "__main__":
    main()
