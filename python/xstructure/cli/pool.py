"""``xstructure pool``: pools of sampled geometries and their patterns."""

from __future__ import annotations

import argparse
import json

from ..pools import Pool
from ..scattering import PROBES, SIGNALS
from .args import DEFAULT_Q, add_progress, interrupted, output_file, output_path, parse_param, parse_q, progress


def run_create(args) -> int:
    """``xstructure pool create`` with the parsed ``args``; returns the exit status."""
    try:
        pool = Pool.create(args.out, args.molecule, args.method, n=args.n, temperature=args.temperature,
                           seed=args.seed, chunk=args.chunk, progress=progress(args), scheduler=args.scheduler,
                           **dict(args.param or []))
    except KeyboardInterrupt:
        return interrupted(args.out)
    print(f"pool {pool.path}: {len(pool)} geometries of {pool.attrs['molecule']['name']} "
          f"({pool.attrs['method']}, {pool.attrs['temperature']:g} K, seed {pool.attrs['seed']})")
    return 0


def run_simulate(args) -> int:
    """``xstructure pool simulate`` with the parsed ``args``; returns the exit status."""
    pool = Pool.open(args.pool)
    try:
        name = pool.simulate(args.q, probe=args.probe, signal=args.signal, name=args.name,
                             energy_kev=args.energy_kev, progress=progress(args), scheduler=args.scheduler)
    except KeyboardInterrupt:
        return interrupted(args.pool)
    print(f"pattern set {name!r} in {pool.path}: {len(pool)} x {len(args.q)} ({args.probe}, {args.signal})")
    return 0


def run_info(args) -> int:
    """``xstructure pool info`` with the parsed ``args``; returns the exit status."""
    pool = Pool.open(args.pool)
    print(json.dumps(pool.info(), indent=2, ensure_ascii=False))
    if args.plot:
        pool.summary_plot(args.plot)
        print(f"wrote plot {args.plot}")
    return 0


def add_parsers(sub) -> None:
    """Add the ``pool`` command(s) to ``sub``, the sub-commands of :func:`xstructure.cli.build_parser`."""
    pool = sub.add_parser(
        "pool", help="pools of sampled geometries and their patterns in a resumable zarr store",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sample geometries of a molecule into a zarr v3 store, compute pattern sets of them, and "
                    "summarise a store.  Work is done chunk by chunk: an interrupted command finishes when run "
                    "again with the same arguments.  See docs/pool.md.",
        epilog="""\
exit status: 0 done; 2 a bad option, an unknown molecule or SMILES, a store that is not an xstructure pool
  (or is corrupted), or a store made with other arguments (nothing in it is changed); 130 interrupted.
examples:
  xstructure pool create NMM --method wigner --temperature 300 --n 100000 --chunk 4096 --out nmm.zarr
  xstructure pool simulate nmm.zarr --q 0.5:12:500 --probe xray --signal molecular
  xstructure pool simulate nmm.zarr --scheduler tcp://10.0.0.5:8786
  xstructure pool info nmm.zarr --plot info.png""")
    ps = pool.add_subparsers(dest="pool_command", required=True)
    c = ps.add_parser("create", help="sample geometries into a new store (or finish an interrupted one)")
    c.add_argument("molecule", help="a name (NMM, CHD, DT, any ase.build molecule), a SMILES string or a file")
    c.add_argument("--method", default="wigner", help="sampling method: wigner, md or mc (default wigner)")
    c.add_argument("--temperature", type=float, default=300.0, help="temperature in K (default 300)")
    c.add_argument("--n", type=int, required=True, help="number of geometries")
    c.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    c.add_argument("--chunk", type=int, default=4096, help="geometries per chunk, the unit of work (default 4096)")
    c.add_argument("--param", type=parse_param, action="append", metavar="KEY=VALUE",
                   help="further option of the sampling method (repeatable; VALUE read as JSON when it parses)")
    c.add_argument("--out", required=True, type=output_path, help="the store (a directory, e.g. nmm.zarr)")
    c.add_argument("--scheduler", help="dask.distributed scheduler address (tcp://host:8786); workers need "
                                       "the store on a shared file system")
    add_progress(c)
    c.set_defaults(func=run_create)
    s = ps.add_parser("simulate", help="compute a pattern set of every geometry in a store")
    s.add_argument("pool", help="the store")
    s.add_argument("--q", type=parse_q, default=parse_q(DEFAULT_Q), metavar="START:STOP:N",
                   help=f"q grid in Å⁻¹: START:STOP:N or a comma-separated list (default {DEFAULT_Q})")
    s.add_argument("--probe", choices=PROBES, default="xray", help="X-rays or electrons (default xray)")
    s.add_argument("--signal", choices=SIGNALS, default="molecular",
                   help="total, atomic, molecular or sM (default molecular, what the inversion models read)")
    s.add_argument("--energy-kev", type=float, default=None, help="electron kinetic energy (keV)")
    s.add_argument("--name", help="name of the pattern set (default PROBE_SIGNAL)")
    s.add_argument("--scheduler", help="dask.distributed scheduler address (tcp://host:8786)")
    add_progress(s)
    s.set_defaults(func=run_simulate)
    i = ps.add_parser("info", help="size, molecule, sampling and pattern sets of a store (JSON)")
    i.add_argument("pool", help="the store")
    i.add_argument("--plot", type=output_file,
                   help="PNG: bond lengths by type, RMSD to the reference, mean pattern ± std")
    i.set_defaults(func=run_info)


