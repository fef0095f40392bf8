"""A target with no route because every artifact missed a gate says what to do, as convert's error does: the route
line ended in '(2 failed a gate)' and exit 1, with no word of `edgekit analyze RECIPE --format ... --fix` or of
relaxing the gate (edgekit.gate_advice, the one wording of both)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from edgekit.convert.failures import run_failure
from edgekit.formats import Format
from edgekit.results import GATE_MISSED
from edgekit.route import Basis, Candidate, Route, recommend
from edgekit.route_rejections import CONVERSION_MISSED, DID_NOT_RUN, GATES_FAILED, why_no_route

REPO = Path(__file__).resolve().parents[1]
# missed on the target and when converted (on this machine): the conversion is what to mend
MISSED = f"{GATES_FAILED}: min_cosine: 0.9999921 vs limit 0.9999999 (on 8 inputs); {CONVERSION_MISSED}"
DEVICE_ONLY = f"{GATES_FAILED}: min_cosine: 0.9971 vs limit 0.999 (on 4 inputs)"  # met when converted


def _convert_hint(recipe: str, *fmts: str) -> str:
    """convert's hint for these formats each missing its gate (convert.failures.run_failure)."""

    def art(fmt: str) -> SimpleNamespace:
        return SimpleNamespace(format=Format(fmt), status="failed", error=f"{GATE_MISSED}min_cosine: 0.99")

    err = run_failure([art(f) for f in fmts], [], SimpleNamespace(path=Path(recipe)))  # type: ignore[arg-type]
    assert err.hint, err
    return err.hint


def test_every_artifact_missing_a_gate_gets_convert_s_advice() -> None:
    line = why_no_route({"tflite-int8": MISSED, "onnx-int8": MISSED}, "/data/r.yaml")
    assert line.startswith("no artifact meets every gate (2 failed a gate)"), line
    assert "edgekit analyze /data/r.yaml --format tflite-int8 --fix" in line, line
    assert "--format onnx-int8" in line and "relax the gate in the recipe's evaluation.gates" in line, line
    # convert's words for the same formats, but for --keep-going: with none meeting its gate, it keeps none
    said = _convert_hint("/data/r.yaml", "tflite-int8", "onnx-int8").split("; or relax", 1)[0]
    assert said in line and "--keep-going" not in line, (said, line)
    route = recommend(
        "pi4",
        [Candidate("ncnn-int8", 5.0, False, failures=("min_cosine: 0.9", CONVERSION_MISSED))],
        Basis.P50_MS,
    )
    assert "edgekit analyze RECIPE --format ncnn-int8 --fix" in route.summary(), (
        route.summary()
    )  # path unknown
    route.recipe = "my-recipes/detector v2.yaml"  # as a shell takes it
    assert "edgekit analyze 'my-recipes/detector v2.yaml' --format ncnn-int8 --fix" in route.summary(), (
        route.summary()
    )


def test_a_float_artifact_missing_its_gate_is_not_sent_to_analyze() -> None:
    """ncnn-fp32 missed its gate too: ncnn-int8 is built from it, so analyze --fix cannot mend it (convert says
    so); a float-only miss has no INT8 to name."""
    line = why_no_route({"ncnn-fp32": MISSED, "ncnn-int8": MISSED, "tflite-int8": MISSED}, "r.yaml")
    assert "ncnn-fp32 missed the gate in float" in line and "--format tflite-int8 --fix" in line, line
    assert "--format ncnn-int8" not in line, line
    alone = why_no_route({"onnx-fp32": MISSED}, "r.yaml")
    assert "onnx-fp32 missed the gate in float" in alone and "edgekit analyze" not in alone, alone


def test_a_gate_missed_on_the_target_alone_is_not_blamed_on_the_conversion() -> None:
    """Every artifact met the gates when converted and missed them on the board (ncnn computing in fp16 on the
    A76): the advice said the float conversion differs from the model and sent the INT8 to `analyze --fix`, which
    judges on this machine, where the gate held. Now it names the target's runtime; a conversion miss beside it
    still gets convert's advice."""
    line = why_no_route({"ncnn-fp32": DEVICE_ONLY, "ncnn-int8": DEVICE_ONLY}, "r.yaml")
    assert (
        "ncnn-fp32, ncnn-int8 met the recipe's gates when converted but missed them on this target" in line
    ), line
    assert (
        "drift vs host" in line and "edgekit analyze" not in line and "missed the gate in float" not in line
    )
    both = why_no_route({"ncnn-fp16": DEVICE_ONLY, "tflite-int8": MISSED}, "r.yaml")
    assert "edgekit analyze r.yaml --format tflite-int8 --fix" in both, both
    assert "ncnn-fp16 met the recipe's gates when converted but missed them on this target" in both, both


def test_a_target_where_some_missed_a_gate_and_others_did_not_run_gets_advice_for_the_missed() -> None:
    """One INT8 missed its gate, the other did not run (its error is above): the line named the counts and gave no
    advice for the one that missed; now the missed one gets convert's advice, and the one that did not run none."""
    mixed = Route(
        "pi4",
        Basis.P50_MS,
        1,
        None,
        rejected={"tflite-int8": MISSED, "ncnn-int8": DID_NOT_RUN},
        recipe="r.yaml",
    )
    line = mixed.summary()
    assert line.startswith(
        "pi4: no artifact meets every gate (1 failed a gate, 1 did not run); for the 1 that"
    ), line
    assert "edgekit analyze r.yaml --format tflite-int8 --fix" in line, line
    assert "--format ncnn-int8" not in line, line


def test_a_local_deploy_meeting_no_gate_says_what_to_do(tmp_path: Path) -> None:
    """Through `edgekit deploy --target local`: tiny's two INT8 formats at a gate no INT8 meets (cosine
    0.9999999); the route line names analyze --fix for them, and the Markdown and HTML reports say it too."""
    recipe = tmp_path / "tiny_none.yaml"
    text = (REPO / "recipes" / "tiny.yaml").read_text()
    assert "int8: {min_cosine: 0.95}" in text and "\nformats: [" in text
    text = text.replace("int8: {min_cosine: 0.95}", "int8: {min_cosine: 0.9999999}")
    text = "\n".join(
        "formats: [tflite-int8, onnx-int8]" if line.startswith("formats:") else line
        for line in text.splitlines()
    )
    recipe.write_text(text + "\n")
    env = {**os.environ, "COLUMNS": "300", "EDGEKIT_STORE": str(tmp_path / "store.db")}
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(recipe), "--target", "local"]
        + ["--repeat", "2", "--warmup", "0", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    said = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 1, said[-3000:]
    line = said[
        said.index("route host:") : said.index("; basis:", said.index("route host:"))
    ]  # however wrapped
    assert "no artifact meets every gate (2 failed a gate)" in line, said[-3000:]
    assert "--format tflite-int8 --fix" in line and "--format onnx-int8" in line, said[-3000:]
    assert "relax the gate" in line, said[-3000:]
    assert f"edgekit analyze {recipe} --format" in line, said[
        -3000:
    ]  # the recipe deployed, not a placeholder
    md, html = tmp_path / "summary.md", tmp_path / "report.html"
    shown = subprocess.run(
        [sys.executable, "-m", "edgekit", "report", "--markdown", str(md), "--html", str(html)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    summary = md.read_text()
    assert "--format tflite-int8 --fix" in summary and "relax the gate" in summary, summary
    page = html.read_text()
    assert "--format tflite-int8 --fix" in page and "relax the gate" in page, page[-5000:]
    assert f"edgekit analyze {recipe} --format" in summary and f"edgekit analyze {recipe} --format" in page
