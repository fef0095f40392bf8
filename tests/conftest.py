"""Shared test set-up.

- The user's data dir is never touched: EDGEKIT_HOME points at a fresh temporary folder for the session.
- The emulated-device assets are expensive (sysroot, wheels), so EDGEKIT_EMU_HOME keeps pointing at the
  normal emu dir (built once by `make test`'s set-up: `edgekit emu build pi4-emu`) unless already set.
- The NCNN INT8 speed plan is off (EDGEKIT_NCNN_SPEED_PLAN=0) except where a test turns it on.
- pi4-emu and pi5-emu count without simulated caches (`emulated.caches=false` through the environment) except
  where a test turns them on: they make every emulated run 1.2-1.6x longer and only the estimate uses them
  (tests/test_deploy.py deploys with them, tests/test_targets.py checks the plugin gets them by default).
- `pi4_emu`: the running pi4-emu device's Target, read for each test; the device is started once for the
  session if it was not running (`_pi4_emu_session`), and stopped at the end only if this session started it.
- `url`: a store URL, once a SQLite file and once (marked `integration`) a fresh database on a real PostgreSQL
  server, one server per test module (`pg_server`, started from Debian's postgresql package as `make setup`
  installs it).
- Three workers (`make test`'s default, pytest-xdist `-n 3 --dist loadgroup`; `make test PYTEST_WORKERS=` for
  one process): the files in HOST_ONLY touch nothing another test changes (conversions, counting under the
  counting qemu, the host and `local` targets, each worker's own EDGEKIT_HOME) and run on one worker; the files in
  LAB_AND_BALANCE (the bare-rig lab tests, each with a coordinator of its own and no board: mostly waiting on
  gRPC's and edgekit's bounds, and a few files that need no device) on a second; everything else (the running
  emulated devices and their sshd, which fault tests freeze and stop; the lab tests that deploy to them,
  PostgreSQL, Chromium) on the third, in file order, as a single-process run does. A test that takes the `pi4_emu`
  fixture goes with the devices. Why three on a 2-core machine: with two, a clean clone's .ci/run of 1923 tests took
  33 min 15 s (2026-12-06: the host worker's tests 1907 s, the devices worker's 1977 s, of which the bare-rig lab
  files were about 380 s of waiting); the third worker's tests wait while the other two compute: with three, 25 min
  58 s (the same 1923 tests, a clean clone's .ci/run; 2026-12-07: 25 min 41 s for 1924 tests, 31 min 15 s for 1945 an
  hour later, the machine's speed varies by that much). test_analyze, test_any_onnx, test_accept_level and
  test_accept_return (host-only) run with the devices to even the first and the third; moving four CPU-bound files
  to the lab's worker made all three slower (36 min 19 s). test_lab (a rig of its own: its places are OpenSSH
  servers of their own in front of the emulated devices' python, which no device fault test touches) runs on the
  lab's worker: its 158 s were nearly all waiting on the lab's bounds, and the lab's worker had the least to do
  (2026-12-07 evening: host 1910 s, devices 1894 s, lab 720 s of test time).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SESSION_HOME: tempfile.TemporaryDirectory[str] | None = None

HOST_ONLY = frozenset(
    {
        "test_accepted_note.py",
        "test_accuracy.py",
        "test_agent_figures.py",
        "test_agent_integer_outputs.py",
        "test_agent_layer_noise.py",
        "test_analyze_fix_candidates.py",
        "test_analyze_fix_plan.py",
        "test_analyze_readable.py",
        "test_analyze_two_outputs.py",
        "test_analyze_xnnpack.py",
        "test_bad_input_models.py",
        "test_bad_target_input.py",
        "test_bench_unreadable_onnx.py",
        "test_builder_owners.py",
        "test_cache.py",
        "test_cache_model_code.py",
        "test_cache_prune.py",
        "test_convert_calibration.py",
        "test_convert_disk_full.py",
        "test_convert_faults.py",
        "test_convert_figures.py",
        "test_convert_lines.py",
        "test_convert_ncnn.py",
        "test_convert_peak_mem.py",
        "test_convert_tflite.py",
        "test_convert_unsupported_ops.py",
        "test_count_kill.py",
        "test_count_noise.py",
        "test_counting.py",
        "test_cpu_identity.py",
        "test_deploy_emu_unbuilt.py",
        "test_deploy_help.py",
        "test_deploy_host_only.py",
        "test_deploy_no_target.py",
        "test_deploy_not_converted.py",
        "test_deploy_outputs_per_input.py",
        "test_deploy_outputs_sizes.py",
        "test_deploy_profile_hint.py",
        "test_device_prune.py",
        "test_device_results.py",
        "test_emulated_cores.py",
        "test_emulated_host_heat.py",
        "test_estimate.py",
        "test_estimate_checks.py",
        "test_estimate_graph_errors.py",
        "test_estimate_mac_rules.py",
        "test_explained_accept.py",
        "test_fact_caveats.py",
        "test_fast_night.py",
        "test_fault_keep_results.py",
        "test_fault_target_python.py",
        "test_fidelity.py",
        "test_fit_cache.py",
        "test_free_batch_onnx.py",
        "test_host_lock.py",
        "test_hostile_device_output.py",
        "test_input_layout.py",
        "test_keras.py",
        "test_keras_h5_custom.py",
        "test_keras_normalization.py",
        "test_keras_outputs.py",
        "test_lab_boards.py",
        "test_lab_bounds_values.py",
        "test_local_home_python.py",
        "test_locks.py",
        "test_log_lines_unwrapped.py",
        "test_masking_precision.py",
        "test_metrics.py",
        "test_model_digest.py",
        "test_model_not_finite.py",
        "test_names_for_users.py",
        "test_ncnn_fp32_reuse.py",
        "test_ncnn_graph_bounds.py",
        "test_ncnn_int8.py",
        "test_ncnn_pad.py",
        "test_ncnn_plan_fallback.py",
        "test_ncnn_plan_not_counted.py",
        "test_ncnn_speed.py",
        "test_nightly_cron.py",
        "test_one_line_text.py",
        "test_onnx_dynamic_inputs.py",
        "test_onnx_external_data.py",
        "test_onnxrt_kl.py",
        "test_opencv_convert_errors.py",
        "test_openvino_int8.py",
        "test_ort_check_bounded.py",
        "test_packaging.py",
        "test_path_kinds.py",
        "test_plan_interrupt.py",
        "test_profile_fixes.py",
        "test_profile_shapes.py",
        "test_profile_skipped.py",
        "test_profile_tflite_branches.py",
        "test_progress.py",
        "test_rank3_runners.py",
        "test_recipe.py",
        "test_recipe_package.py",
        "test_report_control_chars.py",
        "test_report_cosine_places.py",
        "test_report_interrupted_empty.py",
        "test_report_markdown_text.py",
        "test_report_model_digest.py",
        "test_report_not_counted.py",
        "test_report_panel_notes.py",
        "test_report_plot_fixes.py",
        "test_report_run_state.py",
        "test_report_scale_fixes.py",
        "test_report_selection.py",
        "test_route_claims.py",
        "test_route_counts_lost.py",
        "test_route_gate_advice.py",
        "test_route_words.py",
        "test_runs_hostile_text.py",
        "test_runtime_ties.py",
        "test_same_every_input.py",
        "test_same_model_stored.py",
        "test_same_model_views.py",
        "test_saved_npz.py",
        "test_secret_echo.py",
        "test_short_baseline.py",
        "test_store_import_names.py",
        "test_store_read_no_lock.py",
        "test_store_unmade_file.py",
        "test_store_unrecorded_folder.py",
        "test_symlink_loops.py",
        "test_table_drift_footer.py",
        "test_table_failed_rows.py",
        "test_target_limits.py",
        "test_target_work_dir.py",
        "test_tflite_dynamic_shape.py",
        "test_tflite_layout.py",
        "test_timed_split.py",
        "test_torch_arg_files.py",
        "test_torch_export.py",
        "test_torch_file.py",
        "test_torch_nan.py",
        "test_torch_shape_reason.py",
        "test_train.py",
        "test_train_threads.py",
        "test_unlisted_runtime.py",
        "test_wheels.py",
        "test_zero_reference.py",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    global _SESSION_HOME  # noqa: PLW0603 - one emulator home per test session, removed in pytest_unconfigure
    if "EDGEKIT_EMU_HOME" not in os.environ:
        from edgekit.paths import emu_dir

        os.environ["EDGEKIT_EMU_HOME"] = str(emu_dir())  # resolved against the real data dir, once
    _SESSION_HOME = tempfile.TemporaryDirectory(prefix="edgekit-test-home-")
    os.environ["EDGEKIT_HOME"] = _SESSION_HOME.name
    # The host's benchmark lock is one per machine: the two workers' host timings would queue behind each other
    # (nothing here asserts a host time); each worker has its own. tests/test_host_lock.py tests the machine's.
    os.environ["EDGEKIT_HOST_LOCK"] = os.path.join(_SESSION_HOME.name, "host.lock")
    # The NCNN INT8 speed plan counts every layer under qemu at conversion (minutes per real model): off for the
    # suite, on in tests/test_ncnn_speed.py, which tests it on every shipped recipe.
    os.environ.setdefault("EDGEKIT_NCNN_SPEED_PLAN", "0")
    for device in ("PI4_EMU", "PI5_EMU"):
        os.environ.setdefault(f"EDGEKIT_TARGET_{device}_EMULATED__CACHES", "false")


# the third worker's files: the bare-rig lab tests (their own coordinator and exporter, no board behind them:
# mostly waiting on gRPC's and edgekit's bounds) and files that need no device, balancing the other two workers
LAB_AND_BALANCE = frozenset(
    {
        "test_lab.py",
        "test_lab_bounds.py",
        "test_lab_cli.py",
        "test_lab_close_grace.py",
        "test_lab_faults.py",
        "test_lab_hold.py",
        "test_lab_night.py",
        "test_lab_refused.py",
        "test_lab_release_retry.py",
        "test_builder_import_errors.py",
        "test_count_cache_shape.py",
        "test_count_heartbeat.py",
        "test_fault_stalled_sshd.py",
        "test_proxy_secret_allowlist.py",
        "test_savedmodel_ops.py",
        "test_tflite_run_cache.py",
        "test_torchvision_extension.py",
    }
)


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks into the test ids
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Each test's pytest-xdist group (see the module's docstring); without xdist the marks do nothing."""
    for item in items:
        name, fixtures = item.path.name, getattr(item, "fixturenames", ())
        if name in LAB_AND_BALANCE and "pi4_emu" not in fixtures:
            group = "lab"
        elif name in HOST_ONLY and "pi4_emu" not in fixtures:
            group = "host"
        else:
            group = "devices"
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="module")
def relu_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    """A one-node ONNX model (Relu) as the agent's artifact, and four evaluation inputs for it (the device-result
    tests: a real agent behind a wrapper that alters what it wrote or says)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from edgekit.deploy.request import AgentArtifact

    folder = tmp_path_factory.mktemp("model")
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
    )
    made = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    made.ir_version = 8
    onnx.save(made, str(folder / "relu.onnx"))
    inputs = folder / "inputs.npy"
    np.save(inputs, np.random.default_rng(0).standard_normal((4, 1, 16)).astype(np.float32))
    return AgentArtifact.from_path(folder / "relu.onnx"), inputs


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SESSION_HOME is not None:
        _SESSION_HOME.cleanup()


@pytest.fixture(scope="session")
def _pi4_emu_session() -> Iterator[None]:
    """pi4-emu running for the session: started here if it was not, and then stopped at the end."""
    from edgekit.emu.device import ensure_device
    from edgekit.emu.runner import down, running_state
    from edgekit.target import load_target

    state = running_state("pi4-emu")
    started = state is None
    if state is not None:
        _resume(state.sshd_pid)  # a fault test killed mid-freeze (Ctrl-C, kill -9) leaves the sshd stopped
    ensure_device(load_target("pi4-emu"))
    try:
        yield
    finally:
        if started:
            down("pi4-emu")


@pytest.fixture()
def pi4_emu(_pi4_emu_session: None) -> object:
    """The pi4-emu Target with live connection details, read for each test: a device a fault test left frozen
    is started afresh (on another port) by whichever test ensures it next, so a session's copy goes stale."""
    from edgekit.emu.device import ensure_device
    from edgekit.target import load_target

    return ensure_device(load_target("pi4-emu"))


