"""The general interpreter: one model for molecules it has never seen.

Input: a scattering pattern and the molecule (SMILES, a name, a file or an ase.Atoms); output: its 3D structure.
Nothing is trained per molecule by the user. The model has three parts:

1. **A linear reader, derived per molecule from physics** (no training data needed, about a second per new
   molecule, then cached). The molecule is minimised with MMFF94 (the equilibrium structure x₀), its harmonic
   normal modes give the thermal (Wigner, temperature T) distribution of displacements x = x₀ + L z with
   z ~ N(0, I), and ``n_reference`` draws of it are scattered through the Debye equation with the measurement's
   noise (for hot samples, ``ensemble="md"``: ``md_reference`` Langevin MD frames at the sample's temperature
   instead, their z a least-squares projection).  A ridge regression from those patterns to z is the statistically
   linearised posterior mean (it includes the Debye–Waller damping of the thermal average, which a Taylor
   expansion about x₀ misses).
   One Gauss–Newton step of the posterior (pattern likelihood + the Gaussian prior on z) from the ridge estimate
   then brings in the pattern's non-linear information.

2. **A learned network shared by all molecules**, trained on a library of some two thousand molecules
   (:mod:`.library`) whose scaffolds exclude the test molecules: a Transformer over the atoms, fed only
   rotation-invariant features (element, the prior's and the reader's spread at that atom, the lengths of the two
   displacement vectors and their angle, the χ² before and after the Gauss–Newton step), outputs two weights per
   atom that mix the reader's displacement and the Gauss–Newton step:
   x_i = x₀,i + c₁,i · δ_ridge,i + c₂,i · δ_GN,i.  The output rotates with the molecule (the weights are
   invariant, the vectors are equivariant), so the network never has to learn rotations, and it works for any
   molecule within its elements and size.

3. **Calibrated Gauss–Newton iterations, derived per molecule** (fitted on the same reference ensemble the first
   time the molecule is predicted, a few seconds; ``predict(..., iterations=0)`` skips them): from the network's
   output, written in mode coordinates z, each iteration takes one Gauss–Newton step (within a trust region) and
   maps (z, z + dz) to the next z by a ridge regression fitted on reference draws whose true z is known; the
   iterations kept are those up to the smallest error on held-back draws, and a prediction runs them while each
   lowered that error by at least ``config["iteration_gain"]`` (1 %) of itself: each costs about as much as the
   network.

4. **For hot samples, an optional multi-start search** (``predict(..., search=n)``): Levenberg–Marquardt fits with
   bond and angle distances restrained, from the structures of a fresh sample of the reader's ensemble whose
   patterns match best; used for a molecule only where it beats the prediction on held-back reference draws.

The design follows learned iterative reconstruction (Adler & Öktem 2017, doi:10.1088/1361-6420/aa9581) with
the physics of the Independent Atom Model; the inversion problem is that of the original design (Si & Ma).

Patterns are I_mol(q) (``signal="molecular"``) or the total I(q) (``signal="total"``, converted by subtracting
Σ f_i²), on the absolute scale of :func:`xstructure.simulate` (electron units for X-rays), on any q grid inside the
model's range (resampled linearly onto the model's grid points in that range).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from .. import structures
from ..factors import form_factor_table
from ..pools import sampling
from .library import connectivity_key

__all__ = ["FEATURES", "PRETRAINED", "SIGNALS", "GeneralInterpreter", "GeneralNet", "Reader", "identify", "pretrained",
           "robust_sigma"]

PRETRAINED = ("general-xray", "general-electron")
"""Names of the models shipped with the package (:func:`pretrained`): X-ray and electron I_mol(q), 0.5–10 Å⁻¹."""
SIGNALS = ("molecular", "total")
"""Signals a general model reads: I_mol(q), or the total I(q) = I_mol + Σ f_i² (converted)."""

DEFAULTS = dict(q_min=0.5, q_max=10.0, n_q=200, probe="xray", signal="molecular", noise=0.005, temperature=300.0,
                n_reference=2000, md_reference=20000, ridge=0.1, elements=[1, 6, 7, 8, 9, 16, 17], max_atoms=30,
                width=64, layers=2, heads=4, seed=0, iterations=8, calibration_ridge=0.01, step_cap=0.3,
                iteration_gain=0.01)
GN_PRECISION = "mixed"
# The Gauss–Newton steps (features and iterations) accumulate the Jacobian and its projection in float32
# (ops.debye_gauss_newton): 30 % less time per step at 21 atoms, and a step within ~1e-4 of the float64 one, far inside
# the noise.
FEATURES = 16


def _symbols(numbers) -> str:
    from ase.data import chemical_symbols  # loaded on use: keeps `import xstructure` fast

    return ", ".join(chemical_symbols[int(z)] for z in numbers)


def _torch():
    try:
        import torch  # optional dependency (torch)
    except ImportError:
        raise ModuleNotFoundError("the general interpreter needs torch: pip install torch", name="torch") from None
    return torch


# ------------------------------------------------------------------------------------------------------------
# Physics: the noise model
# ------------------------------------------------------------------------------------------------------------


def robust_sigma(I_obs, level):
    """Per-q σ = level · |I| of relative-noise patterns, floored at 0.3 × the local RMS over 15 points (I_mol
    crosses zero, where level · |I| would claim an exact value).

    Parameters
    ----------
    I_obs : torch.Tensor
        (B, Q) patterns.
    level : float
        Relative noise per q point (0.005 = 0.5 %).

    Returns
    -------
    torch.Tensor
        (B, Q) standard deviations, the patterns' unit.
    """
    torch = _torch()
    rms = torch.nn.functional.avg_pool1d((I_obs ** 2)[:, None], 15, 1, 7, count_include_pad=False)[:, 0].sqrt()
    floor = torch.maximum(0.3 * rms, 1e-6 * I_obs.abs().amax(1, keepdim=True) + 1e-12)
    return level * torch.maximum(I_obs.abs(), floor)


# ------------------------------------------------------------------------------------------------------------
# The per-molecule linear reader
# ------------------------------------------------------------------------------------------------------------


@dataclass
class Reader:
    """A molecule's linear reader on one q grid (see the module notes); made by :meth:`GeneralInterpreter.reader`.

    Attributes
    ----------
    atoms : ase.Atoms
        The molecule at its MMFF94 minimum x₀.
    q : numpy.ndarray
        (Q,) the grid it reads, Å⁻¹.
    L : torch.Tensor
        (3N, M) displacement per unit mode coordinate, Å (thermal amplitudes at the model's temperature).
    stages : list or None
        The calibrated Gauss–Newton iterations (:meth:`iterate`), None until the first prediction fits them: those
        up to the smallest error on the held-back reference draws.
    default_iterations : int or None
        How many of them a prediction runs by default: while each lowered that error by at least
        ``config["iteration_gain"]`` of itself (:func:`_calibrate`).
    """

    atoms: object
    q: np.ndarray
    L: object
    mu: object
    sd: object
    W: object
    zm: object
    prior_sd: object
    resid: object
    noise: float
    bonds: np.ndarray
    bond_mean: np.ndarray
    bond_std: np.ndarray
    chol: object = None
    _probe: str = "xray"
    beta: object = None         # (Q,) Σ f_i² when the noise is relative to the total I(q), else zeros
    ref_z: object = None        # (K, M) the reference ensemble's mode coordinates (until calibrated)
    ref_I: object = None        # (K, Q) float32, its noisy patterns (until calibrated)
    stages: list | None = None  # the calibrated Gauss–Newton iterations (see :meth:`iterate`), once calibrated
    default_iterations: int | None = None  # how many of them predict runs by default (see _calibrate)
    calibration_errors: list | None = None  # mean heavy-atom error (Å) on the held-back draws after 0, 1, … of them
    step_cap: float = 0.3       # their trust region (set with them: prediction uses the cap they were fitted with)
    draws: object = None        # (SEARCH_CHECK, N, 3) the reference ensemble's last structures, Å (the search's check)
    ensemble: str = "wigner"    # the reference ensemble ("wigner" or "md") and its temperature, K
    temperature: float = 300.0
    search_check: dict | None = None  # the search's check on held-back draws (:meth:`GeneralInterpreter.predict`)
    starts: object = None             # (S, N, 3) the search's starts, their noise-free patterns (S, Q), restraints
    start_patterns: object = None
    restraints: tuple | None = None
    L_pinv: object = None             # (3N, M) the pseudo-inverse of L, transposed (:meth:`modes_of`), once used

    @property
    def numbers(self) -> np.ndarray:
        return np.asarray(self.atoms.numbers)

    @property
    def x0(self):
        torch = _torch()
        return torch.as_tensor(np.asarray(self.atoms.positions), dtype=torch.float64)

    def weights(self, I_obs):
        """χ² weights 1/σ² (B, Q) of I_mol patterns (B, Q), for the reader's noise level."""
        return 1.0 / robust_sigma(I_obs + self.beta, self.noise) ** 2

    def step(self, I_obs, w, z, cap=0.3):
        """One Gauss–Newton step dz (B, M) of the posterior from mode coordinates z (B, M), shortened to at most
        ``cap`` · √M (a trust region: where the pattern's linearisation fails, a full step can be tens of prior
        widths long)."""
        from .. import ops

        x = self.x0[None] + (z @ self.L.T).reshape(len(z), -1, 3)
        dz = ops.debye_gauss_newton(self.numbers, x, self.q, self.L, I_obs, w, z, probe=self._probe,
                                    signal="molecular", precision=GN_PRECISION, check_finite=False)[0]
        cap = float(cap) * z.shape[1] ** 0.5
        return dz * (cap / dz.norm(dim=1, keepdim=True).clamp_min(cap))

    def modes_of(self, positions):
        """Mode coordinates z (B, M) of positions (B, N, 3) (least squares on :attr:`L`, through its pseudo-inverse:
        one product, the same for every batch, where a threaded least-squares solve varies in the last bit)."""
        torch = _torch()
        if self.L_pinv is None:
            self.L_pinv = torch.linalg.pinv(self.L).T.contiguous()
        d = (torch.as_tensor(positions, dtype=torch.float64) - self.x0[None]).reshape(len(positions), -1)
        return d @ self.L_pinv

    def iterate(self, I_obs, z, n=None, w=None):
        """Run the calibrated Gauss–Newton iterations from z (B, M): each takes a Gauss–Newton step dz (with the
        trust region they were fitted with) and maps (z, z + dz) to the next z by the linear map fitted on the
        reference ensemble (:func:`_calibrate`)."""
        torch = _torch()
        I_obs = torch.as_tensor(I_obs, dtype=torch.float64)
        w = self.weights(I_obs) if w is None else w
        for st in (self.stages or [])[:n]:
            z = _apply_stage(st, z, z + self.step(I_obs, w, z, self.step_cap))
        return z

    def features(self, I_obs, w=None):
        """Per-atom features (B, N, FEATURES) and the two displacement fields (B, N, 3) for patterns (B, Q) (``w``:
        their :meth:`weights`, if the caller has them)."""
        torch = _torch()
        I_obs = torch.as_tensor(I_obs, dtype=torch.float64)
        B, N = I_obs.shape[0], len(self.atoms)
        x0 = self.x0
        z = ((I_obs - self.mu) / self.sd) @ self.W + self.zm
        v1 = (z @ self.L.T).reshape(B, N, 3)
        xr = x0[None] + v1
        w = self.weights(I_obs) if w is None else w
        from .. import ops  # the C++ Debye kernels: the Gauss–Newton step, and the pattern after it

        dz, Ir = ops.debye_gauss_newton(self.numbers, xr, self.q, self.L, I_obs, w, z, probe=self._probe,
                                        signal="molecular", precision=GN_PRECISION, check_finite=False)
        v2 = (dz @ self.L.T).reshape(B, N, 3)
        Is = ops.debye(self.numbers, xr + v2, self.q, probe=self._probe, signal="molecular").to(torch.float64)
        Q = I_obs.shape[1]
        chi_r = (w * (I_obs - Ir) ** 2).sum(1) / Q
        chi_s = (w * (I_obs - Is) ** 2).sum(1) / Q
        ps = self.prior_sd[None, :]
        n1, n2 = v1.norm(dim=-1), v2.norm(dim=-1)
        cos = (v1 * v2).sum(-1) / (n1 * n2).clamp_min(1e-12)
        onehot = torch.zeros(N, 7, dtype=torch.float64)
        for k, zz in enumerate(DEFAULTS["elements"]):
            onehot[:, k] = torch.as_tensor(self.numbers == zz, dtype=torch.float64)
        glob = torch.stack([torch.log(chi_r + 1e-3), torch.log((chi_s + 1e-3) / (chi_r + 1e-3)),
                            torch.full_like(chi_r, N / 30.0)], -1)
        f = torch.cat([onehot[None].expand(B, N, 7), (ps / 0.1)[..., None].expand(B, N, 1),
                       (self.resid[None] / ps)[..., None].expand(B, N, 1), (n1 / ps)[..., None], (n2 / ps)[..., None],
                       cos[..., None], ((v1 + v2).norm(dim=-1) / ps)[..., None], glob[:, None, :].expand(B, N, 3)],
                      -1)
        return f, v1, v2

    def log_likelihood(self, I_obs):
        """Gaussian log-likelihood per q point of patterns (B, Q) under the molecule's thermal ensemble (its
        mean pattern and covariance, noise included)."""
        torch = _torch()
        I_obs = torch.as_tensor(np.atleast_2d(I_obs), dtype=torch.float64)
        y = torch.linalg.solve_triangular(self.chol, (I_obs - self.mu).T, upper=False)
        logdet = 2 * torch.log(torch.diagonal(self.chol)).sum()
        Q = I_obs.shape[1]
        return (-0.5 * ((y ** 2).sum(0) + logdet + Q * np.log(2 * np.pi)) / Q).numpy()

    def linear(self, I_obs) -> np.ndarray:
        """The ridge (statistically linearised) estimate alone, (B, N, 3) Å, for I_mol patterns (B, Q) on
        :attr:`q`."""
        torch = _torch()
        I_obs = torch.as_tensor(np.atleast_2d(I_obs), dtype=torch.float64)
        z = ((I_obs - self.mu) / self.sd) @ self.W + self.zm
        return (self.x0[None] + (z @ self.L.T).reshape(len(I_obs), -1, 3)).numpy()


def _add_noise(I, level, beta, gen):
    """Patterns (B, Q) with relative Gaussian noise of ``level`` × |I + beta| per q point (beta: Σ f_i² when the noise
    is relative to the total I(q), else zeros)."""
    torch = _torch()
    return I + level * (I + beta).abs() * torch.randn(I.shape, generator=gen, dtype=torch.float64)


def _make_reader(atoms, q, cfg, noise):
    """Build a :class:`Reader` (MMFF94 minimum and modes, reference ensemble, ridge)."""
    torch = _torch()
    from .. import ops  # torch-backed Debye kernel (C++), for the reference patterns
    from .refine import distance_restraints

    nm = sampling.minimum_modes(atoms)
    var = sampling.wigner_mode_variances(nm, cfg["temperature"])
    L = torch.as_tensor((nm.modes.T / np.sqrt(np.repeat(nm.masses, 3))[:, None]) * np.sqrt(var)[None],
                        dtype=torch.float64)
    a = atoms.copy()
    a.positions = nm.positions
    x0 = torch.as_tensor(nm.positions, dtype=torch.float64)
    md = cfg.get("ensemble", "wigner") == "md"
    N, M, K = len(a), L.shape[1], int(cfg["md_reference"] if md else cfg["n_reference"])
    gen = torch.Generator().manual_seed(int(cfg["seed"]) + 7919 * N)
    if md:   # Langevin MD at T: anharmonic, for hot samples
        from tqdm.auto import tqdm  # loaded on use: keeps `import xstructure` fast

        from .data import aligned_to

        T, blocks, per = float(cfg["temperature"]), [], 1024   # trajectories of 1024 frames (10 ps), one at a time
        with tqdm(total=K, unit="frame", desc=f"MD reader at {T:g} K", leave=False, disable=None) as bar:
            for s in range(0, K, per):
                blocks.append(sampling.sample(a, "md", min(per, K - s), T, seed=int(cfg["seed"]), start=s,
                                              chunk=per)["positions"])
                bar.update(len(blocks[-1]))
        frames = np.concatenate(blocks)
        x = torch.as_tensor(aligned_to(nm.positions, frames) + nm.positions.mean(0), dtype=torch.float64)
        z = torch.linalg.lstsq(L, (x - x0[None]).reshape(K, -1).T).solution.T.contiguous()
    else:
        z = torch.randn(K, M, generator=gen, dtype=torch.float64)
        x = x0[None] + (z @ L.T).reshape(K, N, 3)
    I = ops.debye(a.numbers, x, q, probe=cfg["probe"], signal="molecular").to(torch.float64)
    _, species, f = form_factor_table(a.numbers, q, cfg["probe"])
    f_atoms = f[species]                                   # (N, Q)
    beta = torch.zeros(len(q), dtype=torch.float64)
    if cfg.get("noise_of", "molecular") == "total":   # the noise is relative to I_mol + Σ f_i²
        beta = torch.as_tensor((f_atoms ** 2).sum(0), dtype=torch.float64)
    I = _add_noise(I, noise, beta, gen)
    mu, sd = I.mean(0), I.std(0).clamp_min(1e-12)
    F = (I - mu) / sd
    zm = z.mean(0)
    W = torch.linalg.solve(F.T @ F + float(cfg["ridge"]) * K * torch.eye(len(q), dtype=torch.float64),
                           F.T @ (z - zm))
    err = ((z - zm - F @ W) @ L.T).reshape(K, N, 3)
    resid = err.pow(2).sum(-1).mean(0).sqrt()
    prior_sd = L.reshape(N, 3, M).pow(2).sum((1, 2)).sqrt().clamp_min(1e-4)
    bonds, bmean, bstd = distance_restraints(a.numbers, nm.positions, x.numpy(), angles=False)
    C = torch.cov(I.T) + 1e-3 * torch.diag(sd ** 2)        # the ensemble's pattern covariance, noise included
    chol = torch.linalg.cholesky(C)
    return Reader(a, np.asarray(q, np.float64), L, mu, sd, W, zm,
                  prior_sd, resid, float(noise), bonds, bmean, bstd, chol, cfg["probe"], beta,
                  z.contiguous(), I.to(torch.float32), draws=x[-SEARCH_CHECK:].numpy().copy(),
                  ensemble=cfg.get("ensemble", "wigner"),
                  temperature=float(cfg["temperature"]))


def _fit_stage(F, Y, ridge):
    """Ridge regression Y ≈ ((F − μ)/s) A + ȳ on standardised inputs F (K, D) -> the map's tensors."""
    torch = _torch()
    mu, sd = F.mean(0), F.std(0).clamp_min(1e-9)
    Fs = (F - mu) / sd
    ym = Y.mean(0)
    A = torch.linalg.solve(Fs.T @ Fs + ridge * len(F) * torch.eye(F.shape[1], dtype=F.dtype), Fs.T @ (Y - ym))
    return dict(mu=mu, sd=sd, A=A, ym=ym)


def _apply_stage(st, z, z_gn):
    torch = _torch()
    return ((torch.cat([z, z_gn], 1) - st["mu"]) / st["sd"]) @ st["A"] + st["ym"]


def _calibrate(reader, z_start, ridge, max_stages, cap, gain=0.0):
    """Fit the reader's calibrated Gauss–Newton iterations on its reference ensemble.

    The reference draws (mode coordinates z and noisy patterns) are split 3:1. From ``z_start`` (the estimate
    being improved, for every draw), each iteration takes one Gauss–Newton step of the posterior and fits a ridge
    map from (z, z + dz) to the true z on the first part; the number of iterations kept is the one with the
    smallest mean heavy-atom error on the second part (0 if none helps; the fit stops two iterations past the
    best). By default a prediction runs them while each lowered that error by at least ``gain`` of itself (the
    relative-decrease stopping rule of iterative solvers: an iteration costs one Gauss–Newton step, about half the
    network path, and where the next one gains less than 1 % it is not worth it; ``predict(..., iterations=n)``
    runs up to n of them).
    This is the per-molecule, simulation-trained part of learned iterative reconstruction (Adler & Öktem 2017):
    each iteration's learned map is linear and comes from the physics, so it needs no training data.
    """
    torch = _torch()
    z_true, I = reader.ref_z, reader.ref_I.to(torch.float64)
    K = len(z_true)
    n_fit = K - K // 4
    heavy = torch.as_tensor(reader.numbers > 1)
    L3 = reader.L.reshape(len(reader.numbers), 3, -1)[heavy].reshape(-1, reader.L.shape[1])

    def val_error(z):
        return float(((z[n_fit:] - z_true[n_fit:]) @ L3.T).pow(2).mean(1).sqrt().mean())

    w = reader.weights(I)
    z = z_start
    errs = [val_error(z)]
    best, stages = 0, []
    for s in range(int(max_stages)):
        z_gn = z + reader.step(I, w, z, cap)
        st = _fit_stage(torch.cat([z, z_gn], 1)[:n_fit], z_true[:n_fit], ridge)
        stages.append(st)
        z = _apply_stage(st, z, z_gn)
        errs.append(val_error(z))
        if errs[-1] < errs[best]:
            best = s + 1
        elif s + 1 - best >= 2:
            break
    n = 0
    while n < best and errs[n] - errs[n + 1] >= float(gain) * errs[n]:
        n += 1
    reader.stages, reader.default_iterations, reader.step_cap = stages[:best], n, float(cap)
    reader.calibration_errors = errs[:best + 1]
    reader.ref_z = reader.ref_I = None


SEARCH_CHECK = 32
"""Reference draws the search is checked on, per molecule."""
SEARCH_STARTS = (4000, 250)
"""The search's candidate starts: structures of the reader's ensemble, and for MD the frames per trajectory."""
SEARCH_WIDEN = 4
SEARCH_CHUNK = 64   # patterns searched together (memory: SEARCH_CHUNK · SEARCH_WIDEN · search structures)
SEARCH_STEPS = (8, 22)
"""Each pattern's ``SEARCH_WIDEN`` × ``search`` best-matching candidates get ``SEARCH_STEPS[0]`` Levenberg–Marquardt
steps; the ``search`` best of those ``SEARCH_STEPS[1]`` more."""


def _make_starts(reader):
    """The search's candidate starts (:data:`SEARCH_STARTS`), independent of the reader's reference draws: a fresh
    sample of its ensemble (for MD, many short trajectories from the minimum, so that they cover the torsions)."""
    torch = _torch()
    from .. import ops
    from .data import aligned_to
    from .refine import distance_restraints

    n, per = SEARCH_STARTS
    x0 = reader.atoms.positions
    seed = 104_729 + len(x0)
    if reader.ensemble == "md":
        X = sampling.sample(reader.atoms, "md", n, reader.temperature, seed=seed, chunk=per)["positions"]
    else:
        X = sampling.sample(reader.atoms, "wigner", n, reader.temperature, seed=seed)["positions"]
    X = aligned_to(x0, X) + x0.mean(0)
    reader.starts = X
    reader.start_patterns = ops.debye(reader.numbers, torch.as_tensor(X), reader.q, probe=reader._probe,
                                      signal="molecular").to(torch.float64).numpy()
    reader.restraints = distance_restraints(reader.numbers, x0, X)


def _search(reader, I, P, starts):
    """Multi-start fits (see ``search`` in :meth:`GeneralInterpreter.predict`): for each I_mol pattern (B, Q), the
    prediction P (B, N, 3) and the candidate starts (:func:`_make_starts`) whose noise-free patterns are nearest in
    χ², each fitted by :func:`.refine.fit_lm` (:data:`SEARCH_STEPS`); the fit with the lowest objective, superposed
    onto x₀."""
    torch = _torch()
    from .data import aligned_to
    from .refine import fit_lm

    if reader.starts is None:
        _make_starts(reader)
    D, ID = reader.starts, reader.start_patterns
    I = np.asarray(I, dtype=np.float64)
    sig = robust_sigma(torch.as_tensor(I) + reader.beta, reader.noise).numpy()
    pairs, mean, std = reader.restraints
    k = min(SEARCH_WIDEN * int(starts), len(D))
    best = np.empty(np.shape(P))
    for s in range(0, len(I), SEARCH_CHUNK):
        Ic, sc = I[s:s + SEARCH_CHUNK], sig[s:s + SEARCH_CHUNK]
        w = 1.0 / sc ** 2
        chi = w @ (ID ** 2).T - 2.0 * (Ic * w) @ ID.T          # + a constant per pattern
        top = np.argpartition(chi, k - 1, axis=1)[:, :k]
        cand = np.concatenate([np.asarray(P[s:s + SEARCH_CHUNK])[:, None], D[top]], 1)   # (B, k + 1, N, 3)
        B, N = cand.shape[0], cand.shape[2]
        for steps, keep in ((SEARCH_STEPS[0], int(starts)), (SEARCH_STEPS[1], 1)):
            S = cand.shape[1]
            fit, obj, _ = fit_lm(cand.reshape(B * S, N, 3), np.repeat(Ic, S, 0), np.repeat(sc, S, 0),
                                 reader.numbers, reader.q, probe=reader._probe, signal="molecular", pairs=pairs,
                                 pair_mean=mean, pair_std=std, steps=steps)
            order = np.argsort(obj.reshape(B, S), 1)[:, :min(S, keep)]
            cand = fit.reshape(B, S, N, 3)[np.arange(B)[:, None], order]
        best[s:s + B] = cand[:, 0]
    x0 = reader.atoms.positions
    return aligned_to(x0, best) + x0.mean(0)


# ------------------------------------------------------------------------------------------------------------
# The learned network
# ------------------------------------------------------------------------------------------------------------


def GeneralNet(width: int = 64, layers: int = 2, heads: int = 4):
    """The shared network: per-atom invariant features (B, N, FEATURES) + padding mask -> weights (B, N, 2).

    Parameters
    ----------
    width : int, optional
        Token width.
    layers : int, optional
        Transformer encoder layers.
    heads : int, optional
        Attention heads.

    Returns
    -------
    torch.nn.Module
        Called as ``net(features, pad)`` (``pad``: (B, N) bool, True for padding atoms, or None); returns the
        weights (c₁, c₂) per atom, (1, 0) before training.
    """
    torch = _torch()
    nn = torch.nn

    class _Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Sequential(nn.Linear(FEATURES, width), nn.GELU(), nn.Linear(width, width))
            layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            self.head = nn.Linear(width, 2)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

        def forward(self, f, pad=None):
            h = self.encoder(self.embed(f), src_key_padding_mask=pad)
            out = self.head(h)
            return torch.stack([1.0 + out[..., 0], out[..., 1]], -1)

    return _Net()


def combine(weights, v1, v2, x0):
    """x = x₀ + c₁ v₁ + c₂ v₂ per atom."""
    return x0 + weights[..., :1] * v1 + weights[..., 1:2] * v2


# ------------------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------------------


class GeneralInterpreter:
    """Pattern + molecule -> structure, for any molecule within the model's elements and size.

    Load the shipped model with :func:`pretrained`, or a trained one with :meth:`load`.

    Parameters
    ----------
    config : dict
        The model's settings (:data:`DEFAULTS` and the training molecules).
    net : torch.nn.Module or None, optional
        The trained network (None: the weights c₁ = 1, c₂ = 0, i.e. the linear reader alone).
    """

    def __init__(self, config: dict, net=None):
        self.config = json.loads(json.dumps({**DEFAULTS, **config}))   # a deep copy
        bad = sorted(set(self.config["elements"]) - set(DEFAULTS["elements"]))
        if bad or not 3 <= int(self.config["max_atoms"]) <= DEFAULTS["max_atoms"]:
            raise ValueError(f"a general model reads elements among {DEFAULTS['elements']} and 3–"
                             f"{DEFAULTS['max_atoms']} atoms; the config asks for elements {self.config['elements']} "
                             f"and max_atoms {self.config['max_atoms']}")
        gain = self.config["iteration_gain"]
        if isinstance(gain, bool) or not isinstance(gain, (int, float)) or not 0 <= gain < 1:
            raise ValueError(f"iteration_gain must be a fraction in [0, 1) (the least relative gain per calibrated "
                             f"iteration run by default), got {gain!r}")
        self.net = net if net is not None else GeneralNet(self.config["width"], self.config["layers"],
                                                          self.config["heads"])
        self.net.eval()
        self._readers: dict = {}
        self._atoms: dict = {}
        self._seen_keys: set | None = None

    def clear_cache(self) -> None:
        """Forget the molecules and readers built so far (each holds its reference ensemble's statistics)."""
        self._readers.clear()
        self._atoms.clear()

    def __repr__(self) -> str:
        c = self.config
        return (f"GeneralInterpreter({c['probe']}, {c['signal']}, q {c['q_min']}–{c['q_max']} Å⁻¹, "
                f"T {c['temperature']} K, ≤ {c['max_atoms']} atoms of "
                f"{_symbols(c['elements'])}, {len(c.get('molecules', []))} training molecules)")

    @property
    def grid(self) -> np.ndarray:
        """The model's q grid, Å⁻¹."""
        c = self.config
        return np.linspace(c["q_min"], c["q_max"], int(c["n_q"]))

    # -- inputs ------------------------------------------------------------------------------------------------

    def atoms_of(self, molecule):
        """The molecule as ase.Atoms, checked against the model's elements and size."""
        import ase

        if isinstance(molecule, ase.Atoms):
            atoms = molecule.copy()
        elif isinstance(molecule, str):
            if molecule not in self._atoms:
                if len(self._atoms) >= 256:
                    self._atoms.pop(next(iter(self._atoms)))
                self._atoms[molecule] = structures.molecule(molecule)
            atoms = self._atoms[molecule].copy()
        else:
            raise TypeError(f"molecule must be a SMILES string, a name, a file or an ase.Atoms, got "
                            f"{type(molecule).__name__}")
        bad = sorted(set(int(z) for z in atoms.numbers) - set(self.config["elements"]))
        if bad:
            raise ValueError(f"the model has never seen element(s) {_symbols(bad)}: "
                             f"it reads molecules of {_symbols(self.config['elements'])}")
        if len(atoms) > self.config["max_atoms"]:
            raise ValueError(f"the molecule has {len(atoms)} atoms (with hydrogens); the model supports at most "
                             f"{self.config['max_atoms']}")
        if len(atoms) < 3:
            raise ValueError(f"the molecule has {len(atoms)} atoms; the model needs at least 3")
        return atoms

    def resample(self, I, q):
        """Patterns (B, Q_user) on ``q`` -> (B, Q) patterns on the model's grid points inside ``q``'s range
        (linear interpolation), and those points."""
        c = self.config
        q = np.asarray(q, dtype=np.float64).ravel()
        I = np.asarray(I, dtype=np.float64)
        if I.ndim not in (1, 2) or I.size == 0:
            raise ValueError(f"patterns must be (Q,) or (B, Q) with B ≥ 1, got shape {I.shape}")
        I = np.atleast_2d(I)
        if I.shape[-1] != len(q):
            raise ValueError(f"the pattern has {I.shape[-1]} points but q has {len(q)}")
        if len(q) < 2 or np.any(np.diff(q) <= 0) or not np.all(np.isfinite(q)):
            raise ValueError("q must be at least 2 increasing, finite values (Å⁻¹)")
        if not np.all(np.isfinite(I)):
            raise ValueError("the pattern holds NaN or inf")
        if np.any(np.all(I == 0, axis=1)):
            raise ValueError("a pattern is all zeros")
        tol = 1e-6
        if q[0] < c["q_min"] - tol or q[-1] > c["q_max"] + tol:
            raise ValueError(f"the pattern's q range {q[0]:.3g}–{q[-1]:.3g} Å⁻¹ is outside the model's range "
                             f"{c['q_min']:g}–{c['q_max']:g} Å⁻¹: crop it to that range")
        g = self.grid
        inside = (g >= q[0] - tol) & (g <= q[-1] + tol)
        if inside.sum() < 20:
            raise ValueError(f"the pattern covers only {int(inside.sum())} of the model's {len(g)} q points "
                             f"({c['q_min']:g}–{c['q_max']:g} Å⁻¹); it needs at least 20")
        gq = g[inside]
        if len(q) == len(gq) and np.array_equal(q, gq):   # already on the model's grid
            return I, gq
        j = np.clip(np.searchsorted(q, gq, side="right") - 1, 0, len(q) - 2)   # linear, all patterns at once
        t = np.clip((gq - q[j]) / (q[j + 1] - q[j]), 0.0, 1.0)
        return I[:, j] * (1.0 - t) + I[:, j + 1] * t, gq

    def reader(self, molecule, q=None, noise: float | None = None, temperature: float | None = None,
               ensemble: str = "wigner", signal: str = "molecular") -> Reader:
        """The molecule's linear reader on the model's grid points ``q`` (cached per molecule, grid, noise,
        temperature and ensemble: ``"wigner"``, harmonic, or ``"md"``, Langevin MD at the temperature)."""
        if ensemble not in ("wigner", "md"):
            raise ValueError(f"ensemble must be 'wigner' or 'md', got {ensemble!r}")
        atoms = self.atoms_of(molecule)
        temperature = float(self.config["temperature"] if temperature is None else temperature)
        if not (np.isfinite(temperature) and 0 <= temperature <= 5000):
            raise ValueError(f"temperature must be 0–5000 K, got {temperature!r}")
        q = self.grid if q is None else np.asarray(q, np.float64)
        noise = float(self.config["noise"] if noise is None else noise)
        if not (np.isfinite(noise) and noise > 0):
            raise ValueError(f"noise must be a relative level > 0 (0.005 = 0.5 %), got {noise!r}")
        if ensemble == "md" and temperature <= 0:
            raise ValueError("the md ensemble needs a temperature > 0 K")
        self._check_signal(signal)
        key = (atoms.numbers.tobytes(), np.round(atoms.positions, 6).tobytes(), q.tobytes(), noise, temperature,
               ensemble, signal)
        hit = self._readers.get(key)
        if hit is None:
            if len(self._readers) >= 32:
                self._readers.pop(next(iter(self._readers)))
            hit = self._readers[key] = _make_reader(atoms, q, {**self.config, "temperature": temperature,
                                                                       "ensemble": ensemble, "noise_of": signal},
                                                        noise)
        return hit

    @staticmethod
    def _check_signal(signal):
        if signal not in SIGNALS:
            raise ValueError(f"a general model reads {' or '.join(SIGNALS)} patterns, not {signal!r}")

    def _to_molecular(self, I, reader, signal):
        """I_mol from patterns of ``signal`` (the total minus Σ f_i²)."""
        return I if signal == "molecular" else I - reader.beta.numpy()

    def _check_scale(self, I, reader):
        """I_mol patterns against the size of the molecule's own I_mol: a pattern of the other probe (X-ray I_mol
        is 5–8× the electron one, in their units), of another molecule or on another scale would otherwise give a
        confident wrong structure."""
        ratio = float(np.median(np.linalg.norm(I, axis=-1))) / float(np.linalg.norm(reader.mu.numpy()))
        if not 0.4 < ratio < 2.5:
            raise ValueError(f"the patterns' I_mol is {ratio:.2g}x what this molecule scatters "
                             f"({self.config['probe']}, on the absolute scale of xstructure.simulate): a pattern of "
                             "the other probe, of another molecule, or on another scale?")

    # -- prediction ----------------------------------------------------------------------------------------------

    def predict(self, patterns, molecule, q, *, signal: str | None = None, noise: float | None = None,
                temperature: float | None = None, ensemble: str = "wigner", iterations: int | None = None,
                search: int = 0, refine_steps: int = 0, chunk: int = 256, return_reader: bool = False):
        """Structures from patterns of one molecule.

        Parameters
        ----------
        patterns : array_like
            (Q,) or (B, Q) patterns on ``q``, absolute scale (as :func:`xstructure.simulate` gives).
        molecule : str or ase.Atoms
            SMILES, a name, a structure file or an ase.Atoms (its connectivity defines the molecule; its
            geometry is minimised with MMFF94).
        q : array_like
            (Q,) Å⁻¹, increasing, inside the model's range (:attr:`grid`).
        signal : {'molecular', 'total'} or None, optional
            What the patterns are (default: the model's, ``"molecular"``).
        noise : float or None, optional
            Relative noise per q point of the patterns, relative to the signal given (I_mol or the total I)
            (default: the model's, 0.005).
        temperature : float or None, optional
            K, of the thermal distribution the reader assumes (default: the model's, 300 K); for a hot sample,
            its temperature.
        ensemble : {'wigner', 'md'}, optional
            The reader's thermal ensemble: harmonic Wigner (default; seconds per new molecule), or Langevin MD at
            ``temperature`` (anharmonic, for hot samples: ``config["md_reference"]`` frames, 20,000, in trajectories of
            10 ps; about 2.5 minutes per new molecule on 2 cores).
        iterations : int or None, optional
            Calibrated Gauss–Newton iterations after the network (see :meth:`Reader.iterate`); each is one
            Gauss–Newton step plus a linear map fitted, per molecule, on its reference ensemble, on first use (a
            few seconds per new molecule). Kept are those up to the smallest error on the molecule's validation
            draws (at most ``config["iterations"]``, 8). None (default): those of them that each lowered that
            error by at least ``config["iteration_gain"]`` (1 %) of itself (the reader's
            ``default_iterations``; each iteration costs about half as much as the network); 0: the network's output
            alone, the fastest; n: at most n of those kept (``config["iterations"]`` for the most accurate).
        search : int, optional
            For large-amplitude (hot) samples, a global fit: a fresh sample of the reader's ensemble (4,000
            structures, :data:`SEARCH_STARTS`) is ranked by χ² against each pattern; the 4 × ``search`` nearest and
            the prediction get 8 Levenberg–Marquardt steps (:func:`.refine.fit_lm`: bonded and 1–3 distances
            restrained, torsions free), the ``search`` best of those 22 more, and the lowest objective wins. Once per
            molecule the search is checked on 32 of the reader's reference draws (noisy patterns, true structures
            known, independent of the starts): its fits replace the predictions only if their median heavy-atom
            error there is lower (the numbers are the reader's ``search_check``). 0 (default): no search. About
            30–90 s per 100 patterns with ``search=32`` on 2 cores, plus the check and the starts once per molecule.
        refine_steps : int, optional
            Then refine through :func:`xstructure.ops.debye` with bond restraints (:func:`.refine.refine`).
        chunk : int, optional
            Patterns per batch.
        return_reader : bool, optional
            Also return the molecule's :class:`Reader`.

        Returns
        -------
        numpy.ndarray
            (N, 3) or (B, N, 3) positions, Å, in the frame of the molecule's MMFF94 minimum (atoms in the order of
            :meth:`atoms_of`).

        Raises
        ------
        ValueError
            A grid outside the model's range, an element or size the model has never seen, bad shapes or values,
            or patterns whose I_mol is not 0.4–2.5× the size of the molecule's own (a pattern of the other probe,
            of another molecule, or on another scale).
        """
        torch = _torch()
        signal = signal or self.config["signal"]
        self._check_signal(signal)
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
        if isinstance(refine_steps, bool) or not isinstance(refine_steps, (int, np.integer)) or refine_steps < 0:
            raise ValueError(f"refine_steps must be an integer >= 0, got {refine_steps!r}")
        if isinstance(search, bool) or not isinstance(search, (int, np.integer)) or not 0 <= search <= 1024:
            raise ValueError(f"search must be an integer 0–1024 (starts per pattern), got {search!r}")
        if iterations is not None and (isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer))
                                       or iterations < 0):
            raise ValueError(f"iterations must be None or an integer >= 0, got {iterations!r}")
        single = np.ndim(patterns) == 1
        I, gq = self.resample(patterns, q)
        reader = self.reader(molecule, gq, noise, temperature, ensemble, signal)
        I = self._to_molecular(I, reader, signal)
        self._check_scale(I, reader)
        if iterations != 0 and reader.stages is None:
            with torch.no_grad():
                z_start = reader.modes_of(self._network(reader, reader.ref_I.to(torch.float64), chunk))
            _calibrate(reader, z_start, self.config["calibration_ridge"], self.config["iterations"],
                       self.config["step_cap"], self.config["iteration_gain"])
        if iterations is None:   # calibrated just above if it was not
            iterations = reader.default_iterations
        out = self._predict(reader, I, iterations, chunk)
        if search:
            check = reader.search_check
            if check is None or (check["starts"], check["iterations"]) != (int(search), iterations):
                self._check_search(reader, int(search), iterations, chunk)
            if reader.search_check["used"]:
                out = _search(reader, I, out, int(search))
        if refine_steps:
            from .refine import refine

            sigma = robust_sigma(torch.as_tensor(I) + reader.beta, reader.noise).numpy()
            out = refine(out, I, sigma, reader.numbers, reader.q, probe=self.config["probe"], signal="molecular",
                         bonds=reader.bonds, bond_mean=reader.bond_mean, bond_std=reader.bond_std,
                         steps=int(refine_steps))
        res = out[0] if single else out
        return (res, reader) if return_reader else res

    def _predict(self, reader, I, iterations, chunk):
        """The network and the calibrated iterations: structures (B, N, 3) for I_mol patterns (B, Q)."""
        torch = _torch()
        out = np.empty((len(I), len(reader.atoms), 3))
        with torch.no_grad():
            for s in range(0, len(I), chunk):
                Ic = torch.as_tensor(I[s:s + chunk], dtype=torch.float64)
                w = reader.weights(Ic)   # once for the network's features and the iterations
                x = self._network(reader, Ic, chunk, w)
                if iterations != 0 and reader.stages:
                    z = reader.iterate(Ic, reader.modes_of(x), iterations, w)
                    x = reader.x0[None] + (z @ reader.L.T).reshape(x.shape)
                out[s:s + chunk] = x.numpy()
        return out

    def _check_search(self, reader, starts, iterations, chunk):
        """Whether the search beats the prediction on the reader's held-back draws (noisy patterns, as its
        reference ensemble's): sets ``reader.search_check``."""
        torch = _torch()
        from .. import ops
        from ..align import rmsd

        X = reader.draws[-SEARCH_CHECK:]   # independent of the search's starts
        I = ops.debye(reader.numbers, torch.as_tensor(X), reader.q, probe=reader._probe,
                      signal="molecular").to(torch.float64)
        gen = torch.Generator().manual_seed(8191 + len(reader.atoms))
        I = _add_noise(I, reader.noise, reader.beta, gen).numpy()
        P = self._predict(reader, I, iterations, chunk)
        S = _search(reader, I, P, starts)
        h = reader.numbers > 1

        def err(Y):
            return float(np.median(rmsd(np.ascontiguousarray(Y[:, h]), np.ascontiguousarray(X[:, h]))))

        e_p, e_s = err(P), err(S)
        reader.search_check = dict(starts=starts, iterations=iterations, draws=len(X), prediction_rmsd=e_p,
                                   search_rmsd=e_s, used=bool(e_s < e_p))

    def _network(self, reader, I, chunk, w=None):
        """The network's structures (B, N, 3) for I_mol patterns (B, Q) on the reader's grid (``w``: their weights,
        if the caller has them)."""
        torch = _torch()
        out = []
        for s in range(0, len(I), chunk):
            f, v1, v2 = reader.features(I[s:s + chunk], None if w is None else w[s:s + chunk])
            out.append(combine(self.net(f.float()).double(), v1, v2, reader.x0[None]))
        return torch.cat(out)

    def seen(self, molecule) -> bool:
        """Whether the molecule, given as SMILES, was among the training molecules (by the InChIKey's connectivity
        block: a stereoisomer of a training molecule counts as seen; an enantiomer has the same isotropic
        pattern)."""
        if not isinstance(molecule, str):
            raise ValueError(f"give the molecule as SMILES to look it up, got {type(molecule).__name__}")
        if self._seen_keys is None:
            self._seen_keys = {m["inchikey"][:14] for m in self.config.get("molecules", [])}
        return connectivity_key(molecule) in self._seen_keys

    # -- files -----------------------------------------------------------------------------------------------------

    def save(self, path) -> None:
        """Write ``config.json`` and ``model.safetensors`` (float16 weights) to the directory ``path``."""
        from safetensors.torch import save_file

        os.makedirs(path, exist_ok=True)
        state = {k: v.detach().to("cpu").half().contiguous() for k, v in self.net.state_dict().items()}
        save_file(state, os.path.join(path, "model.safetensors"), metadata={"format": "xstructure-general"})
        with open(os.path.join(path, "config.json"), "w") as fh:
            json.dump(self.config, fh, indent=1)

    @classmethod
    def load(cls, path) -> "GeneralInterpreter":
        """Read a model written by :meth:`save` (safetensors + JSON; nothing is unpickled)."""
        torch = _torch()
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        cfg_path, w_path = os.path.join(path, "config.json"), os.path.join(path, "model.safetensors")
        for p in (cfg_path, w_path):
            if not os.path.isfile(p):
                raise FileNotFoundError(f"not a general model directory: {p} is missing")
        try:
            with open(cfg_path) as fh:
                config = json.load(fh)
            state = load_file(w_path)
        except (ValueError, SafetensorError) as exc:
            raise ValueError(f"{path}: unreadable model files ({exc})") from None
        model = cls(config)
        try:
            model.net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
        except RuntimeError as exc:
            raise ValueError(f"{path}: the weights do not fit the config ({str(exc).splitlines()[0]})") from None
        model.net.eval()
        return model


