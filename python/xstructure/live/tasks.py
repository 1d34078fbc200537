"""``xstructure live`` as one library call: :func:`run_live`."""

from __future__ import annotations

import os
import tempfile

from ..detector import Geometry, Integrator
from ..experiment.running import edges_of
from .frames import Keys
from .pipeline import Pipeline, Summary
from .simulate import PROTOCOLS, SimulatedRun, serve
from .urls import open_source

__all__ = ["SIM_ADDRESS", "format_summary", "run_live"]

#: Where ``--simulate`` serves each protocol (127.0.0.1 only).
SIM_ADDRESS = {"karabo": "karabo://127.0.0.1:4545", "simplon": "simplon://127.0.0.1:31001",
               "pva": "pva://XSTRUCTURE:SIM:Image"}


def _server_address(protocol: str, url: str, tmp: str) -> str:
    if protocol == "hdf5":
        return os.path.join(tmp, "simulated_run.h5")
    from .urls import parse_source

    return parse_source(url)[1]


def run_live(source: str | None = None, *, poni: str | None = None, simulate: str | None = None, out=None,
             overwrite: bool = False, view: int | None = None, open_browser: bool = False, model=None,
             molecule: str | None = None, bins=None, keys: str | None = None, npt: int = 500,
             policy: str = "block", queue: int = 1024, batch: int = 64, publish: str | None = None,
             frames: int | None = None, duration: float | None = None, idle: float | None = None,
             sim_shape=(512, 512), sim_frames: int = 10 ** 6, sim_rate: float | None = 120.0,
             threads: int | None = None, log=None) -> Summary:
    """Run a live analysis until the stream ends, a limit is reached, or Ctrl-C; the output file is closed
    complete in every case.

    Parameters
    ----------
    source : str or None
        Source URL (``karabo://HOST:PORT``, ``simplon://HOST:PORT``, ``pva://PV``, ``hdf5:PATH``); None with
        ``simulate``.
    poni : str or None
        The detector's PONI file (pyFAI's format); with ``simulate`` the simulated detector is used when None.
    simulate : str or None
        A protocol: stream a simulated pump-probe experiment over it from a child process on 127.0.0.1 and
        analyse that.
    out : str or None
        HDF5 output (see :class:`~xstructure.live.outputs.LiveFile`).
    view : int or None
        Port of the browser view on 127.0.0.1 (None: no view).
    open_browser : bool
        Open the view in the default browser.
    model : str or None
        A trained 1-D model directory: invert every shot.
    bins : array_like or None
        Delay-bin edges; with ``simulate`` the simulated delays' bins when None.
    keys : str or None
        ``delay=KEY,pumped=KEY,timetool=KEY,image=KEY`` for the source.
    sim_shape, sim_frames, sim_rate :
        The simulated detector's shape, how many frames it sends, and at what rate (frames/s; None: as fast as
        the protocol allows).
    threads : int or None
        Integration threads (None: every core).  With big frames on few cores, one less than the cores can be
        faster: the other core receives, inverts and writes (two cores, 2048² over the Karabo bridge: 124-140
        frames/s with one integration thread, 117 with two).
    log : callable or None
        Receives one status line a second.

    Returns
    -------
    Summary
    """
    if (source is None) == (simulate is None):
        raise ValueError("give a source URL or --simulate PROTOCOL (one of the two)")
    if simulate is not None and simulate not in PROTOCOLS:
        raise ValueError(f"--simulate takes one of {', '.join(PROTOCOLS)}, got {simulate!r}")
    if source is not None and poni is None:
        raise ValueError("give the detector's geometry with --poni setup.poni")
    key_set = Keys.parse(keys)
    inv = None
    if model is not None:
        from ..learn import InversionModel

        inv = InversionModel.load(model)
    streamer = viewer = src = pipe = None
    with tempfile.TemporaryDirectory(prefix="xstructure-live-") as tmp:
        try:
            if simulate is not None:
                run = SimulatedRun(shape=tuple(sim_shape))
                url = SIM_ADDRESS.get(simulate, f"hdf5:{os.path.join(tmp, 'simulated_run.h5')}")
                geometry = Geometry.from_poni(poni, shape=run.shape) if poni else run.geometry
                if bins is None:
                    bins = edges_of(run.delays)
                if molecule is None:
                    molecule = run.reactant
                streamer = serve(run, simulate, _server_address(simulate, url, tmp), sim_frames, rate=sim_rate,
                                 keys=key_set, hold=True,
                                 options={"compression": None} if simulate == "hdf5" else None)
                source = url
            else:
                geometry = Geometry.from_poni(poni)
            integ = Integrator(geometry, npt=npt, polarization=0.99, error_model=None, num_threads=threads or 0)
            src = open_source(source, key_set)
            src.open()
            if streamer is not None:
                src.wait_ready()
            # the model's molecule by name only when it knows several; ``molecule`` is the reactant of the view
            which = molecule if inv is not None and len(inv.molecules) > 1 else None
            pipe = Pipeline(src, integ, edges=bins, model=inv, molecule=which,
                            out=out, overwrite=overwrite, publish=publish, queue=queue, policy=policy, batch=batch,
                            settings={"source": source, "simulated": simulate, "poni": poni, "model_path": model})
            if view is not None:
                from .view import serve_view

                viewer = serve_view(pipe, port=view, molecule=molecule, probe="xray")
                if log:
                    log(f"live view: {viewer.url}")
                if open_browser:
                    import webbrowser

                    webbrowser.open(viewer.url)

            def status(snap):
                if log:
                    c, r = snap.counts, snap.rates
                    log(f"{snap.time:7.1f} s  received {c.received}  processed {c.processed}  rejected "
                        f"{c.rejected}  dropped {c.dropped}  |  {r['processed']:.0f} frames/s  latency p50 "
                        f"{snap.latency_ms['p50']:.1f} ms")

            if streamer is not None:
                streamer.go()
            summary = pipe.run(frames=frames, duration=duration, idle=idle, progress=status)
        finally:
            if viewer is not None:
                viewer.stop()
            if pipe is not None:
                pipe.close()         # after run() it has nothing left to close
            elif src is not None:
                src.close()
            if streamer is not None:
                streamer.stop()
    return summary


def format_summary(s: Summary, out=None) -> str:
    """The summary a person reads at the end of a live session.

    Parameters
    ----------
    s : Summary
        What :meth:`Pipeline.run` returned.
    out : str or None, optional
        The output file, to name it.

    Returns
    -------
    str
        A few lines.
    """
    c = s.counts
    lines = [f"stopped by: {s.stopped_by}",
             (f"frames: received {c.received}, processed {c.processed}, rejected {c.rejected}, "
              f"dropped {c.dropped} (transport lost {c.lost})")]
    if c.rejected_by:
        lines.append("rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(c.rejected_by.items())))
    if c.dropped_by:
        lines.append("dropped: " + ", ".join(f"{k} {v}" for k, v in sorted(c.dropped_by.items())))
    lines.append(f"rate: {s.frames_per_s:.1f} frames/s over {s.seconds:.1f} s; latency p50 {s.latency_ms['p50']:.1f} "
                 f"ms, p99 {s.latency_ms['p99']:.1f} ms")
    if out:
        lines.append(f"written: {out}" + (f" ({s.unwritten} frames could not be written)" if s.unwritten else ""))
    lines += [f"note: {m}" for m in s.messages]
    return "\n".join(lines)
