"""Figures of reduced pump-probe data (matplotlib, Agg): the ΔI/I map, ΔI/I, ΔsM and ΔPDF at chosen delays, the
onset fit, and all of them in one figure (``xstructure reduce --plot``).

Every function returns the :class:`matplotlib.figure.Figure`.  Given a ``path`` it saves the figure there and
closes it; with ``path=None`` the figure is left open.  The panel functions also draw into given axes
(``ax=``).  ΔI/I is shown in per cent, ΔsM in Å⁻¹, ΔPDF in Å⁻² (ΔsM times dq: the unit of
:func:`~xstructure.experiment.signals.delta_pdf`), delays in fs.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..scattering import signal_label

__all__ = ["check_image_path", "default_delays", "plot_delta_pdf", "plot_delta_sm", "plot_difference",
           "plot_difference_map", "plot_onset", "plot_reduced"]

_DPI = 150
_DELAY_LABEL = "pump–probe delay (fs)"
_DIFF_LABEL = r"$\Delta I/I$ (%)"
_PDF_LABEL = r"$\Delta\mathrm{PDF}(r)$ (Å⁻²)"


def _pyplot():
    import sys

    import matplotlib  # plotting only: the library itself never needs matplotlib

    if "matplotlib.pyplot" not in sys.modules:   # else keep the caller's backend (switching closes its figures)
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # plotting only

    return plt


def _finish(fig, path, dpi: int = _DPI):
    if path is not None:
        import matplotlib.pyplot as plt  # plotting only

        fig.savefig(path, dpi=dpi)
        plt.close(fig)
    return fig


def _axes(ax, figsize=(6.4, 4.4)):
    if ax is not None:
        return ax.figure, ax
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return fig, ax


def check_image_path(path) -> None:
    """Refuse an image file name whose extension matplotlib cannot write, before any work is done.

    Parameters
    ----------
    path : str or os.PathLike
        The image file (``.png``, ``.pdf``, ``.svg``, ...).

    Raises
    ------
    ValueError
        No extension, or one that matplotlib does not write.
    """
    from matplotlib.backend_bases import FigureCanvasBase  # plotting only

    ext = os.path.splitext(os.fspath(path))[1].lower().lstrip(".")
    known = FigureCanvasBase.get_supported_filetypes()
    if ext not in known:
        raise ValueError(f"cannot write a figure to {os.fspath(path)!r}: the name must end in one of "
                         f"{', '.join('.' + k for k in sorted(known))}")


def default_delays(delay, onset=None, n: int = 4) -> np.ndarray:
    """Delays at which to show curves: around the onset when there is a fit, else spread over the bins.

    Parameters
    ----------
    delay : array_like
        (T,) delays of the bins, fs.
    onset : OnsetFit or None, optional
        With a fit: t0 − 3σ (before), t0, t0 + 3σ and the latest bin (σ the fitted width).
    n : int, optional
        Without a fit: this many bins, evenly spaced in index from the first to the last.

    Returns
    -------
    numpy.ndarray
        The delays of the chosen bins, fs (distinct, increasing).
    """
    delay = np.asarray(delay, dtype=np.float64)
    if onset is not None and np.isfinite(onset.t0) and np.isfinite(onset.width):
        want = [onset.t0 - 3 * onset.width, onset.t0, onset.t0 + 3 * onset.width, delay.max()]
    else:
        want = delay[np.unique(np.round(np.linspace(0, delay.size - 1, min(n, delay.size))).astype(int))]
    return np.unique(delay[_nearest(delay, want)])


def _nearest(delay: np.ndarray, at) -> np.ndarray:
    """Indices of the bins nearest to each delay of ``at``, distinct, in the order of ``at``."""
    at = np.atleast_1d(np.asarray(at, dtype=np.float64))
    if at.size == 0 or not np.all(np.isfinite(at)):
        raise ValueError(f"the delays to show must be finite numbers in fs, got {at!r}")
    idx = [int(np.argmin(np.abs(delay - t))) for t in at]
    return np.array(list(dict.fromkeys(idx)), dtype=np.int64)


def _colours(n: int):
    import matplotlib as mpl  # plotting only

    cmap = mpl.colormaps["plasma"]
    return [cmap(v) for v in (np.linspace(0.0, 0.8, n) if n > 1 else [0.0])]


def _delay_text(t: float) -> str:
    return f"{t:.0f} fs".replace("-", "−")


def _curves(ax, x, Y, S, delay, at, scale: float = 1.0):
    """Rows of Y (T, X) at the bins nearest to ``at`` with a ±σ band; a legend of the bins' delays."""
    delay = np.asarray(delay, dtype=np.float64)
    Y = np.atleast_2d(np.asarray(Y, dtype=np.float64))
    if Y.shape[0] != delay.size:
        raise ValueError(f"{Y.shape[0]} curves but {delay.size} delays")
    rows = _nearest(delay, default_delays(delay) if at is None else at)
    rows = rows[np.argsort(delay[rows], kind="stable")]
    for c, k in zip(_colours(rows.size), rows):
        y = scale * Y[k]
        ax.plot(x, y, color=c, lw=1.3, label=_delay_text(delay[k]))
        if S is not None:
            s = scale * np.asarray(S, dtype=np.float64)[k]
            ok = np.isfinite(s)
            if np.any(ok):
                ax.fill_between(x, np.where(ok, y - s, np.nan), np.where(ok, y + s, np.nan), color=c, alpha=0.2,
                                lw=0)
    ax.axhline(0, color="0.6", lw=0.6, zorder=0)
    ax.set_xlim(x[0], x[-1])
    ax.legend(title="delay", frameon=False, fontsize="small", title_fontsize="small", loc="best")
    return rows


