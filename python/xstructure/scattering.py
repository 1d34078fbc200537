"""Isotropic scattering of molecules in the Independent Atom Model: :func:`simulate`.

For atoms i with form factors f_i(q) at distances r_ij (Debye 1915),

    I_at(q)    = Σ_i f_i(q)²
    I_mol(q)   = Σ_{i≠j} f_i(q) f_j(q) sin(q r_ij) / (q r_ij)
    I_total(q) = I_at(q) + I_mol(q)
    sM(q)      = q I_mol(q) / I_at(q)            (the modified molecular scattering of electron diffraction)

with q = 4π sinθ/λ in Å⁻¹.  Units: electrons² (X-ray) or Å² (electron), sM in Å⁻¹ × those over those.
The limits are exact: sin(x)/x = 1 at q = 0 and for coincident atoms (r_ij = 0).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, fields, replace

import numpy as np

from . import _backend
from ._validate import check_q
from .factors import form_factor_table, incoherent_scattering_function
from .structures import Batch, atomic_numbers, to_batches

__all__ = ["simulate", "register_target", "DebyeTables", "debye_tables", "PROBES", "SIGNALS", "signal_label"]

PROBES = ("xray", "electron")
SIGNALS = ("total", "atomic", "molecular", "sM")
_SYMBOLS = {"total": r"I_{\mathrm{tot}}", "atomic": r"I_{\mathrm{at}}", "molecular": r"I_{\mathrm{mol}}", "sM": "sM"}
_UNITS = {"xray": "electrons²", "electron": "Å²"}


def signal_label(probe: str, signal: str, *, q_weighted: bool = False, delta: bool = False) -> str:
    r"""A signal's symbol (matplotlib mathtext) and unit, as an axis label.

    Parameters
    ----------
    probe : {'xray', 'electron'}
        As in :func:`simulate`.
    signal : {'total', 'atomic', 'molecular', 'sM'}
        As in :func:`simulate`.
    q_weighted : bool, optional
        The signal times q (the molecular intensity falls off like 1/q; q·I_mol(q) keeps its oscillations'
        size at high q).
    delta : bool, optional
        A difference (Δ) of the signal.

    Returns
    -------
    str
        e.g. ``"$I_{\mathrm{tot}}(q)$ (electrons²)"``, ``"$q\,I_{\mathrm{mol}}(q)$ (electrons² Å⁻¹)"``,
        ``"$sM(q)$ (Å⁻¹)"``.
    """
    if probe not in _UNITS or signal not in _SYMBOLS:
        raise ValueError(f"probe must be one of {PROBES} and signal one of {SIGNALS}, got {probe!r}, {signal!r}")
    sym = (r"\Delta " if delta else "") + _SYMBOLS[signal]
    if signal == "sM":
        return f"${sym}(q)$ (Å⁻¹)"
    unit = _UNITS[probe]
    if q_weighted:
        return f"$q\\,{sym}(q)$ ({'Å' if probe == 'electron' else unit + ' Å⁻¹'})"
    return f"${sym}(q)$ ({unit})"


@dataclass
class DebyeTables:
    """What the Debye kernel needs for one molecule, signal and q grid (all float64 numpy).

    The kernel computes out[b, k] = beta[k] + Σ_p H[p, k] Σ_{pairs of type p} sin(q_k r)/r, with r in Å.

    Parameters
    ----------
    species : numpy.ndarray
        (N,) int32 index of each atom's element into the molecule's distinct elements.
    q : numpy.ndarray
        (Q,) momentum transfer in Å⁻¹.
    H : numpy.ndarray
        (P, Q) weights of the pair types (P = E (E + 1) / 2 for E elements), in the signal's unit times Å.
    beta : numpy.ndarray
        (Q,) the geometry-free part of the signal (I_at for ``"total"``, the q = 0 column), in the signal's unit.
    i_atomic : numpy.ndarray
        (Q,) the atomic scattering I_at = Σ_i f_i² (electrons² or Å²).
    uniform : bool
        Whether q is a uniform grid (the kernel then uses its rotation recurrence).
    q0, dq : float
        First point and step of a uniform grid, Å⁻¹.
    """

    species: np.ndarray   # (N,) int32
    q: np.ndarray         # (Q,)
    H: np.ndarray         # (P, Q)
    beta: np.ndarray      # (Q,)
    i_atomic: np.ndarray  # (Q,)
    uniform: bool
    q0: float
    dq: float


def _uniform_grid(q: np.ndarray) -> tuple[bool, float, float]:
    if q.size == 0:
        return False, 0.0, 0.0
    if q.size == 1:
        return True, float(q[0]), 0.0
    q0 = float(q[0])
    dq = (float(q[-1]) - q0) / (q.size - 1)
    grid = q0 + dq * np.arange(q.size)
    ok = bool(np.max(np.abs(grid - q)) <= 1e-12 * max(1.0, float(np.max(np.abs(q)))))
    return ok, q0, dq


def debye_tables(numbers, q, probe: str = "xray", signal: str = "total",
                 energy_kev: float | None = None, compton: bool = False) -> DebyeTables:
    """Fold the form factors and the signal's definition into the kernel's weights.

    For I_mol = Σ_{i≠j} f_i f_j sinc(q r) = Σ_p 2 F_p(q) Σ_{i<j ∈ p} sin(q r)/(q r), a signal α(q) I_mol + β(q)
    has H_p = 2 α F_p / q (0 at q = 0) and beta = β plus, at q = 0, the geometry-free value α Σ_p 2 F_p n_p
    (n_p pairs of type p).

    Parameters
    ----------
    numbers : array_like
        (N,) atomic numbers.
    q : array_like
        (Q,) momentum transfer in Å⁻¹.
    probe : {'xray', 'electron'}, optional
        X-ray form factors (electrons) or electron amplitudes (Å).
    signal : {'total', 'atomic', 'molecular', 'sM'}, optional
        The signal, as for :func:`simulate`.
    energy_kev : float or None, optional
        Electron kinetic energy in keV for the relativistic factor.
    compton : bool, optional
        Add the incoherent X-ray scattering to ``"total"`` (needs xraylib).

    Returns
    -------
    DebyeTables
        The kernel's weights: a copy of the tables kept for the last 32 (molecule, grid, probe, signal) asked for,
        so that iterative fits do not fold the form factors again at every step.

    Raises
    ------
    ValueError
        An unknown probe or signal, or ``compton`` with another probe or signal.
    """
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}: use one of {PROBES}")
    if signal not in SIGNALS:
        raise ValueError(f"unknown signal {signal!r}: use one of {SIGNALS}")
    if compton and (probe != "xray" or signal != "total"):
        raise ValueError("Compton (incoherent) scattering (--compton, compton=True) is added to the X-ray total "
                         f"signal only (probe 'xray', signal 'total'), not to probe {probe!r}, signal {signal!r}")
    q = np.ascontiguousarray(q, dtype=np.float64)
    z = atomic_numbers(numbers)
    key = (z.tobytes(), q.tobytes(), probe, signal, energy_kev, bool(compton))
    with _TABLES_LOCK:
        tables = _TABLES.get(key)
        if tables is not None:
            _TABLES.move_to_end(key)
    if tables is None:
        tables = _make_tables(z, q.copy(), probe, signal, energy_kev, compton)
        with _TABLES_LOCK:
            _TABLES[key] = tables
            while len(_TABLES) > _TABLES_KEPT:
                _TABLES.popitem(last=False)
    # a copy: the caller may modify it, the cached one stays as computed
    return replace(tables, **{f.name: getattr(tables, f.name).copy() for f in fields(tables)
                              if isinstance(getattr(tables, f.name), np.ndarray)})


# The tables of the last few (molecule, grid, signal) asked for: iterative fits (Gauss–Newton steps, refinements)
# ask for the same ones at every step, and folding the form factors costs about half a millisecond each time.
_TABLES: OrderedDict = OrderedDict()
_TABLES_KEPT = 32
_TABLES_LOCK = threading.Lock()


def _make_tables(numbers, q, probe, signal, energy_kev, compton) -> DebyeTables:
    elements, species, f = form_factor_table(numbers, q, probe, energy_kev)
    E = f.shape[0]
    counts = np.bincount(species, minlength=E).astype(np.float64)
    i_at = counts @ (f * f)
    a_idx, b_idx = np.triu_indices(E)                       # pair types in kernel order
    F = f[a_idx] * f[b_idx]                                 # (P, Q)
    n_pairs = np.where(a_idx == b_idx, counts[a_idx] * (counts[a_idx] - 1) / 2, counts[a_idx] * counts[b_idx])
    if signal == "sM":
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.where(i_at > 0, q / i_at, 0.0)
        beta = np.zeros_like(q)
    elif signal == "total":
        alpha, beta = np.ones_like(q), i_at.copy()
        if compton:
            beta += counts @ np.stack([incoherent_scattering_function(int(z), q) for z in elements])
    else:  # molecular (atomic never reaches the kernel)
        alpha, beta = np.ones_like(q), np.zeros_like(q)
    with np.errstate(divide="ignore", invalid="ignore"):
        H = np.where(q > 0, 2.0 * alpha * F / np.where(q > 0, q, 1.0), 0.0)
    at0 = q == 0
    if np.any(at0):
        beta[at0] += alpha[at0] * (2.0 * n_pairs @ F[:, at0])
    uniform, q0, dq = _uniform_grid(q)
    return DebyeTables(species.astype(np.int32), q, np.ascontiguousarray(H), np.ascontiguousarray(beta),
                       i_at, uniform, q0, dq)


def _float_dtype(positions) -> str:
    name = str(getattr(positions, "dtype", "float64")).replace("torch.", "")
    return "float32" if name == "float32" else "float64"


def _prepare_chunk(chunk, dtype_name: str):
    """Contiguous, float, finite; raises ValueError on NaN/inf."""
    chunk = _backend.contiguous(chunk, dtype_name)
    if not _backend.all_finite(chunk):
        raise ValueError("positions contain NaN or inf")
    return chunk


def as_q(q) -> np.ndarray:
    """q (Q,) in Å⁻¹ from any array kind, as float64 numpy; ValueError for bad shape, emptiness or values."""
    q = _backend.to_numpy(q, np.float64)
    if q.ndim != 1:
        raise ValueError(f"q must have shape (Q,), got {q.shape}")
    if q.size == 0:
        raise ValueError("q is empty")
    return check_q(q)


def _run_batch(batch: Batch, q: np.ndarray, out_rows, probe, signal, energy_kev, compton, chunk_size, num_threads,
               bar):
    """Fill out_rows(start, stop) -> writable (stop-start, Q) view for every chunk of the batch."""
    tables = debye_tables(batch.numbers, q, probe, signal, energy_kev, compton)
    pos = batch.positions
    B = int(pos.shape[0])
    dtype_name = _float_dtype(pos)
    dev = None
    for start in range(0, B, chunk_size):
        stop = min(B, start + chunk_size)
        chunk = _prepare_chunk(pos[start:stop], dtype_name)
        if dev is None:
            dev = {k: _backend.to_like(getattr(tables, k), chunk) for k in ("species", "q", "H", "beta", "i_atomic")}
        out = out_rows(start, stop)
        if signal == "atomic":
            out[...] = dev["i_atomic"][None, :]
        else:
            _backend.debye_forward(chunk, dev["species"], dev["q"], dev["H"], dev["beta"], out,
                                   uniform=tables.uniform, q0=tables.q0, dq=tables.dq, num_threads=num_threads)
        if bar is not None:
            bar.update(stop - start)


_TARGETS: dict = {}


def register_target(kind: type, target) -> None:
    """Let :func:`simulate` take instances of ``kind`` in place of a q grid.

    ``target(structures, q, *, probe, signal, energy_kev, num_threads, **options)`` computes the patterns;
    :mod:`xstructure.detector` registers :class:`~xstructure.Geometry` this way (2D detector images), so that
    this layer needs to know nothing of detectors.

    Parameters
    ----------
    kind : type
        The class of the objects passed as ``q``.
    target : callable
        The function that simulates patterns on such an object.
    """
    if not isinstance(kind, type) or not callable(target):
        raise TypeError("register_target takes a class and a callable")
    _TARGETS[kind] = target


def simulate(structures, q, *, probe: str | None = None, signal: str = "total", energy_kev: float | None = None,
             compton: bool = False, chunk_size: int = 16384, progress: bool = False, num_threads: int = 0,
             **detector):
    """Scattering patterns of molecules in the Independent Atom Model (the Debye formula).

    For atoms i with form factors f_i(q) at distances r_ij, orientationally averaged,
    I_at = Σ_i f_i², I_mol = Σ_{i≠j} f_i f_j sin(q r_ij)/(q r_ij), I_total = I_at + I_mol and
    sM = q I_mol / I_at.

    Parameters
    ----------
    structures : ase.Atoms, list, str, os.PathLike or tuple
        An ``ase.Atoms``; a list of them (different molecules allowed); a path to any file ase.io reads (every
        frame is used); or a tuple ``(numbers, positions)`` with numbers (N,) atomic numbers or symbols and
        positions (N, 3) or (B, N, 3) in Å as a numpy, torch or cupy array, or any sliceable array-like such as an
        h5py/zarr dataset (read chunk by chunk).
    q : array_like or Geometry
        (Q,) momentum transfer q = 4π sin θ / λ in Å⁻¹, 0 ≤ q ≤ 75.4; uniform grids take the fast path.
        Or a :class:`~xstructure.Geometry`: then 2D detector images are returned, (n1, n2) or (B, n1, n2)
        float64 numpy, isotropic, aligned (photoselected) or in a fixed orientation, with polarisation, solid
        angle and optional Poisson noise (see :func:`~xstructure.detector.patterns.simulate_detector`).
    probe : {'xray', 'electron'} or None, optional
        ``"xray"`` (Waasmaier–Kirfel f₀, intensities in electrons²) or ``"electron"`` (Mott–Bethe amplitudes,
        intensities in Å²). Default: ``"xray"``, or the geometry's probe for a Geometry.
    signal : {'total', 'atomic', 'molecular', 'sM'}, optional
        I_at + I_mol, I_at, I_mol, or sM = q I_mol / I_at (in Å⁻¹).
    energy_kev : float or None, optional
        Electron kinetic energy in keV; scales electron amplitudes by γ = 1 + E/(m_e c²) (sM is unchanged).
    compton : bool, optional
        X-ray ``"total"`` only: add the incoherent scattering Σ_i S(q, Z_i) (Hubbell et al. 1975; needs
        xraylib).
    chunk_size : int, optional
        Geometries per kernel call; memory beyond the output stays O(chunk_size · N).
    progress : bool, optional
        Show a progress bar over geometries.
    num_threads : int, optional
        CPU threads (0: OpenMP's default, e.g. ``OMP_NUM_THREADS``).
    **detector
        With a Geometry: the keyword arguments of
        :func:`~xstructure.detector.patterns.simulate_detector` (``orientation``, ``axis``, ``dipole``, ``p2``,
        ``p4``, ``polarization``, ``photons``, ``background``, ``gain``, ``rng``, ...).

    Returns
    -------
    numpy.ndarray, torch.Tensor or cupy.ndarray
        (Q,) for one structure, else (B, Q): electrons² (X-rays), Å² (electrons) or Å⁻¹ (sM). float32 for
        float32 positions, else float64 (the kernel accumulates in float64 either way); numpy for numpy, file or
        Atoms input, torch or cupy on the input's device for torch or cupy input.

    Raises
    ------
    ValueError
        An unknown element, NaN/inf coordinates, wrong shapes, negative or out-of-range q, an empty structure,
        an unknown probe or signal, or an unreadable file.

    Examples
    --------
    >>> import numpy as np, xstructure
    >>> q = np.linspace(0.5, 12, 500)
    >>> I = xstructure.simulate(xstructure.molecule("NMM"), q, probe="xray", signal="total")
    >>> I.shape
    (500,)
    """
    for kind, target in _TARGETS.items():
        if isinstance(q, kind):
            if compton:
                raise ValueError(f"compton=True is not available for {kind.__name__} targets yet")
            return target(structures, q, probe=probe, signal=signal, energy_kev=energy_kev,
                          num_threads=num_threads, **detector)
    if detector:
        raise TypeError(f"simulate() got detector options {sorted(detector)} but q is not a Geometry")
    probe = "xray" if probe is None else probe
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}: use one of {PROBES}")
    if signal not in SIGNALS:
        raise ValueError(f"unknown signal {signal!r}: use one of {SIGNALS}")
    if int(chunk_size) < 1:
        raise ValueError("chunk_size must be >= 1")
    q = as_q(q)

    batches, n_rows, single = to_batches(structures)
    for b in batches:
        if b.positions.shape[0] == 0:
            raise ValueError("positions hold no geometries (B = 0)")
    first = batches[0].positions
    dtype_name = _float_dtype(first)
    out = _backend.empty_like(first, (n_rows, q.size), dtype_name)

    bar = None
    if progress:
        from tqdm.auto import tqdm  # loaded on use: keeps `import xstructure` fast

        bar = tqdm(total=n_rows, unit="pattern", desc=f"simulate {probe}/{signal}")
    try:
        for b in batches:
            contiguous = np.array_equal(b.rows, np.arange(b.rows[0], b.rows[0] + len(b.rows)))
            if contiguous:
                r0 = int(b.rows[0])

                def rows(start, stop, r0=r0):
                    return out[r0 + start:r0 + stop]
            else:
                part = _backend.empty_like(first, (len(b.rows), q.size), dtype_name)

                def rows(start, stop, part=part):
                    return part[start:stop]
            _run_batch(b, q, rows, probe, signal, energy_kev, compton, int(chunk_size), num_threads, bar)
            if not contiguous:
                out[_backend.to_like(b.rows, out)] = part
    finally:
        if bar is not None:
            bar.close()
    return out[0] if single else out
