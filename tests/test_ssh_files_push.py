"""The SSH push (RemoteFiles.put_many, upload_room) against pi4-emu's real sshd: folders alone made under a real
bound, its scripts' timeouts named, the last pair for a path winning, a folder in the way refused (review r18)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from edgekit.errors import RemotePathIsFolder, RemoteTimeout, TransportError, WorkDirError
from edgekit.transport import ssh_files

pytestmark = pytest.mark.integration


def _ls(transport, folder: str) -> list[str]:  # type: ignore[no-untyped-def]
    return list(transport.run(["ls", "-A", folder], timeout=30).stdout.split())


def _files(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"A" * 100)
    b.write_bytes(b"B" * 300)
    return a, b


def test_folders_alone_are_made_and_refused_as_with_files(pi4_transport, scratch_name) -> None:
    """put_many([], dirs) ran its script under a 0 s bound: its output was dropped at once, so an unwritable
    folder passed silently (and on a slow device the folder was not made)."""
    assert pi4_transport.put_many([], dirs=[f"{scratch_name}/only/outputs"]) == []
    assert pi4_transport.run(["test", "-d", f"{scratch_name}/only/outputs"], timeout=30).ok
    with pytest.raises(WorkDirError, match="/proc/r18x/outputs"):
        pi4_transport.put_many([], dirs=["/proc/r18x/outputs"])


def _slow_sha(monkeypatch: pytest.MonkeyPatch, partials: bool) -> None:
    """Each put_many script bounded at 1 s a file, and the hash of held files (or of the partial uploads) 3 s."""
    real = ssh_files.RemoteFiles.sha_cmd
    monkeypatch.setattr(ssh_files, "_SCRIPT_S_PER_FILE", 1.0)
    monkeypatch.setattr(
        ssh_files.RemoteFiles,
        "sha_cmd",
        lambda self, p: ("sleep 3; " if (".edgekit-" in p) == partials else "") + real(self, p),
    )


def test_a_hash_script_past_its_bound_is_a_remote_timeout_not_every_file_absent(
    pi4_transport, tmp_path, scratch_name, monkeypatch
) -> None:
    a, _b = _files(tmp_path)
    _slow_sha(monkeypatch, partials=False)
    with pytest.raises(RemoteTimeout, match="hashing the 1 file") as info:
        pi4_transport.put_many([(a, f"{scratch_name}/x/a.bin")])
    assert info.value.where == pi4_transport._files.link.address
    monkeypatch.undo()
    assert pi4_transport.sha256(f"{scratch_name}/x/a.bin") is None  # nothing was sent on a cut-short answer


def test_a_check_script_past_its_bound_is_a_remote_timeout_not_a_sha256_mismatch(
    pi4_transport, tmp_path, scratch_name, monkeypatch
) -> None:
    a, _b = _files(tmp_path)
    _slow_sha(monkeypatch, partials=True)
    with pytest.raises(RemoteTimeout, match="checking the sha256 of 1 uploaded file") as info:
        pi4_transport.put_many([(a, f"{scratch_name}/x/a.bin")])
    assert "does not match" not in str(info.value)
    assert info.value.where == pi4_transport._files.link.address


def test_the_last_pair_for_a_path_wins_as_put_after_put(pi4_transport, tmp_path, scratch_name) -> None:
    """[(A, p), (B, p)] onto a device holding B left A there (duplicates were told by (path, digest), "held" by
    the hash taken before any upload), while the results said B."""
    a, b = _files(tmp_path)
    p = f"{scratch_name}/dup/x.bin"
    pi4_transport.put(b, p)
    got = pi4_transport.put_many([(a, p), (b, p)])
    assert pi4_transport.sha256(p) == ssh_files.sha256_file(b)
    assert [(r.skipped, r.bytes_sent, r.sha256) for r in got] == [(True, 0, got[1].sha256)] * 2
    got = pi4_transport.put_many([(b, p), (a, p), (a, p)])  # only the last is sent
    assert pi4_transport.sha256(p) == ssh_files.sha256_file(a) == got[0].sha256
    assert [(r.skipped, r.bytes_sent) for r in got] == [(True, 0), (True, 0), (False, 100)]
    assert _ls(pi4_transport, f"{scratch_name}/dup") == ["x.bin"]
    # what check_space counts first: a path listed twice once, as what put_many sends
    free, to_send = pi4_transport.upload_room([(b, p), (b, p), (a, f"{scratch_name}/dup/y.bin")])
    assert free is not None and to_send == 300 + 100
    assert pi4_transport.upload_room([(a, p), (b, p)])[1] == 300
    assert pi4_transport.bytes_to_send([(b, p), (a, p)]) == 0


def test_a_remote_path_that_is_a_folder_is_refused_and_no_partial_left(
    pi4_transport, tmp_path, scratch_name
) -> None:
    """`mv -f TMP PATH` moved the partial into a folder at PATH and succeeded: the file was reported sent and a
    hidden partial stayed inside the folder."""
    a, b = _files(tmp_path)
    folder = f"{scratch_name}/isdir/m.bin"
    pi4_transport.mkdir(folder)
    with pytest.raises(RemotePathIsFolder, match="is a folder on the device") as info:
        pi4_transport.put_many([(b, f"{scratch_name}/isdir/ok.bin"), (a, folder)])
    assert info.value.path.endswith(folder) and "sha256" not in str(info.value)
    assert _ls(pi4_transport, folder) == []
    assert _ls(pi4_transport, f"{scratch_name}/isdir") == ["m.bin", "ok.bin"]  # the other file of the batch
    assert not pi4_transport._files.partials


def test_a_failed_rename_is_said_as_such_not_as_a_sha256_mismatch(
    pi4_transport, tmp_path, scratch_name, monkeypatch
) -> None:
    """The partial checked and then gone before its rename (mv fails): mv's own words, not "does not match"."""
    a, _b = _files(tmp_path)
    real = ssh_files.RemoteFiles.sha_cmd
    monkeypatch.setattr(
        ssh_files.RemoteFiles,
        "sha_cmd",
        lambda self, p: real(self, p) + (f"; rm -f -- {shlex.quote(p)}" if ".edgekit-" in p else ""),
    )
    with pytest.raises(TransportError, match="cannot be renamed into place: mv: ") as info:
        pi4_transport.put_many([(a, f"{scratch_name}/mv/a.bin")])
    assert "does not match" not in str(info.value)
    monkeypatch.undo()
    assert _ls(pi4_transport, f"{scratch_name}/mv") == []
