"""A builder's module as edgekit imports it (recipe/builders.py resolve_callable), through the real CLI:
torchvision's own model builders (`torchvision.models:squeezenet1_1`, a zoo the README names) and a user's module
that imports torchvision convert with torch's CPU build (torchvision's missing C++ ops stubbed first, as
edgekit.torchvision_ops); a module that raises at import is the recipe's error (exit 2) naming the
module and the exception, not an internal error of edgekit's; a TorchScript file that cannot take the recipe's
input shape says torch's own reason (the last line of its message), not the TorchScript traceback's first lines."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

TINY = Path(__file__).resolve().parent.parent / "recipes" / "tiny.yaml"
BUILDER = "  builder: edgekit.zoo.tiny:build\n  args: {num_classes: 10, width: 8}\n"


def _recipe(folder: Path, name: str, model: str, size: int = 32) -> Path:
    """recipes/tiny.yaml with its model's builder and args replaced, its images `size` square, one format."""
    text = TINY.read_text()
    assert BUILDER in text and "shape: [1, 3, 32, 32]" in text and "size: 32" in text
    text = (
        text.replace(BUILDER, model)
        .replace("name: tiny\n", f"name: {name}\n")
        .replace("shape: [1, 3, 32, 32]", f"shape: [1, 3, {size}, {size}]")
        .replace("size: 32", f"size: {size}")
    )
    text = re.sub(r"(?m)^formats: .*$", "formats: [onnx-fp32]", text)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


