"""The wheels `targets setup` downloads for a device (edgekit/emu/wheels.py, device_info.wheel_platform): the
cache folder named from what the device reports, and what a download that finds nothing says. Real parts: the
probe run by a `transport: local` target's python (a wrapper that rewrites what it reports, as a hostile or odd
device would), and this machine's pip against a package index served on 127.0.0.1 (nothing leaves the machine)."""

from __future__ import annotations

import http.server
import json
import os
import socket
import sys
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from packaging.tags import sys_tags

from edgekit.emu import provision
from edgekit.emu.wheels import WheelPlatform, download_wheels, wheel_dir, wheels_cached
from edgekit.errors import RuntimeInstallError, TargetError
from edgekit.target import load_target

WRAPPER = """#!{python}
# a device python whose probe reports {lie} (and no runtime, so setup goes on to download)
import json, subprocess, sys
res = subprocess.run([sys.executable, *sys.argv[1:]], capture_output=True, text=True)
for line in res.stdout.splitlines():
    if line.startswith("EDGEKIT_PROBE "):
        info = json.loads(line.split(" ", 1)[1])
        info.update(json.loads({lie!r}))
        info["runtimes"] = {{k: None for k in info["runtimes"]}}
        line = "EDGEKIT_PROBE " + json.dumps(info)
    print(line)
sys.stderr.write(res.stderr)
sys.exit(res.returncode)
"""


def _lying_target(tmp_path: Path, lie: dict[str, Any]) -> Any:
    """A `transport: local` target whose python reports `lie` in edgekit's probe."""
    python = tmp_path / "python-lies"
    python.write_text(WRAPPER.format(python=sys.executable, lie=json.dumps(lie)))
    python.chmod(0o755)
    path = tmp_path / "liar.yaml"
    path.write_text(
        f"name: liar\ntransport: local\npython: {python}\nwork_dir: {tmp_path / 'work'}\n"
        "runtimes: [tflite_runtime]\n"
    )
    return load_target(path)


ESCAPE = "aarch64/" + "../" * 40  # then an absolute path: out of the wheel cache, wherever it is


@pytest.mark.parametrize(
    ("lie", "shown"),
    [
        ({"machine": ESCAPE + "{tmp}/EVIL_FROM_DEVICE"}, "machine as 'aarch64/../"),
        ({"libc": ["glibc", "2.36-rc1"]}, "glibc version as '2.36-rc1'"),
        ({"python": "3.13-custom"}, "Python version as '3.13-custom'"),
    ],
)
def test_setup_refuses_what_a_device_reports_that_names_no_wheel_platform(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lie: dict[str, Any], shown: str
) -> None:
    """r9: a machine of 'aarch64/../../../../tmp/...' made setup create that folder outside edgekit's data dir,
    pip download into it and (with a stamp there) push its wheels to the device; a glibc of '2.36-rc1' was
    'internal error (ValueError)'. Each is now a TargetError naming the reported value, before any download."""
    monkeypatch.setenv("EDGEKIT_EMU_HOME", str(tmp_path / "emu"))
    lie = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v for k, v in lie.items()}
    target = _lying_target(tmp_path, lie)
    with pytest.raises(TargetError) as err:
        provision.setup_target(target, lambda _: None)
    assert shown in str(err.value), str(err.value)
    assert err.value.exit_code == 2
    assert not (tmp_path / "EVIL_FROM_DEVICE").exists()
    cache = tmp_path / "emu" / "wheels"
    assert not cache.exists() or not any(cache.iterdir())  # nothing downloaded either


def test_the_wheel_folder_stays_in_the_cache(tmp_path: Path) -> None:
    """Whatever builds a WheelPlatform: its folder is checked to lie inside the cache (resolved)."""
    cache = tmp_path / "cache"
    outside = WheelPlatform(machine="aarch64/../../../elsewhere")
    with pytest.raises(TargetError, match="outside the wheel cache"):
        wheel_dir(outside, ["numpy==1.26.4"], cache)
    with pytest.raises(TargetError):
        wheels_cached(outside, ["numpy==1.26.4"], cache)
    assert not (tmp_path / "elsewhere").exists()
    inside = wheel_dir(WheelPlatform(), ["numpy==1.26.4"], cache)
    assert inside.parent == cache / "cp311-manylinux_2_36_aarch64"


