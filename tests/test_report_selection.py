"""`edgekit report`'s selection (`--recipe`, `--target`, `--since`) against what the store holds: a CI gate's
`report --fail-on-regression --target nosuch` exited 0 under '## edgekit report: no regressions'."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import procs

from edgekit.formats import Format
from edgekit.report.synthetic import synthetic_result
from edgekit.store import open_store

_edgekit = partial(procs.run, columns=300)


def test_a_fail_on_regression_gate_with_a_selection_that_matches_nothing_is_bad_input(tmp_path: Path) -> None:
    """`report --fail-on-regression --target nosuch` (a CI gate's typo) exited 0 under '## edgekit report: no
    regressions'. A named recipe or target the store never ran, or the two never together, is refused (exit 2,
    what the store holds as the hint); a window without runs is no typo, but it judged nothing: the report says so
    and the gate fails (exit 1), as a stalled nightly must not stay green."""
    url, rng = f"sqlite:///{tmp_path / 'results.sqlite'}", np.random.default_rng(3)
    with open_store(url) as store:
        for night, (recipe, target) in enumerate(
            [("yolov5-lite", "pi4"), ("yolov5-lite", "pi5-emu"), ("digits", "pi4")]
        ):
            store.record(
                synthetic_result(
                    datetime(2026, 11, 20, 2, 0, tzinfo=UTC) + timedelta(days=night),
                    rng=rng,
                    recipe=recipe,
                    targets=(target,),
                    formats=(Format.TFLITE_FP32,),
                    threads=(1,),
                )
            )

    def report(*args: str) -> subprocess.CompletedProcess:
        return _edgekit("report", "--store", url, "--fail-on-regression", *args)

    for args, said, hint in [
        (
            ("--target", "nosuch"),
            "--target nosuch: no run in the store measured nosuch",
            "its targets: pi4, pi5-emu",
        ),
        (
            ("--recipe", "digits", "--recipe", "nosuch"),
            "--recipe nosuch: no run of nosuch in the store",
            "recipes in the store: digits, yolov5-lite",
        ),
        (
            ("--recipe", "digits", "--target", "pi5-emu"),
            "--recipe digits --target pi5-emu: no run in the store of digits measured pi5-emu",
            "digits measured pi4",
        ),
    ]:
        out = report("--since", "all", *args)
        text = " ".join(out.stderr.split())
        assert out.returncode == 2 and said in text and f"hint: {hint}" in text, (args, out.stdout, text)
        assert "no regressions" not in out.stdout, out.stdout
    assert (
        report("--since", "all", "--recipe", "digits", "--target", "pi4").returncode == 0
    )  # they ran together
    md = tmp_path / "w.md"
    html = tmp_path / "w.html"
    out = report("--since", "2099-01-01", "--recipe", "digits", "--markdown", str(md), "--html", str(html))
    text = " ".join(out.stderr.split())
    assert out.returncode == 1, out.stderr  # a gate that judged nothing fails: a stalled nightly is no pass
    assert "--fail-on-regression judged nothing: no run in the window" in text, text
    assert "Nothing for recipe digits since 2099-01-01 00:00 UTC" in text and "widen --since" in text, text
    assert (
        '<span class="badge warn">no runs to judge</span>' in html.read_text()
    )  # not a green '0 regressions'
    assert md.read_text().startswith("## edgekit report: no runs to judge\n"), md.read_text()
    assert "Nothing for recipe digits since 2099-01-01 00:00 UTC" in md.read_text()
