"""The fault matrix: each fault of issue 14 injected into the real `edgekit` command against the real pi4-emu
(sshd + qemu), measured: exit code, first error line, time to fail (from the fault), peak memory (the largest
process edgekit ran), measurements kept (--json and the store), lost (ok measurements seen on the device's disk but
not kept) and whether the same command succeeds once the fault is gone.

    .venv/bin/python bench/fault_matrix.py [--only frozen,ctrl-c,...] [--markdown]

Faults: the device frozen at connect and mid-run (its sshd and everything under it SIGSTOPped by pid, resumed
after), the link dropped mid-run (the session's sshd killed) with the device reachable again or not (sshd master
stopped), Ctrl-C (SIGINT to edgekit), the disk full before the upload and filling mid-run (the device's work dir
on a 3 MB tmpfs: this machine is the emulated device's file system; needs root), a refused port, a port that never
speaks SSH, an alias-bomb recipe. The deploy is recipes/tiny.yaml, tflite-fp32 and ncnn-fp32 at one thread, two
inputs, repeat 1, no host (about a minute under qemu). Data goes to a temporary EDGEKIT_HOME.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "recipes" / "tiny.yaml"
EDGEKIT = str(Path(sys.executable).parent / "edgekit")
# the wrapper reports the largest descendant's peak RSS; SIGINT reset (a background job inherits it ignored)
WRAP = (
    "import resource, signal, subprocess, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "p = subprocess.run(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(p.returncode)"
)


@dataclass
class Row:
    case: str
    code: int
    error: str
    seconds: float
    peak_mb: float
    kept: str
    lost: str
    rerun: str


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float  # from the fault (or the start) to exit
    peak_mb: float
    seen_on_device: int


class Case:
    """One deploy with a work dir of its own; `fault(ctx)` runs in a thread once the trigger holds."""

    def __init__(self, home: Path, name: str) -> None:
        self.dir = home / "cases" / name
        self.work = self.dir / "device"
        self.json = self.dir / "run.json"
        self.store = self.dir / "store.sqlite"
        self.dir.mkdir(parents=True, exist_ok=True)

    def args(self, *extra: str) -> list[str]:
        return [
            "deploy",
            str(TINY),
            "--target",
            "pi4-emu",
            "-f",
            "tflite-fp32",
            "-f",
            "ncnn-fp32",
            "--no-host",
            "--repeat",
            "1",
            "--warmup",
            "0",
            "--samples",
            "2",
            "--json",
            str(self.json),
            "--store",
            str(self.store),
            "--set",
            f"work_dir={self.work}",
            "--set",
            "io_timeout=3",
            "--set",
            "connect_timeout=3",
            *extra,
        ]

    def measured_on_device(self) -> int:
        best = 0
        for result in self.work.glob("runs/*/result-*.json"):
            with suppress(ValueError, KeyError, OSError):
                best = max(
                    best, sum(m["status"] == "ok" for m in json.loads(result.read_text())["measurements"])
                )
        return best

    def kept(self) -> tuple[int, int]:
        """ok measurements in --json and in the store."""
        from edgekit.results import DeployResult
        from edgekit.store import open_store

        def count(result: DeployResult) -> int:
            return sum(m.status == "ok" for r in result.runs if r.agent for m in r.agent.measurements)

        in_json = count(DeployResult.model_validate_json(self.json.read_text())) if self.json.is_file() else 0
        in_store = 0
        if self.store.is_file():
            with open_store(str(self.store)) as db:
                runs = db.runs(limit=1)
                in_store = count(db.load(runs[0].id)) if runs else 0
        return in_json, in_store


def run_cli(
    args: list[str],
    fault: Callable[[psutil.Process], None] | None = None,
    trigger: Callable[[], bool] | None = None,
    seen: Callable[[], int] = lambda: 0,
    env: dict[str, str] | None = None,
    timeout: float = 900,
) -> Run:
    """`edgekit ARGS`; once `trigger()` holds, `fault(edgekit process)`; time counted from the fault."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRAP, rss.name, EDGEKIT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
        )
        start = time.monotonic()
        best = [0]
        fired = [start]

        def watch() -> None:
            done = trigger is None
            while proc.poll() is None:
                best[0] = max(best[0], seen())
                if not done and trigger is not None and trigger():
                    done = True
                    fired[0] = time.monotonic()
                    if fault is not None:
                        children = psutil.Process(proc.pid).children()
                        fault(children[0] if children else psutil.Process(proc.pid))
                time.sleep(0.1)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        out, err = proc.communicate(timeout=timeout)
        ended = time.monotonic()
        watcher.join(5)
        peak = float(rss.read() or 0) / 1024
    return Run(proc.returncode, out, err, ended - fired[0], peak, best[0])


# -- the device ---------------------------------------------------------------------------------------------
def device_master() -> int:
    from edgekit.emu.runner import running_state

    state = running_state("pi4-emu")
    if state is None:
        raise SystemExit("pi4-emu is not running: edgekit emu up pi4-emu")
    return state.sshd_pid


