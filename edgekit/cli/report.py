"""`edgekit report`: an HTML report with plots and a Markdown summary from the results store."""

from __future__ import annotations

from pathlib import Path

import typer

from edgekit.cli.outputs import check_distinct, check_output_file
from edgekit.terminal import Console, plain

console = Console()

STORE_HELP = "results store: a SQLAlchemy URL or a SQLite file (default: $EDGEKIT_STORE, else the data dir)"


def report_cmd(
    since: str = typer.Option("30d", "--since", help="history window: 30d, 12h, 2w, a date, or 'all'"),
    recipe: list[str] | None = typer.Option(None, "--recipe", help="only this recipe (repeatable)"),
    target: list[str] | None = typer.Option(None, "--target", help="only this target (repeatable)"),
    html: Path | None = typer.Option(
        None, "--html", callback=check_output_file, help="write the self-contained HTML report here"
    ),
    markdown: Path | None = typer.Option(
        None, "--markdown", callback=check_output_file, help="write a short Markdown summary here"
    ),
    store: str | None = typer.Option(None, "--store", help=STORE_HELP),
    min_change: float = typer.Option(
        0.05, "--min-change", min=0.0, max=10.0, help="smallest relative slowdown flagged (0.05 = 5 %)"
    ),
    fail_on_regression: bool = typer.Option(
        False,
        "--fail-on-regression",
        help="exit 1 when a regression or a failure is listed, or the window holds no run to judge; default: 0 whatever it lists (`nightly` fails the job)",
    ),
) -> None:
    """Per recipe: the latest table (artifact x target), latency trends, sample distributions, INT8 vs
    fp32, device facts and regression flags, as one HTML file that needs no network to view.
    Without --html/--markdown the Markdown summary is printed.

    Example: edgekit report --since 30d --html report.html --markdown summary.md
    """
    check_distinct({"--html": html, "--markdown": markdown})
    from edgekit.errors import UsageError
    from edgekit.report import parse_since

    since_ts = parse_since(since)  # a bad --since is said before the store and the report code load
    from edgekit.report import Settings, build, write
    from edgekit.report import markdown as md
    from edgekit.report.flags import failures_text
    from edgekit.report.selection import unmatched
    from edgekit.store import open_store
    from edgekit.target import stored_name

    targets = [stored_name(t) for t in target or ()]  # `local` is stored as `host`
    with open_store(store, create=False) as db:
        typo = unmatched(db, recipe or (), targets)  # a CI gate's typo is bad input, not an empty pass
        if typo is not None:
            raise UsageError(typo[0], hint=typo[1])
        report = build(
            db,
            since=since_ts,
            recipes=recipe or (),
            targets=targets,
            settings=Settings(min_change=min_change),
        )
    for path in write(report, html=html, markdown=markdown):
        console.print(f"wrote {plain(path)}", highlight=False)
    if not html and not markdown:
        console.print(md.render(report), highlight=False, markup=False, soft_wrap=True)  # tables whole
    else:
        failed = f", {failures_text(len(report.failures))}" if report.failures else ""
        console.print(
            f"{len(report.recipes)} recipe(s), {len(report.regressions)} regression(s){failed}, "
            f"{len(report.unreliable)} unreliable",
            highlight=False,
        )
    if not fail_on_regression:
        return
    if report.regressions or report.failures:
        raise typer.Exit(1)
    if (
        not report.recipes
    ):  # a gate that judged nothing is no pass: a stalled nightly would stay green for ever
        Console(stderr=True, soft_wrap=True).print(
            f"report: --fail-on-regression judged nothing: no run in the window. {plain(report.empty_hint)}\n"
            "hint: widen --since, or check the job that records runs is still running",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
