"""`edgekit analyze --fix`'s answer: the table of candidates (the worst layers kept in float), which one met the
recipe's INT8 gate and at what cost, or why none could; and the recipe's `int8:` line that ships it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich import box
from rich.table import Table

from edgekit.report.figures import gate_check, megabytes, same_precision
from edgekit.terminal import Console, plain


def fix_table(outcome: Any) -> Table:
    rounds = getattr(outcome, "host_rounds", 0)
    table = Table(
        title=f"--fix: {outcome.format} with the worst layers kept in float "
        "(host latency: 1 thread, this machine, not a device"
        + (f"; median and p10-p90 of {rounds} rounds, the models timed in turn" if rounds else "")
        + ")",
        box=box.SIMPLE_HEAD,
    )
    # a narrow or non-TTY console wraps the words (the label, the gate's verdict), never a figure: the size lost
    # its "MB" and the gate's margin its exponent when every column was cut to fit
    table.add_column("in float", justify="right", overflow="fold")
    for col in ("size", "host ms (p10-p90)" if rounds else "host ms", "cosine", "accuracy (labels)"):
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("gate", overflow="fold")
    fp32 = outcome.fp32
    rows = [fp32, *outcome.steps]
    # rounded down and apart from the gate's limit: 0.9999499 under min_cosine 0.99995 printed as 0.999950
    measured = [r for r in rows if not r.error and "cosine" in r.numbers]
    limits = [x for r in rows for x in gate_limits(r.gates, "min_cosine")]
    cosines = dict(
        zip(map(id, measured), same_precision([r.numbers["cosine"] for r in measured], limits, 6, down=True))
    )
    judged = bool(fp32.gates.get("checks")) and not fp32.error  # by the INT8 gate
    table.add_row(
        "fp32 model",
        megabytes(fp32.size_bytes),
        _host_ms(fp32),
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
            _host_ms(step),
            cosines.get(id(step), "-"),
            _metric(step.numbers),
            _verdict(step),
        )
    refused = [s for s in outcome.steps if s.error]
    captions = [f"refused by the host runtime: {plain(refused[0].error)}"] if refused else []
    if getattr(outcome, "host_unreliable", False):
        captions.append(f"[yellow]host ms unreliable[/]: {busy_said(outcome)}")
    table.caption = "\n".join(captions) or None
    return table


def _host_ms(row: Any) -> str:
    """'8.427 (7.912-9.105)': the median and its p10-p90 over the interleaved rounds."""
    if math.isnan(row.host_ms):
        return "-"
    spread = getattr(row, "host_spread", [])
    return f"{row.host_ms:.3f}" + (f" ({spread[0]:.3f}-{spread[1]:.3f})" if len(spread) == 2 else "")


def busy_said(outcome: Any) -> str:
    """Why the host latencies are not compared, in deploy's words."""
    return (
        f"other processes used {outcome.host_busy:.0%} of this machine's CPUs while the models were timed, so "
        "their latencies are not compared; run again on an idle machine"
    )


def latency_cost(outcome: Any, before: Any, after: Any) -> str:
    """The host-latency part of the cost line: a change only where it is beyond the timing spread, nothing
    compared on a busy machine (the fp32 model at 12.3 ms against the same arithmetic in an INT8 file at 5.3 ms
    was printed as a cost of 8.4 -> 5.3 ms)."""
    from edgekit.analysis.float_fallback import host_differs

    if getattr(outcome, "host_unreliable", False):
        return f"host latency not judged: {busy_said(outcome)}"
    fp32 = f"fp32 {outcome.fp32.host_ms:.3f} ms"
    if len(getattr(before, "host_spread", [])) != 2 or len(getattr(after, "host_spread", [])) != 2:
        return f"host latency {before.host_ms:.3f} -> {after.host_ms:.3f} ms ({fp32})"
    (b0, b1), (a0, a1) = before.host_spread, after.host_spread
    spreads = f"p10-p90 {b0:.3f}-{b1:.3f} and {a0:.3f}-{a1:.3f} ms"
    if not host_differs(before, after):
        return (
            f"host latency no different beyond the timing spread: {before.host_ms:.3f} and "
            f"{after.host_ms:.3f} ms ({spreads}; {fp32})"
        )
    return f"host latency {before.host_ms:.3f} -> {after.host_ms:.3f} ms ({spreads}; {fp32})"


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


