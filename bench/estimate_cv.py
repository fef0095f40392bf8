"""Cross-validation of edgekit's board-latency estimate on its calibration set (17 of ncnn's benchmark models,
their published Pi 4 / Pi 5 figures at 1 and 4 threads).

    .venv/bin/python bench/estimate_cv.py            # the table: every candidate cost model, leave-one-model-out
    .venv/bin/python bench/estimate_cv.py --count    # first (re)count the models on pi4-emu / pi5-emu (slow)
    .venv/bin/python bench/estimate_cv.py --procedure  # recompute the whole procedure's errors (~10 min)
    .venv/bin/python bench/estimate_cv.py --json cv.json

--count runs each model the way benchncnn does (zero weights, input 0.01, ncnn's default options) under the
counting qemu, one guest process per model, at 1 and 4 threads on each emulated core, and writes
edgekit/estimate/data/calibration_counts.json after every model (an interrupted run resumes; --force recounts).
On a core LLVM models (the Pi 5's) the one-thread count also lists the window's blocks and stores their llvm-mca
cycles (edgekit/emu/plugin/cycles.py); a count stored without them is retaken.
The table prints, per board x threads and for each candidate: median, p90 and max |error| of the held-out-one
predictions, and how many published figures fell inside the stated interval of their held-out estimate.
Then the shipped procedure: every form, weighted by 1 / its leave-one-out mean squared log error, with the weights
of each held-out model's estimate taken from the other 16 alone, so the weighting's optimism is measured too (at 4
threads with every count, blended with the 1-thread estimate x a scaling form, chosen and fitted without the
held-out model too; the blend table shows each part's errors); those errors
(edgekit/estimate/data/procedure_cv.json, rewritten with --count or --procedure, ~10 min) are what every stated
interval comes from.

    .venv/bin/python bench/estimate_cv.py --count --counts /tmp/c.json --ncnn-site pi4=/tmp/ncnn-1.0.20230517

counts with another ncnn release than the emulated device's (a folder holding an unpacked aarch64 cp311 wheel of
it, put first on the guest's sys.path) into another counts file, and cross-validates on that file, leaving the
shipped data alone: docs/estimate.md has what that gave with the releases the published figures were measured
with.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgekit.emu.plugin import cycles
from edgekit.estimate import calibration, cost_model
from edgekit.estimate.boards import BOARDS
from edgekit.estimate.groups import extreme_summary


def count_all(force: bool, only: list[str] | None, sites: dict[str, str] | None = None) -> None:
    from edgekit.emu.plugin.counting import CountJob, count_artifacts
    from edgekit.estimate.graph import analyze

    store = json.loads(calibration.COUNTS_FILE.read_text()) if calibration.COUNTS_FILE.exists() else {}
    store.setdefault("counts", {})
    store["meta"] = _meta(sites or {})
    store.setdefault("graph", {})
    for name, model in calibration.models().items():  # on this host: MACs and weight elements from the graph
        if force or name not in store["graph"]:
            cost = analyze(calibration.zero_weights(model), model.input_shape)
            store["graph"][name] = {
                "macs": cost.macs,
                "params": cost.params,
                "activation_bytes": cost.activation_bytes,
            }
            calibration.COUNTS_FILE.write_text(json.dumps(store, indent=1, sort_keys=True) + "\n")
    for board, device in calibration.DEVICES.items():
        for threads in calibration.THREADS:
            for name, model in calibration.models().items():
                if only and name not in only:
                    continue
                done = store["counts"].get(name, {}).get(board, {}).get(str(threads))
                blocks = threads == 1 and timed(board) and not sites  # llvm-mca's cycles: 1 thread, as misses
                if not force and done is not None and (not blocks or "cycles" in done):
                    continue
                start = time.monotonic()
                job = CountJob(
                    calibration.zero_weights(model),
                    threads=threads,
                    input_shape=model.input_shape,
                    fill=calibration.INPUT_FILL,
                    warmup=1,
                    repeat=1,
                    number=1,
                    caches=BOARDS[board].caches if threads == 1 else (),  # the miss features are 1-thread
                    site=(sites or {}).get(board),
                    blocks=blocks,
                )
                (res,) = count_artifacts([job], device)
                entry = {
                    "instructions": res.instructions,
                    "busiest_thread": res.busiest_thread,
                    "per_thread": res.per_thread[0] if res.per_thread else [],
                    "outputs": res.outputs,
                    "mix": res.mix[0] if res.mix else [],
                    "misses": res.window_misses,
                    "emulated_ms": round(res.emulated_ms_per_invoke[0], 1),
                }
                if res.cycles > 0:
                    entry["cycles"] = round(res.cycles)
                store["counts"].setdefault(name, {}).setdefault(board, {})[str(threads)] = entry
                calibration.COUNTS_FILE.write_text(json.dumps(store, indent=1, sort_keys=True) + "\n")
                print(
                    f"{device} {threads}T {name:20s} {res.instructions / 1e6:10.1f} M instructions "
                    f"(busiest thread {res.busiest_thread / 1e6:.1f} M) in {time.monotonic() - start:.0f} s",
                    flush=True,
                )


def _meta(sites: dict[str, str]) -> dict:
    from edgekit.emu.plugin import build

    qemu = subprocess.run([str(build.counting_qemu()), "--version"], capture_output=True, text=True).stdout
    return {
        "how": "benchncnn's way: zero weights, input filled with 0.01, ncnn default options; warm-up 1, one "
        "window of one invocation; guest instruction count (not cycles); at 1 thread the misses of the board's "
        "caches with the stream prefetcher (boards.py caches, pf=1)",
        "qemu": qemu.splitlines()[0] if qemu else "?",
        "host": platform.node(),
        "counted_at": time.strftime("%Y-%m-%d"),
        "ncnn": {board: _release(sites.get(board)) for board in calibration.DEVICES},
    }


def _release(site: str | None) -> str:
    """The ncnn release a board's models were counted with: the device's own, or the one in --ncnn-site's folder."""
    if not site:
        return "the emulated device's"
    found = sorted(Path(site).glob("ncnn-*.dist-info"))
    return found[0].name.removesuffix(".dist-info") if found else site


