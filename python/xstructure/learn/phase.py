"""Learning the phase problem: metrics and losses that forgive what diffraction cannot see.

Densities live on periodic grids over the unit cell in the fractional frame, normalised to a mean of 1
(ρ̃ = ρ V / F(000), with F(000) = Σ Z): a crystal's ρ̃ does not depend on its size or composition's scale.

**What diffraction cannot see.**  |F(hkl)|² and the powder pattern are unchanged when the density is shifted
by any vector (the origin) or inverted through a point (Friedel's law, for real densities), so every loss and
metric here first aligns the prediction to the target by the best circular shift, with or without inversion:
for a shift s, ‖P − T(· + s)‖² = ‖P‖² + ‖T‖² − 2 (P ⋆ T)(s), and the cross-correlation ⋆ for every s at once
is one FFT product (the inverted target's transform is the conjugate).  The MLP of Scripps & Cumby (2021),
trained with a plain MSE, was punished for origins the data cannot fix; :func:`aligned_mse` is the loss that
does not.

**Physics.**  F(h) = F(000) · (1/n³) Σ_x ρ̃(x) e^{+2πi h·x} (the crystallographic sign convention of
``xstructure.crystal``), so ``box_amplitudes`` is an inverse FFT of the grid, read on the box h, k, l ∈ [−H, H],
and it is differentiable (torch.fft): the physics-consistency loss and the R-factor use it.  For a true density
it reproduces ``crystal.structure_factors(..., factors="Z", b_factors=8π²σ²)`` (tested).

**Methods** (see :data:`MODELS`):

* ``mlp``: the MLP regressor of Scripps & Cumby (2021; one hidden layer of 100 ReLU units, scikit-learn's
  default, which they used), |F|² box → grid; trained with :func:`aligned_mse` (``mlp_mse``: the same with the
  plain MSE);
* ``unet``: their 3D U-Net (small), the |F|² box resampled onto the output grid as its input image;
* ``coord``: the idea of Guo et al. (2024), a variational coordinate network: powder pattern + composition →
  latent z
  (reparameterised Gaussian, KL to N(0, 1)), then ρ̃(x) = MLP(periodic Fourier features of x, z);
* ``flip``: no learning: charge flipping (Oszlányi & Sütő, Acta Cryst. A60, 134 (2004)) on the observed
  amplitudes, best of a few random starts by R-factor.  From a powder pattern, the amplitudes are first
  extracted by a Pawley fit (the cell and peak shape taken as known, as after indexing; :func:`powder_amplitudes`).
  ``flip_powder`` is that route.
* ``+atoms``: the flipped map's peaks as the cell's atoms, refined against the amplitudes (or a powder
  pattern's groups of overlapped reflections), repeated from new starts until R < 0.02 (:func:`solve_atoms`).
"""

from __future__ import annotations

import math

import numpy as np

from ..crystal import density_grid
from ..crystal.phasing import (  # noqa: F401
    box_amplitudes,
    cell_atoms,
    cell_contents,
    charge_flip,
    density_peaks,
    normalised_density,
    powder_amplitudes,
    powder_groups,
    r_factor,
    refine_atoms,
    solve_atoms,
)

__all__ = ["normalised_density", "box_features", "box_amplitudes", "aligned_mse", "align", "ssim", "ssim_best",
           "atom_recovery", "r_factor", "rank_candidates", "charge_flip", "powder_amplitudes", "powder_groups",
           "cell_contents", "refine_atoms", "solve_atoms", "CUBE_ROTATIONS", "MODELS"]

MODELS = ("mlp", "mlp_mse", "unet", "coord")   # the crystal models of :mod:`xstructure.learn.crystal_models`


