"""What ``xstructure reduce`` does, as one function: :func:`reduce_file` (run file(s) → reduced HDF5 and figure)."""

from __future__ import annotations

import os
import warnings

import numpy as np

from .files import ReducedFile, write_reduced
from .fit import MODELS, fit_onset
from .run import PumpProbe
from .signals import baseline as subtract_baseline
from .signals import delta_pdf, delta_sm

__all__ = ["DATASETS", "reduce_file"]

#: The dataset names of :meth:`PumpProbe.from_hdf5 <xstructure.experiment.run.PumpProbe.from_hdf5>` that
#: ``datasets=`` may rename (``timetool`` and ``weights`` may be None: not read).
DATASETS = ("q", "signals", "delay", "pumped", "timetool", "weights")


def _same_file(a: str, b: str) -> bool:
    return os.path.abspath(a) == os.path.abspath(b) or (os.path.exists(a) and os.path.exists(b)
                                                        and os.path.samefile(a, b))


def _pm(value: float, err: float, unit: str = "") -> str:
    """'30.3 ± 0.33 fs': the value to the second significant digit of its error."""
    if not (np.isfinite(err) and err > 0):
        return f"{value:.4g}{unit}"
    digits = max(0, 1 - int(np.floor(np.log10(err))))
    return f"{value:.{digits}f} ± {err:.{digits}f}{unit}"


