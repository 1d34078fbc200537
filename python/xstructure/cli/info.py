"""``xstructure info``: version and build information."""

from __future__ import annotations

import json

from .._backend import build_info
from .._version import __version__


def run(args) -> int:
    """``xstructure info`` with the parsed ``args``; returns the exit status."""
    print(json.dumps({"version": __version__, **build_info()}, indent=2))
    return 0


def add_parsers(sub) -> None:
    """Add the ``info`` command(s) to ``sub``, the sub-commands of :func:`xstructure.cli.build_parser`."""
    i = sub.add_parser("info", help="version and build information (OpenMP, CPU instruction set, CUDA)")
    i.set_defaults(func=run)
