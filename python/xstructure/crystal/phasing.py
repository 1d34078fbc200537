"""Solving the phase problem of a crystal without learning: charge flipping, Pawley extraction of powder
intensities, and atom models refined against the amplitudes.

Densities live on periodic grids over the unit cell in the fractional frame, normalised to a mean of 1
(ρ̃ = ρ V / F(000), with F(000) = Σ Z): a crystal's ρ̃ does not depend on its size or composition's scale.
F(h) = F(000) · (1/n³) Σ_x ρ̃(x) e^{+2πi h·x} (the crystallographic sign convention of
:func:`xstructure.crystal.structure_factors`), so :func:`box_amplitudes` is an inverse FFT of the grid read on
the box h, k, l ∈ [−H, H]; it is differentiable (torch.fft).

* :func:`charge_flip`: charge flipping (Oszlányi & Sütő 2004, Acta Cryst. A60, 134,
  doi:10.1107/S0108767303027569) on the observed amplitudes, best of a few random starts by R-factor.
* :func:`powder_amplitudes`: a Pawley fit (Pawley 1981, J. Appl. Cryst. 14, 357, doi:10.1107/S0021889881009618)
  of a powder pattern as non-negative intensities of groups of overlapped reflections, the cell and peak
  shape taken as known, as after indexing; :func:`powder_groups` labels the groups.
* :func:`refine_atoms`, :func:`solve_atoms`: the flipped map's peaks as the cell's atoms (contents from the
  composition and F(000), :func:`cell_contents`), positions refined by least squares on |F| (or on a powder
  pattern's groups), repeated from new starts until R < 0.02.

The least-squares refinement and the FFTs use torch (an optional dependency, ``pip install xstructure[torch]``).
"""

from __future__ import annotations

import math

import numpy as np

from ..factors import atomic_number
from .powder import PROFILE_CUT, lorentz_polarization, profile_block
from .structure_factors import density_grid

__all__ = ["normalised_density", "box_amplitudes", "density_peaks", "cell_atoms", "composition", "cell_from_parameters",
           "solve_box", "r_factor", "charge_flip",
           "powder_amplitudes", "powder_groups", "cell_contents", "refine_atoms", "solve_atoms"]


def composition(formula: str) -> np.ndarray:
    """Atom fractions by atomic number from a chemical formula.

    Parameters
    ----------
    formula : str
        A formula such as ``"NaCl"`` or ``"Al2O3"``.

    Returns
    -------
    numpy.ndarray
        (119,) float32 fraction of the atoms of each atomic number (index Z), summing to 1.

    Raises
    ------
    ValueError
        An unreadable formula or an unknown element.
    """
    from ase.formula import Formula  # loaded on use: keeps `import xstructure` fast

    try:
        counts = Formula(formula).count()
    except ValueError as exc:
        raise ValueError(f"cannot read the formula {formula!r}: {exc}") from None
    if not counts:
        raise ValueError(f"the formula {formula!r} names no element")
    comp = np.zeros(119, dtype=np.float32)
    total = sum(counts.values())
    for sym, k in counts.items():
        comp[atomic_number(sym)] = k / total
    return comp


def cell_from_parameters(text) -> np.ndarray:
    """Cell vectors from the six cell parameters.

    Parameters
    ----------
    text : str or sequence of float
        ``"a,b,c,alpha,beta,gamma"`` (Å and degrees), or a sequence of the six numbers.

    Returns
    -------
    numpy.ndarray
        (3, 3) cell vectors as rows, Å (ase's standard orientation).

    Raises
    ------
    ValueError
        Not six numbers, or parameters that make no cell.
    """
    from ase.geometry import (
        cellpar_to_cell,  # loaded on use: keeps `import xstructure` fast
    )

    try:
        par = [float(v) for v in (text.split(",") if isinstance(text, str) else text)]
        cell = cellpar_to_cell(par) if len(par) == 6 else None
    except ValueError:
        cell = None
    if cell is None or not np.isfinite(np.linalg.det(cell)) or np.linalg.det(cell) <= 0:
        raise ValueError(f"the cell must be a,b,c,alpha,beta,gamma (Å, degrees) of a real cell, got {text!r}")
    return cell


