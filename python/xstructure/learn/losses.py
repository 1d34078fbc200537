"""Training losses: aligned RMSD (mirror images allowed), pair distances, and consistency with the pattern."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["aligned_rmsd", "pair_distance_loss", "pattern_loss"]


def aligned_rmsd(pred: Tensor, target: Tensor, weights=None) -> Tensor:
    """Mean over the batch of the RMSD after the best proper or improper superposition (Å).

    Isotropic scattering cannot tell a structure from its mirror image, so neither may the loss; it is
    invariant to rotating, translating and reflecting ``pred``.  Runs through the analytic-gradient
    :func:`xstructure.ops.kabsch_rmsd`.
    """
    from .. import ops  # torch is optional: loaded when a model or op is used

    return ops.kabsch_rmsd(pred, target, weights=weights, reflection=True).mean()


def pair_distance_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared difference of all interatomic distances (Å²): frame-free, mirror-blind."""
    dp = torch.cdist(pred, pred)
    dt = torch.cdist(target, target)
    N = pred.shape[1]
    iu = torch.triu_indices(N, N, 1, device=pred.device)
    return (dp[:, iu[0], iu[1]] - dt[:, iu[0], iu[1]]).pow(2).mean()


def pattern_loss(pred: Tensor, numbers, q, x_obs: Tensor, mean: Tensor, std: Tensor, *, probe: str,
                 signal: str) -> Tensor:
    """Physics consistency: simulate ``pred`` with :func:`xstructure.ops.debye`, standardise it as the inputs
    were, and take the mean squared difference to the (standardised) input pattern ``x_obs``."""
    from .. import ops  # torch is optional: loaded when a model or op is used

    I = ops.debye(numbers, pred.to(torch.float64), q, probe=probe, signal=signal)
    x = (I - mean) / std
    return (x.to(x_obs.dtype) - x_obs).pow(2).mean()
