"""The artifact cache: keys change exactly when an artifact would; an unchanged recipe converts nothing twice."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from edgekit.convert import cache
from edgekit.convert.onnx_export import file_sha256
from edgekit.convert.tflite import TfliteConverter
from edgekit.formats import Format
from edgekit.recipe import Recipe, load_recipe


def tiny_recipe(tmp_path: Path, name: str = "r.yaml", **changes: Any) -> Recipe:
    raw = yaml.safe_load((Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml").read_text())
    raw.update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw))
    return load_recipe(path)


def key(recipe: Recipe, fmt: Format, onnx: str = "a" * 64, calib: str | None = "c" * 64) -> str:
    return cache.artifact_key(onnx, recipe, fmt, TfliteConverter, calib)


def test_key_follows_what_changes_the_artifact(tmp_path: Path) -> None:
    r = tiny_recipe(tmp_path)
    base32, base8 = key(r, Format.TFLITE_FP32), key(r, Format.TFLITE_INT8)
    assert base32 != base8
    assert key(r, Format.TFLITE_FP32, onnx="b" * 64) != base32
    # the calibration data and the INT8 options change the INT8 artifact only
    assert key(r, Format.TFLITE_INT8, calib="d" * 64) != base8
    assert key(r, Format.TFLITE_FP32, calib="d" * 64) == base32
    io8 = tiny_recipe(
        tmp_path,
        "io8.yaml",
        int8={"granularity": "per-channel", "io": "int8"},
        formats=["tflite-fp32", "tflite-int8"],
    )  # int8 io is refused for ncnn-int8
    assert key(io8, Format.TFLITE_INT8) != base8 and key(io8, Format.TFLITE_FP32) == base32
    # gates, benchmark settings and the description do not
    other = tiny_recipe(
        tmp_path,
        "other.yaml",
        description="x",
        benchmark={"repeat": 99},
        evaluation={"data": {"kind": "random"}, "gates": {"fp32": {"min_cosine": 0.5}}},
    )
    assert key(other, Format.TFLITE_FP32) == base32 and key(other, Format.TFLITE_INT8) == base8


def test_int8_key_holds_only_the_options_its_converter_reads(tmp_path: Path) -> None:
    """calibration.method re-converted tflite-int8 (TensorFlow does not read it) and int8.io onnx-int8, mnn-int8 and
    ncnn-int8 (only TFLite has int8 input and output) into files of the same sha256."""
    r = tiny_recipe(tmp_path)
    absmax = tiny_recipe(
        tmp_path, "abs.yaml", calibration={**r.model_dump(mode="json")["calibration"], "method": "absmax"}
    )
    io8 = tiny_recipe(tmp_path, "io8.yaml", int8={"io": "int8"}, formats=["tflite-int8"])
    for fmt in (Format.TFLITE_INT8, Format.TFLITE_ONNX2TF_INT8):
        assert key(absmax, fmt) == key(r, fmt) and key(io8, fmt) != key(r, fmt), fmt
    for fmt in (Format.NCNN_INT8, Format.MNN_INT8):
        assert key(absmax, fmt) != key(r, fmt) and key(io8, fmt) == key(r, fmt), fmt
    # onnx-int8's ranges are min/max whatever the method (convert/onnxrt.py): neither field re-converts it
    assert key(absmax, Format.ONNX_INT8) == key(r, Format.ONNX_INT8) == key(io8, Format.ONNX_INT8)


def test_key_follows_tool_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    r = tiny_recipe(tmp_path)
    before = key(r, Format.TFLITE_FP32)
    monkeypatch.setattr(TfliteConverter, "tool_versions", classmethod(lambda cls: {"onnx2tf": "9.9.9"}))
    assert key(r, Format.TFLITE_FP32) != before


def test_store_lookup_and_incomplete_entries(tmp_path: Path) -> None:
    f = tmp_path / "model.tflite"
    f.write_bytes(b"x" * 100)
    k = "f" * 64
    assert cache.lookup(k) is None
    stored = cache.store(k, Format.TFLITE_FP32, [f], 1.5, 300.0, {"tool": "t"})
    assert not stored.cached and stored.size_bytes == 100 and stored.main_file.parent == cache.entry_dir(k)
    hit = cache.lookup(k)
    assert hit is not None and hit.cached and hit.convert_s == 1.5 and hit.peak_rss_mb == 300.0
    assert hit.files == stored.files
    cache.save_fidelity(k, "d" * 64, {"cosine": 0.5})
    assert cache.load_fidelity(k, "d" * 64) == {"cosine": 0.5} and cache.load_fidelity(k, "e" * 64) is None
    stored.main_file.unlink()  # a damaged entry is a miss, never a broken artifact
    assert cache.lookup(k) is None


def test_a_store_never_removes_an_entry_another_writer_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs converting one artifact: the one that looked (no entry yet) before the other placed its entry then
    removed that entry to put its own, under the other run, which was returning those files."""
    k = "e" * 64
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "model.tflite", tmp_path / "b" / "model.tflite"
    first.write_bytes(b"a" * 100)
    second.write_bytes(b"b" * 100)
    real_lookup = cache.lookup
    placed: list[cache.Artifact] = []
    inode: list[int] = []  # of the file the other run returned, when it returned

    def looked_before_the_other_placed(key: str) -> cache.Artifact | None:
        seen = real_lookup(key)  # nothing there yet
        if not placed:
            monkeypatch.setattr(cache, "lookup", real_lookup)
            placed.append(cache.store(key, Format.TFLITE_FP32, [first], 1.0, None, {}))  # the other run
            inode.append(placed[0].main_file.stat().st_ino)
        return seen

    monkeypatch.setattr(cache, "lookup", looked_before_the_other_placed)
    ours = cache.store(k, Format.TFLITE_FP32, [second], 2.0, None, {})
    if not placed:  # the store no longer looks before it places: the other run places its entry right after
        monkeypatch.setattr(cache, "lookup", real_lookup)
        placed.append(cache.store(k, Format.TFLITE_FP32, [first], 1.0, None, {}))
        inode.append(placed[0].main_file.stat().st_ino)
    (other,) = placed
    assert other.main_file.stat().st_ino == inode[0]  # the file the other run returned was never removed
    kept = other.main_file.read_bytes()
    assert ours.main_file == other.main_file and ours.main_file.read_bytes() == kept  # one entry, both served
    hit = cache.lookup(k)
    assert hit is not None and hit.main_file.read_bytes() == kept
    assert not [p for p in cache.entry_dir(k).parent.iterdir() if ".tmp-" in p.name]


