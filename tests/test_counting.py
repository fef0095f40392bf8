"""Counting mode: the qemu plugin counts guest instructions between the marks, exactly and repeatably.

The plugin and the plugin-capable qemu come from set-up (`edgekit emu build pi4-emu` builds the plugin too).
Unit tests run a hand-assembled aarch64 program with a known count (no sysroot); integration tests run tiny
ncnn and TFLite models on the emulated pi4 (Cortex-A72) with the device's real runtimes.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekit.emu.plugin import build as plugin_build
from edgekit.emu.plugin import selftest
from edgekit.errors import EmulatorError, UsageError

CHANNELS, SIZE = 16, 32


@pytest.fixture(scope="module")
def plugin() -> Path:
    if not plugin_build.is_built():
        pytest.fail(
            "the counting plugin is not built: run `edgekit emu build-plugin` (make test's set-up does)"
        )
    return plugin_build.plugin_path()


def write_chain(stem: Path, layers: int) -> Path:
    """An ncnn model of `layers` identical 3x3 convolutions (16 channels, 32x32, ReLU fused), seeded weights."""
    rng = np.random.default_rng(0)
    lines = ["7767517", f"{layers + 1} {layers + 1}", f"Input in0 0 1 b0 0={SIZE} 1={SIZE} 2={CHANNELS}"]
    blobs = []
    for i in range(layers):
        n = CHANNELS * CHANNELS * 9
        lines.append(f"Convolution conv{i} 1 1 b{i} b{i + 1} 0={CHANNELS} 1=3 4=1 5=1 6={n} 9=1")
        blobs += [
            struct.pack("<I", 0),
            (rng.standard_normal(n) * 0.05).astype("<f4").tobytes(),
            np.zeros(CHANNELS, "<f4").tobytes(),
        ]
    stem.with_suffix(".param").write_text("\n".join(lines) + "\n")
    stem.with_suffix(".bin").write_bytes(b"".join(blobs))
    return stem.with_suffix(".param")


TFLITE_SCRIPT = """
import sys, numpy as np, tensorflow as tf
rng = np.random.default_rng(0)
for layers, path in ((2, sys.argv[1]), (4, sys.argv[2])):
    ws = [tf.constant((rng.standard_normal((3, 3, 16, 16)) * 0.05).astype(np.float32)) for _ in range(layers)]
    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 16], tf.float32)])
    def f(x):
        for w in ws:
            x = tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME"))
        return x
    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    open(path, "wb").write(conv.convert())
"""


# --- unit: the plugin on a program whose count is known ----------------------------------------------------------
def test_selftest_program_counts_exactly(plugin: Path, tmp_path: Path) -> None:
    qemu = plugin_build.counting_qemu()
    for loops in (1000, 3000):
        assert selftest.run(qemu, plugin, tmp_path, loops) == selftest.expected(loops)


@pytest.mark.parametrize(
    ("lines", "l1_misses", "l2_misses"),
    [
        (256, 256, 256),  # 16 KB: fits the 32 KB L1, so the second pass hits: each line misses once
        (1024, 2048, 1024),  # 64 KB through a 2-way 32 KB L1 in order: LRU evicts every line before its reuse
    ],
)
def test_simulated_caches_count_the_misses_of_a_known_access_pattern(
    plugin: Path, tmp_path: Path, lines: int, l1_misses: int, l2_misses: int
) -> None:
    """Two passes of one load per 64-byte line through the Pi 4's hierarchy (L1D 32 KB 2-way, L2 1 MB 16-way):
    the window's accesses and misses are exact, and simulating caches leaves the instruction count as it was."""
    exe = tmp_path / "loads"
    exe.write_bytes(selftest.cache_program(lines, passes=2))
    exe.chmod(0o755)
    out = tmp_path / "counts.txt"
    cmd = [str(plugin_build.counting_qemu()), "-cpu", "cortex-a72", "-plugin"]
    subprocess.run([*cmd, f"{plugin},out={out},l1=32768:2,l2=1048576:16", str(exe)], check=True, timeout=60)
    misses = out.read_text().splitlines()[-1].split(";")[2]
    assert [int(v) for v in misses.split()] == [2 * lines, l1_misses, l2_misses]
    assert int(out.read_text().split()[0]) == selftest.cache_program_instructions(lines, 2)
    plain = tmp_path / "plain.txt"
    subprocess.run([*cmd, f"{plugin},out={plain}", str(exe)], check=True, timeout=60)
    assert plain.read_text().split(";")[0] == out.read_text().split(";")[0]
    assert plain.read_text().count(";") == 1  # no cache fields without cache levels


