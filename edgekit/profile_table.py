"""A profile (edgekit.profile) as plain text: the layers with the most instructions, the totals, and at more than
one thread the layers that gain little from more threads.
"""

from __future__ import annotations

from edgekit.profile import LayerProfile, Profile


def serial_layers(profile: Profile, share: float = 0.02) -> list[LayerProfile]:
    """At N threads, the layers that hold at least `share` of the work and whose busiest thread did more than
    twice an even split of it: where more threads gain little (measured: blazeface's first convolution on the
    A76, 84 % on one of 4 threads; yolov4-tiny's Yolov3DetectionOutput on the A72, 94 %)."""
    if profile.threads <= 1:
        return []
    even = 1 / profile.threads
    return [
        layer
        for layer in profile.top(len(profile.layers))
        if layer.busiest_share is not None
        and layer.busiest_share > 2 * even
        and profile.share(layer) >= share
    ]


def short_names(names: list[str], width: int) -> list[str]:
    """Each name in `width` characters: its end (which says the most: `.../conv2/Conv2D`), or where two ends
    would read the same, the part where the names differ and the end (two BATCH_MATMULs both showed
    `…at.v1.transpose_3/transpose`)."""
    tails = [n if len(n) <= width else "…" + n[-(width - 1) :] for n in names]
    out = []
    for n, t in zip(names, tails):
        twins = [m for m, u in zip(names, tails) if u == t and m != n]
        if not twins or len(n) <= width:
            out.append(t)
            continue
        differ = min(_common_start(n, m) for m in twins)  # where n parts from its twins
        mid = n[max(0, differ - 4) : differ + 8]
        keep = width - len(mid) - 2
        out.append("…" + mid + "…" + n[-keep:] if keep > 0 else t)
    return out


def _common_start(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def format_table(profile: Profile, top: int = 10) -> list[str]:
    """Plain text lines: the `top` layers by instructions, then the totals."""
    scale, unit = (1e6, "M") if profile.total >= 10e6 else (1e3, "k")  # a small model's ops are 0.00 M
    split = profile.threads > 1 and any(layer.busiest_share is not None for layer in profile.layers)
    lines = [
        f"{profile.artifact} on {profile.device} ({profile.cpu}), threads={profile.threads}: {profile.label}",
        f"{'layer':<28} {'type':<22} {'output shape':<16} {'prec':<5} {unit + ' insns':>9} {'share':>7}"
        + (f" {'busiest thread':>14}" if split else ""),
    ]
    top_rows = profile.top(top)
    # a row counted below 0 is shown whatever its rank (sorted last as 0, --top hid it), with its difference
    shown = top_rows + [layer for layer in profile.clamped if layer not in top_rows]
    names = short_names([layer.name for layer in shown], 28)
    for layer, name in zip(shown, names):
        shape = "x".join(str(d) for d in layer.shape)
        busiest = f"{layer.busiest_share:.0%}" if layer.busiest_share is not None else "-"
        share = "-" if profile.nothing_to_split else f"{profile.share(layer):.1%}"
        count = layer.instructions if layer.clamped_from is None else layer.clamped_from
        lines.append(
            f"{name:<28} {layer.type:<22} {shape:<16} {layer.precision:<5} "
            f"{count / scale:>9.2f} {'!' if layer.clamped_from is not None else share:>6}"
            + (f" {busiest:>14}" if split else "")
        )
    if profile.clamped:  # under the rows it marks
        lines.append(_clamped_note(profile, scale, unit))
    if profile.nothing_to_split:
        lines.append(
            f"whole inference {profile.total / scale:.2f} {unit} instructions, {profile.fixed_what} counted apart "
            f"{profile.fixed / scale:.2f} {unit}: the whole inference is the runtime's own per-run work within the "
            f"count's noise: nothing to split ({len(profile.layers)} layers sum to {profile.layer_sum / scale:.2f} "
            f"{unit})"
        )
        return lines
    fixed = f", of which {profile.fixed / scale:.2f} {unit} {profile.fixed_what}" if profile.fixed else ""
    rest = " of the rest" if profile.fixed else " of it"
    lines.append(
        f"whole inference {profile.total / scale:.2f} {unit} instructions{fixed}; {len(profile.layers)} layers "
        f"sum to {profile.layer_sum / scale:.2f} {unit} ({profile.coverage:.2%}{rest}, the base of the share "
        f"column; {profile.remainder})"
    )
    if split:
        lines.append(
            f"busiest thread: its share of the layer's own instructions ({1 / profile.threads:.0%}: split evenly "
            f"over {profile.threads} threads; 100%: one thread did it all while the others waited)"
        )
        serial = serial_layers(profile)
        if serial:
            lines.append(
                "gain little from more threads (busiest thread over twice an even split): "
                + ", ".join(
                    f"{layer.name} ({layer.type}, {profile.share(layer):.0%} of the work, busiest "
                    f"{layer.busiest_share:.0%})"
                    for layer in serial[:5]
                )
                + (f" and {len(serial) - 5} more" if len(serial) > 5 else "")
            )
    if not 0.8 <= profile.coverage <= 1.2:
        lines.append(
            f"! the layers sum to {profile.coverage:.0%} of the whole: this model's per-layer figures are not "
            "reliable (the runtime runs its layers differently alone than together); compare artifacts by "
            "their whole count"
        )
    return lines


def _clamped_note(profile: Profile, scale: float, unit: str) -> str:
    """What a row marked '!' is: counted below 0, so its own work is unknown and it holds 0 in the sum."""
    rows = profile.clamped
    named = ", ".join(f"{layer.name} {(layer.clamped_from or 0) / scale:.2f} {unit}" for layer in rows[:3])
    one = len(rows) == 1
    return (
        f"! {'the row' if one else f'{len(rows)} rows'} marked '!' counted below 0 ({named}"
        f"{', ...' if len(rows) > 3 else ''}): {'its' if one else 'each'} prefix model counted fewer instructions "
        "than the one before (a cut that changed what the runtime fuses or delegates moved work between rows), so "
        f"{'its' if one else 'their'} own work is unknown and the rows before hold too much; 0 in the layers' sum "
        "and in --json `instructions` (`clamped_from`: the difference)"
    )
