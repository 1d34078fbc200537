"""Refinement of predicted structures through the differentiable Debye op (or the differentiable images of
aligned ensembles), with bond-length restraints."""

from __future__ import annotations

import numpy as np

from .detector import image_forward

__all__ = ["distance_restraints", "fit_lm", "refine"]


def refine(positions, I_obs, sigma, numbers, q, *, probe: str, signal: str, bonds, bond_mean, bond_std,
           steps: int = 40, lr: float = 0.003, chunk: int = 2048, image: dict | None = None) -> np.ndarray:
    """Maximum a posteriori refinement of a batch of structures against their observed patterns.

    Minimises ½ Σ_q ((I(r) − I_obs) / σ)² + ½ Σ_bonds ((``|r_i − r_j|`` − μ_b) / s_b)² per structure with Adam: a
    Gaussian likelihood of the pattern (the noise model's σ) and a Gaussian prior on each bond length (mean and
    spread of that bond over the training pool).

    Parameters
    ----------
    positions : array_like
        (B, N, 3) starting structures, Å.
    I_obs : array_like
        (B, Q) observed (noisy) patterns.
    sigma : array_like
        (B, Q) their standard deviations, same unit.
    numbers : array_like
        (N,) atomic numbers.
    q : array_like
        (Q,) momentum transfer, Å⁻¹.
    probe, signal : str
        As the patterns were simulated.
    bonds : array_like
        (K, 2) bonded atom pairs.
    bond_mean, bond_std : array_like
        (K,) mean and spread of each bond length, Å.
    steps : int, optional
        Adam iterations.
    lr : float, optional
        Adam's step size, Å.
    chunk : int, optional
        Structures refined together.
    image : dict or None, optional
        For detector images (``I_obs``, ``sigma``: (B, n_chi · Q)), their description (``PoolData.image``); the
        forward model is then :func:`xstructure.learn.detector.images_torch`.

    Returns
    -------
    numpy.ndarray
        (B, N, 3) refined structures, Å.
    """
    import torch  # optional dependency (torch)

    from .. import ops  # torch is optional: loaded when a model or op is used

    if image is None:
        def forward(x):
            return ops.debye(numbers, x, q, probe=probe, signal=signal)
    else:
        images = image_forward(image, numbers, q)

        def forward(x):
            return images(x).flatten(1)
        chunk = min(chunk, 32)  # (chunk, pairs, Q) intermediates stay in cache
    pos0 = np.asarray(positions, dtype=np.float64)
    out = np.empty_like(pos0)
    bi = torch.as_tensor(np.asarray(bonds, dtype=np.int64).reshape(-1, 2))
    mu = torch.as_tensor(np.asarray(bond_mean, dtype=np.float64))
    sd = torch.as_tensor(np.asarray(bond_std, dtype=np.float64))
    for s in range(0, len(pos0), chunk):
        x = torch.tensor(pos0[s:s + chunk], requires_grad=True)
        Io = torch.as_tensor(np.asarray(I_obs[s:s + chunk], dtype=np.float64))
        w = torch.as_tensor(1.0 / np.asarray(sigma[s:s + chunk], dtype=np.float64))
        opt = torch.optim.Adam([x], lr=lr)
        for _ in range(int(steps)):
            opt.zero_grad()
            I = forward(x)
            chi = 0.5 * (((I - Io) * w) ** 2).sum(1)
            d = (x[:, bi[:, 0]] - x[:, bi[:, 1]]).norm(dim=-1)
            prior = 0.5 * (((d - mu) / sd) ** 2).sum(1)
            (chi + prior).sum().backward()
            opt.step()
        out[s:s + chunk] = x.detach().numpy()
    return out


def distance_restraints(numbers, x0, samples, angles: bool = True):
    """Bonded (1–2) and, with ``angles``, angle (1–3) atom pairs of a molecule's bond graph at ``x0``, with the mean
    and spread of their distances over ``samples``: the restraints of :func:`fit_lm` (and the bonds alone, those of
    :func:`refine`). Torsions (1–4 distances) are left free: they are what a fit of a hot sample has to find.

    Parameters
    ----------
    numbers : array_like
        (N,) atomic numbers.
    x0 : array_like
        (N, 3) the structure whose bond graph is used, Å.
    samples : array_like
        (B, N, 3) structures of the molecule's ensemble, Å.
    angles : bool, optional
        Also the 1–3 pairs (default); False: the bonds only.

    Returns
    -------
    pairs : numpy.ndarray
        (K, 2) atom pairs.
    mean, std : numpy.ndarray
        (K,) Å (the spread floored at 1 mÅ).
    """
    from ..structures import bond_graph

    adj = bond_graph(numbers, x0).astype(np.int64)
    near = (adj > 0) | ((adj @ adj) > 0) if angles else adj > 0
    np.fill_diagonal(near, False)
    pairs = np.argwhere(np.triu(near))
    samples = np.asarray(samples, dtype=np.float64)
    d = np.linalg.norm(samples[:, pairs[:, 0]] - samples[:, pairs[:, 1]], axis=-1)
    return pairs, d.mean(0), np.maximum(d.std(0), 1e-3)


