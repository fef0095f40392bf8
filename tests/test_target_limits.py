"""A target file's numbers kept to what a board can have: a cpu list (affinity) and the thread counts of its
benchmark cap. Host only: the schema, and the agent's own pinning with sched_setaffinity stood in for."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from procs import board_file, named, run

from edgekit.agent import agent


@pytest.mark.parametrize("affinity", ["0-999999999999", "4096", "0,2-5000", "7-4"])
def test_an_affinity_past_the_last_possible_cpu_is_bad_input(tmp_path: Path, affinity: str) -> None:
    """`affinity: 0-999999999999` was taken, and the agent built the whole list of cpus before pinning
    (`0-30000000` took 2.7 GB). Cpus are 0 to 4095 now, a range low-high: TargetError naming it, exit 2."""
    board = board_file(tmp_path, f"affinity: '{affinity}'\n")
    err = " ".join(named(run("targets", "check", str(board), cwd=tmp_path, timeout=60)).split())
    assert "TargetError" in err and "affinity: " in err and "is not a cpu or a range of cpus" in err, err
    assert "from 0 to 4095" in err and "hint: affinity: big, little, all" in err, err


def test_the_agent_does_not_build_a_huge_cpu_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent given such a list (an older host, a hand-run agent) refuses it without building it: a bad request
    (run_all's AgentFailure, exit 2) naming the limit, in a few kilobytes; it ran unpinned before, said only in
    the facts."""
    pinned: list[list[int]] = []
    monkeypatch.setattr(agent, "_cpus_used", lambda: pinned[-1] if pinned else list(range(8)))
    monkeypatch.setattr(agent, "_online_cpus", lambda: list(range(8)))
    monkeypatch.setattr(agent.os, "sched_setaffinity", lambda pid, cpus: pinned.append(sorted(cpus)))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="cpu 2000000 is past the highest cpu number, 4095"):
            agent.apply_affinity("0-2000000")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert pinned == [] and peak < 1 << 20, peak
    # 4095 is a cpu number: read, then refused as a cpu this 8-core device does not have
    with pytest.raises(ValueError, match=r"cpu 4095 not online on this device \(online: 0,1,2,3,4,5,6,7\)"):
        agent.apply_affinity("0,4095")
    assert agent.apply_affinity("0,7")["cpus"] == [0, 7]  # type: ignore[index]


@pytest.mark.parametrize("threads", ["[0]", "[-3]", "[100000]", "[]"])
def test_a_benchmark_caps_thread_counts_are_checked_as_a_recipes(tmp_path: Path, threads: str) -> None:
    """`benchmark_cap: {threads: [0]}` (or [-3]) failed only after the device run, [100000] started that many
    threads, [] printed '0 thread counts' and measured anyway. They are checked as a recipe's `benchmark.threads`
    now: 1 to 256, not empty; TargetError naming the field, exit 2."""
    board = board_file(tmp_path, f"benchmark_cap: {{threads: {threads}}}\n")
    err = " ".join(named(run("targets", "check", str(board), cwd=tmp_path, timeout=60)).split())
    assert "TargetError" in err and "benchmark_cap.threads:" in err, err
    assert "threads must be a non-empty list of integers from 1 to 256" in err, err
