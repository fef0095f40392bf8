"""`edgekit lab` and `edgekit lab release` against a real labgrid coordinator (edgekit/lab/rig.py's bare rig: no
board behind the places): the commands a hint names reach the coordinator the hint came from, and the listing
stays readable at 80 columns beside a long NetworkService address."""

from __future__ import annotations

import getpass
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from lab_helpers import holders, kick_held, teammate

from edgekit.lab import rig as lab_rig
from edgekit.lab.client import lab_python
from edgekit.lab.errors import LabWaitTimeout

PLACES = {"b1": {"board": "rx"}, "b2": {"board": "rx"}}
LONG_HOST = "a-board-whose-exporter-names-a-very-long-host.rack-7.lab.example.org"


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[lab_rig.Rig]:
    lab_python()  # no .venv-lab: LabSetupError naming `make setup`
    started = lab_rig.start_bare(tmp_path_factory.mktemp("lab") / "rig", PLACES)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def free_lab(rig: lab_rig.Rig) -> Iterator[lab_rig.Rig]:
    yield rig
    kick_held(rig)


def _env(targets: Path, **more: str) -> dict[str, str]:
    """No `lab` defaults file, and $LG_COORDINATOR (the default's fallback) pointing at nothing."""
    env = {k: v for k, v in os.environ.items() if k not in ("LG_COORDINATOR", "COLUMNS")}
    return {**env, "EDGEKIT_TARGETS_DIR": str(targets), "LG_COORDINATOR": "127.0.0.1:1", **more}


def _team_target(folder: Path, rig: lab_rig.Rig) -> Path:
    """A lab target file (not the `lab` defaults file) that names the coordinator."""
    folder.mkdir(exist_ok=True)
    key = folder / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (folder / "teamlab.yaml").write_text(
        f"lab: {{coordinator: '{rig.coordinator}', tags: {{board: rx}}, wait_s: 1}}\nkey: {key}\n"
        "accept_new: true\n"
    )
    return folder


def edgekit(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *argv], capture_output=True, text=True, env=env, timeout=120
    )


