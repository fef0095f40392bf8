"""The `estimate` entries of a deploy result: what a real board would take, from an emulated target's counts.

deploy calls `estimates_for_run(run, artifacts, device)` for an emulated target with instruction counts (each
entry `of_measurement.estimate_for`'s) and keeps the dicts in TargetRun.estimates; they are labelled estimates
and carry no field a report could mistake for a measured latency (no p50/mean).

A capped emulated run times one thread; for the recipe's other thread counts the estimate wants how the work
splits between threads (the busiest thread bounds the time). For an ncnn artifact that split is counted here, on
this machine, with one inference under the counting qemu of the same core (`counts.count_cached`: kept, so a
second deploy of the same artifact does not count again): with it and the simulated misses the N-thread
estimate is the cross-validated blend of `edgekit estimate --threads N` instead of the forms without the split.
At 2 or 3 threads, which the cost model interpolates between its 1- and 4-thread estimates, that is the 4-thread
split (`cost_model.split_threads`), as `estimate` counts it: a 2- or 3-thread split feeds no form. Where the
run timed 4 threads too, that end reads the timed 4-thread run's own split (nothing counted), so it is the x4
row's figure. An estimate whose split was not counted says so in its caveats and in `split_not_counted`
(deploy's table shows it). Where such an estimate's own thread count was timed, that run's split (counted, but
read by no form) still bounds it: the busiest thread's instructions take at least their share of the one-thread
estimate, so a run whose busiest thread did all the work (OpenCV's 2 threads: 103 % of the one-thread count) is
not estimated faster than one thread (`held_by_timed_split`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekit.estimate import cost_model
from edgekit.estimate.boards import board as get_board
from edgekit.estimate.of_measurement import board_for_device, estimate_for
from edgekit.results import ArtifactInfo, Measurement, TargetRun

ON_CORES = " (the board's cores)"


def estimates_for_run(
    run: TargetRun,
    artifacts: list[ArtifactInfo],
    device: str,
    threads: list[int] | None = None,
    input_shape: list[int] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """TargetRun.estimates for an emulated target in one call: {"artifact xN": estimate dict} for every thread
    count measured and every one in `threads` (the recipe's plan: a capped emulated run measures 1 thread, the
    board question is often 4), each from the same artifact's one-thread count; for an ncnn artifact with the
    split the N-thread estimate reads (`cost_model.split_threads`: at 2 or 3 threads the 4-thread one) counted on
    DEVICE's core (`thread_split`), so the figure is `edgekit estimate --threads N`'s for the same counts. {} when
    no board stands for DEVICE (phone-emu) or the run has no agent result."""
    board = board_for_device(device)
    if board is None or run.agent is None:
        return {}
    infos = {a.id: a for a in artifacts}
    single = {m.artifact: m for m in run.agent.measurements if m.threads == 1 and m.instructions_per_invoke}
    cores = get_board(board).cores
    # the splits the timed runs measured, {artifact: {threads: split}}: the x4 row estimates from its own, so
    # the 4-thread end of a 2- or 3-thread interpolation reads that one too (not a second one counted here)
    timed: dict[str, dict[int, list[int]]] = {}
    for m in run.agent.measurements:
        if m.status == "ok" and 1 < m.threads <= cores and m.instructions_per_thread:
            timed.setdefault(m.artifact, {})[m.threads] = list(m.instructions_per_thread)
    out: dict[str, Any] = {}
    for m in run.agent.measurements:
        info, one = infos.get(m.artifact), single.get(m.artifact)
        counted = m.status == "ok" and bool(m.instructions_per_invoke)
        if counted and m.threads > cores:
            out[f"{m.artifact} x{m.threads}"] = beyond_cores(m, info, board, device, one, input_shape, say)
        elif counted and m.threads > 1 and cost_model.split_threads(m.threads, cores) != m.threads:
            # 2 or 3 threads timed: their own split feeds no form; the interpolation's 4-thread end wants its own
            out[f"{m.artifact} x{m.threads}"] = with_split(
                m, info, board, device, one, input_shape, say, timed.get(m.artifact)
            )
        else:
            out[f"{m.artifact} x{m.threads}"] = estimate_for(m, info, board, one, input_shape)
    for artifact, one in single.items():
        for n in threads or []:
            if f"{artifact} x{n}" not in out:
                wanted = one.model_copy(update={"threads": n})
                out[f"{artifact} x{n}"] = with_split(
                    wanted, infos.get(artifact), board, device, one, input_shape, say, timed.get(artifact)
                )
    return out


def with_split(
    wanted: Measurement,
    info: ArtifactInfo | None,
    board: str,
    device: str,
    one: Measurement | None,
    input_shape: list[int] | None = None,
    say: Callable[[str], None] | None = None,
    timed: dict[int, list[int]] | None = None,
) -> dict[str, Any]:
    """The estimate at `wanted.threads` (not timed at that count, or timed at 2 or 3 threads) from the one-thread
    count ONE, with the split between threads that estimate reads (`cost_model.split_threads`: at 2 or 3 threads
    the 4-thread split the interpolation's 4-thread end reads, above the board's cores the cores' split): the
    timed run's own at that thread count when TIMED ({threads: split} of the same artifact's timed runs) has it,
    as that row's estimate reads it, so both give the same 4-thread figure; else counted here, as `edgekit
    estimate --threads N` counts it. Where it is not counted (not an ncnn artifact, or the count failed) the
    caveat says why and `split_not_counted` holds it (deploy's table prints it); a split the timed run at
    `wanted.threads` itself counted then bounds the figure (`held_by_timed_split`)."""
    n = wanted.threads
    k = cost_model.split_threads(n, get_board(board).cores)
    if k is None:  # one thread: no split
        return estimate_for(
            wanted.model_copy(update={"instructions_per_thread": []}), info, board, one, input_shape
        )
    which = (
        f"{k} threads (the {k}-thread end of the {n}-thread interpolation)"
        if k > n
        else f"{k} threads{ON_CORES if k < n else ''}"
    )
    split, why = list((timed or {}).get(k, [])), ""
    if split:
        note = (
            f"the split between {which} measured in the timed {k}-thread run, as its x{k} estimate reads it"
        )
    else:
        split, why = thread_split(info, k, device, input_shape, say)
        note = (
            f"the split between {which} counted on {device} (one inference under the counting qemu, outside the "
            f"timed run), as `edgekit estimate --threads {n}` counts it"
            if split
            else f"no split between {which} counted here: {why}; estimated without it; `edgekit estimate FILE "
            f"--board {board} --threads {n}` counts it, so its figure can differ"
        )
    wanted = wanted.model_copy(update={"instructions_per_thread": split})
    out = estimate_for(wanted, info, board, one, input_shape, note, split_at=k)
    if split or out.get("status") != "ok":
        return out
    own = (timed or {}).get(n, []) if k != n else []
    if own and one is not None and one.instructions_per_invoke:
        single = estimate_for(one, info, board, None, input_shape)  # the x1 row's figure
        said = held_by_timed_split(out, n, own, one.instructions_per_invoke, single)
        bounded = (
            f"no split between {which} counted here: {why}; {said}; `edgekit estimate FILE --board {board} "
            f"--threads {n}` counts the {k}-thread split, so its figure can differ"
        )
        out["caveats"] = [bounded if c == note else c for c in out["caveats"]]
        note = bounded
    out["split_not_counted"] = note
    return out


