"""Detector frames in, radial profiles out: the file formats of ``xstructure integrate``.

Reading (:func:`read_frames`) — every file becomes a sequence of 2D frames (H, W):

========================  =====================================================================================
``.h5 .hdf5 .nxs`` ...    HDF5 via h5py: the dataset named by ``dataset`` (e.g. ``/entry/data/data``), else the
                          NeXus default plot's signal, else the first 3D, else the first 2D numeric dataset (in
                          h5py's visiting order); a 3D dataset is a stack of frames, read one frame at a time
``.npy``                  a 2D frame or a 3D stack (memory-mapped, never unpickled)
``.npz``                  the archive's first array
anything else             fabio (TIFF, EDF, CBF, MarCCD, ...); a multi-frame file yields all its frames
========================  =====================================================================================

A missing, unreadable or corrupt file (random bytes, truncated data), data of the wrong dimensionality or
non-numeric data raise ``ValueError`` naming the file and the problem.

Writing (:func:`write_curves_h5`, or :class:`CurvesWriter` frame batch by frame batch) — one HDF5 file::

    /                  attrs: NX_class="NXdata", signal="intensity", axes=[".", "radial"]   (plots in silx view)
                              dist, poni1, poni2, rot1, rot2, rot3 (m, rad), pixel1, pixel2 (m),
                              shape (n1, n2), wavelength (m): the PONI geometry;  xstructure_version;
                              settings: the integration options as JSON
    /radial            (npt,)    bin centres; attrs units ("Å⁻¹", "nm⁻¹", "deg", "rad", "mm", "m"),
                                 long_name (e.g. "q (Å⁻¹)"), unit (xstructure's name, e.g. "q_A^-1")
    /intensity         (F, npt)  float64, mean corrected intensity per bin (empty bins: 0)
    /sigma             (F, npt)  float64, its standard error (absent with error model "none")
    /count             (F, npt)  int64, pixels that entered each bin
    /source            (F,)      str, where each frame came from: "a.tif", "run.h5::/entry/data/data[3]",
                                 "stack.npy[7]", "multi.edf[2]"

Read it back with ``h5py.File("curves.h5")["intensity"][:]``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os

import numpy as np

from .._version import __version__
from .geometry import radial_unit

__all__ = ["read_frames", "FrameFile", "write_curves_h5", "CurvesWriter", "HDF5_SUFFIXES"]

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi")


class _BadFile(ValueError):
    """A reading problem already described with the file's name."""


class FrameFile:
    """The frames of one image file, read lazily.

    ``len(f)`` frames of shape ``f.frame_shape``; ``f[k]`` reads frame k as a numpy (n1, n2) array, iterating
    yields them in order, and ``f.source(k)`` says where frame k came from. Use it as a context manager (or call
    :meth:`close`) to release the file. Made by :func:`read_frames`; not meant to be constructed directly.

    Parameters
    ----------
    path : str
        The file.
    n : int
        Number of frames.
    frame_shape : tuple of int
        (n1, n2) pixels.
    dtype : numpy.dtype
        The stored pixel type.
    get : callable
        ``get(k)`` reads frame k.
    label : callable
        ``label(k)`` describes frame k's origin.
    stack : bool
        Whether the file holds a stack (3D data) rather than one frame.
    close : callable or None, optional
        Releases the file.
    """

    def __init__(self, path, n, frame_shape, dtype, get, label, stack, close=None):
        self.path = path
        self._n = int(n)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.dtype = np.dtype(dtype)
        self._get = get
        self._label = label
        self._stack = stack
        self._close = close

    def __len__(self):
        return self._n

    def __getitem__(self, k: int) -> np.ndarray:
        if not -self._n <= k < self._n:
            raise IndexError(f"{self.path}: frame {k} out of range (the file holds {self._n})")
        k %= self._n
        try:
            frame = np.asarray(self._get(k))
        except _BadFile:
            raise
        except Exception as e:  # noqa: BLE001 - h5py, fabio and numpy fail in many ways; all mean "unreadable"
            raise _BadFile(f"{self.path}: cannot read frame {k}: {_reason(e)}") from None
        if frame.shape != self.frame_shape:
            raise _BadFile(f"{self.path}: frame {k} has shape {frame.shape}, frame 0 {self.frame_shape}")
        return frame

    def __iter__(self):
        for k in range(self._n):
            yield self[k]

    def source(self, k: int) -> str:
        """``"file"`` for a single frame, else ``"file[k]"`` (HDF5: ``"file::/path[k]"``)."""
        return f"{self._label}[{k}]" if self._stack else self._label

    def close(self):
        """Release the file (also done on leaving a ``with`` block)."""
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"FrameFile({self._label!r}, frames={self._n}, frame_shape={self.frame_shape}, dtype={self.dtype})"


