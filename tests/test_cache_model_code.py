"""The PyTorch export's cache key covers the user's own model code: every module of theirs the builder imports,
transitively, relative imports and a flat layout (top-level modules) included; installed packages are not read."""

from __future__ import annotations

import importlib
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgekit.convert import code_digest
from edgekit.convert.code_digest import builder_code_digest

NET = """
import torch
from torch import nn

{imports}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3 * 32 * 32, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)) * head_scale()


def build():
    torch.manual_seed(0)
    return Net()
"""
BLOCKS = "SCALE = {scale}\n\n\ndef head_scale():\n    return SCALE\n"


@pytest.fixture()
def user_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for the user's code; the modules imported from it are forgotten after the test (and
    between the two conversions of a test, as a second `edgekit convert` process would not have them)."""
    root = tmp_path / "userpkg"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    yield root
    forget(root)


def forget(root: Path) -> None:
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(root)):
            del sys.modules[name]
    importlib.invalidate_caches()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def dist_metadata(name: str, version: str) -> str:
    """A distribution's METADATA file, as an installer writes it (what importlib.metadata reads)."""
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"


def test_digest_follows_the_users_modules_transitively(user_code: Path) -> None:
    """Relative and absolute imports, a chain of modules, a cycle and the packages above a module; a module
    nobody imports and an installed package (in a site-packages folder, with its version) do not count."""
    pkg = user_code / "deepnet"
    write(pkg / "__init__.py", "")
    write(pkg / "model.py", "from .layers.conv import conv\nfrom . import relative\nimport flatmod\n")
    write(pkg / "layers" / "__init__.py", "DEFAULT = 1\n")
    write(pkg / "layers" / "conv.py", "from ..util import helper\nimport fakeinstalled.core\nconv = 1\n")
    write(pkg / "util.py", "import deepnet.model\n\ndef helper():\n    from deepnet import late\n")  # a cycle
    for name in ("relative", "late", "unrelated"):
        write(pkg / f"{name}.py", "x = 1\n")
    write(user_code / "flatmod.py", "import flatdeep\n")
    write(user_code / "flatdeep.py", "x = 1\n")
    installed = user_code.parent / "venv" / "lib" / "site-packages"
    write(installed / "fakeinstalled" / "__init__.py", "")
    write(installed / "fakeinstalled" / "core.py", "x = 1\n")
    write(installed / "fakeinstalled-1.0.dist-info" / "METADATA", dist_metadata("fakeinstalled", "1.0"))
    sys.path.append(str(installed))
    try:
        first = builder_code_digest("deepnet.model:build")
        seen = {first}
        for path in [installed / "fakeinstalled" / "core.py", pkg / "unrelated.py"]:
            path.write_text("x = 2\n")
            assert builder_code_digest("deepnet.model:build") == first, path
        for name in ("layers/__init__", "layers/conv", "util", "relative", "late", "__init__"):
            path = pkg / f"{name}.py"
            path.write_text(path.read_text() + "\ny = 2\n")
            digest = builder_code_digest("deepnet.model:build")
            assert digest not in seen, name
            seen.add(digest)
        for path in [user_code / "flatmod.py", user_code / "flatdeep.py"]:  # top-level modules of the user's
            path.write_text(path.read_text() + "\ny = 2\n")
            digest = builder_code_digest("deepnet.model:build")
            assert digest not in seen, path
            seen.add(digest)
        assert "fakeinstalled" not in sys.modules and "deepnet" not in sys.modules  # nothing was imported
    finally:
        sys.path.remove(str(installed))


def test_a_compiled_builder_module_is_keyed_by_its_bytes(user_code: Path) -> None:
    """A builder module without source (a sourceless .pyc, as a Cython .so) had the one digest 'unknown': an
    edited and recompiled model was served the old export from the cache."""
    import py_compile

    digests = set()
    for scale in (1.0, 2.0):
        source = user_code / "src" / "compiledmod.py"
        write(source, BLOCKS.format(scale=scale))
        py_compile.compile(str(source), cfile=str(user_code / "compiledmod.pyc"), doraise=True)
        importlib.invalidate_caches()
        digests.add(builder_code_digest("compiledmod:head_scale"))
    assert len(digests) == 2 and "unknown" not in digests


