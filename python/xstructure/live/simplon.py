"""DECTRIS SIMPLON stream v2: one CBOR message per exposure, pushed over ZeroMQ.

The protocol is the one of the DECTRIS SIMPLON API manual (the stream interface) and the stream v2 documentation
(https://github.com/dectris/documentation, ``stream_v2/README.md`` and ``cbor/dectris-compression-tag.md``).  A
detector pushes (ZeroMQ PUSH, port 31001) three kinds of message, each a CBOR map (RFC 8949) whose ``type`` is

* ``"start"`` at the arm: ``series_id``, ``series_unique_id``, ``channels``, ``image_size_x`` / ``_y``, the
  detector's settings and ``user_data`` (the stream's ``header_appendix``);
* ``"image"`` per exposure: ``series_id``, ``image_id``, ``series_date`` (a tag-0 date), ``start_time``,
  ``stop_time`` and ``real_time`` (rationals ``[numerator, denominator]`` in seconds), ``data`` (a map from
  channel name, e.g. ``"threshold_1"``, to the image) and ``user_data`` (the stream's ``image_appendix``);
* ``"end"`` at the disarm.

An image is a multi-dimensional array (tag 40, RFC 8746 §3.1: ``[[H, W], typed array]``; tag 1040 for
column-major) of a typed array (RFC 8746 §2: tag 64 uint8, 69 uint16 LE, 70 uint32 LE, 77/78 int16/int32 LE,
84/85/86 float16/32/64 LE, and their big-endian twins) whose byte string may be compressed: tag 56500 ``[algorithm,
element size, bytes]``, ``"bslz4"`` (bitshuffle + LZ4) or ``"lz4"``, both in the framing of their HDF5 filters,
decompressed with the ``dectris-compression`` package when it is installed.

The metadata a pump-probe run needs (delay, laser on/off, timetool) are keys of the image message's ``user_data``
map (:class:`~xstructure.live.frames.Keys`; defaults ``delay``, ``laser_on``, ``timetool``).  The spec lets
``user_data`` be any CBOR item; at a real detector it is the stream's ``image_appendix``, which the control system
sets through the SIMPLON API.  Frame ids are ``image_id``; gaps in them within a series count in
``stats["lost"]``.  The image is the channel ``channel`` (``keys.image``, when given, names it instead).
"""

from __future__ import annotations

import datetime
import math
import time
import uuid
from collections.abc import Mapping

import numpy as np

from .frames import EndOfStream, Frames, Keys, Rejected, Source, SourceError
from .server import Server
from .sockets import bind

__all__ = ["COMPRESSIONS", "DEFAULT_CHANNEL", "SimplonServer", "SimplonSource", "encode", "image_array"]

DEFAULT_CHANNEL = "threshold_1"
COMPRESSIONS = ("bslz4", "lz4")          # what SimplonServer can write
_ALGORITHMS = ("bslz4", "lz4", "bszstd", "trpx")   # what dectris-compression reads
_TIME_BASE = 10 ** 9                     # denominator of the rationals the server writes (ns)

# RFC 8746 typed-array tags: numpy dtype of each (None: a type numpy cannot hold, e.g. IEEE binary128)
_TYPED = {64: "u1", 65: ">u2", 66: ">u4", 67: ">u8", 68: "u1", 69: "<u2", 70: "<u4", 71: "<u8",
          72: "i1", 73: ">i2", 74: ">i4", 75: ">i8", 77: "<i2", 78: "<i4", 79: "<i8",
          80: ">f2", 81: ">f4", 82: ">f8", 83: None, 84: "<f2", 85: "<f4", 86: "<f8", 87: None}
_DTYPES = {k: np.dtype(v) for k, v in _TYPED.items() if v is not None}
_TAG_OF = {np.dtype(v).str: k for k, v in _TYPED.items() if v is not None and v[0] != ">" and k != 68}


def _require_cbor():
    try:
        import cbor2
    except ImportError as e:
        raise SourceError(f"SIMPLON stream v2 needs cbor2 (pip install cbor2): {e}") from None
    return cbor2


def _require_zmq():
    try:
        import zmq
    except ImportError as e:
        raise SourceError(f"SIMPLON stream v2 needs pyzmq (pip install pyzmq): {e}") from None
    return zmq


