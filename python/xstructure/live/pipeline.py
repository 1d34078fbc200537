"""The live pipeline: receive → integrate → reduce → (invert) → write and publish, accounting for every frame.

Receiving runs in its own thread and the compute in the caller's: pyzmq, h5py reads and the integration kernel
release the GIL, so on two cores the two overlap.  Between them sits a queue bounded in frames, with a stated
policy for when the compute falls behind: ``"block"`` (the receiver waits, and the stream's own back-pressure
slows the sender: nothing is dropped) or ``"drop"`` (a batch that finds the queue full is dropped and counted under
``"queue full"``).  Every frame the source saw ends as processed, rejected (by reason: the source's, ``"shape"``,
or the reduction's ``"nan"``, ``"normalization"``, ``"outlier"``) or dropped (by reason, ``"transport"`` for frames
the stream itself lost).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import signal
import threading
import time
from queue import Full, Queue

import numpy as np

from ..detector import Integrator
from ..experiment import RunningReduction
from ..experiment.running import STATUS
from .frames import EndOfStream, Frames, Rejected, Source
from .outputs import LiveFile, Publisher
from .state import Counts, Snapshot

__all__ = ["POLICIES", "Pipeline", "Summary"]

POLICIES = ("block", "drop")
_REASON_OF = {code: name for name, code in STATUS.items() if code >= 2}


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a finished :meth:`Pipeline.run` did.

    Attributes
    ----------
    counts : Counts
        Frames by fate (``received`` = ``processed`` + ``rejected`` + ``dropped``; ``received`` and ``dropped``
        include the frames the transport lost).
    seconds : float
        From the first frame received to the last processed.
    frames_per_s : float
        ``processed`` / ``seconds``.
    latency_ms : dict
        ``{"p50": ms, "p99": ms, "max": ms}`` from a message's arrival to its profiles leaving the compute.
    stopped_by : str
        ``"end of stream"``, ``"frames"``, ``"duration"``, ``"idle"``, ``"interrupt"`` or ``"error: ..."``.
    unwritten : int
        Frames whose rows could not be written to the output file (e.g. a full disk).
    messages : list of str
        What went wrong and was survived (a write that failed, the source reconnecting, ...).
    """

    counts: Counts
    seconds: float
    frames_per_s: float
    latency_ms: dict
    stopped_by: str
    unwritten: int = 0
    messages: list = dataclasses.field(default_factory=list)


class _FrameQueue:
    """A FIFO of :class:`Frames` batches bounded by the number of frames it holds."""

    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self._items: collections.deque = collections.deque()
        self.frames = 0
        self._cv = threading.Condition()

    def put(self, item: Frames, timeout: float) -> bool:
        n = len(item)
        with self._cv:
            if self.frames and self.frames + n > self.capacity:
                self._cv.wait_for(lambda: not self.frames or self.frames + n <= self.capacity, timeout)
                if self.frames and self.frames + n > self.capacity:
                    return False
            self._items.append(item)
            self.frames += n
            self._cv.notify_all()
            return True

    def get(self, max_frames: int, timeout: float) -> list:
        with self._cv:
            if not self._items:
                self._cv.wait_for(lambda: bool(self._items), timeout)
            out, n = [], 0
            while self._items and (not out or n + len(self._items[0]) <= max_frames):
                it = self._items.popleft()
                out.append(it)
                n += len(it)
            self.frames -= n
            self._cv.notify_all()
            return out


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


class _Latencies:
    """Percentiles of latencies from a log-spaced histogram (0.01 ms to 1000 s, 1 % wide bins): constant memory
    however long the pipeline runs."""

    EDGES = np.geomspace(1e-2, 1e6, 1852)

    def __init__(self):
        self.counts = np.zeros(self.EDGES.size + 1, dtype=np.int64)
        self.max = math.nan

    def add(self, ms: np.ndarray) -> None:
        if ms.size:
            self.counts += np.bincount(np.searchsorted(self.EDGES, ms), minlength=self.counts.size)
            self.max = float(np.nanmax([self.max, ms.max()]))

    def percentile(self, p: float) -> float:
        n = self.counts.sum()
        if n == 0:
            return math.nan
        k = int(np.searchsorted(np.cumsum(self.counts), p / 100.0 * n))
        lo = self.EDGES[max(k - 1, 0)]
        hi = self.EDGES[min(k, self.EDGES.size - 1)]
        return float(np.sqrt(lo * hi))


