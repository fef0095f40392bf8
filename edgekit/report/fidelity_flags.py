"""Fidelity flags: an artifact that missed its recipe's gate, at conversion or on a target's own outputs, and a
conversion that failed where it used to work. Judged against the run before, not a baseline of nights."""

from __future__ import annotations

from collections.abc import Sequence

from edgekit.report.figures import cosine_text, gate_failures
from edgekit.report.flags import Flag, FlagKind
from edgekit.results import TargetRun
from edgekit.route_rejections import not_comparable
from edgekit.store import StoredRun


def fidelity_flags(latest: StoredRun, baseline: list[StoredRun]) -> list[Flag]:
    """An artifact that missed its gate at conversion: one `fidelity` flag (its status is `failed` for that alone,
    ArtifactInfo.missed_gate), naming the targets whose own outputs missed it too; a conversion that failed: `failed`
    where it used to work."""
    flags = []
    for art in latest.result.artifacts:
        past = [a for b in baseline for a in b.result.artifacts if a.id == art.id]
        if art.status == "failed" and not art.missed_gate:
            if not (past and all(a.status == "failed" and not a.missed_gate for a in past)):
                flags.append(
                    Flag(
                        FlagKind.FAILED,
                        latest.result.recipe,
                        latest.id,
                        None,
                        art.id,
                        message=f"{art.id}: {art.error}",  # its error says what failed (conversion failed: ...)
                        first_run=not past,
                    )
                )
            continue
        if not art.missed_gate:
            continue
        new = _cosine(art.fidelity)
        # against the run before (its last baseline run with this artifact): a median over older runs mixed in an
        # earlier model's cosine ('0.99999 -> 0.9999' when both nights were 0.99994)
        olds = [c for c in (_cosine(a.fidelity) for a in past) if c is not None]
        old = olds[-1] if olds else None
        change = (new - old) / old if new is not None and old else None
        gates = art.fidelity.get("gates")
        why = gate_failures(gates) if isinstance(gates, dict) and gates.get("checks") else None
        also = [t.target for t in latest.result.runs if _target_missed(t, art.id)]
        flags.append(
            Flag(
                FlagKind.FIDELITY,
                latest.result.recipe,
                latest.id,
                None,
                art.id,
                old=old,
                new=new,
                change=change,
                baseline_runs=tuple(
                    b.id for b in baseline if any(a.id == art.id for a in b.result.artifacts)
                )[-1:],
                message=f"{art.id}: below its fidelity gate at conversion ({why or _describe(art.fidelity)})"
                + (f"; on {', '.join(also)}'s own outputs too" if also else ""),
                first_run=not past,
            )
        )
    return flags


def _target_missed(target_run: TargetRun, artifact: str) -> bool:
    return any(
        c.artifact == artifact and c.reference == "onnx" and getattr(c, "gates_passed", None) is False
        for c in target_run.comparisons
    )


def target_fidelity_flags(
    latest: StoredRun, target_run: TargetRun, earlier: Sequence[TargetRun] | None = None
) -> list[Flag]:
    """The recipe's gates checked on this target's own outputs (ARM numerics can drift from the host's); an
    artifact that missed them at conversion already has its one flag (fidelity_flags), naming this target.
    `earlier`: this target's runs before (None: not known). A miss no earlier run of this target could have
    passed (none compared the artifact: a recipe's first deploy there) is a failure with nothing to regress
    from (first_run), as at conversion, not a regression."""
    missed = {a.id for a in latest.result.artifacts if a.missed_gate}
    compared = {
        c.artifact
        for t in earlier or ()
        if t.target == target_run.target
        for c in t.comparisons
        if c.reference == "onnx"
    }
    flags = []
    for c in target_run.comparisons:
        if c.reference == "onnx" and getattr(c, "gates_passed", None) is False and c.artifact not in missed:
            failures = (
                "; ".join(getattr(c, "gate_failures", None) or []) or f"cosine {cosine_text(c.cosine, 6)}"
            )
            flags.append(
                Flag(
                    FlagKind.FIDELITY,
                    latest.result.recipe,
                    latest.id,
                    target_run.target,
                    c.artifact,
                    new=c.cosine,
                    emulated=target_run.emulated,
                    message=f"{c.artifact} on {target_run.target}: "
                    + (
                        f"outputs not comparable with the ONNX model's, no gate judged ({failures})"
                        if not_comparable(getattr(c, "gate_failures", None) or [])
                        else f"below its fidelity gate ({failures})"
                    ),
                    first_run=earlier is not None and c.artifact not in compared,
                )
            )
    return flags


def _cosine(fidelity: dict[str, object]) -> float | None:
    value = fidelity.get("cosine")
    return float(value) if isinstance(value, (int, float)) else None


def _describe(fidelity: dict[str, object]) -> str:
    return (
        ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fidelity.items()) or "-"
    )
