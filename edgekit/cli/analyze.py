"""`edgekit analyze RECIPE --format tflite-int8|ncnn-int8|onnx-int8 [--fix]`: where INT8 loses accuracy, and what it costs
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

from edgekit.cli.outputs import check_output_file
from edgekit.errors import UsageError
from edgekit.formats import Format
from edgekit.paths import write_atomic
from edgekit.report.figures import agreement, gate_check, megabytes, same_precision, task_metric
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
        help="the INT8 format to analyse: tflite-int8, ncnn-int8 or onnx-int8 (default: the recipe's one of them)",
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

            outcome = run_fix(loaded, fmt, result, max_float=max_float, progress=progress)
            console.print(fix_table(outcome))
            failed = _fix_summary(
                outcome, max_float, loaded.int8.model_dump(mode="json"), len(result.weighted())
            )
            record["fix"] = outcome.to_dict()
    if json_path:
        # NaN (a refused candidate's latency) is no JSON: null
        write_atomic(json_path, json.dumps(_finite(record), indent=1, default=str, allow_nan=False) + "\n")
    if failed:
        raise typer.Exit(1)


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
    (text,) = same_precision([cosine], _limits(gates, "min_cosine"), digits=6, down=True)
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


def fix_table(outcome: Any) -> Table:
    table = Table(
        title=f"--fix: {outcome.format} with the worst layers kept in float "
        "(host latency: 1 thread, this machine, not a device)",
        box=box.SIMPLE_HEAD,
    )
    for col in ("in float", "size", "host ms", "cosine", "accuracy (labels)", "gate"):
        table.add_column(col, justify="right", no_wrap=True)
    fp32 = outcome.fp32
    rows = [fp32, *outcome.steps]
    # rounded down and apart from the gate's limit: 0.9999499 under min_cosine 0.99995 printed as 0.999950
    measured = [r for r in rows if not r.error and "cosine" in r.numbers]
    limits = [x for r in rows for x in _limits(r.gates, "min_cosine")]
    cosines = dict(
        zip(map(id, measured), same_precision([r.numbers["cosine"] for r in measured], limits, 6, down=True))
    )
    judged = bool(fp32.gates.get("checks")) and not fp32.error  # by the INT8 gate
    table.add_row(
        "fp32 model",
        megabytes(fp32.size_bytes),
        f"{fp32.host_ms:.3f}",
        cosines.get(id(fp32), "-"),
        _metric(fp32.numbers),
        _verdict(fp32) if judged else "-",
    )
    for step in outcome.steps:
        label = step.label or (str(len(step.float_layers)) if step.float_layers else "none (plain INT8)")
        if step.error:
            table.add_row(label, megabytes(step.size_bytes), "-", "-", "-", "[red]runtime refused it[/]")
            continue
        table.add_row(
            label,
            megabytes(step.size_bytes),
            f"{step.host_ms:.3f}",
            cosines.get(id(step), "-"),
            _metric(step.numbers),
            _verdict(step),
        )
    refused = [s for s in outcome.steps if s.error]
    if refused:
        table.caption = f"refused by the host runtime: {plain(refused[0].error)}"
    return table


def int8_block(current: dict[str, Any], fmt: str, chosen: Any) -> str:
    """The recipe's whole `int8:` line with `chosen`'s float layers for `fmt` in it: the recipe's other int8
    settings kept (granularity, io, the other format's list), so it can replace the line as it is. Values are
    JSON, which YAML reads (TFLite tensor names can hold ':' or ',')."""
    block = dict(current)
    if fmt == "ncnn-int8":
        block["ncnn_float_layers"] = list(dict.fromkeys(n.split(";")[0] for n in chosen.recipe_names))
    elif fmt == "onnx-int8":
        block["onnx_float_nodes"] = list(dict.fromkeys(chosen.recipe_names))
    else:
        block["tflite_float_tail"] = bool(chosen.float_tail)
        block["tflite_float_ops"] = list(chosen.recipe_names)
    kept = {k: v for k, v in block.items() if v not in ([], False) or k in ("granularity", "io")}
    return "int8: {" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in kept.items()) + "}"


def _fix_summary(outcome: Any, max_float: int | None, recipe_int8: dict[str, Any], quantized: int) -> bool:
    """Print the outcome; True when no candidate met the gate. `quantized`: how many quantized weighted layers
    the analysis found (all of them in float is the fp32 model in an INT8 file)."""
    chosen, plain_int8 = outcome.chosen, outcome.steps[0]
    tried = outcome.steps[1:]
    if chosen is None and tried and all(s.error for s in tried):  # no candidate ran: calibration is not why
        reasons = list(dict.fromkeys(s.error for s in tried))
        console.print(
            f"[red]no candidate could be judged[/]: the host runtime refused every one of the {len(tried)} "
            f"built with layers kept in float ({plain('; '.join(reasons[:2]))}). This is not a calibration problem: "
            + (
                "the ops kept in float need TensorFlow's Flex delegate; list their ONNX op under "
                "tflite.replace_ops if onnx2tf can replace it, or try ncnn-int8's --fix"
                if any("Select TF ops" in r for r in reasons)
                else "look at the refusal above"
            ),
            highlight=False,
        )
        return True
    unreachable = _unreachable(outcome)
    if chosen is None and unreachable:
        console.print(
            f"[red]no candidate met the gate[/]: the gate cannot be reached by keeping layers in float: "
            f"{plain(unreachable)}; {plain(_tried(outcome))}. More calibration data cannot help either: loosen "
            "that gate to what the fp32 model reaches, or look at the float conversion first",
            highlight=False,
        )
        return True
    if chosen is None:
        console.print(
            f"[red]no candidate met the gate[/]: {plain(_tried(outcome))}; try "
            + ("--max-float higher, " if max_float is not None else "")
            + "more calibration data (the recipe's calibration: data), or a looser gate if the recipe's is tighter "
            "than the task needs",
            highlight=False,
        )
        return True
    if chosen is plain_int8:
        skipped = plain_int8.gates.get("skipped") or []
        if skipped and not plain_int8.gates.get("checks"):  # every gate needs what the data lacks (labels)
            console.print(
                f"no gate of the recipe could be judged ({'; '.join(skipped)}): nothing to fix against; give "
                "evaluation data with labels, or a gate on agreement with the ONNX model (min_cosine)"
            )
            return False
        console.print("the plain INT8 artifact already meets the recipe's gate: nothing to keep in float")
        return False
    size = chosen.size_bytes - plain_int8.size_bytes
    # steps[0] is the recipe's own artifact: plain INT8 only when the recipe keeps nothing in float
    baseline = (
        "the recipe's current artifact" if plain_int8.label.startswith("as the recipe") else "plain INT8"
    )
    grown = f"{size:+,} bytes" if abs(size) < 10_000 else ("+" if size >= 0 else "-") + megabytes(abs(size))
    console.print(
        f"[green]gate met[/] with {chosen.label or len(chosen.float_layers)} in float "
        f"({len(chosen.float_layers)} layer(s)): "
        f"{plain(', '.join(n.split(';')[0] for n in chosen.float_layers))}",
        highlight=False,
    )
    console.print(
        f"cost: {grown} ({size / plain_int8.size_bytes:+.0%} vs {baseline}; fp32 is "
        f"{megabytes(outcome.fp32.size_bytes)}), host latency {plain_int8.host_ms:.3f} -> {chosen.host_ms:.3f} ms "
        f"(fp32 {outcome.fp32.host_ms:.3f} ms); files: {plain(Path(chosen.files[0]).parent)}",
        highlight=False,
    )
    weighted = set(outcome.weighted)
    if (weighted and weighted <= set(chosen.float_layers)) or (
        quantized and not weighted and len(set(chosen.float_layers)) >= quantized
    ):  # by name: onnx-int8's GlobalAveragePool and Squeeze are quantized too, but never a candidate
        console.print(
            "[yellow]every quantized layer is float in it[/]: that is the fp32 model in an INT8 file; ship "
            f"{_fp32_name(outcome)} instead, or give more calibration data (the recipe's "
            "calibration: data) or a looser gate",
            highlight=False,
        )
    elif chosen.size_bytes >= outcome.fp32.size_bytes:
        console.print(
            f"[yellow]it is no smaller than the fp32 model[/] ({megabytes(chosen.size_bytes)} vs "
            f"{megabytes(outcome.fp32.size_bytes)}): ship {_fp32_name(outcome)} instead, or give more calibration "
            "data (the recipe's calibration: data) or a looser gate",
            highlight=False,
        )
    if outcome.format in (
        "ncnn-int8",
        "tflite-int8",
        "onnx-int8",
    ):  # the recipe can say it: convert and deploy then make it
        console.print(
            "to ship it, the recipe's int8 line becomes (it replaces the one there):", highlight=False
        )
        # one unwrapped line, to copy: a wrapped one still parsed, but a name cut at the edge reads wrong
        console.print(
            int8_block(recipe_int8, outcome.format, chosen), highlight=False, soft_wrap=True, markup=False
        )
    else:
        console.print(
            f"a recipe cannot keep {outcome.format} layers in float: the file above is the artifact (edgekit bench "
            "and profile take it as a file)",
            highlight=False,
        )
    return False


def _unreachable(outcome: Any) -> str | None:
    """Why no float set can meet the INT8 gate, or None: the fp32 model itself misses it ('the fp32 model
    itself misses it (max_abs_error: 1.5e-05 vs limit 1e-06 (on 360 inputs))'), or the candidate with every
    quantized weighted layer in float does."""
    from edgekit.report.figures import gate_failures

    fp32 = outcome.fp32
    if fp32.error is None and fp32.gates.get("passed") is False:
        return f"the {_fp32_name(outcome)} model itself misses it ({gate_failures(fp32.gates)})"
    weighted = set(outcome.weighted)
    every = [s for s in outcome.steps[1:] if weighted and weighted <= set(s.float_layers) and not s.error]
    if every and not every[-1].passed:
        return (
            f"with every quantized weighted layer in float ({len(weighted)}) it still misses "
            f"({gate_failures(every[-1].gates)})"
        )
    return None


def _fp32_name(outcome: Any) -> str:
    return str(outcome.format).replace("-int8", "-fp32")


def _tried(outcome: Any) -> str:
    """What --fix kept in float, candidate by candidate, and whether the last held every quantized weighted
    layer: 'kept in float: 1 worst, 2 worst, 4 worst, 7 worst (the last: every quantized weighted layer, 7)'."""
    tried = [s.label or f"{len(s.float_layers)} layer(s)" for s in outcome.steps[1:]]
    if not tried:
        return "no layer to keep in float (the analysis found none quantized)"
    weighted = set(outcome.weighted)
    every = bool(weighted) and weighted <= set(outcome.steps[-1].float_layers)
    return f"kept in float: {', '.join(tried)}" + (
        f" (the last: every quantized weighted layer, {len(weighted)})"
        if every
        else f" (the most: {max(len(s.float_layers) for s in outcome.steps)} layer(s))"
    )


def _metric(numbers: dict[str, Any]) -> str:
    """Accuracy against the labels, rounded down (99.44 %, never up to a figure it did not reach)."""
    if "top1" in numbers:
        return f"top-1 {math.floor(numbers['top1'] * 10_000 + 1e-9) / 100:.2f} %"
    if "map50" in numbers:
        return f"mAP50 {math.floor(numbers['map50'] * 1000 + 1e-9) / 1000:.3f}"
    return "-"


def _limits(gates: dict[str, Any], gate: str) -> list[float]:
    """The limit of `gate` among a verdict's checks (none when the recipe sets no such gate)."""
    return [c["limit"] for c in gates.get("checks") or [] if c["gate"] == gate]


def _verdict(step: Any) -> str:
    """'met', or 'missed min_cosine 0.9999499 vs limit 0.99995 (-5e-08)': which gate, and by how much."""
    if step.passed:
        return "[green]met[/]"
    failed = [c for c in step.gates.get("checks") or [] if not c["passed"]]
    said = "; ".join(
        f"{c['gate']} {gate_check(c['value'], c['limit'])} ({c['value'] - c['limit']:+.2g})" for c in failed
    )
    return f"[red]missed[/] {plain(said)}" if said else "[red]missed[/]"


def register(app: typer.Typer) -> None:
    app.command("analyze")(analyze_cmd)


READABLE = (Format.TFLITE_INT8, Format.NCNN_INT8, Format.ONNX_INT8)  # the INT8 formats analyze reads


def _recipe_int8_format(formats: tuple[Format, ...] | list[Format]) -> Format:
    """Without --format: the recipe's INT8 format that analyze reads, when it has exactly one."""
    from edgekit.errors import UsageError

    readable = [f for f in formats if f in READABLE]
    if len(readable) == 1:
        return readable[0]
    raise UsageError(
        "--format: the recipe has "
        + (
            " and ".join(f.value for f in readable) + ": choose one"
            if readable
            else "none of " + ", ".join(f.value for f in READABLE)
        ),
        hint="--format " + " or --format ".join(f.value for f in readable or READABLE),
    )
