"""NCNN INT8 post-training quantization (work in progress)."""

QUANTIZER_VERSION = "1"
