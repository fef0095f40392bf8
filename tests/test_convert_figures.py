"""What `edgekit convert` reports about its converters, with the real converters: each tool process's own peak
memory (not edgekit's), every format converted and reported when one fails, and how a failed tool ended."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "tiny.yaml"

# A parent that holds 1.5 GB converts tiny.yaml (a fresh EDGEKIT_HOME: nothing cached) and prints what each
# artifact says of its converter's memory; getrusage's ru_maxrss in a child carries this parent's peak with it.
HOLD_MB = 1536
PARENT = r"""
import json, sys
import numpy as np
held = np.ones(int(sys.argv[2]) * 2**20 // 8)  # touched: resident
from edgekit.convert.pipeline import convert_recipe
from edgekit.formats import Format
from edgekit.recipe import load_recipe
arts = convert_recipe(load_recipe(sys.argv[1]), [Format(f) for f in sys.argv[3:]], keep_going=True)
print(json.dumps({a.format.value: [a.status, a.error, a.peak_rss_mb, a.provenance.get("memory")] for a in arts}))
"""


def _dist_key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.integration
def test_a_converter_child_reports_its_own_peak_not_its_parents(tmp_path: Path) -> None:
    # one format per kind of child: mnn-int8 runs both of MNN's (convert, then quant; its peak is the larger),
    # openvino-int8 the one OpenVINO child (its fp32 run is the same child without calibration)
    formats = [
        *(["mnn-int8"] if _has("MNN") else []),
        *(["openvino-int8"] if _has("openvino") and _has("nncf") else []),
        *(["tflite-fp32"] if _has("onnx2tf") else []),
    ]
    if not formats:
        pytest.skip("needs MNN, OpenVINO or onnx2tf")
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", PARENT, str(TINY), str(HOLD_MB), *formats],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    for fmt in formats:
        status, error, peak, memory = found[fmt]
        assert status == "ok", (fmt, error)
        assert memory == "tool process", (fmt, memory)
        # before: MNN's and OpenVINO's children said >= 1536 MB (the parent's), onnx2tf's too
        assert peak is not None and 0 < peak < HOLD_MB, (fmt, peak)


def test_the_peak_a_child_prints_is_its_own() -> None:
    """The line a converter child prints after its tool, from a child of a process holding 1.5 GB."""
    code = (
        "import subprocess, sys, numpy as np\n"
        f"held = np.ones({HOLD_MB} * 2**20 // 8)\n"
        "child = 'from edgekit.convert.tool_process import peak_line; print(peak_line())'\n"
        "print(subprocess.run([sys.executable, '-c', child], capture_output=True, text=True).stdout)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    from edgekit.convert.tool_process import peak_mb_from_log

    peak = peak_mb_from_log(out.stdout)
    assert peak is not None and 0 < peak < 200, out  # a bare python: tens of MB, not 1.5 GB
    assert peak_mb_from_log("EDGEKIT_PEAK_KB unknown") is None  # no VmHWM: unknown, not a number


@pytest.mark.integration
def test_a_deploys_tool_versions_name_every_installed_tool_that_made_an_artifact(tmp_path: Path) -> None:
    """Deploy `--json` (and so the store and `runs show`) listed python, edgekit, onnx2tf, ncnn, torch..., but
    neither MNN, openvino, nncf nor opencv-python: its list was a copy the new runtimes never reached."""
    from importlib import metadata

    from edgekit.convert.base import all_dists
    from edgekit.formats import Format
    from edgekit.runtimes import spec_for

    if not all(map(_has, ("MNN", "openvino", "nncf", "cv2", "onnx2tf", "ncnn"))):
        pytest.skip("needs every runtime's converter")
    formats = ["mnn-fp32", "openvino-fp32", "opencv-fp32", "ncnn-fp32", "onnx-fp32", "tflite-fp32"]
    args = [arg for f in formats for arg in ("-f", f)]
    env = {**os.environ, "COLUMNS": "200"}
    convert_json, deploy_json = tmp_path / "convert.json", tmp_path / "deploy.json"
    edgekit = [sys.executable, "-m", "edgekit"]
    done = subprocess.run(
        [*edgekit, "convert", str(TINY), *args, "--json", str(convert_json)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    done = subprocess.run(
        [*edgekit, "deploy", str(TINY), *args, "--target", "local", "--no-store", "--json", str(deploy_json)]
        + ["--repeat", "2", "--warmup", "0", "--threads", "1", "--samples", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    recorded = json.loads(deploy_json.read_text())["tool_versions"]
    converted = json.loads(convert_json.read_text())
    arts = converted["artifacts"]
    made_by: dict[str, str] = {}  # each installed distribution of these artifacts' converters and runtimes
    for art in arts:
        made_by.update(
            {
                name: v
                for name, v in art["provenance"]["tools"].items()
                if name in all_dists() and v != "absent"
            }
        )
        for package in spec_for(Format(art["format"])).packages:
            for dist in package.version_dists:
                try:
                    made_by[dist] = metadata.version(dist)
                except metadata.PackageNotFoundError:
                    continue
    assert {"MNN", "openvino", "nncf", "opencv-python", "onnx2tf", "pnnx"} <= set(made_by)
    recorded = {_dist_key(name): v for name, v in recorded.items()}  # MNN is the pip package mnn
    missing = {name: v for name, v in made_by.items() if recorded.get(_dist_key(name)) != v}
    assert not missing, (missing, recorded)


@pytest.mark.integration
@pytest.mark.parametrize("keep_going", [False, True])
def test_a_failed_format_stops_no_other_format(tmp_path: Path, keep_going: bool) -> None:
    """`convert` without --keep-going stopped at the first failing format: with 8 formats, MNN's quant tool
    crashed and the openvino ones were never converted nor listed, the 5 converted ones 'not checked'. Every
    format is converted and checked now; the exit says whether one failed (1), --keep-going makes it 0."""
    import yaml

    if importlib.util.find_spec("executorch") is not None:
        pytest.skip("executorch converts on this host: no failing format to test with")
    raw = yaml.safe_load(TINY.read_text())
    raw["formats"] = ["tflite-fp32", "executorch-fp32", "ncnn-fp32"]  # the failure between two that work
    recipe = tmp_path / "three.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out.json"
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe), "--json", str(out)]
        + (["--keep-going"] if keep_going else []),
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == (0 if keep_going else 1), done.stdout + done.stderr
    names = {"tflite-fp32", "executorch-fp32", "ncnn-fp32"}
    rows = {ln.split()[0]: ln for ln in done.stdout.splitlines() if ln.split() and ln.split()[0] in names}
    assert set(rows) == names, done.stdout
    assert "FAIL" in rows["executorch-fp32"]
    for fmt in ("tflite-fp32", "ncnn-fp32"):
        assert "pass" in rows[fmt] and "not checked" not in rows[fmt], rows[fmt]
    arts = {a["format"]: a for a in json.loads(out.read_text())["artifacts"]}
    assert [arts[f]["status"] for f in raw["formats"]] == ["ok", "failed", "ok"]
    assert arts["ncnn-fp32"]["fidelity"]["gates"]["passed"]
    if not keep_going:
        assert "executorch is not installed" in done.stderr  # the converter's own error, once


SEGFAULT = "import os, signal; print('working'); os.kill(os.getpid(), signal.SIGSEGV)"


def test_a_converter_child_killed_by_a_signal_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MNN's quantization tool crashing read 'failed (exit -11)'. Each converter's child runner (the real
    subprocess, here a child that dies of SIGSEGV as MNN's tool did) names the signal now."""
    from edgekit.convert import mnn, openvino
    from edgekit.convert.ncnn import pnnx as ncnn
    from edgekit.errors import ConversionError, exit_text

    assert exit_text(-11) == "killed by SIGSEGV (signal 11)" and exit_text(3) == "exit 3"
    monkeypatch.setattr(mnn, "CHILD", SEGFAULT)
    with pytest.raises(ConversionError, match=r"MNN's quant tool failed \(killed by SIGSEGV \(signal 11\)\)"):
        mnn._run_child("quant", [], tmp_path)
    monkeypatch.setattr(openvino, "CHILD", SEGFAULT)
    with pytest.raises(ConversionError, match=r"OpenVINO failed \(killed by SIGSEGV \(signal 11\)\)"):
        openvino._run_child({"onnx": "model.onnx"}, tmp_path)
    pnnx = tmp_path / "pnnx"
    pnnx.write_text("#!/bin/sh\necho working\nkill -SEGV $$\n")
    pnnx.chmod(0o755)
    monkeypatch.setattr(ncnn, "pnnx_executable", lambda: pnnx)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx")
    with pytest.raises(ConversionError, match=r"pnnx failed \(killed by SIGSEGV \(signal 11\)\)"):
        ncnn.run_pnnx(
            model, (1, 3, 8, 8), fp16=False, param=tmp_path / "m.param", bin_path=tmp_path / "m.bin"
        )


def test_the_peak_memory_column_says_mib_and_reads_the_same_for_the_same_thing(tmp_path: Path) -> None:
    """The convert table's `peak mem` was KiB/1024 printed as 'MB' right above 'MB = 10^6 bytes'; and two
    conversions that are both a file copy inside edgekit's process read '0 MB' (onnx-fp32) and '-' (opencv-fp32),
    '-' also meaning 'not measured'. Now: a MiB column, '~0' for under 1 MiB beyond edgekit, '-' only when not
    measured, and the caption says which."""
    import yaml

    raw = yaml.safe_load(TINY.read_text())
    raw["formats"] = ["onnx-fp32", "opencv-fp32"]
    recipe = tmp_path / "copies.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", "EDGEKIT_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    text = done.stdout
    header = next(ln for ln in text.splitlines() if "peak mem" in ln)
    column = header.index("peak mem")
    assert "MiB" in text.splitlines()[text.splitlines().index(header) + 1][column - 2 :], text
    rows = {
        ln.split()[0]: ln.split()
        for ln in text.splitlines()
        if ln.split()[:1] in (["onnx-fp32"], ["opencv-fp32"])
    }
    assert set(rows) == {"onnx-fp32", "opencv-fp32"}, text
    assert "MB" not in " ".join(" ".join(r) for r in rows.values()), rows  # the unit is the column's
    assert rows["onnx-fp32"][4] == rows["opencv-fp32"][4] == "~0", rows  # both a copy in edgekit's process
    said = " ".join(text.split())
    assert "peak mem = MiB (2^20 bytes)" in said and "~0 = under 1 MiB beyond edgekit's own" in said, text
