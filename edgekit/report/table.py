"""Terminal tables (rich) for `edgekit deploy` and `edgekit bench`.

One row per artifact and thread count; per target: p50 / p90, speed-up over the same runtime's fp32 on the same
target and thread count, the output drift from the host CPU, and whether the recipe's fidelity gates held on
that target. Wall times of emulated targets are labelled `emulated` in the header and in every cell: qemu runs
about 600 times slower than the device with distorted ratios, so they are never shown as device latency.
"""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text

from edgekit.formats import Format
from edgekit.results import AgentResult, Comparison, DeployResult, Measurement, TargetRun

HOST = "host"
EMULATED_NOTE = ("emulated = wall time under qemu on this machine (~600x slower than the device, ratios "
                 "distorted): not device latency")


def deploy_table(result: DeployResult) -> Table:
    runs = sorted(result.runs, key=lambda r: r.target == HOST)  # devices first, the host last
    table = Table(title=f"{result.recipe}: artifact x target (ms per invocation)", title_justify="left",
                  caption=_caption(result, runs), caption_justify="left", header_style="bold")
    table.add_column("artifact", no_wrap=True)
    table.add_column("thr", justify="right")
    table.add_column("MB", justify="right")
    table.add_column("fidelity\nvs ONNX\n(convert)", justify="right", no_wrap=True)
    for run in runs:
        label = f"{run.target}\n" + ("p50 / p90\nemulated ms" if run.emulated else "p50 / p90\nms")
        table.add_column(label, justify="right", style="italic" if run.emulated else None, no_wrap=True)
        table.add_column(f"{run.target}\nx fp32" + ("\nemulated" if run.emulated else ""), justify="right",
                         no_wrap=True)
        if _counted(run):
            table.add_column(f"{run.target}\nguest insn\n/ invoke", justify="right", no_wrap=True)
        if run.estimates:
            board = next((e.get("board") for e in run.estimates.values() if isinstance(e, dict)), "board")
            table.add_column(f"{board} ms\nESTIMATE\n(not measured)", justify="right", no_wrap=True)
        if run.target != HOST:
            table.add_column(f"{run.target}\ndrift vs host\nmax|d| / cos", justify="right", no_wrap=True)
        table.add_column(f"{run.target}\ngates", justify="center")
    for art in result.artifacts:
        for threads in result.benchmark.get("threads", [1]):
            cells: list[Text | str] = [art.id, str(threads), f"{art.size_bytes / 1e6:.2f}", _fidelity(art)]
            for run in runs:
                cells += _target_cells(run, art.id, threads)
            table.add_row(*cells)
    return table


def failures(result: DeployResult) -> list[str]:
    """Every failure in one line each: conversions, gates, targets, measurements."""
    lines = [f"{a.id}: {a.error}" for a in result.artifacts if a.error]
    for run in result.runs:
        if run.error:
            lines.append(f"{run.target}: {run.error}")
        for m in run.agent.measurements if run.agent else []:
            if m.status != "ok":
                lines.append(f"{run.target} {m.artifact} threads={m.threads}: {m.error}")
        for c in run.comparisons:
            if c.reference == "onnx" and c.gates_passed is False:
                lines.append(f"{run.target} {c.artifact}: missed its gate on this target: "
                             f"{'; '.join(c.gate_failures)}")
    return lines


def bench_table(agent: AgentResult, target: str) -> Table:
    emulated = agent.facts_before.emulated
    unit = "emulated wall ms" if emulated else "ms"
    facts = agent.facts_before
    title = (f"{target}: {facts.machine} {facts.cpu_model or ''}, {facts.cores} cores, python {facts.python}"
             + (f" ({facts.emulator})" if emulated else ""))
    table = Table(title=title, title_justify="left", caption=EMULATED_NOTE if emulated else None,
                  caption_justify="left", header_style="bold")
    counted = any(m.instructions_per_invoke for m in agent.measurements)
    names = ["artifact", "runtime", "thr", "load ms", f"p50 {unit}", "p90", "p99", "mean", "std", "min",
             "samples x number", "peak RSS MB"] + (["guest insn / invoke"] if counted else []) + ["status"]
    for name in names:
        table.add_column(name, justify="left" if name in ("artifact", "runtime", "status") else "right")
    for m in agent.measurements:
        ok = m.status == "ok"
        insn = [f"{m.instructions_per_invoke:,}" if m.instructions_per_invoke else "-"] if counted else []
        table.add_row(m.artifact, m.runtime, str(m.threads), _ms(m.load_ms), _ms(m.p50_ms, emulated),
                      _ms(m.p90_ms), _ms(m.p99_ms), _ms(m.mean_ms), _ms(m.std_ms), _ms(m.min_ms),
                      f"{len(m.samples_ms)} x {m.number}", _num(m.peak_rss_mb, 1), *insn,
                      Text("ok", style="green") if ok else Text(f"failed: {m.error}", style="red"))
    return table


