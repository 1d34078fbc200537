"""Synthetic pump-probe runs with a known answer: :func:`simulate_pumpprobe`.

Shot i has a true delay t_i = nominal delay + jitter_i.  A laser-on shot scatters

    I_i(q) = I_R(q) + f h(t_i) (I_P(q) − I_R(q)),    h(t) = Φ((t − t0) / width)

(a step at t0 smoothed by a Gaussian of σ = ``width``), a laser-off shot I_R(q).  Each shot's expected counts
are μ_i(q) = dose · g_i · I_i(q) / Σ_q I_R(q), with g_i a per-shot intensity factor of mean 1 and relative
spread ``fluctuation`` (a gamma distribution), and the recorded profile is Poisson(μ_i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .run import PumpProbe, check_grid
from .signals import iam_patterns

__all__ = ["Truth", "simulate_pumpprobe"]


@dataclass
class Truth:
    """What a simulated run was made from.

    Parameters
    ----------
    fraction, t0, width : float
        Excitation fraction, time zero (fs) and σ of the Gaussian rise (fs).
    dose : float
        Expected counts per shot summed over the q grid, for the reactant's pattern and g = 1.
    q : numpy.ndarray
        (Q,) momentum transfer, Å⁻¹.
    i_reactant, i_product : numpy.ndarray
        (Q,) IAM total scattering of reactant and product.
    true_delay : numpy.ndarray
        (S,) true delay of each shot (nominal + jitter), fs.
    jitter : numpy.ndarray
        (S,) the timing jitter, fs.
    scale : numpy.ndarray
        (S,) the per-shot intensity factor g.
    outliers : numpy.ndarray
        Indices of the shots given a spike.
    """

    fraction: float
    t0: float
    width: float
    dose: float
    q: np.ndarray
    i_reactant: np.ndarray
    i_product: np.ndarray
    true_delay: np.ndarray
    jitter: np.ndarray
    scale: np.ndarray
    outliers: np.ndarray

    def rise(self, t) -> np.ndarray:
        """h(t) = Φ((t − t0) / width): the fraction of the final signal at delay ``t``.

        Parameters
        ----------
        t : array_like
            Delays, fs.

        Returns
        -------
        numpy.ndarray
            The shape of ``t``.
        """
        from scipy.special import ndtr  # loaded on use: keeps `import xstructure` fast

        return ndtr((np.asarray(t, dtype=np.float64) - self.t0) / self.width)

    def diff(self, t) -> np.ndarray:
        """The true ΔI/I = f h(t) (I_P − I_R) / I_R at delays ``t`` (shots normalised by their incident intensity).

        Parameters
        ----------
        t : array_like
            (T,) delays, fs.

        Returns
        -------
        numpy.ndarray
            (T, Q).
        """
        b = (self.i_product - self.i_reactant) / self.i_reactant
        return self.fraction * np.atleast_1d(self.rise(t))[:, None] * b


def simulate_pumpprobe(reactant, product, q, delays, shots: int, fraction: float, t0: float, width: float,
                       dose: float, probe: str = "xray", energy_kev: float | None = None, fluctuation: float = 0.2,
                       jitter: float = 100.0, timetool_error: float = 10.0, monitor_error: float = 0.01,
                       outliers: float = 0.001, dtype="float32", seed: int = 0):
    """A synthetic pump-probe run of ``reactant`` → ``product`` with a known answer.

    The run scans the nominal ``delays`` in order, ``shots / len(delays)`` shots each (the remainder to the
    first ones); shots alternate laser on, laser off, starting with on.  Every shot gets a Gaussian timing
    jitter (σ = ``jitter``) that a timetool measures with a Gaussian error (σ = ``timetool_error``), an
    intensity factor g (mean 1, relative spread ``fluctuation``) that an intensity monitor reads with relative
    error ``monitor_error`` (the run's ``weights``), and Poisson noise at ``dose``.  A fraction ``outliers`` of
    the shots get a spike: a Gaussian peak, 2 % of the q range wide, as high as the shot's strongest point.

    Parameters
    ----------
    reactant, product : str, ase.Atoms, tuple or Pool
        The structures (see :func:`~xstructure.experiment.signals.iam_patterns`).
    q : array_like
        (Q,) momentum transfer, Å⁻¹.
    delays : array_like
        (D,) nominal delays, fs.
    shots : int
        Number of shots S (laser on and off together), ≥ 2 D.
    fraction : float
        Excitation fraction f, 0 ≤ f ≤ 1.
    t0 : float
        Time zero, fs.
    width : float
        σ of the Gaussian rise, fs (> 0).
    dose : float
        Expected counts per shot summed over the q grid (photons for X-rays, electrons for UED), for the
        reactant's pattern and g = 1; ``inf``: no Poisson noise.
    probe : {'xray', 'electron'}, optional
        The probe.
    energy_kev : float or None, optional
        Electron kinetic energy in keV.
    fluctuation : float, optional
        Relative spread of the shot intensity (0: none).
    jitter : float, optional
        σ of the timing jitter, fs.
    timetool_error : float, optional
        σ of the timetool's error, fs.
    monitor_error : float, optional
        Relative error of the intensity monitor.
    outliers : float, optional
        Fraction of shots with a spike.
    dtype : str or numpy.dtype, optional
        Type of the profiles (float32 holds counts exactly up to 2²⁴).
    seed : int, optional
        Random seed.

    Returns
    -------
    run : PumpProbe
        The run (in memory), with ``timetool`` and ``weights``.
    truth : Truth
        The parameters and per-shot facts it was made from.

    Raises
    ------
    ValueError
        Out-of-range parameters, or structures with different atoms.
    """
    q = check_grid(q)
    delays = np.asarray(delays, dtype=np.float64).ravel()
    if delays.size == 0 or not np.all(np.isfinite(delays)):
        raise ValueError("delays must be a non-empty array of finite delays in fs")
    if isinstance(shots, bool) or not isinstance(shots, (int, np.integer)) or shots < 2 * delays.size:
        raise ValueError(f"shots must be an integer >= 2 x the number of delays ({2 * delays.size}), got {shots!r}")
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    if not (math.isfinite(width) and width > 0):
        raise ValueError(f"width must be > 0 fs, got {width}")
    if not dose > 0:
        raise ValueError(f"dose must be > 0 counts per shot, got {dose}")
    for name, v in (("fluctuation", fluctuation), ("jitter", jitter), ("timetool_error", timetool_error),
                    ("monitor_error", monitor_error)):
        if not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {v}")
    if not 0 <= outliers < 1:
        raise ValueError(f"outliers must be a fraction in [0, 1), got {outliers}")
    i_r, at_r = iam_patterns(reactant, q, probe, energy_kev)
    i_p, at_p = iam_patterns(product, q, probe, energy_kev)
    if not np.allclose(at_r, at_p, rtol=1e-9, atol=0):
        raise ValueError("reactant and product have different atoms")
    S = int(shots)
    rng = np.random.default_rng(seed)
    per = np.full(delays.size, S // delays.size)
    per[:S % delays.size] += 1
    nominal = np.repeat(delays, per)
    pumped = np.arange(S) % 2 == 0
    jit = rng.normal(0.0, jitter, S) if jitter > 0 else np.zeros(S)
    timetool = jit + (rng.normal(0.0, timetool_error, S) if timetool_error > 0 else 0.0)
    if fluctuation > 0:
        k = 1.0 / fluctuation ** 2
        g = rng.gamma(k, 1.0 / k, S)
    else:
        g = np.ones(S)
    monitor = g * (1.0 + rng.normal(0.0, monitor_error, S)) if monitor_error > 0 else g.copy()
    t_true = nominal + jit
    truth = Truth(fraction=float(fraction), t0=float(t0), width=float(width), dose=float(dose), q=q,
                  i_reactant=i_r, i_product=i_p, true_delay=t_true, jitter=jit, scale=g,
                  outliers=np.empty(0, dtype=np.int64))
    h = np.where(pumped, truth.rise(t_true), 0.0)
    unit = i_r / i_r.sum()
    dunit = (i_p - i_r) / i_r.sum()
    out = np.empty((S, q.size), dtype=dtype)
    n_out = round(outliers * S)
    bad = np.sort(rng.choice(S, n_out, replace=False)) if n_out else np.empty(0, dtype=np.int64)
    truth.outliers = bad
    span = q[-1] - q[0] if q.size > 1 else 1.0
    step = 65536
    for a in range(0, S, step):
        b = min(S, a + step)
        mu = dose * g[a:b, None] * (unit + fraction * h[a:b, None] * dunit)
        sel = bad[(bad >= a) & (bad < b)]
        if sel.size:
            centre = rng.uniform(q[0], q[-1], sel.size)
            peak = np.exp(-0.5 * ((q[None, :] - centre[:, None]) / (0.02 * span)) ** 2)
            mu[sel - a] += mu[sel - a].max(axis=1, keepdims=True) * peak
        out[a:b] = rng.poisson(mu) if math.isfinite(dose) else mu
    run = PumpProbe(q, out, nominal, pumped, timetool=timetool, weights=monitor)
    return run, truth