# -- decoding -----------------------------------------------------------------------------------------------------

class _Bad(Exception):
    """A message the source rejects: ``reason`` and a one-line detail."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


class _Array:
    """A multi-dimensional array as decoded, turned into numpy by :func:`_materialise`."""

    __slots__ = ("order", "payload", "shape")

    def __init__(self, shape, payload, order):
        self.shape, self.payload, self.order = shape, payload, order


class _Typed:
    __slots__ = ("payload", "tag")

    def __init__(self, tag, payload):
        self.tag, self.payload = tag, payload


class _Compressed:
    __slots__ = ("algorithm", "data", "modifier")

    def __init__(self, algorithm, modifier, data):
        self.algorithm, self.modifier, self.data = algorithm, modifier, data


def _tag_hook(a, b):
    """cbor2's tag hook (``(tag, immutable)`` from cbor2 6 on, ``(decoder, tag)`` before): arrays become light
    records, turned into numpy after the decode, so that a bad array is rejected with its own reason."""
    tag = b if hasattr(b, "tag") else a
    t = tag.tag
    if t in _TYPED:
        return _Typed(t, tag.value)
    if t == 40 or t == 1040:
        v = tag.value
        if isinstance(v, (list, tuple)) and len(v) == 2:
            return _Array(v[0], v[1], "F" if t == 1040 else "C")
    elif t == 56500:
        v = tag.value
        if isinstance(v, (list, tuple)) and len(v) == 3:
            return _Compressed(*v)
    return tag


_codec = None


def _decompressor():
    """``dectris.compression.decompress`` or None (imported once)."""
    global _codec
    if _codec is None:
        try:
            from dectris.compression import decompress
        except ImportError:
            decompress = False
        _codec = decompress
    return _codec or None


def _decompress(c: _Compressed, itemsize: int) -> bytes:
    alg = c.algorithm
    if not isinstance(alg, str) or alg not in _ALGORITHMS:
        raise _Bad("compression", f"unknown compression {alg!r} (known: {', '.join(_ALGORITHMS)})")
    if not isinstance(c.data, (bytes, bytearray, memoryview)):
        raise _Bad("malformed", f"compressed data ({alg}) is a {type(c.data).__name__}, not a byte string")
    decompress = _decompressor()
    if decompress is None:
        raise _Bad("compression", f"the image is {alg}-compressed and dectris-compression is not installed "
                                  f"(pip install dectris-compression)")
    elem = c.modifier if isinstance(c.modifier, int) and c.modifier > 0 else itemsize
    try:
        return decompress(c.data, alg, elem_size=elem)
    except Exception as e:  # noqa: BLE001 - the codec's errors differ between versions; all mean the same
        raise _Bad("compression", f"cannot decompress {alg} data: {e}") from None


def _materialise(arr) -> np.ndarray:
    """The numpy array of a decoded multi-dimensional array (a view of the message's bytes when uncompressed)."""
    if not isinstance(arr, _Array):
        raise _Bad("dtype", f"the channel holds a {type(arr).__name__}, not a multi-dimensional array (tag 40)")
    shape = arr.shape
    if not isinstance(shape, (list, tuple)) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise _Bad("malformed", f"bad dimensions {shape!r} of a multi-dimensional array")
    payload = arr.payload
    if isinstance(payload, _Typed):
        dtype = _DTYPES.get(payload.tag)
        if dtype is None:
            raise _Bad("dtype", f"typed array tag {payload.tag} (128-bit float) is not supported")
        raw = payload.payload
        if isinstance(raw, _Compressed):
            raw = _decompress(raw, dtype.itemsize)
        if not isinstance(raw, (bytes, bytearray, memoryview)):
            raise _Bad("malformed", f"typed array tag {payload.tag} holds a {type(raw).__name__}, "
                                    f"not a byte string")
        if len(raw) % dtype.itemsize:
            raise _Bad("shape", f"{len(raw)} bytes are not a whole number of {dtype} values")
        a = np.frombuffer(raw, dtype=dtype)
        if not dtype.isnative:
            a = a.astype(dtype.newbyteorder("="))
    elif isinstance(payload, (list, tuple)):
        a = np.asarray(payload)
        if a.dtype.kind not in "biuf":
            raise _Bad("dtype", f"a multi-dimensional array of {a.dtype}")
    else:
        raise _Bad("dtype", f"a multi-dimensional array of a {type(payload).__name__}")
    if a.size != math.prod(shape):
        raise _Bad("shape", f"{a.size} values for an image of dimensions {list(shape)}")
    return a.reshape(shape, order=arr.order)


def _seconds(rational) -> float | None:
    if isinstance(rational, (list, tuple)) and len(rational) == 2 and all(isinstance(x, int) for x in rational) \
            and rational[1] > 0:
        return rational[0] / rational[1]
    return None


class SimplonSource(Source):
    """Frames from a DECTRIS detector's stream v2 (ZeroMQ PULL, CBOR).

    Parameters
    ----------
    address : str
        ``tcp://HOST:PORT`` of the detector's stream (port 31001 on a DCU).
    keys : Keys or None
        ``user_data`` keys of the delay, laser state and timetool; ``keys.image``, when given, is the channel.
    channel : str
        The image channel of ``data`` (``"threshold_1"``, ``"threshold_2"``, ``"difference"``, ...).

    Attributes
    ----------
    series : dict
        The last ``start`` message's scalar fields (``series_id``, ``image_size_x``, ``channels``, ...; the
        flatfields, masks and tables left out); empty before one arrived.

    Notes
    -----
    ``receive`` returns one image message's frame (or its :class:`Rejected`), skipping start messages; an end
    message raises :class:`EndOfStream`, after which the source can go on with the next series.  The socket
    reconnects on its own; ``stats["reconnects"]`` counts the connections after the first.  The frames are
    read-only views of the message (uncompressed) or of the decompressed bytes.
    """

    protocol = "simplon"

    def __init__(self, address: str = "tcp://127.0.0.1:31001", keys: Keys | None = None, *,
                 channel: str = DEFAULT_CHANNEL):
        super().__init__(address, keys)
        self.channel = self.keys.image or channel
        self.series: dict = {}
        self.stats.update({"ignored": 0, "series": 0})
        self._ctx = None
        self._sock = None
        self._monitor = None
        self._connections = 0
        self._series_id = None
        self._next_id: int | None = None

    def open(self) -> None:
        if self._sock is not None:
            return
        _require_cbor()
        zmq = _require_zmq()
        self._ctx = zmq.Context()
        sock = self._ctx.socket(zmq.PULL)
        sock.setsockopt(zmq.LINGER, 0)
        try:
            self._monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED)
            sock.connect(self.address)
        except zmq.ZMQError as e:
            if self._monitor is not None:
                sock.disable_monitor()
                self._monitor.close()
                self._monitor = None
            sock.close()
            self._ctx.term()
            self._ctx = None
            raise SourceError(f"cannot connect to {self.address}: {e}") from None
        self._sock = sock

    def close(self) -> None:
        if self._sock is not None:
            if self._monitor is not None:
                self._sock.disable_monitor()
                self._monitor.close()
                self._monitor = None
            self._sock.close()
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def _watch(self) -> None:
        """Count connections from the socket monitor's events (each reconnection is one more)."""
        import zmq

        while self._monitor.poll(0):
            frames = self._monitor.recv_multipart()
            if len(frames[0]) >= 2 and int.from_bytes(frames[0][:2], "little") == zmq.EVENT_CONNECTED:
                self._connections += 1
        self.stats["reconnects"] = max(0, self._connections - 1)

    def receive(self, timeout: float) -> list:
        if self._sock is None:
            raise SourceError(f"{self!r} is not open")
        deadline = time.perf_counter() + max(0.0, float(timeout))
        while True:
            if self._monitor is not None:
                self._watch()
            wait = max(0.0, deadline - time.perf_counter())
            if not self._sock.poll(math.ceil(wait * 1000)):
                return []
            raw = self._sock.recv(copy=True)
            received = time.perf_counter()
            self.stats["messages"] += 1
            out = self.handle(raw, received)
            if out:
                return out
            if time.perf_counter() >= deadline:
                return []

    def handle(self, raw: bytes, received: float | None = None) -> list:
        """One message's frames / rejections (``[]`` for a start message); raises :class:`EndOfStream` at its end.

        It never raises for a message it cannot read.
        """
        received = time.perf_counter() if received is None else received
        cbor2 = _require_cbor()
        try:
            msg = cbor2.loads(raw, tag_hook=_tag_hook)
        except cbor2.CBORDecodeEOF as e:
            return [Rejected("truncated", 1, f"a stream v2 message cut short ({len(raw)} bytes): {e}")]
        except Exception as e:  # noqa: BLE001 - CBORDecodeError, and whatever a hostile message provokes
            return [Rejected("malformed", 1, f"not a CBOR message ({len(raw)} bytes): {e}"[:300])]
        kind = msg.get("type") if isinstance(msg, Mapping) else None
        if kind == "image":
            try:
                return [self._image(msg, received)]
            except _Bad as e:
                return [Rejected(e.reason, 1, f"image {msg.get('image_id')!r}: {e}"[:300])]
            except Exception as e:  # noqa: BLE001 - a structure the spec does not allow
                return [Rejected("malformed", 1, f"image {msg.get('image_id')!r}: {type(e).__name__}: {e}"[:300])]
        if kind == "start":
            self.series = {k: v for k, v in msg.items()
                           if isinstance(v, (str, int, float, bool, list, tuple, datetime.datetime))}
            self._series_id = msg.get("series_id")
            self._next_id = None
            self.stats["series"] += 1
            return []
        if kind == "end":
            raise EndOfStream(f"series {msg.get('series_id')!r} ({msg.get('series_unique_id', '')}) ended")
        if isinstance(kind, str):
            self.stats["ignored"] += 1   # a message type of a later version of the protocol
            return []
        return [Rejected("malformed", 1, f"not a stream v2 message (a {type(msg).__name__} without a type)")]

    def _image(self, msg: Mapping, received: float) -> Frames:
        image_id = msg.get("image_id")
        if not isinstance(image_id, int) or isinstance(image_id, bool):
            raise _Bad("malformed", f"image_id is {image_id!r}, not an integer")
        series = msg.get("series_id")
        if series != self._series_id:
            self._series_id, self._next_id = series, None
        if image_id >= 0:   # counted before the checks below: an image rejected there is not also lost
            if self._next_id is not None and image_id > self._next_id:
                self.stats["lost"] += image_id - self._next_id
            if self._next_id is None or image_id >= self._next_id:
                self._next_id = image_id + 1
        data = msg.get("data")
        if not isinstance(data, Mapping):
            raise _Bad("malformed", "an image message without a data map")
        if self.channel not in data:
            raise _Bad("missing", f"no channel {self.channel!r} (channels: {', '.join(map(str, data)) or 'none'})")
        image = _materialise(data[self.channel])
        if image.ndim != 2:
            raise _Bad("shape", f"an image of dimensions {list(image.shape)}; expected [H, W]")
        stamp = None
        date = msg.get("series_date")
        start = _seconds(msg.get("start_time"))
        if isinstance(date, datetime.datetime) and start is not None:
            if date.tzinfo is None:
                date = date.replace(tzinfo=datetime.timezone.utc)
            stamp = date.timestamp() + start
        user = msg.get("user_data")
        values = {}
        for name in ("delay", "pumped", "timetool"):
            key = getattr(self.keys, name)
            v = user.get(key) if key is not None and isinstance(user, Mapping) else None
            if v is not None and not isinstance(v, (bool, int, float)):
                raise _Bad("metadata", f"user_data[{key!r}] is a {type(v).__name__}, not a number")
            values[name] = v
        return Frames.make([image_id], image, timestamp=stamp, received=received, **values)


