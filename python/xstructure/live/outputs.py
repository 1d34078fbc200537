"""Where a live pipeline's results go: an HDF5 file that grows as frames arrive, and a ZeroMQ PUB stream.

:class:`LiveFile` appends one row per integrated frame (frame id, time stamp, delay, laser state, timetool, status,
latency and the radial profile) and rewrites the running reduction's sums at every flush.  It writes in HDF5's
single-writer / multiple-reader mode (SWMR, The HDF Group, "Single Writer Multiple Reader", HDF5 1.10 user's
guide), so another process can read the file while it grows (``h5py.File(path, "r", libver="latest",
swmr=True)``, or :func:`read_live`), and a file whose writer was killed keeps every row flushed before (it must then
be opened with ``swmr=True``, or cleared with HDF5's ``h5clear -s``).  A write that fails (a full disk) is reported
and the rows wait in memory until space comes back (or are counted as ``unwritten``); the pipeline goes on.

:class:`Publisher` sends, per batch, the profiles on topic ``b"profiles"`` and, about once a second, ΔI/I on topic
``b"reduction"``: a multipart message ``[topic, header (JSON), array bytes]``; the header holds a sequence number,
so a subscriber that was too slow (ZeroMQ drops messages for it past its high-water mark) can count what it lost.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np

__all__ = ["LiveFile", "Publisher", "read_live", "subscribe"]

_ROWS = (("frame_id", np.int64), ("timestamp", np.float64), ("delay", np.float64), ("pumped", np.int8),
         ("timetool", np.float64), ("status", np.uint8), ("latency_ms", np.float32))


class LiveFile:
    """An HDF5 file of radial profiles that grows while the pipeline runs.

    Layout: ``/live/q`` (Q,) Å⁻¹; per frame ``/live/profiles`` (n, Q) float32 (intensity per unit of the
    corrections) and ``/live/frame_id``, ``timestamp``, ``delay``, ``pumped``, ``timetool``, ``status`` (0 used,
    1 outside the delay map, 2 NaN, 3 bad normalisation, 4 outlier), ``latency_ms``; ``/live/reduction/*`` the
    running sums (see :meth:`xstructure.experiment.RunningReduction.state`); root attributes ``settings`` (JSON)
    and ``complete`` (False while it grows).

    Parameters
    ----------
    path : str
        The file (created; an existing file is refused unless ``overwrite``).
    q : array_like
        (Q,) the radial grid.
    reduction_state : dict or None
        The running reduction's arrays (fixes the reduction datasets' shapes).
    settings : dict
        Stored as JSON.
    flush : float
        Seconds between flushes.
    overwrite : bool
        Replace an existing file.
    max_pending : int
        Frames kept in memory while the disk is full, before they are given up.
    atoms : int or None
        With a model: atoms per structure, for ``/live/structures`` (n, atoms, 3) Å (NaN: no structure).
    state : callable or None
        Returns the running reduction's arrays (a consistent copy); written at every flush.
    """

    def __init__(self, path, q, reduction_state=None, settings=None, *, flush: float = 0.5, overwrite: bool = False,
                 max_pending: int = 200_000, atoms: int | None = None, state=None):
        import h5py  # a hard dependency of the package, imported where used

        path = os.fspath(path)
        if os.path.exists(path) and not overwrite:
            raise FileExistsError(f"{path} exists; choose another --out or remove it")
        q = np.asarray(q, dtype=np.float64)
        self.path, self.flush_every = path, float(flush)
        self._f = h5py.File(path, "w", libver="latest")
        g = self._f.create_group("live")
        g.create_dataset("q", data=q)
        g["q"].attrs["units"] = "1/angstrom"
        self._profiles = g.create_dataset("profiles", (0, q.size), maxshape=(None, q.size), dtype=np.float32,
                                          chunks=(max(1, 65536 // q.size), q.size))
        self._rows = {name: g.create_dataset(name, (0,), maxshape=(None,), dtype=dt, chunks=(4096,))
                      for name, dt in _ROWS}
        self._structures = None
        if atoms:
            self._structures = g.create_dataset("structures", (0, int(atoms), 3), maxshape=(None, int(atoms), 3),
                                                dtype=np.float32, chunks=(max(1, 16384 // int(atoms)), int(atoms), 3))
            self._structures.attrs["units"] = "angstrom"
        self._red = {}
        if reduction_state:
            r = g.create_group("reduction")
            for k, v in reduction_state.items():
                self._red[k] = r.create_dataset(k, data=np.asarray(v))
        self._f.attrs["settings"] = json.dumps(settings or {}, default=str)
        self._f.attrs["complete"] = False
        self._f.swmr_mode = True
        self._pending: list = []
        self._state_fn = state
        self._last = time.monotonic()
        self.written = 0
        self.unwritten = 0
        self.error: str | None = None
        self.broken = False
        self.max_pending = int(max_pending)

    def append(self, profiles, rows: dict, structures=None) -> None:
        """Queue one batch (``rows`` maps the per-frame names to (n,) arrays; ``structures`` (n, atoms, 3) with a
        model); flushes when it is time."""
        if self.broken:
            self.unwritten += len(profiles)
            return
        if self._structures is not None:
            rows = dict(rows, structures=np.full((len(profiles), *self._structures.shape[1:]), np.nan, np.float32)
                        if structures is None else structures)
        self._pending.append((np.asarray(profiles, dtype=np.float32), rows))
        if time.monotonic() - self._last >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write what is queued and flush the file for readers.

        Before writing, the free space is checked (the rows, plus 1 MiB): HDF5 cannot be trusted after a write
        that failed, so a disk that is (nearly) full keeps the rows queued and reports it in ``error``; they are
        written when space comes back, or given up (counted in ``unwritten``) past ``max_pending`` frames.  A
        write that fails all the same (another error of the file system) leaves the file as it was at the last
        flush, readable, and the writer stops writing (``broken``).
        """
        self._last = time.monotonic()
        if self.broken or not (self._pending or self._state_fn):
            return
        need = sum(p.nbytes for p, _ in self._pending) + (1 << 20)
        try:
            free = shutil.disk_usage(os.path.dirname(os.path.abspath(self.path))).free
        except OSError:
            free = need      # cannot tell: try the write
        if free < need:
            self.error = (f"cannot write {self.path}: the disk is full ({free / 2**20:.1f} MiB free); "
                          f"{self.pending} frames wait")
            if self.pending > self.max_pending:
                self.unwritten += self.pending
                self._pending.clear()
            return
        P = np.concatenate([p for p, _ in self._pending]) if self._pending else None
        n0 = self._profiles.shape[0]
        try:
            if P is not None:
                n = P.shape[0]
                for name, ds in self._rows.items():
                    ds.resize(n0 + n, axis=0)
                    ds[n0:] = np.concatenate([r[name] for _, r in self._pending])
                if self._structures is not None:
                    self._structures.resize(n0 + n, axis=0)
                    self._structures[n0:] = np.concatenate([r["structures"] for _, r in self._pending])
                self._profiles.resize(n0 + n, axis=0)
                self._profiles[n0:] = P
            if self._state_fn is not None:
                state = self._state_fn()
                for k, ds in self._red.items():
                    ds[...] = state[k]
            self._f.flush()
        except (OSError, RuntimeError) as exc:
            self.broken = True
            self.error = f"cannot write {self.path}: {str(exc).splitlines()[0]}; writing stopped"
            self.unwritten += self.pending
            self._pending.clear()
            return
        if P is not None:
            self.written += P.shape[0]
        self._pending.clear()
        self.error = None

    @property
    def pending(self) -> int:
        """Frames queued, not yet written."""
        return sum(len(p) for p, _ in self._pending)

    def close(self) -> None:
        """Flush, mark the file complete and close it; frames that could not be written count as unwritten."""
        if self._f is None:
            return
        self.flush()
        self.unwritten += self.pending
        self._pending.clear()
        try:
            if not self.broken:
                self._f.attrs["complete"] = True
            self._f.close()
        except (OSError, RuntimeError) as exc:
            self.error = f"cannot close {self.path}: {str(exc).splitlines()[0]}"
        self._f = None


def read_live(path) -> dict:
    """Read a live output file, growing, finished, or left by a killed writer.

    Parameters
    ----------
    path : str or os.PathLike
        The file :class:`LiveFile` writes.

    Returns
    -------
    dict
        ``q``, ``profiles``, the per-frame arrays, ``structures`` (with a model), ``reduction`` (dict of the sums),
        ``settings`` and ``complete``.
    """
    import h5py  # a hard dependency of the package, imported where used

    with h5py.File(os.fspath(path), "r", libver="latest", swmr=True) as f:
        g = f["live"]
        n = min(g["profiles"].shape[0], *(g[name].shape[0] for name, _ in _ROWS))
        out = {"q": g["q"][()], "profiles": g["profiles"][:n]}
        out.update({name: g[name][:n] for name, _ in _ROWS})
        if "structures" in g:
            out["structures"] = g["structures"][:n]
        out["reduction"] = {k: v[()] for k, v in g["reduction"].items()} if "reduction" in g else {}
        out["settings"] = json.loads(f.attrs.get("settings", "{}"))
        out["complete"] = bool(f.attrs.get("complete", False))
    return out


class Publisher:
    """A ZeroMQ PUB socket for the pipeline's results (never blocks the pipeline).

    Parameters
    ----------
    address : str
        Where to bind, e.g. ``"tcp://127.0.0.1:5600"``.
    """

    def __init__(self, address: str, hwm: int = 100):
        import zmq  # optional dependency (live)

        self._ctx = zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SNDHWM, hwm)
        try:
            self._sock.bind(address)
        except zmq.ZMQError as exc:
            self._sock.close()
            raise OSError(f"cannot publish on {address}: {exc}") from None
        self.address = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self._zmq = zmq
        self.seq = 0

    def send(self, topic: bytes, header: dict, array: np.ndarray) -> None:
        a = np.ascontiguousarray(array)
        header = dict(header, seq=self.seq, dtype=a.dtype.str, shape=list(a.shape))
        self.seq += 1
        try:
            self._sock.send_multipart([topic, json.dumps(header, default=float).encode(), a], copy=False,
                                      flags=self._zmq.NOBLOCK)
        except self._zmq.Again:
            pass

    def close(self) -> None:
        self._sock.close(linger=0)


def subscribe(address: str, topics=(b"profiles", b"reduction"), timeout: float = 1.0):
    """Iterate over a pipeline's published results.

    Parameters
    ----------
    address : str
        The pipeline's PUB address, e.g. ``"tcp://127.0.0.1:5600"``.
    topics : tuple of bytes, optional
        Topics to receive.
    timeout : float, optional
        Stop after this many seconds without a message.

    Yields
    ------
    tuple
        ``(topic, header, array)``: the header's ``seq`` counts every message sent, so gaps are messages lost.
    """
    import zmq  # optional dependency (live)

    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.SUB)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    for t in topics:
        s.setsockopt(zmq.SUBSCRIBE, t)
    s.connect(address)
    try:
        while True:
            try:
                topic, head, body = s.recv_multipart()
            except zmq.Again:
                return
            h = json.loads(head)
            yield topic, h, np.frombuffer(body, dtype=h["dtype"]).reshape(h["shape"])
    finally:
        s.close(linger=0)
