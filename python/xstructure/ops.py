"""Differentiable scattering for PyTorch: custom ops with analytic backward kernels (CPU and CUDA).

    >>> import torch, xstructure
    >>> pos = torch.randn(8, 18, 3, dtype=torch.float64, requires_grad=True)
    >>> I = xstructure.ops.debye(numbers, pos, q, probe="xray", signal="molecular")   # (8, Q)
    >>> I.sum().backward()                                                           # pos.grad (8, 18, 3)
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _ops
from .align import torch_rmsd
from .crystal import grid_spec
from .factors import atomic_number, form_factor_table
from .scattering import PROBES, SIGNALS, as_q, debye_tables
from .structures import atomic_numbers

__all__ = ["debye", "debye_jacobian", "debye_gauss_newton", "debye_sum", "kabsch_rmsd", "density_grid",
           "detector_pattern"]

debye_sum = _ops.debye_sum


def _debye_inputs(numbers, positions, q, probe, signal, energy_kev, compton):
    """The checks shared by :func:`debye` and :func:`debye_jacobian`: (B, N, 3) positions, whether one structure
    was given, and the kernel's tables."""
    if not isinstance(positions, torch.Tensor):
        raise ValueError(f"positions must be a torch.Tensor, got {type(positions).__name__}")
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}: use one of {PROBES}")
    if signal not in SIGNALS:
        raise ValueError(f"unknown signal {signal!r}: use one of {SIGNALS}")
    if positions.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"positions must be float32 or float64, got {positions.dtype}")
    numbers = atomic_numbers(numbers)
    single = positions.dim() == 2
    pos = positions.unsqueeze(0) if single else positions
    if pos.dim() != 3 or pos.shape[2] != 3 or pos.shape[1] != len(numbers):
        raise ValueError(f"positions must have shape (N, 3) or (B, N, 3) with N = {len(numbers)}, "
                         f"got {tuple(positions.shape)}")
    if not bool(torch.isfinite(pos.detach()).all()):
        raise ValueError("positions contain NaN or inf")
    q = as_q(q)
    t = debye_tables(numbers, q, probe, signal, energy_kev, compton)
    return pos, single, t


def _kernel_tables(t, dev) -> tuple:
    """The Debye tables' species, q, H and beta as tensors on ``dev``, then the grid's (uniform, q0, dq)."""
    return (*(torch.as_tensor(a, device=dev) for a in (t.species, t.q, t.H, t.beta)), t.uniform, t.q0, t.dq)


def debye(numbers, positions: Tensor, q, *, probe: str = "xray", signal: str = "total",
          energy_kev: float | None = None, compton: bool = False) -> Tensor:
    """Debye scattering of one molecule's geometries as a differentiable torch op.

    The forward pass is the kernel of :func:`xstructure.simulate`; the backward pass is an analytic kernel
    (CPU and CUDA), so the op can sit inside training losses and refinements.

    Parameters
    ----------
    numbers : array_like
        (N,) atomic numbers (sequence, numpy or tensor) or element symbols.
    positions : torch.Tensor
        (N, 3) or (B, N, 3) float32/float64 tensor in Å, on CPU or CUDA; gradients flow to it.
    q : array_like
        (Q,) momentum transfer q = 4π sin θ / λ in Å⁻¹ (sequence, numpy or tensor).
    probe : {'xray', 'electron'}, optional
        X-ray (electrons²) or electron (Å²) intensities.
    signal : {'total', 'atomic', 'molecular', 'sM'}, optional
        As for :func:`xstructure.simulate`.
    energy_kev : float or None, optional
        Electron kinetic energy in keV for the relativistic factor.
    compton : bool, optional
        Add the incoherent X-ray scattering to ``"total"`` (needs xraylib).

    Returns
    -------
    torch.Tensor
        (Q,) or (B, Q) tensor of the positions' dtype and device, in electrons² (X-rays), Å² (electrons) or
        Å⁻¹ (sM).

    Raises
    ------
    ValueError
        ``positions`` not a float tensor of shape (N, 3) or (B, N, 3), NaN or inf, or an unknown probe or
        signal.
    """
    pos, single, t = _debye_inputs(numbers, positions, q, probe, signal, energy_kev, compton)
    dev = pos.device
    if signal == "atomic":
        out = torch.as_tensor(t.i_atomic, device=dev, dtype=pos.dtype).expand(pos.shape[0], -1).clone()
    else:
        out = _ops.debye_sum(pos, *_kernel_tables(t, dev))
    return out[0] if single else out