# --- cells --------------------------------------------------------------------------------------------------------
def _target_cells(run: TargetRun, artifact: str, threads: int) -> list[Text | str]:
    m = _measurement(run, artifact, threads)
    cells: list[Text | str] = []
    if m is None:
        cells.append(Text(run.status if run.status == "failed" else "-", style="red" if run.error else "dim"))
    elif m.status != "ok":
        cells.append(Text("failed", style="red"))
    else:
        cells.append(Text(f"{_ms(m.p50_ms)} / {_ms(m.p90_ms)}" + (" emulated" if run.emulated else "")))
    cells.append(_speedup(run, artifact, threads, m))
    if _counted(run):
        count = m.instructions_per_invoke if m is not None else None
        cells.append(f"{count / 1e6:.2f} M" if count else "")
    if run.estimates:
        est = run.estimates.get(f"{artifact} x{threads}") or {}
        value = est.get("estimate_ms") if est.get("status") == "ok" else None
        cells.append(f"~{value:.3g} est." if isinstance(value, (int, float)) else "")
    if run.target != HOST:
        cells.append(_drift(_comparison(run, artifact, "host")))
    cells.append(_gate(_comparison(run, artifact, "onnx")))
    return cells


def _speedup(run: TargetRun, artifact: str, threads: int, m: Measurement | None) -> Text | str:
    if m is None or m.status != "ok" or not m.p50_ms:
        return ""
    try:
        base_id = Format(artifact).fp32_reference.value
    except ValueError:
        return ""
    if base_id == artifact:
        return Text("base", style="dim")
    base = _measurement(run, base_id, threads)
    if base is None or base.status != "ok" or not base.p50_ms:
        return ""
    ratio = base.p50_ms / m.p50_ms
    text = f"{ratio:.2f}x"  # the column header says emulated for emulated targets
    return Text(text, style="green" if ratio > 1.05 else ("red" if ratio < 0.95 else ""))


def _drift(c: Comparison | None) -> Text | str:
    if c is None:
        return ""
    if math.isnan(c.cosine):
        return Text("n/a", style="red")
    text = f"{c.max_abs_error:.1e} / {c.cosine:.6f}"
    if c.top1_agreement is not None and c.top1_agreement < 1.0:
        text += f" top1 {c.top1_agreement:.0%}"
    if c.box_match is not None and c.box_match < 1.0:
        text += f" boxes {c.box_match:.0%}"
    return Text(text, style="yellow" if c.max_abs_error > 1e-3 else "")


def _gate(c: Comparison | None) -> Text | str:
    if c is None:
        return ""
    if c.gates_passed:
        return Text("ok", style="green")
    return Text("MISS", style="bold red")


def _fidelity(art: object) -> Text | str:
    fid = getattr(art, "fidelity", {}) or {}
    if getattr(art, "status", "ok") != "ok" and not fid:
        return Text("conversion failed", style="red")
    cos = fid.get("cosine")
    text = f"cos {cos:.5f}" if isinstance(cos, (int, float)) else "-"
    for key, label in (("top1_agreement", "top1"), ("box_match", "boxes")):
        value = fid.get(key)
        if isinstance(value, (int, float)) and value < 1.0:
            text += f" {label} {value:.0%}"
    passed = getattr(art, "gates_passed", False)
    return Text(text + ("" if passed else " MISS"), style="" if passed else "red")


def _caption(result: DeployResult, runs: list[TargetRun]) -> str:
    parts = [f"threads {result.benchmark.get('threads')}, warmup {result.benchmark.get('warmup')}, repeat "
             f"{result.benchmark.get('repeat')} x number {result.benchmark.get('number')}; x fp32 = p50 of the "
             "same runtime's fp32 / p50 (same target and threads); gates = the recipe's fidelity gates on that "
             "target's outputs vs ONNX"]
    if any(r.emulated for r in runs):
        parts.append(EMULATED_NOTE)
    return "\n".join(parts)


def _counted(run: TargetRun) -> bool:
    """Instruction counts (a counting emulated target): deterministic, unlike emulated wall times."""
    return any(m.instructions_per_invoke for m in (run.agent.measurements if run.agent else []))


def _measurement(run: TargetRun, artifact: str, threads: int) -> Measurement | None:
    for m in run.agent.measurements if run.agent else []:
        if m.artifact == artifact and m.threads == threads:
            return m
    return None


def _comparison(run: TargetRun, artifact: str, reference: str) -> Comparison | None:
    return next((c for c in run.comparisons if c.artifact == artifact and c.reference == reference), None)


def _ms(value: float | None, emulated: bool = False) -> str:
    if value is None:
        return "-"
    text = f"{value:.3g}" if value < 100 else f"{value:.0f}"
    return text + (" emulated" if emulated else "")


def _num(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
