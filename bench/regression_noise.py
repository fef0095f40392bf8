"""Regression detection on synthetic nights: false alarms on pure noise, and detection of a slowdown.

For each seed: 30 nights of pure noise, judged night by night (every night's newest run against its recent
history, as `edgekit nightly` does) -> false alarms, counted per key and as nights with any (the synthetic
night-to-night drift is one factor shared by every key of a night, so the per-key checks of one night are not
independent: the nights are the independent trials, and the prediction bound's 0.1 % a key, twice that with
the creep test, is the design rate); then the same 29 nights followed by a night where every
artifact on the real target (pi4) is `--slowdown` slower -> detection rate (per artifact x thread count).
Repeated for several night-to-night drifts, because that drift, not the per-sample noise, is what decides
what can be told apart. Emulated targets are judged on instruction counts (reported separately). Then a slowdown
that stays (`--held` nights of it): of the keys flagged on its first night, how many are still flagged on each
later night (a flagged night stays out of the baseline of the nights after it; before that change a +30 % step
was flagged on its first night only).

    .venv/bin/python bench/regression_noise.py [--seeds 5] [--nights 30] [--slowdown 1.10] [--held 5]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from edgekit.formats import Format
from edgekit.report.regression import FlagKind, detect_latest
from edgekit.report.synthetic import synthetic_history, synthetic_result
from edgekit.store import StoredRun


def _stored(results: list) -> list[StoredRun]:
    return [StoredRun(i + 1, 1.7e9 + i * 86400.0, r) for i, r in enumerate(results)]


def _step(nights: int, held: int, seed: int, night_sd: float, slow: dict) -> list[StoredRun]:
    """`nights` nights of noise whose last `held` are `slow`."""
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    return _stored(
        [
            synthetic_result(
                start + timedelta(days=n),
                rng=rng,
                night_sd=night_sd,
                slowdown=slow if n >= nights - held else None,
            )
            for n in range(nights)
        ]
    )


def _pi4_latency(flags: list) -> set[tuple]:
    return {(f.artifact, f.threads) for f in flags if f.kind is FlagKind.LATENCY and f.target == "pi4"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--slowdown", type=float, default=1.10)
    parser.add_argument("--night-sd", type=float, nargs="+", default=[0.01, 0.02, 0.03])
    parser.add_argument("--held", type=int, default=5, help="nights the slowdown stays, for the held column")
    args = parser.parse_args()
    keys = [(f.value, "pi4") for f in Format]
    slow_all = dict.fromkeys(keys + [(f.value, "pi5-emu") for f in Format], args.slowdown)
    start = time.perf_counter()
    detected = f"detected {args.slowdown - 1:.0%}"
    head = (
        f"{'night sd':>8} | {'checks':>6} | {'false alarms':>12} | {'nights with one':>15} | {detected:>14} |"
    )
    print(head + " emulated (counts) detected | held: still flagged")
    for night_sd in args.night_sd:
        checks = alarms = nights = bad_nights = hit_wall = total_wall = hit_count = total_count = kept = (
            first
        ) = 0
        for seed in range(args.seeds):
            noise = _stored(synthetic_history(args.nights, seed=seed, night_sd=night_sd))
            for n in range(1, len(noise) + 1):
                checks += 28 * 2 if n > 3 else 0  # artifact x threads x targets with enough history
                found = sum(f.is_regression for f in detect_latest(noise[:n]))
                alarms += found
                nights += n > 3
                bad_nights += found > 0
            slow = _stored(
                synthetic_history(args.nights, seed=seed, night_sd=night_sd, last_slowdown=slow_all)
            )
            flags = detect_latest(slow)
            hit_wall += sum(f.kind is FlagKind.LATENCY and f.target == "pi4" for f in flags)
            hit_count += sum(f.kind is FlagKind.INSTRUCTIONS and f.target == "pi5-emu" for f in flags)
            total_wall += 14
            total_count += 14
            step = _step(args.nights, args.held, seed, night_sd, slow_all)
            flagged = [
                _pi4_latency(detect_latest(step[:n])) for n in range(len(step) - args.held + 1, len(step) + 1)
            ]
            first += len(flagged[0]) * (args.held - 1)
            kept += sum(len(flagged[0] & later) for later in flagged[1:])
        wall = f"{hit_wall}/{total_wall} {hit_wall / total_wall:.0%}"
        counts = f"{hit_count}/{total_count} {hit_count / total_count:.0%}"
        held = f"{kept}/{first} {kept / first:.0%}" if first else "-"
        per_night = f"{bad_nights}/{nights}"
        print(
            f"{night_sd:>8.0%} | {checks:>6} | {alarms:>12} | {per_night:>15} | {wall:>14} | {counts:>26} | "
            f"{held:>19}"
        )
    print(
        f"({args.seeds} seeds x {args.nights} nights a row; 7 formats x threads 1,4 on pi4 and pi5-emu; "
        f"per-sample noise 3% lognormal + 3% outliers of +20-60%; {time.perf_counter() - start:.0f} s)"
    )


if __name__ == "__main__":
    main()
