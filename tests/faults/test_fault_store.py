"""The store after faults: a target that failed at connect counts as a failure in `edgekit runs`; importing the
same deploy JSON twice records it once."""

from __future__ import annotations

from pathlib import Path

from edgekit.results import DeployResult, TargetRun


def failed_at_connect() -> DeployResult:
    nowhere = TargetRun(
        target="nowhere",
        kind="ssh",
        emulated=False,
        status="failed",
        error="connect: ConnectError: 127.0.0.1:9: cannot reach 127.0.0.1:9: connection refused",
    )
    return DeployResult(
        recipe="tiny",
        recipe_path="recipes/tiny.yaml",
        recipe_sha256="0" * 64,
        started_at="2026-11-30T10:00:00+00:00",
        finished_at="2026-11-30T10:00:05+00:00",
        runs=[nowhere],
        ok=False,
    )


def test_runs_counts_a_target_that_failed_at_connect(tmp_path: Path, edgekit_cli) -> None:
    from edgekit.store import open_store

    url = str(tmp_path / "store.sqlite")
    with open_store(url) as db:
        db.record(failed_at_connect())
        (summary,) = db.runs()
    assert summary.failed_targets == ["nowhere"] and summary.measurements == 0
    out = edgekit_cli("runs", "--store", url, env={"COLUMNS": "200"}, timeout=60)
    assert out.code == 0 and "1 target failed: nowhere" in out.stdout, out.stdout


def test_importing_the_same_json_twice_records_one_run(tmp_path: Path, edgekit_cli) -> None:
    from edgekit.store import open_store

    url = str(tmp_path / "store.sqlite")
    path = tmp_path / "run.json"
    path.write_text(failed_at_connect().model_dump_json())
    first = edgekit_cli("runs", "import", str(path), "--store", url, timeout=60)
    second = edgekit_cli("runs", "import", str(path), "--store", url, timeout=60)
    assert first.code == 0 and "recorded as run 1" in first.stdout, first.stdout + first.stderr
    assert second.code == 0 and "already recorded as run 1" in second.stdout, second.stdout
    other = failed_at_connect().model_copy(update={"started_at": "2026-11-30T11:00:00+00:00"})
    path.write_text(other.model_dump_json())
    third = edgekit_cli("runs", "import", str(path), "--store", url, timeout=60)
    assert "recorded as run 2" in third.stdout  # another run of the same recipe is a new run
    with open_store(url) as db:
        assert [r.id for r in db.runs()] == [2, 1]


def test_ctrl_c_while_waiting_for_the_store_write_lock_stops_the_wait_and_keeps_the_run(
    tmp_path: Path,
) -> None:
    """Another process holds the SQLite store's write lock when a deploy records its run. The wait was SQLite's
    busy timeout, in C, where Python's signal handler cannot run: Ctrl-C and SIGTERM did nothing for up to 60 s.
    Now a Ctrl-C ends the wait at once (exit 130), the run kept in --json with the line that imports it."""
    import os
    import signal
    import subprocess
    import sys

    from procs import EDGEKIT, ctrl_c_when

    from edgekit.store import open_store

    store, out = tmp_path / "store.sqlite", tmp_path / "run.json"
    with open_store(str(store)) as db:
        db.record(failed_at_connect())
    hold = "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
    hold += "c.execute('BEGIN EXCLUSIVE'); print('held', flush=True); time.sleep(300)"
    # 3 s of cool-down between tflite-fp32 x1 and x2: the holder below (a Python start-up) always takes the lock
    # before the deploy records, however quick the rest of the deploy (without it: x2, the pull, the ONNX
    # reference and the comparison, under a second here)
    tiny = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"
    text = tiny.read_text()
    assert "threads: [1, 2]" in text and "cooldown_s: 0}" in text
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(text.replace("cooldown_s: 0}", "cooldown_s: 3}"))
    args = [EDGEKIT, "deploy", str(recipe), "-f", "tflite-fp32", "--repeat", "1", "--warmup", "0"]
    proc = subprocess.Popen(
        [*args, "--samples", "2", "--json", str(out), "--store", str(store)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    holders: list[subprocess.Popen[str]] = []
    seen: list[str] = []

    def waiting() -> bool:  # the lock taken once the agent measures, after the store's first use
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            seen.append(line)
            if "x1 ok" in line:
                break
        else:
            return False
        holders.append(
            subprocess.Popen([sys.executable, "-c", hold, str(store)], stdout=subprocess.PIPE, text=True)
        )
        assert holders[0].stdout is not None and holders[0].stdout.readline().strip() == "held"
        for line in proc.stderr:
            seen.append(line)
            if "holds the results store's write lock" in line:
                return True
        return False

    try:
        stdout, stderr, seconds = ctrl_c_when(proc, waiting, settle=0.5, sig=signal.SIGINT, timeout=90)
    finally:
        for holder in holders:
            holder.kill()
            holder.communicate()
    said = "".join(seen) + stderr
    assert proc.returncode == 130, stdout[-2000:] + said[-2000:]
    assert seconds < 5, seconds  # was the rest of the 60 s
    assert "Ctrl-C to stop waiting" in said, said[-2000:]
    assert f"edgekit runs import {out} --store {store}" in said, said[-2000:]
    (run,) = DeployResult.model_validate_json(out.read_text()).runs
    assert run.agent is not None and run.agent.measurements
