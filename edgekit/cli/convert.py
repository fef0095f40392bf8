"""`edgekit convert RECIPE`: every format of a recipe, converted (or taken from the cache) and checked.

Prints progress while it works, then one row per artifact: size (MB = 10^6 bytes), conversion time, peak memory (MiB),
cached or not, max abs error, cosine (mean over the inputs and the worst input), the task metric where the
evaluation data has labels (top-1, mAP) and agreement with the ONNX model (named as such), and whether it passed
its fidelity gate on how many inputs. Every format is converted and checked even when another one fails; the
exit is non-zero when an artifact failed (conversion or gate) unless --keep-going. `make quantize` runs it with
--int8-only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table

from edgekit.cli.formats import FORMATS_OPTION
from edgekit.cli.outputs import check_output_file
from edgekit.errors import EdgekitError, UsageError
from edgekit.formats import Format, Precision
from edgekit.paths import write_atomic
from edgekit.progress import quiet_runtime_logs
from edgekit.report.figures import MB, agreement, cosine_text, task_metric
from edgekit.terminal import Console, plain

console = Console()
if not console.is_terminal:  # logs and CI (where COLUMNS=80 is common): every cell whole, on one line
    console.width = max(console.width, 200)  # (at 130, 'openvino-fp…' and '0.07…' MB were cut)


def convert_cmd(
    recipe: Path = typer.Argument(..., help="recipe YAML, e.g. recipes/yolov5-lite.yaml"),
    fmt: list[Format] | None = FORMATS_OPTION,
    int8_only: bool = typer.Option(
        False, "--int8-only", help="only the recipe's INT8 formats (make quantize)"
    ),
    keep_going: bool = typer.Option(
        False,
        "--keep-going",
        help="exit 0 even if an artifact fails (every format is converted and checked either way)",
    ),
    json_path: Path | None = typer.Option(
        None, "--json", callback=check_output_file, help="also write the results as JSON here"
    ),
) -> None:
    """Convert a recipe's model to its formats, check each against the original, print a table.

    A second run of an unchanged recipe takes everything from the cache and says so.

    Example: edgekit convert recipes/yolov5-lite.yaml --format tflite-int8 --format ncnn-int8
    """
    from edgekit.recipe import load_recipe

    # reading a recipe imports the builders it names (a PyTorch one imports torch, torchvision: seconds, tens of
    # them on a loaded machine), before anything else is said: said first, not a silent wait
    console.print(
        f"[dim]recipe: reading {plain(recipe.name)} (and importing any builder it names)[/]", highlight=False
    )
    loaded = load_recipe(recipe)
    formats = list(fmt) if fmt else list(loaded.formats)
    if int8_only:
        chosen, formats = formats, [f for f in formats if f.precision is Precision.INT8]
        if not formats and fmt:  # it said 'no INT8 format in this recipe' of a recipe holding two
            theirs = [f.value for f in loaded.formats if f.precision is Precision.INT8]
            raise UsageError(
                f"none of the formats chosen with --format ({', '.join(f.value for f in chosen)}) is INT8",
                where="--int8-only",
                hint="leave out --int8-only, or choose an INT8 format"
                + (f" (this recipe's: {', '.join(theirs)})" if theirs else ""),
            )
        if not formats:
            console.print(f"{loaded.name}: no INT8 format in this recipe, nothing to do")
            return
    from edgekit.convert.pipeline import convert_recipe  # after the recipe: a bad one is said without it

    start = time.perf_counter()
    artifacts: list[Any] = []
    try:
        # runtime INFO lines (TF Lite's "INFO: Created TensorFlow Lite XNNPACK delegate") kept out, as in deploy
        with quiet_runtime_logs(), console.status(f"{loaded.name}: starting") as status:

            def progress(message: str) -> None:
                status.update(f"{loaded.name}: {plain(message)}")
                console.print(f"[dim]{plain(message)}[/]", highlight=False)

            artifacts = convert_recipe(loaded, formats, keep_going=keep_going, progress=progress)
    except EdgekitError as exc:
        artifacts = getattr(exc, "artifacts", [])
        _report(loaded.name, artifacts, time.perf_counter() - start, json_path, raised=exc.message)
        raise
    _report(loaded.name, artifacts, time.perf_counter() - start, json_path)


def artifact_table(title: str, artifacts: list[Any]) -> Table:
    """One row per artifact (shared with `edgekit deploy`)."""
    table = Table(title=title, box=box.SIMPLE_HEAD)
    for col in (
        "format",
        "MB",
        "convert",
        "peak mem\nMiB",
        "cached",
        "max abs err",
        "cosine\nmean / worst",
        "accuracy\n(labels)",
        "agreement\nwith ONNX",
        "gate\n(inputs)",
    ):
        table.add_column(
            col, justify="left" if col in ("format", "gate\n(inputs)") else "right", no_wrap=True
        )
    for a in artifacts:
        fid = a.fidelity or {}
        cosine = (
            "-"
            if fid.get("cosine") is None
            else f"{_cosine(fid.get('cosine'), 6)} / {_cosine(fid.get('cosine_worst'), 5)}"
        )
        metric, agree = task_metric(fid), agreement(fid)
        table.add_row(
            a.format.value,
            f"{a.size_bytes / MB:.3g}" if a.size_bytes else "-",
            f"{a.convert_s:.1f} s" + (" *" if a.provenance.get("shared_run") else "") if a.convert_s else "-",
            peak_mem(a),
            "yes" if a.cached else "no",
            _num(fid.get("max_abs_error")),
            cosine,
            metric.removeprefix("top-1 ") if metric else "-",
            agree.removeprefix("agree ") if agree else "-",
            _gate(a),
        )
    labelled = any(task_metric(a.fidelity or {}) for a in artifacts)
    checked = any(a.fidelity for a in artifacts)  # none: nothing was compared, so nothing to say of labels
    table.caption = (
        (
            "MB = 10^6 bytes; accuracy = top-1 / mAP against the labels (ONNX model's in brackets)"
            if labelled
            else "MB = 10^6 bytes; accuracy: the evaluation data has no labels, so only "
            "agreement with the ONNX model is shown"
            if checked
            else "MB = 10^6 bytes"
        )
        + _peak_mem_note(artifacts)
        + _skipped_gates(artifacts)
    )
    return table


def peak_mem(a: Any) -> str:
    """The conversion's peak memory in MiB (2^20 bytes, as VmHWM and psutil count it): '-' when not measured (an
    artifact from a cache entry that has none), '~0' when the conversion ran in edgekit's own process and grew it
    by less than 1 MiB (copying an ONNX file: nothing beyond edgekit itself), never '0 MB' beside '-'."""
    if a.peak_rss_mb is None or (a.status != "ok" and not a.peak_rss_mb):
        return "-"
    return "~0" if a.peak_rss_mb < 1 else f"{a.peak_rss_mb:.0f}"


def _peak_mem_note(artifacts: list[Any]) -> str:
    """What `peak mem` is, said under the table where the MB footnote would otherwise be read for it too."""
    shown = [peak_mem(a) for a in artifacts]
    if all(p == "-" for p in shown):
        return ""
    return (
        "\npeak mem = MiB (2^20 bytes): the conversion tool's peak resident memory, or for a conversion inside "
        "edgekit's process its growth plus its child processes' (sampled)"
        + ("; ~0 = under 1 MiB beyond edgekit's own" if "~0" in shown else "")
        + ("; - = not measured" if "-" in shown else "")
    )


def _skipped_gates(artifacts: list[Any]) -> str:
    """The recipe's gates that could not be judged (a top-1 or mAP drop without labels): said under the table, not
    only in --json, so a gate the user relies on is never taken for met (`*` in the gate column)."""
    skipped = {
        gate: sorted({a.format.value for a in artifacts if gate in _gates_of(a).get("skipped", [])})
        for a in artifacts
        for gate in _gates_of(a).get("skipped", [])
    }
    return "".join(f"\n* gate NOT checked: {gate} for {', '.join(fmts)}" for gate, fmts in skipped.items())


def _gates_of(a: Any) -> dict[str, Any]:
    return dict((a.fidelity or {}).get("gates") or {})


def artifact_record(a: Any) -> dict[str, Any]:
    """An artifact as plain JSON."""
    return {
        "format": a.format.value,
        "status": a.status,
        "error": a.error,
        "files": [str(f) for f in a.files],
        "key": a.key,
        "size_bytes": a.size_bytes,
        "convert_s": a.convert_s,
        "peak_rss_mb": a.peak_rss_mb,
        "cached": a.cached,
        "fidelity": a.fidelity,
        "provenance": a.provenance,
    }


def _report(
    name: str, artifacts: list[Any], seconds: float, json_path: Path | None, raised: str | None = None
) -> None:
    """The table, the totals, each artifact's findings and each failure once; `raised`: the message of the error
    the command ends with (printed after this, with its hint): not printed here a second time."""
    if not artifacts:
        return
    console.print(artifact_table(f"{name}: {len(artifacts)} artifacts", artifacts))
    converted = sum(1 for a in artifacts if not a.cached and a.status == "ok")
    cached = sum(1 for a in artifacts if a.cached)
    note = (
        " (* one tool run made several formats; its time is shown for each)"
        if any(a.provenance.get("shared_run") for a in artifacts)
        else ""
    )
    nothing = " - no conversion work" if cached == len(artifacts) else ""
    failed = sum(1 for a in artifacts if a.status != "ok")
    failed_text = f"; {failed} failed (conversion or gate)" if failed else ""
    console.print(
        f"{converted} converted, {cached} from the cache{nothing}{failed_text}; total {seconds:.1f} s{note}",
        highlight=False,
    )
    made = [a for a in artifacts if a.files]  # a gate's failure leaves its file, to look into
    if made:  # what `edgekit estimate / bench / profile FILE` take; --json lists every file
        console.print("[dim]files (for edgekit estimate, bench, profile):[/]", highlight=False)
        width = max(len(a.format.value) for a in made)
        for a in made:
            console.print(f"[dim]- {a.format.value:<{width}}  {plain(str(a.main_file))}[/]", highlight=False)
    for a in artifacts:
        for finding in a.provenance.get("findings", []):
            # a converter's text may name its format itself: said once ("onnx-int8: onnx-int8: ..." before)
            said = finding.removeprefix(f"{a.format.value}: ")
            console.print(f"[yellow]{a.format.value}[/]: {plain(said)}", highlight=False)
    for error, names in failure_groups(
        artifacts
    ).items():  # one converter error, printed once for its formats
        if raised and (
            raised in error or error.split("\n  hint: ", 1)[0] in raised
        ):  # the error below says it
            continue
        console.print(f"[red]{', '.join(names)}[/]: {plain(error)}", highlight=False)
    if json_path:
        write_atomic(
            json_path,
            json.dumps(
                {"recipe": name, "seconds": seconds, "artifacts": [artifact_record(a) for a in artifacts]},
                indent=1,
            ),
        )


def failure_groups(artifacts: list[Any]) -> dict[str, list[str]]:
    """Failed artifacts grouped by their error: one tool run's error is shown once, naming every format."""
    groups: dict[str, list[str]] = {}
    for a in artifacts:
        if a.status != "ok":
            groups.setdefault(a.error or "failed", []).append(a.format.value)
    return groups


def _num(value: float | None, digits: int = 2) -> str:
    """Errors in 2 significant digits (3.1e-05, 0.24)."""
    return "-" if value is None else f"{value:.{digits}g}"


def _cosine(value: float | None, places: int) -> str:
    """A cosine with `places` decimals, never printed as 1 below 1 (figures.cosine_text)."""
    return "-" if value is None else cosine_text(value, places)


def _gate(a: Any) -> str:
    gates = _gates_of(a)
    on = f" ({gates['samples']})" if gates.get("samples") else ""
    mark = "[yellow] *[/]" if gates.get("skipped") else ""  # some gate could not be judged: under the table
    if a.status != "ok":
        return f"[red]FAIL[/]{on}{mark}"
    if not a.fidelity:  # the run stopped before its checks (a full disk, Ctrl-C)
        return "[yellow]not checked[/]"
    if not gates.get("checks"):
        return "[yellow]not checked[/] *" if gates.get("skipped") else "pass (no gate)"
    return f"[green]pass[/]{on}{mark}"


def register(app: typer.Typer) -> None:
    app.command("convert")(convert_cmd)
