"""A PyTorch builder (+ weights) -> ONNX: built with torch seeded, exported with the TorchScript exporter
(opset 17) and simplified; and its cache key, which covers the builder's code (its module and the modules
beside it that it imports). Called by edgekit.convert.onnx.prepare_onnx, which imports this module lazily.
"""

from __future__ import annotations

import dis
import hashlib
import importlib.util
import json
import types
import warnings
from pathlib import Path
from typing import Any

from edgekit.convert.onnx_export import EXPORT_VERSION, OPSET, file_sha256, simplify, tool_versions
from edgekit.errors import ConversionError, RecipeError
from edgekit.recipe import Recipe, TorchSource, call_builder


def torch_key(recipe: Recipe, src: TorchSource) -> str:
    spec = {
        "builder": src.builder,
        "args": src.args,
        "weights": file_sha256(src.weights) if src.weights else None,
        "code": _builder_code_digest(src.builder),
        "input": [recipe.input.name, list(recipe.input.shape)],
        "outputs": list(recipe.outputs),
        "opset": OPSET,
        "export_version": EXPORT_VERSION,
        "tools": tool_versions(),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def _builder_code_digest(builder: str) -> str:
    """sha256 of the builder's module and of the modules beside it that it imports (function-level imports
    included): an edited model definition is exported again, other edits are not."""
    module = builder.partition(":")[0]
    package = module.rpartition(".")[0]
    root = importlib.util.find_spec(module)
    if root is None or not root.origin or not root.origin.endswith(".py"):
        return "unknown"
    folder = Path(root.origin).parent
    seen: dict[Path, bytes] = {}
    todo = [Path(root.origin)]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen[path] = path.read_bytes()
        for name in _absolute_imports(seen[path], path):
            if package and name.startswith(package + "."):  # never resolve (import) torch and friends
                todo += [p for p in [_module_file(name)] if p is not None and p.parent == folder]
    h = hashlib.sha256()
    for path in sorted(seen):
        h.update(path.name.encode() + seen[path])
    return h.hexdigest()


def _absolute_imports(source: bytes, path: Path) -> list[str]:
    """The absolute imports in a module's code, functions included: `import a.b` gives a.b, `from a import
    b` gives a and a.b. Read from the compiled bytecode, not from ast.parse: CPython 3.11's ast.parse is not
    thread-safe (its recursion-depth check is shared by threads, so a paramiko thread formatting a traceback
    at the same moment raised "SystemError: AST constructor recursion depth mismatch" in CI)."""
    names: list[str] = []
    todo = [compile(source, str(path), "exec", dont_inherit=True)]
    while todo:
        code = todo.pop()
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        module: str | None = None
        recent: list[dis.Instruction] = []
        for ins in dis.get_instructions(code):
            if ins.opname == "IMPORT_NAME":  # after LOAD_CONST level, LOAD_CONST fromlist
                consts = [i.argval for i in recent if i.opname == "LOAD_CONST"]
                level, fromlist = consts if len(consts) == 2 else (0, None)
                module = ins.argval if level == 0 else None
                names += [module] if module else []
                module = module if fromlist else None  # `import a.b as c` reads b with IMPORT_FROM too
            elif ins.opname == "IMPORT_FROM" and module:
                names.append(f"{module}.{ins.argval}")
            recent = [*recent[-1:], ins]
    return names


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return Path(spec.origin) if spec and spec.origin and spec.origin.endswith(".py") else None


def export_torch(recipe: Recipe, src: TorchSource, target: Path) -> str | None:
    import torch

    where = str(recipe.path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = build_torch_model(recipe, src)
        tmp = target.parent / "export.onnx"
        tmp.parent.mkdir(parents=True, exist_ok=True)
        dummy = torch.zeros(recipe.input.shape, dtype=torch.float32)
        try:  # the recipe's input through the model first: a shape it cannot take is the recipe's error
            with torch.no_grad():
                model(dummy)
        except Exception as exc:  # noqa: BLE001 - the user's model raises what it raises
            raise RecipeError(
                f"field `input.shape`: {src.builder} does not run on an input of shape "
                f"{list(recipe.input.shape)}: {type(exc).__name__}: {str(exc)[:300]}",
                where=where,
                hint="input.shape is the tensor the model takes, batch first (NCHW for a PyTorch model)",
            ) from None
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # "legacy TorchScript exporter": wanted
                torch.onnx.export(
                    model,
                    (dummy,),
                    str(tmp),
                    input_names=[recipe.input.name],
                    output_names=list(recipe.outputs) or None,
                    opset_version=OPSET,
                    dynamo=False,
                    do_constant_folding=True,
                )
        except Exception as exc:  # torch raises many kinds; the user needs the message, not the type
            raise ConversionError(f"torch.onnx.export of {src.builder} failed: {exc}", where=where) from exc
    finally:
        torch.set_num_threads(threads)
    simplifier = simplify(tmp)
    (target.parent / "meta.json").write_text(json.dumps({"simplifier": simplifier, "source": src.builder}))
    tmp.replace(target)
    return simplifier


def build_torch_model(recipe: Recipe, src: TorchSource) -> Any:
    """The recipe's PyTorch model: its builder called with model.args (seed 0), its weights loaded, in eval mode.
    The builder is the user's code: an import failure, rejected args, an exception inside it or something that is
    not a torch.nn.Module is a RecipeError naming the builder (exit 2), not an internal error."""
    import torch

    where = str(recipe.path)
    torch.manual_seed(0)
    model = call_builder(src.builder, "model", where, **src.args)
    if not isinstance(model, torch.nn.Module):
        raise RecipeError(
            f"field `model.builder`: {src.builder} returned {type(model).__name__}, not a torch.nn.Module",
            where=where,
            hint="the builder must return the model (an nn.Module) built from model.args",
        )
    if src.weights is not None:
        _load_weights(model, src.weights, where)
    return model.eval()


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive (torch.jit.save): a zip holding the model's code, not only tensors."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any("/code/" in n or n.endswith("/constants.pkl") for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def _load_weights(model: Any, weights: Path, where: str) -> None:
    import torch

    save_state = "save the trained model's weights with torch.save(model.state_dict(), path)"
    if _is_torchscript(weights):
        raise RecipeError(
            f"field `model.weights`: {weights} is a TorchScript archive (torch.jit.save), not a state dict",
            where=where,
            hint=f"{save_state}, or export the model to ONNX (torch.onnx.export) and use model: {{kind: onnx, path: ...}}",
        )
    try:
        state = torch.load(str(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file; the user gets a named error
        text = str(exc)
        if "Unsupported global" in text:  # torch.save(model): a pickled object, which loading would run
            raise RecipeError(
                f"field `model.weights`: {weights} holds a pickled Python object (torch.save(model)), not a "
                "state dict; edgekit does not unpickle objects from a file (that runs code from it)",
                where=where,
                hint=save_state,
            ) from None
        if "WeightsUnpickler error:" in text:  # torch's own reason, without its advice to load unsafely
            reason = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n")[0].strip()
            text = f"not a PyTorch state dict ({reason})"
        if not text and weights.stat().st_size == 0:
            text = "the file is empty"
        raise RecipeError(
            f"field `model.weights`: cannot read {weights}: {text or type(exc).__name__}",
            where=where,
            hint=save_state,
        ) from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = "\n    ".join(str(exc).splitlines()[:6])
        raise RecipeError(
            f"field `model.weights`: the weights do not fit the built model:\n    {first}",
            where=where,
            hint="check model.args (num_classes, width) match the trained model",
        ) from None
