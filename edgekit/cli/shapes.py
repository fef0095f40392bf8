"""Input shapes typed on the command line (`--input-shape` of estimate, roofline and profile; bench's `--shape`):
integers separated by commas (or `x`), every dimension positive, batch first, and no more values than a recipe's
`input.shape` may have. Checked when the command reads it, so a typo is a usage error (exit 2) instead of
minutes of a host or guest run that allocates the shape and then fails."""

from __future__ import annotations

import math
import re

from edgekit.errors import UsageError
from edgekit.recipe.schema import MAX_INPUT_DIMS, MAX_INPUT_ELEMENTS


def parse_shape(text: str | None, option: str) -> list[int] | None:
    """The dimensions of TEXT ('1,3,224,224' or '1x3x224x224'), or None if it is empty."""
    if not text:
        return None
    example = f"e.g. {option} 1,3,224,224 (batch first)"
    try:  # every field a number: '1,3,x,224' (a typo) is not [1, 3, 224]
        dims = [int(v) for v in re.split(r"[,x]", text.strip())]
    except ValueError:
        raise UsageError(
            f"bad input shape {text!r}: expected integers separated by commas", where=option, hint=example
        ) from None
    if len(dims) > MAX_INPUT_DIMS:
        raise UsageError(
            f"bad input shape {text!r}: {len(dims)} dimensions, at most {MAX_INPUT_DIMS}",
            where=option,
            hint=example,
        )
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(
            f"bad input shape {text!r}: every dimension must be a positive integer",
            where=option,
            hint=example,
        )
    if math.prod(dims) > MAX_INPUT_ELEMENTS:
        raise UsageError(
            f"input shape {text!r} is {math.prod(dims):,} values, more than edgekit feeds a model "
            f"({MAX_INPUT_ELEMENTS:,}, {MAX_INPUT_ELEMENTS * 4 >> 20} MB of float32)",
            where=option,
            hint="check the dimensions for a typo",
        )
    return dims
