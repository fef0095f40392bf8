"""A night faster than the baseline does not hide the regressions after it (review r13): joining the baseline, one
0.7x night widened the night-to-night bound to 73 % (1 % drift) and a +32 % night after it passed, for latency
and for instruction counts alike; a held speed-up (a runtime upgrade) left the baseline at the old level, so a
slowdown back part of the way passed too. Built through the real `runs import` and `report --fail-on-regression`
on a SQLite store."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import numpy as np
import procs

from edgekit.formats import Format
from edgekit.report.synthetic import synthetic_result

T0 = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)


_edgekit = partial(procs.run, columns=300)


def _report(tmp_path: Path, target: str, levels: list[float], seed: int = 3) -> tuple[int, str]:
    """The nights at `levels` (tflite-fp32 at 1 thread on `target`) imported into a SQLite store, then the
    report of the newest with --fail-on-regression: its exit code and its text, on one line."""
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    home = tmp_path / "home"
    rng = np.random.default_rng(seed)
    files = []
    for day, level in enumerate(levels):
        night = synthetic_result(
            T0 + timedelta(days=day),
            rng=rng,
            formats=(Format.TFLITE_FP32,),
            targets=(target,),
            threads=(1,),
            slowdown={("tflite-fp32", target): level},
            night_sd=0.01,
        )
        path = tmp_path / f"night{day:02d}.json"
        path.write_text(night.model_dump_json())
        files.append(str(path))
    imported = _edgekit("runs", "import", *files, "--store", url, home=home)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    shown = _edgekit("report", "--since", "all", "--fail-on-regression", "--store", url, home=home)
    assert shown.returncode in (0, 1), shown.stdout + shown.stderr
    return shown.returncode, " ".join(shown.stdout.split())


def test_a_slow_night_after_one_fast_night_is_flagged(tmp_path: Path) -> None:
    """Eight nights at 1.0, one at 0.7, then 1.3: the report said 0 regressions and exited 0."""
    code, shown = _report(tmp_path, "pi4", [1.0] * 8 + [0.7, 1.3])
    assert code == 1, shown
    (line,) = re.findall(r"tflite-fp32 at 1 thread on pi4: ([\d.]+) → ([\d.]+) ms \(\+([\d.]+)%", shown)
    assert 25 < float(line[2]) < 40  # against the steady nights, the fast one left out
    assert "vs runs #1-#8" in shown


def test_one_fast_night_is_no_level_of_its_own(tmp_path: Path) -> None:
    """A fast night left out of the baseline is not a new level: nights back at the old one are not flagged."""
    code, shown = _report(tmp_path, "pi4", [1.0] * 8 + [0.7] + [1.0] * 3)
    assert code == 0, shown
    assert "no regressions" in shown


def test_a_held_speed_up_is_the_baseline_a_later_slowdown_is_judged_against(tmp_path: Path) -> None:
    """Eight nights at 1.0, five at 0.7 (a faster runtime), then 0.91 (+30 % over the new level, still below the
    old one): it passed, judged against a baseline of mostly old-level nights."""
    code, shown = _report(tmp_path, "pi4", [1.0] * 8 + [0.7] * 5 + [0.91])
    assert code == 1, shown
    (line,) = re.findall(r"tflite-fp32 at 1 thread on pi4: ([\d.]+) → ([\d.]+) ms \(\+([\d.]+)%", shown)
    assert 22 < float(line[2]) < 38
    assert "vs runs #9-#13" in shown


def test_an_instruction_count_rise_after_one_night_of_fewer_instructions_is_flagged(tmp_path: Path) -> None:
    """Counts on an emulated target: eight nights at one count, one 30 % lower, then +10 %: flagged without the
    low night, not with it (its count's spread was the threshold)."""
    code, shown = _report(tmp_path, "pi4-emu", [1.0] * 8 + [0.7, 1.1])
    assert code == 1, shown
    assert (
        "tflite-fp32 at 1 thread on pi4-emu: 180,000,000 → 198,000,000 instr. (+10.0%) vs runs #1-#8" in shown
    )


def test_a_fast_night_before_the_key_was_judged_does_not_widen_its_bound(tmp_path: Path) -> None:
    """A 0.7x night among a key's first three (too few earlier runs to judge it, so it joined the baseline):
    its odd median was in the night-to-night spread of every later judgement; the spread leaves it out."""
    code, shown = _report(tmp_path, "pi4", [1.0, 1.0, 0.7] + [1.0] * 6 + [1.3])
    assert code == 1, shown
    (line,) = re.findall(r"tflite-fp32 at 1 thread on pi4: ([\d.]+) → ([\d.]+) ms \(\+([\d.]+)%", shown)
    assert 20 < float(line[2]) < 40


def test_a_return_to_the_level_before_a_held_speed_up_says_the_speed_up_was_lost(tmp_path: Path) -> None:
    """Eight nights at 1.0, three at 0.7 (the new level), then 1.0 again: flagged '+44.6 % vs runs #9-#11' as
    any slowdown, its accept hint offering 'a kernel or firmware update, a board swapped' (review r15 #6). It
    says it is back at the level of runs #1-#8 and offers no such cause; a slowdown past that level does not."""
    code, shown = _report(tmp_path, "pi4", [1.0] * 8 + [0.7] * 3 + [1.0])
    assert code == 1, shown
    assert re.search(
        r"vs runs #9-#11 \(pooled median\); back at the level of runs #1-#8 \(the speed-up of runs #9-#11 is "
        r"gone\)",
        shown,
    ), shown
    assert "kernel or firmware" not in shown and "If losing the speed-up is expected" in shown, shown
    (tmp_path / "past").mkdir()
    code, shown = _report(tmp_path / "past", "pi4", [1.0] * 8 + [0.7] * 3 + [1.3])
    assert code == 1 and "back at the level" not in shown and "kernel or firmware" in shown, shown
