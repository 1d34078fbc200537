"""Thermal geometries of one molecule: Wigner (quantum harmonic), Langevin MD and Metropolis MC on MMFF94.

    >>> atoms = xstructure.molecule("NMM")
    >>> out = sample(atoms, "wigner", 1000, temperature=300, seed=7)      # out["positions"]: (1000, 18, 3) Å
    >>> out = sample(atoms, "md", 200, temperature=300, seed=7)           # Langevin, MMFF94
    >>> out = sample(atoms, "mc", 200, temperature=300, seed=7)           # Metropolis, MMFF94

Units.  Positions in Å, energies in eV, masses in amu, time in fs, temperatures in K.  Mass-weighted
(normal-mode) coordinates are in amu^½·Å, angular frequencies ω in rad/fs (``NormalModes.wavenumbers`` gives
cm⁻¹), so ħ is ``HBAR`` = 6.3508e-3 amu·Å²/fs and a mode variance ħ/(2ω)·coth(ħω/2kT) is in amu·Å².

Resumability.  :func:`sample` numbers its samples 0, 1, 2, ... and splits them into fixed blocks of ``chunk``
samples; block ``c`` is drawn with its own generator ``np.random.default_rng([seed, c])``.  For ``wigner`` a
block is ``chunk`` independent draws; for ``md`` and ``mc`` a block is one independent trajectory (started
from the reference geometry, equilibrated, then one snapshot every ``interval`` steps/sweeps).  So samples
``[start, start + n)`` are a deterministic function of (seed, start, n, method, parameters) and do not depend
on how a range is split between calls: ``sample(start=0, n=2048)`` equals the concatenation of
``sample(start=0, n=1024)`` and ``sample(start=1024, n=1024)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import units
from ase.calculators.calculator import Calculator, all_changes

from ..structures import molecule

__all__ = [
    "check_options",
    "MMFF94Calculator",
    "NormalModes",
    "optimize",
    "hessian",
    "normal_modes",
    "minimum_modes",
    "wigner",
    "wigner_mode_variances",
    "langevin_md",
    "metropolis_mc",
    "bonds_intact",
    "sample",
    "METHODS",
    "HBAR",
    "KB",
]

#: Sampling methods known to :func:`sample`.
METHODS = ("wigner", "md", "mc")

KCAL_PER_MOL_IN_EV = 0.0433641043  # 1 kcal/mol in eV


# ASE's internal units are eV, Å, amu; its time unit is 1/units.fs fs, so ħ in eV·(ASE time) =
# amu·Å²/(ASE time) becomes amu·Å²/fs on multiplying by units.fs.
#: Reduced Planck constant in amu·Å²/fs.
HBAR = units._hbar * units.J * units.s * units.fs
#: Boltzmann constant in amu·Å²/(fs²·K).
KB = units.kB * units.fs**2
_C_CM_PER_FS = 2.99792458e-5  # speed of light, cm/fs


# --------------------------------------------------------------------------------------------------------
# MMFF94 through RDKit
# --------------------------------------------------------------------------------------------------------


def _rdkit_mol(atoms, charge: int):
    """An RDKit Mol with the atoms' order, bonds perceived from the geometry (xyz2mol)."""
    try:
        from rdkit import Chem, RDLogger  # optional dependency (RDKit)
        from rdkit.Chem import rdDetermineBonds  # optional dependency (RDKit)
    except ImportError:
        raise ValueError("MMFF94 needs RDKit: pip install rdkit") from None
    RDLogger.DisableLog("rdApp.*")
    syms = atoms.get_chemical_symbols()
    lines = [str(len(atoms)), ""]
    lines += [f"{s} {x:.10f} {y:.10f} {z:.10f}" for s, (x, y, z) in zip(syms, atoms.get_positions())]
    mol = Chem.MolFromXYZBlock("\n".join(lines) + "\n")
    if mol is None:
        raise ValueError(f"RDKit cannot read {atoms.get_chemical_formula()} as a molecule")
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=int(charge))
    except Exception as exc:  # RDKit raises ValueError or RuntimeError
        raise ValueError(
            f"cannot perceive bonds of {atoms.get_chemical_formula()} (charge {charge}) from its geometry: "
            f"{str(exc).splitlines()[0]}") from None
    return mol


