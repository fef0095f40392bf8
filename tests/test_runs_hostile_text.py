"""Stored text from outside, as `runs show` and `runs import` take it (host only: SQLite files, no device): a
long error without spaces made `runs show` quadratic in rich's highlighter (50,000 characters: 28 s), and
`runs import` recorded free text of any size (a 300 MB error) from a file of any size."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import procs

from edgekit.formats import Format
from edgekit.report.synthetic import synthetic_result

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


_edgekit = partial(procs.run, timeout=300)


def _data() -> dict:
    result = synthetic_result(
        T0, rng=np.random.default_rng(0), formats=(Format.TFLITE_FP32,), threads=(1,), repeat=12
    )
    return json.loads(result.model_dump_json())


def test_runs_show_prints_a_long_error_without_spaces_in_linear_time(tmp_path: Path) -> None:
    data = _data()
    data["runs"][0]["error"] = "A" * 50_000
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    store = tmp_path / "s.db"
    home = tmp_path / "home"
    imported = _edgekit("runs", "import", str(path), "--store", str(store), home=home)
    assert imported.returncode == 0, imported.stderr
    start = time.monotonic()
    shown = _edgekit("runs", "show", "1", "--store", str(store), home=home, timeout=60)
    took = time.monotonic() - start
    assert shown.returncode == 0, shown.stderr
    assert "A" * 50_000 in shown.stdout.replace("\n", "")
    assert took < 15, f"runs show took {took:.1f} s"


def test_runs_import_refuses_an_over_long_free_text_naming_its_field(tmp_path: Path) -> None:
    from edgekit.store.imported import MAX_FREE_TEXT

    data = _data()
    data["runs"][0]["error"] = "A" * (MAX_FREE_TEXT + 1)
    path = tmp_path / "r.json"
    path.write_text(json.dumps(data))
    store = tmp_path / "s.db"
    out = _edgekit("runs", "import", str(path), "--store", str(store), home=tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "runs.0.error" in " ".join((out.stdout + out.stderr).split())
    assert not store.exists() or "recorded as run" not in out.stdout
    data["runs"][0]["error"] = "A" * MAX_FREE_TEXT  # at the cap: kept whole
    path.write_text(json.dumps(data))
    out = _edgekit("runs", "import", str(path), "--store", str(store), home=tmp_path / "home")
    assert out.returncode == 0, out.stdout + out.stderr


def test_runs_import_refuses_a_file_beyond_its_size_cap_without_reading_it(tmp_path: Path) -> None:
    from edgekit.cli.runs_import import MAX_RESULT_BYTES

    path = tmp_path / "big.json"
    with path.open("wb") as f:
        f.truncate(MAX_RESULT_BYTES + 1)  # sparse: no disk used
    out = _edgekit("runs", "import", str(path), "--store", str(tmp_path / "s.db"), home=tmp_path / "home")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "larger than" in " ".join((out.stdout + out.stderr).split())
