"""The reviewer's tiny on pi4-emu, deployed for real (the unit tests are tests/test_route_words.py): the JSON route
said 'slower (1.00x tflite-fp16)' of the tflite-fp32 it called a tie, and the `runtimes:` line said the host's
tflite-int8 'stays fastest' on pi4-emu, where tflite's fastest within the gates was tflite-fp16.

Real parts: `edgekit deploy recipes/tiny.yaml --target pi4-emu` (the running emulated device, counted, with its
simulated caches as the target file has them, so that it is estimated), the host measured beside it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, _pi4_emu_session: None) -> tuple[dict, str]:
    """tiny's TFLite formats and ncnn-fp32 deployed on pi4-emu and the host at 1 thread: the JSON and the output."""
    out = tmp_path_factory.mktemp("words") / "deploy.json"
    args = [sys.executable, "-m", "edgekit", "deploy", str(RECIPE), "--target", "pi4-emu", "--no-store"]
    args += ["-f", "tflite-fp32", "-f", "tflite-fp16", "-f", "tflite-int8", "-f", "ncnn-fp32"]
    args += ["--threads", "1", "--json", str(out)]
    env = {**os.environ, "COLUMNS": "250", "EDGEKIT_TARGET_PI4_EMU_EMULATED__CACHES": "true"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads(out.read_text()), " ".join(done.stdout.split())


def test_a_rejection_says_what_the_route_says_of_that_artifact(deployed: tuple[dict, str]) -> None:
    data, said = deployed
    routes = {r["target"]: r for r in data["routes"]}
    emu, host = routes["pi4-emu"], routes["host"]
    assert emu["basis"] == "estimate-ms", emu
    # tflite-fp32 and tflite-fp16 count the same instructions: their estimates are never ranked apart
    assert {emu["artifact"], emu["tied_with"]} == {"tflite-fp32", "tflite-fp16"}, emu
    (run,) = [r for r in data["runs"] if r["target"] == "pi4-emu"]
    best = run["estimates"][f"{emu['artifact']} x1"]
    for artifact, why in emu["rejected"].items():
        other = run["estimates"][f"{artifact} x1"]
        faster, slower = sorted((best, other), key=lambda e: e["estimate_ms"])
        inside = slower["estimate_ms"] <= faster["high_ms"] or faster["estimate_ms"] >= slower["low_ms"]
        if inside:  # one inside the other's 80% interval: the tie, the withheld ratios and any other
            assert why.startswith("not ranked apart (~"), (artifact, why)
            assert f"ms ESTIMATE of {emu['artifact']}: one lies inside the other's interval" in why, why
        else:
            assert why.startswith("slower by estimate ("), (artifact, why)
    for artifact in {emu["tied_with"], *emu["not_ranked_by_estimate"]}:
        assert emu["rejected"][artifact].startswith("not ranked apart"), emu["rejected"]
    for artifact, why in host["rejected"].items():  # measured: the tie test's words, else slower
        expected = "not told apart by these samples" if artifact == host["tied_with"] else "slower ("
        assert why.startswith(expected), (artifact, why, host["tied_with"])
    assert f"route pi4-emu: ship {emu['artifact']}" in said


def test_the_runtimes_line_names_tflites_own_fastest_format_on_pi4_emu(deployed: tuple[dict, str]) -> None:
    data, said = deployed
    routes = {r["target"]: r for r in data["routes"]}
    emu, host = routes["pi4-emu"]["artifact"], routes["host"]["artifact"]
    assert emu.startswith("tflite-") and host.startswith("tflite-"), routes  # tflite ships on both
    line = said.split("runtimes: ")[1]
    lead = f"host's fastest runtime tflite ({host})"
    assert line.startswith(lead), line
    line = line[len(lead) :]
    tie = routes["host"]["tied_with"]
    # the host's samples did not tell it from ncnn-fp32: said, as its route says it (tests/test_runtime_ties.py)
    if tie and not tie.startswith("tflite-"):
        assert line.startswith(f", which the host's samples do not tell apart from ncnn ({tie})"), line
        line = line.split("as its route says),", 1)[1]
    assert line.startswith(" on pi4-emu: stays fastest"), line
    if host != emu:  # the host's format (tflite-int8) is not pi4-emu's tflite choice: named, never implied
        assert line.startswith(f" on pi4-emu: stays fastest ({emu} there)"), line
    else:
        assert " there)" not in line, line
