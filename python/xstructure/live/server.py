"""The sending side of each protocol, for the simulated sources: one :class:`Server` per protocol module.

A server publishes :class:`~xstructure.live.frames.Frames` over its protocol exactly as a facility's stream
would (the Karabo bridge's msgpack trains, SIMPLON's CBOR image messages, an areaDetector NTNDArray PV, rows
appended to a growing HDF5 file), and can inject the faults a live analysis must survive: a malformed or
truncated message, a disconnection.  :func:`xstructure.live.simulate.serve` drives one in a child process.
"""

from __future__ import annotations

import abc

from .frames import Frames, Keys

__all__ = ["Server"]


class Server(abc.ABC):
    """The sending end of one protocol, listening on (or writing to) ``address``.

    Parameters
    ----------
    address : str
        Endpoint, PV name or path, as the matching source takes it.
    keys : Keys
        Where to put the image and the metadata (the same keys the source is given).
    """

    protocol: str = ""
    #: Whether a fault message uses up a frame id (the protocol numbers every message it sends).
    faults_take_ids: bool = False

    def __init__(self, address: str, keys: Keys | None = None):
        self.address = address
        self.keys = keys if keys is not None else Keys()

    @abc.abstractmethod
    def start(self) -> None:
        """Bind / create; after this a source can connect."""

    @abc.abstractmethod
    def send(self, frames: Frames) -> None:
        """Publish one message holding ``frames`` (blocks as the protocol's back-pressure makes it)."""

    @abc.abstractmethod
    def send_malformed(self, kind: str) -> None:
        """Publish one message the source must reject: ``kind`` is ``"garbage"`` (not the protocol's encoding)
        or ``"truncated"`` (a valid message cut short).  It stands for one frame."""

    @abc.abstractmethod
    def disconnect(self, seconds: float) -> None:
        """Drop the connection (close the socket, stop the server, close the file), wait, and come back."""

    def end(self) -> None:
        """Say the stream ended, where the protocol can (SIMPLON ``end``; the HDF5 writer closes the file)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release everything; safe to call twice."""
