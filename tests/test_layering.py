"""How edgekit's parts depend on each other: what a module loads when imported."""

from __future__ import annotations

import subprocess
import sys


def _loads(module: str, heavy: str) -> bool:
    """Whether importing `module` in a fresh interpreter puts `heavy` in sys.modules."""
    code = f"import sys, {module}; print({heavy!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return out.stdout.strip() == "True"


def test_local_transport_does_not_load_paramiko() -> None:
    """The host side of every comparison needs no SSH library (sha256_file lives in transport/base.py)."""
    assert not _loads("edgekit.transport.local", "paramiko")
    assert not _loads("edgekit.transport", "paramiko")
    assert _loads("edgekit.transport.ssh", "paramiko")  # the check itself can see paramiko
