"""A stand-in for the live pipeline: :class:`DemoState` makes realistic snapshots that change with time.

It plays a simulated pump-probe run (:func:`xstructure.experiment.simulate_pumpprobe`, a scan over the delays in
order) as if its shots were arriving at a given rate: a thread of its own reduces the shots that have "arrived"
(:meth:`xstructure.experiment.PumpProbe.reduce`), so that the ΔI/I map fills in delay by delay, renders the latest
shot as a detector frame, and keeps counts, rates and latencies.  :meth:`DemoState.snapshot` only copies, as the
real pipeline's does.  It serves the browser view (:func:`xstructure.live.view.serve_view`) in development, its
tests and its screenshot.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from .state import Counts, Snapshot

__all__ = ["DemoState"]


def _edges(centres: np.ndarray) -> np.ndarray:
    """(T + 1,) bin edges halfway between the centres, the outer ones half a step out."""
    c = np.asarray(centres, dtype=np.float64)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = 0.5 * (c[1:] + c[:-1])
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


class DemoState:
    """Snapshots of a simulated pump-probe run played in real time.

    Shots arrive at ``len(delays) * shots_per_delay / scan_seconds`` per second; once the whole scan has arrived
    the ΔI/I map stays complete while frames and counts go on.  Call :meth:`start` (or use it as a context
    manager) before :meth:`snapshot`, and :meth:`stop` at the end.

    Parameters
    ----------
    reactant, product : str
        The structures of :func:`~xstructure.experiment.simulate_pumpprobe` (names or SMILES).
    probe : {'xray', 'electron'}, optional
        The probe.
    energy_kev : float or None, optional
        Electron kinetic energy in keV.
    q : array_like or None, optional
        (Q,) the radial grid, Å⁻¹; None: 0.5 to 10 Å⁻¹ in 240 points.
    delays : array_like or None, optional
        (T,) the nominal delays scanned, fs; None: −400 to 600 fs in steps of 25 fs.
    shots_per_delay : int, optional
        Shots (laser on and off together) at each nominal delay.
    scan_seconds : float, optional
        How long the whole scan takes to arrive, s.
    fraction, t0, width : float, optional
        Excitation fraction, time zero (fs) and σ of the rise (fs).
    dose : float, optional
        Expected counts per shot summed over the q grid.
    jitter : float, optional
        σ of the timing jitter, fs (measured by the timetool).
    shape : tuple of int, optional
        (H, W) of the (binned) frames.
    structure : bool, optional
        Give an inverted structure (the product, thermally displaced) in every snapshot, as with a model.
    seed : int, optional
        Random seed of the run, the frames and the displacements.

    Examples
    --------
    >>> with DemoState(scan_seconds=20) as state:          # doctest: +SKIP
    ...     view = serve_view(state, port=5006, molecule="CHD")
    """

    def __init__(self, reactant: str = "CHD", product: str = "C=CC=CC=C", *, probe: str = "xray",
                 energy_kev: float | None = None, q=None, delays=None, shots_per_delay: int = 400,
                 scan_seconds: float = 30.0, fraction: float = 0.12, t0: float = 30.0, width: float = 60.0,
                 dose: float = 3e6, jitter: float = 30.0, shape: tuple = (256, 256), structure: bool = True,
                 seed: int = 0):
        from ..experiment import simulate_pumpprobe
        from ..structures import molecule

        if not (np.isfinite(scan_seconds) and scan_seconds > 0):
            raise ValueError(f"scan_seconds must be > 0, got {scan_seconds}")
        q = np.linspace(0.5, 10.0, 240) if q is None else np.asarray(q, dtype=np.float64)
        delays = np.arange(-400.0, 601.0, 25.0) if delays is None else np.asarray(delays, dtype=np.float64)
        shots = int(shots_per_delay) * delays.size
        self.run, self.truth = simulate_pumpprobe(reactant, product, q, delays, shots, fraction, t0, width, dose,
                                                  probe=probe, energy_kev=energy_kev, jitter=jitter, outliers=0.0,
                                                  seed=seed)
        self.q = self.run.q
        self.delays = delays
        self.edges = _edges(delays)
        self.rate = shots / float(scan_seconds)
        self.shape = (int(shape[0]), int(shape[1]))
        self._rng = np.random.default_rng(seed + 1)
        self._qmap, self._mask = self._geometry(self.shape, float(q[-1]))
        self._norm = np.asarray(self.run.signals, dtype=np.float64) / self.run.weights[:, None]
        self._cum = np.cumsum(self._norm, axis=0)
        if structure:
            atoms = molecule(product)
            self._numbers = atoms.get_atomic_numbers()
            self._positions = atoms.get_positions() - atoms.get_positions().mean(axis=0)
        else:
            self._numbers = None
        self._settings = {"source": "demo", "protocol": "simulated", "shape": self.shape, "npt": int(q.size),
                          "model": "demo (the product, thermally displaced)" if structure else None,
                          "molecule": reactant, "probe": probe, "energy": energy_kev}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._t_start = None
        self._history = []
        self._reduced = None
        self._reduced_n = 0
        self._diff = np.full((delays.size, q.size), np.nan)
        self._counts_on = np.zeros(delays.size, dtype=np.int64)
        self._n_off = 0
        self._snapshot = self._make(0.0, 0)

    # ---- geometry of the frames ---------------------------------------------------------------------------------

    @staticmethod
    def _geometry(shape, q_corner):
        """Each pixel's q (a flat detector, 0.5 Å wavelength, the beam off centre) and the dead pixels."""
        H, W = shape
        cy, cx = 0.53 * H, 0.46 * W
        y, x = np.mgrid[0:H, 0:W].astype(np.float64)
        r = np.hypot(y - cy, x - cx)
        k = 4 * np.pi / 0.5                                          # 4π/λ, Å⁻¹
        two_theta_max = 2 * np.arcsin(min(0.999, 1.05 * q_corner / k))
        L = r.max() / np.tan(two_theta_max)                          # distance in pixels
        two_theta = np.arctan(r / L)
        qmap = k * np.sin(two_theta / 2)
        phi = np.arctan2(y - cy, x - cx)
        pol = 1 - (np.sin(two_theta) * np.cos(phi)) ** 2             # horizontally polarised X-rays
        dead = (np.abs(y - H // 2) < max(1, H // 100)) | (np.abs(x - W // 3) < max(1, W // 120))   # module gaps
        stop = (r < 0.07 * min(H, W)) | ((np.abs(y - cy) < 0.02 * H) & (x > cx))                     # beam stop
        return (qmap, pol), dead | stop

    def _frame(self, shot: int) -> np.ndarray:
        (qmap, pol), mask = self._qmap, self._mask
        prof = self._norm[shot]
        mean = np.interp(qmap, self.q, prof / prof.mean() * 60.0, left=np.nan, right=0.0)
        mean = np.where(np.isfinite(mean), mean, 0.0) * pol
        frame = self._rng.poisson(mean).astype(np.float32)
        frame[mask] = 0.0
        return frame

    # ---- the playing thread -------------------------------------------------------------------------------------

    def start(self) -> DemoState:
        """Start the clock and the thread that plays the run.

        Returns
        -------
        DemoState
            Itself.
        """
        if self._thread is None:
            self._t_start = time.perf_counter()
            self._thread = threading.Thread(target=self._play, name="xstructure-live-demo", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (safe to call twice)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def snapshot(self) -> Snapshot:
        """The run at this moment (a copy; never waits for a reduction).

        Returns
        -------
        Snapshot
            Counts, rates, the latest frame and profile, ΔI/I per delay bin and the running reduction.
        """
        with self._lock:
            return self._snapshot

    def _play(self) -> None:
        while not self._stop.wait(0.1):
            t = time.perf_counter() - self._t_start
            n = int(t * self.rate)
            S = self.run.n_shots
            if min(n, S) >= self._reduced_n + max(20, S // 400):
                self._reduce(min(n, S))
            snap = self._make(t, n)
            with self._lock:
                self._snapshot = snap

    def _reduce(self, n: int) -> None:
        """Reduce the first ``n`` shots over the contiguous delay bins that have laser-on shots."""
        from ..experiment import PumpProbe

        run = self.run
        on = run.pumped[:n]
        t_on = run.corrected_delay[:n][on]
        if not on.any() or on.all():
            return
        per_bin = np.histogram(t_on, self.edges)[0]
        filled = np.flatnonzero(per_bin > 0)
        if filled.size == 0:
            return
        lo = filled[0]
        gaps = np.flatnonzero(per_bin[lo:] == 0)
        hi = lo + (gaps[0] if gaps.size else per_bin.size - lo)      # bins lo .. hi - 1: none empty
        part = PumpProbe(run.q, run.signals[:n], run.delay[:n], run.pumped[:n], timetool=run.timetool[:n],
                         weights=run.weights[:n])
        red = part.reduce(bins=self.edges[lo:hi + 1], normalize="weights", reject=None, reference="all",
                          bootstrap=32, units=32, num_threads=1)
        rows = np.searchsorted(self.edges, red.edges[:, 0] + 1e-9 * (1 + abs(red.edges[:, 0]))) - 1
        diff = np.full_like(self._diff, np.nan)
        diff[rows] = red.diff
        counts = np.zeros_like(self._counts_on)
        counts[rows] = red.counts
        self._diff, self._counts_on, self._n_off = diff, counts, int(red.n_off)
        self._reduced, self._reduced_n = red, n

    def _make(self, t: float, n: int) -> Snapshot:
        S = self.run.n_shots
        processed = n
        rejected_by = {"garbage": n // 700, "truncated": n // 1500}
        lost = n // 400
        dropped_by = {"queue_full": n // 90, "transport": lost}
        queued = int(self._rng.integers(0, 24)) if n else 0
        rejected, dropped = sum(rejected_by.values()), sum(dropped_by.values())
        counts = Counts(received=processed + rejected + dropped + queued, processed=processed, rejected=rejected,
                        dropped=dropped, queued=queued, lost=lost, rejected_by=rejected_by, dropped_by=dropped_by)
        self._history.append((t, counts))
        while len(self._history) > 2 and self._history[0][0] < t - 3.0:
            self._history.pop(0)
        t0, c0 = self._history[0]
        span = t - t0
        rates = {k: (getattr(counts, k) - getattr(c0, k)) / span if span > 0 else 0.0
                 for k in ("received", "processed", "dropped")}
        if n:
            latency = {"p50": float(3.0 + 0.3 * self._rng.standard_normal()),
                       "p99": float(9.0 + 1.5 * abs(self._rng.standard_normal()))}
        else:
            latency = {"p50": float("nan"), "p99": float("nan")}
        shot = (n - 1) % S if n else -1
        frame = self._frame(shot) if n else None
        k = min(n, S)
        average = (self._cum[k - 1] / k).astype(np.float32) if k else None
        structure = None
        if self._numbers is not None and n:
            pos = self._positions + 0.04 * self._rng.standard_normal(self._positions.shape)
            structure = (self._numbers.copy(), pos)
        return Snapshot(time=float(t), counts=counts, rates=rates, latency_ms=latency, frame=frame,
                        frame_id=int(n - 1) if n else -1, q=self.q.copy(),
                        profile=None if not n else np.asarray(self.run.signals[shot], dtype=np.float32),
                        average=average, delays=self.delays.copy(), diff=self._diff.copy(),
                        counts_on=self._counts_on.copy(), n_off=self._n_off, reduced=self._reduced,
                        structure=structure, settings=dict(self._settings))