def test_an_older_entry_edgekit_cannot_serve_is_replaced(tmp_path: Path) -> None:
    f = tmp_path / "model.tflite"
    f.write_bytes(b"x" * 100)
    k = "d" * 64
    old = cache.entry_dir(k)
    old.mkdir(parents=True)
    (old / "model.tflite").write_bytes(b"old")
    (old / "artifact.json").write_text('{"format": "tflite-fp32", "files": ["model.tflite"]}')  # no checks
    assert cache.lookup(k) is None
    stored = cache.store(k, Format.TFLITE_FP32, [f], 1.0, None, {})
    assert stored.main_file.read_bytes() == b"x" * 100
    hit = cache.lookup(k)
    assert hit is not None and hit.main_file.read_bytes() == b"x" * 100
    assert not [p for p in old.parent.iterdir() if ".tmp-" in p.name]


def test_a_damaged_entry_is_a_miss_set_aside_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Each file's size and sha256 are recorded and checked: a truncated file, a same-size rewrite, a missing
    file or an unreadable artifact.json is a miss (served before as 'cached' with the old fidelity), its folder
    kept aside as KEY.damaged and said once."""
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    (tmp_path / "model.param").write_text("7767517\n")
    (tmp_path / "model.bin").write_bytes(bytes(range(256)) * 40)

    def damaged(damage: Any, said: str) -> None:
        k = "d" * 64
        stored = cache.store(
            k, Format.NCNN_FP32, [tmp_path / "model.param", tmp_path / "model.bin"], 1.0, None, {}
        )
        cache.save_fidelity(k, "e" * 64, {"cosine": 1.0})
        assert cache.lookup(k) is not None
        damage(stored.files[1])
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=cache.__name__):
            assert cache.lookup(k) is None
            assert cache.lookup(k) is None  # said once: the entry is gone
        assert [r.getMessage() for r in caplog.records if said in r.getMessage()], (said, caplog.text)
        assert len(caplog.records) == 1 and "converting it again" in caplog.text
        aside = cache.entry_dir(k).with_name(f"{k}.damaged")
        assert (aside / "model.param").is_file() and not cache.entry_dir(k).exists()
        assert cache.load_fidelity(k, "e" * 64) is None  # the old figures go with it
        again = cache.store(
            k, Format.NCNN_FP32, [tmp_path / "model.param", tmp_path / "model.bin"], 1.0, None, {}
        )
        assert again.files[1].read_bytes() == (tmp_path / "model.bin").read_bytes()
        hit = cache.lookup(k)
        assert hit is not None and hit.cached
        shutil.rmtree(cache.entry_dir(k))

    def flip(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[5000] ^= 1
        path.unlink()  # the entry's file may be a hard link: never write the source through it
        path.write_bytes(bytes(data))

    damaged(lambda p: os.truncate(p, 100), "model.bin has 100 bytes, 10240 were stored")
    damaged(flip, "model.bin's content changed since it was stored (sha256)")
    damaged(Path.unlink, "model.bin is missing")
    damaged(lambda p: (p.parent / "artifact.json").write_text("{"), "artifact.json is missing or unreadable")


def test_an_entry_from_before_the_recorded_sizes_is_converted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry an older edgekit wrote (no sizes, no hashes: nothing to verify against) is a miss without a
    warning, and storing the new conversion replaces it with a verified entry."""
    import json

    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    k = "0" * 64
    old = cache.entry_dir(k)
    old.mkdir(parents=True)
    (old / "model.tflite").write_bytes(b"x" * 10)
    (old / cache.META).write_text(
        json.dumps({"format": "tflite-fp32", "files": ["model.tflite"], "convert_s": 1})
    )
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        assert cache.lookup(k) is None
    assert not caplog.records and old.is_dir()
    (tmp_path / "model.tflite").write_bytes(b"y" * 20)
    cache.store(k, Format.TFLITE_FP32, [tmp_path / "model.tflite"], 1.0, None, {})
    hit = cache.lookup(k)
    assert hit is not None and hit.main_file.read_bytes() == b"y" * 20
    meta = json.loads((old / cache.META).read_text())
    assert meta["checks"]["model.tflite"]["size"] == 20


