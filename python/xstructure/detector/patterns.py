"""2D detector patterns of molecules on a :class:`~xstructure.detector.geometry.Geometry`: :func:`simulate_detector`.

Every pixel sees the momentum transfer q = k (ŝ − ẑ) of its centre (``Geometry.q_vectors``, Å⁻¹, exact
Ewald-sphere geometry, lab frame: z along the beam, x horizontal, y vertical).  Three orientational ensembles:

Isotropic (``orientation="isotropic"``)
    The Debye (1915) formula of :func:`xstructure.simulate`, which depends on |q| only,
    I(q) = Σ_i f_i² + Σ_{i≠j} f_i f_j sin(q r_ij)/(q r_ij).  The molecular part is computed on a uniform q grid
    spanning the pixels' |q| and interpolated by a cubic spline; the step h ≤ 0.05 / D (D the molecule's
    bounding-box diagonal, an upper bound on r_ij) keeps the spline error of every sin(q r)/(q r) term below
    (5/384)(h r)⁴ ≈ 1e-7 of its amplitude.  The grid has at least 4096 points; when that is more than the
    pixels, the pixels are computed directly.  The atomic part Σ f_i² is computed at every pixel.

Aligned (``orientation="aligned"``; photoselection by a linearly polarised pump)
    A molecule-frame axis d̂ (``dipole``, e.g. the transition dipole) is distributed axially symmetrically about
    the lab axis ê (``axis``, the pump polarisation), uniformly in the rotation about d̂, with Legendre moments
    a_l = <P_l(cos β)>, cos β = d̂_lab·ê (``p2``, ``p4``).  With the plane-wave (Rayleigh) expansion of
    exp(i q·r) and the spherical-harmonic addition theorem used twice, the orientational average is

        I(q) = Σ_{l even} i^l (2l+1) a_l P_l(q̂·ê) Σ_{i,j} f_i f_j j_l(q r_ij) P_l(r̂_ij·d̂)
             = I_0(q) + P_2(q̂·ê) I_2(q) + P_4(q̂·ê) I_4(q),

        I_2(q) = −5 a_2 Σ_{i≠j} f_i f_j j_2(q r_ij) P_2(r̂_ij·d̂),
        I_4(q) = +9 a_4 Σ_{i≠j} f_i f_j j_4(q r_ij) P_4(r̂_ij·d̂),

    I_0 the Debye intensity (odd l cancel between ij and ji; i = j terms vanish for l > 0 since j_l(0) = 0).
    The series stops at l = 4, exact for densities that are polynomials of degree ≤ 4 in cos β, such as the
    cos² β of one-photon photoselection (a_2 = 2/5, a_4 = 0, the defaults).  See Baskin & Zewail,
    ChemPhysChem 7, 1562 (2006); Lorenz, Møller & Henriksen, New J. Phys. 12, 113022 (2010); Biasin et al.,
    J. Synchrotron Rad. 25, 306 (2018).  I_0, I_2 and I_4 are splined like the isotropic pattern
    (:func:`anisotropic_components` gives them on any q grid).

Fixed (``orientation="fixed"``)
    The coordinates are taken as lab-frame positions and I(q) = |Σ_j f_j(|q|) exp(i q·r_j)|² at every pixel
    (numpy float64, chunked over pixels; cost ∝ pixels × atoms per geometry).

Signals follow :func:`xstructure.simulate`: 'total', 'atomic' (Σ f²), 'molecular' (total − atomic) and
'sM' = q I_mol / I_at.

Detector corrections (X-rays only; electrons get none): the intensity signals are multiplied by the
polarisation factor ``Geometry.polarization(polarization, polarization_offset)`` (pyFAI's convention) and by
the relative solid angle cos³ α (``Geometry.solid_angle``).  sM, a ratio of two intensities recorded with the
same pixel factors, is never corrected.

Background and noise (signals 'total' and 'atomic' only): ``background`` adds a flat level of
``background × mean(image)`` to every pixel of each frame's corrected image, i.e. a background whose total
is the fraction ``background`` of the scattered signal.  With ``photons``, each frame is scaled so that its
expected counts (signal plus background) sum to ``photons``, Poisson counts are drawn, and the recorded
value is ``gain × counts``.
"""