def box_features(I: np.ndarray) -> np.ndarray:
    """Network input from ``|F|²`` boxes: the square root of the normalised amplitude, ``sqrt(|F| / F(000))``.

    Parameters
    ----------
    I : numpy.ndarray
        (B, L, L, L) ``|F(hkl)|²`` boxes, L = 2H + 1 (F(000) at the centre).

    Returns
    -------
    numpy.ndarray
        (B, L, L, L) float32 features in [0, 1].

    Raises
    ------
    ValueError
        A box that is not (2H+1)³, or NaN or inf.
    """
    I = np.asarray(I, dtype=np.float64)
    L = I.shape[-1]
    if I.ndim != 4 or I.shape[1:] != (L, L, L) or L % 2 == 0:
        raise ValueError(f"|F|² boxes must have shape (B, L, L, L) with L = 2H + 1, got {I.shape}")
    if not np.all(np.isfinite(I)) or np.any(I < 0):
        raise ValueError("|F|² box contains NaN, inf or negative values")
    c = L // 2
    F000 = np.sqrt(I[:, c, c, c]).reshape(-1, 1, 1, 1)
    return np.sqrt(np.sqrt(I) / np.where(F000 > 0, F000, 1.0)).astype(np.float32)


def _cross_correlation(P, T):
    """(B, n, n, n) circular cross-correlations (P ⋆ T)(s) = Σ_x P(x + s) T(x), without and with T inverted."""
    import torch  # optional dependency (torch)

    Pf = torch.fft.rfftn(P, dim=(-3, -2, -1))
    Tf = torch.fft.rfftn(T, dim=(-3, -2, -1))
    s = P.shape[-3:]
    return (torch.fft.irfftn(Pf * Tf.conj(), s=s, dim=(-3, -2, -1)),
            torch.fft.irfftn(Pf * Tf, s=s, dim=(-3, -2, -1)))   # T(−x): its transform is conj(Tf)


def aligned_mse(pred, target, inversion: bool = True):
    """Mean squared difference after the best circular shift (and inversion): the loss that forgives the origin.

    Shifting a density by any vector, or inverting it, leaves ``|F|`` and the powder pattern unchanged; one FFT
    product gives the cross-correlation at every shift, so ‖P − T(· + s)‖² = ‖P‖² + ‖T‖² − 2 (P ⋆ T)(s) is
    minimised over all s at once.

    Parameters
    ----------
    pred, target : torch.Tensor
        (B, n, n, n) densities on the fractional grid.
    inversion : bool, optional
        Also forgive inversion through a point.

    Returns
    -------
    torch.Tensor
        0-d mean over the batch, in density units squared; differentiable in ``pred`` (the gradient of the best
        alignment).
    """
    import torch  # optional dependency (torch)

    cc, cci = _cross_correlation(pred, target)
    best = cc.flatten(1).max(dim=1).values
    if inversion:
        best = torch.maximum(best, cci.flatten(1).max(dim=1).values)
    n3 = pred[0].numel()
    return ((pred.square().flatten(1).sum(1) + target.square().flatten(1).sum(1) - 2 * best) / n3).mean()


def align(pred: np.ndarray, target: np.ndarray, inversion: bool = True, subvoxel: bool = True) -> np.ndarray:
    """A density shifted (and inverted, if that fits better) onto a target.

    First the best whole-voxel circular shift, then (``subvoxel``) the best continuous shift near it, applied as
    a Fourier phase ramp: the origin of a crystal is continuous, and a grid only holds whole-voxel shifts.

    Parameters
    ----------
    pred, target : numpy.ndarray
        (n, n, n) densities on the same fractional grid.
    inversion : bool, optional
        Also try the inverted density.
    subvoxel : bool, optional
        Refine the shift below one voxel (Newton's method on the cross-correlation's Fourier series).

    Returns
    -------
    numpy.ndarray
        (n, n, n) float64 aligned copy of ``pred``.
    """
    import torch  # optional dependency (torch)

    P = torch.as_tensor(np.ascontiguousarray(pred, dtype=np.float64))[None]
    T = torch.as_tensor(np.ascontiguousarray(target, dtype=np.float64))[None]
    cc, cci = (x[0].numpy() for x in _cross_correlation(P, T))
    out = np.asarray(pred, dtype=np.float64)
    use_inv = inversion and cci.max() > cc.max()
    c = cci if use_inv else cc
    s = np.unravel_index(int(np.argmax(c)), c.shape)
    # cc[s] = Σ_x P(x + s) T(x): shift P back by s.  For the inverted target, Σ_x P(x + s) T(−x): P(s − x)
    if use_inv:
        out = np.roll(out[::-1, ::-1, ::-1], 1, axis=(0, 1, 2))      # P(−x)
        s = tuple(-v for v in s)
    out = np.roll(out, tuple(-v for v in s), axis=(0, 1, 2))
    return _subvoxel_shift(out, np.asarray(target, dtype=np.float64)) if subvoxel else out


