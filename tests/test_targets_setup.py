"""`edgekit targets setup` on a board (not emulated): real pythons and venvs on this machine through `transport:
local` targets. Nothing is downloaded: the wheel download is replaced by stand-in wheels built here (a module
that imports, with the distribution's metadata the probe reads a version from)."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from edgekit.emu import device_info, provision
from edgekit.target import Target, load_target


def _stand_in_wheel(folder: Path, dist: str, version: str) -> Path:
    """A pure-python wheel named `dist` at `version`: an importable module of that name, and its dist-info."""
    module = dist.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    path = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{module}/__init__.py", f"__version__ = {version!r}\n")
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        z.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr(f"{info}/RECORD", "")
    return path


@pytest.fixture
def stand_in_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """download_wheels makes stand-in wheels of each pinned requirement; returns the requirement sets asked."""
    asked: list[list[str]] = []

    def download(platform: object, reqs: list[str], cache: Path, log: object, error: object = None) -> Path:
        asked.append(list(reqs))
        folder = tmp_path / f"wheels{len(asked)}"
        folder.mkdir()
        for req in reqs:
            m = re.fullmatch(r"([A-Za-z0-9_.-]+)==([^;\s]+)", req)
            assert m, req
            _stand_in_wheel(folder, m.group(1), m.group(2))
        return folder

    monkeypatch.setattr(provision, "download_wheels", download)
    return asked


PY313 = Path("/root/.pyenv/versions/3.13.0/bin/python3.13")


def _make_venv(folder: Path, base: str | None = None) -> Path:
    """A fresh venv (with pip: ensurepip is offline) of `base` (the python running the tests by default)."""
    base = base or getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(folder)], check=True, capture_output=True)
    return folder


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    return _make_venv(tmp_path / "venv")


def _pip_install(python: Path, wheel: Path) -> None:
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-index", "--disable-pip-version-check", str(wheel)],
        check=True,
        capture_output=True,
    )


def _target(tmp_path: Path, name: str, python: str, runtimes: list[str], extra: str = "") -> Target:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\ntransport: local\npython: {python}\nwork_dir: {tmp_path / ('work-' + name)}\n"
        f"runtimes: [{', '.join(runtimes)}]\n{extra}"
    )
    return load_target(path)


def test_setup_installs_into_a_venv_without_user(
    tmp_path: Path, venv: Path, stand_in_downloads: list[list[str]]
) -> None:
    """A board whose python is a venv: pip refused --user there ('User site-packages are not visible in this
    virtualenv'); setup installs into the venv itself."""
    python = venv / "bin" / "python"
    target = _target(tmp_path, "lvenv", str(python), ["ncnn"])
    lines: list[str] = []
    info = provision.setup_target(target, lines.append)
    assert info.raw["venv"] is True
    assert not info.not_installed, lines
    assert info.runtimes["ncnn"], info.runtimes
    site = subprocess.run(
        [str(python), "-c", "import ncnn, sys; print(ncnn.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert site.stdout.startswith(str(venv)), site.stdout  # in the venv, not the user's site dir


needs_py313 = pytest.mark.skipif(not PY313.exists(), reason="no CPython 3.13 on this machine")


@needs_py313
def test_setup_leaves_a_devices_own_numpy_as_it_is(
    tmp_path: Path, stand_in_downloads: list[list[str]]
) -> None:
    """A Python 3.13 device that has numpy 2.1: setup asked for numpy==1.26.4 anyway (no cp313 wheel: 'Could not
    find a version that satisfies the requirement numpy==1.26.4'); now only the runtime is fetched."""
    venv = _make_venv(tmp_path / "v313", str(PY313))
    python = venv / "bin" / "python"
    _pip_install(python, _stand_in_wheel(tmp_path, "numpy", "2.1.0"))
    target = _target(tmp_path, "py313", str(python), ["ncnn"])
    info = provision.setup_target(target, lambda _: None)
    assert [[r.split("==")[0] for r in reqs] for reqs in stand_in_downloads] == [["ncnn"]]
    assert not info.not_installed and info.runtimes["ncnn"]
    assert info.runtimes["numpy"] == "2.1.0"  # the device's own, untouched


@needs_py313
def test_setup_says_the_numpy_pin_has_no_wheel_for_the_devices_python(
    tmp_path: Path, stand_in_downloads: list[list[str]]
) -> None:
    from edgekit.emu.wheels import pinned_requirements
    from edgekit.errors import RuntimeInstallError

    venv = _make_venv(tmp_path / "v313", str(PY313))
    target = _target(tmp_path, "py313", str(venv / "bin" / "python"), ["ncnn"])
    with pytest.raises(RuntimeInstallError) as err:
        provision.setup_target(target, lambda _: None)
    pin = pinned_requirements(["numpy"])[0]
    assert "Python 3.13" in str(err.value) and pin in str(err.value), str(err.value)
    assert "install a numpy on the device" in (err.value.hint or "")
    assert stand_in_downloads == []  # said before anything is downloaded


def test_setup_on_a_board_refuses_host_only_and_uninstallable_runtimes_before_downloading(
    tmp_path: Path, venv: Path, stand_in_downloads: list[list[str]]
) -> None:
    """A board's setup downloaded (and pushed) executorch and openvino, which the emulated path refuses: host-only
    or no release installs beside edgekit's pins. Refused the same way, before any download."""
    from edgekit.errors import RuntimeInstallError

    target = _target(tmp_path, "board", str(venv / "bin" / "python"), ["ncnn", "executorch", "openvino"])
    lines: list[str] = []
    info = provision.setup_target(target, lines.append)
    asked = {r.split("==")[0] for reqs in stand_in_downloads for r in reqs}
    assert asked == {"numpy", "ncnn"}, stand_in_downloads
    assert set(info.not_installed) == {"executorch", "openvino"}
    assert "host-only" in info.not_installed["openvino"]
    assert "no executorch release installs" in info.not_installed["executorch"]
    with pytest.raises(RuntimeInstallError):
        provision.require_installed(target, info)


def test_check_reads_each_runtime_from_the_python_a_deploy_runs_it_with(tmp_path: Path, venv: Path) -> None:
    """`python:` has ncnn, `runtime_python: {ncnn: ...}` has not: check (and formats --target) said ncnn was there,
    merged from every python, though a deploy runs ncnn with its runtime_python; setup then installed nothing."""
    _pip_install(venv / "bin" / "python", _stand_in_wheel(tmp_path, "ncnn", "1.0.1"))
    bare = _make_venv(tmp_path / "bare")
    target = _target(
        tmp_path,
        "rtp",
        str(venv / "bin" / "python"),
        ["ncnn"],
        f"runtime_python: {{ncnn: {bare / 'bin' / 'python'}}}\n",
    )
    info = device_info.check_target(target, lambda _: None)
    assert info.runtimes["ncnn"] is None, info.runtimes
    plain = _target(tmp_path, "plain", str(venv / "bin" / "python"), ["ncnn"])
    assert device_info.check_target(plain, lambda _: None).runtimes["ncnn"] == "1.0.1"


def test_setup_installs_a_runtime_with_its_own_runtime_python(
    tmp_path: Path, venv: Path, stand_in_downloads: list[list[str]]
) -> None:
    """`runtime_python: {ncnn: OTHER}`: setup installed ncnn with `python:` and then said "installed, but OTHER does
    not import it" (exit 1); a deploy runs ncnn with OTHER. It is installed there now, numpy with it where OTHER
    has none, and `python:` is left as it was."""
    _pip_install(venv / "bin" / "python", _stand_in_wheel(tmp_path, "numpy", "1.26.4"))
    other = _make_venv(tmp_path / "other") / "bin" / "python"
    target = _target(
        tmp_path, "rtp2", str(venv / "bin" / "python"), ["ncnn"], f"runtime_python: {{ncnn: {other}}}\n"
    )
    lines: list[str] = []
    info = provision.setup_target(target, lines.append)
    assert not info.not_installed, (info.not_installed, lines)
    assert info.runtimes["ncnn"], info.runtimes
    assert [sorted(r.split("==")[0] for r in reqs) for reqs in stand_in_downloads] == [["ncnn", "numpy"]]
    assert any(f"for `{other}` (runtime_python)" in line for line in lines), lines
    imports = [str(p) for p in (other, venv / "bin" / "python")]
    ran = [subprocess.run([p, "-c", "import ncnn"], capture_output=True).returncode for p in imports]
    assert ran == [0, 1]  # in the runtime's own python only


def test_runtime_python_keys_are_runtimes(tmp_path: Path) -> None:
    from edgekit.errors import TargetError

    with pytest.raises(TargetError) as err:
        _target(tmp_path, "typo", "python3", ["ncnn"], "runtime_python: {ncnnn: python3}\n")
    assert "ncnnn" in str(err.value) and "did you mean ncnn" in str(err.value)


def test_setup_offline_says_no_index_was_reachable(
    tmp_path: Path, venv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline, a board's download failure blamed the package ('the package may publish no wheel for this
    device's platform/python') and was raised as an emulator error. It says no package index was reachable,
    as the board's error (RuntimeInstallError, exit 1). The index is a closed port here: nothing is fetched."""
    from edgekit.errors import RuntimeInstallError

    for key, value in {
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_RETRIES": "0",
        "PIP_CONFIG_FILE": "/dev/null",
    }.items():
        monkeypatch.setenv(key, value)
    target = _target(tmp_path, "offline", str(venv / "bin" / "python"), ["ncnn"])
    with pytest.raises(RuntimeInstallError) as err:
        provision.setup_target(target, lambda _: None)
    assert err.value.exit_code == 1
    assert "no package index was reachable (http://127.0.0.1:9/simple)" in str(err.value)
    assert "offline" in (err.value.hint or "")


FAKE_PKG = """#!/bin/sh
# stand-in for Termux's pkg: knows no python-tflite-runtime (a batch naming it fails), installs nothing
echo "$@" >> "$(dirname "$0")/../pkg.log"
case " $* " in *" python-tflite-runtime "*) echo "E: Unable to locate package python-tflite-runtime" >&2; exit 100;; esac
exit 0
"""


def test_termux_setup_gives_each_runtime_its_own_error(tmp_path: Path, venv: Path) -> None:
    """The failed batch `pkg install`'s last line was stored for every package and a one-by-one install that
    exited 0 never cleared it: onnxruntime was said not installed because 'E: Unable to locate package
    python-tflite-runtime'. Each package keeps only its own attempt's error."""
    prefix = tmp_path / "com.termux" / "usr"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "pkg").write_text(FAKE_PKG)
    (prefix / "bin" / "pkg").chmod(0o755)
    python = (
        f"env TERMUX_VERSION=0.118.1 PREFIX={prefix} PIP_INDEX_URL=http://127.0.0.1:9/simple PIP_FIND_LINKS= "
        f"PIP_RETRIES=0 PIP_CONFIG_FILE=/dev/null {venv / 'bin' / 'python'}"
    )
    target = _target(tmp_path, "fakephone", python, ["tflite_runtime", "onnxruntime"])
    info = provision.setup_target(target, lambda _: None)
    asked = (prefix / "pkg.log").read_text().splitlines()
    assert asked[0].startswith("install -y ") and len(asked) > 2  # a batch, then one by one
    assert (
        "pkg python-tflite-runtime: E: Unable to locate package python-tflite-runtime"
        in (info.not_installed["tflite_runtime"])
    )
    assert "python-tflite-runtime" not in info.not_installed["onnxruntime"], info.not_installed
    assert "pkg python-onnxruntime: installed nothing importable" in info.not_installed["onnxruntime"]
