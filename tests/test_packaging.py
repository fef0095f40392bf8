"""`pip install .` (not editable) works too, says the README: the wheel must carry every file edgekit reads at run
time, not only its Python modules. Built here with the project's own build backend, then imported from the
unpacked wheel alone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_the_wheel_carries_every_file_edgekit_reads(tmp_path: Path) -> None:
    """The estimate's calibration data were left out of the wheel: `edgekit roofline` from a `pip install .`
    stopped with an internal FileNotFoundError (models.json). Every non-Python file under edgekit/ but its READMEs
    is in the wheel, and the estimate's calibration set loads from the unpacked wheel with no source tree."""
    source = (
        tmp_path / "src"
    )  # a copy: an in-tree build reuses build/lib, which may hold what the config leaves out
    ignore = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__", "tests", "bench", "docs")
    shutil.copytree(ROOT, source, symlinks=True, ignore=ignore)
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*build, "-w", str(tmp_path), str(source)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("edgekit-*.whl")
    with zipfile.ZipFile(wheel) as z:
        packed = set(z.namelist())
        z.extractall(tmp_path / "site")
    wanted = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "edgekit").rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc", ".md") and "__pycache__" not in p.parts
    }
    assert wanted and not wanted - packed, sorted(wanted - packed)
    site = str(tmp_path / "site")
    check = (
        "import edgekit, pathlib; from edgekit.estimate import calibration, crossval; "
        f"assert str(pathlib.Path(edgekit.__file__).parent).startswith({site!r}); "
        "assert len(calibration.models()) == 17 and crossval.stored_procedure_errors(); print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", check],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
