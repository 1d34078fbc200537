"""Atomic scattering factors from published tables.

X-rays
    f0(q) of neutral atoms H–Cf and common ions from the five-Gaussian fits of Waasmaier & Kirfel,
    Acta Cryst. A51 (1995) 416–431, as shipped by ``periodictable`` (DABAX ``f0_WaasKirf.dat``):
    f0(s) = c + Σ_{i=1..5} a_i exp(-b_i s²), s = sinθ/λ = q/4π, valid for s ≤ 6 Å⁻¹ (q ≤ 75.4 Å⁻¹).
    Unit: electrons.

X-ray incoherent (Compton) scattering
    The incoherent scattering function S(s, Z) of Hubbell, Veigele, Briggs, Brown, Cromer & Howerton,
    J. Phys. Chem. Ref. Data 4 (1975) 471, as tabulated by xraylib (``SF_Compt``; optional dependency).
    The incoherent intensity of a molecule in the IAM is Σ_i S(s, Z_i) in electron units (no Breit–Dirac
    recoil factor applied).

Electrons
    First-Born amplitudes from the Mott–Bethe formula applied to the same fit,
    f_e(q) = (2 / a0) (Z − f0(q)) / q²   [Å],  a0 the Bohr radius in Å,
    with Z = c + Σ a_i imposed (neutral atom), so that Z − f0(q) = Σ a_i (1 − exp(−b_i s²)) and the
    q → 0 limit is finite and exact for the fit: f_e(0) = (2 / a0) Σ a_i b_i / (16π²).
    Optionally multiplied by the relativistic factor γ = 1 + E / (m_e c²) for electrons of kinetic
    energy E (International Tables for Crystallography Vol. C, §4.3.1).

q is the momentum transfer 4π sinθ / λ in Å⁻¹ throughout.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ._validate import Q_MAX, check_q

__all__ = [
    "Q_MAX",
    "A0",
    "ELECTRON_REST_KEV",
    "atomic_number",
    "symbol",
    "xray_form_factor",
    "electron_form_factor",
    "relativistic_factor",
    "electron_wavelength",
    "form_factor_table",
    "incoherent_scattering_function",
]

#: Largest q (Å⁻¹) where the Waasmaier–Kirfel fits hold: s = sinθ/λ ≤ 6 Å⁻¹.

#: Bohr radius in Å (CODATA 2018).
A0 = 0.529177210903
#: Electron rest energy m_e c² in keV (CODATA 2018).
ELECTRON_REST_KEV = 510.99895000

_SYMBOLS = (
    "X H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn Ga Ge As Se Br Kr "
    "Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb "
    "Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf"
).split()
#: Heaviest element with a Waasmaier–Kirfel fit (californium).
Z_MAX = len(_SYMBOLS) - 1


def atomic_number(element) -> int:
    """Atomic number of an element.

    Parameters
    ----------
    element : str or int
        A symbol (``"C"``, ``"fe"``; case-insensitive) or an atomic number, H to Cf (1–98).

    Returns
    -------
    int
        The atomic number Z.

    Raises
    ------
    ValueError
        An unknown symbol or a number outside 1–98.
    """
    if isinstance(element, (int, np.integer)) and not isinstance(element, bool):
        z = int(element)
        if 1 <= z <= Z_MAX:
            return z
        raise ValueError(f"unknown element: atomic number {z} (the form-factor tables cover 1..{Z_MAX}, H to Cf)")
    if isinstance(element, str):
        name = element.strip()
        sym = name[:1].upper() + name[1:].lower()
        if sym in _SYMBOLS[1:]:
            return _SYMBOLS.index(sym)
        raise ValueError(f"unknown element: {element!r} (the form-factor tables cover H to Cf)")
    raise ValueError(f"unknown element: {element!r} (give a symbol such as 'C' or an atomic number)")


def symbol(z: int) -> str:
    """Element symbol of an atomic number.

    Parameters
    ----------
    z : int
        Atomic number, 1–98.

    Returns
    -------
    str
        The symbol, e.g. ``"C"`` for 6.
    """
    return _SYMBOLS[atomic_number(z)]


@lru_cache(maxsize=None)
def wk_coefficients(name: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(a, b, c) of the Waasmaier–Kirfel fit for an element or ion ('Fe', 'Fe2+', 'O1-', 26)."""
    from periodictable import (
        cromermann,  # loaded on use: keeps `import xstructure` fast
    )

    key = name
    if key[-1:] in "+-" and not key[-2:-1].isdigit():  # 'Na+' -> 'Na1+'
        key = key[:-1] + "1" + key[-1]
    try:
        f = cromermann.getCMformula(key)
    except KeyError:
        raise ValueError(f"unknown element or ion: {name!r} (no Waasmaier-Kirfel coefficients)") from None
    return np.asarray(f.a, dtype=np.float64), np.asarray(f.b, dtype=np.float64), float(f.c)


