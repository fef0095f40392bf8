"""`edgekit profile ARTIFACT --target T`: where one artifact's instructions go, layer by layer (ncnn) or op by
op (TFLite).

Counts every layer's guest instructions on the target's emulated core (locally, under the counting qemu; no
SSH), exactly and repeatably with one thread, and prints the top layers with their type, output shape,
precision and share of the whole inference. Instruction counts, not latency: neither runtime's Python API
times a layer, so wall time per layer on a real board is not offered.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from edgekit.errors import EdgekitError, InputDataError


def _device_for(target: str) -> str:
    """An emulated target's device (pi4-emu -> pi4-emu); a real board has no counting core."""
    from edgekit.target import load_target

    loaded = load_target(target)
    if loaded.emulated is None:
        raise EdgekitError(
            f"target {target} is a real board: per-layer instruction counts need an emulated core",
            where="--target",
            hint="use pi4-emu (Cortex-A72) or pi5-emu (Cortex-A76); wall time per layer on a "
            "board is not offered yet",
        )
    return loaded.emulated.device


def profile_cmd(
    artifact: Path = typer.Argument(
        ..., help="an ncnn model.param (its .bin and model.io.json beside it) or a .tflite model"
    ),
    target: str = typer.Option(..., "--target", "-t", help="an emulated target: pi4-emu or pi5-emu"),
    threads: int = typer.Option(1, "--threads", min=1, help="ncnn threads (1: exact, repeatable counts)"),
    top: int = typer.Option(10, "--top", min=1, help="how many layers to print"),
    as_json: bool = typer.Option(False, "--json", help="print every layer as JSON instead of the top table"),
    input_shape: str | None = typer.Option(
        None,
        "--input-shape",
        help="NCHW, for a .param without sidecar (runs as benchncnn: defaults, input 0.01)",
    ),
) -> None:
    """Guest instructions per layer (ncnn) or per op (TFLite) on an emulated core, top layers first.

    ncnn: each layer is counted alone (computed once in a marked window, minus a twin window that only re-reads
    its output). TFLite: one prefix model per op (the graph cut after it), counted and differenced; slow for big
    graphs (every prefix runs). The total is one whole inference.

    Example: edgekit profile ~/.local/share/edgekit/cache/KEY/model.param --target pi4-emu --top 10
    """
    from edgekit.profile import format_table, profile_ncnn
    from edgekit.profile_tflite import profile_tflite

    if not artifact.is_file():
        raise EdgekitError("artifact not found", where=str(artifact))
    from edgekit.cli.estimate import parse_input_shape

    if artifact.suffix not in (".tflite", ".param"):
        raise InputDataError(
            f"`edgekit profile` counts ncnn layers or TFLite ops; a {artifact.suffix or 'suffix-less'} file is "
            "neither",
            where=str(artifact),
            hint="give an ncnn model.param or a .tflite; `edgekit bench FILE --target pi4-emu` counts a whole "
            "inference of the other runtimes",
        )
    device = _device_for(target)
    if artifact.suffix == ".tflite":
        result = profile_tflite(artifact, device, threads=threads)
    else:
        from edgekit.estimate.graph import load_ncnn

        load_ncnn(artifact)  # a file ncnn cannot load is refused here, named (exit 2), not after a guest run
        result = profile_ncnn(artifact, device, threads=threads, input_shape=parse_input_shape(input_shape))
    if as_json:
        print(json.dumps(result.to_dict(), indent=1))
        return
    for line in format_table(result, top):
        typer.echo(line)


def register(app: typer.Typer) -> None:
    app.command("profile")(profile_cmd)
