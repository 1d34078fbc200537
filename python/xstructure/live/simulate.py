"""A simulated pump-probe experiment streamed over any of the live protocols, for demos, tests and benchmarks.

:class:`SimulatedRun` renders the detector frames of a pump-probe run of ``reactant`` → ``product`` (the same
physics as :func:`xstructure.experiment.simulate_pumpprobe`: a laser-on shot at delay t scatters
I_R + f h(t) (I_P − I_R), h the smoothed step of :class:`xstructure.experiment.Truth`) on a detector, with
solid angle, polarisation and Poisson noise.  Rendering megapixel frames at the rates of a facility is more work
than analysing them, so the run holds a bank of frames, ``repeats`` noise realisations per (delay, laser state),
and frame i is a fixed bank frame:

    laser on  ⇔ i even,   delay index d = (i // 2) mod D,   realisation r = (i // 2D) mod R,

and bank row i mod 2 D R.  Anyone who knows i knows the frame (:meth:`SimulatedRun.bank_index`), which is how a benchmark compares what a
pipeline wrote with an offline integration of the same frames.  :func:`serve` streams the run from a child
process through a protocol's :class:`~xstructure.live.server.Server`, injecting faults on request.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import signal
import time

import numpy as np

from ..detector import Geometry
from ..detector.patterns import simulate_detector
from ..experiment import Truth
from ..structures import molecule
from .frames import Frames, Keys

__all__ = ["FAULTS", "PROTOCOLS", "SimulatedRun", "Streamer", "serve", "server_for"]

PROTOCOLS = ("karabo", "simplon", "pva", "hdf5")
FAULTS = ("garbage", "truncated", "wrong_shape", "disconnect")
PRODUCT = "C=C/C=C\\C=C"   # Z-1,3,5-hexatriene, the ring-opening product of 1,3-cyclohexadiene


@dataclasses.dataclass
class SimulatedRun:
    """The frames of a simulated pump-probe run.

    Parameters
    ----------
    shape : tuple of int
        Detector shape (H, W).
    dtype : str
        Frame type: ``"uint16"`` (counts, clipped at 65535), ``"uint32"`` or ``"float32"``.
    delays : array_like
        Nominal delays D, fs.
    repeats : int
        Noise realisations R per (delay, laser state); the bank holds 2 D R frames.
    photons : float
        Expected counts per frame.
    reactant, product : str
        Molecules (names or SMILES, as :func:`xstructure.molecule` takes them).
    fraction, t0, width : float
        Excitation fraction, time zero (fs), σ of the rise (fs).
    energy_kev, side, dist : float
        X-ray energy (keV), the detector's width (m; the pixels are ``side / W`` square) and the sample-detector
        distance (m); the beam hits the centre.  The defaults reach q ≈ 9.9 Å⁻¹ in the corners.
    seed : int
        Seed of the Poisson draws.
    """

    shape: tuple = (512, 512)
    dtype: str = "uint16"
    delays: tuple = tuple(np.linspace(-400.0, 1000.0, 15))
    repeats: int = 2
    photons: float = 2.0e6
    reactant: str = "CHD"
    product: str = PRODUCT
    fraction: float = 0.12
    t0: float = 0.0
    width: float = 80.0
    energy_kev: float = 18.0
    side: float = 0.1024
    dist: float = 0.04
    seed: int = 0

    def __post_init__(self):
        self.shape = tuple(int(s) for s in self.shape)
        if len(self.shape) != 2 or min(self.shape) < 8:
            raise ValueError(f"shape must be (H, W) with H, W >= 8, got {self.shape}")
        if self.dtype not in ("uint16", "uint32", "float32"):
            raise ValueError(f"dtype must be uint16, uint32 or float32, got {self.dtype!r}")
        self.delays = tuple(float(d) for d in np.atleast_1d(np.asarray(self.delays, dtype=np.float64)))
        if not self.delays or not all(math.isfinite(d) for d in self.delays):
            raise ValueError("delays must be a non-empty list of finite delays (fs)")
        if int(self.repeats) < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if not self.photons > 0:
            raise ValueError(f"photons must be > 0, got {self.photons}")
        self._bank = None

    @property
    def geometry(self) -> Geometry:
        """The detector: ``side`` m wide at ``dist`` m, beam at the centre, ``energy_kev``."""
        return Geometry.simple(self.shape, pixel=self.side / self.shape[1], dist=self.dist, energy_kev=self.energy_kev)

    @property
    def truth(self) -> Truth:
        """The rise h(t) the frames follow (per-shot fields empty)."""
        e = np.empty(0)
        return Truth(fraction=self.fraction, t0=self.t0, width=self.width, dose=self.photons, q=e,
                     i_reactant=e, i_product=e, true_delay=e, jitter=e, scale=e, outliers=np.empty(0, np.int64))

    @property
    def bank(self) -> np.ndarray:
        """(2 D R, H, W) the frames, rendered on first use."""
        if self._bank is None:
            self._bank = self._render()
        return self._bank

    def _render(self) -> np.ndarray:
        g = self.geometry
        ideal = simulate_detector([molecule(self.reactant), molecule(self.product)], g, probe="xray")
        i_r, i_p = ideal[0], ideal[1]
        scale = self.photons / i_r.sum()
        rng = np.random.default_rng(self.seed)
        D, R = len(self.delays), int(self.repeats)
        h = self.truth.rise(np.asarray(self.delays))
        top = np.iinfo(self.dtype).max if self.dtype != "float32" else np.inf
        bank = np.empty((2 * D * R, *self.shape), dtype=self.dtype)
        for b in range(bank.shape[0]):       # row b is frame i for every i = b (mod 2 D R)
            d = (b // 2) % D
            mean = i_r + self.fraction * h[d] * (i_p - i_r) if b % 2 == 0 else i_r
            bank[b] = np.minimum(rng.poisson(mean * scale), top)
        return bank

    def bank_index(self, ids) -> np.ndarray:
        """Bank rows of frames ``ids``: i mod 2 D R (consecutive frames are consecutive rows)."""
        return np.asarray(ids, dtype=np.int64) % (2 * len(self.delays) * int(self.repeats))

    def metadata(self, ids) -> dict:
        """``{"delay", "pumped", "timetool"}`` arrays of frames ``ids`` (timetool 0: no jitter)."""
        i = np.asarray(ids, dtype=np.int64)
        d = (i // 2) % len(self.delays)
        return {"delay": np.asarray(self.delays)[d], "pumped": (i % 2 == 0).astype(np.int8),
                "timetool": np.zeros(i.size)}

    def frames(self, start: int, n: int) -> Frames:
        """Frames ``start`` … ``start + n − 1`` as one batch (ids = frame numbers)."""
        ids = np.arange(start, start + n, dtype=np.int64)
        m = self.metadata(ids)
        b = int(start) % self.bank.shape[0]
        data = self.bank[b:b + n] if b + n <= self.bank.shape[0] else self.bank[self.bank_index(ids)]
        return Frames.make(ids, data, delay=m["delay"], pumped=m["pumped"], timetool=m["timetool"])


def server_for_class(protocol: str):
    """The :class:`~xstructure.live.server.Server` subclass of ``protocol``.

    Parameters
    ----------
    protocol : {'karabo', 'simplon', 'pva', 'hdf5'}
        The protocol.

    Returns
    -------
    type
    """
    if protocol == "karabo":
        from .karabo import KaraboServer as cls
    elif protocol == "simplon":
        from .simplon import SimplonServer as cls
    elif protocol == "pva":
        from .pva import PvaServer as cls
    elif protocol == "hdf5":
        from .hdf5 import Hdf5Server as cls
    else:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    return cls


def server_for(protocol: str, address: str, keys: Keys | None = None, **options):
    """The :class:`~xstructure.live.server.Server` of ``protocol`` on ``address``.

    Parameters
    ----------
    protocol : {'karabo', 'simplon', 'pva', 'hdf5'}
        The protocol.
    address : str
        Endpoint, PV name or path.
    keys : Keys or None, optional
        Where the metadata go.
    **options
        Keyword arguments of the protocol's server.

    Returns
    -------
    Server
    """
    return server_for_class(protocol)(address, keys, **options)


def _die_with_parent() -> None:
    """Linux: end this child when its parent ends, even by SIGKILL (a sender must not outlive its session)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stream(run, protocol, address, keys, options, n, batch, rate, faults, sent, ready, go, stop, failed):
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C is the session's to handle; it stops this child
    try:
        server = server_for(protocol, address, keys, **options)
        server.start()
    except Exception as exc:  # noqa: BLE001 - handed to the parent as one line
        failed.put(f"the simulated {protocol} server on {address} did not start: {exc}".splitlines()[0])
        ready.set()
        return
    ready.set()
    while not go.wait(0.1):
        if stop.is_set():
            server.close()
            return
    pending = sorted((int(at), kind, arg) for kind, events in (faults or {}).items()
                     for at, arg in ([(e, None) for e in events] if kind != "disconnect" else events))
    t_start = time.perf_counter()
    done = 0
    try:
        while done < n and not stop.is_set():
            while pending and pending[0][0] <= done:
                _, kind, arg = pending.pop(0)
                if kind == "disconnect":
                    server.disconnect(float(arg))
                    continue
                if kind == "wrong_shape":
                    h, w = run.shape
                    server.send(Frames.make([done if server.faults_take_ids else -1],
                                            np.zeros((h, w + 1), dtype=run.dtype)))
                else:
                    server.send_malformed(kind)
                with sent.get_lock():
                    sent.value += 1
                if server.faults_take_ids:   # the fault stands in for frame `done`, which is not sent
                    done += 1
            k = min(batch, n - done)
            if k <= 0:
                break
            if pending:
                k = min(k, max(1, pending[0][0] - done))
            server.send(run.frames(done, k))
            done += k
            with sent.get_lock():
                sent.value += k
            if rate:
                lag = t_start + done / rate - time.perf_counter()
                if lag > 0:
                    time.sleep(lag)
        server.end()
        stop.wait(2.0)   # let the last messages out before the sockets close
    finally:
        server.close()


