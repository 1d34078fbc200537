"""Refinement of predicted structures through the differentiable Debye op (or the differentiable images of
aligned ensembles), with bond-length restraints."""

from __future__ import annotations

import numpy as np

from .detector import image_forward

__all__ = ["refine"]


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
