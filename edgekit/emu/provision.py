"""How a device's runtimes get there (`edgekit targets setup`). What the device is (`targets check`, the probe
setup starts from) is device_info.py's.

Setup never needs internet on the device: the host detects the device's python version, machine and glibc
over the transport, downloads the matching wheels (edgekit.emu.wheels, the same code and cache the emulated
devices are built from), pushes them (sha256-checked, skipped when already there) and installs them with the
device's pip (`--no-index --find-links`), or, where the device has no pip, unpacks them with the device's
python into <work_dir>/site (the agent puts that dir on sys.path). An emulated device's filesystem is this
machine's, so its runtimes go into the shared site dirs it already reads: only a site dir that lacks its runtime
is re-installed (every emulated device reads them, maybe while running), and a runtime no site dir holds
(OpenVINO, a host-only reference) is said, never attempted. What setup could not install is on the DeviceInfo it
returns; `require_installed` turns it into RuntimeInstallError (exit 1).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path

from edgekit.emu import layout
from edgekit.emu.device import emulated_key_errors, ensure_device
from edgekit.emu.device_info import DeviceInfo, probe
from edgekit.emu.termux import is_termux, setup_termux
from edgekit.emu.wheels import (
    RUNTIME_PACKAGES,
    TFLITE_RUNTIME_REQS,
    download_wheels,
    numpy_has_wheel,
    pinned_requirements,
)
from edgekit.errors import RuntimeInstallError
from edgekit.runtimes import device_packages, spec_for_module
from edgekit.target import Target, python_argv
from edgekit.transport import Transport, open_transport

Log = Callable[[str], None]

UNPACK = r"""
import sys, zipfile, pathlib
site = pathlib.Path(sys.argv[1]); site.mkdir(parents=True, exist_ok=True)
for wheel in sys.argv[2:]:
    zipfile.ZipFile(wheel).extractall(site)