@pytest.mark.integration
def test_a_truncated_cached_artifact_is_converted_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The tester's case: the cached ncnn model.bin truncated to 100 bytes was served as 'cached yes', MB 0.0001,
    cosine 1.000000, pass, and deploy failed later. Now the next convert converts it again, and the artifact
    is whole and checked again."""
    from edgekit.convert.pipeline import convert_recipe

    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    r = tiny_recipe(tmp_path, formats=["ncnn-fp32"])
    (first,) = convert_recipe(r)
    whole = {f.name: f.read_bytes() for f in first.files}
    (weights,) = [f for f in first.files if f.name == "model.bin"]
    os.truncate(weights, 100)
    said: list[str] = []
    with caplog.at_level(logging.WARNING, logger=cache.__name__):
        (second,) = convert_recipe(r, progress=said.append)
    assert not second.cached and "ncnn-fp32: cached, no conversion" not in said
    assert "ncnn-fp32 artifact was damaged (model.bin has 100 bytes" in caplog.text
    assert {f.name: f.read_bytes() for f in second.files} == whole and second.size_bytes == first.size_bytes
    assert second.status == "ok" and second.fidelity["cosine"] > 0.9999
    (third,) = convert_recipe(r)
    assert third.cached and third.size_bytes == first.size_bytes


def test_store_links_work_files_and_copies_any_other(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A converter's output in its work folder is hard-linked (no second copy of a large model); a file from
    anywhere else is copied, so rewriting it in place (an exporter writing the same path) cannot change the entry."""
    from edgekit import paths

    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    work = paths.work_dir("T")
    work.mkdir(parents=True)
    (work / "a.bin").write_bytes(b"a" * 10)
    theirs = tmp_path / "b.bin"
    theirs.write_bytes(b"b" * 10)
    linked = cache.store("1" * 64, Format.TFLITE_FP32, [work / "a.bin"], 1.0, None, {}).main_file
    copied = cache.store("2" * 64, Format.TFLITE_FP32, [theirs], 1.0, None, {}).main_file
    assert linked.stat().st_ino == (work / "a.bin").stat().st_ino
    with theirs.open("r+b") as fh:  # in place
        fh.write(b"c" * 10)
    assert copied.read_bytes() == b"b" * 10


