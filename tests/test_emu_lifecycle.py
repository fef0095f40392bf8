"""Emulated devices' life cycle from private emulator homes (never the shared devices): what a check may build,
what `emu down` stops, a device whose files changed while it runs, a full disk, and what set-up builds."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgekit.emu import layout

REAL = layout.shared().root  # the suite's (shared) emulator home: read only here


def _link_but_stamps(src: str, dst: str) -> None:
    if src.endswith(".done"):
        shutil.copy2(src, dst)  # a test may change a stamp: never the shared one
    else:
        os.link(src, dst)


def make_home(home: Path, wheels: bool = True, devices: tuple[str, ...] = ()) -> Path:
    """A private emulator home: the shared sysroot (and wheels) symlinked, the site dirs hard-linked with their
    stamps copied, the plugin symlinked, the named devices' own dirs copied (not running)."""
    home.mkdir(parents=True)
    for read_only in ("base", "plugin", *(("wheels",) if wheels else ())):
        (home / read_only).symlink_to(REAL / read_only)
    for sites in ("site", "runtimes"):
        shutil.copytree(REAL / sites, home / sites, symlinks=True, copy_function=_link_but_stamps)
    for name in devices:
        device = REAL / "devices" / name
        if (device / "built.done").exists():
            own = home / "devices" / name
            skip = shutil.ignore_patterns("state.json", "run", "home", "known_hosts", "sshd_config")
            shutil.copytree(device, own, symlinks=True, ignore=skip)
            (own / "home").mkdir()
    return home


def edgekit(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **env},
        timeout=timeout,
    )


@pytest.fixture()
def emu_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """EDGEKIT_EMU_HOME at a fresh private home (made by the test with make_home); every device of it is stopped
    at the end."""
    home = tmp_path / "emu"
    monkeypatch.setenv("EDGEKIT_EMU_HOME", str(home))
    try:
        yield home
    finally:
        from edgekit.emu.runner import down

        for name in ("pi4-emu", "pi5-emu", "phone-emu"):
            if (home / "devices" / name).is_dir():
                with contextlib.suppress(Exception):
                    down(name)


UNREACHABLE = {"PIP_INDEX_URL": "http://127.0.0.1:9/simple"}


def test_a_check_builds_a_device_offline_when_its_sites_are_installed(emu_home: Path) -> None:
    """With the sysroot and the site dirs in place but no wheel cache, `targets check pi5-emu` downloaded the
    wheels again ("wheels: downloading numpy==..."), then failed on pip. Installed site dirs need no wheels: the
    device builds offline and the check answers."""
    make_home(emu_home, wheels=False)
    from edgekit.emu.build import needs_download

    assert needs_download("pi5-emu") is False
    done = edgekit("targets", "check", "pi5-emu", **UNREACHABLE)
    assert "downloading" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (emu_home / "wheels").exists()


def test_a_check_refuses_when_a_site_would_need_its_wheels_downloaded(emu_home: Path) -> None:
    """A site dir whose stamp is from another requirement set (constraints.txt changed) and no cached wheels:
    the check downloaded them. Now it is refused, naming the set-up command."""
    make_home(emu_home, wheels=False)
    (emu_home / "site" / "tflite-runtime.done").write_text("tflite-runtime==2.13.0\nnumpy<2\n")
    from edgekit.emu.build import needs_download

    assert needs_download("pi5-emu") is True
    start = time.monotonic()
    done = edgekit("targets", "check", "pi5-emu", **UNREACHABLE)
    said = " ".join(done.stderr.split())
    assert done.returncode == 1 and "pi5-emu is not built on this machine" in said, done.stdout + done.stderr
    assert "only the set-up commands do" in said and "edgekit emu build pi5-emu" in said
    assert "downloading" not in done.stdout + done.stderr and time.monotonic() - start < 30
