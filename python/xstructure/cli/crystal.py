"""``xstructure crystal`` (a crystal's powder pattern and structure factors) and ``xstructure crystals``
(sets of random crystals for the crystal task)."""

from __future__ import annotations

import argparse
import json

from ..crystal import FACTORS, as_cell, powder_peaks, save_hkl_grid, wavelength_value
from ..learn.crystals import SYSTEMS, CrystalSet
from ..plots import plot_powder
from .args import add_progress, interrupted, output_file, output_path, parse_two_theta, progress


def run(args) -> int:
    """``xstructure crystal`` with the parsed ``args``; returns the exit status."""
    cell = as_cell(args.structure)  # missing file, no cell, zero volume: ValueError, exit 2
    if (args.hkl_grid is None) != (args.out is None):
        raise ValueError("--hkl-grid H and --out FILE.npz go together")
    wavelength, tth = wavelength_value(args.wavelength), args.two_theta
    pxrd = args.pxrd or args.plot or args.peaks
    if pxrd:  # a bad wavelength fails here, before anything is printed
        peaks = powder_peaks(cell, wavelength, (tth[0], tth[-1]), factors=args.factors, doublet=args.doublet)
    print(f"{args.structure}: {cell.describe()}")
    if pxrd:
        lam = ", ".join(f"{v:.5f}" for v in sorted(set(peaks.wavelength))) or str(wavelength)
        print(f"{len(peaks)} peaks in 2θ = {tth[0]:g}..{tth[-1]:g}° at λ = {lam} Å ({args.wavelength}), "
              f"factors {args.factors}; the {min(args.top, len(peaks))} strongest:")
        print(f"{'2θ (°)':>10} {'d (Å)':>9} {'h':>4} {'k':>3} {'l':>3} {'mult':>5} {'I (rel.)':>9}")
        for i in peaks.strongest(args.top):
            h, k, l = peaks.hkl[i]
            print(f"{peaks.two_theta[i]:10.4f} {peaks.d[i]:9.5f} {h:4d} {k:3d} {l:3d} {peaks.multiplicity[i]:5d} "
                  f"{peaks.intensity[i]:9.2f}")
        if args.peaks:
            peaks.to_csv(args.peaks)
            print(f"wrote {len(peaks)} peaks to {args.peaks}")
        if args.plot:
            plot_powder(args.plot, cell, peaks, tth, wavelength, factors=args.factors, doublet=args.doublet,
                        label=args.top)
            print(f"wrote plot {args.plot}")
    if args.hkl_grid is not None:
        save_hkl_grid(args.out, cell, args.hkl_grid, factors=args.factors)
        H = args.hkl_grid
        print(f"wrote F(hkl) on h, k, l in [-{H}, {H}] ({2 * H + 1}³, index [h+H, k+H, l+H]) to {args.out}")
    return 0


def run_crystals_create(args) -> int:
    """``xstructure crystals create`` with the parsed ``args``; returns the exit status."""
    try:
        cs = CrystalSet.create(args.out, args.n, system=args.system, seed=args.seed, chunk=args.chunk,
                               max_atoms=args.max_atoms, hmax=args.hmax, sigma=args.sigma, progress=progress(args))
    except KeyboardInterrupt:
        return interrupted(args.out)
    print(cs)
    return 0


def run_crystals_info(args) -> int:
    """``xstructure crystals info`` with the parsed ``args``; returns the exit status."""
    cs = CrystalSet.open(args.set)
    print(json.dumps({**cs.attrs, "complete": cs.complete}, indent=1))
    return 0