from __future__ import annotations

import math

import numpy as np

from .._backend import to_numpy
from .._validate import unit_vector
from ..factors import form_factor_table
from ..scattering import PROBES, SIGNALS, as_q, simulate
from ..structures import to_batches
from .geometry import Geometry

__all__ = ["simulate_detector", "anisotropic_components", "ORIENTATIONS"]

ORIENTATIONS = ("isotropic", "aligned", "fixed")

_MIN_GRID = 4096        # fewest points of the uniform q grid that is splined onto the pixels
_GRID_STEP_R = 0.05     # grid step times the largest interatomic distance (see the module docstring)
_CHUNK = 1 << 21        # elements of the largest temporary (pixels × atoms, pairs × q) per step


# ---------------------------------------------------------------------------------------------- validation
def _moment(name, value, low) -> float:
    try:
        a = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(a) or a < low - 1e-12 or a > 1 + 1e-12:
        raise ValueError(f"{name} = <P{name[1]}(cos β)> must lie in [{low:.4g}, 1], got {value!r}")
    return a


def _non_negative(name, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _positions(batch) -> np.ndarray:
    pos = to_numpy(batch.positions, np.float64)
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions contain NaN or inf")
    return pos


def _probe_energy(probe, energy_kev, geometry):
    probe = geometry.probe if probe is None else probe
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}: use one of {PROBES}")
    if energy_kev is None and probe == "electron":
        energy_kev = geometry.electron_energy_kev
    return probe, energy_kev


# ---------------------------------------------------------------------------------------------- physics
def legendre_p(l, c):
    c2 = c * c
    return 0.5 * (3.0 * c2 - 1.0) if l == 2 else (35.0 * c2 * c2 - 30.0 * c2 + 3.0) / 8.0


