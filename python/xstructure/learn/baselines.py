"""The baselines every model must beat, on the same noisy inputs: the mean structure, pool fitting, ridge."""

from __future__ import annotations

import numpy as np

from .data import Standardizer

__all__ = ["MeanStructure", "PoolFit", "Ridge"]


class MeanStructure:
    """The mean-structure baseline: the training pool's mean aligned geometry, whatever the pattern.

    Parameters
    ----------
    train_targets : numpy.ndarray
        (n, N, 3) aligned training geometries, Å.
    """

    def __init__(self, train_targets: np.ndarray):
        self.mean = np.asarray(train_targets, dtype=np.float64).mean(axis=0)

    def predict(self, I_obs: np.ndarray) -> np.ndarray:
        """The mean structure for each pattern.

        Parameters
        ----------
        I_obs : numpy.ndarray
            (B, …) observed patterns (only their number is used).

        Returns
        -------
        numpy.ndarray
            (B, N, 3) positions, Å.
        """
        return np.broadcast_to(self.mean, (len(I_obs), *self.mean.shape)).copy()


class PoolFit:
    """The classical structure-pool method: the training member whose clean pattern fits the observed one best.

    The fit is χ² = Σ_q ((I_obs − I_k) / σ_q)², σ from the noise model of I_obs.

    Parameters
    ----------
    train_patterns : numpy.ndarray
        (n, Q) clean training patterns.
    train_targets : numpy.ndarray
        (n, N, 3) their aligned geometries, Å.
    noise : Noise
        The noise model of the observed patterns.
    """

    def __init__(self, train_patterns: np.ndarray, train_targets: np.ndarray, noise):
        self.I = np.asarray(train_patterns, dtype=np.float64)
        self.X = np.asarray(train_targets, dtype=np.float64)
        self.noise = noise
        self._I2T = (self.I ** 2).T                                   # (Q, K), used by every chunk

    def predict(self, I_obs: np.ndarray, chunk: int = 256) -> np.ndarray:
        """The best-fitting training member of each observed pattern.

        Parameters
        ----------
        I_obs : numpy.ndarray
            (B, Q) observed patterns.
        chunk : int, optional
            Patterns compared at once.

        Returns
        -------
        numpy.ndarray
            (B, N, 3) positions, Å.
        """
        I_obs = np.asarray(I_obs, dtype=np.float64)
        w = 1.0 / self.noise.sigma(I_obs) ** 2                       # (M, Q)
        out = np.empty((len(I_obs), *self.X.shape[1:]))
        for s in range(0, len(I_obs), chunk):
            o, ww = I_obs[s:s + chunk], w[s:s + chunk]
            # χ²_mk = Σ w (o − I)² = Σ w o² − 2 Σ w o I + Σ w I²  (all (m, k) by matrix products)
            chi = -2.0 * (ww * o) @ self.I.T + ww @ self._I2T
            out[s:s + chunk] = self.X[np.argmin(chi, axis=1)]
        return out


class Ridge:
    """Ridge regression from the standardised (noisy) pattern to the flattened aligned coordinates.

    The penalty is chosen on the validation split from a log grid.

    Parameters
    ----------
    standardizer : Standardizer
        The pattern standardisation.
    x_train : numpy.ndarray
        (n, Q) standardised training patterns (noisy), as ``standardizer`` makes them.
    y_train : numpy.ndarray
        (n, N, 3) their aligned geometries, Å.
    x_val, y_val : numpy.ndarray or None, optional
        Standardised validation patterns and their geometries, for choosing the penalty.
    alphas : array_like, optional
        Candidate penalties.
    """

    def __init__(self, standardizer, x_train: np.ndarray, y_train: np.ndarray, x_val=None, y_val=None,
                 alphas=tuple(10.0 ** np.arange(-3, 5))):
        self.st = standardizer
        X = np.asarray(x_train, dtype=np.float64)
        Y = np.asarray(y_train, dtype=np.float64).reshape(len(X), -1)
        self.shape = np.asarray(y_train).shape[1:]
        self.xm, self.ym = X.mean(0), Y.mean(0)
        Xc, Yc = X - self.xm, Y - self.ym
        G, XtY = Xc.T @ Xc, Xc.T @ Yc
        candidates = alphas if x_val is not None else (alphas[len(alphas) // 2],)
        best = None
        for a in candidates:
            W = np.linalg.solve(G + a * len(X) * np.eye(G.shape[0]), XtY)
            err = 0.0 if x_val is None else np.mean(
                ((np.asarray(x_val, np.float64) - self.xm) @ W + self.ym -
                 np.asarray(y_val, np.float64).reshape(len(x_val), -1)) ** 2)
            if best is None or err < best[0]:
                best = (err, a, W)
        _, self.alpha, self.W = best

    @classmethod
    def on_noisy(cls, data, noise, rng_train, rng_val) -> "Ridge":
        """Fitted on one noisy draw of a :class:`PoolData`'s training patterns (``noise``), the penalty chosen
        on a noisy draw of its validation patterns (when there are any)."""
        st = Standardizer.fit(data.patterns["train"])
        xt = st(noise.apply(data.patterns["train"], rng_train))
        if not len(data.patterns["val"]):
            return cls(st, xt, data.targets["train"])
        xv = st(noise.apply(data.patterns["val"], rng_val))
        return cls(st, xt, data.targets["train"], xv, data.targets["val"])

    def predict(self, I_obs: np.ndarray) -> np.ndarray:
        """Linear prediction of the structures of observed patterns.

        Parameters
        ----------
        I_obs : numpy.ndarray
            (B, Q) observed (raw) patterns.

        Returns
        -------
        numpy.ndarray
            (B, N, 3) positions, Å.
        """
        x = self.st(I_obs).astype(np.float64)
        return ((x - self.xm) @ self.W + self.ym).reshape(len(x), *self.shape)
