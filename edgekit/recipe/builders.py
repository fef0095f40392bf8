"""A recipe's builders (`builder: package.module:function`, for a model or for data): the user's Python code,
which edgekit imports and calls. A recipe from someone else is code to read before running, so what a builder may
be is guarded here: not Python's standard library, a module that installs or downloads, nor an installed package's
evaluator or deserializer, reached by name or through attributes; what goes wrong inside one is the recipe's error
(exit 2), never edgekit's."""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import inspect
import re
import reprlib
import sys
import types
import warnings
from pathlib import Path
from typing import Any

from edgekit.errors import RecipeError
from edgekit.pyfiles import installed, someone_elses
from edgekit.torchvision_ops import torchvision_stubbed
from edgekit.user_source import from_source

# A builder runs as Python code: a recipe from someone else is code to read before running. These are refused
# outright, as no model or data builder lives there: Python's standard library (`os:system`,
# `subprocess:run`, `builtins:eval`), modules that install or download (no downloads outside set-up), and the
# installed packages' evaluators and deserializers, which run code given as text or a file (`yaml:unsafe_load`,
# numpy's `testing` helpers, joblib / dill / cloudpickle, torch's serialization and extension builders).
REFUSED_BUILDER_MODULES = frozenset(sys.stdlib_module_names) | {
    "builtins",
    "pip",
    "setuptools",
    "pkg_resources",
    "torch.hub",
    "torch.utils.model_zoo",
    "huggingface_hub",
    "keras.utils",
    "tensorflow.keras.utils",
    "yaml",
    "ruamel",
    "numpy.testing",
    "numpy.distutils",
    "numpy.f2py",
    "joblib",
    "dill",
    "cloudpickle",
    "torch.serialization",
    "torch.package",
    "torch.utils.cpp_extension",
    "IPython",
    "paramiko",
    "requests",
    "urllib3",
    "httpx",
    "fsspec",
}
OWN = "name a function of your own module or package"
# No model or data builder of an installed package is named so: a function there whose name starts with one of
# these loads, evaluates or runs something it is given (numpy's `load` unpickles with allow_pickle, `torch.jit:load`
# a file). The user's own code is not held to it.
REFUSED_INSTALLED_NAMES = (
    "load",
    "unsafe",
    "unpickle",
    "deserial",
    "eval",
    "exec",
    "run",
    "system",
    "popen",
    "spawn",
    "compile",
    "import",
    "call",
)


def refused_module(module: str) -> str | None:
    """The entry of REFUSED_BUILDER_MODULES that `module` is or lies in ('os' for os.path), or None."""
    parts = module.split(".")
    return next(
        (
            ".".join(parts[:i])
            for i in range(1, len(parts) + 1)
            if ".".join(parts[:i]) in REFUSED_BUILDER_MODULES
        ),
        None,
    )


def check_dotted(
    value: str, what: str = "model or data builder", example: str = "package.module:function"
) -> str:
    """The shape of a `builder:` (or of a Keras source's `custom_objects` entry; importing it is load.py's check,
    when the files are checked), and not a module of REFUSED_BUILDER_MODULES."""
    module, sep, attr = value.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"expected `{example}`")
    if module.startswith(
        "."
    ):  # import_module raised TypeError ('package' argument required): an internal error
        absolute = module.lstrip(".") or "mymodels"
        raise ValueError(
            f"{value!r} is a relative import: a {what} is an absolute `{example}` that Python can import "
            f"from PYTHONPATH (edgekit does not import from the recipe's folder); put the folder that holds "
            f"{absolute} on PYTHONPATH (e.g. PYTHONPATH=/path/to/project edgekit ...) and write "
            f"`{absolute}:{attr}`"
        )
    refused = refused_module(module)
    if refused:
        own = (
            OWN if example.endswith("function") else "name a class or function of your own module or package"
        )
        raise ValueError(
            f"{value!r} is not a {what}: names of {refused!r} (Python's standard library, or a module that "
            f"installs, downloads or runs what it is given) are refused; {own}"
        )
    return value


class BuilderImportError(ImportError):
    """A builder's module raised while it was imported (not an ImportError of its own): the recipe's error, named
    with the module and the exception; the callers catch ImportError."""