# -- encoding (the simulated detector) ----------------------------------------------------------------------------

def _compress(image: np.ndarray, algorithm: str) -> bytes:
    """``image`` compressed as the HDF5 filters frame bslz4 / lz4 (written through h5py + hdf5plugin)."""
    import io

    import h5py
    import hdf5plugin

    flt = hdf5plugin.Bitshuffle(cname="lz4") if algorithm == "bslz4" else hdf5plugin.LZ4()
    with h5py.File(io.BytesIO(), "w") as f:
        ds = f.create_dataset("x", data=image, chunks=image.shape, **flt)
        mask, chunk = ds.id.read_direct_chunk((0,) * image.ndim)
    if mask:
        raise RuntimeError(f"the {algorithm} filter did not compress the image (filter mask {mask})")
    return bytes(chunk)


def encode(message: dict) -> bytes:
    """A stream v2 message as CBOR bytes, behind the self-described CBOR tag 55799 as a DECTRIS detector writes it.

    Parameters
    ----------
    message : dict
        The message's map (``type`` first); images as :func:`image_array` makes them.

    Returns
    -------
    bytes
    """
    cbor2 = _require_cbor()
    return cbor2.dumps(cbor2.CBORTag(55799, message))


def image_array(image: np.ndarray, compression: str | None = None):
    """The CBOR item of one image: ``tag 40 [[H, W], typed array]`` (RFC 8746, little-endian).

    Parameters
    ----------
    image : numpy.ndarray
        The image, of an integer or float type of 1 to 8 bytes.
    compression : {None, 'bslz4', 'lz4'}
        Compress the typed array's bytes (DECTRIS tag 56500; needs h5py and hdf5plugin).

    Returns
    -------
    cbor2.CBORTag
    """
    cbor2 = _require_cbor()
    a = np.asarray(image)
    tag = _TAG_OF.get(a.dtype.newbyteorder("<").str)
    if tag is None:
        raise ValueError(f"stream v2 has no typed array of {a.dtype}")
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    if compression is None:
        payload = a.tobytes()
    else:
        modifier = a.dtype.itemsize if compression == "bslz4" else 0
        payload = cbor2.CBORTag(56500, [compression, modifier, _compress(a, compression)])
    return cbor2.CBORTag(40, [list(a.shape), cbor2.CBORTag(tag, payload)])