def plot_difference_map(reduced, path=None, *, ax=None, vmax: float | None = None, title: str | None = None):
    """ΔI/I(q, t) as a colour map: delay (fs) across, q (Å⁻¹) up, a diverging colour scale centred at 0.

    Each delay bin is drawn over its edges (:attr:`Reduced.edges <xstructure.experiment.run.Reduced.edges>`);
    dropped bins leave a gap.

    Parameters
    ----------
    reduced : Reduced
        The reduction (or a :class:`~xstructure.experiment.files.ReducedFile`).
    path : str or None, optional
        Output image file; None leaves the figure open.
    ax : matplotlib.axes.Axes or None, optional
        Draw into these axes (the colour bar takes room from them).
    vmax : float or None, optional
        The colour scale's limit, ΔI/I in %; None: the 99.9th percentile of |ΔI/I|.
    title : str or None, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib as mpl  # plotting only

    fig, ax = _axes(ax)
    D = 100.0 * np.asarray(reduced.diff, dtype=np.float64)
    q = np.asarray(reduced.q, dtype=np.float64)
    edges = np.asarray(reduced.edges, dtype=np.float64).reshape(-1, 2)
    x = np.unique(edges.ravel())                                 # the bins and the gaps between them
    C = np.full((x.size - 1, q.size), np.nan)
    mid = 0.5 * (x[:-1] + x[1:])
    for k, (lo, hi) in enumerate(edges):
        C[(mid > lo) & (mid < hi)] = D[k]
    if q.size > 1:
        dq = np.diff(q)
        y = np.concatenate([[q[0] - dq[0] / 2], q[:-1] + dq / 2, [q[-1] + dq[-1] / 2]])
    else:
        y = np.array([q[0] - 0.5, q[0] + 0.5])
    finite = np.abs(D[np.isfinite(D)])
    if vmax is None:
        vmax = float(np.percentile(finite, 99.9)) if finite.size else 1.0
    vmax = vmax if vmax > 0 else 1.0
    mesh = ax.pcolormesh(x, y, C.T, cmap="RdBu_r", norm=mpl.colors.Normalize(-vmax, vmax), shading="flat",
                         rasterized=True)
    fig.colorbar(mesh, ax=ax, label=_DIFF_LABEL, extend="both", pad=0.01)
    ax.set_xlabel(_DELAY_LABEL)
    ax.set_ylabel(r"$q$ (Å⁻¹)")
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y[0], y[-1])
    if title is not None:
        ax.set_title(title, fontsize=10)
    return _finish(fig, path)


def plot_difference(reduced, path=None, *, at=None, ax=None, title: str | None = None):
    """ΔI/I(q) at chosen delays (the nearest bins), with ±σ bands from the bootstrap errors.

    Parameters
    ----------
    reduced : Reduced
        The reduction.
    path : str or None, optional
        Output image file; None leaves the figure open.
    at : array_like or None, optional
        Delays, fs; the bin nearest to each is drawn.  None: :func:`default_delays`.
    ax : matplotlib.axes.Axes or None, optional
        Draw into these axes.
    title : str or None, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _axes(ax)
    _curves(ax, np.asarray(reduced.q, dtype=np.float64), reduced.diff, reduced.sigma, reduced.delay, at, 100.0)
    ax.set_xlabel(r"$q$ (Å⁻¹)")
    ax.set_ylabel(_DIFF_LABEL)
    if title is not None:
        ax.set_title(title, fontsize=10)
    return _finish(fig, path)


