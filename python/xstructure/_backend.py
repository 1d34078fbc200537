"""The boundary to the compiled core: arrays of any kind (numpy, torch, cupy) become addresses and sizes.

Nothing above this module touches raw pointers or streams.  Callers pass contiguous arrays of the right
dtype on one device; this module reads their addresses, the current CUDA stream and device, and calls
``xstructure._core``.

Threads: every CPU kernel takes ``num_threads`` (0 = OpenMP's default).  In a child made by ``fork`` the kernels
run on one thread: GNU libgomp cannot start a parallel region in a forked child once the parent has used a thread
team (the child waits for pool threads that were not copied), and with a source build that team may have been
torch's, which then shares our runtime.  Worker processes that should use several threads each are started with
``spawn`` or ``forkserver``.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import numpy as np

from . import _core

__all__ = ["array_kind", "device_of", "cuda_available", "build_info", "to_numpy", "to_like", "empty_like",
           "contiguous", "all_finite", "debye_forward", "debye_backward", "debye_jacobian", "debye_gauss_newton",
           "kabsch_rmsd", "kabsch_rmsd_backward",
           "radial_histogram", "structure_factors", "density_grid", "density_grid_backward", "pumpprobe_block",
           "kernel_threads"]

_forked = False


def _after_fork_in_child() -> None:
    global _forked
    _forked = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def kernel_threads(num_threads: int) -> int:
    """The thread count handed to a CPU kernel: ``num_threads`` as given, or 1 in a forked child (see above)."""
    return 1 if _forked else int(num_threads)


def array_kind(x: Any) -> str:
    """'numpy', 'torch' or 'cupy' for an array; 'other' for anything else (lists, h5py datasets, ...)."""
    mod = type(x).__module__
    if isinstance(x, np.ndarray):
        return "numpy"
    if mod.startswith("torch"):
        return "torch"
    if mod.startswith("cupy"):
        return "cupy"
    return "other"


def device_of(x: Any) -> str:
    """'cpu' or 'cuda' for an array of any supported kind."""
    kind = array_kind(x)
    if kind == "torch":
        return x.device.type
    if kind == "cupy":
        return "cuda"
    return "cpu"


def to_numpy(x, dtype=None) -> np.ndarray:
    """Any array (numpy, torch on any device, cupy, array-like) as a numpy array."""
    kind = array_kind(x)
    if kind == "torch":
        x = x.detach().cpu().numpy()
    elif kind == "cupy":
        x = x.get()
    return np.asarray(x, dtype=dtype)


def to_like(arr: np.ndarray, like):
    """A numpy array as an array of like's kind on like's device (numpy and array-likes: unchanged)."""
    kind = array_kind(like)
    if kind == "torch":
        import torch  # optional dependency (torch)

        return torch.as_tensor(arr, device=like.device)
    if kind == "cupy":
        import cupy  # optional dependency (cupy arrays)

        with like.device:
            return cupy.asarray(arr)
    return arr


def empty_like(like, shape, dtype_name: str):
    """An uninitialised array of like's kind and device (numpy for numpy and array-likes)."""
    kind = array_kind(like)
    if kind == "torch":
        import torch  # optional dependency (torch)

        return torch.empty(shape, dtype=getattr(torch, dtype_name), device=like.device)
    if kind == "cupy":
        import cupy  # optional dependency (cupy arrays)

        with like.device:
            return cupy.empty(shape, dtype=dtype_name)
    return np.empty(shape, dtype=dtype_name)


def contiguous(x, dtype_name: str):
    """x as a C-contiguous array of dtype_name, of the same kind and device (array-likes become numpy)."""
    kind = array_kind(x)
    if kind == "torch":
        import torch  # optional dependency (torch)

        return x.detach().to(getattr(torch, dtype_name)).contiguous()
    if kind == "cupy":
        import cupy  # optional dependency (cupy arrays)

        return cupy.ascontiguousarray(x, dtype=dtype_name)
    return np.ascontiguousarray(np.asarray(x), dtype=dtype_name)


def all_finite(x) -> bool:
    """True when no element of the array is NaN or inf."""
    kind = array_kind(x)
    if kind == "torch":
        import torch  # optional dependency (torch)

        return bool(torch.isfinite(x).all())
    if kind == "cupy":
        import cupy  # optional dependency (cupy arrays)

        return bool(cupy.isfinite(x).all())
    return bool(np.isfinite(x).all())


