"""PyTorch custom-op declarations (torch.library): one place for every op, its fake kernel and autograd.

Ops work on raw kernel inputs (the tables of :func:`xstructure.scattering.debye_tables`); the friendly
wrappers are in :mod:`xstructure.ops`.  The same implementation serves CPU and CUDA tensors: it hands
buffers and the current stream to the compiled core.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import _backend


def _check_same_device(positions: Tensor, *tables: Tensor) -> None:
    for t in tables:
        if t.device != positions.device:
            raise ValueError(f"all inputs must be on {positions.device}, got a table on {t.device}")


@torch.library.custom_op("xstructure::debye_sum", mutates_args=(), device_types=("cpu", "cuda"))
def debye_sum(positions: Tensor, species: Tensor, q: Tensor, H: Tensor, beta: Tensor,
              uniform: bool, q0: float, dq: float) -> Tensor:
    """out[b, k] = beta[k] + Σ_p H[p, k] Σ_{i<j of type p} sin(q_k r_ij) / r_ij for positions (B, N, 3)."""
    _check_same_device(positions, species, q, H, beta)
    pos = positions.contiguous()
    out = torch.empty((pos.shape[0], q.shape[0]), dtype=pos.dtype, device=pos.device)
    _backend.debye_forward(pos, species.contiguous(), q.contiguous(), H.contiguous(), beta.contiguous(), out,
                           uniform=uniform, q0=q0, dq=dq)
    return out


@debye_sum.register_fake
def _(positions, species, q, H, beta, uniform, q0, dq):
    return positions.new_empty((positions.shape[0], q.shape[0]))


@torch.library.custom_op("xstructure::debye_sum_backward", mutates_args=(), device_types=("cpu", "cuda"))
def debye_sum_backward(grad_out: Tensor, positions: Tensor, species: Tensor, q: Tensor, H: Tensor,
                       uniform: bool, q0: float, dq: float) -> Tensor:
    """Gradient of Σ grad_out · debye_sum with respect to positions, (B, N, 3)."""
    _check_same_device(positions, grad_out, species, q, H)
    pos = positions.contiguous()
    g = grad_out.to(pos.dtype).contiguous()
    grad_pos = torch.empty_like(pos)
    _backend.debye_backward(pos, species.contiguous(), q.contiguous(), H.contiguous(), g, grad_pos,
                            uniform=uniform, q0=q0, dq=dq)
    return grad_pos


@debye_sum_backward.register_fake
def _(grad_out, positions, species, q, H, uniform, q0, dq):
    return torch.empty_like(positions)


def _setup_context(ctx, inputs, output):
    positions, species, q, H, beta, uniform, q0, dq = inputs
    ctx.save_for_backward(positions, species, q, H)
    ctx.grid = (uniform, q0, dq)


def _backward(ctx, grad):
    positions, species, q, H = ctx.saved_tensors
    grad_pos = grad_beta = None
    if ctx.needs_input_grad[0]:
        grad_pos = debye_sum_backward(grad, positions, species, q, H, *ctx.grid)
    if ctx.needs_input_grad[4]:
        grad_beta = grad.sum(0)
    return grad_pos, None, None, None, grad_beta, None, None, None


debye_sum.register_autograd(_backward, setup_context=_setup_context)


@torch.library.custom_op("xstructure::debye_jacobian", mutates_args=(), device_types=("cpu", "cuda"))
def debye_jacobian(positions: Tensor, species: Tensor, q: Tensor, H: Tensor, beta: Tensor,
                   uniform: bool, q0: float, dq: float) -> tuple[Tensor, Tensor]:
    """debye_sum (B, Q) and its Jacobian (B, N, 3, Q), d out[b, k] / d positions[b, a, c] (no autograd)."""
    _check_same_device(positions, species, q, H, beta)
    pos = positions.contiguous()
    out = torch.empty((pos.shape[0], q.shape[0]), dtype=pos.dtype, device=pos.device)
    jac = torch.empty((*pos.shape, q.shape[0]), dtype=pos.dtype, device=pos.device)
    _backend.debye_jacobian(pos, species.contiguous(), q.contiguous(), H.contiguous(), beta.contiguous(), out, jac,
                            uniform=uniform, q0=q0, dq=dq)
    return out, jac


@debye_jacobian.register_fake
def _(positions, species, q, H, beta, uniform, q0, dq):
    return positions.new_empty((positions.shape[0], q.shape[0])), positions.new_empty((*positions.shape, q.shape[0]))


@torch.library.custom_op("xstructure::debye_gauss_newton", mutates_args=(), device_types=("cpu", "cuda"))
def debye_gauss_newton(positions: Tensor, species: Tensor, q: Tensor, H: Tensor, beta: Tensor, modes: Tensor,
                       target: Tensor, weights: Tensor, z: Tensor, uniform: bool, q0: float, dq: float,
                       mixed: bool = False) -> tuple[Tensor, Tensor]:
    """One Gauss–Newton MAP step in the subspace x = x₀ + L z (float64; mixed: the Jacobian J and A = J L in float32):
    the step dz (B, M) and debye_sum (B, Q).

    On the CPU one fused kernel per geometry (the Jacobian in a per-thread buffer); on CUDA the Jacobian kernel, then
    batched products and a Cholesky solve through torch."""
    _check_same_device(positions, species, q, H, beta, modes, target, weights, z)
    pos, L, y, w, zc = (t.to(torch.float64).contiguous() for t in (positions, modes, target, weights, z))
    if pos.device.type == "cpu":
        out = torch.empty((pos.shape[0], q.shape[0]), dtype=torch.float64)
        dz = torch.empty((pos.shape[0], L.shape[1]), dtype=torch.float64)
        _backend.debye_gauss_newton(pos, species.contiguous(), q.contiguous(), H.contiguous(), beta.contiguous(), L,
                                    y, w, zc, out, dz, uniform=uniform, q0=q0, dq=dq, mixed=mixed)
        return dz, out
    out, jac = debye_jacobian(pos, species, q, H, beta, uniform, q0, dq)
    jac = jac.reshape(pos.shape[0], -1, q.shape[0])
    if mixed:
        At = torch.matmul(L.T.float(), jac.float()).double()                   # (B, M, Q)
    else:
        At = torch.matmul(L.T, jac)
    G = torch.matmul(At * w[:, None], At.transpose(1, 2)) + torch.eye(L.shape[1], dtype=torch.float64,
                                                                         device=pos.device)
    rhs = torch.matmul(At, (w * (y - out))[..., None]) - zc[..., None]
    C, info = torch.linalg.cholesky_ex(G)
    dz = torch.cholesky_solve(rhs, C)[..., 0]
    dz[info != 0] = float("nan")
    return dz, out


@debye_gauss_newton.register_fake
def _(positions, species, q, H, beta, modes, target, weights, z, uniform, q0, dq, mixed=False):
    B = positions.shape[0]
    return (positions.new_empty((B, modes.shape[1]), dtype=torch.float64),
            positions.new_empty((B, q.shape[0]), dtype=torch.float64))


# ----------------------------------------------------------------------------------------------- Kabsch RMSD
def _pair_count(a: Tensor, b: Tensor) -> int:
    return max(a.shape[0], b.shape[0])


@torch.library.custom_op("xstructure::kabsch_rmsd", mutates_args=(), device_types=("cpu", "cuda"))
def kabsch_rmsd(a: Tensor, b: Tensor, weights: Optional[Tensor], align: bool, reflection: bool) -> Tensor:
    """RMSD (B,) after optimal superposition of a (Ba, N, 3) onto b (Bb, N, 3); Ba, Bb ∈ {1, B}."""
    _check_same_device(a, b)
    a_ = a.contiguous()
    b_ = b.to(a.dtype).contiguous()
    B, N = _pair_count(a_, b_), a_.shape[1]
    out = torch.empty((B,), dtype=a_.dtype, device=a_.device)
    w = None if weights is None else weights.to(device=a_.device, dtype=torch.float64).contiguous()
    _backend.kabsch_rmsd(a_, b_, out, None, None, a_stride=0 if a_.shape[0] == 1 else 3 * N,
                         b_stride=0 if b_.shape[0] == 1 else 3 * N, N=N, weights=w, align=align,
                         reflection=reflection)
    return out


@kabsch_rmsd.register_fake
def _(a, b, weights, align, reflection):
    return a.new_empty((_pair_count(a, b),))


@torch.library.custom_op("xstructure::kabsch_rmsd_backward", mutates_args=(), device_types=("cpu", "cuda"))
def kabsch_rmsd_backward(grad: Tensor, a: Tensor, b: Tensor, weights: Optional[Tensor], align: bool,
                         reflection: bool) -> tuple[Tensor, Tensor]:
    """Per-pair gradients (B, N, 3) of Σ grad · rmsd with respect to a and b."""
    a_ = a.contiguous()
    b_ = b.to(a.dtype).contiguous()
    B, N = _pair_count(a_, b_), a_.shape[1]
    ga = torch.empty((B, N, 3), dtype=a_.dtype, device=a_.device)
    gb = torch.empty((B, N, 3), dtype=a_.dtype, device=a_.device)
    w = None if weights is None else weights.to(device=a_.device, dtype=torch.float64).contiguous()
    _backend.kabsch_rmsd_backward(a_, b_, grad.to(a_.dtype).contiguous(), ga, gb,
                                  a_stride=0 if a_.shape[0] == 1 else 3 * N, b_stride=0 if b_.shape[0] == 1 else 3 * N,
                                  N=N, weights=w, align=align, reflection=reflection)
    return ga, gb


@kabsch_rmsd_backward.register_fake
def _(grad, a, b, weights, align, reflection):
    B, N = _pair_count(a, b), a.shape[1]
    return a.new_empty((B, N, 3)), a.new_empty((B, N, 3))


def _kabsch_setup(ctx, inputs, output):
    a, b, weights, align, reflection = inputs
    ctx.save_for_backward(a, b, weights)
    ctx.flags = (align, reflection)


def _kabsch_backward(ctx, grad):
    a, b, weights = ctx.saved_tensors
    ga = gb = None
    if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
        pa, pb = kabsch_rmsd_backward(grad, a, b, weights, *ctx.flags)
        if ctx.needs_input_grad[0]:
            ga = pa.sum(0, keepdim=True) if a.shape[0] == 1 and pa.shape[0] != 1 else pa
            ga = ga.to(a.dtype)
        if ctx.needs_input_grad[1]:
            gb = pb.sum(0, keepdim=True) if b.shape[0] == 1 and pb.shape[0] != 1 else pb
            gb = gb.to(b.dtype)
    return ga, gb, None, None, None


kabsch_rmsd.register_autograd(_kabsch_backward, setup_context=_kabsch_setup)


# ----------------------------------------------------------------------------------------------- density grids
def _spec(shape, cell, step, origin) -> dict:
    return {"shape": list(shape), "cell": list(cell), "step": list(step), "origin": list(origin)}


@torch.library.custom_op("xstructure::density_grid", mutates_args=(), device_types=("cpu", "cuda"))
def density_grid(positions: Tensor, weight: Tensor, sigma: Tensor, shape: list[int], cell: list[float],
                 step: list[float], origin: list[float], cutoff: float) -> Tensor:
    """Gaussian density (B, n0, n1, n2) of positions (B, N, 3) on a periodic cell grid."""
    _check_same_device(positions, weight, sigma)
    pos = positions.contiguous()
    rho = torch.empty((pos.shape[0], *shape), dtype=pos.dtype, device=pos.device)
    _backend.density_grid(pos, rho, _spec(shape, cell, step, origin), weight.contiguous(), sigma.contiguous(), cutoff)
    return rho


@density_grid.register_fake
def _(positions, weight, sigma, shape, cell, step, origin, cutoff):
    return positions.new_empty((positions.shape[0], *shape))


@torch.library.custom_op("xstructure::density_grid_backward", mutates_args=(), device_types=("cpu", "cuda"))
def density_grid_backward(grad: Tensor, positions: Tensor, weight: Tensor, sigma: Tensor, shape: list[int],
                          cell: list[float], step: list[float], origin: list[float], cutoff: float) -> Tensor:
    """Σ_grid grad · ∂ρ/∂positions, (B, N, 3)."""
    pos = positions.contiguous()
    out = torch.empty_like(pos)
    _backend.density_grid_backward(pos, grad.to(pos.dtype).contiguous(), out, _spec(shape, cell, step, origin),
                                   weight.contiguous(), sigma.contiguous(), cutoff)
    return out


@density_grid_backward.register_fake
def _(grad, positions, weight, sigma, shape, cell, step, origin, cutoff):
    return torch.empty_like(positions)


def _density_setup(ctx, inputs, output):
    positions, weight, sigma, shape, cell, step, origin, cutoff = inputs
    ctx.save_for_backward(positions, weight, sigma)
    ctx.args = (shape, cell, step, origin, cutoff)


def _density_backward(ctx, grad):
    positions, weight, sigma = ctx.saved_tensors
    g = None
    if ctx.needs_input_grad[0]:
        g = density_grid_backward(grad, positions, weight, sigma, *ctx.args)
    return g, None, None, None, None, None, None, None


density_grid.register_autograd(_density_backward, setup_context=_density_setup)
