"""Evaluation of models and baselines on the same noisy test inputs, and the report."""

from __future__ import annotations

import time

import numpy as np

from ..align import rmsd
from ..structures import bond_graph
from .baselines import MeanStructure, PoolFit, Ridge
from .data import Noise, PoolData, heavy_mask
from .refine import refine

__all__ = ["scores", "evaluate", "THRESHOLDS", "format_table", "information_limit"]

THRESHOLDS = (0.05, 0.1, 0.2)


def scores(pred: np.ndarray, true: np.ndarray, numbers) -> dict:
    """The scores of predicted structures against the truth.

    Heavy-atom RMSD (the headline: X-rays barely see hydrogen) and all-atom RMSD after superposition, mirror
    images allowed, and the accuracy at the thresholds of :data:`THRESHOLDS`.

    Parameters
    ----------
    pred, true : numpy.ndarray
        (B, N, 3) predicted and true positions, Å.
    numbers : array_like
        (N,) atomic numbers.

    Returns
    -------
    scores : dict
        ``median_rmsd``, ``mean_rmsd`` (heavy atoms, Å), ``median_rmsd_all``, ``mean_rmsd_all`` (all atoms, Å)
        and ``accuracy@0.05``, ``accuracy@0.1``, ``accuracy@0.2`` (fraction of structures within that many Å).
    per_structure : numpy.ndarray
        (B,) heavy-atom RMSD of each structure, Å.
    """
    h = heavy_mask(numbers)
    rh = np.atleast_1d(rmsd(np.ascontiguousarray(pred[:, h]), np.ascontiguousarray(true[:, h]), reflection=True))
    ra = np.atleast_1d(rmsd(pred, true, reflection=True))
    out = {"median_rmsd": float(np.median(rh)), "mean_rmsd": float(np.mean(rh)),
           "median_rmsd_all": float(np.median(ra)), "mean_rmsd_all": float(np.mean(ra))}
    for t in THRESHOLDS:
        out[f"accuracy@{t:g}"] = float(np.mean(rh <= t))
    return out, rh


def _bonds(numbers, reference, targets):
    adj = bond_graph(numbers, reference)
    i, j = np.nonzero(np.triu(adj))
    d = np.linalg.norm(targets[:, i] - targets[:, j], axis=-1)
    return np.stack([i, j], 1), d.mean(0), np.maximum(d.std(0), 1e-3)


