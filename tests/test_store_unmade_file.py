"""A store file edgekit just created and could not initialise (a full disk) is not left behind as an empty file that
the next command refuses ("an empty file (0 bytes), not a results store ... restore it from a backup")."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from procs import fill_disk, mount_tmpfs
from test_store_read_no_lock import _edgekit, _run_json


@pytest.fixture()
def disk(tmp_path: Path) -> Iterator[Path]:
    with mount_tmpfs(tmp_path / "disk", "30m") as mnt:
        yield mnt


@pytest.mark.parametrize("command", [["runs", "import", "RUN"], ["runs"]])
def test_a_store_not_initialised_on_a_full_disk_is_not_left_behind(
    disk: Path, tmp_path: Path, command: list[str]
) -> None:
    home = disk / "home"
    home.mkdir()
    run = _run_json(tmp_path)
    filler = fill_disk(disk)
    failed = _edgekit(home, *[str(run) if a == "RUN" else a for a in command])
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "full" in failed.stderr or "disk" in failed.stderr, failed.stderr
    assert sorted(p.name for p in home.iterdir()) == []  # no empty results.sqlite (nor its -wal, -shm)

    filler.unlink()
    runs = _edgekit(home, "runs")
    assert runs.returncode == 0, runs.stdout + runs.stderr
    assert "holds none yet" in runs.stdout
    again = _edgekit(home, "runs", "import", str(run))
    assert again.returncode == 0, again.stdout + again.stderr
    assert "tinyread" in _edgekit(home, "runs").stdout


def test_a_store_that_existed_empty_is_kept(disk: Path, tmp_path: Path) -> None:
    """An empty file the user made (a `touch`ed --store) is not edgekit's to remove when it cannot take a run."""
    store = disk / "mine.sqlite"
    store.touch()
    fill_disk(disk)
    failed = _edgekit(disk / "home", "runs", "import", str(_run_json(tmp_path)), "--store", str(store))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert store.is_file()


def test_an_empty_store_another_process_has_locked_is_kept(tmp_path: Path) -> None:
    """The removal of an empty store this open made spares one another process is initialising (it holds
    SQLite's lock on it): that process's store would otherwise be written to a removed file."""
    from edgekit.store.opening import _remove_unmade

    store = tmp_path / "racing.sqlite"
    store.touch()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
            "c.execute('BEGIN IMMEDIATE'); print('held', flush=True); sys.stdin.read()",
            str(store),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        _remove_unmade(store)
        assert store.is_file()
    finally:
        holder.communicate("", timeout=30)
    _remove_unmade(store)  # nobody holds it now: the empty file is removed
    assert not store.exists()


def test_an_import_of_several_files_that_fails_names_the_file_and_those_not_tried(
    disk: Path, tmp_path: Path
) -> None:
    """`runs import A B C` on a disk that fills: the error said "could not record the run of 'tinyread'" and not
    which file failed or that the rest were never tried."""
    import json

    home = disk / "home"
    home.mkdir()
    first = _run_json(tmp_path)
    assert _edgekit(home, "runs", "import", str(first)).returncode == 0
    others = []
    for name in ("b", "c"):
        data = json.loads(first.read_text())
        data["recipe"] = f"tiny{name}"
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(data))
        others.append(path)
    filler = fill_disk(disk)
    failed = _edgekit(home, "runs", "import", *map(str, others))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "nothing was imported" in " ".join(failed.stderr.split()), failed.stderr  # the store did not open
    filler.unlink()

    # the store opens and the first file's run cannot be recorded (a server gone mid-import): which file failed,
    # which were not tried (the recording itself is faked: a disk that fills between two runs is not repeatable)
    from typer.testing import CliRunner

    from edgekit.cli import app
    from edgekit.errors import StoreError
    from edgekit.store.store import Store

    def refuse(self: Store, result: object) -> tuple[int, bool]:
        raise StoreError("could not record the run of 'tinyb'", where="the store")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEKIT_HOME", str(home))
        mp.delenv("EDGEKIT_STORE", raising=False)
        mp.setattr(Store, "record_new", refuse)
        out = CliRunner().invoke(app, ["runs", "import", *map(str, others)], terminal_width=400)
    assert out.exit_code == 1, out.output
    flat = " ".join(str(out.exception or out.output).split())
    assert f"recording {others[0]}; not tried: {others[1]}" in flat + " ".join(out.output.split()), out.output
