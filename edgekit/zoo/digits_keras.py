"""The digits classifier as a TensorFlow user would bring it: a Keras model, channels-last, saved as `.keras`.

Same data as edgekit.zoo.digits (scikit-learn's handwritten digits shipped in the package, 16x16, the same
stratified split) and the same shape of network (three stages of two Conv-BN-ReLU, 8/16/32 channels, global
average pool, dense), but built and trained with Keras, input NHWC [N, 16, 16, 1]. It is the recipe
recipes/digits-keras.yaml: both TFLite routes (TensorFlow's TFLiteConverter, and ONNX + onnx2tf) side by side.

Train and ship (about 15 CPU-s, one thread, seeded, TensorFlow's deterministic ops):
    python -m edgekit.zoo.digits_keras --ship
which writes edgekit/zoo/weights/digits-keras.keras and digits-keras.json (config, time, test top-1).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgekit.zoo import digits

WEIGHTS = Path(__file__).resolve().parent / "weights" / "digits-keras.keras"
CONFIG: dict[str, Any] = {
    "widths": list(digits.DEFAULT_WIDTHS),
    "epochs": 15,
    "batch_size": 64,
    "lr": 3e-3,
    "weight_decay": 5e-4,
    "bn_momentum": 0.9,
    "seed": 0,
}


def _nhwc(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x).transpose(0, 2, 3, 1))


def calibration(n: int = 100, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Recipe data builder: n training-split images, NHWC [n, 16, 16, 1] float32, and their labels."""
    x, y = digits.calibration(n, seed)
    return _nhwc(x), y


def test_split(n: int = 360, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Recipe data builder: n test-split images (the whole split when n >= 360), NHWC, with labels."""
    x, y = digits.test_split(n, seed)
    return _nhwc(x), y


def build(widths: list[int] | tuple[int, ...] = digits.DEFAULT_WIDTHS, bn_momentum: float = 0.9) -> Any:
    """The Keras model: input `input` [N, 16, 16, 1], output `logits` [N, 10]."""
    import keras  # type: ignore[import-untyped]

    inp = keras.Input((digits.SIZE, digits.SIZE, 1), name="input")
    h = inp
    for i, width in enumerate(widths):
        for j in range(2):
            h = keras.layers.Conv2D(
                width, 3, strides=2 if (i > 0 and j == 0) else 1, padding="same", use_bias=False
            )(h)
            h = keras.layers.BatchNormalization(momentum=bn_momentum)(h)  # Keras's 0.99 lags 15 short epochs
            h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    out = keras.layers.Dense(digits.NUM_CLASSES, name="logits")(h)
    return keras.Model(inp, out, name="digits_keras")


def train(path: Path = WEIGHTS) -> dict[str, Any]:
    """Train from the seed on one thread, save the model at `path` and return the metadata written beside it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras.utils.set_random_seed(CONFIG["seed"])
    tf.config.experimental.enable_op_determinism()
    x, y = digits.train_data()
    xt, yt = test_split()
    model = build(CONFIG["widths"], CONFIG["bn_momentum"])
    model.compile(
        optimizer=keras.optimizers.AdamW(CONFIG["lr"], weight_decay=CONFIG["weight_decay"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    cpu0, start = _cpu_s(), time.perf_counter()
    model.fit(
        _nhwc(x),
        np.asarray(y),
        batch_size=CONFIG["batch_size"],
        epochs=CONFIG["epochs"],
        shuffle=True,
        verbose=0,
    )
    seconds, cpu = time.perf_counter() - start, _cpu_s() - cpu0
    top1 = float((model.predict(xt, batch_size=64, verbose=0).argmax(1) == yt).mean())
    shipped = build(CONFIG["widths"], CONFIG["bn_momentum"])  # uncompiled: the file holds no optimizer state
    shipped.set_weights(model.get_weights())
    shipped.save(path)
    meta = {
        "model": "digits-keras",
        "config": CONFIG,
        "train_seconds": round(seconds, 2),
        "train_cpu_seconds": round(cpu, 2),
        "metrics": {"top1": top1, "test_images": len(yt)},
        "parameters": int(model.count_params()),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "machine": platform.machine(),
        "threads": 1,
    }
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(
        description="train the Keras digits classifier (edgekit.zoo.digits_keras)"
    )
    parser.add_argument(
        "--ship", action="store_true", help=f"write {WEIGHTS} (else a file in the current folder)"
    )
    args = parser.parse_args()
    meta = train(WEIGHTS if args.ship else Path("digits-keras.keras"))
    print(json.dumps(meta["metrics"]), f"{meta['train_seconds']} s")


if __name__ == "__main__":
    main()
