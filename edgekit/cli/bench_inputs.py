"""A model file given to `edgekit bench` or `edgekit profile` without a recipe: the format edgekit made it as (its
sidecar), and what it is fed: the user's .npy, or one seeded random sample of the model's input shape, from
--shape, the file's sidecar or the file itself (.tflite, a fixed-shape .onnx, .mnn or OpenVINO .xml). A shape the
model cannot take is refused here, before the agent starts on the target."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgekit.agent.agent import fit_shape
from edgekit.cli.shapes import parse_shape
from edgekit.convert.shaping import refuse_non_real
from edgekit.errors import InputDataError, UsageError
from edgekit.formats import Format
from edgekit.path_kind import PathKind, path_kind

if TYPE_CHECKING:
    from edgekit.deploy import AgentArtifact


def bench_inputs(
    art: AgentArtifact, given: Path | None, shape: str | None, folder: Path, option: str = "--shape"
) -> Path:
    """The inputs file the agent gets: the user's .npy, or one seeded uniform sample of the model's shape. `option`
    is the shape's option as the command spells it (bench's --shape, profile's --input-shape)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "inputs.npy"
    onnx = art.files[0].suffix == ".onnx"
    agent_shape = (
        _onnx_agent_shape(art.files[0])[0] if onnx else None
    )  # one input, or refused (bench feeds one)
    if given is not None:
        if shape:  # it was ignored: the file's samples were timed, whatever --shape said
            raise UsageError(
                f"{option} sets the shape of random inputs; --input's samples are timed at their own shape",
                where=option,
                hint=f"leave out {option} (or --input, to time random inputs of that shape)",
            )
        if not given.is_file():
            raise UsageError(
                _not_a_file(given), where=str(given), hint="give a .npy file saved with numpy.save"
            )
        data = read_npy(given)
        refuse_non_real(data.dtype, "--input", str(given))
        if data.ndim < 2 or data.shape[0] == 0 or not np.issubdtype(data.dtype, np.number):
            raise InputDataError(
                f"an array of shape {list(data.shape)} and type {data.dtype} holds no input samples",
                where=str(given),
                hint="numbers, first axis = sample, e.g. shape [8, 1, 3, 224, 224] for 8 samples",
            )
        known = agent_shape or _file_shape(
            art
        )  # an .onnx: its fixed dimensions (a dynamic one takes the sample's)
        if known and art.layout and tuple(data.shape[1:]) not in (known, known[1:]):
            raise UsageError(  # the agent moves the sample by the recorded layout: no other shape fits
                f"samples of shape {list(data.shape[1:])} do not fit this artifact's input {list(known)} (the "
                "original model's layout, which its recorded layout moves into the .tflite's; the first axis of "
                "the array is the sample)",
                where="--input",
                hint=f"samples of shape {list(known)}, as the recipe's data reaches the original model",
            )
        if known:  # checked here, not after the agent started on the target (the agent applies the same fit)
            try:
                fit_shape(data[0], known, _free(_onnx_agent_shape(art.files[0])[1]) if onnx else ())
            except ValueError as exc:
                raise UsageError(
                    f"{exc} (the first axis of the array is the sample)",
                    where="--input",
                    hint=f"samples of shape {list(known)} (an NHWC TFLite model also takes NCHW samples)",
                ) from None
        if (
            art.files[0].suffix == ".param"
        ):  # ncnn states no shape: its rank and first layer's channels, as --shape
            _check_ncnn_sample(art, tuple(data.shape[1:]))
        with np.errstate(over="ignore"):  # beyond float32's range: infinite, refused below
            inputs = data.astype(np.float32)
        finite = np.isfinite(inputs.reshape(len(inputs), -1)).all(axis=1)
        if not finite.all():  # as recipe data: timing NaN says nothing of real inputs (some kernels take
            bad = np.flatnonzero(~finite)  # other paths on them)
            raise InputDataError(
                f"sample {int(bad[0])} (index from 0; {len(bad)} of {len(inputs)} samples) holds NaN or infinity "
                "once float32",
                where=str(given),
                hint="fix or drop those samples; float64 values beyond float32's range (3.4e38) become infinite",
            )
        np.save(path, inputs)
        return path
    dims = _shape(art, shape, option)
    np.save(path, np.random.default_rng(0).uniform(0.0, 1.0, (1, *dims)).astype(np.float32))
    return path


