"""How repeatable is a host measurement? The same recipe deployed N times to the host CPU only (conversion from
the cache), p50 per artifact and thread count collected across the deploys, and its coefficient of variation
(std / mean over the N p50s). Target: CV under 3 %.

    .venv/bin/python bench/host_stability.py recipes/yolov5-lite.yaml [--runs 5] [--threads 1] [--repeat 20]

The machine is shared: the load average at the start and end of each deploy is printed beside the figures,
because another process's work is the largest source of spread on a 2-core host.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekit.cli.deploy import parse_threads
from edgekit.deploy import DeployOptions, deploy
from edgekit.recipe import load_recipe


def run(
    recipe_path: Path, runs: int, threads: tuple[int, ...] | None, repeat: int | None, warmup: int | None
) -> tuple[dict[tuple[str, int], list[float]], list[str]]:
    recipe = load_recipe(recipe_path)
    p50s: dict[tuple[str, int], list[float]] = {}
    notes = []
    for k in range(runs):
        load_before = os.getloadavg()[0]
        start = time.perf_counter()
        result = deploy(recipe, [], DeployOptions(threads=threads, repeat=repeat, warmup=warmup, samples=1))
        host = result.runs[0]
        for m in host.agent.measurements if host.agent else []:
            if m.status == "ok" and m.p50_ms is not None:
                p50s.setdefault((m.artifact, m.threads), []).append(m.p50_ms)
        notes.append(
            f"deploy {k + 1}: {time.perf_counter() - start:.0f} s, load average "
            f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}, {host.status}"
        )
    return p50s, notes


def table(name: str, p50s: dict[tuple[str, int], list[float]]) -> tuple[Table, list[float]]:
    out = Table(title=f"{name}: host p50 over repeated deploys", header_style="bold")
    for col in ("artifact", "thr", "deploys", "p50 ms each", "mean ms", "CV %"):
        out.add_column(col, justify="left" if col in ("artifact", "p50 ms each") else "right")
    cvs = []
    for (art, threads), values in p50s.items():
        mean = statistics.fmean(values)
        cv = 100.0 * statistics.stdev(values) / mean if len(values) > 1 else 0.0
        cvs.append(cv)
        out.add_row(
            art,
            str(threads),
            str(len(values)),
            " ".join(f"{v:.3g}" for v in values),
            f"{mean:.3g}",
            f"{cv:.2f}",
            style=None if cv < 3 else "red",
        )
    return out, cvs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipe", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", default=None, help="e.g. 1 or 1,2 (default: the recipe's)")
    parser.add_argument("--repeat", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the p50s here")
    args = parser.parse_args()
    p50s, notes = run(args.recipe, args.runs, parse_threads(args.threads), args.repeat, args.warmup)
    out, cvs = table(args.recipe.stem, p50s)
    console = Console(width=160)
    console.print(out)
    for line in notes:
        console.print(line, highlight=False)
    if cvs:
        console.print(
            f"CV of p50 across {args.runs} deploys: median {statistics.median(cvs):.2f} %, max "
            f"{max(cvs):.2f} % ({sum(c < 3 for c in cvs)}/{len(cvs)} under 3 %)",
            highlight=False,
        )
    if args.json:
        args.json.write_text(json.dumps({f"{a}@{t}": v for (a, t), v in p50s.items()}, indent=1))


if __name__ == "__main__":
    main()