def read_frames(path, dataset: str | None = None) -> FrameFile:
    """Open an image file as a sequence of 2D frames (see the module docstring for the formats).

    Parameters
    ----------
    path : str or os.PathLike
        The file: TIFF, EDF or CBF (through fabio), HDF5, ``.npy`` or ``.npz``.
    dataset : str or None, optional
        HDF5 only: the dataset's path inside the file (e.g. ``"/entry/data/data"``); default: the NeXus default
        signal, else the first 3D, else the first 2D numeric dataset. Ignored for other formats.

    Returns
    -------
    FrameFile
        ``len()`` frames, each a numpy (n1, n2) array read on access.

    Raises
    ------
    ValueError
        The file is missing, unreadable or corrupt, holds no frames, or its data are not 2D/3D numbers.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise _BadFile(f"{path}: no such file")
    if os.path.isdir(path):
        raise _BadFile(f"{path}: is a directory, not an image file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in HDF5_SUFFIXES:
        opener = _open_hdf5
    elif suffix in (".npy", ".npz"):
        opener = _open_numpy
    else:
        opener = _open_fabio
    try:
        ff = opener(path, dataset)
    except _BadFile:
        raise
    except Exception as e:  # noqa: BLE001 - see FrameFile.__getitem__
        raise _BadFile(f"{path}: cannot read: {_reason(e)}") from None
    if len(ff) == 0:
        ff.close()
        raise _BadFile(f"{path}: holds no frames")
    return ff


def _reason(e: Exception) -> str:
    text = str(e).strip() or type(e).__name__
    return text if len(text) < 300 else text[:300] + " ..."


def _check_array(path, what, shape, dtype):
    """Raise unless (shape, dtype) is one frame (H, W) or a stack (F, H, W) of integers or reals."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise _BadFile(f"{path}: {what} holds {dtype} data, not numbers (integers or reals)")
    if len(shape) not in (2, 3):
        raise _BadFile(f"{path}: {what} has shape {tuple(shape)}; expected a frame (H, W) or a stack (F, H, W)")
    if min(shape[-2:]) < 1:
        raise _BadFile(f"{path}: {what} has shape {tuple(shape)}: frames without pixels")


def _open_numpy(path, dataset):
    if path.lower().endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            if not z.files:
                raise _BadFile(f"{path}: the archive holds no array")
            name = z.files[0]
            a = z[name]
        label = f"{path}::{name}"
    else:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
        label = path
    _check_array(path, "the array", a.shape, a.dtype)
    if a.ndim == 2:
        return FrameFile(path, 1, a.shape, a.dtype, lambda k: a, label, stack=False)
    return FrameFile(path, a.shape[0], a.shape[1:], a.dtype, lambda k: a[k], label, stack=True)


def _open_hdf5(path, dataset):
    import h5py  # loaded on use: keeps `import xstructure` fast

    f = h5py.File(path, "r")
    try:
        if dataset is not None:
            name = dataset if dataset.startswith("/") else "/" + dataset
            obj = f.get(name)
            if obj is None:
                raise _BadFile(f"{path}: no dataset {name}")
            if not isinstance(obj, h5py.Dataset):
                raise _BadFile(f"{path}: {name} is a group, not a dataset")
        else:
            obj = _first_frames_dataset(f)
            if obj is None:
                raise _BadFile(f"{path}: no 2D or 3D numeric dataset found (name one with --dataset)")
            name = obj.name
        _check_array(path, f"dataset {name}", obj.shape, obj.dtype)
    except BaseException:
        f.close()
        raise
    label = f"{path}::{name}"
    if obj.ndim == 2:
        return FrameFile(path, 1, obj.shape, obj.dtype, lambda k: obj[()], label, stack=False, close=f.close)
    return FrameFile(path, obj.shape[0], obj.shape[1:], obj.dtype, lambda k: obj[k], label, stack=True,
                     close=f.close)


