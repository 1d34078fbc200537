"""From ΔI/I to structure: the modified molecular difference ΔsM(q) and the difference pair distribution ΔPDF(r).

In the Independent Atom Model a sample of molecules scatters I(q) = I_at(q) + I_mol(q) (see
:mod:`xstructure.scattering`).  A pump-probe run measures ΔI/I = (I_on − I_off) / I_off with the laser-off
sample the reactant, I_off = I_at + I_mol,R.  The atoms do not change, so ΔI = ΔI_mol and

    ΔsM(q)  = q · ΔI(q) / I_at(q) = q · (ΔI/I)(q) · (I_at(q) + I_mol,R(q)) / I_at(q)
    ΔPDF(r) = ∫ ΔsM(q) sin(q r) exp(−k q²) dq

(for an excitation fraction f turning reactant R into product P, ΔsM = f (sM_P − sM_R)).  The user guide page
(``experiment``) gives the sources.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..scattering import simulate
from ..structures import molecule as _molecule_from_spec
from .run import check_grid

__all__ = ["Difference", "baseline", "delta_pdf", "delta_sm", "iam_patterns", "theoretical_difference"]


def _is_pool(x) -> bool:
    return hasattr(x, "pattern_sets") and hasattr(x, "positions") and hasattr(x, "numbers")


def _structure(spec):
    if isinstance(spec, (str, os.PathLike)):
        return _molecule_from_spec(os.fspath(spec))   # names, files, SMILES (stereo '/' and '\\' included)
    return spec


def _pool_patterns(pool, q, probe, energy_kev, chunk=65536):
    """Mean I_total over a pool's geometries: a stored pattern set on this q grid, else simulated."""
    numbers, ref = pool.numbers, pool.reference
    i_at = simulate((numbers, ref), q, probe=probe, signal="atomic", energy_kev=energy_kev)
    if not pool.complete:
        raise ValueError(f"{pool.path}: the pool is not complete (finish it with Pool.create before using it)")
    for name, s in pool.pattern_sets().items():
        same_q = s["q"].shape == q.shape and np.allclose(s["q"], q, rtol=0, atol=1e-12)
        if (s["probe"] == probe and s["energy_kev"] == energy_kev and same_q and s["complete"]
                and s["signal"] in ("total", "molecular")):
            _, arr = pool.patterns(name)
            B = int(arr.shape[0])
            tot = np.zeros(q.size)
            for a in range(0, B, chunk):
                tot += np.asarray(arr[a:a + chunk], dtype=np.float64).sum(axis=0)
            mean = tot / B
            return (mean if s["signal"] == "total" else i_at + mean), i_at
    pos = pool.positions
    B = int(pos.shape[0])
    tot = np.zeros(q.size)
    for a in range(0, B, chunk):
        tot += np.atleast_2d(simulate((numbers, np.asarray(pos[a:a + chunk])), q, probe=probe, signal="total",
                                      energy_kev=energy_kev)).sum(axis=0)
    return tot / B, i_at


def iam_patterns(structure, q, probe: str = "xray", energy_kev: float | None = None):
    """The total and the atomic scattering of a structure (or the mean over an ensemble) in the IAM.

    Parameters
    ----------
    structure : str, os.PathLike, ase.Atoms, tuple or Pool
        A molecule name, SMILES string or structure file (see :func:`xstructure.molecule`), an ``ase.Atoms``,
        a ``(numbers, positions)`` tuple (positions (N, 3) or (B, N, 3): the mean over the B geometries), or a
        :class:`xstructure.Pool`: the mean over its geometries, from a stored ``total`` or ``molecular``
        pattern set on this q grid with this probe when there is one, else simulated from its positions.
    q : array_like
        (Q,) momentum transfer, Å⁻¹.
    probe : {'xray', 'electron'}, optional
        The probe.
    energy_kev : float or None, optional
        Electron kinetic energy in keV (relativistic factor; see :func:`xstructure.simulate`).

    Returns
    -------
    total : numpy.ndarray
        (Q,) I_at + I_mol, electrons² (X-rays) or Å² (electrons).
    atomic : numpy.ndarray
        (Q,) I_at, same unit.

    Raises
    ------
    ValueError
        An unknown molecule, a bad q grid or probe, an incomplete pool.
    """
    q = check_grid(q)
    structure = _structure(structure)
    if _is_pool(structure):
        return _pool_patterns(structure, q, probe, energy_kev)
    total = np.asarray(simulate(structure, q, probe=probe, signal="total", energy_kev=energy_kev), dtype=np.float64)
    atomic = np.asarray(simulate(structure, q, probe=probe, signal="atomic", energy_kev=energy_kev),
                        dtype=np.float64)
    if total.ndim == 2:            # several geometries of one molecule: their mean
        total, atomic = total.mean(axis=0), atomic[0]
    return total, atomic


