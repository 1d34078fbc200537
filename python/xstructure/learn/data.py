"""Training data from a pool: splits, targets, pattern preprocessing and the noise model.

* **Split by sample**: a seeded permutation of the pool's members, cut into train / val / test fractions.
* **Targets**: each geometry superposed (Kabsch, proper rotations) onto the pool's reference geometry, then
  centred.  Wigner, MD and MC samples all scatter the same after any rotation, so the frame is a free choice;
  the reference frame makes the targets small displacements about one shape (the network cannot be asked to
  guess an orientation that the pattern does not contain).
* **Preprocessing** (:class:`Standardizer`): per-q standardisation x = (I − ⟨I⟩_q) / std_q over the clean
  training patterns.  Subtracting the pool's mean pattern removes what every member shares (the atomic
  scattering, and the equilibrium structure's molecular scattering), and dividing by the per-q spread weights
  every q by how much it varies over the pool, so the high-q oscillations that carry the small structural
  differences are not drowned by the large low-q intensity.  It is an affine map, so ridge regression and the
  networks see the same information.
* **Noise** (:class:`Noise`), applied to the raw pattern before preprocessing: ``"gaussian"``: I + level · |I| · ε
  per q point (ε standard normal), a relative error per q point; ``"poisson"``: a pattern of ``counts`` detected
  photons/electrons in all, Poisson per q point, rescaled to the pattern's units; ``"none"``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..align import rmsd
from ..pools.pool import Pool
from ..scattering import simulate
from .detector import images_of

__all__ = ["Noise", "Standardizer", "PoolData", "load_pool", "aligned_to", "heavy_mask"]


@dataclass(frozen=True)
class Noise:
    """Noise model for simulated patterns (see the module notes).

    Parameters
    ----------
    kind : {'gaussian', 'poisson', 'none'}, optional
        ``"gaussian"``: I + level · ``|I|`` · ε per q point (ε standard normal), a relative error per q point;
        ``"poisson"``: a pattern of ``counts`` detected quanta in all, Poisson per q point, rescaled to the
        pattern's units; ``"none"``.
    level : float, optional
        Relative standard deviation per q point of the Gaussian model (0.005 = 0.5 %).
    counts : float, optional
        Detected photons or electrons per pattern of the Poisson model.

    Raises
    ------
    ValueError
        An unknown kind, a negative level or non-positive counts.
    """

    kind: str = "gaussian"
    level: float = 0.005
    counts: float = 1e6

    def __post_init__(self):
        if self.kind not in ("none", "gaussian", "poisson"):
            raise ValueError(f"noise kind must be 'none', 'gaussian' or 'poisson', got {self.kind!r}")
        if not (np.isfinite(self.level) and self.level >= 0):
            raise ValueError(f"noise level must be a number >= 0, got {self.level!r}")
        if not (np.isfinite(self.counts) and self.counts > 0):
            raise ValueError(f"noise counts must be a number > 0, got {self.counts!r}")

    @classmethod
    def parse(cls, text: str) -> "Noise":
        """'gaussian:LEVEL' (relative σ per q point), 'poisson:COUNTS' (counts per pattern) or 'none'."""
        kind, _, value = str(text).partition(":")
        try:
            if kind == "none" and not value:
                return cls("none")
            if kind == "gaussian":
                return cls("gaussian", level=float(value))
            if kind == "poisson":
                return cls("poisson", counts=float(value))
        except ValueError as exc:
            raise ValueError(f"bad noise {text!r}: {exc}") from None
        raise ValueError(f"noise must be gaussian:LEVEL, poisson:COUNTS or none, got {text!r}")

    def apply(self, I: np.ndarray, rng) -> np.ndarray:
        """A noisy copy of (B, Q) patterns (float64), drawn from ``rng`` (a numpy Generator or seed)."""
        rng = np.random.default_rng(rng)
        I = np.asarray(I, dtype=np.float64)
        if self.kind == "none" or (self.kind == "gaussian" and self.level == 0):
            return I.copy()
        if self.kind == "gaussian":
            return I + self.level * np.abs(I) * rng.standard_normal(I.shape)
        if np.any(I < 0):
            raise ValueError("Poisson noise needs non-negative patterns (the 'total' signal)")
        total = I.sum(axis=-1, keepdims=True)
        scale = self.counts / np.where(total > 0, total, 1.0)
        return rng.poisson(I * scale) / scale

    def sigma(self, I: np.ndarray) -> np.ndarray:
        """The model's standard deviation per q point for a pattern I (used as χ² weights)."""
        I = np.abs(np.asarray(I, dtype=np.float64))
        if self.kind == "gaussian":
            return np.maximum(self.level * I, 1e-12 * I.max(axis=-1, keepdims=True) + 1e-300)
        if self.kind == "poisson":
            total = I.sum(axis=-1, keepdims=True)
            return np.sqrt(np.maximum(I, 1e-12 * I.max(axis=-1, keepdims=True)) * total / self.counts) + 1e-300
        return np.ones_like(I)

    def to_dict(self) -> dict:
        """The model as a JSON-friendly dict ``{"kind", "level", "counts"}`` (``Noise(**d)`` rebuilds it)."""
        return {"kind": self.kind, "level": float(self.level), "counts": float(self.counts)}


