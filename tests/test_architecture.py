"""The house plan holds: every module imports only the layers below it, and no import circles.

The layers (docs/architecture.md), read from the source with ``ast``, every import
counted (also those inside functions):

* ``_backend``: the array seam; imports nothing of portable_rnn above it;
* ``_core``: the unchecked math (cell specs, cells, sequences, stacks): ``_backend`` only;
* the front-ends: the column dialect (``_column``), the rows dialect (``rnn_layers``,
  ``_temporal``), with the checks (``_validate``), configuration and creation;
* the tools: ``testing``, ``interop``, ``_tools``, ``train``, the command line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import portable_rnn

ROOT = Path(portable_rnn.__file__).parent

#: part -> the parts it may import (a part is a top-level module or subpackage)
ALLOWED = {
    "_backend": set(),
    "_core": {"_backend"},
    "_validate": {"_backend"},
    "_config": {"_backend"},
    "_creation": {"_backend", "_config", "_core"},
    "_temporal": {"_backend", "_validate"},
    "_column": {"_backend", "_core", "_validate"},
    "rnn_layers": {"_backend", "_core", "_validate", "_temporal"},
    "__init__": {"_column", "_config", "_creation", "_validate", "_layers"},
    "_npz": set(),
    "_layers": {
        "_backend",
        "_column",
        "_config",
        "_core",
        "_creation",
        "_npz",
        "_validate",
        "interop",
    },
    "_onnx": {"_backend", "_core", "_validate"},
    "interop": {"_backend", "_core", "_creation", "_onnx", "_validate"},
    "testing": {"_backend"},
    "parallel": set(),
    "jax": {"__init__", "_backend", "_column", "_core", "_validate"},
    "torch": {"__init__", "_backend", "_column", "_core", "_validate", "_creation", "interop"},
    "pytest_plugin": {"testing"},
    "_tools": {"__init__", "rnn_layers", "testing", "_backend", "_core"},
    "train": {
        "__init__",
        "rnn_layers",
        "_backend",
        "_config",
        "_core",
        "_creation",
        "_npz",
        "_onnx",
        "parallel",
    },
    "__main__": {"_tools", "train"},
}


def _modules() -> dict[str, Path]:
    """``portable_rnn.x.y`` -> its file, for every module of the package."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _part(module: str) -> str:
    """The part a module belongs to: ``portable_rnn._core.lstm`` -> ``_core``."""
    rest = module.split(".")[1:]
    return rest[0] if rest else "__init__"


def _imports(module: str, *, top_level_only: bool) -> set[str]:
    """The portable_rnn modules ``module`` imports (resolved, relative imports included)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "portable_rnn"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "portable_rnn":
                continue
            for alias in node.names:  # `from . import _creation` names a module
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    return found - {module}


def test_every_module_imports_only_the_layers_it_may():
    wrong = []
    for module in MODULES:
        part = _part(module)
        assert part in ALLOWED, f"{module}: part {part!r} has no place in the house plan"
        for target in sorted(_imports(module, top_level_only=False)):
            other = _part(target)
            if other != part and other not in ALLOWED[part]:
                wrong.append(f"{module} imports {target} ({part} may import {ALLOWED[part]})")
    assert wrong == []


def test_the_plan_itself_has_no_circle():
    seen, order = set(), []

    def visit(part, path):
        assert part not in path, f"the plan has a circle: {' -> '.join([*path, part])}"
        if part not in seen:
            for other in sorted(ALLOWED[part]):
                visit(other, [*path, part])
            seen.add(part)
            order.append(part)

    for part in ALLOWED:
        visit(part, [])
    assert len(order) == len(ALLOWED)


def test_no_import_circle_between_modules():
    graph = {m: _imports(m, top_level_only=True) for m in MODULES}
    state: dict[str, str] = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import circle: {' -> '.join([*path, m])}"
        state[m] = "open"
        for other in sorted(graph[m]):
            visit(other, [*path, m])
        state[m] = "done"

    for m in MODULES:
        visit(m, [])


def test_the_layer_table_knows_every_part():
    assert {_part(m) for m in MODULES} == set(ALLOWED)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.endswith("__main__")))
def test_each_module_imports_first_in_a_fresh_interpreter(module):
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
