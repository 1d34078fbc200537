"""Input checks shared by several modules, written once: each raises a ValueError that names the argument
and what was expected."""

from __future__ import annotations

import numpy as np

from ._backend import to_numpy

__all__ = ["check_q", "unit_vector", "Q_MAX"]

Q_MAX = 4 * np.pi * 6.0   # Å⁻¹: the Waasmaier–Kirfel fits end at sinθ/λ = 6 Å⁻¹


def check_q(q) -> np.ndarray:
    """q (any shape) as float64, finite, ≥ 0 and within the form-factor tables (q ≤ 75.4 Å⁻¹)."""
    q = np.asarray(q, dtype=np.float64)
    if not np.all(np.isfinite(q)):
        raise ValueError("q contains NaN or inf")
    if np.any(q < 0):
        raise ValueError(f"q must be >= 0 (Å⁻¹), got min {q.min():g}")
    if np.any(q > Q_MAX * (1 + 1e-12)):
        raise ValueError(
            f"q = {q.max():g} Å⁻¹ is beyond the Waasmaier–Kirfel tables' range (q ≤ {Q_MAX:.2f} Å⁻¹, sinθ/λ ≤ 6)")
    return q



def unit_vector(name: str, v) -> np.ndarray:
    """v as a unit 3-vector (float64), or a ValueError naming ``name``."""
    try:
        a = np.asarray(to_numpy(v), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 3-vector, got {v!r}") from None
    if a.shape != (3,):
        raise ValueError(f"{name} must be a 3-vector, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite, got {a.tolist()}")
    n = float(np.linalg.norm(a))
    if n == 0.0:
        raise ValueError(f"{name} must not be the zero vector")
    return a / n