def cuda_available() -> bool:
    """True when the extension was built with CUDA and a CUDA device is usable now."""
    return bool(_core.build_info()["cuda"]) and _core.cuda_device_count() > 0


def build_info() -> dict:
    """What the compiled core is: compiler, OpenMP, CPU instruction set, CUDA version and architectures."""
    info = dict(_core.build_info())
    info["cuda_devices"] = _core.cuda_device_count()
    return info


def _ptr(x: Any) -> int:
    if type(x) is np.ndarray:
        return x.__array_interface__["data"][0]
    kind = array_kind(x)
    if kind == "numpy":
        return int(x.ctypes.data)
    if kind == "torch":
        return int(x.data_ptr())
    if kind == "cupy":
        return int(x.data.ptr)
    raise TypeError(f"not an array: {type(x)!r}")


@contextlib.contextmanager
def _on_device(x: Any):
    """Make x's GPU the current one and yield the current stream's handle (0 on the CPU)."""
    kind = array_kind(x)
    if kind == "torch" and x.device.type == "cuda":
        import torch  # optional dependency (torch)

        with torch.cuda.device(x.device):
            yield int(torch.cuda.current_stream(x.device).cuda_stream)
    elif kind == "cupy":
        import cupy  # optional dependency (cupy arrays)

        with x.device:
            yield int(cupy.cuda.get_current_stream().ptr)
    else:
        yield 0


def _dtype_name(x: Any) -> str:
    name = str(x.dtype).replace("torch.", "")
    if name not in ("float32", "float64"):
        raise TypeError(f"positions must be float32 or float64, got {name}")
    return name


def _debye_sizes(pos, q, H):
    """(B, N, Q, E) of a Debye problem: E species give H's E (E + 1) / 2 rows."""
    B, N, _ = pos.shape
    return int(B), int(N), int(q.shape[0]), int(round((np.sqrt(8 * H.shape[0] + 1) - 1) / 2))


def debye_forward(pos, species, q, H, beta, out, *, uniform: bool, q0: float, dq: float, num_threads: int = 0):
    """out (B,Q) = beta + sum_p H_p * pair sums; all arrays of one kind on one device, contiguous."""
    B, N, Q, E = _debye_sizes(pos, q, H)
    device = device_of(pos)
    with _on_device(pos) as stream:
        _core.debye_forward(device, _dtype_name(pos), int(B), int(N), int(Q), E, _ptr(species), _ptr(q),
                            bool(uniform), float(q0), float(dq), _ptr(H), _ptr(beta), _ptr(pos), _ptr(out),
                            stream, kernel_threads(num_threads))
    return out


def debye_backward(pos, species, q, H, grad_out, grad_pos, *, uniform: bool, q0: float, dq: float,
                   num_threads: int = 0):
    """grad_pos (B,N,3) = d sum(grad_out * forward) / d pos."""
    B, N, Q, E = _debye_sizes(pos, q, H)
    device = device_of(pos)
    with _on_device(pos) as stream:
        _core.debye_backward(device, _dtype_name(pos), int(B), int(N), int(Q), E, _ptr(species), _ptr(q),
                             bool(uniform), float(q0), float(dq), _ptr(H), _ptr(pos), _ptr(grad_out),
                             _ptr(grad_pos), stream, kernel_threads(num_threads))
    return grad_pos


def debye_jacobian(pos, species, q, H, beta, out, jac, *, uniform: bool, q0: float, dq: float, num_threads: int = 0):
    """out (B,Q) as debye_forward, and jac (B,N,3,Q) = d out[b,k] / d pos[b,a,c]."""
    B, N, Q, E = _debye_sizes(pos, q, H)
    device = device_of(pos)
    with _on_device(pos) as stream:
        _core.debye_jacobian(device, _dtype_name(pos), int(B), int(N), int(Q), E, _ptr(species), _ptr(q),
                             bool(uniform), float(q0), float(dq), _ptr(H), _ptr(beta), _ptr(pos), _ptr(out),
                             _ptr(jac), stream, kernel_threads(num_threads))
    return out, jac


