"""A device's outputs .npz, read without trusting what it says of itself (edgekit.fidelity.saved_npz): unit tests of
the reader on files made here, and a real deploy to a `local` target whose `python` is the real agent behind a
wrapper that rewrites one outputs file as a hostile device would (r9: a member's .npy header claiming shape
(200000000000, 10) over 64 bytes ended the deploy in a MemoryError of 7.28 TiB, no table, no comparison)."""

from __future__ import annotations

import json
import os
import random
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from edgekit.fidelity import saved_npz
from edgekit.fidelity.compare import load_outputs
from edgekit.fidelity.saved_npz import OutputsFileRefused, SavedNpz
from edgekit.results import Measurement

REPO = Path(__file__).resolve().parent.parent
TINY = REPO / "recipes" / "tiny.yaml"


def npy_member(shape: tuple[int, ...], data: bytes, descr: str = "<f4", version: int = 1) -> bytes:
    """The bytes of one .npy whose header says `shape` and `descr`, followed by `data` (whatever its size)."""
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (118 - len(header)) + "\n"
    size = len(header).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + header.encode() + data


def zipped(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_an_agents_own_file_reads_as_np_load_reads_it(tmp_path: Path) -> None:
    """Stacked and per-input outputs, every dtype an output has, Fortran order, np.savez_compressed: the same
    arrays as np.load, writable (the comparison may work on them in place)."""
    arrays = {
        "logits": np.arange(30, dtype=np.float32).reshape(3, 10),
        "ids": np.array([[2**40], [7], [-1]], dtype=np.int64),
        "mask": np.array([True, False, True]),
        "half": np.ones((3, 2), dtype=np.float16),
        "fortran": np.asfortranarray(np.arange(12, dtype=np.float64).reshape(3, 4)),
        "boxes@0": np.zeros((2, 4), np.float32),
        "boxes@1": np.ones((5, 4), np.float32),
    }
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        save(path, **arrays)
        with SavedNpz(path) as data:
            assert sorted(data.files) == sorted(arrays)
            for key, want in arrays.items():
                got = data.array(key)
                assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want), key
                assert got.flags.writeable
    m = Measurement(
        artifact="a",
        format="onnx-fp32",
        runtime="onnxruntime",
        threads=1,
        status="ok",
        output_keys=["logits", "boxes@*"],
        output_names=["logits", "boxes"],
        output_shapes=[[3, 10], [2, -1, 4]],
    )
    (_, logits), (_, boxes) = load_outputs(tmp_path / "savez.npz", m)
    assert np.array_equal(logits, arrays["logits"]) and [b.shape for b in boxes] == [(2, 4), (5, 4)]  # type: ignore[union-attr]


def test_a_header_claiming_more_than_its_member_holds_is_refused_before_anything_is_allocated(
    tmp_path: Path,
) -> None:
    """The reviewer's file: np.load asked for 7.28 TiB (MemoryError, the deploy lost); the reader refuses it,
    naming the member, the shape the header claims and the bytes there are."""
    path = zipped(tmp_path / "bomb.npz", {"logits.npy": npy_member((200000000000, 10), bytes(64))})
    with pytest.raises(MemoryError), np.load(path) as data:
        data["logits"]  # what the comparison did before
    with SavedNpz(path) as data, pytest.raises(OutputsFileRefused) as refused:
        data.array("logits")
    assert str(refused.value) == (
        "logits: its header says an array of shape [200000000000, 10] and type float32 (8,000,000,000,000 bytes), "
        "but the member holds 64 bytes after its header"
    )


def test_a_header_of_another_shape_than_the_results_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.npz"
    np.savez(path, logits=np.zeros((4, 10), np.float32), boxes=np.zeros((2, 3), np.float32))
    with SavedNpz(path) as data:
        assert data.array("boxes", [2, -1]).shape == (2, 3)  # -1: any size on that axis
        with pytest.raises(
            OutputsFileRefused, match=r"shape \[4, 10\], the result's output_shapes \[8, 10\]"
        ):
            data.array("logits", [8, 10])


@pytest.mark.parametrize(
    ("member", "said"),
    [
        (npy_member((2,), bytes(16), descr="|O"), "an array of type object, not numbers"),
        (npy_member((2,), bytes(16), descr="|V8"), "an array of type |V8, not numbers"),
        (npy_member((2,), bytes(16), descr="<U2"), "an array of type <U2, not numbers"),
        (npy_member((2, -4), bytes(16)), "its header says shape [2, -4]"),
        (b"\x93NUMPY\x02\x00" + (1 << 30).to_bytes(4, "little"), "its .npy header is 1,073,741,824 bytes"),
        (b"\x93NUMPY\x03\x00" + bytes(20), "unsupported .npy format version 3.0"),
    ],
)
def test_a_member_that_is_no_array_of_numbers_is_refused(tmp_path: Path, member: bytes, said: str) -> None:
    """An object array (a pickle: never loaded), other kinds of data, a negative size, a header of a gigabyte."""
    path = zipped(tmp_path / "o.npz", {"x.npy": member})
    with SavedNpz(path) as data, pytest.raises(ValueError, match=r"^x: ") as refused:
        data.array("x")
    assert said in str(refused.value)


