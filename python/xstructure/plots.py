"""Figures that the command line writes: patterns, radial profiles and powder patterns (matplotlib, Agg).

Every function returns the :class:`matplotlib.figure.Figure`. Given a ``path`` it saves the figure there and
closes it; with ``path=None`` the figure is left open for the caller to show, change or save.
"""

from __future__ import annotations

import os
import re

import numpy as np

from .crystal import powder_pattern
from .crystal.powder import WAVELENGTHS
from .scattering import PROBES, SIGNALS, signal_label

__all__ = ["MOLECULAR_Q_LABELS", "SIGNAL_LABELS", "hill_formula", "math_formula", "plot_curves", "plot_patterns",
           "plot_powder", "signal_label", "structure_title"]

#: Axis label of each (probe, signal): the quantity in mathtext and its unit.
SIGNAL_LABELS = {(p, s): signal_label(p, s) for p in PROBES for s in SIGNALS}
#: The molecular intensity falls off like 1/q: the figures show q·I_mol(q), whose oscillations keep their size.
MOLECULAR_Q_LABELS = {p: signal_label(p, "molecular", q_weighted=True) for p in PROBES}
_PROBE_NAMES = {"xray": "X-ray", "electron": "electron"}
_DPI = 150


def _pyplot():
    import sys

    import matplotlib  # plotting only: the library itself never needs matplotlib

    if "matplotlib.pyplot" not in sys.modules:   # else keep the caller's backend (switching closes its figures)
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # plotting only

    return plt


def _finish(fig, path, dpi: int = _DPI):
    """Save ``fig`` to ``path`` and close it, or leave it open when ``path`` is None; returns ``fig``."""
    if path is not None:
        import matplotlib.pyplot as plt  # plotting only

        fig.savefig(path, dpi=dpi)
        plt.close(fig)
    return fig


# -- names and formulas ------------------------------------------------------------------------------------------

def hill_formula(numbers) -> str:
    """A molecule's formula in Hill order: C, then H, then the rest alphabetically (all alphabetically without C).

    Parameters
    ----------
    numbers : array_like
        (N,) atomic numbers.

    Returns
    -------
    str
        e.g. ``"C2H6O"`` for ethanol, ``"ClNa"`` for NaCl.
    """
    from ase.data import chemical_symbols  # loaded on use: keeps `import xstructure` fast

    symbols, counts = np.unique([chemical_symbols[int(z)] for z in np.asarray(numbers).ravel()], return_counts=True)
    n = dict(zip(symbols.tolist(), counts.tolist()))
    order = (["C"] + (["H"] if "H" in n else []) + sorted(s for s in n if s not in ("C", "H"))) if "C" in n \
        else sorted(n)
    return "".join(f"{s}{n[s] if n[s] > 1 else ''}" for s in order)


def math_formula(formula: str) -> str:
    """A formula with its counts as mathtext subscripts, for figure text.

    Parameters
    ----------
    formula : str
        e.g. ``"C2H6O"``.

    Returns
    -------
    str
        e.g. ``"C$_{2}$H$_{6}$O"``.
    """
    return re.sub(r"(\d+(?:\.\d+)?)", r"$_{\1}$", formula)


def structure_title(spec: str, frames) -> str:
    """How a figure names the structures of ``xstructure simulate SPEC``: a name where there is one, and the formula.

    Parameters
    ----------
    spec : str
        What the user gave: a structure file, a built-in name (``NMM``), an ``ase.build`` name or a SMILES string.
    frames : list of ase.Atoms or of array_like
        The structures it gave, or their atomic numbers.

    Returns
    -------
    str
        e.g. ``"N-methylmorpholine (NMM), C$_{5}$H$_{11}$NO"`` for a built-in name, ``"water, H$_{2}$O"``
        style for an ase.build name, ``"C$_{2}$H$_{6}$O"`` for the SMILES ``CCO``, the file's name and the
        formula for a file.
    """
    formulas = list(dict.fromkeys(hill_formula(getattr(f, "numbers", f)) for f in frames))
    formula = ", ".join(math_formula(f) for f in formulas[:3]) + (", ..." if len(formulas) > 3 else "")
    if os.path.exists(spec):
        return f"{os.path.basename(spec)}, {formula}"
    name = _molecule_name(spec)
    return f"{name}, {formula}" if name else formula   # no name: a SMILES string, or a formula such as 'AlCl3'