def solve_box(intensity, cell, formula: str, sigma: float, *, start=None) -> dict:
    """Atoms from |F|² boxes on the absolute scale, one cell and formula for all.

    The atom count comes from F(000) = sqrt(|F(000)|²) and the composition (:func:`cell_contents`); the
    amplitudes are normalised by F(000), the atoms' B = 8π²σ², and :func:`solve_atoms` runs from ``start``
    densities when given (e.g. a network's).

    Parameters
    ----------
    intensity : array_like
        (L, L, L) or (B, L, L, L) |F|² boxes, L = 2H + 1, electrons².
    cell : array_like
        (3, 3) cell rows in Å.
    formula : str
        The composition, e.g. 'NaCl'.
    sigma : float
        Gaussian width of the atoms in Å.
    start : numpy.ndarray, optional
        (B, n, n, n) starting densities.

    Returns
    -------
    dict
        :func:`solve_atoms`'s result plus ``atoms``, a list of ``ase.Atoms``.
    """
    I = np.asarray(intensity, dtype=np.float64)
    I = I.reshape((-1,) + I.shape[-3:])
    H = I.shape[-1] // 2
    comp = composition(formula)
    contents = [cell_contents(comp, np.sqrt(i[H, H, H])) for i in I]
    A = np.sqrt(I / I[:, H, H, H].reshape(-1, 1, 1, 1))
    kw = {} if start is None else {"start": start, "n": start.shape[-1]}
    sol = solve_atoms(A, [cell] * len(I), contents, 8 * np.pi ** 2 * float(sigma) ** 2, **kw)
    sol["atoms"] = [cell_atoms(cell, f, z) for f, z in zip(sol["frac"], sol["numbers"])]
    return sol


def cell_atoms(cell, frac, numbers):
    """An ``ase.Atoms`` of a periodic cell.

    Parameters
    ----------
    cell : array_like
        (3, 3) cell vectors as rows, Å.
    frac : array_like
        (N, 3) fractional coordinates.
    numbers : array_like
        (N,) atomic numbers.

    Returns
    -------
    ase.Atoms
        The crystal, periodic in all three directions.
    """
    import ase  # loaded on use: keeps `import xstructure` fast

    return ase.Atoms(numbers=numbers, scaled_positions=frac, cell=cell, pbc=True)


def normalised_density(rho: np.ndarray) -> np.ndarray:
    """A density divided by its mean over the grid: ρ̃ = ρ / mean(ρ).

    A crystal's ρ̃ does not depend on the cell's size or on the scale of its composition.

    Parameters
    ----------
    rho : array_like
        (n0, n1, n2) grid, or a batch (B, n0, n1, n2) (normalised crystal by crystal).

    Returns
    -------
    numpy.ndarray
        float64, same shape, dimensionless (mean 1).
    """
    rho = np.asarray(rho, dtype=np.float64)
    m = rho.mean(axis=(-3, -2, -1), keepdims=True)
    return rho / np.where(m > 0, m, 1.0)


def box_amplitudes(rho, H: int):
    """Normalised structure factors F(h)/F(000) of normalised densities, on the box h, k, l ∈ [−H, H].

    F(h) = F(000) · (1/n³) Σ_x ρ̃(x) exp(+2πi h·x): an inverse FFT of the grid read on the box; differentiable
    (torch.fft).

    Parameters
    ----------
    rho : numpy.ndarray or torch.Tensor
        (B, n, n, n) normalised densities on the fractional grid, n ≥ 2H + 1.
    H : int
        Box half-width.

    Returns
    -------
    torch.Tensor
        (B, 2H+1, 2H+1, 2H+1) complex128, indexed [h+H, k+H, l+H], 1 at the centre.
    """
    import torch  # optional dependency (torch)

    t = rho if isinstance(rho, torch.Tensor) else torch.as_tensor(np.asarray(rho))
    n = t.shape[-1]
    if 2 * H + 1 > n:
        raise ValueError(f"a grid of {n} points per axis cannot resolve the box H = {H} (needs ≥ {2 * H + 1})")
    F = torch.fft.ifftn(t, dim=(-3, -2, -1))
    idx = torch.as_tensor(np.arange(-H, H + 1) % n)
    F = F.index_select(-3, idx).index_select(-2, idx).index_select(-1, idx)
    F000 = F[..., H, H, H].real.reshape(F.shape[:-3] + (1, 1, 1))
    return F / torch.where(F000.abs() > 0, F000, torch.ones_like(F000))


def density_peaks(g: np.ndarray, rel: float = 0.1):
    """Local maxima of a periodic grid.

    Parameters
    ----------
    g : numpy.ndarray
        (n0, n1, n2) density on a periodic grid.
    rel : float, optional
        Keep maxima above ``rel`` × the grid's maximum.

    Returns
    -------
    idx : numpy.ndarray
        (P, 3) grid indices of the maxima.
    values : numpy.ndarray
        (P,) their values.
    """
    from scipy.ndimage import (
        maximum_filter,  # loaded on use: keeps `import xstructure` fast
    )

    mx = maximum_filter(g, size=3, mode="wrap")
    idx = np.argwhere((g == mx) & (g > rel * g.max()))
    return idx, g[tuple(idx.T)]


