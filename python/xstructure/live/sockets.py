"""ZeroMQ helpers the protocol servers share."""

from __future__ import annotations

import time

from .frames import SourceError

__all__ = ["bind"]


def bind(ctx, kind: int, address: str, *, wait: float = 0.0, options: dict | None = None):
    """A ZeroMQ socket of ``kind`` bound to ``address``, retried for ``wait`` seconds while the port is in use.

    A server that closes its socket and binds the same port again (a simulated disconnection) finds the port
    busy for a moment: the old socket releases it asynchronously.

    Parameters
    ----------
    ctx : zmq.Context
        The context.
    kind : int
        ``zmq.REP``, ``zmq.PUSH``, ...
    address : str
        ``tcp://HOST:PORT`` (port 0: any free port).
    wait : float, optional
        Seconds to keep retrying a port in use.
    options : dict or None, optional
        Socket options set before binding (LINGER is always 0).

    Returns
    -------
    zmq.Socket
        The bound socket; its ``LAST_ENDPOINT`` names the port it took.

    Raises
    ------
    SourceError
        The address cannot be bound.
    """
    import zmq  # optional dependency (live)

    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    for opt, value in (options or {}).items():
        sock.setsockopt(opt, value)
    give_up = time.monotonic() + wait
    while True:
        try:
            sock.bind(address)
            return sock
        except zmq.ZMQError as e:
            if e.errno == zmq.EADDRINUSE and time.monotonic() < give_up:
                time.sleep(0.05)
                continue
            sock.close()
            raise SourceError(f"cannot bind {address}: {e}") from None
