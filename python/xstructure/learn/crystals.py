"""Sets of random symmetric crystals with their diffraction, for learning the phase problem.

The inputs follow the two published approaches that :mod:`xstructure.learn.phase` rebuilds: |F(hkl)|² boxes
(Scripps & Cumby 2021) and powder patterns with the composition (Guo et al. 2024).

    >>> cs = CrystalSet.create("cubic.zarr", 10_000, system="cubic", seed=0)   # resumes when interrupted
    >>> cs.atoms(7)                       # ase.Atoms of crystal 7
    >>> cs.intensity[:16]                 # |F(hkl)|² on the box h, k, l ∈ [−H, H]: (16, 2H+1, 2H+1, 2H+1)
    >>> cs.powder[:16], cs.two_theta      # powder patterns (max 1) on a fixed 2θ grid
    >>> cs.composition(np.arange(16))     # (16, 119) atom fractions per element
    >>> cs.density(np.arange(16), 32)     # targets: Z-weighted Gaussian densities, fractional frame

**Crystals.** A space group is drawn uniformly from the system's (cubic 195–230, trigonal 143–167, or
``"any"``: 1–230); then 1–4 occupied Wyckoff sites with at most ``max_atoms`` atoms in the conventional cell,
their elements drawn from 1–3 species of ``ELEMENTS`` (Li–Ba without the noble gases).  Free Wyckoff
parameters are uniform.  The cell has a volume of Σ (4/3)π r_cov³ / p with the packing fraction p uniform in
0.25–0.45 (trigonal: hexagonal axes, c/a uniform in 0.8–2.5), and every pair of atoms, periodic images
included, is at least max(1 Å, 0.75 (r_i + r_j)) apart (covalent radii of ase); a draw that fails is redrawn.
Our generator, not pyxtal's ``from_random`` (≈ 0.15 s per crystal): pyxtal's Wyckoff tables, our sampling.

**Diffraction, one convention for input and target.**  The target is ``crystal.density_grid`` with weights Z
and Gaussian atoms of σ = ``sigma`` Å.  Its Fourier coefficients are exactly the structure factors with
``factors="Z"`` and B = 8π²σ², so the inputs use those: ``intensity`` = |F(hkl)|² on the box (the input of
Scripps & Cumby, there with Z as the form factor too) and ``powder`` = the powder pattern (Cu Kα1,
pseudo-Voigt, FWHM 0.25°) scaled to a maximum of 1 (the input of Guo et al., with the composition).  What a
network must learn is then exactly the phase problem, and the recomputed diffraction of a true density equals
the input (tested).

The store is zarr v3 (the pool's layout): chunks of ``chunk`` crystals, each drawn from
``default_rng([seed, chunk index])`` and flagged done when written, so an interrupted ``create`` resumes
and gives the same set.
"""

from __future__ import annotations

import math
import os
import shutil

import numpy as np

from ..crystal import density_grid, intensities
from ..crystal.phasing import cell_atoms
from ..crystal.powder import powder_pattern
from ..pools.pool import compressors, move_in, new_store_dir, open_group

__all__ = ["CrystalSet", "SYSTEMS", "ELEMENTS", "random_crystal", "FORMAT"]

FORMAT = "xstructure-crystal-set"
VERSION = 1
SYSTEMS = {"cubic": (195, 230), "trigonal": (143, 167), "any": (1, 230)}
ELEMENTS = [z for z in range(3, 57) if z not in (10, 18, 36, 54)]   # Li..Ba, no noble gases
MAX_Z = 118

_groups: dict = {}


def _group(sg: int):
    from pyxtal.symmetry import Group  # optional dependency (pyxtal)

    if sg not in _groups:
        g = Group(sg)
        _groups[sg] = (g.lattice_type, [(wp.multiplicity, wp.ops) for wp in g.Wyckoff_positions])
    return _groups[sg]


def _orbit(ops, rng) -> np.ndarray:
    p = ops[0].operate(rng.random(3))  # the site's representative operation projects a random point onto it
    orb = np.array([op.operate(p) for op in ops]) % 1.0
    orb[orb > 1 - 1e-9] = 0.0
    return orb


