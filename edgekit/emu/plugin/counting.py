"""Count the guest instructions one inference of an artifact executes on an emulated device, locally.

The emulated device's python wrapper (built by `edgekit emu build NAME`) switches to the plugin-capable
qemu when EDGEKIT_QEMU_PLUGIN is set; runner.py marks each window of `number` invocations. No sshd is
needed: this runs the device's python directly on this machine. Counts are instruction counts, not cycles.
With one thread they are exactly the same on every run, given the same jobs in the same order: the guest
runs with a fixed environment, a fixed hash seed and no address randomization (each changed counts).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgekit.child_death import die_with_edgekit
from edgekit.emu import layout
from edgekit.emu.guests import scratch
from edgekit.emu.plugin import build as plugin_build
from edgekit.emu.plugin import cycles
from edgekit.emu.specs import device_spec
from edgekit.errors import EdgekitError, EmulatorError, exit_text
from edgekit.runtimes import all_specs, format_for_suffix, spec_for

RUNNER = Path(__file__).with_name("runner.py")
# a count under qemu that lasts says so this often, as convert's children do (onnx2tf_run.PROGRESS_EVERY_S): a
# profile of 161 prefix models said nothing for minutes; EDGEKIT_HEARTBEAT_S shortens it (tests)
HEARTBEAT_EVERY_S = 15.0
_HEARTBEAT: ContextVar[tuple[Callable[[str], None], str] | None] = ContextVar(
    "edgekit_heartbeat", default=None
)
RUNTIMES = tuple(m for spec in all_specs() for m in spec.modules())  # the registry's device modules
NEWER_RUNTIMES = (
    "onnxruntime",
    "cv2",
    "MNN",
)  # counts keyed on their own versions (not in the site/* wheel list)
LABEL = "guest instruction count (not cycles); emulated wall times are not device latency"
MIX = ("simd_fp", "simd_ldst", "ldst", "branch", "other")  # the plugin's instruction classes, in its order


@dataclass
class CountJob:
    """One artifact to count: `repeat` windows of `number` invocations after `warmup` invocations."""

    artifact: Path
    threads: int = 1
    runtime: str | None = None  # default: the first module of the file's runtime (.param ncnn, .tflite
    # ai_edge_litert, .onnx onnxruntime; cv2 for OpenCV DNN)
    input_shape: list[int] | None = (
        None  # an ncnn .param without its sidecar (NCHW); a .tflite with free dims
    )
    number: int = 1
    repeat: int = 2
    warmup: int = 1
    fill: float | None = None  # every input element this value (benchncnn fills 0.01); default seeded uniform
    options: dict[str, bool] = field(default_factory=dict)  # ncnn Option flags over the sidecar's
    caches: tuple[str, ...] = ()  # simulated data caches, the plugin's "l1=SIZE:WAYS", "l2=...", ["l3=..."]
    site: str | None = None  # a folder first on the guest's sys.path: another release of the runtime than the
    # device's (bench/estimate_cv.py --ncnn-site: the release a published figure was measured with)
    # also time the last window's executed blocks by LLVM's model of the core (cycles.py); only on a core it
    # models; the job runs in a guest of its own
    blocks: bool = False

    def request(self) -> dict:
        try:
            runtime = self.runtime or spec_for(format_for_suffix(Path(self.artifact).suffix)).modules()[0]
        except EdgekitError as exc:
            raise EmulatorError(str(exc.message), where=str(self.artifact), hint=exc.hint) from None
        if runtime not in RUNTIMES:
            raise EmulatorError(
                f"unknown runtime {runtime!r}", where=str(self.artifact), hint=f"one of {RUNTIMES}"
            )
        artifact = Path(self.artifact)
        if runtime == "ncnn" and not self.input_shape and not artifact.with_suffix(".io.json").exists():
            raise EmulatorError(
                "an ncnn artifact without its model.io.json sidecar needs its input shape",
                where=str(artifact),
                hint="pass --input-shape 1,3,224,224 (NCHW)",
            )
        req = {
            "artifact": str(artifact.resolve()),
            "runtime": runtime,
            "threads": self.threads,
            "input_shape": self.input_shape,
            "number": self.number,
            "repeat": self.repeat,
            "warmup": self.warmup,
            "fill": self.fill,
            "options": dict(self.options),
        }
        if self.caches:  # (only then: count cache keys of runs without caches stay as they were)
            req["caches"] = list(self.caches)
        if self.site:  # (likewise)
            req["site"] = str(Path(self.site).resolve())
        if self.blocks:  # (likewise)
            req["blocks"] = True
        if runtime in NEWER_RUNTIMES:  # part of the count cache key (edgekit.estimate.counts)
            req["runtime_wheels"] = sorted(
                p.name for site in layout.shared().runtime_sites for p in site.glob("*.dist-info")
            )
        return req


@dataclass
class CountResult:
    """Guest instructions per invocation of one artifact on one emulated CPU, one value per window."""

    artifact: str
    device: str
    cpu: str
    runtime: str
    threads: int
    number: int
    per_invoke: list[int]
    emulated_ms_per_invoke: list[float] = field(default_factory=list)  # wall time under qemu+plugin
    per_thread: list[list[int]] = field(default_factory=list)  # per window: each guest thread's share
    mix: list[list[int]] = field(default_factory=list)  # per window: simd_fp, simd_ldst, ldst, branch, other
    misses: list[list[int]] = field(
        default_factory=list
    )  # per window with caches: accesses, then each level's
    outputs: list[str] | None = None  # the blobs extracted (ncnn)
    # per invocation, the last window's blocks timed by llvm-mca (blocks=True); -1: not timed
    cycles: float = -1.0

    @property
    def instructions(self) -> int:
        """The count to report: the median window (windows of one run differ by < 0.1 %: allocator state)."""
        ordered = sorted(self.per_invoke)
        return ordered[len(ordered) // 2]

    def _median_window(self, per_window: list[list[int]]) -> list[int]:
        """`per_window`'s entry for the median window (by instruction count); [] if there is none."""
        ordered = sorted(zip(self.per_invoke, per_window), key=lambda pair: pair[0])
        return list(ordered[len(ordered) // 2][1]) if ordered else []

    @property
    def window_split(self) -> list[int]:
        """Each guest thread's instructions in the median window ([] when the plugin gave no split)."""
        return self._median_window(self.per_thread)

    @property
    def busiest_thread(self) -> int:
        """The largest one-thread share of the median window (all of it at one thread): with N threads the
        busiest thread bounds the time, whatever the total."""
        return max(self.window_split, default=self.instructions)

    @property
    def window_misses(self) -> list[int]:
        """With caches: the median window's data accesses, then each simulated level's misses; else []."""
        return self._median_window(self.misses)

    @property
    def spread(self) -> float:
        """(max - min) / median over the windows."""
        return (max(self.per_invoke) - min(self.per_invoke)) / max(1, self.instructions)

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "instructions": self.instructions,
            "busiest_thread": self.busiest_thread,
            "spread": self.spread,
            "label": LABEL,
        }


def count_artifact(artifact: Path, device: str, **job: object) -> CountResult:
    """Count one artifact (keyword arguments as CountJob's)."""
    return count_artifacts([CountJob(Path(artifact), **job)], device)[0]  # type: ignore[arg-type]


def count_artifacts(jobs: list[CountJob], device: str, timeout_s: float = 3600) -> list[CountResult]:
    """Count every job on emulated DEVICE; one guest process per python flavour, cache set and
    site, jobs in the given order."""
    requests = [job.request() for job in jobs]
    device_spec(device)  # an unknown name fails here with the list of known devices
    plugin = plugin_build.require_plugin()
    results: dict[int, dict] = {}

    def guest(i: int) -> tuple:
        """One guest per cache set and site (a guest imports a runtime once); a job whose blocks are timed has its
        own (the plugin's block list read is the guest's last window)."""
        r = requests[i]
        return tuple(r.get("caches", ())), r.get("site"), i if r.get("blocks") else -1

    for flavour in ("litert", "tflite_runtime"):
        for key in dict.fromkeys(map(guest, range(len(requests)))):
            idx = [
                i
                for i, r in enumerate(requests)
                if (r["runtime"] == "tflite_runtime") == (flavour != "litert") and guest(i) == key
            ]
            if idx:
                out = _run_guest(
                    device, flavour, [requests[i] for i in idx], plugin, timeout_s, key[0], blocks=key[2] >= 0
                )
                results.update(zip(idx, out))
    counted = []
    for i, req in enumerate(requests):
        res = results[i]
        if "error" in res:
            raise EmulatorError(f"counting failed: {res['error']}", where=req["artifact"])
        counted.append(
            CountResult(
                artifact=req["artifact"],
                device=device,
                cpu=device_spec(device).cpu,
                runtime=req["runtime"],
                threads=req["threads"],
                number=req["number"],
                per_invoke=[int(c) for c in res["per_invoke"]],
                emulated_ms_per_invoke=[float(t) for t in res["emulated_ms_per_invoke"]],
                per_thread=[[int(c) for c in w] for w in res.get("per_thread") or []],
                mix=[[int(c) for c in w] for w in res.get("mix") or []],
                misses=[[int(c) for c in w] for w in res.get("misses") or [] if w],
                outputs=res.get("outputs"),
                cycles=_cycles(res["blocks"], device, req) if "blocks" in res else -1.0,
            )
        )
    return counted


def _cycles(blocks: cycles.Blocks, device: str, req: dict) -> float:
    """Per invocation: the last window's llvm-mca cycles on the device's core (cycles.py)."""
    return cycles.window_cycles(blocks, device_spec(device).cpu).cycles / max(1, req["number"])


def _run_guest(
    device: str,
    flavour: str,
    requests: list[dict],
    plugin: Path,
    timeout_s: float,
    caches: tuple[str, ...] = (),
    blocks: bool = False,
) -> list[dict]:
    dev = layout.device_dir(device)
    python = dev.python_tflite_runtime if flavour == "tflite_runtime" else dev.python
    if not python.exists():
        raise EmulatorError(
            f"emulated device {device} is not built",
            where=str(python),
            hint=f"run `edgekit emu build {device}`",
        )
    threads = max(r["threads"] for r in requests)
    with scratch(
        "count"
    ) as tmp:  # not /tmp: a kill -9 there left a folder nothing finds (emu.guests.scratch)
        insn_file = Path(tmp) / "insns.txt"
        insn_file.touch()
        request = Path(tmp) / "request.json"
        request.write_text(json.dumps({"insn_file": str(insn_file), "jobs": requests}))
        block_file = Path(tmp) / "blocks.txt"
        if blocks:
            caches = (*caches, f"blocks={block_file}")
        cmd = ["setarch", "-R", str(python), str(RUNNER), str(request)]
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_guest_env(plugin, insn_file, threads, caches),
            # a kill -9 of edgekit left this qemu at 100 % CPU, reparented to PID 1 (set between fork and exec)
            preexec_fn=die_with_edgekit(),  # noqa: PLW1509 - libc looked up before the fork
        )
        try:
            stdout, stderr = wait_saying(
                proc, timeout_s, lambda: _model_at(insn_file, [int(r.get("repeat", 1)) for r in requests])
            )
        except subprocess.TimeoutExpired as exc:
            raise EmulatorError(
                f"counting run outlived {timeout_s:g} s",
                where=device,
                # estimate and profile both take --timeout; neither has a --repeat (it was named here)
                hint="a big model takes minutes under qemu: give the command a longer --timeout, or count a "
                "smaller model",
            ) from exc
        finally:  # any way out (a timeout, Ctrl-C) ends the guest
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        timed = cycles.read_blocks(block_file) if blocks and block_file.exists() else None
    lines = stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise EmulatorError(
            f"counting run failed ({exit_text(proc.returncode)}): {stderr.strip()[-1500:]}",
            where=device,
        )
    results = json.loads(lines[-1])["results"]
    if timed is not None:
        results[-1]["blocks"] = timed
    return results


