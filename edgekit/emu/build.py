"""`edgekit emu build NAME`: the shared assets (sysroot, wheels, site dirs) and one device's own dir.

Every step leaves a stamp, so a second build of a built device only checks files (well under a second).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from edgekit.emu import layout
from edgekit.emu.locks import file_lock
from edgekit.emu.specs import DeviceSpec, cpuinfo_text, device_spec
from edgekit.emu.sysroot import PYTHON, ensure_sysroot
from edgekit.emu.wheels import (
    TFLITE_RUNTIME_REQS,
    WheelPlatform,
    download_wheels,
    install_wheels_into,
    litert_requirements,
    mnn_requirements,
    onnx_opencv_requirements,
    site_installed,
    wheels_cached,
)
from edgekit.errors import EmulatorError
from edgekit.paths import disk_full_text, out_of_space

# The emulated devices all run Debian bookworm's arm64 CPython 3.11 (glibc 2.36).
EMU_PLATFORM = WheelPlatform(python="3.11", machine="aarch64", glibc=(2, 36))
QEMU_STATIC = "qemu-aarch64-static"
QEMU_DYNAMIC = "/usr/bin/qemu-aarch64"  # plugin-capable (Debian qemu-user); see edgekit/emu/README.md

Log = Callable[[str], None]


def build(name: str, log: Log = print, plugin: bool = True) -> layout.DeviceDir:
    """Build (once) everything device NAME needs; return its dir. Serialised across processes. `plugin`: also
    the counting plugin (it downloads Debian's qemu source once): `edgekit emu build` and the other set-up
    commands; `up` for a deploy or a check leaves it out (a device without it still works).

    A built device (its stamps checked) takes no lock: only its wrappers are rewritten, atomically, when their
    template changed, so a deploy never waits on another edgekit's long build or set-up."""
    spec = device_spec(name)
    dev = layout.device_dir(name)
    with _disk_full_named(name, dev):
        if not plugin and is_built(name):
            _write_wrappers(spec, dev, layout.shared())
            return dev
        with file_lock(layout.shared().root / "build.lock", log=log):
            return _build_locked(spec, log, plugin)


@contextlib.contextmanager
def _disk_full_named(name: str, dev: layout.DeviceDir) -> Iterator[None]:
    """A full disk while building: EmulatorError naming the file, the disk of the emulator home it went to and
    that disk's free space (the CLI's generic note named the data dir's disk, which may have room)."""
    try:
        yield
    except OSError as exc:
        if not out_of_space(exc):
            raise
        path = Path(exc.filename) if exc.filename else dev.root
        raise EmulatorError(
            f"{disk_full_text(path)} (writing {path})",
            where=f"building {name} in {dev.root}",
            hint="free some space on that disk, or point EDGEKIT_EMU_HOME at a folder on a bigger one, then "
            f"`edgekit emu build {name}`",
        ) from exc


def _build_locked(spec: DeviceSpec, log: Log, plugin: bool) -> layout.DeviceDir:
    name = spec.name
    dev = layout.device_dir(name)
    if plugin:
        _build_counting_plugin(log)
    if dev.built_stamp.exists() and _device_complete(dev):
        _write_wrappers(spec, dev, layout.shared())  # cheap; picks up a changed wrapper template
        return dev
    _check_host_tools()
    shared = layout.shared()
    sysroot = ensure_sysroot(shared.base, log)
    provision_sites(shared, log)
    _build_device_dir(spec, dev, sysroot, shared, log)
    dev.built_stamp.write_text(spec.cpu + "\n")
    return dev


def _build_counting_plugin(log: Log) -> None:
    """Counting mode (edgekit/emu/plugin, issue 7): stamp-checked, free once built. A device without it
    still works, so a failure is logged; `edgekit emu build-plugin` raises it."""
    from edgekit.emu.plugin.build import build_plugin

    try:
        build_plugin(log)
    except EmulatorError as exc:
        log(f"counting plugin not built (instruction counts unavailable): {exc}")


def site_requirements(shared: layout.Shared) -> list[tuple[Path, list[str]]]:
    """The shared site dirs the emulated devices read, each with the requirement set installed into it: every
    runtime an emulated device can have (`targets setup` reads it to know which dir holds a runtime)."""
    return [
        (shared.site("litert"), litert_requirements()),
        (shared.site("tflite-runtime"), list(TFLITE_RUNTIME_REQS)),
        (shared.onnx_opencv_site, onnx_opencv_requirements()),
        (shared.mnn_site, mnn_requirements()),
    ]


def provision_sites(shared: layout.Shared, log: Log = print) -> None:
    """Download the aarch64 wheels (shared cache) and unpack them into the shared site dirs. A site dir installed
    from its requirement set (its stamp) is left as it is: nothing downloaded for it (needs_download agrees)."""
    for site, reqs in site_requirements(shared):
        if site_installed(site, reqs):
            continue
        wheels = download_wheels(EMU_PLATFORM, reqs, shared.wheels, log)
        site.parent.mkdir(parents=True, exist_ok=True)
        install_wheels_into(site, wheels, EMU_PLATFORM, reqs, log)


def needs_download(name: str) -> bool:
    """Whether building device NAME would download (Debian's arm64 packages, aarch64 wheels): its shared assets
    are not all in place. Only the provisioning commands (`edgekit emu build|up`, make setup) may; a deploy or
    a check that finds a device unbuilt builds it only when nothing needs downloading. It covers every download
    provision_sites makes: a site dir not installed from its current requirement set (missing, or its stamp
    from another constraints.txt) whose wheels are not in the cache."""
    if is_built(name):
        return False
    shared = layout.shared()
    if not ((shared.base / "sysroot.done").exists() and (shared.base / "sysroot" / PYTHON).exists()):
        return True
    return any(
        not site_installed(site, reqs) and not wheels_cached(EMU_PLATFORM, reqs, shared.wheels)
        for site, reqs in site_requirements(shared)
    )


def is_built(name: str) -> bool:
    dev = layout.device_dir(name)
    return dev.built_stamp.exists() and _device_complete(dev)


def _device_complete(dev: layout.DeviceDir) -> bool:
    shared = layout.shared()  # a runtime site added since the device was built makes it incomplete
    return all(
        p.exists()
        for p in (
            dev.python,
            dev.python_tflite_runtime,
            dev.client_key,
            dev.host_key,
            dev.sysroot / "proc" / "cpuinfo",
            dev.sysroot / PYTHON,
            *shared.runtime_sites,
        )
    )


def _check_host_tools() -> None:
    for tool, package in (
        (QEMU_STATIC, "qemu-user-static"),
        ("ssh-keygen", "openssh-client"),
        ("/usr/sbin/sshd", "openssh-server"),
        ("dpkg-deb", "dpkg"),
        ("apt-get", "apt"),
    ):
        if not shutil.which(tool):
            raise EmulatorError(
                f"{tool} is not installed",
                where="edgekit emu build",
                hint=f"apt-get install {package} (make setup does it)",
            )


def _build_device_dir(
    spec: DeviceSpec, dev: layout.DeviceDir, sysroot: Path, shared: layout.Shared, log: Log
) -> None:
    log(f"{spec.name}: device dir {dev.root} (cpu {spec.cpu}, CPU part {spec.cpu_part})")
    for d in (dev.bin, dev.ssh, dev.home, dev.run):
        d.mkdir(parents=True, exist_ok=True)
    _link_sysroot(sysroot, dev.sysroot)
    cpuinfo = dev.sysroot / "proc" / "cpuinfo"
    cpuinfo.parent.mkdir(exist_ok=True)
    cpuinfo.write_text(cpuinfo_text(spec, os.cpu_count() or 1))
    _write_wrappers(spec, dev, shared)
    _keygen(dev.host_key, f"edgekit-{spec.name}-host")
    _keygen(dev.client_key, f"edgekit-{spec.name}-client")
    dev.authorized_keys.write_text(dev.client_key.with_suffix(".pub").read_text())
    os.chmod(dev.ssh, 0o700)


def _link_sysroot(base: Path, own: Path) -> None:
    """A per-device sysroot: one relative symlink per top-level entry of the shared sysroot, plus its own
    proc/. qemu's -L looks guest paths up under this dir, so only /proc/cpuinfo differs per device and the
    78 MB / 1713 entries of the shared sysroot are neither copied nor hard-linked (measured here: 7
    symlinks in a few ms, `cp -al` 0.2 s, a full copy 2.8 s and 78 MB per device)."""
    own.mkdir(parents=True, exist_ok=True)
    for entry in base.iterdir():
        if entry.name == "proc":
            continue
        link = own / entry.name
        target = os.path.relpath(entry, own)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target)