def debye_jacobian(numbers, positions: Tensor, q, *, probe: str = "xray", signal: str = "total",
                   energy_kev: float | None = None, compton: bool = False) -> tuple[Tensor, Tensor]:
    """Debye scattering of one molecule's geometries and its full Jacobian with respect to the positions.

    One pass over the atom pairs gives I(q_k) and ∂I(q_k)/∂x_a for every atom a (on CUDA, after the forward
    kernel), what a Gauss–Newton step, a Fisher-information matrix or a linearised error estimate needs; it costs a
    few times :func:`debye`, where ``torch.func.jacrev`` would run one backward pass per q point.

    Parameters
    ----------
    numbers : array_like
        (N,) atomic numbers (sequence, numpy or tensor) or element symbols.
    positions : torch.Tensor
        (N, 3) or (B, N, 3) float32/float64 tensor in Å, on CPU or CUDA.
    q : array_like
        (Q,) momentum transfer in Å⁻¹.
    probe : {'xray', 'electron'}, optional
        X-ray (electrons²) or electron (Å²) intensities.
    signal : {'total', 'atomic', 'molecular', 'sM'}, optional
        As for :func:`xstructure.simulate` (``"atomic"`` does not depend on the geometry: its Jacobian is zero).
    energy_kev : float or None, optional
        Electron kinetic energy in keV for the relativistic factor.
    compton : bool, optional
        Add the incoherent X-ray scattering to ``"total"`` (needs xraylib).

    Returns
    -------
    I : torch.Tensor
        (Q,) or (B, Q), as :func:`debye` gives.
    J : torch.Tensor
        (Q, N, 3) or (B, Q, N, 3), J[b, k, a, c] = ∂I[b, k] / ∂positions[b, a, c] (pattern unit per Å); a view of a
        (B, N, 3, Q) tensor. Not differentiable.

    Raises
    ------
    ValueError
        As for :func:`debye`.
    """
    pos, single, t = _debye_inputs(numbers, positions, q, probe, signal, energy_kev, compton)
    pos = pos.detach()
    dev = pos.device
    if signal == "atomic":
        out = torch.as_tensor(t.i_atomic, device=dev, dtype=pos.dtype).expand(pos.shape[0], -1).clone()
        jac = pos.new_zeros((*pos.shape, len(t.q)))
    else:
        out, jac = _ops.debye_jacobian(pos, *_kernel_tables(t, dev))
    jac = jac.permute(0, 3, 1, 2)
    return (out[0], jac[0]) if single else (out, jac)


