"""ncnn-int8 starts from the fp32 model pnnx writes, which is the ncnn-fp32 artifact's .param/.bin: where the
conversion cache holds that artifact (this run's, or an earlier run's), ncnn-int8 takes its files and pnnx runs
once, not twice; the int8 artifact is byte for byte the one made with pnnx run again; a change to what the fp32
model depends on (the model, pnnx's version) or a damaged entry runs pnnx again."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgekit.convert import cache
from edgekit.convert.base import Artifact
from edgekit.convert.ncnn import converter as ncnn_converter
from edgekit.convert.ncnn.converter import NcnnConverter
from edgekit.convert.pipeline import convert_recipe
from edgekit.formats import Format
from edgekit.recipe import Recipe, load_recipe

REPO = Path(__file__).resolve().parent.parent
FP32, INT8 = Format.NCNN_FP32, Format.NCNN_INT8


def tiny_recipe(tmp_path: Path, name: str = "r.yaml", **changes: Any) -> Recipe:
    raw = yaml.safe_load((REPO / "recipes" / "tiny.yaml").read_text())
    raw.update(changes, formats=["ncnn-fp32", "ncnn-int8"])
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return load_recipe(path)


@pytest.fixture
def pnnx_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, bool]]:
    """A fresh EDGEKIT_HOME; each pnnx run the ncnn converter makes, (model, fp16)."""
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    runs: list[tuple[Path, bool]] = []
    real = ncnn_converter.run_pnnx

    def counted(model_path: Path, *args: Any, fp16: bool, **kwargs: Any) -> None:
        runs.append((model_path, fp16))
        real(model_path, *args, fp16=fp16, **kwargs)

    monkeypatch.setattr(ncnn_converter, "run_pnnx", counted)
    return runs


def files_of(art: Artifact) -> dict[str, bytes]:
    assert art.status == "ok", art.error
    return {f.name: f.read_bytes() for f in art.files}


def drop(*arts: Artifact) -> None:
    for art in arts:
        shutil.rmtree(cache.entry_dir(art.key))


@pytest.mark.integration
def test_int8_takes_the_fp32_model_of_the_cached_ncnn_fp32(
    tmp_path: Path, pnnx_runs: list[tuple[Path, bool]]
) -> None:
    recipe = tiny_recipe(tmp_path)
    said: list[str] = []
    fp32, int8 = convert_recipe(recipe, [FP32, INT8], progress=said.append)
    # one pnnx run for both formats (two before: ncnn-int8 ran pnnx again for the same fp32 model)
    assert [fp16 for _, fp16 in pnnx_runs] == [False]
    assert not fp32.cached and not int8.cached
    assert any("ncnn-int8" in line and "from the cached ncnn-fp32" in line for line in said), said
    reused = files_of(int8)

    # the same conversion with pnnx run for ncnn-int8 (no ncnn-fp32 in the cache): the same files, byte for byte
    drop(fp32, int8)
    pnnx_runs.clear()
    (again,) = convert_recipe(recipe, [INT8])
    assert [fp16 for _, fp16 in pnnx_runs] == [False]
    assert again.key == int8.key and files_of(again) == reused
    assert again.fidelity == int8.fidelity

    # its fp32 model is ncnn-fp32's files: what ncnn-int8 quantized is what ncnn-fp32 ships
    (fp32_again,) = convert_recipe(recipe, [FP32])
    assert len(pnnx_runs) == 2 and files_of(fp32_again) == files_of(fp32)

    # asked for in the other order, ncnn-fp32 is still converted first and ncnn-int8 takes it (pnnx ran twice: the
    # fp32 entry did not exist yet); the artifacts come back in the order asked for
    drop(fp32_again, again)  # the cache now holds neither
    pnnx_runs.clear()
    said.clear()
    int8_first, fp32_second = convert_recipe(recipe, [INT8, FP32], progress=said.append)
    assert (int8_first.format, fp32_second.format) == (INT8, FP32)
    assert [fp16 for _, fp16 in pnnx_runs] == [False], said
    assert files_of(int8_first) == reused


@pytest.mark.integration
def test_int8_runs_pnnx_when_the_fp32_model_would_differ(
    tmp_path: Path,
    pnnx_runs: list[tuple[Path, bool]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    recipe = tiny_recipe(tmp_path)
    fp32, int8 = convert_recipe(recipe, [FP32, INT8])
    assert len(pnnx_runs) == 1

    # int8 options and calibration data change the int8 artifact only: it is converted again from the cached fp32
    other_calib = tiny_recipe(
        tmp_path,
        "calib.yaml",
        calibration={
            "data": {
                "kind": "builder",
                "builder": "edgekit.zoo.tiny:images",
                "args": {"size": 32},
                "samples": 16,
                "seed": 7,
            },
            "method": "kl",
        },
    )
    (recalibrated,) = convert_recipe(other_calib, [INT8])
    assert recalibrated.key != int8.key and not recalibrated.cached
    assert len(pnnx_runs) == 1 and files_of(recalibrated) != files_of(int8)

    # another model (its own ONNX sha256): ncnn-fp32 of the first is not its fp32 model
    wider = tiny_recipe(
        tmp_path,
        "wider.yaml",
        model={"kind": "torch", "builder": "edgekit.zoo.tiny:build", "args": {"num_classes": 10, "width": 4}},
    )
    (narrow,) = convert_recipe(wider, [INT8])
    assert len(pnnx_runs) == 2 and narrow.status == "ok" and pnnx_runs[-1][0] != pnnx_runs[0][0]

    # a damaged ncnn-fp32 entry (a file rewritten since it was stored) is no fp32 model: pnnx runs, and the int8
    # artifact is the one pnnx's fp32 model makes (the damaged one would quantize other weights)
    made = files_of(int8)
    drop(int8)
    bin_file = next(f for f in fp32.files if f.suffix == ".bin")
    data = bytearray(bin_file.read_bytes())
    data[-1] ^= 0xFF
    bin_file.unlink()  # not written in place: the entry's file may be a hard link
    bin_file.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="edgekit"):
        (after_damage,) = convert_recipe(recipe, [INT8])
    assert len(pnnx_runs) == 3 and files_of(after_damage) == made
    # said as what happens: ncnn-int8 runs pnnx; ncnn-fp32 was not asked for, so it is not "converted again" now
    said = [r.getMessage() for r in caplog.records if "was damaged" in r.getMessage()]
    assert len(said) == 1 and "ncnn-int8 runs pnnx itself" in said[0], said
    assert "converting it again" not in said[0], said

    # another pnnx (its version is in both keys): the cached fp32 model is not taken
    convert_recipe(recipe, [FP32])  # the cache holds a whole ncnn-fp32 again
    assert len(pnnx_runs) == 4
    real = NcnnConverter.dist_versions.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(
        NcnnConverter, "dist_versions", classmethod(lambda cls: {**real(cls), "pnnx": "0.0.0-other"})
    )
    (other_pnnx,) = convert_recipe(recipe, [INT8])
    assert other_pnnx.key != int8.key and not other_pnnx.cached
    assert len(pnnx_runs) == 5


@pytest.mark.integration
def test_an_fp32_entry_gone_between_lookup_and_copy_runs_pnnx(
    tmp_path: Path, pnnx_runs: list[tuple[Path, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`edgekit cache prune --all` beside a conversion can remove the ncnn-fp32 entry after ncnn-int8 found it and
    before it copied the files: that was a crashed conversion (FileNotFoundError); pnnx runs instead."""
    recipe = tiny_recipe(tmp_path)
    (fp32,) = convert_recipe(recipe, [FP32])
    pnnx_runs.clear()
    real = shutil.copyfile

    def pruned_meanwhile(src: Any, dst: Any, **kwargs: Any) -> Any:
        if Path(src).is_relative_to(cache.entry_dir(fp32.key)):
            shutil.rmtree(cache.entry_dir(fp32.key))  # prune took it between lookup and this copy
        return real(src, dst, **kwargs)

    monkeypatch.setattr(ncnn_converter.shutil, "copyfile", pruned_meanwhile)
    (int8,) = convert_recipe(recipe, [INT8])
    assert int8.status == "ok", int8.error
    assert [fp16 for _, fp16 in pnnx_runs] == [False]


