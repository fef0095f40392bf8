"""edgekit's console: text that only looks like rich markup prints as text, never raises."""

from __future__ import annotations

import io

from edgekit.terminal import Console, plain


def test_a_stray_closing_tag_prints_as_text_and_markup_still_works() -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    console.print("error: cannot open /data/[/x]/model.onnx", highlight=False)  # MarkupError in rich's own
    console.print(f"[bold]x[/] {plain('[red]not a style[/red]')}", highlight=False)
    console.print("[bold]styled[/] text", highlight=False)
    assert out.getvalue().splitlines() == [
        "error: cannot open /data/[/x]/model.onnx",
        "x [red]not a style[/red]",
        "styled text",
    ]