def test_the_commands_a_wait_timeout_names_reach_the_targets_coordinator(
    free_lab: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lab target file names its coordinator (no `lab` file, no $LG_COORDINATOR): LabWaitTimeout's hint said
    `edgekit lab` and `edgekit lab release PLACE`, which reached the default coordinator ("cannot reach the
    labgrid coordinator 127.0.0.1:20408"), and `edgekit lab release` had no --target. The hint's commands carry
    the coordinator now, and `lab release` takes --target as `edgekit lab` does."""
    from edgekit.emu.device import ensure_device
    from edgekit.target import load_target

    targets = _team_target(tmp_path / "targets", free_lab)
    env = _env(targets)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    teammate(free_lab, "b1", "acquire")
    teammate(free_lab, "b2", "acquire")
    with pytest.raises(LabWaitTimeout) as timeout:
        ensure_device(load_target("teamlab"))
    hint = timeout.value.hint or ""
    commands = re.findall(r"edgekit lab[^;()]*", hint)
    assert len(commands) == 2, hint
    listing, release = (shlex.split(c.strip())[1:] for c in commands)
    assert "release" not in listing and "release" in release, hint
    out = edgekit(*listing, env=env)
    assert out.returncode == 0 and "b1" in out.stdout and "other/bob" in out.stdout, (hint, out.stderr)
    out = edgekit(*[("b1" if w == "PLACE" else w) for w in release], "--kick", env=env)
    assert out.returncode == 0 and "b1: released" in out.stdout, (hint, out.stdout, out.stderr)
    assert holders(free_lab)["b1"] is None
    # `lab release` takes the target's coordinator, as `edgekit lab` does
    out = edgekit("lab", "release", "b2", "--kick", "--target", "teamlab", env=env)
    assert out.returncode == 0 and "b2: released" in out.stdout, (out.stdout, out.stderr)
    assert holders(free_lab)["b2"] is None
    # a refused release names the commands for the same coordinator
    teammate(free_lab, "b2", "acquire")
    out = edgekit("lab", "release", "b2", "--target", "teamlab", env=env)
    said = " ".join(out.stderr.split())
    assert out.returncode != 0 and f"edgekit lab release b2 --kick -x {free_lab.coordinator}" in said, said
    out = edgekit("lab", "release", "nosuch", "-t", "teamlab", env=env)
    said = " ".join(out.stderr.split())
    assert out.returncode == 2 and f"edgekit lab -x {free_lab.coordinator}" in said, said


def test_a_long_service_address_leaves_the_other_columns_readable_at_80_columns(
    free_lab: lab_rig.Rig, tmp_path: Path
) -> None:
    """One place's NetworkService with a long address (an exporter's typo, refused by deploy) made the ssh column
    as wide as that address at 80 columns and squeezed every other column to 3 characters (place column
    `bad / -ad / dr`). A long address now folds in a column of at most a third of the width: every place name and
    the short addresses stay whole, the long one is all there, the table fits."""
    user = "pi"
    exporter = lab_rig.add_service(
        free_lab, "far", "bad-addr", {"address": LONG_HOST, "username": user, "port": 22}, {"board": "ry"}
    )
    try:
        targets = tmp_path / "targets"
        targets.mkdir()
        store = f"sqlite:///{tmp_path / 'lab.sqlite'}"
        from edgekit.store import open_store

        with open_store(store):
            pass
        out = edgekit("lab", "-x", free_lab.coordinator, "--store", store, env=_env(targets, COLUMNS="80"))
    finally:
        lab_rig._stop_group(exporter)
        subprocess.run(
            [str(lab_python().parent / "labgrid-client"), "-p", "bad-addr", "delete"],
            env={**os.environ, "LG_COORDINATOR": free_lab.coordinator},
            capture_output=True,
        )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines and max(len(line) for line in lines) <= 80, out.stdout
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in lines if line.startswith("│")]
    first = {row[0] for row in cells}
    assert {"b1", "b2", "bad-addr"} <= first, out.stdout  # each place name whole on its row
    assert any(row[0] == "bad-addr" and row[1] == "board=ry" for row in cells), out.stdout
    ssh = [row[3] for row in cells]
    assert ssh.count(f"{getpass.getuser()}@127.0.0.1:22") == 2, out.stdout  # the rig's addresses, whole
    assert f"{user}@{LONG_HOST}:22" in "".join(ssh), out.stdout  # the long one folded, nothing cut


def test_the_listing_a_no_matching_place_error_names_reaches_the_targets_coordinator(
    free_lab: lab_rig.Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A misspelt tag of a lab target that names its coordinator: NoMatchingPlace's hint said `edgekit lab lists
    them`, which reached the default coordinator. It names the target's coordinator now, and that command lists
    the places."""
    from edgekit.emu.device import ensure_device
    from edgekit.lab.errors import NoMatchingPlace
    from edgekit.target import load_target

    targets = _team_target(tmp_path / "targets", free_lab)
    (targets / "teamlab.yaml").write_text(
        (targets / "teamlab.yaml").read_text().replace("board: rx", "board: rxx")
    )
    env = _env(targets)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(NoMatchingPlace) as missing:
        ensure_device(load_target("teamlab"))
    hint = missing.value.hint or ""
    (command,) = re.findall(r"edgekit lab -x \S+", hint)
    out = edgekit(*shlex.split(command)[1:], env=env)
    assert out.returncode == 0 and "b1" in out.stdout and "b2" in out.stdout, (hint, out.stdout, out.stderr)


def test_a_new_teams_first_listing_has_no_store_yet(free_lab: lab_rig.Rig, tmp_path: Path) -> None:
    """EDGEKIT_STORE named the team's store before anything was recorded: `edgekit lab -x HOST:PORT` failed
    `StorePathError ... nothing has been recorded at this path`, exit 2, only to fill the last-run column. The
    places are listed now, each last run `-`, with one line saying no run is recorded yet (and no store file is
    made by listing); a store path that is a folder is still refused."""
    targets = tmp_path / "targets"
    targets.mkdir()
    store = tmp_path / "team" / "results.sqlite"
    store.parent.mkdir()
    out = edgekit(
        "lab", "-x", free_lab.coordinator, env=_env(targets, EDGEKIT_STORE=str(store), COLUMNS="200")
    )
    assert out.returncode == 0, out.stderr
    cells = [
        [c.strip() for c in line.split("│")[1:-1]] for line in out.stdout.splitlines() if line.startswith("│")
    ]
    rows = {row[0]: row for row in cells if row and row[0] in PLACES}
    assert set(rows) == set(PLACES) and all(row[-1] == "-" for row in rows.values()), out.stdout
    said = " ".join(out.stdout.split())
    assert f"no run is recorded yet: no results store at {store}" in said, out.stdout
    assert not store.exists()
    folder = edgekit("lab", "-x", free_lab.coordinator, env=_env(targets, EDGEKIT_STORE=str(store.parent)))
    assert folder.returncode == 2 and "a folder, not a results store file" in folder.stderr, folder.stderr
