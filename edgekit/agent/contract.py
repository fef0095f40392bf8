"""The agent contract, host side: the request edgekit sends, the protocol version, the failure codes.

The on-device agent (agent.py) is one standalone file that cannot import edgekit, so it keeps its own copy of
PROTOCOL_VERSION, ERROR_CODES, the exit statuses, the outputs file's name and how it saves an output input by
input (per_input_key); tests/test_contract.py checks that the copies agree, that the agent reads exactly the
request fields typed here, and that a result field the host does not know is found (edgekit.results keeps it,
`unknown_fields` names it, the session warns). The result side lives in
edgekit.results (AgentResult, Measurement): its memory figures are MiB, read right after the timed runs with the
model loaded (not during the accuracy pass). Bump PROTOCOL_VERSION whenever the JSON shape of a request or a result
changes incompatibly; additive fields (layer_times, deadline_s, overhead_ms_per_invoke, an artifact's layout and threads) do
not.
"""

from __future__ import annotations

import hashlib
import re
from enum import Enum
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    import numpy as np

PROTOCOL_VERSION = 1
# The timing vocabulary (TVM's): `repeat` samples of `number` invocations (or >= min_repeat_ms each) after
# `warmup` invocations, at each of `threads`, `cooldown_s` between measurements. recipe.Benchmark defines the
# fields with their bounds and defaults; everything that carries timing settings takes these names from here.
TIMING_FIELDS = ("warmup", "repeat", "number", "min_repeat_ms", "threads", "cooldown_s")
OUTPUTS_DIR = "outputs"  # the request's outputs_dir, in the run folder
# The agent's exit statuses the host reads (besides 0 ok, 1 a crash):
EXIT_BAD_REQUEST = (
    2  # the request asked what the device cannot do (an affinity naming cpus it has not online)
)
EXIT_LOCKED = 3  # another benchmark holds the device's lock
EXIT_DEADLINE = 4  # the agent stopped itself at the request's deadline_s
EXIT_CANNOT_WRITE = 5  # the agent could not write its result, lock or outputs (a full disk is DeviceDiskFull)
# The agent's stdout lines, `EDGEKIT_<KIND> {json}`: START, MEASUREMENT (one each, kept if the link drops) and,
# additive (no protocol bump: a host that does not know a kind skips its line), WAITING: another benchmark holds
# the device's lock, {"holder": "pid N since T", "waited_s", "lock_timeout_s"}, at once and every WAITING_EVERY_S
STREAM_WAITING = "WAITING"
WAITING_EVERY_S = 30.0


