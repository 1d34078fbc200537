"""``xstructure integrate``: radial integration of detector images into one HDF5 file."""

from __future__ import annotations

import argparse
import os
import sys

from ..detector import ERROR_MODELS, RADIAL_UNITS, Geometry, Integrator, radial_unit
from ..detector.batch import integrate_files, read_mask
from ..plots import plot_curves
from .args import add_progress, output_file, parse_range, progress


def run(args) -> int:
    """``xstructure integrate`` with the parsed ``args``; returns the exit status."""
    geometry = Geometry.from_poni(args.poni)  # a bad PONI raises ValueError: exit 2
    error_model = None if args.error_model == "none" else args.error_model
    options = dict(npt=args.npt, unit=args.unit, radial_range=args.radial_range, solid_angle=args.solid_angle,
                   polarization=args.polarization, error_model=error_model, saturation=args.saturation,
                   dummy=args.dummy)
    integrator = Integrator(geometry, mask=read_mask(args.mask) if args.mask else None, **options)
    settings = {**options, "poni": os.path.abspath(args.poni), "mask": args.mask and os.path.abspath(args.mask),
                "dataset": args.dataset}
    res = integrate_files(args.images, integrator, args.out, dataset=args.dataset, settings=settings,
                          progress=progress(args))
    if res.frames == 0:
        if res.files == 1:  # its one-line error is above
            return 2
        print(f"xstructure: error: no frame could be integrated: {len(res.failed)} of {res.files} file(s) failed",
              file=sys.stderr)
        return 2
    summary = (f"integrated {res.frames} frame(s) from {res.files - len(res.failed)} file(s) into {args.out} "
               f"({integrator.npt} points, {integrator.unit})")
    print(summary + (f"; {len(res.failed)} of {res.files} file(s) failed (see the errors above)" if res.failed else ""))
    if args.plot:
        plot_curves(args.out, args.plot, radial_unit(integrator.unit).label, args.logy)
        print(f"wrote plot {args.plot}")
    return 1 if res.failed else 0


def add_parsers(sub) -> None:
    """Add the ``integrate`` command(s) to ``sub``, the sub-commands of :func:`xstructure.cli.build_parser`."""
    g = sub.add_parser(
        "integrate", help="radial (azimuthal) integration of detector images to I(q) curves in HDF5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Radially average every frame of every image file on one detector geometry (a pyFAI PONI "
                    "file) and write the profiles to one HDF5 file.",
        epilog="""\
formats: TIFF, EDF, CBF and the rest of fabio's (multi-frame files give all their frames); HDF5 (.h5, .hdf5,
  .nxs: --dataset, else the NeXus default signal or the first 3D/2D numeric dataset; 3D = a stack of frames);
  NumPy .npy (2D or 3D) and .npz (its first array).  The mask is read the same way (non-zero = left out).
output (HDF5): radial (npt,) with attrs units and long_name; intensity, sigma, count (frames, npt); source
  (frames,) e.g. "run.h5::/entry/data/data[3]"; the PONI geometry and the options as root attributes.
  See python -c "import xstructure.detector.io; help(xstructure.detector.io)".
errors: a file that cannot be read, or whose frames do not match the PONI's detector shape, is reported
  on stderr and left out (all its frames); the others are still integrated.
exit status: 0 all files integrated; 1 some files failed, the rest written; 2 nothing integrated, or a bad
  PONI, mask or option.
examples:
  xstructure integrate scan_*.tif --poni setup.poni --npt 1000 --out curves.h5 --plot curves.png
  xstructure integrate run.h5 --dataset /entry/data/data --poni setup.poni --unit 2th_deg \\
      --mask mask.edf --polarization 0.99 --error-model azimuthal --out run_curves.h5""")
    g.add_argument("images", nargs="+", help="image files (TIFF, EDF, CBF, HDF5, .npy, .npz, ...)")
    g.add_argument("--poni", required=True, help="pyFAI PONI file; its Detector_config max_shape sets the shape")
    g.add_argument("--npt", type=int, default=1000, help="number of radial bins (default 1000)")
    g.add_argument("--unit", choices=list(RADIAL_UNITS), default="q_A^-1",
                   help="radial unit (default q_A^-1)")
    g.add_argument("--mask", help="mask image (.npy, .edf, .tif, ...): non-zero pixels are left out")
    g.add_argument("--polarization", type=float, default=None,
                   help="polarisation factor to correct for, in [-1, 1] (pyFAI's: 0.99 for a horizontally "
                        "polarised synchrotron beam); default: no correction")
    g.add_argument("--no-solid-angle", dest="solid_angle", action="store_false",
                   help="do not correct for the pixels' solid angle")
    g.add_argument("--error-model", choices=[*ERROR_MODELS, "none"], default="poisson",
                   help="sigma from Poisson statistics (default), the azimuthal scatter, or none (no sigma)")
    g.add_argument("--saturation", type=float, help="leave out pixels above this value")
    g.add_argument("--dummy", type=float, help="leave out pixels equal to this value")
    g.add_argument("--radial-range", type=parse_range, metavar="MIN:MAX",
                   help="bin only this radial range, in --unit (default: the unmasked pixels' span)")
    g.add_argument("--dataset", help="HDF5 dataset of the frames, e.g. /entry/data/data")
    g.add_argument("--out", required=True, type=output_file, help="output HDF5 file of the curves")
    g.add_argument("--plot", type=output_file, help="PNG plot of the curves (up to 20; else 8 of them and the mean)")
    g.add_argument("--logy", action="store_true", help="logarithmic intensity axis in --plot")
    add_progress(g)
    g.set_defaults(func=run)