def debye_gauss_newton(numbers, positions: Tensor, q, modes: Tensor, target, weights, z=None, *,
                       probe: str = "xray", signal: str = "molecular", energy_kev: float | None = None,
                       precision: str = "float64", check_finite: bool = True) -> tuple[Tensor, Tensor]:
    """One Gauss–Newton step of a maximum a posteriori fit of Debye patterns in a linear subspace of the positions.

    The structures are x = x₀ + L z with a unit Gaussian prior on z (L: e.g. the normal modes scaled by their
    thermal amplitudes), and the patterns y have independent Gaussian errors of weight w = 1/σ². At the current
    x (``positions``, = x₀ + L z), with A = ∂I/∂x · L,

        dz = (Aᵀ W A + 1)⁻¹ (Aᵀ W (y − I(x)) − z),   W = diag(w),

    and z + dz maximises the linearised posterior. On the CPU one fused C++ kernel per structure computes the
    pattern, its Jacobian (in a per-thread buffer, never written out), the projection, the weighted Gram matrix
    and its Cholesky solve; on CUDA the :func:`debye_jacobian` kernel is followed by batched products and a
    Cholesky solve.

    Parameters
    ----------
    numbers : array_like
        (N,) atomic numbers or element symbols.
    positions : torch.Tensor
        (N, 3) or (B, N, 3) float tensor in Å: the current structures x = x₀ + L z.
    q : array_like
        (Q,) momentum transfer in Å⁻¹.
    modes : torch.Tensor
        (3N, M) float tensor, Å per unit of z: the subspace's directions (flattened (N, 3) atom-major).
    target : array_like
        (Q,) or (B, Q) observed patterns y, in the unit of ``signal``.
    weights : array_like
        (Q,) or (B, Q) non-negative weights w = 1/σ².
    z : array_like or None, optional
        (M,) or (B, M) the current coordinates (default 0: the step from x₀).
    probe : {'xray', 'electron'}, optional
        The probe.
    signal : {'total', 'molecular', 'sM'}, optional
        What ``target`` is (default ``"molecular"``; ``"total"`` without Compton scattering).
    energy_kev : float or None, optional
        Electron kinetic energy in keV for the relativistic factor.
    precision : {'float64', 'mixed'}, optional
        ``"mixed"`` accumulates the Jacobian ∂I/∂x and its projection A = ∂I/∂x · L in float32 (twice as many
        numbers per vector instruction: about 30 % less time per step for a 21-atom molecule on the CPU) and
        everything else, the pattern I included, in float64; dz then differs from the float64 step by up to about
        10⁻⁴ of itself (each entry of A carries a relative rounding error of ~10⁻⁷). The Gram matrix stays in float64
        in either case: its entries span the data's whole dynamic range (eigenvalues up to ~10⁶ beside the prior's
        1), which float32 rounding would swamp.
    check_finite : bool, optional
        Check that ``modes``, ``target``, ``weights`` and ``z`` hold no NaN or inf (default). A caller that has
        checked them already may skip it (each check reads the whole input; a NaN then gives a NaN step).

    Returns
    -------
    dz : torch.Tensor
        (M,) or (B, M) float64 step (NaN where the Cholesky factorisation fails, which only overflow can cause).
    I : torch.Tensor
        (Q,) or (B, Q) float64 patterns at ``positions``.

    Raises
    ------
    ValueError
        As for :func:`debye`; ``signal="atomic"`` (it does not depend on the positions); ``modes``, ``target``,
        ``weights`` or ``z`` of the wrong shape, not finite, or negative weights; an unknown ``precision``.
    """
    if signal == "atomic":
        raise ValueError("signal 'atomic' does not depend on the positions: fit 'total', 'molecular' or 'sM'")
    if precision not in ("float64", "mixed"):
        raise ValueError(f"precision must be 'float64' or 'mixed', got {precision!r}")
    pos, single, t = _debye_inputs(numbers, positions, q, probe, signal, energy_kev, False)
    B, N, Q = pos.shape[0], pos.shape[1], len(t.q)
    dev = pos.device
    pos = pos.detach().to(torch.float64)
    if not isinstance(modes, torch.Tensor) or modes.dim() != 2 or modes.shape[0] != 3 * N or modes.shape[1] < 1:
        raise ValueError(f"modes must be a (3N, M) tensor with 3N = {3 * N}, got "
                         f"{tuple(modes.shape) if isinstance(modes, torch.Tensor) else type(modes).__name__}")
    M = modes.shape[1]

    def batch(name, v, width):
        v = torch.as_tensor(v.detach() if isinstance(v, torch.Tensor) else v, dtype=torch.float64, device=dev)
        if v.dim() == 1:
            v = v.expand(B, -1)
        if v.shape != (B, width):
            raise ValueError(f"{name} must have shape ({width},) or ({B}, {width}), got {tuple(v.shape)}")
        if check_finite and not bool(torch.isfinite(v).all()):
            raise ValueError(f"{name} contains NaN or inf")
        return v.contiguous()

    L = modes.detach().to(device=dev, dtype=torch.float64)
    if check_finite and not bool(torch.isfinite(L).all()):
        raise ValueError("modes contain NaN or inf")
    y = batch("target", target, Q)
    w = batch("weights", weights, Q)
    if bool((w < 0).any()):
        raise ValueError("weights must be >= 0 (they are 1/sigma^2)")
    zz = batch("z", torch.zeros(M, dtype=torch.float64) if z is None else z, M)
    species, qk, H, beta, uniform, q0, dq = _kernel_tables(t, dev)
    dz, out = _ops.debye_gauss_newton(pos, species, qk, H, beta, L.contiguous(), y, w, zz, uniform, q0, dq,
                                      precision == "mixed")
    return (dz[0], out[0]) if single else (dz, out)