def _first_frames_dataset(f):
    """The NeXus default plot's signal if it is 2D/3D numbers, else the first 3D, else the first 2D numeric
    dataset (external links followed, as in an Eiger master file)."""
    import h5py  # loaded on use: keeps `import xstructure` fast

    def frames_like(obj):
        return (isinstance(obj, h5py.Dataset) and obj.ndim in (2, 3) and obj.dtype.kind in "biuf"
                and min(obj.shape[-2:]) > 1)

    try:  # NeXus: /@default -> entry, entry/@default -> NXdata, NXdata/@signal -> dataset
        entry = f[_text(f.attrs["default"])]
        nxdata = entry[_text(entry.attrs["default"])]
        obj = nxdata[_text(nxdata.attrs["signal"])]
        if frames_like(obj):
            return obj
    except Exception:  # noqa: BLE001 - no (or a broken) default plot: search instead
        pass
    found = {2: None, 3: None}

    def visit(name, *_):
        try:
            obj = f.get(name)
        except Exception:  # noqa: BLE001 - a dangling external link
            return None
        if frames_like(obj) and found[obj.ndim] is None:
            found[obj.ndim] = obj
        return True if found[3] is not None else None  # a stack ends the search

    (f.visititems_links if hasattr(f, "visititems_links") else f.visititems)(visit)
    return found[3] if found[3] is not None else found[2]


