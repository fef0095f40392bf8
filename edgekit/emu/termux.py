"""Runtimes on an Android phone running Termux (`edgekit targets setup phone`): Termux's own packages first.

No manylinux wheel runs on Android (bionic, not glibc), so the wheels-from-the-host path of the boards does not
apply. Termux packages the runtimes built for Android (python-numpy, python-tflite-runtime, python-onnxruntime,
ncnn with its Python module, opencv-python): `pkg install -y` installs the ones a target lacks (each runtime's
`termux` name in edgekit/runtimes/), one package at a time when the batch fails (one unknown name fails a whole
apt transaction), then `pip install` for the rest (MNN, ai-edge-litert: no Termux package). What is still missing
after both is said by name, with what was tried. The phone downloads from its own package mirrors: this is the
provisioning step, as `edgekit emu build` and the boards' `targets setup` are.

A device is Termux when its python sees TERMUX_VERSION or a PREFIX under com.termux; `pkg` is $PREFIX/bin/pkg.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edgekit.emu.wheels import pinned_requirements
from edgekit.runtimes import DevicePackage, device_packages
from edgekit.target import Target, python_argv
from edgekit.transport.base import Transport

Log = Callable[[str], None]
PKG_TIMEOUT_S = 1800


def is_termux(raw: dict) -> bool:
    """The probe's facts say Termux (its environment, not just Android)."""
    return bool(raw.get("termux_version")) or "com.termux" in str(raw.get("prefix") or "")


@dataclass
class TermuxSetup:
    """What setup did: the pkg and pip commands run, and the runtimes still missing (with what was tried)."""

    pkg_commands: list[list[str]] = field(default_factory=list)
    pip_commands: list[list[str]] = field(default_factory=list)
    not_installed: dict[str, str] = field(default_factory=dict)  # module -> what was tried and why it failed


def setup_termux(
    transport: Transport,
    target: Target,
    raw: dict,
    missing: list[str],
    recheck: Callable[[], dict[str, str | None]],
    log: Log = print,
) -> TermuxSetup:
    """Install the `missing` runtime modules (numpy included) on a Termux device; `recheck` probes again."""
    done = TermuxSetup()
    packages = {p.module: p for p in device_packages()}
    wanted = [packages[m] for m in missing if m in packages]
    pkg = f"{raw.get('prefix') or '/data/data/com.termux/files/usr'}/bin/pkg"
    errors: dict[str, str] = {}
    names = [p.termux for p in wanted if p.termux]
    if names:
        log(f"{target.name}: Termux: pkg install -y {' '.join(names)}")
        # the batch's error is kept only where no one-by-one install follows (a single name)
        batch_names = names if len(names) == 1 else []
        if (
            not _run(transport, [pkg, "install", "-y", *names], done.pkg_commands, errors, batch_names)
            and len(names) > 1
        ):
            for name in names:  # one unknown name fails the whole transaction: try them one by one
                _run(transport, [pkg, "install", "-y", name], done.pkg_commands, errors, [name])
    have = recheck()
    rest = [p for p in wanted if not have.get(p.module)]
    if rest and raw.get("pip"):
        python = python_argv(target.python)
        for p in rest:
            req = pinned_requirements([p.pip])[0]
            log(f"{target.name}: Termux: no package installed {p.module}; pip install {req}")
            _run(transport, [*python, "-m", "pip", "install", req], done.pip_commands, errors, [p.pip])
        have = recheck()
    for p in wanted:
        if not have.get(p.module):
            done.not_installed[p.module] = _tried(p, errors, bool(raw.get("pip")))
    if done.not_installed:
        log(
            f"{target.name}: could not install: "
            + "; ".join(f"{m} ({why})" for m, why in done.not_installed.items())
        )
    return done


def _run(
    transport: Transport, argv: list[str], record: list[list[str]], errors: dict[str, str], names: list[str]
) -> bool:
    record.append(argv)
    res = transport.run(argv, timeout=PKG_TIMEOUT_S)
    if res.exit_status != 0:
        last = (res.stderr.strip() or res.stdout.strip()).splitlines()[-1:] or [f"exit {res.exit_status}"]
        for name in names:
            errors[name] = last[0][:200]
    else:  # an earlier attempt's error is no longer this package's
        for name in names:
            errors.pop(name, None)
    return res.exit_status == 0


def _tried(p: DevicePackage, errors: dict[str, str], pip: bool) -> str:
    tried = [
        f"pkg {p.termux}: {errors.get(p.termux, 'installed nothing importable')}"
        if p.termux
        else "no Termux package"
    ]
    tried.append(
        f"pip {p.pip}: {errors.get(p.pip, 'installed nothing importable')}"
        if pip
        else "no pip on the device (pkg install python-pip)"
    )
    return "; ".join(tried)
