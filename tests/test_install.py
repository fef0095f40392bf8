"""A non-editable install works: the wheel built from this tree, installed into a fresh venv and run from a
folder outside the repository, finds its example targets (package data) and needs no file of the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the fresh venv's edgekit script, a working folder outside the repo)."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "src"  # a copy: building in the shared checkout would leave build/ and *.egg-info there
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for name in ("edgekit", "targets"):
        shutil.copytree(
            REPO / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    wheels = tmp / "wheels"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        cwd=tmp,
    )
    wheel = next(wheels.glob("edgekit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "edgekit/targets/pi4-emu.yaml" in names and "edgekit/agent/agent.py" in names

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    site = next(venv.glob("lib/python*/site-packages"))
    # the dependencies from this test's environment, appended after the venv's own site-packages (a plain path
    # line: that folder's .pth files, the editable edgekit's among them, are not run)
    (site / "zz-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        cwd=tmp,
    )
    work = tmp / "elsewhere"
    work.mkdir()
    return venv / "bin" / "edgekit", work


def _env(work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEKIT_") and k != "PYTHONPATH"}
    return {**env, "EDGEKIT_HOME": str(work / "home"), "COLUMNS": "120"}


def test_the_installed_edgekit_is_the_wheel_not_the_checkout(installed: tuple[Path, Path]) -> None:
    edgekit, work = installed
    python = edgekit.with_name("python")
    out = _run(
        [
            str(python),
            "-c",
            "import edgekit, edgekit.paths as p; print(edgekit.__file__); "
            "print(p.source_checkout()); print(p.constraints_file())",
        ],
        cwd=work,
        env=_env(work),
    )
    where, checkout, constraints = out.stdout.split()
    assert where.startswith(str(python.parent.parent)) and str(REPO) not in where
    assert checkout == "None" and constraints == "None"
    assert _run([str(edgekit), "--version"], cwd=work, env=_env(work)).stdout.startswith("edgekit ")


def test_targets_and_formats_run_from_outside_the_repo(installed: tuple[Path, Path]) -> None:
    edgekit, work = installed
    listed = _run([str(edgekit), "targets"], cwd=work, env=_env(work)).stdout
    for name in ("pi4", "pi5", "pi4-emu", "pi5-emu", "phone-emu", "local"):
        assert name in listed, listed
    formats = _run([str(edgekit), "formats"], cwd=work, env=_env(work)).stdout
    assert "tflite-int8" in formats and "ncnn-fp16" in formats
