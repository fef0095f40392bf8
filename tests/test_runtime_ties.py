"""A measured tie in the runtimes table and the `runtimes:` verdict: the host's route said 'mnn-fp32 and onnx-fp32
are not told apart by these samples (Mann-Whitney p=0.55): either will do' while the table ranked them '1.' and
'2.' and the verdict called mnn the host's fastest. Both now show the route's tie as they show an estimate's.
(Synthetic results: the route and the table read the same candidates from them, as from a real deploy.)"""

from __future__ import annotations

import statistics

from rich.console import Console

from edgekit.results import (
    AgentResult,
    ArtifactInfo,
    Comparison,
    DeployResult,
    DeviceFacts,
    Measurement,
    TargetRun,
)

# ten samples each, interleaved: mnn-fp32's p50 a hair under onnx-fp32's, the rank test tells them nowhere apart
MNN = [1.00, 1.20, 1.10, 1.30, 0.90, 1.05, 1.15, 1.25, 0.95, 1.08]
ONNX = [1.02, 1.18, 1.12, 1.28, 0.92, 1.07, 1.13, 1.22, 0.97, 1.12]
SLOW = [2.0 + k / 100 for k in range(10)]  # opencv-fp32: well apart from both


def _run(target: str, samples: dict[str, list[float]]) -> TargetRun:
    ms = [
        Measurement(
            artifact=a,
            format=a,
            runtime="x",
            threads=1,
            status="ok",
            samples_ms=s,
            p50_ms=statistics.median(s),
        )
        for a, s in samples.items()
    ]
    comps = [
        Comparison(
            artifact=a,
            target=target,
            reference="onnx",
            max_abs_error=0.0,
            mean_abs_error=0.0,
            cosine=1.0,
            gates_passed=True,
        )
        for a in samples
    ]
    facts = DeviceFacts(machine="aarch64" if target != "host" else "x86_64", cores=4, python="3.11")
    return TargetRun(
        target=target,
        kind="local" if target == "host" else "ssh",
        emulated=False,
        status="ok",
        comparisons=comps,
        agent=AgentResult(started_at="2026-12-01T00:00:00", facts_before=facts, measurements=ms),
    )


def _result(*runs: TargetRun) -> DeployResult:
    arts = sorted({m.artifact for r in runs for m in (r.agent.measurements if r.agent else [])})
    return DeployResult(
        recipe="r",
        recipe_path="r.yaml",
        recipe_sha256="0",
        started_at="2026-12-01T00:00:00",
        artifacts=[
            ArtifactInfo(id=a, format=a, files=[], size_bytes=1, sha256="0", status="ok", gates_passed=True)
            for a in arts
        ],
        runs=list(runs),
    )


def _cells(result: DeployResult) -> dict[str, list[str]]:
    """The runtimes table as printed: runtime -> its cells, one per target."""
    from edgekit.runtimes.ranking_table import runtime_table

    table = runtime_table(result)
    assert table is not None
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    rows = [
        [" ".join(c.split()) for c in line.split("│")[1:-1]] for line in console.export_text().splitlines()
    ]
    return {row[0]: row[1:] for row in rows if row}


def test_the_route_s_measured_tie_shows_in_the_table_and_the_verdict() -> None:
    from edgekit.route_deploy import routes_for_deploy
    from edgekit.runtimes.ranking import rank_runtimes
    from edgekit.runtimes.ranking_table import runtime_html, tie_note, verdicts

    host = _run("host", {"mnn-fp32": MNN, "onnx-fp32": ONNX, "opencv-fp32": SLOW})
    pi5 = _run("pi5", {"mnn-fp32": [m * 10 for m in MNN], "onnx-fp32": [o * 10 for o in ONNX]})
    result = _result(host, pi5)
    route = next(r for r in routes_for_deploy(result) if r.target == "host")
    assert (route.artifact, route.tied_with) == ("mnn-fp32", "onnx-fp32")  # what the route says
    cells = _cells(result)
    assert [cells[rt][0] for rt in ("mnn", "onnxruntime", "opencv")] == [
        "=1. mnn-fp32 1.09",
        "=1. onnx-fp32 1.12",
        "3. opencv-fp32 2.04",
    ], cells
    assert cells["mnn"][1].startswith("=1.") and cells["onnxruntime"][1].startswith("=1."), cells
    note = tie_note(result) or ""
    assert "=N on host: its timed samples do not tell these apart (Mann-Whitney p=" in note, note
    assert "board estimates" not in note  # no estimate basis here
    (line,) = verdicts(rank_runtimes(result))
    assert line.startswith(
        "host's fastest runtime mnn (mnn-fp32), which the host's samples do not tell apart from onnxruntime "
        "(onnx-fp32) (Mann-Whitney p="
    ), line
    # on the board the samples do not tell them apart either: 'stays fastest' is said with it
    assert (
        "on pi5: stays fastest, though the samples do not tell it apart from onnxruntime (onnx-fp32)" in line
    )
    html = runtime_html(result)
    assert "=1. onnx-fp32" in html and "its timed samples do not tell these apart" in html


def test_samples_that_tell_the_runtimes_apart_rank_them() -> None:
    from edgekit.runtimes.ranking import rank_runtimes
    from edgekit.runtimes.ranking_table import tie_note, verdicts

    faster = [m * 0.5 for m in MNN]  # every sample under every onnx-fp32 one
    host = _run("host", {"mnn-fp32": faster, "onnx-fp32": ONNX, "opencv-fp32": SLOW})
    pi5 = _run("pi5", {"mnn-fp32": [m * 10 for m in faster], "onnx-fp32": [o * 10 for o in ONNX]})
    result = _result(host, pi5)
    cells = _cells(result)
    assert [cells[rt][0] for rt in ("mnn", "onnxruntime")] == ["1. mnn-fp32 0.545", "2. onnx-fp32 1.12"], (
        cells
    )
    assert tie_note(result) is None
    (line,) = verdicts(rank_runtimes(result))
    assert "samples" not in line and line.endswith("on pi5: stays fastest"), line


