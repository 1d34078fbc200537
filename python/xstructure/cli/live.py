"""``xstructure live``: frames from a facility stream (or a simulated one) → profiles, ΔI/I, structures, a view."""

from __future__ import annotations

import argparse
import sys

from ..live.pipeline import POLICIES
from ..live.simulate import PROTOCOLS
from ..live.tasks import format_summary, run_live
from ..live.urls import parse_source
from .args import output_file


def _source(text: str) -> str:
    try:
        parse_source(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _shape(text: str) -> tuple:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
        if h < 8 or w < 8:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW with H, W >= 8 (e.g. 512x512), got {text!r}") from None
    return h, w


def _edges(text: str):
    """``--bins``: START:STOP:N (N bins between START and STOP) or comma-separated edges, fs."""
    import numpy as np

    try:
        if ":" in text:
            a, b, n = text.split(":")
            edges = np.linspace(float(a), float(b), int(n) + 1)
        else:
            edges = np.array([float(v) for v in text.split(",")])
        if edges.size < 2 or not np.all(np.isfinite(edges)) or not np.all(np.diff(edges) > 0):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP:N (N >= 1 bins) or increasing comma-separated edges "
                                         f"in fs, got {text!r}") from None
    return edges


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
            if not v > 0:
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
        return v
    return parse


def run(args) -> int:
    """``xstructure live`` with the parsed ``args``; returns the exit status."""
    summary = run_live(args.source, poni=args.poni, simulate=args.simulate, out=args.out, overwrite=args.overwrite,
                       view=args.view, open_browser=args.open, model=args.model, molecule=args.molecule,
                       bins=args.bins, keys=args.keys, npt=args.npt, policy=args.policy, queue=args.queue,
                       batch=args.batch, publish=args.publish, frames=args.frames, duration=args.duration,
                       idle=args.idle, sim_shape=args.sim_shape, sim_frames=args.sim_frames,
                       sim_rate=None if args.sim_rate == 0 else args.sim_rate,
                       log=(lambda line: print(line, file=sys.stderr, flush=True)) if not args.quiet else None)
    print(format_summary(summary, args.out))
    return 2 if summary.stopped_by.startswith("error") else 0


def add_parsers(sub) -> None:
    """Add the ``live`` command to ``sub``, the sub-commands of :func:`xstructure.cli.build_parser`."""
    g = sub.add_parser(
        "live", help="live analysis of a detector stream: profiles, ΔI/I, structures, a view in the browser",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Receive detector frames from a facility stream (Karabo bridge, DECTRIS SIMPLON stream v2, "
                    "EPICS PV Access NTNDArray, or a growing HDF5 file / a folder of files), integrate them, "
                    "reduce pump-probe delays to ΔI/I as they come, optionally invert every shot with a trained "
                    "model, append everything to an HDF5 file, publish it on ZeroMQ and show it in the browser. "
                    "Every frame is accounted for: processed, rejected or dropped, with the reason. Ctrl-C stops "
                    "with the file closed and complete.",
        epilog="""\
sources: karabo://HOST:PORT (REQ), simplon://HOST:PORT (PULL), pva://PV:NAME, hdf5:PATH (file or folder).
output (HDF5, growing, SWMR): /live/q, /live/profiles (n, Q), /live/frame_id, timestamp, delay, pumped,
  timetool, status (0 used, 1 outside the delay map, 2 NaN, 3 bad normalisation, 4 outlier), latency_ms;
  /live/reduction/* (running sums).  Read it while it grows with xstructure.live.read_live.
examples:
  xstructure live --simulate karabo --view 5006 --open
  xstructure live --source karabo://127.0.0.1:4545 --poni setup.poni --out run.h5 --view 5006 --bins -500:1500:40
  xstructure live --source simplon://10.0.0.5:31001 --poni eiger.poni --keys delay=delay_fs,pumped=laser \\
      --model chd-model/ --out run.h5 --publish tcp://127.0.0.1:5600""")
    what = g.add_mutually_exclusive_group(required=True)
    what.add_argument("--source", type=_source, metavar="URL", help="the stream: karabo://, simplon://, pva:// or hdf5:PATH")
    what.add_argument("--simulate", choices=PROTOCOLS,
                      help="stream a simulated pump-probe experiment (CHD ring opening) over this protocol on "
                           "127.0.0.1 and analyse it")
    g.add_argument("--poni", help="the detector geometry (pyFAI PONI file); required with --source")
    g.add_argument("--out", type=output_file, help="HDF5 output file, appended as frames arrive")
    g.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    g.add_argument("--view", type=int, metavar="PORT", help="serve the live view on http://127.0.0.1:PORT")
    g.add_argument("--open", action="store_true", help="open the view in the default browser")
    g.add_argument("--model", help="a trained 1-D model directory: invert every shot to a structure")
    g.add_argument("--molecule", help="the molecule (the model's, when it knows several; ΔsM/ΔPDF in the view)")
    g.add_argument("--bins", type=_edges, metavar="START:STOP:N|EDGES",
                   help="delay bins of the ΔI/I map, fs (default with --simulate: its delays; else no map)")
    g.add_argument("--keys", metavar="NAME=KEY,...",
                   help="where the stream keeps image, delay, pumped (laser on) and timetool, e.g. "
                        "delay=SA1_LA/DELAY:actualPosition,pumped=none")
    g.add_argument("--npt", type=_positive(int), default=500, help="radial bins (default 500)")
    g.add_argument("--policy", choices=POLICIES, default="block",
                   help="when the analysis falls behind: block (back-pressure on the stream, nothing dropped; "
                        "default) or drop (drop and count)")
    g.add_argument("--queue", type=_positive(int), default=1024, help="frames buffered between receiving and "
                                                                      "analysis (default 1024)")
    g.add_argument("--batch", type=_positive(int), default=64, help="frames integrated together (default 64)")
    g.add_argument("--publish", metavar="ADDRESS", help="ZeroMQ PUB address for results, e.g. tcp://127.0.0.1:5600")
    g.add_argument("--frames", type=_positive(int), help="stop after this many frames")
    g.add_argument("--duration", type=_positive(float), help="stop after this many seconds")
    g.add_argument("--idle", type=_positive(float), help="stop after this many seconds without a frame")
    g.add_argument("--sim-shape", type=_shape, default=(512, 512), metavar="HxW",
                   help="simulated detector shape (default 512x512)")
    g.add_argument("--sim-frames", type=_positive(int), default=10 ** 6, help="frames the simulation sends "
                                                                             "(default 1000000)")
    g.add_argument("--sim-rate", type=float, default=120.0, metavar="HZ",
                   help="frames/s the simulation sends (default 120; 0: as fast as the stream takes them)")
    g.add_argument("--quiet", action="store_true", help="no status line each second")
    g.set_defaults(func=run)
