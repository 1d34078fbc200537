"""RMSD after optimal superposition (Kabsch), batched, with optional reflections and atom permutations.

    >>> xstructure.rmsd(a, b)                                  # (N,3) vs (N,3) -> float, Å
    >>> xstructure.rmsd(ref, frames)                           # (N,3) vs (B,N,3) -> (B,)
    >>> xstructure.rmsd(a, b, reflection=True)                 # mirror images count as equal
    >>> xstructure.rmsd(a, b, permute="element", numbers=Z)    # same-element atoms may be relabelled

Isotropic scattering cannot tell a molecule from its mirror image, nor equivalent atoms apart, so these
options forgive exactly that.  The kernel (C++/OpenMP, CUDA) does every pair in float64 whatever the input
type; see ``cpp/include/xstructure/kabsch.hpp`` for the method.
"""

from __future__ import annotations

import numpy as np

from . import _backend

__all__ = ["rmsd", "torch_rmsd"]


def _as_frames(x, name):
    shape = tuple(x.shape)
    if len(shape) == 2:
        return x[None], True
    if len(shape) == 3:
        return x, False
    raise ValueError(f"{name} must have shape (N, 3) or (B, N, 3), got {shape}")


def _prepare(a, b, weights):
    """Validate and return (a3, b3, B, N, single, dtype_name, weights_np)."""
    ka, kb = _backend.array_kind(a), _backend.array_kind(b)
    if ka == "other":
        a = np.asarray(a, dtype=np.float64)
        ka = "numpy"
    if kb == "other":
        b = np.asarray(b, dtype=np.float64)
        kb = "numpy"
    if ka != kb:
        raise ValueError(f"a and b must be arrays of the same kind, got {ka} and {kb}")
    if _backend.device_of(a) != _backend.device_of(b):
        raise ValueError("a and b must be on the same device")
    a3, sa = _as_frames(a, "a")
    b3, sb = _as_frames(b, "b")
    if a3.shape[2] != 3 or b3.shape[2] != 3:
        raise ValueError(f"a and b must have shape (..., N, 3), got {tuple(a.shape)} and {tuple(b.shape)}")
    N = a3.shape[1]
    if b3.shape[1] != N:
        raise ValueError(f"shape mismatch: a has {N} atoms, b has {b3.shape[1]}")
    if N == 0:
        raise ValueError("no atoms: structures must have at least one atom")
    Ba, Bb = a3.shape[0], b3.shape[0]
    if Ba != Bb and Ba != 1 and Bb != 1:
        raise ValueError(f"shape mismatch: {Ba} frames in a and {Bb} in b (need equal counts, or one of them 1)")
    B = max(Ba, Bb)
    dtypes = {str(a3.dtype).replace("torch.", ""), str(b3.dtype).replace("torch.", "")}
    dtype_name = "float32" if dtypes == {"float32"} else "float64"
    w = None
    if weights is not None:
        w = _backend.to_numpy(weights, np.float64)
        if w.shape != (N,):
            raise ValueError(f"weights must have shape (N,) = ({N},), got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise ValueError("weights must be finite, non-negative and not all zero")
    return a3, b3, Ba, Bb, B, N, sa and sb, dtype_name, w


def _torch_rmsd(a3, b3, w, dtype_name, align: bool, reflection: bool):
    """(B,) RMSD of torch frames through the differentiable custom op (analytic backward)."""
    import torch  # torch input: torch is there

    from . import _ops  # torch is optional: loaded when a model or op is used

    for name, x in (("a", a3), ("b", b3)):
        if x.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{name} must be float32 or float64, got {x.dtype}")
        if not bool(torch.isfinite(x.detach()).all()):
            raise ValueError(f"{name} contains NaN or inf")
    dtype = getattr(torch, dtype_name)
    wt = None if w is None else torch.as_tensor(w, device=a3.device)
    return _ops.kabsch_rmsd(a3.to(dtype), b3.to(dtype), wt, align, reflection)


def torch_rmsd(a, b, *, weights=None, align: bool = True, reflection: bool = False):
    """RMSD after superposition of torch tensors, differentiable in both (see :func:`xstructure.ops.kabsch_rmsd`).

    Parameters
    ----------
    a, b : torch.Tensor
        (N, 3) or (B, N, 3) positions in Å on one device; one structure broadcasts against many.
    weights : array_like, optional
        (N,) non-negative atom weights.
    align, reflection : bool
        Superpose first; also allow improper rotations.

    Returns
    -------
    torch.Tensor
        (B,) RMSD in Å, 0-d for two (N, 3) inputs.
    """
    a3, b3, Ba, Bb, B, N, single, dtype_name, w = _prepare(a, b, weights)
    out = _torch_rmsd(a3, b3, w, dtype_name, align, reflection)
    return out[0] if single else out


def _kabsch(a3, b3, Ba, Bb, B, N, dtype_name, w, align, reflection, want_transform, num_threads):
    a3 = _backend.contiguous(a3, dtype_name)
    b3 = _backend.contiguous(b3, dtype_name)
    out = _backend.empty_like(a3, (B,), dtype_name)
    R = _backend.empty_like(a3, (B, 3, 3), dtype_name) if want_transform else None
    t = _backend.empty_like(a3, (B, 3), dtype_name) if want_transform else None
    wd = None if w is None else _backend.to_like(np.ascontiguousarray(w), a3)
    _backend.kabsch_rmsd(a3, b3, out, R, t, a_stride=0 if Ba == 1 else 3 * N, b_stride=0 if Bb == 1 else 3 * N,
                         N=N, weights=wd, align=align, reflection=reflection, num_threads=num_threads)
    # NaN or inf anywhere in a pair's input makes its RMSD non-finite: check B outputs, not B*N*3 inputs
    if not _backend.all_finite(out):
        for name, x in (("a", a3), ("b", b3)):
            if not _backend.all_finite(x):
                raise ValueError(f"{name} contains NaN or inf")
        raise FloatingPointError("non-finite RMSD from finite input (coordinates too large?)")
    return out, R, t


def _permuted_pair(a, b, numbers, groups, w, align, reflection, max_iter=50):
    """Best relabelling of b's interchangeable atoms: Hungarian assignment alternated with superposition."""
    from scipy.optimize import (
        linear_sum_assignment,  # loaded on use: keeps `import xstructure` fast
    )

    N = a.shape[0]

    def fit(perm):
        r, R, t = _kabsch(a[None], b[perm][None], 1, 1, 1, N, "float64", w, align, reflection, True, 1)
        return float(r[0]), R[0], t[0]

    def reassign(moved):
        perm = np.arange(N)
        for g in groups:
            cost = ((moved[g][:, None, :] - b[g][None, :, :]) ** 2).sum(-1)
            rows, cols = linear_sum_assignment(cost)
            perm[g[rows]] = g[cols]
        return perm

    best = None
    # starts: the given labelling, and assignments made after superposing the principal axes of a and b
    # (every sign choice, improper ones too when reflections are allowed): rotation-invariant guesses.
    starts = [np.arange(N)]
    ca, cb = a.mean(0), b.mean(0)
    _, Va = np.linalg.eigh((a - ca).T @ (a - ca))
    _, Vb = np.linalg.eigh((b - cb).T @ (b - cb))
    for signs in np.array(np.meshgrid([1, -1], [1, -1], [1, -1])).T.reshape(-1, 3):
        R0 = Vb @ np.diag(signs) @ Va.T
        if np.linalg.det(R0) < 0 and not reflection:
            continue
        starts.append(reassign((a - ca) @ R0.T + cb))
    for perm in starts:
        seen = set()
        for _ in range(max_iter):
            r, R, t = fit(perm)
            if best is None or r < best[0] - 1e-15:
                best = (r, R, t, perm.copy())
            key = perm.tobytes()
            if key in seen:
                break
            seen.add(key)
            new = reassign(a @ R.T + t)
            if np.array_equal(new, perm):
                break
            perm = new
    return best


def rmsd(a, b, *, align: bool = True, reflection: bool = False, weights=None, permute: str | None = None,
         numbers=None, groups=None, return_transform: bool = False, num_threads: int = 0):
    """Root-mean-square deviation of atomic positions after optimal superposition (Kabsch).

    RMSD = min over rotations R and translations t of sqrt(Σ_i w_i |R a_i + t − b_i|² / Σ_i w_i), computed in
    float64 whatever the input type, with Horn's quaternion method (see the user guide's RMSD page for the
    numerics).

    Parameters
    ----------
    a, b : array_like
        (N, 3) or (B, N, 3) positions in Å (numpy, torch or cupy; the same kind for both). One structure
        against many broadcasts. torch inputs go through the differentiable op
        :func:`xstructure.ops.kabsch_rmsd` (unless ``permute`` or ``return_transform`` is used).
    align : bool, optional
        Superpose (translation + rotation) first; False gives the plain RMSD.
    reflection : bool, optional
        Also allow improper rotations (the best of proper and improper is taken), so that a structure and its
        mirror image give 0.
    weights : array_like or None, optional
        (N,) non-negative atom weights (e.g. masses in amu); the RMSD is the weighted mean.
    permute : {None, 'element'}, optional
        ``"element"``: atoms of the same element (``numbers`` required) may be relabelled in b to minimise the
        RMSD (Hungarian assignment alternated with superposition, from several starts).
    numbers : array_like or None, optional
        (N,) atomic numbers, for ``permute="element"``.
    groups : list of list of int, optional
        With ``permute``: only atoms within one group are interchangeable (e.g. the three H of each methyl
        group). Default: one group per element.
    return_transform : bool, optional
        Also return R (…, 3, 3) and t (…, 3) with b ≈ a @ R.T + t (and, with ``permute``, the permutation
        perm (…, N) with b[perm] matched to a).
    num_threads : int, optional
        CPU threads (0: OpenMP's default).

    Returns
    -------
    rmsd : float, numpy.ndarray or torch.Tensor
        RMSD in Å: a float for two (N, 3) numpy structures, a 0-d tensor for two torch ones, else (B,).
    R, t, perm : numpy.ndarray
        Only with ``return_transform``: rotations (…, 3, 3), translations (…, 3) in Å, and (with ``permute``)
        permutations (…, N).

    Raises
    ------
    ValueError
        A shape mismatch, no atoms, NaN or inf, bad weights, or an unknown permute mode.

    Examples
    --------
    >>> import numpy as np, xstructure
    >>> nmm = xstructure.molecule("NMM")
    >>> mirror = nmm.positions * [-1, 1, 1]
    >>> round(float(xstructure.rmsd(nmm.positions, mirror, reflection=True)), 6)
    0.0
    """
    a3, b3, Ba, Bb, B, N, single, dtype_name, w = _prepare(a, b, weights)
    kind = _backend.array_kind(a3)
    if permute is not None:
        if permute != "element":
            raise ValueError(f"unknown permute mode {permute!r}: use None or 'element'")
        if numbers is None:
            raise ValueError("permute='element' needs numbers= (the atomic number of each atom)")
        Z = _backend.to_numpy(numbers)
        if Z.shape != (N,):
            raise ValueError(f"numbers must have shape (N,) = ({N},), got {Z.shape}")
        if groups is None:
            grp = [np.flatnonzero(Z == z) for z in np.unique(Z)]
        else:
            grp = [np.asarray(g, dtype=np.int64) for g in groups]
            for g in grp:
                if g.size and (g.min() < 0 or g.max() >= N):
                    raise ValueError(f"groups hold atom indices outside 0..{N - 1}")
                if np.unique(Z[g]).size > 1:
                    raise ValueError("each group must hold atoms of one element")
        grp = [g for g in grp if g.size > 1]
        an = _backend.to_numpy(a3, np.float64)
        bn = _backend.to_numpy(b3, np.float64)
        for name, x in (("a", an), ("b", bn)):
            if not np.all(np.isfinite(x)):
                raise ValueError(f"{name} contains NaN or inf")
        res = [_permuted_pair(an[k if Ba > 1 else 0], bn[k if Bb > 1 else 0], Z, grp, w, align, reflection)
               for k in range(B)]
        r = np.array([x[0] for x in res])
        R = np.stack([x[1] for x in res])
        t = np.stack([x[2] for x in res])
        perm = np.stack([x[3] for x in res])
        if single:
            r, R, t, perm = r[0], R[0], t[0], perm[0]
        return (r, R, t, perm) if return_transform else r

    if kind == "torch" and not return_transform:
        out = _torch_rmsd(a3, b3, w, dtype_name, align, reflection)
        return out[0] if single else out
    out, R, t = _kabsch(a3, b3, Ba, Bb, B, N, dtype_name, w, align, reflection, return_transform, num_threads)
    if single:
        out = float(out[0]) if kind == "numpy" else out[0]
        if return_transform:
            R, t = R[0], t[0]
    return (out, R, t) if return_transform else out
