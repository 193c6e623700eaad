"""Sphinx configuration of the oasa documentation: ``make docs`` (warnings are errors).

The guide is Markdown (MyST). The API reference is generated from the docstrings: before
each build this file writes ``api/<page>.rst``, one ``automodule`` per module of the
library packages, found by walking them, so a module added, moved or removed is picked up
without editing a list. ``oasa.cli`` is the command, documented in ``commands.md``.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

project = "oasa"
author = "the oasa authors"
copyright = f"{time.gmtime().tm_year}, {author}"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
# docs/results/*.md are the benches' sections of results.md (bench/results.py joins
# them); they are not pages of their own.
exclude_patterns = ["_build", "results/*.md"]

html_theme = "furo"
html_title = "oasa"

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = False
napoleon_numpy_docstring = True

# QAT (oasa.quant.qat) imports torch at module level. torch comes with the `train` extra,
# not with `docs`, so a docs-only install documents that module against a stand-in.
autodoc_mock_imports = [] if importlib.util.find_spec("torch") else ["torch"]

# -- API reference pages -----------------------------------------------------------------

#: page name -> (title, introduction, root modules; packages are walked).
API_PAGES = {
    "core": (
        "oasa.config, oasa.errors, oasa.files, oasa.points",
        "The configuration every part shares, the error classes the ``oasa`` command maps "
        "to its exit codes, the file handling every command uses, and where a sweep's "
        "points run (local processes or Dask).",
        ["oasa.config", "oasa.errors", "oasa.files", "oasa.points"],
    ),
    "sim": (
        "oasa.sim",
        "The golden model, the cycle model, certificates, the network file, and the layer "
        "and network runners on every backend.",
        ["oasa.sim"],
    ),
    "quant": (
        "oasa.quant",
        "The overflow-safe quantizer: methods, post-training quantization, "
        "quantization-aware training, the digits benchmark and the accuracy sweep.",
        ["oasa.quant"],
    ),
    "hw": (
        "oasa.hw",
        "The Amaranth RTL: processing element, array, output stage, sequencer, registers, "
        "the accelerator, deliberately broken variants for the tests, and the formal "
        "harnesses.",
        ["oasa.hw"],
    ),
    "fpga": (
        "oasa.fpga",
        "Board tops, the open-toolchain build, reports, sweeps, the cost model and the UART "
        "host link.",
        ["oasa.fpga"],
    ),
}
#: Never documented here: the command (being a thin layer over the library, its reference
#: is commands.md) and pytest's conftest files inside packages.
API_SKIP = ("oasa.cli", "conftest")


def _modules(root: str) -> list[str]:
    """``root`` and, if it is a package, every module under it (depth first, sorted)."""
    mod = importlib.import_module(root)
    names = [root]
    if hasattr(mod, "__path__"):
        for info in sorted(pkgutil.iter_modules(mod.__path__), key=lambda i: i.name):
            if info.name.startswith("_") or info.name in API_SKIP:
                continue
            names += _modules(f"{root}.{info.name}")
    return names


def _write_api_pages() -> None:
    out = HERE / "api"
    out.mkdir(exist_ok=True)
    pages = {}
    for page, (title, intro, roots) in API_PAGES.items():
        lines = [title, "=" * len(title), "", intro, ""]
        for name in (n for root in roots for n in _modules(root)):
            if name.startswith(API_SKIP[0]):
                continue
            lines += [name, "-" * len(name), "", f".. automodule:: {name}", ""]
        pages[page] = "\n".join(lines)
    pages["index"] = "\n".join(
        [
            "API reference",
            "=============",
            "",
            "Generated from the docstrings of the library packages (``docs/conf.py`` lists",
            "their modules at every build).",
            "",
            ".. toctree::",
            "   :maxdepth: 2",
            "",
            *(f"   {page}" for page in API_PAGES),
            "",
        ]
    )
    for page, text in pages.items():
        path = out / f"{page}.rst"
        if not path.exists() or path.read_text() != text:  # unchanged: no rebuild
            path.write_text(text)


_write_api_pages()