def _bin_image(a: np.ndarray, side: int = 256) -> np.ndarray:
    f = max(1, math.ceil(max(a.shape) / side))
    h, w = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    return a[:h, :w].reshape(h // f, f, w // f, f).astype(np.float32).mean(axis=(1, 3))


class Pipeline:
    """Frames from a live source to radial profiles, ΔI/I and structures, as they arrive.

    Parameters
    ----------
    source : Source
        Where the frames come from (:func:`xstructure.live.open_source`).
    integrator : Integrator
        The detector's integrator (q in Å⁻¹); frames of another shape are rejected (``"shape"``).
    edges : array_like or None, optional
        Delay-bin edges for ΔI/I (the stream's delay unit); None: no time-resolved reduction (profiles and their
        running mean only).
    normalize, reject : optional
        As for :class:`~xstructure.experiment.RunningReduction`.
    model : InversionModel or None, optional
        A trained 1-D model: each shot's profile, interpolated onto the model's grid and scaled to the sum of its
        training mean, is inverted to a structure.
    molecule : str or None, optional
        The model's molecule (when it knows several).
    out : str or None, optional
        HDF5 output file (:class:`~xstructure.live.outputs.LiveFile`).
    publish : str or None, optional
        ZeroMQ PUB address for the results.
    queue : int, optional
        Frames the queue between receiving and compute holds.
    policy : {'block', 'drop'}, optional
        What the receiver does when the queue is full.
    batch : int, optional
        Frames integrated together.
    flush : float, optional
        Seconds between flushes of the output file.
    model_threads : int or None, optional
        torch threads while the pipeline runs (restored after; None: leave torch's setting).  One thread runs
        a small network's batch of 64 in about as little time as two, and leaves the other core to receiving
        and integrating.
    settings : dict or None, optional
        Extra settings to store in the file and show in the view.
    """

    def __init__(self, source: Source, integrator: Integrator, *, edges=None, normalize="window",
                 reject: float | None = 6.0, model=None, molecule: str | None = None, out=None,
                 overwrite: bool = False, publish: str | None = None, queue: int = 1024, policy: str = "block",
                 batch: int = 64, flush: float = 0.5, model_threads: int | None = 1, settings: dict | None = None):
        if not isinstance(source, Source):
            raise TypeError(f"source must be an xstructure.live Source, got {type(source).__name__}")
        if not isinstance(integrator, Integrator):
            raise TypeError(f"integrator must be an xstructure.Integrator, got {type(integrator).__name__}")
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        if int(queue) < 1 or int(batch) < 1:
            raise ValueError(f"queue and batch must be >= 1 frames, got {queue}, {batch}")
        self.source, self.integrator = source, integrator
        self.shape = tuple(integrator.geometry.shape)
        self.q = np.asarray(integrator.radial, dtype=np.float64)
        self.reduction = RunningReduction(self.q, edges, normalize=normalize, reject=reject) if edges is not None \
            else None
        self.model, self.molecule = model, molecule
        if model is not None:
            m = model.molecule(molecule)
            if len(model.input_shape) != 1:
                raise ValueError("live inversion needs a model of 1-D patterns, not of detector images")
            lo, hi = float(model.q[0]), float(model.q[-1])
            if lo < self.q[0] - 1e-9 or hi > self.q[-1] + 1e-9:
                raise ValueError(f"the model reads q {lo:g}..{hi:g} Å⁻¹, beyond the integrator's "
                                 f"{self.q[0]:g}..{self.q[-1]:g} Å⁻¹")
            self._model_sum = float(np.sum(m.st.mean))
            self._numbers = np.asarray(m.numbers_np)
            # linear interpolation onto the model's grid, as index pairs and weights (np.interp row by row costs more)
            self._i0 = np.clip(np.searchsorted(self.q, model.q, side="right") - 1, 0, self.q.size - 2)
            self._w1 = np.clip((model.q - self.q[self._i0]) / (self.q[self._i0 + 1] - self.q[self._i0]), 0.0, 1.0)
            self._w0 = 1.0 - self._w1
        self.policy, self.batch, self.model_threads = policy, int(batch), model_threads
        self.settings = dict(settings or {}, protocol=source.protocol, address=source.address, shape=self.shape,
                             npt=int(self.q.size), policy=policy, batch=self.batch, queue=int(queue),
                             edges=None if edges is None else np.asarray(edges, dtype=float).tolist(),
                             molecule=molecule,
                             model=None if model is None else str(model.config.get("name") or model.config.get("model")))
        self._queue = _FrameQueue(queue)
        self._file = LiveFile(out, self.q, self.reduction.state() if self.reduction else None, self.settings,
                              flush=flush, overwrite=overwrite, atoms=None if model is None else self._numbers.size,
                              state=self._reduction_state if self.reduction is not None else None) if out else None
        self._pub = Publisher(publish) if publish else None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._received = 0
        self._processed = 0
        self._rejected_by: collections.Counter = collections.Counter()
        self._dropped_by: collections.Counter = collections.Counter()
        self._lat = _Latencies()
        self._lat_recent = collections.deque(maxlen=4096)
        self._rates = collections.deque(maxlen=64)
        self._messages: list = []
        self._last_frame = None
        self._last_id = -1
        self._last_profile = None
        self._sum_all = np.zeros(self.q.size)
        self._n_all = 0
        self._structure = None
        self._ended = False
        self._error: str | None = None
        self._t0 = None
        self._t_first = None
        self._t_last = None
        self._last_message = time.monotonic()
        self._receiver: threading.Thread | None = None
        self._stack = None
        self._in_flight = 0
        self._limit = None
        self._limit_reached = False
        self._outq: Queue = Queue(maxsize=8)
        self._emitter = None

    # ---- receiving ---------------------------------------------------------------------------------------------
    def _receive_loop(self) -> None:
        src = self.source
        try:
            while not self._stop.is_set():
                if self._limit is not None and self._received + src.stats.get("lost", 0) >= self._limit:
                    self._ended = self._limit_reached = True      # as many frames as asked for: take no more
                    return
                try:
                    items = src.receive(0.1)
                except EndOfStream:
                    self._ended = True
                    return
                for it in items:
                    self._last_message = time.monotonic()
                    if self._t_first is None:
                        self._t_first = time.perf_counter()
                    if isinstance(it, Rejected):
                        with self._lock:
                            self._received += it.count
                            self._rejected_by[it.reason] += it.count
                        continue
                    with self._lock:
                        self._received += len(it)
                    if self.policy == "drop":
                        if not self._queue.put(it, 0.0):
                            with self._lock:
                                self._dropped_by["queue full"] += len(it)
                    else:
                        while not self._queue.put(it, 0.1):
                            if self._stop.is_set():
                                with self._lock:
                                    self._dropped_by["stopped"] += len(it)
                                break
        except Exception as exc:  # noqa: BLE001 - the source cannot go on: stop with its one-line reason
            self._error = _one_line(exc)

    # ---- compute -----------------------------------------------------------------------------------------------
    def _integrate(self, good: list) -> np.ndarray:
        """(n, Q) profiles of the batches in order.  A message of many frames (a train) is integrated where it
        lies; runs of small messages are copied into one reused stack (fresh memory would cost a page fault per
        4 KiB, as much as the integration itself)."""
        out, run = [], []

        def flush():
            if not run:
                return
            n = sum(len(g) for g in run)
            dtype = np.result_type(*(g.data.dtype for g in run))
            if self._stack is None or self._stack.shape[0] < n or self._stack.dtype != dtype:
                self._stack = np.empty((max(n, self.batch), *self.shape), dtype=dtype)
            k = 0
            for g in run:
                self._stack[k:k + len(g)] = g.data
                k += len(g)
            out.append(np.asarray(self.integrator.integrate(self._stack[:n]).intensity))
            run.clear()

        for g in good:
            if len(g) >= 8:
                flush()
                out.append(np.asarray(self.integrator.integrate(g.data).intensity).reshape(len(g), -1))
            else:
                run.append(g)
        flush()
        return out[0] if len(out) == 1 else np.concatenate(out)

    def _process(self, items: list) -> None:
        with self._lock:
            self._in_flight = sum(len(it) for it in items)
        try:
            self._process_batch(items)
        finally:
            with self._lock:
                self._in_flight = 0

    def _process_batch(self, items: list) -> None:
        good = []
        for it in items:
            if it.data.shape[1:] != self.shape:
                with self._lock:
                    first = "shape" not in self._rejected_by
                    self._rejected_by["shape"] += len(it)
                if first:
                    self._messages.append(f"frames of shape {it.data.shape[1:]} rejected: the detector is "
                                          f"{self.shape}")
            else:
                good.append(it)
        if not good:
            return

        def cat(name):
            return getattr(good[0], name) if len(good) == 1 else np.concatenate([getattr(g, name) for g in good])

        ids, delay, pumped, timetool, stamp = cat("ids"), cat("delay"), cat("pumped"), cat("timetool"), \
            cat("timestamp")
        try:
            I = self._integrate(good)
        except (ValueError, TypeError) as exc:
            with self._lock:
                self._rejected_by["integrate"] += len(ids)
            self._messages.append(f"frames rejected by the integrator: {exc}")
            return
        data = good[-1].data
        with self._lock:
            status = self.reduction.add(I, delay, pumped, timetool) if self.reduction is not None \
                else np.where(np.isfinite(I).all(axis=1), 0, STATUS["nan"]).astype(np.uint8)
        t_out = time.perf_counter()
        lat = np.concatenate([np.full(len(g), (t_out - g.received) * 1e3) for g in good])
        bad = status >= 2
        with self._lock:
            for code in np.unique(status[bad]):
                self._rejected_by[_REASON_OF[int(code)]] += int(np.count_nonzero(status == code))
            self._processed += int((~bad).sum())
            if self.reduction is None and np.any(~bad):
                norm = I[~bad].sum(axis=1, keepdims=True)
                self._sum_all += (I[~bad] / np.where(norm > 0, norm, 1.0)).sum(axis=0)
                self._n_all += int((~bad).sum())
            self._last_frame = data[-1]
            self._last_id = int(ids[-1])
            self._last_profile = I[-1].copy()
            self._lat.add(lat)
            self._lat_recent.extend(lat[-256:])
            self._t_last = t_out
        if self._emitter is not None:
            rows = {"frame_id": ids, "timestamp": stamp, "delay": delay, "pumped": pumped, "timetool": timetool,
                    "status": status, "latency_ms": lat.astype(np.float32)}
            self._to_emitter(("batch", I, rows))

    def _to_emitter(self, item) -> None:
        """Hand ``item`` to the second stage; never blocks for ever (a stage that died stops the pipeline)."""
        while True:
            try:
                self._outq.put(item, timeout=0.1)
                return
            except Full:
                if not self._emitter.is_alive():
                    return

    def _emit_loop(self) -> None:
        """The second stage, in its own thread: invert, write, publish (while the first integrates the next
        batch)."""
        while True:
            item = self._outq.get()
            if item is None:
                return
            try:
                self._emit(*item)
            except Exception as exc:  # noqa: BLE001 - stops the pipeline with its one-line reason
                self._error = f"writing the results: {_one_line(exc)}"
                return

    def _emit(self, kind: str, *payload) -> None:
        """``("batch", profiles, rows)``: invert, write, publish; ``("reduction", header, diff)``: publish ΔI/I."""
        if kind == "reduction":
            header, diff = payload
            self._pub.send(b"reduction", header, diff)
            return
        I, rows = payload
        structures = None
        if self.model is not None:
            X = I[:, self._i0] * self._w0 + I[:, self._i0 + 1] * self._w1
            s = X.sum(axis=1, keepdims=True)
            X = X * np.divide(self._model_sum, s, out=np.zeros_like(s), where=s > 0)
            ok = np.isfinite(X).all(axis=1) & (s[:, 0] > 0)
            structures = np.full((len(I), self._numbers.size, 3), np.nan, np.float32)
            if np.any(ok):
                structures[ok] = self.model.predict(X[ok], self.molecule)
                with self._lock:
                    self._structure = (self._numbers, structures[np.flatnonzero(ok)[-1]].astype(np.float64))
        if self._file is not None:
            was = self._file.error
            self._file.append(I, rows, structures)
            if self._file.error and not was:
                self._messages.append(self._file.error)
        if self._pub is not None:
            self._pub.send(b"profiles", {"frame_id": rows["frame_id"].tolist(), "status": rows["status"].tolist()},
                           I.astype(np.float32))

    def _reduction_state(self) -> dict:
        with self._lock:
            return {k: np.array(v) for k, v in self.reduction.state().items()}

    def _sample_rates(self) -> None:
        now = time.monotonic()
        if self._rates and now - self._rates[-1][0] < 0.25:
            return
        with self._lock:
            self._rates.append((now, self._received, self._processed, sum(self._dropped_by.values())))
        if self._pub is not None and self.reduction is not None and (len(self._rates) % 4 == 0):
            with self._lock:
                diff, _ = self.reduction.diff_map()
            # through the second stage: a ZeroMQ socket is used by one thread only
            self._to_emitter(("reduction", {"delays": self.reduction.centres.tolist(),
                                             "q": [float(self.q[0]), float(self.q[-1]), int(self.q.size)]}, diff))

    def run(self, *, frames: int | None = None, duration: float | None = None, idle: float | None = None,
            progress=None) -> Summary:
        """Run until the stream ends, ``frames`` frames have been accounted for, ``duration`` seconds passed,
        nothing arrived for ``idle`` seconds, :meth:`stop` was called, or Ctrl-C.

        The output file is flushed, marked complete and closed whatever stopped the run.

        Parameters
        ----------
        frames : int or None, optional
            Stop once this many frames were received (processed, rejected or dropped), lost frames included.
        duration, idle : float or None, optional
            Seconds.
        progress : callable or None, optional
            Called about once a second with the current :class:`Snapshot`.

        Returns
        -------
        Summary
        """
        self._t0 = time.perf_counter()
        threads = None
        if self.model is not None and self.model_threads:
            import torch  # the model's (optional) dependency, loaded with it

            threads = torch.get_num_threads()
            torch.set_num_threads(int(self.model_threads))
        self._limit = frames
        # Ctrl-C sets a flag that the loop reads between batches: a batch is never left half counted
        interrupted = threading.Event()
        old_handler = None
        if threading.current_thread() is threading.main_thread():
            def on_sigint(signum, frame):
                interrupted.set()
                self._stop.set()
            old_handler = signal.signal(signal.SIGINT, on_sigint)
        self._receiver = threading.Thread(target=self._receive_loop, name="xstructure-live-receive", daemon=True)
        self._receiver.start()
        if self.model is not None or self._file is not None or self._pub is not None:
            self._emitter = threading.Thread(target=self._emit_loop, name="xstructure-live-emit", daemon=True)
            self._emitter.start()
        stopped_by = "stopped"
        t_report = time.monotonic()
        try:
            while True:
                items = self._queue.get(self.batch, 0.05)
                if items:
                    self._process(items)
                self._sample_rates()
                if progress is not None and time.monotonic() - t_report >= 1.0:
                    t_report = time.monotonic()
                    progress(self.snapshot())
                if self._stop.is_set():
                    stopped_by = "interrupt" if interrupted.is_set() else stopped_by
                    break
                if self._error:
                    stopped_by = f"error: {self._error}"
                    break
                if duration is not None and time.perf_counter() - self._t0 >= duration:
                    stopped_by = "duration"
                    break
                if items:
                    continue
                if self._ended and not self._queue.frames:
                    stopped_by = "frames" if self._limit_reached else "end of stream"
                    break
                if frames is not None and self._received + self.source.stats.get("lost", 0) >= frames \
                        and not self._queue.frames:
                    stopped_by = "frames"
                    break
                if idle is not None and time.monotonic() - self._last_message >= idle:
                    stopped_by = "idle"
                    break
        except KeyboardInterrupt:
            stopped_by = "interrupt"
        except Exception as exc:  # noqa: BLE001 - reported as the reason the run stopped; the file is closed
            stopped_by = f"error: {_one_line(exc)}"
        finally:
            if old_handler is not None:
                signal.signal(signal.SIGINT, old_handler)
            self._stop.set()
            self._receiver.join(5.0)
            if self._receiver.is_alive():
                self._messages.append("the receiver did not stop within 5 s")
            left = self._queue.get(1 << 62, 0.0)
            # what was received is analysed (the queue is bounded), unless the analysis is what failed
            while left and not stopped_by.startswith("error"):
                try:
                    self._process(left[:1])
                except Exception:  # noqa: BLE001 - this and the rest are counted as dropped below
                    break
                left = left[1:]
            if left:
                with self._lock:
                    self._dropped_by["stopped"] += sum(len(x) for x in left)
            if self._emitter is not None:
                self._to_emitter(None)
                self._emitter.join(30.0)
            self._close_outputs(close_source=not self._receiver.is_alive())
            if threads is not None:
                torch.set_num_threads(threads)
        return self.summary(stopped_by)

    def stop(self) -> None:
        """Ask a running :meth:`run` to finish (from another thread)."""
        self._stop.set()

    def _close_outputs(self, close_source: bool = True) -> None:
        if self._file is not None:
            self._file.close()
            if self._file.error:
                self._messages.append(self._file.error)
        if self._pub is not None:
            self._pub.close()
            self._pub = None
        if close_source:
            self.source.close()

    def close(self) -> None:
        """Close the output file (complete), the results stream and the source without running (a pipeline that
        was built but will not run); safe to call twice, and after :meth:`run`."""
        self._close_outputs()

    # ---- state -------------------------------------------------------------------------------------------------
    def counts(self) -> Counts:
        """Frames by fate so far."""
        with self._lock:
            dropped = collections.Counter(self._dropped_by)
            lost = int(self.source.stats.get("lost", 0))
            if lost:
                dropped["transport"] += lost
            return Counts(received=self._received + lost, processed=self._processed,
                          rejected=sum(self._rejected_by.values()), dropped=sum(dropped.values()),
                          queued=self._queue.frames + self._in_flight, lost=lost, rejected_by=dict(self._rejected_by),
                          dropped_by=dict(dropped))

    def summary(self, stopped_by: str = "running") -> Summary:
        c = self.counts()
        secs = (self._t_last - self._t_first) if (self._t_first and self._t_last) else 0.0
        pct = {"p50": self._lat.percentile(50), "p99": self._lat.percentile(99), "max": self._lat.max}
        return Summary(counts=c, seconds=secs, frames_per_s=c.processed / secs if secs > 0 else math.nan,
                       latency_ms=pct, stopped_by=stopped_by,
                       unwritten=self._file.unwritten if self._file is not None else 0,
                       messages=list(dict.fromkeys(self._messages)))

    def snapshot(self) -> Snapshot:
        """A copy of the state now (cheap: the view calls it a few times a second)."""
        with self._lock:
            frame, fid = self._last_frame, self._last_id
            profile = None if self._last_profile is None else self._last_profile.copy()
            if self.reduction is not None:
                diff, _ = self.reduction.diff_map()
                counts_on, n_off = self.reduction.n_on.copy(), int(self.reduction.n_off)
                reduced = self.reduction.reduced()
                average = self.reduction.average
                delays = self.reduction.centres
            else:
                diff, counts_on, n_off, reduced = np.zeros((0, self.q.size)), np.zeros(0, np.int64), 0, None
                average = self._sum_all / self._n_all if self._n_all else None
                delays = np.zeros(0)
            lat = np.asarray(self._lat_recent)
            structure = self._structure
            rates = list(self._rates)
        r = {"received": 0.0, "processed": 0.0, "dropped": 0.0}
        if len(rates) >= 2:
            a = next((x for x in rates if rates[-1][0] - x[0] <= 3.0), rates[0])
            b = rates[-1]
            dt = b[0] - a[0]
            if dt > 0:
                r = {"received": (b[1] - a[1]) / dt, "processed": (b[2] - a[2]) / dt, "dropped": (b[3] - a[3]) / dt}
        return Snapshot(time=time.perf_counter() - (self._t0 or time.perf_counter()), counts=self.counts(), rates=r,
                        latency_ms={"p50": float(np.percentile(lat, 50)) if lat.size else math.nan,
                                    "p99": float(np.percentile(lat, 99)) if lat.size else math.nan},
                        frame=None if frame is None else _bin_image(frame), frame_id=fid, q=self.q.copy(),
                        profile=profile, average=None if average is None else np.array(average), delays=delays,
                        diff=diff, counts_on=counts_on, n_off=n_off, reduced=reduced, structure=structure,
                        settings=dict(self.settings))
