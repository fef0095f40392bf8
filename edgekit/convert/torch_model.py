"""The recipe's PyTorch module as exporting needs it: its builder called (seeded) with its weights loaded, or the
saved file loaded; a module taking more than one tensor refused by name; `outputs:` names counted against the
tensors it returns; and a forward() with defaulted extra arguments wrapped to take the input alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekit.convert.torch_check import returned_tensors
from edgekit.convert.torch_file import load_torch_file
from edgekit.errors import RecipeError
from edgekit.recipe import Recipe, TorchSource, call_builder
from edgekit.recipe.torch_files import torch_file_kind


def build_torch_model(recipe: Recipe, src: TorchSource) -> tuple[Any, Any | None]:
    """The recipe's PyTorch model and, for a .pt2, its ExportedProgram (else None): its builder called with
    model.args (seed 0), its weights loaded, in eval mode; or the saved file loaded (torch_file). The builder is the
    user's code: an import failure, rejected args, an exception inside it or something that is not a
    torch.nn.Module is a RecipeError naming the builder (exit 2), not an internal error."""
    import torch

    where = str(recipe.path)
    if src.path is not None:
        return load_torch_file(src.path, where)
    assert src.builder is not None  # the schema asks for one of the two
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
    return model.eval(), None


def _load_weights(model: Any, weights: Path, where: str) -> None:
    import torch

    save_state = "save the trained model's weights with torch.save(model.state_dict(), path)"
    if torch_file_kind(weights) in ("torchscript", "exported-program"):
        raise RecipeError(
            f"field `model.weights`: {weights} is a saved model (torch.jit.save or torch.export.save), not a state "
            "dict",
            where=where,
            hint=f"give the file as the model itself: model: {{kind: torch, path: {weights.name}}} (no builder); "
            f"or {save_state}",
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


def one_input(model: Any) -> Any:
    """The module as the exporter should see it: itself, or, when its forward() takes more arguments with defaults
    (`forward(self, x, scale=1.0)`), a wrapper that calls it with the input alone. The legacy exporter made each
    such default a graph input of its own ('onnx::Cast_1'), which nothing feeds: an internal error followed. Only
    then wrapped: the wrapper prefixes every node's name (/inner/...), which `int8:` float-layer lists name."""
    import inspect

    import torch

    if isinstance(model, torch.jit.ScriptModule):
        return model
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return model
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < 2 or any(p.default is p.empty for p in positional[1:]):
        return model

    class _InputAlone(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            return self.inner(x)

    return _InputAlone(model).eval()


def check_one_input(model: Any, program: Any | None, recipe: Recipe, src: TorchSource) -> None:
    """A module taking more than one tensor is refused by name, as an ONNX file with two inputs is (read from the
    ExportedProgram's signature, the TorchScript forward's schema, the module's forward() signature): calling it
    on the recipe's one input failed inside and was blamed on `input.shape`."""
    import inspect

    import torch

    if program is not None:
        names = [str(n) for n in program.graph_signature.user_inputs]
    elif isinstance(model, torch.jit.ScriptModule):
        arguments = model.forward.schema.arguments[1:]  # type: ignore[attr-defined]  # self first
        names = [a.name for a in arguments if not a.has_default_value()]
    else:
        try:
            params = inspect.signature(model.forward).parameters.values()
        except (TypeError, ValueError):  # no signature to read: the run on the input says what is wrong
            return
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
            return
        names = [p.name for p in params if p.kind in positional and p.default is inspect.Parameter.empty]
    if len(names) > 1:
        raise RecipeError(
            f"the model has {len(names)} inputs ({', '.join(names)}); edgekit handles single-input models",
            where=str(recipe.path),
            hint=f"give a module whose forward takes the one tensor `{recipe.input.name}` (a wrapper filling in "
            "the others), saved or built as this one is",
        )


def check_output_names(recipe: Recipe, src: TorchSource, returned: Any) -> None:
    """torch.onnx.export gives `output_names` to the outputs by position: with fewer names than the tensors the
    module returns, `outputs: [logits]` named the first (an embedding, say) 'logits'. The counts must agree."""
    tensors = returned_tensors(returned)
    if not recipe.outputs or len(recipe.outputs) == len(tensors):
        return
    shapes = ", ".join(str(list(t.shape)) for t in tensors)
    raise RecipeError(
        f"field `outputs`: names {len(recipe.outputs)} output(s) {list(recipe.outputs)}, but {src.label}'s "
        f"module returns {len(tensors)} tensor(s) ({shapes}); the ONNX outputs are named in that order",
        where=str(recipe.path),
        hint=f"give {len(tensors)} names, one per tensor in the order forward() returns them, or leave "
        "`outputs:` out",
    )