def _molecule_name(spec: str) -> str | None:
    """The common name of a molecule name that :func:`~xstructure.molecule` knows ('NMM', 'CH3CH2OH', 'water'),
    from its description; None for a SMILES string or a name that is only a formula."""
    from .structures import BUILTIN_MOLECULES, molecule_names

    if spec.upper() in BUILTIN_MOLECULES:
        return f"{BUILTIN_MOLECULES[spec.upper()][1].rsplit(', ', 1)[0]} ({spec.upper()})"
    heads = {}
    for key, desc in molecule_names().items():
        head = desc.split(" (")[0].split(", ")[0].strip()
        if head and not re.fullmatch(r"([A-Z][a-z]?\d*)+", head):   # a word, not a formula
            heads[key.lower()] = heads[head.lower()] = head[0].lower() + head[1:] if head[1:].islower() else head
    return heads.get(spec.strip().lower())


def _frame_colours(plt, n: int):
    """Colours of n curves in order (viridis) and the mappable of a colour bar of their index (one band per
    index up to 20, else continuous)."""
    import matplotlib as mpl  # plotting only

    cmap = plt.get_cmap("viridis")
    norm = mpl.colors.BoundaryNorm(np.arange(n + 1) - 0.5, cmap.N) if n <= 20 else \
        mpl.colors.Normalize(vmin=0, vmax=max(n - 1, 1))
    return [cmap(norm(k)) for k in range(n)], mpl.cm.ScalarMappable(norm=norm, cmap=cmap)