class MMFF94Calculator(Calculator):
    """ASE calculator for MMFF94 (or MMFF94s) energies in eV and forces in eV/Å, computed by RDKit.

    The bond graph is perceived once, from the geometry given at construction (or at the first calculation
    when none is given), with ``rdkit.Chem.rdDetermineBonds``; later geometries only move the atoms.

    Parameters
    ----------
    atoms_or_smiles : ase.Atoms, str or None, optional
        an ase.Atoms, or anything :func:`xstructure.molecule` accepts (a built-in name such
        as "NMM", an ase.build name, a SMILES string, a file), or None to take the first atoms computed.
    charge : int or None, optional
        total charge used for bond-order perception (default: the SMILES' formal charge, else 0).
    variant : str, optional
        "MMFF94" or "MMFF94s".

    Raises
    ------
    ValueError
        bonds cannot be perceived, or MMFF94 has no parameters for some atom type.
    """

    implemented_properties = ["energy", "forces"]

    def __init__(self, atoms_or_smiles=None, *, charge: int | None = None, variant: str = "MMFF94"):
        super().__init__()
        if variant not in ("MMFF94", "MMFF94s"):
            raise ValueError(f"variant must be 'MMFF94' or 'MMFF94s', got {variant!r}")
        self.variant = variant
        self._charge = charge
        self._ff = None
        self.numbers = None
        if atoms_or_smiles is not None:
            atoms = atoms_or_smiles
            if isinstance(atoms_or_smiles, str):
                atoms = molecule(atoms_or_smiles)
                if charge is None:
                    self._charge = _smiles_charge(atoms_or_smiles)
            self._setup(atoms)

    # -- construction ----------------------------------------------------------------------------------
    def _setup(self, atoms) -> None:
        from rdkit.Chem import rdForceFieldHelpers as ffh  # optional dependency (RDKit)

        if len(atoms) == 0:
            raise ValueError("empty structure: no atoms")
        mol = _rdkit_mol(atoms, self._charge or 0)
        try:
            mol.UpdatePropertyCache(strict=False)
            props = ffh.MMFFGetMoleculeProperties(mol, mmffVariant=self.variant)
            typed = props is not None and ffh.MMFFHasAllMoleculeParams(mol)
        except RuntimeError:  # RDKit pre-condition violations
            typed = False
        if not typed:
            raise ValueError(
                f"{self.variant} has no parameters for {atoms.get_chemical_formula()} "
                "(an atom type or interaction MMFF94 does not cover)")
        ff = ffh.MMFFGetMoleculeForceField(mol, props, ignoreInterfragInteractions=False)
        if ff is None:
            raise ValueError(f"RDKit could not set up {self.variant} for {atoms.get_chemical_formula()}")
        ff.Initialize()
        self.mol = mol
        self._ff = ff
        self.numbers = np.asarray(atoms.get_atomic_numbers(), dtype=np.int64).copy()

    def _check(self, numbers) -> None:
        if not np.array_equal(np.asarray(numbers), self.numbers):
            raise ValueError(
                "this MMFF94Calculator was set up for atomic numbers "
                f"{self.numbers.tolist()}, got {np.asarray(numbers).tolist()}")

    # -- ASE interface ---------------------------------------------------------------------------------
    def calculate(self, atoms=None, properties=("energy",), system_changes=None):
        """Compute the MMFF94 energy (eV) and forces (eV/Å) of ``atoms`` (ASE's calculator interface)."""
        super().calculate(atoms, properties, system_changes or all_changes)
        if self._ff is None:
            self._setup(self.atoms)
        self._check(self.atoms.get_atomic_numbers())
        x = np.asarray(self.atoms.get_positions(), dtype=np.float64).ravel().tolist()
        self.results["energy"] = self._ff.CalcEnergy(x) * KCAL_PER_MOL_IN_EV
        grad = np.asarray(self._ff.CalcGrad(x), dtype=np.float64)
        self.results["forces"] = -grad.reshape(-1, 3) * KCAL_PER_MOL_IN_EV

    # -- fast paths (no ase.Atoms round trip) ---------------------------------------------------------
    def energies(self, positions) -> np.ndarray:
        """MMFF94 energies in eV of (B, N, 3) or (N, 3) positions in Å; returns (B,) or a float."""
        pos = np.asarray(positions, dtype=np.float64)
        single = pos.ndim == 2
        pos = pos[None] if single else pos
        if self._ff is None:
            raise ValueError("MMFF94Calculator has no molecule yet: give atoms at construction")
        if pos.ndim != 3 or pos.shape[1:] != (len(self.numbers), 3):
            raise ValueError(f"positions must have shape (B, {len(self.numbers)}, 3), got {pos.shape}")
        e = np.array([self._ff.CalcEnergy(p.ravel().tolist()) for p in pos]) * KCAL_PER_MOL_IN_EV
        return float(e[0]) if single else e


def _smiles_charge(spec: str) -> int:
    try:
        from rdkit import Chem, RDLogger  # optional dependency (RDKit)
    except ImportError:
        return 0
    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(spec)
    return 0 if mol is None else int(Chem.GetFormalCharge(mol))