def _subvoxel_shift(p: np.ndarray, t: np.ndarray, steps: int = 6) -> np.ndarray:
    """p(x + u) for the continuous u, |u_i| ≤ 1 voxel, that maximises Σ_x p(x + u) t(x): Newton's method on the
    Fourier series of the cross-correlation, C(u) = Re Σ_h P(h) T*(h) e^{2πi h·u / n}, from u = 0."""
    shape = p.shape
    P = np.fft.fftn(p)
    X = P * np.conj(np.fft.fftn(t))
    k = np.stack(np.meshgrid(*(2 * np.pi * np.fft.fftfreq(m) for m in shape), indexing="ij")).reshape(3, -1)
    X = X.reshape(-1)
    u = np.zeros(3)
    for _ in range(steps):
        e = X * np.exp(1j * (u @ k))
        grad = -(k * e.imag).sum(1)
        hess = -(k[:, None, :] * k[None, :, :] * e.real).sum(-1)
        if np.any(np.linalg.eigvalsh(hess) >= 0):   # not at a maximum's basin: keep the whole-voxel shift
            break
        step = -np.linalg.solve(hess, grad)
        u = np.clip(u + step, -1.0, 1.0)
        if np.abs(step).max() < 1e-4:
            break
    return np.fft.ifftn(P * np.exp(1j * (u @ k)).reshape(shape)).real


def _rotations():
    """The 24 proper rotations of the cube as (axes permutation, flips) acting on a grid."""
    import itertools  # loaded on use: keeps `import xstructure` fast

    out = []
    for perm in itertools.permutations(range(3)):
        sign = np.linalg.det(np.eye(3)[list(perm)])
        for flips in itertools.product((False, True), repeat=3):
            if sign * (-1) ** sum(flips) > 0:
                out.append((perm, flips))
    return out


CUBE_ROTATIONS = _rotations()


def _rotate(g: np.ndarray, rot) -> np.ndarray:
    perm, flips = rot
    g = np.transpose(g, perm)
    axes = tuple(a for a, f in enumerate(flips) if f)
    return np.roll(np.flip(g, axes), 1, axis=axes) if axes else g   # x -> −x on the periodic grid