_WRAPPER = """#!/bin/sh
# edgekit emulated device {name}: the device's python, Debian's arm64 CPython 3.11 under qemu-user
# with an explicit CPU model (never qemu's default `max`). Site dir: {site}
# Instruction counting: set EDGEKIT_QEMU_PLUGIN="/path/lib.so,out=FILE" to run the plugin-capable dynamic
# qemu ($EDGEKIT_QEMU_DYNAMIC, default {dynamic}) with -plugin (see edgekit/emu/README.md).
SYSROOT={sysroot}
CPU='{cpu}'
export PYTHONPATH={site}"${{PYTHONPATH:+:$PYTHONPATH}}"
export PYTHONNOUSERSITE=1
if [ -n "${{EDGEKIT_QEMU_PLUGIN:-}}" ]; then
  QEMU="${{EDGEKIT_QEMU_DYNAMIC:-{dynamic}}}"
  export EDGEKIT_EMULATOR="qemu-aarch64 -cpu $CPU -plugin"
  # exact counts need a fixed guest address layout and hash seed (no ASLR, PYTHONHASHSEED): issue 7
  export PYTHONHASHSEED="${{PYTHONHASHSEED:-0}}"
  # OpenMP threads (ncnn) that spin while waiting execute guest instructions: up to 40x the real work at
  # 2 threads on 2 host cores (measured); passive waiting keeps multi-thread counts within 0.03 %
  export OMP_WAIT_POLICY="${{OMP_WAIT_POLICY:-PASSIVE}}"
  exec setarch -R "$QEMU" -cpu "$CPU" -plugin "$EDGEKIT_QEMU_PLUGIN" -L "$SYSROOT" "$SYSROOT/{python}" "$@"
fi
export EDGEKIT_EMULATOR="qemu-aarch64-static -cpu $CPU"
exec {static} -cpu "$CPU" -L "$SYSROOT" "$SYSROOT/{python}" "$@"
"""


