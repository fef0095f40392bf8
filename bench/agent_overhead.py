"""The timing agent's own cost per sample (the timer and loop around a no-op, same `number`) against each
artifact's p50, per target: the harness must cost well under 1% of the fastest artifact's sample.

    .venv/bin/python bench/agent_overhead.py deploy.json            # figures from an `edgekit deploy --json`
    .venv/bin/python bench/agent_overhead.py recipes/tiny.yaml [--target pi4-emu] [--repeat 20]

With a recipe it runs a deploy (host, plus the targets named) and reads the figures from it. Overhead % =
overhead_ms_per_sample / (p50_ms * number): the share of one timed window spent outside the model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from edgekit.results import DeployResult


def load(source: Path, targets: list[str], repeat: int | None) -> DeployResult:
    if source.suffix == ".json":
        return DeployResult.model_validate_json(source.read_text())
    from edgekit.deploy import DeployOptions, deploy
    from edgekit.recipe import load_recipe

    return deploy(load_recipe(source), targets, DeployOptions(repeat=repeat), print)


def overhead_table(result: DeployResult) -> tuple[Table, list[str]]:
    table = Table(title=f"{result.recipe}: agent overhead per sample", header_style="bold")
    for col in ("target", "artifact", "thr", "number", "p50 ms", "overhead us/sample", "overhead %"):
        table.add_column(col, justify="left" if col in ("target", "artifact") else "right")
    summary = []
    for run in result.runs:
        rows = [
            m
            for m in (run.agent.measurements if run.agent else [])
            if m.status == "ok" and m.p50_ms and m.overhead_ms_per_sample is not None
        ]
        for m in rows:
            share = 100.0 * m.overhead_ms_per_sample / (m.p50_ms * m.number)  # type: ignore[operator]
            table.add_row(
                run.target,
                m.artifact,
                str(m.threads),
                str(m.number),
                f"{m.p50_ms:.4g}" + (" emulated" if run.emulated else ""),
                f"{m.overhead_ms_per_sample * 1000:.2f}",
                f"{share:.4f}",
            )  # type: ignore[operator]
        if rows:
            fastest = min(rows, key=lambda m: m.p50_ms * m.number)  # type: ignore[operator]
            worst = max(m.overhead_ms_per_sample for m in rows)  # type: ignore[type-var]
            share = 100.0 * worst / (fastest.p50_ms * fastest.number)  # type: ignore[operator]
            summary.append(
                f"{run.target}: worst overhead {worst * 1000:.2f} us/sample vs fastest sample "
                f"{fastest.artifact} t{fastest.threads} {fastest.p50_ms * fastest.number:.4g} ms "  # type: ignore[operator]
                f"-> {share:.4f} % ({'under' if share < 1 else 'OVER'} the 1 % target)"
                + (" (emulated)" if run.emulated else "")
            )
    return table, summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("source", type=Path, help="a deploy --json file, or a recipe to deploy")
    parser.add_argument("--target", action="append", default=[], help="target to deploy to (with a recipe)")
    parser.add_argument("--repeat", type=int, default=None)
    args = parser.parse_args()
    table, summary = overhead_table(load(args.source, args.target, args.repeat))
    console = Console(width=160)
    console.print(table)
    for line in summary:
        console.print(line, highlight=False)


if __name__ == "__main__":
    main()
