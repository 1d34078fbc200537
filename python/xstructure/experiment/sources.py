"""Where a run's shots live: one lazy (S, Q) array made of the profiles of several files.

A beamtime writes a run as many files (one per acquisition block, or per DAQ sequence).  :class:`StackedRows`
puts their (S_i, Q) datasets end to end as one array that slices by rows, reading only the files a slice
touches.
"""

from __future__ import annotations

import numpy as np

__all__ = ["StackedRows"]


class StackedRows:
    """Several (S_i, Q) arrays as one (ΣS_i, Q) array, read lazily.

    Parameters
    ----------
    parts : sequence of array_like
        The arrays (numpy, h5py or zarr datasets, ...), each 2D with the same number of columns, in order.

    Raises
    ------
    ValueError
        No parts, a part that is not 2D, or parts with different numbers of columns.

    Notes
    -----
    Rows are taken by an int, a slice with step 1, or an increasing integer array; a tuple adds a column
    selection.  The dtype is the common type of the parts.
    """

    def __init__(self, parts):
        parts = list(parts)
        if not parts:
            raise ValueError("no arrays to stack")
        shapes = [tuple(getattr(p, "shape", ())) for p in parts]
        if any(len(s) != 2 for s in shapes):
            raise ValueError(f"every part must be a 2D (S, Q) array, got shapes {shapes}")
        if len({s[1] for s in shapes}) != 1:
            raise ValueError(f"the parts have different numbers of q points: {[s[1] for s in shapes]}")
        self.parts = parts
        self.starts = np.concatenate([[0], np.cumsum([s[0] for s in shapes])]).astype(np.int64)
        self.shape = (int(self.starts[-1]), int(shapes[0][1]))
        self.dtype = np.result_type(*[np.dtype(getattr(p, "dtype", np.float64)) for p in parts])
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def _rows(self, a: int, b: int) -> np.ndarray:
        out = []
        for k in range(len(self.parts)):
            lo, hi = max(a, self.starts[k]), min(b, self.starts[k + 1])
            if lo < hi:
                out.append(np.asarray(self.parts[k][lo - self.starts[k]:hi - self.starts[k]], dtype=self.dtype))
        if not out:
            return np.empty((0, self.shape[1]), dtype=self.dtype)
        return out[0] if len(out) == 1 else np.concatenate(out)

    def __getitem__(self, key):
        cols = slice(None)
        if isinstance(key, tuple):
            key, cols = key[0], (key[1] if len(key) > 1 else slice(None))
        S = self.shape[0]
        if isinstance(key, (int, np.integer)):
            i = int(key) + (S if key < 0 else 0)
            if not 0 <= i < S:
                raise IndexError(f"row {key} is out of range for {S} rows")
            return self._rows(i, i + 1)[0][cols]
        if isinstance(key, slice):
            a, b, step = key.indices(S)
            if step != 1:
                raise IndexError("StackedRows takes slices with step 1")
            return self._rows(a, max(a, b))[:, cols]
        idx = np.asarray(key, dtype=np.int64)
        if idx.ndim != 1 or (idx.size > 1 and np.any(np.diff(idx) <= 0)) or (idx.size and (idx[0] < 0 or
                                                                                               idx[-1] >= S)):
            raise IndexError("StackedRows takes increasing row indices within range")
        part = np.searchsorted(self.starts, idx, side="right") - 1
        out = np.empty((idx.size, self.shape[1]), dtype=self.dtype)
        for k in np.unique(part):
            sel = part == k
            local = idx[sel] - self.starts[k]
            out[sel] = np.asarray(self.parts[k][local], dtype=self.dtype)
        return out[:, cols]
