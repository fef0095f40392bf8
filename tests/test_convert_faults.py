"""Faults of the conversion pipeline found in review: a speed plan whose counting failed, a prune beside a convert
that made the cache folder, a read-only cache, a malformed EDGEKIT_CONVERT_TIMEOUT. Real conversions of the tiny
recipe in a fresh data dir (the emulated cores' counting is simulated: it is the cache's handling under test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.formats import Format

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "recipes" / "tiny.yaml"


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_an_int8_artifact_whose_speed_plan_failed_is_not_served_as_counted(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A qemu guest timing out once made ncnn-int8 all-int8, cached under the key that says the plan was counted:
    every later convert served it ("cached, no conversion") and only the sidecar said so. Now the run warns, and
    the next run counts again."""
    from edgekit.convert.ncnn import plan
    from edgekit.convert.pipeline import convert_recipe
    from edgekit.errors import EmulatorError
    from edgekit.recipe import load_recipe

    calls: list[int] = []

    def measure(*_a: object, **_k: object) -> None:
        calls.append(1)
        raise EmulatorError("qemu guest timed out (simulated)")

    monkeypatch.setattr(plan, "enabled", lambda: True)
    monkeypatch.setattr(plan, "measure", measure)
    said: list[str] = []
    first = convert_recipe(load_recipe(TINY), [Format.NCNN_INT8], progress=said.append)[0]
    assert calls == [1] and first.status == "ok" and not first.cached
    assert any(
        "WARNING: the speed plan's counting failed" in m and "qemu guest timed out" in m for m in said
    ), said
    assert any("all-int8 this time" in f for f in first.provenance["findings"]), first.provenance
    assert first.provenance["tools"]["edgekit-ncnn-speed-plan"] == "failed"
    again = convert_recipe(load_recipe(TINY), [Format.NCNN_INT8], progress=said.append)[0]
    assert calls == [1, 1] and not again.cached  # counted again, not served from the cache


def test_a_convert_that_made_the_cache_folder_holds_it_against_a_prune(home: Path) -> None:
    """`rm -rf cache; edgekit convert tiny.yaml &` then `edgekit cache prune --all` as soon as the prepared ONNX
    appeared: prune removed it (exit 0) and the convert failed blaming the model. The command's lock was only taken
    when the cache folder existed at its start; now it is taken when the command makes the folder."""
    import os
    import subprocess
    import sys

    from edgekit.convert import housekeeping
    from edgekit.convert.pipeline import convert_recipe
    from edgekit.recipe import load_recipe

    assert not (home / "cache").exists()
    with housekeeping.in_use():  # what the CLI holds around every command but prune
        art = convert_recipe(load_recipe(TINY), [Format.ONNX_FP32])[0]
        prune = subprocess.run(
            [sys.executable, "-m", "edgekit", "cache", "prune", "--all"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "EDGEKIT_HOME": str(home)},
        )
        assert prune.returncode == 1 and "is using the conversion cache" in prune.stderr, prune.stderr
        assert art.main_file.is_file() and list((home / "cache" / "onnx").glob("*/model.onnx"))
