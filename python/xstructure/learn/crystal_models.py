"""Networks for the crystal phase problem (torch): |F|² box or powder pattern → density grid.

* ``mlp``: the MLP regressor of Scripps & Cumby (2021, AI3SD report, doi:10.5258/SOTON/AI3SD0149) (one hidden
  layer of 100 ReLU units), |F|² box → grid; ``mlp_mse`` is the same trained with a plain MSE instead of the aligned loss;
* ``unet``: a small 3D U-Net (as proposed by Scripps & Cumby 2021) with circular padding for the periodic cell, the |F|² box resampled onto the
  output grid as its input image;
* ``coord``: a variational coordinate network after Guo et al. (2024, npj Comput. Mater. 10, 209,
  doi:10.1038/s41524-024-01401-8): powder pattern + composition → latent z (reparameterised
  Gaussian, KL to N(0, 1)), then ρ̃(x) = MLP(periodic Fourier features of x, z).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .phase import MODELS

__all__ = ["SeedMLP", "UNet3D", "CoordNet", "MODELS", "build_model"]



class SeedMLP(nn.Module):
    """The MLP regressor of Scripps & Cumby (2021): ``|F|²`` box features → one hidden layer of ReLU units → density.

    Parameters
    ----------
    L : int
        Side of the input box, 2H + 1.
    n : int
        Output grid n³.
    hidden : int, optional
        Hidden units (100: scikit-learn's default, which Scripps & Cumby used).
    **_
        Ignored (other models' options).
    """

    def __init__(self, L: int, n: int, hidden: int = 100, **_):
        super().__init__()
        self.L, self.n = int(L), int(n)
        self.net = nn.Sequential(nn.Linear(L ** 3, hidden), nn.ReLU(), nn.Linear(hidden, n ** 3))

    def forward(self, box, powder=None, comp=None):
        """Densities from box features.

        Parameters
        ----------
        box : torch.Tensor
            (B, L, L, L) features (:func:`~xstructure.learn.phase.box_features`).
        powder, comp : torch.Tensor or None, optional
            Ignored (the common signature of the crystal models).

        Returns
        -------
        torch.Tensor
            (B, n, n, n) densities.
        """
        return nn.functional.softplus(self.net(box.flatten(1))).view(-1, self.n, self.n, self.n)

class _Block(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.f = nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1, padding_mode="circular"), nn.GELU(),
                               nn.Conv3d(cout, cout, 3, padding=1, padding_mode="circular"), nn.GELU())

    def forward(self, x):
        return self.f(x)

class UNet3D(nn.Module):
    """A small 3D U-Net after Scripps & Cumby (2021), with circular padding for the periodic cell.

    Channels c, 2c, 4c with two poolings; the input is the ``|F|²`` box features resampled onto the n³ output
    grid.

    Parameters
    ----------
    L : int
        Side of the input box, 2H + 1.
    n : int
        Output grid n³ (divisible by 4).
    channels : int, optional
        Channels c of the first level.
    **_
        Ignored (other models' options).
    """

    def __init__(self, L: int, n: int, channels: int = 8, **_):
        super().__init__()
        self.L, self.n = int(L), int(n)
        c = channels
        self.e1, self.e2, self.e3 = _Block(1, c), _Block(c, 2 * c), _Block(2 * c, 4 * c)
        self.d2, self.d1 = _Block(6 * c, 2 * c), _Block(3 * c, c)
        self.out = nn.Conv3d(c, 1, 1)

    def forward(self, box, powder=None, comp=None):
        """Densities from box features: (B, L, L, L) → (B, n, n, n), as :meth:`SeedMLP.forward`."""
        x = nn.functional.interpolate(box[:, None], size=(self.n,) * 3, mode="trilinear", align_corners=True)
        e1 = self.e1(x)
        e2 = self.e2(nn.functional.max_pool3d(e1, 2))
        e3 = self.e3(nn.functional.max_pool3d(e2, 2))
        up = lambda t, ref: nn.functional.interpolate(t, size=ref.shape[-3:], mode="nearest")  # noqa: E731
        d2 = self.d2(torch.cat([up(e3, e2), e2], 1))
        d1 = self.d1(torch.cat([up(d2, e1), e1], 1))
        return nn.functional.softplus(self.out(d1))[:, 0]

class CoordNet(nn.Module):
    """A variational coordinate network after Guo et al. (2024).

    Encoder: powder pattern (1D CNN) + composition → latent z ~ N(μ, σ²) (reparameterised); decoder:
    ρ̃(x) = MLP([sin, cos](2π k·x) for integer k with ``|k_i| ≤ K``, z) at every point of the n³ grid.

    Parameters
    ----------
    n_powder : int
        Points of the powder patterns.
    n : int
        Output grid n³.
    latent : int, optional
        Latent dimension.
    width : int, optional
        Width of the coordinate MLP.
    K : int, optional
        Largest Fourier frequency of the coordinate features.
    **_
        Ignored (other models' options).
    """

    def __init__(self, n_powder: int, n: int, latent: int = 64, width: int = 128, K: int = 3, **_):
        super().__init__()
        self.n, self.n_powder, self.latent = int(n), int(n_powder), int(latent)
        self.cnn = nn.Sequential(nn.Conv1d(1, 16, 9, padding=4), nn.GELU(), nn.MaxPool1d(4),
                                 nn.Conv1d(16, 32, 7, padding=3), nn.GELU(), nn.MaxPool1d(4),
                                 nn.Conv1d(32, 64, 5, padding=2), nn.GELU(), nn.AdaptiveAvgPool1d(16))
        self.comp = nn.Linear(119, 64)
        self.enc = nn.Sequential(nn.Linear(64 * 16 + 64, 256), nn.GELU(), nn.Linear(256, 2 * latent))
        ks = np.stack(np.meshgrid(*(np.arange(-K, K + 1),) * 3, indexing="ij"), -1).reshape(-1, 3)
        half = [k for k in ks.tolist() if tuple(k) > (0, 0, 0)]        # one of each ±k pair
        self.register_buffer("k", torch.tensor(half, dtype=torch.float32))
        g = (torch.arange(self.n, dtype=torch.float32) / self.n)
        pts = torch.stack(torch.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
        ang = 2 * math.pi * pts @ self.k.T
        self.register_buffer("feat", torch.cat([ang.sin(), ang.cos()], 1))   # (n³, 2·|half|)
        self.pos = nn.Linear(self.feat.shape[1], width)
        self.film = nn.Linear(latent, 2 * width)
        self.dec = nn.Sequential(nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 1))
        self.kl = torch.zeros(())

    def forward(self, box=None, powder=None, comp=None, sample: bool | None = None):
        """Densities from powder patterns and compositions.

        Parameters
        ----------
        box : torch.Tensor or None, optional
            Ignored (the common signature of the crystal models).
        powder : torch.Tensor
            (B, n_powder) powder patterns.
        comp : torch.Tensor
            (B, 119) compositions.
        sample : bool or None, optional
            Draw z (True) or take z = μ (False); None: draw in training mode only.

        Returns
        -------
        torch.Tensor
            (B, n, n, n) densities (with the KL term kept on the module for the loss).
        """
        h = self.cnn(powder[:, None]).flatten(1)
        mu, logvar = self.enc(torch.cat([h, self.comp(comp)], 1)).chunk(2, dim=1)
        logvar = logvar.clamp(-10, 5)
        sample = self.training if sample is None else sample
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        self.kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1).mean()
        scale, shift = self.film(z).chunk(2, dim=1)                         # (B, width) each
        p = self.pos(self.feat)                                              # (n³, width)
        x = p[None] * (1 + scale[:, None]) + shift[:, None]
        return nn.functional.softplus(self.dec(x)[..., 0]).view(-1, self.n, self.n, self.n)


_CLASSES = {"mlp": SeedMLP, "mlp_mse": SeedMLP, "unet": UNet3D, "coord": CoordNet}


def build_model(kind: str, L: int, n: int, n_powder: int, **kw) -> nn.Module:
    """A crystal model of :data:`MODELS` by name.

    Parameters
    ----------
    kind : {'mlp', 'mlp_mse', 'unet', 'coord'}
        The network.
    L : int
        Side of the ``|F|²`` boxes, 2H + 1.
    n : int
        Output grid n³.
    n_powder : int
        Points of the powder patterns.
    **kw
        The model's options.

    Returns
    -------
    torch.nn.Module
        The untrained network.

    Raises
    ------
    ValueError
        An unknown kind.
    """
    if kind not in _CLASSES:
        raise ValueError(f"unknown crystal model {kind!r}: use one of {', '.join(MODELS)}")
    if kind == "coord":
        return _CLASSES[kind](n_powder, n, **kw)
    return _CLASSES[kind](L, n, **kw)
