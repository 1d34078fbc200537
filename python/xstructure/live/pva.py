"""EPICS PV Access: detector frames as NTNDArray updates of one PV, as areaDetector's NDPluginPva publishes them.

The protocol is pvAccess of EPICS 7 (the pvAccess protocol specification,
https://docs.epics-controls.org/en/latest/pv-access/protocol.html) carrying the normative type NTNDArray
(EPICS Normative Types Specification, https://docs.epics-controls.org/en/latest/pv-access/Normative-Types-Specification.html),
the structure areaDetector's NDPluginPva serves (https://areadetector.github.io/areaDetector/ADCore/NDPluginPva.html).
The client and server are p4p's (https://epics-base.github.io/p4p/), on top of PVXS.

An update is one frame:

* ``value``: a union of typed arrays (``ubyteValue``, ``ushortValue``, ``intValue``, ``floatValue``, ...), the
  pixels in C order of the numpy shape;
* ``dimension``: areaDetector's order, ``dimension[0]`` the fastest (x), so a frame is (``dimension[1].size``,
  ``dimension[0].size``); only 2-D frames are accepted;
* ``uniqueId``: the frame id (areaDetector's array counter); gaps above the highest id so far count as lost
  frames (``stats["lost"]``); a counter that goes back (an IOC restarted) or a negative id counts none;
* ``timeStamp``: ``secondsPastEpoch`` + ``nanoseconds`` (POSIX epoch), the frame's time stamp;
* ``attribute``: a list of NTAttributes (``name``, ``value``), areaDetector's NDAttributes; the delay, laser state
  and timetool are the attributes named by :class:`~xstructure.live.frames.Keys` (``Keys.image`` is not used);
* ``codec``: empty for raw pixels; NDPluginCodec's ``lz4`` (an LZ4 block), ``bslz4`` (bitshuffle + LZ4 blocks,
  with or without the 12-byte header of the HDF5 filter) and ``blosc`` are decoded (numcodecs needed), the
  pixel type taken from ``codec.parameters`` (areaDetector's NDDataType code); any other codec (``jpeg``) is
  rejected (reason ``"codec"``).

An empty array (no dimensions, no value: what an IOC serves before its first frame) is skipped
(``stats["empty"]``).

The monitor's pvRequest asks for a queue of ``queue`` updates (``record[queueSize=N]``).  When the client falls
behind, the server squashes updates into the last queued one, so frames go missing: they show as gaps in
``uniqueId``.  The monitor callback (p4p's worker thread) decodes each update and hands it to a bounded
buffer; when that is full the callback waits, the monitor queue fills, and the server squashes, so a slow
pipeline loses frames (counted) rather than memory.  After a disconnection p4p reconnects on its own
(``stats["reconnects"]``); the PV's current value, sent again on reconnection, is dropped when its uniqueId is
the last one received (``stats["repeated"]``).

Every address defaults to this machine: the client searches 127.0.0.1 only (``EPICS_PVA_ADDR_LIST=127.0.0.1``,
``EPICS_PVA_AUTO_ADDR_LIST=NO``) and the server listens on 127.0.0.1 only; the process environment is never
read (``useenv=False``).  Pass ``conf=`` (the EPICS_PVA_* / EPICS_PVAS_* names) to reach a facility's IOC.
"""

from __future__ import annotations

import math
import queue as _queue
import struct
import threading
import time

import numpy as np

from .frames import EndOfStream, Frames, Keys, Rejected, Source, SourceError
from .server import Server

__all__ = ["CODECS", "DEFAULT_PV", "PvaServer", "PvaSource", "client_conf", "server_conf"]

DEFAULT_PV = "XS:SIM:Pva1:Image"
CODECS = ("lz4", "bslz4", "blosc")   # decoded (with numcodecs); other codecs are rejected
_SLICE = 0.1   # s: the longest the monitor callback waits at a time for room in the buffer

# areaDetector's NDDataType_t, as NDPluginCodec stores it in codec.parameters
_ND_TYPES = {0: np.int8, 1: np.uint8, 2: np.int16, 3: np.uint16, 4: np.int32, 5: np.uint32, 6: np.int64,
             7: np.uint64, 8: np.float32, 9: np.float64}
