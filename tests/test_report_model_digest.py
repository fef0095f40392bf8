"""The report's "converted file changed" and a regression's explanation by a changed converted file compare an
artifact's model files (results.converted_changed), not its sidecar: ncnn's model.io.json holds speed-plan
counts that vary run to run, so byte-identical model.param / model.bin read as "ncnn-int8: converted file
changed" under "Changed since the previous run", and such a night explained a regression away."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from edgekit.convert.base import Artifact
from edgekit.deploy.orchestrate import artifact_info
from edgekit.formats import Format
from edgekit.report.changes import changes
from edgekit.report.fingerprint import differs, fingerprint
from edgekit.report.regression import detect_latest
from edgekit.report.synthetic import synthetic_result
from edgekit.results import ArtifactInfo, DeployResult
from edgekit.store import StoredRun, open_store

T0 = datetime(2026, 2, 1, 2, 0, tzinfo=UTC)


def _ncnn(folder: Path, counts: str, weights: bytes = b"\x00" * 64) -> ArtifactInfo:
    """A converted ncnn-int8 folder: model files, and the sidecar whose speed-plan counts vary."""
    folder.mkdir(parents=True)
    files = [folder / "model.param", folder / "model.bin", folder / "model.io.json"]
    files[0].write_text("7767517\n1 1\nInput in0 0 1 in0\n")
    files[1].write_bytes(weights)
    files[2].write_text(json.dumps({"notes": [f"int8 kernel slower (pi4-emu {counts})"]}))
    art = Artifact(Format.NCNN_INT8, files, key="k", size_bytes=sum(f.stat().st_size for f in files))
    return artifact_info(art)


def _stored(tmp_path: Path, infos: list[ArtifactInfo]) -> list[StoredRun]:
    """Each artifact in a run of its own, recorded in a real store and read back."""
    url = f"sqlite:///{tmp_path / 'results.sqlite'}"
    with open_store(url) as store:
        for n, info in enumerate(infos):
            result = DeployResult(
                recipe="tiny",
                recipe_path="r.yaml",
                recipe_sha256="0" * 64,
                started_at=(T0 + timedelta(days=n)).isoformat(),
                artifacts=[info],
            )
            store.record(result)
        return store.history(recipe="tiny")


def test_a_changed_sidecar_is_no_converted_file_change(tmp_path: Path) -> None:
    first = _ncnn(tmp_path / "a", "0.89x")
    again = _ncnn(tmp_path / "b", "0.88x")  # the same model, its speed plan counted again
    other = _ncnn(tmp_path / "c", "0.88x", weights=b"\x01" * 64)
    old = first.model_copy(update={"model_sha256": None})  # stored before model_sha256 existed
    runs = _stored(tmp_path, [first, again, other, old, first])
    assert runs[0].result.artifacts[0].sha256 != runs[1].result.artifacts[0].sha256
    assert changes(runs[0].result, runs[1].result) == []
    assert changes(runs[1].result, runs[2].result) == ["ncnn-int8: converted file changed"]
    assert changes(runs[3].result, runs[4].result) == []  # one run without model_sha256: all files compared


def _key(run: StoredRun) -> tuple:
    t = next(t for t in run.result.runs if t.target == "pi4")
    assert t.agent is not None
    return fingerprint(run, t, t.agent.measurements[0])


def test_a_changed_sidecar_explains_no_regression(tmp_path: Path) -> None:
    """14 flat nights, then +30 % from night 15, whose ncnn-int8 sidecar differs (its model files do not):
    every slow night is flagged (it was flagged on night 15 only, 'explained' by the converted file)."""
    first = _ncnn(tmp_path / "a", "0.89x")
    again = _ncnn(tmp_path / "b", "0.88x")
    rng = np.random.default_rng(0)
    runs = []
    for d, level in enumerate([1.0] * 14 + [1.3] * 6):
        result = synthetic_result(
            T0 + timedelta(days=d),
            rng=rng,
            formats=(Format.NCNN_INT8,),
            targets=("pi4",),
            threads=(1,),
            slowdown={("ncnn-int8", "pi4"): level},
        )
        result.artifacts = [first if d < 14 else again]
        runs.append(StoredRun(d + 1, (T0 + timedelta(days=d)).timestamp(), result))
    assert not differs(_key(runs[13]), _key(runs[14]))
    # a run stored before model_sha256 against one after, the same files: no change for the kind of digest
    old = runs[12].result.model_copy(update={"artifacts": [first.model_copy(update={"model_sha256": None})]})
    assert not differs(_key(StoredRun(13, runs[12].started_ts, old)), _key(runs[13]))
    flagged = "".join(
        "X" if any(f.is_regression for f in detect_latest(runs[:n])) else "." for n in range(15, 21)
    )
    assert flagged == "XXXXXX"
