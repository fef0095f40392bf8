"""tiny's ncnn-int8 under the speed plan keeps no layer int8: it is ncnn-fp32's very model. The route never ranked
the two against each other; the other views that rank or compare artifacts did (the reviewer, today):

1. the runtimes table, the `runtimes:` lines and the report's "Runtimes compared" named the twin as its runtime's
   fastest ('ncnn │ 2. ncnn-int8 0.0197') when host noise timed it below ncnn-fp32;
2. `runs show` printed a count ratio ('0.99x') for it where deploy's table says 'same model';
3. a recipe of int8 formats alone (no ncnn-fp32 to be a twin of): deploy said 'ship ncnn-int8' and nowhere that
   it holds no int8 layer, a cached conversion printing no speed-plan finding at all.

Real parts: tiny converted with the speed plan on (its counts under the counting qemu), deployed on `local` (the
host), the CLI's own output, a real store and `edgekit runs show`.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from edgekit.results import DeployResult, TargetRun

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
NO_INT8 = "ncnn-int8 holds no int8 layer: the fp32 model (the speed plan kept no layer int8)"


@pytest.fixture(scope="module")
def speed_plan() -> Iterator[None]:
    """The suite turns the plan off (tests/conftest.py): tiny's ncnn-int8 is then a real int8 model."""
    from edgekit.convert.ncnn import plan as ncnn_plan

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEKIT_NCNN_SPEED_PLAN", "1")
        if not ncnn_plan.enabled():
            pytest.fail("the counting plugin or an emulated core is not built: make setup builds them")
        yield


def _deploy(folder: Path, *formats: str) -> tuple[DeployResult, str]:
    """`edgekit deploy recipes/tiny.yaml --target local` of `formats`, 1 thread: its result and its output."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / "deploy.json"
    args = [sys.executable, "-m", "edgekit", "deploy", str(RECIPE), "--target", "local", "--no-store"]
    args += [f"--format={f}" for f in formats] + ["--threads", "1", "--repeat", "10", "--json", str(out)]
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "250"}
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return DeployResult.model_validate_json(out.read_text()), " ".join(done.stdout.split())


@pytest.fixture(scope="module")
def twins(speed_plan: None, tmp_path_factory: pytest.TempPathFactory) -> tuple[DeployResult, str]:
    """tiny's tflite-fp32, ncnn-fp32 and ncnn-int8 deployed on the host, the speed plan on."""
    result, said = _deploy(tmp_path_factory.mktemp("twins"), "tflite-fp32", "ncnn-fp32", "ncnn-int8")
    arts = {a.id: a for a in result.artifacts}
    # what this file is about: deploy found ncnn-int8 to be ncnn-fp32's very model (its files and options)
    assert arts["ncnn-int8"].same_model_as == "ncnn-fp32", arts["ncnn-int8"]
    assert arts["ncnn-int8"].same_model_why.startswith("the speed plan kept no layer int8")
    return result, said


def _twin_timed_fastest(result: DeployResult) -> DeployResult:
    """The deploy with ncnn-int8 timed below every other artifact on the host, as host noise timed it for the
    reviewer (0.0195 ms against ncnn-fp32's 0.0296): two timings of one model, one of them lower by chance."""
    result = copy.deepcopy(result)
    (host,) = result.runs
    assert host.agent is not None
    fastest = min(m.p50_ms for m in host.agent.measurements if m.p50_ms)
    for m in host.agent.measurements:
        if m.artifact == "ncnn-int8" and m.p50_ms:
            scale = 0.6 * fastest / m.p50_ms
            m.p50_ms *= scale
            m.samples_ms = [s * scale for s in m.samples_ms]
    return result


def _with_board(result: DeployResult) -> DeployResult:
    """The host run measured once more as a board (`pi4`, not emulated): the `runtimes:` lines compare the host's
    ranking with each other target's, so they need one besides the host."""
    result = copy.deepcopy(result)
    board = TargetRun.model_validate({**result.runs[0].model_dump(), "target": "pi4", "kind": "ssh"})
    result.runs.append(board)
    return result


def _text(renderable: object) -> str:
    console = Console(width=250, record=True, color_system=None)
    console.print(renderable)
    return " ".join(console.export_text().split())