# --------------------------------------------------------------------------------------------------------
# Minimum, Hessian, normal modes
# --------------------------------------------------------------------------------------------------------


def _as_atoms(atoms):
    if isinstance(atoms, str):
        return molecule(atoms)
    if type(atoms).__name__ != "Atoms" or not hasattr(atoms, "get_atomic_numbers"):
        raise ValueError(f"atoms must be an ase.Atoms or a molecule name/SMILES, got {type(atoms).__name__}")
    if len(atoms) == 0:
        raise ValueError("empty structure: no atoms")
    return atoms


def _with_calc(atoms, calc):
    """A copy of atoms carrying calc (a fresh MMFF94Calculator for these atoms when calc is None)."""
    a = atoms.copy()
    a.calc = MMFF94Calculator(a) if calc is None else calc
    return a


def optimize(atoms, calc=None, fmax: float = 1e-4, steps: int = 10000):
    """Minimise the energy of a molecule (ase BFGS).

    Parameters
    ----------
    atoms : ase.Atoms or str
        ase.Atoms or a molecule name/SMILES (see :func:`xstructure.molecule`).
    calc : ase.calculators.calculator.Calculator or None, optional
        ASE calculator (default: MMFF94 for these atoms).
    fmax : float, optional
        Convergence criterion on the largest atomic force, eV/Å.
    steps : int, optional
        Most BFGS steps.

    Returns
    -------
    ase.Atoms
        A new ase.Atoms at the minimum (positions in Å), with the calculator attached.

    Raises
    ------
    ValueError
        Not converged within ``steps``.
    """
    from ase.optimize import BFGS  # loaded on use: keeps `import xstructure` fast

    a = _with_calc(_as_atoms(atoms), calc)
    opt = BFGS(a, logfile=None)
    if not opt.run(fmax=fmax, steps=steps):
        fm = float(np.sqrt((a.get_forces() ** 2).sum(axis=1).max()))
        raise ValueError(f"optimisation did not converge in {steps} steps (max force {fm:.2e} eV/Å)")
    return a


def hessian(atoms, calc=None, delta: float = 1e-3) -> np.ndarray:
    """Cartesian Hessian by central finite differences of the forces, symmetrised.

    Parameters
    ----------
    atoms : ase.Atoms
        N atoms; its own calculator is used when ``calc`` is None and it has one.
    calc : ase.calculators.calculator.Calculator or None, optional
        ASE calculator (default: the atoms' own, else MMFF94).
    delta : float, optional
        Displacement in Å.

    Returns
    -------
    numpy.ndarray
        (3N, 3N) Hessian in eV/Å².
    """
    atoms = _as_atoms(atoms)
    if calc is None and atoms.calc is not None:
        calc = atoms.calc
    a = _with_calc(atoms, calc)
    x0 = a.get_positions().copy()
    n3 = 3 * len(a)
    H = np.empty((n3, n3))
    for k in range(n3):
        i, d = divmod(k, 3)
        x = x0.copy()
        x[i, d] += delta
        a.set_positions(x)
        fp = a.get_forces().ravel()
        x[i, d] -= 2 * delta
        a.set_positions(x)
        fm = a.get_forces().ravel()
        H[k] = -(fp - fm) / (2 * delta)
    a.set_positions(x0)
    return 0.5 * (H + H.T)


@dataclass(frozen=True)
class NormalModes:
    """Harmonic normal modes about a geometry, translations and rotations removed.

    Attributes
    ----------
    numbers : numpy.ndarray
        (N,) atomic numbers.
    positions : numpy.ndarray
        (N, 3) reference geometry, Å.
    masses : numpy.ndarray
        (N,) amu.
    omega : numpy.ndarray
        (M,) angular frequencies, rad/fs (M = 3N − 6, or 3N − 5 for a linear molecule); an imaginary
        frequency (negative curvature) is stored as minus its magnitude.
    modes : numpy.ndarray
        (M, 3N) orthonormal mass-weighted eigenvectors L_k (rows); a Cartesian displacement is
        M^{-1/2} Σ_k q_k L_k with q_k in amu^½·Å.
    """

    numbers: np.ndarray
    positions: np.ndarray
    masses: np.ndarray
    omega: np.ndarray
    modes: np.ndarray

    @property
    def wavenumbers(self) -> np.ndarray:
        """(M,) harmonic wavenumbers in cm⁻¹ (negative for imaginary modes)."""
        return self.omega / (2 * np.pi * _C_CM_PER_FS)

    def coordinates(self, positions) -> np.ndarray:
        """Normal-mode coordinates q (B, M) in amu^½·Å of (B, N, 3) positions (no re-alignment)."""
        pos = np.asarray(positions, dtype=np.float64)
        d = (pos - self.positions) * np.sqrt(self.masses)[:, None]
        return d.reshape(len(pos), -1) @ self.modes.T


