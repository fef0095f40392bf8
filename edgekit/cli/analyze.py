"""`edgekit analyze RECIPE [--format tflite-int8|ncnn-int8|onnx-int8|tflite-onnx2tf-int8] [--fix]`: where INT8 loses accuracy, and what it costs
to keep the worst layers in float.

Prints the artifact's whole-model fidelity, then the quantized layers that lose the most (their own error, and
the error the network carries at their output). `--fix` keeps the worst 1, 2, 4, ... layers in float until the
recipe's gate for INT8 is met (TFLite: first the output tail alone, the ops after the last weighted layers such
as a detector's box decoding, then the tail with the worst layers), and prints each candidate's size, host latency and accuracy against the plain
INT8 and the fp32 artifacts. Host latencies are relative costs on this machine, not device figures.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table

from edgekit.cli.analyze_fix import fix_summary, fix_table, gate_limits
from edgekit.cli.outputs import check_output_file
from edgekit.errors import EdgekitError, UsageError
from edgekit.formats import Format
from edgekit.paths import write_atomic
from edgekit.report.figures import agreement, same_precision, task_metric
from edgekit.terminal import Console, plain

console = Console()
if not console.is_terminal:
    console.width = max(console.width, 130)


def analyze_cmd(
    recipe: Path = typer.Argument(..., help="recipe YAML, e.g. recipes/digits.yaml"),
    fmt: Format | None = typer.Option(
        None,
        "--format",
        "-f",
        metavar="FORMAT",
        help="the INT8 format to analyse: tflite-int8, ncnn-int8, onnx-int8 or tflite-onnx2tf-int8 (a Keras "
        "source's) (default: the recipe's one of them)",
    ),
    samples: int = typer.Option(16, "--samples", "-n", min=1, help="evaluation inputs to compare layers on"),
    top: int = typer.Option(10, "--top", min=1, help="how many of the worst layers to list"),
    fix: bool = typer.Option(
        False, "--fix", help="keep the worst layers in float until the recipe's gate is met"
    ),
    max_float: int | None = typer.Option(
        None,
        "--max-float",
        min=1,
        help="with --fix: at most this many layers (ops) kept in float, a TFLite output tail's included; the "
        "recipe's own float layers are not counted",
    ),
    json_path: Path | None = typer.Option(
        None, "--json", callback=check_output_file, help="also write the numbers as JSON here"
    ),
) -> None:
    """Compare an INT8 artifact's intermediate tensors with fp32, layer by layer; list where accuracy goes.

    Example: edgekit analyze recipes/digits.yaml --format ncnn-int8 --fix
    """
    from edgekit.analysis.analyze import analyze, check_format
    from edgekit.recipe import load_recipe

    if max_float is not None and not fix:  # it only bounds --fix: alone it would be silently ignored
        raise UsageError(
            "--max-float bounds how many layers --fix keeps in float; without --fix it does nothing",
            where="--max-float",
            hint=f"add --fix: edgekit analyze {shlex.quote(str(recipe))}"  # with the -f given: two INT8 formats
            + (f" --format {fmt.value}" if fmt is not None else "")  # would be 'choose one'
            + f" --fix --max-float {max_float}",
        )
    loaded = load_recipe(recipe)
    fmt = fmt or _recipe_int8_format(loaded.formats)
    check_format(fmt)
    if fix:
        from edgekit.analysis.float_fallback import check_fix_supported

        check_fix_supported(loaded, fmt)
    with console.status(f"{loaded.name}: starting") as status:

        def progress(message: str) -> None:
            status.update(f"{loaded.name}: {plain(message)}")
            console.print(f"[dim]{plain(message)}[/]", highlight=False)

        result = analyze(loaded, fmt, samples=samples, progress=progress)
        console.print(_summary(result.fidelity), highlight=False)
        warning = result.reference_warning(str(recipe))
        if warning:
            console.print(f"[yellow]warning:[/] {plain(warning)}", highlight=False)
        for note in result.notes:
            console.print(f"[yellow]note:[/] {plain(note)}", highlight=False)
        if any(x.quantized for x in result.layers):
            console.print(layer_table(result, top))
        else:  # an empty table would read as "no error anywhere"
            console.print(
                f"{loaded.name} {fmt.value}: no layer of this artifact is quantized, so no layer loses accuracy "
                "to int8"
                + (
                    " (ncnn-int8 keeps a layer float where its int8 kernel counts more instructions or ncnn "
                    "has none: the artifact's model.io.json, int8.speed_plan, says which and why)"
                    if fmt.value == "ncnn-int8"
                    else ""
                ),
                highlight=False,
            )
        record: dict[str, Any] = {"analysis": result.to_dict()}
        failed = False
        if fix:
            from edgekit.analysis.float_fallback import fix as run_fix

            try:
                outcome = run_fix(loaded, fmt, result, max_float=max_float, progress=progress)
            except EdgekitError as exc:  # the analysis is done: its JSON is written, with why --fix refused
                if json_path:
                    record["fix"] = {"error": exc.message, "where": exc.where, "hint": exc.hint}
                    _write_json(json_path, record)
                raise
            console.print(fix_table(outcome))
            from edgekit.convert.calibration import random_calibration_warning

            failed = fix_summary(
                console,
                outcome,
                max_float,
                loaded.int8.model_dump(mode="json"),
                len(result.weighted()),
                random_calibration=random_calibration_warning(loaded) is not None,
            )
            record["fix"] = outcome.to_dict()
    if json_path:
        _write_json(json_path, record)
    if failed:
        raise typer.Exit(1)


def _write_json(path: Path, record: dict[str, Any]) -> None:
    """NaN (a refused candidate's latency) is no JSON: null."""
    write_atomic(path, json.dumps(_finite(record), indent=1, default=str, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    """`value` with every float that is not finite (NaN, inf) as None, in dicts and lists at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _summary(fid: dict[str, Any]) -> str:
    """The artifact's whole-model check in convert's words: agreement with the ONNX model (cosine, rounded down
    to differ from its gate), accuracy against the labels (the ONNX model's in brackets; it said 'fp32')."""
    gates = fid.get("gates") or {}
    cosine = fid.get("cosine", float("nan"))
    (text,) = same_precision([cosine], gate_limits(gates, "min_cosine"), digits=6, down=True)
    parts = [f"whole model vs ONNX: cosine {text}"]
    metric, agree = task_metric(fid), agreement(fid)
    if metric:
        parts.append(f"accuracy (labels): {metric}")
    if agree:
        parts.append(f"agreement with ONNX: {agree}")
    if gates.get("checks"):
        parts.append("gate " + ("[green]met[/]" if gates.get("passed") else "[red]missed[/]"))
    return "; ".join(parts)


def layer_table(result: Any, top: int) -> Table:
    how = "the layer alone, on fp32 inputs" if result.method == "isolated" else "added at this layer"
    table = Table(
        title=f"{result.recipe} {result.format}: worst of {sum(x.quantized for x in result.layers)} "
        f"quantized layers ({result.samples} inputs; own error = {how})",
        box=box.SIMPLE_HEAD,
    )
    rows = result.worst(top)
    isolated = any(x.own_cosine is not None for x in rows)  # a difference (TFLite) has no cosine of its own
    for col in (
        "#",
        "layer",
        "type",
        "own rel err",
        *(["own cosine"] if isolated else []),
        "cosine here",
        "rel err here",
    ):
        table.add_column(col, justify="left" if col in ("layer", "type") else "right", no_wrap=True)
    for rank, x in enumerate(rows, 1):
        own_cosine = [f"{x.own_cosine:.6f}" if x.own_cosine is not None else "-"] if isolated else []
        compared = not math.isnan(x.cosine)  # a layer with no fp32 counterpart: listed, its figures "-"
        table.add_row(
            str(rank),
            plain(x.short_name[:60]),  # the model's own layer names: `conv[1]` is no markup
            plain(x.type),
            f"{x.own_rel_error:.4f}" if compared else "-",
            *own_cosine,
            f"{x.cosine:.6f}" if compared else "-",
            f"{x.rel_error:.4f}" if compared else "-",
        )
    return table


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze_cmd)


def _recipe_int8_format(formats: tuple[Format, ...] | list[Format]) -> Format:
    """Without --format: the recipe's INT8 format that analyze reads (analysis.analyze.READABLE), when it has
    exactly one."""
    from edgekit.analysis.analyze import READABLE, one_of
    from edgekit.errors import UsageError

    readable = [f for f in formats if f in READABLE]
    if len(readable) == 1:
        return readable[0]
    raise UsageError(
        "--format: the recipe has "
        + (
            one_of(readable, "and") + ": choose one"
            if readable
            else "none of " + ", ".join(f.value for f in READABLE)
        ),
        hint="--format " + " or --format ".join(f.value for f in readable or READABLE),
    )