def r_factor(pred: np.ndarray, amplitudes: np.ndarray) -> float:
    """The crystallographic R-factor of a density against observed amplitudes.

    R = Σ ||F_obs| − k |F_calc|| / Σ |F_obs| over the box without F(000), k the least-squares scale.

    Parameters
    ----------
    pred : numpy.ndarray
        (n, n, n) normalised density (see :func:`normalised_density`), n ≥ L.
    amplitudes : numpy.ndarray
        (L, L, L) observed amplitudes ``|F|/F(000)`` on the box, L = 2H + 1.

    Returns
    -------
    float
        R, dimensionless (0 for a perfect fit).
    """
    import torch  # optional dependency (torch)

    H = amplitudes.shape[-1] // 2
    Fc = box_amplitudes(np.asarray(pred, dtype=np.float64)[None], H).abs()
    Fo = torch.as_tensor(np.asarray(amplitudes, dtype=np.float64)).clone()[None]
    Fo[0, H, H, H] = Fc[0, H, H, H] = 0.0
    return float(_r_value(Fo.flatten(1), Fc.flatten(1))[0])


def _r_value(Fo, Fc):
    """R = Σ |Fo − k Fc| / Σ Fo per row, k the least-squares scale (torch, (B, M))."""
    k = (Fo * Fc).sum(1, keepdim=True) / (Fc * Fc).sum(1, keepdim=True).clamp_min(1e-300)
    return (Fo - k * Fc).abs().sum(1) / Fo.sum(1).clamp_min(1e-300)


def _box_hkl(H: int) -> np.ndarray:
    """(L³, 3) the reflections of the box [−H, H]³ in C order (the layout of a (L, L, L) box)."""
    return np.stack(np.meshgrid(*(np.arange(-H, H + 1),) * 3, indexing="ij"), -1).reshape(-1, 3)


def _s2(cell, H: int) -> np.ndarray:
    """(L, L, L) s² = (|h a* + k b* + l c*| / 2)² on the box."""
    g = _box_hkl(H) @ np.linalg.inv(np.asarray(cell, dtype=np.float64)).T
    return 0.25 * (g ** 2).sum(-1).reshape((2 * H + 1,) * 3)


