"""``xstructure reduce``: a pump-probe run (HDF5) → ΔI/I per delay bin, ΔsM, ΔPDF and the onset fit, in HDF5."""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np

from ..experiment.fit import MODELS
from ..experiment.tasks import DATASETS, reduce_file
from ..scattering import PROBES
from .args import add_progress, output_file, parse_range, progress


def _parse_bins(text: str):
    """``--bins``: N equal-count bins, or comma-separated increasing edges in fs."""
    try:
        if "," not in text:
            n = int(text)
            if n < 1:
                raise ValueError
            return n
        edges = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of bins N >= 1 or increasing edges in fs "
                                         f"(e.g. -500,-100,0,100,500), got {text!r}") from None
    if len(edges) < 2 or not np.all(np.isfinite(edges)) or not np.all(np.diff(edges) > 0):
        raise argparse.ArgumentTypeError(f"bin edges must be at least 2 finite, increasing delays in fs, got {text!r}")
    return edges


def _parse_normalize(text: str):
    """``--normalize``: window[:QMIN:QMAX], weights or none."""
    if text == "none":
        return None
    if text in ("window", "weights"):
        return text
    parts = text.split(":")
    if parts[0] == "window" and len(parts) == 3:
        try:
            lo, hi = float(parts[1]), float(parts[2])
        except ValueError:
            lo = hi = float("nan")
        if lo < hi:
            return ("window", lo, hi)
    raise argparse.ArgumentTypeError(f"expected window:QMIN:QMAX (Å⁻¹, QMIN < QMAX), window, weights or none, "
                                     f"got {text!r}")


def _parse_reject(text: str):
    """``--reject``: K > 0 robust standard deviations, or none."""
    if text == "none":
        return None
    try:
        k = float(text)
    except ValueError:
        k = float("nan")
    if not (np.isfinite(k) and k > 0):
        raise argparse.ArgumentTypeError(f"expected a threshold K > 0 (robust standard deviations) or none, "
                                         f"got {text!r}")
    return k


def _parse_grid(text: str) -> np.ndarray:
    """``--r``: START:STOP:N (N points, both ends) in Å, 0 <= START < STOP."""
    try:
        start, stop, n = text.split(":")
        start, stop, n = float(start), float(stop), int(n)
        if not (np.isfinite(start) and np.isfinite(stop) and 0 <= start < stop and n >= 2):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP:N in Å with 0 <= START < STOP and N >= 2 "
                                         f"(e.g. 0:10:500), got {text!r}") from None
    return np.linspace(start, stop, n)


def _parse_delays(text: str) -> list:
    """``--delays``: comma-separated delays in fs."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = [float("nan")]
    if not np.all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"expected comma-separated delays in fs (e.g. -200,0,100,500), got {text!r}")
    return values


def _parse_dataset(text: str) -> tuple:
    """``--dataset ROLE=PATH``: rename one dataset of the input file (PATH none: do not read it)."""
    role, sep, path = text.partition("=")
    if not sep or role not in DATASETS or not path:
        raise argparse.ArgumentTypeError(f"expected ROLE=PATH with ROLE one of {', '.join(DATASETS)} "
                                         f"(e.g. signals=/entry/data/data, timetool=none), got {text!r}")
    if path == "none":
        if role not in ("timetool", "weights"):
            raise argparse.ArgumentTypeError(f"only timetool and weights may be none, got {text!r}")
        return role, None
    return role, path


def run(args) -> int:
    """``xstructure reduce`` with the parsed ``args``; returns the exit status."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        summary = reduce_file(
            args.runs, args.out, bins=args.bins, normalize=args.normalize, reject=args.reject,
            reject_fraction=args.reject_fraction, reference=args.reference, bootstrap=args.bootstrap, seed=args.seed,
            datasets=dict(args.dataset or []), molecule=args.molecule, probe=args.probe, energy_kev=args.energy_kev,
            r=args.r, damping=args.damping, fill_low_q=None if args.fill_low_q == "none" else args.fill_low_q,
            baseline=args.baseline, onset=args.onset, onset_model=args.onset_model, plot=args.plot,
            delays=args.delays, num_threads=args.threads, progress=progress(args))
    for w in caught:
        print("xstructure: warning: " + " ".join(str(w.message).split()), file=sys.stderr)
    print(summary)
    return 0


