"""
The figures of the command line
===============================

Every ``--plot`` of the ``xstructure`` command line is drawn by one function, which returns its matplotlib
figure (and saves it when given a path). This page calls those same functions on small inputs, so the figures
shown here, and in the user guide, are the ones the commands write today:

========================================================  ===================================================
command                                                   function
========================================================  ===================================================
``xstructure simulate ... --plot``                        :func:`xstructure.plots.plot_patterns`
``xstructure crystal FILE --pxrd --plot``                 :func:`xstructure.plots.plot_powder`
``xstructure integrate ... --plot``                       :func:`xstructure.plots.plot_curves`
``xstructure pool info POOL --plot``                      :meth:`xstructure.Pool.summary_plot`
``xstructure evaluate MODEL POOL --plot``                 :func:`xstructure.learn.evaluate.report_plot`
``xstructure evaluate MODEL CRYSTALS --plot``             :func:`xstructure.learn.phase_train.phase_plot`
========================================================  ===================================================

Conventions they share: total and atomic intensities on a logarithmic axis (they fall by orders of magnitude
with q, as the form factors squared); the molecular intensity as q·I_mol(q) and sM(q) on linear axes; molecules
named by their formula in Hill order (and by name where the name is known); crystals by their formula unit
and Z; units on every axis.
"""

# %%
# A molecule's pattern
# --------------------
# ``xstructure simulate NMM --q 0.5:12:500 --probe xray --signal total --plot nmm.png``
import os
import tempfile

import numpy as np

import xstructure
from xstructure.plots import plot_curves, plot_patterns, plot_powder, structure_title

workdir = tempfile.mkdtemp(prefix="xstructure-figures-")
frames, names = xstructure.structures.read_structures("NMM")
q = np.linspace(0.5, 12.0, 500)                                    # Å⁻¹
I = xstructure.simulate(frames, q, probe="xray", signal="total")
fig = plot_patterns(None, q, I, names, "xray", "total", structure_title("NMM", frames))

# %%
# A crystal's powder pattern
# --------------------------
# ``xstructure crystal NaCl.cif --pxrd --plot pxrd.png``: the pattern, the reflections in a panel of their own,
# and the ten strongest labelled with their hkl.
from ase.build import bulk

from xstructure.crystal import as_cell, powder_peaks

cell = as_cell(bulk("NaCl", "rocksalt", a=5.64, cubic=True))
two_theta = np.linspace(5, 90, 8501)                               # degrees
peaks = powder_peaks(cell, 1.5406, (5, 90))
fig = plot_powder(None, cell, peaks, two_theta, 1.5406)

# %%
# Radial profiles of detector frames
# ----------------------------------
# ``xstructure integrate scan_*.npy --poni setup.poni --npt 300 --logy --out curves.h5 --plot curves.png``.
# Nine frames of 1,3-cyclohexadiene with Poisson noise, as if a scan had raised the flux by 5 % a frame.
from xstructure.detector import Integrator, integrate_files, radial_unit

geometry = xstructure.Geometry.simple((256, 256), pixel=200e-6, dist=0.03, energy_kev=20.0)
image = xstructure.simulate(xstructure.molecule("CHD"), geometry)
rng = np.random.default_rng(0)
files = []
for k in range(9):
    files.append(os.path.join(workdir, f"scan_{k:03d}.npy"))
    np.save(files[-1], rng.poisson(50 * (1 + 0.05 * k) * image / image.mean()).astype(np.float32))
integrator = Integrator(geometry, npt=300)
integrate_files(files, integrator, os.path.join(workdir, "curves.h5"), settings={"solid_angle": True})
fig = plot_curves(os.path.join(workdir, "curves.h5"), None, radial_unit(integrator.unit).label, logy=True)

# %%
# A pool
# ------
# ``xstructure pool info nmm.zarr --plot info.png`` after ``pool create NMM --method wigner --n 500`` and
# ``pool simulate``: the bond lengths and RMSD of the sampled geometries, and each pattern set's mean with the
# 5–95 % band of its members, and their spread about the mean below it.
pool = xstructure.Pool.create(os.path.join(workdir, "nmm.zarr"), "NMM", "wigner", n=500, seed=0, chunk=250,
                              progress=False)
pool.simulate(np.linspace(0.5, 10.0, 300), probe="xray", signal="molecular", progress=False)
fig = pool.summary_plot(None)

# %%
# Evaluating an inversion model
# -----------------------------
# ``xstructure evaluate model/ ch3oh.zarr --plot report.png``: a Transformer trained for one epoch (at toy size:
# see :doc:`/auto_examples/plot_04_train_inversion` and the benchmarks for real runs) beside the baselines.
from xstructure.learn import Noise, TrainConfig, evaluate, load_pool, train
from xstructure.learn.evaluate import report_plot

store = os.path.join(workdir, "ch3oh.zarr")
xstructure.Pool.create(store, "CH3OH", "wigner", n=600, seed=0, chunk=300, progress=False).simulate(
    np.linspace(0.5, 10.0, 60), probe="xray", signal="total", progress=False)
data = load_pool(store)
noise = Noise("gaussian", 0.005)
config = TrainConfig(model="transformer", d=32, layers=1, heads=2, tokens=4, hidden=64, epochs=1, batch=16,
                     noise=noise.to_dict(), threads=2)
model = train(data, os.path.join(workdir, "model"), config, progress=False, log=lambda *a: None)
report = evaluate(data, noise, models={"transformer": model}, refine_steps=2, progress=False, log=lambda *a: None)
fig = report_plot(report, data, None)

# %%
# Evaluating a crystal model
# --------------------------
# ``xstructure evaluate model/ crystals.zarr --plot report.png`` on a crystal set: each test crystal's true
# density and every method's prediction, projected along c (the maximum over z, so that every atom shows), on
# one colour scale per crystal. A one-epoch MLP beside charge flipping and the atom models built on it; the
# command runs the powder-only routes as well.
from xstructure.learn.crystals import CrystalSet
from xstructure.learn.phase_train import PhaseConfig, evaluate_phase, phase_plot, train_phase

crystals = CrystalSet.create(os.path.join(workdir, "crystals.zarr"), 30, chunk=15, progress=False)
phase_model = train_phase(crystals, os.path.join(workdir, "phase_model"), PhaseConfig(model="mlp", epochs=1),
                          n_test=6, n_val=4, progress=False, log=lambda *a: None)
rep = evaluate_phase(crystals, {"mlp": phase_model}, n_test=6, n_val=4, limit=2, progress=False,
                     flips=("flip", "mlp+flip", "flip+atoms"), atoms={"samples": 1}, log=lambda *a: None)
fig = phase_plot(rep, None)
