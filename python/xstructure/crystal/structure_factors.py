"""Crystals: structure factors F(hkl), powder patterns and density grids of a unit cell.

Structure factors use the crystallographic sign convention (International Tables Vol. B §1.2; the same as
gemmi, cctbx and pymatgen):

    F(hkl) = Σ_j occ_j · f_j(s) · exp(−B_j s²) · exp(+2πi (h x_j + k y_j + l z_j)),     s = sinθ/λ = 1/(2d)

with (x_j, y_j, z_j) fractional coordinates, s = |h a* + k b* + l c*| / 2 and f_j the X-ray form factor
(Waasmaier & Kirfel 1995, electrons), the electron scattering factor (Mott–Bethe from the same fit, Å), the
atomic number Z (``factors="Z"``, the point-atom simplification used by Scripps & Cumby 2021), or any callable
``f(symbol, s) -> array``.  Beyond s = 6 Å⁻¹ (d < 0.083 Å) the Waasmaier–Kirfel fit is extrapolated.

The compiled kernel sums over atoms with per-axis phase tables on the full box h, k, l ∈ [−H, H] (the loop
over l is complex multiply-adds), or directly on a list of reflections; form factors are evaluated once per
scattering type (element and B) and reflection.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import _backend
from ..factors import Z_MAX, atomic_number, electron_fe_s2, factor_key, relativistic_factor, wk_coefficients, xray_f0_s2

FACTORS = ("xray", "electron", "Z")   # the named tables; any callable f(symbol, s) works too

__all__ = ["FACTORS", "structure_factors", "intensities", "density_grid", "Cell", "as_cell", "grid_spec", "save_hkl_grid"]


@dataclass
class Cell:
    """A unit cell with its atoms, in the form the kernels take; built by :func:`as_cell`.

    Parameters
    ----------
    cell : numpy.ndarray
        (3, 3) cell vectors a, b, c as rows, in Å.
    frac : numpy.ndarray
        (N, 3) fractional coordinates.
    symbols : list of str
        (N,) element symbols.
    numbers : numpy.ndarray
        (N,) atomic numbers.
    occupancy : numpy.ndarray
        (N,) site occupancies, 0–1.
    b_factors : numpy.ndarray
        (N,) isotropic Debye–Waller factors B in Å².
    """

    cell: np.ndarray          # (3, 3) rows a, b, c in Å
    frac: np.ndarray          # (N, 3) fractional coordinates
    symbols: list             # (N,) element symbols
    numbers: np.ndarray       # (N,) atomic numbers
    occupancy: np.ndarray     # (N,)
    b_factors: np.ndarray     # (N,) isotropic B in Å²

    @property
    def lengths(self) -> np.ndarray:
        """(3,) a, b, c in Å."""
        return np.linalg.norm(self.cell, axis=1)

    @property
    def angles(self) -> np.ndarray:
        """(3,) α, β, γ in degrees (α between b and c, β between a and c, γ between a and b)."""
        a, b, c = self.cell
        ang = lambda u, v: np.degrees(np.arccos(np.clip(u @ v / np.linalg.norm(u) / np.linalg.norm(v), -1, 1)))  # noqa: E731
        return np.array([ang(b, c), ang(a, c), ang(a, b)])

    @property
    def formula(self) -> str:
        """The cell's contents in Hill-like order of symbols, e.g. 'Cl4Na4'."""
        symbols, counts = np.unique(self.symbols, return_counts=True)
        return "".join(f"{s}{n if n > 1 else ''}" for s, n in zip(symbols, counts))

    @property
    def reduced_formula(self) -> str:
        """The formula unit in the conventional order, e.g. 'NaCl', 'TiO2', 'MgAl2O4'.

        Counts are occupancy-weighted and divided by :attr:`formula_units`.  Organic cells (C and H) are in Hill
        order (C, H, then alphabetical); all others by increasing Pauling electronegativity, the cation first.
        """
        counts, z = self._formula_unit()
        symbols = list(counts)
        if "C" in counts and "H" in counts:
            symbols = ["C", "H"] + sorted(s for s in symbols if s not in ("C", "H"))
        else:
            symbols.sort(key=lambda s: (_electronegativity(s), s))

        def count(n):
            n = n / z
            return "" if abs(n - 1) < 1e-6 else (f"{round(n)}" if abs(n - round(n)) < 1e-6 else f"{n:.3g}")
        return "".join(f"{s}{count(counts[s])}" for s in symbols)

    @property
    def formula_units(self) -> int:
        """Z, the number of formula units (:attr:`reduced_formula`) in the cell, e.g. 4 for rock-salt NaCl."""
        return self._formula_unit()[1]

    def _formula_unit(self) -> tuple[dict, int]:
        """Occupancy-weighted counts per symbol, and Z: their greatest common divisor (1 when they are not
        whole numbers even after scaling by a small integer)."""
        counts: dict = {}
        for s, o in zip(self.symbols, self.occupancy):
            counts[s] = counts.get(s, 0.0) + float(o)
        counts = {s: n for s, n in counts.items() if n > 1e-9}
        if not counts:
            return {}, 1
        for scale in range(1, 13):   # partial occupancies: the smallest whole-number multiple of the counts
            whole = [n * scale for n in counts.values()]
            if all(abs(w - round(w)) < 1e-3 for w in whole):
                z = math.gcd(*(round(w) for w in whole))
                return counts, z // scale if z % scale == 0 else 1
        return counts, 1

    def describe(self) -> str:
        """One line: formula, atom count, cell lengths (Å), angles (°) and volume (Å³)."""
        (a, b, c), (al, be, ga) = self.lengths, self.angles
        return (f"{self.formula}, {len(self.symbols)} atoms; a b c = {a:.4f} {b:.4f} {c:.4f} Å, "
                f"α β γ = {al:.3f} {be:.3f} {ga:.3f}°, V = {self.volume:.3f} Å³")

    @property
    def volume(self) -> float:
        """Cell volume in Å³."""
        return float(abs(_det3(self.cell)))

    @property
    def reciprocal(self) -> np.ndarray:
        """Rows a*, b*, c* (Å⁻¹, without 2π)."""
        return _inv3(self.cell).T

    @property
    def positions(self) -> np.ndarray:
        """(N, 3) Cartesian positions in Å."""
        return self.frac @ self.cell


