"""A device's CPU as the report compares two runs' (edgekit/report/cpu.py): since f926395 the agent names
cpu_model from the cores used ('Cortex-A55 + Cortex-A76', 'Cortex-A76' pinned) and records every cpu's part;
older agents named cpu0's part ('Cortex-A55'). The first run after the upgrade is the same CPU, not a swap that
restarts the baseline, and a big.LITTLE host's history stays one machine's. Runs import and report on SQLite."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import numpy as np
from test_emulated_host_heat import T0, _edgekit

from edgekit.formats import Format
from edgekit.report.synthetic import synthetic_result

OLD = {"cpu_model": "Cortex-A55", "cpu_part": "0xd05"}  # an older agent: cpu0's part
NEW = {"cpu_model": "Cortex-A55 + Cortex-A76", "cpu_parts": {"0": "0xd05", "4": "0xd0b"}}
PINNED = {"cpu_model": "Cortex-A76", "cpu_part": "0xd0b", "cpu_parts": {"0": "0xd05", "4": "0xd0b"}}
SWAPPED = {"cpu_model": "Cortex-A55 + Cortex-A78", "cpu_parts": {"0": "0xd05", "4": "0xd41"}}


def _report(tmp_path: Path, target: str, nights: list[tuple[dict, float]]) -> tuple[int, str]:
    """`nights` (CPU facts, level) imported as `target`'s 1-thread tflite-fp32 runs, then report
    --fail-on-regression: its exit code and its Markdown on one line."""
    rng = np.random.default_rng(5)
    files = []
    for day, (cpu, level) in enumerate(nights):
        night = synthetic_result(
            T0 + timedelta(days=day),
            rng=rng,
            formats=(Format.TFLITE_FP32,),
            targets=(target,),
            threads=(1,),
            slowdown={("tflite-fp32", target): level},
            night_sd=0.01,
        )
        agent = night.runs[0].agent
        assert agent is not None
        for facts in (agent.facts_before, agent.facts_after):
            assert facts is not None
            facts.cores = 8
            for name, value in cpu.items():
                setattr(facts, name, value)
        path = tmp_path / f"n{day}.json"
        path.write_text(night.model_dump_json())
        files.append(str(path))
    url, home = f"sqlite:///{tmp_path / 'results.sqlite'}", tmp_path / "home"
    imported = _edgekit("runs", "import", *files, "--store", url, home=home)
    assert imported.returncode == 0, imported.stderr
    out = _edgekit("report", "--since", "all", "--fail-on-regression", "--store", url, home=home)
    return out.returncode, " ".join(out.stdout.split())


def test_the_first_runs_after_the_upgrade_are_judged_on_the_same_cpu(tmp_path: Path) -> None:
    """8 nights as an older agent's 'Cortex-A55', then +30 % nights named by every part: night 10 was 'not
    judged (1 earlier run since its configuration changed in run #9)', exit 0; night 9 blamed a CPU swap."""
    code, shown = _report(tmp_path, "pi5", [(OLD, 1.0)] * 8 + [(NEW, 1.3)] * 2)
    assert code == 1, shown
    assert re.search(
        r"\*\*latency\*\* tflite-fp32 at 1 thread on pi5: [\d.]+ → [\d.]+ ms \(\+3\d\.\d%", shown
    )
    assert "vs runs #1-#8" in shown and "not judged" not in shown, shown
    assert "cpu_model" not in shown, shown


def test_a_run_pinned_to_the_big_cores_is_the_same_cpu(tmp_path: Path) -> None:
    code, shown = _report(tmp_path, "pi5", [(NEW, 1.0)] * 8 + [(PINNED, 1.3)] * 2)
    assert code == 1 and "vs runs #1-#8" in shown and "cpu_model" not in shown, shown


def test_another_cpu_is_still_a_change(tmp_path: Path) -> None:
    """Other parts (an A76 board swapped for an A78 one): said, and the baseline starts again."""
    (tmp_path / "9").mkdir(), (tmp_path / "10").mkdir()
    _, shown = _report(tmp_path / "9", "pi5", [(NEW, 1.0)] * 8 + [(SWAPPED, 1.3)])
    assert "pi5 cpu_model: Cortex-A55 + Cortex-A76 → Cortex-A55 + Cortex-A78" in shown, shown
    code, shown = _report(tmp_path / "10", "pi5", [(NEW, 1.0)] * 8 + [(SWAPPED, 1.3)] * 2)
    assert code == 0 and "since its configuration changed in run #9" in shown, shown


def test_a_big_little_host_stays_one_machine(tmp_path: Path) -> None:
    """The host's history is keyed on its CPU (series.series_key): the upgrade split a big.LITTLE runner into two
    machines ('host (Cortex-A55 + Cortex-A76, 8 cores)' with one earlier run) and the slowdown went unjudged."""
    code, shown = _report(tmp_path, "host", [(OLD, 1.0)] * 8 + [(NEW, 1.3), (PINNED, 1.3)])
    assert code == 1, shown
    assert re.search(r"\*\*latency\*\* tflite-fp32 at 1 thread on host: .*vs runs #1-#8", shown), shown
    assert "host (Cortex" not in shown, shown
