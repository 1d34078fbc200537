"""The product's structure from a difference signal, with a learned model of the product.

A pump-probe run measures ΔI/I = f (I_P − I_R) / I_R: the product's pattern I_P weighted by the excitation
fraction f, against the reactant's I_R.  Given the reactant (its IAM pattern) and f (from :func:`fit_fraction`
or known), the product's pattern is

    I_P(q) = I_R(q) (1 + ΔI/I(q) / f),

and since a product of a unimolecular reaction has the reactant's atoms, its atomic scattering I_at is the
reactant's, so its molecular scattering I_mol = I_P − I_at and sM = q I_mol / I_at follow as well.  A model of
:mod:`xstructure.learn` trained on a pool of the product (``xstructure.Pool`` of the product, its patterns in the
model's signal) reads that pattern and returns the structure.  Noise in ΔI/I is amplified by 1/f in I_P; the
models are trained with noise (``xstructure train --noise``) to match.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..structures import atomic_numbers
from ..structures import molecule as molecule_of
from .run import check_grid
from .signals import iam_patterns

__all__ = ["product_pattern", "invert_difference", "ProductStructure"]


def product_pattern(q, diff, reactant, fraction, *, probe: str = "xray", energy_kev: float | None = None,
                    signal: str = "total") -> np.ndarray:
    """The product's pattern from a difference signal: I_P = I_R (1 + ΔI/I / f).

    Parameters
    ----------
    q : array_like
        (Q,) momentum transfer, Å⁻¹.
    diff : array_like
        (Q,) or (T, Q) ΔI/I (e.g. ``Reduced.diff``, or its average over late delays).
    reactant : str, ase.Atoms, tuple or Pool
        The reactant, in any form :func:`~xstructure.experiment.iam_patterns` takes (a pool: its mean pattern).
    fraction : float or array_like
        The excitation fraction f in (0, 1], one for all rows or (T,).
    probe : {'xray', 'electron'}, optional
        The probe of the measurement.
    energy_kev : float or None, optional
        Electron kinetic energy in keV (relativistic factor).
    signal : {'total', 'molecular', 'sM'}, optional
        What to return: I_P (electrons² or Å²), I_mol = I_P − I_at, or sM = q I_mol / I_at (Å⁻¹).

    Returns
    -------
    numpy.ndarray
        The shape of ``diff``.

    Raises
    ------
    ValueError
        Shapes that do not match q, a fraction outside (0, 1], non-finite values, or an unknown signal.
    """
    q = check_grid(q)
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim not in (1, 2) or d.shape[-1] != q.size:
        raise ValueError(f"diff must be (Q,) or (T, Q) with Q = {q.size} (the q grid), got shape {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("diff holds NaN or inf")
    f = np.asarray(fraction, dtype=np.float64)
    if f.ndim > 1 or (f.ndim == 1 and (d.ndim != 2 or f.size != d.shape[0])):
        raise ValueError(f"fraction must be one number or one per row of diff, got shape {f.shape}")
    if not np.all((f > 0) & (f <= 1)):
        raise ValueError(f"the excitation fraction must be in (0, 1], got {fraction}")
    if signal not in ("total", "molecular", "sM"):
        raise ValueError(f"unknown signal {signal!r}: use 'total', 'molecular' or 'sM'")
    total, atomic = iam_patterns(reactant, q, probe=probe, energy_kev=energy_kev)
    f = f[:, None] if f.ndim == 1 else f
    I_p = total * (1.0 + d / f)
    if signal == "total":
        return I_p
    mol = I_p - atomic
    return mol if signal == "molecular" else q * mol / atomic


@dataclass
class ProductStructure:
    """The product's structure read from a difference signal by a learned model.

    Attributes
    ----------
    positions : numpy.ndarray
        (N, 3) or (T, N, 3) positions, Å (centred, in the model's reference frame).
    numbers : numpy.ndarray
        (N,) atomic numbers of the product.
    pattern : numpy.ndarray
        (Q,) or (T, Q) the product's pattern the model read, in the model's signal and on its q grid.
    signal : str
        That signal.
    molecule : str
        The model's name of the product.
    """

    positions: np.ndarray
    numbers: np.ndarray
    pattern: np.ndarray
    signal: str
    molecule: str

    def atoms(self):
        """The structure(s) as ``ase.Atoms`` (a list for several rows).

        Returns
        -------
        ase.Atoms or list of ase.Atoms
        """
        import ase  # loaded on use: keeps `import xstructure` fast

        if self.positions.ndim == 2:
            return ase.Atoms(numbers=self.numbers, positions=self.positions)
        return [ase.Atoms(numbers=self.numbers, positions=p) for p in self.positions]


def invert_difference(model, q, diff, reactant, fraction, *, molecule: str | None = None,
                      energy_kev: float | None = None) -> ProductStructure:
    """The product's structure from ΔI/I, the reactant and the excitation fraction, by a learned model.

    Parameters
    ----------
    model : str, os.PathLike or xstructure.learn.InversionModel
        A model (or its directory) trained on a pool of the product; its probe and signal are used.
    q : array_like
        (Q,) the q grid of ``diff``, Å⁻¹; it must cover the model's grid (``diff`` is interpolated linearly
        onto it when the grids differ).
    diff : array_like
        (Q,) or (T, Q) ΔI/I.
    reactant : str, ase.Atoms, tuple or Pool
        The reactant (see :func:`product_pattern`); it must have the product's atoms.
    fraction : float or array_like
        The excitation fraction, e.g. from :func:`~xstructure.experiment.fit_fraction`.
    molecule : str or None, optional
        Which of the model's molecules is the product (default: its only one).
    energy_kev : float or None, optional
        Electron kinetic energy in keV, for an electron model.

    Returns
    -------
    ProductStructure
        The structure(s) and the pattern the model read.

    Raises
    ------
    ValueError
        A model that is not a 1D-pattern model, a reactant with other atoms than the product, a q grid that does
        not cover the model's, or the errors of :func:`product_pattern`.
    """
    from ..learn import InversionModel   # needs torch: loaded on use

    if isinstance(model, (str, os.PathLike)):
        model = InversionModel.load(model)
    if model.image:
        raise ValueError("invert_difference needs a model of 1D patterns, not a detector-image model")
    probe, signal = model.config.get("probe", "xray"), model.signal or "total"
    if signal not in ("total", "molecular", "sM"):
        raise ValueError(f"the model reads {signal!r} patterns; a product pattern can be total, molecular or sM")
    m = model.molecule(molecule)
    if isinstance(reactant, (str, os.PathLike)):   # resolved once (a SMILES is embedded once)
        reactant = molecule_of(os.fspath(reactant))
    r_numbers = _numbers_of(reactant)
    if r_numbers is not None and sorted(r_numbers.tolist()) != sorted(m.numbers_np.tolist()):
        raise ValueError(f"the reactant's atoms {_formula(r_numbers)} are not the product's {_formula(m.numbers_np)}: "
                         "ΔI/I gives the product's pattern only for an isomer of the reactant")
    q = check_grid(q)
    d = np.asarray(diff, dtype=np.float64)
    mq = model.q
    if q.size != mq.size or not np.allclose(q, mq, rtol=0, atol=1e-9):
        if q[0] > mq[0] + 1e-9 or q[-1] < mq[-1] - 1e-9:
            raise ValueError(f"the data's q grid ({q[0]:g}..{q[-1]:g} Å⁻¹) does not cover the model's "
                             f"({mq[0]:g}..{mq[-1]:g} Å⁻¹)")
        if d.ndim not in (1, 2) or d.shape[-1] != q.size:
            raise ValueError(f"diff must be (Q,) or (T, Q) with Q = {q.size} (the q grid), got shape {d.shape}")
        d = np.stack([np.interp(mq, q, row) for row in np.atleast_2d(d)])
        d = d[0] if np.ndim(diff) == 1 else d
    pattern = product_pattern(mq, d, reactant, fraction, probe=probe, energy_kev=energy_kev, signal=signal)
    pos = model.predict(pattern, m.name)
    return ProductStructure(positions=pos, numbers=m.numbers_np.copy(), pattern=pattern, signal=signal,
                            molecule=m.name)


def _numbers_of(structure):
    """Atomic numbers of a reactant given as Atoms, a tuple or a Pool (None when unknown)."""
    if isinstance(structure, tuple) and len(structure) == 2:
        return atomic_numbers(structure[0])
    numbers = getattr(structure, "numbers", None)
    return None if numbers is None else np.asarray(numbers)


def _formula(numbers) -> str:
    from ase.data import chemical_symbols  # loaded on use: keeps `import xstructure` fast

    symbols, counts = np.unique([chemical_symbols[int(z)] for z in numbers], return_counts=True)
    return "".join(f"{s}{n if n > 1 else ''}" for s, n in zip(symbols, counts))
