"""Which percentiles a table may show: p90 from 10 samples, p99 from 100 ('-' below, said once under the table)."""

from __future__ import annotations

from collections.abc import Sequence

from edgekit.results import Measurement

# A percentile of few samples is the max or next to it (numpy interpolates: p99 of 10 samples lies 91 % of the way
# from the 9th to the 10th, p90 of 2 is next to the larger): tables show p90 from 10 samples and p99 from 100, '-'
# below (the JSON keeps numpy's figures, results.Measurement)
PERCENTILE_MIN_SAMPLES = {"p90": 10, "p99": 100}


def percentile(m: Measurement, which: str) -> float | None:
    """m's p90 or p99 where its samples are enough to tell one (PERCENTILE_MIN_SAMPLES), else None ('-'). A
    measurement without its samples (an old import) is shown as recorded."""
    value = m.p90_ms if which == "p90" else m.p99_ms
    n = len(m.samples_ms)
    return None if n and n < PERCENTILE_MIN_SAMPLES[which] else value


def too_few(measurements: list[Measurement], which: Sequence[str]) -> tuple[list[str], str] | None:
    """Those of the percentiles `which` that some measurement has too few samples to tell, and '(p90 needs 10; 4
    taken' (the sentence's start, for the caller to close); None when every one can be told."""
    short = [
        w
        for w in which
        if any(m.status == "ok" and 0 < len(m.samples_ms) < PERCENTILE_MIN_SAMPLES[w] for m in measurements)
    ]
    if not short:
        return None
    counts = sorted({len(m.samples_ms) for m in measurements if m.status == "ok" and m.samples_ms})
    needs = ", ".join(f"{w} needs {PERCENTILE_MIN_SAMPLES[w]}" for w in short)
    return short, f"({needs}; {', '.join(map(str, counts))} taken"


def few_samples_note(measurements: list[Measurement], shown: tuple[str, ...] = ("p90", "p99")) -> str | None:
    """Why a shown percentile is '-': said once under a table, with the sample counts it had."""
    found = too_few(measurements, shown)
    if found is None:
        return None
    short, why = found
    return (
        f"'-' as {' or '.join(short)}: too few samples to tell it {why}): "
        "a percentile of fewer is the max or next to it (--json has numpy's figure)"
    )