def charge_flip(amplitudes: np.ndarray, n: int = 24, iterations: int = 200, starts: int = 5, delta: float = 0.9,
                seed: int = 0, cells=None, b_atoms: float = 0.0, b_keep: float = 3.0, start=None) -> np.ndarray:
    """Densities from observed amplitudes by charge flipping (Oszlányi & Sütő 2004), batched over crystals.

    ρ from the amplitudes with the current phases; flip the sign of ρ below δ = ``delta`` × its standard
    deviation; the flipped map's phases go with the observed amplitudes into the next cycle (F(000) and
    reflections outside the box are left to the flipped map). Each of ``starts`` random phase sets runs
    ``iterations`` cycles. The iteration wanders near a solution rather than settling on it, so every 5 cycles
    each crystal's R between the observed amplitudes and the flipped map's is checked, and the phases of its
    lowest-R iterate over all cycles and starts are returned.

    Parameters
    ----------
    amplitudes : numpy.ndarray
        (B, L, L, L) observed amplitudes ``|F|/F(000)`` on the boxes h, k, l ∈ [−H, H] (L = 2H + 1); NaN marks an
        unmeasured reflection (left to the flipped map, like F(000)).
    n : int, optional
        Grid size of the maps, n ≥ L.
    iterations : int, optional
        Cycles per start.
    starts : int, optional
        Random starts.
    delta : float, optional
        The flipping threshold in units of the map's standard deviation.
    seed : int, optional
        Seed of the random phases.
    cells : list of array_like or None, optional
        B (3, 3) cells (rows, Å); with them the amplitudes are first sharpened from atoms of B = ``b_atoms`` to
        B = ``b_keep`` (flipping needs near-atomic resolution; broad atoms defeat it), and the result carries the
        observed amplitudes with the solution's phases.
    b_atoms : float, optional
        Debye–Waller factor B of the data's atoms, Å².
    b_keep : float, optional
        B after sharpening, Å².
    start : numpy.ndarray or None, optional
        (B, m, m, m) densities whose phases start the first run instead of random ones (e.g. a network's
        prediction refined by flipping).

    Returns
    -------
    numpy.ndarray
        (B, n, n, n) normalised densities (mean 1) on the fractional grid.

    Raises
    ------
    ValueError
        A grid too small for the box.
    """
    import torch  # optional dependency (torch)

    A0 = np.asarray(amplitudes, dtype=np.float64)
    B, L = A0.shape[0], A0.shape[-1]
    H = L // 2
    sharp = None
    if cells is not None and b_atoms > b_keep:   # sharpen: atoms of B = b_keep instead of b_atoms
        sharp = np.exp(-(b_atoms - b_keep) * np.stack([_s2(c, H) for c in cells]))
        A0 = A0 / sharp
    Aobs = torch.as_tensor(np.asarray(amplitudes, dtype=np.float64)).flatten(1)
    A = torch.as_tensor(A0)
    if 2 * H + 1 > n:
        raise ValueError(f"grid n = {n} cannot hold the box H = {H}")
    ix = torch.as_tensor(np.arange(-H, H + 1) % n)
    grid_idx = (ix[:, None, None] * n * n + ix[None, :, None] * n + ix[None, None, :]).flatten()
    obs = torch.ones(L, L, L, dtype=torch.bool)
    obs[H, H, H] = False
    obs = obs.flatten()
    Aflat = A.flatten(1)[:, obs]
    valid = torch.isfinite(Aflat)            # NaN: not measured (left to the flipped map, like F(000))
    Aflat = torch.nan_to_num(Aflat, nan=0.0)
    Aobs = torch.nan_to_num(Aobs[:, obs], nan=0.0)
    known = grid_idx[obs]
    g = torch.Generator().manual_seed(int(seed))
    best_G = torch.zeros(B, known.numel(), dtype=torch.complex128)
    best_r = torch.full((B,), float("inf"), dtype=torch.float64)
    init = None
    if start is not None:   # phases of given densities (e.g. a network's prediction) start the first run
        init = torch.angle(box_amplitudes(np.asarray(start, dtype=np.float64), H).flatten(1)[:, obs])
    if not bool(valid.any(dim=1).all()):
        raise ValueError("a crystal has no measured amplitude")
    for run in range(starts):
        phase = init if (run == 0 and init is not None) else \
            torch.rand(B, known.numel(), generator=g, dtype=torch.float64) * 2 * math.pi
        F = torch.zeros(B, n * n * n, dtype=torch.complex128)
        F[:, known] = Aflat * torch.exp(1j * phase)
        F[:, 0] = 1.0
        if iterations == 0:
            best_G = F[:, known].clone()
        for it in range(iterations):
            rho = torch.fft.fftn(F.view(B, n, n, n), dim=(1, 2, 3)).real          # ρ(x) = Σ_h F(h) e^{−2πi h·x}
            d = delta * rho.flatten(1).std(dim=1).view(B, 1, 1, 1)
            rho = torch.where(rho < d, -rho, rho)
            G = torch.fft.ifftn(rho, dim=(1, 2, 3)).flatten(1)
            Gk = G[:, known]
            if it % 5 == 4 or it == iterations - 1:   # keep each crystal's best iterate by R(|F_obs|, |G|)
                r = _r_value(Aflat, torch.where(valid, Gk.abs(), 0.0))
                better = r < best_r
                best_r = torch.where(better, r, best_r)
                best_G[better] = Gk[better]
            F = torch.zeros_like(G)
            F[:, 0] = G[:, 0]
            F[:, known] = torch.where(valid, Aflat * torch.exp(1j * torch.angle(Gk)), Gk)
    # the result: the observed (unsharpened) amplitudes on the box with the best phases
    F = torch.zeros(B, n * n * n, dtype=torch.complex128)
    unsharp = torch.ones_like(Aobs) if sharp is None else torch.as_tensor(sharp.reshape(B, -1)[:, obs.numpy()])
    F[:, known] = torch.where(valid, Aobs * torch.exp(1j * torch.angle(best_G)), best_G * unsharp)
    F[:, 0] = 1.0
    rho = torch.fft.fftn(F.view(B, n, n, n), dim=(1, 2, 3)).real.clamp_min(0)
    best = rho / rho.flatten(1).mean(1).clamp_min(1e-30).view(B, 1, 1, 1)
    return best.numpy()


