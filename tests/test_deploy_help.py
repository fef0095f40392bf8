"""`edgekit deploy --help` was stale: it said emulated targets report emulated wall times (the table leads with
the board ESTIMATE; wall times only with --verbose or in --json), its "quick emulated run" example passed
pi4-emu's own defaults (targets/pi4-emu.yaml) as if they changed something, and --samples said "default: all
the recipe's" though an emulated target's benchmark_cap sends fewer. Each claim is checked here against the
shipped target file and the table the deploy prints."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from types import SimpleNamespace

from edgekit.target import load_target

OPTION_FIELDS = {"--threads": "threads", "--repeat": "repeat", "--warmup": "warmup", "--samples": "samples"}


def _help() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "400", "TERM": "dumb", "NO_COLOR": "1"},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _examples(text: str) -> list[list[str]]:
    lines = [line.strip(" │") for line in text.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("edgekit deploy ")]


def test_the_emulated_examples_change_something_the_target_file_does_not_already_set() -> None:
    examples = [e for e in _examples(_help()) if "pi4-emu" in e]
    assert examples
    default = load_target("pi4-emu")
    for words in examples:
        sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
        target = load_target("pi4-emu", sets)
        changed = target.model_dump() != default.model_dump()
        cap = default.benchmark_cap
        for option, field in OPTION_FIELDS.items():
            if option in words:
                value = words[words.index(option) + 1]
                capped = getattr(cap, field) if cap is not None else None
                shown = ",".join(map(str, capped)) if isinstance(capped, tuple) else str(capped)
                changed = changed or value != shown
        plain = words == ["edgekit", "deploy", words[2], "--target", "pi4-emu"]
        assert plain or changed or "--verbose" in words, f"{shlex.join(words)} repeats pi4-emu's defaults"


def test_the_help_says_what_the_table_shows_for_emulated_targets_and_their_sample_cap() -> None:
    text = " ".join(_help().replace("│", " ").split())
    assert "report emulated wall times, labelled as such" not in text
    from edgekit.report.table import _target_headers
    from edgekit.results import TargetRun

    counts = SimpleNamespace(measurements=[SimpleNamespace(instructions_per_invoke=212_000_000)])
    run = TargetRun.model_construct(
        target="pi4-emu", emulated=True, agent=counts, estimates={"tflite-fp32 x1": {"board": "pi4"}}
    )  # a counting emulated target, as pi4-emu (emulated.counting) is
    heads = " ".join(" ".join(_target_headers(run, verbose=False)).split())
    if (
        "ESTIMATE" in heads
    ):  # the table leads with the board estimate: the help says so, and where wall times are
        assert "ESTIMATE" in text
        assert "wall ms" not in heads and "--verbose" in text.split("ESTIMATE", 1)[1]
    cap = load_target("pi4-emu").benchmark_cap
    assert cap is not None and cap.samples is not None
    samples_help = text.split("--samples", 1)[1].split("--format", 1)[0]
    assert "all the recipe's" not in samples_help or str(cap.samples) in samples_help
    assert "benchmark_cap" in samples_help and str(cap.samples) in samples_help
    said = re.search(r"pi4-emu: (\d+) threads?, repeat (\d+), warmup (\d+), (\d+) inputs", text)
    assert said is not None, text  # the cap the help quotes is the shipped target file's
    assert said.groups() == tuple(str(v) for v in (*cap.threads, cap.repeat, cap.warmup, cap.samples))
    assert load_target("pi4-emu").emulated.counting  # type: ignore[union-attr]