def _index_colorbar(fig, ax, mappable, n: int, label: str):
    bar = fig.colorbar(mappable, ax=ax, label=label, pad=0.01)
    if n <= 20:
        bar.set_ticks(np.arange(0, n, max(1, n // 10)))
    return bar


# -- simulate ---------------------------------------------------------------------------------------------------

def plot_patterns(path, q, intensity, names, probe: str, signal: str, title: str, *, logy: bool | None = None):
    """Figure of up to 20 patterns against q.

    Total and atomic intensities fall by orders of magnitude over a q range (as the atomic form factors squared),
    so by default they are drawn on a logarithmic axis, where the molecular oscillations stay visible at high q;
    the molecular intensity and sM(q) oscillate about zero and are drawn on a linear axis, the molecular
    intensity weighted by q (as sM(q) is) so that its oscillations keep their size at high q.

    Parameters
    ----------
    path : str or None
        Output image file; None leaves the figure open.
    q : array_like
        (Q,) q grid in Å⁻¹.
    intensity : array_like
        (B, Q) patterns in the units of ``probe`` and ``signal`` (see :data:`SIGNAL_LABELS`).
    names : list of str
        B labels (a legend for 2 to 5 patterns, a colour bar of the index for more).
    probe, signal : str
        As in :func:`xstructure.simulate`.
    title : str
        The structures' name (see :func:`structure_title`).
    logy : bool or None, optional
        Logarithmic intensity axis; None: for ``total`` and ``atomic`` when every value is positive.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    I = np.atleast_2d(np.asarray(intensity, dtype=np.float64))
    shown = I[:20]
    if logy is None:
        logy = signal in ("total", "atomic") and bool(np.all(shown > 0))
    q = np.asarray(q, dtype=np.float64)
    weight, ylabel = (q, MOLECULAR_Q_LABELS[probe]) if signal == "molecular" else (1.0, SIGNAL_LABELS[(probe, signal)])
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    colours, mappable = _frame_colours(plt, len(shown))
    for k, row in enumerate(shown):
        ax.plot(q, weight * row, lw=1.2, color=colours[k] if len(shown) > 1 else "C0",
                label=names[k] if 1 < len(I) <= 5 else None)
    ax.set_xlabel(r"$q$ (Å⁻¹)")
    ax.set_ylabel(ylabel)
    ax.set_xlim(q[0], q[-1])
    if logy:
        ax.set_yscale("log")
    if signal in ("sM", "molecular"):
        ax.axhline(0, color="0.6", lw=0.6, zorder=0)
    kind = {"total": "total", "atomic": "atomic", "molecular": "molecular", "sM": "modified"}[signal]
    more = f" (first 20 of {len(I)})" if len(I) > 20 else (f" ({len(I)} structures)" if len(I) > 1 else "")
    ax.set_title(f"{title}{more}\n{_PROBE_NAMES[probe]} scattering, independent-atom model, {kind} intensity",
                 fontsize=10)
    if 1 < len(I) <= 5:
        ax.legend(frameon=False, fontsize="small")
    elif len(I) > 5:
        _index_colorbar(fig, ax, mappable, len(shown), "structure index (order in the file)")
    return _finish(fig, path)


# -- integrate --------------------------------------------------------------------------------------------------

def _sources_title(sources: list, frames: int) -> str:
    """'9 frames of scan_000.npy … scan_008.npy' style: how many frames, from which files."""
    files = list(dict.fromkeys(os.path.basename(s.split("::")[0].split("[")[0]) for s in sources))
    what = f"{frames} frame{'s' if frames != 1 else ''}"
    if len(files) == 1:
        return f"{what} of {files[0]}"
    return f"{what} of {len(files)} files, {files[0]} … {files[-1]}"


def plot_curves(h5path: str, png, xlabel: str | None = None, logy: bool = False, most: int = 20):
    """Figure of the profiles in an ``xstructure integrate`` output file.

    All of them when there are at most ``most``, else their mean and 8 evenly spaced ones; empty bins are not
    drawn. Up to 5 profiles are named in a legend, more are coloured by frame index with a colour bar.

    Parameters
    ----------
    h5path : str
        The HDF5 file of radial profiles.
    png : str or None
        Output image file; None leaves the figure open.
    xlabel : str or None, optional
        Label of the radial axis with its unit; None: the file's own (its ``radial`` dataset's ``long_name``).
    logy : bool, optional
        Logarithmic intensity axis.
    most : int, optional
        Draw every profile up to this many.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import json

    import h5py  # loaded on use: keeps `import xstructure` fast

    plt = _pyplot()
    with h5py.File(h5path, "r") as f:
        radial = f["radial"][:]
        long_name = f["radial"].attrs.get("long_name", "radial coordinate")
        settings = json.loads(f.attrs.get("settings", "{}") or "{}")
        I, count, src = f["intensity"], f["count"], f["source"]
        F = I.shape[0]
        total, hits = np.zeros_like(radial), np.zeros_like(radial)
        for a in range(0, F, 1024):  # the mean, without loading every profile at once
            good = count[a:a + 1024] > 0
            total += np.where(good, I[a:a + 1024], 0.0).sum(axis=0)
            hits += good.sum(axis=0)
        picks = np.arange(F) if F <= most else np.unique(np.linspace(0, F - 1, 8).round().astype(int))
        names = [s.decode() if isinstance(s, bytes) else str(s) for s in src[:]]
        curves = [(k, np.where(count[k] > 0, I[k], np.nan)) for k in picks]
    xlabel = xlabel or (long_name.decode() if isinstance(long_name, bytes) else str(long_name))
    fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    colours, mappable = _frame_colours(plt, F)
    for k, y in curves:
        ax.plot(radial, y, lw=0.8 if F > most else 1.2, alpha=0.8 if F > most else 1.0,
                color="C0" if F == 1 else colours[k], label=os.path.basename(names[k]) if 1 < F <= 5 else None)
    if F > most:
        mean = np.divide(total, hits, out=np.full_like(total, np.nan), where=hits > 0)
        ax.plot(radial, mean, color="k", lw=2.0, label=f"mean of all {F} frames")
    ax.set_xlabel(xlabel)
    corrections = [c for c, on in (("solid angle", settings.get("solid_angle", True)),
                                   ("polarisation", settings.get("polarization") is not None)) if on]
    ax.set_ylabel("mean intensity per pixel (image units)")
    if logy:
        ax.set_yscale("log")
    ax.set_xlim(np.nanmin(radial), np.nanmax(radial))
    shown = f"; {len(curves)} shown and the mean" if F > most else ""
    done = "" if not settings else (f", corrected for {' and '.join(corrections)}" if corrections
                                    else ", no solid-angle or polarisation correction")
    ax.set_title(f"Radial profiles: {_sources_title(names, F)}{shown}\n{len(radial)} bins of {xlabel}{done}",
                 fontsize=10)
    if 1 < F <= 5 or F > most:
        ax.legend(frameon=False, fontsize="small")
    if F > 5:
        _index_colorbar(fig, ax, mappable, F, "frame index (order in the output file)")
    return _finish(fig, png)


# -- crystal --pxrd ---------------------------------------------------------------------------------------------

def _hkl_label(h) -> str:
    """Miller indices in mathtext, negative ones with a bar: (1, -1, 0) -> '$1\\bar{1}0$'."""
    parts = [rf"\bar{{{-v}}}" if v < 0 else f"{v}" for v in (int(x) for x in h)]
    sep = "" if np.all(np.abs(h) < 10) else r"\,"
    return "$" + sep.join(parts) + "$"


def _line_name(lam: float) -> str | None:
    """'Cu Kα$_1$' for λ = 1.5406 Å: the X-ray line of a wavelength, if it is one."""
    for name, value in WAVELENGTHS.items():
        if abs(value - lam) < 1e-4:
            line = name[2:].replace("Ka", "Kα").replace("Kb", "Kβ")
            return f"{name[:2]} " + re.sub(r"(\d)$", r"$_{\1}$", line)
    return None


def plot_powder(path, cell, peaks, two_theta, wavelength, *, factors: str = "xray", doublet: bool = False,
                label: int = 10):
    """Figure of a powder pattern, with its reflections as sticks in a panel below and the strongest labelled hkl.

    The profile is a pseudo-Voigt of FWHM 0.1° on the 2θ grid; both the profile and the sticks are relative to
    their strongest (100).

    Parameters
    ----------
    path : str or None
        Output image file; None leaves the figure open.
    cell : Cell
        The crystal.
    peaks : PowderPeaks
        Its peaks.
    two_theta : array_like
        (n,) 2θ grid, degrees.
    wavelength : float or str
        Å, or a line name.
    factors : {'xray', 'electron', 'Z'}, optional
        Form factors.
    doublet : bool, optional
        Kα1 and Kα2 lines.
    label : int, optional
        Peaks annotated.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    x, y = powder_pattern(cell, two_theta, wavelength, factors=factors, doublet=doublet)
    scale = 100.0 / y.max() if y.max() > 0 else 1.0
    if len(peaks):
        lams = np.unique(peaks.wavelength)
        lines = [_line_name(float(v)) for v in lams]
        lam = ", ".join(f"{v:.5f}" for v in lams) + " Å" + (f" ({', '.join(lines)})" if all(lines) else "")
    else:
        lam = f"{wavelength} Å" if not isinstance(wavelength, str) else wavelength
    fig, (ax, sticks) = plt.subplots(2, 1, figsize=(7.0, 4.8), sharex=True, layout="constrained",
                                     gridspec_kw={"height_ratios": [3, 1]})
    profile = y * scale
    ax.plot(x, profile, lw=1.0, color="C0")
    second = peaks.wavelength > peaks.wavelength.min() + 1e-9 if doublet and len(peaks) else np.zeros(len(peaks), bool)
    first = np.flatnonzero(~second)   # Kα2 peaks repeat the Kα1 ones' hkl: label those only
    for i in first[np.argsort(-peaks.intensity[first], kind="stable")[:max(0, int(label))]]:
        near = np.abs(x - peaks.two_theta[i]) <= 0.3
        top = profile[near].max() if near.any() else peaks.intensity[i]
        ax.annotate(_hkl_label(peaks.hkl[i]), (peaks.two_theta[i], top), xytext=(0, 2), textcoords="offset points",
                    fontsize=7, ha="center", va="bottom")
    ax.set_ylabel("intensity (% of strongest)")
    ax.set_ylim(0, 112)
    ax.set_xlim(two_theta[0], two_theta[-1])
    ax.text(0.99, 0.96, "profile: pseudo-Voigt, FWHM 0.1°", transform=ax.transAxes, ha="right", va="top",
            fontsize="small", color="0.3")
    sticks.vlines(peaks.two_theta[~second], 0, peaks.intensity[~second], color="C3", lw=1.2,
                  label="reflections" + (" (Kα$_1$)" if second.any() else ""))
    if second.any():
        sticks.vlines(peaks.two_theta[second], 0, peaks.intensity[second], color="C1", lw=1.0,
                      label="reflections (Kα$_2$)")
    sticks.legend(frameon=False, fontsize="x-small", loc="best")
    sticks.axhline(0, color="0.6", lw=0.6)
    sticks.set_ylim(0, 105)
    sticks.set_ylabel("integrated\nintensity (%)")
    sticks.set_xlabel("2θ (°)")
    kind = {"xray": "X-ray", "electron": "electron", "Z": "point-atom (Z)"}.get(factors, str(factors))
    ax.set_title(f"{math_formula(cell.reduced_formula)} (Z = {cell.formula_units}): {kind} powder pattern, "
                 f"λ = {lam}", fontsize=10)
    return _finish(fig, path)