# Pauling electronegativities by atomic number (noble gases and the heaviest elements: values of the usual
# tables, or 0 where none is defined, which sorts them first); only the order of a formula's symbols uses them.
_PAULING = (
    0.0, 2.20, 0.0, 0.98, 1.57, 2.04, 2.55, 3.04, 3.44, 3.98, 0.0,                                 # H-Ne
    0.93, 1.31, 1.61, 1.90, 2.19, 2.58, 3.16, 0.0,                                                 # Na-Ar
    0.82, 1.00, 1.36, 1.54, 1.63, 1.66, 1.55, 1.83, 1.88, 1.91, 1.90, 1.65, 1.81, 2.01, 2.18, 2.55, 2.96,
    3.00,                                                                                          # K-Kr
    0.82, 0.95, 1.22, 1.33, 1.60, 2.16, 1.90, 2.20, 2.28, 2.20, 1.93, 1.69, 1.78, 1.96, 2.05, 2.10, 2.66,
    2.60,                                                                                          # Rb-Xe
    0.79, 0.89, 1.10, 1.12, 1.13, 1.14, 1.13, 1.17, 1.20, 1.20, 1.10, 1.22, 1.23, 1.24, 1.25, 1.10, 1.27,
    1.30, 1.50, 2.36, 1.90, 2.20, 2.20, 2.28, 2.54, 2.00, 1.62, 2.33, 2.02, 2.00, 2.20, 2.20,          # Cs-Rn
    0.70, 0.90, 1.10, 1.30, 1.50, 1.38, 1.36, 1.28, 1.30, 1.30, 1.30, 1.30, 1.30, 1.30, 1.30, 1.30,     # Fr-No
)


def _electronegativity(symbol: str) -> float:
    z = atomic_number(symbol)
    return _PAULING[z] if 0 < z < len(_PAULING) else 1.3


def _inv3(m: np.ndarray) -> np.ndarray:
    """Inverse of a 3×3 matrix by cofactors (np.linalg's per-call overhead dominates at this size)."""
    (a, b, c), (d, e, f), (g, h, i) = m.tolist()
    A, B, C = e * i - f * h, f * g - d * i, d * h - e * g
    det = a * A + b * B + c * C
    return np.array([[A, c * h - b * i, b * f - c * e],
                     [B, a * i - c * g, c * d - a * f],
                     [C, b * g - a * h, a * e - b * d]]) / det


