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