class Standardizer:
    """Per-q standardisation x = (I − mean_q) / std_q of patterns, fitted on clean training patterns.

    Calling it on patterns (…, Q) returns float32 standardised inputs; :meth:`tensor` does the same for torch.

    Parameters
    ----------
    mean : array_like
        (Q,) mean pattern, in the patterns' unit.
    std : array_like
        (Q,) standard deviation per q point, same unit (> 0).
    """

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)

    @classmethod
    def fit(cls, I: np.ndarray) -> "Standardizer":
        """The standardisation of a set of patterns.

        Parameters
        ----------
        I : array_like
            (B, Q) clean training patterns.

        Returns
        -------
        Standardizer
            Their per-q mean and standard deviation (a zero spread is replaced by 1).
        """
        I = np.asarray(I, dtype=np.float64)
        std = I.std(axis=0)
        return cls(I.mean(axis=0), np.where(std > 0, std, 1.0))

    def __call__(self, I) -> np.ndarray:
        I = np.asarray(I, dtype=np.float64)
        self._check_width(I)
        if not np.all(np.isfinite(I)):
            raise ValueError("pattern contains NaN or inf")
        return ((I - self.mean) / self.std).astype(np.float32)

    def _check_width(self, I):
        if I.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"pattern has {I.shape[-1]} q points, the model was trained on {self.mean.shape[0]}")

    def tensor(self, x):
        """The same for a torch tensor (B, Q), with torch's threads: a new float32 tensor.  One conversion, one
        fused multiply-add ((I − mean)/std as I·(1/std) − mean/std) and one sum to check finiteness (a NaN or
        inf anywhere makes the sum non-finite).  Rounding I to float32 first costs ~1e-7·|I|/std, far below
        any pattern's noise."""
        import torch  # optional dependency (torch)

        self._check_width(x)
        if not hasattr(self, "_t"):
            inv = 1.0 / self.std
            self._t = (torch.from_numpy(-self.mean * inv).float(), torch.from_numpy(inv).float())
        out = x.to(torch.float32, copy=True)      # a new tensor: the caller's is never written
        torch.addcmul(self._t[0], out, self._t[1], out=out)
        if not bool(torch.isfinite(out.sum())):
            raise ValueError("pattern contains NaN or inf (or values too large for float32)")
        return out


def heavy_mask(numbers) -> np.ndarray:
    """Which atoms are not hydrogen.

    Parameters
    ----------
    numbers : array_like
        (N,) atomic numbers.

    Returns
    -------
    numpy.ndarray
        (N,) bool, True for Z > 1.
    """
    return np.asarray(numbers) > 1