def _det3(m: np.ndarray) -> float:
    (a, b, c), (d, e, f), (g, h, i) = m.tolist()
    return a * (e * i - f * h) + b * (f * g - d * i) + c * (d * h - e * g)


def _per_atom(name, value, n, default, low=None, high=None):
    if value is None:
        return np.full(n, float(default))
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a number or one value per atom ({n}), got shape {arr.shape}")
    lo, hi = arr.min(), arr.max()  # NaN propagates into both
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or inf")
    if low is not None and lo < low:
        raise ValueError(f"{name} must be >= {low}, got {lo:g}")
    if high is not None and hi > high:
        raise ValueError(f"{name} must be <= {high}, got {hi:g}")
    return arr


def _sites_of(obj):
    """(cell rows a, b, c in Å, fractional (N, 3), atomic numbers (N,), occupancies or None, B in Å² or None)
    of an ase.Atoms (any subclass), a pymatgen Structure or a gemmi SmallStructure; None for anything else."""
    import ase  # loaded on use: keeps `import xstructure` fast

    if isinstance(obj, ase.Atoms):
        cell = np.asarray(obj.cell[:], dtype=np.float64)
        numbers = np.asarray(obj.get_atomic_numbers(), dtype=np.int64)
        occ, b = obj.arrays.get("occupancy"), obj.arrays.get("B")
        if cell.shape != (3, 3) or not np.isfinite(cell).all() or not abs(_det3(cell)) >= 1e-6:
            return cell, None, numbers, occ, b  # no cell: as_cell says so
        pos = np.asarray(obj.positions, dtype=np.float64)
        return cell, np.einsum("nj,jk->nk", pos, _inv3(cell)), numbers, occ, b  # not BLAS: its idle threads spin
    module = type(obj).__module__
    if module.startswith("pymatgen") and hasattr(obj, "lattice") and hasattr(obj, "sites"):
        frac, numbers, occ = [], [], []
        for site in obj.sites:  # a disordered site holds several species with their occupancies
            for species, amount in site.species.items():
                frac.append(site.frac_coords)
                numbers.append(int(species.Z))
                occ.append(float(amount))
        return (np.asarray(obj.lattice.matrix, dtype=np.float64), np.asarray(frac, dtype=np.float64).reshape(-1, 3),
                np.asarray(numbers, dtype=np.int64), np.asarray(occ), None)
    if module.startswith("gemmi") and hasattr(obj, "get_all_unit_cell_sites"):
        sites = obj.get_all_unit_cell_sites()  # the asymmetric unit expanded by the space group
        orth = np.asarray(obj.cell.orth.mat, dtype=np.float64)  # columns: a, b, c
        if not abs(_det3(orth)) >= 1e-6:
            return orth.T, None, None, None, None
        return (orth.T, np.asarray([[s.fract.x, s.fract.y, s.fract.z] for s in sites]).reshape(-1, 3),
                np.asarray([s.element.atomic_number for s in sites], dtype=np.int64),
                np.asarray([s.occ for s in sites]), 8 * np.pi**2 * np.asarray([s.u_iso for s in sites]))
    return None


