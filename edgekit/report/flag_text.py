"""A regression flag in one line of plain text: the wording the Markdown summary lists and the nightly's verdict
line names (the HTML lays the same figures out in its own table)."""

from __future__ import annotations

from edgekit.report.figures import apart
from edgekit.report.regression import Flag, FlagKind


def flag_line(f: Flag) -> str:
    """A flag in one line of plain text, the one wording the Markdown summary lists and the nightly's verdict
    names: where and its figures ('tflite-int8 x1 on pi4: 95 → 114 ms (+20.0%, p=1e-05)'). A fidelity flag says
    its gate in the words of its message, which the HTML shows ('tflite-int8: below its fidelity gate at
    conversion (min_cosine: 0.99999 vs limit 1)'), then the cosine (never printed equal to 1 below 1); a flag
    without figures is its message."""
    if f.kind is FlagKind.FIDELITY:
        if f.new is None:
            return f.message
        cosine = (
            apart(f.new, f.old, 1.0)
            if f.old is None
            else f"{apart(f.old, f.new, 1.0)} → {apart(f.new, f.old, 1.0)}"
        )
        return f"{f.message}; cosine {cosine}"
    where = " ".join(
        x
        for x in (
            f.artifact or "",
            f"x{f.threads}" if f.threads else "",
            f"on {f.target}" if f.target else "",
        )
        if x
    )
    if f.old is None or f.new is None or not where:
        return f.message
    unit = {FlagKind.LATENCY: " ms", FlagKind.INSTRUCTIONS: " instr."}.get(f.kind, "")
    text = f"{where}: {apart(f.old, f.new)} → {apart(f.new, f.old)}{unit}"
    if f.change is not None:
        text += f" ({f.change:+.1%}{f', p={f.p_value:.2g}' if f.p_value is not None else ''})"
    return text
