"""float64 numpy twin of the Kabsch RMSD kernel (xstructure.rmsd, ops.kabsch_rmsd): SVD superposition."""

import numpy as np


def svd_rmsd(a, b, reflection=False, weights=None):
    """Float64 reference: Kabsch by SVD, then the RMSD evaluated directly."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    w = np.ones(len(a)) if weights is None else np.asarray(weights, np.float64)
    ca, cb = (w[:, None] * a).sum(0) / w.sum(), (w[:, None] * b).sum(0) / w.sum()
    x, y = a - ca, b - cb
    U, S, Vt = np.linalg.svd((w[:, None] * x).T @ y)
    d = np.sign(np.linalg.det(Vt.T @ U.T)) or 1.0
    signs = [d] if not reflection else [d, -d]
    best = np.inf
    for s in signs:
        R = Vt.T @ np.diag([1.0, 1.0, s]) @ U.T
        best = min(best, np.sqrt((w * ((x @ R.T - y) ** 2).sum(1)).sum() / w.sum()))
    return best
