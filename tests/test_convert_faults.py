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