def _cell(lattice: str, volume: float, rng) -> np.ndarray:
    if lattice == "cubic":
        a = volume ** (1 / 3)
        return np.diag([a, a, a])
    if lattice in ("trigonal", "hexagonal"):
        r = rng.uniform(0.8, 2.5)
        a = (2 * volume / (math.sqrt(3) * r)) ** (1 / 3)
        return np.array([[a, 0, 0], [-a / 2, a * math.sqrt(3) / 2, 0], [0, 0, r * a]])
    raise ValueError(f"lattice type {lattice!r} is not generated here (use system 'cubic' or 'trigonal')")


def _min_distance_ok(cell, frac, radii) -> bool:
    d = frac[:, None, :] - frac[None, :, :]
    d -= np.round(d)
    shifts = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], dtype=np.float64)
    n = len(frac)
    r = (d[:, :, None, :] + shifts[None, None]) @ cell                    # (n, n, 27, 3)
    dist = np.sqrt((r ** 2).sum(-1))
    dist[np.arange(n), np.arange(n), 13] = np.inf                         # an atom and itself
    need = np.maximum(1.0, 0.75 * (radii[:, None] + radii[None, :]))
    return bool((dist.min(-1) >= need).all())


def random_crystal(rng, system: str = "cubic", max_atoms: int = 24, tries: int = 200):
    """One random crystal of a system (see the module notes).

    Parameters
    ----------
    rng : numpy.random.Generator
        The random generator.
    system : {'cubic', 'trigonal', 'any'}, optional
        Space groups 195–230, 143–167 (hexagonal axes) or 1–230.
    max_atoms : int, optional
        Most atoms in the conventional cell.
    tries : int, optional
        Draws before giving up.

    Returns
    -------
    cell : numpy.ndarray
        (3, 3) cell vectors as rows, Å.
    frac : numpy.ndarray
        (n, 3) fractional coordinates.
    numbers : numpy.ndarray
        (n,) atomic numbers.
    spacegroup : int
        The space-group number.

    Raises
    ------
    RuntimeError
        No valid crystal within ``tries`` draws.
    """
    from ase.data import covalent_radii  # loaded on use: keeps `import xstructure` fast

    lo, hi = SYSTEMS[system]
    for _ in range(tries):
        sg = int(rng.integers(lo, hi + 1))
        lattice, sites = _group(sg)
        if lattice not in ("cubic", "trigonal", "hexagonal"):
            continue
        species = rng.choice(ELEMENTS, size=int(rng.integers(1, 4)), replace=False)
        frac, numbers, budget = [], [], max_atoms
        for _site in range(int(rng.integers(1, 5))):
            fit = [s for s in sites if s[0] <= budget]
            if not fit:
                break
            mult, ops = fit[int(rng.integers(len(fit)))]
            frac.append(_orbit(ops, rng))
            numbers += [int(rng.choice(species))] * len(frac[-1])
            budget -= len(frac[-1])
        if not frac:
            continue
        frac = np.concatenate(frac)
        numbers = np.array(numbers, dtype=np.int64)
        radii = covalent_radii[numbers]
        volume = (4 / 3 * math.pi * radii ** 3).sum() / rng.uniform(0.25, 0.45)
        cell = _cell(lattice, volume, rng)
        if len(frac) <= max_atoms and _min_distance_ok(cell, frac, radii):
            return cell, frac, numbers, sg
    raise RuntimeError(f"no valid {system} crystal in {tries} draws")


