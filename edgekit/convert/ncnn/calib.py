"""Activation thresholds for ncnn INT8: absmax, or the KL-divergence search of ncnn's own ncnn2table.

For every blob that feeds a quantized layer, the fp32 model is run on the calibration inputs and the blob's
absolute maximum is taken (pass 1); for KL, a 2048-bin histogram of |x| over (0, absmax] follows (pass 2,
zeros skipped, as ncnn2table does). The KL search then picks, among clipping points 128..2047 bins, the one
whose 128-level quantized distribution is closest to the clipped original: threshold = (bin + 0.5) * absmax /
2048. The activation scale ncnn stores is 127 / threshold. The search is vectorised over candidate thresholds,
but the arithmetic is that of ncnn2table (tools/quantize/ncnn2table.cpp, quantize_KL).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

NUM_BINS = 2048
TARGET_BINS = 128
KL_EPS = 1e-4
# (input batch of one, blob names) -> those blobs' arrays; NcnnModel.extract with the inputs wrapped in a list
ExtractFn = Callable[[np.ndarray, Sequence[str]], list[np.ndarray]]


class NonFiniteActivation(ValueError):
    """A blob held NaN or infinity on a calibration input: no threshold can be taken from it (max() skips a NaN,
    so that input's values were dropped; a blob NaN on every input read as "always zero")."""

    def __init__(self, blob: str, index: int, nan: int, inf: int) -> None:
        self.blob, self.index, self.nan, self.inf = blob, index, nan, inf
        super().__init__(f"blob {blob!r}: {nan} NaN and {inf} infinite values on calibration input {index}")


@dataclass
class BlobStats:
    """What calibration saw of one blob: its absolute maximum and, for KL, the histogram of |x|."""

    absmax: float = 0.0
    histogram: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BINS, np.int64))

    def add_absmax(self, x: np.ndarray) -> None:
        """Take x's absolute maximum in; x must be finite (collect checks it: a NaN would be skipped here)."""
        if x.size:
            self.absmax = max(self.absmax, float(x.max()), -float(x.min()))

    def add_histogram(self, x: np.ndarray) -> None:
        """Bin |x| / absmax * 2048 (float32, truncated, as ncnn2table); exact zeros are not counted."""
        if self.absmax <= 0.0:
            return
        v = np.abs(x, dtype=np.float32).ravel()
        np.divide(v, np.float32(self.absmax), out=v)
        np.multiply(v, np.float32(NUM_BINS), out=v)
        idx = v.astype(np.int32)
        np.minimum(idx, NUM_BINS - 1, out=idx)
        counts = np.bincount(idx, minlength=NUM_BINS)
        counts[0] -= v.size - np.count_nonzero(v)  # zeros landed in bin 0: take them out again
        self.histogram += counts


def threshold(stats: BlobStats, method: str) -> float:
    """The clipping threshold of a blob: its absmax, or ncnn2table's KL choice. 0 means "always zero"."""
    if stats.absmax <= 0.0:
        return 0.0
    if method == "absmax" or stats.histogram.sum() == 0:
        return stats.absmax
    if method != "kl":
        raise ValueError(f"unknown calibration method {method!r}")
    return (kl_best_bin(stats.histogram) + 0.5) * stats.absmax / NUM_BINS


def kl_best_bin(histogram: np.ndarray) -> int:
    """The clipping bin (128..2047) with the smallest KL divergence, as ncnn2table computes it."""
    thresholds = np.arange(TARGET_BINS, NUM_BINS)
    kl = kl_divergences(histogram.astype(np.float64) / float(histogram.sum()), thresholds)
    return int(thresholds[int(np.argmin(kl))])  # first minimum, like ncnn's strict `<`


def kl_divergences(p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """KL(clipped || expanded 128-level) of a normalised histogram p for each candidate threshold (in bins).

    Equal to ncnn2table's bin-by-bin loops, computed per quantized level instead of per bin: inside a level
    the expanded distribution is constant (eps + level mean), so sums over whole bins come from prefix sums;
    only the one bin straddling each level boundary is handled on its own."""
    cum = np.concatenate([[0.0], np.cumsum(p)])
    plogp = (p + KL_EPS) * np.log(p + KL_EPS)
    cum_plogp = np.concatenate([[0.0], np.cumsum(plogp)])
    t = thresholds.astype(np.float64)[:, None]
    per_bin = t / TARGET_BINS  # original bins per quantized level, >= 1
    edges = np.arange(TARGET_BINS + 1)[None, :] * per_bin
    edges[:, -1] = t[:, 0]
    q = np.diff(_integral(p, cum, edges), axis=1) / per_bin  # mean density of each level
    log_e = np.log(q + KL_EPS)
    tail = 1.0 - cum[thresholds]  # mass beyond the threshold, added to the last kept bin
    last = thresholds - 1

    # sum of clip * log(clip): a prefix sum, the last bin carrying the tail
    c_last = p[last] + KL_EPS + tail
    self_term = cum_plogp[thresholds] - plogp[last] + c_last * np.log(c_last)

    # sum of clip * log(expand) over the bins lying wholly inside one level
    first_full = np.ceil(edges[:, :-1]).astype(np.int64)
    end_full = np.maximum(np.floor(edges[:, 1:]).astype(np.int64), first_full)
    mass = cum[end_full] - cum[first_full] + KL_EPS * (end_full - first_full)
    cross = np.sum(mass * log_e, axis=1) + tail * log_e[:, -1]

    # the bin straddling each boundary between level j and j+1 (none where the boundary is an integer)
    bound = edges[:, 1:-1]
    b = np.floor(bound).astype(np.int64)
    frac = bound - b
    e_b = KL_EPS + frac * q[:, :-1] + (1.0 - frac) * q[:, 1:]
    c_b = p[b] + KL_EPS
    cross += np.sum(np.where(frac > 0, c_b * np.log(e_b), 0.0), axis=1)
    return self_term - cross


def _integral(p: np.ndarray, cum: np.ndarray, x: np.ndarray) -> np.ndarray:
    i = np.clip(np.floor(x).astype(np.int64), 0, len(p) - 1)
    return cum[i] + (x - i) * p[i]


def collect(run: ExtractFn, inputs: np.ndarray, blobs: Sequence[str], method: str) -> dict[str, BlobStats]:
    """Statistics of `blobs` over every calibration input: absmax (pass 1), for KL histograms (pass 2).
    A blob holding NaN or infinity raises NonFiniteActivation (the first such blob and input)."""
    stats = {b: BlobStats() for b in blobs}
    for i in range(len(inputs)):
        for blob, x in zip(blobs, run(inputs[i : i + 1], blobs)):
            if not np.isfinite(x).all():
                nan = int(np.isnan(x).sum())
                raise NonFiniteActivation(blob, i, nan, int(x.size - np.isfinite(x).sum()) - nan)
            stats[blob].add_absmax(x)
    if method == "kl":
        for i in range(len(inputs)):
            for blob, x in zip(blobs, run(inputs[i : i + 1], blobs)):
                stats[blob].add_histogram(x)
    return stats
