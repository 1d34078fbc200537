"""Plain numpy float64 references, written independently of the package's kernels and tables.

Form factors come straight from periodictable's Waasmaier–Kirfel implementation; the Debye sum is the
literal double sum over i ≠ j.
"""

import numpy as np
from periodictable import cromermann

A0 = 0.529177210903  # Bohr radius, Å
SYMBOLS = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F", 16: "S", 17: "Cl", 26: "Fe", 35: "Br", 53: "I", 79: "Au"}


def f_xray(z, q):
    return cromermann.fxrayatq(SYMBOLS[int(z)], np.asarray(q, dtype=float))


def f_electron(z, q):
    """Mott–Bethe, (2/a0) (Z_fit − f0(q)) / q², with Z_fit = f0(0) of the fit; q > 0 only."""
    q = np.asarray(q, dtype=float)
    return 2.0 / A0 * (f_xray(z, 0.0) - f_xray(z, q)) / q**2


def debye(numbers, positions, q, probe="xray"):
    """(I_at, I_mol) for one geometry by the double sum."""
    q = np.asarray(q, dtype=float)
    ff = f_xray if probe == "xray" else f_electron
    f = np.array([ff(z, q) for z in numbers])
    R = np.asarray(positions, dtype=float)
    i_at = (f**2).sum(0)
    i_mol = np.zeros_like(q)
    for i in range(len(numbers)):
        for j in range(len(numbers)):
            if i != j:
                r = np.linalg.norm(R[i] - R[j])
                i_mol += f[i] * f[j] * np.sinc(q * r / np.pi)   # np.sinc(x) = sin(pi x)/(pi x)
    return i_at, i_mol


def signal(numbers, positions, q, probe="xray", kind="total"):
    i_at, i_mol = debye(numbers, positions, q, probe)
    return {"atomic": i_at, "molecular": i_mol, "total": i_at + i_mol, "sM": np.asarray(q) * i_mol / i_at}[kind]


def _dsinc_dr(q, r):
    """d sinc(q r) / dr, with sinc(x) = sin(x) / x (0 at q r = 0)."""
    x = q * r
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x > 0, (x * np.cos(x) - np.sin(x)) / (x * r), 0.0)


def ref_grad(numbers, pos, q, weights):
    """d/dpos of sum_q w(q) I_mol(q) for one geometry, by hand in float64."""
    f = np.array([f_xray(z, q) for z in numbers])
    g = np.zeros_like(pos)
    for i in range(len(numbers)):
        for j in range(len(numbers)):
            if i == j:
                continue
            d = pos[i] - pos[j]
            r = np.linalg.norm(d)
            dsinc = _dsinc_dr(q, r)
            # each unordered pair appears twice in i != j; d/dpos_i picks up both terms
            g[i] += 2 * np.sum(weights * f[i] * f[j] * dsinc) * d / r
    return g


def ref_jacobian(numbers, pos, q, probe="xray", kind="molecular"):
    """(Q, N, 3) d signal(q) / d pos for one geometry, by hand in float64 (q > 0 for sM and electrons)."""
    q = np.asarray(q, dtype=float)
    ff = f_xray if probe == "xray" else f_electron
    f = np.array([ff(z, q) for z in numbers])
    pos = np.asarray(pos, dtype=float)
    J = np.zeros((q.size, len(numbers), 3))
    for i in range(len(numbers)):
        for j in range(len(numbers)):
            if i == j:
                continue
            d = pos[i] - pos[j]
            r = np.linalg.norm(d)
            if r == 0.0:
                continue
            dsinc = _dsinc_dr(q, r)
            J[:, i] += 2 * (f[i] * f[j] * dsinc)[:, None] * (d / r)[None]
    if kind == "sM":
        J *= (q / (f**2).sum(0))[:, None, None]
    return J