def _resume(pid: int) -> None:
    """SIGCONT the device's sshd and every process below it (harmless when they run)."""
    import signal

    import psutil

    try:
        master = psutil.Process(pid)
        for proc in [master, *master.children(recursive=True)]:
            os.kill(proc.pid, signal.SIGCONT)
    except (psutil.Error, OSError):
        pass


@pytest.fixture()
def pi4_transport(pi4_emu: object) -> Iterator[object]:
    """An open SSH transport to pi4-emu, closed after the test."""
    from edgekit.transport import open_transport

    with open_transport(pi4_emu) as transport:  # type: ignore[arg-type]
        yield transport


@pytest.fixture()
def scratch_name(request: pytest.FixtureRequest) -> str:
    """A remote file/dir name unique to this test, so tests never see each other's files."""
    return f"t-{request.node.name.replace('[', '-').replace(']', '')}-{os.getpid()}"


@pytest.fixture()
def small_file(tmp_path: Path) -> Path:
    path = tmp_path / "probe.py"
    path.write_text("import os, platform\nprint(platform.machine(), os.environ.get('EDGEKIT_EMULATOR'))\n")
    return path


def _pg_tool(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        pytest.fail(f"PostgreSQL's {name} not found: `make setup` installs Debian's postgresql package")
    return found[-1]


@pytest.fixture(scope="module")
def pg_server() -> Iterator[Path]:
    """A throwaway PostgreSQL cluster listening on a Unix socket only; yields the socket folder."""
    root = Path(tempfile.mkdtemp(prefix="edgekit-pg-"))
    as_root = os.geteuid() == 0  # initdb refuses root: run the server as the postgres user then
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, "postgres")
    data, sock, log = root / "data", root / "sock", root / "server.log"
    subprocess.run([*prefix, "mkdir", str(sock)], check=True)
    initdb = [_pg_tool("initdb"), "-D", str(data), "-A", "trust", "-U", "edgekit", "--no-sync", "-E", "UTF8"]
    subprocess.run([*prefix, *initdb], check=True, capture_output=True)
    opts = f"-k {sock} -c listen_addresses='' -c fsync=off -c max_connections=50"
    start = [_pg_tool("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", opts, "start"]
    subprocess.run([*prefix, *start], check=True, capture_output=True, timeout=120)
    try:
        yield sock
    finally:
        stop = [_pg_tool("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        subprocess.run([*prefix, *stop], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: Path) -> str:
    """A fresh, empty database on the module's server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(host=str(pg_server), user="edgekit", dbname="postgres", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://edgekit@/{name}?host={pg_server}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store URL, twice: a SQLite file and a fresh database on a real PostgreSQL server (`integration`)."""
    return (
        f"sqlite:///{tmp_path / 'results.sqlite'}"
        if request.param == "sqlite"
        else str(request.getfixturevalue("pg_url"))
    )