def factor_key(element) -> str:
    if isinstance(element, str) and element[-1:] in "+-":
        return element.strip()
    return symbol(atomic_number(element))


def xray_form_factor(element, q) -> np.ndarray:
    """X-ray atomic form factor f₀(q) in electrons (Waasmaier & Kirfel 1995).

    Parameters
    ----------
    element : str or int
        Symbol (``"C"``), atomic number (6) or ion (``"Fe2+"``, ``"O1-"``).
    q : array_like
        Momentum transfer q = 4π sin θ / λ in Å⁻¹, any shape, 0 ≤ q ≤ 75.4 (s = q/4π ≤ 6 Å⁻¹, the fit's range).

    Returns
    -------
    numpy.ndarray
        f₀ in electrons, float64, shaped like ``q``.

    Raises
    ------
    ValueError
        An unknown element or ion, or q negative, non-finite or beyond 75.4 Å⁻¹.
    """
    q = check_q(q)
    return xray_f0_s2(factor_key(element), (q / (4 * np.pi)) ** 2)


def xray_f0_s2(key: str, s2) -> np.ndarray:
    """Waasmaier–Kirfel f0 at s² = (sinθ/λ)², no range check (beyond s = 6 the fit is extrapolated)."""
    a, b, c = wk_coefficients(key)
    return c + np.sum(a * np.exp(-np.multiply.outer(s2, b)), axis=-1)


def relativistic_factor(energy_kev: float) -> float:
    """The relativistic mass factor γ = 1 + E / (m_e c²) of electrons.

    Parameters
    ----------
    energy_kev : float
        Kinetic energy E in keV (> 0); m_e c² = 510.99895 keV.

    Returns
    -------
    float
        γ (dimensionless, ≥ 1).
    """
    e = float(energy_kev)
    if not np.isfinite(e) or e <= 0:
        raise ValueError(f"electron energy must be a positive number of keV, got {energy_kev!r}")
    return 1.0 + e / ELECTRON_REST_KEV


def electron_wavelength(energy_kev: float) -> float:
    """Relativistic de Broglie wavelength of electrons.

    Parameters
    ----------
    energy_kev : float
        Kinetic energy E in keV (> 0).

    Returns
    -------
    float
        λ = hc / √(E (E + 2 m_e c²)) in Å (0.0197 Å at 300 keV).
    """
    e = float(energy_kev)
    if not np.isfinite(e) or e <= 0:
        raise ValueError(f"electron energy must be a positive number of keV, got {energy_kev!r}")
    hc_kev_a = 12.398419843320026  # h c in keV Å
    return hc_kev_a / np.sqrt(e * (e + 2 * ELECTRON_REST_KEV))