def _use_counts(path: Path) -> None:
    """Read and write the calibration counts and the procedure's errors beside PATH instead of the shipped data."""
    from edgekit.estimate import crossval

    if not path.exists() and calibration.COUNTS_FILE.exists():  # the graph entries carry over; counts do not
        shipped = json.loads(calibration.COUNTS_FILE.read_text())
        path.write_text(json.dumps({**shipped, "counts": {}}, indent=1, sort_keys=True) + "\n")
    procedure = path.with_name(path.stem + ".procedure.json")
    calibration.COUNTS_FILE = path
    crossval.PROCEDURE_FILE = cost_model.PROCEDURE_FILE = procedure  # type: ignore[misc]


def print_table(rows: list[dict]) -> None:
    print(
        f"{'candidate':24s} {'board':5s} {'thr':>3s} {'n':>3s} {'median':>7s} {'p90':>7s} {'max':>7s} "
        f"{'bias':>7s} {'interval':>10s} {'covered':>8s}"
    )
    for r in rows:
        print(
            f"{r['candidate']:24s} {r['board']:5s} {r['threads']:3d} {r['n']:3d} {100 * r['median']:6.1f}% "
            f"{100 * r['p90']:6.1f}% {100 * r['max']:6.1f}% {100 * r['bias']:+6.1f}% "
            f"{r['interval']:>10s} {r['covered']:>3d}/{r['n']:<3d}"
        )


CACHES = ("l1_misses", "llc_misses")
EVERY = ("instructions", "busiest", "params", "macs", "mix", "activation_bytes", *CACHES)
WITHOUT_CACHES = tuple(f for f in EVERY if f not in CACHES)
COUNT_ONLY = ("instructions", "busiest", "mix", *CACHES)  # a count and no ncnn graph (a TFLite artifact)
# the feature sets estimates use: every count (`edgekit estimate`, deploy's pi4-emu / pi5-emu: caches simulated);
# a count without simulated caches (`emulated.caches: false`); the counts of an artifact with no ncnn graph to
# read sizes from (TFLite), with and without caches; each without the thread split (a capped one-thread run's
# 4-thread estimate); graph sizes only (ONNX, no count)
_COUNTED = (EVERY, WITHOUT_CACHES, COUNT_ONLY, tuple(f for f in COUNT_ONLY if f not in CACHES))
FEATURE_SETS = (
    *_COUNTED,
    *(tuple(f for f in features if f != "busiest") for features in _COUNTED),
    ("macs", "params"),
    ("macs",),
)
CYCLES = "cycles"  # llvm-mca's cycles, on a core LLVM models (the Pi 5's): `edgekit estimate` counts them


def timed(board: str) -> bool:
    """Whether `edgekit estimate` times this board's core with llvm-mca (emu/plugin/cycles.py)."""
    return cycles.models(BOARDS[board].core)


