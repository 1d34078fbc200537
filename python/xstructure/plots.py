"""Figures that the command line writes: patterns, radial profiles and powder patterns (matplotlib, Agg)."""

from __future__ import annotations

import numpy as np

from .crystal import powder_pattern

__all__ = ["SIGNAL_LABELS", "plot_patterns", "plot_curves", "plot_powder"]

SIGNAL_LABELS = {
    ("xray", "total"): "I_total(q) (electrons²)",
    ("xray", "atomic"): "I_at(q) (electrons²)",
    ("xray", "molecular"): "I_mol(q) (electrons²)",
    ("xray", "sM"): "sM(q) (Å⁻¹)",
    ("electron", "total"): "I_total(q) (Å²)",
    ("electron", "atomic"): "I_at(q) (Å²)",
    ("electron", "molecular"): "I_mol(q) (Å²)",
    ("electron", "sM"): "sM(q) (Å⁻¹)",
}


def _pyplot():
    import matplotlib  # plotting only: the library itself never needs matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # plotting only

    return plt


def plot_patterns(path: str, q, intensity, names, probe: str, signal: str, title: str) -> None:
    """PNG of up to 20 patterns against q.

    Parameters
    ----------
    path : str
        Output PNG.
    q : array_like
        (Q,) q grid in Å⁻¹.
    intensity : array_like
        (B, Q) patterns in the units of ``probe`` and ``signal`` (see :data:`SIGNAL_LABELS`).
    names : list of str
        B labels (a legend is drawn for up to 5).
    probe, signal : str
        As in :func:`xstructure.simulate`.
    title : str
        The structure's name.
    """
    plt = _pyplot()
    I = np.atleast_2d(intensity)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    for k, row in enumerate(I[:20]):
        ax.plot(q, row, lw=1.2, label=names[k] if len(names) <= 5 else None)
    ax.set_xlabel("q (Å⁻¹)")
    ax.set_ylabel(SIGNAL_LABELS[(probe, signal)])
    kind = "X-ray" if probe == "xray" else "electron"
    ax.set_title(f"{kind} scattering, IAM: {title}" + (" (first 20)" if len(I) > 20 else ""))
    if signal in ("sM", "molecular"):
        ax.axhline(0, color="0.6", lw=0.6)
    if len(names) <= 5:
        ax.legend(frameon=False)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def plot_curves(h5path: str, png: str, xlabel: str, logy: bool = False, most: int = 20) -> None:
    """PNG of the profiles in an ``xstructure integrate`` output file.

    All of them when there are at most ``most``, else their mean and 8 evenly spaced ones; empty bins are not
    drawn.

    Parameters
    ----------
    h5path : str
        The HDF5 file of radial profiles.
    png : str
        Output PNG.
    xlabel : str
        Label of the radial axis, with its unit.
    logy : bool, optional
        Logarithmic intensity axis.
    most : int, optional
        Draw every profile up to this many.
    """
    import h5py  # loaded on use: keeps `import xstructure` fast

    plt = _pyplot()
    with h5py.File(h5path, "r") as f:
        radial = f["radial"][:]
        I, count, src = f["intensity"], f["count"], f["source"]
        F = I.shape[0]
        total, hits = np.zeros_like(radial), np.zeros_like(radial)
        for a in range(0, F, 1024):  # the mean, without loading every profile at once
            good = count[a:a + 1024] > 0
            total += np.where(good, I[a:a + 1024], 0.0).sum(axis=0)
            hits += good.sum(axis=0)
        picks = np.arange(F) if F <= most else np.unique(np.linspace(0, F - 1, 8).round().astype(int))
        curves = [(np.where(count[k] > 0, I[k], np.nan), src[k].decode() if isinstance(src[k], bytes) else src[k])
                  for k in picks]
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    for y, name in curves:
        ax.plot(radial, y, lw=0.8 if F > most else 1.2, alpha=0.6 if F > most else 1.0, label=name if F <= 5 else None)
    if F > most:
        mean = np.divide(total, hits, out=np.full_like(total, np.nan), where=hits > 0)
        ax.plot(radial, mean, color="k", lw=2.0, label=f"mean of {F} frames")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("intensity (a.u.)")
    if logy:
        ax.set_yscale("log")
    ax.set_title(f"{F} frame(s)" + (f": {len(curves)} shown, and the mean" if F > most else ""))
    if F <= 5 or F > most:
        ax.legend(frameon=False, fontsize="small")
    fig.savefig(png, dpi=150)
    plt.close(fig)


def plot_powder(path: str, cell, peaks, two_theta, wavelength, *, factors: str = "xray", doublet: bool = False,
                label: int = 10) -> None:
    """PNG of a powder pattern with its peaks as sticks, the strongest annotated with their hkl.

    The profile is a pseudo-Voigt of FWHM 0.1° on the 2θ grid.

    Parameters
    ----------
    path : str
        Output PNG.
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
    """
    plt = _pyplot()
    x, y = powder_pattern(cell, two_theta, wavelength, factors=factors, doublet=doublet)
    scale = 100.0 / y.max() if y.max() > 0 else 1.0
    lam = ", ".join(f"{v:.5f}" for v in np.unique(peaks.wavelength)) or str(wavelength)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), constrained_layout=True)
    ax.vlines(peaks.two_theta, 0, peaks.intensity, color="C3", lw=0.8, alpha=0.7, zorder=1, label="peaks")
    ax.plot(x, y * scale, lw=1.0, color="C0", zorder=2, label="pattern (pseudo-Voigt, FWHM 0.1°)")
    for i in peaks.strongest(label):
        h = peaks.hkl[i]
        ax.annotate("".join(str(v) for v in h) if np.all(np.abs(h) < 10) else " ".join(str(v) for v in h),
                    (peaks.two_theta[i], peaks.intensity[i]), fontsize=7, ha="center", va="bottom")
    ax.set_xlabel("2θ (°)")
    ax.set_ylabel("intensity (rel.)")
    ax.set_xlim(two_theta[0], two_theta[-1])
    ax.set_ylim(0, 110)
    ax.set_title(f"powder pattern of {cell.formula}, λ = {lam} Å")
    ax.legend(frameon=False, fontsize="small")
    fig.savefig(path, dpi=150)
    plt.close(fig)