def _rigid_basis(positions, masses) -> np.ndarray:
    """Orthonormal basis (3N, k) of mass-weighted translations and rotations (k = 6, or 5 if linear)."""
    N = len(masses)
    sq = np.sqrt(masses)
    com = (masses[:, None] * positions).sum(0) / masses.sum()
    r = positions - com
    vecs = []
    for d in range(3):
        t = np.zeros((N, 3))
        t[:, d] = sq
        vecs.append(t.ravel())
    for d in range(3):
        e = np.zeros(3)
        e[d] = 1.0
        vecs.append((np.cross(e, r) * sq[:, None]).ravel())
    D = np.array(vecs).T
    u, s, _ = np.linalg.svd(D, full_matrices=False)
    keep = s > 1e-6 * s.max()
    return u[:, keep]


def normal_modes(atoms, hessian: np.ndarray) -> NormalModes:
    """Normal modes of a Cartesian Hessian about the atoms' geometry.

    The mass-weighted Hessian is restricted to the orthogonal complement of the translations and rotations
    (equivalently, projected with P = 1 − D Dᵀ and the 6 or 5 zero modes discarded) and diagonalised.

    Parameters
    ----------
    atoms : ase.Atoms
        The geometry (N atoms, Å) and masses (amu).
    hessian : numpy.ndarray
        (3N, 3N) Cartesian Hessian in eV/Å².

    Returns
    -------
    NormalModes
        M = 3N − 6 (3N − 5 for a linear molecule) modes with their angular frequencies in rad/fs.
    """
    atoms = _as_atoms(atoms)
    N = len(atoms)
    H = np.asarray(hessian, dtype=np.float64)
    if H.shape != (3 * N, 3 * N):
        raise ValueError(f"hessian must have shape (3N, 3N) = ({3 * N}, {3 * N}), got {H.shape}")
    if N < 2:
        raise ValueError("a single atom has no vibrations")
    masses = np.asarray(atoms.get_masses(), dtype=np.float64)
    pos = np.asarray(atoms.get_positions(), dtype=np.float64)
    inv = 1.0 / np.sqrt(np.repeat(masses, 3))
    Hmw = 0.5 * (H + H.T) * inv[:, None] * inv[None, :]  # eV/(Å²·amu) = (ASE time)^-2
    D = _rigid_basis(pos, masses)
    q, _ = np.linalg.qr(np.hstack([D, np.eye(3 * N)]))
    Q = q[:, D.shape[1]:3 * N]  # orthonormal complement of the rigid motions
    w2, V = np.linalg.eigh(Q.T @ Hmw @ Q)
    omega = np.sign(w2) * np.sqrt(np.abs(w2)) * units.fs  # rad/(ASE time) -> rad/fs
    modes = (Q @ V).T
    return NormalModes(np.asarray(atoms.get_atomic_numbers(), dtype=np.int64), pos, masses, omega, modes)


_MODES_CACHE: dict = {}


def _calc_key(calc):
    if calc is None:
        return ("MMFF94",)
    if isinstance(calc, MMFF94Calculator) and getattr(calc, "numbers", None) is not None:
        return (calc.variant, calc.numbers.tobytes())
    return ("id", id(calc))


def minimum_modes(atoms, calc=None, *, fmax: float = 1e-4, delta: float = 1e-3) -> NormalModes:
    """Optimise, then take the normal modes at the minimum; cached per (geometry, calculator) in this process.

    Parameters
    ----------
    atoms : ase.Atoms or str
        The molecule (or a name/SMILES).
    calc : ase.calculators.calculator.Calculator or None, optional
        ASE calculator (default MMFF94).
    fmax : float, optional
        Convergence criterion of the optimisation, eV/Å.
    delta : float, optional
        Finite-difference displacement of the Hessian, Å.

    Returns
    -------
    NormalModes
        The modes about the minimum.

    Raises
    ------
    ValueError
        The optimised geometry has an imaginary frequency (a saddle point, not a minimum).
    """
    atoms = _as_atoms(atoms)
    key = (np.asarray(atoms.get_atomic_numbers()).tobytes(), np.asarray(atoms.get_positions()).tobytes(),
           _calc_key(calc), float(fmax), float(delta))
    hit = _MODES_CACHE.get(key)
    if hit is not None:
        return hit[0]
    a = optimize(atoms, calc, fmax=fmax)
    nm = normal_modes(a, hessian(a, a.calc, delta=delta))
    if np.any(nm.wavenumbers < 0):
        raise ValueError(
            f"the optimised geometry is not a minimum: imaginary frequencies "
            f"{np.round(-nm.wavenumbers[nm.wavenumbers < 0], 1).tolist()} cm⁻¹")
    if len(_MODES_CACHE) >= 64:
        _MODES_CACHE.pop(next(iter(_MODES_CACHE)))
    _MODES_CACHE[key] = (nm, calc)  # keep calc alive so its id is not reused
    return nm


