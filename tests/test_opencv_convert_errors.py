"""convert of a model OpenCV's DNN cannot read (GridSample): the opencv-fp32 artifact fails its host check, and the
reason was OpenCV's raw cv2.error (source paths, error codes, 'in function ...', several lines) plus a stray
`[ERROR:0@0.021] global onnx_importer.cpp ...` log line of cv2's own on stderr, where bench gives one clean line.
Real `edgekit convert`, real onnxruntime and cv2."""

from __future__ import annotations

from pathlib import Path

from procs import run
from test_bench_unreadable_onnx import grid_sample_onnx


def test_convert_names_opencvs_reason_in_one_clean_line(tmp_path: Path) -> None:
    model = grid_sample_onnx(tmp_path / "gs.onnx")
    recipe = tmp_path / "gs.yaml"
    recipe.write_text(
        "name: gs\ntask: generic\n"
        f"model: {{kind: onnx, path: {model}}}\n"
        "input: {name: x, shape: [1, 3, 8, 8], layout: NCHW}\n"
        "evaluation:\n  data: {kind: random, samples: 2}\n  gates: {fp32: {min_cosine: 0.9999}}\n"
        "formats: [onnx-fp32, opencv-fp32]\n"
    )
    out = run("convert", str(recipe), "--keep-going", cwd=tmp_path, timeout=300)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text  # --keep-going: 0 though an artifact failed (README)
    assert not [line for line in text.splitlines() if line.lstrip().startswith("[ERROR:")], text
    (reason,) = [line for line in out.stdout.splitlines() if line.startswith("opencv-fp32: cannot run")]
    assert 'of type "GridSample"' in reason, reason
    for raw in ("OpenCV(", ".cpp:", "in function", "(-2:"):
        assert raw not in text, (raw, text)
    # the line stands alone: nothing of OpenCV's message continues on the next lines
    after = out.stdout.splitlines()[out.stdout.splitlines().index(reason) + 1 :]
    assert not [line for line in after if line.startswith(">")], text