def fit_lm(positions, I_obs, sigma, numbers, q, *, probe: str, signal: str, pairs, pair_mean, pair_std,
           steps: int = 30, chunk: int = 256):
    """Levenberg–Marquardt fit of structures to their patterns with distance restraints, in Cartesian coordinates.

    Minimises ½ Σ_q ((I(r) − I_obs) / σ)² + ½ Σ_pairs ((``|r_i − r_j|`` − μ) / s)² per structure. Each step solves
    (JᵀJ + λ diag(JᵀJ)) δ = −Jᵀr with the Debye Jacobian (:func:`xstructure.ops.debye_jacobian`) and the restraints'
    own; a step that lowers the objective is taken and λ shrinks 3×, otherwise λ grows 4× (per structure).
    Unlike :func:`refine` (small Adam steps), it converges to the local minimum of the start's basin in a few tens
    of steps, which a multi-start search needs.

    Parameters
    ----------
    positions : array_like
        (B, N, 3) starting structures, Å.
    I_obs, sigma : array_like
        (B, Q) observed patterns and their standard deviations.
    numbers : array_like
        (N,) atomic numbers.
    q : array_like
        (Q,) Å⁻¹.
    probe, signal : str
        As the patterns were simulated.
    pairs, pair_mean, pair_std : array_like
        Restraints (:func:`distance_restraints`).
    steps : int, optional
        Levenberg–Marquardt iterations.
    chunk : int, optional
        Structures fitted together (memory: chunk · Q · 3N doubles).

    Returns
    -------
    positions : numpy.ndarray
        (B, N, 3) fitted structures, Å.
    objective : numpy.ndarray
        (B,) the objective at the fit.
    chi2 : numpy.ndarray
        (B,) its χ² per q point, Σ_q ((I − I_obs)/σ)² / Q.
    """
    import torch  # optional dependency (torch)

    from .. import ops

    X = np.asarray(positions, dtype=np.float64)
    B, N = X.shape[:2]
    Q = np.shape(I_obs)[-1]
    pi = torch.as_tensor(np.asarray(pairs, dtype=np.int64)[:, 0])
    pj = torch.as_tensor(np.asarray(pairs, dtype=np.int64)[:, 1])
    mu = torch.as_tensor(np.asarray(pair_mean, dtype=np.float64))
    sd = torch.as_tensor(np.asarray(pair_std, dtype=np.float64))
    K = len(pi)
    out, obj, chi = np.empty_like(X), np.empty(B), np.empty(B)
    for s in range(0, B, chunk):
        x = torch.tensor(X[s:s + chunk])
        b = len(x)
        Io = torch.as_tensor(np.asarray(I_obs[s:s + chunk], dtype=np.float64))
        ws = 1.0 / torch.as_tensor(np.asarray(sigma[s:s + chunk], dtype=np.float64))

        def residuals(x):
            I = ops.debye(numbers, x, q, probe=probe, signal=signal).to(torch.float64)
            d = (x[:, pi] - x[:, pj]).norm(dim=-1)
            return torch.cat([(I - Io) * ws, (d - mu) / sd], 1)

        r = residuals(x)
        f = 0.5 * (r ** 2).sum(1)
        lam = torch.full((b,), 1e-2, dtype=torch.float64)
        rows = torch.arange(K)
        for _ in range(int(steps)):
            J = ops.debye_jacobian(numbers, x, q, probe=probe, signal=signal)[1].reshape(b, Q, 3 * N)
            J = J.to(torch.float64) * ws[..., None]
            dv = x[:, pi] - x[:, pj]
            u = dv / dv.norm(dim=-1, keepdim=True).clamp_min(1e-9) / sd[None, :, None]
            Jr = torch.zeros(b, K, N, 3, dtype=torch.float64)
            Jr[:, rows, pi] += u
            Jr[:, rows, pj] -= u
            Jt = torch.cat([J, Jr.reshape(b, K, 3 * N)], 1)
            H = Jt.transpose(1, 2) @ Jt
            g = (Jt.transpose(1, 2) @ r[..., None])[..., 0]
            diag = torch.diagonal(H, dim1=1, dim2=2)
            damp = lam[:, None] * (diag + 1e-6 * diag.mean(1, keepdim=True))
            step = torch.linalg.solve(H + torch.diag_embed(damp), -g[..., None])[..., 0].reshape(b, N, 3)
            xn = x + step
            rn = residuals(xn)
            fn = 0.5 * (rn ** 2).sum(1)
            ok = fn < f
            x = torch.where(ok[:, None, None], xn, x)
            r = torch.where(ok[:, None], rn, r)
            f = torch.where(ok, fn, f)
            lam = torch.where(ok, lam / 3, lam * 4).clamp(1e-7, 1e7)
        out[s:s + b] = x.numpy()
        obj[s:s + b] = f.numpy()
        chi[s:s + b] = (r[:, :Q] ** 2).mean(1).numpy()
    return out, obj, chi