def held_by_timed_split(
    out: dict[str, Any], threads: int, own: list[int], count: int, single: dict[str, Any]
) -> str:
    """Bound OUT (an estimate at THREADS made without a split: no form reads a 2- or 3-thread one, and the split
    its interpolation reads was not counted) by OWN, the split the timed run at THREADS counted: its busiest
    thread's instructions run one after another, so the estimate is at least the one-thread estimate (SINGLE,
    of the one-thread COUNT) times their share of COUNT. A figure below that (the forms without a split scale
    as ncnn's benchmark models do: OpenCV's 2 threads, 97 % of their work on one thread, were estimated 15 %
    faster than one) is raised to it, its interval to the one-thread interval times that share. Returns what
    `split_not_counted` says of the timed split; the estimate's caveats say it with the figures."""
    share = max(own) / count
    counted = (
        f"the timed {threads}-thread run counted its own split ({', '.join(f'{v:,}' for v in own)} instructions "
        f"a thread), which no form reads (none is calibrated at {threads} threads): its busiest thread ran "
        f"{share:.0%} of the one-thread count ({count:,})"
    )
    own_words = f"the timed {threads}-thread run counted its own split (between {threads} threads), which no form reads"
    if single.get("status") != "ok" or not single.get("estimate_ms"):
        out["caveats"].append(f"{counted}; no one-thread estimate to bound this one by")
        return f"{own_words}; estimated without a split"
    floor, claimed = float(single["estimate_ms"]) * share, float(out["estimate_ms"])
    if claimed >= floor:
        out["caveats"].append(
            f"{counted}: it allows the estimated speed-up (that share of the one-thread estimate is "
            f"{floor:.3g} ms)"
        )
        return f"{own_words}, and it allows the speed-up estimated without a split"
    out["estimate_ms"] = est = cost_model.significant(floor)
    out["low_ms"] = cost_model.significant(float(single["low_ms"]) * share)
    out["high_ms"] = cost_model.significant(max(float(out["high_ms"]), float(single["high_ms"]) * share))
    out["method"] = (
        f"the one-thread estimate x the busiest thread's share of the one-thread count in the timed {threads}-"
        f"thread run ({share:.3f}); interpolated without a split it was ~{claimed:.3g} ms"
    )
    cv = out.get("cross_validation")
    if isinstance(cv, dict):
        cv["interval"] = f"-{100 * (1 - out['low_ms'] / est):.0f}/+{100 * (out['high_ms'] / est - 1):.0f}%"
        cv["held_by_timed_split"] = {"busiest_share": round(share, 4), "interpolated_ms": claimed}
    out["caveats"].insert(
        0,
        f"{counted}, which contradicts the {1 - claimed / float(single['estimate_ms']):.0%} speed-up over one "
        f"thread of the forms without a split (~{claimed:.3g} ms; they scale as ncnn's benchmark models do): "
        f"estimated as the one-thread estimate x that share, ~{est:.3g} ms (the busiest thread's instructions "
        "at the one-thread estimate's time per instruction), its interval the one-thread interval x that share",
    )
    return (
        f"{own_words}, and its busiest thread ran {share:.0%} of the one-thread count: estimated as that share "
        "of the one-thread estimate, not faster"
    )