def every(board: str) -> tuple[str, ...]:
    """What `edgekit estimate` counts on this board: every count, with llvm-mca's cycles where the core has them
    (deploy's emulated targets count without them: EVERY)."""
    return (*EVERY, CYCLES) if timed(board) else EVERY


def feature_sets(board: str) -> tuple[tuple[str, ...], ...]:
    """FEATURE_SETS, and where the core is timed, the counts with caches plus the cycles (with and without the
    thread split: deploy's pi5-emu times blocks too)."""
    if not timed(board):
        return FEATURE_SETS
    with_cycles = ((*EVERY, CYCLES), (*COUNT_ONLY, CYCLES))
    return (*FEATURE_SETS, *with_cycles, *(tuple(f for f in s if f != "busiest") for s in with_cycles))


def write_procedure_errors() -> dict[str, list]:
    """The whole procedure's held-out errors (selection included) per board x threads x feature set, into
    cost_model.PROCEDURE_FILE: the stated intervals come from them."""
    errors = {}
    for board in calibration.DEVICES:
        for threads in calibration.THREADS:
            for features in feature_sets(board):
                start = time.monotonic()
                key = cost_model.procedure_key(board, threads, features)
                errors[key] = [list(e) for e in cost_model.procedure_errors(board, threads, features)]
                print(f"  procedure {key}: {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    note = (
        "bench/estimate_cv.py: (model, heaviest form without it, log(estimate / published)) per key; "
        "widest_single_form_q: the largest single form's interval (log), for intervals not validated; "
        "blend_parts: (model, direct forms' log error, 1-thread forms x scaling's) where they are blended"
    )
    widest = cost_model.widest_single_form_q()
    parts = {
        cost_model.procedure_key(board, threads, every(board)): [
            list(p) for p in cost_model.blend_parts(board, threads, every(board))
        ]
        for board in calibration.DEVICES
        for threads in calibration.THREADS
        if threads > 1
    }
    data = {"note": note, "errors": errors, "widest_single_form_q": widest, "blend_parts": parts}
    cost_model.PROCEDURE_FILE.write_text(json.dumps(data, indent=1) + "\n")
    cost_model.procedure_cv.cache_clear()
    cost_model.stored_procedure_errors.cache_clear()
    cost_model.stored_widest_single_form_q.cache_clear()
    return errors