def test_imports_past_a_modules_256th_name_and_compiled_or_zipped_modules_are_keyed(
    user_code: Path, tmp_path: Path
) -> None:
    """Three ways an edit of the user's own code was served the old export: an import after a module's 256th
    name or constant (`from .blocks import SCALE`: an EXTENDED_ARG came between its LOAD_CONSTs and it was read
    as a top-level `blocks`, never found), a module the builder imports that exists only compiled (a .pyc, a
    .so), and a module inside a zip on PYTHONPATH (hashed as one placeholder whatever it held)."""
    import py_compile
    import zipfile

    many = "".join(f"OPT_{i} = {i}\n" for i in range(300))
    write(user_code / "bigpkg" / "__init__.py", "")
    write(user_code / "bigpkg" / "net.py", many + "from .blocks import SCALE\nfrom bigpkg import other\n")
    for name in ("blocks", "other"):
        write(user_code / "bigpkg" / f"{name}.py", "SCALE = 1.0\n")
    first = builder_code_digest("bigpkg.net:build")
    for name in ("blocks", "other"):
        (user_code / "bigpkg" / f"{name}.py").write_text(f"SCALE = 2.5  # {name}\n")
        assert builder_code_digest("bigpkg.net:build") != first, name
        first = builder_code_digest("bigpkg.net:build")

    write(user_code / "cpkg" / "__init__.py", "")
    write(user_code / "cpkg" / "net.py", "from cpkg import cblocks\n")
    digests = set()
    for scale in (1.0, 2.5):
        source = tmp_path / "src" / "cblocks.py"
        write(source, BLOCKS.format(scale=scale))
        py_compile.compile(str(source), cfile=str(user_code / "cpkg" / "cblocks.pyc"), doraise=True)
        importlib.invalidate_caches()
        digests.add(builder_code_digest("cpkg.net:build"))
    assert len(digests) == 2

    archive = tmp_path / "z.zip"
    digests = set()
    for scale in (1.0, 2.5):
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr("zpkg/__init__.py", "")
            z.writestr("zpkg/net.py", "from .blocks import head_scale\n")
            z.writestr("zpkg/blocks.py", BLOCKS.format(scale=scale))
        sys.path.insert(0, str(archive))
        try:
            importlib.invalidate_caches()
            sys.path_importer_cache.pop(str(archive), None)
            digests.add(builder_code_digest("zpkg.net:build"))
        finally:
            sys.path.remove(str(archive))
    assert len(digests) == 2


