"""The ``xstructure`` command line: one thin module per command group (parse → call one library function →
print).  :func:`main` is the entry point.  Examples::

    xstructure simulate FILE|NAME|SMILES --q 0.5:12:500 --probe xray --signal total --out p.csv --plot p.png
    xstructure integrate run_*.h5 --poni setup.poni --npt 1000 --out curves.h5 --plot curves.png
    xstructure crystal NaCl.cif --pxrd --wavelength CuKa1 --two-theta 5:90:8501 --plot pxrd.png --peaks peaks.csv
    xstructure crystal NaCl.cif --hkl-grid 8 --out grid.npz
    xstructure pool create NMM --method wigner --temperature 300 --n 100000 --chunk 4096 --out nmm.zarr
    xstructure pool simulate nmm.zarr --q 0.5:10:500 --probe xray --signal molecular [--scheduler tcp://...]
    xstructure pool info nmm.zarr --plot info.png
    xstructure info
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module

from .args import parse_q

__all__ = ["main", "build_parser", "parse_q"]

# The command groups, in the order of the help; each module has add_parsers(sub) and a run function per command.
# They are imported when the parser is built, so that `import xstructure` never loads the command line.
GROUPS = ("simulate", "integrate", "crystal", "pool", "learn", "info")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command.

    Returns
    -------
    argparse.ArgumentParser
        The ``xstructure`` parser with one sub-command per command (``simulate``, ``integrate``, ``crystal``,
        ``crystals``, ``pool``, ``train``, ``evaluate``, ``predict``, ``info``).
    """
    p = argparse.ArgumentParser(prog="xstructure",
                                description="X-ray and electron scattering of molecules and crystals.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in GROUPS:
        import_module(f".{name}", __name__).add_parsers(sub)
    return p


def main(argv=None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : list of str or None, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 done, 1 some input files failed, 2 a user's mistake (with a one-line message),
        130 interrupted (rerun the same command to finish).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"xstructure: error: {exc}", file=sys.stderr)
        return 2