# --------------------------------------------------------------------------------------------------------
# Samplers
# --------------------------------------------------------------------------------------------------------


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return int(n)


def _check_temperature(temperature, positive=False) -> float:
    t = float(temperature)
    if not np.isfinite(t) or t < 0 or (positive and t == 0):
        raise ValueError(f"temperature must be {'> 0' if positive else '>= 0'} K, got {temperature!r}")
    return t


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def wigner_mode_variances(modes: NormalModes, temperature: float = 0.0) -> np.ndarray:
    """Variances of the mass-weighted mode coordinates in the Wigner distribution.

    σ_k² = ħ/(2ω_k) · coth(ħω_k / 2kT): at T = 0 the ground state's ħ/(2ω_k); for kT ≫ ħω the classical
    kT/ω_k².

    Parameters
    ----------
    modes : NormalModes
        The modes (ω in rad/fs).
    temperature : float, optional
        K.

    Returns
    -------
    numpy.ndarray
        (M,) variances in amu·Å².
    """
    t = _check_temperature(temperature)
    w = np.asarray(modes.omega, dtype=np.float64)
    if np.any(w <= 0):
        raise ValueError("Wigner sampling needs real, non-zero frequencies (a minimum)")
    if t == 0:
        return HBAR / (2 * w)
    x = HBAR * w / (2 * KB * t)
    return HBAR / (2 * w) / np.tanh(x)


def wigner(atoms, n: int, temperature: float = 0.0, *, calc=None, rng=None, modes: NormalModes | None = None):
    """Positions drawn from the harmonic Wigner distribution at temperature T.

    x = x0 + M^(−1/2) Σ_k q_k L_k with independent q_k ~ N(0, σ_k²) (:func:`wigner_mode_variances`), x0 the
    minimum: quantum zero-point and thermal motion in the harmonic approximation.

    Parameters
    ----------
    atoms : ase.Atoms or str
        The molecule (or a name/SMILES).
    n : int
        Number of geometries.
    temperature : float, optional
        K (0: the vibrational ground state).
    calc : ase.calculators.calculator.Calculator or None, optional
        ASE calculator (default MMFF94).
    rng : numpy.random.Generator, int or None, optional
        Generator or seed.
    modes : NormalModes or None, optional
        From :func:`minimum_modes`: skips the optimisation and the Hessian.

    Returns
    -------
    numpy.ndarray
        (n, N, 3) positions in Å.
    """
    n = _check_n(n)
    t = _check_temperature(temperature)
    nm = minimum_modes(atoms, calc) if modes is None else modes
    sigma = np.sqrt(wigner_mode_variances(nm, t))
    q = _rng(rng).standard_normal((n, len(sigma))) * sigma
    disp = (q @ nm.modes).reshape(n, -1, 3) / np.sqrt(nm.masses)[:, None]
    return nm.positions[None] + disp


def _energy_fn(atoms_calc):
    """A function (B, N, 3) -> (B,) eV for the atoms' calculator."""
    calc = atoms_calc.calc
    if isinstance(calc, MMFF94Calculator) and calc.numbers is not None:
        return calc.energies
    a = atoms_calc.copy()
    a.calc = calc

    def energies(pos):
        out = np.empty(len(pos))
        for i, p in enumerate(pos):
            a.set_positions(p)
            out[i] = a.get_potential_energy()
        return out

    return energies


def _thermalize(a, temperature, rng):
    from ase.md import (
        velocitydistribution as vd,  # loaded on use: keeps `import xstructure` fast
    )

    if hasattr(vd, "thermalize_momenta"):
        vd.thermalize_momenta(a, temperature, rng=rng)
    else:  # older ase
        vd.MaxwellBoltzmannDistribution(a, temperature_K=temperature, rng=rng)