def as_cell(atoms, occupancy=None, b_factors=None) -> Cell:
    """A crystal as a :class:`Cell`.

    Parameters
    ----------
    atoms : ase.Atoms, pymatgen.core.Structure, gemmi.SmallStructure, str, os.PathLike or Cell
        An ``ase.Atoms`` (or subclass, such as pymatgen's ``MSONAtoms``) with a cell, a pymatgen ``Structure``
        (disordered sites become one atom per species with its occupancy), a gemmi ``SmallStructure`` (its
        sites expanded by the space group; B = 8π² U_iso), or a file ase.io reads (CIF included); a
        :class:`Cell` is returned as it is.
    occupancy : float, array_like or None, optional
        Occupancies, one for all atoms or (N,); default: those of the structure when it has them (the atoms'
        array ``"occupancy"``), else 1.
    b_factors : float, array_like or None, optional
        Isotropic B in Å², one for all atoms or (N,); default: those of the structure when it has them (the
        atoms' array ``"B"``), else 0.

    Returns
    -------
    Cell
        The cell, fractional coordinates, elements, occupancies and B factors.

    Raises
    ------
    ValueError
        A missing or unreadable file, a structure without a (non-singular) cell, or bad occupancies or B
        factors.
    """
    if isinstance(atoms, Cell):
        return atoms
    if isinstance(atoms, (str, os.PathLike)):
        import ase.io  # loaded on use: keeps `import xstructure` fast

        path = os.fspath(atoms)
        if not os.path.exists(path):
            raise ValueError(f"structure file not found: {path!r}")
        try:
            atoms = ase.io.read(path)
        except Exception as exc:  # ase raises many kinds for a bad file
            why = str(exc).strip() or "the file is truncated or is not in the format its name says"
            raise ValueError(f"cannot read crystal file {path!r}: {why} ({type(exc).__name__})") from None
    sites = _sites_of(atoms)
    if sites is None:
        raise ValueError("expected an ase.Atoms with a unit cell, a pymatgen Structure, a gemmi SmallStructure or "
                         f"a structure file, got {type(atoms).__name__}")
    cell, frac, numbers, own_occupancy, own_b = sites
    if frac is None:
        raise ValueError("the structure has no unit cell (or a cell of zero volume); structure factors need one")
    n = len(numbers)
    if n == 0:
        raise ValueError("the crystal has no atoms")
    if not np.isfinite(frac).all():
        raise ValueError("atom positions contain NaN or inf")
    occupancy = own_occupancy if occupancy is None else occupancy
    b_factors = own_b if b_factors is None else b_factors
    if numbers.min() < 1 or numbers.max() > Z_MAX:
        bad = numbers[(numbers < 1) | (numbers > Z_MAX)][0]
        atomic_number(int(bad))  # raises the usual "unknown element" error
    from ase.data import chemical_symbols  # loaded on use: keeps `import xstructure` fast

    return Cell(cell=cell, frac=frac, symbols=[chemical_symbols[z] for z in numbers], numbers=numbers,
                occupancy=_per_atom("occupancy", occupancy, n, 1.0, 0.0, 1.0),
                b_factors=_per_atom("b_factors", b_factors, n, 0.0, 0.0))


def _form_factors(factors, symbol: str, z: int, s: np.ndarray, energy_kev) -> np.ndarray:
    s2 = s * s
    if callable(factors):
        f = np.asarray(factors(symbol, s), dtype=np.float64)
        if f.shape != s.shape or not np.all(np.isfinite(f)):
            raise ValueError(f"the form-factor callable returned shape {f.shape} or non-finite values for {symbol}")
        return f
    if factors == "Z":
        return np.full(s.shape, float(z))
    if factors == "xray":
        return xray_f0_s2(factor_key(symbol), s2)
    if factors == "electron":
        fe = electron_fe_s2(factor_key(symbol), s2)
        return fe * relativistic_factor(energy_kev) if energy_kev is not None else fe
    raise ValueError(f"unknown factors {factors!r}: use 'xray', 'electron', 'Z' or a callable f(symbol, s)")


def _types(c: Cell):
    """Scattering types (symbol, atomic number), one per element, and the type of each atom."""
    nums = c.numbers.tolist()
    first = {}
    for i, z in enumerate(nums):
        first.setdefault(z, i)
    zs = sorted(first)
    lut = np.zeros(Z_MAX + 1, dtype=np.int32)
    lut[zs] = np.arange(len(zs), dtype=np.int32)
    return [(c.symbols[first[z]], int(z)) for z in zs], lut[c.numbers]


def _metric(c: Cell) -> list:
    """The reciprocal metric G* as (g11, g22, g33, g12, g13, g23), 1/Å²."""
    R = c.reciprocal
    G = R @ R.T
    return [float(G[0, 0]), float(G[1, 1]), float(G[2, 2]), float(G[0, 1]), float(G[0, 2]), float(G[1, 2])]


@lru_cache(maxsize=8)
def _box_hkl_cached(H: int) -> np.ndarray:
    r = np.arange(-H, H + 1, dtype=np.int32)
    out = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    out.setflags(write=False)
    return out