def kabsch_rmsd(a: Tensor, b: Tensor, *, weights=None, align: bool = True, reflection: bool = False) -> Tensor:
    """Differentiable RMSD after optimal superposition, for training losses.

    Parameters
    ----------
    a, b : torch.Tensor
        (N, 3) or (B, N, 3) float tensors in Å on one device; one structure broadcasts against many.
    weights : array_like or None, optional
        (N,) non-negative atom weights.
    align : bool, optional
        Superpose first (translation + rotation).
    reflection : bool, optional
        Also allow improper rotations (mirror images give 0).

    Returns
    -------
    torch.Tensor
        (B,) RMSD in Å (0-d for two (N, 3) inputs). Gradients flow to both a and b (analytic kernel, by the
        envelope theorem; zero where the RMSD is exactly 0).
    """
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ValueError("kabsch_rmsd takes torch tensors; use xstructure.rmsd for numpy or cupy arrays")
    return torch_rmsd(a, b, weights=weights, align=align, reflection=reflection)


def density_grid(positions: Tensor, cell, *, numbers=None, weights=None, shape=(20, 20, 20), sigma=0.5,
                 frame: str = "fractional", cutoff: float = 6.0) -> Tensor:
    """Differentiable Gaussian density of atoms on a periodic unit-cell grid.

    ρ(r) = Σ_j Σ_R w_j (2πσ²)^(−3/2) exp(−|r − r_j − R|² / 2σ²) over the lattice translations R (see
    :func:`xstructure.crystal.density_grid`); the backward pass is an analytic kernel.

    Parameters
    ----------
    positions : torch.Tensor
        (N, 3) or (B, N, 3) Cartesian positions in Å, float32 or float64, CPU or CUDA.
    cell : array_like
        (3, 3) cell vectors a, b, c as rows, in Å (the same for the whole batch).
    numbers : array_like or None, optional
        (N,) atomic numbers; the weights are then w_j = Z_j (unless ``weights`` is given).
    weights : array_like or None, optional
        (N,) weights; default Z (with ``numbers``), else 1.
    shape : tuple of int, optional
        Grid shape (n0, n1, n2).
    sigma : float or array_like, optional
        Gaussian width in Å, one for all atoms or (N,).
    frame : {'fractional', 'cartesian'}, optional
        Grid points at fractional steps of the cell (parallelepiped voxels), or an axis-aligned Cartesian grid
        over the cell's bounding box.
    cutoff : float, optional
        Each Gaussian is cut at this many σ.

    Returns
    -------
    torch.Tensor
        (n0, n1, n2) or (B, n0, n1, n2) density, in weight units per Å³ (electrons/Å³ with Z weights), of the
        positions' dtype and device; gradients flow to the positions.
    """
    import numpy as np  # loaded on use: keeps `import xstructure` fast

    if not isinstance(positions, torch.Tensor):
        raise ValueError("density_grid takes a torch tensor of positions; use xstructure.crystal.density_grid "
                         "for structures")
    single = positions.dim() == 2
    pos = positions[None] if single else positions
    if pos.dim() != 3 or pos.shape[-1] != 3:
        raise ValueError(f"positions must be (N, 3) or (B, N, 3), got {tuple(positions.shape)}")
    if pos.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"positions must be float32 or float64, got {pos.dtype}")
    if not bool(torch.isfinite(pos.detach()).all()):
        raise ValueError("positions contain NaN or inf")
    N = pos.shape[1]
    cell = np.asarray(cell.detach().cpu() if isinstance(cell, torch.Tensor) else cell, dtype=np.float64)
    if cell.shape != (3, 3) or abs(np.linalg.det(cell)) < 1e-6:
        raise ValueError("cell must be a (3, 3) matrix of non-zero volume")
    spec = grid_spec(cell, shape, frame)
    if weights is not None:
        w = np.broadcast_to(np.asarray(weights, dtype=np.float64), (N,))
    elif numbers is not None:
        w = np.array([atomic_number(int(z)) for z in np.asarray(numbers).reshape(-1)], dtype=np.float64)
        if w.shape != (N,):
            raise ValueError(f"numbers has {w.size} entries for {N} atoms")
    else:
        w = np.ones(N)
    s = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (N,))
    if np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise ValueError("sigma must be positive")
    dev = pos.device
    rho = _ops.density_grid(pos, torch.as_tensor(np.ascontiguousarray(w), device=dev),
                            torch.as_tensor(np.ascontiguousarray(s), device=dev), list(spec["shape"]),
                            [float(v) for v in np.ravel(spec["cell"])], [float(v) for v in np.ravel(spec["step"])],
                            [float(v) for v in spec["origin"]], float(cutoff))
    return rho[0] if single else rho


