"""The ``xstructure`` command line.  The only module that imports everything.

    xstructure simulate FILE|NAME|SMILES --q 0.5:12:500 --probe xray --signal total --out p.csv --plot p.png
    xstructure info
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

SIGNAL_LABELS = {
    ("xray", "total"): "I_total(q) (electrons²)",
    ("xray", "atomic"): "I_at(q) (electrons²)",
    ("xray", "molecular"): "I_mol(q) (electrons²)",
    ("xray", "sM"): "sM(q) (Å⁻¹)",
    ("electron", "total"): "I_total(q) (Å²)",
    ("electron", "atomic"): "I_at(q) (Å²)",
    ("electron", "molecular"): "I_mol(q) (Å²)",
    ("electron", "sM"): "sM(q) (Å⁻¹)",
}


def parse_q(text: str) -> np.ndarray:
    """'START:STOP:N' (N points, both ends included) or a comma-separated list, in Å⁻¹."""
    try:
        if ":" in text:
            start, stop, n = text.split(":")
            n = int(n)
            if n < 1:
                raise ValueError
            return np.linspace(float(start), float(stop), n)
        return np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--q must be START:STOP:N (e.g. 0.5:12:500) or a comma-separated list, got {text!r}") from None


def _cmd_simulate(args) -> int:
    from . import simulate
    from .structures import molecule, _read_file
    import os

    if os.path.exists(args.structure):
        frames = _read_file(args.structure)
        names = [f"frame{k}" for k in range(len(frames))] if len(frames) > 1 else [args.structure]
    else:
        frames = [molecule(args.structure)]
        names = [args.structure]
    I = simulate(frames, args.q, probe=args.probe, signal=args.signal, energy_kev=args.energy_kev,
                 compton=args.compton, progress=len(frames) > 1000)
    I = np.atleast_2d(I)
    if args.out:
        header = "q_A^-1," + ",".join(f"{args.signal}_{n}".replace(",", "_") for n in names)
        np.savetxt(args.out, np.column_stack([args.q, I.T]), delimiter=",", header=header, comments="")
        print(f"wrote {I.shape[0]} pattern(s) x {len(args.q)} q points to {args.out}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
        for k, row in enumerate(I[:20]):
            ax.plot(args.q, row, lw=1.2, label=names[k] if len(names) <= 5 else None)
        ax.set_xlabel("q (Å⁻¹)")
        ax.set_ylabel(SIGNAL_LABELS[(args.probe, args.signal)])
        probe = "X-ray" if args.probe == "xray" else "electron"
        ax.set_title(f"{probe} scattering, IAM: {args.structure}" + (" (first 20)" if len(I) > 20 else ""))
        if args.signal in ("sM", "molecular"):
            ax.axhline(0, color="0.6", lw=0.6)
        if len(names) <= 5:
            ax.legend(frameon=False)
        fig.savefig(args.plot, dpi=150)
        print(f"wrote plot {args.plot}")
    if not args.out and not args.plot:
        np.savetxt(sys.stdout, np.column_stack([args.q, I.T]), delimiter=",", fmt="%.8g")
    return 0


def _cmd_info(args) -> int:
    from . import __version__, build_info

    print(json.dumps({"version": __version__, **build_info()}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xstructure", description="X-ray and electron scattering of molecules.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("simulate", help="scattering pattern of a molecule (IAM, Debye formula)")
    s.add_argument("structure", help="structure file (xyz, extxyz, cif, pdb, ...), a name (NMM, CHD, DT, or any "
                                     "ase.build molecule such as H2O, C6H6), or a SMILES string")
    s.add_argument("--q", type=parse_q, default=parse_q("0.5:12:500"),
                   help="q grid in Å⁻¹: START:STOP:N or a comma-separated list (default 0.5:12:500)")
    s.add_argument("--probe", choices=["xray", "electron"], default="xray")
    s.add_argument("--signal", choices=["total", "atomic", "molecular", "sM"], default="total")
    s.add_argument("--energy-kev", type=float, default=None,
                   help="electron kinetic energy (keV): applies the relativistic factor to electron amplitudes")
    s.add_argument("--compton", action="store_true",
                   help="X-ray total: add incoherent (Compton) scattering (Hubbell et al. 1975; needs xraylib)")
    s.add_argument("--out", help="CSV output: q and one column per structure")
    s.add_argument("--plot", help="PNG plot of the pattern(s)")
    s.set_defaults(func=_cmd_simulate)

    i = sub.add_parser("info", help="version and build information (OpenMP, CPU instruction set, CUDA)")
    i.set_defaults(func=_cmd_info)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"xstructure: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
