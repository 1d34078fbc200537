"""The Karabo bridge of European XFEL: trains of detector frames over ZeroMQ, encoded with msgpack.

The protocol is the one of European XFEL's karabo-bridge-py (https://github.com/European-XFEL/karabo-bridge-py:
the Python client ``karabo_bridge.Client``, the serializer and a simulated server) and of the protocol description
in its documentation (versions 1.0 and 2.2; this module's server writes 2.2).  A client sends ``b"next"`` on a REQ
socket (or subscribes with SUB / pulls with PULL) and gets one train as a multipart message, which the client
deserialises into ``data = {source_name: {key: value}}``, the train's arrays as numpy arrays, and
``metadata = {source_name: {"timestamp": float, "timestamp.tid": train_id, ...}}``.

Keys (:class:`~xstructure.live.frames.Keys`) are ``"SOURCE_NAME:key.path"``.  The source name may itself hold a
colon (a pipeline output such as ``SPB_DET_AGIPD1M-1/DET/15CH0:xtdf``), so the key path is what follows the last
colon.  A key without a colon is a key of the image's source: the defaults (:data:`DEFAULT_KEYS`) read the frames
from ``SPB_DET_AGIPD1M-1/DET/APPEND:image.data`` and the delay, laser state and timetool from the keys ``delay``,
``laser_on`` and ``timetool`` of that same source.  The image is (pulses, H, W), one train of pulses, or (H, W),
one frame; delay, laser state and timetool are per-train scalars or per-pulse arrays.

Frame ids are ``train_id × n + pulse`` with n the frames in the train, so trains of a constant n numbered
0, 1, 2, ... give ids equal to the global frame index (:class:`KaraboServer` sends any batch that way, splitting
one whose ids do not fit into single-frame trains).  Gaps in the ids are counted in ``stats["lost"]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import numpy as np

from .frames import Frames, Keys, Rejected, Source, SourceError
from .server import Server
from .sockets import bind

__all__ = ["DEFAULT_IMAGE", "DEFAULT_KEYS", "KaraboServer", "KaraboSource"]

DEFAULT_IMAGE = "SPB_DET_AGIPD1M-1/DET/APPEND:image.data"
DEFAULT_KEYS = Keys(image=DEFAULT_IMAGE)
SOCKETS = ("REQ", "SUB", "PULL")
_SLICE = 0.01   # s: the longest a single wait on the client blocks (receive never overruns its timeout by more)


def _require():
    try:
        import karabo_bridge
        import zmq
    except ImportError as e:
        raise SourceError(f"the Karabo bridge needs pyzmq and karabo-bridge (pip install karabo-bridge): {e}") from None
    return karabo_bridge, zmq


def resolve_keys(keys: Keys | None) -> Keys:
    """``keys`` with the image key filled in (:data:`DEFAULT_IMAGE` when None) and checked.

    Raises
    ------
    ValueError
        An image key without a source name.
    """
    keys = keys if keys is not None else DEFAULT_KEYS
    if keys.image is None:
        keys = dataclasses.replace(keys, image=DEFAULT_IMAGE)
    src, sep, path = keys.image.rpartition(":")
    if not sep or not src or not path:
        raise ValueError(f"the Karabo image key must be SOURCE_NAME:key.path, e.g. {DEFAULT_IMAGE!r}; "
                         f"got {keys.image!r}")
    return keys


def split_key(key: str, image_source: str) -> tuple[str, str]:
    """``(source_name, key_path)`` of ``"SOURCE:key.path"``; a key without a colon belongs to ``image_source``."""
    src, sep, path = key.rpartition(":")
    return (src, path) if sep and src else (image_source, key)


def _lookup(props, path: str):
    """``props[path]``, or the nested dicts ``props[a][b]`` of ``path = "a.b"``; None when absent."""
    if not isinstance(props, dict):
        return None
    if path in props:
        return props[path]
    node = props
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _metadata_value(x):
    """A delay / laser / timetool value as :meth:`Frames.make` takes it, or raise TypeError for a wrong type."""
    if x is None or isinstance(x, (bool, int, float, np.ndarray, np.number, np.bool_)):
        if isinstance(x, np.ndarray) and x.dtype.kind not in "biuf":
            raise TypeError(f"an array of {x.dtype}")
        return x
    if isinstance(x, (list, tuple)) and all(isinstance(v, (bool, int, float)) for v in x):
        return np.asarray(x)
    raise TypeError(f"a {type(x).__name__}")


class KaraboSource(Source):
    """Frames from a Karabo bridge, read with ``karabo_bridge.Client``.

    Parameters
    ----------
    address : str
        ``tcp://HOST:PORT`` of the bridge.
    keys : Keys or None
        ``SOURCE_NAME:key.path`` of the image and of the metadata (see the module); None: :data:`DEFAULT_KEYS`.
    sock : {'REQ', 'SUB', 'PULL'}
        The client's socket.  REQ (the bridge's default) asks for each train with ``b"next"``.
    reconnect_after : float or None
        With REQ, seconds without a reply after which the client is closed and made anew (the lazy-pirate
        pattern: a REQ socket whose request went to a server that went away waits for ever), counted in
        ``stats["reconnects"]``; the wait doubles after each attempt without a reply (up to 8×) and is reset by
        the next train.  It must exceed the longest pause between trains.  None: never.  SUB and PULL
        sockets reconnect on their own.

    Notes
    -----
    ``receive`` blocks at most ``timeout`` s plus 10 ms (the client waits in slices of 10 ms).  The frames are
    read-only views of the received message.  A train without ``timestamp.tid`` in its metadata is numbered by
    a counter of its own; without ``timestamp``, it gets the time of receipt.
    """

    protocol = "karabo"

    def __init__(self, address: str = "tcp://127.0.0.1:4545", keys: Keys | None = None, *, sock: str = "REQ",
                 reconnect_after: float | None = 2.0):
        keys = resolve_keys(keys)
        super().__init__(address, keys)
        sock = str(sock).upper()
        if sock not in SOCKETS:
            raise ValueError(f"sock must be one of {', '.join(SOCKETS)}, got {sock!r}")
        if reconnect_after is not None and not reconnect_after > 0:
            raise ValueError(f"reconnect_after must be > 0 s or None, got {reconnect_after}")
        self.sock = sock
        self.reconnect_after = reconnect_after
        self._image = split_key(keys.image, "")
        self._meta = {name: (split_key(getattr(keys, name), self._image[0]) if getattr(keys, name) else None)
                      for name in ("delay", "pumped", "timetool")}
        self._client = None
        self._zmq = None
        self._stack: contextlib.ExitStack | None = None
        self._waiting_since: float | None = None
        self._attempt = 0
        self._next_id: int | None = None
        self._counter = 0

    # -- connection ---------------------------------------------------------------------------------------------

    def open(self) -> None:
        if self._client is not None:
            return
        self._connect()

    def _connect(self) -> None:
        karabo_bridge, zmq = _require()
        self._zmq = zmq
        stack = contextlib.ExitStack()
        try:
            client = karabo_bridge.Client(self.address, sock=self.sock, timeout=_SLICE)
        except (zmq.ZMQError, ValueError, NotImplementedError) as e:
            raise SourceError(f"cannot connect to {self.address}: {e}") from None
        stack.enter_context(client)   # leaving it destroys the client's context and socket
        self._client, self._stack = client, stack
        self._waiting_since = None

    def _disconnect(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            stack.close()

    def close(self) -> None:
        self._disconnect()

    def _reconnect(self) -> None:
        self._disconnect()
        self._connect()
        self.stats["reconnects"] += 1
        self._attempt += 1

    # -- receiving ----------------------------------------------------------------------------------------------

    def receive(self, timeout: float) -> list:
        if self._client is None:
            raise SourceError(f"{self!r} is not open")
        zmq = self._zmq
        deadline = time.perf_counter() + max(0.0, float(timeout))
        while True:
            if self._waiting_since is None:
                self._waiting_since = time.perf_counter()
            try:
                data, meta = self._client.next()
            except TimeoutError:
                now = time.perf_counter()
                if (self.sock == "REQ" and self.reconnect_after is not None
                        and now - self._waiting_since > self.reconnect_after * 2 ** min(self._attempt, 3)):
                    self._reconnect()
                if now >= deadline:
                    return []
                continue
            except zmq.ZMQError as e:
                if e.errno == zmq.ETERM:
                    raise SourceError(f"the connection to {self.address} was closed") from None
                self._reconnect()
                return []
            except Exception as e:  # noqa: BLE001 - msgpack and numpy fail in many ways; all mean unreadable
                self._got_reply()
                return [Rejected(_reason(e), 1, f"cannot deserialise a Karabo bridge message: "
                                                f"{type(e).__name__}: {e}"[:300])]
            received = time.perf_counter()
            self._got_reply()
            try:
                return self._frames(data, meta, received)
            except Exception as e:  # noqa: BLE001 - anything unforeseen in a train's structure
                return [Rejected("malformed", 1, f"unreadable Karabo bridge train: {type(e).__name__}: {e}"[:300])]

    def _got_reply(self) -> None:
        self.stats["messages"] += 1
        self._waiting_since = None
        self._attempt = 0

    def _frames(self, data, meta, received: float) -> list:
        src_name, path = self._image
        if not isinstance(data, dict):
            return [Rejected("malformed", 1, f"a Karabo bridge message is a dict of sources, got "
                                             f"{type(data).__name__}")]
        image = _lookup(data.get(src_name), path)
        if image is None:
            return [Rejected("missing", 1, f"no {self.keys.image} in the train (sources: "
                                           f"{', '.join(sorted(map(str, data))) or 'none'})")]
        if not isinstance(image, np.ndarray) or image.dtype.kind not in "uif":
            what = f"an array of {image.dtype}" if isinstance(image, np.ndarray) else f"a {type(image).__name__}"
            n = image.shape[0] if isinstance(image, np.ndarray) and image.ndim == 3 else 1
            return [Rejected("dtype", n, f"{self.keys.image} is {what}, not a numeric array")]
        if image.ndim not in (2, 3):
            return [Rejected("shape", 1, f"{self.keys.image} has shape {image.shape}; expected (pulses, H, W) "
                                         f"or (H, W)")]
        n = 1 if image.ndim == 2 else image.shape[0]
        if n == 0:
            return []
        md = meta.get(src_name) if isinstance(meta, dict) else None
        md = md if isinstance(md, dict) else {}
        tid = md.get("timestamp.tid")
        if isinstance(tid, (int, np.integer)) and not isinstance(tid, bool):
            tid = int(tid)
        else:
            tid = self._counter
        self._counter = tid + 1
        stamp = md.get("timestamp")
        if not isinstance(stamp, (int, float)) or isinstance(stamp, bool):
            stamp = None
        values = {}
        for name, where in self._meta.items():
            if where is None:
                values[name] = None
                continue
            try:
                values[name] = _metadata_value(_lookup(data.get(where[0]), where[1]))
            except (TypeError, OverflowError) as e:
                self._count_lost(tid * n + np.arange(n, dtype=np.int64))
                return [Rejected("metadata", n, f"{where[0]}:{where[1]} is {e}, not a number or numeric array")]
        ids = tid * n + np.arange(n, dtype=np.int64)
        self._count_lost(ids)      # before the last check: a train rejected below is not also lost
        try:
            frames = Frames.make(ids, image, timestamp=stamp, received=received, **values)
        except (ValueError, TypeError, OverflowError) as e:
            return [Rejected("metadata", n, f"train {tid}: {e}")]
        return [frames]

    def _count_lost(self, ids: np.ndarray) -> None:
        """Frames skipped before ``ids`` (gaps in tid × pulses + pulse; with a pulse count that changes from train
        to train these ids are not contiguous, and a source for such a stream should not count gaps)."""
        first, last = int(ids[0]), int(ids[-1])
        if first < 0:
            return
        if self._next_id is not None and first > self._next_id:
            self.stats["lost"] += first - self._next_id
        self._next_id = last + 1


def _reason(e: Exception) -> str:
    """``"truncated"`` for a message cut short (msgpack's incomplete input, an array shorter than its header),
    ``"malformed"`` for anything else."""
    import msgpack

    if isinstance(e, msgpack.exceptions.OutOfData) or type(e) is ValueError:
        return "truncated"
    return "malformed"


class KaraboServer(Server):
    """A Karabo bridge REP server (protocol 2.2, ``karabo_bridge.serializer.serialize``) on its own socket.

    Each :meth:`send` waits for a client's ``b"next"`` and replies with one train: the frames under the image key
    (shape (n, H, W)), the metadata under theirs (a scalar when all frames share a value, else a per-pulse array;
    left out when not given) and, for every source, ``timestamp`` (of the first frame), ``timestamp.sec``,
    ``timestamp.frac`` and ``timestamp.tid`` in the metadata.  The train id is ``ids[0] // n``; a batch whose ids
    are not ``tid × n + 0, 1, ..., n − 1`` goes out as single-frame trains (train id = frame id), so that the
    source gets the ids back exactly.

    Parameters
    ----------
    address : str
        ``tcp://HOST:PORT`` to bind (port 0: any free port; :attr:`address` then holds the one bound).
    keys : Keys or None
        As the source takes them.
    n_pulses : int or None
        Frames per train; when given, :meth:`send` refuses a batch of another size.
    timeout : float or None
        Seconds :meth:`send` waits for a request before raising TimeoutError; None: for ever.
    """

    protocol = "karabo"

    def __init__(self, address: str = "tcp://127.0.0.1:4545", keys: Keys | None = None, *,
                 n_pulses: int | None = None, timeout: float | None = None):
        super().__init__(address, resolve_keys(keys))
        if n_pulses is not None and int(n_pulses) < 1:
            raise ValueError(f"n_pulses must be >= 1, got {n_pulses}")
        self.n_pulses = None if n_pulses is None else int(n_pulses)
        self.timeout = timeout
        self._image = split_key(self.keys.image, "")
        self._ctx = None
        self._sock = None
        self.trains = 0

    def start(self) -> None:
        if self._sock is not None:
            return
        _, zmq = _require()
        self._ctx = zmq.Context()
        self._bind(self.address)

    def _bind(self, address: str, wait: float = 0.0) -> None:
        import zmq

        self._sock = bind(self._ctx, zmq.REP, address, wait=wait)
        self.address = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    # -- sending ------------------------------------------------------------------------------------------------

    def _reply(self, parts) -> None:
        import zmq

        if self._sock is None:
            raise RuntimeError("the Karabo server is not started")
        give_up = None if self.timeout is None else time.monotonic() + self.timeout
        while True:
            wait = 100 if give_up is None else max(0, min(100, int((give_up - time.monotonic()) * 1000)))
            if self._sock.poll(wait, zmq.POLLIN):
                request = self._sock.recv()
                if request == b"next":
                    break
                self._sock.send(b"Error: bad request " + request[:100])
                continue
            if give_up is not None and time.monotonic() >= give_up:
                raise TimeoutError(f"no Karabo bridge client asked for a train on {self.address} within "
                                   f"{self.timeout:g} s")
        self._sock.send_multipart(parts, copy=False)

    def send_train(self, data: dict, metadata: dict | None = None) -> None:
        """Reply to the next request with the train ``data`` / ``metadata`` as they are (for tests and demos)."""
        from karabo_bridge.serializer import serialize

        if metadata is None:
            metadata = {src: _timestamp(time.time(), self.trains) for src in data}
        self._reply(serialize(data, metadata, protocol_version="2.2"))
        self.trains += 1

    def send(self, frames: Frames) -> None:
        n = len(frames)
        if self.n_pulses is not None and n != self.n_pulses:
            raise ValueError(f"this server sends trains of {self.n_pulses} frames, got {n}")
        if n == 0:
            return
        tid = int(frames.ids[0]) // n
        if n > 1 and not np.array_equal(frames.ids, tid * n + np.arange(n)):
            for i in range(n):
                self._send_train(frames, slice(i, i + 1), int(frames.ids[i]))
            return
        self._send_train(frames, slice(0, n), tid)

    def _send_train(self, frames: Frames, sl: slice, tid: int) -> None:
        img_src, img_path = self._image
        data = {img_src: {img_path: np.ascontiguousarray(frames.data[sl])}}
        for name, fill in (("delay", None), ("pumped", -1), ("timetool", None)):
            key = getattr(self.keys, name)
            if key is None:
                continue
            value = _train_value(getattr(frames, name)[sl], fill)
            if value is not None:
                src, path = split_key(key, img_src)
                data.setdefault(src, {})[path] = value
        stamp = float(frames.timestamp[sl][0])
        self.send_train(data, {src: _timestamp(stamp, tid) for src in data})

    def send_malformed(self, kind: str) -> None:
        """``"garbage"``: a reply that is not msgpack; ``"truncated"``: a one-frame train whose image is cut to
        half its bytes."""
        from karabo_bridge.serializer import serialize

        if kind == "garbage":
            self._reply([b"\xc1 this is not a Karabo bridge message"])
        elif kind == "truncated":
            img_src, img_path = self._image
            image = np.arange(64, dtype=np.uint16).reshape(1, 8, 8)
            parts = serialize({img_src: {img_path: image}}, {img_src: _timestamp(time.time(), -1)},
                              protocol_version="2.2")
            payload = bytes(parts[-1])
            self._reply(parts[:-1] + [payload[:len(payload) // 2]])
        else:
            raise ValueError(f"kind must be 'garbage' or 'truncated', got {kind!r}")
        self.trains += 1

    def disconnect(self, seconds: float) -> None:
        """Close the socket (a request in flight is lost), wait ``seconds``, bind the same address again."""
        if self._sock is None:
            raise RuntimeError("the Karabo server is not started")
        self._sock.close()
        self._sock = None
        time.sleep(max(0.0, float(seconds)))
        self._bind(self.address, wait=5.0)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None


def _timestamp(stamp: float, tid: int) -> dict:
    sec = int(np.floor(stamp))
    frac = round((stamp - sec) * 1e18)
    return {"timestamp": float(stamp), "timestamp.sec": str(sec), "timestamp.frac": f"{frac:018d}",
            "timestamp.tid": int(tid)}


def _train_value(values: np.ndarray, fill):
    """One metadata field of a train: None (not given), a scalar (shared) or the per-pulse array."""
    given = ~np.isnan(values) if fill is None else values != fill
    if not given.any():
        return None
    if np.all(values == values[0]):
        v = values[0]
        return bool(v) if fill is not None and v in (0, 1) else v.item()
    return np.ascontiguousarray(values)
