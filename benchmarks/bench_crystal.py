"""Crystal kernels beside their peers: structure factors, powder patterns and density grids.

What is measured (one run, the same crystals for every method, built with ``np.random.default_rng(0)``)

    Crystals: NaCl (8 atoms, conventional cubic cell) and a triclinic cell of 100 atoms (C, N, O, S at
    random fractional positions; a = 9.1, b = 8.5, c = 10.3 Å), each atom with its own B in [0.5, 3] Å².

    1. F(hkl) on the full boxes [−10, 10]³ (9,261 reflections) and [−20, 20]³ (68,921), X-ray factors:
       * xstructure ``crystal.structure_factors(atoms, H)`` (Waasmaier–Kirfel factors, compiled kernel);
       * numpy, vectorised with per-axis outer products: the phase tables e_h, e_k, e_l per atom, then
         Σ_j g_t(j)(hkl) · e_h ⊗ e_k ⊗ e_l accumulated in chunks of atoms (what one would write in numpy);
       * gemmi 0.7 direct summation, ``StructureFactorCalculatorX.calculate_sf_from_small_structure`` (IT92
         table), one Python call per reflection as its API takes them; timed on a leading subset of the
         reflections (stated) and extrapolated per reflection.
       Agreement is checked first: numpy vs xstructure to 1e-10 of max|F| (same table), gemmi vs xstructure
       on gemmi's IT92 table (passed as a callable) to 1e-6.
    2. Powder patterns (Cu Kα1, 2θ 5–90°, peaks): xstructure ``powder.powder_peaks`` vs pymatgen
       ``XRDCalculator(wavelength="CuKa1").get_pattern`` per crystal, on NaCl, Si, rutile and the
       100-atom cell; xstructure one crystal per call, and in batches of 64 crystals per call (the same
       structure rattled by 0.02 Å, seeded), the time per crystal, from ase.Atoms and from our own
       ``Cell`` objects built beforehand (as pymatgen's ``Structure`` is built before its timing; neither
       conversion is timed).  pymatgen has no batch API: one crystal per call.
    3. Density grids 64³ (σ = 0.5 Å, Z weights, periodic images, fractional frame): xstructure
       ``crystal.density_grid`` vs numpy (the grid points against each atom's 27 nearest images, chunked).

    Times are medians over runs that add up to at least 0.3–0.5 s per method (at least 3–5 runs, at most
    500), the same rule for every method: on a shared virtual machine single calls stall now and then.

Usage: ``python benchmarks/bench_crystal.py [--quick] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, timeit  # noqa: E402

import xstructure  # noqa: E402
from xstructure import crystal  # noqa: E402
from xstructure.crystal.structure_factors import _form_factors, _types, as_cell  # noqa: E402


def crystals(rng):
    from ase import Atoms
    from ase.build import bulk

    nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    cell = np.array([[9.1, 0.0, 0.0], [1.3, 8.4, 0.0], [-0.7, 1.1, 10.2]])
    big = Atoms(rng.choice(["C", "N", "O", "S"], 100), scaled_positions=rng.random((100, 3)), cell=cell, pbc=True)
    return {"NaCl (8 atoms)": nacl, "triclinic (100 atoms)": big}


def numpy_box(atoms, H, B):
    """Per-axis outer products, vectorised over chunks of atoms; WK factors per element, B per atom."""
    c = as_cell(atoms, b_factors=B)
    r = np.arange(-H, H + 1)
    hkl = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    s2 = (0.25 * np.linalg.norm(hkl @ c.reciprocal, axis=1) ** 2).reshape((2 * H + 1,) * 3)
    types, type_of = _types(c)
    F = np.zeros((2 * H + 1,) * 3, complex)
    for t, (sym, z) in enumerate(types):
        g = _form_factors("xray", sym, z, np.sqrt(s2), None)
        idx = np.flatnonzero(type_of == t)
        S = np.zeros_like(F)
        for chunk in np.array_split(idx, max(1, len(idx) // 8)):
            e = np.exp(2j * np.pi * np.multiply.outer(c.frac[chunk], r))  # (n, 3, L)
            dw = np.exp(-np.multiply.outer(c.b_factors[chunk], s2))         # (n, L, L, L)
            S += np.einsum("nhkl,nh,nk,nl->hkl", dw, e[:, 0], e[:, 1], e[:, 2], optimize=False)
        F += g * S
    return F.reshape(-1)


def gemmi_structure(atoms, B):
    import gemmi

    c = as_cell(atoms)
    ss = gemmi.SmallStructure()
    ss.cell = gemmi.UnitCell(*atoms.cell.cellpar())
    ss.spacegroup_hm = "P 1"
    for j, sym in enumerate(atoms.get_chemical_symbols()):
        site = gemmi.SmallStructure.Site()
        site.fract = gemmi.Fractional(*c.frac[j])
        site.element = gemmi.Element(sym)
        site.occ = 1.0
        site.u_iso = B[j] / (8 * np.pi**2)
        site.label = f"{sym}{j}"
        ss.add_site(site)
    ss.setup_cell_images()
    return ss


def it92(symbol, s):
    import gemmi

    e = gemmi.Element(symbol).it92
    return e.c + np.sum(np.array(e.a, float) * np.exp(-np.multiply.outer(s * s, np.array(e.b, float))), axis=-1)


def bench_structure_factors(cr, quick):
    import gemmi

    rng = np.random.default_rng(1)
    out = {}
    for name, atoms in cr.items():
        B = rng.uniform(0.5, 3.0, len(atoms))
        ss = gemmi_structure(atoms, B)
        calc = gemmi.StructureFactorCalculatorX(ss.cell)
        for H in (10, 20):
            hkl, F = crystal.structure_factors(atoms, H, b_factors=B)
            ref = numpy_box(atoms, H, B)
            err_np = float(np.max(np.abs(F - ref)) / np.max(np.abs(F)))
            assert err_np < 1e-10, err_np
            sub = hkl[:: max(1, len(hkl) // 2000)]
            _, F92 = crystal.structure_factors(atoms, hkl=sub, factors=it92, b_factors=B)
            g = np.array([calc.calculate_sf_from_small_structure(ss, [int(a), int(b), int(c)]) for a, b, c in sub])
            err_gemmi = float(np.max(np.abs(F92 - g)) / np.max(np.abs(g)))
            assert err_gemmi < 1e-6, err_gemmi
            reps = 2 if quick else 5
            t_ours = timeit(lambda: crystal.structure_factors(atoms, H, b_factors=B), reps, min_time=0.5)
            t_np = timeit(lambda: numpy_box(atoms, H, B), 1 if quick or H == 20 else 3, min_time=0.5)
            n_sub = min(len(hkl), 2000 if quick else 10000)
            part = hkl[:n_sub]

            def run_gemmi():
                for a, b, c in part:
                    calc.calculate_sf_from_small_structure(ss, [int(a), int(b), int(c)])

            t_gemmi = timeit(run_gemmi, 1, min_time=0.5) * len(hkl) / n_sub
            row = {"reflections": len(hkl), "xstructure_s": t_ours, "numpy_outer_s": t_np,
                   "gemmi_s_extrapolated": t_gemmi, "gemmi_timed_reflections": n_sub,
                   "speedup_vs_numpy": t_np / t_ours, "speedup_vs_gemmi": t_gemmi / t_ours,
                   "max_rel_diff_numpy": err_np, "max_rel_diff_gemmi_it92": err_gemmi}
            out[f"{name}, [-{H},{H}]^3"] = row
            print(f"  F(hkl) {name:22s} [−{H},{H}]³ {len(hkl):6d} refl: xstructure {t_ours * 1e3:8.2f} ms | numpy "
                  f"{t_np * 1e3:9.1f} ms ({t_np / t_ours:6.1f}×) | gemmi {t_gemmi * 1e3:9.1f} ms "
                  f"({t_gemmi / t_ours:7.1f}×, {n_sub} timed)", flush=True)
    return out


def bench_powder(quick):
    try:
        from xstructure.crystal.powder import powder_peaks
    except ImportError as exc:
        print(f"  powder: skipped ({exc})")
        return {"skipped": str(exc)}
    from ase.build import bulk
    from ase.spacegroup import crystal as sgc
    from pymatgen.analysis.diffraction.xrd import XRDCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    cr = {"NaCl": bulk("NaCl", "rocksalt", a=5.64, cubic=True), "Si": bulk("Si", "diamond", a=5.431, cubic=True),
          "rutile": sgc(["Ti", "O"], basis=[(0, 0, 0), (0.305, 0.305, 0)], spacegroup=136,
                        cellpar=[4.594, 4.594, 2.959, 90, 90, 90]),
          "triclinic (100 atoms)": crystals(np.random.default_rng(0))["triclinic (100 atoms)"]}
    calc = XRDCalculator(wavelength="CuKa1")
    out = {}
    for name, atoms in cr.items():
        st = AseAtomsAdaptor.get_structure(atoms)
        ours = powder_peaks(atoms, wavelength=1.54056, two_theta_range=(5, 90))
        theirs = calc.get_pattern(st, two_theta_range=(5, 90))
        strong = np.asarray(theirs.y) > 1.0
        d2t = max(float(np.min(np.abs(ours.two_theta - t))) for t in np.asarray(theirs.x)[strong])
        t_ours = timeit(lambda: powder_peaks(atoms, wavelength=1.54056, two_theta_range=(5, 90)), 3 if quick else 5,
                        min_time=0.3)
        batch = []
        for k in range(64):  # 64 distinct crystals: the same structure, rattled
            b = atoms.copy()
            b.rattle(0.02, seed=k)
            batch.append(b)
        cells = [as_cell(b) for b in batch]  # our native structure, as pymatgen's Structure is theirs
        t_batch = timeit(lambda: powder_peaks(batch, wavelength=1.54056, two_theta_range=(5, 90)), 3,
                         min_time=0.3) / len(batch)
        t_cells = timeit(lambda: powder_peaks(cells, wavelength=1.54056, two_theta_range=(5, 90)), 3,
                         min_time=0.3) / len(batch)
        t_pmg = timeit(lambda: calc.get_pattern(st, two_theta_range=(5, 90)), 1 if quick else 3, min_time=0.3)
        out[name] = {"xstructure_s": t_ours, "xstructure_batched_atoms_s_per_crystal": t_batch,
                     "xstructure_batched_cells_s_per_crystal": t_cells, "pymatgen_s": t_pmg,
                     "speedup_single": t_pmg / t_ours, "speedup_batched_atoms": t_pmg / t_batch,
                     "speedup_batched_cells": t_pmg / t_cells, "max_abs_two_theta_diff_deg": d2t,
                     "peaks": int(len(ours.two_theta))}
        print(f"  PXRD {name:22s} pymatgen {t_pmg * 1e3:7.2f} ms | xstructure: one Atoms {t_ours * 1e3:6.3f} ms "
              f"({t_pmg / t_ours:5.1f}×), 64 Atoms {t_batch * 1e3:6.3f} ms/crystal ({t_pmg / t_batch:5.1f}×), "
              f"64 Cells {t_cells * 1e3:6.3f} ms/crystal ({t_pmg / t_cells:5.1f}×) | max |Δ2θ| {d2t:.1e}°",
              flush=True)
    return out


def numpy_density(atoms, n, sigma):
    c = as_cell(atoms)
    grid = np.stack(np.meshgrid(*[np.arange(k) / k for k in n], indexing="ij"), -1).reshape(-1, 3) @ c.cell
    imgs = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), -1).reshape(-1, 3) @ c.cell
    rho = np.zeros(len(grid))
    norm = (2 * np.pi * sigma**2) ** -1.5
    for z, r in zip(c.numbers, c.positions):
        for R in imgs:
            d2 = ((grid - (r + R)) ** 2).sum(1)
            rho += z * norm * np.exp(-d2 / (2 * sigma**2))
    return rho.reshape(n)


def bench_density(cr, quick):
    out = {}
    n, sigma = (64, 64, 64), 0.5
    for name, atoms in cr.items():
        ours = crystal.density_grid(atoms, n, sigma)
        t_ours = timeit(lambda: crystal.density_grid(atoms, n, sigma), 3)
        if name.startswith("NaCl") or not quick:
            ref = numpy_density(atoms, n, sigma)
            err = float(np.max(np.abs(ours - ref)) / ref.max())
            t_np = timeit(lambda: numpy_density(atoms, n, sigma), 1, warmup=lambda: None)
        else:
            err, t_np = float("nan"), float("nan")
        out[name] = {"xstructure_s": t_ours, "numpy_s": t_np, "speedup": t_np / t_ours, "max_rel_diff": err}
        print(f"  density 64³ {name:22s} xstructure {t_ours * 1e3:8.2f} ms | numpy {t_np * 1e3:9.1f} ms "
              f"({t_np / t_ours:6.1f}×) | max|Δρ|/max ρ {err:.1e}", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    info = machine_info(peers=("gemmi", "pymatgen"))
    print(f"machine: {info['cpu_model']}, {info['cpu_affinity']} cores; gemmi {info['gemmi']}, pymatgen "
          f"{info['pymatgen']}; xstructure {xstructure.__version__}")
    cr = crystals(np.random.default_rng(0))
    res = {"machine": info}
    res["structure_factors"] = bench_structure_factors(cr, args.quick)
    res["powder"] = bench_powder(args.quick)
    res["density"] = bench_density(cr, args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