def test_the_speed_plan_switch_keys_ncnn_int8_only(
    tmp_path: Path, pnnx_runs: list[tuple[Path, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ncnn format's key held `edgekit-ncnn-speed-plan: counted | off`, though only ncnn-int8 runs the plan:
    `EDGEKIT_NCNN_SPEED_PLAN=0 edgekit convert -f ncnn-fp32` then the same without it ran pnnx again ("1
    converted, 0 from the cache"), beside the first entry, which ncnn-int8's fp32 lookup then missed. Now the
    second run is a cache hit; ncnn-int8's key alone changes with the switch."""
    from edgekit.convert.ncnn import plan
    from edgekit.errors import EmulatorError

    recipe = tiny_recipe(tmp_path)
    monkeypatch.setattr(plan, "enabled", lambda: False)  # EDGEKIT_NCNN_SPEED_PLAN=0 (or no cores found)
    off = {a.format: a for a in convert_recipe(recipe, [FP32, Format.NCNN_FP16, INT8])}
    assert off[INT8].provenance["tools"]["edgekit-ncnn-speed-plan"] == "off"  # its key's tools, said
    assert "edgekit-ncnn-speed-plan" not in off[FP32].provenance["tools"]
    int8_off = off.pop(INT8).key
    monkeypatch.setattr(plan, "enabled", lambda: True)  # counted
    on = {a.format: a for a in convert_recipe(recipe, [FP32, Format.NCNN_FP16])}
    assert all(not a.cached for a in off.values()) and all(a.cached for a in on.values()), on
    assert {f: a.key for f, a in on.items()} == {f: a.key for f, a in off.items()}
    assert len(pnnx_runs) == 2, pnnx_runs  # fp32 and fp16, once each

    def measure(*_a: object, **_k: object) -> None:  # the counting is not under test: it fails, all-int8
        raise EmulatorError("qemu guest timed out (simulated)")

    monkeypatch.setattr(plan, "measure", measure)
    said: list[str] = []
    int8 = convert_recipe(recipe, [INT8], progress=said.append)[0]
    assert int8.status == "ok" and len(pnnx_runs) == 2, (int8.error, pnnx_runs)  # ncnn-fp32's files, no pnnx
    assert int8.key != int8_off and not int8.cached  # not the plan-off entry (keyed "failed" here)
    assert any("fp32 model from the cached ncnn-fp32 artifact" in m for m in said), said