@pytest.mark.integration
def test_onnx_export_is_cached_by_builder_args_and_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(The whole second `convert` doing no work is tested in test_convert_tflite.py, after its conversion.)"""
    from edgekit.convert import onnx as onnx_mod
    from edgekit.convert import torch_export

    r = tiny_recipe(
        tmp_path, model={"kind": "torch", "builder": "edgekit.zoo.tiny:build", "args": {"width": 5}}
    )
    first = onnx_mod.prepare_onnx(r)
    assert not first.cached and first.simplifier and first.simplifier.startswith("onnxsim")

    def no_work(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(torch_export, "export_torch", no_work)
    second = onnx_mod.prepare_onnx(r)
    assert second.cached and second.path == first.path and second.sha256 == first.sha256
    other = tiny_recipe(
        tmp_path, "o.yaml", model={"kind": "torch", "builder": "edgekit.zoo.tiny:build", "args": {"width": 7}}
    )
    with pytest.raises(AssertionError, match="exported again"):
        onnx_mod.prepare_onnx(other)


@pytest.mark.integration
def test_weights_are_loaded_and_keyed_by_their_bytes(tmp_path: Path) -> None:
    import torch

    from edgekit.convert import onnx as onnx_mod
    from edgekit.errors import RecipeError
    from edgekit.zoo.tiny import build

    torch.manual_seed(1)
    torch.save(build(width=4).state_dict(), tmp_path / "w.pt")
    torch.save({"state_dict": build(num_classes=3, width=4).state_dict()}, tmp_path / "bad.pt")
    src = {"kind": "torch", "builder": "edgekit.zoo.tiny:build", "args": {"width": 4}}
    plain = onnx_mod.prepare_onnx(tiny_recipe(tmp_path, "a.yaml", model=src))
    weighted = onnx_mod.prepare_onnx(tiny_recipe(tmp_path, "b.yaml", model={**src, "weights": "w.pt"}))
    assert weighted.sha256 != plain.sha256 and weighted.path != plain.path
    with pytest.raises(RecipeError, match=r"model\.weights.*do not fit"):
        onnx_mod.prepare_onnx(tiny_recipe(tmp_path, "c.yaml", model={**src, "weights": "bad.pt"}))


@pytest.mark.integration
def test_weights_that_are_not_a_state_dict_are_named_for_what_they_are(tmp_path: Path) -> None:
    """A pickled model object (torch.save(model)), a TorchScript archive, garbage and an empty file: each a
    RecipeError saying what the file is, never torch's advice to load it with weights_only=False."""
    import torch

    from edgekit.convert import onnx as onnx_mod
    from edgekit.errors import RecipeError
    from edgekit.zoo.tiny import build

    model = build(width=4).eval()
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), tmp_path / "object.pt")  # a module object
    torch.jit.trace(model, torch.zeros(1, 3, 32, 32)).save(str(tmp_path / "scripted.pt"))
    (tmp_path / "junk.pt").write_bytes(bytes(range(256)))
    (tmp_path / "empty.pt").write_bytes(b"")
    src = {"kind": "torch", "builder": "edgekit.zoo.tiny:build", "args": {"width": 4}}
    for name, said in [
        ("object.pt", "pickled Python object"),
        ("scripted.pt", "is a saved model"),
        ("junk.pt", "not a PyTorch state dict"),
        ("empty.pt", "the file is empty"),
    ]:
        with pytest.raises(RecipeError, match=said) as info:
            onnx_mod.prepare_onnx(tiny_recipe(tmp_path, f"{name}.yaml", model={**src, "weights": name}))
        assert "weights_only" not in str(info.value) and "state_dict()" in (info.value.hint or "")
        if name == "scripted.pt":  # the file is a model in itself: the hint says how to give it as one
            assert "model: {kind: torch, path: scripted.pt}" in (info.value.hint or "")


