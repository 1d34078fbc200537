"""Whatever a user hands us (ase.Atoms, files, names, SMILES, arrays) becomes atomic numbers and positions.

The unit of work downstream is a :class:`Batch`: one molecule's atomic numbers (N,) and a stack of its
geometries (B, N, 3) in Å, which may be a numpy, torch or cupy array, or any sliceable array-like
(an h5py or zarr dataset is read chunk by chunk, never whole).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Sequence

import numpy as np

from ._backend import array_kind, to_numpy
from .factors import atomic_number

__all__ = ["Batch", "to_batches", "molecule", "molecule_names", "read_file", "read_structures", "bond_graph",
           "BUILTIN_MOLECULES"]

#: Molecules of the original design (Si & Ma), shipped as MMFF94-minimised geometries: name -> (file, description,
#: SMILES).
BUILTIN_MOLECULES = {
    "NMM": ("nmm.xyz", "N-methylmorpholine, C5H11NO", "CN1CCOCC1"),
    "CHD": ("chd.xyz", "1,3-cyclohexadiene, C6H8", "C1=CCCC=C1"),
    "DT": ("dt.xyz", "1,2-dithiane, C4H8S2", "C1CCSSC1"),
}


@dataclass
class Batch:
    """Geometries of one molecule: the unit of work of the kernels.

    Parameters
    ----------
    numbers : numpy.ndarray
        (N,) int64 atomic numbers.
    positions : array_like
        (B, N, 3) positions in Å: a numpy, torch or cupy array, or any sliceable array-like (an h5py or zarr
        dataset is read chunk by chunk).
    rows : numpy.ndarray
        (B,) index of each geometry in the caller's output.
    """

    numbers: np.ndarray
    positions: Any
    rows: np.ndarray


def atomic_numbers(numbers) -> np.ndarray:
    arr = to_numpy(numbers)
    if arr.ndim != 1:
        raise ValueError(f"numbers must have shape (N,), got {arr.shape}")
    if arr.size == 0:
        raise ValueError("empty structure: no atoms")
    if arr.dtype.kind in "US":
        return np.array([atomic_number(str(s)) for s in arr], dtype=np.int64)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError("numbers must be integer atomic numbers")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"numbers must be atomic numbers or element symbols, got dtype {arr.dtype}")
    return np.array([atomic_number(int(z)) for z in arr], dtype=np.int64)


def bond_graph(numbers, positions, scale: float = 1.2) -> np.ndarray:
    """The bonds of a structure by covalent radii.

    Parameters
    ----------
    numbers : array_like
        (N,) atomic numbers.
    positions : array_like
        (N, 3) positions in Å.
    scale : float, optional
        Two atoms are bonded when closer than ``scale`` × the sum of their covalent radii (ase's table).

    Returns
    -------
    numpy.ndarray
        (N, N) bool adjacency matrix, symmetric, False on the diagonal.
    """
    from ase.data import covalent_radii  # loaded on use: keeps `import xstructure` fast

    Z = np.asarray(numbers)
    r = np.asarray(positions, dtype=np.float64)
    d = np.linalg.norm(r[:, None] - r[None], axis=-1)
    adj = d < scale * (covalent_radii[Z][:, None] + covalent_radii[Z][None])
    np.fill_diagonal(adj, False)
    return adj


def read_file(path) -> list:
    """Every structure in a file that ase.io reads.

    Parameters
    ----------
    path : str or os.PathLike
        The file (XYZ, PDB, CIF, ... any format ase.io reads).

    Returns
    -------
    list of ase.Atoms
        Every frame of the file, positions in Å.

    Raises
    ------
    ValueError
        The file is missing, unreadable or empty.
    """
    import ase.io  # loaded on use: keeps `import xstructure` fast

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"structure file not found: {path!r}")
    try:
        frames = ase.io.read(path, index=":")
    except Exception as exc:  # ase raises many kinds for a bad file
        raise ValueError(f"cannot read structure file {path!r}: {type(exc).__name__}: {exc}") from None
    if not isinstance(frames, list):
        frames = [frames]
    if not frames:
        raise ValueError(f"structure file {path!r} holds no structures")
    return frames


def _is_atoms(x) -> bool:
    return type(x).__name__ == "Atoms" and hasattr(x, "get_atomic_numbers")


def _group_atoms(frames: Sequence) -> list[Batch]:
    """Consecutive-or-not frames with identical numbers become one batch each."""
    groups: dict[tuple, list[int]] = {}
    for k, a in enumerate(frames):
        if not _is_atoms(a):
            raise ValueError(f"structure {k} is a {type(a).__name__}, not an ase.Atoms")
        if len(a) == 0:
            raise ValueError(f"empty structure: structure {k} has no atoms")
        groups.setdefault(tuple(int(z) for z in a.get_atomic_numbers()), []).append(k)
    batches = []
    for numbers, rows in groups.items():
        pos = np.stack([np.asarray(frames[k].get_positions(), dtype=np.float64) for k in rows])
        batches.append(Batch(atomic_numbers(np.array(numbers)), pos, np.asarray(rows)))
    return batches


def to_batches(structures) -> tuple[list[Batch], int, bool]:
    """Normalise any accepted input into batches of one molecule each.

    Parameters
    ----------
    structures : ase.Atoms, list, str, os.PathLike or tuple
        An ``ase.Atoms``; a list of them (different molecules allowed); a path to any file ase.io reads (every
        frame is used); or ``(numbers, positions)`` with numbers (N,) atomic numbers or symbols and positions
        (N, 3) or (B, N, 3) in Å.

    Returns
    -------
    batches : list of Batch
        One batch per distinct molecule.
    n_rows : int
        How many output rows the batches fill.
    single : bool
        Whether the input was a single structure (so the caller returns (Q,) rather than (1, Q)).

    Raises
    ------
    ValueError
        An empty structure, a wrong shape, unknown elements, or an unreadable file.
    """
    if _is_atoms(structures):
        return _group_atoms([structures]), 1, True
    if isinstance(structures, (str, os.PathLike)):
        frames = read_file(structures)
        return _group_atoms(frames), len(frames), len(frames) == 1
    if isinstance(structures, tuple) and len(structures) == 2 and not _is_atoms(structures[0]):
        numbers, positions = structures
        numbers = atomic_numbers(numbers)
        if array_kind(positions) == "other" and not hasattr(positions, "shape"):
            positions = np.asarray(positions, dtype=np.float64)
        shape = tuple(positions.shape)
        if len(shape) == 2:
            single = True
            if array_kind(positions) in ("numpy", "torch", "cupy"):
                positions = positions[None]
            else:
                positions = np.asarray(positions, dtype=np.float64)[None]
        elif len(shape) == 3:
            single = False
        else:
            raise ValueError(f"positions must have shape (N, 3) or (B, N, 3), got {shape}")
        shape = tuple(positions.shape)
        if shape[2] != 3 or shape[1] != len(numbers):
            raise ValueError(
                f"positions must have shape (N, 3) or (B, N, 3) with N = len(numbers) = {len(numbers)}, "
                f"got {tuple(shape[1:]) if single else shape}")
        return [Batch(numbers, positions, np.arange(shape[0]))], shape[0], single
    if isinstance(structures, (list, tuple)):
        if len(structures) == 0:
            raise ValueError("no structures given (empty list)")
        return _group_atoms(list(structures)), len(structures), False
    raise ValueError(
        "structures must be an ase.Atoms, a list of them, a file path, or a tuple (numbers, positions); "
        f"got {type(structures).__name__}")


def read_structures(spec: str) -> tuple[list, list[str]]:
    """The structures a user names on the command line, and a label for each.

    Parameters
    ----------
    spec : str
        A structure file (every frame is used), a built-in name, an ase.build name or a SMILES string.

    Returns
    -------
    frames : list of ase.Atoms
    names : list of str
        ``spec`` for one structure, ``frame0``, ``frame1``, ... for the frames of a multi-frame file.
    """
    if os.path.exists(spec):
        frames = read_file(spec)
        return frames, ([f"frame{k}" for k in range(len(frames))] if len(frames) > 1 else [spec])
    return [molecule(spec)], [spec]


@functools.lru_cache(maxsize=None)
def _g2_entries() -> dict:
    """ase's G2 molecules: key -> (description, common names in lower case)."""
    import ase.data.g2 as g2  # loaded on use: keeps `import xstructure` fast

    out = {}
    for key, entry in g2.data.items():
        desc = re.split(r",\s*(?=[^,]*symm)", entry.get("description", ""))[0].strip().rstrip(".")
        names = set()
        m = re.search(r"\(([A-Za-z][A-Za-z ,\-]+)\)\s*$", entry.get("name", ""))
        if m:
            names.add(m.group(1).strip().lower())
        head = desc.split(" (")[0].strip()
        if re.fullmatch(r"[A-Za-z][A-Za-z \-]*", head) and not re.search(r"[A-Z].*[A-Z0-9]", head[1:]):
            names.add(head.lower())
        out[key] = (desc, names)
    return out


def molecule_names() -> dict[str, str]:
    """Every molecule :func:`molecule` knows by name, with a description.

    Returns
    -------
    dict of str to str
        Name -> description: the built-in molecules (``"NMM"``, ``"CHD"``, ``"DT"``) first, then the G2 set of
        ``ase.build.molecule`` (Curtiss et al. 1997, doi:10.1063/1.473182).  Common names (``"benzene"``,
        ``"water"``) and any capitalisation of a name are accepted as well.
    """
    out = {k: v[1] for k, v in BUILTIN_MOLECULES.items()}
    out.update({k: v[0] for k, v in sorted(_g2_entries().items(), key=lambda kv: kv[0].lower())})
    return out


@functools.lru_cache(maxsize=None)
def _name_index() -> dict[str, str]:
    """Lower-case name or common name -> the key ase.build.molecule or BUILTIN_MOLECULES takes."""
    index = {}
    for key, (_, names) in _g2_entries().items():
        for n in names:
            index.setdefault(n, key)
    for key in _g2_entries():
        index.setdefault(key.lower(), key)
    index.update({k.lower(): k for k in BUILTIN_MOLECULES})
    return index


def _looks_like_file(spec: str) -> bool:
    """Whether ``spec`` reads as a path: a directory part or a file extension that ase.io knows."""
    from ase.io.formats import ioformats  # loaded on use: keeps `import xstructure` fast

    if os.sep in spec or "/" in spec:
        return True
    ext = os.path.splitext(spec)[1].lstrip(".").lower()
    known = {e for f in ioformats.values() for e in f.extensions} | set(ioformats)
    return bool(ext) and ext in known


def _unknown(spec: str, why: str = "") -> ValueError:
    import difflib

    index = _name_index()
    close = difflib.get_close_matches(spec.lower(), list(index), n=3, cutoff=0.6)
    keys = dict.fromkeys(index[c] if c == index[c].lower() else c for c in close)
    hint = f"; did you mean {' or '.join(repr(k) for k in keys)}?" if keys else ""
    return ValueError(f"{spec!r} is not a structure file, a molecule name, nor a valid SMILES string{why}{hint} "
                      "(xstructure molecules lists the names)")


def molecule(spec: str):
    """An ``ase.Atoms`` from a file path, a built-in name, an ase.build name or a SMILES string.

    Parameters
    ----------
    spec : str
        A structure file (its first frame), a built-in name (``"NMM"``, ``"CHD"``, ``"DT"``: MMFF94-minimised
        geometries shipped with the package), an ``ase.build.molecule`` name (``"H2O"``, ``"C6H6"``, ...; any
        capitalisation, or a common name such as ``"benzene"``; :func:`molecule_names` lists them) or a SMILES
        string. SMILES are embedded with RDKit (ETKDG, fixed seed) and minimised with MMFF94.

    Returns
    -------
    ase.Atoms
        The molecule, positions in Å.

    Raises
    ------
    ValueError
        A missing file, or ``spec`` is none of the above (the message suggests near names); a SMILES string
        without RDKit installed.
    """
    import ase.build  # loaded on use: keeps `import xstructure` fast
    import ase.io  # loaded on use: keeps `import xstructure` fast

    if os.path.exists(spec):
        frames = read_file(spec)
        return frames[0]
    key = spec.upper()
    if key in BUILTIN_MOLECULES:
        fname = BUILTIN_MOLECULES[key][0]
        with resources.as_file(resources.files("xstructure") / "data" / "molecules" / fname) as p:
            return ase.io.read(p)
    try:
        return ase.build.molecule(spec)
    except KeyError:
        pass
    alias = _name_index().get(spec.strip().lower())
    if alias is not None:
        return molecule(alias)
    try:
        return from_smiles(spec)   # before the file test: SMILES may hold '/' and '\\' (double-bond geometry)
    except (ModuleNotFoundError, ValueError) as exc:
        if _looks_like_file(spec):
            raise ValueError(f"structure file not found: {spec!r}") from None
        if isinstance(exc, ModuleNotFoundError):
            raise _unknown(spec, " (SMILES need RDKit: pip install 'xstructure[smiles]')") from None
        raise


def from_smiles(smiles: str, seed: int = 20261122):
    """Embed a SMILES string in 3D (RDKit ETKDG + MMFF94 minimisation) as an ase.Atoms."""
    try:
        from rdkit import Chem  # optional dependency (RDKit)
        from rdkit.Chem import AllChem  # optional dependency (RDKit)
    except ImportError:
        raise ModuleNotFoundError(
            f"SMILES ({smiles!r}) need RDKit, which is not installed: pip install 'xstructure[smiles]'",
            name="rdkit") from None
    import ase  # loaded on use: keeps `import xstructure` fast
    from rdkit import RDLogger  # optional dependency (RDKit)

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise _unknown(smiles)
    mol = Chem.AddHs(mol)
    if AllChem.EmbedMolecule(mol, randomSeed=seed) != 0:
        raise ValueError(f"RDKit could not embed {smiles!r} in 3D")
    if AllChem.MMFFHasAllMoleculeParams(mol):
        AllChem.MMFFOptimizeMolecule(mol, maxIters=2000)
    conf = mol.GetConformer()
    return ase.Atoms(numbers=[a.GetAtomicNum() for a in mol.GetAtoms()],
                     positions=np.array(conf.GetPositions(), dtype=np.float64))
