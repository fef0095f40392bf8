"""Runtime wheels for a device's platform, downloaded on the host: one code path for emulated devices and
real boards (`edgekit targets setup`), so a board without internet access is provisioned the same way.

Wheels land in a shared cache, emu_dir()/wheels/<python>-<platform>/<requirement-set hash>/, keyed by the device's python
version, machine and glibc: pi4-emu, pi5-emu and phone-emu (all aarch64 CPython 3.11, glibc 2.36) share one.
Versions follow the repo's constraints.txt where it pins them.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edgekit.errors import EdgekitError, EmulatorError, TargetError
from edgekit.paths import constraints_file
from edgekit.runtimes import device_packages

# Packages and default pins come from the runtime registry (edgekit/runtimes/). Wheel sets: ai-edge-litert and
# ncnn together; tflite-runtime 2.14 apart because it needs numpy<2; onnxruntime and OpenCV in a third set (their
# own site dir, so adding them left the first two untouched); MNN in a fourth.
_DEFAULT_PINS = {"numpy": "1.26.4", **{p.pip: p.pin for p in device_packages() if p.pin}}
RUNTIME_PACKAGES = {p.module: p.pip for p in device_packages()}
TFLITE_RUNTIME_REQS = ("tflite-runtime==2.14.0", "numpy<2")


@dataclass(frozen=True)
class WheelPlatform:
    """What pip needs to pick wheels for a device: CPython version, machine and the device's glibc."""

    python: str = "3.11"  # major.minor
    machine: str = "aarch64"
    glibc: tuple[int, int] = (2, 36)  # bookworm

    @property
    def key(self) -> str:
        return f"cp{self.python.replace('.', '')}-{self.tag}"

    @property
    def tag(self) -> str:
        """The newest manylinux tag the device's glibc satisfies (pip_args also offers the older ones)."""
        return f"manylinux_{self.glibc[0]}_{self.glibc[1]}_{self.machine}"

    def pip_args(self) -> list[str]:
        """--platform for every manylinux tag the device's glibc satisfies (pip matches tags exactly)."""
        tags = [f"manylinux_2_{n}_{self.machine}" for n in range(17, self.glibc[1] + 1)]
        tags.append(f"manylinux2014_{self.machine}")
        abi = f"cp{self.python.replace('.', '')}"
        args = [
            "--only-binary=:all:",
            "--python-version",
            self.python,
            "--implementation",
            "cp",
            "--abi",
            abi,
        ]
        for tag in tags:
            args += ["--platform", tag]
        return args


def pinned_requirements(packages: list[str]) -> list[str]:
    """`name==version` for each package, from constraints.txt when it pins it (else edgekit's default)."""
    pins = dict(_DEFAULT_PINS)
    constraints = constraints_file()
    if constraints is not None and constraints.exists():
        for line in constraints.read_text().splitlines():
            m = re.match(r"^\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s#;]+)", line)
            if m and m.group(1).lower().replace("_", "-") in pins:
                pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    return [f"{p}=={pins[p]}" if p in pins else p for p in packages]


# The newest CPython each numpy release series publishes wheels for (numpy's release notes); a series not listed
# is tried (pip then says what it found).
_NUMPY_NEWEST_PYTHON = {
    "1.24": (3, 11),
    "1.25": (3, 11),
    "1.26": (3, 12),
    "2.0": (3, 12),
    "2.1": (3, 13),
    "2.2": (3, 13),
}


def numpy_has_wheel(version: str, python: str) -> bool:
    """False when numpy `version` is known to publish no wheel for CPython `python` (major.minor): numpy 1.26.4,
    edgekit's pin, stops at 3.12."""
    series = ".".join(version.split(".")[:2])
    newest = _NUMPY_NEWEST_PYTHON.get(series)
    major, minor = (int(x) for x in python.split(".")[:2])
    return newest is None or (major, minor) <= newest


def litert_requirements() -> list[str]:
    """numpy, ai-edge-litert and ncnn at the versions the host toolchain uses."""
    return pinned_requirements(["numpy", "ai-edge-litert", "ncnn"])


def onnx_opencv_requirements() -> list[str]:
    """numpy, onnxruntime and opencv-python-headless: onnxruntime at the host's version (its aarch64 CPython 3.11
    wheel exists), OpenCV at the last release that installs beside numpy<2 (4.11.0.86; 4.12 needs numpy 2)."""
    return pinned_requirements(["numpy", RUNTIME_PACKAGES["onnxruntime"], RUNTIME_PACKAGES["cv2"]])


def mnn_requirements() -> list[str]:
    """numpy and MNN (3.6.1 publishes manylinux2014 aarch64 CPython 3.11 wheels; it needs only numpy)."""
    return pinned_requirements(["numpy", RUNTIME_PACKAGES["MNN"]])


def wheel_dir(platform: WheelPlatform, requirements: list[str], cache: Path) -> Path:
    """cache/<key>/<hash of the requirement set>/: one dir per requirement set (push exactly what pip resolved)."""
    digest = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:10]
    dest = cache / platform.key / digest
    # The key is made of what a device reports: a `..` in it put the folder pip downloads into, and whose wheels
    # setup pushes, anywhere. (deploy.agent_result.lies_under's test: emu may not import deploy.)
    if not dest.resolve().is_relative_to(cache.resolve()):
        raise TargetError(
            f"the wheel folder for platform {platform.key!r} would be {dest.resolve()}, outside the wheel cache "
            f"{cache}: refused",
            where="wheel cache",
            hint="the device reported a machine, Python or glibc that is no plain name or version",
        )
    return dest


