"""The documentation covers the public API, names every cell, and its code blocks wrap."""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = "".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))
ENTRIES = set(re.findall(r"^::: ([\w.]+)", DOCS, flags=re.M))
MODULES = [
    "portable_rnn",
    "portable_rnn.rnn_layers",
    "portable_rnn.interop",
    "portable_rnn.testing",
    "portable_rnn.train",
    "portable_rnn.jax",
    "portable_rnn.torch",
    "portable_rnn.parallel",
]


@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_has_an_api_entry(module):
    """A ``::: module.name`` entry, the whole module's entry, or (constants) a table row."""
    names = importlib.import_module(module).__all__
    missing = [
        name
        for name in names
        if f"{module}.{name}" not in ENTRIES
        and module not in ENTRIES
        and not (name.isupper() and f"| `{name}` |" in DOCS)
    ]
    assert not missing, f"{module}: no API entry for {missing}"


def test_every_description_names_the_three_cells():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    description = re.search(r'^description = "(.*)"$', pyproject, flags=re.M)
    mkdocs = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    site = re.search(r"^site_description: (.*)$", mkdocs, flags=re.M)
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8").split("\n\n")[1]
    package = importlib.import_module("portable_rnn").__doc__.splitlines()[0]
    readme = (ROOT / "README.md").read_text(encoding="utf-8").split("\n\n")[1]
    assert description and site
    for text in (description[1], site[1], index, package, readme):
        assert all(cell in text for cell in ("RNN", "LSTM", "GRU")), text


def test_code_blocks_wrap():
    mkdocs = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    sheets = re.findall(r"^  - (\S+\.css)", mkdocs, flags=re.M)
    assert sheets, "mkdocs.yml has no extra_css"
    css = "".join((ROOT / "docs" / s).read_text(encoding="utf-8") for s in sheets)
    assert re.search(r"pre > code\s*\{[^}]*white-space:\s*pre-wrap", css)
