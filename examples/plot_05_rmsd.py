"""
RMSD after optimal superposition
================================

:func:`xstructure.rmsd` gives the root-mean-square deviation of two structures after the rotation and
translation that minimise it (Kabsch; computed with Horn's quaternion method in float64 whatever the input
type), batched over pairs. Options:

* ``reflection=True`` also allows improper rotations, so a structure and its mirror image match;
* ``permute="element"`` lets atoms of the same element be relabelled (with ``numbers=``), so that the
  arbitrary numbering of, say, the hydrogens of a methyl group does not count as a deviation;
* ``weights=`` weights the atoms, e.g. by mass.
"""

# %%
# Rotated, shifted and displaced copies
# -------------------------------------
# For isotropic Gaussian displacements of σ per coordinate the RMSD after superposition is close to
# σ √3, a little less, because the superposition also absorbs part of the noise (6 of the 3N degrees of
# freedom).
import matplotlib.pyplot as plt
import numpy as np
from scipy.spatial.transform import Rotation

import xstructure

nmm = xstructure.molecule("NMM")
ref = nmm.positions                                           # (N, 3) Å
N = len(nmm)
rng = np.random.default_rng(1)

sigma = np.repeat(np.linspace(0.0, 0.3, 31), 40)              # Å, 40 copies per noise level
R = Rotation.random(len(sigma), random_state=2).as_matrix()   # (B, 3, 3) random rotations
frames = (ref + sigma[:, None, None] * rng.standard_normal((len(sigma), N, 3))) @ R.transpose(0, 2, 1)
frames += rng.uniform(-5, 5, (len(sigma), 1, 3))              # and random translations
r = xstructure.rmsd(ref, frames)                              # one reference against B frames: (B,) Å
r_plain = xstructure.rmsd(ref, frames, align=False)           # without superposition
print(r.shape, f"largest RMSD at σ = 0: {r[sigma == 0].max():.1e} Å;",
      f"median without superposition: {np.median(r_plain):.2f} Å")

# %%
# Mirror images and relabelled atoms
# -----------------------------------
# The mirror image of NMM (x → −x) cannot be rotated onto it, and a copy whose hydrogen labels are
# shuffled is the same structure with another numbering. The two options recognise both.
mirror = ref * np.array([-1.0, 1.0, 1.0])
hydrogens = np.flatnonzero(nmm.numbers == 1)
shuffled = ref.copy()
shuffled[hydrogens] = ref[rng.permutation(hydrogens)]
cases = {
    "mirror image": dict(b=mirror),
    "H labels shuffled": dict(b=shuffled),
}
options = {
    "superposed": dict(),
    "+ reflection": dict(reflection=True),
    "+ permute='element'": dict(permute="element", numbers=nmm.numbers),
    "+ both": dict(reflection=True, permute="element", numbers=nmm.numbers),
}
table = np.array([[xstructure.rmsd(ref, case["b"], **opt) for opt in options.values()] for case in cases.values()])
for name, row in zip(cases, table):
    print(f"{name:18s}", "  ".join(f"{v:.3f}" for v in row), "Å")

# %%
# The figure: the RMSD against the noise level, and the four options on the two special cases.
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), layout="constrained")
ax = axes[0]
ax.plot(sigma, r, ".", ms=3, label="after superposition (one dot per copy)")
s = np.linspace(0, 0.3, 2)
ax.plot(s, s * np.sqrt(3), "k--", lw=1, label="σ √3")
ax.set_ylim(0, 0.7)
ax.set_xlabel("displacement σ per coordinate (Å)")
ax.set_ylabel("RMSD (Å)")
ax.set_title("NMM: rotated, translated and displaced copies")
ax.legend()

ax = axes[1]
width = 0.2
x = np.arange(len(cases))
for k, name in enumerate(options):
    bars = ax.bar(x + (k - 1.5) * width, table[:, k], width, label=name)
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
ax.set_xticks(x, list(cases))
ax.set_ylabel("RMSD (Å)")
ax.set_title("what the options forgive")
ax.legend()
plt.show()