def _wheel(folder: Path, tag: str) -> None:
    """A stand-in tflite_runtime 2.14.0 wheel with the tag `tag` (pip goes by the file's name)."""
    info = "tflite_runtime-2.14.0.dist-info"
    with zipfile.ZipFile(folder / f"tflite_runtime-2.14.0-{tag}.whl", "w") as z:
        z.writestr("tflite_runtime/__init__.py", "")
        z.writestr(f"{info}/METADATA", "Metadata-Version: 2.1\nName: tflite-runtime\nVersion: 2.14.0\n")
        z.writestr(f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}\n")
        z.writestr(f"{info}/RECORD", "")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _use_index(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """pip reads only `url`: no config file (this machine's adds local mirrors), no find-links, no retries."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", url)
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_CONSTRAINT", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_DEFAULT_TIMEOUT", "20")
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A simple index on 127.0.0.1 with tflite-runtime 2.14.0 as PyPI has it: wheels for CPython 3.11 on aarch64
    and for this machine's Python, none for CPython 3.13."""
    project = tmp_path / "index" / "simple" / "tflite-runtime"
    project.mkdir(parents=True)
    _wheel(project, "cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64")
    _wheel(project, str(next(iter(sys_tags()))))
    handler = partial(_Quiet, directory=str(tmp_path / "index"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/simple"
    _use_index(monkeypatch, url)
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


PY313 = WheelPlatform(python="3.13", machine="aarch64", glibc=(2, 36))


def test_a_reachable_index_without_a_wheel_for_the_devices_python_is_said_so(
    index: str, tmp_path: Path
) -> None:
    """r9: a device with Python 3.13 (Raspberry Pi OS on Debian 13) and tflite-runtime 2.14.0, which has no cp313
    wheel: setup said 'no package index was reachable ... is this machine offline?' though the index answered.
    Now it names the package, the device's Python and platform, and what the index has."""
    with pytest.raises(RuntimeInstallError) as err:
        download_wheels(
            PY313, ["tflite-runtime==2.14.0"], tmp_path / "cache", lambda _: None, RuntimeInstallError
        )
    said = str(err.value)
    assert "no wheel of tflite-runtime==2.14.0 for CPython 3.13 / manylinux_2_36_aarch64" in said, said
    assert f"the index answers ({index}: tflite-runtime 2.14.0" in said, said
    assert "reachable" not in said and "offline" not in said, said
    # the same index serves a device whose Python it has a wheel for
    got = download_wheels(WheelPlatform(), ["tflite-runtime==2.14.0"], tmp_path / "cache", lambda _: None)
    assert [w.name for w in got.glob("*.whl")] == [
        "tflite_runtime-2.14.0-cp311-cp311-manylinux_2_17_aarch64.manylinux2014_aarch64.whl"
    ]


def test_a_package_the_index_does_not_have_is_no_offline_machine(index: str, tmp_path: Path) -> None:
    """The index answers 404 for a project it lacks: an answer, not an unreachable index."""
    with pytest.raises(RuntimeInstallError) as err:
        download_wheels(PY313, ["nosuchpkg==1.0"], tmp_path / "cache", lambda _: None, RuntimeInstallError)
    said = str(err.value)
    assert "no wheel of nosuchpkg==1.0 for CPython 3.13" in said and "no nosuchpkg this machine takes" in said
    assert "offline" not in (err.value.hint or "")


def test_an_unreachable_index_is_said_to_be(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/simple"
    _use_index(monkeypatch, url)
    with pytest.raises(RuntimeInstallError) as err:
        download_wheels(
            PY313, ["tflite-runtime==2.14.0"], tmp_path / "cache", lambda _: None, RuntimeInstallError
        )
    said = str(err.value)
    assert f"no package index was reachable ({url}): Could not fetch URL" in said, said
    assert "connection error" in said, said
    assert "is this machine offline?" in (err.value.hint or "")


@pytest.mark.parametrize("body", ["[" * 100_000, "42", '{"runtimes": 1}', "not json"])
def test_a_probe_line_that_is_not_its_facts_is_a_named_target_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str
) -> None:
    """f5: a device printing `EDGEKIT_PROBE [[[[...` ended `targets check` / `targets setup` in 'internal error
    (RecursionError)' (json.loads), a non-object line in a KeyError or TypeError. Each is now a TargetError
    naming the python and the line, exit 2."""
    monkeypatch.setenv("EDGEKIT_EMU_HOME", str(tmp_path / "emu"))
    python = tmp_path / "python-odd"
    python.write_text(f"#!/bin/sh\necho 'EDGEKIT_PROBE {body}'\n")
    python.chmod(0o755)
    path = tmp_path / "odd.yaml"
    path.write_text(f"name: odd\ntransport: local\npython: {python}\nwork_dir: {tmp_path / 'work'}\n")
    with pytest.raises(TargetError) as err:
        provision.setup_target(load_target(path), lambda _: None)
    assert "answered edgekit's probe with a line that is not its facts" in str(err.value), str(err.value)
    assert err.value.exit_code == 2
