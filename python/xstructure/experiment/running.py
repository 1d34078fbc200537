"""The pump-probe reduction one batch of shots at a time, for live data: :class:`RunningReduction`.

:meth:`PumpProbe.reduce <xstructure.experiment.PumpProbe.reduce>` sees the whole run: equal-count bins, medians,
the nearest laser-off shots, a bootstrap.  A live analysis sees shots as they come and must give ΔI/I at any
moment in a time that does not grow with the run, so the running reduction keeps sums only:

* each shot is normalised by its sum over a q window (as ``normalize=("window", qmin, qmax)``);
* a shot is rejected when its profile has a non-finite value (``"nan"``), its normalisation is not positive
  (``"normalization"``), or more than ``reject_fraction`` of its q points lie farther than ``reject`` standard
  deviations from the running mean of its group (``"outlier"``): the laser-off shots, or the laser-on shots of its
  delay bin, once the group holds ``warmup`` shots (the pumped signal can be many times the noise of a
  well-averaged profile, so laser-on shots are not tested against the laser-off shots);
* the laser-off shots are pooled into one reference (``reference="all"``); laser-on shots are summed per delay bin
  of fixed ``edges`` (corrected delay = nominal + timetool, a NaN timetool counting as 0);
* ΔI/I_b = ⟨I_on⟩_b / ⟨I_off⟩ − 1, with the standard error from the running variances,
  σ_b² = var_on,b / (n_b ⟨I_off⟩²) + ⟨I_on⟩_b² var_off / (n_off ⟨I_off⟩⁴).

:meth:`RunningReduction.reduced` returns a :class:`~xstructure.experiment.Reduced`, so every later step
(:func:`delta_sm`, :func:`delta_pdf`, :func:`fit_onset`, the figures) works on a live run as on a finished one.
"""

from __future__ import annotations

import numpy as np

from .run import REASONS, Reduced, check_grid, normalize_spec

__all__ = ["STATUS", "RunningReduction"]

#: Status codes :meth:`RunningReduction.add` returns per shot: 0 used, 1 processed but outside the map (no laser
#: state, or a laser-on delay outside the bins), then one code per rejection reason.
STATUS = {"used": 0, "excluded": 1, "nan": 2, "normalization": 3, "outlier": 4}