def _box_hkl(H: int) -> np.ndarray:
    return _box_hkl_cached(H).copy()


def _gaussians(factors, types):
    """(K, a (T, K), b (T, K), c (T,)) when every type's form factor is a Gaussian sum (X-ray, Z), else None."""
    if isinstance(factors, str) and factors in ("Z", "xray"):
        return _gaussians_cached(factors, tuple(types))
    return None


@lru_cache(maxsize=4096)
def _gaussians_cached(factors, types):
    if factors == "Z":
        return 0, np.zeros((len(types), 0)), np.zeros((len(types), 0)), np.array([float(z) for _, z in types])
    coef = [wk_coefficients(factor_key(sym)) for sym, _ in types]
    return (5, np.stack([a for a, _, _ in coef]), np.stack([b for _, b, _ in coef]),
            np.array([c for _, _, c in coef]))


def structure_factors(atoms, hmax: int = 10, *, hkl=None, factors="xray", d_min: float | None = None,
                      grid: bool = False, occupancy=None, b_factors=None, energy_kev: float | None = None,
                      num_threads: int = 0):
    """Structure factors F(hkl) of a crystal (or of a list of crystals: a list of results).

    F(hkl) = Σ_j occ_j f_j(s) exp(−B_j s²) exp(+2πi (h x_j + k y_j + l z_j)), with s = sin θ / λ = 1/(2d) and
    fractional coordinates (x, y, z): the crystallographic sign convention.

    Parameters
    ----------
    atoms : ase.Atoms, str, os.PathLike, Cell or list
        An ``ase.Atoms`` with a cell, a file ase.io reads (CIF, POSCAR, ...), a :class:`Cell`, or a list of them.
    hmax : int, optional
        H for the full box h, k, l ∈ [−H, H] (ignored when ``hkl`` is given).
    hkl : array_like or None, optional
        (M, 3) integer Miller indices to compute instead of the box.
    factors : {'xray', 'electron', 'Z'} or callable, optional
        Waasmaier–Kirfel X-ray form factors (electrons), Mott–Bethe electron amplitudes (Å), point atoms
        weighted by Z, or a callable ``f(symbol, s) -> array`` with s = sin θ / λ in Å⁻¹.
    d_min : float or None, optional
        Resolution cutoff in Å: reflections with d < d_min are left out (set to 0 on a grid).
    grid : bool, optional
        Return the (2H+1)³ complex array indexed ``[h+H, k+H, l+H]`` instead of (hkl, F).
    occupancy, b_factors : float, array_like or None, optional
        Per-atom occupancies (0–1) and isotropic B (Å²); see :func:`as_cell`.
    energy_kev : float or None, optional
        Electron kinetic energy in keV for the relativistic factor γ (``factors="electron"``).
    num_threads : int, optional
        CPU threads (0: OpenMP's default).

    Returns
    -------
    hkl : numpy.ndarray
        (M, 3) int32 Miller indices (not returned with ``grid=True``).
    F : numpy.ndarray
        (M,) complex128 structure factors in electrons (X-rays), Å (electrons) or Z units; with ``grid=True``
        the (2H+1)³ grid alone. The box includes (0, 0, 0), where F = Σ occ f(0).

    Raises
    ------
    ValueError
        Atoms without a cell, a bad hmax or hkl, or unknown factors.

    Examples
    --------
    >>> from ase.build import bulk
    >>> import xstructure
    >>> hkl, F = xstructure.crystal.structure_factors(bulk("NaCl", "rocksalt", a=5.64, cubic=True), hmax=2)
    >>> hkl.shape, F.dtype
    ((125, 3), dtype('complex128'))
    """
    if isinstance(atoms, (list, tuple)):
        return [structure_factors(a, hmax, hkl=hkl, factors=factors, d_min=d_min, grid=grid, occupancy=occupancy,
                                  b_factors=b_factors, energy_kev=energy_kev, num_threads=num_threads)
                for a in atoms]
    c = as_cell(atoms, occupancy, b_factors)
    if hkl is None:
        if int(hmax) != hmax or hmax < 0:
            raise ValueError(f"hmax must be a non-negative integer, got {hmax!r}")
        H = int(hmax)
        hkl_arr = _box_hkl(H)
    else:
        if grid:
            raise ValueError("grid=True needs the box (hmax), not a list of hkl")
        hkl_arr = np.asarray(hkl)
        if hkl_arr.ndim != 2 or hkl_arr.shape[1] != 3 or (hkl_arr.size and hkl_arr.dtype.kind not in "iu" and
                                                          not np.all(hkl_arr == np.round(hkl_arr))):
            raise ValueError(f"hkl must be an (M, 3) array of integers, got shape {hkl_arr.shape}")
        hkl_arr = np.ascontiguousarray(hkl_arr, dtype=np.int32)
        H = -1
    if d_min is not None and not (np.isfinite(d_min) and d_min > 0):
        raise ValueError(f"d_min must be a positive number of Å, got {d_min!r}")
    s2max = -1.0 if d_min is None else (0.5 / d_min) ** 2 * (1 + 1e-12)
    types, type_of = _types(c)
    metric = _metric(c)
    M = len(hkl_arr)
    gauss = _gaussians(factors, types)
    g = None
    if gauss is None:  # tabulate the form factors at every reflection
        s = 0.5 * np.linalg.norm(hkl_arr @ c.reciprocal, axis=1)
        g = np.stack([_form_factors(factors, sym, z, s, energy_kev) for sym, z in types])
    F = np.empty(M, dtype=np.complex128)
    B = np.ascontiguousarray(c.b_factors) if np.any(c.b_factors != 0) else None
    H_kernel = H
    if B is not None and H >= 0 and B.max() * max(map(abs, metric[3:])) * H * H / 2 > 600:
        H_kernel = -1  # the box's separable Debye-Waller tables would overflow: sum reflection by reflection
    _backend.structure_factors(type_of, np.ascontiguousarray(c.frac), np.ascontiguousarray(c.occupancy), H_kernel,
                               hkl_arr, g, gauss, s2max, B, metric, F, num_threads=num_threads)
    if d_min is not None and not grid:
        keep = 0.5 * np.linalg.norm(hkl_arr @ c.reciprocal, axis=1) <= 0.5 / d_min * (1 + 1e-12)
        hkl_arr, F = hkl_arr[keep], F[keep]
    if grid:
        L = 2 * H + 1
        return F.reshape(L, L, L)
    return hkl_arr, F