def thread_split(
    info: ArtifactInfo | None,
    threads: int,
    device: str,
    input_shape: list[int] | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[list[int], str]:
    """(each guest thread's instructions in one inference of an ncnn artifact at `threads` threads on DEVICE's
    core, counted on this machine and kept in the count cache; why not, when that is []). [] for other runtimes
    (no calibration figure to gain from it), a thread count no cost model is calibrated for, or when it cannot be
    counted here (said, never fatal: the estimate falls back to the forms without the split)."""
    if info is None or not info.files:
        return [], "the artifact's files are not known here"
    param = next((Path(f) for f in info.files if f.endswith(".param")), None)
    if param is None:
        return [], "only an ncnn artifact's is counted"
    if not param.exists():
        return [], f"{param.name} is not on this machine"
    if threads not in cost_model.CALIBRATED_THREADS:
        return [], f"no cost model reads a {threads}-thread split"
    from edgekit.emu.plugin.counting import CountJob
    from edgekit.estimate.counts import count_cached

    name = info.id

    def counting(message: str) -> None:  # said only when not in the count cache
        if say is None:
            return
        if message.startswith("counted "):  # its end (said as a second "counting how" before)
            say(f"{name}'s {threads}-thread split: {message}")
        else:
            say(
                f"counting how {name} splits between {threads} threads on {device} (one inference under qemu)"
            )

    try:
        res, _ = count_cached(
            CountJob(param, threads=threads, input_shape=input_shape, repeat=1), device, counting
        )
    except Exception as exc:  # noqa: BLE001 (an estimate must never break a deploy)
        if say is not None:
            say(f"the {threads}-thread split of {name} not counted on {device} ({exc})")
        return [], str(exc) or type(exc).__name__
    return res.window_split, "" if res.window_split else "the count gave no split between threads"


def beyond_cores(
    measurement: Measurement,
    info: ArtifactInfo | None,
    board: str,
    device: str,
    reference: Measurement | None = None,
    input_shape: list[int] | None = None,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The estimate of a measurement at more threads than the board has cores (99 on a Pi 4), as `edgekit
    estimate --threads 99` makes it: from the one-thread count (REFERENCE's, else counted here) and the split
    between the board's cores threads counted here, the same counting runs as estimate's (the count cache serves
    both), estimated as the board's cores. The count at 99 threads is mostly the threads' synchronisation (3.4x
    the one-thread work for tiny): taken as the work, it doubled the estimate. Unavailable, saying why, when those
    counts cannot be made here."""
    b = get_board(board)
    counted = (
        f"{measurement.threads} threads ({measurement.instructions_per_invoke:,} instructions per invoke)"
    )
    try:
        one, split = _counted_as_estimate(info, board, device, reference, input_shape, say)
    except Exception as exc:  # noqa: BLE001 (an estimate must never break a deploy)
        return {
            "label": cost_model.LABEL,
            "board": board,
            "artifact": measurement.artifact,
            "threads": measurement.threads,
            "status": "unavailable",
            "reason": f"the count at {counted} is mostly the threads' synchronisation on {b.cores} cores, and the "
            f"one-thread count could not be made here ({exc}); `edgekit estimate FILE --board {board} --threads "
            f"{measurement.threads}` estimates it",
        }
    note = (
        f"the count at {counted} is mostly the threads' synchronisation on more threads than the {board}'s "
        f"{b.cores} cores: estimated from the one-thread count ({one.instructions_per_invoke:,})"
        + (f" and the split between {b.cores} threads" if split else "")
        + f" counted on {device}, as `edgekit estimate --threads {measurement.threads}` does"
    )
    wanted = measurement.model_copy(update={"instructions_per_thread": split})
    return estimate_for(wanted, info, board, one, input_shape, note)


def _counted_as_estimate(
    info: ArtifactInfo | None,
    board: str,
    device: str,
    reference: Measurement | None,
    input_shape: list[int] | None,
    say: Callable[[str], None] | None,
) -> tuple[Measurement, list[int]]:
    """(a one-thread measurement holding the counts estimate uses, the split between the board's cores threads):
    the jobs edgekit estimate counts for a file (one thread with the board's simulated caches and llvm-mca's
    cycles, the split at the cores without), so the two give one figure."""
    from edgekit.emu.plugin import cycles
    from edgekit.emu.plugin.counting import CountJob
    from edgekit.estimate.calibration import INPUT_FILL
    from edgekit.estimate.counts import count_cached

    b = get_board(board)
    path = Path(info.files[0]) if info is not None and info.files else None
    if path is None or not path.is_file():
        raise FileNotFoundError("the model file is not on this machine")
    fill = INPUT_FILL if path.suffix == ".param" and not path.with_suffix(".io.json").exists() else None

    def job(n: int) -> CountJob:
        blocks = n == 1 and bool(cycles.models(b.core)) and cycles.tools_present()
        return CountJob(
            path,
            threads=n,
            input_shape=input_shape,
            repeat=1,
            fill=fill,
            caches=b.caches if n == 1 else (),
            blocks=blocks,
        )

    def counting(_: str) -> None:  # said only when not in the count cache
        if say is not None:
            say(f"counting {path.name} as edgekit estimate does on {device} (one inference under qemu)")

    if reference is None or reference.instructions_per_invoke is None:
        first, _ = count_cached(job(1), device, counting)
        reference = Measurement(
            artifact=info.id if info is not None else path.name,
            format=info.format if info is not None else "",
            runtime="",
            threads=1,
            status="ok",
            instructions_per_invoke=first.instructions,
            instruction_mix=list(first.mix[0]) if first.mix else [],
            cache_misses=first.window_misses,
            cycles_per_invoke=first.cycles if first.cycles > 0 else None,
        )
    split: list[int] = []
    if b.cores in cost_model.CALIBRATED_THREADS:
        split = count_cached(job(b.cores), device, counting)[0].window_split
    return reference, split
