"""Where INT8 loses accuracy and how to win it back.

- `analyze`: layer-by-layer error of a quantized artifact against the float model (`edgekit analyze`);
- `float_fallback`: keep the worst layers in float until the recipe's gates pass (`edgekit analyze --fix`);
- `tflite_selective`: the TFLite side of that fix, run in a child process as the TFLite converter is.
"""
