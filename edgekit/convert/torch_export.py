"""A PyTorch model -> ONNX: a builder (+ weights) built with torch seeded, or a TorchScript archive, exported
with the TorchScript exporter (opset 17); an ExportedProgram (.pt2) with torch.export's own exporter (dynamo, opset
18: it writes no lower); then simplified and checked against the module. Its cache key covers the builder's code
(its module and every module of the user's own code it imports, transitively: see edgekit.convert.code_digest) and
the files its args name, by content (a checkpoint it loads: edgekit.convert.arg_files), or the file's bytes.
Called by edgekit.convert.onnx.prepare_onnx, which imports this module lazily.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgekit import paths
from edgekit.convert.arg_files import arg_file_digests
from edgekit.convert.calibration import data_digest
from edgekit.convert.code_digest import builder_code
from edgekit.convert.onnx_export import (
    EXPORT_DISTS,
    EXPORT_VERSION,
    OPSET,
    file_sha256,
    simplify,
    tool_versions,
)
from edgekit.convert.torch_check import check_export, check_inputs, in_torch
from edgekit.convert.torch_model import build_torch_model, check_one_input, check_output_names, one_input
from edgekit.errors import ConversionError, RecipeError
from edgekit.recipe import Recipe, TorchSource
from edgekit.recipe.builders import exception_said

# Part of a PyTorch export's cache key: bump when an export made before is no longer right. 2: `outputs:` names
# counted against the tensors the module returns (an export named by position before is made again, or refused).
# 3: traced on the first evaluation input (was zeros) and checked against the module (meta.json's `check`).
# (Since, the key holds those inputs themselves: `check_inputs`, no version needed.) 4: checked on every evaluation
# input (was the first 4: an entry keyed by 4 inputs of 8 said it matched the model on all), the tracer's frozen
# control flow recorded to be said on every run, and the recipe's input shape pinned in the graph (a .pt2 saved with
# dynamic dims kept them, and converters fixed them wrong).
TORCH_EXPORT_VERSION = 4
# torch.export's exporter writes opset 18 and up (asked for 17 it fails to convert down, and says so at length)
EXPORTED_PROGRAM_OPSET = 18


def torch_key(recipe: Recipe, src: TorchSource) -> str:
    """The export's cache key: what the ONNX and its check are made of. That includes the inputs it is traced
    and checked on (check_inputs: the evaluation inputs, or seeded ones through input.preprocess), so a
    model whose code branches on tensor values is exported again for other data instead of served the ONNX
    traced on the old data, and meta.json's `check` is of the data the recipe names."""
    batches, kind, total = check_inputs(recipe)
    code = builder_code(src.builder) if src.builder else None
    spec = {
        "torch_export_version": TORCH_EXPORT_VERSION,
        "builder": src.builder,
        "args": src.args,
        "weights": file_sha256(src.weights) if src.weights else None,
        "code": code.digest if code else None,
        "input": [recipe.input.name, list(recipe.input.shape)],
        "outputs": list(recipe.outputs),
        "opset": OPSET,
        "export_version": EXPORT_VERSION,
        "tools": tool_versions(),
        "check_inputs": [kind, data_digest(batches), total],
    }
    # the installed distributions the builder's code imports (timm, torchvision, numpy, its own installed package),
    # but those in `tools` already; absent when none is left (a builder importing torch alone)
    packages = {n: v for n, v in (code.packages if code else {}).items() if _canonical(n) not in EXPORT_DISTS}
    if packages:
        spec["packages"] = packages
    # a saved file: its bytes (a builder's key stays as it was before files could be given, so its cache serves)
    if src.path is not None:
        spec["file"] = file_sha256(src.path)
    # the files and folders the builder's args name (its own checkpoint), by content: overwritten, exported again
    arg_files = arg_file_digests(src.args)
    if arg_files:
        spec["arg_files"] = arg_files
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _canonical(dist: str) -> str:
    """A distribution's name as packaging compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", dist).lower()


def export_torch(recipe: Recipe, src: TorchSource, target: Path) -> str | None:
    """The builder's module exported to `target` (the recipe's input shape pinned in the graph, simplified with
    it), traced on the recipe's first evaluation input, then checked against the module on every evaluation input
    (check_inputs): a mismatch is a ConversionError naming the cause (control flow frozen by tracing). A module
    taking more than one input is a RecipeError naming them. meta.json beside it records the check (describe)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, program = build_torch_model(recipe, src)
        check_one_input(model, program, recipe, src)
        tmp = target.parent / "export.onnx"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        batches, kind, total = check_inputs(recipe)
        example = torch.from_numpy(batches[0])
        try:  # the recipe's input through the model first: a shape it cannot take is the recipe's error
            with torch.no_grad():
                returned = model(example)
        except Exception as exc:  # noqa: BLE001 - the user's model raises what it raises
            raise _input_error(model, exc, recipe, src) from None
        check_output_names(recipe, src, returned)
        traced = _export(program if program is not None else model, example, tmp, recipe, src)
    finally:
        torch.set_num_threads(threads)
    _pin_input_shape(tmp, recipe)
    simplifier = simplify(tmp, {recipe.input.name: list(recipe.input.shape)})
    check = check_export(model, tmp, batches, kind, recipe, src, traced, total)
    exporter = "torch.export's exporter" if program is not None else "torch.onnx.export"
    opset = EXPORTED_PROGRAM_OPSET if program is not None else OPSET
    meta = {
        "simplifier": simplifier,
        "source": src.label,
        "check": check,
        "exporter": exporter,
        "opset": opset,
        "traced": src.builder
        is not None,  # a file's graph is its own: TorchScript's, or the ExportedProgram's
    }
    (target.parent / "meta.json").write_text(json.dumps(meta))
    tmp.replace(target)
    return simplifier