def test_builder_code_digest_follows_the_sibling_modules_it_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edgekit.convert.code_digest import builder_code_digest

    pkg = tmp_path / "mypkg_digest"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(
        "import json\nfrom mypkg_digest.layers import block\nfrom . import relative\n\n"
        "def build():\n    import mypkg_digest.head\n    return block\n"
    )
    for name in ("layers", "head", "relative", "unrelated"):
        (pkg / f"{name}.py").write_text("block = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    first = builder_code_digest("mypkg_digest.model:build")
    (pkg / "unrelated.py").write_text("block = 2\n")
    assert builder_code_digest("mypkg_digest.model:build") == first
    seen = {first}
    for name in ("layers", "head"):  # a top-level import and one inside the builder function
        (pkg / f"{name}.py").write_text("block = 3\n")
        digest = builder_code_digest("mypkg_digest.model:build")
        assert digest not in seen, name
        seen.add(digest)


def test_imports_read_from_bytecode_match_the_syntax_tree(tmp_path: Path) -> None:
    """The bytecode reading (thread-safe) finds the same imports as ast does, on edgekit's code and on relative
    imports (edgekit has none), inside functions too."""
    import ast

    import edgekit
    from edgekit.convert.code_digest import _imports

    sample = tmp_path / "sample.py"
    sample.write_text(
        "from . import a, b\nfrom .blocks import f as g\nimport x.y as z\nfrom q import *\n\n"
        "def h():\n    from ..up.more import k\n    import w\n"
    )
    files = [sample, *sorted(Path(edgekit.__file__).parent.rglob("*.py"))]
    assert len(files) > 50
    for path in files:
        found: set[tuple[int, str, tuple[str, ...]]] = set()
        for node in ast.walk(ast.parse(path.read_bytes())):
            if isinstance(node, ast.Import):
                found |= {(0, a.name, ()) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                found.add((node.level, node.module or "", tuple(a.name for a in node.names)))
        assert set(_imports(path.read_bytes(), path)) == found, path
    assert (2, "up.more", ("k",)) in _imports(sample.read_bytes(), sample)


def test_a_damaged_prepared_onnx_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The ONNX every format converts from (cache/onnx/KEY/model.onnx) was served if it merely existed: truncated,
    its hash (and so every artifact key) changed and each conversion failed on it."""
    import onnx

    from edgekit.convert.onnx import prepare_onnx

    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    recipe = load_recipe(Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml")
    first = prepare_onnx(recipe)
    assert not first.cached and prepare_onnx(recipe).cached  # recorded, then served
    whole = first.path.read_bytes()
    first.path.write_bytes(whole[:100])
    with caplog.at_level("WARNING"):
        again = prepare_onnx(recipe)
    assert not again.cached and onnx.load(str(again.path)).graph.node
    assert any("was damaged" in r.getMessage() for r in caplog.records)
    assert prepare_onnx(recipe).cached


BARRIER_BUILDER = '''
import os
import time
from pathlib import Path

from edgekit.zoo.tiny import build as tiny


def build(**args):
    """The tiny model, once every process of the test has got here: their exports start together."""
    here = Path(os.environ["BARRIER_DIR"])
    (here / str(os.getpid())).touch()
    deadline = time.monotonic() + 120
    while len(list(here.iterdir())) < int(os.environ["BARRIER_COUNT"]) and time.monotonic() < deadline:
        time.sleep(0.005)
    return tiny(**args)
'''


PREPARE = (
    "import sys; from edgekit.convert.onnx import prepare_onnx; from edgekit.recipe import load_recipe; "
    "prepare_onnx(load_recipe(sys.argv[1]))"
)


@pytest.mark.integration
def test_concurrent_conversions_of_one_pytorch_model_each_export_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two terminals converting one PyTorch model with a fresh data dir: both exported into the same
    onnx/KEY/export.onnx, so one moved the other's file away (an internal FileNotFoundError) or loaded it half
    written, and the loser rewrote meta.json without the sha256, which turned the integrity check off for good.
    Each process now exports in a work folder of its own, renamed into place: three processes whose exports
    start together (their builder waits for all three) all succeed, and the entry records its hash."""
    import json
    import subprocess
    import sys

    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "barrier_net.py").write_text(BARRIER_BUILDER)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))  # the recipe's builder is checked when it is read
    r = tiny_recipe(tmp_path, model={"kind": "torch", "builder": "barrier_net:build", "args": {"width": 6}})
    count = 3
    for trial in range(2):
        home, barrier = tmp_path / f"home{trial}", tmp_path / f"barrier{trial}"
        barrier.mkdir()
        env = {
            **os.environ,
            "EDGEKIT_HOME": str(home),
            "PYTHONPATH": str(tmp_path / "code"),
            "BARRIER_DIR": str(barrier),
            "BARRIER_COUNT": str(count),
        }
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", PREPARE, str(r.path)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(count)
        ]
        outs = [p.communicate(timeout=600)[0] for p in runs]
        assert [p.returncode for p in runs] == [0] * count, outs
        (entry,) = (home / "cache" / "onnx").iterdir()
        meta = json.loads((entry / "meta.json").read_text())
        assert meta["sha256"] == file_sha256(entry / "model.onnx"), meta
        assert sorted(p.name for p in entry.iterdir()) == ["meta.json", "model.onnx"]
        assert not list((home / "cache" / "work").glob("onnx-*")), "work folders left behind"


