"""Radial averaging of detector frames: :class:`Integrator` and :func:`radial_average`.

The integrator follows pyFAI's ``integrate1d`` without pixel splitting (Ashiotis et al., J. Appl. Cryst. 48,
510, 2015): each pixel belongs to the bin that holds its centre; bins are laid out uniformly between the
smallest and (1 + ε₃₂) × the largest radial position of the unmasked pixels, or over ``radial_range``; and

    intensity = Σ x / Σ w          w = solid angle × polarisation × flat of each pixel
    sigma     = √(Σ v) / Σ w       (standard error of the mean; pyFAI's ``sem``)
    std       = √(Σ v / Σ w²)

with v = max(1, x) (error model ``"poisson"``) or v = (x − ⟨x⟩ w)² (``"azimuthal"``, the scatter of the
pixels about the bin mean).  The map from pixel to bin and the corrections are built once; a frame then
costs one pass over its pixels in the compiled kernel (C++/OpenMP, or CUDA for GPU arrays).  Pixels that
are NaN, ±inf, negative (``mask_negative``), above ``saturation`` or equal to ``dummy`` are left out frame
by frame.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .. import _backend
from .geometry import Geometry, radial_unit

__all__ = ["Integrator", "IntegrateResult", "LegendreResult", "radial_average", "ERROR_MODELS"]

ERROR_MODELS = ("poisson", "azimuthal")   # and None: no sigma
EPS32 = 1.0 + float(np.finfo(np.float32).eps)  # pyFAI's upper-edge margin
_FRAME_DTYPES = {"uint16", "int32", "uint32", "float32", "float64"}
_WIDEN = {"uint8": "uint16", "int8": "int32", "int16": "int32", "float16": "float32", "bool": "uint16",
          "int64": "float64", "uint64": "float64"}


@dataclasses.dataclass(frozen=True)
class IntegrateResult:
    """One radial profile, or a stack of them (leading frame axis F).

    Fields other than ``radial`` are (npt,) or (F, npt), of the frames' array kind (numpy, torch or cupy) and
    device, float64. Empty bins hold ``empty`` in ``intensity``, ``sigma`` and ``std``. Unpacks as
    ``radial, intensity, sigma = result``.

    Attributes
    ----------
    radial : numpy.ndarray
        (npt,) bin centres in ``unit``.
    intensity : array
        Σx / Σw over each bin's valid pixels, w the product of solid angle, polarisation and flat field: the
        frames' unit per unit of the corrections.
    sigma : array or None
        Standard error of ``intensity``, √(Σv) / Σw (pyFAI's ``sem``); None without an error model.
    count : array
        Valid pixels per bin.
    std : array or None
        Standard deviation, √(Σv / Σw²).
    sum_signal, sum_variance, sum_normalization, sum_normalization2 : array
        Σx, Σv, Σw and Σw² per bin.
    unit : str
        The radial unit's name, e.g. ``"q_A^-1"``.
    error_model : str or None
        ``"poisson"``, ``"azimuthal"`` or None.
    """

    radial: Any
    intensity: Any
    sigma: Any
    count: Any
    std: Any
    sum_signal: Any
    sum_variance: Any
    sum_normalization: Any
    sum_normalization2: Any
    unit: str
    error_model: str | None

    def __iter__(self):
        return iter((self.radial, self.intensity, self.sigma))


@dataclasses.dataclass(frozen=True)
class LegendreResult:
    """Legendre components I_l(q) of I(q, χ) = Σ_l I_l(q) P_l(q̂·ê).

    Index it by order, like a mapping from the fitted orders to the components: ``result[2]`` is I₂, (npt,) or
    (F, npt); ``list(result)`` gives the orders, ``dict(result.items())`` the components. Bins where the fit is
    not determined hold NaN.

    Attributes
    ----------
    radial : numpy.ndarray
        (npt,) bin centres in ``unit``.
    orders : tuple of int
        The fitted orders l.
    components : numpy.ndarray
        (L, npt) or (F, L, npt) float64 components, in the frames' unit per unit of the corrections.
    count : numpy.ndarray
        Valid pixels per bin, (npt,) or (F, npt).
    unit : str
        The radial unit's name.
    """

    radial: np.ndarray
    orders: tuple
    components: np.ndarray
    count: np.ndarray
    unit: str

    def __getitem__(self, order: int) -> np.ndarray:
        if order not in self.orders:
            raise KeyError(f"order {order} was not fitted; orders are {self.orders}")
        return self.components[..., self.orders.index(order), :]

    def __iter__(self):
        return iter(self.orders)

    def __len__(self) -> int:
        return len(self.orders)

    def __contains__(self, order) -> bool:
        return order in self.orders

    def keys(self) -> tuple:
        """The fitted orders l."""
        return tuple(self.orders)

    def items(self) -> list:
        """(l, I_l) for every fitted order."""
        return [(l, self[l]) for l in self.orders]


def _bin_index(x: np.ndarray, lo: float, hi: float, npt: int) -> np.ndarray:
    """numpy.histogram's bin of each value (uniform bins on [lo, hi], hi included); −1 outside."""
    edges = np.linspace(lo, hi, npt + 1)
    inside = (x >= lo) & (x <= hi)
    xi = x[inside]
    idx = ((xi - lo) * (npt / (hi - lo))).astype(np.intp)
    idx[idx == npt] -= 1
    idx[xi < edges[idx]] -= 1
    idx[(xi >= edges[idx + 1]) & (idx != npt - 1)] += 1
    out = np.full(x.shape, -1, dtype=np.intp)
    out[inside] = idx
    return out


class Integrator:
    """Azimuthal (radial) integration of frames recorded on one detector geometry.

    Builds the pixel→bin map once, as pyFAI's ``integrate1d`` without pixel splitting does; every frame then
    costs one pass over its pixels.

    Parameters
    ----------
    geometry : Geometry
        The detector (e.g. ``Geometry.from_poni("setup.poni")``).
    npt : int, optional
        Number of radial bins.
    unit : str, optional
        ``"q_A^-1"`` (default), ``"q_nm^-1"``, ``"2th_deg"``, ``"2th_rad"``, ``"r_mm"`` or ``"r_m"``.
    mask : array_like or None, optional
        Static mask of shape ``geometry.shape``; non-zero marks pixels to leave out (pyFAI's convention).
    radial_range : tuple of float or None, optional
        (min, max) in ``unit``; pixels outside are left out. Default: the unmasked pixels' span. As in pyFAI,
        the upper edge is max × (1 + ε), ε the float32 machine epsilon.
    azimuth_range : tuple of float or None, optional
        (min, max) azimuth χ in degrees, in (−180, 180]; pixels outside are left out.
    solid_angle : bool, optional
        Divide by each pixel's relative solid angle (cos³ of the incidence angle).
    polarization : float or None, optional
        X-ray polarisation factor in [−1, 1] (pyFAI's convention, +1 horizontal) to correct for, or None.
    polarization_offset : float, optional
        Rotation of the polarisation plane from x, rad.
    flat : array_like or None, optional
        Flat-field image to divide by (shape ``geometry.shape``).
    error_model : {'poisson', 'azimuthal', None}, optional
        Variance max(1, x) per pixel, the scatter about the bin mean, or no sigma (faster).
    mask_negative : bool, optional
        Leave out negative pixel values (detector gaps and bad pixels are often −1, −2).
    saturation : float or None, optional
        Leave out pixels above this value.
    dummy, delta_dummy : float or None, optional
        Leave out pixels with ``|x − dummy| ≤ delta_dummy``.
    empty : float, optional
        Value reported for bins with no valid pixel.
    num_threads : int, optional
        CPU threads (0: OpenMP's default).

    Raises
    ------
    ValueError
        A bad ``npt``, unit, error model, range or mask shape.
    TypeError
        ``geometry`` is not a :class:`Geometry`.

    Examples
    --------
    >>> import xstructure
    >>> g = xstructure.Geometry.simple((256, 256), pixel=100e-6, dist=0.05, energy_kev=12.0)
    >>> integ = xstructure.Integrator(g, npt=100, polarization=0.99)
    >>> res = integ.integrate(xstructure.simulate(xstructure.molecule("CHD"), g))
    >>> res.radial.shape, res.intensity.shape
    ((100,), (100,))
    """

    def __init__(self, geometry: Geometry, npt: int = 1000, unit: str = "q_A^-1", mask=None,
                 radial_range=None, azimuth_range=None, solid_angle: bool = True, polarization=None,
                 polarization_offset: float = 0.0, flat=None, error_model: str | None = "poisson",
                 mask_negative: bool = True, saturation=None, dummy=None, delta_dummy=None, empty: float = 0.0,
                 num_threads: int = 0):
        if not isinstance(geometry, Geometry):
            raise TypeError(f"geometry must be an xstructure.Geometry, got {type(geometry).__name__}")
        if int(npt) != npt or int(npt) < 1:
            raise ValueError(f"npt must be a positive integer, got {npt!r}")
        if error_model is not None and error_model not in ERROR_MODELS:
            raise ValueError(f"unknown error_model {error_model!r}: use 'poisson', 'azimuthal' or None")
        self.geometry = geometry
        self.npt = int(npt)
        self.unit = radial_unit(unit).name
        self.error_model = error_model
        self.empty = float(empty)
        self.num_threads = int(num_threads)
        shape = geometry.shape
        u = radial_unit(unit)

        valid = np.ones(shape, dtype=bool)
        if mask is not None:
            m = _backend.to_numpy(mask)
            if m.shape != shape:
                raise ValueError(f"mask has shape {m.shape}, the detector {shape}")
            valid &= ~(m.astype(bool))
        if azimuth_range is not None:
            a0, a1 = (math.radians(float(a)) for a in azimuth_range)
            if not a0 < a1:
                raise ValueError(f"azimuth_range must be (min, max) with min < max, got {azimuth_range!r}")
            valid &= (geometry.chi >= a0) & (geometry.chi <= a1)
        weight = np.ones(shape, dtype=np.float64)
        if solid_angle:
            weight *= geometry.solid_angle
        if polarization is not None:
            weight *= geometry.polarization(polarization, polarization_offset)
        if flat is not None:
            fl = _backend.to_numpy(flat, np.float64)
            if fl.shape != shape:
                raise ValueError(f"flat has shape {fl.shape}, the detector {shape}")
            bad = ~np.isfinite(fl) | (fl <= 0)
            valid &= ~bad
            weight *= np.where(bad, 1.0, fl)
        x = geometry._radial_internal(u)
        valid &= np.isfinite(x)
        if not valid.any():
            raise ValueError("the mask (with azimuth_range and flat) leaves no pixel to integrate")

        if radial_range is None:
            xv = x[valid]
            lo, hi = float(xv.min()), float(xv.max()) * EPS32
        else:
            r0, r1 = (float(r) / u.scale for r in radial_range)
            if not (math.isfinite(r0) and math.isfinite(r1) and r0 < r1):
                raise ValueError(f"radial_range must be finite (min, max) with min < max, got {radial_range!r}")
            lo, hi = r0, r1 * EPS32  # pyFAI widens the upper edge by one float32 epsilon here too
        if not hi > lo:  # a single radial position (e.g. a one-pixel detector)
            hi = lo + max(abs(lo), 1.0) * 1e-9
        edges = np.linspace(lo, hi, self.npt + 1)
        idx = _bin_index(x, lo, hi, self.npt)
        idx[~valid] = -1
        flat_idx = idx.ravel()
        used = flat_idx >= 0
        if not used.any():
            raise ValueError(f"no unmasked pixel lies in radial_range {radial_range!r} ({self.unit})")

        self.bin_edges = edges * u.scale
        self.radial = 0.5 * (edges[1:] + edges[:-1]) * u.scale
        self._index16 = self.npt < 65535
        nb1 = self.npt + 1
        dump = np.where(used, flat_idx, self.npt)
        self._index = dump.astype(np.uint16 if self._index16 else np.int32)
        self._weight = np.ascontiguousarray(weight.ravel())
        w = np.where(used, self._weight, 0.0)
        self._norm = np.bincount(dump, weights=w, minlength=nb1)
        self._norm2 = np.bincount(dump, weights=w * w, minlength=nb1)
        self._count = np.bincount(dump, weights=used.astype(np.float64), minlength=nb1)
        self.count = self._count[:-1].astype(np.int64)
        self.pixel_bin = np.where(used, flat_idx, -1).reshape(shape)
        self._pixel_weight = weight
        self._limits = (mask_negative, saturation, dummy, delta_dummy)
        if saturation is not None and not np.isfinite(float(saturation)):
            raise ValueError(f"saturation must be a finite number, got {saturation!r}")
        self._device_maps: dict = {}

    # ------------------------------------------------------------------ helpers
    def _map_on(self, like):
        """(index, weight, norm, norm2, count) as arrays of like's kind and device (cached)."""
        kind, dev = _backend.array_kind(like), _backend.device_of(like)
        key = ("numpy",) if kind in ("numpy", "other") else (kind, dev, str(like.device))
        if key not in self._device_maps:
            arrays = (self._index, self._weight, self._norm, self._norm2, self._count)
            if key == ("numpy",):
                self._device_maps[key] = arrays
            else:
                self._device_maps[key] = tuple(_backend.to_like(a, like) for a in arrays)
        return self._device_maps[key]

    def _validity(self, dtype_name: str):
        mask_negative, saturation, dummy, delta_dummy = self._limits
        big = float(np.finfo(np.float64).max)
        lo = 0.0 if mask_negative else -big
        hi = float(saturation) if saturation is not None else big
        is_float = dtype_name.startswith("float")
        signed = dtype_name.startswith("int")
        check = is_float or (mask_negative and signed) or saturation is not None or dummy is not None
        has_dummy = dummy is not None
        return (bool(check), lo, hi, has_dummy, float(dummy) if has_dummy else 0.0,
                float(delta_dummy) if delta_dummy is not None else 0.0)

    def _frames(self, frames):
        kind = _backend.array_kind(frames)
        if kind == "other":
            frames = np.asarray(frames)
            kind = "numpy"
        shape = tuple(frames.shape)
        if len(shape) not in (2, 3) or shape[-2:] != self.geometry.shape:
            raise ValueError(f"frames have shape {shape}; expected {self.geometry.shape} or "
                             f"(F, {self.geometry.shape[0]}, {self.geometry.shape[1]}) for this geometry")
        dtype = str(frames.dtype).replace("torch.", "")
        dtype = _WIDEN.get(dtype, dtype)
        if dtype not in _FRAME_DTYPES:
            raise TypeError(f"frames of dtype {frames.dtype} are not supported (use integers or floats)")
        single = len(shape) == 2
        frames = _backend.contiguous(frames, dtype)
        return frames, single, dtype

    # ------------------------------------------------------------------ integration
    def integrate(self, frames) -> IntegrateResult:
        """Radially average one frame or a stack of frames.

        Parameters
        ----------
        frames : array_like
            One frame (n1, n2) or a stack (F, n1, n2) of the geometry's shape: numpy, torch or cupy; uint16,
            int32, uint32, float32 or float64 (other integer and float types are widened). GPU arrays use the CUDA
            kernel.

        Returns
        -------
        IntegrateResult
            (npt,) or (F, npt) profiles, float64, of the frames' array kind and device.
        """
        frames, single, dtype = self._frames(frames)
        F = 1 if single else int(frames.shape[0])
        npix = self.geometry.shape[0] * self.geometry.shape[1]
        nb1 = self.npt + 1
        index, weight, norm0, norm20, count0 = self._map_on(frames)
        outs = [_backend.empty_like(frames, (F, nb1), "float64") for _ in range(5)]
        signal, var, rw, rw2, rc = outs
        mode = {None: 0, "poisson": 1, "azimuthal": 0}[self.error_model]
        check, lo, hi, has_dummy, dummy, ddummy = self._validity(dtype)
        call = dict(F=F, npix=npix, nbins=self.npt, index=index, index16=self._index16, weight=weight, check=check,
                    lo=lo, hi=hi, has_dummy=has_dummy, dummy=dummy, delta_dummy=ddummy,
                    num_threads=self.num_threads)
        _backend.radial_histogram(frames, mode=mode, mean=None, signal=signal, var=var if mode == 1 else None,
                                  removed_w=rw, removed_w2=rw2, removed_count=rc, **call)
        xp = _namespace(frames)
        norm = norm0 - rw
        norm2 = norm20 - rw2
        count = count0 - rc
        empty_bin = count < 0.5
        safe_norm = xp.where(empty_bin, 1.0, norm)
        intensity = xp.where(empty_bin, self.empty, signal / safe_norm)
        sigma = std = None
        if self.error_model is not None:
            if self.error_model == "azimuthal":
                mean = xp.where(empty_bin, 0.0, signal / safe_norm)
                mean = _backend.contiguous(mean, "float64")
                _backend.radial_histogram(frames, mode=2, mean=mean, signal=None, var=var, removed_w=None,
                                          removed_w2=None, removed_count=None, **call)
            sigma = xp.where(empty_bin, self.empty, xp.sqrt(var) / safe_norm)
            std = xp.where(empty_bin, self.empty, xp.sqrt(var / xp.where(empty_bin, 1.0, norm2)))
        else:
            var = None

        def trim(a, integer=False):
            if a is None:
                return None
            a = a[:, :-1]
            if integer:
                a = _astype_int(a)
            return a[0] if single else a

        return IntegrateResult(radial=self.radial, intensity=trim(intensity), sigma=trim(sigma),
                               count=trim(count + 0.25, integer=True), std=trim(std), sum_signal=trim(signal),
                               sum_variance=trim(var), sum_normalization=trim(norm),
                               sum_normalization2=trim(norm2), unit=self.unit, error_model=self.error_model)

    __call__ = integrate

    def legendre(self, frames, axis=(1.0, 0.0, 0.0), orders=(0, 2)) -> LegendreResult:
        """Decompose I(q, χ) into Legendre components about a lab-frame axis.

        In each bin, the weighted least-squares fit x_k ≈ w_k Σ_l I_l P_l(q̂_k·ê) over the valid pixels (weights
        1/w_k; for ``orders=(0,)`` this is :meth:`integrate`'s mean).

        Parameters
        ----------
        frames : array_like
            One frame (n1, n2) or a stack (F, n1, n2).
        axis : array_like, optional
            (3,) lab-frame axis ê (e.g. the pump laser's polarisation); x horizontal, y vertical, z along the beam.
        orders : tuple of int, optional
            The Legendre orders l to fit.

        Returns
        -------
        LegendreResult
            Components (L, npt) or (F, L, npt), numpy float64.
        """
        from scipy.special import (
            eval_legendre,  # loaded on use: keeps `import xstructure` fast
        )

        frames, single, dtype = self._frames(frames)
        x = _backend.to_numpy(frames, np.float64).reshape(-1, self.geometry.shape[0] * self.geometry.shape[1])
        orders = tuple(int(o) for o in orders)
        if not orders or min(orders) < 0 or len(set(orders)) != len(orders):
            raise ValueError(f"orders must be distinct non-negative integers, got {orders!r}")
        e = np.asarray(axis, dtype=np.float64)
        if e.shape != (3,) or not np.all(np.isfinite(e)) or np.linalg.norm(e) == 0:
            raise ValueError(f"axis must be a non-zero lab-frame 3-vector, got {axis!r}")
        e = e / np.linalg.norm(e)
        qv = self.geometry.q_vectors.reshape(-1, 3)
        qn = np.linalg.norm(qv, axis=1)
        u = np.divide(qv @ e, qn, out=np.zeros_like(qn), where=qn > 0)
        P = np.stack([eval_legendre(o, u) for o in orders])  # (L, npix)
        idx = self.pixel_bin.ravel()
        w = self._weight
        L, nb = len(orders), self.npt
        check, lo, hi, has_dummy, dummy, ddummy = self._validity(dtype)
        comps = np.full((x.shape[0], L, nb), np.nan)
        counts = np.zeros((x.shape[0], nb), dtype=np.int64)
        for f, row in enumerate(x):
            ok = idx >= 0
            if check:
                with np.errstate(invalid="ignore"):
                    ok &= (row >= lo) & (row <= hi)
                if has_dummy:
                    ok &= ~(np.abs(row - dummy) <= ddummy)
            b = idx[ok]
            A = np.empty((nb, L, L))
            rhs = np.empty((nb, L))
            for i in range(L):
                rhs[:, i] = np.bincount(b, weights=row[ok] * P[i, ok], minlength=nb)
                for j in range(i, L):
                    A[:, i, j] = A[:, j, i] = np.bincount(b, weights=w[ok] * P[i, ok] * P[j, ok], minlength=nb)
            counts[f] = np.bincount(b, minlength=nb)
            # A bin is determined when it has enough pixels and a well-conditioned normal matrix.
            cond = np.linalg.cond(A + np.eye(L) * (counts[f] == 0)[:, None, None])
            good = (counts[f] >= L) & (cond < 1e8)
            if good.any():
                comps[f][:, good] = np.linalg.solve(A[good], rhs[good][..., None])[..., 0].T
        return LegendreResult(radial=self.radial, orders=orders, components=comps[0] if single else comps,
                              count=counts[0] if single else counts, unit=self.unit)

    def __repr__(self):
        return (f"Integrator(npt={self.npt}, unit={self.unit!r}, error_model={self.error_model!r}, "
                f"pixels used={int(self._count[:-1].sum())} of {self.geometry.shape[0] * self.geometry.shape[1]}, "
                f"geometry={self.geometry!r})")


def radial_average(image, geometry: Geometry, npt: int = 1000, **kwargs) -> IntegrateResult:
    """One-shot radial average: ``Integrator(geometry, npt, **kwargs).integrate(image)``.

    Build an :class:`Integrator` once instead when averaging many frames on the same geometry.

    Parameters
    ----------
    image : array_like
        One frame (n1, n2) or a stack (F, n1, n2).
    geometry : Geometry
        The detector.
    npt : int, optional
        Number of radial bins.
    **kwargs
        Options of :class:`Integrator`.

    Returns
    -------
    IntegrateResult
        The profile(s).
    """
    return Integrator(geometry, npt, **kwargs).integrate(image)


def _namespace(x):
    kind = _backend.array_kind(x)
    if kind == "torch":
        import torch  # optional dependency (torch)

        return torch
    if kind == "cupy":
        import cupy  # optional dependency (cupy arrays)

        return cupy
    return np


def _astype_int(a):
    kind = _backend.array_kind(a)
    if kind == "torch":
        import torch  # optional dependency (torch)

        return a.to(torch.int64)
    return a.astype(np.int64)