def _atomic(numbers, q, probe, energy_kev) -> np.ndarray:
    """Σ_i f_i(q)² for (K,) q, chunked."""
    out = np.empty(q.size)
    for s in range(0, q.size, _CHUNK // 8):
        elements, species, f = form_factor_table(numbers, q[s:s + _CHUNK // 8], probe, energy_kev)
        out[s:s + _CHUNK // 8] = np.bincount(species, minlength=len(elements)) @ (f * f)
    return out


def _legendre_sums(numbers, pos, q, dhat, probe, energy_kev, ls) -> dict:
    """S_l[b, k] = Σ_{i≠j} f_i f_j j_l(q_k r_ij) P_l(r̂_ij·d̂) for l in ls; pos (B, N, 3), q (Q,)."""
    from scipy.special import (
        spherical_jn,  # loaded on use: keeps `import xstructure` fast
    )

    B, N, _ = pos.shape
    out = {l: np.zeros((B, q.size)) for l in ls}
    if N < 2 or not ls:
        return out
    elements, species, f = form_factor_table(numbers, q, probe, energy_kev)
    E = len(elements)
    iu, ju = np.triu_indices(N, 1)
    a, b = np.minimum(species[iu], species[ju]), np.maximum(species[iu], species[ju])
    types, ptype = np.unique(a * E + b, return_inverse=True)          # pair types present
    F = 2.0 * f[types // E] * f[types % E]                            # (T, Q), factor 2 for ij and ji
    onehot = (ptype[None, :] == np.arange(len(types))[:, None]).astype(np.float64)   # (T, P)
    step = max(1, _CHUNK // max(1, q.size))
    for g in range(B):
        d = pos[g, ju] - pos[g, iu]
        r = np.linalg.norm(d, axis=1)
        cos = np.divide(d @ dhat, r, out=np.zeros_like(r), where=r > 0)
        for s in range(0, r.size, step):
            x = np.multiply.outer(r[s:s + step], q)
            for l in ls:
                S = onehot[:, s:s + step] @ (legendre_p(l, cos[s:s + step])[:, None] * spherical_jn(l, x))
                out[l][g] += np.einsum("tq,tq->q", F, S)
    return out


def _radial_parts(numbers, pos, q, *, dhat, a2, a4, probe, energy_kev, num_threads):
    """(I_mol, I_2, I_4), each (B, Q), on a 1D q grid (I_2, I_4 None when not aligned)."""
    i_mol = simulate((numbers, pos), q, probe=probe, signal="molecular", energy_kev=energy_kev,
                     num_threads=num_threads)
    if dhat is None:
        return i_mol, None, None
    ls = [l for l, a in ((2, a2), (4, a4)) if a != 0.0]
    S = _legendre_sums(numbers, pos, q, dhat, probe, energy_kev, ls)
    i2 = -5.0 * a2 * S[2] if 2 in S else np.zeros_like(i_mol)
    i4 = 9.0 * a4 * S[4] if 4 in S else np.zeros_like(i_mol)
    return i_mol, i2, i4


def _radial_on_pixels(numbers, pos, qpix, **kw):
    """_radial_parts at the pixels' |q|: on a fine uniform grid and splined, or directly for few pixels."""
    from scipy.interpolate import (
        CubicSpline,  # loaded on use: keeps `import xstructure` fast
    )

    q_lo, q_hi = float(qpix.min()), float(qpix.max())
    diameter = float(np.max(np.linalg.norm(np.ptp(pos, axis=1), axis=-1))) if pos.shape[1] > 1 else 0.0
    n = max(_MIN_GRID, int(math.ceil((q_hi - q_lo) * diameter / _GRID_STEP_R)) + 1)
    if n >= qpix.size or q_hi == q_lo:
        return _radial_parts(numbers, pos, qpix, **kw)
    grid = np.linspace(q_lo, q_hi, n)
    return tuple(None if p is None else CubicSpline(grid, p, axis=-1)(qpix)
                 for p in _radial_parts(numbers, pos, grid, **kw))


def _fixed_intensity(numbers, pos, qvec, probe, energy_kev) -> np.ndarray:
    """|Σ_j f_j(|q|) exp(i q·r_j)|² for pos (B, N, 3) Å and qvec (K, 3) Å⁻¹ -> (B, K), chunked."""
    B, N, _ = pos.shape
    qmag = np.linalg.norm(qvec, axis=1)
    out = np.empty((B, qvec.shape[0]))
    step = max(1, _CHUNK // N)
    for s in range(0, qvec.shape[0], step):
        qc = qvec[s:s + step]
        elements, species, f = form_factor_table(numbers, qmag[s:s + step], probe, energy_kev)   # (E, C)
        onehot = (species[None, :] == np.arange(len(elements))[:, None]).astype(np.float64)      # (E, N)
        per = max(1, _CHUNK // (N * qc.shape[0]))                                               # geometries
        for g in range(0, B, per):
            phase = pos[g:g + per] @ qc.T                                                        # (G, N, C)
            re = np.einsum("ec,gec->gc", f, onehot @ np.cos(phase))
            im = np.einsum("ec,gec->gc", f, onehot @ np.sin(phase))
            out[g:g + per, s:s + step] = re * re + im * im
    return out


def _signal(kind, i_at, i_mol, q):
    if kind == "total":
        return i_at + i_mol
    if kind == "atomic":
        return np.broadcast_to(i_at, i_mol.shape).copy()
    if kind == "molecular":
        return i_mol
    return np.divide(q * i_mol, i_at, out=np.zeros_like(i_mol), where=i_at > 0)      # sM


# ---------------------------------------------------------------------------------------------- public
def anisotropic_components(structures, q, *, dipole, p2: float = 0.4, p4: float = 0.0, probe: str = "xray",
                           energy_kev: float | None = None):
    """Legendre components of the scattering of molecules aligned about a lab axis ê.

    The pattern is I(q) = I_0(q) + P_2(q̂·ê) I_2(q) + P_4(q̂·ê) I_4(q) (see the module docstring), with
    I_2 = −5⟨P_2⟩ Σ_{i≠j} f_i f_j j_2(q r_ij) P_2(r̂_ij·d̂) and I_4 = +9⟨P_4⟩ Σ_{i≠j} f_i f_j j_4(q r_ij) P_4(r̂_ij·d̂).

    Parameters
    ----------
    structures : ase.Atoms, list, str or tuple
        As for :func:`xstructure.simulate` (ase.Atoms, list, file, or ``(numbers, positions)`` with positions
        (N, 3) or (B, N, 3) in Å; torch and cupy arrays are copied to numpy).
    q : array_like
        (Q,) momentum transfer in Å⁻¹.
    dipole : array_like
        (3,) molecule-frame axis d̂ in the structure's coordinates (normalised here).
    p2, p4 : float, optional
        ⟨P_2(cos β)⟩ in [−1/2, 1] and ⟨P_4(cos β)⟩ in [−3/7, 1] of the angle β between d̂ and ê; 0.4 and 0 are
        the cos² β distribution of one-photon photoselection.
    probe : {'xray', 'electron'}, optional
        X-rays (electrons²) or electrons (Å²).
    energy_kev : float or None, optional
        Electron kinetic energy in keV for the relativistic factor (electrons only).

    Returns
    -------
    I_0, I_2, I_4 : numpy.ndarray
        float64, (Q,) for one structure, else (B, Q), in electrons² (X-rays) or Å² (electrons). I_0 is the Debye
        total.
    """
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}: use one of {PROBES}")
    if dipole is None:
        raise ValueError("dipole (the molecule-frame axis, a 3-vector) is required")
    dhat = unit_vector("dipole", dipole)
    a2, a4 = _moment("p2", p2, -0.5), _moment("p4", p4, -3.0 / 7.0)
    q = as_q(q)
    batches, n_rows, single = to_batches(structures)
    out = [np.empty((n_rows, q.size)) for _ in range(3)]
    for b in batches:
        pos = _positions(b)
        i_mol, i2, i4 = _radial_parts(b.numbers, pos, q, dhat=dhat, a2=a2, a4=a4, probe=probe,
                                      energy_kev=energy_kev, num_threads=0)
        for o, v in zip(out, (i_mol + _atomic(b.numbers, q, probe, energy_kev), i2, i4)):
            o[b.rows] = v
    return tuple(o[0] for o in out) if single else tuple(out)


def simulate_detector(structures, geometry, *, probe: str | None = None, signal: str = "total",
                      orientation: str = "isotropic", axis=(1.0, 0.0, 0.0), dipole=None, p2: float = 0.4,
                      p4: float = 0.0, polarization: float | None = 0.99, polarization_offset: float = 0.0,
                      solid_angle: bool = True, photons: float | None = None, background: float = 0.0,
                      gain: float = 1.0, rng=None, energy_kev: float | None = None, num_threads: int = 0):
    """Detector images of molecules, isotropic, aligned or in a fixed orientation.

    Also reached as ``xstructure.simulate(structures, geometry, ...)``.

    Parameters
    ----------
    structures : ase.Atoms, list, str or tuple
        As for :func:`xstructure.simulate`: an ase.Atoms, a list of them, a file, or ``(numbers, positions)``
        with positions (N, 3) or (B, N, 3) in Å (numpy, torch or cupy; copied to float64 numpy).
    geometry : Geometry
        The detector, of shape (n1, n2).
    probe : {'xray', 'electron'} or None, optional
        Default: ``geometry.probe``.
    signal : {'total', 'atomic', 'molecular', 'sM'}, optional
        As in :func:`xstructure.simulate`.
    orientation : {'isotropic', 'aligned', 'fixed'}, optional
        ``"isotropic"`` (Debye), ``"aligned"`` (``dipole`` distributed about ``axis`` with moments ``p2``,
        ``p4``) or ``"fixed"`` (the positions are lab-frame coordinates).
    axis : array_like, optional
        (3,) lab-frame alignment axis ê (pump polarisation); x horizontal, y vertical, z along the beam.
    dipole : array_like or None, optional
        (3,) molecule-frame axis d̂ for ``"aligned"`` (required there, refused elsewhere).
    p2, p4 : float, optional
        ⟨P_2(cos β)⟩ in [−1/2, 1] and ⟨P_4(cos β)⟩ in [−3/7, 1]; 0.4 and 0 are cos² photoselection.
    polarization : float or None, optional
        X-rays: pyFAI polarisation factor in [−1, 1] (1: horizontal), None for no factor.
    polarization_offset : float, optional
        X-rays: rotation of the polarisation plane from x, rad.
    solid_angle : bool, optional
        X-rays: multiply by the relative solid angle cos³ α.
    photons : float or None, optional
        Expected counts per frame, signal plus background; None for the noiseless image.
    background : float, optional
        Flat background per pixel, as a fraction of the frame's mean corrected pixel value (≥ 0).
    gain : float, optional
        Recorded value per count (applies with ``photons`` only).
    rng : numpy.random.Generator, int or None, optional
        Generator or seed for the Poisson draws.
    energy_kev : float or None, optional
        Electron kinetic energy in keV for the relativistic factor γ; default ``geometry.electron_energy_kev``
        for electrons.
    num_threads : int, optional
        CPU threads of the Debye kernel (0: OpenMP's default).

    Returns
    -------
    numpy.ndarray
        float64 (n1, n2) for one structure, else (B, n1, n2), in electrons² (X-rays) or Å² (electrons) per unit
        of the corrections, or in recorded counts × gain with ``photons``.

    Raises
    ------
    ValueError
        An unknown probe, signal or orientation; a missing, zero or non-finite dipole or axis; p2 or p4 out of
        range; negative photons, background or gain; noise or background with a signal that can be negative;
        and everything :func:`xstructure.simulate` refuses.
    """
    if not isinstance(geometry, Geometry):
        raise ValueError(f"geometry must be an xstructure Geometry, got {type(geometry).__name__}")
    probe, energy_kev = _probe_energy(probe, energy_kev, geometry)
    if signal not in SIGNALS:
        raise ValueError(f"unknown signal {signal!r}: use one of {SIGNALS}")
    if orientation not in ORIENTATIONS:
        raise ValueError(f"unknown orientation {orientation!r}: use one of {ORIENTATIONS}")
    dhat, a2, a4 = None, 0.0, 0.0
    if orientation == "aligned":
        if dipole is None:
            raise ValueError("orientation='aligned' needs dipole, the molecule-frame axis (a 3-vector)")
        dhat = unit_vector("dipole", dipole)
        ehat = unit_vector("axis", axis)
        a2, a4 = _moment("p2", p2, -0.5), _moment("p4", p4, -3.0 / 7.0)
    elif dipole is not None:
        raise ValueError(f"dipole applies to orientation='aligned' only, not {orientation!r}")
    background, gain = _non_negative("background", background), _non_negative("gain", gain)
    if photons is not None:
        photons = _non_negative("photons", photons)
    if (photons is not None or background != 0) and signal not in ("total", "atomic"):
        raise ValueError(f"photons and background need a non-negative intensity (signal 'total' or 'atomic'), "
                         f"not signal={signal!r}")
    factor = None
    if probe == "xray" and signal != "sM":
        factor = np.ones(geometry.shape)
        if polarization is not None:
            factor = factor * geometry.polarization(polarization, polarization_offset)
        if solid_angle:
            factor = factor * geometry.solid_angle

    qpix = geometry.q.ravel()
    batches, n_rows, single = to_batches(structures)
    out = np.empty((n_rows, qpix.size))
    for b in batches:
        pos = _positions(b)
        i_at = _atomic(b.numbers, qpix, probe, energy_kev)
        if orientation == "fixed":
            qvec = geometry.q_vectors.reshape(-1, 3)
            i_mol = _fixed_intensity(b.numbers, pos, qvec, probe, energy_kev) - i_at
        else:
            i_mol, i2, i4 = _radial_on_pixels(b.numbers, pos, qpix, dhat=dhat, a2=a2, a4=a4, probe=probe,
                                              energy_kev=energy_kev, num_threads=num_threads)
            if dhat is not None:
                qvec = geometry.q_vectors.reshape(-1, 3)
                c = np.divide(qvec @ ehat, qpix, out=np.zeros_like(qpix), where=qpix > 0)
                i_mol = i_mol + legendre_p(2, c) * i2 + legendre_p(4, c) * i4
        out[b.rows] = _signal(signal, i_at, i_mol, qpix)

    if factor is not None:
        out *= factor.ravel()
    if background:
        out += background * out.mean(axis=1, keepdims=True)
    if photons is not None:
        total = out.sum(axis=1, keepdims=True)
        lam = out * np.divide(photons, total, out=np.zeros_like(total), where=total > 0)
        out = gain * np.random.default_rng(rng).poisson(lam).astype(np.float64)
    out = out.reshape((n_rows, *geometry.shape))
    return out[0] if single else out
