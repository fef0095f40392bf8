"""One row of a report's table: an artifact measured on a target at a thread count, with its speed-up over the
same runtime's fp32 (said on what basis), its fidelity and its drift from the host's outputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgekit.formats import Format
from edgekit.report.regression import Flag
from edgekit.results import ArtifactInfo, Comparison, DeployResult, Measurement, TargetRun
from edgekit.route_rejections import not_comparable
from edgekit.same_model import same_models

SAME_MODEL = "same model"  # Row.speedup_basis of an artifact that is its fp32 model: no speed-up


@dataclass(frozen=True)
class Row:
    """One artifact x target x thread count of the latest run."""

    artifact: str
    target: str
    threads: int
    emulated: bool
    status: str
    error: str | None
    p50_ms: float | None
    p90_ms: float | None
    speedup: float | None  # over the same runtime's fp32 on the same target and threads
    speedup_basis: str  # "latency", "emulated wall time", "instruction count" or SAME_MODEL (no speed-up)
    cosine: float | None  # fidelity against the original model (on this target's outputs where known)
    gates_passed: bool | None
    drift_max_abs: float | None  # target's outputs vs the host's (host-vs-ARM drift)
    drift_cosine: float | None
    instructions: int | None
    flags: tuple[Flag, ...] = ()
    estimate: dict | None = None  # emulated target: the board estimate (estimate_ms, low_ms, high_ms, board)
    run_id: int | None = None  # set when the row is from an older run than the recipe's latest
    comparable: bool = True  # False: its outputs could not be paired with the ONNX model's (no gate judged)


def latest_rows(result: DeployResult, flags: Sequence[Flag] = (), only: str | None = None) -> list[Row]:
    """One row per measurement of `result` (of target `only`, if given)."""
    fidelity = {a.id: a for a in result.artifacts}
    twins = {a: same for a, (same, _) in same_models(result.artifacts).items()}
    rows = []
    for target_run in result.runs:
        if only is not None and target_run.target != only:
            continue
        found = measurements(target_run)
        by_key = {(m.format, m.threads): m for m in found}
        drift = {c.artifact: c for c in target_run.comparisons if c.reference == "host"}
        vs_onnx = {c.artifact: c for c in target_run.comparisons if c.reference == "onnx"}
        for m in found:
            art = fidelity.get(m.artifact)
            speedup, basis = _speedup(m, by_key, target_run.emulated, twins.get(m.artifact))
            mine = tuple(
                f
                for f in flags
                if (f.artifact, f.target, f.threads) == (m.artifact, target_run.target, m.threads)
            )
            rows.append(
                Row(
                    artifact=m.artifact,
                    target=target_run.target,
                    threads=m.threads,
                    emulated=target_run.emulated,
                    status=m.status,
                    error=m.error,
                    p50_ms=m.p50_ms,
                    p90_ms=m.p90_ms,
                    speedup=speedup,
                    speedup_basis=basis,
                    # an artifact that did not run here has no fidelity here (not the conversion's in its place)
                    cosine=_target_cosine(vs_onnx.get(m.artifact), art) if m.status == "ok" else None,
                    gates_passed=_gates(vs_onnx.get(m.artifact), art) if m.status == "ok" else None,
                    comparable=not not_comparable(
                        getattr(vs_onnx.get(m.artifact), "gate_failures", None) or []
                    ),
                    drift_max_abs=drift[m.artifact].max_abs_error if m.artifact in drift else None,
                    drift_cosine=drift[m.artifact].cosine if m.artifact in drift else None,
                    instructions=m.instructions_per_invoke,
                    flags=mine,
                    estimate=_estimate(target_run, m),
                )
            )
    return rows


def _estimate(run: TargetRun, m: Measurement) -> dict | None:
    est = run.estimates.get(f"{m.artifact} x{m.threads}") if run.estimates else None
    return est if isinstance(est, dict) and est.get("status") == "ok" else None


def _speedup(
    m: Measurement, by_key: dict[tuple[str, int], Measurement], emulated: bool, twin: str | None = None
) -> tuple[float | None, str]:
    """The same runtime's fp32 figure / this one's, and its basis; none for an artifact that is its fp32 model
    (`twin`, same_model.same_models: a ratio of two timings of one model is noise)."""
    try:
        reference = by_key.get((Format(m.format).fp32_reference.value, m.threads))
    except ValueError:  # a format this edgekit does not know
        reference = None
    if reference is None or reference.status != "ok" or m.status != "ok":
        return None, ""
    if twin is not None and twin == reference.artifact:
        return None, SAME_MODEL
    if emulated and m.instructions_per_invoke and reference.instructions_per_invoke:
        return reference.instructions_per_invoke / m.instructions_per_invoke, "instruction count"
    if emulated:  # qemu's wall time distorts ratios (README): no speed-up from it, said as such
        return None, "emulated wall time"
    if reference.p50_ms and m.p50_ms:
        return reference.p50_ms / m.p50_ms, "latency"
    return None, ""


def measurements(target_run: TargetRun) -> list[Measurement]:
    return target_run.agent.measurements if target_run.agent else []


def _target_cosine(comparison: Comparison | None, art: ArtifactInfo | None) -> float | None:
    """Fidelity on this target's own outputs where deploy compared them, else the conversion's."""
    if comparison is not None:
        return comparison.cosine
    return _float(art.fidelity.get("cosine")) if art else None


def _gates(comparison: Comparison | None, art: ArtifactInfo | None) -> bool | None:
    on_target = getattr(comparison, "gates_passed", None) if comparison is not None else None
    if on_target is not None:
        return bool(on_target)
    return art.gates_passed if art else None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None