def pretrained(name: str = "general-xray") -> GeneralInterpreter:
    """A model shipped with the package.

    Parameters
    ----------
    name : str, optional
        One of :data:`PRETRAINED`: ``"general-xray"`` (X-ray patterns, electrons²) or ``"general-electron"``
        (electron patterns, Å², as :func:`xstructure.simulate` gives them with ``probe="electron"``).

    Returns
    -------
    GeneralInterpreter
        The model; ``model.config["molecules"]`` lists its training molecules (InChIKey + SMILES) and
        ``model.config["split"]`` its validation and test molecules.
    """
    from importlib import resources

    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained model {name!r}: use one of {PRETRAINED}")
    root = resources.files("xstructure") / "data" / "models" / name
    if not (root / "model.safetensors").is_file():
        raise ValueError(f"the pretrained model {name!r} is not installed in this build of xstructure")
    with resources.as_file(root) as path:
        return GeneralInterpreter.load(path)


# ------------------------------------------------------------------------------------------------------------
# Identification
# ------------------------------------------------------------------------------------------------------------


def identify(pattern, candidates, q, *, model: GeneralInterpreter | None = None, signal: str | None = None,
             noise: float | None = None, temperature: float | None = None) -> list[tuple[str, float]]:
    """Rank candidate molecules for one measured pattern, allowing for thermal motion.

    Each candidate's reader holds the mean pattern and the pattern covariance of its thermal (Wigner) ensemble at
    the given noise level; a candidate is scored by the Gaussian log-likelihood per q point of the measurement
    under that distribution (higher is better).  A χ² to the equilibrium structure's pattern alone ignores the
    Debye–Waller damping and the thermal spread, and mistakes isomers more often (see the benchmarks).

    Parameters
    ----------
    pattern : array_like
        (Q,) pattern on ``q``, absolute scale.
    candidates : sequence of str or ase.Atoms
        SMILES, names or Atoms (e.g. every isomer of a formula).
    q : array_like
        (Q,) Å⁻¹.
    model : GeneralInterpreter or None, optional
        Default: ``pretrained("general-xray")``.
    signal, noise, temperature : optional
        As for :meth:`GeneralInterpreter.predict`.

    Returns
    -------
    list of (str, float)
        (candidate label, log-likelihood per q point), best first; the label is the candidate's string, or
        ``"#k formula"`` for the k-th candidate given as ase.Atoms.
    """
    model = pretrained() if model is None else model
    signal = signal or model.config["signal"]
    model._check_signal(signal)
    if isinstance(candidates, (str, bytes)):
        raise ValueError("candidates must be a sequence of SMILES, names or ase.Atoms, not one string")
    candidates = list(candidates)
    if not candidates:
        raise ValueError("candidates must be a non-empty sequence of SMILES, names or ase.Atoms")
    if np.ndim(pattern) != 1:
        raise ValueError(f"identify takes one pattern (Q,), got shape {np.shape(pattern)}")
    I, gq = model.resample(pattern, q)
    scores = []
    for k, cand in enumerate(candidates):
        reader = model.reader(cand, gq, noise, temperature, signal=signal)
        Im = model._to_molecular(I, reader, signal)
        label = cand if isinstance(cand, str) else f"#{k} {cand.get_chemical_formula()}"
        scores.append((label, float(reader.log_likelihood(Im)[0])))
    return sorted(scores, key=lambda s: -s[1])
