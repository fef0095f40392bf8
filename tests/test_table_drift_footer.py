"""The deploy table's 'drift vs host max|d| / cos' column was not explained under the tables (x fp32, gates,
ESTIMATE and x fp32 by insn were): a user read 3.5e+00 as alarming though it is in the output's own units (pixels
for boxes). A footer line says what it is, when the column is shown."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import numpy as np
from rich.console import Console

from edgekit.report.synthetic import BASE_MS, synthetic_result
from edgekit.report.table import deploy_table

SAID = "drift vs host: largest absolute difference (in the output's own units) / cosine"


def _printed(result: object, width: int = 300) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(deploy_table(result))  # type: ignore[arg-type]
    return " ".join(buffer.getvalue().split())


def _result():  # type: ignore[no-untyped-def]
    return synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC),
        rng=np.random.default_rng(0),
        targets=("pi4",),
        formats=list(BASE_MS),
        threads=(1,),
    )


def test_the_drift_column_is_explained_under_the_tables_when_it_is_shown() -> None:
    result = _result()
    board = next(r for r in result.runs if r.target == "pi4")
    drift = next(c for c in board.comparisons if c.reference == "host")
    text = _printed(result)
    assert "drift vs host" in text and "max|d| / cos" in text  # the column (its two header lines)
    assert f"{drift.max_abs_error:.1e} / " in text  # its figure, in the output's units as compared
    assert SAID in text and "the host's on the same inputs" in text, text
    assert text.count("drift vs host:") == 1  # said once, under every table
    assert SAID in _printed(result, width=80)  # folded at 80 columns, all there


def test_no_drift_footer_without_the_column() -> None:
    result = _result()
    for run in result.runs:  # --no-host: nothing to compare with
        run.comparisons = [c for c in run.comparisons if c.reference != "host"]
    result.runs = [r for r in result.runs if r.target != "host"]
    text = _printed(result)
    assert "drift vs host" not in text
