"""After every target failed to connect, deploy does not spend a minute timing the host: it says so and fails."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from edgekit.deploy import DeployOptions, deploy
from edgekit.formats import Format
from edgekit.recipe import load_recipe
from edgekit.target import Target, TransportKind

TINY = Path(__file__).resolve().parents[2] / "recipes" / "tiny.yaml"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_host_is_not_measured_when_every_target_failed_to_connect(tmp_path: Path) -> None:
    from edgekit.convert.pipeline import convert_recipe

    recipe = load_recipe(TINY)
    arts = convert_recipe(recipe, (Format.TFLITE_FP32,), keep_going=True)
    nowhere = Target(
        name="nowhere",
        transport=TransportKind.SSH,
        host="127.0.0.1",
        port=closed_port(),
        user="nobody",
        connect_timeout=3,
    )
    start = time.monotonic()
    result = deploy(recipe, [nowhere], DeployOptions(repeat=50, threads=(1,)), artifacts=arts)
    seconds = time.monotonic() - start
    runs = {r.target: r for r in result.runs}
    assert runs["nowhere"].status == "failed" and "ConnectError" in (runs["nowhere"].error or "")
    host = runs["host"]
    assert host.status == "failed" and "every target failed before measuring (nowhere)" in (host.error or "")
    assert host.agent is None and "run" not in host.stage_seconds  # never timed
    assert not result.ok and seconds < 30
