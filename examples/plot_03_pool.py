"""
A pool of thermal geometries and its patterns
=============================================

A *pool* is many geometries of one molecule sampled at a temperature, with their energies and any number of
simulated pattern sets, kept in a chunked, compressed zarr store that resumes after an interruption
(:class:`xstructure.Pool`). It is the training and reference data of the inversion methods.

Here we draw 200 geometries of N-methylmorpholine by Wigner sampling of the normal modes of its MMFF94
minimum at 300 K (quantum-harmonic zero-point and thermal motion; needs RDKit), compute their X-ray
molecular scattering, and look at what the sampling produced.
"""

# %%
# Sampling into a store
# ---------------------
# ``Pool.create`` optimises the molecule with MMFF94, computes its Hessian, draws the geometries chunk by
# chunk and writes them; running the same call again on a stopped store finishes only what is missing. We
# write into a temporary directory.
import os
import tempfile

import matplotlib.pyplot as plt
import numpy as np

import xstructure

workdir = tempfile.mkdtemp(prefix="xstructure-pool-")
pool = xstructure.Pool.create(os.path.join(workdir, "nmm.zarr"), "NMM", "wigner", n=200, temperature=300,
                              seed=0, chunk=100, progress=False)
print(pool)

# %%
# Pattern sets
# ------------
# ``simulate`` adds a pattern set computed from every stored geometry: here X-ray I_mol on 400 points of
# 0.5–10 Å⁻¹. Arrays in the store are lazy; slicing reads them.
q = np.linspace(0.5, 10.0, 400)                            # Å⁻¹
name = pool.simulate(q, probe="xray", signal="molecular", progress=False)
q_stored, I = pool.patterns(name)                          # (Q,) Å⁻¹ and a lazy (B, Q) array
I = I[:]                                                   # electrons²
positions = pool.positions[:]                              # (B, N, 3) Å
energies = pool.energies[:]                                # (B,) eV, as MMFF94 reports them
print(name, I.shape, positions.shape)

# %%
# What the sampling produced
# --------------------------
# Bond lengths by type (pairs closer than 1.2 × the sum of covalent radii in the reference), the RMSD of
# each geometry to the reference after superposition, and the patterns: their mean, their spread and a few
# members about the mean (the differences between geometries are a few per cent of I_mol). The C–H bonds
# spread most: hydrogen's zero-point motion is the largest.
from ase.data import chemical_symbols

from xstructure.structures import bond_graph

numbers, reference = pool.numbers, pool.reference
i, j = np.nonzero(np.triu(bond_graph(numbers, reference)))                 # the reference's bonds
lengths = np.linalg.norm(positions[:, i] - positions[:, j], axis=2)     # (B, bonds) Å
kinds = ["–".join(sorted((chemical_symbols[numbers[a]], chemical_symbols[numbers[b]]))) for a, b in zip(i, j)]

rmsd = xstructure.rmsd(reference, positions)                            # (B,) Å

fig, axes = plt.subplots(2, 2, figsize=(11, 8), layout="constrained")
ax = axes[0, 0]
for kind in sorted(set(kinds)):
    cols = [k for k, name_ in enumerate(kinds) if name_ == kind]
    ax.hist(lengths[:, cols].ravel(), bins=60, histtype="step", lw=1.5, label=f"{kind} ({len(cols)} bonds)")
ax.set_xlabel("bond length (Å)")
ax.set_ylabel("bonds × geometries")
ax.set_title("bond lengths, Wigner 300 K")
ax.legend()

ax = axes[0, 1]
ax.hist(rmsd, bins=30, color="C4")
ax.set_xlabel("RMSD to the reference after superposition (Å)")
ax.set_ylabel("geometries")
ax.set_title(f"RMSD to the MMFF94 minimum (median {np.median(rmsd):.3f} Å)")

ax = axes[1, 0]
ax.hist(energies - energies.min(), bins=30, color="C2")
ax.set_xlabel("energy above the lowest sample (eV)")
ax.set_ylabel("geometries")
ax.set_title("MMFF94 energies")

ax = axes[1, 1]
mean, std = I.mean(0), I.std(0)
ax.fill_between(q, -q * std, q * std, color="C0", alpha=0.25, label="± 1 std over the pool")
for k in range(4):
    ax.plot(q, q * (I[k] - mean), lw=0.8, label=f"member {k}")
ax.set_xlabel("q (Å⁻¹)")
ax.set_ylabel(r"$q\,(I_{mol} - \langle I_{mol} \rangle)$ (electrons² Å⁻¹)")
ax.set_title("X-ray I_mol: members minus the pool mean")
ax.legend(ncols=2, fontsize=8)
plt.show()

# %%
# The classical structure-pool method in one line: the member whose stored pattern is closest to an
# observed one in least squares. A stored pattern finds itself at distance 0.
k, dist = pool.nearest(I[42], name)
print("nearest member to member 42:", k, "distance", dist)

import shutil

shutil.rmtree(workdir)