def _write_wrappers(spec: DeviceSpec, dev: layout.DeviceDir, shared: layout.Shared) -> None:
    _write_wrapper(
        dev.python, spec, dev.sysroot, ":".join(map(str, (shared.site("litert"), *shared.runtime_sites)))
    )
    _write_wrapper(dev.python_tflite_runtime, spec, dev.sysroot, shared.site("tflite-runtime"))


def _write_wrapper(path: Path, spec: DeviceSpec, sysroot: Path, site: Path | str) -> None:
    text = _WRAPPER.format(
        name=spec.name,
        site=shlex.quote(str(site)),  # a ' in the emulator home's path ended the shell's string there
        sysroot=shlex.quote(str(sysroot)),
        cpu=spec.cpu,
        dynamic=QEMU_DYNAMIC,
        static=shutil.which(QEMU_STATIC) or QEMU_STATIC,
        python=PYTHON,
    )
    if not path.exists() or path.read_text() != text:  # through a temp file: a running device execs it
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text)
            tmp.chmod(0o755)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)  # a full disk left it behind
            if exc.filename is None:  # write_text's ENOSPC names no file
                exc.filename = str(tmp)
            raise
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    elif path.stat().st_mode & 0o777 != 0o755:
        path.chmod(0o755)


def _keygen(key: Path, comment: str) -> None:
    if key.exists() and key.with_suffix(".pub").exists():
        return
    key.unlink(missing_ok=True)
    proc = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise EmulatorError(f"ssh-keygen failed: {proc.stderr.strip()}", where=str(key))