@contextmanager
def resumed_after(pids: list[int]) -> Iterator[list[int]]:
    try:
        yield pids
    finally:
        for pid in pids:
            with suppress(OSError):
                os.kill(pid, signal.SIGCONT)


def freeze_device(stopped: list[int]) -> Callable[[psutil.Process], None]:
    """A frozen board: the device's sshd and everything under it (the agent too) stopped."""

    def fault(_edgekit: psutil.Process) -> None:
        master = psutil.Process(device_master())
        for proc in [master, *master.children(recursive=True)]:
            with suppress(psutil.Error):
                os.kill(proc.pid, signal.SIGSTOP)
                stopped.append(proc.pid)

    return fault


def drop_link(work: Path, stop_master: list[int] | None = None) -> Callable[[psutil.Process], None]:
    """Kill the sshd serving the agent's session (a dropped link); optionally stop the master first (the device
    cannot be reached again)."""

    def fault(_edgekit: psutil.Process) -> None:
        master = device_master()
        for proc in psutil.process_iter(["cmdline"]):
            with suppress(psutil.Error):
                if "agent.py" in " ".join(proc.info["cmdline"] or []) and proc.cwd() == str(work):
                    for parent in proc.parents():
                        if parent.ppid() == master:
                            if stop_master is not None:
                                os.kill(master, signal.SIGSTOP)
                                stop_master.append(master)
                            os.kill(parent.pid, signal.SIGKILL)
                            return

    return fault


@contextmanager
def tmpfs(path: Path) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def fill(path: Path, leave: int = 0) -> None:
    filler = path / "filler.bin"
    with filler.open("wb") as fh, suppress(OSError):
        while True:
            fh.write(b"\0" * 65536)
            fh.flush()
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))


def first_error(run: Run) -> str:
    text = run.stdout + "\n" + run.stderr
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(("error", "interrupted:")) or " FAILED " in f" {stripped} ":
            return stripped.split(" s  ", 1)[-1][:110]
    return "-"


# -- the cases ----------------------------------------------------------------------------------------------
def device_row(
    name: str,
    home: Path,
    fault_for: Callable[[Case], tuple[Callable[[psutil.Process], None], Callable[[], bool], list[int]]],
    setup: Callable[[Case], None] | None = None,
    undo: Callable[[Case], None] | None = None,
) -> Row:
    case = Case(home, name)
    if setup is not None:
        setup(case)
    fault, trigger, stopped = fault_for(case)
    with resumed_after(stopped):
        run = run_cli(case.args(), fault, trigger, case.measured_on_device)
    in_json, in_store = case.kept()
    (home.parent / f"edgekit-fault-{name.replace(' ', '-').replace('/', '-')}.log").write_text(
        run.stdout + run.stderr
    )
    if undo is not None:
        undo(case)
    again = run_cli(case.args())
    lost = max(0, run.seen_on_device - min(in_json, in_store))
    return Row(
        name,
        run.code,
        first_error(run),
        run.seconds,
        run.peak_mb,
        f"{in_json} json / {in_store} store",
        str(lost),
        "yes" if again.code == 0 else f"no (exit {again.code}: {first_error(again)})",
    )


def measured(case: Case) -> Callable[[], bool]:
    return lambda: case.measured_on_device() > 0