def powder_amplitudes(powder: np.ndarray, two_theta: np.ndarray, cell, H: int, wavelength: float = 1.5406,
                      fwhm: float = 0.25, eta: float = 0.5, tolerance: float | None = None) -> np.ndarray:
    """Amplitudes on the box h, k, l ∈ [−H, H] extracted from one powder pattern (Pawley's method).

    The cell and the peak shape are known; the peak intensities are free. Every reflection whose peak reaches
    the pattern (2θ within 20 FWHM of the measured range, in the box or not) is grouped with those the pattern
    overlaps it with (:func:`powder_groups`); the pattern is fitted, by non-negative least squares, as a sum over
    groups of an intensity times Σ over the group's reflections of LP(2θ_h) φ(2θ − 2θ_h) / (group size), φ the
    unit-area pseudo-Voigt of the data. Each reflection of the box gets an equal share of its group's intensity:
    exact for symmetry-equivalent reflections, a guess for accidental overlaps. Reflections of groups not wholly
    inside the measured range are set to 0 (a resolution cut). A powder pattern has no absolute scale and does
    not measure F(000): the largest amplitude is set to 1/2 and F(000) to 1.

    Parameters
    ----------
    powder : numpy.ndarray
        (n,) the pattern's intensities.
    two_theta : numpy.ndarray
        (n,) increasing 2θ grid, degrees.
    cell : array_like
        (3, 3) cell vectors as rows, Å (as after indexing).
    H : int
        Box half-width.
    wavelength : float, optional
        Å.
    fwhm : float, optional
        Peak full width at half maximum, degrees 2θ.
    eta : float, optional
        Lorentzian fraction of the pseudo-Voigt, 0–1.
    tolerance : float or None, optional
        Reflections closer than this in 2θ (degrees) form one group; default one grid step.

    Returns
    -------
    numpy.ndarray
        (2H+1, 2H+1, 2H+1) amplitudes, relative (F(000) = 1).
    """
    from scipy.optimize import (  # loaded on use: keeps `import xstructure` fast
        lsq_linear,
        nnls,
    )


    two_theta = np.asarray(two_theta, dtype=np.float64)
    powder = np.asarray(powder, dtype=np.float64)
    if powder.shape != two_theta.shape:
        raise ValueError(f"powder pattern of {powder.shape} points on a 2θ grid of {two_theta.shape}")
    tth, box, lab, measured = _powder_reflections(two_theta, cell, H, wavelength, tolerance, PROFILE_CUT * fwhm)
    L = 2 * H + 1
    F2 = np.zeros(L ** 3)   # beyond the measured 2θ range: 0, charge flipping's usual resolution cut
    if len(tth):
        G = int(lab.max()) + 1
        size = np.bincount(lab, minlength=G).astype(np.float64)
        prof = profile_block(two_theta, tth, np.full(len(tth), float(fwhm)), "pseudo-voigt", eta)
        design = np.zeros((G, len(two_theta)))
        np.add.at(design, lab, prof * (lorentz_polarization(tth) / size[lab])[:, None])
        try:
            intensity, _ = nnls(design.T, powder, maxiter=50 * G)
        except RuntimeError:   # nnls gave up: the bounded least-squares solver
            intensity = lsq_linear(design.T, powder, bounds=(0, np.inf)).x
        use = (box >= 0) & measured[lab]
        F2[box[use]] = intensity[lab[use]] / size[lab[use]]
    A = np.sqrt(F2)
    A *= 0.5 / max(A.max(), 1e-300)
    A = A.reshape(L, L, L)
    A[H, H, H] = 1.0
    return A


def _powder_reflections(two_theta: np.ndarray, cell, H: int, wavelength: float, tolerance: float | None,
                        margin: float):
    """The reflections (one per hkl, F(000) excluded, in or out of the box [−H, H]³) with 2θ within ``margin``
    degrees of the measured range, grouped as a powder pattern overlaps them: sorted by 2θ, a new group starts
    where the gap to the previous reflection exceeds ``tolerance`` (default: one grid step).  Returns their 2θ,
    flat index in the box (−1: outside it), group label, and per group whether it lies wholly in the range."""
    lo, hi = float(two_theta[0]), float(two_theta[-1])
    cell = np.asarray(cell, dtype=np.float64)
    g_max = 2 * math.sin(math.radians(min(hi + margin, 180.0)) / 2) / wavelength
    m = np.floor(g_max * np.linalg.norm(cell, axis=1)).astype(int) + 1    # |h_i| = |g · a_i| <= g |a_i|
    hkl = np.stack(np.meshgrid(*(np.arange(-k, k + 1) for k in m), indexing="ij"), -1).reshape(-1, 3)
    g = np.linalg.norm(hkl @ np.linalg.inv(cell).T, axis=1)
    tth = np.degrees(2 * np.arcsin(np.clip(g * wavelength / 2, 0, 1)))
    keep = (g > 0) & (g * wavelength / 2 < 1) & (tth >= lo - margin) & (tth <= hi + margin)
    hkl, tth = hkl[keep], tth[keep]
    order = np.argsort(tth)
    hkl, tth = hkl[order], tth[order]
    tol = tolerance if tolerance is not None else float(two_theta[1] - two_theta[0])
    lab = np.concatenate([[0], np.cumsum(np.diff(tth) > tol)]).astype(np.int64) if len(tth) else np.zeros(0, int)
    L = 2 * H + 1
    inbox = np.all(np.abs(hkl) <= H, axis=1)
    box = np.where(inbox, (hkl + H) @ np.array([L * L, L, 1]), -1)
    G = int(lab.max()) + 1 if len(lab) else 0
    outside = np.zeros(G, dtype=bool)
    np.logical_or.at(outside, lab, (tth < lo) | (tth > hi))
    return tth, box, lab, ~outside