def evaluate(data: PoolData, noise: Noise, *, models: dict | None = None, baselines=("mean_structure", "pool_fit",
             "ridge"), refine_methods=("best",), refine_steps: int = 40, n_test: int | None = None, seed: int = 1,
             progress: bool = True, log=print) -> dict:
    """Score every model and baseline on the test split, with one noisy draw of its patterns for all.

    Parameters
    ----------
    data : PoolData
        The pool's data (its train split builds the baselines, its test split is scored).
    noise : Noise
        Noise model of the test inputs (and of the ridge regression's training inputs).
    models : dict or None, optional
        Name -> :class:`~xstructure.learn.train.InversionModel`.
    baselines : tuple of str, optional
        Any of ``"mean_structure"``, ``"pool_fit"``, ``"ridge"``.
    refine_methods : tuple of str, optional
        Methods whose predictions are also refined (reported as ``name+refine``); ``"best"``: the method with
        the lowest median heavy-atom RMSD.
    refine_steps : int, optional
        Adam steps of the refinement (see :func:`~xstructure.learn.refine.refine`).
    n_test : int or None, optional
        Score only the first ``n_test`` test members.
    seed : int, optional
        Seed of the noise draws.
    progress : bool, optional
        Log each method's scores.
    log : callable, optional
        Receives the progress lines.

    Returns
    -------
    dict
        The report: ``"molecule"``, ``"noise"``, ``"test_size"``, ``"q"``, ``"probe"``, ``"signal"`` and
        ``"methods"``: name -> the :func:`scores` (RMSD in Å) and ``"seconds"``. Keys starting with ``_`` hold
        arrays for plots: ``_predictions`` (name -> (B, N, 3) Å), ``_per_structure`` (name -> (B,) Å),
        ``_observed`` (the noisy inputs) and ``_true`` ((B, N, 3) Å).

    Raises
    ------
    ValueError
        An empty test split.
    """
    I_true = data.patterns["test"][:n_test]
    X_true = data.targets["test"][:n_test]
    if len(I_true) == 0:
        raise ValueError("the test split is empty")
    I_obs = noise.apply(I_true, np.random.default_rng([seed, 7]))
    report = {"molecule": data.molecule, "noise": noise.to_dict(), "test_size": int(len(I_true)),
              "q": {"min": float(data.q[0]), "max": float(data.q[-1]), "points": int(len(data.q))},
              "probe": data.probe, "signal": data.signal, "methods": {}}
    preds, per = {}, {}

    def record(name, fn):
        t0 = time.perf_counter()
        p = fn()
        dt = time.perf_counter() - t0
        s, rh = scores(p, X_true, data.numbers)
        s["seconds"] = dt
        report["methods"][name] = s
        preds[name], per[name] = p, rh
        if progress:
            log(f"  {name:24s} median {s['median_rmsd']:.4f} Å  acc@0.05 {s['accuracy@0.05']:.1%}  ({dt:.1f} s)")

    for name, m in (models or {}).items():
        record(name, lambda m=m: m.predict(I_obs.reshape(len(I_obs), *data.input_shape), data.molecule))
    if "mean_structure" in baselines:
        record("mean_structure", lambda: MeanStructure(data.targets["train"]).predict(I_obs))
    if "pool_fit" in baselines:
        record("pool_fit", lambda: PoolFit(data.patterns["train"], data.targets["train"], noise).predict(I_obs))
    if "ridge" in baselines:
        record("ridge", lambda: Ridge.on_noisy(data, noise, np.random.default_rng([seed, 8]),
                                               np.random.default_rng([seed, 9])).predict(I_obs))
    todo = []
    for r in refine_methods:
        if r == "best" and report["methods"]:
            r = min(report["methods"], key=lambda k: report["methods"][k]["median_rmsd"])
        if r in preds and r not in todo:
            todo.append(r)
    if todo:
        bonds, mu, sd = _bonds(data.numbers, data.reference, data.targets["train"])
        sigma = noise.sigma(I_obs)
        for r in todo:
            record(f"{r}+refine", lambda r=r: refine(preds[r], I_obs, sigma, data.numbers, data.q, probe=data.probe,
                                                      signal=data.signal, bonds=bonds, bond_mean=mu, bond_std=sd,
                                                      steps=refine_steps, image=data.image))
    report["_predictions"] = preds
    report["_per_structure"] = per
    report["_observed"] = I_obs
    report["_true"] = X_true
    return report


def format_table(report: dict) -> str:
    """The report's methods as a text table (RMSD in Å, accuracies in %).

    Parameters
    ----------
    report : dict
        As :func:`evaluate` returns it.

    Returns
    -------
    str
        One line per method.
    """
    cols = ["median_rmsd", "mean_rmsd", "median_rmsd_all", "accuracy@0.05", "accuracy@0.1", "accuracy@0.2"]
    head = f"{'method':26s} " + " ".join(f"{c:>15s}" for c in cols)
    lines = [head, "-" * len(head)]
    for name, s in report["methods"].items():
        vals = [f"{s[c]:15.4f}" if not c.startswith("acc") else f"{s[c]:15.1%}" for c in cols]
        lines.append(f"{name:26s} " + " ".join(vals))
    return "\n".join(lines)


def strip_private(report: dict) -> dict:
    """The report without its arrays (keys starting with '_'): what goes into JSON."""
    return {k: v for k, v in report.items() if not k.startswith("_")}


def _noise_text(noise: dict) -> str:
    kind = noise.get("kind", "none")
    if kind == "gaussian":
        return f"Gaussian noise, {100 * noise['level']:g} % per q point"
    if kind == "poisson":
        return f"Poisson noise, {noise['counts']:.3g} counts per pattern"
    return "no noise"