def _convert(recipe: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """`edgekit convert` in a fresh process (no stub already defined by another test), the recipe's folder on
    PYTHONPATH for a user's module."""
    path = os.pathsep.join(p for p in (str(recipe.parent), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-m", "edgekit", "convert", str(recipe)],
        cwd=recipe.parent,
        env={**os.environ, "EDGEKIT_HOME": str(home), "PYTHONPATH": path, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_a_torchvision_builder_converts(tmp_path: Path) -> None:
    """`torchvision.models:squeezenet1_1` was `internal error (RuntimeError): operator torchvision::nms does not
    exist`, rc 1: the stubs torchvision needs with torch's CPU build were set up only by edgekit.zoo's builder."""
    if importlib.util.find_spec("torchvision") is None:  # not imported here: it needs the stubs too
        pytest.skip("torchvision is not installed")
    builder = '  builder: "torchvision.models:squeezenet1_1"\n  args: {num_classes: 10}\n'
    done = _convert(_recipe(tmp_path, "tv", builder, size=64), tmp_path / "home")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "internal error" not in out and "torchvision::nms" not in out, out
    onnx = list((tmp_path / "home").rglob("*.onnx"))
    assert onnx, out
    import onnx as onnx_lib

    graph = onnx_lib.load(str(onnx[0])).graph
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == [1, 10], out


@pytest.mark.parametrize(
    "module",
    [
        # the user's own module, importing torchvision at its top
        "from torchvision.models import squeezenet1_1\n\n\ndef build(num_classes):\n"
        "    return squeezenet1_1(weights=None, num_classes=num_classes)\n",
        # ... or when its builder is called
        "def build(num_classes):\n    import torchvision\n\n"
        "    return torchvision.models.squeezenet1_1(weights=None, num_classes=num_classes)\n",
    ],
    ids=["imports-at-top", "imports-when-called"],
)
def test_a_users_module_importing_torchvision_builds(tmp_path: Path, module: str) -> None:
    """The same through a user's module, as convert calls it (builders.call_builder, in a fresh process: no stub
    defined by another test); the conversion after the call is the one the test above runs."""
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    (tmp_path / "tvmine.py").write_text(module)
    code = (
        "import torch\nfrom edgekit.recipe.builders import call_builder\n"
        "net = call_builder('tvmine:build', 'model', 'tv.yaml', num_classes=10).eval()\n"
        "print(tuple(net(torch.zeros(1, 3, 64, 64)).shape))\n"
    )
    path = os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path, "EDGEKIT_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and done.stdout.strip() == "(1, 10)", done.stdout + done.stderr


def test_a_module_that_raises_at_import_is_the_recipes_error(tmp_path: Path) -> None:
    """A user's module whose top line raises was `internal error (RuntimeError): boom at import`, rc 1."""
    (tmp_path / "boommod.py").write_text('raise RuntimeError("boom at import")\n\n\ndef build():\n    pass\n')
    done = _convert(_recipe(tmp_path, "boom", "  builder: boommod:build\n  args: {}\n"), tmp_path / "home")
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "internal error" not in said, said
    assert "model.builder" in said and "boommod" in said, said
    assert "RuntimeError: boom at import" in said, said


def test_a_module_that_exits_at_import_is_the_recipes_error(tmp_path: Path) -> None:
    """sys.exit() at a module's top ended edgekit with the module's own exit status and no word of why."""
    (tmp_path / "exitmod.py").write_text(
        'import sys\n\nsys.exit("bye from exitmod")\n\n\ndef build():\n    pass\n'
    )
    done = _convert(_recipe(tmp_path, "exits", "  builder: exitmod:build\n  args: {}\n"), tmp_path / "home")
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "exitmod" in said and "SystemExit: bye from exitmod" in said, said


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        # a message over several lines: its first line was lost (`ValueError: line two`)
        (
            'raise ValueError("the first reason\\nthe second reason")\n',
            ["ValueError: the first reason", "the second reason"],
        ),
        # pydantic's: which field and why sit between its first and last lines (`ValidationError: For further
        # information visit https://errors.pydantic.dev/...`)
        (
            "from pydantic import BaseModel\n\n\nclass Cfg(BaseModel):\n    width: int\n\n\nCFG = Cfg()\n",
            ["ValidationError: 1 validation error for Cfg", "width", "Field required"],
        ),
        # yaml's ends on a caret line (`ParserError: ^`)
        (
            'import yaml\n\nyaml.safe_load("a: [1, 2\\nb: 3\\n")\n',
            ["ParserError: while parsing a flow sequence", "expected ',' or ']', but got ':'"],
        ),
        # TorchScript's interpreter: its serialized traceback first, torch's reason as its last line, kept alone
        (
            "import torch\n\nconv = torch.jit.script(torch.nn.Conv2d(3, 4, 3))\nconv(torch.zeros(1, 4, 8, 8))\n",
            ["RuntimeError: Given groups=1", "to have 3 channels, but got 4 channels instead"],
        ),
    ],
    ids=["multi-line", "pydantic", "yaml", "torchscript"],
)
def test_a_module_raising_a_message_over_several_lines_says_its_reason(
    tmp_path: Path, module: str, expected: list[str]
) -> None:
    """exception_said kept only the last line of a message over several lines, which is the reason only for
    TorchScript's; the others' reason is in their first lines or between."""
    (tmp_path / "multimod.py").write_text(module + "\n\ndef build():\n    pass\n")
    done = _convert(_recipe(tmp_path, "multi", "  builder: multimod:build\n  args: {}\n"), tmp_path / "home")
    said = " ".join(done.stderr.split())
    assert done.returncode == 2, done.stdout + done.stderr
    assert "internal error" not in said and "importing multimod raised" in said, said
    for words in expected:
        assert words in said, said
    assert "Traceback of TorchScript" not in said and "HERE" not in said, said


def test_a_long_message_keeps_its_first_and_last_lines_bounded() -> None:
    """A message of many lines, well over the bound: its start and its end are said, the middle cut."""
    from edgekit.recipe.builders import exception_said

    lines = ["the first reason"] + [f"filler line {i} " + "x" * 40 for i in range(60)] + ["the last reason"]
    said = exception_said(ValueError("\n".join(lines)), limit=300)
    assert said.startswith("ValueError: the first reason"), said
    assert said.endswith("the last reason"), said
    assert "\n" not in said and len(said) < 400, said
    assert exception_said(KeyError("k")) == "KeyError: 'k'"