def debye_gauss_newton(pos, species, q, H, beta, L, y, w, z, out, dz, *, uniform: bool, q0: float, dq: float,
                       mixed: bool = False, num_threads: int = 0):
    """One Gauss-Newton MAP step in the subspace x = x0 + L z (CPU, float64; mixed: the Jacobian and its
    projection onto L in float32): out (B,Q) and dz (B,M)."""
    B, N, Q, E = _debye_sizes(pos, q, H)
    device = device_of(pos)
    _core.debye_gauss_newton(device, int(B), int(N), int(Q), E, _ptr(species), _ptr(q), bool(uniform), float(q0),
                             float(dq), _ptr(H), _ptr(beta), _ptr(pos), _ptr(L), int(L.shape[1]), _ptr(y), _ptr(w),
                             _ptr(z), bool(mixed), _ptr(out), _ptr(dz), kernel_threads(num_threads))
    return out, dz


def kabsch_rmsd(a, b, rmsd, R, t, *, a_stride: int, b_stride: int, N: int, weights=None, align: bool = True,
                reflection: bool = False, num_threads: int = 0):
    """rmsd (B,), optional R (B,3,3) and t (B,3); a, b contiguous frames with the given strides."""
    B = rmsd.shape[0]
    device = device_of(a)
    with _on_device(a) as stream:
        _core.kabsch_rmsd(device, _dtype_name(a), int(B), int(N), int(a_stride), int(b_stride),
                          _ptr(weights) if weights is not None else 0, bool(align), bool(reflection), _ptr(a),
                          _ptr(b), _ptr(rmsd), _ptr(R) if R is not None else 0, _ptr(t) if t is not None else 0,
                          stream, kernel_threads(num_threads))
    return rmsd


def kabsch_rmsd_backward(a, b, grad_rmsd, ga, gb, *, a_stride: int, b_stride: int, N: int, weights=None,
                         align: bool = True, reflection: bool = False, num_threads: int = 0):
    """ga, gb (B,N,3): gradients of Σ grad_rmsd · rmsd per pair."""
    B = grad_rmsd.shape[0]
    device = device_of(a)
    with _on_device(a) as stream:
        _core.kabsch_rmsd_backward(device, _dtype_name(a), int(B), int(N), int(a_stride), int(b_stride),
                                   _ptr(weights) if weights is not None else 0, bool(align), bool(reflection),
                                   _ptr(a), _ptr(b), _ptr(grad_rmsd), _ptr(ga), _ptr(gb), stream,
                                   kernel_threads(num_threads))


def radial_histogram(frames, *, F: int, npix: int, nbins: int, index, index16: bool, weight, check: bool,
                     lo: float, hi: float, has_dummy: bool, dummy: float, delta_dummy: float, mode: int, mean,
                     signal, var, removed_w, removed_w2, removed_count, num_threads: int = 0):
    """Per-bin sums of F contiguous frames through a pixel->bin map; outputs (F, nbins + 1) float64."""
    p = lambda a: _ptr(a) if a is not None else 0  # noqa: E731
    dtype = str(frames.dtype).replace("torch.", "")
    with _on_device(frames) as stream:
        _core.radial_histogram(device_of(frames), dtype, int(F), int(npix), int(nbins), _ptr(index), bool(index16),
                               p(weight), bool(check), float(lo), float(hi), bool(has_dummy), float(dummy),
                               float(delta_dummy), int(mode), p(mean), _ptr(frames), p(signal), p(var),
                               p(removed_w), p(removed_w2), p(removed_count), stream, kernel_threads(num_threads))


def structure_factors(type_of, frac, occ, H: int, hkl, g, gauss, s2max: float, B, metric, F, *,
                      num_threads: int = 0):
    """F (M,) complex128 from (N,) types, (N, 3) fractional coordinates, (N,) occupancies, form factors as a
    (T, M) table g or as Gaussian sums gauss = (K, a (T, K), b (T, K), c (T,)), the s² cutoff (negative: none),
    (N,) B factors (or None) and the reciprocal metric (g11, g22, g33, g12, g13, g23); the box h, k, l in
    [-H, H] when H >= 0, else the (M, 3) int32 hkl list (all numpy, CPU)."""
    T = g.shape[0] if g is not None else gauss[3].shape[0]
    if gauss is not None:
        K, ga, gb, gc = gauss[0], *(np.ascontiguousarray(x, dtype=np.float64) for x in gauss[1:])
    else:
        K, ga, gb, gc = 0, None, None, None
    p = lambda a: _ptr(a) if a is not None else 0  # noqa: E731
    _core.structure_factors("cpu", int(frac.shape[0]), int(T), _ptr(type_of), _ptr(frac), _ptr(occ), int(H),
                            int(F.shape[0]), _ptr(hkl) if H < 0 else 0, p(g), int(K), p(ga), p(gb), p(gc),
                            float(s2max), p(B), [float(v) for v in metric], _ptr(F), kernel_threads(num_threads))