def plot_delta_sm(q, dsm, delay, path=None, *, at=None, sigma=None, ax=None, title: str | None = None):
    """ΔsM(q) at chosen delays (the nearest bins), with ±σ bands.

    Parameters
    ----------
    q : array_like
        (Q,) momentum transfer, Å⁻¹.
    dsm : array_like
        (T, Q) ΔsM, Å⁻¹ (:func:`~xstructure.experiment.signals.delta_sm`).
    delay : array_like
        (T,) delays of the rows, fs.
    path : str or None, optional
        Output image file; None leaves the figure open.
    at : array_like or None, optional
        Delays to show, fs; None: :func:`default_delays`.
    sigma : array_like or None, optional
        (T, Q) errors of ``dsm``.
    ax : matplotlib.axes.Axes or None, optional
        Draw into these axes.
    title : str or None, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _axes(ax)
    _curves(ax, np.asarray(q, dtype=np.float64), dsm, sigma, delay, at)
    ax.set_xlabel(r"$q$ (Å⁻¹)")
    ax.set_ylabel(signal_label("xray", "sM", delta=True))       # Å⁻¹ for either probe
    if title is not None:
        ax.set_title(title, fontsize=10)
    return _finish(fig, path)


def plot_delta_pdf(r, pdf, delay, path=None, *, at=None, sigma=None, ax=None, title: str | None = None):
    """ΔPDF(r) at chosen delays (the nearest bins), with ±σ bands.

    Parameters
    ----------
    r : array_like
        (R,) distances, Å.
    pdf : array_like
        (T, R) ΔPDF, Å⁻² (:func:`~xstructure.experiment.signals.delta_pdf`).
    delay : array_like
        (T,) delays of the rows, fs.
    path : str or None, optional
        Output image file; None leaves the figure open.
    at : array_like or None, optional
        Delays to show, fs; None: :func:`default_delays`.
    sigma : array_like or None, optional
        (T, R) errors of ``pdf``.
    ax : matplotlib.axes.Axes or None, optional
        Draw into these axes.
    title : str or None, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _axes(ax)
    _curves(ax, np.asarray(r, dtype=np.float64), pdf, sigma, delay, at)
    ax.set_xlabel(r"$r$ (Å)")
    ax.set_ylabel(_PDF_LABEL)
    if title is not None:
        ax.set_title(title, fontsize=10)
    return _finish(fig, path)