print("unpacked", len(sys.argv) - 2)
"""


def requirements_for(runtimes: list[str]) -> list[str]:
    """Pinned requirements for the runtimes given (numpy only when "numpy" is one of them: a device's own numpy
    is left as it is, the runtimes' wheels only need one)."""
    packages = [RUNTIME_PACKAGES[r] for r in dict.fromkeys(runtimes) if r in RUNTIME_PACKAGES]
    reqs = pinned_requirements([p for p in packages if p != "tflite-runtime"])
    if "tflite_runtime" in runtimes:
        reqs.append(TFLITE_RUNTIME_REQS[0])
    return reqs


def setup_target(target: Target, log: Log = print) -> DeviceInfo:
    """Install the runtimes the target lacks from wheels downloaded here and pushed over the transport."""
    target = ensure_device(target, log, provision=True)  # a provisioning command: it may build the device
    with emulated_key_errors(target), open_transport(target) as transport:
        info = probe(transport, target)
        missing = [r for r in dict.fromkeys(["numpy", *target.runtimes]) if not info.runtimes.get(r)]
        if not missing:
            log(
                f"{target.name}: all runtimes present: "
                + ", ".join(f"{k} {v}" for k, v in info.runtimes.items() if v)
            )
            return info
        log(f"{target.name}: missing {', '.join(missing)}")
        tried: dict[str, str] = {}  # runtime -> why it could not be installed, where the path knows
        if is_termux(info.raw):  # an Android phone: Termux's packages, then pip (edgekit/emu/termux.py)
            done = setup_termux(
                transport, target, info.raw, missing, lambda: probe(transport, target).runtimes, log
            )
            tried = done.not_installed
        elif target.emulated:
            tried = _setup_emulated(target, missing, log)
        else:
            tried = _setup_board(transport, target, info, missing, log)
        after = probe(transport, target)
        after.not_installed = {
            r: tried.get(r) or f"installed, but `{target.python_for(r)}` does not import it"
            for r in missing
            if not after.runtimes.get(r)
        }
        return after


def require_installed(target: Target, info: DeviceInfo) -> None:
    """Raise RuntimeInstallError when `targets setup` left runtimes missing (`info.not_installed`): which ones,
    on which device, what was tried, and what to try."""
    if not info.not_installed:
        return
    names = ", ".join(info.not_installed)
    kept = [r for r in target.runtimes if r not in info.not_installed]
    # every runtime left out is numpy alone: said, not a hint ending in a colon
    leave_out = f"leave {names} out of the target's runtimes" + (
        f" (--set 'runtimes=[{', '.join(kept)}]')" if kept else " (--set 'runtimes=[]': numpy alone)"
    )
    shared_sysroot = target.emulated is not None and not is_termux(info.raw)  # nothing to install by hand
    raise RuntimeInstallError(
        "could not install " + "; ".join(f"{m} ({why})" for m, why in info.not_installed.items()),
        where=target.name,
        hint=leave_out
        if shared_sysroot
        else f"install {names} on the device by hand (then `edgekit targets check {shlex.quote(target.given_as)}`), "
        f"or {leave_out}",
    )


def _emulated_runtimes() -> dict[str, tuple[Path, list[str], str]]:
    """Each runtime module the emulated devices can have -> the shared site dir that holds it, the dir's
    requirement set, and the module's distribution (pip name)."""
    from edgekit.emu.build import site_requirements

    modules = {p.pip: p.module for p in device_packages()}
    found: dict[str, tuple[Path, list[str], str]] = {}
    for site, reqs in site_requirements(layout.shared()):
        for req in reqs:
            pip = re.split(r"[=<>!~;\[ ]", req, maxsplit=1)[0]
            if pip in modules:  # numpy is in every set: the first one's (first on the device python's path)
                found.setdefault(modules[pip], (site, reqs, pip))
    return found


def _site_complete(module: str, site: Path, reqs: list[str], pip: str) -> bool:
    """The site dir is installed from this requirement set (install_wheels_into's stamp) and holds `module` and
    its distribution's metadata (what the probe reads a version from)."""
    stamp = site.parent / f"{site.name}.done"
    return (
        stamp.is_file()
        and stamp.read_text() == "\n".join(reqs) + "\n"
        and ((site / module).is_dir() or (site / f"{module}.py").is_file())
        and any(site.glob(f"{pip.replace('-', '_')}-*.dist-info"))
    )


def _setup_emulated(target: Target, missing: list[str], log: Log) -> dict[str, str]:
    """Re-install only the shared site dirs that should hold a missing runtime and do not (removed, half written,
    from an older requirement set). pi4-emu, pi5-emu and phone-emu read them, maybe while running: a present and
    complete one is never rebuilt. Returns the runtimes this cannot give (runtime -> why, what to try)."""
    from edgekit.emu.build import provision_sites
    from edgekit.emu.locks import file_lock

    sites = _emulated_runtimes()
    why: dict[str, str] = {}
    stale: list[str] = []
    for module in missing:
        if module not in sites:
            why[module] = _not_emulated(module, list(sites))
        elif _site_complete(module, *sites[module]):  # there, yet not imported: not the device's python
            why[module] = (
                f"the emulated devices' {sites[module][0]} has it, but `{target.python_for(module)}` does not "
                "import it: set the target's python (or runtime_python) to the device's"
            )
        else:
            stale.append(module)
    if stale:
        shared = layout.shared()
        with file_lock(shared.root / "build.lock"):
            for module in stale:
                site, reqs, pip = sites[module]
                if not _site_complete(module, site, reqs, pip):  # another process may have re-installed it
                    log(f"{target.name}: {site} lacks {module}: re-installing it from the (cached) wheels")
                    (site.parent / f"{site.name}.done").unlink(missing_ok=True)
            provision_sites(shared, log)  # installs what has no stamp of its set; the others stay as they are
    return why


def _never_installed(module: str) -> str | None:
    """Why setup installs `module` on no device (a host-only reference, a runtime no release of which installs
    beside edgekit's pins), or None."""
    if module == "numpy":
        return None
    spec = spec_for_module(module)
    if spec.host_only:
        return f"{spec.runtime.value} is a host-only reference: deploy measures it on the host, never on a device"
    return spec.not_installable


def _not_emulated(module: str, emulated: list[str]) -> str:
    """Why no emulated device can have `module`."""
    reason = _never_installed(module) or "no wheel set of the emulated devices holds it"
    return f"{reason}; the emulated devices have {', '.join(emulated)}"


def _setup_board(
    transport: Transport, target: Target, info: DeviceInfo, missing: list[str], log: Log
) -> dict[str, str]:
    """Download, push and install the wheels of the missing runtimes, each with the python a deploy runs it with
    (a runtime's `runtime_python`, else `python:`; numpy too where that python has none); returns the runtimes
    it does not attempt (host-only, uninstallable: runtime -> why), refused before anything is downloaded."""
    refused = {m: why for m in missing if (why := _never_installed(m))}
    if refused:
        log(f"{target.name}: not installing " + "; ".join(f"{m} ({why})" for m, why in refused.items()))
    by_python: dict[str, list[str]] = {}
    for module in (m for m in missing if m not in refused):
        by_python.setdefault(target.python if module == "numpy" else target.python_for(module), []).append(
            module
        )
    for python, modules in by_python.items():
        raw = info.pythons.get(python, info.raw)
        if python != target.python and not (raw.get("runtimes") or {}).get("numpy"):
            modules = ["numpy", *modules]  # this python's runtimes need a numpy of its own
        _install(transport, target, DeviceInfo(raw), python, modules, log)
    return refused


def _install(
    transport: Transport, target: Target, info: DeviceInfo, python_cmd: str, missing: list[str], log: Log
) -> None:
    """The wheels of `missing` for the python `python_cmd` (its version, machine and glibc: `info`), pushed and
    installed with it."""
    platform = info.wheel_platform(target.name)
    which = "" if python_cmd == target.python else f" for `{python_cmd}` (runtime_python)"
    reqs = requirements_for(missing)  # numpy among them only when the device has none
    numpy_pin = next((r.split("==", 1)[1] for r in reqs if r.startswith("numpy==")), None)
    if numpy_pin and not numpy_has_wheel(numpy_pin, platform.python):
        raise RuntimeInstallError(
            f"the device has no numpy{which}, and edgekit's numpy pin (numpy=={numpy_pin}) publishes no wheel for "
            f"its Python {platform.python}",
            where=target.name,
            hint="install a numpy on the device (`python3 -m pip install numpy`, or the system's package): setup "
            "then leaves it as it is; or pin one for that Python in constraints.txt",
        )
    wheel_dir = download_wheels(platform, reqs, layout.shared().wheels, log, RuntimeInstallError)
    wheels = sorted(wheel_dir.glob("*.whl"))
    remote_dir = "wheels"
    sent = 0
    for wheel in wheels:
        sent += transport.put(wheel, f"{remote_dir}/{wheel.name}").bytes_sent
    log(f"{target.name}: pushed {len(wheels)} wheels{which} ({sent / 1e6:.1f} MB sent)")
    python = python_argv(python_cmd)
    work = transport.work_dir
    if info.raw.get("pip"):
        argv = [*python, "-m", "pip", "install", "--no-index", "--find-links", f"{work}/{remote_dir}"]
        if not info.raw.get("venv"):  # a venv refuses --user (and is no externally managed system python)
            argv.append("--user")
            if int(str(info.raw["pip"]).split(".")[0]) >= 23:
                argv.append("--break-system-packages")
        argv += reqs
        res = transport.run(argv, timeout=1800)
    else:
        res = transport.run(
            [*python, "-c", UNPACK, f"{work}/site", *(f"{work}/{remote_dir}/{w.name}" for w in wheels)],
            timeout=3600,
        )
        log(f"{target.name}: no pip on the device; unpacked into {work}/site (the agent adds it to sys.path)")
    if res.exit_status != 0:  # a board's install, not an emulator's: the error a failed setup gives (exit 1)
        how = (
            "installing the wheels with the device's pip"
            if info.raw.get("pip")
            else (f"unpacking the wheels into {work}/site (the device has no pip)")
        )
        raise RuntimeInstallError(
            f"{how}{which} failed (exit {res.exit_status}): {res.stderr.strip()[-500:] or res.stdout.strip()[-500:]}",
            where=target.name,
            hint=f"the wheels are in {work}/{remote_dir} on the device: "
            + (
                "run pip there by hand to see why"
                if info.raw.get("pip")
                else "check the space and rights there"
            )
            + " (disk space, a Python the wheels do not fit), or leave the runtime out: --set 'runtimes=[...]'",
        )
