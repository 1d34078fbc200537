"""``xstructure simulate``: scattering patterns of a molecule."""

from __future__ import annotations

import sys

import numpy as np

from ..plots import plot_patterns
from ..profiles import write_patterns
from ..scattering import PROBES, SIGNALS, simulate
from ..structures import read_structures
from .args import parse_q


def run(args) -> int:
    """``xstructure simulate`` with the parsed ``args``; returns the exit status."""
    frames, names = read_structures(args.structure)
    I = np.atleast_2d(simulate(frames, args.q, probe=args.probe, signal=args.signal, energy_kev=args.energy_kev,
                               compton=args.compton, progress=len(frames) > 1000))
    if args.out:
        write_patterns(args.out, args.q, I, names, args.signal)
        print(f"wrote {I.shape[0]} pattern(s) x {len(args.q)} q points to {args.out}")
    if args.plot:
        plot_patterns(args.plot, args.q, I, names, args.probe, args.signal, args.structure)
        print(f"wrote plot {args.plot}")
    if not args.out and not args.plot:
        np.savetxt(sys.stdout, np.column_stack([args.q, I.T]), delimiter=",", fmt="%.8g")
    return 0


def add_parsers(sub) -> None:
    """Add the ``simulate`` command(s) to ``sub``, the sub-commands of :func:`xstructure.cli.build_parser`."""
    s = sub.add_parser("simulate", help="scattering pattern of a molecule (IAM, Debye formula)")
    s.add_argument("structure", help="structure file (xyz, extxyz, cif, pdb, ...), a name (NMM, CHD, DT, or any "
                                     "ase.build molecule such as H2O, C6H6), or a SMILES string")
    s.add_argument("--q", type=parse_q, default=parse_q("0.5:12:500"),
                   help="q grid in Å⁻¹: START:STOP:N or a comma-separated list (default 0.5:12:500)")
    s.add_argument("--probe", choices=PROBES, default="xray")
    s.add_argument("--signal", choices=SIGNALS, default="total")
    s.add_argument("--energy-kev", type=float, default=None,
                   help="electron kinetic energy (keV): applies the relativistic factor to electron amplitudes")
    s.add_argument("--compton", action="store_true",
                   help="X-ray total: add incoherent (Compton) scattering (Hubbell et al. 1975; needs xraylib)")
    s.add_argument("--out", help="CSV output: q and one column per structure")
    s.add_argument("--plot", help="PNG plot of the pattern(s)")
    s.set_defaults(func=run)
