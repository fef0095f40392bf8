"""'Same model' is decided once, at deploy, while the files exist, and recorded on each artifact: a stored run's
files may be pruned or rewritten later, and read then they made ncnn-int8 1.52x ncnn-fp32 again (report rows, the
table's x fp32 column, a route recomputed from the stored run)."""

from __future__ import annotations

import shutil
from pathlib import Path

from test_route_claims import _same_model_result, _table_text

from edgekit.report.rows import latest_rows
from edgekit.results import DeployResult
from edgekit.route_deploy import routes_for_deploy
from edgekit.store import open_store

HOST_P50 = {"ncnn-fp32": 0.0296, "ncnn-int8": 0.0195, "ncnn-fp16": 0.05}
KEPT_FP32 = "the speed plan kept no layer int8: the same files and options"


def _stored(tmp_path: Path, *, record: bool) -> DeployResult:
    """The tiny_pi5 result as a stored run reads it back (JSON), with or without deploy's record."""
    result = _same_model_result(tmp_path / "cache", HOST_P50)
    data = result.model_dump(mode="json")
    if record:  # what deploy records (record_same_models): only ncnn-int8 is another's model
        for art in data["artifacts"]:
            art["same_model_checked"] = True
            art["same_model_as"], art["same_model_why"] = (
                ("ncnn-fp32", KEPT_FP32) if art["id"] == "ncnn-int8" else (None, "")
            )
    else:  # a run stored before the record: its artifacts have none of its fields
        for art in data["artifacts"]:
            for name in ("same_model_checked", "same_model_as", "same_model_why"):
                art.pop(name, None)
    return DeployResult.model_validate(data)


def _assert_same_model(result: DeployResult) -> None:
    rows = {r.artifact: r for r in latest_rows(result)}
    assert rows["ncnn-int8"].speedup is None and rows["ncnn-int8"].speedup_basis == "same model"
    assert rows["ncnn-fp16"].speedup is not None  # another model: its ratio stays
    text = _table_text(result)
    assert "same model" in text and "1.52x" not in text, text
    (route,) = routes_for_deploy(result)
    assert route.artifact == "ncnn-fp32" and route.same_model == {"ncnn-int8": "ncnn-fp32"}
    assert "1.52x" not in route.summary() and "ncnn-int8 is ncnn-fp32" in route.summary(), route.summary()


def test_a_recorded_same_model_stays_after_its_files_are_pruned_or_rewritten(tmp_path: Path) -> None:
    """The reviewer's t_same.py: the cache pruned, the stored run's ncnn-int8 row said 1.52x 'latency' and the
    route 'ship ncnn-int8 (... 1.52x vs ncnn-fp32 ...)'."""
    result = _stored(tmp_path, record=True)
    shutil.rmtree(tmp_path / "cache")
    _assert_same_model(result)
    # rewritten by a later conversion (another int8 model now): the run measured the files deploy compared
    again = _stored(tmp_path / "again", record=True)
    (tmp_path / "again" / "cache" / "int8" / "model.bin").write_bytes(bytes(range(256)) * 7 + bytes(256))
    _assert_same_model(again)


def test_deploy_records_same_model_on_the_artifacts(tmp_path: Path) -> None:
    """record_same_models (deploy, while the files exist) gives each artifact its answer, 'another model' too."""
    from edgekit.same_model import record_same_models

    result = _same_model_result(tmp_path, HOST_P50)
    record_same_models(result.artifacts)
    got = {a.id: (a.same_model_checked, a.same_model_as, a.same_model_why) for a in result.artifacts}
    assert got == {
        "ncnn-fp32": (True, None, ""),
        "ncnn-int8": (True, "ncnn-fp32", KEPT_FP32),
        "ncnn-fp16": (True, None, ""),
    }
    shutil.rmtree(tmp_path / "fp32")
    _assert_same_model(result)


def test_the_store_keeps_the_same_model_record(tmp_path: Path) -> None:
    """A SQLite store round trip keeps the record (in the artifacts' `extra`): a stored run read back after its
    files are gone still says 'same model'."""
    result = _stored(tmp_path, record=True)
    with open_store(str(tmp_path / "results.sqlite")) as store:
        back = store.load(store.record(result))
    assert back.artifacts == result.artifacts
    int8 = next(a for a in back.artifacts if a.id == "ncnn-int8")
    assert (int8.same_model_checked, int8.same_model_as, int8.same_model_why) == (
        True,
        "ncnn-fp32",
        KEPT_FP32,
    )
    shutil.rmtree(tmp_path / "cache")
    _assert_same_model(back)


def test_a_result_stored_before_the_record_with_its_files_gone_claims_nothing(tmp_path: Path) -> None:
    """No record (stored before deploy recorded it) and no files: nothing is claimed either way, as before
    'same model' existed: the rows' ratio and the route are the timings'."""
    result = _stored(tmp_path, record=False)
    assert not any(a.same_model_checked for a in result.artifacts)
    _assert_same_model(result)  # files still there: judged by them
    shutil.rmtree(tmp_path / "cache")
    rows = {r.artifact: r for r in latest_rows(result)}
    assert rows["ncnn-int8"].speedup_basis == "latency" and round(rows["ncnn-int8"].speedup or 0, 2) == 1.52
    assert "same model" not in _table_text(result)
    (route,) = routes_for_deploy(result)
    assert route.artifact == "ncnn-int8" and route.same_model == {}


def test_artifacts_that_missed_a_gate_are_compared_too(tmp_path: Path) -> None:
    """A gate both ncnn artifacts miss (status `failed`, still timed): same_files compared only status 'ok', and
    the byte-identical ncnn-int8 read 1.52x over ncnn-fp32 in the x fp32 column, its record None."""
    from edgekit.same_model import record_same_models

    result = _same_model_result(tmp_path, HOST_P50)
    for art in result.artifacts:
        if art.id in ("ncnn-fp32", "ncnn-int8"):
            art.status, art.gates_passed = "failed", False
    record_same_models(result.artifacts)
    int8 = next(a for a in result.artifacts if a.id == "ncnn-int8")
    assert (int8.same_model_as, int8.same_model_why, int8.kept_fp32) == ("ncnn-fp32", KEPT_FP32, True)
    text = _table_text(result)
    assert "same model" in text and "1.52x" not in text, text
