"""How close an artifact's outputs are to the original model's, and to the task.

- `check`: every converted artifact against the ONNX model on the evaluation inputs (max/mean abs error,
  cosine, top-1 agreement, boxes matched, task metrics) and the recipe's gates (edgekit convert);
- `compare`: outputs pulled back from a device against the ONNX model and against the host run (edgekit deploy),
  with check's numbers so a device's fidelity means what the converter's check means;
- `metrics`: the task metrics against labels (top-1, mAP@0.5, mAP@0.5:0.95, NMS).
"""