def save_hkl_grid(path: str, atoms, H: int, *, factors="xray") -> None:
    """Write F(hkl) on the box h, k, l ∈ [−H, H] to an NPZ file.

    The file holds ``hkl_grid`` (complex, (2H+1)³, indexed [h+H, k+H, l+H]), ``intensity`` (``|F|²``), ``H``
    and ``cell`` (rows a, b, c in Å).

    Parameters
    ----------
    path : str
        The output file.
    atoms : ase.Atoms, str, os.PathLike or Cell
        The crystal.
    H : int
        Box half-width, 0–100.
    factors : {'xray', 'electron', 'Z'} or callable, optional
        As for :func:`structure_factors`.
    """
    if not 0 <= int(H) <= 100:
        raise ValueError(f"the hkl grid's H must be in 0..100 (a (2H+1)³ grid), got {H}")
    c = as_cell(atoms)
    F = structure_factors(c, int(H), grid=True, factors=factors)
    np.savez(path, hkl_grid=F, H=int(H), cell=c.cell, intensity=np.abs(F) ** 2)


def intensities(atoms, hmax: int = 10, **kwargs):
    """|F(hkl)|²: :func:`structure_factors` with the complex F replaced by its squared modulus.

    Parameters
    ----------
    atoms : ase.Atoms, str, os.PathLike, Cell or list
        As for :func:`structure_factors`.
    hmax : int, optional
        H of the box h, k, l ∈ [−H, H].
    **kwargs
        The other options of :func:`structure_factors` (``hkl``, ``factors``, ``grid``, ``b_factors``, ...).

    Returns
    -------
    hkl, I : numpy.ndarray
        (M, 3) Miller indices and (M,) float64 intensities (electrons² for X-rays), or the (2H+1)³ grid of
        intensities alone with ``grid=True``; a list of results for a list of crystals.
    """
    out = structure_factors(atoms, hmax, **kwargs)

    def sq(r):
        if isinstance(r, tuple):
            return r[0], np.abs(r[1]) ** 2
        return np.abs(r) ** 2

    return [sq(r) for r in out] if isinstance(out, list) else sq(out)


