"""`edgekit nightly`: the whole matrix (recipes x targets), recorded, reported, exit 1 on regressions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from edgekit.cli.outputs import check_distinct, check_output_file
from edgekit.cli.report import STORE_HELP
from edgekit.errors import TargetError
from edgekit.terminal import Console, plain

console = Console()


def nightly_cmd(
    recipes: list[Path] = typer.Option(
        [Path("recipes")], "--recipes", help="recipe folder or file (repeatable)"
    ),
    targets: str = typer.Option(..., "--targets", help="comma-separated target names, e.g. pi4,pi5-emu"),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
    html: Path | None = typer.Option(
        None, "--html", callback=check_output_file, help="write the HTML report here"
    ),
    markdown: Path | None = typer.Option(
        None, "--markdown", callback=check_output_file, help="write the Markdown summary here"
    ),
    since: str = typer.Option(
        "30d", "--since", help="history shown in the report: 30d, 2w, a date, or 'all'"
    ),
    min_change: float = typer.Option(
        0.05, "--min-change", min=0.0, max=10.0, help="smallest relative slowdown flagged (0.05 = 5 %)"
    ),
) -> None:
    """Deploy every recipe to every target, record each result in the store, write the report, and exit
    1 when anything regressed (latency beyond noise, instruction counts, fidelity gate, new failure) or
    a deploy failed. Throttled runs are reported as unreliable without failing the night.

    Example: edgekit nightly --recipes recipes/ --targets pi4,pi5-emu --html out/nightly.html

    A shared lab (docs/lab.md): edgekit nightly --recipes recipes/ --targets lab:board=pi4 --store URL spreads
    the recipes over every free board tagged board=pi4.
    """
    check_distinct({"--html": html, "--markdown": markdown})  # before the first deploy, not after the night
    from edgekit.nightly import run_nightly
    from edgekit.nightly_outcome import verdict
    from edgekit.report import Settings, parse_since
    from edgekit.report import markdown as md

    names = [t.strip() for t in targets.split(",") if t.strip()]
    if not names:
        raise typer.BadParameter("name at least one target, e.g. --targets pi4-emu", param_hint="--targets")
    from edgekit.deploy.plan import check_target_key
    from edgekit.emu.device import check_emulated_cpu
    from edgekit.nightly import recipe_files
    from edgekit.target import load_target

    recipe_files(recipes)  # the recipes first, as given: a wrong --recipes is said before the targets
    if "host" in names:  # deploy's own hint names deploy's --no-host, which the nightly does not have
        raise TargetError(
            "unknown target 'host': every deploy of the nightly measures the host (its 'host' column in the "
            "report) beside the targets named",
            where="--targets",
            hint="drop host from --targets (it is always measured); `local` names this machine as a target of "
            "its own (measured once, as the host column)",
        )
    for name in names:  # a typo or a missing key file: refused at once (exit 2), not once per recipe
        check_target_key(loaded := load_target(name))
        check_emulated_cpu(loaded)  # a lab's places are looked for by the night itself (one may free up)
    outcome = run_nightly(
        recipes,
        names,
        store_url=store,
        html=html,
        markdown=markdown,
        since=parse_since(since),
        settings=Settings(min_change=min_change),
        log=lambda msg: console.print(f"[dim]{plain(msg)}[/]", highlight=False),
    )
    for path in outcome.written:
        console.print(f"wrote {plain(path)}", highlight=False)
    for what, why in failure_lines(outcome):
        console.print(f"[red]{what}[/] {plain(why)}", highlight=False)
    for target, why in outcome.never_measured.items():
        console.print(
            f"[red]never measured[/] {plain(target)}: no measurement in the store yet"
            + (f"; tonight: {plain(why)}" if why else ""),
            highlight=False,
        )
    if outcome.report is not None and not markdown:
        console.print(md.render(outcome.report), highlight=False, markup=False, soft_wrap=True)
    for line in accept_lines(outcome):
        console.print(line, highlight=False, markup=False)
    # last, so a cron log's tail says why the night failed (or that it passed)
    console.print(
        verdict(outcome),
        style="red" if outcome.exit_code else "green",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    raise typer.Exit(outcome.exit_code)


def failure_lines(outcome: Any) -> list[tuple[str, str]]:
    """What failed tonight, each as (what, the recipe and why): a deploy ('deploy failed', 'tiny.yaml: ...'), and
    the report when the store could not be read for it ('report not built', its reason), which is no deploy (it
    was printed as 'deploy failed report: ...')."""
    lines = [
        ("deploy failed", f"{recipe}: {why}")
        for recipe, why in outcome.failures.items()
        if recipe != "report"
    ]
    if "report" in outcome.failures:
        lines.append(("report not built:", outcome.failures["report"]))
    return lines


def accept_lines(outcome: Any) -> list[str]:
    """For each run and target that regressed tonight, the command that makes its level the new one when it is
    expected (a firmware update): without it the flag holds for the six weeks of the lookback. It names the store
    the night was judged in, as the report does, wherever that came from (--store, EDGEKIT_STORE, the default):
    with the store from EDGEKIT_STORE (the systemd unit's, CI's) the printed command named none, and pasted in a
    shell without that variable it accepted a run of the default store."""
    if outcome.report is None:
        return []
    from edgekit.report.flag_text import accept_commands

    return [
        f"if this level is expected: {c}"
        for c in accept_commands(outcome.report.regressions, outcome.report.store_url)
    ]


def register(app: typer.Typer) -> None:
    app.command("nightly")(nightly_cmd)
