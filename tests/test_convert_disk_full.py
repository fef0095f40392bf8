"""A data home whose disk fills while a conversion writes its calibration data (numpy's short write, an OSError with
no errno: '49152 requested and 35808 written') or its tool's input copy: DiskFull naming the disk, exit 1, and no
work folder left behind on the full disk, as a tool that ran out of disk itself already got."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from procs import mount_tmpfs

pytestmark = pytest.mark.integration
TINY = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"


def _convert(home: Path, fmt: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(TINY), "-f", fmt],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "EDGEKIT_HOME": str(home), "COLUMNS": "200"},
    )


@pytest.mark.parametrize(
    ("fmt", "module", "free_kb"),
    [
        ("tflite-int8", "onnx2tf", 64),  # the ONNX copy fits, the calibration data (48 KiB and more) does not
        ("tflite-int8", "onnx2tf", 8),  # not even the ONNX copy
        ("openvino-int8", "openvino", 24),  # its calibration data, in the pipeline's own work folder
    ],
)
def test_a_disk_filling_while_a_converter_writes_its_inputs_is_disk_full(
    tmp_path: Path, fmt: str, module: str, free_kb: int
) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    with mount_tmpfs(tmp_path / "home", "16m") as home:
        made = _convert(
            home, "onnx-fp32"
        )  # the exported ONNX model in the cache: what every format starts from
        assert made.returncode == 0, made.stdout + made.stderr
        free = shutil.disk_usage(home).free
        subprocess.run(["fallocate", "-l", str(free - free_kb * 1024), str(home / "filler")], check=True)
        done = _convert(home, fmt)
        said = done.stdout + done.stderr
        assert done.returncode == 1, said
        assert f"error (DiskFull): {home}" in said, said
        assert "crashed" not in said, said
        work = home / "cache" / "work"
        assert not (work.is_dir() and any(work.iterdir())), sorted(p.name for p in work.iterdir())