_ND_CODES = {np.dtype(t): c for c, t in _ND_TYPES.items()}
# numpy dtype -> the NTNDArray value union's member
_UNION = {np.dtype(np.int8): "byteValue", np.dtype(np.uint8): "ubyteValue", np.dtype(np.int16): "shortValue",
          np.dtype(np.uint16): "ushortValue", np.dtype(np.int32): "intValue", np.dtype(np.uint32): "uintValue",
          np.dtype(np.int64): "longValue", np.dtype(np.uint64): "ulongValue", np.dtype(np.float32): "floatValue",
          np.dtype(np.float64): "doubleValue"}


def _p4p():
    try:
        import p4p.client.thread as client
        import p4p.server.thread as server_thread
        from p4p import nt, server, util
    except ImportError as e:
        raise SourceError(f"PV Access needs p4p (pip install p4p): {e}") from None
    return client, server, server_thread, nt, util


def client_conf(server_port: int = 5075, broadcast_port: int = 5076, host: str = "127.0.0.1") -> dict:
    """A PV Access client configuration that searches ``host`` only (default this machine), never the
    environment's.

    Parameters
    ----------
    server_port, broadcast_port : int
        The server's TCP port and the UDP port searches go to.
    host : str
        Where to search.

    Returns
    -------
    dict
        ``conf`` for :class:`PvaSource` (EPICS_PVA_* names).
    """
    return {"EPICS_PVA_ADDR_LIST": host, "EPICS_PVA_AUTO_ADDR_LIST": "NO",
            "EPICS_PVA_SERVER_PORT": str(int(server_port)), "EPICS_PVA_BROADCAST_PORT": str(int(broadcast_port))}


def server_conf(server_port: int = 5075, broadcast_port: int = 5076, host: str = "127.0.0.1") -> dict:
    """A PV Access server configuration listening on ``host`` only.

    Parameters
    ----------
    server_port, broadcast_port : int
        TCP port for clients, UDP port for searches; 0 lets the system choose a free one.
    host : str
        The interface to listen on.

    Returns
    -------
    dict
        ``conf`` for :class:`PvaServer` (EPICS_PVA_* / EPICS_PVAS_* names).
    """
    return {"EPICS_PVAS_INTF_ADDR_LIST": host, "EPICS_PVA_ADDR_LIST": host, "EPICS_PVA_AUTO_ADDR_LIST": "NO",
            "EPICS_PVAS_SERVER_PORT": str(int(server_port)), "EPICS_PVAS_BROADCAST_PORT": str(int(broadcast_port))}


# ---------------------------------------------------------------------------------------------------------------
# codecs (NDPluginCodec's formats)

def _numcodecs():
    try:
        import numcodecs
    except ImportError:
        return None
    return numcodecs


def _lz4_block_decode(block: bytes, size: int) -> bytes:
    # numcodecs' LZ4 frames a raw LZ4 block with its decoded size (4 bytes, little-endian)
    out = _numcodecs().LZ4().decode(struct.pack("<I", size) + bytes(block))
    if len(out) != size:
        raise ValueError(f"an LZ4 block decoded to {len(out)} bytes, expected {size}")
    return bytes(out)


def _lz4_block_encode(raw: bytes) -> bytes:
    return bytes(_numcodecs().LZ4(acceleration=1).encode(raw))[4:]


