"""float64 numpy twins of the structure-factor kernel (xstructure.crystal.structure_factors): the double
sum over atoms and reflections."""

import numpy as np
from periodictable import cromermann



def wk_reference(symbol, s):
    """Waasmaier–Kirfel f0 straight from periodictable's table (not through xstructure.factors)."""

    f = cromermann.getCMformula(symbol)
    return f.c + sum(a * np.exp(-b * s * s) for a, b in zip(f.a, f.b))


def reference_F(atoms, hkl, factors, b_factors=None, occupancy=None):
    """Independent float64 double sum over reflections and atoms."""
    cell = np.asarray(atoms.cell[:])
    frac = np.linalg.solve(cell.T, atoms.positions.T).T
    recip = np.linalg.inv(cell).T
    s = 0.5 * np.linalg.norm(hkl @ recip, axis=1)
    n = len(atoms)
    B = np.zeros(n) if b_factors is None else np.broadcast_to(b_factors, (n,))
    occ = np.ones(n) if occupancy is None else np.broadcast_to(occupancy, (n,))
    F = np.zeros(len(hkl), complex)
    for j, (sym, z) in enumerate(zip(atoms.get_chemical_symbols(), atoms.numbers)):
        f = z * np.ones_like(s) if factors == "Z" else wk_reference(sym, s)
        F += occ[j] * f * np.exp(-B[j] * s * s) * np.exp(2j * np.pi * (hkl @ frac[j]))
    return F
