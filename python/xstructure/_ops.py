"""PyTorch custom-op declarations (torch.library): one place for every op, its fake kernel and autograd.

Ops work on raw kernel inputs (the tables of :func:`xstructure.scattering.debye_tables`); the friendly
wrappers are in :mod:`xstructure.ops`.  The same implementation serves CPU and CUDA tensors: it hands
buffers and the current stream to the compiled core.
"""

from __future__ import annotations

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