def test_the_runtimes_comparison_never_ranks_a_twin_against_its_fp32_model(
    twins: tuple[DeployResult, str],
) -> None:
    """Defect 1: rank_runtimes called candidates_for_run without the twins: the ncnn row named ncnn-int8 (or
    ncnn-fp32, by whichever timing of the one model was lower); the `runtimes:` line and the report's section too."""
    from edgekit.report.lines import route_lines
    from edgekit.route_deploy import routes_for_deploy
    from edgekit.runtimes.ranking import rank_runtimes
    from edgekit.runtimes.ranking_table import runtime_html, runtime_table

    result, said = twins
    assert "ncnn-int8" not in said.split("runtimes, fastest format")[1].split("one timed invocation")[0], said
    noisy = _with_board(_twin_timed_fastest(result))
    for ranking in rank_runtimes(noisy):
        ncnn = next(e for e in ranking.entries if e.runtime == "ncnn")
        assert ncnn.artifact == "ncnn-fp32", (ranking.target, ranking.entries)
    table = _text(runtime_table(noisy))
    assert "ncnn-fp32" in table and "ncnn-int8" not in table, table
    html = runtime_html(noisy)
    assert "ncnn-fp32" in html and "ncnn-int8" not in html, html
    lines = [line for line in route_lines(noisy) if line.startswith("runtimes:")]
    assert lines and not any("ncnn-int8" in line for line in lines), lines
    # the table ranks what the route ranks: the route's choice is its runtime's entry, at its figure
    (route, _) = routes_for_deploy(noisy)
    host = rank_runtimes(noisy)[0]
    assert host.fastest is not None and (host.fastest.artifact, host.fastest.value) == (
        route.artifact,
        route.value,
    )


def test_runs_show_says_same_model_where_deploy_does(twins: tuple[DeployResult, str], tmp_path: Path) -> None:
    """Defect 2: `runs show` of a stored run on a counted emulated target printed 'x fp32 by insn' 0.99x for the
    twin (run_view called count_ratio without looking at same_model_as); deploy's table says 'same model'. The
    stored run: a counted pi4-emu run (edgekit.report.synthetic) whose ncnn artifacts are the real deploy's, with
    the record deploy made of them; its files are then pruned (the record is what counts)."""
    import shutil

    from edgekit.report.synthetic import add_estimates, synthetic_result
    from edgekit.store import open_store

    deployed, _ = twins
    result = synthetic_result(
        datetime(2026, 6, 1, tzinfo=UTC), rng=np.random.default_rng(0), targets=("pi4-emu",), threads=(1,)
    )
    add_estimates(result, "pi4-emu", "pi4")
    real = {a.id: a.model_copy(deep=True) for a in deployed.artifacts}
    for real_art in real.values():  # the stored run outlives its files: the record alone says 'same model'
        copied = tmp_path / "pruned" / real_art.id
        copied.mkdir(parents=True)
        real_art.files = [shutil.copy(f, copied) for f in real_art.files]
    result.artifacts = [real.get(a.id, a) for a in result.artifacts]
    shutil.rmtree(tmp_path / "pruned")
    (emu,) = result.runs
    assert emu.agent is not None
    counts = {m.artifact: m.instructions_per_invoke for m in emu.agent.measurements}
    assert counts["ncnn-int8"] != counts["ncnn-fp32"]  # the counts' ratio would read as a difference
    url = f"sqlite:///{tmp_path / 'runs.sqlite'}"
    with open_store(url) as store:
        run_id = store.record(result)
    env = {**os.environ, "EDGEKIT_HOME": str(tmp_path / "home"), "COLUMNS": "400"}
    env.pop("EDGEKIT_STORE", None)
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "runs", "show", str(run_id), "--store", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    at = next(
        i for i, ln in enumerate(lines) if "x fp32 by insn" in ln
    )  # pi4-emu's table, not the artifacts'
    col = [c.strip() for c in lines[at].split("┃")[1:-1]].index("x fp32 by insn")
    rows = [[c.strip() for c in ln.split("│")[1:-1]] for ln in lines[at:] if ln.count("│") > 3]
    cells = {r[0]: r[col] for r in rows if r[1] == "1"}
    assert cells["ncnn-int8"] == "same model", cells
    fp16 = counts["ncnn-fp32"] / counts["ncnn-fp16"]  # another model: its ratio stays
    assert cells["ncnn-fp16"] == f"{fp16:.2f}x" and cells["ncnn-fp32"] == "base", cells
    assert cells["tflite-int8"] == f"{counts['tflite-fp32'] / counts['tflite-int8']:.2f}x", cells


