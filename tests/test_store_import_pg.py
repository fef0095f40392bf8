"""`runs import` and the store's write, the same on SQLite and a real PostgreSQL server (started for this module,
as tests/test_store.py does): a text longer than its column or a NUL in a name is refused before any file is
recorded, a NUL in a device's error does not cost a deploy its record, a second machine's run with the same
recipe and times is not taken for the first, and parallel imports of one file record it once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import procs
import pytest
from sqlalchemy import create_engine, func, select

from edgekit.formats import Format
from edgekit.report.synthetic import synthetic_result
from edgekit.results import DeployResult
from edgekit.store import open_store, schema

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


_edgekit = partial(procs.run, timeout=300)


def _count(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(schema.runs)).scalar_one())
    finally:
        engine.dispose()


def _result(seed: int = 0) -> DeployResult:
    return synthetic_result(
        T0,
        rng=np.random.default_rng(seed),
        formats=(Format.TFLITE_FP32, Format.NCNN_FP32),
        threads=(1,),
        repeat=12,
    )


def _write(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("runs.0.agent.measurements.0.runtime", "r" * 41, "longer than the 40 characters"),
        ("recipe_sha256", "a" * 65, "longer than the 64 characters"),
        ("git_revision", "b" * 65, "longer than the 64 characters"),
        ("recipe_sha256", "ab\x00cd", "NUL byte"),
        ("runs.0.agent.started_at", "2026-03-01T02:00:00\x00", "NUL byte"),
    ],
)
def test_a_text_longer_than_its_column_or_a_nul_in_a_name_is_refused_before_any_file_is_recorded(
    url: str, tmp_path: Path, field: str, value: str, said: str
) -> None:
    """PostgreSQL refused them as a StoreError (exit 1, "check the database is reachable and writable") after
    the files before were recorded; SQLite kept them. Both now refuse the file, naming it and the field (exit 2),
    and record nothing."""
    good = _write(tmp_path / "good.json", json.loads(_result(0).model_dump_json()))
    data = json.loads(_result(1).model_dump_json())
    *parents, last = field.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    bad = _write(tmp_path / "bad.json", data)
    out = _edgekit("runs", "import", str(good), str(bad), "--store", url, home=tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    assert f"field `{field}`" in out.stderr and said in out.stderr and "bad.json" in out.stderr, out.stderr
    assert "recorded as run" not in out.stdout
    with open_store(url):  # the store exists (created by the test's open) and holds nothing
        pass
    assert _count(url) == 0


def test_a_nul_in_a_devices_error_does_not_cost_the_run_its_record(url: str, tmp_path: Path) -> None:
    """A device's stderr with a NUL byte in a target's error: PostgreSQL refused the whole run ('text fields
    cannot contain NUL (0x00) bytes') and the deploy lost its record. It is stored with U+FFFD in its place,
    on both backends; the same run's JSON file imports the same way."""
    result = _result(2)
    failed = result.runs[0].model_copy(
        update={"status": "failed", "error": "agent said a\x00b", "agent": None}
    )
    result = result.model_copy(update={"runs": [failed, *result.runs[1:]], "ok": False})
    with open_store(url) as store:
        run_id = store.record(result)
        back = store.load(run_id)
    assert back.runs[0].error == "agent said a\ufffdb"
    assert back.model_copy(update={"runs": [failed, *back.runs[1:]]}) == result  # nothing else changed
    kept = tmp_path / "kept.json"
    kept.write_text(result.model_dump_json())
    out = _edgekit("runs", "import", str(kept), "--store", url, home=tmp_path / "home")
    assert out.returncode == 0 and "recorded as run" in out.stdout, out.stdout + out.stderr


def test_another_machines_run_with_the_same_recipe_and_times_is_recorded(url: str, tmp_path: Path) -> None:
    """Two runners deploying one recipe at the same second on the same target names: the second file was said
    'already recorded as run 1; not imported again' and its measurements were dropped. Only the same content is
    the same run."""
    first = json.loads(_result(3).model_dump_json())
    other = json.loads(
        _result(4).model_dump_json()
    )  # other samples and host facts, same recipe, times, targets
    for key in ("recipe", "recipe_sha256", "started_at", "finished_at"):
        assert first[key] == other[key]
    assert [r["target"] for r in first["runs"]] == [r["target"] for r in other["runs"]]
    other["runs"][0]["agent"]["facts_before"]["hostname"] = "runner-b"
    a = _write(tmp_path / "a.json", first)
    b = _write(tmp_path / "b.json", other)
    out = _edgekit("runs", "import", str(a), str(b), "--store", url, home=tmp_path / "home")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "b.json: recorded as run 2" in out.stdout, out.stdout
    again = _edgekit("runs", "import", str(b), str(a), "--store", url, home=tmp_path / "home")
    assert "b.json: already recorded as run 2" in again.stdout, again.stdout
    assert "a.json: already recorded as run 1" in again.stdout, again.stdout
    assert _count(url) == 2


def test_parallel_imports_of_one_file_record_it_once(url: str, tmp_path: Path) -> None:
    """Four `runs import` of one file at once recorded it two to four times: each looked for it in one
    transaction and recorded it in another."""
    path = _write(tmp_path / "r.json", json.loads(_result(5).model_dump_json()))
    with open_store(url):  # made (and migrated) before: the imports race on the run, not on the schema
        pass
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home")}
    env.pop("EDGEKIT_STORE", None)
    for _ in range(2):
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "edgekit", "runs", "import", str(path), str(path), "--store", url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(6)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
    assert _count(url) == 1, [o for o, _ in outs]
