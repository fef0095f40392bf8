"""How a fidelity figure is written in every table: one size unit, percentages that never round up to 100 %,
and the task metric (accuracy against labels) kept apart from agreement with the original model.

Sizes are MB = 10^6 bytes everywhere (convert table, deploy table, sidecars, README); a conversion's peak memory
is MiB (2^20 bytes, as VmHWM counts it) and its column says so. A percentage keeps one
decimal and is rounded down, so 99.96 % agreement prints as 99.9 %, never as 100 %: only a perfect figure shows
100 %. A figure judged against a limit (a gate, an old value) gets as many digits as it takes to differ from it:
a cosine of 0.99999 under a limit of 1 prints as 0.99999, never as 1 (`apart`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

# the one cosine rule lives in route.py (a route line says a cosine too, and route is below report): shown from here
from edgekit.route import cosine_text as cosine_text

MB = 1_000_000


def megabytes(n_bytes: float) -> str:
    """'4.88 MB' (10^6 bytes), '0.012 MB' below 0.1 MB: one unit, enough digits to tell tiny models apart."""
    mb = n_bytes / MB
    return f"{mb:.2f} MB" if mb >= 0.1 else f"{mb:.3f} MB"


def millions(count: float) -> str:
    """'139.8 M', '0.141 M': an instruction count in millions, one decimal from 10 M, three significant figures
    below (a 141,000-instruction model printed as '0.1 M' beside its fp16 twin's '0.1 M' at 1.41x fewer)."""
    m = count / 1e6
    return f"{m:.1f} M" if m >= 10 else f"{m:.3g} M"


def percent(fraction: float) -> str:
    """'99.7 %': one decimal, rounded down (a figure below 100 % never prints as 100 %)."""
    tenths = math.floor(fraction * 1000 + 1e-9)
    return f"{tenths / 10:.1f} %"


def apart(value: float, *others: float | None, digits: int = 4) -> str:
    """`value` with `digits` significant digits, or the fewest more at which it prints differently from every
    figure in `others` it differs from: '0.99999' against a limit of 1 (at 4 digits both print '1'), '0.9999'
    against 0.5. Rounding keeps order, so a value below its limit also prints below it."""
    for precision in range(digits, 18):
        text = f"{value:.{precision}g}"
        if all(o is None or o == value or f"{o:.{precision}g}" != text for o in others):
            return text
    return repr(value)


def same_precision(
    values: Sequence[float], limits: Sequence[float] = (), digits: int = 4, *, down: bool = False
) -> list[str]:
    """`values` at one precision, the fewest digits from `digits` at which any two of them, or one of them and
    one of `limits` (a cosine's 1), that differ print differently: 0.99994 twice as '0.99994' twice (not
    '0.99999 → 0.9999' beside each other), 0.99994 against 1 never as '1'. `down`: rounded down, so a figure
    never prints above itself (a cosine of 0.999949 under a gate of 0.99995 is not written 0.99995). From 10,000
    whole numbers with thousands separators (instruction counts)."""
    if values and all(abs(v) >= 1e4 for v in values):
        return [f"{v:,.0f}" for v in values]
    every = [*values, *limits]
    for precision in range(digits, 18):
        texts = [_digits(v, precision, down) for v in every]
        if all(
            texts[i] != texts[j] or every[i] == every[j]
            for i in range(len(values))
            for j in range(i + 1, len(every))
        ):
            return texts[: len(values)]
    return [repr(v) for v in values]


def _digits(value: float, precision: int, down: bool) -> str:
    if not down or value == 0 or not math.isfinite(value):
        return f"{value:.{precision}g}"
    decimals = max(0, precision - 1 - math.floor(math.log10(abs(value))))
    scaled = math.floor(value * 10**decimals + 1e-9)
    return f"{scaled / 10**decimals:.{decimals}f}"


def signed_percent(fraction: float) -> str:
    """'+30.2%', '-0.005%': one decimal, two significant digits where one decimal would print a change that is
    not zero as 0.0 % (a fidelity flag's 'change -0.0%'); '0%' for none."""
    pct = fraction * 100
    if pct == 0:
        return "0%"
    return f"{pct:+.1f}%" if abs(pct) >= 0.05 else f"{pct:+.2g}%"


def gate_check(value: float, limit: float, digits: int = 4) -> str:
    """'0.99999 vs limit 1': a measured figure and its gate's limit. The limit as the recipe wrote it (exactly,
    0.99995 stays 0.99995), the value with at least as many digits and more until the two differ: a value that
    misses its limit never prints equal to it, nor on its other side."""
    precision = next((p for p in range(digits, 17) if float(f"{limit:.{p}g}") == limit), 17)
    return f"{apart(value, limit, digits=precision)} vs limit {limit:.{precision}g}"


def gate_failures(gates: dict[str, Any]) -> str:
    """'min_cosine: 0.99999 vs limit 1 (on 8 inputs)': each failed check of a gate verdict (fidelity.check
    .check_gates, kept in an artifact's `fidelity["gates"]`), its value never printed equal to its limit."""
    judged = f" (on {gates['samples']} inputs)" if gates.get("samples") else ""
    failed = [c for c in gates.get("checks") or [] if not c["passed"]]
    return "; ".join(f"{c['gate']}: {gate_check(c['value'], c['limit'])}" for c in failed) + judged


def task_metric(fid: dict[str, Any]) -> str | None:
    """The task's own metric where the evaluation data has labels: 'top-1 92.3 % (ONNX 92.5 %)' or
    'mAP50 0.412 (ONNX 0.415), mAP50-95 0.230 (ONNX 0.241)'; None without labels."""
    if isinstance(fid.get("top1"), (int, float)):
        ref = fid.get("top1_reference")
        return f"top-1 {percent(fid['top1'])}" + (
            f" (ONNX {percent(ref)})" if isinstance(ref, (int, float)) else ""
        )
    if isinstance(fid.get("map50"), (int, float)):
        ref = fid.get("map50_reference")
        text = f"mAP50 {fid['map50']:.3f}" + (f" (ONNX {ref:.3f})" if isinstance(ref, (int, float)) else "")
        if isinstance(fid.get("map50_95"), (int, float)):  # what box precision costs: a gate of its own
            ref = fid.get("map50_95_reference")
            text += f", mAP50-95 {fid['map50_95']:.3f}" + (
                f" (ONNX {ref:.3f})" if isinstance(ref, (int, float)) else ""
            )
        return text
    return None


def agreement(fid: dict[str, Any]) -> str | None:
    """Agreement with the original model's outputs (not accuracy): 'agree 99.7 %' (top-1 classes) or
    'boxes 95.0 % of 40' (detections matched); None when the task has neither."""
    if isinstance(fid.get("top1_agreement"), (int, float)):
        return f"agree {percent(fid['top1_agreement'])}"
    if "box_match" in fid:
        if fid["box_match"] is None:
            return "no ref boxes"
        return f"boxes {percent(fid['box_match'])} of {fid.get('boxes_reference', '?')}"
    return None


def judged_on(samples: int | None, of: int | None) -> str:
    """'on 8 inputs', or 'on 4 of 100 inputs' when a gate saw fewer inputs than the evaluation set holds."""
    if not samples:
        return ""
    if of and samples < of:
        return f"on {samples} of {of} inputs"
    return f"on {samples} inputs"


def fidelity_line(fid: dict[str, Any]) -> str:
    """One line for an artifact's fidelity record (never the raw dict, whose per-output detail runs to several
    lines): 'cos 0.99912 (worst input 0.98701), max abs 0.0123 on 100 inputs, top-1 92.3 % (ONNX 92.5 %),
    agree 99.7 %'; '-' when nothing was measured."""
    parts = []
    cos, worst = fid.get("cosine"), fid.get("cosine_worst")
    if isinstance(cos, (int, float)):
        parts.append(
            f"cos {cosine_text(cos, 5)}"
            + (f" (worst input {cosine_text(worst, 5)})" if isinstance(worst, (int, float)) else "")
        )
    if isinstance(fid.get("max_abs_error"), (int, float)):
        samples = fid.get("samples")
        parts.append(f"max abs {fid['max_abs_error']:.3g}" + (f" on {samples} inputs" if samples else ""))
    parts += [part for part in (task_metric(fid), agreement(fid)) if part]
    return ", ".join(parts) or "-"


def three_figures(value: float) -> str:
    """3 significant figures, never in e-notation (`.3g` wrote 1.23e+03 for 1234 ms)."""
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def estimated_thread_counts(estimates: dict) -> list[tuple[str, int, dict]]:
    """(artifact, threads, estimate) of each ok estimate a deploy attached to an emulated target, keyed
    'artifact xN' (the estimate's own `threads` where it has one)."""
    out = []
    for key, est in estimates.items():
        artifact, _, n = key.rpartition(" x")
        if isinstance(est, dict) and est.get("status", "ok") == "ok" and n.isdigit():
            out.append((artifact, int(est.get("threads") or n), est))
    return out
