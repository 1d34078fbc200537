"""numpy twin of the pump-probe block pass (xstructure.experiment.run._Screen, the compiled kernel): the reduction's
former numpy path, written with whole-array operations.

Per shot: row sums in float64 (einsum), the code (non-finite, bad normaliser), the outlier count
|x · inv − center[g]| > thr[g] computed in the input's dtype as the kernel does, and the used shots' normalised
profiles summed into the rows of the aggregation matrix by a scipy sparse product in float64.

``NumpyScreen`` takes the constructor arguments of ``_Screen`` and returns what it returns, so that it can stand
in for it (``monkeypatch.setattr(run, "_Screen", NumpyScreen)``) and a whole reduction can run on numpy.
"""

import numpy as np
import scipy.sparse as sp

from xstructure.experiment.run import _NAN, _NORM, _OUTLIER


def norms(X, norm, inv_meta):
    """Per row of X: (1 / normaliser, or 0 for a rejected row; code 0, NAN or NORM)."""
    Q = X.shape[1]
    i0, i1 = (norm[1], norm[2]) if isinstance(norm, tuple) else (0, Q)
    X = np.asarray(X, dtype=np.float64)
    tot = np.einsum("ij->i", X, dtype=np.float64)
    if i1 - i0 == Q:
        s = tot
    elif 2 * (i1 - i0) >= Q:
        s = tot - np.einsum("ij->i", X[:, :i0], dtype=np.float64) - np.einsum("ij->i", X[:, i1:], dtype=np.float64)
    else:
        s = np.einsum("ij->i", X[:, i0:i1], dtype=np.float64)
    code = np.where(np.isfinite(tot), 0, _NAN).astype(np.uint8)
    if norm is None:
        inv = np.ones(X.shape[0])
    elif norm == "weights":
        inv = inv_meta.copy()
    else:
        ok = np.isfinite(s) & (s > 0)
        code[(code == 0) & ~ok] = _NORM
        inv = np.where(ok, 1.0 / np.where(ok, s, 1.0), 0.0)
    inv[code != 0] = 0.0
    return inv, code


class NumpyScreen:
    """The block pass in numpy (same arguments and results as ``xstructure.experiment.run._Screen``)."""

    def __init__(self, plan, code, inv, group, norm, stats, limit, Q):
        self.code, self.inv, self.group, self.norm, self.stats, self.limit = code, inv, group, norm, stats, limit
        self.matrix = plan.matrix
        self.tables = {}
        if stats is not None:
            for dt in (np.float32, np.float64):
                self.tables[np.dtype(dt)] = (stats["center"].astype(dt), stats["thr"].astype(dt))

    def __call__(self, a, X):
        v = a + X.shape[0]
        if X.dtype not in (np.float32, np.float64):
            X = X.astype(np.float64)
        X64 = np.ascontiguousarray(X, dtype=np.float64)
        inv_l, code_l = norms(X64, self.norm, self.inv[a:v])
        c0 = self.code[a:v]
        code_l = np.where(c0 != 0, c0, code_l)
        g = self.group[a:v]
        if self.stats is not None:
            test = (code_l == 0) & (g >= 0)
            test &= self.stats["has"][np.maximum(g, 0)]
            if np.any(test):
                center, thr = self.tables[X.dtype]
                gg = np.maximum(g, 0)
                with np.errstate(invalid="ignore", over="ignore"):
                    z = np.abs(X * inv_l.astype(X.dtype)[:, None] - center[gg])
                n_out = (z > thr[gg]).sum(axis=1)
                code_l[test & (n_out > self.limit)] = _OUTLIER
        use = (code_l == 0) & (g >= 0)
        inv_l = np.where(use, inv_l, 0.0)
        indptr, indices, mdata = self.matrix.indptr, self.matrix.indices, self.matrix.data
        p0, p1 = indptr[a], indptr[v]
        per_col = np.diff(indptr[a:v + 1])
        keep = np.repeat(use, per_col)
        if not np.any(keep):
            return code_l, inv_l, None, None
        rows = indices[p0:p1][keep]
        data = (mdata[p0:p1] * np.repeat(inv_l, per_col))[keep]
        urows, local = np.unique(rows, return_inverse=True)
        ptr = np.concatenate([[0], np.cumsum(np.where(use, per_col, 0))])
        small = sp.csc_matrix((data, local.ravel(), ptr), shape=(urows.size, v - a))
        return code_l, inv_l, urows, small @ X64