def langevin_md(atoms, n: int, temperature: float, *, calc=None, timestep: float = 0.5,
                friction: float = 0.01, interval: int = 20, equilibration: int = 1000, rng=None):
    """Classical Langevin dynamics (ase ``Langevin``) from the given geometry.

    Parameters
    ----------
    atoms : ase.Atoms or str
        Start geometry, or a molecule name/SMILES.
    n : int
        Number of snapshots.
    temperature : float
        Thermostat temperature, K (> 0).
    calc : ase.calculators.calculator.Calculator or None, optional
        ASE calculator (default MMFF94).
    timestep : float, optional
        Time step, fs.
    friction : float, optional
        Langevin friction, 1/fs.
    interval : int, optional
        Steps between snapshots.
    equilibration : int, optional
        Steps discarded first.
    rng : numpy.random.Generator, int or None, optional
        Generator or seed, for the initial velocities and the thermostat noise.

    Returns
    -------
    positions : numpy.ndarray
        (n, N, 3) in Å.
    energies : numpy.ndarray
        (n,) potential energies in eV.
    temperatures : numpy.ndarray
        (n,) kinetic temperatures in K (3N degrees of freedom: the thermostat acts on all of them, so the
        molecule slowly diffuses and tumbles).
    """
    from ase.md.langevin import (
        Langevin,  # loaded on use: keeps `import xstructure` fast
    )

    n = _check_n(n)
    t = _check_temperature(temperature, positive=True)
    if timestep <= 0 or friction <= 0 or int(interval) < 1 or int(equilibration) < 0:
        raise ValueError("timestep and friction must be > 0, interval >= 1 and equilibration >= 0")
    rng = _rng(rng)
    a = _with_calc(_as_atoms(atoms), calc)
    _thermalize(a, t, rng)
    dyn = Langevin(a, timestep * units.fs, temperature_K=t, friction=friction / units.fs, fixcm=False,
                   rng=rng, logfile=None)
    if equilibration:
        dyn.run(int(equilibration))
    pos = np.empty((n, len(a), 3))
    energy = np.empty(n)
    tkin = np.empty(n)
    for i in range(n):
        dyn.run(int(interval))
        pos[i] = a.get_positions()
        energy[i] = a.get_potential_energy()
        tkin[i] = a.get_temperature()
    return pos, energy, tkin


def metropolis_mc(atoms, n: int, temperature: float, *, calc=None, step: float = 0.02, interval: int = 5,
                  equilibration: int = 200, tune: bool = True, target: float = 0.4, rng=None):
    """Classical Metropolis Monte Carlo with single-atom Gaussian moves, from the given geometry.

    A sweep is N trial moves of randomly chosen atoms by N(0, step²) per Cartesian component. During the
    ``equilibration`` sweeps (discarded) ``step`` is tuned towards acceptance ``target`` when ``tune``;
    afterwards it is fixed, so the production chain obeys detailed balance.

    Parameters
    ----------
    atoms : ase.Atoms or str
        Start geometry, or a molecule name/SMILES.
    n : int
        Number of samples.
    temperature : float
        K (> 0).
    calc : ase.calculators.calculator.Calculator or None, optional
        ASE calculator (default MMFF94).
    step : float, optional
        Initial move size, Å.
    interval : int, optional
        Sweeps between samples.
    equilibration : int, optional
        Sweeps discarded first.
    tune : bool, optional
        Tune ``step`` during equilibration.
    target : float, optional
        Acceptance ratio the tuning aims at.
    rng : numpy.random.Generator, int or None, optional
        Generator or seed.

    Returns
    -------
    positions : numpy.ndarray
        (n, N, 3) in Å.
    energies : numpy.ndarray
        (n,) in eV.
    acceptance : float
        Acceptance ratio of the production sweeps.
    """
    n = _check_n(n)
    t = _check_temperature(temperature, positive=True)
    if step <= 0 or int(interval) < 1 or int(equilibration) < 0:
        raise ValueError("step must be > 0, interval >= 1 and equilibration >= 0")

    rng = _rng(rng)
    a = _with_calc(_as_atoms(atoms), calc)
    energies = _energy_fn(a)
    beta = 1.0 / (units.kB * t)
    x = a.get_positions().copy()
    N = len(x)
    e = float(energies(x[None])[0])

    def sweeps(count, step):
        nonlocal x, e
        acc = 0
        for _ in range(count):
            idx = rng.integers(0, N, size=N)
            dx = rng.standard_normal((N, 3)) * step
            u = rng.random(N)
            for j in range(N):
                i = idx[j]
                old = x[i].copy()
                x[i] += dx[j]
                e_new = float(energies(x[None])[0])
                if e_new <= e or u[j] < np.exp(-beta * (e_new - e)):
                    e = e_new
                    acc += 1
                else:
                    x[i] = old
        return acc / (count * N)

    done = 0
    while done < int(equilibration):
        block = min(10, int(equilibration) - done)
        ratio = sweeps(block, step)
        if tune:
            step *= float(np.clip(np.exp(ratio - target), 0.5, 2.0))
        done += block
    pos = np.empty((n, N, 3))
    energy = np.empty(n)
    accepted = 0.0
    for k in range(n):
        accepted += sweeps(int(interval), step)
        pos[k] = x
        energy[k] = e
    return pos, energy, accepted / n