def reduce_file(paths, out, *, bins=50, normalize="window", reject: float | None = 5.0,
                reject_fraction: float = 0.02, reference: str = "nearest", bootstrap: int = 100, seed: int = 0,
                datasets: dict | None = None, molecule=None, probe: str = "xray", energy_kev: float | None = None,
                r=None, damping: float = 0.03, fill_low_q: str | None = None, baseline: int | None = None,
                onset=None, onset_model: str = "step", plot=None, delays=None, num_threads: int | None = None,
                progress: bool = False) -> str:
    """Reduce a pump-probe run stored in HDF5 to ΔI/I per delay bin, optionally ΔsM, ΔPDF and the onset fit,
    and write them to one HDF5 file (and a figure).

    Every argument is checked, the run opened, and the molecule's patterns computed on the run's q grid before
    the shots are read; nothing is written unless every step succeeds (the HDF5 file is written under a
    temporary name and renamed).

    Parameters
    ----------
    paths : str, os.PathLike or list of them
        The run: one HDF5 file in the layout of :meth:`PumpProbe.from_hdf5
        <xstructure.experiment.run.PumpProbe.from_hdf5>`, or several files of one run, read end to end.
    out : str or os.PathLike
        Output HDF5 file (layout: :mod:`xstructure.experiment.files`).
    bins, normalize, reject, reject_fraction, reference, bootstrap, seed : optional
        As for :meth:`PumpProbe.reduce <xstructure.experiment.run.PumpProbe.reduce>`.
    datasets : dict or None, optional
        Dataset names in the input file(s) by role (keys in :data:`DATASETS`), e.g.
        ``{"signals": "/entry/data/data", "timetool": None}``.
    molecule : str or None, optional
        The reactant (a name, SMILES or structure file): compute ΔsM (:func:`~xstructure.experiment.signals.delta_sm`)
        and ΔPDF (:func:`~xstructure.experiment.signals.delta_pdf`).
    probe : {'xray', 'electron'}, optional
        The probe, for the IAM patterns of ``molecule``.
    energy_kev : float or None, optional
        Electron kinetic energy, keV.
    r : array_like or None, optional
        (R,) distances of the ΔPDF, Å (default 0..10 Å, 500 points).
    damping : float, optional
        k of the ΔPDF's window exp(−k q²), Å².
    fill_low_q : {None, 'zero'}, optional
        As for :func:`~xstructure.experiment.signals.delta_pdf`.
    baseline : int or None, optional
        Subtract from each ΔsM curve its (unweighted) least-squares polynomial in q of this degree: window
        normalisation leaves a constant offset in ΔI/I, a smooth curve in ΔsM; None: no baseline.
    onset : tuple or None, optional
        (qmin, qmax), Å⁻¹: fit time zero and the instrument response to the mean ΔI/I over this q range
        (:func:`~xstructure.experiment.fit.fit_onset`).
    onset_model : {'step', 'step_exp'}, optional
        The onset model.  When the fit's χ²/dof exceeds 1, the errors of its parameters are scaled by
        √(χ²/dof): the signal's errors assume independent q points, while the normalisation of each shot
        correlates the q points of a bin.  The factor is kept as ``onset_error_scale``.
    plot : str or os.PathLike or None, optional
        Image file of :func:`~xstructure.experiment.figures.plot_reduced`.
    delays : array_like or None, optional
        Delays of the curves in the figure, fs (the nearest bins; None: chosen from the data).
    num_threads : int or None, optional
        Worker threads of the reduction (None: every CPU).
    progress : bool, optional
        A progress bar over the shots.

    Returns
    -------
    str
        A summary of what was done, several lines.

    Raises
    ------
    ValueError
        A missing or unreadable file, a missing dataset, a run that fails the checks of
        :class:`~xstructure.experiment.run.PumpProbe` (e.g. no laser-off shots), an output that is an input,
        bad reduction arguments, a molecule that cannot be simulated on the run's q grid, an onset range without
        q points or a fit that fails.
    """
    paths = [os.fspath(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))]
    if not paths:
        raise ValueError("no run file given")
    outputs = [os.fspath(o) for o in (out, plot) if o is not None]
    for o in outputs:
        for p in paths:
            if _same_file(o, p):
                raise ValueError(f"the output {o!r} is an input file: choose another name")
    if plot is not None:
        if _same_file(os.fspath(plot), os.fspath(out)):
            raise ValueError(f"--out and --plot name the same file {os.fspath(out)!r}")
        from .figures import check_image_path

        check_image_path(plot)
    names = dict(datasets or {})
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        raise ValueError(f"unknown dataset role(s) {unknown}: use {', '.join(DATASETS)}")
    if onset_model not in MODELS:
        raise ValueError(f"unknown onset model {onset_model!r}: use one of {MODELS}")
    if molecule is not None:
        r = np.linspace(0.0, 10.0, 500) if r is None else np.asarray(r, dtype=np.float64)
        if r.ndim != 1 or r.size == 0 or not np.all(np.isfinite(r)):
            raise ValueError("r must be a non-empty 1D array of finite distances in Å")
        if not (np.isfinite(damping) and damping >= 0):
            raise ValueError(f"damping must be >= 0 Å², got {damping}")
        if fill_low_q not in (None, "zero"):
            raise ValueError(f"fill_low_q must be None or 'zero', got {fill_low_q!r}")
    if baseline is not None and (isinstance(baseline, bool) or int(baseline) != baseline or baseline < 0):
        raise ValueError(f"the baseline degree must be an integer >= 0, got {baseline!r}")
    if delays is not None:
        delays = np.atleast_1d(np.asarray(delays, dtype=np.float64))
        if delays.size == 0 or not np.all(np.isfinite(delays)):
            raise ValueError("the delays to plot must be finite numbers in fs")

    run = PumpProbe.from_hdf5(paths[0] if len(paths) == 1 else paths, **names)
    try:
        lines = [f"{', '.join(paths) if len(paths) <= 3 else f'{len(paths)} files'}: {run!r}"]
        q = run.q
        factor = None
        if molecule is not None:      # the IAM on the run's q grid: a bad molecule or q range fails before the shots
            factor = delta_sm(q, np.ones(q.size), molecule, probe=probe, energy_kev=energy_kev)
            if not np.all(np.isfinite(factor)):
                raise ValueError(f"ΔsM of {molecule} is not finite on the run's q grid ({q[0]:g}..{q[-1]:g} Å⁻¹)")
        if onset is not None:
            lo, hi = (float(v) for v in onset)
            if not np.any((q >= lo) & (q <= hi)):
                raise ValueError(f"the onset range {lo:g}..{hi:g} Å⁻¹ holds no q point of the run "
                                 f"({q[0]:g}..{q[-1]:g} Å⁻¹)")
        red = run.reduce(bins=bins, normalize=normalize, reject=reject, reject_fraction=reject_fraction,
                         reference=reference, bootstrap=bootstrap, seed=seed, num_threads=num_threads,
                         progress=progress)
    finally:
        run.close()
    T = red.delay.size
    used_on = int(red.counts.sum())
    why = ", ".join(f"{k} {v}" for k, v in red.rejected.items() if k != "total" and v)
    lines.append(f"ΔI/I in {T} delay bins {red.edges[0, 0]:.6g}..{red.edges[-1, 1]:.6g} fs from {used_on} laser-on "
                 f"and {red.n_off} laser-off shots; {red.rejected['total']} rejected" + (f" ({why})" if why else "")
                 + (f"; {red.excluded['outside_bins']} laser-on shots outside the bins"
                    if red.excluded["outside_bins"] else "")
                 + (f"; {red.excluded['empty_bins']} empty bins dropped" if red.excluded["empty_bins"] else "")
                 + ("" if red.sigma is not None else "; no bootstrap errors"))
    data = ReducedFile.of(red, sources=[os.path.abspath(p) for p in paths])
    if factor is not None:
        dsm = factor * red.diff
        dsm_sigma = None if red.sigma is None else np.abs(factor) * red.sigma
        if baseline is not None:
            dsm = subtract_baseline(q, dsm, degree=int(baseline))     # unweighted: every q counts alike
        pdf = delta_pdf(q, dsm, r, damping=damping, fill_low_q=fill_low_q)
        pdf_sigma = None
        if dsm_sigma is not None:    # the transform is linear: its matrix from the unit vectors
            K = delta_pdf(q, np.eye(q.size), r, damping=damping, fill_low_q=fill_low_q)       # (Q, R)
            with np.errstate(invalid="ignore"):
                pdf_sigma = np.sqrt(np.where(np.isfinite(dsm_sigma), dsm_sigma, np.inf) ** 2 @ (K * K))
        data.dsm, data.dsm_sigma, data.r, data.pdf, data.pdf_sigma = dsm, dsm_sigma, r, pdf, pdf_sigma
        data.molecule, data.probe, data.energy_kev = str(molecule), probe, energy_kev
        data.damping, data.fill_low_q, data.baseline = float(damping), fill_low_q, baseline
        lines.append(f"ΔsM and ΔPDF of {molecule} ({probe}) on {r.size} r points {r[0]:g}..{r[-1]:g} Å, damping "
                     f"exp(−{damping:g} q²)" + (f", baseline of degree {baseline} subtracted" if baseline is not None
                                                 else ""))
    if onset is not None:
        try:
            fit = fit_onset(red, q_range=onset, model=onset_model)
            scale = 1.0
            if red.sigma is not None and fit.dof > 0 and fit.chi2 > fit.dof:
                # χ²/dof > 1: the errors of the signal are too small (the q points of a bin are not independent:
                # they share the shot normalisation); the parameters' errors are scaled by √(χ²/dof)
                fit = fit_onset(red, q_range=onset, model=onset_model, absolute_sigma=False)
                scale = float(np.sqrt(fit.chi2 / fit.dof))
        except RuntimeError as err:       # curve_fit did not converge
            raise ValueError(f"the onset fit failed: {err}") from None
        data.onset, data.onset_q_range = fit, (float(onset[0]), float(onset[1]))
        data.onset_error_scale = scale
        lines.append(f"onset ({onset_model}, mean ΔI/I over {onset[0]:g}..{onset[1]:g} Å⁻¹): "
                     f"t0 = {_pm(fit.t0, fit.t0_err, ' fs')}, width σ = {_pm(fit.width, fit.width_err, ' fs')}, "
                     f"amplitude = {_pm(100 * fit.amplitude, 100 * fit.amplitude_err, ' %')}, "
                     + (f"χ²/dof = {fit.chi2:.4g}/{fit.dof}" if red.sigma is not None
                        else "unweighted (no bootstrap errors)")
                     + (f" (errors scaled by √(χ²/dof) = {scale:.3g})" if scale > 1 else ""))
        span = float(np.ptp(red.delay))
        loose = [n for n in ("t0", "width") if not fit.errors.get(n, 0) < span]
        if loose:
            warnings.warn(f"the onset fit does not determine {' and '.join(loose)} (an error larger than the delay "
                          f"range, {span:.4g} fs): more delay bins or shots, or another q range", RuntimeWarning,
                          stacklevel=2)
    fig = None
    if plot is not None:              # drawn before anything is written
        from .figures import plot_reduced

        fig = plot_reduced(data, None, at=delays)
    out = os.fspath(out)
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)), f".{os.path.basename(out)}.{os.getpid()}.tmp")
    try:
        write_reduced(tmp, data)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    lines.append(f"wrote {out}")
    if fig is not None:
        import matplotlib.pyplot as plt  # plotting only

        try:
            fig.savefig(os.fspath(plot), dpi=150)
        finally:
            plt.close(fig)
        lines.append(f"wrote plot {os.fspath(plot)}")
    return "\n".join(lines)