def _diff_array(q: np.ndarray, diff, name: str = "diff") -> np.ndarray:
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (Q,) or (T, Q), got {d.shape}")
    if d.shape[-1] != q.size:
        raise ValueError(f"{name} has {d.shape[-1]} q points but q has {q.size} (q grid mismatch)")
    return d


def delta_sm(q, diff, molecule, probe: str = "electron", energy_kev: float | None = None) -> np.ndarray:
    """ΔsM(q) = q · ΔI/I · I_total,R / I_at: the modified molecular difference from a measured ΔI/I.

    ``diff`` is the relative difference ΔI/I_R of :meth:`PumpProbe.reduce`, referenced to the unpumped sample
    (the reactant R).  Its absolute difference is ΔI = diff · (I_at + I_mol,R), and since the atoms are the same
    before and after the reaction, ΔsM = q ΔI / I_at, with I_at and I_mol,R of ``molecule`` in the IAM.

    Parameters
    ----------
    q : array_like
        (Q,) momentum transfer, Å⁻¹.
    diff : array_like
        (Q,) or (T, Q) ΔI/I.
    molecule : str, ase.Atoms, tuple or Pool
        The reactant (see :func:`iam_patterns`).
    probe : {'electron', 'xray'}, optional
        The probe.
    energy_kev : float or None, optional
        Electron kinetic energy in keV (cancels in the ratio; kept for symmetry with :func:`xstructure.simulate`).

    Returns
    -------
    numpy.ndarray
        ΔsM, the shape of ``diff``, in Å⁻¹ (the unit of sM).

    Raises
    ------
    ValueError
        ``diff`` not on the q grid, or a bad molecule, q or probe.
    """
    q = check_grid(q)
    d = _diff_array(q, diff)
    total, atomic = iam_patterns(molecule, q, probe, energy_kev)
    return q * d * total / atomic


def baseline(q, dsm, kind: str = "poly", degree: int = 3, at=None, sigma=None, return_baseline: bool = False):
    """Subtract a smooth polynomial baseline from ΔsM(q).

    A residual offset of ΔI/I (for instance from normalising shots by their sum over a q window) or an imperfect
    background becomes a slowly varying curve in ΔsM; a low-order polynomial in q absorbs it.

    Parameters
    ----------
    q : array_like
        (Q,) momentum transfer, Å⁻¹.
    dsm : array_like
        (Q,) or (T, Q) ΔsM.
    kind : {'poly', 'zeros'}, optional
        ``"poly"``: least-squares polynomial through all points (weighted by 1/σ² with ``sigma``);
        ``"zeros"``: the polynomial through ΔsM at the q values ``at`` only (for instance the zero crossings of
        a theoretical ΔsM, where the data should vanish), interpolated linearly there.
    degree : int, optional
        Polynomial degree (≥ 0).
    at : array_like or None, optional
        (K,) q values for ``kind="zeros"``, K ≥ degree + 1, inside the q range.
    sigma : array_like or None, optional
        (Q,) or (T, Q) errors for the weighted ``"poly"`` fit.
    return_baseline : bool, optional
        Return the baseline too.

    Returns
    -------
    corrected : numpy.ndarray
        ΔsM minus the baseline, the shape of ``dsm``.
    base : numpy.ndarray
        The baseline (with ``return_baseline=True``).

    Raises
    ------
    ValueError
        Unknown kind, bad degree, or too few / out-of-range ``at`` points.
    """
    q = check_grid(q)
    y = _diff_array(q, dsm, "dsm")
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or degree < 0:
        raise ValueError(f"degree must be an integer >= 0, got {degree!r}")
    x = (2 * q - (q[0] + q[-1])) / max(q[-1] - q[0], 1e-300)      # [-1, 1]: a well-conditioned basis
    V = np.polynomial.legendre.legvander(x, degree)                # (Q, degree + 1)
    Y = np.atleast_2d(y)
    if kind == "poly":
        if sigma is None:
            W = np.ones_like(Y)
        else:
            s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), y.shape).reshape(Y.shape)
            W = np.where(np.isfinite(s) & (s > 0), 1.0 / np.where(s > 0, s, 1.0) ** 2, 0.0)
        base = np.empty_like(Y)
        for k in range(Y.shape[0]):
            sw = np.sqrt(W[k])
            c, *_ = np.linalg.lstsq(V * sw[:, None], Y[k] * sw, rcond=None)
            base[k] = V @ c
    elif kind == "zeros":
        if at is None:
            raise ValueError("kind='zeros' needs the q values to fit at (at=...)")
        at = np.asarray(at, dtype=np.float64).ravel()
        if at.size < degree + 1:
            raise ValueError(f"kind='zeros' with degree {degree} needs at least {degree + 1} points, got {at.size}")
        if at.min() < q[0] or at.max() > q[-1]:
            raise ValueError(f"the points at= must lie inside q ({q[0]:g} .. {q[-1]:g} Å⁻¹)")
        xa = (2 * at - (q[0] + q[-1])) / max(q[-1] - q[0], 1e-300)
        Va = np.polynomial.legendre.legvander(xa, degree)
        base = np.empty_like(Y)
        for k in range(Y.shape[0]):
            c, *_ = np.linalg.lstsq(Va, np.interp(at, q, Y[k]), rcond=None)
            base[k] = V @ c
    else:
        raise ValueError(f"kind must be 'poly' or 'zeros', got {kind!r}")
    base = base.reshape(y.shape)
    return (y - base, base) if return_baseline else y - base


