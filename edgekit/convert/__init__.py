"""Converters: model sources -> ONNX -> TFLite / NCNN artifacts, each checked against the original."""