class Streamer:
    """A simulated stream running in a child process (see :func:`serve`).

    Attributes
    ----------
    sent : int
        Frames sent so far, fault messages included (each stands for one frame).
    """

    def __init__(self, process, sent, go, stop):
        self._process, self._sent, self._go, self._stop = process, sent, go, stop

    def go(self) -> None:
        """Start sending (a stream served with ``hold=True`` waits for this, so that a source that only sees
        what is sent after it subscribed, as a PV Access monitor, misses nothing)."""
        self._go.set()

    @property
    def sent(self) -> int:
        return int(self._sent.value)

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop sending and wait for the child (killed after ``timeout`` s)."""
        self._stop.set()
        self._process.join(timeout)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the child to finish sending."""
        self._process.join(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def serve(run: SimulatedRun, protocol: str, address: str, frames: int, *, batch: int = 16, rate: float | None = None,
          keys: Keys | None = None, faults: dict | None = None, options: dict | None = None,
          timeout: float = 60.0, hold: bool = False) -> Streamer:
    """Stream ``frames`` frames of ``run`` over ``protocol`` from a child process.

    Parameters
    ----------
    run : SimulatedRun
        The frames (rendered here, before the child starts, and shared with it).
    protocol : {'karabo', 'simplon', 'pva', 'hdf5'}
        The protocol.
    address : str
        Where the server listens (or the file it writes).
    frames : int
        Frames to send.
    batch : int, optional
        Frames per message where the protocol packs several (a Karabo train); one per message otherwise.
    rate : float or None, optional
        Frames per second; None: as fast as the protocol's back-pressure allows.
    keys : Keys or None, optional
        Where the metadata go.
    faults : dict or None, optional
        ``{"garbage": [i, ...], "truncated": [...], "wrong_shape": [...], "disconnect": [(i, seconds), ...]}``:
        inject each before frame i is sent.  Every injected message but a disconnection counts as one frame
        sent.  Where the protocol numbers every message (a server with ``faults_take_ids``, PV Access's
        uniqueId), the fault takes frame i's place and id, so the ids stay contiguous; elsewhere it is sent in
        addition and carries no id.
    options : dict or None, optional
        Keyword arguments of the protocol's server.
    timeout : float, optional
        Seconds to wait for the server to start.
    hold : bool, optional
        Start the server but send nothing until :meth:`Streamer.go`.

    Returns
    -------
    Streamer
        The running child; ``sent`` counts frames sent.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if int(frames) < 0 or int(batch) < 1:
        raise ValueError(f"frames must be >= 0 and batch >= 1, got {frames}, {batch}")
    for kind in faults or {}:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}: use {', '.join(FAULTS)}")
    _ = run.bank   # render before forking: the child shares the pages
    ctx = multiprocessing.get_context("fork")
    sent, ready, go, stop, failed = ctx.Value("q", 0), ctx.Event(), ctx.Event(), ctx.Event(), ctx.SimpleQueue()
    if not hold:
        go.set()
    p = ctx.Process(target=_stream, args=(run, protocol, address, keys, options or {}, int(frames), int(batch), rate,
                                          faults, sent, ready, go, stop, failed), daemon=True)
    p.start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if not p.is_alive() or time.monotonic() > deadline:
            p.kill()
            raise OSError(f"the simulated {protocol} server on {address} did not start within {timeout:g} s")
    if not failed.empty():
        p.join(5)
        raise OSError(failed.get())
    return Streamer(p, sent, go, stop)