def test_a_stale_pyc_of_the_same_size_and_mtime_is_not_what_a_builder_runs(tmp_path: Path) -> None:
    """Python trusts a __pycache__ .pyc whose recorded source size and mtime match: an edit of the same size
    with the mtime kept (cp -p, rsync -a, tar) ran the old code while the export's key read the new source, and
    the old model was stored under the new key. The user's modules are compiled from their source."""
    import os

    pkg = tmp_path / "stalepkg"
    write(pkg / "__init__.py", "")
    write(pkg / "blocks.py", "SCALE = 3.0\n\n\ndef scale():\n    return SCALE\n")
    stamp = (pkg / "blocks.py").stat().st_mtime
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    ask = "from edgekit.recipe.builders import resolve_callable; print(resolve_callable('stalepkg.blocks:scale')())"
    once = subprocess.run([sys.executable, "-c", ask], capture_output=True, text=True, env=env, timeout=120)
    assert once.stdout.strip() == "3.0", once.stderr
    subprocess.run(
        [sys.executable, "-c", "import stalepkg.blocks"], env=env, check=True, timeout=120
    )  # a .pyc
    assert list((pkg / "__pycache__").glob("blocks.*.pyc"))
    write(pkg / "blocks.py", "SCALE = 4.0\n\n\ndef scale():\n    return SCALE\n")  # same size
    os.utime(pkg / "blocks.py", (stamp, stamp))  # and the mtime kept
    stale = subprocess.run(
        [sys.executable, "-c", "import stalepkg.blocks as b; print(b.scale())"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert stale.stdout.strip() == "3.0"  # Python's own import runs the stale .pyc: the trap is real
    again = subprocess.run([sys.executable, "-c", ask], capture_output=True, text=True, env=env, timeout=120)
    assert again.stdout.strip() == "4.0", again.stdout + again.stderr


def test_digest_is_bounded_and_says_so(
    user_code: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for i in range(5):
        write(user_code / f"chain{i}.py", f"import chain{i + 1}\n")
    write(user_code / "chain5.py", "x = 1\n")
    monkeypatch.setattr(code_digest, "MAX_CODE_FILES", 3)
    with caplog.at_level(logging.WARNING, logger=code_digest.__name__):
        first = builder_code_digest("chain0:build")
    assert "imports more than 3 of your modules" in caplog.text
    write(user_code / "chain1.py", "import chain2\ny = 2\n")
    assert builder_code_digest("chain0:build") != first


@pytest.mark.integration
@pytest.mark.parametrize("layout", ["package", "flat"])
def test_editing_a_helper_module_of_the_model_exports_it_again(
    layout: str, user_code: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tester's case: the model's forward multiplies by a constant from a helper module; editing the helper
    served the old cached export ('cached, no conversion') and the old figures."""
    import onnxruntime as ort

    from edgekit.convert.pipeline import convert_recipe
    from edgekit.formats import Format
    from edgekit.recipe import load_recipe

    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))  # both layouts export the same network
    if layout == "package":  # mynet/model.py: from .blocks import head_scale
        write(user_code / "mynet" / "__init__.py", "")
        write(user_code / "mynet" / "model.py", NET.format(imports="from .blocks import head_scale"))
        helper, builder = user_code / "mynet" / "blocks.py", "mynet.model:build"
    else:  # flatnet.py: import flatblocks
        write(
            user_code / "flatnet.py",
            NET.format(imports="import flatblocks\nhead_scale = flatblocks.head_scale"),
        )
        helper, builder = user_code / "flatblocks.py", "flatnet:build"
    write(helper, BLOCKS.format(scale="1.0"))
    raw = yaml.safe_load((Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml").read_text())
    raw.update(model={"kind": "torch", "builder": builder}, formats=["onnx-fp32"])
    (tmp_path / "relnet.yaml").write_text(yaml.safe_dump(raw))
    recipe = load_recipe(tmp_path / "relnet.yaml")
    x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)

    def convert() -> tuple[bool, np.ndarray]:
        (art,) = convert_recipe(recipe, [Format.ONNX_FP32])
        forget(user_code)  # the next `edgekit convert` is a new process
        session = ort.InferenceSession(str(art.main_file), providers=["CPUExecutionProvider"])
        return art.cached, session.run(None, {"input": x})[0]

    cached, before = convert()
    assert not cached
    assert convert()[0]  # unchanged code: from the cache
    helper.write_text(BLOCKS.format(scale="1000.0"))
    cached, after = convert()
    assert not cached, "the edited helper module was not seen"
    np.testing.assert_allclose(after, before * 1000.0, rtol=1e-4, atol=1e-4)


def torch_key_of(tmp_path: Path, builder: str) -> str:
    from edgekit.convert.torch_export import torch_key
    from edgekit.recipe import TorchSource, load_recipe

    raw = yaml.safe_load((Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml").read_text())
    raw.update(model={"kind": "torch", "builder": builder}, formats=["onnx-fp32"])
    (tmp_path / "key.yaml").write_text(yaml.safe_dump(raw))
    recipe = load_recipe(tmp_path / "key.yaml")
    assert isinstance(recipe.model, TorchSource)
    importlib.invalidate_caches()  # as a new process would see the files
    return torch_key(recipe, recipe.model)


def test_installed_code_that_no_version_stands_for_is_read(user_code: Path, tmp_path: Path) -> None:
    """The reviewer's case: the model's package in a folder named site-packages on PYTHONPATH, with no
    distribution installed for it: its imports were never followed and no version was keyed, so an edited
    mypkg/blocks.py was served the old export. Code no distribution stands for is read as the user's own."""
    site = tmp_path / "sp" / "site-packages"
    write(site / "spnet" / "__init__.py", "")
    write(site / "spnet" / "model.py", NET.format(imports="from spnet.blocks import head_scale"))
    write(site / "spnet" / "blocks.py", BLOCKS.format(scale="1.0"))
    sys.path.insert(0, str(site))
    try:
        first = torch_key_of(tmp_path, "spnet.model:build")
        assert torch_key_of(tmp_path, "spnet.model:build") == first
        write(site / "spnet" / "blocks.py", BLOCKS.format(scale="2.0"))
        assert torch_key_of(tmp_path, "spnet.model:build") != first
    finally:
        sys.path.remove(str(site))


def test_installed_packages_the_model_imports_are_keyed_by_version(user_code: Path, tmp_path: Path) -> None:
    """A package the builder imports (timm, torchvision), upgraded, gave the old export: no version but torch's
    was keyed. Its distribution's name and version are in the key now, its code is not read."""
    site = tmp_path / "venv" / "lib" / "site-packages"
    write(site / "layerlib" / "__init__.py", "from layerlib.core import head_scale\n")
    write(site / "layerlib" / "core.py", BLOCKS.format(scale="1.0"))
    write(site / "layerlib-1.0.dist-info" / "METADATA", dist_metadata("layerlib", "1.0"))
    write(user_code / "libnet.py", NET.format(imports="from layerlib import head_scale"))
    sys.path.insert(0, str(site))
    try:
        first = torch_key_of(tmp_path, "libnet:build")
        write(site / "layerlib" / "core.py", BLOCKS.format(scale="2.0"))  # its version stands for its code
        assert torch_key_of(tmp_path, "libnet:build") == first
        (site / "layerlib-1.0.dist-info").rename(site / "layerlib-2.0.dist-info")
        write(site / "layerlib-2.0.dist-info" / "METADATA", dist_metadata("layerlib", "2.0"))
        assert torch_key_of(tmp_path, "libnet:build") != first
        assert code_digest.builder_code("libnet:build").packages["layerlib"] == "2.0"
    finally:
        sys.path.remove(str(site))


@pytest.mark.integration
def test_a_package_installed_from_a_local_folder_is_read(user_code: Path, tmp_path: Path) -> None:
    """`pip install .` of the user's model package, edited and installed again under the same version: the
    export came from the cache. A distribution installed from local files is read as the user's own code."""
    src = tmp_path / "src"
    write(
        src / "pyproject.toml",
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "pipnet"\nversion = "0.1.0"\n[tool.setuptools]\npackages = ["pipnet"]\n',
    )
    write(src / "pipnet" / "__init__.py", "")
    write(src / "pipnet" / "model.py", NET.format(imports="from .blocks import head_scale"))
    site = tmp_path / "venv" / "lib" / "site-packages"

    def install(scale: str) -> str:
        write(src / "pipnet" / "blocks.py", BLOCKS.format(scale=scale))
        pip = [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
        ]
        subprocess.run([*pip, "--upgrade", "--target", str(site), str(src)], check=True, capture_output=True)
        return torch_key_of(tmp_path, "pipnet.model:build")

    sys.path.insert(0, str(site))
    try:
        first = install("1.0")
        assert (site / "pipnet" / "blocks.py").is_file() and list(site.glob("pipnet-0.1.0.dist-info"))
        assert install("1.0") == first  # installed again unchanged
        assert install("2.0") != first
    finally:
        sys.path.remove(str(site))