def powder_groups(two_theta: np.ndarray, cell, H: int, wavelength: float = 1.5406, fwhm: float = 0.25,
                  tolerance: float | None = None) -> np.ndarray:
    """Labels of the box's reflections that a powder pattern measures together, as :func:`powder_amplitudes` groups
    them.

    Parameters
    ----------
    two_theta : numpy.ndarray
        (n,) increasing 2θ grid of the pattern, degrees.
    cell : array_like
        (3, 3) cell vectors as rows, Å.
    H : int
        Box half-width.
    wavelength : float, optional
        Å.
    fwhm : float, optional
        Peak width, degrees 2θ.
    tolerance : float or None, optional
        As for :func:`powder_amplitudes`.

    Returns
    -------
    numpy.ndarray
        (2H+1, 2H+1, 2H+1) int group labels; −1 for F(000) and for reflections of groups not wholly inside the
        measured 2θ range.
    """

    two_theta = np.asarray(two_theta, dtype=np.float64)
    _, box, lab, measured = _powder_reflections(two_theta, cell, H, wavelength, tolerance, PROFILE_CUT * fwhm)
    L = 2 * H + 1
    out = np.full(L ** 3, -1, dtype=np.int64)
    use = (box >= 0) & measured[lab]
    out[box[use]] = lab[use]
    return out.reshape(L, L, L)


def cell_contents(composition: np.ndarray, f000: float) -> np.ndarray:
    """The cell's atomic numbers from the composition and F(000).

    N = F(000) / mean Z, with F(000) = Σ Z the square root of the box's central intensity ``|F(000)|²``.

    Parameters
    ----------
    composition : array_like
        Fraction of atoms per atomic number, indexed by Z (e.g. from :func:`composition`).
    f000 : float
        F(000) in electrons (Z units).

    Returns
    -------
    numpy.ndarray
        (N,) atomic numbers, heaviest first.

    Raises
    ------
    ValueError
        An empty composition, or F(000) not positive or too small for one atom.
    """
    comp = np.asarray(composition, dtype=np.float64)
    zs = np.nonzero(comp > 0)[0]
    if len(zs) == 0 or not np.isfinite(f000) or f000 <= 0:
        raise ValueError("cell contents need a composition with at least one element and F(000) > 0")
    n_atoms = f000 / float((comp[zs] * zs).sum() / comp[zs].sum())
    counts = np.round(comp[zs] / comp[zs].sum() * n_atoms).astype(int)
    if counts.sum() < 1:
        raise ValueError(f"F(000) = {f000:g} is too small for one atom of this composition")
    return np.repeat(zs, counts)[::-1].copy()


def _half_box(H: int) -> np.ndarray:
    """(M, 3) the reflections of the box [−H, H]³ with h > 0 in lexicographic order (one of each Friedel pair)."""
    hkl = _box_hkl(H)
    return hkl[(hkl[:, 0] > 0) | ((hkl[:, 0] == 0) & ((hkl[:, 1] > 0) | ((hkl[:, 1] == 0) & (hkl[:, 2] > 0))))]


def _map_atoms(g: np.ndarray, count: int, rng) -> np.ndarray:
    """(count, 3) fractional positions of a map's highest local maxima (random positions if it has fewer)."""
    idx, h = density_peaks(g, rel=0.0)
    frac = idx[np.argsort(h)[::-1][:count]] / np.array(g.shape)
    if len(frac) < count:
        frac = np.concatenate([frac, rng.random((count - len(frac), 3))])
    return frac


