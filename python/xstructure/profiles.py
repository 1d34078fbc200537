"""Files of 1D patterns: what ``xstructure simulate --out`` writes and ``xstructure predict`` reads.

CSV (comma-separated, one header line): the first column ``q_A^-1`` (q in Å⁻¹), then one column per
pattern named ``SIGNAL_NAME`` (e.g. ``total_NMM``), so that a reader knows which signal it holds.  A CSV with
one column holds one pattern without its q grid.  NumPy ``.npy`` holds (Q,) or (B, Q) patterns without q.
HDF5 holds a dataset ``I``, ``intensity`` or ``patterns`` ((Q,) or (B, Q)) and optionally ``q`` (Q,) in Å⁻¹;
the curves ``xstructure integrate`` writes are read too (``intensity`` on the ``radial`` axis, in q when its
``units`` are Å⁻¹ or nm⁻¹, and known to hold total scattering).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

__all__ = ["Patterns", "read_patterns", "write_patterns"]

Q_COLUMN = "q_A^-1"


@dataclass
class Patterns:
    """Patterns read from a file.

    Attributes
    ----------
    intensity : numpy.ndarray
        (B, Q) float64 patterns.
    q : numpy.ndarray or None
        (Q,) q grid in Å⁻¹, when the file holds one.
    signals : list of str or None
        Per pattern, the signal named in a CSV header ('total', 'atomic', 'molecular', 'sM'), when known.
    """

    intensity: np.ndarray
    q: np.ndarray | None = None
    signals: list | None = None


def write_patterns(path: str, q, intensity, names, signal: str) -> None:
    """Write patterns as CSV: q (Å⁻¹) and one column ``SIGNAL_NAME`` per pattern.

    Parameters
    ----------
    path : str or file
        Output file (or an open text file such as ``sys.stdout``).
    q : array_like
        (Q,) q grid in Å⁻¹.
    intensity : array_like
        (Q,) or (B, Q) patterns.
    names : list of str
        B labels (commas are replaced by underscores).
    signal : str
        The signal the patterns hold ('total', 'atomic', 'molecular' or 'sM').
    """
    I = np.atleast_2d(np.asarray(intensity, dtype=np.float64))
    header = Q_COLUMN + "," + ",".join(f"{signal}_{n}".replace(",", "_") for n in names)
    np.savetxt(path, np.column_stack([np.asarray(q, dtype=np.float64), I.T]), delimiter=",", header=header,
               comments="")


def _signal_of(column: str) -> str | None:
    for s in ("total", "atomic", "molecular", "sM"):
        if column.startswith(s + "_") or column == s:
            return s
    return None


def _read_csv(path: str) -> Patterns:
    with open(path) as f:
        first = f.readline()
    try:
        float(first.split(",")[0])
        has_header = False
    except ValueError:
        has_header = True
    arr = np.loadtxt(path, delimiter=",", comments="#", ndmin=2, skiprows=1 if has_header else 0)
    columns = [c.strip() for c in first.strip().split(",")] if has_header else None
    if columns is not None and len(columns) != arr.shape[1]:
        raise ValueError(f"the header names {len(columns)} columns, the rows have {arr.shape[1]}")
    if columns is not None and columns[0] == Q_COLUMN or (columns is None and arr.shape[1] == 2):
        signals = [_signal_of(c) for c in columns[1:]] if columns else None
        return Patterns(arr[:, 1:].T.copy(), arr[:, 0].copy(), signals)
    if arr.shape[1] == 1:
        return Patterns(arr.T.copy(), None, [_signal_of(columns[0])] if columns else None)
    return Patterns(arr, None, None)


def read_patterns(path: str) -> Patterns:
    """Patterns from ``.csv``, ``.npy`` or ``.h5``/``.hdf5`` (see the module's description of the layouts).

    Parameters
    ----------
    path : str
        The file.

    Returns
    -------
    Patterns
        (B, Q) intensities, the q grid (Å⁻¹) when the file has one, and the signals when a CSV header names them.

    Raises
    ------
    ValueError
        A missing file, an unknown extension, or a file that cannot be read as patterns.
    """
    ext = os.path.splitext(path)[1].lower()
    if not os.path.isfile(path):
        raise ValueError(f"pattern file not found: {path}")
    if ext not in (".npy", ".csv", ".h5", ".hdf5"):
        raise ValueError(f"unknown pattern file type {ext!r}: use .npy, .csv or .h5")
    try:
        if ext == ".npy":
            return Patterns(np.atleast_2d(np.load(path, allow_pickle=False)).astype(np.float64))
        if ext == ".csv":
            return _read_csv(path)
        import h5py  # loaded on use: keeps `import xstructure` fast

        with h5py.File(path, "r") as f:
            key = next((k for k in ("I", "intensity", "patterns") if k in f), None)
            if key is None:
                raise ValueError("no dataset named I, intensity or patterns")
            I = np.atleast_2d(f[key][()]).astype(np.float64)
            if "q" in f:
                return Patterns(I, f["q"][()])
            if "radial" not in f:
                return Patterns(I)
            # xstructure integrate's curves: total scattering on the radial axis, in q if its unit is one
            units = f["radial"].attrs.get("units", "")
            units = units.decode() if isinstance(units, bytes) else str(units)
            scale = {"Å⁻¹": 1.0, "A^-1": 1.0, "nm⁻¹": 0.1, "nm^-1": 0.1}.get(units)
            if scale is None:
                raise ValueError(f"its radial axis is in {units or 'unknown units'}, not q: integrate with "
                                 "--unit q_A^-1")
            return Patterns(I, f["radial"][()] * scale, ["total"] * len(I))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read patterns from {path}: {exc}") from None