def test_an_int8_only_deploy_says_its_ncnn_int8_holds_no_int8_layer(
    twins: tuple[DeployResult, str], tmp_path: Path
) -> None:
    """Defect 3: tiny with int8 formats alone: no ncnn-fp32 to be ncnn-int8's twin, and its conversion cached (the
    twins deploy converted it), so no speed-plan finding is printed: deploy said 'route host: ship ncnn-int8 (...)'
    and nowhere that ncnn-int8 is the fp32 model. The table's x fp32 cell and a note under it say so, and so does a
    route that ships it."""
    from edgekit.report.table import deploy_table
    from edgekit.route_deploy import routes_for_deploy

    result, said = _deploy(tmp_path, "tflite-int8", "ncnn-int8", "onnx-int8")
    arts = {a.id: a for a in result.artifacts}
    assert arts["ncnn-int8"].cached and arts["ncnn-int8"].same_model_as is None  # no twin: nothing to say it
    assert NO_INT8 in said, said
    rows = said.split("tiny on host")[1].split("ncnn-int8 │ 1 │")[1].split("│")
    assert rows[1].strip() == "no int8 layer", rows
    (shipped,) = result.routes
    if shipped["artifact"] == "ncnn-int8":  # host timing decides: when it ships, its line says what it is
        assert f"note: {NO_INT8}" in said.split("route host:")[1], said
    # shipped or not, the route that ships it says it: ncnn-int8 timed fastest
    (route,) = routes_for_deploy(_twin_timed_fastest(result))
    assert route.artifact == "ncnn-int8" and NO_INT8 in route.caveats, route.caveats
    assert f"note: {NO_INT8}" in route.summary()
    # the other int8 artifacts are int8: nothing said of them
    table = _text(deploy_table(result))
    assert "tflite-int8 holds" not in table and "onnx-int8 holds" not in table
    # with its ncnn-fp32 in the deploy, the twin's cell stays 'same model' (that says it), and the route ships
    # ncnn-fp32 with nothing said
    both, _ = twins
    assert "same model" in _text(deploy_table(both)) and "no int8 layer" not in _text(deploy_table(both))
    (fp32_route,) = routes_for_deploy(_twin_timed_fastest(both))
    assert not any("holds no int8" in c for c in fp32_route.caveats), fp32_route.caveats
    # recorded with the run (kept_fp32), so a stored run whose cache is pruned still says it: its files gone
    assert arts["ncnn-int8"].kept_fp32 is True and arts["tflite-int8"].kept_fp32 is False
    pruned = result.model_copy(deep=True)
    for art in pruned.artifacts:
        art.files = [str(tmp_path / "pruned" / Path(f).name) for f in art.files]
    assert not any(Path(f).exists() for a in pruned.artifacts for f in a.files)
    assert "no int8 layer" in _text(deploy_table(pruned)), _text(deploy_table(pruned))


def test_an_artifact_that_missed_a_gate_is_still_the_same_model_as_its_fp32(
    twins: tuple[DeployResult, str], tmp_path: Path
) -> None:
    """The reviewer's tiny with every gate `max_abs_error: 1.0e-12`: both ncnn artifacts miss it (status
    `failed`), and the x fp32 column said 'ncnn-int8 1 0.0197 / 0.0239 1.08x MISS' of the byte-identical model,
    its JSON `same_model_as` and `kept_fp32` None: same_files compared only artifacts whose status was ok."""
    recipe = tmp_path / "tiny_strict.yaml"
    text = RECIPE.read_text()
    gates = ("fp32: {min_cosine: 0.9999}", "fp16: {min_cosine: 0.999}", "dynamic: {min_cosine: 0.98}")
    gates += ("int8: {min_cosine: 0.95}",)
    for gate in gates:
        assert gate in text, gate
        text = text.replace(gate, gate.split(":")[0] + ": {max_abs_error: 1.0e-12}")
    recipe.write_text(text)
    out = tmp_path / "deploy.json"
    args = [sys.executable, "-m", "edgekit", "deploy", str(recipe), "--target", "local", "--no-store"]
    args += ["-f", "ncnn-fp32", "-f", "ncnn-int8", "--threads", "1", "--repeat", "10", "--json", str(out)]
    done = subprocess.run(
        args, capture_output=True, text=True, timeout=900, env={**os.environ, "COLUMNS": "250"}
    )
    said = " ".join(done.stdout.split())
    assert done.returncode == 1 and "no artifact meets every gate" in said, said[-3000:]  # every gate missed
    result = DeployResult.model_validate_json(out.read_text())
    arts = {a.id: a for a in result.artifacts}
    assert arts["ncnn-int8"].cached and arts["ncnn-int8"].missed_gate and arts["ncnn-fp32"].missed_gate
    assert (arts["ncnn-int8"].same_model_as, arts["ncnn-int8"].kept_fp32) == ("ncnn-fp32", True), arts
    row = said.split("tiny on host")[1].split("ncnn-int8 │ 1 │")[1].split("│")
    assert row[1].strip() == "same model" and "MISS" in row[2], row
