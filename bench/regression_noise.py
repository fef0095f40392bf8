"""Regression detection on synthetic nights: false alarms on pure noise, and detection of a slowdown.

For each seed: 30 nights of pure noise, judged night by night (every night's newest run against its recent
history, as `edgekit nightly` does) -> false alarms; then the same 29 nights followed by a night where every
artifact on the real target (pi4) is `--slowdown` slower -> detection rate (per artifact x thread count).
Repeated for several night-to-night drifts, because that drift, not the per-sample noise, is what decides
what can be told apart. Emulated targets are judged on instruction counts (reported separately).

    .venv/bin/python bench/regression_noise.py [--seeds 5] [--nights 30] [--slowdown 1.10]
"""

from __future__ import annotations

import argparse
import time

from edgekit.formats import Format
from edgekit.report.regression import FlagKind, detect_latest
from edgekit.report.synthetic import synthetic_history
from edgekit.store import StoredRun


def _stored(results: list) -> list[StoredRun]:
    return [StoredRun(i + 1, 1.7e9 + i * 86400.0, r) for i, r in enumerate(results)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--slowdown", type=float, default=1.10)
    parser.add_argument("--night-sd", type=float, nargs="+", default=[0.01, 0.02, 0.03])
    args = parser.parse_args()
    keys = [(f.value, "pi4") for f in Format]
    slow_all = dict.fromkeys(keys + [(f.value, "pi5-emu") for f in Format], args.slowdown)
    start = time.perf_counter()
    detected = f"detected {args.slowdown - 1:.0%}"
    head = f"{'night sd':>8} | {'checks':>6} | {'false alarms':>12} | {detected:>14} |"
    print(head + " emulated (counts) detected")
    for night_sd in args.night_sd:
        checks = alarms = hit_wall = total_wall = hit_count = total_count = 0
        for seed in range(args.seeds):
            noise = _stored(synthetic_history(args.nights, seed=seed, night_sd=night_sd))
            for n in range(1, len(noise) + 1):
                checks += 28 * 2 if n > 3 else 0  # artifact x threads x targets with enough history
                alarms += sum(f.is_regression for f in detect_latest(noise[:n]))
            slow = _stored(
                synthetic_history(args.nights, seed=seed, night_sd=night_sd, last_slowdown=slow_all)
            )
            flags = detect_latest(slow)
            hit_wall += sum(f.kind is FlagKind.LATENCY and f.target == "pi4" for f in flags)
            hit_count += sum(f.kind is FlagKind.INSTRUCTIONS and f.target == "pi5-emu" for f in flags)
            total_wall += 14
            total_count += 14
        wall = f"{hit_wall}/{total_wall} {hit_wall / total_wall:.0%}"
        counts = f"{hit_count}/{total_count} {hit_count / total_count:.0%}"
        print(f"{night_sd:>8.0%} | {checks:>6} | {alarms:>12} | {wall:>14} | {counts:>26}")
    print(
        f"({args.seeds} seeds x {args.nights} nights a row; 7 formats x threads 1,4 on pi4 and pi5-emu; "
        f"per-sample noise 3% lognormal + 3% outliers of +20-60%; {time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