# --------------------------------------------------------------------------------------------------------
# Checks and the dispatcher
# --------------------------------------------------------------------------------------------------------


def bonds_intact(reference_atoms, positions, scale: float = 1.25, low: float = 0.75, high: float = 1.35):
    """Whether each geometry keeps the reference's covalent bonds.

    The reference's bonds are the pairs closer than the sum of covalent radii × ``scale`` (ase
    ``natural_cutoffs``). A geometry passes when every reference bond lies within [low, high] × its reference
    length (none broken or crushed) and no other pair comes within its bonding cutoff (no new bond): its bond
    graph is the reference's.

    Parameters
    ----------
    reference_atoms : ase.Atoms
        The reference (N atoms).
    positions : array_like
        (n, N, 3) or (N, 3) positions, Å.
    scale : float, optional
        Bonding cutoff in units of the sum of covalent radii.
    low, high : float, optional
        Allowed range of each bond, in units of its reference length.

    Returns
    -------
    numpy.ndarray
        (n,) bool.
    """
    from ase.neighborlist import (
        natural_cutoffs,  # loaded on use: keeps `import xstructure` fast
    )

    ref = _as_atoms(reference_atoms)
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim == 2:
        pos = pos[None]
    if pos.ndim != 3 or pos.shape[1:] != (len(ref), 3):
        raise ValueError(f"positions must have shape (n, {len(ref)}, 3), got {pos.shape}")
    cut = np.asarray(natural_cutoffs(ref, mult=scale))
    lim = cut[:, None] + cut[None, :]
    iu = np.triu_indices(len(ref), 1)
    x0 = ref.get_positions()
    d0 = np.linalg.norm(x0[:, None] - x0[None], axis=-1)[iu]
    bonded0 = d0 < lim[iu]
    out = np.empty(len(pos), dtype=bool)
    for s in range(0, len(pos), 4096):
        p = pos[s:s + 4096]
        d = np.linalg.norm(p[:, :, None] - p[:, None], axis=-1)[:, iu[0], iu[1]]
        no_new = np.all(d[:, ~bonded0] >= lim[iu][~bonded0], axis=1)
        r = d[:, bonded0] / d0[bonded0]
        out[s:s + 4096] = no_new & np.all((r >= low) & (r <= high), axis=1)
    return out


