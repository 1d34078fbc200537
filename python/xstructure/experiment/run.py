"""A pump-probe run and its reduction: shots → ΔI/I per delay bin with bootstrap errors.

:class:`PumpProbe` holds one run: a radial profile per shot (S, Q), the nominal delay, whether the pump laser
fired, and optionally a per-shot timing correction (a timetool) and a per-shot intensity monitor.  The profiles
may be a numpy array or any lazy sliceable (S, Q) array (an h5py or zarr dataset): they are read in chunks of
shots, so a run larger than memory reduces in bounded memory.

:meth:`PumpProbe.reduce` turns it into a :class:`Reduced`: per delay bin b,

    ΔI/I (q) = ⟨I_on⟩_b (q) / ⟨I_off⟩_b (q) − 1

over the shots that pass the checks, with shots normalised one by one (XFEL and UED shot intensities fluctuate
by tens of per cent), a robust median/MAD outlier test, a laser-off reference taken from the shots nearest in
acquisition order (or from all laser-off shots), and a bootstrap standard error.  The user guide page
(``experiment``) gives the definitions with their sources.
"""

from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .. import _backend

__all__ = ["MAD_SCALE", "REASONS", "PumpProbe", "Reduced"]

#: Why a shot was rejected, in the order the checks run (the keys of :attr:`Reduced.rejected`).
REASONS = ("timetool", "nan", "normalization", "outlier", "no_reference")
_TIMETOOL, _NAN, _NORM, _OUTLIER, _NOREF = 1, 2, 3, 4, 5

#: σ = MAD_SCALE · MAD for normally distributed values (1 / Φ⁻¹(3/4)).
MAD_SCALE = 1.482602218505602

_SUB = 4096       # shots per unit of work (one call of the compiled pass)
_OWN_SCALE = 10   # groups with this many sampled shots get their own MAD; smaller ones the pooled MAD


def _open_hdf5(path, *, q, signals, delay, pumped, timetool, weights):
    """Open one pump-probe HDF5 file: (the file, {name: array, or the signals dataset, or None})."""
    import h5py  # loaded on use: keeps `import xstructure` fast

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"pump-probe file not found: {path!r}")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"cannot read {path!r} as HDF5 ({err})") from None
    try:
        def get(name, required=True):
            if name is None:
                return None
            obj = f.get(name)
            if obj is None or not isinstance(obj, h5py.Dataset):
                if required:
                    raise ValueError(f"{path}: no dataset {name!r} (the file has {sorted(f.keys())}); "
                                     "name it with from_hdf5(..., signals=..., delay=..., ...)")
                return None
            return obj

        tt = get(timetool, required=timetool != "timetool")
        w = get(weights, required=weights != "weights")
        parts = {"q": get(q)[()], "signals": get(signals), "delay": get(delay)[()], "pumped": get(pumped)[()],
                 "timetool": None if tt is None else tt[()], "weights": None if w is None else w[()]}
    except BaseException:
        f.close()
        raise
    return f, parts


class _Files:
    """The open files of a run made of several."""

    def __init__(self, files):
        self.files = files

    def close(self):
        for f in self.files:
            f.close()


@dataclass
class Reduced:
    """The reduction of a pump-probe run: ΔI/I per delay bin.

    Parameters
    ----------
    delay : numpy.ndarray
        (T,) the mean corrected delay (nominal + timetool) of the laser-on shots in each bin, fs.  This is the
        bin's centre of mass, not the midpoint of its edges (see ``edges``).
    q : numpy.ndarray
        (Q,) momentum transfer, Å⁻¹.
    diff : numpy.ndarray
        (T, Q) ΔI/I = ⟨I_on⟩ / ⟨I_off⟩ − 1 per bin (dimensionless).
    sigma : numpy.ndarray or None
        (T, Q) bootstrap standard error of ``diff`` (``inf`` for a bin with a single laser-on shot); None when
        the reduction ran without bootstrap.
    counts : numpy.ndarray
        (T,) int64 laser-on shots used per bin.
    off : numpy.ndarray
        (T, Q) the laser-off reference of each bin, ⟨I_off⟩_b, in normalised units (identical rows for
        ``reference="all"``).
    edges : numpy.ndarray
        (T, 2) the lower and upper delay edge of each bin, fs.
    rejected : dict
        ``{"total": n, "timetool": n, "nan": n, "normalization": n, "outlier": n, "no_reference": n}``: shots
        rejected, in all and per reason (see :data:`REASONS`).
    excluded : dict
        ``{"outside_bins": n, "empty_bins": n}``: laser-on shots whose delay lies outside explicit bin edges,
        and bins dropped because no laser-on shot was left in them.
    n_off : int
        Laser-off shots used.
    dropped : list
        ``(lower, upper)`` edges of the dropped empty bins, fs.
    settings : dict
        The arguments of the reduction (normalisation, rejection, reference, bootstrap, seed, ...).
    """

    delay: np.ndarray
    q: np.ndarray
    diff: np.ndarray
    sigma: np.ndarray | None
    counts: np.ndarray
    off: np.ndarray
    edges: np.ndarray
    rejected: dict
    excluded: dict
    n_off: int
    dropped: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def average(self, t_min: float = -np.inf, t_max: float = np.inf):
        """The mean ΔI/I of the bins whose delay lies in [t_min, t_max].

        Parameters
        ----------
        t_min, t_max : float, optional
            Delay range, fs (bin centres, :attr:`delay`).

        Returns
        -------
        diff : numpy.ndarray
            (Q,) the mean, weighted by 1/σ² per q point (by the shot counts when there is no σ).
        sigma : numpy.ndarray or None
            (Q,) its standard error (None without σ).

        Raises
        ------
        ValueError
            No bin in the range.
        """
        sel = (self.delay >= t_min) & (self.delay <= t_max)
        if not np.any(sel):
            raise ValueError(f"no delay bin between {t_min:g} and {t_max:g} fs "
                             f"(bins: {self.delay.min():g} .. {self.delay.max():g} fs)")
        if self.sigma is None:
            w = self.counts[sel].astype(np.float64)
            return (w @ self.diff[sel]) / w.sum(), None
        s = self.sigma[sel]
        w = np.where(np.isfinite(s) & (s > 0), 1.0 / np.where(s > 0, s, 1.0) ** 2, 0.0)
        tot = w.sum(axis=0)
        if np.any(tot == 0):
            raise ValueError("the selected bins have no finite σ at some q (bins of a single shot)")
        return (w * self.diff[sel]).sum(axis=0) / tot, 1.0 / np.sqrt(tot)