def density_grid(atoms, shape=(20, 20, 20), sigma: float = 0.5, *, frame: str = "fractional", weights="Z",
                 spacing=None, cutoff: float = 6.0, num_threads: int = 0):
    """Density of Gaussian atoms on a grid over the unit cell, periodic images included.

    ρ(r) = Σ_j Σ_R w_j (2πσ²)^(−3/2) exp(−|r − r_j − R|² / 2σ²) over the lattice translations R. Differentiable
    in the positions: :func:`xstructure.ops.density_grid`.

    Parameters
    ----------
    atoms : ase.Atoms, str, os.PathLike, Cell or list
        The crystal (a list gives a list of grids).
    shape : tuple of int, optional
        Grid shape (n0, n1, n2).
    sigma : float or array_like, optional
        Gaussian width in Å, one for all atoms or (N,).
    frame : {'fractional', 'cartesian'}, optional
        ``"fractional"``: grid point (a, b, c) at fractional (a/n0, b/n1, c/n2), parallelepiped voxels;
        ``"cartesian"``: an axis-aligned grid over the cell's bounding box (cuboid voxels; points outside the cell
        see the periodic crystal).
    weights : {'Z', 'ones'} or array_like, optional
        Atomic numbers, ones, or (N,) values.
    spacing : None, optional
        Not used.
    cutoff : float, optional
        Each Gaussian is cut at this many σ (6 σ leaves out 7e-8 of its weight).
    num_threads : int, optional
        CPU threads (0: OpenMP's default).

    Returns
    -------
    numpy.ndarray
        float64 grid of ``shape``, in weight units per Å³ (electrons/Å³ with Z weights).
    """
    if isinstance(atoms, (list, tuple)):
        return [density_grid(a, shape, sigma, frame=frame, weights=weights, spacing=spacing, cutoff=cutoff,
                             num_threads=num_threads) for a in atoms]
    c = as_cell(atoms)
    spec = grid_spec(c.cell, shape, frame)
    w = _weights(c, weights)
    sig = _per_atom("sigma", sigma, len(c.numbers), 0.5, 1e-6)
    out = np.empty(spec["shape"], dtype=np.float64)
    _backend.density_grid(np.ascontiguousarray(c.positions[None]), out[None], spec, w, sig, float(cutoff),
                          num_threads=num_threads)
    return out


def _weights(c: Cell, weights) -> np.ndarray:
    if isinstance(weights, str):
        if weights == "Z":
            return c.numbers.astype(np.float64) * c.occupancy
        if weights == "ones":
            return c.occupancy.copy()
        raise ValueError(f"unknown weights {weights!r}: use 'Z', 'ones' or one number per atom")
    return _per_atom("weights", weights, len(c.numbers), 1.0)


def grid_spec(cell, shape, frame: str = "fractional") -> dict:
    """Grid shape, steps and origin of :func:`density_grid` on a cell.

    Parameters
    ----------
    cell : array_like
        (3, 3) cell vectors as rows, Å.
    shape : int or tuple of int
        Grid shape (n0, n1, n2), or one n for all three.
    frame : {'fractional', 'cartesian'}, optional
        As for :func:`density_grid`.

    Returns
    -------
    dict
        ``"shape"`` (3 ints), ``"cell"`` ((3, 3) Å), ``"step"`` ((3, 3) step vectors as rows, Å) and
    ``"origin"`` ((3,) Å).
    """
    try:
        shape = tuple(int(n) for n in shape)
    except TypeError:
        shape = (int(shape),) * 3
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"grid shape must be three positive integers, got {shape!r}")
    cell = np.asarray(cell, dtype=np.float64)
    if frame == "fractional":
        step = cell / np.array(shape, dtype=np.float64)[:, None]
        origin = np.zeros(3)
    elif frame == "cartesian":
        corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=np.float64) @ cell
        lo, hi = corners.min(0), corners.max(0)
        step = np.diag((hi - lo) / np.array(shape, dtype=np.float64))
        origin = lo
    else:
        raise ValueError(f"unknown frame {frame!r}: use 'fractional' or 'cartesian'")
    return {"shape": shape, "cell": cell, "step": step, "origin": origin}

