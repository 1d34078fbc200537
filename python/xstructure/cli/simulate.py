"""``xstructure simulate``: scattering patterns of a molecule; ``xstructure molecules``: the names it knows."""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ..plots import plot_patterns, structure_title
from ..profiles import write_patterns
from ..scattering import PROBES, SIGNALS, simulate
from ..structures import molecule_names, read_structures
from .args import DEFAULT_Q, output_file, parse_q


def run(args) -> int:
    """``xstructure simulate`` with the parsed ``args``; returns the exit status."""
    frames, names = read_structures(args.structure)
    if any(frames[0].pbc):
        print(f"xstructure: note: {args.structure} has a periodic cell; simulate treats its {len(frames[0])} atoms "
              "as one isolated cluster (for the crystal's powder pattern: xstructure crystal FILE --pxrd)",
              file=sys.stderr)
    I = np.atleast_2d(simulate(frames, args.q, probe=args.probe, signal=args.signal, energy_kev=args.energy_kev,
                               compton=args.compton, progress=len(frames) > 1000))
    if args.out:
        write_patterns(args.out, args.q, I, names, args.signal)
        print(f"wrote {I.shape[0]} pattern(s) x {len(args.q)} q points to {args.out}")
    if args.plot:
        plot_patterns(args.plot, args.q, I, names, args.probe, args.signal,
                      structure_title(args.structure, frames))
        print(f"wrote plot {args.plot}")
    if not args.out and not args.plot:
        write_patterns(sys.stdout, args.q, I, names, args.signal)
    return 0


def run_molecules(args) -> int:
    """``xstructure molecules`` with the parsed ``args``; returns the exit status."""
    names = molecule_names()
    if args.search:
        key = args.search.lower()
        names = {k: v for k, v in names.items() if key in k.lower() or key in v.lower()}
    width = max((len(k) for k in names), default=0)
    for k, v in names.items():
        print(f"{k:<{width}}  {v}")
    if not names:
        print(f"no molecule name contains {args.search!r}", file=sys.stderr)
        return 1
    return 0


def add_parsers(sub) -> None:
    """Add the ``simulate`` and ``molecules`` commands to ``sub``, the sub-commands of
    :func:`xstructure.cli.build_parser`."""
    s = sub.add_parser(
        "simulate", help="scattering pattern of a molecule (IAM, Debye formula)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Isotropic X-ray or electron scattering of a molecule in the Independent Atom Model (the Debye "
                    "formula): I_at, I_mol, I_total or sM = q I_mol / I_at on a q grid.  A multi-frame structure "
                    "file gives one pattern per frame.",
        epilog=f"""\
signals: total = I_at + I_mol; atomic = I_at = sum_i f_i^2; molecular = I_mol = sum_i!=j f_i f_j sin(q r_ij)/(q r_ij);
  sM = q I_mol / I_at (1/Å).  Units: electrons^2 (X-ray), Å^2 (electron).
outputs: --out CSV: header q_A^-1,SIGNAL_NAME... then q and one column per structure (xstructure predict reads
  it); --plot PNG; with neither, the CSV goes to stdout.
exit status: 0 done; 2 an unknown molecule, a missing or unreadable file, or a bad option.
examples:
  xstructure simulate NMM --out nmm.csv --plot nmm.png
  xstructure simulate benzene --probe electron --signal sM --energy-kev 3000 --q 0.5:12:500
  xstructure simulate "CC(=O)O" --q 0:20:1000 --signal molecular > acetic_acid.csv
  xstructure simulate trajectory.xyz --signal sM --out frames.csv
  xstructure molecules           (the names simulate knows; default q grid {DEFAULT_Q} Å^-1)""")
    s.add_argument("structure", help="structure file (xyz, extxyz, cif, pdb, ...), a name (NMM, CHD, DT, an "
                                     "ase.build molecule such as H2O or C6H6, or a common name such as benzene: "
                                     "xstructure molecules lists them), or a SMILES string")
    s.add_argument("--q", type=parse_q, default=parse_q(DEFAULT_Q), metavar="START:STOP:N",
                   help=f"q grid in Å⁻¹: START:STOP:N or a comma-separated list (default {DEFAULT_Q})")
    s.add_argument("--probe", choices=PROBES, default="xray", help="X-rays or electrons (default xray)")
    s.add_argument("--signal", choices=SIGNALS, default="total",
                   help="total, atomic, molecular or sM (default total; see below)")
    s.add_argument("--energy-kev", type=float, default=None,
                   help="electron kinetic energy (keV): applies the relativistic factor to electron amplitudes")
    s.add_argument("--compton", action="store_true",
                   help="X-ray total: add incoherent (Compton) scattering (Hubbell et al. 1975; needs xraylib)")
    s.add_argument("--out", type=output_file, help="CSV output: q and one column per structure")
    s.add_argument("--plot", type=output_file, help="PNG plot of the pattern(s)")
    s.set_defaults(func=run)
    m = sub.add_parser("molecules", help="the molecule names simulate, pool create and predict know",
                       description="Every molecule known by name: the built-in NMM, CHD and DT, and the G2 set of "
                                   "ase.build.molecule (any capitalisation, or a common name such as benzene).")
    m.add_argument("search", nargs="?", help="show only names or descriptions containing this text")
    m.set_defaults(func=run_molecules)