def refine_atoms(frac, numbers, amplitudes: np.ndarray, cells, b_atoms: float, steps: int = 80,
                 lr: float = 5e-3, groups=None):
    """Atom positions refined against observed amplitudes, batched over crystals (least squares on ``|F|``).

    Minimises Σ_h (``|F_obs|`` − k ``|F_calc|``)² over one of each Friedel pair (k the least-squares scale) with
    Adam on the fractional coordinates.

    Parameters
    ----------
    frac : list of array_like
        Per crystal, (N, 3) starting fractional positions.
    numbers : list of array_like
        Per crystal, (N,) atomic numbers: the scattering weights, as in the data (Z, with B = ``b_atoms``).
    amplitudes : numpy.ndarray
        (B, L, L, L) observed ``|F|/F(000)`` on the boxes; NaN: not measured.
    cells : list of array_like
        B (3, 3) cells (rows, Å).
    b_atoms : float
        Debye–Waller factor B of the atoms, Å².
    steps : int, optional
        Adam steps.
    lr : float, optional
        Adam's learning rate, in fractional coordinates.
    groups : numpy.ndarray or None, optional
        (B, L, L, L) integer labels of reflections measured together (a powder pattern's overlapped peaks,
        :func:`powder_groups`; −1: not measured); then the fit is to each group's √Σ``|F|²`` instead.

    Returns
    -------
    frac : list of numpy.ndarray
        Per crystal, (N, 3) refined fractional positions.
    r : numpy.ndarray
        (B,) R-factors over the reflections (or groups); inf when nothing is measured.
    """
    import torch  # optional dependency (torch)

    A = np.asarray(amplitudes, dtype=np.float64)
    B, L = A.shape[0], A.shape[-1]
    H = L // 2
    hkl = _half_box(H)
    flat = (hkl + H) @ np.array([L * L, L, 1])
    nmax = max(len(z) for z in numbers)
    X = torch.zeros(B, nmax, 3, dtype=torch.float64)
    W = torch.zeros(B, nmax, dtype=torch.float64)
    for k, (x, z) in enumerate(zip(frac, numbers)):
        X[k, :len(z)] = torch.as_tensor(np.ascontiguousarray(x, dtype=np.float64))
        W[k, :len(z)] = torch.as_tensor(np.ascontiguousarray(z, dtype=np.float64))
    dw = torch.as_tensor(np.stack([np.exp(-b_atoms * _s2(c, H)).reshape(-1)[flat] for c in cells]))
    Fo = torch.as_tensor(A.reshape(B, -1)[:, flat])
    valid = torch.isfinite(Fo)
    Fo = torch.nan_to_num(Fo, nan=0.0)
    if groups is not None:   # (B, M) labels; the unmeasured and the padding go to one extra, ignored label
        gid = np.asarray(groups).reshape(B, -1)[:, flat].astype(np.int64)
        G = int(gid.max()) + 2
        gid = torch.as_tensor(np.where(gid < 0, G - 1, gid))
        valid &= gid < G - 1

        def grouped(F):   # √Σ|F|² per group (the last, ignored group set to 0)
            sq = torch.zeros(B, G, dtype=F.dtype).scatter_add(1, gid, torch.where(valid, F * F, 0.0))
            return torch.sqrt(sq[:, :-1] + 1e-20)

        Fo = grouped(Fo)
    else:
        def grouped(F):
            return F
    h = torch.as_tensor(2 * math.pi * np.arange(-H, H + 1), dtype=torch.float64)
    idx = torch.as_tensor(flat)
    X.requires_grad_(True)
    opt = torch.optim.Adam([X], lr=lr)

    def f_calc():
        # F(h, k, l) = Σ_j W_j e^{2πi h x_j} e^{2πi k y_j} e^{2πi l z_j}: the box as one batched matrix product
        e = torch.polar(torch.ones_like(X)[..., None].expand(-1, -1, -1, L), X[..., None] * h)   # (B, N, 3, L)
        exy = (e[:, :, 0, :, None] * e[:, :, 1, None, :]).flatten(2) * W[..., None]              # (B, N, L²)
        F = torch.bmm(exy.transpose(1, 2), e[:, :, 2]).flatten(1)[:, idx]                       # (B, M)
        return torch.where(valid, F.abs() * dw / W.sum(1, keepdim=True), 0.0)

    for _ in range(steps):
        Fc = grouped(f_calc())
        k = ((Fo * Fc).sum(1, keepdim=True) / (Fc * Fc).sum(1, keepdim=True).clamp_min(1e-300)).detach()
        loss = ((Fo - k * Fc) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        R = _r_value(Fo, grouped(f_calc()))
        R = torch.where(valid.any(1), R, float("inf"))   # nothing measured: no fit, never "solved"
    X = X.detach().numpy() % 1.0
    return [X[k, :len(z)] for k, z in enumerate(numbers)], R.numpy()


def solve_atoms(amplitudes: np.ndarray, cells, numbers, b_atoms: float, starts: int = 9, r_done: float = 0.02,
                start=None, seed: int = 0, n: int = 24, flip: dict | None = None, refine: dict | None = None,
                model_start: bool = True, groups=None, progress: bool = False) -> dict:
    """Charge flipping, then an atom model refined against the amplitudes: what a crystallographer does after
    phasing.

    For each of ``starts`` charge-flipping runs, the flipped map's highest peaks become the cell's atoms
    (``numbers``, heaviest on the highest peak; see :func:`cell_contents`), and :func:`refine_atoms` moves them to
    fit the observed amplitudes. Each crystal keeps its lowest-R model; a crystal whose R falls below ``r_done``
    is solved and skips the remaining runs. The first run starts from the phases of ``start`` densities (e.g. a
    network's prediction) if given, else from random phases; later runs alternate between random phases and
    (``model_start``) the phases of the best model so far, so that a partly right model is completed by the next
    flipping run.

    Parameters
    ----------
    amplitudes : numpy.ndarray
        (B, L, L, L) observed ``|F|/F(000)`` on the boxes (NaN: not measured).
    cells : list of array_like
        B (3, 3) cells (rows, Å).
    numbers : list of array_like
        Per crystal, the (N,) atomic numbers of the cell's atoms.
    b_atoms : float
        Debye–Waller factor B of the data's atoms, Å².
    starts : int, optional
        At most this many flipping runs per crystal.
    r_done : float, optional
        A crystal is solved when its model's R falls below this.
    start : numpy.ndarray or None, optional
        (B, m, m, m) densities whose phases start the first run.
    seed : int, optional
        Seed of the random phases and peak choices.
    n : int, optional
        Grid size of the flipped maps and of the returned densities.
    flip : dict or None, optional
        Options of :func:`charge_flip` (``iterations``, ``b_keep``, ``delta``).
    refine : dict or None, optional
        Options of :func:`refine_atoms` (``steps``, ``lr``).
    model_start : bool, optional
        Let every other run start from the phases of the best model so far.
    groups : numpy.ndarray or None, optional
        Fit overlapped reflections as groups (see :func:`refine_atoms`), for amplitudes from a powder pattern.
    progress : bool, optional
        Print each run's number of unsolved crystals.

    Returns
    -------
    dict
        ``"frac"``: per crystal (N, 3) fractional positions; ``"numbers"``: per crystal (N,); ``"r"``: (B,)
        R-factors; ``"runs"``: (B,) runs used; ``"density"``: (B, n, n, n) normalised Gaussian-atom densities of
        the models (σ from ``b_atoms``).

    Raises
    ------
    ValueError
        Mismatched numbers of boxes, compositions and cells, or ``starts`` < 1.
    """

    A = np.asarray(amplitudes, dtype=np.float64)
    B = A.shape[0]
    numbers = [np.sort(np.asarray(z))[::-1].copy() for z in numbers]   # heaviest first, onto the highest peaks
    if len(numbers) != B or len(cells) != B:
        raise ValueError(f"{B} amplitude boxes but {len(numbers)} compositions and {len(cells)} cells")
    if starts < 1:
        raise ValueError(f"solve_atoms needs at least one charge-flipping run, got starts = {starts}")
    flip = {"iterations": 200, "b_keep": 3.0, "delta": 0.9,
            **{k: v for k, v in (flip or {}).items() if k not in ("starts", "n")}}   # one run at a time, on n³
    rng = np.random.default_rng(seed)
    sigma = math.sqrt(b_atoms / (8 * math.pi ** 2))

    def model_density(k):
        return normalised_density(density_grid(cell_atoms(cells[k], best_frac[k], numbers[k]), (n, n, n), sigma))

    best_frac = [None] * B
    best_r = np.full(B, np.inf)
    runs = np.zeros(B, dtype=int)
    for run in range(starts):
        todo = np.nonzero(~(best_r < r_done))[0]
        if len(todo) == 0:
            break
        if progress:
            print(f"charge flipping run {run + 1}/{starts}: {len(todo)} crystals")
        if run == 0:
            init = None if start is None else np.asarray(start)[todo]
        elif run % 2 == 0 and model_start:   # from the phases of the best model so far (model completion)
            init = np.stack([model_density(k) for k in todo])
        else:
            init = None
        maps = charge_flip(A[todo], n=n, starts=1, seed=1000 * seed + run, cells=[cells[k] for k in todo],
                           b_atoms=b_atoms, start=init, **flip)
        frac0 = [_map_atoms(m, len(numbers[k]), rng) for m, k in zip(maps, todo)]
        frac, r = refine_atoms(frac0, [numbers[k] for k in todo], A[todo], [cells[k] for k in todo], b_atoms,
                               groups=None if groups is None else np.asarray(groups)[todo], **(refine or {}))
        runs[todo] += 1
        for j, k in enumerate(todo):
            if best_frac[k] is None or r[j] < best_r[k]:
                best_r[k], best_frac[k] = r[j], frac[j]
    return {"frac": best_frac, "numbers": numbers, "r": best_r, "runs": runs,
            "density": np.stack([model_density(k) for k in range(B)])}
