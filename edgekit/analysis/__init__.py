"""Where INT8 loses accuracy and how to win it back.

- `analyze`: layer-by-layer error of a quantized artifact against the float model (`edgekit analyze`);
- `float_fallback`: keep the worst layers in float until the recipe's gates pass (`edgekit analyze --fix`);
  its TFLite side is edgekit.convert.tflite_selective, which a recipe's `int8.tflite_float_ops` uses too;
- `host_timing`: the fix's candidates timed on this host in interleaved rounds, and why a runtime refused one.
"""