# ---- input checks ------------------------------------------------------------------------------------------------

def _vector(x, name: str, n: int, kind: str = "float") -> np.ndarray:
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as err:   # ragged lists and the like
        raise ValueError(f"{name} must be a 1D array of {n} values: {err}") from None
    if a.ndim != 1:
        raise ValueError(f"{name} must have shape (S,) = ({n},), got shape {a.shape}")
    if a.shape[0] != n:
        raise ValueError(f"{name} has {a.shape[0]} entries but signals has {n} shots (mismatched lengths)")
    if kind == "bool":
        if a.dtype == bool:
            return a.copy()
        if a.dtype.kind in "iuf" and np.all((a == 0) | (a == 1)):
            return a.astype(bool)
        raise ValueError(f"{name} must be booleans (True: laser on), got dtype {a.dtype}")
    if a.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numbers, got dtype {a.dtype}")
    return a.astype(np.float64)


def check_grid(q) -> np.ndarray:
    """A radial grid as float64: 1D, finite, ≥ 0 and strictly increasing.

    Parameters
    ----------
    q : array_like
        (Q,) momentum transfer in Å⁻¹.

    Returns
    -------
    numpy.ndarray
        (Q,) float64 copy.

    Raises
    ------
    ValueError
        Not 1D, empty, non-finite, negative or not strictly increasing.
    """
    try:
        q = np.array(q, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"q must be a 1D array of momentum transfers in Å⁻¹, got {type(q).__name__}") from None
    if q.ndim != 1 or q.size == 0:
        raise ValueError(f"q must be a non-empty 1D array (Q,), got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError("q contains NaN or inf")
    if np.any(q < 0):
        raise ValueError(f"q must be >= 0 Å⁻¹, got min {q.min():g}")
    if q.size > 1 and not np.all(np.diff(q) > 0):
        k = int(np.flatnonzero(np.diff(q) <= 0)[0])
        raise ValueError(f"q must be strictly increasing, but q[{k}] = {q[k]:g} >= q[{k + 1}] = {q[k + 1]:g}")
    return q


def take_rows(signals, idx) -> np.ndarray:
    """Rows ``idx`` (sorted, unique) of a numpy, h5py, zarr or other sliceable (S, Q) array, as float64.

    Parameters
    ----------
    signals : array_like
        (S, Q) array: numpy, an h5py or zarr dataset, or anything that slices by rows.
    idx : array_like
        (K,) increasing row indices.

    Returns
    -------
    numpy.ndarray
        (K, Q) float64.
    """
    idx = np.asarray(idx, dtype=np.int64)
    Q = int(signals.shape[1])
    if idx.size == 0:
        return np.empty((0, Q))
    if isinstance(signals, np.ndarray):
        return np.asarray(signals[idx], dtype=np.float64)
    oindex = getattr(signals, "oindex", None)   # zarr: orthogonal selection
    if oindex is not None:
        return np.asarray(oindex[idx, :], dtype=np.float64)
    try:                                        # h5py takes an increasing index list
        out = np.asarray(signals[idx], dtype=np.float64)
    except (TypeError, ValueError, IndexError, KeyError):
        out = None                              # objects without fancy indexing: row by row
    if out is not None and out.shape == (idx.size, Q):
        return out
    return np.stack([np.asarray(signals[int(i)], dtype=np.float64) for i in idx])


def normalize_spec(normalize, q: np.ndarray, has_weights: bool):
    """("window", lo, hi) slice, "weights" or None."""
    if normalize is None:
        return None
    if isinstance(normalize, str):
        if normalize == "window":
            return ("window", 0, q.size)
        if normalize == "weights":
            if not has_weights:
                raise ValueError("normalize='weights' needs per-shot weights (PumpProbe(..., weights=...))")
            return "weights"
        raise ValueError(f"normalize must be ('window', qmin, qmax), 'window', 'weights' or None, got {normalize!r}")
    if isinstance(normalize, (tuple, list)) and len(normalize) == 3 and normalize[0] == "window":
        lo = -np.inf if normalize[1] is None else float(normalize[1])
        hi = np.inf if normalize[2] is None else float(normalize[2])
        if not lo < hi:
            raise ValueError(f"normalisation window must have qmin < qmax, got ({lo:g}, {hi:g})")
        i0, i1 = int(np.searchsorted(q, lo, "left")), int(np.searchsorted(q, hi, "right"))
        if i1 <= i0:
            raise ValueError(f"normalisation window ({lo:g}, {hi:g}) Å⁻¹ holds no q point "
                             f"(q: {q[0]:g} .. {q[-1]:g} Å⁻¹)")
        return ("window", i0, i1)
    raise ValueError(f"normalize must be ('window', qmin, qmax), 'window', 'weights' or None, got {normalize!r}")


def _int(x, name: str, lo: int) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {x!r}")
    return int(x)


# ---- the run -----------------------------------------------------------------------------------------------------

class PumpProbe:
    """One pump-probe run: a radial profile per shot with its delay and laser state.

    Parameters
    ----------
    q : array_like
        (Q,) momentum transfer of the profiles, Å⁻¹ (finite, ≥ 0, strictly increasing).
    signals : array_like
        (S, Q) one radial profile per shot, in acquisition order: a numpy array or any lazy sliceable array (an
        h5py or zarr dataset), which is read ``chunk`` shots at a time and never whole.
    delay : array_like
        (S,) nominal pump-probe delay of each shot, fs (positive: probe after pump).  Must be finite for
        laser-on shots; laser-off shots' delays are not used.
    pumped : array_like
        (S,) bool, True where the pump laser fired (laser on), False for the reference (laser off) shots.
    timetool : array_like or None, optional
        (S,) per-shot timing correction, fs, added to ``delay`` (corrected delay = delay + timetool).  A
        non-finite value rejects that laser-on shot (reason ``"timetool"``).
    weights : array_like or None, optional
        (S,) per-shot normalisation (an incident-intensity monitor), used with ``reduce(normalize="weights")``:
        each shot is divided by its weight; a non-finite or non-positive weight rejects the shot
        (``"normalization"``).

    Raises
    ------
    ValueError
        One message per problem: q not 1D / finite / ≥ 0 / increasing; signals not (S, Q) with Q = len(q) or not
        numeric; mismatched lengths of delay, pumped, timetool or weights; no laser-off or no laser-on shot;
        non-finite delays of laser-on shots.

    Examples
    --------
    >>> run = PumpProbe(q, signals, delay, pumped, timetool=tt)          # doctest: +SKIP
    >>> red = run.reduce(bins=60, normalize=("window", 1.0, 10.0), reject=5.0)   # doctest: +SKIP
    >>> red.diff.shape                                                            # doctest: +SKIP
    (60, 500)
    """

    def __init__(self, q, signals, delay, pumped, *, timetool=None, weights=None):
        self.q = check_grid(q)
        if isinstance(signals, (list, tuple)):
            signals = np.asarray(signals, dtype=np.float64)
        shape = getattr(signals, "shape", None)
        if shape is None or not hasattr(signals, "__getitem__") or len(shape) != 2:
            raise ValueError("signals must be a 2D (S, Q) array (numpy, h5py or zarr dataset), one profile per "
                             f"shot; got {type(signals).__name__} with shape {shape}")
        S, Q = int(shape[0]), int(shape[1])
        if Q != self.q.size:
            raise ValueError(f"signals has {Q} q points per shot but q has {self.q.size} (q grid mismatch)")
        if S == 0:
            raise ValueError("signals holds no shots (S = 0)")
        dt = np.dtype(getattr(signals, "dtype", np.float64))
        if dt.kind not in "iuf":
            raise ValueError(f"signals must hold numbers, got dtype {dt}")
        self.signals = signals
        self.pumped = _vector(pumped, "pumped", S, "bool")
        self.delay = _vector(delay, "delay", S)
        self.timetool = None if timetool is None else _vector(timetool, "timetool", S)
        self.weights = None if weights is None else _vector(weights, "weights", S)
        n_on = int(self.pumped.sum())
        if n_on == S:
            raise ValueError("no laser-off shots (pumped is True for every shot): ΔI/I needs a laser-off reference")
        if n_on == 0:
            raise ValueError("no laser-on shots (pumped is False for every shot): nothing to reduce")
        bad = self.pumped & ~np.isfinite(self.delay)
        if np.any(bad):
            raise ValueError(f"delay is not finite for {int(bad.sum())} laser-on shots "
                             f"(first: shot {int(np.flatnonzero(bad)[0])})")
        self._file = None
        self.sources = None   # (paths, dataset names) of a run opened by from_hdf5

    # ---- files -----------------------------------------------------------------------------------------------

    @classmethod
    def from_hdf5(cls, path, *, q: str = "q", signals: str = "signals", delay: str = "delay",
                  pumped: str = "pumped", timetool: str | None = "timetool", weights: str | None = "weights"):
        """Open a run stored in an HDF5 file; the profiles stay on disk and are read in chunks.

        The layout, by default (every name can be changed, e.g. to NeXus-style paths such as
        ``signals="/entry/data/data"``)::

            /q         (Q,)    float   momentum transfer, Å⁻¹
            /signals   (S, Q)  float   one radial profile per shot, acquisition order
            /delay     (S,)    float   nominal delay, fs
            /pumped    (S,)    bool    laser on (or 0/1 integers)
            /timetool  (S,)    float   optional: timing correction, fs, added to delay
            /weights   (S,)    float   optional: per-shot normalisation (intensity monitor)

        Several files (a list of paths) make one run, their shots end to end in the order given: they must share
        the q grid and all have (or all lack) the optional datasets.

        Parameters
        ----------
        path : str, os.PathLike or list of them
            The HDF5 file, or the files of one run.
        q, signals, delay, pumped : str, optional
            Paths of the required datasets in the file.
        timetool, weights : str or None, optional
            Paths of the optional datasets; with the default names a missing dataset means "none", a name given
            explicitly must exist; None ignores it.

        Returns
        -------
        PumpProbe
            The run, holding the file(s) open (:meth:`close`, or use it as a context manager).

        Raises
        ------
        ValueError
            A file is missing or not HDF5, a required dataset is missing, files disagree on the q grid or the
            optional datasets, or the contents fail the checks of :class:`PumpProbe`.
        """
        if isinstance(path, (list, tuple)):
            return cls._from_files(list(path), q=q, signals=signals, delay=delay, pumped=pumped,
                                   timetool=timetool, weights=weights)
        f, parts = _open_hdf5(path, q=q, signals=signals, delay=delay, pumped=pumped, timetool=timetool,
                              weights=weights)
        try:
            run = cls(parts["q"], parts["signals"], parts["delay"], parts["pumped"], timetool=parts["timetool"],
                      weights=parts["weights"])
        except BaseException:
            f.close()
            raise
        run._file = f
        run.sources = ([os.fspath(path)], dict(q=q, signals=signals, delay=delay, pumped=pumped, timetool=timetool,
                                    weights=weights))
        return run

    @classmethod
    def _from_files(cls, paths, **names):
        from .sources import StackedRows

        if not paths:
            raise ValueError("no pump-probe files given")
        files, runs = [], []   # each file's parts, checked together (one file may hold only laser-on shots)
        try:
            for p in paths:
                f, parts = _open_hdf5(p, **names)
                files.append(f)
                runs.append(parts)
            first = runs[0]
            q0 = check_grid(first["q"])
            for p, r in zip(paths[1:], runs[1:]):
                qr = np.asarray(r["q"], dtype=np.float64)
                if qr.shape != q0.shape or not np.allclose(qr, q0, rtol=0, atol=1e-9):
                    raise ValueError(f"{os.fspath(p)}: its q grid ({qr.size} points) is not that of "
                                     f"{os.fspath(paths[0])} ({q0.size} points, {q0[0]:g}..{q0[-1]:g} Å⁻¹)")
                for opt in ("timetool", "weights"):
                    if (r[opt] is None) != (first[opt] is None):
                        raise ValueError(f"{opt} is in some files of the run and not in others "
                                         f"({os.fspath(paths[0])} vs {os.fspath(p)})")
            for p, r in zip(paths, runs):
                S = int(r["signals"].shape[0])
                for opt in ("delay", "pumped", "timetool", "weights"):
                    if r[opt] is not None and np.shape(r[opt]) != (S,):
                        raise ValueError(f"{os.fspath(p)}: {opt} has shape {np.shape(r[opt])}, the file has {S} "
                                         "shots")

            def cat(opt):
                return None if first[opt] is None else np.concatenate([np.asarray(r[opt]) for r in runs])

            run = cls(q0, StackedRows([r["signals"] for r in runs]), cat("delay"), cat("pumped"),
                      timetool=cat("timetool"), weights=cat("weights"))
        except BaseException:
            for f in files:
                f.close()
            raise
        run._file = _Files(files)
        run.sources = ([os.fspath(p) for p in paths], names)
        return run

    def to_hdf5(self, path, *, chunk: int = 65536, compression: str | None = None) -> None:
        """Write the run in the layout that :meth:`from_hdf5` reads (profiles copied ``chunk`` shots at a time).

        Parameters
        ----------
        path : str or os.PathLike
            Output file (overwritten).
        chunk : int, optional
            Shots per copy step.
        compression : str or None, optional
            h5py compression of the profiles (e.g. ``"gzip"``).
        """
        import h5py  # loaded on use: keeps `import xstructure` fast

        chunk = _int(chunk, "chunk", 1)
        S, Q = self.n_shots, self.q.size
        with h5py.File(os.fspath(path), "w") as f:
            f["q"] = self.q
            f["q"].attrs["units"] = "1/angstrom"
            d = f.create_dataset("signals", shape=(S, Q), dtype=np.dtype(self.signals.dtype),
                                 chunks=(min(S, max(1, 4096)), Q), compression=compression)
            for a in range(0, S, chunk):
                d[a:a + chunk] = np.asarray(self.signals[a:a + chunk])
            f["delay"] = self.delay
            f["delay"].attrs["units"] = "fs"
            f["pumped"] = self.pumped
            if self.timetool is not None:
                f["timetool"] = self.timetool
                f["timetool"].attrs["units"] = "fs"
            if self.weights is not None:
                f["weights"] = self.weights

    def close(self) -> None:
        """Close the HDF5 file a run from :meth:`from_hdf5` holds open (nothing otherwise)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        t = self.corrected_delay[self.pumped]
        return (f"PumpProbe({self.n_shots} shots ({self.n_on} on, {self.n_off} off) x {self.q.size} q points "
                f"{self.q[0]:g}..{self.q[-1]:g} Å⁻¹, delays {np.nanmin(t):g}..{np.nanmax(t):g} fs"
                f"{', timetool' if self.timetool is not None else ''}"
                f"{', weights' if self.weights is not None else ''})")

    # ---- properties ------------------------------------------------------------------------------------------

    @property
    def n_shots(self) -> int:
        """S, the number of shots."""
        return int(self.signals.shape[0])

    @property
    def n_on(self) -> int:
        """Laser-on shots."""
        return int(self.pumped.sum())

    @property
    def n_off(self) -> int:
        """Laser-off shots."""
        return self.n_shots - self.n_on

    @property
    def corrected_delay(self) -> np.ndarray:
        """(S,) delay + timetool, fs (the nominal delay without a timetool)."""
        return self.delay if self.timetool is None else self.delay + self.timetool

    # ---- reduction -------------------------------------------------------------------------------------------

    def reduce(self, bins=50, *, normalize="window", reject: float | None = 5.0, reject_fraction: float = 0.02,
               reference: str = "nearest", n_nearest: int = 4, bootstrap: int = 100, units: int = 128,
               seed: int = 0, empty_bins: str = "warn", chunk: int = 65536, n_stat: int = 64,
               num_threads: int | None = None, progress: bool = False, scheduler=None) -> Reduced:
        """ΔI/I per delay bin: ⟨I_on⟩ / ⟨I_off⟩ − 1 of normalised shots, with bootstrap errors.

        Parameters
        ----------
        bins : int or array_like, optional
            An int n: n equal-count bins of the corrected delays of the laser-on shots (quantile edges, so that
            every bin has about the same number of shots and none is empty; delays that many shots share can
            merge edges, then fewer bins result, with a warning).  Or explicit (T + 1,) increasing edges in fs:
            bins [e_k, e_k+1), the last one closed; laser-on shots outside are counted in
            ``excluded["outside_bins"]``.
        normalize : tuple, str or None, optional
            ``("window", qmin, qmax)``: divide each shot by its sum over qmin ≤ q ≤ qmax (Å⁻¹); ``"window"``: by
            its sum over the whole grid; ``"weights"``: by the run's per-shot weights; None: no normalisation.
        reject : float or None, optional
            Outlier threshold k in robust standard deviations (σ̂ = 1.4826 · MAD).  A shot is rejected when more
            than ``reject_fraction`` of its q points lie farther than k σ̂ from the median of its group (the
            laser-off shots, or the laser-on shots of its delay bin).  None: no outlier test (non-finite shots
            are rejected all the same).
        reject_fraction : float, optional
            The fraction of q points (0 ≤ f < 1) beyond k σ̂ that rejects a shot: more than ⌊f Q⌋ points.
        reference : {'nearest', 'all'}, optional
            ``"nearest"``: each laser-on shot is referenced to the mean of its ``n_nearest`` nearest laser-off
            shots in acquisition order (robust to drifts of the source and the detector, at the price of some
            noise; the result depends on the acquisition order).  ``"all"``: the mean of every laser-off shot
            (lowest noise; the result does not depend on the order of the shots).
        n_nearest : int, optional
            Laser-off shots per laser-on shot for ``reference="nearest"``.
        bootstrap : int, optional
            Bootstrap resamples for ``sigma`` (0: no errors).
        units : int, optional
            The largest number of resampling units per bin.  A bin with more laser-on shots is cut into
            ``units`` blocks of consecutive shots of nearly equal size, which are resampled (non-overlapping
            block bootstrap); with fewer shots every shot is a unit.
        seed : int, optional
            Seed of the bootstrap's random numbers.
        empty_bins : {'warn', 'error'}, optional
            A bin left with no laser-on shot is dropped with a warning (and counted in
            ``excluded["empty_bins"]``), or raises.
        chunk : int, optional
            Shots read at a time from lazy inputs.
        n_stat : int, optional
            Shots per group read (evenly spaced through the run) to estimate the medians and the MAD for the
            outlier test.
        num_threads : int or None, optional
            Worker threads (None: every CPU).
        progress : bool, optional
            Show a progress bar over shots.
        scheduler : str, distributed.Client or None, optional
            None (read and screen the shots in this process), or a dask.distributed scheduler address or Client:
            each chunk of ``chunk`` shots is read and screened by a worker (a run from :meth:`from_hdf5` is
            re-opened there, so the files must be on a shared file system; an in-memory run ships its chunks),
            and the partial sums are added here in chunk order, so the result equals the one in this process.

        Returns
        -------
        Reduced
            ΔI/I, its bootstrap error, the counts, the reference, the rejections.

        Raises
        ------
        ValueError
            Bad arguments; no laser-on shot in any bin; every laser-off shot rejected; an empty bin with
            ``empty_bins="error"``.
        """
        S, Q = self.n_shots, self.q.size
        norm = normalize_spec(normalize, self.q, self.weights is not None)
        if reject is not None:
            reject = float(reject)
            if not (math.isfinite(reject) and reject > 0):
                raise ValueError(f"reject must be a positive number of robust standard deviations or None, "
                                 f"got {reject!r}")
        reject_fraction = float(reject_fraction)
        if not 0 <= reject_fraction < 1:
            raise ValueError(f"reject_fraction must lie in [0, 1), got {reject_fraction}")
        if reference not in ("nearest", "all"):
            raise ValueError(f"reference must be 'nearest' or 'all', got {reference!r}")
        n_nearest = _int(n_nearest, "n_nearest", 1)
        bootstrap = _int(bootstrap, "bootstrap", 0)
        if bootstrap == 1:
            raise ValueError("bootstrap must be 0 (no errors) or >= 2 resamples")
        units = _int(units, "units", 2)
        seed = _int(seed, "seed", 0)
        chunk = _int(chunk, "chunk", 1)
        n_stat = _int(n_stat, "n_stat", 3)
        if empty_bins not in ("warn", "error"):
            raise ValueError(f"empty_bins must be 'warn' or 'error', got {empty_bins!r}")
        threads = (os.cpu_count() or 1) if num_threads is None else _int(num_threads, "num_threads", 1)
        settings = {"bins": bins if np.isscalar(bins) else np.asarray(bins, dtype=np.float64).tolist(),
                    "normalize": normalize, "reject": reject, "reject_fraction": reject_fraction,
                    "reference": reference, "n_nearest": n_nearest, "bootstrap": bootstrap, "units": units,
                    "seed": seed}

        # -- per-shot facts known before reading a profile --
        on = self.pumped
        t = self.corrected_delay
        code = np.zeros(S, dtype=np.uint8)
        if self.timetool is not None:
            code[on & ~np.isfinite(t)] = _TIMETOOL
        inv = np.ones(S)
        if norm == "weights":
            w = self.weights
            ok = np.isfinite(w) & (w > 0)
            code[~ok & (code == 0)] = _NORM
            inv = np.where(ok, 1.0 / np.where(ok, w, 1.0), 0.0)
        meta = code != 0

        edges = self._edges(bins, t[on & (code == 0)])
        T = edges.size - 1
        cand_on = on & (code == 0)
        inside = cand_on & (t >= edges[0]) & (t <= edges[-1])
        n_outside = int((cand_on & ~inside).sum())
        group = np.full(S, -1, dtype=np.int64)
        group[~on & (code == 0)] = 0
        bin_of = np.full(S, -1, dtype=np.int64)
        bin_of[inside] = np.clip(np.searchsorted(edges, t[inside], "right") - 1, 0, T - 1)
        group[inside] = 1 + bin_of[inside]
        if not np.any(inside):
            raise ValueError(f"no laser-on shot has a delay inside the bins ({edges[0]:g} .. {edges[-1]:g} fs)")
        if not np.any(group == 0):
            raise ValueError("every laser-off shot was rejected (normalisation weights): no reference")

        # -- outlier statistics from a sample of each group, and (in a second thread, at the same time) the
        #    resampling units and the aggregation matrix --
        helper = ThreadPoolExecutor(1) if threads > 1 and reject is not None else None
        try:
            planned = helper.submit(_plan, group, T, units, reference, n_nearest, S) if helper else None
            stats = None
            if reject is not None:
                stats = self._stats(group, T + 1, norm, inv, n_stat, reject)
            plan = planned.result() if planned else _plan(group, T, units, reference, n_nearest, S)
        finally:
            if helper is not None:
                helper.shutdown()

        # -- one pass over the shots --
        P, code, inv = self._accumulate(plan, code, inv, group, norm, stats, reject_fraction, chunk, threads,
                                        progress, scheduler)
        valid = (code == 0) & (group >= 0)
        if not np.any(valid & ~on):
            counts_r = {r: int(((code == k + 1) & (group == 0)).sum()) for k, r in enumerate(REASONS)}
            raise ValueError(f"every laser-off shot was rejected ({ {k: v for k, v in counts_r.items() if v} }): "
                             "no reference")
        if reference == "nearest":
            code, valid = self._fix_nearest(plan, P, code, inv, valid)

        # -- per bin --
        counts_all = np.bincount(bin_of[valid & on], minlength=T)
        keep = counts_all > 0
        dropped = [(float(edges[b]), float(edges[b + 1])) for b in np.flatnonzero(~keep)]
        if dropped:
            msg = (f"{len(dropped)} of {T} delay bins have no laser-on shot left and are dropped: "
                   + ", ".join(f"[{lo:g}, {hi:g}) fs" for lo, hi in dropped[:5]) + (" ..." if len(dropped) > 5
                                                                                    else ""))
            if empty_bins == "error":
                raise ValueError(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        if not np.any(keep):
            raise ValueError("no laser-on shot is left in any delay bin (all rejected)")
        unit_n = np.bincount(plan.on_block[valid[plan.on_idx]], minlength=plan.nB).astype(np.float64)
        rng = np.random.default_rng(seed)
        if reference == "all":
            off_valid = valid[plan.off_idx]
            off_n = np.bincount(plan.off_block[off_valid], minlength=plan.nR).astype(np.float64)
            OFF = P[plan.nB:]
            n_off = int(off_n.sum())
            off_mean = OFF.sum(axis=0) / n_off
            nz = off_n > 0
            if bootstrap:
                V = _resample_counts(rng, np.array([int(nz.sum())]), bootstrap)
                off_star = (V @ OFF[nz]) / (V @ off_n[nz])[:, None]
        else:
            n_off = int((valid & ~on).sum())
        unit_rows = []
        for b in np.flatnonzero(keep):
            rows = np.arange(plan.block_start[b], plan.block_start[b + 1])
            unit_rows.append(rows[unit_n[rows] > 0])
        sizes = np.array([r.size for r in unit_rows])
        W_all = _resample_counts(rng, sizes, bootstrap) if bootstrap else None
        ends = np.cumsum(sizes)
        diff, sigma, off = [], [], []
        with np.errstate(divide="ignore", invalid="ignore"):
            for k, rows in enumerate(unit_rows):
                ON = P[rows]
                n_b = unit_n[rows].sum()
                if reference == "nearest":
                    REF = P[plan.nB + rows]
                    ref_mean = REF.sum(axis=0) / n_b
                    d = ON.sum(axis=0) / REF.sum(axis=0) - 1.0
                else:
                    ref_mean = off_mean
                    d = (ON.sum(axis=0) / n_b) / off_mean - 1.0
                diff.append(d)
                off.append(ref_mean)
                if bootstrap:
                    if rows.size < 2:
                        sigma.append(np.full(Q, np.inf))
                        continue
                    W = W_all[:, ends[k] - rows.size:ends[k]]
                    if reference == "nearest":
                        star = (W @ ON) / (W @ REF) - 1.0
                    else:
                        star = ((W @ ON) / (W @ unit_n[rows])[:, None]) / off_star - 1.0
                    sigma.append(star.std(axis=0, ddof=1))
        diff = np.array(diff)
        if not np.all(np.isfinite(diff)):
            warnings.warn(f"ΔI/I is not finite at {int((~np.isfinite(diff)).sum())} (bin, q) points: the "
                          "laser-off reference is zero or not finite there", RuntimeWarning, stacklevel=2)
        t_sum = np.bincount(bin_of[valid & on], weights=t[valid & on], minlength=T)
        rejected_mask = (code != 0) & ((group >= 0) | meta)
        rejected = {"total": int(rejected_mask.sum())}
        rejected.update({r: int((rejected_mask & (code == k + 1)).sum()) for k, r in enumerate(REASONS)})
        return Reduced(delay=(t_sum / np.maximum(counts_all, 1))[keep], q=self.q.copy(), diff=diff,
                       sigma=np.array(sigma) if bootstrap else None, counts=counts_all[keep].astype(np.int64),
                       off=np.array(off), edges=np.column_stack([edges[:-1], edges[1:]])[keep],
                       rejected=rejected, excluded={"outside_bins": n_outside, "empty_bins": len(dropped)},
                       n_off=n_off, dropped=dropped, settings=settings)

    # ---- the steps of reduce ---------------------------------------------------------------------------------

    @staticmethod
    def _edges(bins, t_on: np.ndarray) -> np.ndarray:
        if t_on.size == 0:
            raise ValueError("no laser-on shot has a valid delay (check the timetool)")
        if np.isscalar(bins):
            n = _int(bins, "bins", 1)
            edges = np.unique(np.quantile(t_on, np.linspace(0.0, 1.0, n + 1)))
            if edges.size == 1:
                edges = np.array([edges[0], edges[0]])
            if edges.size - 1 < n:
                warnings.warn(f"{n} equal-count delay bins were asked for, but many shots share delays: "
                              f"{edges.size - 1} bins result", RuntimeWarning, stacklevel=3)
            return edges
        try:
            edges = np.asarray(bins, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"bins must be an int or increasing edges in fs, got {bins!r}") from None
        if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) or not np.all(np.diff(edges) > 0):
            raise ValueError(f"bin edges must be a finite, strictly increasing 1D array of >= 2 delays in fs, "
                             f"got {edges!r}")
        return edges

    def _norms(self, X: np.ndarray, norm, inv_meta: np.ndarray):
        """Per row: (1/normaliser or 0, code 0 / NAN / NORM)."""
        # row sums by einsum, not BLAS (this runs in worker threads); each column is read once
        Q = X.shape[1]
        i0, i1 = (norm[1], norm[2]) if isinstance(norm, tuple) else (0, Q)
        tot = np.einsum("ij->i", X, dtype=np.float64)        # contiguous rows: the fast case
        if i1 - i0 == Q:
            s = tot
        elif 2 * (i1 - i0) >= Q:                             # a wide window: subtract the narrow rest
            s = tot - np.einsum("ij->i", X[:, :i0], dtype=np.float64) - np.einsum("ij->i", X[:, i1:],
                                                                                   dtype=np.float64)
        else:
            s = np.einsum("ij->i", X[:, i0:i1], dtype=np.float64)
        code = np.where(np.isfinite(tot), 0, _NAN).astype(np.uint8)
        if norm is None:
            inv = np.ones(X.shape[0])
        elif norm == "weights":
            inv = inv_meta.copy()
        else:
            ok = np.isfinite(s) & (s > 0)
            code[(code == 0) & ~ok] = _NORM
            inv = np.where(ok, 1.0 / np.where(ok, s, 1.0), 0.0)
        inv[code != 0] = 0.0
        return inv, code

    def _stats(self, group, G, norm, inv, n_stat, reject):
        """Per group median (G, Q) and the pooled robust σ per q, from up to n_stat evenly spaced shots each."""
        order = np.argsort(group.astype(np.int16 if G < 32767 else np.int64), kind="stable")   # radix sort
        gs = group[order]
        starts = np.searchsorted(gs, np.arange(G + 1))
        picks = []
        for g in range(G):
            members = order[starts[g]:starts[g + 1]]
            if members.size:
                k = np.unique(np.round(np.linspace(0, members.size - 1, min(members.size, n_stat))).astype(int))
                picks.append(members[k])
        idx = np.unique(np.concatenate(picks))
        X = take_rows(self.signals, idx)
        inv_s, code_s = self._norms(X, norm, inv[idx])
        ok = code_s == 0
        Z = X[ok] * inv_s[ok, None]
        g = group[idx][ok]
        center = np.full((G, self.q.size), np.nan)
        scale = np.full((G, self.q.size), np.nan)
        res = []
        for k in range(G):
            Zk = Z[g == k]
            if Zk.shape[0] >= 3:
                center[k] = _median0(Zk)
                r = np.abs(Zk - center[k])
                res.append(r)
                if Zk.shape[0] >= _OWN_SCALE:
                    scale[k] = _robust_scale(r)
        if not res:
            warnings.warn("too few shots per group for the outlier test (need 3): no outlier rejection",
                          RuntimeWarning, stacklevel=3)
            return None
        res = np.concatenate(res)
        if res.shape[0] > 4000:
            res = res[np.round(np.linspace(0, res.shape[0] - 1, 4000)).astype(int)]
        pooled = _robust_scale(res)
        has = np.all(np.isfinite(center), axis=1)
        own = np.all(np.isfinite(scale), axis=1)
        scale[~own] = pooled
        floor = 1e-6 * np.nanmedian(np.abs(center), axis=0) + 1e-300
        scale = np.maximum(scale, floor)
        return {"center": np.where(has[:, None], center, 0.0).astype(np.float32), "has": has,
                "thr": (reject * scale).astype(np.float32)}

    def _accumulate(self, plan, code, inv, group, norm, stats, reject_fraction, chunk, threads, progress,
                    scheduler=None):
        S, Q = self.n_shots, self.q.size
        P = np.zeros((plan.nB + plan.nR, Q))
        code = code.copy()
        inv = inv.copy()
        screen = _Screen(plan, code, inv, group, norm, stats, math.floor(reject_fraction * Q), Q)

        def work(a, X):
            v = a + X.shape[0]
            code_l, inv_l, urows, partial = screen(a, X)
            return a, v, code_l, inv_l, urows, partial

        bar = None
        if progress:
            from tqdm.auto import tqdm  # loaded on use: keeps `import xstructure` fast

            bar = tqdm(total=S, unit="shot", desc="reduce")
        if scheduler is not None:
            return self._accumulate_on_cluster(screen, P, code, inv, chunk, scheduler, bar)
        pool = ThreadPoolExecutor(threads) if threads > 1 else None
        try:
            for a0 in range(0, S, chunk):
                b0 = min(S, a0 + chunk)
                block = self.signals[a0:b0]
                if not isinstance(block, np.ndarray):
                    block = np.asarray(block)
                jobs = [(a, block[a - a0:min(b0, a + _SUB) - a0]) for a in range(a0, b0, _SUB)]
                results = pool.map(lambda j: work(*j), jobs) if pool is not None else (work(*j) for j in jobs)
                _add_blocks(results, P, code, inv, bar)
        finally:
            if pool is not None:
                pool.shutdown()
            if bar is not None:
                bar.close()
        return P, code, inv

    def _accumulate_on_cluster(self, screen, P, code, inv, chunk, scheduler, bar):
        """The pass over the shots on a dask.distributed cluster: one task per chunk; sums added in chunk order."""
        from ..pools.pool import dask_client

        client, owned = dask_client(scheduler)
        S = self.n_shots
        futures = []
        try:
            remote = client.scatter(screen, broadcast=True)
            for a0 in range(0, S, chunk):
                b0 = min(S, a0 + chunk)
                source = self.sources if self.sources is not None else np.asarray(self.signals[a0:b0])
                futures.append(client.submit(_screen_chunk, remote, source, a0, b0, pure=False))
            for fut in futures:                  # in chunk order: the same sums, in the same order, as here
                _add_blocks(fut.result(), P, code, inv, bar)
        except BaseException:
            client.cancel(futures)
            raise
        finally:
            if bar is not None:
                bar.close()
            if owned:
                client.close()
        return P, code, inv

    def _fix_nearest(self, plan, P, code, inv, valid):
        """Laser-off neighbours were chosen before the profiles were read; correct the reference of laser-on
        shots that were rejected or whose neighbours were, re-reading only the shots concerned."""
        nb = plan.nbrs                        # (n_on, n) laser-off shot indices
        n = nb.shape[1]
        vn = valid[nb]
        n_valid = vn.sum(axis=1)
        on_ok = valid[plan.on_idx]
        noref = on_ok & (n_valid == 0)
        code = code.copy()
        code[plan.on_idx[noref]] = _NOREF
        valid = valid.copy()
        valid[plan.on_idx[noref]] = False
        coef = np.zeros(nb.shape)
        coef[~on_ok] = -1.0 / n            # rejected laser-on shots: take back their reference
        part = on_ok & ~noref & (n_valid < n)
        coef[part] = (1.0 / np.maximum(n_valid[part], 1) - 1.0 / n)[:, None]
        coef *= vn
        r, k = np.nonzero(coef)
        rows = np.concatenate([plan.nB + plan.on_block[r], plan.on_block[noref]])
        cols = np.concatenate([nb[r, k], plan.on_idx[noref]])
        vals = np.concatenate([coef[r, k], -np.ones(int(noref.sum()))])
        if vals.size == 0:
            return code, valid
        vals = vals * inv[cols]
        keep = vals != 0
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        if vals.size == 0:
            return code, valid
        ucols, cinv = np.unique(cols, return_inverse=True)
        urows, rinv = np.unique(rows, return_inverse=True)
        X = take_rows(self.signals, ucols)
        P[urows] += _csr((vals, (rinv, cinv)), (urows.size, ucols.size)) @ X
        return code, valid


def _add_blocks(results, P, code, inv, bar) -> None:
    """Add the screened blocks (a, v, codes, inverse normalisers, rows, sums) into the pass's arrays, in order."""
    for a, v, code_l, inv_l, rows, part in results:
        code[a:v] = code_l
        inv[a:v] = inv_l
        if rows is not None:
            P[rows] += part
        if bar is not None:
            bar.update(v - a)


_OPEN_RUNS: dict = {}   # on a dask worker: the runs its tasks opened, by their files


def _screen_chunk(screen, source, a0: int, b0: int) -> list:
    """A dask task: read shots a0 .. b0 (from the run's files, re-opened once per worker, or given) and screen
    them in blocks of _SUB shots, as the pass in one process does."""
    if isinstance(source, tuple):
        paths, names = source
        key = (tuple(paths), tuple(sorted(names.items())))
        run = _OPEN_RUNS.get(key)
        if run is None:
            run = _OPEN_RUNS[key] = PumpProbe.from_hdf5(list(paths) if len(paths) > 1 else paths[0], **names)
        block = np.asarray(run.signals[a0:b0])
    else:
        block = source
    out = []
    for a in range(a0, b0, _SUB):
        X = block[a - a0:min(b0, a + _SUB) - a0]
        code_l, inv_l, rows, part = screen(a, X)
        out.append((a, a + X.shape[0], code_l, inv_l, rows, part))
    return out


def _robust_scale(r: np.ndarray) -> np.ndarray:
    """σ̂ per column of the absolute deviations ``r`` from the median: MAD_SCALE · MAD, or, where the MAD is 0
    (more than half the values equal the median: counts well below one per point), the root mean square of
    ``r`` (else every non-zero count would lie beyond k σ̂ and every shot would be rejected)."""
    mad = _median0(r)
    return np.where(mad > 0, MAD_SCALE * mad, np.sqrt(np.mean(r * r, axis=0)))


class _Screen:
    """The pass over one block of shots, in the compiled kernel: per shot its normaliser, its checks (non-finite,
    normalisation, outlier test) and, for the shots in use, their normalised profiles summed into the rows of the
    aggregation matrix that the block touches.

    ``screen(a, X)`` for the shots a .. a + len(X) returns (code, inv, rows, sums): the shots' codes (those known
    before reading kept), 1 / normaliser of the shots in use (0 for the others), and the rows touched, increasing,
    with their (len(rows), Q) float64 sums (None, None when no shot is in use).  ``code`` and ``inv`` are read at
    the block's shots (the codes and weights known before reading); blocks may run in parallel threads.
    """

    def __init__(self, plan, code, inv, group, norm, stats, limit, Q):
        self.code, self.inv, self.group = code, inv, group
        self.limit = int(limit)
        if norm is None:
            self.norm, self.window = 0, (0, Q)
        elif norm == "weights":
            self.norm, self.window = 2, (0, Q)
        else:
            self.norm, self.window = 1, (norm[1], norm[2])
        m = plan.matrix
        self.indptr = np.ascontiguousarray(m.indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(m.indices, dtype=np.int32)
        self.data = np.ascontiguousarray(m.data, dtype=np.float64)
        self.n_rows = int(m.shape[0])
        self.has = None
        self.tables = {}
        if stats is not None:
            self.has = np.ascontiguousarray(stats["has"], dtype=np.uint8)
            for dt in (np.float32, np.float64):
                self.tables[np.dtype(dt)] = (np.ascontiguousarray(stats["center"], dtype=dt),
                                             np.ascontiguousarray(stats["thr"], dtype=dt))

    def __call__(self, a, X):
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        if X.strides[1] != X.itemsize or X.strides[0] % X.itemsize:
            X = np.ascontiguousarray(X)
        v = a + X.shape[0]
        center, thr = self.tables.get(X.dtype, (None, None))
        code = np.empty(v - a, dtype=np.uint8)
        inv = np.empty(v - a)
        rows, sums = _backend.pumpprobe_block(
            X, norm=self.norm, i0=self.window[0], i1=self.window[1], inv_in=self.inv[a:v], code_in=self.code[a:v],
            group=self.group[a:v], has=self.has, center=center, thr=thr, limit=self.limit,
            col_ptr=self.indptr[a:v + 1], col_row=self.indices, col_val=self.data, n_rows=self.n_rows, code=code,
            inv=inv, num_threads=1)
        if rows.size == 0:
            return code, inv, None, None
        return code, inv, rows, sums


def _median0(a: np.ndarray) -> np.ndarray:
    """Median along axis 0 (numpy's vectorised sort beats partition for the few dozen rows of a sample, partition
    wins from about a thousand rows: the pooled sample)."""
    n = a.shape[0]
    kth = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
    srt = np.partition(a, kth, axis=0) if n > 768 else np.sort(a, axis=0)
    return srt[n // 2] if n % 2 else 0.5 * (srt[n // 2 - 1] + srt[n // 2])


def _resample_counts(rng, sizes: np.ndarray, B: int) -> np.ndarray:
    """(B, Σ sizes) float64: for each group of ``sizes[k]`` units, how often each unit is drawn when
    ``sizes[k]`` units are drawn with replacement (a multinomial resample), for B resamples at once."""
    U = int(sizes.sum())
    start = np.repeat(np.cumsum(sizes) - sizes, sizes)
    n = np.repeat(sizes, sizes)
    pick = start + np.minimum((rng.random((B, U)) * n).astype(np.int64), n - 1)
    flat = (np.arange(B)[:, None] * U + pick).ravel()
    return np.bincount(flat, minlength=B * U).reshape(B, U).astype(np.float64)


def _csr(coo, shape):
    import scipy.sparse as sp  # loaded on use: keeps `import xstructure` fast

    return sp.csr_matrix(coo, shape=shape)


@dataclass
class _Plan:
    nB: int                   # laser-on units (blocks) in all
    nR: int                   # reference rows: one per unit ('nearest') or laser-off blocks ('all')
    block_start: np.ndarray   # (T + 1,) first unit of each bin
    on_idx: np.ndarray        # (n_on,) candidate laser-on shots, acquisition order
    on_block: np.ndarray      # (n_on,) their unit
    off_idx: np.ndarray       # (n_off,) candidate laser-off shots
    off_block: np.ndarray     # (n_off,) their block ('all')
    nbrs: np.ndarray | None   # (n_on, n) nearest laser-off shots ('nearest')
    matrix: object            # (nB + nR, S) CSC: row r of P = Σ_s matrix[r, s] · shot_s (before 1/norm)


def _plan(group, T, units, reference, n_nearest, S) -> _Plan:
    on_idx = np.flatnonzero(group >= 1)
    b = group[on_idx] - 1
    order = np.argsort(b.astype(np.int16 if T < 32767 else np.int64), kind="stable")   # radix sort
    n_b = np.bincount(b, minlength=T)
    start = np.concatenate([[0], np.cumsum(n_b)])
    rank = np.empty(on_idx.size, dtype=np.int64)
    rank[order] = np.arange(on_idx.size) - start[b[order]]
    K = np.minimum(n_b, units)
    block_start = np.concatenate([[0], np.cumsum(K)])
    on_block = block_start[b] + rank * K[b] // np.maximum(n_b[b], 1)
    nB = int(block_start[-1])
    off_idx = np.flatnonzero(group == 0)
    M = off_idx.size
    nbrs, off_block = None, np.zeros(M, dtype=np.int64)
    if reference == "nearest":
        n = min(n_nearest, M)
        p = np.searchsorted(off_idx, on_idx)
        L = np.clip(p - n, 0, M - n)
        for _ in range(n):       # slide the window of n laser-off shots right while that brings it closer
            can = L + n < M
            right = off_idx[np.minimum(L + n, M - 1)]
            move = can & (right - on_idx < on_idx - off_idx[L])
            L = L + move
        it = np.int32 if max(S, 2 * nB) < 2 ** 31 else np.int64   # scipy's index type: no conversion, half the bytes
        nbrs = off_idx.astype(it)[L.astype(it)[:, None] + np.arange(n, dtype=it)]
        nR = nB
        n_on = on_idx.size
        rows = np.empty(n_on * (n + 1), dtype=it)
        rows[:n_on] = on_block
        rows[n_on:].reshape(n_on, n)[:] = (nB + on_block).astype(it)[:, None]
        cols = np.empty_like(rows)
        cols[:n_on] = on_idx
        cols[n_on:] = nbrs.ravel()
        vals = np.full(rows.size, 1.0 / n)
        vals[:n_on] = 1.0
        matrix = _csc((vals, (rows, cols)), (nB + nR, S))
        matrix.sum_duplicates()
    else:
        Ko = min(M, units)
        off_block = np.arange(M) * Ko // M
        nR = Ko
        row = np.full(S, -1, dtype=np.int64)       # every shot adds to at most one row
        row[on_idx] = on_block
        row[off_idx] = nB + off_block
        present = row >= 0
        indptr = np.zeros(S + 1, dtype=np.int64)
        np.cumsum(present, out=indptr[1:])
        matrix = _csc((np.ones(int(indptr[-1])), row[present], indptr), (nB + nR, S))
    return _Plan(nB, nR, block_start, on_idx, on_block, off_idx, off_block, nbrs, matrix)


def _csc(arrays, shape):
    import scipy.sparse as sp  # loaded on use: keeps `import xstructure` fast

    return sp.csc_matrix(arrays, shape=shape)