def test_the_stream_prefetcher_turns_a_stream_of_misses_into_one_per_five_lines(
    plugin: Path, tmp_path: Path
) -> None:
    """pf=1 (what edgekit passes with a board's caches): one load per line through 64 KB, twice. A miss next to a
    recent miss fetches the next 4 lines, so each pass misses the L1 at lines 0 and 1, then once every 5 lines
    (6, 11, ..., 1021): 206 per pass instead of 1024; the 1 MB L2 only in the first pass. The instruction count is
    unchanged."""
    exe = tmp_path / "loads"
    exe.write_bytes(selftest.cache_program(1024, passes=2))
    exe.chmod(0o755)
    out = tmp_path / "counts.txt"
    cmd = [str(plugin_build.counting_qemu()), "-cpu", "cortex-a72", "-plugin"]
    subprocess.run(
        [*cmd, f"{plugin},out={out},l1=32768:2,l2=1048576:16,pf=1", str(exe)], check=True, timeout=60
    )
    misses = out.read_text().splitlines()[-1].split(";")[2]
    assert [int(v) for v in misses.split()] == [2048, 2 * 206, 206]
    assert int(out.read_text().split()[0]) == selftest.cache_program_instructions(1024, 2)


def test_each_window_appends_one_line(plugin: Path, tmp_path: Path) -> None:
    exe = tmp_path / "marks"
    exe.write_bytes(selftest.program(500))
    exe.chmod(0o755)
    out = tmp_path / "counts.txt"
    for _ in range(2):
        subprocess.run(
            [
                str(plugin_build.counting_qemu()),
                "-cpu",
                "cortex-a76",
                "-plugin",
                f"{plugin},out={out}",
                str(exe),
            ],
            check=True,
            timeout=60,
        )
    want = selftest.expected(500)
    # the total, the one thread's share, then the mix: 501 branches (b.ne x500, svc), 502 integer (movz, subs)
    assert out.read_text().splitlines() == [f"{want} {want} ; 0 0 0 501 502"] * 2


@pytest.mark.integration
def test_threads_split_the_count_and_the_busiest_thread_is_kept(plugin: Path, tmp_path: Path) -> None:
    """ncnn at 2 threads: every thread's share is in the line, the shares sum to the total, and the busiest
    thread carries less than the whole (the split a multi-thread estimate uses)."""
    from edgekit.emu.plugin.counting import CountJob, count_artifacts

    param = write_chain(tmp_path / "chain", 4)
    (res,) = count_artifacts(
        [CountJob(param, threads=2, input_shape=[1, CHANNELS, SIZE, SIZE], repeat=1)], "pi4-emu"
    )
    (split,) = res.per_thread
    assert len(split) >= 2 and sum(split) == res.per_invoke[0]
    assert res.instructions / 2 <= res.busiest_thread < res.instructions


