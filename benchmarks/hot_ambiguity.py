"""Why hot samples stay hard: structures far apart whose patterns agree within the noise.

For the hot molecules of ``bench_general.py`` (its 1500 K Langevin MD test frames, the same pools and seeds), each
frame's noisy X-ray I_mol pattern (0.5 % relative noise, 0.5–10 Å⁻¹, 200 points: the benchmark's) is fitted from
many starts: the general model's prediction (its MD reader, the hot samples' ``general`` of that benchmark), the
MMFF94 minimum and ``--starts`` draws from the model's 1500 K harmonic (Wigner) prior, each followed by ``--steps``
Gauss–Newton steps of χ² + |z|² in the molecule's normal-mode coordinates
(:meth:`xstructure.learn.general.Reader.step`). Per frame:

* ``chi2_true``: χ²/Q of the true structure against its own noisy pattern (the noise alone);
* ``chi2_fit``: χ²/Q of the best-fitting structure found (the maximum-likelihood estimate over the starts);
* ``rmsd_fit``: that structure's heavy-atom RMSD from the truth after superposition, Å;
* ``ambiguous``: the best fit matches the pattern at least as well as the truth (``chi2_fit <= chi2_true``) and lies
  farther from it than 0.75 × the equilibrium baseline's median error: the likelihood cannot tell these two
  structures apart, so no estimator that reads the pattern can be sure to land within the goal of that frame;
  only a prior can choose.

Then, for each ambiguous pair (truth, best fit), the same comparison with more information: the truth's pattern
with 0.1 % noise, and on 0.5–20 Å⁻¹ (400 points) with 0.5 %; ``delta_chi2`` is the best fit's χ² minus the
truth's, summed over the grid (> 6: the fit is at least 20× less likely than the truth).

    python benchmarks/hot_ambiguity.py --work /tmp/g/bench --json docs/figures/hot_ambiguity.json \
        --plot docs/figures/hot_ambiguity.png
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_general import heavy_rmsd, hot_test_set, noisy  # noqa: E402  (the benchmark's own helpers: one definition)

BASE = ("0.5 %, 0.5–10 Å⁻¹", 0.005, 10.0, 200)   # the benchmark's (the model's grid and noise)
CHECKS = (("0.1 %, 0.5–10 Å⁻¹", 0.001, 10.0, 200), ("0.5 %, 0.5–20 Å⁻¹", 0.005, 20.0, 400))


def hot_molecules(report):
    """(k, SMILES, InChIKey) of the benchmark's hot molecules, in its order (k sets the pools' seeds)."""
    keys = {m["smiles"]: m["inchikey"] for m in report["held_out"]["molecules"]}
    return [(k, r["smiles"], keys[r["smiles"]]) for k, r in enumerate(report["hot"])]


def fit_from_starts(reader, I, starts, steps, probe):
    """Gauss–Newton from each start (list of (B, M) mode coordinates); the lowest-χ² result per pattern."""
    import torch

    import xstructure as xs

    I = torch.as_tensor(I, dtype=torch.float64)
    w = reader.weights(I)
    best_z, best_chi = None, None
    for z in starts:
        for _ in range(steps):
            z = z + reader.step(I, w, z, reader.step_cap)
        x = reader.x0[None] + (z @ reader.L.T).reshape(len(z), -1, 3)
        Ix = xs.ops.debye(reader.numbers, x, reader.q, probe=probe, signal="molecular").to(torch.float64)
        chi = (w * (I - Ix) ** 2).mean(1)
        if best_z is None:
            best_z, best_chi = z, chi
        else:
            better = chi < best_chi
            best_z = torch.where(better[:, None], z, best_z)
            best_chi = torch.minimum(chi, best_chi)
    X = reader.x0[None] + (best_z @ reader.L.T).reshape(len(best_z), -1, 3)
    return X.numpy(), best_chi.numpy(), w


def run(args):
    import torch

    import xstructure as xs
    from xstructure.learn import pretrained
    from xstructure.learn.general import robust_sigma

    with open(args.report) as fh:
        report = json.load(fh)
    model = pretrained(args.model)
    probe = model.config["probe"]
    rng = np.random.default_rng(0)
    out = []
    for k, smiles, key in hot_molecules(report):
        test = hot_test_set(args.work, smiles, key, k, args.samples, args.trajectories)
        X, Z = np.asarray(test.positions[:]), test.numbers
        base_reader = model.reader(smiles, temperature=1500.0, ensemble="md")
        x0 = base_reader.atoms.positions
        base = heavy_rmsd(np.broadcast_to(x0, X.shape), X, Z)
        row = dict(smiles=smiles, n_atoms=int(len(Z)), equilibrium=float(np.median(base)))
        t0 = time.perf_counter()
        level = BASE[1]
        q = model.grid
        I = xs.simulate((Z, X), q, probe=probe, signal="molecular")
        Io = noisy(I, level, rng)
        M = base_reader.L.shape[1]
        starts = [torch.zeros(len(X), M, dtype=torch.float64),
                  base_reader.modes_of(model.predict(Io, smiles, q, temperature=1500.0, ensemble="md"))]
        starts += [torch.as_tensor(rng.standard_normal((len(X), M))) for _ in range(args.starts)]
        P, chi_fit, w = fit_from_starts(base_reader, Io, starts, args.steps, probe)
        chi_true = (w.numpy() * (Io - I) ** 2).mean(1)
        d = heavy_rmsd(P, X, Z)
        amb = (chi_fit <= chi_true) & (d > 0.75 * row["equilibrium"])
        row.update(chi2_true_median=float(np.median(chi_true)), chi2_fit_median=float(np.median(chi_fit)),
                   fit_better_than_truth=float(np.mean(chi_fit <= chi_true)), rmsd_fit_median=float(np.median(d)),
                   rmsd_fit_ratio=float(np.median(d) / row["equilibrium"]), ambiguous=float(np.mean(amb)),
                   seconds=time.perf_counter() - t0,
                   samples=dict(chi2_true=chi_true.tolist(), chi2_fit=chi_fit.tolist(), rmsd_fit=d.tolist(),
                                equilibrium=base.tolist()))
        print(f"  {smiles}: best fit χ²/Q {row['chi2_fit_median']:.2f} (truth {row['chi2_true_median']:.2f}), "
              f"{row['rmsd_fit_median']:.3f} Å from the truth ({row['rmsd_fit_ratio']:.2f}× the equilibrium's "
              f"{row['equilibrium']:.3f} Å); ambiguous {100 * row['ambiguous']:.0f} % ({row['seconds']:.0f} s)",
              flush=True)
        row["more_information"] = {}
        if amb.any():
            for cname, clevel, cq_max, cn_q in CHECKS:
                cq = np.linspace(0.5, cq_max, cn_q)
                It = xs.simulate((Z, X[amb]), cq, probe=probe, signal="molecular")
                Ia = xs.simulate((Z, P[amb]), cq, probe=probe, signal="molecular")
                Ic = noisy(It, clevel, rng)
                cw = 1.0 / robust_sigma(torch.as_tensor(Ic), clevel).numpy() ** 2   # the reader's weights, I_mol noise
                dchi = (cw * (Ic - Ia) ** 2).sum(1) - (cw * (Ic - It) ** 2).sum(1)
                row["more_information"][cname] = dict(delta_chi2=dchi.tolist(),
                                                      separated=float(np.mean(dchi > 6.0)))
                print(f"    {cname}: Δχ² median {np.median(dchi):.0f}, separated {100 * np.mean(dchi > 6):.0f} % "
                      f"of the {int(amb.sum())} ambiguous pairs", flush=True)
        out.append(row)
    return dict(settings=dict(model=args.model, temperature_K=1500, samples=args.samples, starts=args.starts,
                              grid=BASE[0], checks=[c[0] for c in CHECKS],
                              steps=args.steps, machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
                              date=time.strftime("%Y-%m-%d")), molecules=out)


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mols = res["molecules"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    ax = axes[0]
    for m, mk in zip(mols, "osD^v<>p"):
        s = m["samples"]
        ratio = np.asarray(s["chi2_fit"]) / np.asarray(s["chi2_true"])
        ax.scatter(np.asarray(s["rmsd_fit"]) / m["equilibrium"], ratio, s=14, marker=mk, alpha=0.7,
                   label=f"{m['smiles']} ({m['n_atoms']} atoms): {100 * m['ambiguous']:.0f} % ambiguous")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axvline(0.75, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("best fit's heavy-atom RMSD from the truth / equilibrium structure's median RMSD")
    ax.set_ylabel("χ² of the best fit / χ² of the true structure")
    ax.set_title(f"(a) 1500 K MD frames, {BASE[0]}: below the line the fit matches the pattern\n"
                 "as well as the truth; right of the dashed line it is farther than the goal", fontsize=10)
    ax.legend(fontsize=7.5, loc="upper right")
    ax = axes[1]
    names = [c[0] for c in CHECKS]
    data, labels = [], []
    for m in mols:
        for n in names:
            if n in m["more_information"]:
                data.append(np.log10(np.maximum(m["more_information"][n]["delta_chi2"], 1e-1)))
                labels.append(f"{m['smiles']}\n{n}")
    if data:
        ax.boxplot(data, orientation="horizontal", tick_labels=labels)
        ax.axvline(np.log10(6.0), color="k", lw=0.8, ls="--")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_xlabel("log₁₀ Δχ² (best fit − truth, summed over the grid; values ≤ 0.1 drawn at −1)")
    ax.set_title("(b) the ambiguous pairs of (a) with more information:\n"
                 "right of the dashed line (Δχ² = 6) the pattern tells them apart", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=130)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", default=os.path.join(os.path.dirname(__file__), "..", "docs", "figures",
                                                    "bench_general_2026-12-02.json"),
                   help="a bench_general.py report (its held-out and hot molecules)")
    p.add_argument("--model", default="general-xray")
    p.add_argument("--work", required=True, help="bench_general.py's work directory (its hot test pools)")
    p.add_argument("--samples", type=int, default=100)
    p.add_argument("--trajectories", type=int, default=10, help="of the test frames (as bench_general.py)")
    p.add_argument("--starts", type=int, default=32, help="random starts per sample")
    p.add_argument("--steps", type=int, default=20, help="Gauss–Newton steps per start")
    p.add_argument("--json", help="write the report here")
    p.add_argument("--plot", help="write the figure here")
    args = p.parse_args(argv)
    res = run(args)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=1)
    if args.plot:
        plot(res, args.plot)


if __name__ == "__main__":
    main()
