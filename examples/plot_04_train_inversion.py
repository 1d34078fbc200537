"""
Inversion by learning: train, evaluate, predict
===============================================

:mod:`xstructure.learn` maps a scattering pattern (and the molecule it belongs to) to the 3D structure. This
example runs the whole path at toy size, in about half a minute on two CPU cores:

1. a pool of 2000 Wigner geometries of NMM and their X-ray patterns,
2. :func:`~xstructure.learn.load_pool`: split by sample, targets superposed on the reference geometry,
3. :func:`~xstructure.learn.train.train`: a small Transformer, trained for 15 epochs (at most 15 seconds) with fresh
   noise every epoch,
4. :func:`~xstructure.learn.evaluate.evaluate`: the model beside the baselines (the mean structure, pool fitting and
   ridge regression) on the same noisy test patterns,
5. :meth:`~xstructure.learn.InversionModel.predict` on one pattern.

At this size the network does no better than ridge regression; the :doc:`benchmarks </benchmarks>` page reports
the full-size runs (10⁵ geometries, 17 minutes of training), where it beats every baseline.
"""

# %%
# Data
# ----
# X-ray I_total on 200 points of 0.5–10 Å⁻¹ for 2000 geometries (80 % train, 10 % validation, 10 % test).
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

import xstructure
from xstructure.learn import Noise, TrainConfig, evaluate, load_pool, train

workdir = tempfile.mkdtemp(prefix="xstructure-learn-")
store = os.path.join(workdir, "nmm.zarr")
pool = xstructure.Pool.create(store, "NMM", "wigner", n=2000, temperature=300, seed=0, progress=False)
pool.simulate(np.linspace(0.5, 10.0, 200), probe="xray", signal="total", progress=False)

data = load_pool(store)
print({split: len(x) for split, x in data.targets.items()}, "geometries; q:", data.q.shape, "Å⁻¹")

# %%
# Training
# --------
# A Transformer of width 32 with one decoder layer (about 50 thousand parameters). Every epoch draws new
# Gaussian noise of 0.5 % per q point. ``max_minutes`` bounds the run by time as well as by epochs; the run
# directory holds ``config.json`` and safetensors weights, and running ``train`` again on it resumes.
noise = Noise("gaussian", 0.005)
config = TrainConfig(model="transformer", d=32, layers=1, heads=2, tokens=4, hidden=64, epochs=15, batch=64,
                     lr=2e-3, warmup=20, patience=15, noise=noise.to_dict(), max_minutes=0.25, threads=2)
model = train(data, os.path.join(workdir, "model"), config, progress=False, log=lambda *a: None)
print("parameters:", sum(p.numel() for p in model.net.parameters()))

# %%
# Evaluation
# ----------
# Every method sees the same noisy draw of the test patterns. The headline score is the heavy-atom RMSD
# after superposition (mirror images allowed): X-rays barely see hydrogen.
report = evaluate(data, noise, models={"transformer": model}, refine_methods=(), progress=False)
for method, s in report["methods"].items():
    print(f"{method:16s} median RMSD {s['median_rmsd']:.4f} Å   within 0.05 Å: {s['accuracy@0.05']:.0%}")

# %%
# Prediction
# ----------
# ``predict`` takes raw patterns on the model's q grid and returns centred structures (Å) in the reference
# frame. We take the test pattern whose prediction has the median error.
errors = report["_per_structure"]["transformer"]
k = int(np.argsort(errors)[len(errors) // 2])
observed = report["_observed"][k]                          # one noisy test pattern (Q,)
truth = report["_true"][k]                                 # its structure (N, 3), Å
predicted = model.predict(observed)                        # (N, 3), Å
heavy = data.numbers > 1
r, R, t = xstructure.rmsd(predicted[heavy], truth[heavy], reflection=True, return_transform=True)
predicted = predicted @ R.T + t                            # superposed on the truth for the figure
print(f"heavy-atom RMSD of this prediction: {r:.4f} Å")

# %%
# The figure: the distribution of heavy-atom RMSD over the test set for each method, and the test structure
# with its prediction, superposed on it by their heavy atoms and projected on the x–y plane of the
# reference frame.
fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), width_ratios=(1.3, 1), layout="constrained")
ax = axes[0]
bins = np.linspace(0, 0.25, 40)
for method, per_structure in report["_per_structure"].items():
    ax.hist(per_structure, bins=bins, histtype="step", lw=1.5,
            label=f"{method} (median {np.median(per_structure):.3f} Å)")
ax.set_xlabel("heavy-atom RMSD after superposition (Å)")
ax.set_ylabel("test structures")
ax.set_title(f"{len(report['_true'])} noisy test patterns (0.5 % per q point)")
ax.legend()

ax = axes[1]
for a, b in zip(*np.nonzero(np.triu(xstructure.structures.bond_graph(data.numbers, data.reference)))):
    ax.plot(truth[[a, b], 0], truth[[a, b], 1], color="0.7", lw=1, zorder=0)
ax.scatter(truth[:, 0], truth[:, 1], s=np.where(heavy, 90, 30), facecolors="none", edgecolors="k", label="true")
ax.scatter(predicted[:, 0], predicted[:, 1], s=np.where(heavy, 50, 18), c="C3", marker="x", label="predicted")
ax.set_aspect("equal")
ax.set_xlabel("x (Å)")
ax.set_ylabel("y (Å)")
ax.set_title(f"median test case: heavy-atom RMSD {r:.3f} Å")
ax.legend()
plt.show()

import shutil

shutil.rmtree(workdir)