def add_parsers(sub) -> None:
    """Add the ``crystal`` and ``crystals`` commands to ``sub`` (see :func:`xstructure.cli.build_parser`)."""
    x = sub.add_parser(
        "crystal", help="a crystal's powder X-ray pattern (peaks, plot) and structure-factor grid",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read a crystal (CIF or any file ase.io reads with a cell), print its cell, and on request "
                    "its powder diffraction peaks (|F|² · Lorentz-polarisation, symmetry-equivalent reflections "
                    "merged by 2θ) and F(hkl) on a box of Miller indices.",
        epilog="""\
outputs: --peaks CSV: two_theta_deg,d_A,h,k,l,multiplicity,intensity,wavelength_A (strongest = 100);
  --plot PNG: the pattern (pseudo-Voigt, FWHM 0.1°) and the peaks as sticks; --hkl-grid H --out NPZ:
  hkl_grid (complex, (2H+1)³, index [h+H, k+H, l+H]), intensity |F|², H, cell (rows a, b, c in Å).
exit status: 0 done; 2 a missing or unreadable file, no cell (or zero volume), or a bad option.
examples:
  xstructure crystal NaCl.cif --pxrd
  xstructure crystal TiO2.cif --pxrd --wavelength CuKa --doublet --plot pxrd.png --peaks peaks.csv
  xstructure crystal NaCl.cif --hkl-grid 8 --out grid.npz --factors electron""")
    x.add_argument("structure", help="crystal file with a unit cell (CIF, POSCAR, extxyz, ...)")
    x.add_argument("--pxrd", action="store_true", help="print the strongest powder peaks (2θ, d, hkl, mult, I)")
    x.add_argument("--wavelength", default="1.5406",
                   help="X-ray wavelength in Å or a line name: CuKa1, CuKa, MoKa1, CoKa, ... (default 1.5406)")
    x.add_argument("--doublet", action="store_true", help="Kα1 and Kα2 peaks (a named Kα line only)")
    x.add_argument("--two-theta", type=parse_two_theta, default=parse_two_theta("5:90:8501"), metavar="START:STOP:N",
                   help="2θ range (degrees) of the peaks, and the grid of --plot (default 5:90:8501)")
    x.add_argument("--top", type=int, default=10, help="how many of the strongest peaks --pxrd prints (default 10)")
    x.add_argument("--plot", type=output_file, help="PNG plot of the pattern with the peaks as sticks")
    x.add_argument("--peaks", type=output_file, help="CSV output of all peaks")
    x.add_argument("--factors", choices=FACTORS, default="xray",
                   help="scattering factors: X-ray (Waasmaier-Kirfel, default), electron (Mott-Bethe) or Z")
    x.add_argument("--hkl-grid", type=int, metavar="H", help="F(hkl) for h, k, l in [-H, H] to --out (NPZ)")
    x.add_argument("--out", type=output_file, help="NPZ output of --hkl-grid")
    x.set_defaults(func=run)
    _add_crystals_parser(sub)


def _add_crystals_parser(sub):
    cr = sub.add_parser("crystals", help="sets of random crystals with |F|² boxes and powder patterns (zarr)",
                        description="Random symmetric crystals (cubic, trigonal or any space group), their |F(hkl)|² "
                                    "on a box and powder patterns, for `xstructure train --task crystal`.  An "
                                    "interrupted create finishes when run again with the same arguments.")
    cs = cr.add_subparsers(dest="crystals_command", required=True)
    c = cs.add_parser("create", help="generate a crystal set (or finish an interrupted one)")
    c.add_argument("--system", default="cubic", choices=sorted(SYSTEMS), help="crystal system (default cubic)")
    c.add_argument("--n", type=int, required=True, help="number of crystals")
    c.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    c.add_argument("--chunk", type=int, default=250, help="crystals per chunk, the unit of work (default 250)")
    c.add_argument("--max-atoms", type=int, default=24, help="atoms in the conventional cell at most (default 24)")
    c.add_argument("--hmax", type=int, default=8, help="|F|² box h, k, l in [-H, H] (default 8)")
    c.add_argument("--sigma", type=float, default=0.5,
                   help="Gaussian atom width of the target densities in Å (default 0.5)")
    c.add_argument("--out", required=True, type=output_path, help="the store (a directory, e.g. cubic.zarr)")
    add_progress(c)
    c.set_defaults(func=run_crystals_create)
    i = cs.add_parser("info", help="parameters of a crystal set (JSON)")
    i.add_argument("set")
    i.set_defaults(func=run_crystals_info)