def _low_q_fill(q: np.ndarray, y: np.ndarray, fill):
    """Points on [0, q[0]) and their ΔsM, spaced like the measured grid."""
    dq = float(np.median(np.diff(q))) if q.size > 1 else float(q[0])
    n = int(np.ceil(q[0] / dq)) if dq > 0 else 0
    if n == 0:
        return np.empty(0), np.empty(y.shape[:-1] + (0,))
    ql = np.linspace(0.0, q[0], n + 1)[:-1]
    if isinstance(fill, str):
        if fill != "zero":
            raise ValueError(f"fill_low_q must be None, 'zero', a (q, dsm) pair or a callable, got {fill!r}")
        return ql, y[..., :1] * (ql / q[0])            # sM(0) = 0: a straight line to the first point
    if callable(fill):
        v = np.asarray(fill(ql), dtype=np.float64)
    else:
        try:
            qt, st = fill
        except (TypeError, ValueError):
            raise ValueError("fill_low_q must be None, 'zero', a (q, dsm) pair or a callable") from None
        qt = check_grid(qt)
        st = np.asarray(st, dtype=np.float64)
        if st.shape[-1] != qt.size:
            raise ValueError(f"fill_low_q: the theory curve has {st.shape[-1]} points but its q has {qt.size}")
        if qt[0] > 0 or qt[-1] < ql[-1]:
            raise ValueError(f"fill_low_q: the theory curve must cover 0 .. {q[0]:g} Å⁻¹, "
                             f"it covers {qt[0]:g} .. {qt[-1]:g}")
        v = np.apply_along_axis(lambda s: np.interp(ql, qt, s), -1, st)
    return ql, np.broadcast_to(v, y.shape[:-1] + (ql.size,))


