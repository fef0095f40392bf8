"""Set-up of counting mode: the plugin-capable qemu, the plugin header, and the compiled insn_count plugin.

Debian ships neither a qemu plugin nor `qemu-plugin.h`, so the header is taken from Debian's qemu source
package of the same version as the installed qemu (a private apt configuration with deb-src lines, nothing
touches the host's apt state) and cached under emu_dir(); it is never committed. The static qemu cannot load
plugins: counting uses the dynamic `qemu-aarch64` from Debian's `qemu-user` package. Downloads happen here
only (set-up time); a build ends with a self-test on a tiny aarch64 program whose count is known exactly.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from edgekit.emu.plugin import selftest
from edgekit.errors import EmulatorError
from edgekit.paths import emu_dir

SOURCE = Path(__file__).with_name("insn_count.c")
HEADER_NAME = "qemu-plugin.h"
SYSTEM_QEMU = Path("/usr/bin/qemu-aarch64")
DEB_SRC_LINES = (
    "deb-src http://deb.debian.org/debian bookworm main\n"
    "deb-src http://deb.debian.org/debian bookworm-updates main\n"
    "deb-src http://deb.debian.org/debian-security bookworm-security main\n"
)


def plugin_dir() -> Path:
    path = emu_dir() / "plugin"
    path.mkdir(parents=True, exist_ok=True)
    return path


def plugin_path() -> Path:
    """Where the compiled plugin lives (it may not be built yet)."""
    return plugin_dir() / "insn_count.so"


def counting_qemu() -> Path:
    """The plugin-capable dynamic qemu-aarch64: the system one, or one unpacked from qemu-user by set-up."""
    unpacked = plugin_dir() / "qemu-user" / "usr" / "bin" / "qemu-aarch64"
    for candidate in (SYSTEM_QEMU, unpacked):
        if candidate.exists():
            return candidate
    raise EmulatorError(
        "no plugin-capable qemu-aarch64 found (the static qemu cannot load plugins)",
        where=str(SYSTEM_QEMU),
        hint="run `edgekit emu build-plugin` (or install Debian's qemu-user package)",
    )


def is_built() -> bool:
    return plugin_path().exists() and _stamp().exists() and _stamp().read_text() == _source_digest()


def require_plugin() -> Path:
    """The built plugin, for run time: never downloads or compiles (that is set-up's job)."""
    if not is_built():
        stale = plugin_path().exists()
        raise EmulatorError(
            "the instruction-counting plugin is "
            + (
                f"out of date ({SOURCE.name} changed since it was built, or its build did not finish)"
                if stale
                else "not built"
            ),
            where=str(plugin_path()),
            hint="run `edgekit emu build-plugin` (or `edgekit emu build pi4-emu`, which does it)",
        )
    return plugin_path()


def build_plugin(log: Callable[[str], None] = print, force: bool = False) -> Path:
    """Fetch the header if needed, compile the plugin, self-test it, and return the .so path."""
    if is_built() and not force:
        return plugin_path()
    qemu = _ensure_qemu(log)
    log(f"counting plugin: header {HEADER_NAME} from Debian's qemu source ({qemu_source_version()})")
    header = fetch_header(qemu_source_version())
    log(f"counting plugin: gcc {SOURCE.name} -> {plugin_path()}")
    _compile(header.parent, plugin_path())
    count = selftest.run(qemu, plugin_path(), plugin_dir() / "selftest")
    log(f"counting plugin: self-test counted {count} instructions with {qemu} (expected, exact)")
    if count != selftest.expected(selftest.LOOPS):
        raise EmulatorError(
            f"plugin self-test counted {count} instructions, expected {selftest.expected(selftest.LOOPS)}",
            where=str(plugin_path()),
        )
    _stamp().write_text(_source_digest())
    return plugin_path()


def qemu_source_version() -> str:
    """The Debian source version of the installed qemu-user (the header must match the binary's API)."""
    out = _run(["dpkg-query", "-W", "-f=${source:Version}", "qemu-user"], "dpkg-query qemu-user", check=False)
    return out.strip() or "7.2"  # unpacked (not installed) qemu-user: newest bookworm source


def fetch_header(version: str) -> Path:
    """Download the qemu source package once and extract only include/qemu/qemu-plugin.h from it."""
    include = plugin_dir() / "include"
    header = include / HEADER_NAME
    if header.exists():
        return header
    apt_conf = _private_apt()
    src = plugin_dir() / "src"
    src.mkdir(exist_ok=True)
    env = {**os.environ, "APT_CONFIG": str(apt_conf)}  # host apt.conf.d still read: a proxy applies
    _run(["apt-get", "update", "-q"], "apt-get update (deb-src)", env=env)
    spec = f"qemu={version}" if ":" in version else "qemu"
    _run(["apt-get", "source", "--download-only", "-q", spec], "apt-get source qemu", env=env, cwd=src)
    tarballs = sorted(src.glob("qemu_*.orig.tar.*"))
    if not tarballs:
        raise EmulatorError("apt-get source qemu left no .orig tarball", where=str(src))
    include.mkdir(exist_ok=True)
    with tarfile.open(tarballs[-1]) as tar:
        member = next((m for m in tar if m.name.endswith("include/qemu/" + HEADER_NAME)), None)
        if member is None:
            raise EmulatorError(f"{HEADER_NAME} not in {tarballs[-1].name}", where=str(tarballs[-1]))
        data = tar.extractfile(member)
        header.write_bytes(data.read() if data else b"")
    shutil.rmtree(src)  # 24 MB of source and 10 MB of lists we no longer need: the header is the cache
    shutil.rmtree(apt_conf.parent)
    return header


def _ensure_qemu(log: Callable[[str], None]) -> Path:
    try:
        return counting_qemu()
    except EmulatorError:
        log("counting plugin: no /usr/bin/qemu-aarch64; unpacking Debian's qemu-user with dpkg -x")
        dest = plugin_dir() / "qemu-user"
        debs = plugin_dir() / "debs"
        debs.mkdir(exist_ok=True)
        _run(["apt-get", "download", "-q", "qemu-user"], "apt-get download qemu-user", cwd=debs)
        for deb in debs.glob("qemu-user_*.deb"):
            _run(["dpkg", "-x", str(deb), str(dest)], f"dpkg -x {deb.name}")
        return counting_qemu()


def _compile(include: Path, out: Path) -> None:
    tmp = out.with_suffix(".so.tmp")
    cmd = [
        "gcc",
        "-O2",
        "-shared",
        "-fPIC",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-Werror",
        f"-I{include}",
        "-o",
        str(tmp),
        str(SOURCE),
    ]
    _run(cmd, "gcc insn_count.c")
    tmp.replace(out)


def _private_apt() -> Path:
    """An apt configuration with its own lists, cache and state: only deb-src lines, host apt untouched."""
    root = plugin_dir() / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "state"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "state" / "status").touch()
    (root / "sources.list").write_text(DEB_SRC_LINES)
    conf = root / "apt.conf"
    conf.write_text(
        f'Dir::Etc::SourceList "{root}/sources.list";\n'
        'Dir::Etc::SourceParts "/nonexistent";\n'
        f'Dir::State "{root}/state";\nDir::State::Lists "{root}/lists";\n'
        f'Dir::State::status "{root}/state/status";\nDir::Cache "{root}/cache";\n'
        'Debug::NoLocking "true";\n'
        + ('APT::Sandbox::User "root";\n' if os.geteuid() == 0 else "")  # our dirs are not _apt's
    )
    return conf


def _source_digest() -> str:
    return hashlib.sha256(SOURCE.read_bytes()).hexdigest()


def _stamp() -> Path:
    return plugin_dir() / "insn_count.sha256"


def _run(
    cmd: list[str],
    what: str,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmulatorError(f"{what} failed: {exc}", where=" ".join(cmd)) from exc
    if check and proc.returncode != 0:
        raise EmulatorError(
            f"{what} failed (exit {proc.returncode}): {proc.stderr.strip()[-800:]}", where=" ".join(cmd)
        )
    return proc.stdout


if __name__ == "__main__":
    print(build_plugin(force=True))  # python -m edgekit.emu.plugin.build: rebuild and self-test