@contextmanager
def heartbeat(say: Callable[[str], None] | None, what: str) -> Iterator[None]:
    """While inside, every guest run under qemu that this thread waits on (count_artifacts, profile's guests)
    says `still counting WHAT (N s, model i of n)` through `say` every HEARTBEAT_EVERY_S; `say` None: silent."""
    token = _HEARTBEAT.set(None if say is None else (say, what))
    try:
        yield
    finally:
        _HEARTBEAT.reset(token)


def heartbeat_every_s() -> float:
    try:
        every = float(os.environ.get("EDGEKIT_HEARTBEAT_S") or HEARTBEAT_EVERY_S)
    except ValueError:
        return HEARTBEAT_EVERY_S
    return every if every > 0 else HEARTBEAT_EVERY_S


def wait_saying(
    proc: subprocess.Popen, timeout_s: float, where: Callable[[], str] | None = None
) -> tuple[str, str]:
    """proc.communicate(timeout=timeout_s) (subprocess.TimeoutExpired after it), saying the elapsed time (and
    `where()`, e.g. 'model 3 of 161') every heartbeat_every_s() while inside `heartbeat`."""
    beat = _HEARTBEAT.get()
    if beat is None:
        stdout, stderr = proc.communicate(timeout=timeout_s)
        return stdout, stderr
    say, what = beat
    every = heartbeat_every_s()
    start = time.monotonic()
    said = 0.0
    while True:
        left = timeout_s - (time.monotonic() - start)
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
        try:
            stdout, stderr = proc.communicate(timeout=min(1.0, every, left))
            return stdout, stderr
        except subprocess.TimeoutExpired:
            pass
        elapsed = time.monotonic() - start
        if elapsed - said >= every:
            said = elapsed
            at = where() if where is not None else ""
            say(f"still counting {what} ({elapsed:.0f} s{', ' + at if at else ''})")


def _model_at(insn_file: Path, windows: Sequence[int]) -> str:
    """'model i of n' of a guest counting n jobs of windows[k] windows each: the plugin writes one line per
    window to insn_file, so the lines written say how many jobs are done; '' for a single job."""
    if len(windows) < 2:
        return ""
    try:
        done_windows = insn_file.read_bytes().count(b"\n")
    except OSError:
        return ""
    done = 0
    for n in windows:
        if done_windows < n:
            break
        done_windows -= n
        done += 1
    return f"model {min(done + 1, len(windows))} of {len(windows)}"


def _guest_env(plugin: Path, insn_file: Path, threads: int, caches: tuple[str, ...] = ()) -> dict[str, str]:
    """A fixed, minimal environment: qemu hands it to the guest, and its size shifts the guest stack, which
    moved counts by a few dozen instructions; a random hash seed moved them by hundreds (measured)."""
    return {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": str(threads),
        "OMP_WAIT_POLICY": "PASSIVE",
        "EDGEKIT_QEMU_PLUGIN": ",".join([str(plugin), f"out={insn_file}", *caches]),
        "EDGEKIT_INSN_FILE": str(insn_file),
        "EDGEKIT_QEMU_DYNAMIC": str(plugin_build.counting_qemu()),
    }
