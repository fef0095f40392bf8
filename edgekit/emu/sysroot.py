"""The arm64 CPython 3.11 sysroot every emulated device runs: Debian bookworm arm64 packages unpacked with
`dpkg -x`, fetched by a private apt configuration so the host's dpkg architectures are never changed.

The private apt tree (its own APT::Architecture, state, lists, cache and sources) lives beside the sysroot;
the host's apt.conf.d is still read so a proxy configured on the host applies here too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from edgekit.errors import EmulatorError

MIRROR = "http://deb.debian.org/debian"
SECURITY_MIRROR = "http://deb.debian.org/debian-security"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# python3.11-minimal + the stdlib, and the C/C++ runtime libraries the wheels (numpy, litert, ncnn) link to.
PACKAGES = ("python3.11-minimal", "libpython3.11-stdlib", "libstdc++6", "libgcc-s1", "libgomp1")
PYTHON = "usr/bin/python3.11"  # the interpreter, relative to the sysroot


def ensure_sysroot(root: Path, log: Callable[[str], None] = print) -> Path:
    """Build ROOT/sysroot once (stamp: ROOT/sysroot.done); return the sysroot path."""
    sysroot = root / "sysroot"
    stamp = root / "sysroot.done"
    if stamp.exists() and (sysroot / PYTHON).exists():
        return sysroot
    apt_dir = root / "apt"
    conf = _write_apt_config(apt_dir)
    env = {**os.environ, "APT_CONFIG": str(conf), "DEBIAN_FRONTEND": "noninteractive"}
    log("sysroot: apt-get update (private arm64 apt state)")
    _run(["apt-get", "-q", "update"], env)
    log(f"sysroot: downloading {' '.join(PACKAGES)} and their dependencies (arm64)")
    _run(["apt-get", "-q", "-y", "install", "--download-only", *PACKAGES], env)
    debs = sorted((apt_dir / "cache" / "archives").glob("*.deb"))
    if not debs:
        raise EmulatorError("apt-get downloaded no .deb files", where=str(apt_dir))
    tmp = root / "sysroot.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log(f"sysroot: unpacking {len(debs)} packages with dpkg -x")
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(tmp)], env)
    if not (tmp / PYTHON).exists():
        raise EmulatorError(f"the unpacked packages contain no {PYTHON}", where=str(tmp))
    shutil.rmtree(sysroot, ignore_errors=True)
    tmp.rename(sysroot)
    stamp.write_text("\n".join(d.name for d in debs) + "\n")
    return sysroot


def _write_apt_config(apt_dir: Path) -> Path:
    """An apt.conf that makes apt-get see only arm64 bookworm packages and keep all its state in apt_dir."""
    for sub in ("state/lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    (apt_dir / "state" / "status").touch()
    sources = apt_dir / "sources.list"
    opts = f"[arch=arm64 signed-by={KEYRING}]"
    sources.write_text(
        f"deb {opts} {MIRROR} bookworm main\ndeb {opts} {SECURITY_MIRROR} bookworm-security main\n"
    )
    conf = apt_dir / "apt.conf"
    conf.write_text(
        'APT::Architecture "arm64";\n'
        'APT::Architectures { "arm64"; };\n'
        'APT::Install-Recommends "false";\n'
        f'Dir::State "{apt_dir}/state";\n'
        f'Dir::State::status "{apt_dir}/state/status";\n'
        f'Dir::Cache "{apt_dir}/cache";\n'
        f'Dir::Etc::SourceList "{sources}";\n'
        f'Dir::Etc::SourceParts "{apt_dir}/sources.list.d";\n'
        f'Dir::Etc::PreferencesParts "{apt_dir}/preferences.d";\n'
    )
    return conf


def _run(argv: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise EmulatorError(
            f"{' '.join(argv[:4])} failed (exit {proc.returncode}):\n" + "\n".join(tail),
            where="sysroot build",
            hint="check that deb.debian.org (or the host's apt proxy) is reachable",
        )