def _pm(value: float, err: float) -> str:
    """'33.3 ± 1.9': the value rounded to the error's second significant digit."""
    if not (math.isfinite(err) and err > 0):
        return f"{value:.3g}"
    digits = max(0, 1 - math.floor(math.log10(err)))
    return f"{value:.{digits}f} ± {err:.{digits}f}".replace("-", "−")


def plot_onset(onset, path=None, *, q_range=None, error_scale: float = 1.0, ax=None, percent: bool = True,
               title: str | None = None):
    """The onset: the signal per delay bin with its errors, and the fitted curve; t0 and the width in the legend.

    Parameters
    ----------
    onset : OnsetFit
        The fit (:func:`~xstructure.experiment.fit.fit_onset`).
    path : str or None, optional
        Output image file; None leaves the figure open.
    q_range : tuple or None, optional
        (qmin, qmax) of the signal, Å⁻¹, for the legend.
    error_scale : float, optional
        A factor on the signal's error bars (√(χ²/dof) when the fit's errors were scaled by it; the legend says
        so).
    ax : matplotlib.axes.Axes or None, optional
        Draw into these axes.
    percent : bool, optional
        The signal is a mean ΔI/I (shown in %); False: a template amplitude (dimensionless, shown as is).
    title : str or None, optional
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = _axes(ax)
    scale = 100.0 if percent else 1.0
    t = np.asarray(onset.delay, dtype=np.float64)
    y = scale * np.asarray(onset.signal, dtype=np.float64)
    e = scale * error_scale * np.asarray(onset.signal_err, dtype=np.float64)
    what = ("mean ΔI/I" if percent else "template amplitude") + \
        (f", q = {q_range[0]:g}–{q_range[1]:g} Å⁻¹" if q_range is not None else "") + \
        (f"\nerrors × {error_scale:.2g} = √(χ²/dof)" if error_scale != 1 else "")
    ax.errorbar(t, y, yerr=np.where(np.isfinite(e), e, 0.0), fmt="o", ms=3.5, color="0.25", ecolor="0.55",
                elinewidth=1.0, capsize=2, label=what)
    tt = np.linspace(t.min(), t.max(), 600)
    model = {"step": "erf step", "step_exp": "erf ∗ exponential rise"}.get(onset.model, onset.model)
    lines = [f"{model} fit", f"$t_0$ = {_pm(onset.t0, onset.errors.get('t0', np.nan))} fs",
             f"width σ = {_pm(onset.width, onset.errors.get('width', np.nan))} fs"]
    if onset.tau is not None:
        lines.append(f"τ = {_pm(onset.tau, onset.errors.get('tau', np.nan))} fs")
    ax.plot(tt, scale * onset.curve(tt), color="C3", lw=1.8, label="\n".join(lines))
    ax.axvline(onset.t0, color="C3", lw=0.8, ls=":")
    ax.axhline(0, color="0.6", lw=0.6, zorder=0)
    pad = 0.03 * (t.max() - t.min())
    ax.set_xlim(t.min() - pad, t.max() + pad)
    ax.set_xlabel(_DELAY_LABEL)
    ax.set_ylabel(r"mean $\Delta I/I$ (%)" if percent else "template amplitude (ΔI/I units)")
    ax.legend(frameon=False, fontsize="small", loc="best")
    if title is not None:
        ax.set_title(title, fontsize=10)
    return _finish(fig, path)


def plot_reduced(data, path=None, *, at=None, dsm=None, dsm_sigma=None, r=None, pdf=None, pdf_sigma=None,
                 onset=None, onset_q_range=None, onset_error_scale=None, title: str | None = None):
    """All figures of a reduced run in one: the ΔI/I map; ΔsM and ΔPDF at chosen delays (ΔI/I without a
    molecule); the onset fit when there is one.

    Parameters
    ----------
    data : Reduced or ReducedFile
        The reduction; a :class:`~xstructure.experiment.files.ReducedFile` (:func:`read_reduced
        <xstructure.experiment.files.read_reduced>`) brings its ΔsM, ΔPDF and onset fit, which the arguments
        below override.
    path : str or None, optional
        Output image file; None leaves the figure open.
    at : array_like or None, optional
        Delays of the curves, fs (the nearest bins); None: :func:`default_delays`.
    dsm, dsm_sigma : array_like or None, optional
        (T, Q) ΔsM (Å⁻¹) and its error.
    r : array_like or None, optional
        (R,) distances of ``pdf``, Å.
    pdf, pdf_sigma : array_like or None, optional
        (T, R) ΔPDF (Å⁻²) and its error.
    onset : OnsetFit or None, optional
        The onset fit.
    onset_q_range : tuple or None, optional
        Its q range, Å⁻¹.
    onset_error_scale : float or None, optional
        The factor on the onset's errors (:func:`plot_onset`).
    title : str or None, optional
        The figure's title; None: the shots, bins and molecule.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()

    def pick(value, name):
        return value if value is not None else getattr(data, name, None)

    dsm, dsm_sigma, r = pick(dsm, "dsm"), pick(dsm_sigma, "dsm_sigma"), pick(r, "r")
    pdf, pdf_sigma = pick(pdf, "pdf"), pick(pdf_sigma, "pdf_sigma")
    onset, onset_q_range = pick(onset, "onset"), pick(onset_q_range, "onset_q_range")
    onset_error_scale = pick(onset_error_scale, "onset_error_scale") or 1.0
    delay = np.asarray(data.delay, dtype=np.float64)
    if at is None:
        at = default_delays(delay, onset)
    panels = ["map"] + (["onset"] if onset is not None else []) + (["dsm"] if dsm is not None else ["diff"]) + \
        (["pdf"] if pdf is not None else [])
    n = len(panels)
    rows, cols = (1, n) if n <= 2 else (2, 2)
    fig = plt.figure(figsize=(6.0 * cols, 4.4 * rows + 0.4), layout="constrained")
    grid = fig.add_gridspec(rows, cols)
    slots = [grid[k // cols, k % cols] for k in range(n)] if n != 3 else \
        [grid[0, 0], grid[0, 1], grid[1, :]]
    axes = {name: fig.add_subplot(slot) for name, slot in zip(panels, slots)}
    letters = iter("abcd")
    plot_difference_map(data, ax=axes["map"], title=f"({next(letters)}) ΔI/I per delay bin")
    if "onset" in axes:
        plot_onset(onset, ax=axes["onset"], q_range=onset_q_range, error_scale=onset_error_scale,
                   title=f"({next(letters)}) onset: time zero and instrument response")
    if "dsm" in axes:
        plot_delta_sm(data.q, dsm, delay, at=at, sigma=dsm_sigma, ax=axes["dsm"],
                      title=f"({next(letters)}) ΔsM at chosen delays (±1σ bands)")
    else:
        plot_difference(data, at=at, ax=axes["diff"], title=f"({next(letters)}) ΔI/I at chosen delays (±1σ bands)")
    if "pdf" in axes:
        damping = getattr(data, "damping", None)
        extra = f", damping exp(−{damping:g} q²)" if damping else ""
        plot_delta_pdf(r, pdf, delay, at=at, sigma=pdf_sigma, ax=axes["pdf"],
                       title=f"({next(letters)}) ΔPDF at chosen delays{extra}")
    if title is None:
        counts = np.asarray(data.counts)
        rejected = data.rejected.get("total", 0) if isinstance(data.rejected, dict) else 0
        mol = getattr(data, "molecule", None)
        probe = {"xray": "X-ray", "electron": "electron"}.get(getattr(data, "probe", None) or "", "")
        who = f"{mol}, {probe} scattering: " if mol else ""
        title = (f"{who}{int(counts.sum())} laser-on and {int(data.n_off)} laser-off shots in {delay.size} delay "
                 f"bins ({rejected} shots rejected)")
    fig.suptitle(title, fontsize=11)
    return _finish(fig, path)