def read_npy(path: Path) -> np.ndarray:
    """The array of the .npy at PATH, its header read first: a file that is no .npy (an .npz too), a header whose
    array the file does not hold (truncated, or a corrupt shape), or an array more than MAX_DATA_BYTES as float32
    is InputDataError naming the file, before anything is allocated. No pickles: an object array is refused."""
    from edgekit.fidelity.npy_header import read_header
    from edgekit.recipe.schema import MAX_DATA_BYTES

    hint = "save one with numpy.save"
    try:
        with path.open("rb") as f:
            shape, _fortran, dtype = read_header(f)
            offset = f.tell()
        count = math.prod(shape)
        if offset + count * dtype.itemsize > path.stat().st_size and not dtype.hasobject:
            raise InputDataError(
                f"its header says an array of shape {list(shape)} and type {dtype} ({count * dtype.itemsize:,} "
                f"bytes), but the file holds {path.stat().st_size - offset:,} bytes after the header: truncated "
                "or corrupt",
                where=str(path),
                hint=hint,
            )
        if count * 4 > MAX_DATA_BYTES:  # held in memory as float32
            raise InputDataError(
                f"an array of shape {list(shape)} is {count * 4 / (1 << 30):.1f} GiB as float32, more than edgekit "
                f"holds in memory ({MAX_DATA_BYTES >> 30} GiB)",
                where=str(path),
                hint="bench a few samples: save fewer (e.g. numpy.save(path, x[:8]))",
            )
        return np.load(path)
    except (ValueError, OSError, EOFError) as exc:
        raise InputDataError(f"not a numeric .npy array: {exc}", where=str(path), hint=hint) from None


def sample_shape(inputs: Path) -> list[int]:
    """The shape of one sample of the inputs file (its first axis is the sample)."""
    return [int(d) for d in np.load(inputs, mmap_mode="r").shape[1:]]


def sidecar_shape(art: AgentArtifact) -> list[int] | None:
    """The input shape an ncnn model's model.io.json states (the shape it was converted and checked at), else None."""
    if art.io is None:
        return None
    try:
        shapes = json.loads(art.io.read_text()).get("input_shapes") or []
        return [int(d) for d in shapes[0]] if shapes else None
    except (ValueError, OSError, TypeError, AttributeError):
        return None


def ncnn_shape(sample: list[int] | tuple[int, ...], stated: list[int] | None) -> list[int]:
    """The shape the agent runs an ncnn model at for one sample of shape SAMPLE, batch first as --shape spells it
    (edgekit.agent's NcnnRunner.set_input): the sidecar's STATED shape when the sample holds as many numbers, else
    the sample without leading axes of 1 beyond three; a C,H,W sample is 1,C,H,W (ncnn has no batch axis: the
    same model)."""
    if stated and math.prod(stated) == math.prod(sample):
        return list(stated)
    dims = [int(d) for d in sample]
    while len(dims) > 3 and dims[0] == 1:
        dims = dims[1:]
    return [1, *dims] if len(dims) == 3 else dims


def _check_ncnn_sample(art: AgentArtifact, sample: tuple[int, ...]) -> None:
    """An --input sample an ncnn model cannot take (its rank, its first layer's channels) is refused as the same
    shape given to --shape is: ncnn runs a wrong channel count anyway, and times a model that does not exist."""
    from edgekit.estimate.ncnn_model import check_input_shape

    stated = sidecar_shape(art)
    dims = ncnn_shape(sample, stated)
    try:
        check_input_shape(art.files[0], [1, *dims] if len(dims) < 3 else dims)  # an H,W sample is 1 channel
    except InputDataError as exc:
        example = (
            ",".join(map(str, stated[1:] if stated and stated[0] == 1 else stated)) if stated else "C,H,W"
        )
        raise InputDataError(
            f"{exc.message} (a sample of the array: its first axis is the sample, each of shape {list(sample)})",
            where="--input",
            hint=f"an array of N samples of shape {example} (shape N,{example})"
            + ("" if stated else ", C the channels the model's first layer takes"),
        ) from None