def aligned_to(reference: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Geometries superposed onto a reference by proper rotations, then centred.

    Parameters
    ----------
    reference : numpy.ndarray
        (N, 3) reference positions, Å.
    positions : array_like
        (B, N, 3) positions, Å (read in blocks, so a zarr array works).

    Returns
    -------
    numpy.ndarray
        (B, N, 3) float64 positions in Å, in the centred reference's frame, each centred.
    """
    ref = reference - reference.mean(axis=0)
    out = np.empty_like(np.asarray(positions, dtype=np.float64))
    for s in range(0, len(positions), 65536):
        p = np.asarray(positions[s:s + 65536], dtype=np.float64)
        _, R, t = rmsd(p, ref, return_transform=True)  # ref ≈ p @ R.T + t
        out[s:s + len(p)] = np.einsum("bnj,bkj->bnk", p, R) + t[:, None, :]
    return out - out.mean(axis=1, keepdims=True)


@dataclass
class PoolData:
    """One pool's patterns and targets, split by sample; made by :func:`load_pool`.

    Parameters
    ----------
    numbers : numpy.ndarray
        (N,) atomic numbers.
    reference : numpy.ndarray
        (N, 3) the pool's reference geometry, centred, Å.
    q : numpy.ndarray
        (Q,) momentum transfer, Å⁻¹.
    probe : str
        ``"xray"`` or ``"electron"``.
    signal : str
        ``"total"``, ``"atomic"``, ``"molecular"`` or ``"sM"``.
    molecule : str
        The molecule's name.
    index : dict
        Split (``"train"``, ``"val"``, ``"test"``) -> (n,) member indices in the pool.
    patterns : dict
        Split -> (n, Q) float64 clean patterns (or (n, n_chi·Q) flattened detector images).
    targets : dict
        Split -> (n, N, 3) float64 aligned, centred geometries, Å.
    image : dict or None, optional
        The description of detector images (see :mod:`xstructure.learn.detector`), or None for 1D patterns.
    """

    numbers: np.ndarray      # (N,)
    reference: np.ndarray    # (N, 3) the pool's reference geometry, centred
    q: np.ndarray            # (Q,) Å⁻¹
    probe: str
    signal: str
    molecule: str
    index: dict              # split -> (n,) member indices in the pool
    patterns: dict           # split -> (n, Q) float64 clean patterns
    targets: dict            # split -> (n, N, 3) float64 aligned, centred geometries
    image: dict | None = None  # patterns are flattened (n_chi, Q) detector images (see .detector), or None

    @property
    def input_shape(self) -> tuple:
        """Shape of one input: (Q,) for a 1D pattern, (n_chi, Q) for a detector image."""
        return input_shape(len(self.q), self.image)

    def inputs_of(self, positions) -> np.ndarray:
        """(B, prod(input_shape)) clean inputs of structures (B, N, 3), reference frame: their patterns, or
        their flattened detector images (:func:`.detector.images_of`), made as this data's patterns were."""
        X = np.asarray(positions, dtype=np.float64)
        if self.image is None:
            return simulate((self.numbers, X), self.q, probe=self.probe, signal=self.signal)
        return images_of(self, X).reshape(len(X), -1)


def input_shape(n_q: int, image: dict | None) -> tuple:
    """Shape of one input: (Q,) for a 1D pattern, (n_chi, Q) for a detector image."""
    return (int(n_q),) if image is None else (int(image["n_chi"]), int(n_q))


def load_pool(path, name: str | None = None, *, fractions=(0.8, 0.1, 0.1), seed: int = 0,
              limit: int | None = None) -> PoolData:
    """Read a pool's pattern set and geometries into memory, split train / val / test by sample.

    Parameters
    ----------
    path : str or os.PathLike
        A pool directory (see :class:`xstructure.Pool`).
    name : str or None, optional
        Pattern set (default: the pool's only one).
    fractions : tuple of float, optional
        Train, val, test fractions (summing to at most 1).
    seed : int, optional
        Seed of the permutation.
    limit : int or None, optional
        Use only the first ``limit`` members of the permutation (smaller experiments).

    Returns
    -------
    PoolData
        Patterns (n, Q) and aligned, centred targets (n, N, 3) in Å per split.

    Raises
    ------
    ValueError
        An incomplete pool, an unknown or ambiguous pattern set, or bad fractions.
    """
    pool = Pool.open(path)
    if not pool.complete:
        raise ValueError(f"pool {path} is not complete: finish it with Pool.create (or `xstructure pool create`)")
    sets = pool.pattern_sets()
    q, I = pool.patterns(name)
    name = name or next(iter(sets))
    if not sets[name]["complete"]:
        raise ValueError(f"pattern set {name!r} of {path} is not complete: finish it with pool.simulate")
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (3,) or np.any(fr < 0) or fr.sum() > 1 + 1e-9 or fr[0] == 0:
        raise ValueError(f"fractions must be three numbers >= 0 (train > 0) summing to <= 1, got {fractions!r}")
    B = len(pool)
    perm = np.random.default_rng(seed).permutation(B)
    if limit is not None:
        perm = perm[:int(limit)]
    n = len(perm)
    cuts = np.floor(np.cumsum(fr) * n + 1e-9).astype(int)
    parts = {"train": perm[:cuts[0]], "val": perm[cuts[0]:cuts[1]], "test": perm[cuts[1]:cuts[2]]}
    allI = np.asarray(I[:], dtype=np.float64)
    allpos = np.asarray(pool.positions[:], dtype=np.float64)
    ref = pool.reference - pool.reference.mean(axis=0)
    index, pats, tgts = {}, {}, {}
    for k, idx in parts.items():
        idx = np.sort(idx)
        index[k] = idx
        pats[k] = allI[idx]
        tgts[k] = aligned_to(ref, allpos[idx]) if len(idx) else np.zeros((0, len(ref), 3))
    mol = pool.attrs["molecule"]
    return PoolData(numbers=pool.numbers, reference=ref, q=np.asarray(q, dtype=np.float64),
                    probe=sets[name]["probe"], signal=sets[name]["signal"],
                    molecule=mol.get("name", str(mol)) if isinstance(mol, dict) else str(mol),
                    index=index, patterns=pats, targets=tgts)
