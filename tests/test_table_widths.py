"""The deploy table stays readable from 80 columns up: every artifact's full name, every gate verdict and the
estimate of an emulated board are on screen at 80, 100 and 200 columns (cells fold, never vanish)."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime

import numpy as np
import pytest
from rich.console import Console

from edgekit.formats import Format
from edgekit.report.synthetic import synthetic_result
from edgekit.report.table import deploy_table


def _result():  # two targets and the host: the widest deploy a nightly prints
    formats = [f for f in Format if f.runtime.value in ("tflite", "ncnn")]  # the synthetic runtimes
    result = synthetic_result(datetime(2026, 6, 1, tzinfo=UTC), rng=np.random.default_rng(0),
                              targets=("pi4", "pi5-emu", "pi5"), formats=formats, threads=(1, 4))
    emu = next(r for r in result.runs if r.target == "pi5-emu")
    for m in emu.agent.measurements:  # type: ignore[union-attr]
        emu.estimates[f"{m.artifact} x{m.threads}"] = {"status": "ok", "board": "pi5", "estimate_ms": 12.34,
                                                        "low_ms": 10.1, "high_ms": 15.6,
                                                        "interval_calibrated": m.format.startswith("ncnn")}
    return result


@pytest.mark.parametrize("width", [80, 100, 200])
def test_deploy_table_fits_and_keeps_every_verdict(width: int) -> None:
    result = _result()
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(deploy_table(result))
    text = buffer.getvalue()
    assert max(len(line) for line in text.splitlines()) <= width
    for fmt in Format:
        if fmt.value in {a.id for a in result.artifacts}:
            assert re.search(rf"\b{re.escape(fmt.value)}\b", text), (width, fmt.value)  # never cut to 'tflite-fp…'
    tables = len(re.findall(r" on (pi4|pi5-emu|pi5)\b", text))
    assert tables == 3  # one stacked table per target
    arts = len(result.artifacts)
    verdicts = len(re.findall(r"\b(ok|MISS)\b", text))
    assert verdicts >= 3 * arts * 2  # a gate verdict on every row of every target (2 thread counts)
    assert "~12.3" in text and "ESTIMATE" in text  # the emulated board's headline