def _input_error(model: Any, exc: Exception, recipe: Recipe, src: TorchSource) -> RecipeError:
    """Why the module does not run on the recipe's float32 input: its dtype when it runs on integers of that shape
    (token ids into an Embedding: "got torch.FloatTensor" was said as a shape the model does not take, with a hint
    about shapes), else the shape. The ONNX route says the same of an integer input (onnx_io.check_io)."""
    import torch

    shape = list(recipe.input.shape)
    try:
        with torch.no_grad():
            model(torch.zeros(shape, dtype=torch.int64))
    except Exception:  # noqa: BLE001 - not integers either: the shape, as before
        return RecipeError(
            f"field `input.shape`: {src.label} does not run on an input of shape {shape}: "
            f"{exception_said(exc)}",  # TorchScript's reason: its last line
            where=str(recipe.path),
            hint="input.shape is the tensor the model takes, batch first (NCHW for a PyTorch model)",
        )
    return RecipeError(
        f"the model's input {recipe.input.name!r} is an integer tensor (it runs on int64 of shape {shape}, not on "
        f"float32: {exception_said(exc)}); edgekit feeds float32 tensors (images, features)",
        where=str(recipe.path),
        hint="give a builder whose module takes float32 and casts inside (x.long() before an Embedding: token ids "
        "are exact in float32 up to 2^24), as every runtime here is fed float32",
    )


def describe(meta: dict[str, Any]) -> str | None:
    """One progress line: how the ONNX of a PyTorch source was made and how it matched the module, on how many
    of the evaluation inputs (None for a cache entry that recorded no check); and a second, a warning, where the
    tracer froze control flow on a tensor's value in the user's code (the inputs checked all took the traced path:
    others may not); torch's own places (in_torch: shape checks) are not said."""
    check = meta.get("check")
    if not check:
        return None
    exporter = meta.get("exporter", "torch.onnx.export")
    if meta.get("traced", True):
        how = f", traced on the first {check.get('on', 'input')}"
    else:
        how = "" if exporter != "torch.onnx.export" else ", from the archive's TorchScript graph"
    inputs, of = check.get("inputs", 0), check.get("of")
    if check.get("on") != "evaluation input" or not of:
        which = ""
    elif of == inputs:
        which = " (every evaluation input)"
    else:
        which = f" (spread over the {of} evaluation inputs)"
    line = (
        f"model: PyTorch source exported to ONNX by {exporter} (opset {meta.get('opset', OPSET)}){how}; matches "
        f"the model within {check.get('max_abs', float('nan')):.1e} on {inputs} inputs{which}"
    )
    frozen = [place for place in check.get("frozen") or [] if not in_torch(place)]
    if frozen:
        more = f" (and {len(frozen) - 1} more place(s))" if len(frozen) > 1 else ""
        line += (
            f"\nmodel: warning: tracing froze control flow on a tensor's value at {frozen[0]}{more}: the ONNX "
            "computes the path the first input took, and the inputs checked took it too; an input taking another "
            "path gets that one's outputs, wrong; use torch.where (both branches computed) or a static branch, "
            "or give a torch.export program (.pt2)"
        )
    return line


