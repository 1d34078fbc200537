"""
A detector image of aligned molecules, and its radial integration
=================================================================

A pump laser polarised along ê excites molecules whose transition dipole d̂ lies near ê (cos²
photoselection), so the excited ensemble is aligned and its scattering is no longer isotropic:

.. math::

   I(\\mathbf q) = I_0(q) + P_2(\\hat{\\mathbf q}\\cdot\\hat{\\mathbf e})\\, I_2(q)
                 + P_4(\\hat{\\mathbf q}\\cdot\\hat{\\mathbf e})\\, I_4(q).

Here we simulate such an image of 1,3-cyclohexadiene (CHD) on a flat detector, with X-ray polarisation,
solid-angle factors and Poisson noise, then recover the isotropic part I₀(q) and the anisotropic part I₂(q)
with :class:`xstructure.Integrator`, which bins pixels as pyFAI's ``integrate1d`` does (no pixel splitting).
"""

# %%
# The detector
# ------------
# :class:`xstructure.Geometry` follows pyFAI's PONI convention: SI units (metres, radians), the beam along z.
# ``Geometry.simple`` is an untilted detector with the beam at its centre; ``Geometry.from_poni`` reads a
# calibration file. 20 keV X-rays (λ ≈ 0.62 Å), 512 × 512 pixels of 100 µm, 3 cm from the sample: the
# corners see 2θ ≈ 50°, q ≈ 8.6 Å⁻¹.
import matplotlib.pyplot as plt
import numpy as np

import xstructure

geometry = xstructure.Geometry.simple((512, 512), pixel=100e-6, dist=0.03, energy_kev=20.0)
print(geometry)
print(f"wavelength {geometry.wavelength_A:.4f} Å")

# %%
# An aligned, photoselected image
# -------------------------------
# ``orientation="aligned"`` distributes the molecule-frame axis ``dipole`` about the lab axis ``axis``
# (here the horizontal x axis) with ⟨P₂⟩ = 0.4, the value for cos² photoselection. ``photons`` sets the
# expected number of counts in the frame, and Poisson noise is drawn.
chd = xstructure.molecule("CHD")
dipole = chd.positions[0] - chd.positions[3]     # an axis fixed in the molecule (a C1···C4 vector)
photons = 5e8
image = xstructure.simulate(chd, geometry, orientation="aligned", axis=(1, 0, 0), dipole=dipole, p2=0.4,
                            photons=photons, rng=0)
print(image.shape, image.dtype, f"{image.sum():.3g} counts")

# the noiseless aligned and isotropic images (electrons² per unit of the corrections), put on the scale of
# the counts: their difference is the anisotropic part of the signal
clean = xstructure.simulate(chd, geometry, orientation="aligned", axis=(1, 0, 0), dipole=dipole, p2=0.4)
isotropic = xstructure.simulate(chd, geometry)
to_counts = photons / clean.sum()
clean, isotropic = clean * to_counts, isotropic * to_counts

# %%
# Radial integration and Legendre decomposition
# ---------------------------------------------
# The :class:`~xstructure.Integrator` builds its pixel→bin map once; every later frame costs one pass over
# the pixels. ``polarization=0.99`` and the default solid-angle correction divide out the factors the
# simulation applied. ``legendre`` fits I₀ + P₂ I₂ bin by bin, by weighted least squares over the pixels.
integrator = xstructure.Integrator(geometry, npt=200, unit="q_A^-1", polarization=0.99,
                                   radial_range=(0.0, 7.0))   # Å⁻¹: rings that lie wholly on the detector
result = integrator.integrate(image)                     # .radial (Å⁻¹), .intensity, .sigma, .count
legendre = integrator.legendre(image, axis=(1, 0, 0), orders=(0, 2))
legendre_clean = integrator.legendre(clean, axis=(1, 0, 0), orders=(0, 2))   # same map, noiseless
q = result.radial

# %%
# The figure: the noisy image, the anisotropic part of the noiseless one (aligned minus isotropic: more
# intensity along one direction, less across it), the radial average with its Poisson error, and the two
# Legendre components of the noisy and the noiseless image, weighted by q to show the oscillations.
fig, axes = plt.subplots(2, 2, figsize=(11, 9), layout="constrained")
extent = np.array([-256, 256, 256, -256]) * 100e-3      # mm from the beam centre, rows downwards
ax = axes[0, 0]
im = ax.imshow(np.log10(np.maximum(image, 1)), extent=extent, cmap="magma")
ax.set_title("aligned CHD, 20 keV, 5·10⁸ photons")
fig.colorbar(im, ax=ax, label="log₁₀(counts per pixel)")
ax = axes[0, 1]
aniso = clean - isotropic
lim = np.abs(aniso).max()
im = ax.imshow(aniso, extent=extent, cmap="RdBu_r", vmin=-lim, vmax=lim)
ax.set_title("aligned − isotropic (noiseless)")
fig.colorbar(im, ax=ax, label="counts per pixel")
for ax in axes[0]:
    ax.set_xlabel("x on the detector (mm)")
    ax.set_ylabel("y on the detector (mm)")

ax = axes[1, 0]
ax.plot(q, result.intensity, lw=1.2, label="radial average")
ax.set_yscale("log")
ax.set_xlabel("q (Å⁻¹)")
ax.set_ylabel("intensity (counts per pixel, corrected)")
ax.set_title("radial average and its Poisson error")
right = ax.twinx()
right.plot(q, 100 * result.sigma / result.intensity, color="C1", lw=1, label="σ / intensity")
right.set_ylabel("relative error σ / intensity (%)", color="C1")
right.tick_params(axis="y", colors="C1")
lines = ax.get_lines() + right.get_lines()
ax.legend(lines, [line.get_label() for line in lines], loc="upper center")

ax = axes[1, 1]
for order, color in ((0, "C0"), (2, "C3")):
    ax.plot(q, q * legendre[order], color=color, lw=0.8, alpha=0.7, label=f"$q\\,I_{order}$, noisy")
    ax.plot(q, q * legendre_clean[order], color=color, lw=1.5, ls="--", label=f"$q\\,I_{order}$, noiseless")
ax.set_xlabel("q (Å⁻¹)")
ax.set_ylabel(r"$q\,I_\ell$ (counts per pixel · Å⁻¹)")
ax.set_title("Legendre components")
ax.legend(fontsize=8)
plt.show()