def test_a_zip_bomb_is_refused_by_its_unpacked_size(tmp_path: Path) -> None:
    """A deflated member unpacks to a thousand times its download: the members' unpacked total is bounded before
    any is read (here at 1 MB; edgekit's bound is what it downloads, 1 GiB)."""
    path = zipped(
        tmp_path / "bomb.npz",
        {"x.npy": npy_member((1 << 19,), bytes(1 << 21))},
        zipfile.ZIP_DEFLATED,
    )
    assert path.stat().st_size < 10_000
    with pytest.raises(OutputsFileRefused, match="unpack to 2,097,281 bytes, more than the 1,000,000"):
        SavedNpz(path, limit=1_000_000)


def test_a_zip_directory_of_too_many_members_is_refused_before_zipfile_lists_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """zipfile keeps ~860 bytes per member it lists (1,000,000 empty members in 88 MB: 880 MB of memory), so a 1 GiB
    file was ~10 GB: the directory's stated size is bounded first (8 MiB; 4 KiB here)."""
    path = zipped(tmp_path / "many.npz", {f"{i}.npy": b"" for i in range(200)})
    monkeypatch.setattr(saved_npz, "DIRECTORY_LIMIT", 4096)
    with pytest.raises(OutputsFileRefused, match=r"its zip directory is [\d,]+ bytes, more than the 4,096"):
        SavedNpz(path)