def test_a_tie_of_two_formats_of_one_runtime_ranks_no_runtime_apart() -> None:
    """The route's tie of onnx-int8 with onnx-fp32 says nothing of onnx against mnn: no '=' there."""
    from edgekit.runtimes.ranking import rank_runtimes

    host = _run(
        "host", {"onnx-int8": [m * 0.5 for m in MNN], "onnx-fp32": [o * 0.5 for o in ONNX], "mnn-fp32": SLOW}
    )
    (ranking,) = rank_runtimes(_result(host))
    assert ranking.sample_ties == []
    cells = _cells(_result(host))
    assert cells == {"onnxruntime": ["1. onnx-int8 0.545"], "mnn": ["2. mnn-fp32 2.04"]}, cells


def test_a_same_runtime_runner_up_does_not_hide_the_next_runtime_s_tie() -> None:
    """Review r10: the route's runner-up was onnx-fp32 (onnx-int8's own runtime), so mnn-fp32, whose samples the
    rank test does not tell from onnx-int8's (p=0.45), was ranked '2.' on the host while pi5, with the same samples
    x10 and no onnx-fp32, showed '=1.'. The two fastest runtimes' samples are now tested themselves."""
    from edgekit.route_deploy import routes_for_deploy
    from edgekit.runtimes.ranking import rank_runtimes
    from edgekit.runtimes.ranking_table import tie_note, verdicts

    onnx_int8 = [m - 0.001 for m in MNN]  # a hair under mnn-fp32 (ONNX's samples), onnx-fp32 the same spread
    host = _run("host", {"onnx-int8": onnx_int8, "mnn-fp32": ONNX, "onnx-fp32": MNN})
    pi5 = _run("pi5", {"onnx-int8": [x * 10 for x in onnx_int8], "mnn-fp32": [o * 10 for o in ONNX]})
    result = _result(host, pi5)
    route = next(r for r in routes_for_deploy(result) if r.target == "host")
    assert (route.artifact, route.tied_with) == ("onnx-int8", "onnx-fp32")  # the route's tie: one runtime
    cells = _cells(result)
    assert cells == {
        "onnxruntime": ["=1. onnx-int8 1.09", "=1. onnx-int8 10.9"],
        "mnn": ["=1. mnn-fp32 1.12", "=1. mnn-fp32 11.2"],
    }, cells
    host_ranking = rank_runtimes(result)[0]
    assert [t[:2] for t in host_ranking.sample_ties] == [("onnx-int8", "mnn-fp32")]
    # the route tests every candidate against its choice, mnn-fp32 too (only its runner-up before 2026-12-07,
    # when this pair was 'a tie by the route's rank test' and mnn-fp32 'slower' in the route)
    assert route.rejected["mnn-fp32"].startswith("not told apart by these samples"), route.rejected
    note = tie_note(result) or ""
    assert (
        "=N on host: its timed samples do not tell these apart (Mann-Whitney p=0.45: a tie, as its route says)"
        in note
    )
    assert (
        "=N on pi5: its timed samples do not tell these apart (Mann-Whitney p=0.45: a tie, as its route says)"
        in note
    )
    (line,) = verdicts(rank_runtimes(result))
    assert line.startswith(
        "host's fastest runtime onnxruntime (onnx-int8), which the host's samples do not tell apart from mnn "
        "(mnn-fp32) (Mann-Whitney p=0.45: a tie, as its route says),"
    ), line


def test_three_runtimes_the_samples_do_not_tell_apart_are_all_tied_and_each_pair_is_said() -> None:
    """Only the two fastest runtimes' samples were tested: a third as close to the second was ranked '3.' below
    two '=1.'. Each pair of neighbours is tested now, the chain reads '=1.' three times, the note gives each pair's
    test; a pair the route does not call a tie (neither is its choice) is 'a tie by the route's rank test'."""
    from edgekit.runtimes.ranking import rank_runtimes
    from edgekit.runtimes.ranking_table import tie_note

    third = [o + 0.02 for o in ONNX]  # as close to onnx-fp32 as onnx-fp32 is to mnn-fp32
    host = _run("host", {"mnn-fp32": MNN, "onnx-fp32": ONNX, "tflite-fp32": third, "opencv-fp32": SLOW})
    result = _result(host)
    cells = _cells(result)
    assert [cells[rt][0] for rt in ("mnn", "onnxruntime", "tflite", "opencv")] == [
        "=1. mnn-fp32 1.09",
        "=1. onnx-fp32 1.12",
        "=1. tflite-fp32 1.14",
        "4. opencv-fp32 2.04",
    ], cells
    (ranking,) = rank_runtimes(result)
    assert [t[:2] for t in ranking.sample_ties] == [("mnn-fp32", "onnx-fp32"), ("onnx-fp32", "tflite-fp32")]
    note = tie_note(result) or ""
    assert (
        "mnn-fp32 / onnx-fp32: Mann-Whitney p=" in note and "onnx-fp32 / tflite-fp32: Mann-Whitney p=" in note
    )
    assert note.count("as its route says") == 1 and "a tie by the route's rank test" in note, note
    # well apart samples for the third: it is ranked on its own again
    host = _run("host", {"mnn-fp32": MNN, "onnx-fp32": ONNX, "tflite-fp32": [o + 0.5 for o in ONNX]})
    cells = _cells(_result(host))
    assert cells["tflite"] == ["3. tflite-fp32 1.62"] and cells["onnxruntime"] == ["=1. onnx-fp32 1.12"], (
        cells
    )
