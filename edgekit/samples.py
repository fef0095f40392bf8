"""What two sets of timed samples can tell apart: the one-sided Mann-Whitney test that regression flags (newest
run vs its history) and route ties (the choice vs the runner-up) both use."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import ndtr  # scipy.special: a second faster to import than scipy.stats


def slower_p_value(new: Sequence[float] | np.ndarray, old: Sequence[float] | np.ndarray) -> float:
    """One-sided Mann-Whitney U p-value that `new` tends to be larger than `old`.

    Normal approximation with tie and continuity corrections, as scipy.stats.mannwhitneyu(method="asymptotic",
    alternative="greater") computes it (tests check they agree); exact enough at the sample counts timed here.
    """
    x, y = np.asarray(new, dtype=float), np.asarray(old, dtype=float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        return 1.0
    both = np.concatenate([x, y])
    _, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # average ranks, 1-based
    u = float(ranks[:n1].sum()) - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    tie_term = float((counts**3 - counts).sum()) / (n * (n - 1))
    sd = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term))
    if sd == 0.0:
        return 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / sd
    return float(ndtr(-z))
