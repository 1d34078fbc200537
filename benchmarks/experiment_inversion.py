"""The product's structure from a difference signal: a learned model of the product against the best candidate.

Scenario
    1,3-cyclohexadiene (CHD) opens to Z-1,3,5-hexatriene in its cZt conformer (the scenario of
    ``experiment_recovery.py``), excitation fraction f = 0.12, 3.7 MeV electrons, q = 0.5–12 Å⁻¹ (300 points).
    The true products are thermal: geometries of a Wigner pool of cZt-hexatriene at 300 K (MMFF94) that the
    model never saw (another sampling seed).  For each, ΔI/I = f (I_P − I_R) / I_R, without noise and with
    Gaussian noise of σ per q point in ΔI/I (the late-delay average of a clean run reaches ~1e-4).

Methods, all given the same ΔI/I, the reactant and f
    * ``invert_difference``: a Transformer (``xstructure train``) trained on sM patterns of a Wigner pool of the
      product (training noise as given) reads the product's sM pattern, I_P = I_R (1 + ΔI/I / f).
    * best candidate: ``fit_fraction`` ranks the nine C6H8 candidates of ``experiment_recovery.py``; the top
      one's structure (an MMFF94 minimum) is the answer.
    * mean structure: the mean of the product's training pool (aligned), the answer that knows nothing.

Scores: RMSD to the true geometry after optimal superposition (mirror images allowed), all atoms and carbon
only, in Å; the median and the fraction below 0.1 Å over the test geometries.

Usage: ``python benchmarks/experiment_inversion.py [--quick] [--out DIR]``: 4000 training geometries, 60 test
geometries; writes experiment_inversion.json and a figure to DIR (default docs/figures).  --quick: 600 training
geometries, 10 test geometries, a short training; nothing written unless --out is given.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info
from experiment_recovery import TRUE_PRODUCT, structures

import xstructure
from xstructure.experiment import fit_fraction, invert_difference
from xstructure.learn.data import Noise
from xstructure.learn.tasks import train_store

FRACTION = 0.12
ENERGY_KEV = 3700.0
Q = np.linspace(0.5, 12.0, 300)
NOISE_LEVELS = (0.0, 1e-4, 3e-4)      # σ of ΔI/I per q point


def rmsd(a, b, numbers, carbon_only=False):
    keep = numbers == 6 if carbon_only else np.ones(len(numbers), bool)
    return float(xstructure.rmsd(np.asarray(a)[keep], np.asarray(b)[keep], reflection=True))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small pools and a short training")
    p.add_argument("--out", help="directory for the JSON and the figure (default docs/figures; --quick: none)")
    args = p.parse_args(argv)
    n_train, n_test, epochs = (600, 10, 4) if args.quick else (4000, 60, 30)
    out = Path(args.out) if args.out else (None if args.quick else Path(__file__).resolve().parent.parent / "docs"
                                            / "figures")
    t_start = time.perf_counter()
    reactant, cands = structures()
    product = cands[TRUE_PRODUCT]
    labels = list(cands)
    numbers = product.numbers
    with tempfile.TemporaryDirectory() as tmp:
        pool = xstructure.Pool.create(f"{tmp}/train.zarr", product, "wigner", n=n_train, temperature=300, seed=0,
                                      chunk=1000, progress=False)
        pool.simulate(Q, probe="electron", signal="sM", energy_kev=ENERGY_KEV, progress=False)
        test = xstructure.Pool.create(f"{tmp}/test.zarr", product, "wigner", n=n_test, temperature=300, seed=1,
                                      chunk=1000, progress=False)
        truths = np.asarray(test.positions[:])
        t0 = time.perf_counter()
        train_store([f"{tmp}/train.zarr"], f"{tmp}/model", epochs=epochs, noise=Noise.parse("gaussian:0.01"),
                    n_test=50, n_val=100, progress=False)
        train_s = time.perf_counter() - t0
        mean_structure = _aligned_mean(np.asarray(pool.positions[:]))
        I_r = xstructure.simulate(reactant, Q, probe="electron", signal="total", energy_kev=ENERGY_KEV)
        I_p = xstructure.simulate((numbers, truths), Q, probe="electron", signal="total", energy_kev=ENERGY_KEV)
        clean = FRACTION * (I_p - I_r) / I_r
        rng = np.random.default_rng(7)
        rows = []
        for sigma in NOISE_LEVELS:
            diff = clean + sigma * rng.standard_normal(clean.shape)
            inv = invert_difference(f"{tmp}/model", Q, diff, reactant, FRACTION, energy_kev=ENERGY_KEV)
            scores = {"model": [], "best_candidate": [], "mean_structure": []}
            picked = []
            for k in range(n_test):
                fits = fit_fraction(Q, diff[k], reactant, list(cands.values()), probe="electron",
                                    energy_kev=ENERGY_KEV)
                picked.append(labels[fits[0].index])
                best = cands[labels[fits[0].index]]
                for name, pos in (("model", inv.positions[k]), ("best_candidate", best.positions),
                                  ("mean_structure", mean_structure)):
                    scores[name].append((rmsd(pos, truths[k], numbers), rmsd(pos, truths[k], numbers, True)))
            row = {"sigma": sigma, "picked_true_product": float(np.mean([p == TRUE_PRODUCT for p in picked]))}
            for name, s in scores.items():
                s = np.asarray(s)
                row[name] = {"median_all_A": float(np.median(s[:, 0])), "median_carbon_A": float(np.median(s[:, 1])),
                             "below_0.1A_all": float(np.mean(s[:, 0] < 0.1)), "all_A": s[:, 0].tolist(),
                             "carbon_A": s[:, 1].tolist()}
            rows.append(row)
    res = {"scenario": {"reactant": "CHD", "product": f"{TRUE_PRODUCT}-hexatriene, Wigner 300 K (MMFF94)",
                        "fraction": FRACTION, "probe": "electron", "energy_kev": ENERGY_KEV,
                        "q": [float(Q[0]), float(Q[-1]), len(Q)], "n_train": n_train, "n_test": n_test,
                        "epochs": epochs, "training_noise": "gaussian:0.01"},
           "rows": rows, "train_seconds": train_s, "total_seconds": time.perf_counter() - t_start,
           "machine": machine_info()}
    print(f"{'σ(ΔI/I)':>9} | {'model all/C (Å)':>17} | {'best cand. all/C (Å)':>21} | {'mean all/C (Å)':>16} | "
          f"{'true product picked':>19}")
    for r in rows:
        cells = [f"{r[m]['median_all_A']:.3f}/{r[m]['median_carbon_A']:.3f}"
                 for m in ("model", "best_candidate", "mean_structure")]
        print(f"{r['sigma']:9.0e} | {cells[0]:>17} | {cells[1]:>21} | {cells[2]:>16} | "
              f"{r['picked_true_product']:19.2f}")
    print(f"training {train_s:.0f} s, all {res['total_seconds']:.0f} s")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "experiment_inversion.json").write_text(json.dumps(res, indent=1))
        _plot(rows, out / "experiment_inversion.png")
        print(f"wrote {out / 'experiment_inversion.json'} and {out / 'experiment_inversion.png'}")
    return 0


def _aligned_mean(pos: np.ndarray, iterations: int = 3) -> np.ndarray:
    """The mean structure of an ensemble, each member superposed onto the running mean (Kabsch)."""
    mean = pos[0] - pos[0].mean(0)
    for _ in range(iterations):
        X = pos - pos.mean(1, keepdims=True)
        H = np.einsum("bni,nj->bij", X, mean)
        U, _, Vt = np.linalg.svd(H)
        d = np.sign(np.linalg.det(np.einsum("bij,bjk->bik", U, Vt)))
        D = np.ones((len(pos), 3))
        D[:, 2] = d
        R = np.einsum("bij,bj,bjk->bik", U, D, Vt)
        mean = np.einsum("bni,bij->bnj", X, R).mean(0)
    return mean


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.6), sharey=True, constrained_layout=True)
    names = {"model": "learned model of the product", "best_candidate": "best of 9 candidates (fit_fraction)",
             "mean_structure": "mean structure of the product"}
    for ax, r in zip(np.atleast_1d(axes), rows):
        for name, label in names.items():
            x = np.sort(r[name]["all_A"])
            ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=label)
        ax.set_xlim(left=0)
        ax.set_xlabel("RMSD to the true geometry (Å)")
        ax.set_title(f"σ(ΔI/I) = {r['sigma']:.0e}" if r["sigma"] else "no noise")
        ax.axvline(0.1, color="0.5", ls="--", lw=0.8)
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("fraction of test geometries")
    np.atleast_1d(axes)[0].legend(fontsize=8, loc="lower right")
    fig.suptitle("CHD → cZt-hexatriene (f = 0.12, 3.7 MeV electrons): the product's structure from ΔI/I")
    fig.savefig(path, dpi=130)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
