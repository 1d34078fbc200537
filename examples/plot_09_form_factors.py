"""
Atomic form factors: X-rays and electrons, q and s
==================================================

Everything xstructure simulates is built from atomic scattering factors.

* **X-rays**: f₀ in electrons, from the Waasmaier & Kirfel (1995) fits (five Gaussians and a constant in
  s = sin θ / λ, valid for s ≤ 6 Å⁻¹): :func:`xstructure.xray_form_factor`.
* **Electrons**: the first-Born amplitude f_e in Å from the same fit by the Mott–Bethe formula,
  f_e(q) = (2 / a₀)(Z − f₀(q)) / q², with a₀ the Bohr radius, optionally times the relativistic factor
  γ = 1 + E / m_e c²: :func:`xstructure.electron_form_factor`.

Both functions take q = 4π sin θ / λ in Å⁻¹, the variable of the molecular API. Crystallographic tables are
written in s = sin θ / λ = q / 4π (also Å⁻¹), which is why the two axes below differ by a factor 4π ≈ 12.6.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np

import xstructure

q = np.linspace(0.0, 20.0, 500)                       # Å⁻¹
elements = ["H", "C", "N", "O", "S", "Cl"]
f_xray = {e: xstructure.xray_form_factor(e, q) for e in elements}                  # electrons
f_elec = {e: xstructure.electron_form_factor(e, q) for e in elements}              # Å
f_elec_300 = xstructure.electron_form_factor("C", q, energy_kev=300.0)            # Å, with γ at 300 keV

for e in elements:
    print(f"{e:2s}  f0(0) = {f_xray[e][0]:6.3f} electrons   f_e(0) = {f_elec[e][0]:6.3f} Å")
print(f"γ(300 keV) = {f_elec_300[0] / f_elec['C'][0]:.4f}")

# %%
# Electrons scatter from the screened nuclear potential, so f_e falls off faster than f₀ and is larger for
# light atoms relative to heavy ones: hydrogen, almost invisible to X-rays beyond q ≈ 3 Å⁻¹, contributes
# noticeably to electron diffraction. The last panel shows each element's share of the scattering relative
# to carbon's.
fig, axes = plt.subplots(1, 3, figsize=(14, 4.3), layout="constrained")
to_s = (lambda x: x / (4 * np.pi), lambda x: 4 * np.pi * x)
for e in elements:
    axes[0].plot(q, f_xray[e], label=e)
    axes[1].semilogy(q, f_elec[e], label=e)
    axes[2].semilogy(q, f_elec[e] / f_elec["C"], label=e)
axes[2].set_prop_cycle(None)
for e in elements:
    axes[2].semilogy(q, f_xray[e] / f_xray["C"], ls=":")
axes[0].set_ylabel("f₀ (electrons)")
axes[0].set_title("X-rays (Waasmaier & Kirfel)")
axes[1].set_ylabel("f_e (Å)")
axes[1].set_title("electrons (Mott–Bethe)")
axes[2].set_ylabel("f / f_C (dimensionless)")
axes[2].set_title("relative to carbon\nelectrons (solid), X-rays (dotted)")
for ax in axes:
    ax.set_xlabel("q = 4π sin θ / λ (Å⁻¹)")
    top = ax.secondary_xaxis("top", functions=to_s)
    top.set_xlabel("s = sin θ / λ (Å⁻¹)")
    ax.legend(fontsize=8, ncols=2)
plt.show()