def outputs_file_name(outputs_dir: str, artifact: str, threads: int) -> str:
    """The name the agent saves an artifact's outputs under, relative to the run folder (agent.py's
    outputs_name; tests/test_contract.py checks they agree). It is the only `outputs_file` a result may name: the
    host downloads that file to the same name under its own folder, so anything else (an absolute path, `..`)
    would let a device write where it likes on this machine."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", artifact)
    return f"{outputs_dir}/{safe}.t{threads}.npz"


# An output whose shape differs between the evaluation inputs (NonZero, a detector's built-in NMS: 3 boxes on one
# image, 5 on the next) cannot be stacked over them: the agent saves it input by input in the same .npz, under
# per_input_key(key, j) for input j (0, 1, ...), names it in the measurement's output_keys as per_input_key(key)
# ("KEY@*"), records -1 in output_shapes on each axis whose size differs, and checksums it as one
# per_input_checksum. A stacked output's key never holds the mark (keys are [A-Za-z0-9_.-]). The agent keeps copies
# (agent.py's per_input_key, per_input_checksum); tests/test_contract.py checks they agree.
PER_INPUT_MARK = "@"


def per_input_key(key: str, j: int | None = None) -> str:
    """An output saved input by input: its .npz key for input `j`, or (no `j`) the name output_keys gives it."""
    return f"{key}{PER_INPUT_MARK}{'*' if j is None else j}"


def per_input_checksum(arrays: list[np.ndarray]) -> str:
    """One sha256 over every input's array of an output saved input by input, each array's shape before its bytes
    (so no value can move from one input to another unseen)."""
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(f"{[int(d) for d in a.shape]};".encode())
        digest.update(a.tobytes())  # C order, whatever the array's own
    return digest.hexdigest()


class ErrorCode(str, Enum):
    """Why a measurement failed (after TVM's MeasureErrorNo): set by the agent for what it sees, by the host
    for what only the host can see (a crash, a timeout, an artifact never started)."""

    LOAD_ERROR = "load_error"  # the runtime could not open the artifact on this device (agent)
    RUN_ERROR = "run_error"  # opened, but an invocation or the outputs failed (agent)
    CRASH = "crash"  # the agent process died while measuring it (host)
    TIMEOUT = "timeout"  # the run outlived benchmark.timeout_s (host)
    NOT_RUN = "not_run"  # never started: an earlier failure, a lost link, a full disk (host)
    INTERRUPTED = "interrupted"  # Ctrl-C before it was measured (host)
    # the device's python does not have the artifact's runtime (the agent's load error said no module of it):
    # the measurement is `skipped`, its error naming the runtime and the fix (host: deploy/runtime_missing.py)
    RUNTIME_MISSING = "runtime_missing"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorLayout(_Strict):
    """A TFLite artifact's recorded layout (edgekit.convert.tflite_layout): `input`, the axes that turn the ONNX
    model's input (batch included) into the TFLite input; `outputs`, per TFLite output in the interpreter's order,
    the axes that turn it back into the ONNX model's layout (None: as it is). The agent feeds and saves by it; an
    artifact without it is fed by the shape rule (as is, or NCHW -> NHWC when that is the model's shape)."""

    input: list[int] | None = None
    outputs: list[list[int] | None] = Field(default_factory=list)

    @model_validator(mode="after")
    def _permutations(self) -> TensorLayout:
        for axes in [self.input, *self.outputs]:
            if axes is not None and sorted(axes) != list(range(len(axes))):
                raise ValueError(f"{axes} is not a permutation of the axes 0..{len(axes) - 1}")
        return self


class RequestArtifact(_Strict):
    """One artifact for the agent; paths are relative to the request's folder."""

    id: str
    format: str
    files: list[str]
    io: str | None = None  # the ncnn model.io.json sidecar
    layout: TensorLayout | None = None  # additive: a TFLite artifact's recorded layout
    # additive: of the request's thread counts, only these for this artifact (None: all of them); a restart
    # after the agent died between two of its measurements asks for the ones it had not measured yet
    threads: list[int] | None = None


class RandomInputs(_Strict):
    """Seeded uniform inputs generated on the device: `samples` x `shape` in [low, high)."""

    shape: list[int]
    seed: int = 0
    samples: int = 1
    low: float = 0.0
    high: float = 1.0


class AgentRequest(_Strict):
    """What request.json holds. Paths are relative to the request's own folder on the device."""

    protocol: int = PROTOCOL_VERSION
    artifacts: list[RequestArtifact] = Field(default_factory=list)
    inputs: str | None = None  # .npy of evaluation inputs
    random_inputs: RandomInputs | None = None  # instead of `inputs` (edgekit bench without data)
    threads: list[int] = Field(default_factory=lambda: [1])
    warmup: int = 1
    repeat: int = 10
    number: int = 1
    min_repeat_ms: float = 0.0
    cooldown_s: float = 0.0
    tflite_runtime: str = "auto"
    lock_file: str | None = None
    lock_timeout_s: float = 600.0
    outputs_dir: str = "outputs"
    nice: int | None = None
    affinity: str | None = None  # big, little, all or a cpu list (Linux boards and phones)
    layer_times: int = (
        0  # ncnn, onnxruntime: each layer's own wall time over this many passes (0: not measured)
    )
    # additive: the agent stops itself (exit 4, its stack on stderr if a runtime hangs) once it has run this long,
    # so an agent whose host is gone (a link lost without a reset) cannot hold the device lock for hours; the
    # host sends its own timeout for the run plus a grace, so a host still there always stops it first
    deadline_s: float | None = None
