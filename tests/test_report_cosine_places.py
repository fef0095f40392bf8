"""An int8 cosine below 1 printed as '1.00000' (0.99999659 in the JSON) in the deploy table's conversions, the
report's fidelity line and `edgekit convert`'s table. Every table now writes a cosine as the route line does
(figures.cosine_text): as many places as it takes, up to 8, never 1 below 1."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from edgekit.cli.convert import artifact_table
from edgekit.convert.base import Artifact
from edgekit.formats import Format
from edgekit.report.figures import cosine_text, fidelity_line
from edgekit.report.table import deploy_table
from edgekit.results import ArtifactInfo, DeployResult

COSINE = 0.99999659


def _text(renderable: object) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(renderable)
    return out.getvalue()


def test_the_helper_never_prints_one_below_one() -> None:
    assert cosine_text(COSINE, 5) == "0.999997"
    assert cosine_text(0.999912, 5) == "0.99991"
    assert cosine_text(1.0, 5) == "1.00000"
    assert cosine_text(1 - 1e-15, 4) == "> 0.99999999"


def test_the_deploy_table_and_fidelity_line() -> None:
    art = ArtifactInfo(
        id="ncnn-int8",
        format="ncnn-int8",
        files=["model.param"],
        sha256="0" * 64,
        size_bytes=1000,
        fidelity={"cosine": COSINE, "cosine_worst": 0.99999412, "max_abs_error": 0.01},
        gates_passed=True,
    )
    result = DeployResult(
        recipe="tiny",
        recipe_path="r.yaml",
        recipe_sha256="0" * 64,
        started_at=datetime(2026, 12, 6, tzinfo=UTC).isoformat(),
        artifacts=[art],
    )
    text = _text(deploy_table(result))
    assert "cos 0.999997" in text and "1.00000" not in text
    assert fidelity_line(art.fidelity).startswith("cos 0.999997 (worst input 0.99999)")


def test_the_convert_table(tmp_path: Path) -> None:
    art = Artifact(
        Format.NCNN_INT8,
        [tmp_path / "model.param"],
        key="k",
        size_bytes=1000,
        fidelity={"cosine": COSINE, "cosine_worst": 0.999999995, "max_abs_error": 0.01},
    )
    text = _text(artifact_table("converted", [art]))
    assert "0.999997 / > 0.99999999" in text and "1.000000" not in text


def test_one_rule_for_the_route_line_and_the_tables() -> None:
    """The rule was written twice (figures.cosine_text and inline in route.py's summary): it lives in route.py
    now (report imports route, never the reverse), the tables and the route line share it."""
    from edgekit import route
    from edgekit.report import figures

    assert figures.cosine_text is route.cosine_text
    for cosine in (COSINE, 0.999912, 1.0, 1 - 1e-15, 0.5, float("nan")):
        line = route.Route("host", route.Basis.P50_MS, 1, "ncnn-int8", 1.0, cosine=cosine).summary()
        assert f"cosine {route.cosine_text(cosine)}" in line, (cosine, line)
    assert (
        "cosine 0.999997"
        in route.Route("host", route.Basis.P50_MS, 1, "ncnn-int8", 1.0, cosine=COSINE).summary()
    )