def _shape(art: AgentArtifact, text: str | None, option: str) -> tuple[int, ...]:
    if text:
        dims = tuple(parse_shape(text, option) or ())
        _check_given_shape(art, dims, option)
        return dims
    or_input = " or --input x.npy" if option == "--shape" else ""  # profile has no --input
    if art.io is not None:
        shapes = json.loads(art.io.read_text()).get("input_shapes") or []
        if shapes:
            return tuple(shapes[0])
    known = _file_shape(art)
    if known:
        return known
    if art.files[0].suffix == ".onnx":
        shape, dynamic = _onnx_agent_shape(art.files[0])
        if dynamic == [0] and len(shape) > 1:  # only the batch is free: batch 1, the rest the model's own
            import typer

            typer.echo(f"note: {_onnx_batch_note(art.files[0])}", err=True)  # profile's stdout: the table
            return shape
    raise UsageError(
        f"the input shape of this {art.files[0].suffix or 'suffix-less'} model is unknown (no model.io.json "
        "sidecar beside it, and the file does not state a fixed one)",
        where=str(art.files[0]),
        hint=f"pass {option} 1,3,224,224 (batch first, as the original model){or_input}",
    )


def _check_given_shape(art: AgentArtifact, dims: tuple[int, ...], option: str) -> None:
    """A --shape the model cannot take is bad input, refused here before the agent starts (as --input is): an
    ncnn model's rank and first layer's channels, a shape a .tflite states itself, an .onnx's fixed dimensions."""
    if art.files[0].suffix == ".param":
        from edgekit.estimate.ncnn_model import check_input_shape

        check_input_shape(art.files[0], list(dims))
        return
    if art.files[0].suffix == ".onnx":
        _check_onnx_shape(art.files[0], dims, option)
        return
    known = _file_shape(art)
    if known and art.layout and dims not in (known, known[1:]):  # moved by the recorded layout: exactly this
        raise UsageError(
            f"shape {','.join(map(str, dims))} does not fit this artifact's input {list(known)} (the original "
            "model's layout, which its recorded layout moves into the .tflite's)",
            where=option,
            hint=f"pass {option} {','.join(map(str, known))} (batch first, as the original model)",
        )
    if known:
        try:
            fit_shape(np.broadcast_to(np.float32(0), dims), known)
        except ValueError as exc:
            raise UsageError(
                str(exc), where=option, hint=f"this model takes {','.join(map(str, known))} (batch first)"
            ) from None


def _file_shape(art: AgentArtifact) -> tuple[int, ...] | None:
    """The input shape a .tflite, or a fixed-shape .onnx, .mnn or OpenVINO .xml, states itself, else None (also
    where this host lacks the runtime that reads it)."""
    path = art.files[0]
    if path.suffix == ".tflite":
        from edgekit.runtimes.tflite import load_tflite

        detail = load_tflite(path).get_input_details()[0]
        shape = tuple(int(d) for d in detail["shape"])
        perm = (art.layout or {}).get("input")
        if isinstance(perm, list) and sorted(perm) == list(range(len(shape))):
            # an artifact of edgekit's cache: its recorded layout moves a sample in the ONNX model's layout into
            # the file's (the agent applies it), so the shape to make and check is the ONNX model's
            onnx = [0] * len(shape)
            for axis, size in zip(perm, shape, strict=True):
                onnx[axis] = size
            return tuple(onnx)
        return shape
    if path.suffix == ".onnx":
        return _onnx_static_shape(path)
    if path.suffix == ".mnn":  # MNN ran a shape it cannot take as an empty forward, timed as if it worked
        return _static(_mnn_input_shape(path))
    if path.suffix == ".xml":
        return _static(_openvino_input_shape(path))
    return None


def _static(shape: list[int] | None) -> tuple[int, ...] | None:
    return tuple(shape) if shape and all(d > 0 for d in shape) else None


def _mnn_input_shape(path: Path) -> list[int] | None:
    from edgekit.runtimes.mnn import c_stdout_silenced

    with c_stdout_silenced():  # MNN's import prints "The device supports: ..." on fd 1, into bench's output
        try:
            import MNN
        except ImportError:
            return None
        try:
            inputs = MNN.nn.load_module_from_file(str(path), [], []).get_info()["inputs"]
        except Exception:  # noqa: BLE001 - a file MNN cannot read is named when the agent loads it
            return None
    return [int(d) for d in inputs[0].shape] if inputs else None


def _openvino_input_shape(path: Path) -> list[int] | None:
    try:
        import openvino as ov
    except ImportError:
        return None
    try:
        shape = ov.Core().read_model(str(path)).inputs[0].get_partial_shape()
    except Exception:  # noqa: BLE001 - as for MNN: the agent names what it cannot load
        return None
    return [int(d.get_length()) for d in shape] if shape.is_static else None


