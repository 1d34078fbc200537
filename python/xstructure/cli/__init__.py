"""The ``xstructure`` command line: one thin module per command group (parse → call one library function →
print).  :func:`main` is the entry point.  Examples::

    xstructure simulate FILE|NAME|SMILES --q 0.5:12:500 --probe xray --signal total --out p.csv --plot p.png
    xstructure integrate run_*.h5 --poni setup.poni --npt 1000 --out curves.h5 --plot curves.png
    xstructure reduce run.h5 --bins 50 --normalize weights --molecule CHD --onset 1:3 --out red.h5 --plot red.png
    xstructure crystal NaCl.cif --pxrd --wavelength CuKa1 --two-theta 5:90:8501 --plot pxrd.png --peaks peaks.csv
    xstructure crystal NaCl.cif --hkl-grid 8 --out grid.npz
    xstructure pool create NMM --method wigner --temperature 300 --n 100000 --chunk 4096 --out nmm.zarr
    xstructure pool simulate nmm.zarr --q 0.5:10:500 --probe xray --signal molecular [--scheduler tcp://...]
    xstructure pool info nmm.zarr --plot info.png
    xstructure info
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from importlib import import_module

from .args import parse_q

__all__ = ["EXTRAS", "Parser", "build_parser", "main", "parse_q"]

# The command groups, in the order of the help; each module has add_parsers(sub) and a run function per command.
# They are imported when the parser is built, so that `import xstructure` never loads the command line.
GROUPS = ("simulate", "integrate", "experiment", "live", "crystal", "pool", "learn", "info")

#: Optional packages -> the extra of xstructure that installs them (for the one-line message of a missing one).
EXTRAS = {"torch": "torch", "safetensors": "torch", "rdkit": "smiles", "xraylib": "compton", "dask": "scale",
          "distributed": "scale", "pyxtal": "crystals", "skimage": "crystals", "zmq": "live", "msgpack": "live",
          "karabo_bridge": "live", "cbor2": "live", "p4p": "live", "bokeh": "live"}


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line: ``xstructure CMD: error: MESSAGE (see xstructure CMD --help)``."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command.

    Returns
    -------
    argparse.ArgumentParser
        The ``xstructure`` parser with one sub-command per command (``simulate``, ``molecules``, ``integrate``,
        ``reduce``, ``crystal``, ``crystals``, ``pool``, ``train``, ``evaluate``, ``predict``, ``info``).
    """
    p = Parser(prog="xstructure", description="X-ray and electron scattering of molecules and crystals.",
               epilog="xstructure COMMAND --help describes a command, with examples.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in GROUPS:
        import_module(f".{name}", __name__).add_parsers(sub)
    return p


def _negative_values(argv: list) -> list:
    """Join ``--opt -1:12:10`` into ``--opt=-1:12:10``: argparse takes a value starting with '-' for an option."""
    out = []
    for a in argv:
        if (out and out[-1].startswith("--") and "=" not in out[-1]
                and re.match(r"^-\.?\d[^ ]*[:,]", a)):
            out[-1] = f"{out[-1]}={a}"
        else:
            out.append(a)
    return out


def _missing_package(exc: ImportError) -> str:
    name = (exc.name or "").split(".")[0]
    if "pip install" in str(exc) or name not in EXTRAS:
        return str(exc)
    return f"this needs the optional package {name!r}: pip install 'xstructure[{EXTRAS[name]}]'"


def main(argv=None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : list of str or None, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0 done, 1 some input files failed, 2 a user's mistake (with a one-line message on
        stderr, never a traceback), 130 interrupted (rerun the same command to finish), 141 the reader of the
        output went away (``xstructure info | head``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(_negative_values(sys.argv[1:] if argv is None else list(argv)))
    except SystemExit as exc:  # --help (0) or a one-line usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    try:
        status = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return status
    except BrokenPipeError:
        # The reader (head, less) has gone: point stdout at /dev/null so that the flush at exit is silent.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("xstructure: interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:
        message = _missing_package(exc)
    except ValueError as exc:
        message = str(exc)
    except OSError as exc:  # a file the command writes or reads (the options are checked up front where possible)
        message = f"{exc.strerror or exc}: {exc.filename!r}" if exc.filename else str(exc)
    print("xstructure: error: " + " ".join(message.split()), file=sys.stderr)
    return 2