def ssim(pred: np.ndarray, target: np.ndarray, aligned: bool = True) -> float:
    """3D structural similarity (SSIM) of a density to a target, as Guo et al. (2024) compute it.

    skimage's ``structural_similarity`` with ``data_range`` taken from the target, after aligning ``pred`` to
    the target by shift and inversion (unless ``aligned=False``).

    Parameters
    ----------
    pred, target : numpy.ndarray
        (n, n, n) densities on the same grid.
    aligned : bool, optional
        Align ``pred`` first (see :func:`align`).

    Returns
    -------
    float
        SSIM, at most 1.
    """
    from skimage.metrics import (
        structural_similarity,  # optional dependency (scikit-image)
    )

    p = align(pred, target) if aligned else np.asarray(pred, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    return float(structural_similarity(t, p, data_range=float(t.max() - t.min())))


def rank_candidates(samples, target: np.ndarray, top: int | None = 3, rotations: bool = True) -> list:
    """The samples under the 24 cube rotations, best first by aligned correlation with a target.

    Parameters
    ----------
    samples : sequence of numpy.ndarray
        (n, n, n) densities, on the target's grid.
    target : numpy.ndarray
        (n, n, n) density.
    top : int or None, optional
        Keep the first sample unrotated and the ``top`` best other candidates (None: every candidate, unranked).
    rotations : bool, optional
        Include the rotations (else the samples as they are).

    Returns
    -------
    list of numpy.ndarray
        The candidates, (n, n, n) each.
    """
    import torch  # optional dependency (torch)

    cands = [_rotate(np.asarray(s, dtype=np.float64), r) for s in samples
             for r in (CUBE_ROTATIONS if rotations else CUBE_ROTATIONS[:1])]
    if top is None or top >= len(cands):
        return cands
    P = torch.as_tensor(np.stack(cands))
    T = torch.as_tensor(np.asarray(target, dtype=np.float64))[None].expand_as(P)
    cc, cci = _cross_correlation(P, T)
    score = torch.maximum(cc.flatten(1).max(1).values, cci.flatten(1).max(1).values)
    score = score / P.flatten(1).norm(dim=1).clamp_min(1e-30)
    keep = torch.argsort(score, descending=True)[:top].tolist()
    return [cands[i] for i in ([0] + [i for i in keep if i != 0])]


def ssim_best(samples, target: np.ndarray, rotations: bool = True, top: int | None = 3) -> float:
    """The best-of protocol of Guo et al. (2024): the best SSIM over samples × the 24 cube rotations.

    Each candidate is aligned by shift and inversion. SSIM is computed only for the first sample unrotated and
    the ``top`` candidates of highest aligned correlation with the target (None: every candidate).

    Parameters
    ----------
    samples : sequence of numpy.ndarray
        (n, n, n) densities (e.g. draws of a variational model).
    target : numpy.ndarray
        (n, n, n) true density.
    rotations : bool, optional
        Try the 24 rotations of the cube.
    top : int or None, optional
        Candidates scored by SSIM besides the first.

    Returns
    -------
    float
        The best SSIM.
    """
    cands = rank_candidates(samples, target, top, rotations)
    return max(ssim(c, target) for c in cands)


def atom_recovery(pred: np.ndarray, cell, frac, numbers, sigma: float, tol: float = 0.5, target=None) -> float:
    """Fraction of the crystal's atoms found in a predicted density.

    ``pred`` is aligned to the true density (shift and inversion); its highest local maxima, as many as the cell
    has atoms, are the candidate atoms, each assigned the element of the composition whose Gaussian peak height
    Z (2πσ²)^(−3/2) V / F(000) is nearest to its own. An atom is recovered when an unused peak of its element lies
    within ``tol`` Å (minimum image); atoms are matched in order of distance.

    Parameters
    ----------
    pred : numpy.ndarray
        (n, n, n) normalised density, fractional frame.
    cell : array_like
        (3, 3) cell vectors as rows, Å.
    frac : array_like
        (N, 3) true fractional coordinates.
    numbers : array_like
        (N,) atomic numbers.
    sigma : float
        Width of the Gaussian atoms, Å.
    tol : float, optional
        Largest distance of a recovered atom from its peak, Å.
    target : numpy.ndarray or None, optional
        The true normalised density on pred's grid, when already computed.

    Returns
    -------
    float
        Fraction recovered, 0–1.
    """

    n = pred.shape[0]
    cell = np.asarray(cell, dtype=np.float64)
    numbers = np.asarray(numbers)
    if target is None:
        target = normalised_density(density_grid(cell_atoms(cell, frac, numbers), (n, n, n), sigma))
    p = align(pred, target)
    idx, h = density_peaks(p)
    if len(idx) == 0:
        return 0.0
    top = np.argsort(h)[::-1][:len(numbers)]   # as many candidate atoms as the cell holds
    idx, h = idx[top], h[top]
    V = abs(np.linalg.det(cell))
    els = np.unique(numbers)
    height = els * (2 * math.pi * sigma ** 2) ** -1.5 * V / numbers.sum()
    peak_el = els[np.argmin(np.abs(h[:, None] - height[None, :]), axis=1)]
    d = frac[:, None, :] - idx[None, :, :] / n
    d -= np.round(d)
    dist = np.linalg.norm(d @ cell, axis=-1)                                   # (atoms, peaks)
    ok = (dist <= tol) & (numbers[:, None] == peak_el[None, :])
    pairs = sorted(zip(*np.nonzero(ok)), key=lambda ij: dist[ij])
    used_a, used_p = set(), set()
    for i, j in pairs:
        if i not in used_a and j not in used_p:
            used_a.add(i)
            used_p.add(j)
    return len(used_a) / len(numbers)
