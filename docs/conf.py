"""Sphinx configuration of the xstructure documentation.

Build (from the repository root, offline)::

    python -m sphinx -W -b html docs docs/_build

Environment variables:

``XSTRUCTURE_GALLERY``
    ``full`` (default) executes every example of ``examples/``; ``off`` builds the gallery pages without running
    them (no figures; for a quick check of the text); any other value is a regular expression, and only the
    examples whose file name matches it are executed (e.g. ``XSTRUCTURE_GALLERY='plot_0[1-3]'``). The user
    guide shows the figures of ``plot_10_cli_figures``: builds that do not run it leave them out (without a
    warning) unless an earlier build left them in ``auto_examples/images``.
"""

from __future__ import annotations

import os
import pathlib
import re
import sys
import warnings

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
try:                                       # the installed package (pip install .) ...
    import xstructure  # noqa: F401
except ImportError:                        # ... or the source tree with a compiled core built in place
    sys.path.insert(0, str(ROOT / "python"))

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")

# -- project ---------------------------------------------------------------------------------------------------

project = "xstructure"
author = "the xstructure developers"
copyright = "2026, the xstructure developers"
release = re.search(r'^version\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M).group(1)
version = release

# -- extensions ------------------------------------------------------------------------------------------------

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
templates_path = ["_templates"]
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.json", "auto_examples/*.md5", "figures/*.json",
                    "requirements.txt"]
nitpicky = False
language = "en"

# No network at build time: no intersphinx inventories are fetched.
intersphinx_mapping: dict = {}

# -- autodoc / autosummary / numpydoc --------------------------------------------------------------------------

autosummary_generate = True
autosummary_generate_overwrite = True
autosummary_ignore_module_all = False   # a module's __all__ is its public API
autosummary_imported_members = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"              # the numpydoc sections state types, shapes and units
add_module_names = False

numpydoc_show_class_members = False     # the class template lists the methods
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

def _api_modules() -> list[str]:
    """The public modules, as listed (once) in the autosummary blocks of ``api.rst``."""
    import re

    return re.findall(r"^ {3}(xstructure(?:\.\w+)*)\s*$", (HERE / "api.rst").read_text(), flags=re.M)


def _origins(modules: list[str]) -> dict[str, dict[str, str]]:
    """For each listed module, the names of its ``__all__`` that another listed module defines (re-exports),
    mapped to that module's full name: the module pages link to them instead of documenting them twice."""
    import importlib

    listed = set(modules)
    out: dict[str, dict[str, str]] = {}
    for name in modules:
        mod = importlib.import_module(name)
        for member in getattr(mod, "__all__", []):
            obj = getattr(mod, member, None)
            home = getattr(obj, "__module__", None)
            qual = getattr(obj, "__qualname__", member)
            if home and home != name and home in listed and callable(obj):
                out.setdefault(name, {})[member] = f"{home}.{qual}"
    return out


api_modules = _api_modules()
_origin = _origins(api_modules)
_alias: dict[str, list[str]] = {}
for _mod, _names in _origin.items():
    for _member, _home in _names.items():
        _alias.setdefault(_home, []).append(f"{_mod}.{_member}")
# xs_origin: re-exports per module page; xs_alias: the other names an object is reached by (for the mini-galleries)
autosummary_context = {"xs_origin": _origin, "xs_alias": _alias}

# -- MyST (the Markdown user-guide pages) ----------------------------------------------------------------------

myst_enable_extensions = ["colon_fence", "deflist", "dollarmath"]
myst_heading_anchors = 3

# -- sphinx-gallery --------------------------------------------------------------------------------------------

_gallery = os.environ.get("XSTRUCTURE_GALLERY", "full").strip()
sphinx_gallery_conf = {
    "examples_dirs": str(ROOT / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_" if _gallery in ("full", "", "off") else _gallery,
    "ignore_pattern": r"__init__\.py|/_",
    "plot_gallery": "False" if _gallery == "off" else "True",
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "abort_on_example_error": True,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "show_memory": False,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "capture_repr": ("_repr_html_", "__repr__"),
    "first_notebook_cell": None,
    "doc_module": ("xstructure",),
    "backreferences_dir": "gen_modules/backreferences",
    "reference_url": {"xstructure": None},
}

# The user-guide pages show figures that the gallery draws (auto_examples/images/...). A build that does not run
# every example has none of them: their missing-image warnings are expected there, and only there.
if _gallery not in ("full", ""):
    suppress_warnings = ["image.not_readable"]

# Harmless, known messages from third-party code while the examples run (not Sphinx warnings).
warnings.filterwarnings("ignore", message="Matplotlib is currently using agg")

# -- HTML ------------------------------------------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"xstructure {release}"
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "changelog": [], "getting_started": []}
html_context = {"default_mode": "light"}


# -- docstrings: plain-text |x| -----------------------------------------------------------------------------------
# The docstrings write absolute values and amplitudes as |F|, |F(hkl)|² or |q|, as physics text does. In rST a
# word between bars is a substitution reference, so the bars are escaped before the docstring is parsed --
# except inside inline literals, roles (:math:`|x|` stays LaTeX), literal and math blocks, and doctests.

_INLINE = re.compile(r"(``.+?``|:[\w:.-]+:`[^`]*`|`[^`]*`_{0,2})")


def _escape_bars(line: str) -> str:
    parts = _INLINE.split(line)
    return "".join(p if k % 2 else p.replace("|", r"\|") for k, p in enumerate(parts))


def _plain_bars(app, what, name, obj, options, lines):
    literal_indent = None          # indentation of the paragraph that opened a literal or math block
    for k, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None:
            if not stripped or indent > literal_indent:
                continue
            literal_indent = None
        if stripped.startswith(">>>") or stripped.startswith("..."):
            continue
        if stripped.endswith("::") or stripped.startswith((".. math::", ".. code", ".. highlight")):
            literal_indent = indent
            if stripped.startswith(".."):
                continue
        lines[k] = _escape_bars(line)


# -- cross-references to re-exported names -------------------------------------------------------------------
# ``xstructure.simulate`` is documented once, as ``xstructure.scattering.simulate``; references to the short
# name (and to the members of re-exported classes, ``xstructure.Pool.create``) resolve to the documented one.

_CANONICAL = {alias: home for home, aliases in _alias.items() for alias in aliases}


def _resolve_reexport(app, env, node, contnode):
    if node.get("refdomain") != "py":
        return None
    target = node.get("reftarget", "")
    for alias, home in _CANONICAL.items():
        if target == alias or target.startswith(alias + "."):
            return env.get_domain("py").resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                                                     home + target[len(alias):], node, contnode)
    return None


def setup(app):
    app.connect("autodoc-process-docstring", _plain_bars, priority=400)   # before numpydoc (500)
    app.connect("missing-reference", _resolve_reexport)