def cases(home: Path) -> dict[str, Callable[[], Row]]:
    def frozen_mid_run(case: Case) -> tuple[Callable[[psutil.Process], None], Callable[[], bool], list[int]]:
        stopped: list[int] = []
        return freeze_device(stopped), measured(case), stopped

    def frozen_at_push(case: Case) -> tuple[Callable[[psutil.Process], None], Callable[[], bool], list[int]]:
        stopped: list[int] = []
        return freeze_device(stopped), case.work.is_dir, stopped

    def dropped(case: Case) -> tuple[Callable[[psutil.Process], None], Callable[[], bool], list[int]]:
        return drop_link(case.work), measured(case), []

    def dropped_unreachable(
        case: Case,
    ) -> tuple[Callable[[psutil.Process], None], Callable[[], bool], list[int]]:
        stopped: list[int] = []
        return drop_link(case.work, stopped), measured(case), stopped

    def ctrl_c(case: Case) -> tuple[Callable[[psutil.Process], None], Callable[[], bool], list[int]]:
        return (lambda edgekit: edgekit.send_signal(signal.SIGINT)), measured(case), []

    def disk_full(case: Case) -> tuple[Callable[[psutil.Process], None], Callable[[], bool], list[int]]:
        return (lambda _e: None), lambda: True, []

    def disk_fills(case: Case) -> tuple[Callable[[psutil.Process], None], Callable[[], bool], list[int]]:
        return (lambda _e: fill(case.work)), measured(case), []

    def small_disk(leave: int | None) -> Callable[[Case], None]:
        def setup(case: Case) -> None:
            case._mount = tmpfs(case.work)  # type: ignore[attr-defined]
            case._mount.__enter__()  # type: ignore[attr-defined]
            if leave is not None:
                fill(case.work, leave)

        return setup

    def free_disk(case: Case) -> None:
        (case.work / "filler.bin").unlink(missing_ok=True)

    def unmount(row: Callable[[], Row], case_name: str) -> Callable[[], Row]:
        def go() -> Row:
            try:
                return row()
            finally:
                subprocess.run(
                    ["umount", "-l", str(home / "cases" / case_name / "device")],
                    check=False,
                    capture_output=True,
                )

        return go

    return {
        "frozen mid-run": lambda: device_row("frozen mid-run", home, frozen_mid_run),
        "frozen at connect/push": lambda: device_row("frozen at connect/push", home, frozen_at_push),
        "link dropped mid-run": lambda: device_row("link dropped mid-run", home, dropped),
        "link dropped, device gone": lambda: device_row(
            "link dropped, device gone", home, dropped_unreachable
        ),
        "ctrl-c mid-run": lambda: device_row("ctrl-c mid-run", home, ctrl_c),
        "disk full before upload": unmount(
            lambda: device_row("disk full before upload", home, disk_full, small_disk(1 << 20), free_disk),
            "disk full before upload",
        ),
        "disk fills mid-run": unmount(
            lambda: device_row("disk fills mid-run", home, disk_fills, small_disk(None), free_disk),
            "disk fills mid-run",
        ),
        "refused port": lambda: simple_row(
            "refused port",
            [
                "deploy",
                str(TINY),
                "-f",
                "tflite-fp32",
                "--target",
                "pi4",
                *board(f"port={closed_port()}"),
                "--no-store",
            ],
        ),
        "port never speaks SSH": silent_port_row,
        "alias-bomb recipe": lambda: bomb_row(home),
    }


def simple_row(name: str, args: list[str]) -> Row:
    run = run_cli(args)
    return Row(name, run.code, first_error(run), run.seconds, run.peak_mb, "-", "-", "n/a (fix the input)")


def board(port: str) -> list[str]:
    """`--set`s making the `pi4` target a board on 127.0.0.1 with a real key file (the emulated device's)."""
    from edgekit.emu.runner import running_state

    state = running_state("pi4-emu")
    key = state.client_key if state else "/dev/null"
    return ["--set", "host=127.0.0.1", "--set", port, "--set", f"key={key}", "--set", "connect_timeout=5"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def silent_port_row() -> Row:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        return simple_row("port never speaks SSH", ["targets", "check", "pi4", *board(f"port={port}")])


def bomb_row(home: Path) -> Row:
    levels = "".join(f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 12))
    path = home / "bomb.yaml"
    path.write_text(
        "name: t\nmodel:\n  kind: torch\n  builder: edgekit.zoo.tiny:build\n  args:\n"
        "    l0: &l0 [x, x, x, x, x, x, x, x, x]\n" + levels + "input: {shape: [1, 3, 8, 8]}\n"
        "formats: [tflite-fp32]\n"
    )
    return simple_row("alias-bomb recipe", ["convert", str(path)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated case names (substrings)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table (README)")
    opts = parser.parse_args()
    from edgekit.emu.device import ensure_device
    from edgekit.paths import emu_dir
    from edgekit.target import load_target

    os.environ.setdefault("EDGEKIT_EMU_HOME", str(emu_dir()))
    ensure_device(load_target("pi4-emu"))
    with tempfile.TemporaryDirectory(prefix="edgekit-faults-") as tmp:
        home = Path(tmp)
        os.environ["EDGEKIT_HOME"] = str(home)
        subprocess.run(
            [EDGEKIT, "convert", str(TINY), "-f", "tflite-fp32", "-f", "ncnn-fp32"],
            check=True,
            capture_output=True,
        )  # the cache, so every case times the fault and not a conversion
        rows = []
        for name, row in cases(home).items():
            if opts.only and not any(part in name for part in opts.only.split(",")):
                continue
            print(f"... {name}", file=sys.stderr, flush=True)
            rows.append(row())
            print(f"    {rows[-1]}", file=sys.stderr, flush=True)
    header = [
        "case",
        "exit",
        "first error line",
        "time to fail",
        "peak MB",
        "kept (ok meas.)",
        "lost",
        "re-run ok",
    ]
    if opts.markdown:
        print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
        for r in rows:
            print(
                f"| {r.case} | {r.code} | `{r.error}` | {r.seconds:.1f} s | {r.peak_mb:.0f} | {r.kept} | "
                f"{r.lost} | {r.rerun} |"
            )
        return
    for r in rows:
        print(
            f"{r.case:26} exit {r.code:3}  {r.seconds:6.1f} s  {r.peak_mb:6.0f} MB  kept {r.kept:18} "
            f"lost {r.lost:2}  re-run {r.rerun}\n    {r.error}"
        )


if __name__ == "__main__":
    main()
