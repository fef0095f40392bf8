"""What to do about missed fidelity gates, in one wording for `edgekit convert`'s error (convert.failures) and for a
deploy's target where no artifact met its gates (route_rejections.why_no_route): `edgekit analyze RECIPE --format F
--fix` for the INT8 formats, or relax the gate; a float artifact that missed is its conversion differing from the
model. Its own module: the route (a layer above the converters) and convert both say it, and neither imports the
other."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from edgekit.formats import Format

INT8_FIXABLE = (
    Format.NCNN_INT8,
    Format.TFLITE_INT8,
    Format.ONNX_INT8,
)  # what a missed gate's hint sends to analyze


def gate_advice(
    recipe_path: str, failed: Sequence[Format], float_missed: Sequence[Format], keep_going: bool = True
) -> str:
    """What to do about missed gates, the one wording of convert's error and of a deploy's target with no route
    (edgekit.route_rejections.why_no_route): `edgekit analyze RECIPE --format F --fix` for each INT8 format among
    `failed` (named once each) whose runtime's float artifact did not itself miss its gate, or relax the gate; the
    float artifacts in `float_missed` are said to differ from the model in float, which no layer choice or gate of
    their runtime's fp16/int8 mends. `keep_going`: add convert's --keep-going (it keeps the formats that passed;
    a deploy with none that met its gates has none to keep)."""
    broken = {f.runtime for f in float_missed}
    int8 = list(dict.fromkeys(f.value for f in failed if f in INT8_FIXABLE and f.runtime not in broken))
    also = f" (likewise --format {', --format '.join(int8[1:])})" if len(int8) > 1 else ""
    relax = "relax the gate in the recipe's evaluation.gates" + (
        ", or use --keep-going" if keep_going else ""
    )
    hint = (
        f"`edgekit analyze {shlex.quote(recipe_path)} --format {int8[0]} --fix`{also} finds the layers to keep in "
        f"float and prints the recipe line that meets the gate; or {relax}"
        if int8
        else relax
    )
    if not float_missed:
        return hint
    names = ", ".join(f.value for f in float_missed)
    return (
        f"{names} missed the gate in float: that conversion differs from the model itself (no quantization is "
        "involved, and the same runtime's fp16/int8 artifacts are built from it, so relaxing their gates or "
        "`analyze --fix` cannot mend it): compare another runtime's fp32, try that converter's options "
        "(README 'Converter options'), or leave the format out"
        + (
            f"; for the others: {hint}"
            if int8
            else "; --keep-going keeps the formats that passed"
            if keep_going
            else ""
        )
    )