def add_parsers(sub) -> None:
    """Add the ``reduce`` command to ``sub``, the sub-commands of :func:`xstructure.cli.build_parser`."""
    g = sub.add_parser(
        "reduce", help="pump-probe run (HDF5) → ΔI/I per delay bin, ΔsM, ΔPDF and time zero, in HDF5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Reduce a time-resolved pump-probe run, one radial profile per shot, to the relative "
                    "difference ΔI/I per delay bin with bootstrap errors (shots normalised one by one, outliers "
                    "rejected by a median/MAD test, laser-on shots referenced to laser-off shots); with "
                    "--molecule also the modified molecular difference ΔsM and the difference pair distribution "
                    "ΔPDF; with --onset a fit of time zero and the instrument response.",
        epilog="""\
input (HDF5, PumpProbe.from_hdf5): q (Q,) Å^-1; signals (S, Q) one profile per shot; delay (S,) fs;
  pumped (S,) bool; optional timetool (S,) fs, added to delay; optional weights (S,) intensity monitor.
  Other names with --dataset ROLE=PATH (repeatable).  Several files are one run, their shots end to end.
output (HDF5, NeXus): /entry/difference (NXdata: diff (T, Q) = ΔI/I, diff_errors, delay (T,) fs,
  q (Q,) 1/angstrom, counts, edges (T, 2) fs, off = laser-off reference); /entry/reduction (rejected
  shots per reason, settings as JSON); with --molecule /entry/dsm (dsm, dsm_errors, 1/angstrom) and
  /entry/pdf (pdf, pdf_errors (T, R), 1/angstrom^2, r in angstrom); with --onset /entry/onset (the signal
  per bin, and t0, width, amplitude with their _error as attributes).  xstructure.experiment.read_reduced
  reads it back.  See python -c "import xstructure.experiment.files as f; help(f)".
plot (--plot): the ΔI/I map (delay x q), ΔsM and ΔPDF (or ΔI/I) at chosen delays, the onset fit.
exit status: 0 done; 2 a missing or unreadable file or dataset, no laser-off shots, a bad option, a molecule
  that cannot be simulated on the run's q grid, a failed fit (nothing is written then).
examples:
  xstructure reduce run.h5 --bins 40 --normalize weights --out reduced.h5 --plot reduced.png
  xstructure reduce run_0*.h5 --bins 60 --normalize window:1:8 --reference all --molecule CHD \\
      --onset 1:3 --r 0:8:400 --delays -200,0,200,800 --out reduced.h5 --plot reduced.png
  xstructure reduce scan.nxs --dataset signals=/entry/data/data --dataset delay=/entry/delay \\
      --dataset pumped=/entry/laser_on --dataset timetool=none --probe electron --energy-kev 3000 \\
      --molecule CHD --out reduced.h5""")
    g.add_argument("runs", nargs="+", metavar="RUN.h5", help="the run: one HDF5 file, or several files of one run")
    g.add_argument("--bins", type=_parse_bins, default=50, metavar="N|EDGES",
                   help="N equal-count delay bins (default 50), or comma-separated bin edges in fs")
    g.add_argument("--normalize", type=_parse_normalize, default="window", metavar="window:QMIN:QMAX|weights|none",
                   help="per-shot normalisation: each shot's sum over QMIN..QMAX Å^-1 (window alone: the whole "
                        "grid; default), the weights dataset (an intensity monitor), or none")
    g.add_argument("--reject", type=_parse_reject, default=5.0, metavar="K|none",
                   help="outlier threshold in robust standard deviations (1.4826 MAD; default 5), or none")
    g.add_argument("--reject-fraction", type=float, default=0.02, metavar="F",
                   help="a shot with more than this fraction of its q points beyond K is an outlier (default 0.02)")
    g.add_argument("--reference", choices=("nearest", "all"), default="nearest",
                   help="laser-off reference: the 4 nearest in acquisition order (default; robust to drift) or all")
    g.add_argument("--bootstrap", type=int, default=100, metavar="B",
                   help="bootstrap resamples for the errors (default 100; 0: no errors)")
    g.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    g.add_argument("--dataset", type=_parse_dataset, action="append", metavar="ROLE=PATH",
                   help=f"dataset of the input by role ({', '.join(DATASETS)}); timetool=none or weights=none "
                        "ignores one")
    g.add_argument("--molecule", help="the reactant (a name, SMILES or structure file): also ΔsM and ΔPDF")
    g.add_argument("--probe", choices=PROBES, default="xray", help="X-rays or electrons (default xray)")
    g.add_argument("--energy-kev", type=float, default=None, help="electron kinetic energy (keV)")
    g.add_argument("--r", type=_parse_grid, default=None, metavar="START:STOP:N",
                   help="distances of the ΔPDF in Å (default 0:10:500)")
    g.add_argument("--damping", type=float, default=0.03, metavar="K",
                   help="ΔPDF window exp(-K q^2), K in Å^2 (default 0.03)")
    g.add_argument("--fill-low-q", choices=("none", "zero"), default="none",
                   help="ΔsM below the first q in the ΔPDF: nothing (default) or a line to ΔsM(0) = 0")
    g.add_argument("--baseline", type=int, default=None, metavar="DEGREE",
                   help="subtract from ΔsM its least-squares polynomial of this degree in q (window "
                        "normalisation leaves a smooth offset there; 1 or 2 is usually enough)")
    g.add_argument("--onset", type=parse_range, metavar="QMIN:QMAX",
                   help="fit time zero and the instrument response to the mean ΔI/I over this q range (Å^-1)")
    g.add_argument("--onset-model", choices=MODELS, default="step",
                   help="step: an error function; step_exp: an exponential rise convolved with the Gaussian (default step)")
    g.add_argument("--delays", type=_parse_delays, metavar="T1,T2,...",
                   help="delays (fs) of the curves in --plot (the nearest bins; default: t0 - 3σ, t0, t0 + 3σ "
                        "and the latest with --onset, else four spread over the bins)")
    g.add_argument("--threads", type=int, default=None, help="worker threads (default: every CPU)")
    g.add_argument("--out", required=True, type=output_file, help="output HDF5 file")
    g.add_argument("--plot", type=output_file, help="figure (PNG, PDF, SVG, ...)")
    add_progress(g)
    g.set_defaults(func=run)