def _onnx_static_shape(path: Path) -> tuple[int, ...] | None:
    """The graph input's shape when every dimension is a number, else None (a free batch too: bench and profile
    take it as 1, and say so). A model of more than one input is refused (UsageError): bench feeds one."""
    shape, dynamic = _onnx_agent_shape(path)
    return shape if shape and not dynamic else None


def _onnx_agent_shape(path: Path) -> tuple[tuple[int, ...], list[int]]:
    """The .onnx's graph input shape, every dynamic dimension 1 (random inputs are made at that size; a sample
    given sets it: onnxruntime's runner in edgekit.agent feeds a dynamic dimension the sample's size), and the
    axes that are dynamic; a model with no input or more than one is a UsageError."""
    from edgekit.convert.onnx_file import read_onnx

    graph = read_onnx(path, str(path)).graph
    weights = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs)
        raise UsageError(
            f"this model has {len(inputs)} inputs{f' ({names})' if names else ''}: bench feeds one input",
            where=str(path),
            hint="bench times a model on one input of random data: export one with a single input (the others "
            "folded in as constants) to bench it",
        )
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims)
    return shape, [axis for axis, d in enumerate(dims) if d.dim_value <= 0]


def _onnx_batch_note(path: Path) -> str:
    """What `edgekit estimate` says of a free batch it takes as 1 (edgekit.estimate.onnx_graph), for the .onnx's
    one graph input."""
    from edgekit.convert.onnx_file import read_onnx

    graph = read_onnx(path, str(path)).graph
    weights = {init.name for init in graph.initializer}
    (vi,) = [i for i in graph.input if i.name not in weights]  # one input: _onnx_agent_shape refused others
    label = vi.type.tensor_type.shape.dim[0].dim_param or "?"
    return f"input {vi.name!r}: its free batch dimension ({label!r}) is taken as 1: one sample per run"


def _free(dynamic: list[int]) -> tuple[int, ...]:
    """The dynamic axes a sample's size sets, as the agent's onnxruntime runner takes them: all but the batch (axis
    0 stays 1: one sample per invocation)."""
    return tuple(axis for axis in dynamic if axis > 0)


def _check_onnx_shape(path: Path, dims: tuple[int, ...], option: str) -> None:
    """--shape against the .onnx's fixed dimensions (a dynamic one, a free H and W, takes --shape's size)."""
    shape, dynamic = _onnx_agent_shape(path)
    free = _free(dynamic)
    try:
        fit_shape(np.broadcast_to(np.float32(0), dims), shape, free)
    except ValueError as exc:
        runs = f"; axis {', '.join(map(str, free))} dynamic: any size" if free else ""
        raise UsageError(
            str(exc),
            where=option,
            hint=f"this model takes {','.join('?' if i in free else str(d) for i, d in enumerate(shape))} "
            f"(batch first{runs})",
        ) from None


def sidecar_format(path: Path) -> Format | None:
    """The format edgekit made the file as: an ncnn model's model.io.json, or the artifact.json of the cache entry
    holding it (an mnn-fp16 .mnn runs at MNN's low precision, an opencv-fp32 .onnx in OpenCV: not as the
    suffix's fp32 default)."""
    path = Path(path)
    io = path.with_suffix(".io.json")
    if path.suffix in (".param", ".bin") and io.is_file():
        try:
            return Format(json.loads(io.read_text()).get("format"))
        except (ValueError, OSError):
            return None
    meta = path.parent / "artifact.json"  # edgekit.convert.cache.META
    try:
        made = json.loads(meta.read_text()) if meta.is_file() else {}
        return Format(made["format"]) if path.name in made.get("files", []) else None
    except (ValueError, OSError, KeyError, TypeError, AttributeError):
        return None


def _not_a_file(path: Path) -> str:
    """What --input is when it is no regular file: missing, a symlink loop, a folder, or a device, pipe or socket
    (each was said "not found", though it is there)."""
    kind = path_kind(path)
    if kind is PathKind.MISSING:
        return "input file not found"
    if kind is PathKind.FOLDER:
        return "input is a folder, not a .npy file"
    if kind is PathKind.LOOP:
        return f"input is {kind.value}, not a file"
    return f"input is {kind.value}: edgekit reads --input as a .npy file"