def test_a_prepared_onnx_whose_meta_records_no_hash_is_made_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A meta.json without sha256 (what a concurrent run left, an older edgekit's, a meta.json cut short by a
    crash) was taken as it was, unchecked: a corrupted model.onnx there was every artifact's source and fidelity
    reference. Such an entry cannot be checked, so it is made again (and its meta.json is never written in
    place)."""
    import json

    import onnx

    from edgekit.convert.onnx import prepare_onnx

    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    recipe = tiny_recipe(
        tmp_path, model={"kind": "torch", "builder": "edgekit.zoo.tiny:build", "args": {"width": 3}}
    )
    first = prepare_onnx(recipe)
    whole = first.path.read_bytes()
    meta_file = first.path.with_name("meta.json")
    meta = json.loads(meta_file.read_text())
    weights = max((t.raw_data for t in onnx.load(str(first.path)).graph.initializer), key=len)
    at = whole.index(weights)
    for damage in ("no sha256", "cut short"):
        data = bytearray(whole)
        data[at : at + 64] = bytes(64)  # weights rewritten in place: a model that loads, the size unchanged
        first.path.write_bytes(bytes(data))
        if damage == "no sha256":
            meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "sha256"}))
        else:
            meta_file.write_text(json.dumps(meta)[:20])
        again = prepare_onnx(recipe)
        assert not again.cached, damage
        assert again.path.read_bytes() == whole and again.sha256 == first.sha256, damage
        assert json.loads(meta_file.read_text())["sha256"] == first.sha256
        assert prepare_onnx(recipe).cached


def test_a_savedmodel_whose_variables_folder_is_a_link_is_keyed_by_the_weights_it_links_to(
    tmp_path: Path,
) -> None:
    """A SavedModel's `variables/` as a symlink to other weights was the same key (Path.rglob does not enter a
    linked folder) and the old export was served; TensorFlow follows the link. A link back up the tree ends."""
    from edgekit.convert.onnx_export import tree_sha256

    for name, content in (("x", b"weights one"), ("y", b"weights two")):
        (tmp_path / "vars" / name).mkdir(parents=True)
        (tmp_path / "vars" / name / "variables.data-00000-of-00001").write_bytes(content)
    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"graph")
    (model / "variables").symlink_to(tmp_path / "vars" / "x")
    first = tree_sha256(model)
    (model / "variables").unlink()
    (model / "variables").symlink_to(tmp_path / "vars" / "y")
    assert tree_sha256(model) != first
    (model / "loop").symlink_to(model)  # a cycle: hashed once, no endless walk
    assert tree_sha256(model)
