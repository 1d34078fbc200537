"""What every live source hands to the pipeline: batches of frames, rejected messages, and the end of a stream.

A source (:class:`Source`) turns the messages of one protocol into :class:`Frames`, a batch of detector frames
of one message with their ids, timestamps and, where the stream carries them, the pump-probe delay, the laser
state and the timetool correction.  Which keys of a message hold those is configured (:class:`Keys`), never
hard-coded.  A message that cannot be read becomes a :class:`Rejected` record with its reason, so that the
pipeline can account for every frame it was sent: processed, dropped (counted, with the reason) or rejected.
"""

from __future__ import annotations

import abc
import dataclasses
import time
from typing import Any

import numpy as np

__all__ = ["EndOfStream", "Frames", "Keys", "Rejected", "Source", "SourceError"]


class EndOfStream(Exception):
    """The stream said it has ended (e.g. SIMPLON's ``end`` message, the writer closing a growing file)."""


class SourceError(OSError):
    """The source cannot go on (an address that cannot be reached, a file that vanished, a protocol library that
    is not installed); one-line message."""


@dataclasses.dataclass
class Frames:
    """A batch of frames that arrived in one message.

    Attributes
    ----------
    ids : numpy.ndarray
        (n,) int64 frame ids from the stream (train id × pulses + pulse, image id, unique id, row).
    data : numpy.ndarray
        (n, H, W) the frames, in the stream's dtype (uint16, uint32, int32, float32, ...).
    timestamp : numpy.ndarray
        (n,) float64 seconds since the epoch: the stream's time stamp, or the time of receipt without one.
    received : float
        ``time.perf_counter()`` when the message was received (for the latency frame-in → profile-out).
    delay : numpy.ndarray
        (n,) float64 nominal pump-probe delay (the stream's unit, fs by convention); NaN where not given.
    pumped : numpy.ndarray
        (n,) int8: 1 laser on, 0 laser off, -1 not given (:meth:`make` maps any positive value to on, 0 to off,
        anything else to unknown).
    timetool : numpy.ndarray
        (n,) float64 timetool correction (same unit as ``delay``); NaN where not given.
    """

    ids: np.ndarray
    data: np.ndarray
    timestamp: np.ndarray
    received: float
    delay: np.ndarray
    pumped: np.ndarray
    timetool: np.ndarray

    @classmethod
    def make(cls, ids, data, *, timestamp=None, received: float | None = None, delay=None, pumped=None,
             timetool=None) -> Frames:
        """Build a batch from whatever the stream gave; missing metadata become NaN / -1.

        ``data`` of shape (H, W) is one frame.  Scalars are broadcast over the batch.
        """
        data = np.asarray(data)
        if data.ndim == 2:
            data = data[None]
        if data.ndim != 3:
            raise ValueError(f"a frame must be 2-D, got an array of shape {data.shape}")
        n = data.shape[0]

        def vec(x, fill, dtype):
            if x is None:
                return np.full(n, fill, dtype=dtype)
            a = np.asarray(x, dtype=dtype).ravel()
            if a.size == 1 and n != 1:
                a = np.full(n, a[0], dtype=dtype)
            if a.size != n:
                raise ValueError(f"{a.size} metadata values for {n} frames")
            return a

        # the laser state, however the stream spells it: > 0 on, 0 off, anything else (NaN, negative) unknown
        p = vec(pumped, np.nan, np.float64)
        state = np.where(p > 0, 1, np.where(p == 0, 0, -1)).astype(np.int8)
        return cls(ids=vec(ids, -1, np.int64), data=data, timestamp=vec(timestamp, time.time(), np.float64),
                   received=time.perf_counter() if received is None else float(received),
                   delay=vec(delay, np.nan, np.float64), pumped=state, timetool=vec(timetool, np.nan, np.float64))

    def __len__(self) -> int:
        return int(self.data.shape[0])


@dataclasses.dataclass(frozen=True)
class Rejected:
    """A message (or the frames in it) that could not be used.

    Attributes
    ----------
    reason : str
        Short key, e.g. ``"malformed"``, ``"truncated"``, ``"decode"``, ``"shape"``, ``"dtype"``.
    count : int
        Frames it stood for (1 when the message cannot tell).
    detail : str
        One line for the log.
    """

    reason: str
    count: int = 1
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class Keys:
    """Where a stream keeps the image and the pump-probe metadata.

    Each field is a key (a string) in the protocol's own namespace, or None when the stream does not carry
    it: for the Karabo bridge ``"SOURCE_NAME:key.path"``, for SIMPLON a key of the image message's
    ``user_data`` map (the image is a channel of ``data``), for PV Access an NDAttribute name, for HDF5 a
    dataset path.  Defaults are the names the simulated sources use.
    """

    image: str | None = None
    delay: str | None = "delay"
    pumped: str | None = "laser_on"
    timetool: str | None = "timetool"

    @classmethod
    def parse(cls, text: str | None, **defaults) -> Keys:
        """``"delay=KEY,pumped=KEY,timetool=KEY,image=KEY"`` (any subset; ``KEY`` empty or ``none``: absent)."""
        base = dataclasses.replace(cls(), **defaults)
        if not text:
            return base
        out = {}
        for part in text.split(","):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or name not in {f.name for f in dataclasses.fields(cls)}:
                raise ValueError(f"keys: expected NAME=KEY with NAME one of image, delay, pumped, timetool; "
                                 f"got {part!r}")
            value = value.strip()
            out[name] = None if value.lower() in ("", "none") else value
        return dataclasses.replace(base, **out)


class Source(abc.ABC):
    """One protocol's stream of frames.

    Subclasses implement :meth:`open`, :meth:`receive` and :meth:`close`.  ``receive`` never blocks longer than
    its timeout and never raises for one bad message: it returns a :class:`Rejected` record instead.  A source
    that loses its connection reconnects on its own (counting it in ``stats["reconnects"]``) and keeps
    returning ``[]`` meanwhile.  Frames the transport skipped (gaps in the ids of a stream that counts its
    frames, e.g. a PV Access monitor that overflowed) are counted in ``stats["lost"]``.

    Attributes
    ----------
    protocol : str
        ``"karabo"``, ``"simplon"``, ``"pva"`` or ``"hdf5"``.
    address : str
        Where it reads from (an endpoint, a PV name, a path).
    stats : dict
        ``{"messages": n, "lost": n, "reconnects": n}`` and protocol-specific counters.
    """

    protocol: str = ""

    def __init__(self, address: str, keys: Keys | None = None):
        self.address = address
        self.keys = keys if keys is not None else Keys()
        self.stats: dict[str, Any] = {"messages": 0, "lost": 0, "reconnects": 0}

    @abc.abstractmethod
    def open(self) -> None:
        """Connect (or open the file); raises :class:`SourceError` with one line when it cannot."""

    @abc.abstractmethod
    def receive(self, timeout: float) -> list:
        """The next message's :class:`Frames` and/or :class:`Rejected` records; ``[]`` when nothing came within
        ``timeout`` seconds.  Raises :class:`EndOfStream` when the stream said it ended."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection or file; safe to call twice."""

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Wait until the source is subscribed (``stats["connected"]``, for a protocol that only delivers what is
        sent after it subscribed, as PV Access); True at once for the others.

        Parameters
        ----------
        timeout : float, optional
            Seconds to wait.

        Returns
        -------
        bool
            Whether it is ready.
        """
        deadline = time.monotonic() + timeout
        while not self.stats.get("connected", True):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address!r})"
