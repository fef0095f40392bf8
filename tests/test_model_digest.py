"""An artifact's model files against its sidecar: ncnn's model.io.json holds the speed plan's instruction counts,
which differ by a few instructions from one conversion to the next, so a re-conversion of byte-identical
model.param / model.bin read as "ncnn-int8: converted file changed" in the report (and explained away a
regression that night). `model_sha256` digests the model files alone; `converted_changed` compares by it where
both runs have it, and by the digest of every file for a run stored before it."""

from __future__ import annotations

import json
from pathlib import Path

from edgekit.convert.base import Artifact
from edgekit.deploy.orchestrate import artifact_info
from edgekit.formats import Format
from edgekit.results import DeployResult, converted_changed
from edgekit.store import open_store


def _ncnn(folder: Path, counts: str, weights: bytes = b"\x00" * 64) -> Artifact:
    folder.mkdir(parents=True)
    files = [folder / "model.param", folder / "model.bin", folder / "model.io.json"]
    files[0].write_text("7767517\n1 1\nInput in0 0 1 in0\n")
    files[1].write_bytes(weights)
    files[2].write_text(json.dumps({"notes": [f"int8 kernel slower (pi4-emu {counts})"]}))
    return Artifact(Format.NCNN_INT8, files, key="k", size_bytes=sum(f.stat().st_size for f in files))


def test_a_sidecar_that_differs_is_no_change_of_the_converted_model(tmp_path: Path) -> None:
    first = artifact_info(_ncnn(tmp_path / "a", "0.89x"))
    again = artifact_info(_ncnn(tmp_path / "b", "0.88x"))  # the same model, counted again
    other = artifact_info(_ncnn(tmp_path / "c", "0.89x", weights=b"\x01" * 64))  # another model
    assert first.sha256 != again.sha256 and first.model_sha256 == again.model_sha256
    assert not converted_changed(first, again)
    assert converted_changed(first, other)
    before = first.model_copy(update={"model_sha256": None})  # a run stored before model_sha256
    assert converted_changed(before, again)  # every file's digest is all it has: the sidecar counts there
    assert not converted_changed(before, first)


def test_the_model_digest_is_kept_by_the_store(tmp_path: Path) -> None:
    info = artifact_info(_ncnn(tmp_path / "a", "0.89x"))
    result = DeployResult(
        recipe="tiny",
        recipe_path="r.yaml",
        recipe_sha256="0" * 64,
        started_at="2026-12-06T00:00:00+00:00",
        artifacts=[info],
    )
    with open_store(f"sqlite:///{tmp_path / 'results.sqlite'}") as store:
        run_id = store.record(result)
        back = store.load(run_id).artifacts[0]
    assert back.model_sha256 == info.model_sha256 and back.sha256 == info.sha256