def wheels_cached(platform: WheelPlatform, requirements: list[str], cache: Path) -> bool:
    """Whether download_wheels would return at once (its stamp holds this requirement list): no download."""
    stamp = wheel_dir(platform, requirements, cache) / ".requirements"
    try:
        return stamp.read_text() == "\n".join(requirements) + "\n"
    except OSError:
        return False


def site_installed(site: Path, requirements: list[str]) -> bool:
    """Whether install_wheels_into would return at once: the site dir is there and its stamp holds this set."""
    try:
        stamp = (site.parent / f"{site.name}.done").read_text()
    except OSError:
        return False
    return stamp == "\n".join(requirements) + "\n" and site.is_dir()


def download_wheels(
    platform: WheelPlatform,
    requirements: list[str],
    cache: Path,
    log: Callable[[str], None] = print,
    error: type[EdgekitError] = EmulatorError,
) -> Path:
    """Download wheels (with their dependencies) for `platform` into cache/<key>/<hash of the requirement
    set>/; return that dir.

    Idempotent: a stamp holding the requirement list makes a second call free.
    """
    dest = wheel_dir(platform, requirements, cache)
    stamp = dest / ".requirements"
    wanted = "\n".join(requirements) + "\n"
    if wheels_cached(platform, requirements, cache):
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    log(f"wheels: downloading {' '.join(requirements)} for {platform.key}")
    _pip(
        [
            "download",
            "-q",
            "--disable-pip-version-check",
            "-d",
            str(dest),
            *platform.pip_args(),
            *requirements,
        ],
        error,
        platform,
    )
    stamp.write_text(wanted)
    return dest


def install_wheels_into(
    site: Path,
    wheel_dir: Path,
    platform: WheelPlatform,
    requirements: list[str],
    log: Callable[[str], None] = print,
) -> Path:
    """Install downloaded wheels into a site dir on this machine, offline (the emulated devices' case)."""
    stamp = site.parent / f"{site.name}.done"
    wanted = "\n".join(requirements) + "\n"
    if site_installed(site, requirements):
        return site
    log(f"wheels: installing into {site} (offline, from {wheel_dir})")
    tmp = site.parent / f"{site.name}.tmp"
    _rmtree(tmp)
    _pip(
        [
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(wheel_dir),
            "--target",
            str(tmp),
            *platform.pip_args(),
            *requirements,
        ]
    )
    _rmtree(site)
    tmp.rename(site)
    stamp.write_text(wanted)
    return site


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _pip(
    args: list[str], error: type[EdgekitError] = EmulatorError, platform: WheelPlatform | None = None
) -> None:
    """Run this machine's pip; a failure raises `error` (EmulatorError for the emulated devices' wheels,
    RuntimeInstallError for a board's). `platform`: the device's, when pip downloads for it from an index."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, env=_pip_env()
    )
    if proc.returncode != 0:
        lines = [
            ln for ln in (proc.stdout + proc.stderr).splitlines() if "is ignored: it is neither" not in ln
        ]
        said = "\n".join(lines[-15:])
        if platform is not None and "(from versions: none)" in said:  # pip saw no version it could take
            raise _found_no_version(said, platform, error)
        raise error(
            f"pip {args[0]} failed (exit {proc.returncode}):\n{said}",
            where="wheel download",
            hint="the package may publish no wheel for this device's platform/python",
        )


def _pip_env() -> dict[str, str]:
    """This machine's environment, pip never prompting."""
    return {**os.environ, "PIP_NO_INPUT": "1"}


def _found_no_version(said: str, platform: WheelPlatform, error: type[EdgekitError]) -> EdgekitError:
    """pip's "(from versions: none)" means the index was not reachable, or that no file of the package fits the
    device's Python and platform (tflite-runtime 2.14.0 has no cp313 wheel): it was all said as "offline". The
    index is asked once more, without the device's filters, to tell which."""
    index = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    wanted = (re.findall(r"satisfies the requirement (\S+)", said) or ["?"])[-1]
    named = re.match(r"[A-Za-z0-9._-]+", wanted)  # numpy<2 -> numpy
    name = named.group(0) if named else wanted
    reached, answer = _index_answers(name)
    if not reached:
        return error(
            f"pip download found no version of {wanted}, and no package index was reachable ({index}): "
            f"{answer}\n{said}",
            where="wheel download",
            hint="is this machine offline? check PIP_INDEX_URL / pip's config (a mirror) and the proxy, "
            "then run setup again",
        )
    seen = f"{name} {answer} for this machine's Python" if answer else f"no {name} this machine takes either"
    return error(
        f"no wheel of {wanted} for CPython {platform.python} / {platform.tag} (the device's Python and platform); "
        f"the index answers ({index}: {seen}):\n{said}",
        where="wheel download",
        hint=f"see the Pythons and platforms {name} publishes wheels for (pypi.org/project/{name}/#files); give "
        "the runtime a python on the device that has one (`runtime_python:`), or leave it out of the target's "
        "runtimes (--set 'runtimes=[...]')",
    )


def _index_answers(name: str) -> tuple[bool, str]:
    """Whether the package index answers for `name` (pip index versions, with this machine's Python and
    platform, no device filters), and what it said: its versions ("2.14.0, 2.13.0"), or why pip could not fetch
    the page. A 404 is an answer (no such project there)."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", name, "-vv", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        env=_pip_env(),
    )
    lines = (proc.stdout + proc.stderr).splitlines()
    if proc.returncode == 0:
        versions = next((ln for ln in lines if ln.startswith("Available versions:")), "")
        return True, versions.partition(":")[2].strip()
    failed = [ln for ln in lines if ln.startswith("Could not fetch URL") and " Client Error: " not in ln]
    return not failed, failed[-1] if failed else ""
