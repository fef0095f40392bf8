"""`edgekit cache` and `edgekit cache prune`: real conversions in a fresh data dir, entries aged by their
last-use time, the real command line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edgekit.convert import housekeeping

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0


def edgekit(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGEKIT_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, env=env, timeout=600
    )


def _age(path: Path, days: float) -> None:
    stamp = time.time() - days * DAY
    os.utime(path, (stamp, stamp))


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A data dir holding the tiny recipe's onnx-fp32 and ncnn-fp32 artifacts and its prepared ONNX."""
    tmp = tmp_path_factory.mktemp("cache")
    raw = yaml.safe_load((ROOT / "recipes" / "tiny.yaml").read_text())
    raw["formats"] = ["onnx-fp32", "ncnn-fp32"]  # two quick ones: onnx2tf would take 15-20 s
    recipe = tmp / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(raw))
    home = tmp / "home"
    done = edgekit(home, "convert", str(recipe))
    assert done.returncode == 0, done.stderr
    return home, recipe


def test_info_lists_what_the_cache_holds(converted: tuple[Path, Path]) -> None:
    home, _ = converted
    out = edgekit(home, "cache")
    assert out.returncode == 0, out.stderr
    assert str(home / "cache") in out.stdout
    assert "1 ncnn-fp32, 1 onnx-fp32" in out.stdout
    rows = {
        cells[0]: cells
        for line in out.stdout.splitlines()
        if (cells := re.findall(r"[^│┃\s][^│┃]*[^│┃\s]|\w", line))
    }
    assert rows["artifact"][1] == "2" and rows["onnx"][1] == "1"
    # a work folder of a conversion running now was listed as a "leftover" of a killed run, and nothing more: it
    # is said to be possibly in use (prune leaves it for a day); an old one is not
    work = home / "cache" / "work" / "convert-running"
    work.mkdir(parents=True)
    try:
        said = " ".join(edgekit(home, "cache").stdout.split())
        assert "leftover: 1 used in the last day, possibly by a command still running" in said, said
        _age(work, 2)
        said = " ".join(edgekit(home, "cache").stdout.split())
        assert "leftover" in said and "possibly by a command still running" not in said, said
    finally:
        work.rmdir()