def _rational(seconds: float) -> list:
    return [max(0, round(seconds * _TIME_BASE)), _TIME_BASE]


class SimplonServer(Server):
    """A simulated DECTRIS detector's stream v2: a ZeroMQ PUSH socket sending CBOR messages.

    Each :meth:`send` sends one image message per frame (``image_id`` = the frame's id, the metadata in
    ``user_data`` under the keys, left out where not given; ``series_date`` + ``start_time`` = its time stamp,
    a nominal 1 ms ``real_time``).  The series' ``start`` message goes out before its first image (it carries
    the image size, known only then); :meth:`end` sends ``end``, and the next :meth:`send` starts a new series.
    Like a detector, a send blocks while no client is connected (up to ``send_timeout``).

    Parameters
    ----------
    address : str
        ``tcp://HOST:PORT`` to bind (port 0: any free port; :attr:`address` then holds the one bound).
    keys : Keys or None
        ``user_data`` keys (and the channel in ``keys.image``), as the source takes them.
    compression : {None, 'bslz4', 'lz4'}
        Compress each image (tag 56500; needs h5py and hdf5plugin).
    channel : str
        The channel name of the images.
    send_timeout : float or None
        Seconds a send may wait for a client before raising TimeoutError; None: for ever.
    """

    protocol = "simplon"

    def __init__(self, address: str = "tcp://127.0.0.1:31001", keys: Keys | None = None, *,
                 compression: str | None = None, channel: str = DEFAULT_CHANNEL,
                 send_timeout: float | None = 30.0):
        super().__init__(address, keys)
        if compression not in (None, *COMPRESSIONS):
            raise ValueError(f"compression must be None or one of {', '.join(COMPRESSIONS)}, got {compression!r}")
        if compression is not None:
            try:
                import h5py  # noqa: F401
                import hdf5plugin  # noqa: F401
            except ImportError as e:
                raise ValueError(f"compression={compression!r} needs h5py and hdf5plugin: {e}") from None
        self.compression = compression
        self.channel = self.keys.image or channel
        self.send_timeout = send_timeout
        self.series_id = 0
        self._series_open = False
        self._series_uid = ""
        self._series_date = 0.0
        self._shape = (8, 8)
        self._dtype = np.dtype(np.uint16)
        self._ctx = None
        self._sock = None

    def start(self) -> None:
        if self._sock is not None:
            return
        _require_cbor()
        zmq = _require_zmq()
        self._ctx = zmq.Context()
        self._bind(self.address)

    def _bind(self, address: str, wait: float = 0.0) -> None:
        import zmq

        options = {} if self.send_timeout is None else {zmq.SNDTIMEO: int(self.send_timeout * 1000)}
        self._sock = bind(self._ctx, zmq.PUSH, address, wait=wait, options=options)
        self.address = self._sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def send_message(self, message) -> None:
        """Send one message: a dict (encoded with :func:`encode`) or bytes as they are."""
        import zmq

        if self._sock is None:
            raise RuntimeError("the SIMPLON server is not started")
        raw = message if isinstance(message, (bytes, bytearray, memoryview)) else encode(message)
        try:
            self._sock.send(raw, copy=len(raw) < 65536)
        except zmq.Again:
            raise TimeoutError(f"no SIMPLON client took a message on {self.address} within "
                               f"{self.send_timeout:g} s") from None

    def _begin(self, shape, dtype, stamp: float) -> None:
        if self._series_open:
            return
        self.series_id += 1
        self._series_uid = uuid.uuid4().hex
        self._series_date = math.floor(stamp) - 1.0    # whole seconds, a little before the first frame
        self._shape, self._dtype = tuple(shape), np.dtype(dtype)
        self.send_message({"type": "start", "series_id": self.series_id, "series_unique_id": self._series_uid,
                           "arm_date": datetime.datetime.now(datetime.timezone.utc), "channels": [self.channel],
                           "image_size_x": int(shape[1]), "image_size_y": int(shape[0]), "count_time": 1e-3,
                           "user_data": {"simulated": True}})
        self._series_open = True

    def _image_message(self, image_id: int, image, stamp: float, delay: float, pumped: int,
                       timetool: float) -> dict:
        user = {}
        for name, value, given in (("delay", delay, not math.isnan(delay)), ("pumped", pumped, pumped >= 0),
                                   ("timetool", timetool, not math.isnan(timetool))):
            key = getattr(self.keys, name)
            if key is not None and given:
                user[key] = bool(value) if name == "pumped" else float(value)
        start = stamp - self._series_date
        return {"type": "image", "series_id": self.series_id, "series_unique_id": self._series_uid,
                "image_id": int(image_id),
                "series_date": datetime.datetime.fromtimestamp(self._series_date, datetime.timezone.utc),
                "start_time": _rational(start), "stop_time": _rational(start + 1e-3),
                "real_time": _rational(1e-3), "user_data": user,
                "data": {self.channel: image_array(image, self.compression)}}

    def send(self, frames: Frames) -> None:
        if len(frames) == 0:
            return
        self._begin(frames.data.shape[1:], frames.data.dtype, float(frames.timestamp[0]))
        for i in range(len(frames)):
            self.send_message(self._image_message(int(frames.ids[i]), frames.data[i], float(frames.timestamp[i]),
                                                  float(frames.delay[i]), int(frames.pumped[i]),
                                                  float(frames.timetool[i])))

    def send_malformed(self, kind: str) -> None:
        """``"garbage"``: bytes that are not CBOR; ``"truncated"``: an image message cut to half its bytes."""
        if kind == "garbage":
            self.send_message(b"\xff this is not a stream v2 message \xff")
        elif kind == "truncated":
            msg = self._image_message(-1, np.zeros(self._shape, self._dtype), time.time(), math.nan, -1, math.nan)
            raw = encode(msg)
            self.send_message(raw[:len(raw) // 2])
        else:
            raise ValueError(f"kind must be 'garbage' or 'truncated', got {kind!r}")

    def end(self) -> None:
        """Send the series' ``end`` message (nothing when no series is open)."""
        if self._series_open:
            self.send_message({"type": "end", "series_id": self.series_id, "series_unique_id": self._series_uid})
            self._series_open = False

    def disconnect(self, seconds: float) -> None:
        """Close the socket (messages not yet delivered are lost), wait ``seconds``, bind the same address again."""
        if self._sock is None:
            raise RuntimeError("the SIMPLON server is not started")
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
