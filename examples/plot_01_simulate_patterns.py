"""
X-ray and electron scattering of a molecule
===========================================

:func:`xstructure.simulate` computes the orientationally averaged scattering of molecules in the
Independent Atom Model (the Debye formula). Here we take N-methylmorpholine (NMM, C5H11NO, 18 atoms) and
compute, for X-rays and for electrons,

* the atomic scattering :math:`I_{at}(q) = \\sum_i f_i(q)^2`,
* the molecular scattering :math:`I_{mol}(q) = \\sum_{i \\ne j} f_i f_j \\sin(q r_{ij}) / (q r_{ij})`,
* their sum :math:`I_{total}`, and
* the modified molecular scattering :math:`sM(q) = q\\, I_{mol}(q) / I_{at}(q)`, the signal electron
  diffraction usually reports.

X-ray form factors are the Waasmaier & Kirfel (1995) fits; electron amplitudes follow from them by the
Mott–Bethe formula.
"""

# %%
# The molecule and the q grid
# ---------------------------
# ``xstructure.molecule`` knows NMM, CHD and DT by name, any ``ase.build.molecule`` name, structure files and
# (with RDKit) SMILES strings. It returns an :class:`ase.Atoms` with positions in Å.
import matplotlib.pyplot as plt
import numpy as np

import xstructure

nmm = xstructure.molecule("NMM")
print(nmm.get_chemical_formula(), len(nmm), "atoms")

q = np.linspace(0.0, 12.0, 600)          # Å⁻¹, q = 4π sin(θ)/λ; a uniform grid takes the fast kernel

# %%
# Patterns
# --------
# ``signal`` selects what is returned. All four signals of one probe share the same pair sums; the kernel
# accumulates in float64.
patterns = {}
for probe in ("xray", "electron"):
    for signal in ("atomic", "molecular", "total", "sM"):
        patterns[probe, signal] = xstructure.simulate(nmm, q, probe=probe, signal=signal)

# the q = 0 limit is exact: I_total(0) = (Σ f_i(0))²; the X-ray fits give f(0) within 0.1 % of Z
print("X-ray I_total(0) =", patterns["xray", "total"][0], " (Σ Z)² =", nmm.numbers.sum() ** 2)

# %%
# Plot
# ----
# X-ray intensities are in electrons², electron intensities in Å². The molecular term oscillates about
# zero with the interatomic distances (it is shown as q·I_mol, which tames its large value near q = 0);
# dividing it by the atomic term as well (sM) removes the fall-off of the form factors and leaves
# oscillations of similar size at every q.
fig, axes = plt.subplots(3, 2, figsize=(10, 9), sharex=True, layout="constrained")
for col, (probe, unit) in enumerate((("xray", "electrons²"), ("electron", "Å²"))):
    name = "X-rays" if probe == "xray" else "electrons"
    ax = axes[0, col]
    ax.semilogy(q, patterns[probe, "total"], label="$I_{total}$")
    ax.semilogy(q, patterns[probe, "atomic"], "--", label="$I_{at}$")
    ax.set_title(f"{name}: total and atomic scattering")
    ax.set_ylabel(f"intensity ({unit})")
    ax.legend()
    ax = axes[1, col]
    ax.plot(q, q * patterns[probe, "molecular"], color="C2")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_title(f"{name}: molecular scattering, weighted by q")
    ax.set_ylabel(f"$q\\,I_{{mol}}$ ({unit} Å⁻¹)")
    ax = axes[2, col]
    ax.plot(q, patterns[probe, "sM"], color="C3")
    ax.axhline(0, color="0.6", lw=0.6)
    ax.set_title(f"{name}: modified molecular scattering")
    ax.set_xlabel("q (Å⁻¹)")
    ax.set_ylabel("sM (Å⁻¹)")
fig.suptitle("N-methylmorpholine, orientationally averaged (Independent Atom Model)")
plt.show()

# %%
# Many geometries at once
# -----------------------
# A batch of geometries ``(B, N, 3)`` gives ``(B, Q)`` patterns in one call. Here 2000 copies of NMM with
# Gaussian displacements of 0.05 Å: the spread of the patterns grows with q, because the same displacement
# changes the phase q·r more at high q.
rng = np.random.default_rng(0)
pos = nmm.positions + 0.05 * rng.standard_normal((2000, len(nmm), 3))           # (B, N, 3) in Å
sM = xstructure.simulate((nmm.numbers, pos), q, probe="electron", signal="sM")  # (B, Q) in Å⁻¹
print(sM.shape)

fig, ax = plt.subplots(figsize=(7, 3.5), layout="constrained")
lo, mid, hi = np.percentile(sM, [5, 50, 95], axis=0)
ax.fill_between(q, lo, hi, alpha=0.35, label="5–95 % of 2000 geometries")
ax.plot(q, mid, lw=1, label="median")
ax.set_xlabel("q (Å⁻¹)")
ax.set_ylabel("sM (Å⁻¹)")
ax.set_title("Electron sM of displaced NMM geometries (σ = 0.05 Å)")
ax.legend()
plt.show()