def powder_reflections(arrays: dict, K: int, lam: float, lo: float, hi: float, tolerance: float, lp: bool,
                       num_threads: int = 0) -> dict:
    """Powder reflections and peaks of a batch of crystals (CPU): ``arrays`` holds the kernel's contiguous numpy
    inputs (atom_off, type, frac, occ, B or None, type_off, ga, gb, gc, cells); returns the kernel's dict."""
    p = lambda a: _ptr(a) if a is not None and a.size else 0  # noqa: E731
    return _core.powder_reflections(len(arrays["cells"]), p(arrays["atom_off"]), p(arrays["type"]),
                                    p(arrays["frac"]), p(arrays["occ"]), p(arrays["B"]), p(arrays["type_off"]),
                                    int(K), p(arrays["ga"]), p(arrays["gb"]), p(arrays["gc"]), p(arrays["cells"]),
                                    float(lam), float(lo), float(hi), float(tolerance), bool(lp),
                                    kernel_threads(num_threads))


def _density_args(spec: dict, weight, sigma, cutoff: float):
    return ([int(n) for n in spec["shape"]], [float(v) for v in np.ravel(spec["cell"])],
            [float(v) for v in np.ravel(spec["step"])], [float(v) for v in spec["origin"]], _ptr(weight),
            _ptr(sigma), float(cutoff))


def density_grid(pos, rho, spec: dict, weight, sigma, cutoff: float, *, num_threads: int = 0):
    """rho (B, n0, n1, n2) from pos (B, N, 3) contiguous; weight and sigma (N,) float64 on pos's device."""
    B, N = int(pos.shape[0]), int(pos.shape[1])
    with _on_device(pos) as stream:
        _core.density_grid(device_of(pos), _dtype_name(pos), B, N, *_density_args(spec, weight, sigma, cutoff),
                           _ptr(pos), _ptr(rho), stream, kernel_threads(num_threads))
    return rho


def density_grid_backward(pos, grad_rho, grad_pos, spec: dict, weight, sigma, cutoff: float, *, num_threads: int = 0):
    """grad_pos (B, N, 3) = Σ_grid grad_rho · ∂rho/∂pos."""
    B, N = int(pos.shape[0]), int(pos.shape[1])
    with _on_device(pos) as stream:
        _core.density_grid_backward(device_of(pos), _dtype_name(pos), B, N,
                                    *_density_args(spec, weight, sigma, cutoff), _ptr(pos), _ptr(grad_rho),
                                    _ptr(grad_pos), stream, kernel_threads(num_threads))
    return grad_pos


def pumpprobe_block(X, *, norm: int, i0: int, i1: int, inv_in, code_in, group, has, center, thr, limit: int, col_ptr,
                    col_row, col_val, n_rows: int, code, inv, num_threads: int = 0):
    """One pass over a block of shots (CPU, numpy): X (n, Q) C-contiguous float32 or float64; per shot inv_in (n,)
    float64, code_in (n,) uint8, group (n,) int64; the outlier tables has (G,) uint8, center and thr (G, Q) of X's
    dtype (has None: no test); the block's columns of the aggregation matrix: col_ptr (n + 1,) int64 into col_row
    int32 and col_val float64.  Writes code (n,) uint8 and inv (n,) float64; returns (rows (k,) int64, sums (k, Q)
    float64): the rows the used shots were added into, increasing, and their sums."""
    def p(a):
        return _ptr(a) if a is not None else 0

    n, Q = X.shape
    rows, sums = _core.pumpprobe_block("cpu", str(X.dtype), int(n), int(Q), int(X.strides[0] // X.itemsize),
                                       _ptr(X), int(norm), int(i0), int(i1), _ptr(inv_in), _ptr(code_in), _ptr(group),
                                       int(0 if has is None else has.shape[0]), p(has), p(center), p(thr), int(limit),
                                       _ptr(col_ptr), _ptr(col_row), _ptr(col_val), int(n_rows), _ptr(code),
                                       _ptr(inv), kernel_threads(num_threads))
    return rows, sums[:rows.shape[0]]
