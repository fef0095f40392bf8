"""Every file a docstring, a comment, the README or a doc points to is in the repository (no notes that live
elsewhere, no DESIGN.md at the top), and every README example names a command and options that exist."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted(
    [
        *REPO.glob("edgekit/**/*.py"),
        *REPO.glob("bench/*.py"),
        *REPO.glob("tests/**/*.py"),
        REPO / "README.md",
        *REPO.glob("docs/**/*.md"),
        REPO / "Makefile",
        REPO / "pyproject.toml",
    ]
)
# a path inside the repo, as text cites one: docs/x.md, edgekit/estimate/data/ncnn-benchmark, bench/x.py
CITED = re.compile(r"(?<![\w/.~$-])((?:docs|edgekit|bench|targets|recipes|examples)/[\w./-]*[\w/])")
ELSEWHERE = re.compile(r"DESIGN\.md|shared/notes|shared notes|(?<!docs/)\bnotes/[\w-]+\.md")


def _cited(path: Path) -> list[tuple[int, str]]:
    found = []
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        found += [(n, m.group(1)) for m in CITED.finditer(line)]
    return found


def test_every_path_cited_is_in_the_repository() -> None:
    missing = []
    for source in SOURCES:
        if source.name == "test_docs.py":
            continue
        for n, cited in _cited(source):
            cited = cited.rstrip(".")
            if re.search(r"\*|<|\b[A-Z]{3,}\b|/x\.", cited) or (REPO / cited).exists():  # placeholders
                continue
            if (source.parent / cited).exists():  # relative to the citing file (a doc's own folder)
                continue
            missing.append(f"{source.relative_to(REPO)}:{n}: {cited}")
    assert not missing, "\n".join(missing)


def test_no_reference_to_notes_outside_the_repository() -> None:
    found = [
        f"{s.relative_to(REPO)}:{n}: {line.strip()}"
        for s in SOURCES
        if s.name != "test_docs.py"
        for n, line in enumerate(s.read_text(errors="replace").splitlines(), 1)
        if ELSEWHERE.search(line)
    ]
    assert not found, "\n".join(found)


def _readme_commands() -> list[str]:
    """`edgekit ...` lines of the README's code blocks and indented examples, as a user would type them."""
    found, fenced = [], False
    for line in (REPO / "README.md").read_text().splitlines():
        fenced = fenced != line.startswith("```")
        if not (fenced or line.startswith("    ")):  # code: a fenced block or an indented example
            continue
        stripped = line.strip().removeprefix("$ ")
        if re.match(r"^(\.venv/bin/)?edgekit [a-z]", stripped) and "..." not in stripped:
            found.append(re.sub(r"\s+#.*$", "", stripped))
    return found


@pytest.mark.parametrize("command", _readme_commands())
def test_readme_examples_name_commands_and_options_that_exist(command: str) -> None:
    """Each example parsed by the real CLI: its subcommand and every --option it uses exist (`--help` shows
    them); running them all would take a device and minutes each, the deploy example runs in the emulated
    targets' own tests."""
    argv = shlex.split(command.replace(".venv/bin/edgekit", "edgekit"))[1:]
    words = [a for a in argv if not a.startswith("-")]
    sub = [w for w in words[:2] if re.fullmatch(r"[a-z]+", w)]
    out = subprocess.run(
        [sys.executable, "-m", "edgekit", *sub[:1], "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    if len(sub) > 1 and sub[1] in out.stdout:  # a group (emu, targets, runs): the sub-command's own help
        out = subprocess.run(
            [sys.executable, "-m", "edgekit", *sub[:2], "--help"],
            capture_output=True,
            text=True,
            timeout=120,
            env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
        )
    for option in (a.split("=")[0] for a in argv if a.startswith("--")):
        assert option in out.stdout, f"{command}: {option} is not an option of `edgekit {' '.join(sub)}`"