def _export(model: Any, example: Any, tmp: Path, recipe: Recipe, src: TorchSource) -> list[str]:
    """torch.onnx.export traced on `example` (an ExportedProgram: its graph written by torch.export's exporter,
    nothing traced); returns the tracer's warnings (where control flow was frozen).
    PyTorch's fused inference fast path (nn.TransformerEncoderLayer, nn.MultiheadAttention under no_grad:
    aten::_transformer_encoder_layer_fwd) has no ONNX form: it is switched off while exporting, so the module's
    plain operations are traced. What torch writes to stderr (the whole TorchScript graph when it fails) goes to
    a log file; a failure is a ConversionError whose first line is the exporter's cause."""
    import torch

    log = paths.work_dir("torch-export")
    log.mkdir(parents=True)
    log_file = log / "export.log"
    fastpath = torch.backends.mha.get_fastpath_enabled()
    tracer: list[warnings.WarningMessage] = []
    failure: Exception | None = None
    program = isinstance(model, torch.export.ExportedProgram)
    with _stderr_to(log_file):
        torch.backends.mha.set_fastpath_enabled(False)
        # the exporter logs (the graph at a failure) whatever its `verbose`, to stdout by default: to stderr here
        torch._C._jit_set_onnx_log_output_stream("stderr")
        try:
            with torch.no_grad(), warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("default")  # once a place; "legacy TorchScript exporter" (wanted) not:
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                # a TorchScript module has no Python signature to read the inputs' names from: they are given
                warnings.filterwarnings("ignore", message="no signature found for <torch.ScriptMethod")
                # torch.export's exporter trips torch's own deprecations: nothing the user can change
                if program:
                    warnings.filterwarnings("ignore", category=FutureWarning)
                torch.onnx.export(
                    model if program else one_input(model),
                    (example,),
                    str(tmp),
                    input_names=[recipe.input.name],
                    output_names=list(recipe.outputs) or None,
                    opset_version=EXPORTED_PROGRAM_OPSET if program else OPSET,
                    dynamo=program,
                    verbose=False if program else None,  # torch.export's exporter prints progress by default
                    do_constant_folding=True,
                )
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds; the user needs the cause, not the type
            failure = exc
            import traceback

            print("".join(traceback.format_exception(exc)), file=sys.stderr)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
            torch._C._jit_set_onnx_log_output_stream("stdout")
        for w in seen:  # shown as before, and the tracer's kept for the check's error
            shown = warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
            print(shown, end="", file=sys.stderr)
            if issubclass(w.category, torch.jit._trace.TracerWarning):
                tracer.append(w)
    if failure is not None:
        cause = next((line for line in str(failure).splitlines() if line.strip()), type(failure).__name__)
        unsupported = isinstance(failure, torch.onnx.errors.UnsupportedOperatorError)
        yourself = (
            "give it as a .pt2, which torch.export's exporter writes (torch.export.save(torch.export.export(model, "
            "(example,)), 'model.pt2'); model: {kind: torch, path: model.pt2}), or export it yourself "
            "(torch.onnx.export(..., dynamo=True)) and give that file (model: {kind: onnx, path: ...})"
        )
        raise ConversionError(
            f"torch.onnx.export of {src.label} failed: {cause.strip()[:500]}",
            where=str(recipe.path),
            hint=(
                "torch.export's exporter wrote no ONNX for this program: replace the operator it names with "
                "standard operations, or give the model as an ONNX file (model: {kind: onnx, path: ...})"
                if program
                else (
                    "an operator the TorchScript exporter cannot write at opset "
                    f"{OPSET}: replace it with standard operations, or "
                    if unsupported
                    else ""
                )
                + yourself
            )
            + f"; whole log: {log_file}",
        ) from failure
    shutil.rmtree(log, ignore_errors=True)
    tracer.sort(key=lambda w: "site-packages" in w.filename)  # the user's own code first
    return [f"{w.filename}:{w.lineno}: {str(w.message).split('. ')[0]}" for w in tracer]


@contextmanager
def _stderr_to(log_file: Path) -> Iterator[None]:
    """File descriptor 2 (C++ and Python alike) into `log_file`; on leaving, what was written goes back to
    stderr unless it holds a failure (then it stays in the log only)."""
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all
        yield
        return
    failed = True
    with open(log_file, "w+b") as sink:
        sys.stderr.flush()
        os.dup2(sink.fileno(), 2)
        try:
            yield
            failed = False
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text = sink.read().decode(errors="replace")
    if not failed and text and "Traceback (most recent call last)" not in text:
        sys.stderr.write(text)
        sys.stderr.flush()


def _pin_input_shape(path: Path, recipe: Recipe) -> None:
    """The recipe's input shape written into the exported graph's input, as a user's ONNX gets it: a .pt2 saved with
    dynamic dims (torch.export's Dim on batch, H, W) is exported with symbolic ones, which converters fixed wrong."""
    import onnx

    from edgekit.convert.onnx import _fix_input_shape

    model = onnx.load(str(path))
    _fix_input_shape(model, recipe)
    onnx.save(model, str(path))