def test_plugin_without_out_argument_is_refused(plugin: Path, tmp_path: Path) -> None:
    exe = tmp_path / "marks"
    exe.write_bytes(selftest.program(10))
    exe.chmod(0o755)
    proc = subprocess.run(
        [str(plugin_build.counting_qemu()), "-plugin", str(plugin), str(exe)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and "out=PATH" in proc.stderr


def test_unknown_device_and_missing_shape_are_named_errors(tmp_path: Path) -> None:
    from edgekit.emu.plugin.counting import count_artifact

    param = write_chain(tmp_path / "chain", 1)
    with pytest.raises(UsageError, match="unknown emulated device"):
        count_artifact(param, "pi9-emu", input_shape=[1, CHANNELS, SIZE, SIZE])
    with pytest.raises(EmulatorError, match="input shape"):
        count_artifact(param, "pi4-emu")


# --- integration: real runtimes on the emulated Cortex-A72 --------------------------------------------------------
@pytest.fixture(scope="module")
def ncnn_counts(plugin: Path, tmp_path_factory: pytest.TempPathFactory) -> list[list[list[int]]]:
    """Two runs (two guest processes) of the same jobs: chain4 then chain8."""
    from edgekit.emu.plugin.counting import CountJob, count_artifacts

    folder = tmp_path_factory.mktemp("chains")
    jobs = [
        CountJob(write_chain(folder / f"chain{n}", n), input_shape=[1, CHANNELS, SIZE, SIZE], repeat=2)
        for n in (4, 8)
    ]
    return [[r.per_invoke for r in count_artifacts(jobs, "pi4-emu")] for _ in range(2)]


@pytest.mark.integration
def test_a_site_folder_comes_first_for_its_jobs_alone(plugin: Path, tmp_path: Path) -> None:
    """bench/estimate_cv.py --ncnn-site counts with another ncnn release: the site's module is the one imported,
    in a guest of its own (a job without a site, listed first, still counts with the device's ncnn: had it
    shared the site's guest, its own import would have failed first)."""
    from edgekit.emu.plugin.counting import CountJob, count_artifacts

    site = tmp_path / "site"
    (site / "ncnn").mkdir(parents=True)
    (site / "ncnn" / "__init__.py").write_text("raise ImportError('the ncnn of the site folder')\n")
    shape = [1, CHANNELS, SIZE, SIZE]
    plain, other = write_chain(tmp_path / "plain", 2), write_chain(tmp_path / "other", 3)
    with pytest.raises(EmulatorError, match="the ncnn of the site folder") as raised:
        count_artifacts(
            [CountJob(plain, input_shape=shape), CountJob(other, input_shape=shape, site=str(site))],
            "pi4-emu",
        )
    assert raised.value.where == str(other.resolve())


@pytest.mark.integration
def test_ncnn_counts_are_identical_across_runs(ncnn_counts: list[list[list[int]]]) -> None:
    first, second = ncnn_counts
    assert first == second  # every artifact, every window, exactly
    assert first[0][0] > 1_000_000  # 9.4 M MACs: a real count, not an empty window


@pytest.mark.integration
def test_ncnn_twice_the_work_counts_about_twice(ncnn_counts: list[list[list[int]]]) -> None:
    chain4, chain8 = ncnn_counts[0]
    ratio = chain8[1] / chain4[1]
    assert 1.9 < ratio < 2.05, ratio


@pytest.mark.integration
def test_a_count_with_the_boards_caches_adds_misses_and_keeps_the_count(
    plugin: Path, tmp_path: Path, ncnn_counts: list[list[list[int]]]
) -> None:
    """A real ncnn model counted with the Pi 4's and the Pi 5's caches simulated: accesses and each level's misses
    per window, a larger model missing more, and the same instructions as without caches (the plugin's arguments
    move the guest's stack by a few bytes: a few dozen instructions at most)."""
    from edgekit.emu.plugin.counting import CountJob, count_artifacts
    from edgekit.estimate.boards import BOARDS

    shape = [1, CHANNELS, SIZE, SIZE]
    small, large = (write_chain(tmp_path / f"chain{n}", n) for n in (4, 8))
    for board, models in (("pi4", (small, large)), ("pi5", (small,))):
        jobs = [CountJob(p, input_shape=shape, repeat=1, caches=BOARDS[board].caches) for p in models]
        counted = count_artifacts(jobs, BOARDS[board].emulated_device)
        a = counted[0]
        levels = [
            c for c in BOARDS[board].caches if c[0] == "l"
        ]  # "l1=...", ...; then "pf=1", the prefetcher
        assert len(a.window_misses) == 1 + len(levels)  # accesses, L1, L2 (and the Pi 5's L3)
        accesses, l1, last = a.window_misses[0], a.window_misses[1], a.window_misses[-1]
        assert accesses > l1 >= last > 0
        if board == "pi4":
            assert counted[1].window_misses[0] > 1.8 * accesses  # twice the layers: about twice the accesses
            assert abs(a.instructions - ncnn_counts[0][0][0]) < 1e-3 * a.instructions


def _tflite_chains(folder: Path) -> tuple[Path, Path]:
    """TFLITE_SCRIPT's two models (2 and 4 convolutions), written by TensorFlow in a child process."""
    small, large = folder / "conv2.tflite", folder / "conv4.tflite"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    subprocess.run(
        [sys.executable, "-c", TFLITE_SCRIPT, str(small), str(large)],
        check=True,
        capture_output=True,
        env=env,
        timeout=300,
    )
    return small, large


@pytest.fixture(scope="module")
def tflite_chains(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """TFLITE_SCRIPT's two models, written once for the file's tests (they only read them): TensorFlow's import
    and conversion is seconds each time."""
    return _tflite_chains(tmp_path_factory.mktemp("tflite-chains"))


@pytest.mark.integration
def test_tflite_counts_repeat_and_scale(plugin: Path, tflite_chains: tuple[Path, Path]) -> None:
    from edgekit.emu.plugin.counting import CountJob, count_artifacts

    small, large = tflite_chains
    a, c = count_artifacts([CountJob(small), CountJob(large)], "pi4-emu")
    b, _ = count_artifacts([CountJob(small), CountJob(large)], "pi4-emu")
    (alone,) = count_artifacts([CountJob(small)], "pi4-emu")
    assert a.per_invoke == b.per_invoke and a.runtime == "ai_edge_litert"  # same jobs, same order: exact
    # other jobs shift the heap: a warm-up window moves by up to 1.6e-4 (CI), within the 0.1 % counting.py states
    assert abs(alone.instructions / a.instructions - 1) < 1e-3
    assert 1.8 < c.instructions / a.instructions < 2.1, (a.instructions, c.instructions)
    assert a.to_dict()["label"].startswith("guest instruction count")


@pytest.mark.integration
def test_tflite_profile_counts_each_op_of_a_conv_chain(
    plugin: Path, tflite_chains: tuple[Path, Path]
) -> None:
    """Four identical convolutions: each op's differenced count is about a quarter of the whole inference."""
    from edgekit.profile_table import format_table
    from edgekit.profile_tflite import op_rows, profile_tflite, read_model

    _, large = tflite_chains
    rows = op_rows(read_model(large))
    assert [r["type"] for r in rows] == ["CONV_2D"] * 4 and rows[-1]["shape"] == [1, 32, 32, 16]
    prof = profile_tflite(large, "pi4-emu")
    assert [layer.type for layer in prof.layers] == ["CONV_2D"] * 4
    assert 0.9 < prof.coverage < 1.1, (prof.layer_sum, prof.total)
    ops = [layer.instructions for layer in prof.layers]  # the first op no longer carries invoke()'s own work
    assert max(ops) / min(ops) < 1.1 and all(0.15 < n / prof.total < 0.35 for n in ops), (ops, prof.fixed)
    assert 0 < prof.fixed < min(ops)
    assert "per op" in format_table(prof)[0] and "prefix models" in format_table(prof)[-1]
    assert "the interpreter's own per-invoke work" in format_table(prof)[-1]  # and no warning: the ops add up
    prof.layers[0].instructions *= 3  # as a cut that changes delegation makes them
    assert "per-layer figures are not reliable" in format_table(prof)[-1]


def test_tflite_profile_refuses_a_file_that_is_not_a_model(tmp_path: Path) -> None:
    from edgekit.errors import InputDataError
    from edgekit.profile_tflite import read_model

    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(InputDataError, match=r"not a readable \.tflite") as raised:
        read_model(junk)
    assert raised.value.exit_code == 2  # the user's file: bad input
