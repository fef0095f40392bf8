"""Where a result the store could not take is kept, and how files are written there: another local user must not
be able to choose where the write lands (the temporary folder is shared by every user)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from edgekit.formats import Format
from edgekit.paths import write_atomic
from edgekit.report.synthetic import synthetic_result
from edgekit.results import DeployResult

T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


def _result() -> DeployResult:
    return synthetic_result(
        T0, rng=np.random.default_rng(0), formats=(Format.TFLITE_FP32,), threads=(1,), repeat=5, recipe="tiny"
    )


@pytest.fixture
def shared_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary folder like /tmp (mode 1777: every user can make things in it), as $TMPDIR; the data dir under
    a file, so it cannot take a result and keep_somewhere goes to the temporary folder."""
    shared = Path(tempfile.mkdtemp(prefix="edgekit-shared-", dir="/tmp"))  # pytest's own folder is 0700
    shared.chmod(0o1777)
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "afile" / "home"))
    monkeypatch.setenv("TMPDIR", str(shared))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    yield shared
    tempfile.tempdir = None
    shutil.rmtree(shared)


def _plant_links(folder: Path, victim: Path) -> None:
    """Symlinks to `victim` at every name the write of a kept result could use this second and the next."""
    for t in (time.time(), time.time() + 1):
        name = f"tiny-{time.strftime('%Y%m%d-%H%M%S', time.localtime(t))}.json"
        for link in (folder / f".{name}.tmp", folder / name):
            link.unlink(missing_ok=True)
            link.symlink_to(victim)


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root to act as a second user"
)
def test_a_spare_folder_made_by_another_user_is_not_written_through(shared_tmp: Path, tmp_path: Path) -> None:
    """Another user made $TMPDIR/edgekit-unrecorded (mode 777) with symlinks at the predictable temporary name:
    a deploy whose data dir could not take its result wrote it through them, overwriting a file of the victim's
    (a root-owned 0600 file took the deploy JSON). Now the folder is per user, and one that is not the user's own
    (made 0700 by them) is refused, said; nothing is written through the planted links."""
    from edgekit.store.unrecorded import keep_somewhere, spare_folder

    victim = tmp_path / "victim"
    victim.write_text("precious")
    victim.chmod(0o600)
    for folder in (shared_tmp / "edgekit-unrecorded", spare_folder()):
        subprocess.run(["runuser", "-u", "nobody", "--", "mkdir", "-m", "777", str(folder)], check=True)
        subprocess.run(["runuser", "-u", "nobody", "--", "chmod", "777", str(folder)], check=True)
        _plant_links(folder, victim)
    kept, failed = keep_somewhere(_result())
    assert victim.read_text() == "precious"
    assert kept is None, kept
    assert any(f"not keeping results in {spare_folder()}" in why and "uid 65534" in why for why in failed), (
        failed
    )


def test_the_spare_folder_is_the_users_own_and_a_symlink_there_is_refused(
    shared_tmp: Path, tmp_path: Path
) -> None:
    """The spare folder is $TMPDIR/edgekit-unrecorded-UID, made 0700, and the result lands there readable as any
    file the user writes; a symlink at its name (to a folder the attacker chose) is refused."""
    from edgekit.store.unrecorded import keep_somewhere, spare_folder

    folder = spare_folder()
    assert folder == shared_tmp / f"edgekit-unrecorded-{os.getuid()}"
    kept, failed = keep_somewhere(_result())
    assert kept is not None and kept.parent == folder, (kept, failed)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert DeployResult.model_validate_json(kept.read_text()).recipe == "tiny"
    assert [p.name for p in folder.iterdir()] == [kept.name]  # no temporary file left

    shutil.rmtree(folder)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folder.symlink_to(elsewhere)
    kept, failed = keep_somewhere(_result())
    assert kept is None and not list(elsewhere.iterdir()), kept
    assert any("not a folder (a symlink or a file)" in why for why in failed), failed


def test_write_atomic_does_not_follow_a_symlink_planted_at_a_temporary_name(tmp_path: Path) -> None:
    """write_atomic wrote PATH's content to .NAME.tmp first, following a symlink planted there (in a folder
    another user can write): the file it pointed to was overwritten. The temporary file now has a fresh name,
    made only if absent; the file written has the mode a plain write gives (umask)."""
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out.json"
    (tmp_path / ".out.json.tmp").symlink_to(victim)
    old = os.umask(0o022)
    try:
        write_atomic(out, "{}")
    finally:
        os.umask(old)
    assert victim.read_text() == "precious"
    assert out.read_text() == "{}" and stat.S_IMODE(out.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.json.tmp", "out.json", "victim"]


def test_write_atomic_keeps_a_strict_umask_where_proc_cannot_say_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The temporary file was made 0600 and then chmod-ed to 0666 less the umask read from /proc/self/status,
    0022 when that could not be read (macOS): under `umask 077` results were written 0644. The kernel applies
    the umask now, /proc or not."""
    real_read = Path.read_text

    def no_proc(self: Path, *args: object, **kwargs: object) -> str:
        if str(self).startswith("/proc/"):
            raise FileNotFoundError(self)
        return real_read(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", no_proc)
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "strict.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "strict.json").stat().st_mode) == 0o600
