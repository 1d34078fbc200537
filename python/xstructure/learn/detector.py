"""2D detector images for inversion: aligned ensembles on a (χ, q) grid ("cakes").

An isotropic ensemble's detector image is a function of |q| alone, so its radial average loses nothing and
the 1D models see all there is.  An aligned ensemble (laser-aligned molecules, or a pump-photoselected
excited state) is not: its image I(q) = I_0(q) + P_2(q̂·ê) I_2(q) + P_4(q̂·ê) I_4(q) (see
:mod:`xstructure.detector.patterns`) has an azimuthal dependence whose radial parts I_2, I_4 weigh every atom pair by
the orientation of its bond vector to the molecule's aligned axis d̂, which the isotropic pattern cannot
tell.  That is the job of a 2D CNN (:class:`~xstructure.learn.models.DetectorCNN`).

The network reads the image on a polar grid: ``n_chi`` azimuth bins covering the full circle (centres
χ_m = −π + (m + ½) 2π / n_chi, the detector's convention χ = atan2(y, x)) by the pool's q points, with the
polarisation and solid-angle factors divided out: pyFAI's "cake" (``integrate2d``).

* :func:`aligned_cakes`: the exact image of an aligned ensemble on that grid.  Each χ bin holds the average
  over its azimuths (the Legendre factors averaged over 32 sub-angles; the image is linear in them), as a
  binned measurement does.
* :func:`cake`: bins a measured detector frame onto the same grid (each pixel to the nearest q point and its χ
  bin, mean of the corrected pixel values), for :meth:`~xstructure.learn.train.InversionModel.predict`.
* :func:`detector_data`: turns a pool's :class:`~xstructure.learn.data.PoolData` into one whose patterns
  are flattened cakes of its geometries, for :func:`~xstructure.learn.train.train` and
  :func:`~xstructure.learn.evaluate.evaluate`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from .._validate import unit_vector
from ..detector.patterns import anisotropic_components, legendre_p
from ..factors import form_factor_table

__all__ = ["chi_centres", "aligned_cakes", "cake", "detector_data", "with_images", "images_of", "images_torch",
           "image_forward", "long_axis"]

_SUB = 32  # azimuths averaged per χ bin


def chi_centres(n_chi: int) -> np.ndarray:
    """Centres of equal azimuth bins over the full circle, starting at −π.

    Parameters
    ----------
    n_chi : int
        Number of bins.

    Returns
    -------
    numpy.ndarray
        (n_chi,) bin centres χ in rad.
    """
    n = int(n_chi)
    if n < 1:
        raise ValueError(f"n_chi must be >= 1, got {n_chi!r}")
    return -np.pi + (np.arange(n) + 0.5) * (2 * np.pi / n)


def _wavenumber(energy_kev: float) -> float:
    e = float(energy_kev)
    if not (math.isfinite(e) and e > 0):
        raise ValueError(f"energy_kev must be a number > 0, got {energy_kev!r}")
    return 2 * np.pi * e / 12.398419843320026  # k = 2π/λ, λ (Å) = hc / E


def _legendre_factors(q, n_chi, energy_kev, axis):
    """Bin-averaged P_2(q̂·ê) and P_4(q̂·ê), each (n_chi, Q), for scattering at |q| and azimuth χ."""
    e = unit_vector("axis", axis)
    k = _wavenumber(energy_kev)
    q = np.asarray(q, dtype=np.float64)
    if np.any(q >= 2 * k):
        raise ValueError(f"q up to {q.max():g} Å⁻¹ is out of reach at {energy_kev:g} keV (2k = {2 * k:.3g} Å⁻¹)")
    tth = 2 * np.arcsin(q / (2 * k))                                            # (Q,)
    w = 2 * np.pi / n_chi
    chi = chi_centres(n_chi)[:, None] + ((np.arange(_SUB) + 0.5) / _SUB - 0.5) * w   # (n_chi, SUB)
    s = np.stack([np.sin(tth)[None, None] * np.cos(chi)[..., None], np.sin(tth)[None, None] * np.sin(chi)[..., None],
                  np.broadcast_to(np.cos(tth) - 1.0, chi.shape + q.shape)], -1)   # k(ŝ − ẑ)/k
    c = (s @ e) / np.linalg.norm(s, axis=-1)
    return legendre_p(2, c).mean(1), legendre_p(4, c).mean(1)


def aligned_cakes(numbers, positions, q, n_chi: int = 8, *, energy_kev: float, dipole, axis=(1.0, 0.0, 0.0),
                  p2: float = 0.4, p4: float = 0.0, probe: str = "xray") -> np.ndarray:
    """Images of aligned ensembles of structures on the (χ, q) grid, the corrections divided out.

    Parameters
    ----------
    numbers : array_like
        (N,) atomic numbers.
    positions : array_like
        (B, N, 3) or (N, 3) positions in Å, in the frame where ``dipole`` is given.
    q : array_like
        (Q,) momentum transfer, Å⁻¹.
    n_chi : int, optional
        Azimuth bins (see :func:`chi_centres`).
    energy_kev : float
        Photon energy in keV (sets the Ewald-sphere angle between q and the detector plane).
    dipole : array_like
        (3,) molecule-frame axis d̂.
    axis : array_like, optional
        (3,) lab-frame alignment axis ê.
    p2, p4 : float, optional
        ⟨P_2⟩ and ⟨P_4⟩ of the alignment (0.4 and 0: cos² photoselection).
    probe : {'xray', 'electron'}, optional
        X-rays (electrons²) or electrons (Å²).

    Returns
    -------
    numpy.ndarray
        (B, n_chi, Q) or (n_chi, Q) images, each χ bin averaged over its azimuths, in electrons² (X-rays) or Å²
        (electrons).
    """
    pos = np.asarray(positions, dtype=np.float64)
    single = pos.ndim == 2
    I0, I2, I4 = anisotropic_components((numbers, pos[None] if single else pos), q, dipole=dipole, p2=p2, p4=p4,
                                        probe=probe)
    f2, f4 = _legendre_factors(q, int(n_chi), energy_kev, axis)
    out = I0[:, None, :] + f2[None] * I2[:, None, :] + f4[None] * I4[:, None, :]
    return out[0] if single else out


def cake(frames, geometry, q, n_chi: int = 8, *, mask=None, polarization: float | None = 0.99,
         solid_angle: bool = True) -> np.ndarray:
    """Bin detector frames onto the (χ, q) grid of a detector model.

    Each pixel goes to the nearest of the (uniformly spaced) q points if it lies within half a step of it, and
    to its azimuth bin; a bin holds the mean of its pixels' values divided by the polarisation factor and the
    relative solid angle. Masked, non-finite and negative pixels are left out.

    Parameters
    ----------
    frames : array_like
        (n1, n2) or (B, n1, n2) frames of the geometry's shape.
    geometry : Geometry
        The detector.
    q : array_like
        (Q,) uniform grid of the model, Å⁻¹.
    n_chi : int, optional
        Azimuth bins.
    mask : array_like or None, optional
        (n1, n2) bool, True for pixels to leave out.
    polarization : float or None, optional
        pyFAI's polarisation factor to divide out, or None for none.
    solid_angle : bool, optional
        Divide out the relative solid angle.

    Returns
    -------
    numpy.ndarray
        (n_chi, Q) or (B, n_chi, Q) images, in the frames' unit per unit of the corrections.

    Raises
    ------
    ValueError
        Frames not of the geometry's shape, a non-uniform q grid, or a (χ, q) bin with no pixel (the detector
        does not cover the grid: use fewer χ bins or a smaller q range).
    """
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 1 or len(q) < 2 or not np.allclose(np.diff(q), q[1] - q[0], rtol=1e-6, atol=0):
        raise ValueError("cake needs a uniformly spaced q grid of at least 2 points")
    img = np.asarray(frames, dtype=np.float64)
    single = img.ndim == 2
    img = img[None] if single else img
    if img.shape[1:] != tuple(geometry.shape):
        raise ValueError(f"frames of shape {img.shape[1:]} do not match the detector's {tuple(geometry.shape)}")
    dq = q[1] - q[0]
    iq = np.rint((geometry.q - q[0]) / dq).astype(np.int64)
    ic = np.floor((geometry.chi + np.pi) / (2 * np.pi / n_chi)).astype(np.int64) % int(n_chi)
    ok = (iq >= 0) & (iq < len(q))
    if mask is not None:
        ok &= ~np.asarray(mask, dtype=bool)
    corr = np.ones(geometry.shape)
    if polarization is not None:
        corr = corr * geometry.polarization(polarization)
    if solid_angle:
        corr = corr * geometry.solid_angle
    flat = (ic * len(q) + np.clip(iq, 0, len(q) - 1)).ravel()
    out = np.empty((len(img), int(n_chi) * len(q)))
    for b, frame in enumerate(img):
        good = (ok & np.isfinite(frame) & (frame >= 0)).ravel()
        cnt = np.bincount(flat[good], minlength=out.shape[1])
        if np.any(cnt == 0):
            raise ValueError(f"{int(np.sum(cnt == 0))} of the {out.shape[1]} (χ, q) bins hold no valid pixel: the "
                             "detector does not cover the model's grid (fewer χ bins or a smaller q range)")
        out[b] = np.bincount(flat[good], (frame / corr).ravel()[good], minlength=out.shape[1]) / cnt
    out = out.reshape(len(img), int(n_chi), len(q))
    return out[0] if single else out


def long_axis(numbers, reference) -> np.ndarray:
    """The molecule's long axis: the principal axis of largest spread of its heavy atoms.

    The default aligned axis d̂: the most polarisable axis of an elongated molecule, which a non-resonant laser
    aligns.

    Parameters
    ----------
    numbers : array_like
        (N,) atomic numbers.
    reference : array_like
        (N, 3) positions, Å.

    Returns
    -------
    numpy.ndarray
        (3,) unit vector.
    """
    Z = np.asarray(numbers)
    p = np.asarray(reference, dtype=np.float64)[Z > 1] if np.sum(Z > 1) >= 2 else np.asarray(reference)
    p = p - p.mean(0)
    w, v = np.linalg.eigh(p.T @ p)
    return v[:, -1]


def detector_data(data, n_chi: int = 8, *, energy_kev: float = 20.0, dipole=None, axis=(1.0, 0.0, 0.0),
                  p2: float = 0.4, p4: float = 0.0, progress: bool = False):
    """A copy of a pool's data whose patterns are detector images of aligned ensembles of its geometries.

    The images are the flattened (n_chi × Q) :func:`aligned_cakes` on the data's q grid. The targets are the
    pool's geometries superposed on its reference, so ``dipole`` (default :func:`long_axis` of the reference)
    is a reference-frame axis. The image description goes into ``data.image`` and travels with a trained model.

    Parameters
    ----------
    data : PoolData
        The pool's data (1D patterns).
    n_chi : int, optional
        Azimuth bins.
    energy_kev : float, optional
        Photon energy, keV.
    dipole : array_like or None, optional
        (3,) aligned molecular axis d̂ in the reference frame; default the reference's long axis.
    axis : array_like, optional
        (3,) lab-frame alignment axis ê.
    p2, p4 : float, optional
        ⟨P_2⟩ and ⟨P_4⟩ of the alignment.
    progress : bool, optional
        A progress bar over the splits.

    Returns
    -------
    PoolData
        The copy, with ``patterns`` (n, n_chi·Q) and ``image`` set.
    """
    d = long_axis(data.numbers, data.reference) if dipole is None else np.asarray(dipole, dtype=np.float64)
    image = {"kind": "aligned", "n_chi": int(n_chi), "energy_kev": float(energy_kev), "dipole": d.tolist(),
             "axis": [float(a) for a in axis], "p2": float(p2), "p4": float(p4)}
    return with_images(data, image, progress=progress)


def with_images(data, image: dict, *, progress: bool = False):
    """A copy of a pool's data whose patterns are the images its geometries give under an image description.

    Parameters
    ----------
    data : PoolData
        The pool's data.
    image : dict
        A ``PoolData.image`` or a model's ``image`` description.
    progress : bool, optional
        A progress bar.

    Returns
    -------
    PoolData
        The copy, with ``patterns`` (n, n_chi·Q) and ``image`` set.
    """
    import torch  # optional dependency (torch)
    from tqdm.auto import tqdm  # loaded on use: keeps `import xstructure` fast

    if data.probe != "xray" or data.signal != "total":
        raise ValueError(f"detector images are made for X-ray total scattering, the pool has {data.probe} {data.signal}")
    forward = image_forward(image, data.numbers, data.q)
    pats = {}
    for split, X in data.targets.items():
        pats[split] = np.empty((len(X), int(image["n_chi"]) * len(data.q)))
        with torch.no_grad():  # the torch form is the exact one (tested to 1e-10), batched over structures
            for s in tqdm(range(0, len(X), 256), desc=f"images ({split})", disable=not progress, leave=False):
                x = torch.as_tensor(np.ascontiguousarray(X[s:s + 256], dtype=np.float64))
                pats[split][s:s + 256] = forward(x).flatten(1).numpy()
    return dataclasses.replace(data, image=image, patterns=pats)


def images_of(data, positions) -> np.ndarray:
    """Images of structures, as ``data.image`` describes them.

    Parameters
    ----------
    data : PoolData
        Data with an image description.
    positions : array_like
        (B, N, 3) structures in the reference frame, Å.

    Returns
    -------
    numpy.ndarray
        (B, n_chi, Q) images.
    """
    im = data.image
    if im is None or im.get("kind") != "aligned":
        raise ValueError(f"no aligned-ensemble image description in this data: {im!r}")
    return aligned_cakes(data.numbers, positions, data.q, im["n_chi"], energy_kev=im["energy_kev"], dipole=im["dipole"],
                         axis=im["axis"], p2=im["p2"], p4=im["p4"])


def _jl(l: int, x, s, co):
    """Spherical Bessel j_l(x) for l = 2, 4 and its derivative, from sin x and cos x (closed forms)."""
    ix = 1.0 / x
    ix2 = ix * ix
    if l == 2:
        j1 = (s * ix - co) * ix
        j = ((3 * ix2 - 1) * s - 3 * co * ix) * ix
        return j, j1 - 3 * ix * j
    j3 = ((15 * ix2 - 6) * s * ix - (15 * ix2 - 1) * co) * ix
    j = ((105 * ix2 * ix2 - 45 * ix2 + 1) * s - (105 * ix2 - 10) * ix * co) * ix
    return j, j3 - 5 * ix * j


@functools.lru_cache(maxsize=None)
def _pair_sum(l: int):
    """S[b, k] = Σ_p F[p, k] j_l(q_k r[b, p]) w[b, p] as a torch autograd Function with an analytic backward
    (gradients to r and w; sin and cos recomputed, nothing of size B × P × Q kept)."""
    import torch  # optional dependency (torch)

    class PairSum(torch.autograd.Function):
        @staticmethod
        def forward(ctx, r, w, q, F):
            x = r[..., None] * q
            j, _ = _jl(l, x, torch.sin(x), torch.cos(x))
            ctx.save_for_backward(r, w, q, F)
            return torch.einsum("bpq,pq,bp->bq", j, F, w)

        @staticmethod
        def backward(ctx, g):
            r, w, q, F = ctx.saved_tensors
            x = r[..., None] * q
            j, dj = _jl(l, x, torch.sin(x), torch.cos(x))
            gF = g[:, None, :] * F[None]                                    # (B, P, Q)
            return (w * torch.einsum("bpq,bpq->bp", gF, dj * q)), torch.einsum("bpq,bpq->bp", gF, j), None, None

    return PairSum.apply


def image_forward(image: dict, numbers, q, *, dtype=None, device=None):
    """The differentiable image model of :func:`images_torch` with its tables made once.

    The tables are the form factors, pair indices and bin-averaged Legendre factors.

    Parameters
    ----------
    image : dict
        The image description.
    numbers : array_like
        (N,) atomic numbers.
    q : array_like
        (Q,) momentum transfer, Å⁻¹.
    dtype : torch.dtype or None, optional
        The tables' dtype (default float64).
    device : torch.device or None, optional
        The tables' device.

    Returns
    -------
    callable
        A function from a (B, N, 3) tensor (Å) to a (B, n_chi, Q) tensor.
    """
    import torch  # optional dependency (torch)

    from .. import ops  # torch is optional: loaded when a model or op is used

    Z = np.asarray(numbers)
    q_np = np.asarray(q, dtype=np.float64)
    kw = dict(dtype=dtype or torch.float64, device=device)
    dhat = torch.as_tensor(unit_vector("dipole", image["dipole"]), **kw)
    a2, a4 = float(image["p2"]), float(image["p4"])
    _, species, f = form_factor_table(Z, q_np, "xray", None)
    ff = torch.as_tensor(f[species], **kw)                                   # (N, Q)
    iu, ju = np.triu_indices(len(Z), 1)
    F = 2.0 * ff[iu] * ff[ju]                                                # (P, Q): ij and ji
    qt = torch.as_tensor(q_np, **kw)
    f2, f4 = (torch.as_tensor(t, **kw) for t in _legendre_factors(q_np, int(image["n_chi"]), image["energy_kev"],
                                                                  image["axis"]))

    def forward(pos):
        d = pos[:, ju] - pos[:, iu]                                          # (B, P, 3)
        r = d.norm(dim=-1)
        c = (d @ dhat) / r
        out = ops.debye(Z, pos, q_np, probe="xray", signal="total")[:, None, :]
        if a2:
            out = out + f2[None] * (-5 * a2 * _pair_sum(2)(r, legendre_p(2, c), qt, F))[:, None, :]
        if a4:
            out = out + f4[None] * (9 * a4 * _pair_sum(4)(r, legendre_p(4, c), qt, F))[:, None, :]
        return out

    return forward


def images_torch(image: dict, numbers, positions, q):
    """:func:`images_of` as a differentiable torch function, for refinement against images.

    I_0 goes through the :func:`xstructure.ops.debye` op; I_2 and I_4 are sums over atom pairs of
    f_i f_j j_l(q r_ij) P_l(r̂_ij·d̂) with an analytic backward (use float64: the closed forms of j_2 and j_4
    cancel at small q r). Batches of a few dozen structures run fastest (the pair × q intermediates stay in
    cache). For many calls, :func:`image_forward` makes the tables once.

    Parameters
    ----------
    image : dict
        The image description (``PoolData.image``).
    numbers : array_like
        (N,) atomic numbers.
    positions : torch.Tensor
        (B, N, 3) structures in the reference frame, Å.
    q : array_like
        (Q,) momentum transfer, Å⁻¹.

    Returns
    -------
    torch.Tensor
        (B, n_chi, Q) images, differentiable in ``positions``.
    """
    return image_forward(image, numbers, q, dtype=positions.dtype, device=positions.device)(positions)