def electron_form_factor(element, q, energy_kev: float | None = None) -> np.ndarray:
    """Electron scattering amplitude f_e(q) in Å (Mott–Bethe from the Waasmaier–Kirfel fit).

    f_e(q) = (2 / a₀) (Z − f₀(q)) / q², with the neutral-atom condition imposed so that the q → 0 limit is finite
    and exact.

    Parameters
    ----------
    element : str or int
        Symbol or atomic number of a neutral atom (ions have no finite f_e(0)).
    q : array_like
        Momentum transfer q = 4π sin θ / λ in Å⁻¹, any shape, 0 ≤ q ≤ 75.4.
    energy_kev : float or None, optional
        Electron kinetic energy in keV; when given, f_e is multiplied by γ = 1 + E/(m_e c²).

    Returns
    -------
    numpy.ndarray
        f_e in Å, float64, shaped like ``q``, finite at q = 0.

    Raises
    ------
    ValueError
        An ion, an unknown element, or q out of range.
    """
    if isinstance(element, str) and element.strip()[-1:] in "+-":
        raise ValueError(f"electron scattering factors are for neutral atoms; got the ion {element!r}")
    q = check_q(q)
    fe = electron_fe_s2(factor_key(element), (q / (4 * np.pi)) ** 2)
    if energy_kev is not None:
        fe = fe * relativistic_factor(energy_kev)
    return fe


def electron_fe_s2(key: str, s2) -> np.ndarray:
    """Mott–Bethe f_e (Å) at s² = (sinθ/λ)² from the Waasmaier–Kirfel fit, no range check, no γ."""
    a, b, _ = wk_coefficients(key)
    x = np.multiply.outer(s2, b)  # b_i s²
    with np.errstate(invalid="ignore", divide="ignore"):
        # (1 - e^-x)/x -> 1 at x = 0; x < 0 occurs (C and others have a term with b < 0)
        g = np.where(x != 0, -np.expm1(-x) / np.where(x != 0, x, 1.0), 1.0)
    return (2.0 / A0) * np.sum(a * b * g, axis=-1) / (16 * np.pi**2)


def form_factor_table(numbers, q, probe: str = "xray", energy_kev: float | None = None):
    """Form factors of the distinct elements of a structure.

    Parameters
    ----------
    numbers : array_like
        (N,) atomic numbers.
    q : array_like
        (Q,) momentum transfer in Å⁻¹.
    probe : {'xray', 'electron'}, optional
        X-ray f₀ in electrons, or electron amplitudes f_e in Å.
    energy_kev : float or None, optional
        Electron kinetic energy in keV for the relativistic factor (``probe="electron"`` only).

    Returns
    -------
    elements : numpy.ndarray
        (E,) sorted distinct atomic numbers.
    species : numpy.ndarray
        (N,) int32 index of each atom into ``elements``.
    f : numpy.ndarray
        (E, Q) float64 form factors.
    """
    numbers = np.asarray(numbers)
    elements, species = np.unique(numbers, return_inverse=True)
    if probe == "xray":
        if energy_kev is not None:
            raise ValueError("an electron energy (--energy-kev, energy_kev=) applies to the electron probe only")
        f = np.stack([xray_form_factor(int(z), q) for z in elements]) if len(elements) else np.zeros((0, len(q)))
    elif probe == "electron":
        f = np.stack([electron_form_factor(int(z), q, energy_kev) for z in elements]) if len(elements) else (
            np.zeros((0, len(q))))
    else:
        raise ValueError(f"unknown probe {probe!r}: use 'xray' or 'electron'")
    return elements, species.astype(np.int32).reshape(-1), f


def incoherent_scattering_function(element, q) -> np.ndarray:
    """X-ray incoherent (Compton) scattering function S(q, Z), in electrons.

    From the tables of Hubbell et al. (1975) through xraylib (an optional dependency: ``pip install xraylib``).
    S → 0 as q → 0 and → Z at large q.

    Parameters
    ----------
    element : str or int
        Symbol or atomic number.
    q : array_like
        Momentum transfer in Å⁻¹, any shape.

    Returns
    -------
    numpy.ndarray
        S(q, Z), float64, shaped like ``q``.

    Raises
    ------
    ValueError
        xraylib is not installed, or q is out of range.
    """
    q = check_q(q)
    z = atomic_number(element)
    try:
        import xraylib  # optional dependency (xraylib)
    except ImportError:
        raise ValueError("Compton scattering needs the xraylib package (Hubbell et al. 1975 tables): "
                         "pip install xraylib") from None
    s = (q / (4 * np.pi)).ravel()
    out = np.array([xraylib.SF_Compt(z, float(x)) if x > 0 else 0.0 for x in s], dtype=np.float64)
    return out.reshape(q.shape)
