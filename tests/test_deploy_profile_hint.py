"""`deploy --profile` ends with a line naming where the per-layer data is in --json: each path it prints is
followed in the JSON written and reaches the per-layer rows (it said `measurements[].layer_ms`, which is no key
of the result: the measurements are under runs[].agent)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgekit.results import DeployResult

TINY = Path(__file__).resolve().parents[1] / "recipes" / "tiny.yaml"


def _follow(data: Any, path: str) -> list[Any]:
    """The values at PATH (`a[].b.<name>.c`: `[]` each item of a list, `<...>` each value of a mapping)."""
    found = [data]
    for part in path.split("."):
        step: list[Any] = []
        for value in found:
            if part.startswith("<") and part.endswith(">"):
                assert isinstance(value, dict), (path, part)
                step.extend(value.values())
                continue
            key, each = (part[:-2], True) if part.endswith("[]") else (part, False)
            assert isinstance(value, dict) and key in value, f"{path}: no key {key!r} in {str(value)[:200]}"
            step.extend(value[key] if each else [value[key]])
        found = step
    return found


def _hinted(lines: list[str]) -> list[str]:
    (hint,) = [line for line in lines if line.startswith("per-layer data")]
    return re.findall(r"[\w<>]+(?:\[\])?(?:\.[\w<>]+(?:\[\])?)+", hint)  # each dotted path it names


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("deploy") / "d.json"
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(TINY), "--target", "local", "-f", "ncnn-fp32"]
        + ["--repeat", "2", "--threads", "1", "--profile", "--json", str(out), "--no-store"],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, out


@pytest.mark.integration
def test_the_printed_path_reaches_the_measured_layer_times(deployed: tuple[str, Path]) -> None:
    stdout, out = deployed
    paths = _hinted(stdout.splitlines())
    assert paths, stdout
    data = json.loads(out.read_text())
    for path in paths:  # only what this run has: no emulated target here, so no counted profiles
        rows = [row for found in _follow(data, path) for row in found]
        assert rows and all(row["ms"] >= 0 and row["name"] for row in rows), (path, rows)
    param = next(
        f for a in data["artifacts"] if a["id"] == "ncnn-fp32" for f in a["files"] if f.endswith(".param")
    )
    names = [
        line.split()[1] for line in Path(param).read_text().splitlines()[2:] if line.split()[0] != "Input"
    ]
    (timed,) = [m for r in data["runs"] for m in r["agent"]["measurements"] if m["layer_ms"]]
    assert [row["name"] for row in timed["layer_ms"]] == names


@pytest.mark.integration
def test_the_printed_path_reaches_the_counted_layers_of_an_emulated_core(deployed: tuple[str, Path]) -> None:
    """The emulated path, on the same result with the count deploy attaches on an emulated target (profile_ncnn,
    under the counting qemu directly: no device)."""
    from edgekit.cli.deploy import profile_lines
    from edgekit.profile import profile_ncnn

    _, out = deployed
    result = DeployResult.model_validate_json(out.read_text())
    param = next(
        Path(f) for a in result.artifacts if a.id == "ncnn-fp32" for f in a.files if f.endswith(".param")
    )
    result.runs[0].profiles["ncnn-fp32"] = {
        "status": "ok",
        **profile_ncnn(param, "pi4-emu", threads=1).to_dict(),
    }
    paths = _hinted(profile_lines(result))
    data = json.loads(result.model_dump_json())
    layered = [p for p in paths if "profiles" in p]
    assert layered, paths
    for path in paths:
        rows = [row for found in _follow(data, path) for row in found]
        assert rows and all(row["name"] for row in rows), (path, rows)
    (counted,) = _follow(data, layered[0])
    assert all(row["instructions"] > 0 for row in counted), counted


@pytest.mark.integration
def test_the_profile_lines_give_the_shares_edgekit_profile_gives(deployed: tuple[str, Path]) -> None:
    """deploy --profile divided a layer's count by the whole inference (tiny's convrelu_1: 24 %) where `edgekit
    profile` divides the same count by the inference less ncnn's own per-inference work (30.9 %), and printed it
    beside wall-time shares of the layers' sum, neither saying its base. The shares are profile's, bases said."""
    from edgekit.cli.deploy import profile_lines
    from edgekit.profile import profile_ncnn

    _, out = deployed
    result = DeployResult.model_validate_json(out.read_text())
    param = next(
        Path(f) for a in result.artifacts if a.id == "ncnn-fp32" for f in a.files if f.endswith(".param")
    )
    prof = profile_ncnn(param, "pi4-emu", threads=1)
    assert prof.fixed > 0.1 * prof.total  # ncnn's own work is a fifth of tiny's inference: the bases differ
    result.runs[0].profiles["ncnn-fp32"] = {"status": "ok", **prof.to_dict()}
    lines = profile_lines(result)
    (counted,) = [line for line in lines if "by instructions" in line]
    assert "shares of the inference less ncnn's own per-inference work" in counted, counted
    said = counted.split(": ", 1)[1].split(": ", 1)[1]
    assert said == ", ".join(f"{x.name} ({x.type}) {prof.share(x):.0%}" for x in prof.top(3)), counted
    (timed,) = [line for line in lines if "by wall time" in line]
    layers = next(m for r in result.runs for m in (r.agent.measurements if r.agent else []) if m.layer_ms)
    heaviest = max(layers.layer_ms, key=lambda x: x.ms)
    share = heaviest.ms / sum(x.ms for x in layers.layer_ms)
    assert f"shares of the layers' sum: {heaviest.name} ({heaviest.type}) {share:.0%}" in timed, timed