def _chunk_samples(method, atoms, calc, t, rng, count, kw, modes):
    """The first ``count`` samples of one block: dict of (count, ...) arrays."""
    if method == "wigner":
        ref = atoms.copy()
        ref.set_positions(modes.positions)
        keep_broken = kw.get("keep_broken", False)
        pos = wigner(atoms, count, t, rng=rng, modes=modes)
        drawn, good = count, count
        if not keep_broken:
            pos = pos[bonds_intact(ref, pos)]
            good = len(pos)
            while len(pos) < count:  # top up from the same generator: still a function of (seed, block)
                if good < 0.05 * drawn:
                    raise ValueError(
                        f"over 95% of Wigner samples at {t} K break a bond: the harmonic approximation fails "
                        "here (use md or mc, or keep_broken=True)")
                extra = wigner(atoms, max(count // 8, 16), t, rng=rng, modes=modes)
                extra = extra[bonds_intact(ref, extra)]
                drawn += max(count // 8, 16)
                good += len(extra)
                pos = np.concatenate([pos, extra])
            pos = pos[:count]
        return {"positions": pos, "rejected_fraction": np.full(count, 1.0 - good / drawn)}
    if method == "md":
        pos, e, tk = langevin_md(atoms, count, t, calc=calc, rng=rng, **kw)
        return {"positions": pos, "energies": e, "kinetic_temperatures": tk}
    pos, e, acc = metropolis_mc(atoms, count, t, calc=calc, rng=rng, **kw)
    return {"positions": pos, "energies": e, "acceptance": np.full(count, acc)}


def check_options(method: str, options, calc=None) -> None:
    """Check a sampling method's options, and that its force field can load, before any work is done.

    Parameters
    ----------
    method : str
        'wigner', 'md' or 'mc'.
    options : dict
        The further options of :func:`sample` (``**kw``).
    calc : ase.calculators.calculator.Calculator or None, optional
        The calculator; None uses MMFF94, which needs RDKit.

    Raises
    ------
    ValueError
        An unknown method, or an option the method does not take (the message lists the ones it does).
    ModuleNotFoundError
        No calculator is given and RDKit is not installed.
    """
    import inspect

    if method not in METHODS:
        raise ValueError(f"unknown sampling method {method!r}: use one of {METHODS}")
    if method == "wigner":
        allowed = {"keep_broken"}
    else:
        fn = langevin_md if method == "md" else metropolis_mc
        allowed = {k for k, p in inspect.signature(fn).parameters.items()
                   if p.kind == p.KEYWORD_ONLY and k not in ("calc", "rng")}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"sampling method {method!r} has no option {', '.join(map(repr, unknown))}; "
                         f"its options are {', '.join(sorted(allowed))}")
    if calc is None:
        try:
            import rdkit  # noqa: F401  (optional dependency (RDKit): the MMFF94 force field)
        except ImportError:
            raise ModuleNotFoundError("sampling with the MMFF94 force field needs RDKit, which is not installed: "
                                      "pip install 'xstructure[smiles]' (or pass an ASE calculator)",
                                      name="rdkit") from None


def sample(atoms, method: str, n: int, temperature: float = 300.0, *, seed: int = 0, calc=None,
           start: int = 0, chunk: int = 1024, **kw) -> dict[str, Any]:
    """Samples ``[start, start + n)`` of a molecule's thermal ensemble, by one of :data:`METHODS`.

    Parameters
    ----------
    atoms : ase.Atoms or str
        ase.Atoms or anything :func:`xstructure.molecule` accepts (``"NMM"``, ``"CHD"``, ``"DT"``, SMILES, ...).
    method : {'wigner', 'md', 'mc'}
        Harmonic quantum Wigner sampling about the minimum, Langevin MD or Metropolis MC.
    n : int
        Number of samples.
    temperature : float, optional
        K (> 0 for md and mc; 0 allowed for wigner).
    seed : int, optional
        Block c of ``chunk`` samples uses ``np.random.default_rng([seed, c])`` (see the module notes).
    calc : ase.calculators.calculator.Calculator or None, optional
        ASE calculator (default MMFF94 through RDKit).
    start : int, optional
        Index of the first sample.
    chunk : int, optional
        Block size; part of the definition of the sample sequence, keep it fixed when resuming.
    **kw
        Passed to :func:`langevin_md` or :func:`metropolis_mc` (``timestep``, ``friction``, ``interval``, ...);
        for wigner only ``keep_broken`` (default False: draws that fail :func:`bonds_intact` against the minimum
        are discarded and replaced from the same block's generator, i.e. the harmonic Wigner distribution
        truncated to intact molecules; about 0.1 % of draws at 0 K, up to 1 % at 300 K for NMM, CHD and DT, from
        the Gaussian tails and the rectilinear low-frequency modes).

    Returns
    -------
    dict
        ``positions`` (n, N, 3) float64 Å, ``energies`` (n,) eV, ``numbers`` (N,), ``method``, ``temperature``,
        ``seed``, ``start``, ``chunk``, ``params`` (kw); wigner adds ``reference_positions`` (N, 3) Å,
        ``wavenumbers`` (cm⁻¹) and ``rejected_fraction`` (n,) (of the block each sample came from); md adds
        ``kinetic_temperatures`` (n,) K; mc adds ``acceptance`` (n,) (of the trajectory each sample came from).

    Raises
    ------
    ValueError
        An unknown method or molecule, n ≤ 0, or a temperature out of range.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    n = _check_n(n)
    t = _check_temperature(temperature, positive=method != "wigner")
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk <= 0:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    check_options(method, kw, calc)
    atoms = _as_atoms(atoms)
    if calc is None:
        calc = MMFF94Calculator(atoms)
    modes = minimum_modes(atoms, calc) if method == "wigner" else None
    parts: dict[str, list] = {}
    stop = start + n
    for c in range(start // chunk, (stop - 1) // chunk + 1):
        lo = max(start, c * chunk) - c * chunk
        hi = min(stop, (c + 1) * chunk) - c * chunk
        count = chunk if method == "wigner" else hi  # wigner draws whole blocks; trajectories stop early
        block = _chunk_samples(method, atoms, calc, t, np.random.default_rng([int(seed), c]), count, kw, modes)
        for k, v in block.items():
            parts.setdefault(k, []).append(v[lo:hi])
    out = {k: np.concatenate(v) for k, v in parts.items()}
    if "energies" not in out:
        a = _with_calc(atoms, calc)
        out["energies"] = np.asarray(_energy_fn(a)(out["positions"]), dtype=np.float64)
    out.update(numbers=np.asarray(atoms.get_atomic_numbers(), dtype=np.int64), method=method, temperature=t,
               seed=int(seed), start=int(start), chunk=int(chunk), params=dict(kw))
    if modes is not None:
        out.update(reference_positions=modes.positions, wavenumbers=modes.wavenumbers)
    return out
