"""Inversion by learning: from a scattering pattern (and the molecule) to its 3D structure.

The data's path: :mod:`.data` (a pool's patterns and aligned geometries, split by sample; standardisation;
noise) → :mod:`.models` (the Transformer interpreter, the original design's CNN+GRU) trained by :mod:`.train` with the
losses of :mod:`.losses` → :mod:`.evaluate` against the baselines of :mod:`.baselines`, with
:mod:`.refine` through the differentiable Debye op.  Needs torch.

General model (any molecule of H, C, N, O, F, S, Cl up to 30 atoms, shipped with the package): :mod:`.library`
(the molecule library and its scaffold split) → :mod:`.general` (:func:`pretrained`, :func:`identify`).

Crystals (the phase problem): :mod:`.crystals` (sets of random crystals with |F|² boxes and powder patterns)
→ :mod:`.phase` (invariant loss, physics, metrics, charge flipping, models) → :mod:`.phase_train`.
"""

from .data import Noise, PoolData, Standardizer, load_pool
from .evaluate import evaluate, format_table, scores
from .general import GeneralInterpreter, identify, pretrained
from .phase_train import PhaseConfig, PhaseModel, evaluate_phase, train_phase
from .train import InversionModel, TrainConfig, train

__all__ = ["Noise", "PoolData", "Standardizer", "load_pool", "TrainConfig", "train", "InversionModel", "evaluate",
           "format_table", "scores", "GeneralInterpreter", "pretrained", "identify", "PhaseConfig", "PhaseModel", "train_phase", "evaluate_phase"]