def test_compression_methods_and_encryption_numpy_never_writes_are_refused(tmp_path: Path) -> None:
    """zipfile raised NotImplementedError (an unknown method) or RuntimeError (encrypted), which no caller caught."""
    member = npy_member((2,), bytes(8))
    path = zipped(tmp_path / "bz.npz", {"x.npy": member}, zipfile.ZIP_BZIP2)
    with SavedNpz(path) as data, pytest.raises(OutputsFileRefused, match="method 12"):
        data.array("x")
    raw = bytearray(zipped(tmp_path / "enc.npz", {"x.npy": member}).read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # the encrypted flag, in the local header and the directory
        at = raw.index(sig) + (6 if sig == b"PK\x03\x04" else 8)
        raw[at] |= 1
    (tmp_path / "enc.npz").write_bytes(raw)
    with SavedNpz(tmp_path / "enc.npz") as data, pytest.raises(OutputsFileRefused, match="encrypted"):
        data.array("x")


def test_one_array_where_an_npz_should_be_and_a_missing_key_say_so(tmp_path: Path) -> None:
    one = tmp_path / "one.npz"
    with open(one, "wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(ValueError, match=r"one\.npz holds one array, not an \.npz of outputs"):
        SavedNpz(one)
    np.savez(tmp_path / "o.npz", a=np.zeros(3))
    with (
        SavedNpz(tmp_path / "o.npz") as data,
        pytest.raises(KeyError, match="b is not a file in the archive"),
    ):
        data.array("b")


def test_any_damage_to_a_file_is_an_error_the_comparison_catches(tmp_path: Path) -> None:
    """400 seeded corruptions of an agent-like file (bytes flipped, cut short, spliced): each reads or raises one of
    the errors deploy/outputs.py turns into that artifact's failed comparison; nothing else escapes."""
    from edgekit.deploy.outputs import _checked_outputs

    good = tmp_path / "good.npz"
    np.savez_compressed(good, logits=np.linspace(0, 1, 40, dtype=np.float32).reshape(4, 10))
    np.savez(tmp_path / "plain.npz", logits=np.linspace(0, 1, 40, dtype=np.float32).reshape(4, 10))
    m = Measurement(
        artifact="a",
        format="onnx-fp32",
        runtime="onnxruntime",
        threads=1,
        status="ok",
        outputs_file="x.npz",
        output_keys=["logits"],
    )
    rng = random.Random(0)
    for n in range(400):
        data = bytearray((good if n % 2 else tmp_path / "plain.npz").read_bytes())
        kind = n % 4
        if kind == 0:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind == 1:
            del data[rng.randrange(len(data)) :]
        elif kind == 2:
            at = rng.randrange(len(data))
            data[at : at + 8] = rng.randbytes(8)
        else:
            at = rng.randrange(len(data) - 4)
            data[at : at + 4] = (0xFFFFFFFF).to_bytes(
                4, "little"
            )  # a size field claiming 4 GiB, if it is one
        path = tmp_path / "x.npz"
        path.write_bytes(bytes(data))
        got = _checked_outputs(path, m)  # raises when an error escapes
        assert isinstance(got, (str, list)), n


DEVICE_PYTHON = """
import glob, os, subprocess, sys
agent, request, result = sys.argv[1:4]
done = subprocess.run([sys.executable, agent, request, result])
header = "{'descr': '<f4', 'fortran_order': False, 'shape': (200000000000, 10), }"
header += " " * (118 - len(header)) + "\\n"
member = b"\\x93NUMPY\\x01\\x00" + len(header).to_bytes(2, "little") + header.encode() + bytes(64)
import zipfile
for npz in glob.glob(os.path.join(os.path.dirname(result), "outputs", "onnx-fp32.*.npz")):
    names = zipfile.ZipFile(npz).namelist()
    with zipfile.ZipFile(npz + ".x", "w") as archive:
        for name in names:
            archive.writestr(name, member)
    os.replace(npz + ".x", npz)
sys.exit(done.returncode)
"""


def test_a_deploy_whose_device_sends_an_outputs_file_of_lying_headers_keeps_every_table(
    tmp_path: Path,
) -> None:
    """r9: a device rewrote its outputs file so each member's header claimed shape (200000000000, 10) over 64 bytes:
    `internal error (MemoryError): Unable to allocate 7.28 TiB`, no table (the host's neither), no comparison, no
    route, and the run stored as ok: no with no reason. Now that artifact's comparison on that target fails, saying
    why; its other artifact and the host are compared and routed as usual."""
    script = tmp_path / "device_python.py"
    script.write_text(DEVICE_PYTHON)
    target = tmp_path / "hostile.yaml"
    target.write_text(
        "name: hostile\ntransport: local\n"
        f"work_dir: {json.dumps(str(tmp_path / 'device'))}\n"
        f"python: {json.dumps(f'{shlex.quote(sys.executable)} {shlex.quote(str(script))}')}\n"
    )
    out, store = tmp_path / "out.json", f"sqlite:///{tmp_path / 'runs.sqlite'}"
    done = subprocess.run(
        [sys.executable, "-m", "edgekit", "deploy", str(TINY), "-f", "onnx-fp32", "-f", "ncnn-fp32"]
        + ["--target", str(target), "--threads", "1", "--repeat", "2", "--warmup", "0"]
        + ["--json", str(out), "--store", store],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "400"},
    )
    said = done.stdout + done.stderr
    assert "internal error" not in said and "MemoryError" not in said, said[-3000:]
    assert done.returncode == 1, said[-3000:]  # a target's gates not judged
    assert "tiny on hostile" in said and "tiny on host" in said, said[-3000:]
    why = (
        "outputs file outputs/onnx-fp32.t1.npz refused, not read: logits: its header says an array of shape "
        "[200000000000, 10] and type float32 (8,000,000,000,000 bytes), but the member holds 64 bytes after its "
        "header"
    )
    assert f"hostile onnx-fp32: outputs not comparable with the ONNX model's: {why}" in said, said[-3000:]
    result = json.loads(out.read_text())
    runs = {r["target"]: r for r in result["runs"]}
    assert runs["hostile"]["status"] == "ok"
    comps = {(c["artifact"], c["reference"]): c for c in runs["hostile"]["comparisons"]}
    assert (
        comps["onnx-fp32", "onnx"]["gates_passed"] is False
        and why in comps["onnx-fp32", "onnx"]["gate_failures"][0]
    )
    assert comps["ncnn-fp32", "onnx"]["gates_passed"] is True  # its own file, untouched: compared as usual
    assert all(c["gates_passed"] for c in runs["host"]["comparisons"])
    routes = {r["target"]: r for r in result["routes"]}
    assert routes["hostile"]["artifact"] == "ncnn-fp32" and routes["host"]["artifact"] in (
        "onnx-fp32",
        "ncnn-fp32",
    )
    assert routes["hostile"]["rejected"]["onnx-fp32"].startswith("outputs not comparable")
    shown = subprocess.run(
        [sys.executable, "-m", "edgekit", "runs", "show", "1", "--store", store, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert why in shown.stdout, shown.stdout[-2000:] + shown.stderr[-2000:]  # stored with its reason
    # and said by `runs show` as deploy says it (its route line said 'why is above' of a line it never printed)
    table = subprocess.run(
        [sys.executable, "-m", "edgekit", "runs", "show", "1", "--store", store],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert f"hostile onnx-fp32: outputs not comparable with the ONNX model's: {why}" in table.stdout, (
        table.stdout[-3000:] + table.stderr[-2000:]
    )


def test_an_outputs_file_of_many_members_reads_in_one_pass_over_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """r10: each array rebuilt a set of every member's name, so an outputs file saved input by input (3 outputs x
    10,000 inputs: 30,000 members) took 64-135 s to read where np.load took 29 s. The names are read once: reading
    every array asks the zip directory for its names once, not once per array."""
    import zipfile

    path = tmp_path / "many.npz"
    np.savez(path, **{f"out{i % 3}__{i // 3}": np.full(4, i, np.float32) for i in range(600)})
    calls = 0
    original = zipfile.ZipFile.namelist

    def counted(self: zipfile.ZipFile) -> list[str]:
        nonlocal calls
        calls += 1
        return original(self)

    monkeypatch.setattr(zipfile.ZipFile, "namelist", counted)
    saved = SavedNpz(path)
    values = [float(saved.array(k)[0]) for k in saved.files]
    saved.close()
    assert sorted(values) == [float(i) for i in range(600)]
    assert calls <= 2, calls