class CrystalSet:
    """A store of random crystals and their diffraction (see the module notes).

    Made by :meth:`create` or opened by :meth:`open`, not constructed directly. Arrays are lazy zarr arrays.

    Parameters
    ----------
    path : str
        The store's directory.
    group : zarr.Group
        Its root group.

    Attributes
    ----------
    intensity : zarr.Array
        (B, 2H+1, 2H+1, 2H+1) ``|F(hkl)|²`` boxes (Z units, Gaussian atoms of B = 8π²σ²).
    powder : zarr.Array
        (B, n_powder) powder patterns on :attr:`two_theta`, scaled to a maximum of 1.
    two_theta : numpy.ndarray
        (n_powder,) 2θ grid of the powder patterns, degrees (Cu Kα1).
    hmax : int
        H of the boxes.
    sigma : float
        Width of the Gaussian atoms of the target densities, Å.
    """

    def __init__(self, path: str, group):
        self.path, self.group = path, group
        self.attrs = dict(group.attrs)

    # ---- creation -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str, n: int, *, system: str = "cubic", seed: int = 0, chunk: int = 250,
               max_atoms: int = 24, hmax: int = 8, sigma: float = 0.5, n_powder: int = 1024,
               two_theta_range=(5.0, 90.0), progress: bool = True) -> "CrystalSet":
        """Create a set of ``n`` crystals, or finish an interrupted one.

        Parameters
        ----------
        path : str
            The store's directory.
        n : int
            Number of crystals.
        system : {'cubic', 'trigonal', 'any'}, optional
            Crystal system of the space groups drawn.
        seed : int, optional
            Chunk c is drawn from ``default_rng([seed, c])``.
        chunk : int, optional
            Crystals per chunk (the unit of work and of resuming).
        max_atoms : int, optional
            Most atoms in the conventional cell.
        hmax : int, optional
            H of the ``|F|²`` boxes h, k, l ∈ [−H, H].
        sigma : float, optional
            Width of the Gaussian atoms, Å.
        n_powder : int, optional
            Points of the powder patterns.
        two_theta_range : tuple of float, optional
            2θ range of the powder patterns, degrees.
        progress : bool, optional
            A progress bar.

        Returns
        -------
        CrystalSet
            The complete set.

        Raises
        ------
        ValueError
            Bad parameters, or an existing set made with other parameters.
        """
        if system not in SYSTEMS:
            raise ValueError(f"unknown crystal system {system!r}: use one of {sorted(SYSTEMS)}")
        for name, v in (("n", n), ("chunk", chunk), ("max_atoms", max_atoms), ("n_powder", n_powder)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if not (isinstance(hmax, (int, np.integer)) and hmax >= 1):
            raise ValueError(f"hmax must be a positive integer, got {hmax!r}")
        if not (np.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive number of Å, got {sigma!r}")
        wanted = {"format": FORMAT, "version": VERSION, "system": system, "n_total": int(n), "seed": int(seed),
                  "chunk": int(chunk), "max_atoms": int(max_atoms), "hmax": int(hmax), "sigma": float(sigma),
                  "two_theta": [float(two_theta_range[0]), float(two_theta_range[1]), int(n_powder)],
                  "wavelength": 1.5406, "powder_fwhm_deg": 0.25}
        if os.path.isdir(path) and os.listdir(path):
            cs = cls.open(path)
            diff = [k for k, v in wanted.items() if cs.attrs.get(k) != v]
            if diff:
                raise ValueError(f"{path} holds a crystal set with other parameters ({', '.join(diff)}); "
                                 "choose another path or delete it")
        else:
            if os.path.isdir(path):
                os.rmdir(path)
            g, tmp = new_store_dir(path)
            L = 2 * hmax + 1
            A = int(max_atoms)
            comp = compressors()
            g.attrs.update(wanted)
            g.create_array("cell", shape=(n, 3, 3), chunks=(chunk, 3, 3), dtype="float64", fill_value=np.nan,
                           compressors=comp)
            g.create_array("frac", shape=(n, A, 3), chunks=(chunk, A, 3), dtype="float64", fill_value=0.0,
                           compressors=comp)
            g.create_array("numbers", shape=(n, A), chunks=(chunk, A), dtype="int16", fill_value=0,
                           compressors=comp)
            g.create_array("spacegroup", shape=(n,), chunks=(chunk,), dtype="int16", fill_value=0,
                           compressors=comp)
            g.create_array("intensity", shape=(n, L, L, L), chunks=(chunk, L, L, L), dtype="float32",
                           fill_value=np.nan, compressors=comp)
            g.create_array("powder", shape=(n, n_powder), chunks=(chunk, n_powder), dtype="float32",
                           fill_value=np.nan, compressors=comp)
            n_chunks = (n + chunk - 1) // chunk
            g.create_array("done", shape=(n_chunks,), chunks=(n_chunks,), dtype="bool", fill_value=False)
            move_in(tmp, path)
            cs = cls.open(path)
        cs._fill(progress)
        return cs

    def _fill(self, progress: bool):
        import zarr  # loaded on use: keeps `import xstructure` fast
        from tqdm.auto import tqdm  # loaded on use: keeps `import xstructure` fast

        g = zarr.open_group(store=self.path, mode="r+", zarr_format=3)
        a = self.attrs
        n, C = int(a["n_total"]), int(a["chunk"])
        done = np.asarray(g["done"][:], dtype=bool)
        todo = np.flatnonzero(~done)
        bar = tqdm(total=n, initial=n - sum(min(n, (i + 1) * C) - i * C for i in todo), unit="crystal",
                   disable=not progress, desc=f"{a['system']} crystals")
        for i in todo:
            lo, hi = i * C, min(n, (i + 1) * C)
            arrays = self._make_chunk(int(i), hi - lo)
            for key, val in arrays.items():
                g[key][lo:hi] = val
            flags = np.asarray(g["done"][:], dtype=bool)
            flags[i] = True
            g["done"][:] = flags
            bar.update(hi - lo)
        bar.close()

    def _make_chunk(self, index: int, m: int) -> dict:
        a = self.attrs
        rng = np.random.default_rng([int(a["seed"]), index])
        A, H = int(a["max_atoms"]), int(a["hmax"])
        out = {"cell": np.zeros((m, 3, 3)), "frac": np.zeros((m, A, 3)), "numbers": np.zeros((m, A), np.int16),
               "spacegroup": np.zeros(m, np.int16)}
        atoms = []
        for k in range(m):
            cell, frac, numbers, sg = random_crystal(rng, a["system"], A)
            out["cell"][k], out["spacegroup"][k] = cell, sg
            out["frac"][k, :len(frac)], out["numbers"][k, :len(frac)] = frac, numbers
            atoms.append(cell_atoms(cell, frac, numbers))
        B = self.b_factor
        out["intensity"] = np.stack([
            intensities(x, H, factors="Z", grid=True, b_factors=np.full(len(x), B)) for x in atoms]).astype(np.float32)
        _, I = powder_pattern(atoms, self.two_theta, factors="Z", b_factors=B,
                              W=float(a["powder_fwhm_deg"]) ** 2, U=0.0, V=0.0)
        I = np.asarray(I, dtype=np.float64).reshape(m, -1)
        out["powder"] = (I / np.maximum(I.max(axis=1, keepdims=True), 1e-300)).astype(np.float32)
        return out

    # ---- reading --------------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str) -> "CrystalSet":
        """Open an existing set read-only.

        Parameters
        ----------
        path : str
            The store's directory.

        Returns
        -------
        CrystalSet
            The set.

        Raises
        ------
        ValueError
            Not a readable xstructure crystal set (or another format version).
        """
        if not os.path.isdir(path):
            raise ValueError(f"{path}: no crystal set there (not a directory)")
        g = open_group(path, "r")
        fmt = g.attrs.get("format")
        if fmt != FORMAT:
            raise ValueError(f"{path} is not an xstructure crystal set (format {fmt!r})")
        if g.attrs.get("version") != VERSION:
            raise ValueError(f"{path}: crystal-set version {g.attrs.get('version')!r}, this xstructure reads "
                             f"{VERSION}")
        for key in ("cell", "frac", "numbers", "spacegroup", "intensity", "powder", "done"):
            if key not in g:
                raise ValueError(f"{path}: array {key!r} is missing; the store is corrupted")
        return cls(path, g)

    def __len__(self) -> int:
        return int(self.attrs["n_total"])

    def __repr__(self) -> str:
        return f"CrystalSet({self.path!r}: {len(self)} {self.attrs['system']} crystals, H={self.hmax})"

    @property
    def complete(self) -> bool:
        """Whether every chunk is done."""
        return bool(np.all(self.group["done"][:]))

    @property
    def hmax(self) -> int:
        """H of the ``|F|²`` boxes."""
        return int(self.attrs["hmax"])

    @property
    def sigma(self) -> float:
        """Width σ of the Gaussian atoms of the target densities, Å."""
        return float(self.attrs["sigma"])

    @property
    def b_factor(self) -> float:
        """B = 8π²σ² (Å²): the Debye–Waller factor of a Gaussian atom of width σ."""
        return 8 * math.pi ** 2 * self.sigma ** 2

    @property
    def two_theta(self) -> np.ndarray:
        """(n_powder,) 2θ grid of the powder patterns, degrees."""
        lo, hi, n = self.attrs["two_theta"]
        return np.linspace(lo, hi, int(n))

    @property
    def intensity(self):
        """Lazy (B, 2H+1, 2H+1, 2H+1) float32 ``|F(hkl)|²`` boxes."""
        return self.group["intensity"]

    @property
    def powder(self):
        """Lazy (B, n_powder) float32 powder patterns (maximum 1)."""
        return self.group["powder"]

    def structures(self, idx) -> list:
        """The structures of some crystals.

        Parameters
        ----------
        idx : int or array_like
            Crystal indices.

        Returns
        -------
        list of tuple
            Per crystal (cell (3, 3) Å, frac (n, 3), numbers (n,)), padding removed.
        """
        idx = np.atleast_1d(np.asarray(idx))
        cell = self.group["cell"].get_orthogonal_selection((idx,))
        frac = self.group["frac"].get_orthogonal_selection((idx,))
        num = self.group["numbers"].get_orthogonal_selection((idx,))
        if not np.all(np.isfinite(cell)):
            raise ValueError(f"{self.path}: some requested crystals are not written yet (run create again)")
        return [(c, f[z > 0], z[z > 0].astype(np.int64)) for c, f, z in zip(cell, frac, num)]

    def atoms(self, i: int):
        """Crystal ``i`` as a periodic ``ase.Atoms``.

        Parameters
        ----------
        i : int
            Crystal index.

        Returns
        -------
        ase.Atoms
            The crystal.
        """
        return cell_atoms(*self.structures(i)[0])

    def composition(self, idx) -> np.ndarray:
        """Fraction of the cells' atoms per atomic number.

        Parameters
        ----------
        idx : array_like
            (B,) crystal indices.

        Returns
        -------
        numpy.ndarray
            (B, MAX_Z + 1) fractions, indexed by Z.
        """
        num = self.group["numbers"].get_orthogonal_selection((np.atleast_1d(np.asarray(idx)),)).astype(np.int64)
        out = np.zeros((len(num), MAX_Z + 1), dtype=np.float32)
        for k, z in enumerate(num):
            z = z[z > 0]
            np.add.at(out[k], z, 1.0 / len(z))
        return out

    def density(self, idx, n: int = 32, structures=None) -> np.ndarray:
        """The target densities: ``crystal.density_grid`` with Z weights, the set's σ, fractional frame.

        Parameters
        ----------
        idx : array_like
            (B,) crystal indices.
        n : int, optional
            Grid size.
        structures : list or None, optional
            The structures of ``idx`` when already read (see :meth:`structures`).

        Returns
        -------
        numpy.ndarray
            (B, n, n, n) densities, electrons/Å³.
        """
        structures = self.structures(idx) if structures is None else structures
        return np.stack([density_grid(cell_atoms(*s), (n, n, n), self.sigma) for s in structures])

    def split(self, seed: int = 0, test: int = 500, val: int = 200) -> dict:
        """Train, validation and test indices by crystal (a fixed permutation of the set).

        Parameters
        ----------
        seed : int, optional
            Seed of the permutation.
        test, val : int, optional
            Test and validation crystals.

        Returns
        -------
        dict
            ``"train"``, ``"val"``, ``"test"`` -> sorted index arrays.

        Raises
        ------
        ValueError
            ``test + val`` not below the set's size.
        """
        n = len(self)
        if test + val >= n:
            raise ValueError(f"a set of {n} crystals cannot hold {test} test and {val} validation crystals: ask for "
                             "fewer (--n-test and --n-val, or n_test= and n_val=) or make a larger set")
        perm = np.random.default_rng([seed, 7]).permutation(n)
        return {"test": np.sort(perm[:test]), "val": np.sort(perm[test:test + val]),
                "train": np.sort(perm[test + val:])}

    def delete(self):
        """Delete the store from disk."""
        shutil.rmtree(self.path)