def delta_pdf(q, dsm, r, damping: float = 0.03, fill_low_q=None) -> np.ndarray:
    """ΔPDF(r) = ∫ ΔsM(q) sin(q r) exp(−damping · q²) dq, by the trapezoid rule over the measured q.

    Parameters
    ----------
    q : array_like
        (Q,) momentum transfer, Å⁻¹.
    dsm : array_like
        (Q,) or (T, Q) ΔsM, Å⁻¹.
    r : array_like
        (R,) distances, Å.
    damping : float, optional
        k of the Gaussian window exp(−k q²), Å² (≥ 0): it suppresses the truncation ripples at q_max.
    fill_low_q : None, 'zero', tuple or callable, optional
        What lies below the first measured q: None (nothing: the integral starts at q[0]); ``"zero"``: a
        straight line from ΔsM(0) = 0 to the first point; a ``(q_theory, dsm_theory)`` pair covering
        [0, q[0]] (e.g. the scaled theoretical ΔsM of the fitted product); or a callable ``f(q) -> dsm``.

    Returns
    -------
    numpy.ndarray
        (R,) or (T, R) ΔPDF, Å⁻² (the unit of sM times that of dq).

    Raises
    ------
    ValueError
        Bad shapes, grids, damping or fill.
    """
    q = check_grid(q)
    y = _diff_array(q, dsm, "dsm")
    r = np.asarray(r, dtype=np.float64)
    if r.ndim != 1 or not np.all(np.isfinite(r)):
        raise ValueError(f"r must be a finite 1D array of distances in Å, got shape {r.shape}")
    damping = float(damping)
    if not (np.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping must be >= 0 Å², got {damping}")
    if fill_low_q is not None and q[0] > 0:
        ql, yl = _low_q_fill(q, y, fill_low_q)
        q = np.concatenate([ql, q])
        y = np.concatenate([yl, y], axis=-1)
    w = np.zeros(q.size)                       # trapezoid weights
    if q.size > 1:
        h = np.diff(q)
        w[:-1] += h / 2
        w[1:] += h / 2
    kernel = np.sin(np.outer(q, r)) * (w * np.exp(-damping * q * q))[:, None]     # (Q, R)
    return y @ kernel


@dataclass
class Difference:
    """The theoretical signals of a reactant → product change at an excitation fraction.

    Parameters
    ----------
    q : numpy.ndarray
        (Q,) momentum transfer, Å⁻¹.
    diff : numpy.ndarray
        (Q,) ΔI/I = f (I_P − I_R) / I_R.
    dsm : numpy.ndarray
        (Q,) ΔsM = f (sM_P − sM_R) = f q (I_P − I_R) / I_at, Å⁻¹.
    i_reactant, i_product, i_atomic : numpy.ndarray
        (Q,) I_total of the reactant and the product and their I_at.
    fraction : float
        The excitation fraction f.
    r : numpy.ndarray or None
        (R,) distances of ``pdf``, Å.
    pdf : numpy.ndarray or None
        (R,) ΔPDF of ``dsm`` by :func:`delta_pdf` on the same q grid (None without ``r``).
    """

    q: np.ndarray
    diff: np.ndarray
    dsm: np.ndarray
    i_reactant: np.ndarray
    i_product: np.ndarray
    i_atomic: np.ndarray
    fraction: float
    r: np.ndarray | None = None
    pdf: np.ndarray | None = None


def theoretical_difference(reactant, product, q, *, probe: str = "xray", energy_kev: float | None = None,
                           fraction: float = 1.0, r=None, damping: float = 0.03, fill_low_q=None) -> Difference:
    """ΔI/I, ΔsM and ΔPDF that a fraction ``fraction`` of ``reactant`` turned into ``product`` gives in the IAM.

    Parameters
    ----------
    reactant, product : str, ase.Atoms, tuple or Pool
        The two structures (see :func:`iam_patterns`); they must have the same atoms.
    q : array_like
        (Q,) momentum transfer, Å⁻¹.
    probe : {'xray', 'electron'}, optional
        The probe.
    energy_kev : float or None, optional
        Electron kinetic energy in keV.
    fraction : float, optional
        The excitation fraction f.
    r : array_like or None, optional
        (R,) distances for the ΔPDF, Å.
    damping : float, optional
        Damping of :func:`delta_pdf`, Å².
    fill_low_q : optional
        As for :func:`delta_pdf`; ``"theory"`` fills [0, q[0]) with this ΔsM computed on a grid from 0.

    Returns
    -------
    Difference
        The signals.

    Raises
    ------
    ValueError
        Different atoms in the two structures, or a bad q grid or structure.
    """
    q = check_grid(q)
    i_r, at_r = iam_patterns(reactant, q, probe, energy_kev)
    i_p, at_p = iam_patterns(product, q, probe, energy_kev)
    if not np.allclose(at_r, at_p, rtol=1e-9, atol=0):
        raise ValueError("reactant and product have different atoms (their atomic scattering differs): ΔsM and "
                         "the fraction are defined for an isomerisation or a dissociation of the same atoms")
    f = float(fraction)
    out = Difference(q=q, diff=f * (i_p - i_r) / i_r, dsm=f * q * (i_p - i_r) / at_r, i_reactant=i_r,
                     i_product=i_p, i_atomic=at_r, fraction=f)
    if r is not None:
        fill = fill_low_q
        if isinstance(fill_low_q, str) and fill_low_q == "theory":
            fill = None if q[0] == 0 else fill_low_q
        if isinstance(fill, str) and fill == "theory":
            ql = np.linspace(0.0, q[0], 64)
            tr, ta = iam_patterns(reactant, ql[1:], probe, energy_kev)
            tp, _ = iam_patterns(product, ql[1:], probe, energy_kev)
            fill = (ql, np.concatenate([[0.0], f * ql[1:] * (tp - tr) / ta]))
        out.r = np.asarray(r, dtype=np.float64)
        out.pdf = delta_pdf(q, out.dsm, out.r, damping=damping, fill_low_q=fill)
    return out
