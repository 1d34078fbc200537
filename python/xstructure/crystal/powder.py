"""Powder diffraction of a crystal: Bragg peak lists and profile-broadened patterns.

Peaks (:func:`powder_peaks`)
    Every reciprocal-lattice point G = h a* + k b* + l c* with 0 < |G| = 1/d and 2θ = 2 arcsin(λ / 2d) in the
    requested range is a reflection, with intensity

        I(hkl) = |F(hkl)|² · LP(θ),        LP(θ) = (1 + cos² 2θ) / (sin² θ cos θ),

    F from :func:`xstructure.crystal.structure_factors` (the compiled kernel; F = Σ occ f(s) exp(−B s²)
    exp(+2πi h·x), s = sinθ/λ = 1/2d).  LP is the Lorentz–polarisation factor of an unpolarised beam without
    monochromator, the one pymatgen's ``XRDCalculator`` uses.  Reflections whose 2θ lie within ``tolerance``
    degrees of their neighbour (sorted by 2θ, so chains merge) become one peak: intensities add and the
    multiplicity is the number of merged hkl, Friedel mates included.  No symmetry analysis is made: the
    symmetry-equivalent reflections are all enumerated (as pymatgen does), so NaCl 200 has multiplicity 6 and
    111 has 8; accidental coincidences (cubic 333 and 511) merge too and are listed in ``families``.  Only
    one Friedel half-space is computed: the form factors are real (no anomalous dispersion), so
    |F(−h)| = |F(h)|.  Peaks weaker than ``min_intensity`` percent of the strongest (systematic absences,
    whose |F|² is rounding noise) are left out, pymatgen's threshold by default.

Patterns (:func:`powder_pattern`)
    I(x) = background + Σ_peaks I_p φ(x − x_p; Γ_p), with φ a unit-area profile (Gaussian, Lorentzian or
    pseudo-Voigt η L + (1 − η) G of one FWHM) and the Caglioti width Γ² = U tan²θ + V tanθ + W (deg²).  The
    pattern's unit is the peak intensity per degree 2θ (per Å⁻¹ on a q grid).  Profiles are cut at ±20 FWHM
    and the Lorentzian part rescaled by 1 / ((2/π) arctan 40) = 1.016 so that each profile keeps unit area.

Wavelengths (Å) by name: the Kα1, Kα2 and Kβ1 lines of International Tables for Crystallography Vol. C,
Table 4.2.2.1, rounded as in pymatgen's ``WAVELENGTHS``, and Kα = (2 Kα1 + Kα2) / 3.  ``doublet=True``
adds for a named Kα line a Kα2 peak to every Kα1 peak, from a line of half the Kα1 line's intensity (so its
peak is 0.5 |F|² LP(θ_Kα2), LP at its own angle).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import _backend
from . import structure_factors as sf

__all__ = ["PowderPeaks", "powder_peaks", "powder_pattern", "WAVELENGTHS", "lorentz_polarization", "wavelength_value",
           "profile_block",
           "PROFILE_CUT"]

#: X-ray lines in Å (the same values as pymatgen.analysis.diffraction.xrd.WAVELENGTHS).
WAVELENGTHS = {
    "CuKa": 1.54184, "CuKa2": 1.54439, "CuKa1": 1.54056, "CuKb1": 1.39222,
    "MoKa": 0.71073, "MoKa2": 0.71359, "MoKa1": 0.70930, "MoKb1": 0.63229,
    "CrKa": 2.29100, "CrKa2": 2.29361, "CrKa1": 2.28970, "CrKb1": 2.08487,
    "FeKa": 1.93735, "FeKa2": 1.93998, "FeKa1": 1.93604, "FeKb1": 1.75661,
    "CoKa": 1.79026, "CoKa2": 1.79285, "CoKa1": 1.78896, "CoKb1": 1.63079,
    "AgKa": 0.560885, "AgKa2": 0.563813, "AgKa1": 0.559421, "AgKb1": 0.497082,
}
_KA2_RATIO = 0.5    # I(Kα2) / I(Kα1)
PROFILE_CUT = 20.0         # profiles are cut at ±PROFILE_CUT FWHM
_PROFILES = ("pseudo-voigt", "gaussian", "lorentzian")


@dataclass
class PowderPeaks:
    """Bragg peaks of a powder, sorted by 2θ: P peaks, each a family of merged reflections.

    Attributes
    ----------
    two_theta : numpy.ndarray
        (P,) peak positions 2θ in degrees.
    d : numpy.ndarray
        (P,) interplanar spacings in Å.
    hkl : numpy.ndarray
        (P, 3) int: one hkl per peak, the largest of its family in (h, k, l) order.
    multiplicity : numpy.ndarray
        (P,) int: the number of reflections merged into each peak.
    intensity : numpy.ndarray
        (P,) strongest = 100 when scaled, else Σ ``|F|²`` LP (F in the factors' unit).
    wavelength : numpy.ndarray
        (P,) the line of each peak in Å (Kα1 or Kα2 with ``doublet=True``).
    """

    two_theta: np.ndarray     # (P,) degrees
    d: np.ndarray             # (P,) Å
    hkl: np.ndarray           # (P, 3) int: one hkl per peak, the largest of its family in (h, k, l) order
    multiplicity: np.ndarray  # (P,) int: number of reflections merged into the peak
    intensity: np.ndarray     # (P,) strongest = 100 when scaled, else Σ |F|² LP (F in the factors' unit)
    wavelength: np.ndarray = field(repr=False)  # (P,) Å: the line of each peak (Kα1 or Kα2 with doublet=True)
    _refl: np.ndarray = field(repr=False, default=None)      # (R, 3) the half-space reflections, by 2θ
    _spans: np.ndarray = field(repr=False, default=None)     # (P, 2): peak p merged _refl[a:b] (and −_refl[a:b])

    def __len__(self) -> int:
        return len(self.two_theta)

    @property
    def families(self) -> list:
        """P int arrays (multiplicity_p, 3): every hkl merged into each peak, Friedel mates included, from the
        largest in (h, k, l) order down."""
        out = []
        for a, b in self._spans:
            m = np.concatenate([self._refl[a:b], -self._refl[a:b]])
            out.append(m[np.lexsort((-m[:, 2], -m[:, 1], -m[:, 0]))])
        return out

    @property
    def q(self) -> np.ndarray:
        """(P,) 2π / d in Å⁻¹."""
        return 2 * np.pi / self.d

    def strongest(self, n: int) -> np.ndarray:
        """Indices of the ``n`` strongest peaks, in order of 2θ."""
        return np.sort(np.argsort(-self.intensity, kind="stable")[:max(0, int(n))])

    def to_csv(self, path: str) -> None:
        """Write every peak as CSV: two_theta_deg, d_A, h, k, l, multiplicity, intensity, wavelength_A."""
        table = np.column_stack([self.two_theta, self.d, self.hkl, self.multiplicity, self.intensity,
                                 self.wavelength])
        np.savetxt(path, table, delimiter=",", fmt=["%.6f", "%.6f", "%d", "%d", "%d", "%d", "%.6g", "%.6f"],
                   header="two_theta_deg,d_A,h,k,l,multiplicity,intensity,wavelength_A", comments="")


def wavelength_value(text):
    """A wavelength as the command line gives it.

    Parameters
    ----------
    text : str or float
        A number in Å, or a line name such as ``"CuKa1"``.

    Returns
    -------
    float or str
        The number as a float, or the name unchanged (for :func:`powder_peaks` to look up).
    """
    try:
        return float(text)
    except (TypeError, ValueError):
        return text


def lorentz_polarization(two_theta) -> np.ndarray:
    """The Lorentz-polarisation factor of a powder pattern.

    LP = (1 + cos² 2θ) / (sin² θ cos θ), for an unpolarised beam without a monochromator.

    Parameters
    ----------
    two_theta : array_like
        2θ in degrees, any shape.

    Returns
    -------
    numpy.ndarray
        LP, dimensionless, shaped like ``two_theta``.
    """
    t = np.radians(np.asarray(two_theta, dtype=np.float64)) / 2
    return (1 + np.cos(2 * t) ** 2) / (np.sin(t) ** 2 * np.cos(t))


def _wavelength(wavelength, doublet: bool):
    """[(λ, weight)] in Å: one line, or Kα1 and Kα2 for doublet=True."""
    name = None
    if isinstance(wavelength, str):
        key = wavelength.strip().replace("α", "a").replace("β", "b")
        names = {k.lower(): k for k in WAVELENGTHS}
        if key.lower() in names:
            name = names[key.lower()]
            lam = WAVELENGTHS[name]
        else:
            try:
                lam = float(key)
            except ValueError:
                raise ValueError(f"unknown wavelength {wavelength!r}: give Å or one of "
                                 f"{', '.join(WAVELENGTHS)}") from None
    elif isinstance(wavelength, (int, float, np.integer, np.floating)) and not isinstance(wavelength, bool):
        lam = float(wavelength)
    else:
        raise ValueError(f"wavelength must be a number of Å or a line name such as 'CuKa1', got {wavelength!r}")
    if not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"wavelength must be a positive number of Å, got {wavelength!r}")
    if not doublet:
        return [(lam, 1.0)]
    if name is None or not (name.endswith("Ka") or name.endswith("Ka1")):
        raise ValueError(f"the Kα doublet (--doublet, doublet=True) needs a named Kα line such as 'CuKa1' or "
                         f"'CuKa', got {wavelength!r}")
    element = name[:2]
    return [(WAVELENGTHS[element + "Ka1"], 1.0), (WAVELENGTHS[element + "Ka2"], _KA2_RATIO)]


def _range(two_theta_range):
    try:
        lo, hi = (float(v) for v in two_theta_range)
    except (TypeError, ValueError):
        raise ValueError(f"two_theta_range must be (min, max) in degrees, got {two_theta_range!r}") from None
    if not (0 <= lo < hi <= 180):
        raise ValueError(f"two_theta_range must satisfy 0 <= min < max <= 180 degrees, got {two_theta_range!r}")
    return lo, hi


def _half_space_hkl(reciprocal: np.ndarray, g_min: float, g_max: float):
    """hkl in the half-space h > 0 | (h = 0, k > 0) | (h = k = 0, l > 0) with g_min <= |G| <= g_max; and |G|."""
    cell = np.linalg.inv(reciprocal.T)  # rows a, b, c: h = G·a, so |h| <= |G| |a|
    nh, nk, nl = np.floor(g_max * np.linalg.norm(cell, axis=1) + 1e-9).astype(int)
    k, l = np.meshgrid(np.arange(-nk, nk + 1), np.arange(-nl, nl + 1), indexing="ij")
    kl = np.stack([k.ravel(), l.ravel()], axis=1)
    g_kl = kl @ reciprocal[1:]
    out_hkl, out_g = [], []
    lo2, hi2 = (g_min * (1 - 1e-12)) ** 2, (g_max * (1 + 1e-12)) ** 2
    for h in range(nh + 1):
        sub, gk = kl, g_kl
        if h == 0:
            half = (kl[:, 0] > 0) | ((kl[:, 0] == 0) & (kl[:, 1] > 0))
            sub, gk = kl[half], g_kl[half]
        g2 = np.sum((gk + h * reciprocal[0]) ** 2, axis=1)
        keep = (g2 <= hi2) & (g2 >= lo2) & (g2 > 0)
        out_hkl.append(np.column_stack([np.full(keep.sum(), h), sub[keep]]))
        out_g.append(np.sqrt(g2[keep]))
    return np.concatenate(out_hkl).astype(np.int32), np.concatenate(out_g)


def _peaks(hkl, tth, g, I, first, n, lam):
    """Peak fields (one wavelength) from reflections sorted by 2θ and the runs (first, n) merged into peaks."""
    P = len(first)
    group = np.repeat(np.arange(P), n)
    members = np.concatenate([hkl, -hkl]).astype(np.int32)
    gm = np.concatenate([group, group])
    members = members[np.lexsort((-members[:, 2], -members[:, 1], -members[:, 0], gm))]
    bounds = np.r_[0, np.cumsum(2 * n)].astype(np.intp)
    return dict(two_theta=np.add.reduceat(tth, first) / n if P else tth[:0],
                d=np.add.reduceat(1 / g, first) / n if P else g[:0], hkl=members[bounds[:-1]],
                multiplicity=2 * np.asarray(n, dtype=np.int64), intensity=np.add.reduceat(I, first) if P else I[:0],
                wavelength=np.full(P, lam), refl=np.asarray(hkl, dtype=np.int32),
                spans=np.stack([first, first + n], axis=1).astype(np.intp))


def _line_peaks(c, lam, lo, hi, factors, lp, tolerance):
    """Peaks of one crystal at one wavelength, any form factors (NumPy enumeration and merging)."""
    g_max = 2 * np.sin(np.radians(hi) / 2) / lam
    g_min = 2 * np.sin(np.radians(lo) / 2) / lam
    hkl, g = _half_space_hkl(c.reciprocal, g_min, g_max)
    tth = np.degrees(2 * np.arcsin(np.clip(lam * g / 2, 0.0, 1.0)))
    keep = (tth >= lo) & (tth <= hi) & (tth < 180)
    hkl, g, tth = hkl[keep], g[keep], tth[keep]
    order = np.lexsort((-hkl[:, 2], -hkl[:, 1], -hkl[:, 0], tth))
    hkl, g, tth = hkl[order], g[order], tth[order]
    if len(hkl):
        _, F = sf.structure_factors(c, hkl=hkl, factors=factors)
        I = 2 * np.abs(F) ** 2 * (lorentz_polarization(tth) if lp else 1.0)  # 2: the Friedel mate −hkl
    else:
        I = np.zeros(0)
    first = np.r_[0, np.flatnonzero(np.diff(tth) > tolerance) + 1] if len(tth) else np.zeros(0, np.intp)
    n = np.diff(np.r_[first, len(tth)])
    return _peaks(hkl, tth, g, I, first, n, lam)


def _kernel_peaks(cells, lam, lo, hi, factors, lp, tolerance, num_threads=0, finish=None):
    """Peaks of every crystal at one wavelength, from the compiled batch kernel (Gaussian-sum factors): a dict
    of arrays per crystal for :func:`_finish`, or with ``finish=(scaled, min_intensity)`` the PowderPeaks."""
    C = len(cells)
    # every crystal's atoms grouped by type (element, in increasing Z), as the kernel takes them, in one go
    counts = np.array([len(c.numbers) for c in cells], np.int64)
    atom_off = np.zeros(C + 1, np.int64)
    np.cumsum(counts, out=atom_off[1:])
    nums = np.concatenate([c.numbers for c in cells]).astype(np.int64)
    base = sf.Z_MAX + 1
    key = np.repeat(np.arange(C, dtype=np.int64), counts) * base + nums  # (crystal, Z), sortable
    order = np.argsort(key, kind="stable")
    ukey, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    type_off = np.searchsorted(ukey // base, np.arange(C + 1)).astype(np.int64)
    local = inverse.ravel() - type_off[key // base]
    symbols = [sym for c in cells for sym in c.symbols]
    rows = [sf._gaussians(factors, [(symbols[i], int(z))]) for i, z in zip(first.tolist(), (ukey % base).tolist())]
    K = rows[0][0] if rows else 0
    cat = lambda xs, dt=np.float64: np.ascontiguousarray(np.concatenate(xs), dtype=dt)  # noqa: E731
    Bs = cat([c.b_factors for c in cells])[order]
    arrays = dict(atom_off=atom_off, type=np.ascontiguousarray(local[order], dtype=np.int32),
                  frac=cat([c.frac for c in cells])[order], occ=cat([c.occupancy for c in cells])[order],
                  B=Bs if np.any(Bs != 0) else None, type_off=type_off,
                  ga=cat([r[1] for r in rows]), gb=cat([r[2] for r in rows]), gc=cat([r[3] for r in rows]),
                  cells=np.ascontiguousarray([c.cell for c in cells], dtype=np.float64))
    r = _backend.powder_reflections(arrays, int(K), float(lam), float(lo), float(hi), float(tolerance),
                                    bool(lp), int(num_threads))
    if finish is not None:  # one line: straight to PowderPeaks, thresholded and scaled for all crystals at once
        return _kernel_finish(r, float(lam), *finish)
    first = r["peak_first"]
    n = r["peak_n"]
    spans = np.stack([first, first + n], axis=1)
    mult = 2 * n
    lams = np.full(len(n), float(lam))
    ro, po = r["refl_off"].tolist(), r["peak_off"].tolist()
    tth, d, hkl, inten, refl = r["peak_tth"], r["peak_d"], r["peak_hkl"], r["peak_I"], r["hkl"]
    out = []
    for i in range(len(cells)):
        p0, p1 = po[i], po[i + 1]
        out.append(dict(two_theta=tth[p0:p1], d=d[p0:p1], hkl=hkl[p0:p1], multiplicity=mult[p0:p1],
                        intensity=inten[p0:p1], wavelength=lams[p0:p1], refl=refl[ro[i]:ro[i + 1]],
                        spans=spans[p0:p1] - ro[i]))
    return out


def _kernel_finish(r, lam, scaled, min_intensity):
    """PowderPeaks of every crystal of one kernel call (one line): what :func:`_finish` does, vectorised."""
    po, ro = r["peak_off"], r["refl_off"]
    C = len(po) - 1
    I, n, first = r["peak_I"], r["peak_n"], r["peak_first"]
    cid = np.repeat(np.arange(C), np.diff(po))
    top = np.zeros(C)
    if len(I):
        np.maximum.at(top, cid, I)
    keep = np.flatnonzero(I > (min_intensity / 100) * top[cid])
    kc = cid[keep]
    koff = np.zeros(C + 1, np.int64)
    np.cumsum(np.bincount(kc, minlength=C), out=koff[1:])
    inten = I[keep]
    if scaled:
        inten = inten * (100.0 / np.where(top > 0, top, 1.0))[kc]
    tth, d, hkl = r["peak_tth"][keep], r["peak_d"][keep], r["peak_hkl"][keep]
    mult = 2 * n[keep]
    spans = np.stack([first[keep], first[keep] + n[keep]], axis=1) - ro[kc][:, None]
    lams = np.full(len(keep), lam)
    refl = r["hkl"]
    ko, rl = koff.tolist(), ro.tolist()
    return [PowderPeaks(two_theta=tth[a:b], d=d[a:b], hkl=hkl[a:b], multiplicity=mult[a:b], intensity=inten[a:b],
                        wavelength=lams[a:b], _refl=refl[r0:r1], _spans=spans[a:b])
            for a, b, r0, r1 in zip(ko[:-1], ko[1:], rl[:-1], rl[1:])]


def _finish(parts, scaled, min_intensity):
    """One PowderPeaks from the peaks of each line (weighted already): sorted, thresholded, scaled."""
    if len(parts) == 1:
        merged = dict(parts[0])
    else:
        offsets = np.cumsum([0] + [len(p["refl"]) for p in parts[:-1]])
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "spans"}
        merged["spans"] = np.concatenate([p["spans"] + o for p, o in zip(parts, offsets)])
    refl, spans = merged.pop("refl"), merged.pop("spans")
    I = merged["intensity"]
    top = I.max() if len(I) else 0.0
    keep = I > min_intensity / 100 * top if top > 0 else np.zeros(len(I), bool)
    if len(parts) > 1:  # interleave the lines' peaks by 2θ
        order = np.argsort(merged["two_theta"], kind="stable")
        keep = order[keep[order]]
    elif keep.all():
        keep = slice(None)
    out = {k: v[keep] for k, v in merged.items()}
    if scaled and top > 0:
        out["intensity"] = out["intensity"] * (100.0 / top)
    return PowderPeaks(_refl=refl, _spans=spans[keep], **out)


def powder_peaks(atoms, wavelength=1.5406, two_theta_range=(5, 90), *, factors="xray", b_factors=None,
                 occupancy=None, lorentz_polarization: bool = True, tolerance: float = 1e-5, scaled: bool = True,
                 doublet: bool = False, min_intensity: float = 1e-3, num_threads: int = 0):
    """Bragg peaks of a powder (a list of crystals: a list of results, computed in one batch).

    Parameters
    ----------
    atoms : ase.Atoms, str, os.PathLike, Cell or list
        ``ase.Atoms`` with a cell, a file ase.io reads (CIF, ...), a :class:`~xstructure.crystal.Cell`,
        or a list of them.
    wavelength : float or str, optional
        Å (default 1.5406 Å, Cu Kα1 rounded), or a line name from :data:`WAVELENGTHS`
        ("CuKa1", "CuKa" = (2 Kα1 + Kα2) / 3, "MoKa1", ...).
    two_theta_range : tuple, optional
        (min, max) 2θ in degrees, 0 <= min < max <= 180; reflections on the ends included.
    factors : {'xray', 'electron', 'Z'} or callable, optional
        ``"xray"`` (Waasmaier–Kirfel), ``"electron"``, ``"Z"`` or a callable ``f(symbol, s)``
        (s = sinθ/λ in Å⁻¹), as in :func:`~xstructure.crystal.structure_factors`.  "xray" and "Z" run
        entirely in the compiled kernel (enumeration, F, LP, merging; OpenMP over crystals).
    b_factors, occupancy : float, array_like or None, optional
        per-atom isotropic B (Å²) and occupancies; default from the atoms, else 0 and 1.
    lorentz_polarization : bool, optional
        multiply |F|² by LP(θ) = (1 + cos² 2θ) / (sin² θ cos θ).
    tolerance : float, optional
        reflections closer than this in 2θ (degrees, >= 0) are one peak (keep it > 0: equivalent
        reflections differ by rounding, ~1e-13°).
    scaled : bool, optional
        strongest peak = 100; else Σ |F|² LP over the merged reflections.
    doublet : bool, optional
        a named Kα line only: Kα1 peaks plus Kα2 peaks (line weight 0.5, LP at their own 2θ), in
        one list; ``wavelength`` tells them apart.
    min_intensity : float, optional
        leave out peaks weaker than this percent of the strongest (pymatgen's 1e-3 default;
        0 keeps every reflection, systematic absences included).
    num_threads : int, optional
        CPU threads (0: OpenMP's default).

    Returns
    -------
    PowderPeaks or list of PowderPeaks
        The peaks, sorted by 2θ (a list of them for a list of crystals).
    """
    single = not isinstance(atoms, (list, tuple))
    crystals = [atoms] if single else list(atoms)
    lines = _wavelength(wavelength, doublet)
    lo, hi = _range(two_theta_range)
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"tolerance must be a number of degrees >= 0, got {tolerance!r}")
    if not (np.isfinite(min_intensity) and 0 <= min_intensity < 100):
        raise ValueError(f"min_intensity must be a percentage in [0, 100), got {min_intensity!r}")
    cells = [sf.as_cell(a, occupancy, b_factors) for a in crystals]
    compiled = isinstance(factors, str) and factors in ("xray", "Z")
    if compiled and len(lines) == 1 and lines[0][1] == 1.0:
        out = _kernel_peaks(cells, lines[0][0], lo, hi, factors, lorentz_polarization, tolerance, num_threads,
                            finish=(scaled, min_intensity))
        return out[0] if single else out
    parts = [[] for _ in cells]
    for lam, weight in lines:
        if compiled:
            per = _kernel_peaks(cells, lam, lo, hi, factors, lorentz_polarization, tolerance, num_threads)
        else:
            per = [_line_peaks(c, lam, lo, hi, factors, lorentz_polarization, tolerance) for c in cells]
        for i, p in enumerate(per):
            if weight != 1.0:
                p["intensity"] = p["intensity"] * weight
            parts[i].append(p)
    out = [_finish(p, scaled, min_intensity) for p in parts]
    return out[0] if single else out


def profile_block(x, centre, fwhm, profile, eta):
    """Unit-area peak profiles of a block of peaks on a grid.

    Parameters
    ----------
    x : numpy.ndarray
        (n,) grid, in the unit of ``centre`` (degrees 2θ, or Å⁻¹).
    centre : numpy.ndarray
        (p,) peak positions.
    fwhm : numpy.ndarray
        (p,) full widths at half maximum, same unit.
    profile : {'gaussian', 'lorentzian', 'pseudo-voigt'}
        Profile shape.
    eta : float
        Lorentzian fraction of the pseudo-Voigt, 0–1.

    Returns
    -------
    numpy.ndarray
        (p, n) profiles of unit area (per unit of x), zero beyond ±``PROFILE_CUT`` FWHM.
    """
    dx = x[None, :] - centre[:, None]
    w = fwhm[:, None]
    u = (dx / w) ** 2
    out = 0.0
    if profile in ("gaussian", "pseudo-voigt"):
        gauss = (2 / w) * np.sqrt(np.log(2) / np.pi) * np.exp(-4 * np.log(2) * u)
        out = gauss if profile == "gaussian" else (1 - eta) * gauss
    if profile in ("lorentzian", "pseudo-voigt"):
        lor = (2 / (np.pi * w)) / (1 + 4 * u) / ((2 / np.pi) * np.arctan(2 * PROFILE_CUT))
        out = out + (lor if profile == "lorentzian" else eta * lor)
    return np.where(u <= PROFILE_CUT * PROFILE_CUT, out, 0.0)


def _broaden(x, centre, fwhm, height, profile, eta, chunk=256, max_block=1 << 22):
    """Σ_p height_p φ_p(x) on an increasing grid x, peaks sorted by centre."""
    out = np.zeros(len(x))
    p = 0
    while p < len(centre):
        q = min(len(centre), p + chunk)
        a = np.searchsorted(x, np.min(centre[p:q] - PROFILE_CUT * fwhm[p:q]), "left")
        b = np.searchsorted(x, np.max(centre[p:q] + PROFILE_CUT * fwhm[p:q]), "right")
        if q - p > 1 and (q - p) * (b - a) > max_block:  # a chunk over a wide window: split it
            chunk = max(1, (q - p) // 2)
            continue
        if b > a:
            out[a:b] += height[p:q] @ profile_block(x[a:b], centre[p:q], fwhm[p:q], profile, eta)
        p = q
    return out


def powder_pattern(atoms, two_theta=None, wavelength=1.5406, *, q=None, profile: str = "pseudo-voigt",
                   U: float = 0.0, V: float = 0.0, W: float = 0.01, eta: float = 0.5, doublet: bool = False,
                   b_factors=None, occupancy=None, factors="xray", background=0.0, scaled: bool = True,
                   lorentz_polarization: bool = True, tolerance: float = 1e-5):
    """Powder pattern: the peaks of :func:`powder_peaks` broadened by unit-area profiles.

    Parameters
    ----------
    atoms : ase.Atoms, str, os.PathLike, Cell or list
        as in :func:`powder_peaks`; a list of crystals gives a (B, n) intensity array.
    two_theta : array_like or None, optional
        (n,) increasing grid of 2θ in degrees within [0, 180]; default ``np.linspace(5, 90, 8501)``.
    wavelength : float or str, optional
        Å or a line name (see :func:`powder_peaks`).
    q : array_like or None, optional
        (n,) increasing grid of q = 4π sinθ/λ in Å⁻¹ instead of ``two_theta`` (λ the Kα1 line with
        ``doublet=True``, so Kα2 peaks appear at their apparent q); widths are the 2θ widths mapped by
        dq/d2θ = (2π/λ) cosθ and the profiles have unit area in q.
    profile : str, optional
        ``"pseudo-voigt"``, ``"gaussian"`` or ``"lorentzian"``.
    U, V, W : float, optional
        Caglioti widths, FWHM² = U tan²θ + V tanθ + W in deg² (2θ); must be > 0 at every peak.
    eta : float, optional
        pseudo-Voigt Lorentzian fraction, 0..1.
    doublet, b_factors, occupancy, factors, scaled, lorentz_polarization, tolerance : optional
        as in :func:`powder_peaks` (peak heights: strongest stick = 100 when scaled).
    background : float or array_like, optional
        a constant or an (n,) array added to the pattern.

    Returns
    -------
    grid : numpy.ndarray
        (n,) the 2θ grid in degrees (or the q grid in Å⁻¹).
    intensity : numpy.ndarray
        (n,), or (B, n) for a list of crystals, in peak-intensity units per degree (per Å⁻¹ on a q grid).
    """
    if profile not in _PROFILES:
        raise ValueError(f"unknown profile {profile!r}: use one of {', '.join(_PROFILES)}")
    if not (np.isfinite(eta) and 0 <= eta <= 1):
        raise ValueError(f"eta (pseudo-Voigt mixing) must be in [0, 1], got {eta!r}")
    if not all(np.isfinite(v) for v in (U, V, W)):
        raise ValueError(f"Caglioti U, V, W must be finite numbers, got {(U, V, W)!r}")
    lines = _wavelength(wavelength, doublet)
    lam0 = lines[0][0]
    if q is not None and two_theta is not None:
        raise ValueError("give two_theta or q, not both")
    if q is not None:
        grid = np.asarray(q, dtype=np.float64)
        name, unit = "q", "Å⁻¹"
    else:
        grid = np.linspace(5, 90, 8501) if two_theta is None else np.asarray(two_theta, dtype=np.float64)
        name, unit = "two_theta", "degrees"
    if grid.ndim != 1 or len(grid) == 0 or not np.all(np.isfinite(grid)):
        raise ValueError(f"{name} must be a non-empty 1-D array of finite values ({unit}), got shape {grid.shape}")
    if len(grid) > 1 and np.any(np.diff(grid) <= 0):
        raise ValueError(f"{name} must be strictly increasing")
    if q is not None:
        q_max = 4 * np.pi / lam0
        if grid[0] < 0 or grid[-1] > q_max:
            raise ValueError(f"q must lie in [0, 4π/λ] = [0, {q_max:.4g}] Å⁻¹, got [{grid[0]:g}, {grid[-1]:g}]")
        tth_grid = np.degrees(2 * np.arcsin(np.clip(grid * lam0 / (4 * np.pi), 0, 1)))
    else:
        if grid[0] < 0 or grid[-1] > 180:
            raise ValueError(f"two_theta must lie in [0, 180] degrees, got [{grid[0]:g}, {grid[-1]:g}]")
        tth_grid = grid
    bg = np.asarray(background, dtype=np.float64)
    if not (bg.ndim == 0 or bg.shape == grid.shape) or not np.all(np.isfinite(bg)):
        raise ValueError(f"background must be a finite number or an array shaped like the grid {grid.shape}")

    def fwhm2(tth):
        t = np.tan(np.radians(tth) / 2)
        return U * t * t + V * t + W

    # peaks out to PROFILE_CUT widest FWHM beyond the grid still reach it
    sample = np.linspace(tth_grid[0], min(179.9, tth_grid[-1] + 10), 200)
    margin = PROFILE_CUT * np.sqrt(max(0.0, np.max(fwhm2(sample)))) + 1.0
    rng = (max(0.0, tth_grid[0] - margin), min(180.0, tth_grid[-1] + margin))

    def one(a):
        pk = powder_peaks(a, wavelength, rng, factors=factors, b_factors=b_factors, occupancy=occupancy,
                          lorentz_polarization=lorentz_polarization, tolerance=tolerance, scaled=scaled,
                          doublet=doublet, min_intensity=0.0)
        f2 = fwhm2(pk.two_theta)
        if np.any(f2 <= 0):
            bad = pk.two_theta[np.argmin(f2)]
            raise ValueError(f"Caglioti FWHM² = U tan²θ + V tanθ + W must be > 0 at every peak; it is "
                             f"{f2.min():.3g} deg² at 2θ = {bad:.3f}° (U={U}, V={V}, W={W})")
        fwhm = np.sqrt(f2)
        if q is None:
            centre, width = pk.two_theta, fwhm
        else:
            theta = np.radians(pk.two_theta) / 2
            centre = 4 * np.pi * np.sin(theta) / lam0
            width = np.radians(fwhm) * (2 * np.pi / lam0) * np.cos(theta)
        return _broaden(grid, centre, width, pk.intensity, profile, eta) + bg

    if isinstance(atoms, (list, tuple)):
        return grid, (np.stack([one(a) for a in atoms]) if len(atoms) else np.zeros((0, len(grid))))
    return grid, one(atoms)
