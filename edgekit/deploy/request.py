"""What the host sends the agent: the artifacts, the evaluation inputs and the timing settings, laid out on the
device so unchanged files are never sent twice.

Device work dir layout (relative paths are the transport's work dir):

    agent.py                          the agent, pushed as is (put skips it when unchanged)
    .edgekit.lock                     flock'ed by the agent: one benchmark at a time on this device (on the host,
                                      a link to the machine's one lock: transport.local.host_lock_path)
    artifacts/<key16>/<file>          one folder per artifact content key (the conversion cache key)
    inputs/<sha16>.npy                the evaluation inputs, by content
    runs/<run id>/request-N.json      one request per agent invocation; result-N.json and outputs/ beside it
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekit.agent.contract import (
    OUTPUTS_DIR,
    TIMING_FIELDS,
    AgentRequest,
    RequestArtifact,
    TensorLayout,
)
from edgekit.convert.base import Artifact
from edgekit.errors import ConversionError, EdgekitError, InputDataError, UsageError
from edgekit.formats import Format, Runtime
from edgekit.recipe import Benchmark
from edgekit.runtimes import format_for_suffix, spec_for

AGENT_FILE = Path(__file__).resolve().parent.parent / "agent" / "agent.py"
AGENT_REMOTE = "agent.py"
LOCK_REMOTE = ".edgekit.lock"


@dataclass(frozen=True)
class AgentArtifact:
    """One artifact as the agent sees it: model files, the ncnn sidecar if any, and a content key."""

    id: str
    format: Format
    files: tuple[Path, ...]
    io: Path | None = None
    key: str = ""
    # a TFLite artifact's recorded layout (edgekit.convert.tflite_layout), sent as the request's `layout`
    layout: dict[str, Any] | None = field(default=None, compare=False)
    # only these of the run's thread counts (None: all), sent as the request's `threads`: a restarted agent
    # measures what the one that died had not
    threads: tuple[int, ...] | None = field(default=None, compare=False)

    @classmethod
    def from_artifact(cls, art: Artifact) -> AgentArtifact:
        model = tuple(f for f in art.files if not f.name.endswith(".io.json"))
        io = next((f for f in art.files if f.name.endswith(".io.json")), None)
        layout = art.provenance.get("layout") if art.format.runtime is Runtime.TFLITE else None
        return cls(art.format.value, art.format, model, io, art.key or _files_key(list(art.files)), layout)

    @classmethod
    def from_path(cls, path: Path, fmt: Format | None = None) -> AgentArtifact:
        """A user's existing model file: .tflite, .onnx, or an ncnn .param (with the .bin and optional .io.json
        beside it); the format is the file's runtime's fp32 format unless given."""
        path = Path(path)
        try:
            default = format_for_suffix(path.suffix)
        except EdgekitError as exc:
            raise UsageError(
                f"not a model file edgekit can time: {path.name}", where=str(path), hint=exc.hint
            ) from None
        if fmt is None:
            fmt = (
                _bare_ncnn_format(path.with_suffix(".param")) if default.runtime is Runtime.NCNN else default
            )
        elif path.suffix not in fmt.files:  # --format ncnn-int8 on a .tflite
            raise UsageError(
                f"--format {fmt.value} runs on {fmt.runtime.value} ({' + '.join(fmt.files)} files); this is a "
                f"{path.suffix or 'suffix-less'} file",
                where=str(path),
                hint=f"a {path.suffix} file runs on {default.runtime.value}: e.g. --format {default.value}",
            )
        files = tuple(path.with_suffix(s) for s in fmt.files)
        io = path.with_suffix(".io.json") if path.with_suffix(".io.json").is_file() else None
        for f in files:
            if not f.is_file():
                raise UsageError(
                    "file not found",
                    where=str(f),
                    hint=f"{fmt.runtime.value} needs {' and '.join(fmt.files)} beside each other, with "
                    "the same name"
                    if len(fmt.files) > 1
                    else None,
                )
        everything = [*files, *([io] if io else [])]
        return cls(path.stem, fmt, files, io, _files_key(everything), _cached_layout(path, fmt))

    def remote_files(self) -> list[tuple[Path, str]]:
        folder = f"artifacts/{self.key[:16]}"
        pairs = [(f, f"{folder}/{f.name}") for f in self.files]
        if self.io is not None:
            pairs.append((self.io, f"{folder}/{self.io.name}"))
        return pairs


@dataclass(frozen=True)
class Settings:
    """The effective timing settings: the recipe's benchmark block with the command line's overrides."""

    warmup: int = 2
    repeat: int = 10
    number: int = 1
    min_repeat_ms: float = 0.0
    threads: tuple[int, ...] = (1,)
    cooldown_s: float = 0.0
    timeout_s: float = 1800.0
    lock_timeout_s: float = 600.0
    samples: int | None = None  # evaluation samples sent to devices (None: all)
    nice: int | None = -10  # the agent asks for this priority; applied only where permitted (root), recorded
    layer_times: int = 0  # ncnn, onnxruntime: per-layer wall time over this many passes (profile on a board)

    @classmethod
    def from_benchmark(cls, bench: Benchmark, **overrides: Any) -> Settings:
        values = {k: getattr(bench, k) for k in (*TIMING_FIELDS, "timeout_s")}
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["threads"] = tuple(values["threads"])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["threads"] = list(self.threads)
        return data


def runtime_for(fmt: Format, target_runtimes: list[str]) -> str:
    """Which Python module runs `fmt` on a target: the first of its runtime's modules the target lists; a
    runtime with one module is that module; TFLite with none listed is "auto" (the agent tries each)."""
    modules = spec_for(fmt).modules()
    listed = next((r for r in target_runtimes if r in modules), None)
    if listed is not None:
        return listed
    return modules[0] if len(modules) == 1 else "auto"


def build_request(
    arts: list[AgentArtifact], settings: Settings, inputs_remote: str, run_dir: str, tflite_runtime: str
) -> AgentRequest:
    """The agent's request; every path in it is relative to the request's own folder (run_dir)."""

    def rel(remote: str) -> str:
        return posixpath.relpath(remote, run_dir)

    artifacts = []
    for art in arts:
        pairs = art.remote_files()
        artifacts.append(
            RequestArtifact(
                id=art.id,
                format=art.format.value,
                files=[rel(r) for f, r in pairs if f != art.io],
                io=rel(pairs[-1][1]) if art.io is not None else None,
                layout=TensorLayout.model_validate(_request_layout(art.layout)) if art.layout else None,
                threads=list(art.threads) if art.threads is not None else None,
            )
        )
    timing = {k: getattr(settings, k) for k in TIMING_FIELDS}
    return AgentRequest(
        artifacts=artifacts,
        inputs=rel(inputs_remote),
        **{**timing, "threads": list(settings.threads)},
        tflite_runtime=tflite_runtime,
        lock_file=rel(LOCK_REMOTE),
        lock_timeout_s=settings.lock_timeout_s,
        outputs_dir=OUTPUTS_DIR,
        nice=settings.nice,
        layer_times=settings.layer_times,
    )


def _request_layout(record: dict[str, Any]) -> dict[str, Any]:
    """The contract's part of a layout record (its `verified` stays in the artifact's provenance)."""
    return {k: record[k] for k in TensorLayout.model_fields if k in record}


def _cached_layout(path: Path, fmt: Format) -> dict[str, Any] | None:
    """The layout record of a .tflite named from edgekit's cache (`convert` lists those paths for bench and
    profile): its entry's artifact.json beside it. Any other file has none, and is fed by the shape rule."""
    if fmt.runtime is not Runtime.TFLITE:
        return None
    try:
        meta = json.loads((path.parent / "artifact.json").read_text())
        layout = meta["provenance"]["layout"] if path.name in meta["files"] else None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return layout if isinstance(layout, dict) else None


