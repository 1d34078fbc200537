"""Fits of reduced pump-probe data: time zero and the instrument response (:func:`fit_onset`), and the
excitation fraction and the product among candidate structures (:func:`fit_fraction`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .run import check_grid
from .signals import iam_patterns

__all__ = ["MODELS", "FractionFit", "OnsetFit", "fit_fraction", "fit_onset", "onset_model"]

#: The onset models of :func:`onset_model`.
MODELS = ("step", "step_exp")


def onset_model(t, t0: float, width: float, amplitude: float, tau: float | None = None, offset: float = 0.0,
                model: str = "step") -> np.ndarray:
    """The rise of a pump-probe signal: a step or an exponential rise, convolved with a Gaussian response.

    With x = t − t0, Φ the standard normal distribution function and σ = ``width``:

    - ``"step"``:     y = offset + A Φ(x / σ)
    - ``"step_exp"``: y = offset + A [Φ(x / σ) − exp(σ² / 2τ² − x / τ) Φ(x / σ − σ / τ)], the Gaussian
      convolution of A (1 − exp(−x / τ)) for x > 0 (0 before).

    Parameters
    ----------
    t : array_like
        Delays, fs.
    t0 : float
        Time zero, fs.
    width : float
        σ of the Gaussian instrument response, fs (> 0).
    amplitude : float
        A, the signal long after t0.
    tau : float or None, optional
        Rise time of ``"step_exp"``, fs (> 0).
    offset : float, optional
        The signal before t0.
    model : {'step', 'step_exp'}, optional
        The model.

    Returns
    -------
    numpy.ndarray
        y(t), the shape of ``t``.

    Raises
    ------
    ValueError
        An unknown model, or ``"step_exp"`` without ``tau``.
    """
    from scipy.special import log_ndtr, ndtr  # loaded on use: keeps `import xstructure` fast

    t = np.asarray(t, dtype=np.float64)
    u = (t - t0) / width
    if model == "step":
        return offset + amplitude * ndtr(u)
    if model == "step_exp":
        if tau is None:
            raise ValueError("model 'step_exp' needs tau")
        s = width / tau
        return offset + amplitude * (ndtr(u) - np.exp(0.5 * s * s - (t - t0) / tau + log_ndtr(u - s)))
    raise ValueError(f"unknown onset model {model!r}: use one of {MODELS}")


@dataclass
class OnsetFit:
    """The result of :func:`fit_onset`.

    Parameters
    ----------
    model : str
        ``"step"`` or ``"step_exp"``.
    t0, width, amplitude, offset : float
        Time zero (fs), the Gaussian σ of the instrument response (fs), the amplitude and the offset (in the
        unit of the fitted signal).
    tau : float or None
        Rise time of ``"step_exp"``, fs.
    errors : dict
        Standard errors of the parameters (keys ``t0``, ``width``, ``amplitude``, ``offset``, ``tau``), from the
        covariance of the least-squares fit.
    chi2 : float
        χ² of the fit (with the errors of the signal).
    dof : int
        Degrees of freedom.
    delay : numpy.ndarray
        (T,) delays fitted, fs.
    signal, signal_err : numpy.ndarray
        (T,) the signal per delay bin and its error.
    """

    model: str
    t0: float
    width: float
    amplitude: float
    offset: float
    tau: float | None
    errors: dict
    chi2: float
    dof: int
    delay: np.ndarray
    signal: np.ndarray
    signal_err: np.ndarray

    @property
    def t0_err(self) -> float:
        """Standard error of t0, fs."""
        return self.errors["t0"]

    @property
    def width_err(self) -> float:
        """Standard error of the width, fs."""
        return self.errors["width"]

    @property
    def amplitude_err(self) -> float:
        """Standard error of the amplitude."""
        return self.errors["amplitude"]

    def curve(self, t) -> np.ndarray:
        """The fitted model at delays ``t``.

        Parameters
        ----------
        t : array_like
            Delays, fs.

        Returns
        -------
        numpy.ndarray
            The model, the shape of ``t``.
        """
        return onset_model(t, self.t0, self.width, self.amplitude, self.tau, self.offset, self.model)


def _signal(reduced, q_range, template):
    q = np.asarray(reduced.q, dtype=np.float64)
    D = np.asarray(reduced.diff, dtype=np.float64)
    if D.ndim != 2 or D.shape[1] != q.size:
        raise ValueError(f"reduced.diff must have shape (T, Q) = (T, {q.size}), got {D.shape}")
    sel = np.ones(q.size, dtype=bool)
    if q_range is not None:
        lo, hi = (float(v) for v in q_range)
        sel = (q >= lo) & (q <= hi)
        if not np.any(sel):
            raise ValueError(f"q_range ({lo:g}, {hi:g}) holds no q point (q: {q[0]:g} .. {q[-1]:g} Å⁻¹)")
    sig = None if reduced.sigma is None else np.asarray(reduced.sigma, dtype=np.float64)
    Ds = D[:, sel]
    if sig is not None:
        var = sig[:, sel] ** 2
        ok = np.isfinite(var) & (var > 0)
        mean_var = np.where(ok, var, np.nan)
        with np.errstate(invalid="ignore"):
            mv = np.nanmean(mean_var, axis=0)
        w = np.where(np.isfinite(mv) & (mv > 0), 1.0 / np.where(mv > 0, mv, 1.0), 0.0)   # same q weights per bin
    else:
        var, ok, w = None, None, np.ones(int(sel.sum()))
    if template is not None:
        tm = np.asarray(template, dtype=np.float64)
        if tm.shape != (q.size,):
            raise ValueError(f"template must have shape (Q,) = ({q.size},), got {tm.shape} (q grid mismatch)")
        a = w * tm[sel]
        norm = float(a @ tm[sel])
        if norm <= 0:
            raise ValueError("the template is zero in the q range")
        coef = a / norm                        # y = Σ w t d / Σ w t²
    else:
        if w.sum() <= 0:
            raise ValueError("no q point in the range has a finite σ")
        coef = w / w.sum()                     # the signed mean weighted by 1/σ²
    y = Ds @ coef
    if var is None:
        return y, None
    V = np.where(ok, var, np.inf)
    err = np.sqrt(np.where(coef != 0, coef ** 2 * V, 0.0).sum(axis=1))
    return y, err


def fit_onset(reduced, q_range=None, model: str = "step", *, template=None, t_range=None, offset: bool = True,
              p0: dict | None = None, absolute_sigma: bool = True) -> OnsetFit:
    """Time zero, the instrument response and the amplitude from the rise of ΔI/I.

    The signal per delay bin is the signed mean of ΔI/I over the q points in ``q_range``, each point weighted
    by 1/σ̄² (σ̄² the mean over the bins of σ², the same weights for every bin, so that the signal has one
    definition), with its error propagated assuming independent q points; or, with ``template``, the
    least-squares amplitude of the template, Σ w t ΔI/I / Σ w t² (a matched filter: every q point counts with
    its sign).  Choose a q range where ΔI/I keeps one sign, or give a template (e.g. the late-time ΔI/I or a
    theoretical one).  :func:`onset_model` is fitted by ``scipy.optimize.curve_fit``.

    Parameters
    ----------
    reduced : Reduced
        The reduced run (:meth:`PumpProbe.reduce`).
    q_range : tuple or None, optional
        (qmin, qmax) in Å⁻¹; None: every q.
    model : {'step', 'step_exp'}, optional
        An error-function step, or an exponential rise (time constant ``tau``) convolved with the Gaussian.
    template : array_like or None, optional
        (Q,) pattern to project on instead of the mean.
    t_range : tuple or None, optional
        (t_min, t_max) delays to fit, fs.
    offset : bool, optional
        Fit a constant offset (else 0 before t0).
    p0 : dict or None, optional
        Starting values by name (``t0``, ``width``, ``amplitude``, ``tau``, ``offset``).
    absolute_sigma : bool, optional
        Take the bootstrap errors as absolute (else scale the covariance by χ²/dof).

    Returns
    -------
    OnsetFit
        The parameters with their standard errors.

    Raises
    ------
    ValueError
        An unknown model, an empty q or delay range, or too few delay bins for the parameters.
    """
    from scipy.optimize import curve_fit  # loaded on use: keeps `import xstructure` fast

    if model not in MODELS:
        raise ValueError(f"unknown onset model {model!r}: use one of {MODELS}")
    t = np.asarray(reduced.delay, dtype=np.float64)
    y, err = _signal(reduced, q_range, template)
    sel = np.isfinite(y)
    if err is not None:
        sel &= np.isfinite(err) & (err > 0)
    if t_range is not None:
        sel &= (t >= t_range[0]) & (t <= t_range[1])
    names = ["t0", "width", "amplitude"] + (["tau"] if model == "step_exp" else []) + (["offset"] if offset else [])
    if sel.sum() <= len(names):
        raise ValueError(f"{int(sel.sum())} delay bins with a finite signal: too few for the {len(names)} "
                         f"parameters of model {model!r}")
    t, y = t[sel], y[sel]
    err = None if err is None else err[sel]
    order = np.argsort(t)
    t, y = t[order], y[order]
    err = None if err is None else err[order]
    span = float(t[-1] - t[0]) or 1.0
    k = max(2, t.size // 5)
    base, top = float(np.mean(y[:k])), float(np.mean(y[-k:]))
    amp = top - base if top != base else 1e-12
    frac = (y - base) / amp
    cross = np.flatnonzero(frac >= 0.5)
    guess = {"t0": float(t[cross[0]]) if cross.size else float(np.median(t)), "width": span / 20,
             "amplitude": amp, "tau": span / 10, "offset": base}
    guess.update(p0 or {})
    lo = {"t0": t[0] - span, "width": span * 1e-6, "amplitude": -np.inf, "tau": span * 1e-6, "offset": -np.inf}
    hi = {"t0": t[-1] + span, "width": span, "amplitude": np.inf, "tau": 10 * span, "offset": np.inf}
    for n in ("width", "tau"):
        guess[n] = float(np.clip(guess[n], lo[n] * 10, hi[n] / 2))

    def f(tt, *p):
        d = dict(zip(names, p))
        return onset_model(tt, d["t0"], d["width"], d["amplitude"], d.get("tau"), d.get("offset", 0.0), model)

    popt, pcov = curve_fit(f, t, y, p0=[guess[n] for n in names], sigma=err,
                           absolute_sigma=absolute_sigma and err is not None,
                           bounds=([lo[n] for n in names], [hi[n] for n in names]), maxfev=20000)
    perr = np.sqrt(np.clip(np.diag(pcov), 0, np.inf))
    res = y - f(t, *popt)
    chi2 = float(np.sum((res / err) ** 2)) if err is not None else float(np.sum(res ** 2))
    d = dict(zip(names, popt))
    e = dict(zip(names, perr))
    y_all, err_all = _signal(reduced, q_range, template)
    return OnsetFit(model=model, t0=float(d["t0"]), width=float(d["width"]), amplitude=float(d["amplitude"]),
                    offset=float(d.get("offset", 0.0)), tau=float(d["tau"]) if "tau" in d else None,
                    errors={n: float(e.get(n, 0.0)) for n in ("t0", "width", "amplitude", "tau", "offset")},
                    chi2=chi2, dof=int(t.size - len(names)), delay=np.asarray(reduced.delay, dtype=np.float64),
                    signal=y_all, signal_err=err_all if err_all is not None else np.full(y_all.shape, np.nan))


# ---- fraction and product ----------------------------------------------------------------------------------------

@dataclass
class FractionFit:
    """One candidate product scored by :func:`fit_fraction`.

    Parameters
    ----------
    index : int
        Its position in the candidate list.
    candidate : object
        The candidate as given.
    label : str
        A name for it.
    fraction : float or numpy.ndarray
        The excitation fraction f (per delay bin, (T,), for (T, Q) data).
    fraction_err : float or numpy.ndarray
        Its standard error.
    chi2 : float
        χ² of the fit (summed over the delay bins).
    dof : int
        Degrees of freedom (points minus fitted fractions).
    model : numpy.ndarray
        The fitted ΔI/I, the shape of the data.
    """

    index: int
    candidate: object
    label: str
    fraction: float | np.ndarray
    fraction_err: float | np.ndarray
    chi2: float
    dof: int
    model: np.ndarray = field(repr=False)

    @property
    def reduced_chi2(self) -> float:
        """χ² / dof."""
        return self.chi2 / max(self.dof, 1)


def _label(c, i: int) -> str:
    if isinstance(c, str):
        return c
    if isinstance(c, os.PathLike):
        return os.path.basename(os.fspath(c))
    if hasattr(c, "pattern_sets"):
        return f"Pool {getattr(c, 'path', '')}".strip()
    if hasattr(c, "get_chemical_formula"):
        return f"{c.get_chemical_formula()} #{i}"
    return f"candidate #{i}"


def _total(spec, q, probe, energy_kev, what: str) -> np.ndarray:
    if isinstance(spec, np.ndarray) and spec.dtype.kind in "iuf" and spec.ndim == 1:
        if spec.size != q.size:
            raise ValueError(f"{what} is a pattern of {spec.size} points but q has {q.size} (q grid mismatch)")
        return spec.astype(np.float64)
    return iam_patterns(spec, q, probe, energy_kev)[0]


def _window(normalize, q):
    if normalize is None or normalize == "weights":
        return None
    if normalize == "window":
        return slice(0, q.size)
    if isinstance(normalize, (tuple, list)) and len(normalize) == 3 and normalize[0] == "window":
        lo = -np.inf if normalize[1] is None else float(normalize[1])
        hi = np.inf if normalize[2] is None else float(normalize[2])
        i0, i1 = int(np.searchsorted(q, lo, "left")), int(np.searchsorted(q, hi, "right"))
        if i1 <= i0:
            raise ValueError(f"normalisation window ({lo:g}, {hi:g}) Å⁻¹ holds no q point")
        return slice(i0, i1)
    raise ValueError(f"normalize must be None, 'weights', 'window' or ('window', qmin, qmax), got {normalize!r}")


def fit_fraction(q, diff, reactant, candidates, probe: str = "xray", energy_kev: float | None = None, sigma=None,
                 normalize=None) -> list[FractionFit]:
    """The excitation fraction for each candidate product, ranked by χ² (best first).

    The model is ΔI/I = f (I_P − I_R) / I_R with I_P and I_R the IAM total scattering of the candidate product
    and the reactant, fitted by weighted linear least squares in closed form: f = Σ w b d / Σ w b², with
    b = (I_P − I_R)/I_R, d the data and w = 1/σ².  When the shots were normalised by their sum over a q
    window (``normalize`` as given to :meth:`PumpProbe.reduce`), the reference changes with the product too:
    ΔI/I = (1 + f b) / (1 + f β) − 1 with β = Σ_win (I_P − I_R) / Σ_win I_R, which is linear in f as
    d = f [b − β (1 + d)], and is fitted as such.

    Parameters
    ----------
    q : array_like
        (Q,) momentum transfer, Å⁻¹.
    diff : array_like
        (Q,) or (T, Q) ΔI/I; with (T, Q), one fraction per row (a time trace f(t)), χ² summed over rows.
    reactant : str, ase.Atoms, tuple, Pool or numpy.ndarray
        The unpumped sample (see :func:`~xstructure.experiment.signals.iam_patterns`), or its (Q,) total
        pattern on the q grid.
    candidates : list
        Candidate products: names, SMILES, files, ``ase.Atoms``, ``(numbers, positions)`` tuples,
        :class:`xstructure.Pool` objects (the mean pattern of their geometries) or (Q,) total patterns.
    probe : {'xray', 'electron'}, optional
        The probe.
    energy_kev : float or None, optional
        Electron kinetic energy in keV.
    sigma : array_like or None, optional
        Errors of ``diff`` (its shape, or (Q,)); None: unweighted, and the fraction's error from the scatter of
        the residuals.
    normalize : None, 'weights', 'window' or tuple, optional
        How the shots were normalised (see above).

    Returns
    -------
    list of FractionFit
        One per candidate, lowest χ² first.

    Raises
    ------
    ValueError
        ``diff`` or a pattern not on the q grid, no candidates, or a bad structure.
    """
    q = check_grid(q)
    d = np.asarray(diff, dtype=np.float64)
    if d.ndim not in (1, 2) or d.shape[-1] != q.size:
        raise ValueError(f"diff must have shape (Q,) or (T, Q) with Q = {q.size} (the q grid), got {d.shape} "
                         "(q grid mismatch)")
    if isinstance(candidates, (str, os.PathLike)) or hasattr(candidates, "pattern_sets") or \
            hasattr(candidates, "get_chemical_formula"):
        candidates = [candidates]
    candidates = list(candidates)
    if not candidates:
        raise ValueError("no candidate products")
    D = np.atleast_2d(d)
    if sigma is None:
        W = np.ones_like(D)
    else:
        s = np.asarray(sigma, dtype=np.float64)
        try:
            s = np.broadcast_to(s, d.shape).reshape(D.shape)
        except ValueError:
            raise ValueError(f"sigma has shape {s.shape}, diff {d.shape}") from None
        W = np.where(np.isfinite(s) & (s > 0), 1.0 / np.where(s > 0, s, 1.0) ** 2, 0.0)
    W = np.where(np.isfinite(D), W, 0.0)
    D = np.where(np.isfinite(D), D, 0.0)
    i_r = _total(reactant, q, probe, energy_kev, "reactant")
    win = _window(normalize, q)
    out = []
    for i, c in enumerate(candidates):
        i_p = _total(c, q, probe, energy_kev, f"candidate {i}")
        b = (i_p - i_r) / i_r
        B = np.broadcast_to(b, D.shape)
        if win is not None:
            beta = float((i_p[win] - i_r[win]).sum() / i_r[win].sum())
            B = B - beta * (1.0 + D)
        sbb = np.sum(W * B * B, axis=1)
        f = np.where(sbb > 0, np.sum(W * B * D, axis=1) / np.where(sbb > 0, sbb, 1.0), 0.0)
        model = f[:, None] * B
        if win is not None:
            beta_model = f[:, None] * beta
            model = f[:, None] * np.broadcast_to(b, D.shape) - beta_model
            model = model / (1.0 + beta_model)        # (1 + f b)/(1 + f β) − 1
        r2 = W * (D - model) ** 2
        chi2_rows = r2.sum(axis=1)
        n_pts = (W > 0).sum(axis=1)
        if sigma is None:
            scale = chi2_rows / np.maximum(n_pts - 1, 1)
            err = np.where(sbb > 0, np.sqrt(scale / np.where(sbb > 0, sbb, 1.0)), np.inf)
        else:
            err = np.where(sbb > 0, 1.0 / np.sqrt(np.where(sbb > 0, sbb, 1.0)), np.inf)
        single = d.ndim == 1
        out.append(FractionFit(index=i, candidate=c, label=_label(c, i), fraction=float(f[0]) if single else f,
                               fraction_err=float(err[0]) if single else err, chi2=float(chi2_rows.sum()),
                               dof=int(n_pts.sum() - D.shape[0]), model=model[0] if single else model))
    out.sort(key=lambda r: r.chi2)
    return out