def detector_pattern(numbers, positions: Tensor, geometry, *, orientation: str = "isotropic", probe=None,
                     polarization: float | None = 0.99, solid_angle: bool = True) -> Tensor:
    """Differentiable 2D detector image of a molecule on a :class:`~xstructure.Geometry`.

    X-ray total intensity with the polarisation and solid-angle factors, or electrons without them.
    ``orientation="isotropic"``: the Debye intensity at each pixel's ``|q|`` (the :func:`debye` custom op on the
    pixels' q, analytic backward). ``orientation="fixed"``: the coordinates are lab-frame positions and
    I = ``|Σ_j f_j(|q|) exp(i q·r_j)|²`` at each pixel's q vector (torch operations; autograd).

    Parameters
    ----------
    numbers : array_like
        (N,) atomic numbers or symbols.
    positions : torch.Tensor
        (N, 3) or (B, N, 3) tensor in Å (float32/float64, CPU or CUDA).
    geometry : Geometry
        The detector, shape (n1, n2).
    orientation : {'isotropic', 'fixed'}, optional
        Orientationally averaged, or the positions as given in the lab frame (x horizontal, y vertical, z
        along the beam).
    probe : {'xray', 'electron'} or None, optional
        Default: ``geometry.probe``.
    polarization : float or None, optional
        X-rays: pyFAI's polarisation factor in [−1, 1] (+1: horizontal), or None for no polarisation factor.
    solid_angle : bool, optional
        X-rays: multiply by the pixels' relative solid angle.

    Returns
    -------
    torch.Tensor
        (n1, n2) or (B, n1, n2) image in electrons² (X-rays) or Å² (electrons) per unit of the corrections, of
        the positions' dtype and device; gradients flow to the positions.
    """
    import numpy as np  # loaded on use: keeps `import xstructure` fast

    probe = geometry.probe if probe is None else probe
    if orientation not in ("isotropic", "fixed"):
        raise ValueError(f"unknown orientation {orientation!r}: use 'isotropic' or 'fixed' (aligned ensembles: "
                         "xstructure.simulate)")
    if not isinstance(positions, torch.Tensor):
        raise ValueError(f"positions must be a torch.Tensor, got {type(positions).__name__}")
    single = positions.dim() == 2
    pos = positions.unsqueeze(0) if single else positions
    dev, dt = pos.device, pos.dtype
    qpix = np.array(geometry.q.ravel())  # a writable copy (torch refuses read-only buffers)
    energy = geometry.electron_energy_kev if probe == "electron" else None
    if orientation == "isotropic":
        img = debye(numbers, pos, qpix, probe=probe, signal="total", energy_kev=energy)
    else:
        nums = atomic_numbers(numbers)
        if pos.dim() != 3 or pos.shape[1:] != (len(nums), 3):
            raise ValueError(f"positions must have shape (N, 3) or (B, N, 3) with N = {len(nums)}, "
                             f"got {tuple(positions.shape)}")
        if not bool(torch.isfinite(pos.detach()).all()):
            raise ValueError("positions contain NaN or inf")
        _, species, f = form_factor_table(nums, qpix, probe, energy)
        fa = torch.as_tensor(f[species], device=dev, dtype=dt)                     # (N, K)
        qv = torch.as_tensor(np.array(geometry.q_vectors.reshape(-1, 3)), device=dev, dtype=dt)
        phase = pos @ qv.T                                                          # (B, N, K)
        re = (fa * torch.cos(phase)).sum(1)
        im = (fa * torch.sin(phase)).sum(1)
        img = re * re + im * im
    if probe == "xray":
        corr = np.ones(geometry.shape)
        if polarization is not None:
            corr = corr * geometry.polarization(polarization)
        if solid_angle:
            corr = corr * geometry.solid_angle
        img = img * torch.as_tensor(corr.ravel(), device=dev, dtype=dt)
    img = img.reshape(-1, *geometry.shape)
    return img[0] if single else img