def _bare_ncnn_format(param: Path) -> Format:
    """A .param without edgekit's sidecar runs with ncnn's default options: fp16 storage (and fp16 arithmetic on
    cores that have it), which is edgekit's ncnn-fp16; int8 where its layers carry int8 scales."""
    from edgekit.convert.ncnn.param import has_int8_layers
    from edgekit.runtimes.ncnn import load_ncnn, parse_param

    if not param.is_file():
        return Format.NCNN_FP16
    parse_param(param)  # not text, no magic line: the InputDataError (exit 2) `bench X.param` gives, named
    # a user's file edgekit's reader cannot parse was ConversionError, exit 1: bad input, as bench X.param says it
    try:
        int8 = has_int8_layers(param)
    except ConversionError as exc:
        load_ncnn(param)  # ncnn's own reason, as `bench X.param` says it
        raise InputDataError(
            f"not a readable ncnn .param file ({exc.message})",
            where=str(param),
            hint="give the .param ncnn writes (pnnx or onnx2ncnn output), with its .bin beside it",
        ) from None
    return Format.NCNN_INT8 if int8 else Format.NCNN_FP16


def inputs_remote(local: Path) -> str:
    return f"inputs/{_files_key([local])[:16]}.npy"


def _files_key(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(hashlib.sha256(Path(f).read_bytes()).digest())
    return digest.hexdigest()