def report_plot(report: dict, data: PoolData, path, extra_noise: dict | None = None):
    """Figure of an evaluation: the cumulative distribution of the heavy-atom RMSD per method (log scale, with
    the accuracy thresholds); the median test structure of the best method, true vs predicted; its observed
    pattern against the patterns of the prediction and of the truth; and, when given, ``extra_noise``
    {method: [(noise level, median RMSD), ...]} as error vs noise.

    Parameters
    ----------
    report : dict
        As :func:`evaluate` returns it (with its arrays).
    data : PoolData
        The data it was scored on.
    path : str or None
        Output image file; None leaves the figure open.
    extra_noise : dict or None, optional
        Median RMSD against noise level per method.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import sys

    import matplotlib  # plotting only

    if "matplotlib.pyplot" not in sys.modules:   # else keep the caller's backend (switching closes its figures)
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # plotting only

    from ..plots import signal_label, structure_title

    per, preds = report["_per_structure"], report["_predictions"]
    best = min(report["methods"], key=lambda k: report["methods"][k]["median_rmsd"])
    ncol = 4 if extra_noise else 3
    fig, axes = plt.subplots(1, ncol, figsize=(4.6 * ncol, 4.3), layout="constrained")
    ax = axes[0]
    values = np.concatenate([np.asarray(v, dtype=np.float64) for v in per.values()])
    floor = max(float(np.min(values[values > 0])) if np.any(values > 0) else 1e-3, 1e-5)
    for name, v in per.items():
        v = np.sort(np.maximum(np.asarray(v, dtype=np.float64), floor))
        ax.step(v, np.arange(1, len(v) + 1) / len(v), where="post", lw=1.3,
                label=f"{name} (median {np.median(v):.3g} Å)")
    for t in THRESHOLDS:
        ax.axvline(t, color="0.75", lw=0.8, ls="--", zorder=0)
        ax.text(t, 0.02, f" {t:g} Å", rotation=90, fontsize=7, color="0.45", ha="right", va="bottom")
    ax.set_xscale("log")
    ax.set_xlim(floor / 1.5, max(float(values.max()) * 1.5, max(THRESHOLDS) * 1.5))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("heavy-atom RMSD (Å)")
    ax.set_ylabel("fraction of test structures with RMSD ≤ x")
    ax.set_title(f"{structure_title(report['molecule'], [data.numbers])}: {len(next(iter(per.values())))} test "
                 f"structures\n{_noise_text(report['noise'])}", fontsize=10)
    ax.legend(fontsize="x-small", frameon=False, loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=2)
    k = int(np.argsort(per[best])[len(per[best]) // 2])
    true, pred = report["_true"][k], preds[best][k]
    _, R, t = rmsd(pred, true, reflection=True, return_transform=True)
    pred_al = pred @ R.T + t
    ax = axes[1]
    Z = np.asarray(data.numbers)
    for P, style, lab in ((true, {"marker": "o", "s": 40, "facecolors": "none", "edgecolors": "k"}, "true"),
                          (pred_al, {"marker": "x", "s": 30, "c": "C3"}, f"predicted ({best})")):
        ax.scatter(P[:, 0], P[:, 1], **style, label=lab)
    for i, j in zip(*np.nonzero(np.triu(bond_graph(Z, data.reference)))):
        ax.plot(true[[i, j], 0], true[[i, j], 1], c="0.6", lw=0.8, zorder=0)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.set_title(f"median test structure, projected on xy\nheavy-atom RMSD {per[best][k]:.3g} Å", fontsize=10)
    ax.legend(fontsize="x-small", frameon=False, loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=2)
    ax = axes[2]
    q = data.q
    def radial(a):  # a pattern, or an image's azimuthal mean
        return a if data.image is None else a.reshape(*a.shape[:-1], *data.input_shape).mean(-2)

    I_obs = radial(report["_observed"][k])
    I_pred, I_true = radial(data.inputs_of(np.stack([pred, true])))
    mean = radial(data.patterns["train"].mean(0))
    w = 1.0 if data.signal == "sM" else q   # sM(q) is q-weighted already
    ax.plot(q, w * (I_obs - mean), lw=0.6, c="0.6", label="observed (with noise)")
    ax.plot(q, w * (I_true - mean), lw=1.2, c="k", label="true")
    ax.plot(q, w * (I_pred - mean), lw=1.0, c="C3", ls="--", label=f"predicted ({best})")
    ax.axhline(0, color="0.8", lw=0.6, zorder=0)
    ax.set_xlabel(r"$q$ (Å⁻¹)")
    label = signal_label(data.probe, data.signal, delta=True, q_weighted=data.signal != "sM")
    if data.image is not None:
        label = label.split(" (")[0] + " (image units)"
    ax.set_ylabel(label + "\n(Δ: pattern − mean of the training patterns)", fontsize=9)
    ax.set_title(f"pattern of the median test structure\n{'X-ray' if data.probe == 'xray' else 'electron'}, "
                 f"{data.signal}" + ("\n(azimuthal mean of the detector image)" if data.image else ""), fontsize=10)
    ax.legend(fontsize="small", frameon=False)
    if extra_noise:
        ax = axes[3]
        for name, pts in extra_noise.items():
            lv, med = zip(*pts)
            style = {"ls": "--", "c": "k", "marker": "."} if "limit" in name else {"marker": "o"}
            ax.plot(np.asarray(lv) * 100, med, label=name, **style)
        ax.set_xlabel("Gaussian noise (% per q point)")
        ax.set_ylabel("median heavy-atom RMSD (Å)")
        ax.set_title("error vs noise", fontsize=10)
        ax.legend(fontsize="small", frameon=False)
    if path is not None:
        fig.savefig(path, dpi=130)
        plt.close(fig)
    return fig


def information_limit(data: PoolData, noise: Noise, *, points: int = 16, draws: int = 64, seed: int = 0) -> dict:
    """How well any method can do: the linearised Bayesian posterior of the structure given one pattern.

    The prior is a Gaussian fitted to the training targets (exact for a harmonic Wigner pool, an approximation
    for MD or MC); the forward model is linearised at ``points`` training members (the Jacobian by central
    differences of :func:`xstructure.simulate`); the likelihood is the noise model's Gaussian. The posterior
    covariance Σ = (C⁻¹ + JᵀWJ)⁻¹ (over the internal degrees of freedom) is the error covariance of the
    Bayes-optimal estimate in that approximation; errors drawn from it are scored like the methods (heavy-atom
    RMSD after superposition, mirror images allowed), so its median and accuracy are the floor a perfect learner
    would reach. For detector images (``data.image``) the forward model is
    :func:`xstructure.learn.detector.images_of`.

    Parameters
    ----------
    data : PoolData
        The pool's data.
    noise : Noise
        The noise model of the inputs.
    points : int, optional
        Training members at which the forward model is linearised.
    draws : int, optional
        Error draws per point.
    seed : int, optional
        Seed of the draws.

    Returns
    -------
    dict
        ``median_rmsd`` (Å) and ``accuracy@0.05``, ``accuracy@0.1``, ``accuracy@0.2`` of the posterior;
        ``prior_median_rmsd`` (Å), the same for the prior alone (≈ the mean structure); ``points`` and
        ``draws_per_point``.
    """
    Z = np.asarray(data.numbers)
    N = len(Z)
    D = 3 * N
    T = data.targets["train"].reshape(len(data.targets["train"]), -1)
    C = np.cov(T.T)
    w, V = np.linalg.eigh(C)
    w, V = w[6:], V[:, 6:]  # the 6 rigid-body directions carry no variance after superposition
    rng = np.random.default_rng(seed)
    h = heavy_mask(Z)
    post_r, prior_r = [], []
    E = np.eye(D) * 1e-4

    def sim(X):
        return data.inputs_of(X.reshape(len(X), N, 3))

    for k in rng.choice(len(T), size=min(points, len(T)), replace=False):
        x = T[k]
        J = ((sim(x + E) - sim(x - E)) / 2e-4).T @ V                      # (Q, D - 6)
        I = sim(x[None])[0]
        W = 1.0 / noise.sigma(I[None])[0] ** 2
        post = np.linalg.inv(np.diag(1.0 / w) + J.T @ (W[:, None] * J))
        for cov, out in ((post, post_r), (np.diag(w), prior_r)):
            L = np.linalg.cholesky(cov + 1e-18 * np.eye(len(cov)))
            e = (rng.standard_normal((draws, len(cov))) @ L.T) @ V.T          # (draws, D)
            Xt = np.broadcast_to(x.reshape(N, 3), (draws, N, 3))
            Xe = Xt + e.reshape(draws, N, 3)
            out.append(np.atleast_1d(rmsd(np.ascontiguousarray(Xe[:, h]), np.ascontiguousarray(Xt[:, h]),
                                          reflection=True)))
    post_r, prior_r = np.concatenate(post_r), np.concatenate(prior_r)
    out = {"median_rmsd": float(np.median(post_r)), "prior_median_rmsd": float(np.median(prior_r)),
           "points": int(min(points, len(T))), "draws_per_point": int(draws)}
    for t in THRESHOLDS:
        out[f"accuracy@{t:g}"] = float(np.mean(post_r <= t))
    return out