def test_prune_removes_the_unused_damaged_and_left_behind_and_keeps_the_rest(
    converted: tuple[Path, Path],
) -> None:
    home, recipe = converted
    root = home / "cache"
    entries = housekeeping.scan(root)
    by_label = {e.label: e for e in entries}
    old, recent = by_label["ncnn-fp32"], by_label["onnx-fp32"]
    _age(old.path / "artifact.json", 40)
    damaged = root / (("d" * 64) + ".damaged")
    damaged.mkdir()
    (damaged / "model.bin").write_bytes(b"x" * 1000)
    stale = root / "work" / "killed-run"
    stale.mkdir(parents=True)
    _age(stale, 2)
    running = root / "work" / "in-progress"  # a conversion that may still be running, or a log: under a day
    running.mkdir()

    dry = edgekit(home, "cache", "prune", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would remove artifact ncnn-fp32" in dry.stdout and "3 entries, would free" in dry.stdout
    assert old.path.exists() and damaged.exists() and stale.exists()

    done = edgekit(home, "cache", "prune", "--older-than", "30d")
    assert done.returncode == 0, done.stderr
    assert "removed artifact ncnn-fp32" in done.stdout and "3 entries, freed" in done.stdout
    assert not old.path.exists() and not damaged.exists() and not stale.exists()
    assert recent.path.exists() and running.exists() and (root / "onnx").is_dir()
    assert not [p for p in root.iterdir() if p.name.startswith(".pruning-")]

    # the next run converts what was pruned, takes the rest from the cache, and a hit counts as a use
    _age(recent.path / "artifact.json", 10)
    again = edgekit(home, "convert", str(recipe))
    assert again.returncode == 0, again.stderr
    assert "onnx-fp32: cached, no conversion" in again.stdout + again.stderr
    assert "ncnn-fp32: cached, no conversion" not in again.stdout + again.stderr
    assert time.time() - (recent.path / "artifact.json").stat().st_mtime < DAY
    assert {e.label for e in housekeeping.scan(root) if e.kind == "artifact"} == {"onnx-fp32", "ncnn-fp32"}


def test_prune_refuses_an_unreadable_age(converted: tuple[Path, Path]) -> None:
    home, _ = converted
    bad = edgekit(home, "cache", "prune", "--older-than", "soon")
    assert bad.returncode == 2 and "--older-than: cannot read 'soon'" in bad.stderr
    every = edgekit(home, "cache", "prune", "--older-than", "all")
    assert every.returncode == 2 and "--all" in every.stderr
    empty = edgekit(home, "cache", "prune", "--older-than", "", "--dry-run")  # a script's empty variable
    assert empty.returncode == 2 and "give a duration or a date" in empty.stderr, empty.stdout  # was 30 days


def test_prune_refuses_a_future_date_and_both_all_and_older_than_and_says_its_cutoff(
    converted: tuple[Path, Path],
) -> None:
    """A probe's `--older-than 1m` listed entries used 4 minutes ago (m is minutes): the cutoff is printed, as a
    date and how long ago; a date in the future (every entry would go) and `--all --older-than 1d` were taken
    without a word."""
    home, _ = converted
    future = edgekit(home, "cache", "prune", "--older-than", "2099-01-01")
    assert future.returncode == 2 and "is in the future" in future.stderr, future.stderr
    both = edgekit(home, "cache", "prune", "--all", "--older-than", "1d")
    assert both.returncode == 2 and "give one of them" in both.stderr, both.stderr
    dry = edgekit(home, "cache", "prune", "--older-than", "90m", "--dry-run")
    assert dry.returncode == 0 and "entries not used since" in dry.stdout and "1.5 hours ago" in dry.stdout


def test_prune_removes_nothing_while_another_command_uses_the_cache_or_waits_for_it(
    converted: tuple[Path, Path],
) -> None:
    """`cache prune --all` during a nightly removed the ONNX its host stage was about to load, and the nightly
    failed blaming the model. A running command holds the cache shared (as every edgekit command does); prune
    is refused at once (exit 1) naming why, removes nothing, and goes ahead once the command is done."""
    home, _ = converted
    root = home / "cache"
    before = {e.path for e in housekeeping.scan(root)}
    with housekeeping.in_use(root):  # a deploy, in this process
        busy = edgekit(home, "cache", "prune", "--all")
        assert busy.returncode == 1 and "another edgekit command is using the conversion cache" in busy.stderr
        assert {e.path for e in housekeeping.scan(root)} == before
        dry = edgekit(home, "cache", "prune", "--all", "--dry-run")  # listing removes nothing: allowed
        assert dry.returncode == 0 and "would remove" in dry.stdout, dry.stderr
        info = edgekit(home, "cache")  # another command beside the running one: both hold it shared
        assert info.returncode == 0, info.stderr
        start = time.monotonic()  # a cron prune beside a nightly: --wait, then refused all the same
        waited = edgekit(home, "cache", "prune", "--all", "--wait", "2")
        assert waited.returncode == 1 and time.monotonic() - start >= 2, waited.stderr
    import threading

    hold = housekeeping.in_use(root)
    hold.__enter__()
    threading.Timer(1.5, hold.__exit__, args=(None, None, None)).start()  # the command ends within the wait
    done = edgekit(home, "cache", "prune", "--older-than", "3650d", "--wait", "30")
    assert done.returncode == 0 and "entries" in done.stdout, done.stderr


def test_every_command_but_prune_holds_the_cache_while_it_runs(
    converted: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's wiring: while a command runs (here `edgekit version`, its body replaced by a prune from another
    process), prune is refused; `cache prune` itself does not hold it (it would refuse itself)."""
    import edgekit.cli as cli

    home, _ = converted
    monkeypatch.setenv("EDGEKIT_HOME", str(home))
    seen: list[subprocess.CompletedProcess[str]] = []

    def app(**_kw: object) -> int:
        seen.append(edgekit(home, "cache", "prune", "--all"))
        return 0

    monkeypatch.setattr(cli, "_register", lambda *_groups: app)  # the app a command line runs
    monkeypatch.setattr(sys, "argv", ["edgekit", "version"])
    cli._main()
    assert seen[0].returncode == 1 and "is using the conversion cache" in seen[0].stderr, seen[0].stderr
    assert not cli._holds_cache(["--debug", "cache", "prune", "--all"]) and cli._holds_cache(
        ["deploy", "r.yaml"]
    )


def test_the_cache_lock_never_stops_a_command_that_worked_without_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A review found the new lock's own failures breaking every command: a data dir whose cache/ cannot be made
    (a read-only mount; here /proc) was an internal error even for `edgekit version`; a file system without locks
    (NFS without lockd: ENOLCK) too; and a prune stopped with Ctrl-Z held every command, the nightly's too, in
    silence. Now each goes on without the lock; a prune in the way is waited for, said, at most PRUNE_WAIT_S."""
    import errno
    import fcntl

    out = subprocess.run(
        [sys.executable, "-m", "edgekit", "version"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "EDGEKIT_HOME": "/proc/edgekit-none"},
    )
    assert out.returncode == 0 and "internal error" not in out.stderr, out.stderr

    def no_locks(*_a: object) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    (tmp_path / "nfs-cache").mkdir()
    with monkeypatch.context() as m:
        m.setattr(fcntl, "flock", no_locks)
        with housekeeping.in_use(tmp_path / "nfs-cache"):
            pass
        with (
            pytest.raises(housekeeping.CacheLockError, match="No locks available"),
            housekeeping.exclusive(tmp_path / "nfs-cache"),
        ):
            pass

    monkeypatch.setattr(housekeeping, "PRUNE_WAIT_S", 1.0)
    root = tmp_path / "cache"
    root.mkdir()
    with housekeeping.exclusive(root):  # a prune, stopped while removing
        start = time.monotonic()
        with housekeeping.in_use(root):
            waited = time.monotonic() - start
    err = capfd.readouterr().err
    assert 0.9 < waited < 5 and "waiting for `edgekit cache prune`" in err and "going on without" in err, err


def test_a_data_dir_with_brackets_is_named_as_written(tmp_path: Path) -> None:
    """EDGEKIT_HOME=/data/h[x]/home[red]: `edgekit cache` said `cache: /data/h/home/cache`, in red, and prune
    the same; rich read the brackets as markup."""
    home = tmp_path / "h[x]" / "home[red]"
    out = edgekit(home, "cache")
    assert out.returncode == 0, out.stderr
    assert f"cache: {home / 'cache'}" in out.stdout, out.stdout
    pruned = edgekit(home, "cache", "prune", "--all")
    assert pruned.returncode == 0, pruned.stderr
    assert str(home / "cache") in "".join(pruned.stdout.split()), pruned.stdout


def test_benching_estimating_or_profiling_a_cached_file_by_path_is_a_use(
    converted: tuple[Path, Path],
) -> None:
    """convert prints the cache's paths "for edgekit estimate, bench, profile"; a file benched there every night
    was still pruned as unused after 30 days (only a lookup touched its entry). Each of the three now marks the
    entry it was given a file of as used; a prune keeps it."""
    home, _ = converted
    root = home / "cache"
    entries = {e.label: e for e in housekeeping.scan(root) if e.kind in ("artifact", "onnx")}
    ncnn, onnx, prepared = entries["ncnn-fp32"], entries["onnx-fp32"], entries["onnx"]
    for entry in (ncnn, onnx, prepared):
        _age(entry.path / ("meta.json" if entry.kind == "onnx" else "artifact.json"), 40)
    listed = edgekit(home, "cache", "prune", "--dry-run").stdout
    assert listed.count("would remove") == 3, listed

    commands = [
        ("bench", str(ncnn.path / "model.param"), "--target", "host", "--repeat", "2"),
        ("estimate", str(onnx.path / "model.onnx"), "--board", "pi4"),
        ("profile", str(prepared.path / "model.onnx"), "--target", "host", "--passes", "2"),
    ]
    for args in commands:
        done = edgekit(home, *args)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    listed = edgekit(home, "cache", "prune", "--dry-run").stdout
    assert "would remove" not in listed, listed
    for entry in (ncnn, onnx, prepared):
        stamp = entry.path / ("meta.json" if entry.kind == "onnx" else "artifact.json")
        assert time.time() - stamp.stat().st_mtime < DAY, entry


@pytest.fixture(scope="module")
def user_model(converted: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny onnx-fp32 artifact copied out of the cache, as a user's own model file."""
    home, _ = converted
    (entry,) = [e for e in housekeeping.scan(home / "cache") if e.label == "onnx-fp32"]
    copy = tmp_path_factory.mktemp("user") / "tiny.onnx"
    copy.write_bytes((entry.path / "model.onnx").read_bytes())
    return copy


def _rows(out: str) -> dict[str, list[str]]:
    return {
        cells[0]: cells
        for line in out.splitlines()
        if (cells := re.findall(r"[^│┃\s][^│┃]*[^│┃\s]|\w", line))
    }


def test_the_runs_folders_and_host_copies_are_listed_and_pruned_with_the_cache(
    converted: tuple[Path, Path], tmp_path: Path
) -> None:
    """Every deploy kept its runs/<id>/inputs.npy and outputs, and every host measurement a full copy of each
    artifact under local/<target>/artifacts/, and nothing removed them: `cache prune --all` left them while
    `edgekit cache` said empty. `cache` lists them (run, host copy, with sizes) and prune removes them, never the
    results store."""
    _, recipe = converted
    home = tmp_path / "home"
    done = edgekit(
        home, "deploy", str(recipe), "--target", "local", "--format", "onnx-fp32", "--samples", "2"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (run,) = [p for p in (home / "runs").iterdir() if p.is_dir()]
    assert (run / "inputs.npy").is_file()
    (copy,) = list((home / "local" / "host" / "artifacts").iterdir())
    store = sorted(p.name for p in home.iterdir() if p.is_file())
    assert store, "the deploy recorded nothing"

    out = edgekit(home, "cache")
    rows = _rows(out.stdout)
    assert rows["run"][1] == "1" and rows["host copy"][1] == "2", out.stdout  # the artifact and the inputs
    # the rule in the rule's words: only day-old ones go for the size cap (it said "or the oldest beyond 2 GB")
    assert "not used for 14 days, or the oldest day-old ones beyond 2 GB" in " ".join(out.stdout.split())
    assert str(home / "runs") in " ".join(out.stdout.split()), out.stdout
    dry = edgekit(home, "cache", "prune", "--all", "--dry-run")
    assert f"would remove deploy run {run.name}" in dry.stdout, dry.stdout
    assert "would remove host copy of an artifact (host)" in dry.stdout and run.exists() and copy.exists()
    pruned = edgekit(home, "cache", "prune", "--all")
    assert pruned.returncode == 0 and "freed" in pruned.stdout, pruned.stderr
    assert not run.exists() and not copy.exists()
    assert not list((home / "local" / "host" / "inputs").iterdir())
    assert sorted(p.name for p in home.iterdir() if p.is_file()) == store  # the results store stays
    assert "empty" in edgekit(home, "cache").stdout


def test_runs_folders_and_host_copies_are_bounded_as_a_devices_and_a_running_ones_kept(
    user_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The device rule (14 days unused, then the oldest day-old ones beyond 2 GB; a failed run's folder after a day)
    on this machine: a bench prunes runs/ and the host's work dir as it starts; a copy an upload finds unchanged
    is touched (a use); a folder a running command holds is never removed, by that rule or by `cache prune`."""
    from edgekit import run_files
    from edgekit.transport import work_prune

    home = tmp_path / "home"
    bench = ("bench", str(user_model), "--target", "host", "--repeat", "1", "--warmup", "0")
    assert edgekit(home, *bench).returncode == 0
    (first,) = list((home / "runs").iterdir())
    (copy,) = list((home / "local" / "host" / "artifacts").iterdir())
    _age(copy, 2)  # used 2 days ago: the next bench's upload finds it unchanged, and uses it
    assert edgekit(home, *bench).returncode == 0
    assert time.time() - copy.stat().st_mtime < DAY, "an unchanged copy was not touched by its use"

    held = home / "runs" / "bench-20200101-000000-aaaaaa"
    monkeypatch.setenv("EDGEKIT_HOME", str(home))
    with run_files.run_folder(held.name):  # a command running for 15 days (a long lab night's folder)
        for folder in (first, held):
            _age(folder, 15)
        agent_left = home / "local" / "host" / "runs" / "20200101-000000-bbbbbb-host"
        agent_left.mkdir(parents=True)
        _age(agent_left, 2)
        _age(copy, 15)
        assert edgekit(home, *bench).returncode == 0
        assert not first.exists() and held.exists() and not agent_left.exists()
        assert time.time() - copy.stat().st_mtime < DAY  # removed, then copied afresh for this bench
        pruned = edgekit(home, "cache", "prune", "--all")
        assert held.exists() and "kept 1 run folder of a command still running" in pruned.stdout, (
            pruned.stdout
        )

    # the size cap: the oldest day-old ones go first, a run of today stays
    for folder in (home / "runs").iterdir():
        (folder / "ballast").write_bytes(b"x" * 4096)
    old, new = home / "runs" / "bench-20200102-000000-cccccc", home / "runs" / "bench-20200103-000000-dddddd"
    for folder, days in ((old, 3), (new, 0)):
        folder.mkdir()
        (folder / "ballast").write_bytes(b"x" * 4096)
        _age(folder, days)
    monkeypatch.setattr(work_prune, "PRUNE_ARTIFACT_MB", 0)
    run_files.prune_runs()
    assert not old.exists() and new.exists()
    local = home / "local" / "host"
    day_old, today = local / "artifacts" / ("a" * 16), local / "inputs" / ("b" * 16 + ".npy")
    day_old.mkdir(parents=True)
    (day_old / "model.onnx").write_bytes(b"x" * 4096)
    today.write_bytes(b"x" * 4096)
    _age(day_old, 2)
    assert [f.path for f in work_prune.prune(local)] == [day_old] and today.exists()


def test_a_run_folders_lock_is_held_though_another_commands_prune_probed_it_as_the_run_began(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run took its folder's lock with LOCK_SH|LOCK_NB: when another command's prune was probing that lock at
    the moment (busy(): LOCK_EX for microseconds), it failed with EAGAIN, in silence, and the folder looked idle
    for the whole run. The run now waits the probe out. And a probe that locks a lock file the run has replaced
    since it opened it (a file at the path now is another command's) counts the folder as held."""
    import fcntl
    import io
    import threading

    from edgekit import run_files

    monkeypatch.setenv("EDGEKIT_HOME", str(tmp_path / "home"))
    folder = tmp_path / "home" / "runs" / "bench-20200101-000000-eeeeee"
    folder.mkdir(parents=True)
    probe = open(folder / run_files.IN_USE, "a+")  # noqa: SIM115 - closed by the timer
    fcntl.flock(probe, fcntl.LOCK_EX)  # another command's prune, probing this folder as the run begins
    threading.Timer(0.2, probe.close).start()
    with run_files.run_folder(folder.name):
        time.sleep(0.3)  # the probe is over
        assert run_files.busy(folder), "the running command's folder looked idle"

    # between a probe's open and its lock, the run that held the folder ended and another took it
    real_flock = fcntl.flock
    taken: list[io.TextIOWrapper] = []

    def replaced_meanwhile(fd: object, operation: int) -> None:
        if isinstance(fd, int) and not taken:  # busy()'s probe of the file it opened
            (folder / run_files.IN_USE).unlink()
            taken.append(open(folder / run_files.IN_USE, "a+"))  # noqa: SIM115 - closed below
            real_flock(taken[0], fcntl.LOCK_SH)
        real_flock(fd, operation)

    monkeypatch.setattr(fcntl, "flock", replaced_meanwhile)
    (folder / run_files.IN_USE).touch()
    try:
        assert run_files.busy(folder), "a folder another command took was called idle"
    finally:
        for handle in taken:
            handle.close()
    monkeypatch.undo()
    (folder / run_files.IN_USE).unlink()
    assert not run_files.busy(folder)


def test_a_host_copy_a_run_uses_while_another_run_prunes_the_work_dir_stays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A nightly and a manual `bench --target host` share local/host: B's prune scanned and chose artifacts/KEY
    (unused for 15 days), A's upload found the copy unchanged and touched it, then B removed it, and A's agent
    failed with a missing model. A prune now moves a copy aside and puts it back when it was used since its scan;
    an upload whose touch came after the copy was moved aside copies it again."""
    from edgekit.transport import base, work_prune

    model = tmp_path / "model.onnx"
    model.write_bytes(b"onnx" * 1000)
    work = tmp_path / "local" / "host"
    key = work / "artifacts" / ("c" * 16)
    key.mkdir(parents=True)
    (key / "model.onnx").write_bytes(model.read_bytes())

    def aged() -> None:
        for path in (key / "model.onnx", key):
            _age(path, 15)

    aged()
    real_stale = work_prune.stale
    uploads: list[base.PutResult] = []

    def then_a_run_uploads(
        found: list[work_prune.Leftover], now: float | None = None
    ) -> list[work_prune.Leftover]:
        chosen = real_stale(found, now)  # B has chosen its copy
        uploads.append(base.copy_file_atomically(model, key / "model.onnx", "host"))  # A's upload: a use
        return chosen

    with monkeypatch.context() as m:
        m.setattr(work_prune, "stale", then_a_run_uploads)
        assert work_prune.prune(work) == []
    assert uploads[0].skipped and (key / "model.onnx").read_bytes() == model.read_bytes()
    assert not [p for p in key.parent.iterdir() if p.name.startswith(".pruning-")]

    # B moves the copy aside between A's check of it and A's touch: A copies it again
    aged()
    real_sha = base.sha256_file
    pruned: list[list[work_prune.Leftover]] = []

    def then_a_prune(path: Path) -> str:
        digest = real_sha(path)
        if path == key / "model.onnx" and not pruned:
            pruned.append(work_prune.prune(work))
        return digest

    with monkeypatch.context() as m:
        m.setattr(base, "sha256_file", then_a_prune)
        put = base.copy_file_atomically(model, key / "model.onnx", "host")
    assert [f.path for f in pruned[0]] == [key], "the prune did not take the copy"
    assert not put.skipped and (key / "model.onnx").read_bytes() == model.read_bytes()