def _bitunshuffle(block: np.ndarray, n: int, itemsize: int) -> np.ndarray:
    # bitshuffle stores bit b of byte k of every element as row 8k + b, elements packed 8 to a byte (LSB first)
    bits = np.unpackbits(block.reshape(8 * itemsize, n // 8), axis=1, bitorder="little")
    return np.packbits(bits.T, axis=1, bitorder="little").ravel()


def _bitshuffle(raw: np.ndarray, n: int, itemsize: int) -> np.ndarray:
    bits = np.unpackbits(raw.reshape(n, itemsize), axis=1, bitorder="little")
    return np.packbits(np.ascontiguousarray(bits.T), axis=1, bitorder="little").ravel()


def _bslz4_block(itemsize: int) -> int:
    return max(128, (8192 // itemsize) // 8 * 8)   # bitshuffle's default block (elements)


def _bslz4_decode(payload: np.ndarray, count: int, itemsize: int) -> np.ndarray:
    nbytes = count * itemsize
    block = _bslz4_block(itemsize)
    pos = 0
    if payload.size >= 12 and int.from_bytes(payload[:8].tobytes(), "big") == nbytes:   # the HDF5 filter's header
        block = int.from_bytes(payload[8:12].tobytes(), "big") // itemsize
        pos = 12
        if block <= 0 or block % 8:
            raise ValueError(f"a bitshuffle block of {block} elements")
    parts, done = [], 0
    while count - done >= 8:
        m = min(block, count - done)
        m -= m % 8
        if pos + 4 > payload.size:
            raise ValueError("the bitshuffle/LZ4 data end early")
        clen = int.from_bytes(payload[pos:pos + 4].tobytes(), "big")
        pos += 4
        if pos + clen > payload.size:
            raise ValueError("the bitshuffle/LZ4 data end early")
        shuffled = np.frombuffer(_lz4_block_decode(payload[pos:pos + clen], m * itemsize), dtype=np.uint8)
        parts.append(_bitunshuffle(shuffled, m, itemsize))
        pos += clen
        done += m
    rest = (count - done) * itemsize   # the last count % 8 elements are stored as they are
    if pos + rest != payload.size:
        raise ValueError(f"bitshuffle/LZ4 data of {payload.size} bytes, {pos + rest} expected")
    parts.append(payload[pos:pos + rest])
    return np.concatenate(parts)


def _bslz4_encode(raw: np.ndarray, itemsize: int) -> np.ndarray:
    count = raw.size // itemsize
    block = _bslz4_block(itemsize)
    out, done = [], 0
    while count - done >= 8:
        m = min(block, count - done)
        m -= m % 8
        packed = _lz4_block_encode(_bitshuffle(raw[done * itemsize:(done + m) * itemsize], m, itemsize).tobytes())
        out += [struct.pack(">I", len(packed)), packed]
        done += m
    out.append(raw[done * itemsize:].tobytes())
    return np.frombuffer(b"".join(out), dtype=np.uint8)


def _decompress(codec: str, payload: np.ndarray, dtype: np.dtype, count: int) -> np.ndarray:
    """(count,) pixels of ``dtype`` from the codec's bytes; raises ValueError (or the codec's error)."""
    nbytes = count * dtype.itemsize
    if codec == "lz4":
        raw = np.frombuffer(_lz4_block_decode(payload, nbytes), dtype=np.uint8)
    elif codec == "bslz4":
        raw = _bslz4_decode(payload, count, dtype.itemsize)
    else:   # blosc: the frame carries its own sizes
        raw = np.frombuffer(bytes(_numcodecs().Blosc().decode(payload.tobytes())), dtype=np.uint8)
    if raw.size != nbytes:
        raise ValueError(f"{codec} data decoded to {raw.size} bytes, the dimensions need {nbytes}")
    return raw.view(dtype)


def _compress(codec: str, pixels: np.ndarray) -> np.ndarray:
    raw = np.ascontiguousarray(pixels).reshape(-1).view(np.uint8)
    if codec == "lz4":
        return np.frombuffer(_lz4_block_encode(raw.tobytes()), dtype=np.uint8)
    if codec == "bslz4":
        return _bslz4_encode(raw, pixels.dtype.itemsize)
    blosc = _numcodecs().Blosc(cname="lz4", clevel=5, shuffle=1, typesize=pixels.dtype.itemsize)
    return np.frombuffer(bytes(blosc.encode(raw.tobytes())), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------------------
# decoding one update

def _number(x) -> float:
    """An attribute's value as a float (NaN when absent or not a number)."""
    if x is None:
        return math.nan
    try:
        a = np.asarray(x)
        if a.size != 1 or a.dtype.kind not in "biuf":
            return float(str(x)) if isinstance(x, str) else math.nan
        return float(a.reshape(()))
    except (TypeError, ValueError):
        return math.nan


def _laser(x) -> int:
    v = _number(x)
    return -1 if math.isnan(v) or v < 0 else int(v != 0)


def _decode(value, keys: Keys, received: float):
    """One NTNDArray update -> (uniqueId or None, Frames or Rejected; None for an empty array)."""
    try:
        uid = int(value["uniqueId"])
        dims = [int(d["size"]) for d in value["dimension"]]
        codec = str(value["codec.name"] or "")
        pixels = value["value"]
        sec, ns = int(value["timeStamp.secondsPastEpoch"]), int(value["timeStamp.nanoseconds"])
        attrs = {str(a["name"]): a["value"] for a in value["attribute"]}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        return None, Rejected("malformed", 1, f"not an NTNDArray: {type(e).__name__}: {e}")
    if not dims and (pixels is None or np.asarray(pixels).size == 0):
        return uid, None   # an empty array: what an IOC serves before its first frame
    if len(dims) != 2 or min(dims) <= 0:
        return uid, Rejected("malformed", 1, f"uniqueId {uid}: dimensions {dims}, expected two positive sizes")
    w, h = dims
    if pixels is None:
        return uid, Rejected("malformed", 1, f"uniqueId {uid}: no value")
    pixels = np.asarray(pixels)
    if codec:
        if codec not in CODECS:
            return uid, Rejected("codec", 1, f"uniqueId {uid}: codec {codec!r} is not decoded here "
                                             f"(only {', '.join(CODECS)})")
        if _numcodecs() is None:
            return uid, Rejected("codec", 1, f"uniqueId {uid}: decoding {codec!r} needs numcodecs")
        try:
            code = value["codec.parameters"]
            dtype = np.dtype(_ND_TYPES[int(code)]) if code is not None else pixels.dtype
        except (KeyError, TypeError, ValueError):
            return uid, Rejected("codec", 1, f"uniqueId {uid}: codec.parameters {value['codec.parameters']!r} "
                                             f"is not an NDDataType")
        payload = np.ascontiguousarray(pixels).reshape(-1).view(np.uint8)
        size = int(value["compressedSize"])
        if 0 < size < payload.size:
            payload = payload[:size]
        try:
            pixels = _decompress(codec, payload, dtype, h * w)
        except Exception as e:  # noqa: BLE001 - numcodecs raises RuntimeError, ValueError, ...; all mean undecodable
            return uid, Rejected("decode", 1, f"uniqueId {uid}: {codec}: {e}")
    if pixels.dtype not in _UNION:
        return uid, Rejected("dtype", 1, f"uniqueId {uid}: pixels of type {pixels.dtype}")
    if pixels.size < h * w:
        return uid, Rejected("truncated", 1, f"uniqueId {uid}: {pixels.size} pixels for {h}x{w}")
    if pixels.size != h * w:
        return uid, Rejected("shape", 1, f"uniqueId {uid}: {pixels.size} pixels for {h}x{w}")
    stamp = sec + 1e-9 * ns if sec > 0 else time.time()

    def attr(key, convert, missing):
        return convert(attrs.get(key)) if key is not None else missing

    return uid, Frames.make([uid], pixels.reshape(h, w), timestamp=stamp, received=received,
                            delay=attr(keys.delay, _number, math.nan), pumped=attr(keys.pumped, _laser, -1),
                            timetool=attr(keys.timetool, _number, math.nan))


# ---------------------------------------------------------------------------------------------------------------

class PvaSource(Source):
    """Frames from an NTNDArray PV (areaDetector's NDPluginPva) by a PV Access monitor.

    Parameters
    ----------
    address : str
        The PV name.
    keys : Keys or None
        The NDAttribute names of the delay, laser state and timetool (``Keys.image`` is not used).
    queue : int
        The monitor's queue (updates held for this client before the server squashes them).
    conf : dict or None
        Client configuration (EPICS_PVA_* names); None: :func:`client_conf` (127.0.0.1, the standard ports).
    buffer : int
        Decoded updates held for :meth:`receive`; when full, the monitor waits (see the module's notes).

    Notes
    -----
    :meth:`open` does not wait for the PV: a PV that is not there yet is searched for until it appears, and
    :meth:`receive` returns ``[]`` meanwhile (``stats["connected"]`` tells).  PV Access has no end of stream:
    only a server that finishes the subscription ends it (:class:`EndOfStream`).
    """

    protocol = "pva"

    def __init__(self, address: str = DEFAULT_PV, keys: Keys | None = None, *, queue: int = 16,
                 conf: dict | None = None, buffer: int = 64):
        super().__init__(address, keys)
        if int(queue) < 1 or int(buffer) < 1:
            raise ValueError(f"queue and buffer must be >= 1, got {queue}, {buffer}")
        self.queue = int(queue)
        self.conf = dict(conf) if conf is not None else client_conf()
        self._buffer = _queue.Queue(maxsize=int(buffer))
        self._ctx = self._sub = self._work = None
        self._lock = threading.Lock()
        self._closing = False
        self._ended = False
        self._connected = self._was_connected = False
        self._last = self._max = None
        self.stats.update({"repeated": 0, "empty": 0, "disconnects": 0, "errors": 0, "connected": False})

    def open(self) -> None:
        if self._ctx is not None:
            return
        client, _, _, _, util = _p4p()
        try:
            self._ctx = client.Context("pva", conf=self.conf, useenv=False, nt=False)
        except Exception as e:  # noqa: BLE001 - p4p raises what PVXS reports for a bad configuration
            raise SourceError(f"cannot start a PV Access client for {self.address}: {e}") from None
        self._closing = False
        self._work = util.ThreadedWorkQueue(name=f"pva {self.address}", maxsize=0, daemon=True).start()
        try:
            self._sub = self._ctx.monitor(self.address, self._on_update, request=f"record[queueSize={self.queue}]",
                                          notify_disconnect=True, queue=self._work)
        except Exception as e:  # noqa: BLE001 - a bad PV name or pvRequest, as PVXS reports it
            self.close()
            raise SourceError(f"cannot monitor {self.address}: {e}") from None

    # the monitor callback: p4p's worker thread, one update at a time, in order; it must never raise
    def _on_update(self, value) -> None:
        received = time.perf_counter()
        try:
            if isinstance(value, Exception):
                self._on_event(value)
                return
            with self._lock:
                fresh = not self._connected
                if fresh:
                    self.stats["reconnects"] += int(self._was_connected)
                    self._connected = self._was_connected = True
                    self.stats["connected"] = True
            uid, item = _decode(value, self.keys, received)
            with self._lock:
                if item is None:
                    self.stats["empty"] += 1
                    return
                if uid is not None and uid >= 0:   # a negative uniqueId is no frame count
                    if fresh and uid == self._last:
                        self.stats["repeated"] += 1
                        return
                    if self._max is not None and uid > self._max + 1:
                        self.stats["lost"] += uid - self._max - 1
                    self._last = uid
                    self._max = uid if self._max is None else max(self._max, uid)
                self.stats["messages"] += 1
            self._put([item])
        except Exception as e:  # noqa: BLE001 - p4p closes a subscription whose callback raises: count, go on
            with self._lock:
                self.stats["errors"] += 1
                self.stats["last_error"] = f"{type(e).__name__}: {e}"

    def _on_event(self, event: Exception) -> None:
        client = _p4p()[0]
        with self._lock:
            if isinstance(event, client.Disconnected):
                if self._connected:
                    self.stats["disconnects"] += 1
                self._connected = False
                self.stats["connected"] = False
                return
            if isinstance(event, client.Finished):
                self._ended = True
                return
            self.stats["errors"] += 1
            self.stats["last_error"] = f"{type(event).__name__}: {event}"

    def _put(self, items: list) -> None:
        while not self._closing:
            try:
                self._buffer.put(items, timeout=_SLICE)
                return
            except _queue.Full:
                continue

    def receive(self, timeout: float) -> list:
        if self._ctx is None:
            raise SourceError(f"cannot receive from {self.address}: the source is not open")
        try:
            return self._buffer.get(timeout=max(float(timeout), 0.0)) if timeout > 0 else self._buffer.get_nowait()
        except _queue.Empty:
            if self._ended:
                raise EndOfStream(f"the server finished the subscription to {self.address}") from None
            return []

    def close(self) -> None:
        self._closing = True
        sub, ctx, work = self._sub, self._ctx, self._work
        self._sub = self._ctx = self._work = None
        if sub is not None:
            sub.close()
        if work is not None:
            work.stop()
        if ctx is not None:
            ctx.close()


class PvaServer(Server):
    """An NTNDArray PV served by p4p, as areaDetector's NDPluginPva serves one.

    Parameters
    ----------
    address : str
        The PV name.
    keys : Keys or None
        The NDAttribute names for the delay, laser state and timetool.
    conf : dict or None
        Server configuration (EPICS_PVA_* / EPICS_PVAS_* names); None: :func:`server_conf` (127.0.0.1, the
        standard ports 5075/5076).  Port 0 lets the system choose; :meth:`client_conf` tells a source where.
    codec : {None, 'lz4', 'bslz4', 'blosc'}
        Compress the pixels as NDPluginCodec does (needs numcodecs).

    Notes
    -----
    Each frame of :meth:`send` is one update (``uniqueId`` = the frame's id).  Until the first frame the PV
    holds an empty array (no dimensions, no value), as an IOC's does, which a source skips (``stats["empty"]``);
    a client can connect before the first frame.  Posting never blocks: a client that falls behind
    has its updates squashed by the server.  :meth:`end` does nothing (NTNDArray has no end of stream).
    Faults (:meth:`send_malformed`) take the id after the last one sent, so that a source's gap count is
    unaffected: ``"garbage"`` posts a value whose dimensions cannot describe a frame (three sizes for 13
    booleans), ``"truncated"`` a frame that carries half of its pixels.
    """

    protocol = "pva"
    faults_take_ids = True

    def __init__(self, address: str = DEFAULT_PV, keys: Keys | None = None, *, conf: dict | None = None,
                 codec: str | None = None):
        super().__init__(address, keys)
        if codec is not None and codec not in CODECS:
            raise ValueError(f"codec must be None or one of {', '.join(CODECS)}, got {codec!r}")
        if codec is not None and _numcodecs() is None:
            raise ValueError(f"the {codec} codec needs numcodecs (pip install numcodecs)")
        self.conf = dict(conf) if conf is not None else server_conf()
        self.codec = codec
        self._server = self._pv = self._type = None
        self._opened = False
        self._bound = None
        self._last_id = -1
        self._shape = (16, 16)

    def start(self) -> None:
        if self._server is not None:
            return
        _, server, server_thread, nt, _ = _p4p()
        self._type = nt.NTNDArray.buildType()
        if self._pv is None:
            self._pv = server_thread.SharedPV()
        if not self._opened:   # an empty array until the first frame, as an IOC serves one
            self._pv.open(_p4p()[0].Value(self._type, {"uniqueId": 0}))
            self._opened = True
        self._serve(self.conf, server)
        actual = self._server.conf()
        # restart on the same ports (disconnect): a client keeps searching where it found the server
        self._bound = {k: actual[k] for k in ("EPICS_PVAS_INTF_ADDR_LIST", "EPICS_PVAS_SERVER_PORT",
                                              "EPICS_PVAS_BROADCAST_PORT", "EPICS_PVAS_BEACON_ADDR_LIST",
                                              "EPICS_PVAS_AUTO_BEACON_ADDR_LIST") if k in actual}

    def _serve(self, conf: dict, server) -> None:
        try:
            self._server = server.Server(providers=[{self.address: self._pv}], conf=conf, useenv=False)
        except Exception as e:  # noqa: BLE001 - PVXS reports a port in use, a bad address, ...
            raise RuntimeError(f"cannot serve {self.address} over PV Access: {e}") from None

    def client_conf(self) -> dict:
        """The client configuration (:class:`PvaSource`'s ``conf``) that finds this server."""
        if self._bound is None:
            raise RuntimeError("the server is not started")
        host = (self._bound.get("EPICS_PVAS_INTF_ADDR_LIST") or "127.0.0.1").split()[0]
        if host.count(":") == 1:   # PVXS reports the interface as host:port
            host = host.partition(":")[0]
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        return client_conf(int(self._bound["EPICS_PVAS_SERVER_PORT"]), int(self._bound["EPICS_PVAS_BROADCAST_PORT"]),
                           host)

    def _value(self, uid: int, flat: np.ndarray, dims, stamp: float, attributes: list, *, encode: bool = True):
        """The NTNDArray of pixels ``flat`` (1-D) with ``dims`` in areaDetector's order (fastest first)."""
        Value = _p4p()[0].Value
        sec = math.floor(stamp)
        fields = {"uniqueId": int(uid),
                  "dimension": [{"size": int(s), "offset": 0, "fullSize": int(s), "binning": 1, "reverse": False}
                                for s in dims],
                  "timeStamp": {"secondsPastEpoch": sec, "nanoseconds": min(round((stamp - sec) * 1e9), 999999999)},
                  "attribute": attributes + [{"name": "ColorMode", "value": 0}]}
        if self.codec is not None and encode and flat.dtype in _ND_CODES:
            data = _compress(self.codec, flat)
            fields.update(value=("ubyteValue", data), compressedSize=int(data.size), uncompressedSize=int(flat.nbytes),
                          codec={"name": self.codec, "parameters": int(_ND_CODES[flat.dtype])})
        else:
            member = _UNION.get(flat.dtype, "booleanValue" if flat.dtype == np.bool_ else None)
            if member is None:
                raise ValueError(f"NTNDArray cannot carry pixels of type {flat.dtype}")
            fields.update(value=(member, flat), compressedSize=int(flat.nbytes), uncompressedSize=int(flat.nbytes),
                          codec={"name": ""})
        return Value(self._type, fields)

    def _post(self, value) -> None:
        if self._server is None:
            raise RuntimeError("the server is not started")
        self._pv.post(value)

    def send(self, frames: Frames) -> None:
        for i in range(len(frames)):
            attributes = []
            for key, values, cast in ((self.keys.delay, frames.delay, float), (self.keys.pumped, frames.pumped, int),
                                      (self.keys.timetool, frames.timetool, float)):
                if key is not None:
                    attributes.append({"name": key, "value": cast(values[i])})
            uid = int(frames.ids[i])
            h, w = frames.data.shape[1:]
            self._post(self._value(uid, np.ascontiguousarray(frames.data[i]).reshape(-1), (w, h),
                                   float(frames.timestamp[i]), attributes))
            self._last_id = uid
            self._shape = frames.data.shape[1:]

    def send_malformed(self, kind: str) -> None:
        uid = self._last_id + 1
        if kind == "garbage":
            junk = np.random.default_rng(uid & 0xFFFF).integers(0, 2, 13).astype(np.bool_)
            value = self._value(uid, junk, (5, 7, 2), time.time(), [], encode=False)
        elif kind == "truncated":
            h, w = self._shape
            value = self._value(uid, np.zeros(h * w // 2, np.uint16), (w, h), time.time(), [], encode=False)
        else:
            raise ValueError(f"kind must be 'garbage' or 'truncated', got {kind!r}")
        self._post(value)
        self._last_id = uid

    def disconnect(self, seconds: float) -> None:
        """Stop the server (clients see the channel disconnect), wait, and serve again on the same ports."""
        if self._server is None:
            raise RuntimeError("the server is not started")
        self._server.stop()
        self._server = None
        time.sleep(max(float(seconds), 0.0))
        self._serve(self._bound, _p4p()[1])

    def end(self) -> None:
        """NTNDArray has no end of stream: nothing to send."""

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()
        if self._pv is not None and self._opened:
            self._pv.close()
            self._opened = False