def exception_said(exc: BaseException, limit: int = 300) -> str:
    """`Type: message` on one line, the message at most about `limit` characters (cut in the middle: its start and
    its end are kept). A message over several lines is said with its lines joined by ` | ` (pydantic's names the
    field between its first and last lines, yaml's ends on a `^` line), except TorchScript's interpreter's, which
    puts its serialized traceback first and torch's reason as its last line (`RuntimeError: Given groups=1, ...
    expected ... 3 channels, but got 4`): that line alone."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = re.compile(r"[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning): ")
    if len(lines) > 1 and "Traceback of TorchScript" in str(exc) and named.match(lines[-1]):
        return _bounded(lines[-1], limit)
    text = _bounded(" | ".join(_without_cpp_frames(lines)), limit)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# libtorch's C++ backtrace inside a message (c10::Error's: "Exception raised from THPUtils_unpackLong at
# ...python_numbers.h:79 (most recent call first):", "frame #4: <unknown function> + 0x595108 (0x7f5e... in
# libtorch_python.so)", "<omitting python frames>"): addresses, not a reason a user can act on
CPP_FRAME = re.compile(
    r"^(Exception raised from .* \(most recent call first\):|frame #\d+: .*|<omitting python frames>)$"
)


def _without_cpp_frames(lines: list[str]) -> list[str]:
    """A message's lines without libtorch's C++ backtrace; a line after it that only closes the message (a quote, a
    bracket) goes back onto the line before it: `...with error "Overflow when unpacking long long"`."""
    kept: list[str] = []
    dropped = False
    for line in lines:
        if CPP_FRAME.match(line):
            dropped = True
            continue
        if dropped and kept and not any(c.isalnum() for c in line):
            kept[-1] += line
        else:
            kept.append(line)
        dropped = False
    return kept


def _bounded(text: str, limit: int) -> str:
    """`text`, or its first and last `limit // 2` characters around ` ... ` when it is longer than `limit`."""
    if len(text) <= limit:
        return text
    half = max(limit // 2, 1)
    return f"{text[:half].rstrip()} ... {text[-half:].lstrip()}"


def check_importable(dotted: str, field: str, where: str) -> None:
    try:
        resolve_callable(dotted)
    except (ImportError, AttributeError) as exc:
        raise RecipeError(
            f"field `{field}`: cannot import {dotted!r}: {exc}", where=where, hint=_import_hint(dotted, exc)
        ) from (exc if isinstance(exc, BuilderImportError) else None)  # --debug: the module's own traceback


def check_findable(dotted: str, field: str, where: str) -> None:
    """The module of `package.module:Name` can be found (importlib's find_spec: its parent packages are imported,
    the module itself is not); whether it has `Name` is the importer's to say (the Keras child: exit 2)."""
    module = dotted.partition(":")[0]
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        found, why = None, exc
    else:
        why = ModuleNotFoundError(f"No module named {module!r}")
    if found is None:
        raise RecipeError(
            f"field `{field}`: cannot import {dotted!r}: {why}",
            where=where,
            hint=_import_hint(dotted, why if isinstance(why, ModuleNotFoundError) else ModuleNotFoundError()),
        )


def _import_hint(dotted: str, exc: Exception) -> str | None:
    """A module of the user's own that Python cannot find: edgekit imports it as Python would (sys.path), not
    from the recipe's folder."""
    if isinstance(exc, BuilderImportError):
        module = dotted.split(":")[0]
        return (
            f"the error is the module's own: import it yourself in Python to see the traceback "
            f"(python -c 'import {module}'), or run edgekit with --debug"
        )
    if isinstance(exc, ModuleNotFoundError):
        package = dotted.split(":")[0].split(".")[0]
        return (
            f"is {package} your own code? put the folder that holds it on PYTHONPATH (e.g. "
            f"PYTHONPATH=/path/to/project edgekit ...) or pip install it; edgekit does not import from the "
            "recipe's folder"
        )
    return None


def call_builder(dotted: str, section: str, where: str, *args: Any, **kwargs: Any) -> Any:
    """Import and call a recipe's `builder:` (the user's code). What goes wrong there is the recipe's error
    (exit 2), named under `section` (`model`, `evaluation.data`, ...), never an internal error of edgekit's."""
    return _call(dotted, section, where, args, kwargs, ())


DATA_CALL = ("samples", "seed")  # a data builder's positional parameters, in the recipe's words


def call_data_builder(
    dotted: str, section: str, where: str, samples: int, seed: int, args: dict[str, Any]
) -> Any:
    """A data `builder:` called as `fn(samples, seed, **args)`: the sample count and the seed by position, the
    recipe's `args` by name; a function that cannot take that call is told so in these words."""
    return _call(dotted, section, where, (samples, seed), args, DATA_CALL)


def _call(
    dotted: str,
    section: str,
    where: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    positional: tuple[str, ...],
) -> Any:
    try:
        fn = resolve_callable(dotted)
    except (ImportError, AttributeError) as exc:
        raise RecipeError(
            f"field `{section}.builder`: cannot import {dotted!r}: {exc}",
            where=where,
            hint=_import_hint(dotted, exc),
        ) from (exc if isinstance(exc, BuilderImportError) else None)
    mismatch = _mismatch(fn, args, kwargs)
    if mismatch is not None:
        name = dotted.rpartition(":")[2]
        told = ", ".join([*positional, "**args"]) if positional else "**args"
        given = ", ".join([*map(_short_repr, args), *(f"{k}={_short_repr(v)}" for k, v in kwargs.items())])
        raise RecipeError(
            f"field `{section}.args`: {dotted} cannot take the call: {mismatch} (edgekit calls it as "
            f"{name}({told}), here {name}({given}))",
            where=where,
            hint=(
                f"its first {len(positional)} parameters take {' and '.join(f'`{p}`' for p in positional)} by "
                f"position (e.g. def {name}(n, seed, size=48)): set them with the data section's "
                f"{' and '.join(f'`{p}:`' for p in positional)}, not in `args`; `args` fill the others by name"
                if positional
                else f"`args` are passed by name: {name} must take each of them as a parameter"
            ),
        )
    try:
        with torchvision_stubbed():  # a builder that imports torchvision when called
            return fn(*args, **kwargs)
    except Exception as exc:
        raise RecipeError(
            f"field `{section}.builder`: {dotted} raised {exception_said(exc)}",
            where=where,
            hint="call the builder yourself in Python to see the traceback (or run edgekit with --debug)",
        ) from exc