def _text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _fabio_errors(path):
    """fabio logs (rather than raises) some failures, e.g. a truncated EDF comes back zero-padded: turn its
    ERROR log records into a ValueError, and keep its log messages off the terminal."""
    logger = logging.getLogger("fabio")
    handler, propagate = _Collect(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    except _BadFile:
        if handler.messages:  # fabio's own account says more
            raise _BadFile(f"{path}: cannot read: {handler.messages[-1]}") from None
        raise
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    if handler.messages:
        raise _BadFile(f"{path}: cannot read: {handler.messages[-1]}")


def _fabio_data(path, image, k):
    data = image.data
    if data is None:
        raise _BadFile(f"{path}: cannot read frame {k}: fabio found no image data")
    return np.asarray(data)


def _open_fabio(path, dataset):
    try:
        import fabio  # loaded on use: keeps `import xstructure` fast
    except ImportError:
        raise _BadFile(f"{path}: reading this format needs fabio (pip install fabio)") from None
    with _fabio_errors(path):
        image = fabio.open(path)
        first = _fabio_data(path, image, 0)
    n = int(getattr(image, "nframes", 1) or 1)
    _check_array(path, "the image", first.shape, first.dtype)
    if first.ndim == 3:  # a reader that hands the whole stack at once
        return FrameFile(path, first.shape[0], first.shape[1:], first.dtype, lambda k: first[k], path, stack=True,
                         close=image.close)
    if n == 1:
        return FrameFile(path, 1, first.shape, first.dtype, lambda k: first, path, stack=False, close=image.close)

    def get(k):
        if k == 0:
            return first
        with _fabio_errors(path):
            frame = _fabio_data(path, image.getframe(k), k)
        _check_array(path, f"frame {k}", frame.shape, frame.dtype)
        return frame

    return FrameFile(path, n, first.shape, first.dtype, get, path, stack=True, close=image.close)


# ---------------------------------------------------------------------------------------------- writing
class CurvesWriter:
    """Append radial profiles to an HDF5 file (layout in the module docstring) batch by batch.

    :meth:`append` adds rows, :meth:`truncate` drops rows from the end (to take back a file that failed half
    way), :meth:`close` finishes. ``len(writer)`` is the number of rows written.

    Parameters
    ----------
    path : str
        The output file (overwritten).
    radial : array_like
        (npt,) bin centres in ``unit``.
    unit : str
        xstructure's radial unit name (``"q_A^-1"``, ``"2th_deg"``, ...).
    geometry : Geometry
        The detector the frames were integrated on.
    with_sigma : bool, optional
        Write a ``sigma`` dataset.
    settings : dict or None, optional
        Integration options, stored as a JSON attribute.
    """

    def __init__(self, path, radial, unit, geometry, with_sigma=True, settings=None):
        import h5py  # loaded on use: keeps `import xstructure` fast

        radial = np.asarray(radial, dtype=np.float64)
        if radial.ndim != 1 or radial.size < 1:
            raise ValueError(f"radial must be a 1D array of bin centres, got shape {radial.shape}")
        u = radial_unit(unit)
        npt = radial.size
        self.path = os.fspath(path)
        try:
            self._f = h5py.File(self.path, "w")
        except OSError as e:
            raise ValueError(f"cannot write {self.path}: {_reason(e)}") from None
        f = self._f
        f.attrs["NX_class"] = "NXdata"
        f.attrs["signal"] = "intensity"
        f.attrs["axes"] = np.array([".", "radial"], dtype=h5py.string_dtype())
        f.attrs["radial_indices"] = 1
        f.attrs["xstructure_version"] = __version__
        for name in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "pixel1", "pixel2", "wavelength"):
            f.attrs[name] = float(getattr(geometry, name))
        f.attrs["shape"] = np.asarray(geometry.shape, dtype=np.int64)
        if settings is not None:
            f.attrs["settings"] = json.dumps(settings)
        r = f.create_dataset("radial", data=radial)
        r.attrs["units"] = u.symbol
        r.attrs["long_name"] = u.label
        r.attrs["unit"] = u.name
        rows = max(1, 16384 // npt)
        kw = dict(shape=(0, npt), maxshape=(None, npt), chunks=(rows, npt))
        self._sets = {"intensity": f.create_dataset("intensity", dtype=np.float64, **kw)}
        self._sets["intensity"].attrs["long_name"] = "intensity (a.u.)"
        if with_sigma:
            self._sets["sigma"] = f.create_dataset("sigma", dtype=np.float64, **kw)
            self._sets["sigma"].attrs["long_name"] = "standard error of the intensity (a.u.)"
            self._sets["intensity"].attrs["uncertainties"] = "sigma"
        self._sets["count"] = f.create_dataset("count", dtype=np.int64, **kw)
        self._sets["count"].attrs["long_name"] = "pixels in the bin"
        self._sets["source"] = f.create_dataset("source", shape=(0,), maxshape=(None,), chunks=(1024,),
                                                dtype=h5py.string_dtype())
        self._sets["source"].attrs["long_name"] = "file (and dataset, frame) of each profile"
        self._n = 0
        self.npt = npt

    def __len__(self):
        return self._n

    def append(self, intensity, sigma, count, sources):
        """Add F rows of profiles.

        Parameters
        ----------
        intensity, sigma, count : array_like
            (F, npt) or (npt,) intensities, their standard errors (ignored without a ``sigma`` dataset) and pixels
            per bin.
        sources : list of str
            F labels naming where each frame came from.
        """
        rows = {"intensity": np.atleast_2d(np.asarray(intensity, dtype=np.float64)),
                "count": np.atleast_2d(np.asarray(count)).astype(np.int64)}
        if "sigma" in self._sets:
            if sigma is None:
                raise ValueError("this file was opened with a sigma dataset: give sigma")
            rows["sigma"] = np.atleast_2d(np.asarray(sigma, dtype=np.float64))
        sources = [str(s) for s in ([sources] if isinstance(sources, str) else sources)]
        F = rows["intensity"].shape[0]
        for name, a in rows.items():
            if a.shape != (F, self.npt):
                raise ValueError(f"{name} has shape {a.shape}; expected ({F}, {self.npt})")
        if len(sources) != F:
            raise ValueError(f"{len(sources)} sources for {F} profiles")
        rows["source"] = np.array(sources, dtype=object)
        for name, a in rows.items():
            d = self._sets[name]
            d.resize(self._n + F, axis=0)
            d[self._n:] = a
        self._n += F

    def truncate(self, n: int):
        """Keep the first ``n`` rows."""
        n = max(0, min(int(n), self._n))
        for d in self._sets.values():
            d.resize(n, axis=0)
        self._n = n

    def close(self):
        """Finish the file (also done on leaving a ``with`` block)."""
        if self._f is not None:
            self._f.close()
            self._f = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_curves_h5(path, radial, intensity, sigma, count, unit, sources, geometry, settings=None) -> None:
    """Write radial profiles to one HDF5 file (layout in the module docstring).

    Parameters
    ----------
    path : str
        The output file (overwritten).
    radial : array_like
        (npt,) bin centres in ``unit``.
    intensity : array_like
        (F, npt) or (npt,) profiles.
    sigma : array_like or None
        Their standard errors, same shape, or None (no ``sigma`` dataset).
    count : array_like
        Pixels per bin, same shape.
    unit : str
        xstructure's radial unit name (``"q_A^-1"``, ``"q_nm^-1"``, ``"2th_deg"``, ``"r_mm"``, ...).
    sources : list of str
        F labels naming where each frame came from.
    geometry : Geometry
        The detector the frames were integrated on.
    settings : dict or None, optional
        Integration options, stored as JSON in the ``settings`` attribute.
    """
    with CurvesWriter(path, radial, unit, geometry, with_sigma=sigma is not None, settings=settings) as w:
        w.append(intensity, sigma, count, sources)