def fix_summary(
    console: Console,
    outcome: Any,
    max_float: int | None,
    recipe_int8: dict[str, Any],
    quantized: int,
    random_calibration: bool = False,
) -> bool:
    """Print the outcome; True when no candidate met the gate. `quantized`: how many quantized weighted layers
    the analysis found (all of them in float is the fp32 model in an INT8 file). `random_calibration`: the recipe
    calibrates on `kind: random` data, so the advice is real data, not more of it (more random samples cannot
    mend scales fitted to inputs the model never sees)."""
    more_data = (
        "real calibration data in place of the random `calibration.data` (its INT8 scales do not match real "
        "inputs)"
        if random_calibration
        else "more calibration data (the recipe's calibration: data)"
    )
    chosen, plain_int8 = outcome.chosen, outcome.steps[0]
    if chosen is None:
        _say_missed(console, outcome, max_float, more_data)
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
    _say_met(console, outcome, chosen, recipe_int8, quantized, more_data)
    return False


def _say_missed(console: Console, outcome: Any, max_float: int | None, more_data: str) -> None:
    """No candidate met the gate: none could be judged (the runtime refused them all), the gate is out of reach
    (the fp32 model misses it), or the candidates tried fell short."""
    tried = outcome.steps[1:]
    if tried and all(s.error for s in tried):  # no candidate ran: calibration is not why
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
        return
    unreachable = _unreachable(outcome)
    if unreachable:
        console.print(
            f"[red]no candidate met the gate[/]: the gate cannot be reached by keeping layers in float: "
            f"{plain(unreachable)}; {plain(_tried(outcome))}. More calibration data cannot help either: loosen "
            "that gate to what the fp32 model reaches, or look at the float conversion first",
            highlight=False,
        )
        return
    console.print(
        f"[red]no candidate met the gate[/]: {plain(_tried(outcome))}; try "
        + ("--max-float higher, " if max_float is not None else "")
        + f"{more_data}, or a looser gate if the recipe's is tighter than the task needs",
        highlight=False,
    )


def _say_met(
    console: Console,
    outcome: Any,
    chosen: Any,
    recipe_int8: dict[str, Any],
    quantized: int,
    more_data: str,
) -> None:
    """A candidate met the gate: its float set, its cost against plain INT8 and fp32, the caveats (in-sample, the
    held speed plan, no better than fp32) and the recipe's int8 line that ships it."""
    plain_int8 = outcome.steps[0]
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
        f"{megabytes(outcome.fp32.size_bytes)}), {latency_cost(outcome, plain_int8, chosen)}; files: "
        f"{plain(Path(chosen.files[0]).parent)}",
        highlight=False,
    )
    judged = chosen.gates.get("samples")
    if outcome.ranked_on and judged:
        console.print(
            f"[yellow]in-sample[/]: the float set was chosen (layers ranked on {outcome.ranked_on} of them) and "
            f"judged on the same {judged} evaluation inputs: the gate met on them may not hold on unseen data; "
            "check it on other samples (convert with another evaluation.data) before relying on it",
            highlight=False,
        )
    if outcome.held_plan is not None:
        held = outcome.held_plan
        kept = (
            f"each holds the {len(held)} layer(s) the plain artifact's plan keeps float ({plain(', '.join(held))})"
            if held
            else "the plain artifact's plan keeps every layer int8 (or was not counted), and so do they"
        )
        console.print(
            f"speed plan: not counted for each candidate; {kept}. `edgekit convert` counts it again for the float "
            "set the recipe names and may keep other layers float, or fewer: its size, speed and accuracy can "
            "differ from this candidate's (convert judges the recipe's gates on what it writes)",
            highlight=False,
        )
    weighted = set(outcome.weighted)
    if (weighted and weighted <= set(chosen.float_layers)) or (
        quantized and not weighted and len(set(chosen.float_layers)) >= quantized
    ):  # by name: onnx-int8's GlobalAveragePool and Squeeze are quantized too, but never a candidate
        console.print(
            "[yellow]every quantized layer is float in it[/]: that is the fp32 model in an INT8 file; ship "
            f"{_fp32_name(outcome)} instead, or give {more_data} or a looser gate",
            highlight=False,
        )
    elif chosen.size_bytes >= outcome.fp32.size_bytes:
        console.print(
            f"[yellow]it is no smaller than the fp32 model[/] ({megabytes(chosen.size_bytes)} vs "
            f"{megabytes(outcome.fp32.size_bytes)}): ship {_fp32_name(outcome)} instead, or give {more_data} or a "
            "looser gate",
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


def gate_limits(gates: dict[str, Any], gate: str) -> list[float]:
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
