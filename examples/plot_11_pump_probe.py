"""
A pump-probe run: shots → ΔI/I → ΔsM → ΔPDF
=============================================

The ring opening of 1,3-cyclohexadiene (CHD) into 1,3,5-hexatriene, the reaction that gas-phase ultrafast
X-ray scattering (Minitti et al. 2015, doi:10.1103/PhysRevLett.114.255501) and electron diffraction (Wolf et al.
2019, doi:10.1038/s41557-019-0252-7) imaged, as a synthetic run with a known answer: 12 % of the molecules
open, with a Gaussian rise of σ = 60 fs centred at t0 = 30 fs. The run is written in the HDF5 layout of
:meth:`PumpProbe.from_hdf5 <xstructure.experiment.run.PumpProbe.from_hdf5>` and reduced by
:func:`~xstructure.experiment.tasks.reduce_file`, the function behind

``xstructure reduce run.h5 --bins 25 --molecule CHD --onset 1:3 --r 0:8:400 --baseline 1 --out reduced.h5
--plot reduced.png``

Then the excitation fraction and the product are fitted, and the figures of
:mod:`xstructure.experiment.figures` are drawn one by one.
"""

# %%
# A synthetic run, written to HDF5
# --------------------------------
# 6000 shots, alternately laser on and off, scanning the nominal delay from −400 to 800 fs with 100 fs of
# timing jitter that a timetool measures to 10 fs, ±20 % shot-to-shot intensity and Poisson noise
# (10⁸ photons per shot over the q grid).
import os
import tempfile

import numpy as np

from xstructure.experiment import fit_fraction, read_reduced, reduce_file, simulate_pumpprobe, theoretical_difference
from xstructure.experiment.figures import plot_delta_pdf, plot_delta_sm, plot_onset, plot_reduced

workdir = tempfile.mkdtemp(prefix="xstructure-pumpprobe-")
q = np.linspace(0.5, 10.0, 200)                                  # Å⁻¹
run, truth = simulate_pumpprobe("CHD", "C=CC=CC=C", q, delays=np.arange(-400, 801, 50), shots=6000,
                                fraction=0.12, t0=30.0, width=60.0, dose=1e8, seed=1)
run.to_hdf5(os.path.join(workdir, "run.h5"))
print(run)

# %%
# Reduction, ΔsM, ΔPDF and time zero in one call
# ----------------------------------------------
# Each shot is normalised by its sum over the q grid (the default), so ΔI/I carries a small constant offset
# (see the user guide); a straight line subtracted from ΔsM takes most of it away. The figure is the one
# ``--plot`` writes: (a) ΔI/I per delay bin, (b) the mean ΔI/I over 1–3 Å⁻¹ with the fitted error-function
# step, (c) ΔsM and (d) ΔPDF before, at and after time zero and at the latest delay.
summary = reduce_file(os.path.join(workdir, "run.h5"), os.path.join(workdir, "reduced.h5"), bins=25,
                      molecule="CHD", onset=(1.0, 3.0), r=np.linspace(0.0, 8.0, 400), baseline=1)
print(summary)
data = read_reduced(os.path.join(workdir, "reduced.h5"))
fig = plot_reduced(data)

# %%
# The excitation fraction and the product
# ---------------------------------------
# The late-time ΔI/I (every bin from t0 + 4σ on, averaged with 1/σ² weights) against the IAM difference of
# each candidate product, f (I_P − I_R)/I_R, with the window normalisation modelled exactly
# (:func:`~xstructure.experiment.fit.fit_fraction`); the lowest χ² comes first.
late, late_sigma = data.average(data.onset.t0 + 4 * data.onset.width)
candidates = ["C=CC=CC=C", "C1=CCC=CC1", "CC1=CC=CC1"]   # hexatriene, 1,4-cyclohexadiene, methylcyclopentadiene
ranked = fit_fraction(q, late, "CHD", candidates, sigma=late_sigma, normalize="window")
for fit in ranked:
    print(f"{fit.label:>12}: f = {fit.fraction:.5f} ± {fit.fraction_err:.5f}, χ²/dof = {fit.reduced_chi2:.3g}")
print(f"true: {truth.fraction}; t0 = {data.onset.t0:.1f} ± {data.onset.t0_err:.1f} fs (true {truth.t0}), "
      f"width = {data.onset.width:.1f} ± {data.onset.width_err:.1f} fs (true {truth.width}, plus the timetool's "
      "error and the bin widths)")

# %%
# ΔsM and ΔPDF against the theory
# -------------------------------
# The panels are functions of their own, which draw into given axes. Here the reduced ΔsM and ΔPDF at time
# zero and at the latest delay, beside the theory at the fitted fraction: dashed, treated as the data were
# (ΔI/I = (1 + f b)/(1 + f β) − 1 of window-normalised shots, the same straight-line baseline, the same
# damping exp(−0.03 q²)); dotted, the ideal f (sM_P − sM_R) without the normalisation offset, whose ΔPDF shows
# the distances the reaction makes (positive) and breaks (negative).
import matplotlib.pyplot as plt

from xstructure.experiment import baseline, delta_pdf, delta_sm

f = ranked[0].fraction
theory = theoretical_difference("CHD", ranked[0].candidate, q, fraction=f, r=data.r, damping=data.damping)
b = (theory.i_product - theory.i_reactant) / theory.i_reactant
beta = (theory.i_product - theory.i_reactant).sum() / theory.i_reactant.sum()    # the window: the whole grid
dsm_as_measured = baseline(q, delta_sm(q, (1 + f * b) / (1 + f * beta) - 1, "CHD", probe="xray"), degree=1)
pdf_as_measured = delta_pdf(q, dsm_as_measured, data.r, damping=data.damping)

at = [data.onset.t0, data.delay[-1]]
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
plot_delta_sm(q, data.dsm, data.delay, at=at, sigma=data.dsm_sigma, ax=ax1,
              title="ΔsM (straight-line baseline subtracted)")
plot_delta_pdf(data.r, data.pdf, data.delay, at=at, sigma=data.pdf_sigma, ax=ax2, title="ΔPDF")
for ax, x, measured, ideal in ((ax1, q, dsm_as_measured, theory.dsm), (ax2, data.r, pdf_as_measured, theory.pdf)):
    ax.plot(x, measured, "k--", lw=1.0, label=f"theory as measured, f = {f:.3f}")
    ax.plot(x, ideal, ":", color="0.45", lw=1.2, label="ideal f (sM$_P$ − sM$_R$)")
    ax.legend(frameon=False, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2)

# %%
# The onset on its own
# --------------------
fig = plot_onset(data.onset, q_range=data.onset_q_range, error_scale=data.onset_error_scale)