def _mismatch(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Why `fn` cannot be called with these arguments (Python's own words), or None: a TypeError raised inside
    the builder is the builder's, not a wrong call."""
    try:
        inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        return str(exc)
    except ValueError:  # no signature to read (some built-ins): the call itself will say
        return None
    return None


def _short_repr(value: Any) -> str:
    return reprlib.repr(value)


# The installed packages a builder may come from: model zoos, whose functions build a model from a few arguments.
# Any other installed package's function is refused (a denylist of evaluators cannot be complete: `sympy:sympify`
# evaluates the string it is given, and sympy comes with torch); the user's own code is not held to it.
MODEL_ZOOS = (
    "edgekit.zoo",
    "torchvision.models",
    "timm",
    "keras.applications",
    "keras.src.applications",
    "tensorflow.keras.applications",
    "tf_keras.applications",
    "tf_keras.src.applications",
)


def _in_zoo(module: str) -> bool:
    return any(module == z or module.startswith(z + ".") for z in MODEL_ZOOS)


def resolve_callable(dotted: str, any_installed: bool = False) -> Any:
    """Import `package.module:function` and return the function. The attribute path may not lead out of the user's
    code: `torch:os.system` reaches `os` through torch's own `import os` and `torch:hub.list` reaches torch.hub, so
    every module passed on the way, and the module the function itself belongs to, is checked against
    REFUSED_BUILDER_MODULES (the schema checks only the part before `:`), and no dunder attribute is followed
    (`f.__globals__`). Refused: AttributeError, which the callers name as the recipe's field (exit 2)."""
    module, _, attr = dotted.partition(":")
    try:
        with from_source(), warnings.catch_warnings():
            # torchvision without its C++ library (torch's CPU build): said when imported, nothing a builder uses
            warnings.filterwarnings("ignore", "Failed to load image Python extension", UserWarning)
            obj: Any = importlib.import_module(module)
    except ImportError:
        raise
    except (Exception, SystemExit) as exc:
        raise BuilderImportError(f"importing {module} raised {exception_said(exc)}") from exc
    for part in attr.split("."):
        if part.startswith("__"):
            raise AttributeError(
                f"{dotted!r}: {part!r} is not a builder (dunder attributes are not followed)"
            )
        obj = getattr(obj, part)
        if isinstance(obj, types.ModuleType):
            _refuse_module(obj.__name__, dotted)
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type)):  # os.system's is 'posix'
        _refuse_module(str(getattr(obj, "__module__", "") or ""), dotted)
    name = attr.rpartition(".")[2].lower()
    if name.startswith(REFUSED_INSTALLED_NAMES) and not _users_code(obj):
        raise AttributeError(
            f"{dotted!r} is a function of an installed package that loads, evaluates or runs what it is given, "
            f"not a model or data builder: refused; {OWN}"
        )
    defined_in = str(getattr(obj, "__module__", "") or "")
    if not any_installed and _someone_elses(obj) and not (_in_zoo(module) and _in_zoo(defined_in or module)):
        raise AttributeError(
            f"{dotted!r} is a function of an installed package ({defined_in or module}), not of a model zoo "
            "(edgekit.zoo, torchvision.models, timm, keras.applications): refused, unrun; a recipe's builder is "
            f"your own code or a zoo's (`sympy:sympify` evaluates the string it is given); {OWN}, which may call it"
        )
    return obj


def _someone_elses(obj: Any) -> bool:
    """Whether `obj` is defined in a package someone else published (pyfiles.someone_elses): compiled or built in,
    the standard library, or installed from a package index or a VCS; the user's own code and packages are not. A
    `functools.partial` is judged by the function it wraps, a callable object by its class."""
    while isinstance(obj, functools.partial):
        obj = obj.func
    if not isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type)):
        obj = type(obj)
    name = str(getattr(obj, "__module__", "") or "")
    file = getattr(sys.modules.get(name), "__file__", None)
    if not file or not file.endswith(".py"):
        return True
    return someone_elses(name.partition(".")[0], Path(file))


def _users_code(obj: Any) -> bool:
    """Whether `obj` is defined in a .py file outside Python's standard library and the installed packages
    (site-packages, dist-packages): the user's own code, or edgekit's."""
    module = sys.modules.get(str(getattr(obj, "__module__", "") or ""))
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        return False  # compiled or built in: an installed package's
    return not installed(Path(file))


def _refuse_module(name: str, dotted: str) -> None:
    refused = refused_module(name)
    if refused:
        raise AttributeError(
            f"{dotted!r} leads to {name}, a module of {refused!r} (Python's standard library, or one that installs, "
            f"downloads or runs what it is given): refused as a builder; {OWN}"
        )