def print_shipped(rows: list[dict]) -> None:
    """Markdown: the shipped procedure per board x threads, cross-validated with the weighting inside (what the
    stated intervals come from), beside the best single form picked on all 17 (optimistic: the pick saw every
    held-out model) and the single-ratio baseline (the README's table)."""
    by = {(r["candidate"], r["board"], r["threads"]): r for r in rows}
    print(
        "\n| board, threads | heaviest forms (weight) | procedure: median | p90 | max | interval (80 %) | held | "
        "best single form picked on all 17: median / p90 | single ratio: median / p90 / max / held |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for board in calibration.DEVICES:
        for threads in calibration.THREADS:
            weights = cost_model.ensemble(board, threads, every(board)).weights
            heavy = ", ".join(f"{n} {w:.2f}" for n, w in list(weights.items())[:2])
            p = cost_model.procedure_cv(board, threads, every(board))
            best = min(weights, key=lambda n: (by[(n, board, threads)]["p90"], n))
            r, b = by[(best, board, threads)], by[("ratio", board, threads)]
            print(
                f"| {board}, {threads} | {heavy} | {100 * p['median']:.1f} % | {100 * p['p90']:.1f} % | "
                f"{100 * p['max']:.1f} % | {p['interval']} | {p['held']}/{p['n']} | {best} {100 * r['median']:.1f} / "
                f"{100 * r['p90']:.1f} % | {100 * b['median']:.1f} / {100 * b['p90']:.1f} / {100 * b['max']:.1f} % / "
                f"{b['covered']}/{b['n']} |"
            )


def print_blend() -> None:
    """At 4 threads with the thread split and the simulated misses, the estimate blends two parts: each part's
    own held-out errors beside the blend's (the shipped one)."""
    stored = json.loads(cost_model.PROCEDURE_FILE.read_text()).get("blend_parts", {})
    if not stored:
        return
    print(
        "\n4 threads, every count: the direct 4-thread forms, the 1-thread forms x the scaling form t(4)/t(1), and "
        "their geometric mean (shipped) (held-out: median / p90 / max / interval / held)"
    )
    print("| board, threads | direct | 1 thread x scaling | blend (shipped) | scaling form |")
    print("|---|---|---|---|---|")
    for key, rows in stored.items():
        board, threads = key.split("/")[:2]
        direct = [(m, "", d) for m, d, _ in rows]
        scaled = [(m, "", s) for m, _, s in rows]
        cells = [_cell(cost_model.procedure_summary(errs)) for errs in (direct, scaled)]
        cells.append(_cell(cost_model.procedure_cv(board, int(threads), every(board))))
        form = cost_model.model_for(board, int(threads), every(board))
        name = form.scaling.form.name if isinstance(form, cost_model.Blend) else "-"
        print(f"| {board}, {threads} | {' | '.join(cells)} | {name} |")


def _cell(p: dict) -> str:
    return f"{100 * p['median']:.1f} / {100 * p['p90']:.1f} / {100 * p['max']:.1f} % / {p['interval']} / {p['held']}/{p['n']}"


def print_other_feature_sets() -> None:
    """The procedure with fewer features: a count without simulated caches (deploy's emulated targets), without
    the thread split too (deploy's estimates for more threads than it counted), and an ONNX graph's MACs alone
    (`edgekit roofline`)."""
    print("\nother feature sets (procedure: median / p90 / interval / held)")
    print(
        "| board, threads | every count, no llvm-mca cycles (deploy) | count, no caches | count, no caches, no thread "
        "split | count, no thread split | count without a graph (TFLite), caches | MACs and weights (graph only) |"
    )
    print("|---|---|---|---|---|---|---|")
    for board in calibration.DEVICES:
        for threads in calibration.THREADS:
            cells = []
            no_split = tuple(f for f in EVERY if f != "busiest")
            no_caches_no_split = tuple(f for f in WITHOUT_CACHES if f != "busiest")
            for features in (
                EVERY,
                WITHOUT_CACHES,
                no_caches_no_split,
                no_split,
                COUNT_ONLY,
                ("macs", "params"),
            ):
                p = cost_model.procedure_cv(board, threads, features)
                cells.append(
                    f"{100 * p['median']:.1f} / {100 * p['p90']:.1f} % / {p['interval']} / {p['held']}/{p['n']}"
                )
            print(f"| {board}, {threads} | {' | '.join(cells)} |")


def print_groups() -> None:
    """The procedure's errors on the calibration models with a layer type no other one has, and on the int8
    ones: the two kinds whose estimates state the widened interval (the README's lines on them)."""
    novel = cost_model.novel_layer_models()
    for title, summary, (a, b) in (
        (
            f"models with a layer type none of the other 16 has: {', '.join(novel)}",
            cost_model.novel_layer_summary,
            ("novel", "rest"),
        ),
        (
            "kernel class: the int8 models against the float ones",
            cost_model.kernel_class_summary,
            ("int8", "float"),
        ),
        (
            "the smallest and largest models (held out, predicted beyond the others' range: an estimate outside "
            "the calibration range within that reach states the widened interval)",
            extreme_summary,
            ("extreme", "rest"),
        ),
    ):
        print(f"\n{title}")
        print(
            f"| board, threads | {a}: median / held (widened interval) / held (ordinary interval) | "
            f"{b}: median / held |"
        )
        print("|---|---|---|")
        for board in calibration.DEVICES:
            for threads in calibration.THREADS:
                errors = cost_model.stored_procedure_errors()[
                    cost_model.procedure_key(board, threads, every(board))
                ]
                s = summary(errors, board) if summary is extreme_summary else summary(errors)
                g, r = s[a], s[b]
                print(
                    f"| {board}, {threads} | {100 * g['median']:.1f} % / {g['held']}/{g['n']} / "
                    f"{g['held_plain']}/{g['n']} | {100 * r['median']:.1f} % / {r['held']}/{r['n']} |"
                )


def print_scaling() -> None:
    """Why the 4-thread estimate misses: a two-rate law from the 1-thread time, t4 = t1 (a + b t1 / instructions)
    (code that stalls on memory, many ns per instruction, gains less from more cores), fitted leave-one-out. With
    the published 1-thread time it holds well; with the procedure's held-out 1-thread estimate (stored; the other
    16 models' estimates were made with the held-out one among their training) the 1-thread error is amplified."""
    import numpy as np

    from edgekit.estimate.scaling import held_out_ratios

    print(
        "\n4 threads from the 1-thread time, leave-one-model-out (median / p90 / max |error|): the two-rate law "
        "t4 = t1 (a + b t1 / instructions), and the shipped scaling form t(4)/t(1) from the counts (chosen and "
        "fitted without the held-out model); each from the published 1-thread time (what the 4-thread error would "
        "be with a perfect 1-thread estimate) and from the procedure's held-out 1-thread estimate"
    )
    print(
        "| board | law, published 1-thread time | law, estimated 1-thread time | scaling form, published 1-thread "
        "time | scaling form, estimated 1-thread time |"
    )
    print("|---|---|---|---|---|")
    for board in calibration.DEVICES:
        names = sorted(calibration.models())
        counts = calibration.counts()["counts"]
        insn = {m: counts[m][board]["1"]["instructions"] / 1e6 for m in names}
        t4 = {m: calibration.published_ms(m, board, 4) for m in names}
        published = {m: calibration.published_ms(m, board, 1) for m in names}
        errors = cost_model.stored_procedure_errors()[cost_model.procedure_key(board, 1, every(board))]
        estimated = {m: published[m] * math.exp(e) for m, _, e in errors}
        ratio = held_out_ratios(board, 4, every(board))
        cells = []
        for held in (
            _scaling_held_out(published, insn, t4),
            _scaling_held_out(estimated, insn, t4),
            [abs(published[m] * ratio[m] / t4[m] - 1) for m in ratio],
            [abs(estimated[m] * ratio[m] / t4[m] - 1) for m in ratio],
        ):
            cells.append(
                f"{100 * np.median(held):.1f} / {100 * np.percentile(held, 90):.1f} / {100 * max(held):.1f} %"
            )
        print(f"| {board} | {' | '.join(cells)} |")


def _scaling_held_out(t1: dict[str, float], insn: dict[str, float], t4: dict[str, float]) -> list[float]:
    """|error| of each model's 4-thread time by t4 = t1 (a + b t1 / insn), (a, b) fitted on the other models."""

    from scipy.optimize import least_squares

    def law(p: Any, m: str) -> float:
        return float(t1[m] * (p[0] + p[1] * t1[m] / insn[m]))

    held = []
    for out in t4:
        rest = [m for m in t4 if m != out]

        def residuals(p: Any, rest: list[str] = rest) -> list[float]:
            return [math.log(law(p, m) / t4[m]) for m in rest]

        fit = least_squares(residuals, [0.3, 0.3]).x
        held.append(abs(law(fit, out) / t4[out] - 1))
    return held


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", action="store_true", help="count the calibration models first (slow)")
    parser.add_argument("--force", action="store_true", help="with --count: recount models already counted")
    parser.add_argument("--models", nargs="*", help="with --count: only these models")
    parser.add_argument(
        "--procedure", action="store_true", help="recompute the procedure's errors (data/procedure_cv.json)"
    )
    parser.add_argument("--json", type=Path, help="write the table and every held-out prediction here")
    parser.add_argument(
        "--counts",
        type=Path,
        help="counts file to use instead of the shipped one (its procedure errors beside it)",
    )
    parser.add_argument(
        "--ncnn-site",
        action="append",
        default=[],
        metavar="BOARD=FOLDER",
        help="with --count: count BOARD's models with the ncnn release unpacked in FOLDER (needs --counts)",
    )
    args = parser.parse_args()
    sites = dict(item.split("=", 1) for item in args.ncnn_site)
    if sites and not args.counts:
        parser.error("--ncnn-site needs --counts: the shipped counts are the emulated device's ncnn")
    if unknown := set(sites) - set(calibration.DEVICES):
        parser.error(f"--ncnn-site: unknown board(s) {sorted(unknown)}: {sorted(calibration.DEVICES)}")
    if args.counts:
        _use_counts(args.counts)
    if args.count:
        count_all(args.force, args.models, sites)
        calibration.counts.cache_clear()
    if args.count or args.procedure or not cost_model.PROCEDURE_FILE.exists():
        write_procedure_errors()
    rows, predictions = cost_model.cross_validation_table()
    print(
        "leave-one-model-out cross-validation on the 17 calibration models "
        f"(interval: {cost_model.INTERVAL_LEVEL:.0%} prediction interval from the held-out errors)"
    )
    print_table(rows)
    print(f"\nshipped model: {cost_model.SHIPPED}")
    print_shipped(rows)
    print_blend()
    print_other_feature_sets()
    print_groups()
    print_scaling()
    if args.json:
        args.json.write_text(json.dumps({"table": rows, "predictions": predictions}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
