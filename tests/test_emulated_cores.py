"""An emulated target's core count is the emulator host's (qemu-user's guest reads the cores of the machine
running it; a Pi 4 has 4): said so in bench's heading and the HTML report's device facts, as runs show says it
(cadfc37) and as the neighbouring HTML cells (governor, clocks, temperature) say theirs."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from test_emulated_host_heat import _edgekit

from edgekit.formats import Format
from edgekit.report.bench_table import bench_table
from edgekit.report.synthetic import synthetic_result

T0 = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)


def _night(target: str):  # type: ignore[no-untyped-def]
    return synthetic_result(
        T0, rng=np.random.default_rng(3), formats=(Format.TFLITE_FP32,), targets=(target,), threads=(1,)
    )


def test_bench_heading_says_an_emulated_targets_cores_are_the_hosts() -> None:
    for target, emulated in (("pi5-emu", True), ("pi4", False)):
        agent = _night(target).runs[0].agent
        assert agent is not None
        buffer = io.StringIO()
        Console(file=buffer, width=300, color_system=None).print(bench_table(agent, target))
        heading = buffer.getvalue().splitlines()[0]
        said = f"{agent.facts_before.cores} cores (the emulator host's), python"
        assert (said in heading) is emulated, heading


def test_html_device_facts_say_an_emulated_targets_cores_are_the_hosts(tmp_path: Path) -> None:
    paths = []
    for target in ("pi5-emu", "pi4"):
        path = tmp_path / f"{target}.json"
        path.write_text(_night(target).model_dump_json())
        paths.append(str(path))
    url, home = f"sqlite:///{tmp_path / 'results.sqlite'}", tmp_path / "home"
    assert _edgekit("runs", "import", *paths, "--store", url, home=home).returncode == 0
    out = tmp_path / "report.html"
    done = _edgekit("report", "--since", "all", "--html", str(out), "--store", url, home=home)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    cores = {}  # the device-facts rows: run, target, CPU, cores, governor, ...
    for row in re.findall(r'<tr class="[^"]*"><td class=l>#\d+ .*?</tr>', page, re.S):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        cores[re.sub(r"<.*", "", cells[1])] = cells[3]
    assert cores["pi5-emu"].endswith("<span class=muted>(emulator host's)</span>"), cores
    assert cores["pi4"].isdigit(), cores