class RunningReduction:
    """ΔI/I per delay bin, updated shot by shot.

    Parameters
    ----------
    q : array_like
        (Q,) the profiles' grid, Å⁻¹.
    edges : array_like
        (T + 1,) increasing delay-bin edges (the stream's delay unit, fs by convention); bins [e_k, e_k+1).
    normalize : tuple or str, optional
        ``("window", qmin, qmax)`` or ``"window"`` (the whole grid).
    reject : float or None, optional
        Outlier threshold in standard deviations; None: only non-finite shots and bad normalisations are rejected.
    reject_fraction : float, optional
        Fraction of q points beyond the threshold that rejects a shot.
    warmup : int, optional
        Shots a group (the laser-off shots, or one delay bin's laser-on shots) must hold before its outlier
        test starts.

    Raises
    ------
    ValueError
        A bad grid, edges, window or threshold.
    """

    def __init__(self, q, edges, *, normalize="window", reject: float | None = 6.0, reject_fraction: float = 0.05,
                 warmup: int = 50):
        self.q = check_grid(q)
        e = np.asarray(edges, dtype=np.float64).ravel()
        if e.size < 2 or not np.all(np.isfinite(e)) or np.any(np.diff(e) <= 0):
            raise ValueError("edges must be >= 2 finite, increasing delays")
        self.edges = e
        spec = normalize_spec(normalize, self.q, has_weights=False)
        if spec is None or spec == "weights":
            raise ValueError("a running reduction normalises by a q window: normalize='window' or "
                             "('window', qmin, qmax)")
        self._window = slice(spec[1], spec[2])
        self.normalize = normalize
        if reject is not None and not reject > 0:
            raise ValueError(f"reject must be > 0 or None, got {reject}")
        if not 0 <= reject_fraction < 1:
            raise ValueError(f"reject_fraction must lie in [0, 1), got {reject_fraction}")
        self.reject, self.reject_fraction, self.warmup = reject, float(reject_fraction), int(warmup)
        T, Q = e.size - 1, self.q.size
        self.n_on = np.zeros(T, dtype=np.int64)
        self.sum_on = np.zeros((T, Q))
        self.sum2_on = np.zeros((T, Q))
        self.sum_t = np.zeros(T)
        self.n_off = 0
        self.sum_off = np.zeros(Q)
        self.sum2_off = np.zeros(Q)
        self.n_all = 0
        self.sum_all = np.zeros(Q)
        self.rejected = dict.fromkeys(REASONS, 0)
        self.excluded = {"outside_bins": 0, "no_state": 0}

    @property
    def centres(self) -> np.ndarray:
        """(T,) midpoints of the bins."""
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    def add(self, profiles, delay, pumped, timetool=None) -> np.ndarray:
        """Add a batch of shots.

        Parameters
        ----------
        profiles : array_like
            (n, Q) radial profiles.
        delay : array_like
            (n,) nominal delays.
        pumped : array_like
            (n,) 1 laser on, 0 laser off, -1 unknown (processed, not reduced).
        timetool : array_like or None, optional
            (n,) timetool corrections (NaN: none).

        Returns
        -------
        numpy.ndarray
            (n,) uint8 status per shot (:data:`STATUS`).
        """
        P = np.asarray(profiles, dtype=np.float64)
        if P.ndim != 2 or P.shape[1] != self.q.size:
            raise ValueError(f"profiles must be (n, {self.q.size}), got {P.shape}")
        n = P.shape[0]
        state = np.asarray(pumped, dtype=np.int8).ravel()
        t = np.asarray(delay, dtype=np.float64).ravel()
        if timetool is not None:
            tt = np.asarray(timetool, dtype=np.float64).ravel()
            t = t + np.where(np.isfinite(tt), tt, 0.0)
        status = np.zeros(n, dtype=np.uint8)
        finite = np.isfinite(P).all(axis=1)
        status[~finite] = STATUS["nan"]
        norm = np.where(finite, P[:, self._window].sum(axis=1), np.nan)
        bad = finite & ~(norm > 0)
        status[bad] = STATUS["normalization"]
        ok = status == 0
        X = np.zeros_like(P)
        X[ok] = P[ok] / norm[ok, None]
        k = np.searchsorted(self.edges, t, side="right") - 1
        k = np.where(t == self.edges[-1], self.edges.size - 2, k)
        inside = (k >= 0) & (k < self.edges.size - 1) & np.isfinite(t)
        if self.reject is not None and np.any(ok):
            # each shot against the running mean and spread of its own group: the laser-off shots, or the
            # laser-on shots of its delay bin (the pumped signal can exceed the noise of a well-averaged profile)
            groups = [(ok & (state == 0), self.n_off, self.sum_off, self.sum2_off)]
            for b in np.unique(k[ok & (state == 1) & inside]):
                groups.append((ok & (state == 1) & inside & (k == b), self.n_on[b], self.sum_on[b],
                               self.sum2_on[b]))
            for sel, n_g, s1, s2 in groups:
                if n_g < self.warmup or not np.any(sel):
                    continue
                mean = s1 / n_g
                sd = np.sqrt(np.maximum(s2 / n_g - mean ** 2, 0.0))
                sd = np.where(sd > 0, sd, np.inf)
                far = (np.abs(X[sel] - mean) > self.reject * sd).mean(axis=1) > self.reject_fraction
                idx = np.flatnonzero(sel)[far]
                status[idx] = STATUS["outlier"]
                ok[idx] = False
        for reason in ("nan", "normalization", "outlier"):
            self.rejected[reason] += int(np.count_nonzero(status == STATUS[reason]))
        self.n_all += int(ok.sum())
        self.sum_all += X[ok].sum(axis=0)
        off = ok & (state == 0)
        if np.any(off):
            self.n_off += int(off.sum())
            self.sum_off += X[off].sum(axis=0)
            self.sum2_off += (X[off] ** 2).sum(axis=0)
        unknown = ok & (state != 0) & (state != 1)
        self.excluded["no_state"] += int(unknown.sum())
        status[unknown] = STATUS["excluded"]
        on = ok & (state == 1)
        if np.any(on):
            inside = on & inside
            outside = on & ~inside
            self.excluded["outside_bins"] += int(outside.sum())
            status[outside] = STATUS["excluded"]
            if np.any(inside):
                kk = k[inside]
                T = self.edges.size - 1
                onehot = np.zeros((T, kk.size))
                onehot[kk, np.arange(kk.size)] = 1.0
                Xi = X[inside]
                self.n_on += np.bincount(kk, minlength=T)
                self.sum_on += onehot @ Xi
                self.sum2_on += onehot @ (Xi * Xi)
                self.sum_t += np.bincount(kk, weights=t[inside], minlength=T)
        return status

    @property
    def average(self) -> np.ndarray | None:
        """(Q,) the mean normalised profile of every shot used so far (None before the first)."""
        return self.sum_all / self.n_all if self.n_all else None

    def diff_map(self) -> tuple[np.ndarray, np.ndarray]:
        """(T, Q) ΔI/I for every bin (NaN where a bin is empty or there is no reference yet) and its σ."""
        T, Q = self.sum_on.shape
        diff = np.full((T, Q), np.nan)
        sigma = np.full((T, Q), np.nan)
        if self.n_off == 0:
            return diff, sigma
        m_off = self.sum_off / self.n_off
        v_off = np.maximum(self.sum2_off / self.n_off - m_off ** 2, 0.0)
        have = self.n_on > 0
        n = self.n_on[have, None].astype(np.float64)
        m_on = self.sum_on[have] / n
        v_on = np.maximum(self.sum2_on[have] / n - m_on ** 2, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            diff[have] = m_on / m_off - 1.0
            var = v_on / (n * m_off ** 2) + m_on ** 2 * v_off / (self.n_off * m_off ** 4)
            sigma[have] = np.where(n > 1, np.sqrt(var), np.inf)
        return diff, sigma

    def reduced(self) -> Reduced | None:
        """The reduction so far as a :class:`~xstructure.experiment.Reduced` (bins without a laser-on shot left
        out, listed in ``dropped``); None while there is no reference or no laser-on shot in any bin."""
        have = self.n_on > 0
        if self.n_off == 0 or not np.any(have):
            return None
        diff, sigma = self.diff_map()
        m_off = self.sum_off / self.n_off
        edges = np.stack([self.edges[:-1], self.edges[1:]], axis=1)
        rejected = dict(self.rejected)
        rejected["total"] = sum(rejected.values())
        return Reduced(delay=self.sum_t[have] / self.n_on[have], q=self.q.copy(), diff=diff[have],
                       sigma=sigma[have], counts=self.n_on[have].copy(),
                       off=np.repeat(m_off[None], int(have.sum()), axis=0), edges=edges[have], rejected=rejected,
                       excluded={"outside_bins": self.excluded["outside_bins"],
                                 "empty_bins": int((~have).sum())},
                       n_off=int(self.n_off), dropped=[tuple(e) for e in edges[~have]],
                       settings={"normalize": self.normalize, "reject": self.reject,
                                 "reject_fraction": self.reject_fraction, "reference": "all",
                                 "bootstrap": 0, "running": True})

    def state(self) -> dict:
        """The sums, as arrays (to store beside the profiles, or to resume)."""
        return {"edges": self.edges, "n_on": self.n_on, "sum_on": self.sum_on, "sum2_on": self.sum2_on,
                "sum_t": self.sum_t, "n_off": np.int64(self.n_off), "sum_off": self.sum_off,
                "sum2_off": self.sum2_off, "n_all": np.int64(self.n_all), "sum_all": self.sum_all,
                "rejected": np.array([self.rejected.get(r, 0) for r in REASONS], dtype=np.int64)}


def edges_of(delays) -> np.ndarray:
    """Bin edges half-way between sorted distinct nominal delays (the outer bins as wide as their neighbours).

    Parameters
    ----------
    delays : array_like
        Nominal delays.

    Returns
    -------
    numpy.ndarray
        (T + 1,) edges for T distinct delays.
    """
    d = np.unique(np.asarray(delays, dtype=np.float64))
    if d.size == 1:
        return np.array([d[0] - 1.0, d[0] + 1.0])
    mid = 0.5 * (d[1:] + d[:-1])
    return np.concatenate([[d[0] - (mid[0] - d[0])], mid, [d[-1] + (d[-1] - mid[-1])]])
