"""Training losses: aligned RMSD (mirror images allowed), pair distances, and consistency with the pattern."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["aligned_rmsd", "pair_distance_loss", "pattern_loss"]


def aligned_rmsd(pred: Tensor, target: Tensor, weights=None) -> Tensor:
    """Mean over the batch of the RMSD after the best proper or improper superposition.

    Isotropic scattering cannot tell a structure from its mirror image, so neither may the loss; it is invariant
    to rotating, translating and reflecting ``pred``. Runs through the analytic-gradient
    :func:`xstructure.ops.kabsch_rmsd`.

    Parameters
    ----------
    pred, target : torch.Tensor
        (B, N, 3) predicted and true positions, Å.
    weights : array_like or None, optional
        (N,) atom weights.

    Returns
    -------
    torch.Tensor
        0-d mean RMSD in Å, differentiable in ``pred`` (and ``target``).
    """
    from .. import ops  # torch is optional: loaded when a model or op is used

    return ops.kabsch_rmsd(pred, target, weights=weights, reflection=True).mean()


def pair_distance_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared difference of all interatomic distances: frame-free and mirror-blind.

    Parameters
    ----------
    pred, target : torch.Tensor
        (B, N, 3) predicted and true positions, Å.

    Returns
    -------
    torch.Tensor
        0-d mean over the batch and the N (N − 1) / 2 pairs, Å².
    """
    dp = torch.cdist(pred, pred)
    dt = torch.cdist(target, target)
    N = pred.shape[1]
    iu = torch.triu_indices(N, N, 1, device=pred.device)
    return (dp[:, iu[0], iu[1]] - dt[:, iu[0], iu[1]]).pow(2).mean()


def pattern_loss(pred: Tensor, numbers, q, x_obs: Tensor, mean: Tensor, std: Tensor, *, probe: str,
                 signal: str) -> Tensor:
    """Physics consistency: the predicted structures' patterns against the input patterns.

    Simulates ``pred`` with :func:`xstructure.ops.debye`, standardises it as the inputs were, and takes the mean
    squared difference to the standardised input ``x_obs``.

    Parameters
    ----------
    pred : torch.Tensor
        (B, N, 3) predicted positions, Å.
    numbers : array_like
        (N,) atomic numbers.
    q : array_like
        (Q,) momentum transfer, Å⁻¹.
    x_obs : torch.Tensor
        (B, Q) standardised input patterns.
    mean, std : torch.Tensor
        (Q,) the standardisation (see :class:`~xstructure.learn.data.Standardizer`), in the patterns' unit.
    probe : {'xray', 'electron'}
        As the patterns were simulated.
    signal : {'total', 'atomic', 'molecular', 'sM'}
        As the patterns were simulated.

    Returns
    -------
    torch.Tensor
        0-d mean squared difference of standardised values (dimensionless).
    """
    from .. import ops  # torch is optional: loaded when a model or op is used

    I = ops.debye(numbers, pred.to(torch.float64), q, probe=probe, signal=signal)
    x = (I - mean) / std
    return (x.to(x_obs.dtype) - x_obs).pow(2).mean()
