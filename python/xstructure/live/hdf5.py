"""HDF5 files as a stream: a file another process is still writing (SWMR), or a folder of files, for replay.

A writer appends frames to a file in HDF5's single-writer/multiple-reader mode (The HDF Group, "Introduction to
Single-Writer/Multiple-Reader (SWMR)", https://support.hdfgroup.org/documentation/hdf5/latest/_s_w_m_r.html, and
the h5py guide, https://docs.h5py.org/en/stable/swmr.html): the file is created with ``libver="latest"``, its
datasets are made resizable along their first axis before SWMR mode starts (no object may be created after), and
each batch of rows is appended and flushed.  A reader opens the file with ``swmr=True`` and sees the new rows
after refreshing each dataset.

Layout (paths are :class:`~xstructure.live.frames.Keys`; a relative key is a sibling of the image dataset):

* ``Keys.image`` (default ``/entry/data/data``): the frames, (N, H, W), chunked (1, H, W);
* ``Keys.delay``, ``Keys.pumped``, ``Keys.timetool`` (default ``delay``, ``laser_on``, ``timetool``, i.e.
  ``/entry/data/delay`` ...): one value per frame; a dataset that is not in the file gives NaN / -1;
* ``frame_id`` and ``timestamp`` (siblings of the image, optional): the frames' ids and time stamps (s since the
  epoch).  Without ``frame_id`` the ids are the row numbers (in a folder, counted on across the files);
* ``/entry/complete``: the end marker.  The writer creates it empty (shape (0,), resizable to (1,)) and, when
  the run is over, resizes it to one element (the number of rows written) and flushes.  A dataset, not an
  attribute: a SWMR reader sees a dataset's new shape after ``refresh()``, but not an attribute changed after
  it opened the file (checked with HDF5 2.0).

A row is handed on once every dataset of its frame has it (metadata may lag the image).  The stream ends
(:class:`~xstructure.live.frames.EndOfStream`) when the file is complete and every row has been read; rows
whose metadata never came then are rejected (``"truncated"``).  A file without the marker (written by
another program) is complete once no writer has it open: the superblock's file-consistency flags (HDF5 File
Format Specification, superblock version 2 and 3) say whether a writer, in SWMR mode or not, holds it.

A reader holds the file only while a SWMR writer has it (or to read a finished file): when the writer closes a
file that is not complete, the reader lets go of it and comes back once a SWMR writer has reopened it (counted
in ``stats["reconnects"]``); HDF5's file locks would otherwise keep the writer out.

A folder is read file by file, in the sorted order of the names ending in ``.h5``, ``.hdf5`` or ``.nxs``, as
they appear; each is read as above.  A file is over when it is complete, or when a later file exists and its
writer has let go of it or it has not grown for ``settle`` seconds.  The folder's stream ends when a file
named ``END`` appears (``end_name``; None: never) and every file has been read.  A file that cannot be read
(not HDF5, cut short, no image dataset, not 3-D) becomes one :class:`~xstructure.live.frames.Rejected` and
the next file is read; given as the address of a single file, it is a
:class:`~xstructure.live.frames.SourceError`.  A row that cannot be read (a chunk that does not decompress)
is rejected (``"decode"``) and the rows after it are read.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import time
import zlib

import numpy as np

from .frames import EndOfStream, Frames, Keys, Rejected, Source, SourceError
from .server import Server

__all__ = ["COMPLETE", "DEFAULT_IMAGE", "FRAME_ID", "SUFFIXES", "TIMESTAMP", "Hdf5Server", "Hdf5Source",
           "dataset_paths"]

DEFAULT_IMAGE = "/entry/data/data"
COMPLETE = "/entry/complete"
FRAME_ID = "frame_id"
TIMESTAMP = "timestamp"
SUFFIXES = (".h5", ".hdf5", ".nxs")
_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_WRITER, _SWMR_WRITER = 0x01, 0x04   # superblock v2/v3 file-consistency flags
_META = {"delay": np.float64, "pumped": np.int8, "timetool": np.float64, "frame_id": np.int64,
         "timestamp": np.float64}


def _h5py():
    try:
        import h5py
    except ImportError as e:
        raise SourceError(f"HDF5 files need h5py (pip install h5py): {e}") from None
    return h5py


def dataset_paths(keys: Keys | None) -> dict:
    """Where each dataset of a frame is.

    Parameters
    ----------
    keys : Keys or None
        The image path (None: :data:`DEFAULT_IMAGE`) and the metadata keys; a relative key is a sibling of the
        image dataset.

    Returns
    -------
    dict
        ``{"image", "delay", "pumped", "timetool", "frame_id", "timestamp"}`` -> absolute dataset path (None: not
        stored).
    """
    keys = keys if keys is not None else Keys()
    image = keys.image or DEFAULT_IMAGE
    if not image.startswith("/"):
        image = "/" + image
    group = posixpath.dirname(image)

    def where(key):
        return None if key is None else key if key.startswith("/") else posixpath.join(group, key)

    return {"image": image, "delay": where(keys.delay), "pumped": where(keys.pumped),
            "timetool": where(keys.timetool), "frame_id": where(FRAME_ID), "timestamp": where(TIMESTAMP)}


def _superblock(path: str):
    """(superblock version, file-consistency flags) of an HDF5 file with its superblock at 0; None otherwise."""
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) < 12 or head[:8] != _SIGNATURE:
        return None
    return head[8], head[11] if head[8] >= 2 else 0


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _laser(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v)
    if v.dtype.kind == "f":
        return np.where(np.isnan(v) | (v < 0), -1, v != 0).astype(np.int8)
    if v.dtype.kind in "iu":
        return np.where(v < 0, -1, v != 0).astype(np.int8)
    return (v != 0).astype(np.int8)


class _Bad(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclasses.dataclass
class _File:
    """Where the reading of one file stands."""

    path: str
    offset: int = 0            # id of row 0 when the file has no frame_id
    rows: int = 0              # rows handed on (as frames or rejected)
    handle: object = None
    swmr: bool = False         # opened while a SWMR writer had it
    ds: dict = dataclasses.field(default_factory=dict)
    marker: object = None
    await_writer: bool = False
    await_sig: tuple = ()      # (size, mtime) when the reader let go: a change means the writer came back
    pending: int = 0           # image rows without all their metadata when the writer let go
    seen: bool = False
    sig: tuple = ()
    since: float = 0.0
    growth: float = 0.0
    done: bool = False


class Hdf5Source(Source):
    """Frames from a growing HDF5 file (SWMR) or a folder of HDF5 files.

    Parameters
    ----------
    address : str
        A file (it may not exist yet; it is waited for) or an existing folder.
    keys : Keys or None
        Dataset paths (see the module's notes); None: the defaults.
    poll : float
        Seconds between looks at the file while nothing is new.
    batch : int
        The most rows one :meth:`receive` returns.
    settle : float
        Seconds a file that cannot be opened must stay unchanged before it is rejected (it may still be being
        written), and that a folder's file must stop growing before a later file takes over.
    end_name : str or None
        In a folder: the name of the file that says the folder's stream ended.
    """

    protocol = "hdf5"

    def __init__(self, address: str, keys: Keys | None = None, *, poll: float = 0.05, batch: int = 64,
                 settle: float = 2.0, end_name: str | None = "END"):
        super().__init__(os.fspath(address), keys)
        if float(poll) <= 0 or int(batch) < 1 or float(settle) < 0:
            raise ValueError(f"poll must be > 0, batch >= 1 and settle >= 0; got {poll}, {batch}, {settle}")
        self.poll, self.batch, self.settle, self.end_name = float(poll), int(batch), float(settle), end_name
        self.paths = dataset_paths(keys)
        self.folder: bool | None = None
        self._cur: _File | None = None
        self._seen: set = set()
        self._next_id = 0
        self._moved = False
        self._open = False
        self.stats.update({"files": 0, "rows": 0})

    # -----------------------------------------------------------------------------------------------------------
    def open(self) -> None:
        if self._open:
            return
        _h5py()
        path = self.address
        if os.path.isdir(path):
            self.folder = True
        elif os.path.isfile(path) or path.lower().endswith(SUFFIXES):
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise SourceError(f"cannot read {path}: the folder {parent} does not exist")
            self.folder = False
            self._cur = _File(path)
        else:
            raise SourceError(f"cannot read {path}: no such folder, and not a file ending in {', '.join(SUFFIXES)}")
        self._open = True

    def close(self) -> None:
        if self._cur is not None:
            self._drop(self._cur)
        self._open = False

    def receive(self, timeout: float) -> list:
        if not self._open:
            raise SourceError(f"cannot receive from {self.address}: the source is not open")
        deadline = time.monotonic() + max(float(timeout), 0.0)
        while True:
            self._moved = False
            out = self._step()
            if out:
                self.stats["messages"] += 1
                return out
            if self._moved:
                continue   # a file is over: on to the next one at once
            left = deadline - time.monotonic()
            if left <= 0:
                return []
            time.sleep(min(self.poll, left))

    # -----------------------------------------------------------------------------------------------------------
    def _step(self) -> list:
        if not self.folder:
            r = self._cur
            if r.done:
                raise EndOfStream(f"{r.path} is complete")
            return self._advance(r)
        if self._cur is None or self._cur.done:
            name = self._next_name()
            if name is None:
                if self.end_name and os.path.exists(os.path.join(self.address, self.end_name)):
                    raise EndOfStream(f"{self.end_name} in {self.address}")
                return []
            self._seen.add(name)
            self._cur = _File(os.path.join(self.address, name), offset=self._next_id)
        return self._advance(self._cur)

    def _names(self) -> list:
        try:
            entries = os.listdir(self.address)
        except OSError as e:
            raise SourceError(f"cannot read the folder {self.address}: {_one_line(e)}") from None
        return sorted(n for n in entries if n.lower().endswith(SUFFIXES) and not n.startswith(".")
                      and os.path.isfile(os.path.join(self.address, n)))

    def _next_name(self):
        return next((n for n in self._names() if n not in self._seen), None)

    def _drop(self, r: _File) -> None:
        h, r.handle, r.ds, r.marker = r.handle, None, {}, None
        if h is not None:
            h.close()

    def _finish(self, r: _File, out: list, leftover: int = 0) -> list:
        if leftover > 0:
            out = [*out, Rejected("truncated", leftover, f"{os.path.basename(r.path)}: {leftover} frames without "
                                                         f"all their metadata")]
            r.rows += leftover
        self._drop(r)
        r.done = True
        self._moved = True
        self._next_id = r.offset + r.rows
        self.stats["files"] += 1
        return out

    def _bad(self, r: _File, reason: str, detail: str) -> list:
        self._drop(r)
        r.done = True
        self._moved = True
        if not self.folder:
            raise SourceError(f"cannot read {r.path}: {detail}")
        return [Rejected(reason, 1, f"{os.path.basename(r.path)}: {detail}")]

    # -----------------------------------------------------------------------------------------------------------
    def _advance(self, r: _File) -> list:
        now = time.monotonic()
        try:
            if r.handle is None:
                self._try_open(r, now)
                if r.handle is None:
                    if self.folder and r.await_writer and self._next_name() is not None \
                            and r.sig == r.await_sig and now - r.since > self.settle:
                        return self._finish(r, [], r.pending)   # its writer went on to the next file
                    return []
            if r.swmr:
                sb = _superblock(r.path)
                if sb is None or not sb[1] & _SWMR_WRITER:
                    self._drop(r)   # the writer let go: look again as a closed file
                    return []
                if r.marker is not None:
                    r.marker.refresh()
                complete = r.marker is not None and r.marker.shape[0] > 0
                for d in r.ds.values():
                    d.refresh()
            else:
                complete = r.marker is None or r.marker.shape[0] > 0
            n = r.ds["image"].shape[0]
            ready = min(d.shape[0] for d in r.ds.values())
        except _Bad as b:
            return self._bad(r, b.reason, b.detail)
        except FileNotFoundError:
            return self._bad(r, "missing", "the file vanished")
        if ready > r.rows:
            b = min(ready, r.rows + self.batch)
            out = self._read(r, r.rows, b)
            self.stats["rows"] += b - r.rows
            r.rows = b
            r.growth = now
            return out
        if complete:
            return self._finish(r, [], n - r.rows)
        if not r.swmr:   # closed by its writer before the end: wait for it without holding the file
            r.pending = n - r.rows
            r.await_writer = True
            st = os.stat(r.path)
            r.await_sig = (st.st_size, st.st_mtime_ns)
            self._drop(r)
            return []
        if self.folder and now - r.growth > self.settle and self._next_name() is not None:
            return self._finish(r, [], n - r.rows)
        return []

    def _try_open(self, r: _File, now: float) -> None:
        h5py = _h5py()
        try:
            st = os.stat(r.path)
        except FileNotFoundError:
            if r.seen:
                raise
            return
        r.seen = True
        sig = (st.st_size, st.st_mtime_ns)
        if sig != r.sig:
            r.sig, r.since = sig, now
        settled = now - r.since >= self.settle
        sb = _superblock(r.path)
        if sb is None:
            if st.st_size < 8:
                if settled:
                    raise _Bad("truncated", "empty" if st.st_size == 0 else "cut short")
                return
            if not h5py.is_hdf5(r.path):
                raise _Bad("malformed", "not an HDF5 file")
            sb = (0, 0)   # a user block before the superblock: no flags to read
        swmr_writer = bool(sb[1] & _SWMR_WRITER)
        if not swmr_writer and (sb[1] & _WRITER or (r.await_writer and sig == r.await_sig)):
            return   # being written without SWMR, or its writer is not back: wait
        try:
            h = h5py.File(r.path, "r", libver="latest", swmr=True) if swmr_writer else h5py.File(r.path, "r")
        except OSError as e:
            msg = _one_line(e)
            if isinstance(e, BlockingIOError) or "unable to lock" in msg.lower() or not settled:
                return
            raise _Bad("truncated" if "truncated" in msg else "malformed", f"{msg}") from None
        try:
            ds, marker = self._datasets(h)
        except _Bad:
            h.close()
            raise
        r.handle, r.ds, r.marker, r.swmr = h, ds, marker, swmr_writer
        if r.await_writer:
            r.await_writer = False
            self.stats["reconnects"] += 1
        r.growth = now

    def _datasets(self, h):
        h5py = _h5py()
        path = self.paths["image"]
        img = h.get(path)
        if not isinstance(img, h5py.Dataset):
            raise _Bad("missing", f"no image dataset {path}")
        if img.ndim != 3:
            raise _Bad("shape", f"{path} has shape {img.shape}, expected (frames, H, W)")
        if img.dtype.kind not in "biuf":
            raise _Bad("dtype", f"{path} holds {img.dtype}, not numbers")
        ds = {"image": img}
        for name in ("delay", "pumped", "timetool", "frame_id", "timestamp"):
            p = self.paths[name]
            d = h.get(p) if p is not None else None
            if d is None:
                continue
            if not isinstance(d, h5py.Dataset) or d.ndim != 1 or d.dtype.kind not in "biuf":
                raise _Bad("shape", f"{p} is not one number per frame")
            ds[name] = d
        marker = h.get(COMPLETE)
        return ds, marker if isinstance(marker, h5py.Dataset) else None

    def _read(self, r: _File, a: int, b: int) -> list:
        received = time.perf_counter()
        img = r.ds["image"]
        try:
            blocks = [(a, img[a:b])]
            bad = []
        except OSError:   # a chunk that does not decompress: find it, keep the others
            blocks, bad, run = [], [], []
            for i in range(a, b):
                try:
                    run.append(img[i])
                    continue
                except OSError as e:
                    bad.append((i, _one_line(e)))
                if run:
                    blocks.append((i - len(run), np.stack(run)))
                    run = []
            if run:
                blocks.append((b - len(run), np.stack(run)))
        out = []
        name = os.path.basename(r.path)
        for start, data in blocks:
            stop = start + len(data)
            meta = {k: d[start:stop] for k, d in r.ds.items() if k != "image"}
            ids = meta["frame_id"] if "frame_id" in meta else r.offset + np.arange(start, stop)
            out.append((start, Frames.make(ids, data, timestamp=meta.get("timestamp"), received=received,
                                           delay=meta.get("delay"),
                                           pumped=_laser(meta["pumped"]) if "pumped" in meta else None,
                                           timetool=meta.get("timetool"))))
        out += [(i, Rejected("decode", 1, f"{name} row {i}: {msg}")) for i, msg in bad]
        return [x for _, x in sorted(out, key=lambda t: t[0])]


class Hdf5Server(Server):
    """Writes frames into a growing HDF5 file (SWMR), or a folder of such files, the way a detector's file
    writer does.

    Parameters
    ----------
    address : str
        A file (a name ending in ``.h5``, ``.hdf5`` or ``.nxs``) or a folder (created if needed; the files are
        ``frames_00000.h5``, ``frames_00001.h5``, ...).
    keys : Keys or None
        Dataset paths (see the module's notes).
    compression : {'gzip', None}
        The image dataset's filter (deflate, level 1, with byte shuffle).  The faults of a single file need it.
    per_file : int
        In a folder: frames per file.
    end_name : str or None
        In a folder: the file :meth:`end` writes to say the stream ended.

    Notes
    -----
    The file is created at the first frame (the datasets need its shape and type); every :meth:`send` appends
    and flushes.  Faults (:meth:`send_malformed`), each standing for one frame: in a single file, a row whose
    stored chunk is not deflate data (``"garbage"``) or deflate data cut short (``"truncated"``), its metadata
    NaN / -1 and its frame_id -1; in a folder, a file that is not HDF5 (``"garbage"``) or an HDF5 file cut to
    half its length (``"truncated"``).  A frame of another shape or type than the file's starts a new file in a
    folder and is refused (ValueError) in a single file.  :meth:`disconnect` closes the file (not complete),
    waits and reopens it for appending in SWMR mode.
    """

    protocol = "hdf5"

    def __init__(self, address: str, keys: Keys | None = None, *, compression: str | None = "gzip",
                 per_file: int = 256, end_name: str | None = "END"):
        super().__init__(os.fspath(address), keys)
        if compression not in ("gzip", None):
            raise ValueError(f"compression must be 'gzip' or None, got {compression!r}")
        if int(per_file) < 1:
            raise ValueError(f"per_file must be >= 1, got {per_file}")
        self.compression, self.per_file, self.end_name = compression, int(per_file), end_name
        self.paths = dataset_paths(keys)
        self.folder = not self.address.lower().endswith(SUFFIXES)
        self._f = None
        self._path = None
        self._ds: dict = {}
        self._index = 0
        self._shape, self._dtype = (16, 16), np.dtype(np.uint16)
        self._started = False

    def start(self) -> None:
        _h5py()
        os.makedirs(self.address if self.folder else os.path.dirname(os.path.abspath(self.address)), exist_ok=True)
        self._started = True

    def _next_path(self) -> str:
        if not self.folder:
            return self.address
        path = os.path.join(self.address, f"frames_{self._index:05d}.h5")
        self._index += 1
        return path

    def _create(self, shape, dtype) -> None:
        h5py = _h5py()
        if not self._started:
            raise RuntimeError("the server is not started")
        self._path = self._next_path()
        f = h5py.File(self._path, "w", libver="latest")
        h, w = shape
        opts = {"compression": "gzip", "compression_opts": 1, "shuffle": True} if self.compression else {}
        ds = {"image": f.create_dataset(self.paths["image"], shape=(0, h, w), maxshape=(None, h, w),
                                        chunks=(1, h, w), dtype=dtype, **opts)}
        for name, kind in _META.items():
            if self.paths[name] is not None:
                ds[name] = f.create_dataset(self.paths[name], shape=(0,), maxshape=(None,), chunks=(1024,),
                                            dtype=kind)
        ds["complete"] = f.create_dataset(COMPLETE, shape=(0,), maxshape=(1,), dtype=np.int64)
        f.swmr_mode = True
        self._f, self._ds = f, ds
        self._shape, self._dtype = (h, w), np.dtype(dtype)

    def _rows(self) -> int:
        return self._ds["image"].shape[0]

    def _append_meta(self, n0: int, values: dict) -> None:
        for name, v in values.items():
            d = self._ds.get(name)
            if d is not None:
                d.resize((n0 + len(v),))
                d[n0:] = v

    def send(self, frames: Frames) -> None:
        data = np.asarray(frames.data)
        shape, dtype = data.shape[1:], data.dtype
        i = 0
        while i < len(frames):
            if self._f is not None and (shape != self._shape or dtype != self._dtype):
                if not self.folder:
                    raise ValueError(f"cannot append {shape[0]}x{shape[1]} {dtype} frames to {self._path}, which "
                                     f"holds {self._shape[0]}x{self._shape[1]} {self._dtype} frames")
                self._complete_file()
            if self._f is not None and self.folder and self._rows() >= self.per_file:
                self._complete_file()
            if self._f is None:
                self._create(shape, dtype)
            n0 = self._rows()
            k = len(frames) - i if not self.folder else min(len(frames) - i, self.per_file - n0)
            img = self._ds["image"]
            img.resize((n0 + k, *shape))
            img[n0:] = data[i:i + k]
            self._append_meta(n0, {"delay": frames.delay[i:i + k], "pumped": frames.pumped[i:i + k],
                                   "timetool": frames.timetool[i:i + k], "frame_id": frames.ids[i:i + k],
                                   "timestamp": frames.timestamp[i:i + k]})
            self._f.flush()
            i += k

    def _complete_file(self) -> None:
        if self._f is None:
            return
        marker = self._ds["complete"]
        marker.resize((1,))
        marker[0] = self._rows()
        self._f.flush()
        self._f.close()
        self._f, self._ds = None, {}

    def send_malformed(self, kind: str) -> None:
        if kind not in ("garbage", "truncated"):
            raise ValueError(f"kind must be 'garbage' or 'truncated', got {kind!r}")
        if self.folder:
            self._malformed_file(kind)
            return
        if self.compression is None:
            raise ValueError("a malformed row needs compression='gzip' (a chunk that does not decompress)")
        if self._f is None:
            self._create(self._shape, self._dtype)
        h, w = self._shape
        if kind == "garbage":
            chunk = b"not a deflate stream"
        else:
            noise = np.random.default_rng(self._rows()).integers(0, 256, h * w * self._dtype.itemsize, np.uint8)
            chunk = zlib.compress(noise.tobytes(), 1)
            chunk = chunk[:len(chunk) // 2]
        n0 = self._rows()
        img = self._ds["image"]
        img.resize((n0 + 1, h, w))
        img.id.write_direct_chunk((n0, 0, 0), chunk)
        self._append_meta(n0, {"delay": [np.nan], "pumped": [-1], "timetool": [np.nan], "frame_id": [-1],
                               "timestamp": [time.time()]})
        self._f.flush()

    def _malformed_file(self, kind: str) -> None:
        h5py = _h5py()
        self._complete_file()
        path = self._next_path()
        tmp = os.path.join(self.address, f".{os.path.basename(path)}.part")
        if kind == "garbage":
            with open(tmp, "wb") as fh:
                fh.write(b"this is not an HDF5 file\n" * 16)
        else:
            h, w = self._shape
            with h5py.File(tmp, "w", libver="latest") as f:
                f.create_dataset(self.paths["image"], data=np.zeros((1, h, w), self._dtype), chunks=(1, h, w))
                f.create_dataset(COMPLETE, data=[1])
            os.truncate(tmp, os.path.getsize(tmp) // 2)
        os.replace(tmp, path)

    def disconnect(self, seconds: float) -> None:
        """Close the file (not complete), wait, and reopen it for appending in SWMR mode (retrying while a
        reader still holds it, up to 10 s)."""
        h5py = _h5py()
        if self._f is None:
            time.sleep(max(float(seconds), 0.0))
            return
        self._f.close()
        self._f = None
        time.sleep(max(float(seconds), 0.0))
        deadline = time.monotonic() + 10.0
        while True:
            try:
                f = h5py.File(self._path, "a", libver="latest")
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cannot reopen {self._path}: another process holds it") from None
                time.sleep(0.02)
        f.swmr_mode = True
        self._f = f
        self._ds = {name: f[p] for name, p in self.paths.items() if p is not None and p in f}
        self._ds["complete"] = f[COMPLETE]

    def end(self) -> None:
        """Mark the file complete and close it; in a folder, also write the ``END`` file."""
        if self._f is None and not self.folder and not os.path.exists(self.address):
            self._create(self._shape, self._dtype)   # no frames: an empty, complete file
        self._complete_file()
        if self.folder and self.end_name:
            with open(os.path.join(self.address, self.end_name), "wb"):
                pass

    def close(self) -> None:
        f, self._f, self._ds = self._f, None, {}
        if f is not None:
            f.close()
