"""
Structure factors and the powder pattern of rock salt
=====================================================

For a crystal, :func:`xstructure.crystal.structure_factors` computes

.. math::

   F(hkl) = \\sum_j \\mathrm{occ}_j\\, f_j(s)\\, e^{-B_j s^2}\\, e^{+2\\pi i (h x_j + k y_j + l z_j)},
   \\qquad s = \\sin\\theta/\\lambda = 1/(2d_{hkl}),

with fractional coordinates (x, y, z) and the crystallographic sign convention (+2πi). Note the variable:
crystallographic tables use s = sin θ / λ = q / 4π, in Å⁻¹, where the molecular part of xstructure uses
q = 4π sin θ / λ.

NaCl (rock salt, a = 5.64 Å) has a face-centred cubic lattice with Na at (½, 0, 0) and Cl at the origin, so

* reflections with mixed parity of h, k, l are absent (F = 0),
* all-even reflections have F = 4 (f_Cl + f_Na), all-odd ones F = 4 (f_Cl − f_Na).

:func:`~xstructure.crystal.powder_peaks` and :func:`~xstructure.crystal.powder_pattern` turn these into a
powder diffraction pattern.
"""

# %%
# Structure factors on the hkl box
# --------------------------------
import matplotlib.pyplot as plt
import numpy as np
from ase.build import bulk

import xstructure

nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True)          # conventional cell, 8 atoms
H = 8
F = xstructure.crystal.structure_factors(nacl, hmax=H, factors="xray", grid=True)   # (2H+1)³, electrons
print(F.shape, "F(000) =", F[H, H, H].real, "electrons (Σ f(0))")

hkl, F_list = xstructure.crystal.structure_factors(nacl, hmax=H, factors="xray")      # (M, 3), (M,)
reciprocal = np.linalg.inv(nacl.cell[:]).T                  # rows a*, b*, c* (no 2π), Å⁻¹
s = np.linalg.norm(hkl @ reciprocal.T, axis=1) / 2          # sin θ / λ = 1 / 2d, Å⁻¹
parity = hkl % 2
all_even = (parity == 0).all(1)
all_odd = (parity == 1).all(1)

# %%
# The form factors behind them: Waasmaier & Kirfel (1995) fits, evaluated at q = 4π s.
s_grid = np.linspace(0, s.max(), 200)
f_na = xstructure.xray_form_factor("Na", 4 * np.pi * s_grid)  # electrons
f_cl = xstructure.xray_form_factor("Cl", 4 * np.pi * s_grid)

# %%
# The powder pattern
# ------------------
# Cu Kα1 (1.5406 Å), 2θ from 10° to 100°, intensities :math:`|F|^2` times the Lorentz-polarisation factor, merged
# over each family of symmetry-equivalent reflections (the multiplicity), scaled to 100 for the strongest
# peak; the profile is a pseudo-Voigt of 0.1° FWHM.
peaks = xstructure.crystal.powder_peaks(nacl, wavelength="CuKa1", two_theta_range=(10, 100))
two_theta, pattern = xstructure.crystal.powder_pattern(nacl, np.linspace(10, 100, 9001), wavelength="CuKa1",
                                                       W=0.01)
for p in range(5):
    print(f"({' '.join(map(str, peaks.hkl[p]))})  2θ = {peaks.two_theta[p]:7.3f}°  d = {peaks.d[p]:.4f} Å"
          f"  multiplicity {peaks.multiplicity[p]:2d}  I = {peaks.intensity[p]:5.1f}")

# %%
# The figure: the l = 0 layer of :math:`|F|`, :math:`|F|` of every reflection against s with the two form-factor
# combinations, and the powder pattern with its strongest peaks labelled.
fig = plt.figure(figsize=(13, 8.5), layout="constrained")
top, bottom = fig.subfigures(2, 1, height_ratios=(1, 0.9))
fig.get_layout_engine().set(wspace=0.1)
ax1, ax2 = top.subplots(1, 2, width_ratios=(1, 1.4))
im = ax1.imshow(np.abs(F[:, :, H]).T, origin="lower", extent=(-H - 0.5, H + 0.5, -H - 0.5, H + 0.5),
                cmap="viridis")
ax1.set_xticks(range(-H, H + 1, 2))
ax1.set_yticks(range(-H, H + 1, 2))
ax1.set_xlabel("h")
ax1.set_ylabel("k")
ax1.set_title("|F(hk0)| of NaCl (mixed parity: absent)")
top.colorbar(im, ax=ax1, label="|F| (electrons)")

ax2.plot(s[all_even], np.abs(F_list[all_even]), "o", ms=4, label="h, k, l all even")
ax2.plot(s[all_odd], np.abs(F_list[all_odd]), "s", ms=4, label="h, k, l all odd")
ax2.plot(s_grid, 4 * (f_cl + f_na), "C0-", lw=1, label="4 (f_Cl + f_Na)")
ax2.plot(s_grid, 4 * np.abs(f_cl - f_na), "C1-", lw=1, label="4 |f_Cl − f_Na|")
ax2.set_xlabel("s = sin θ / λ (Å⁻¹)")
ax2.set_ylabel("|F| (electrons)")
ax2.legend()
secondary = ax2.secondary_xaxis("top", functions=(lambda x: 4 * np.pi * x, lambda x: x / (4 * np.pi)))
secondary.set_xlabel("q = 4π s (Å⁻¹)")

ax3 = bottom.subplots()
ax3.plot(two_theta, pattern / pattern.max() * 100, lw=1)
ax3.vlines(peaks.two_theta, 0, -6, color="k", lw=1)
for p in np.argsort(peaks.intensity)[::-1][:8]:
    ax3.annotate("".join(map(str, peaks.hkl[p])), (peaks.two_theta[p], 103 * 1.0), ha="center", fontsize=8)
ax3.set_xlim(10, 100)
ax3.set_ylim(-8, 112)
ax3.set_xlabel("2θ (degrees), Cu Kα1, λ = 1.5406 Å")
ax3.set_ylabel("intensity (strongest peak = 100)")
ax3.set_title("powder pattern of NaCl (ticks: Bragg peaks)")
plt.show()
