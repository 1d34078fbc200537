"""Throughput and accuracy of batched RMSD after optimal superposition: xstructure vs MDTraj vs numpy (vs GPU).

What is measured
    Pairs per second of ``xstructure.rmsd`` (Kabsch superposition, every pair in float64 whatever the input dtype)
    on two workloads, each generated with ``np.random.default_rng(0)``:

    1. 18 atoms: B = 1e6 frames (1e5 with --quick) of N-methylmorpholine, ``xstructure.molecule("NMM")`` plus
       Gaussian displacements σ = 0.2 Å; a second, independent set of B frames for the pairwise mode.
    2. 200 atoms: B = 1e4 (1e3 with --quick); the base structure is 200 points uniform in a 20 Å box, each frame
       adds σ = 0.3 Å displacements; a second independent set for the pairwise mode.

    Methods, side by side (all on the same coordinates):

    * xstructure one-reference mode, ``rmsd(ref (N,3), frames (B,N,3))``, float32 and float64 inputs;
    * xstructure pairwise mode, ``rmsd(a (B,N,3), b (B,N,3))`` (a_i vs b_i), float32 and float64;
    * MDTraj ``md.rmsd(traj, ref_traj, 0)`` (Theobald QCP in float32, OpenMP, ``parallel=True``): default mode,
      and ``precentered=True`` after ``Trajectory.center_coordinates()`` on both trajectories;
    * MDTraj has no pairwise mode: a Python loop ``md.rmsd(traj_a[i], traj_b, frame=i)`` over the first 2,000
      pairs only (200 with --quick) -- a subset, its rate extrapolates;
    * numpy float64 batched SVD, what a user would write: centre both, H = einsum('bni,bnj->bij', a, b),
      U, S, Vt = np.linalg.svd(H), d = sign(det(V Uᵀ)), R = V diag(1, 1, d) Uᵀ, RMSD evaluated directly from
      the rotated coordinates; chunks of 100,000 pairs (18 atoms) or 10,000 (200 atoms).  Timed on all B pairs
      if a first chunk predicts ≤ 30 s, else on the stated leading subset;
    * xstructure on torch CUDA float32 tensors (the torch custom op ``xstructure.ops.kabsch_rmsd``), one-reference
      and pairwise on the 18-atom workload, if ``xstructure.cuda_available()`` and ``torch.cuda.is_available()``.

    What is timed: only the call itself.  For xstructure that includes its input validation and the finiteness
    check of the output (for torch also the op's isfinite check of the inputs).  For MDTraj (default mode) that
    includes the float32 view/copy it makes, the in-place centering of target and reference and the traces;
    in precentered mode ``center_coordinates()`` is done before, outside the timed region.  Not timed: creating the
    coordinates, the float32 casts, the Å→nm division and ``md.Trajectory`` construction.  The MDTraj pairwise
    loop includes the ``traj_a[i]`` slicing (a new Trajectory per pair), as a user's loop would.  For the GPU,
    torch.cuda.synchronize() brackets each timed call; inputs are already on the device.

How
    Accuracy is checked before any timing, against the numpy float64 SVD reference (direct evaluation) on the
    first 2,000 pairs of each mode: for float64 inputs on the float64 coordinates, for float32 inputs on the
    float32-rounded coordinates converted to float64.  xstructure must agree to max|Δ| < 1e-6 Å for both dtypes
    (asserted).  MDTraj (float32 coordinates in nm, result ×10) is compared with the float32-coordinate reference
    and only reported.  Special cases (not timed) are reported the same way and asserted for xstructure:
    identical structures (same array, and rotated + translated), near-identical (RMSD ≈ 1e-6, 1e-4, 1e-2 Å),
    planar benzene vs an in-plane perturbed copy and vs a rotated copy, collinear CO2 and HCN vs stretched rotated
    copies and vs rotated copies (a degenerate eigenvalue case), a diatomic N2 (stretched, and rotated copy).  All
    moved copies are rotated by one random rotation and translated by (3, -2, 5) Å.  Each method is then
    warmed up once and timed with time.perf_counter: median of 3 runs for xstructure and MDTraj's md.rmsd,
    1 run for the MDTraj pairwise loop and numpy.

Usage
    python benchmarks/bench_rmsd.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import xstructure
from _common import gpu_skip_reason, machine_info, timeit

SIGMA_18 = 0.2       # Å, NMM workload
SIGMA_200 = 0.3      # Å, 200-atom workload
BOX_200 = 20.0       # Å
N_CHECK = 2000       # pairs compared with the numpy reference before timing
TOL = 1e-6           # Å, asserted for xstructure
NUMPY_BUDGET_S = 30.0


# -- helpers ----------------------------------------------------------------------------------------------------------

def numpy_rmsd(a, b, chunk: int | None = None) -> np.ndarray:
    """Batched float64 Kabsch RMSD via np.linalg.svd, evaluated directly from the rotated coordinates.

    a, b: (N, 3) or (B, N, 3) (one structure broadcasts), any float dtype; returns (B,) float64.
    """
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a[None] if a.ndim == 2 else a
    b = b[None] if b.ndim == 2 else b
    B, N = max(len(a), len(b)), a.shape[1]
    chunk = chunk or min(100_000, max(1000, 2_000_000 // N))
    out = np.empty(B)
    for s in range(0, B, chunk):
        A = a if len(a) == 1 else a[s:s + chunk]
        Q = b if len(b) == 1 else b[s:s + chunk]
        A = A - A.mean(axis=1, keepdims=True)
        Q = Q - Q.mean(axis=1, keepdims=True)
        n = max(len(A), len(Q))
        A = np.broadcast_to(A, (n, N, 3))
        Q = np.broadcast_to(Q, (n, N, 3))
        H = np.einsum("bni,bnj->bij", A, Q)                      # Σ a bᵀ
        U, _, Vt = np.linalg.svd(H)
        V, Ut = Vt.transpose(0, 2, 1), U.transpose(0, 2, 1)
        d = np.sign(np.linalg.det(V @ Ut))
        D = np.ones((n, 3))
        D[:, 2] = d
        R = (V * D[:, None, :]) @ Ut                              # R a ≈ b
        diff = np.einsum("bij,bnj->bni", R, A) - Q
        out[s:s + n] = np.sqrt(np.einsum("bni,bni->b", diff, diff) / N)
    return out


def random_rotation(rng) -> np.ndarray:
    q = rng.standard_normal(4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def frames(base: np.ndarray, B: int, sigma: float, rng) -> np.ndarray:
    """(B, N, 3) float64: base plus N(0, sigma²) displacements (generated in place)."""
    x = rng.standard_normal((B,) + base.shape)
    x *= sigma
    x += base
    return x


def md_topology(n: int):
    import mdtraj as md
    top = md.Topology()
    res = top.add_residue("MOL", top.add_chain())
    for _ in range(n):
        top.add_atom("C", md.element.carbon, res)
    return top


def md_traj(x_angstrom, top=None):
    """md.Trajectory of float32 coordinates in nm from (N, 3) or (B, N, 3) Å."""
    import mdtraj as md
    x = np.asarray(x_angstrom, np.float32)
    x = x[None] if x.ndim == 2 else x
    return md.Trajectory(np.divide(x, np.float32(10.0), dtype=np.float32), top or md_topology(x.shape[1]))


def md_pair_loop(ta, tb, n: int) -> np.ndarray:
    """MDTraj has no pairwise mode: RMSD(ta[i], tb[i]) for i < n, in Å."""
    import mdtraj as md
    out = np.empty(n, np.float32)
    for i in range(n):
        out[i] = md.rmsd(ta[i], tb, frame=i)[0]
    return out * np.float32(10.0)


def max_abs(x, ref) -> float:
    return float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(ref, np.float64))))


# -- accuracy ---------------------------------------------------------------------------------------------------------

def accuracy(ref, a, b, a32, b32, label: str) -> dict:
    """max|Δ| vs the numpy float64 SVD reference on the first N_CHECK pairs; xstructure asserted, MDTraj reported."""
    n = min(N_CHECK, len(a))
    ref32 = ref.astype(np.float32)
    checks = {"pairs": n}
    for mode, (x64, y64, x32, y32) in {"one-ref": (ref, a[:n], ref32, a32[:n]),
                                       "pairwise": (a[:n], b[:n], a32[:n], b32[:n])}.items():
        r64 = numpy_rmsd(x64, y64)
        r32 = numpy_rmsd(x32.astype(np.float64), y32.astype(np.float64))
        o64 = xstructure.rmsd(x64, y64)
        o32 = xstructure.rmsd(x32, y32)
        assert o64.dtype == np.float64 and o32.dtype == np.float32, (o64.dtype, o32.dtype)
        c = {"reference_mean_rmsd": float(r64.mean()), "reference_min_rmsd": float(r64.min()),
             "reference_max_rmsd": float(r64.max()),
             "xstructure_f64": max_abs(o64, r64), "xstructure_f32": max_abs(o32, r32),
             "xstructure_f32_vs_f64_coords_reference": max_abs(o32, r64)}
        try:
            if mode == "one-ref":
                m = md_rmsd_one_ref(md_traj(y32), md_traj(x32))
            else:
                m = md_pair_loop(md_traj(x32), md_traj(y32), n)
            c["mdtraj_f32"] = max_abs(m, r32)
        except Exception as e:                                  # reported, not fatal
            c["mdtraj_f32"] = None
            c["mdtraj_error"] = repr(e)
        checks[mode] = c
        assert c["xstructure_f64"] < TOL, f"{label} {mode}: xstructure float64 max|Δ| = {c['xstructure_f64']:.3e} Å"
        assert c["xstructure_f32"] < TOL, f"{label} {mode}: xstructure float32 max|Δ| = {c['xstructure_f32']:.3e} Å"
    return checks


def md_rmsd_one_ref(target, reference, precentered: bool = False) -> np.ndarray:
    import mdtraj as md
    return md.rmsd(target, reference, 0, precentered=precentered) * np.float32(10.0)


def special_cases() -> list[dict]:
    """Edge cases: reference RMSD and the errors of xstructure (asserted) and MDTraj (reported)."""
    rng = np.random.default_rng(0)
    nmm = xstructure.molecule("NMM").positions
    c6h6 = xstructure.molecule("C6H6").positions
    R, t = random_rotation(rng), np.array([3.0, -2.0, 5.0])

    def moved(x):
        return x @ R.T + t

    def near(x, target):
        d = rng.standard_normal(x.shape)
        d -= d.mean(axis=0)
        d *= target / np.sqrt(np.mean(np.sum(d * d, axis=1)))
        return moved(x + d)

    co2 = np.array([[0.0, 0.0, -1.16], [0.0, 0.0, 0.0], [0.0, 0.0, 1.16]])
    hcn = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.066], [0.0, 0.0, 1.066 + 1.153]])
    n2 = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.098]])
    inplane = c6h6.copy()
    inplane[:, :2] += 0.05 * rng.standard_normal((len(c6h6), 2))
    cases = [("NMM identical (same array)", nmm, nmm.copy()),
             ("NMM identical, rotated+translated", nmm, moved(nmm)),
             ("NMM near-identical, RMSD~1e-6", nmm, near(nmm, 1e-6)),
             ("NMM near-identical, RMSD~1e-4", nmm, near(nmm, 1e-4)),
             ("NMM near-identical, RMSD~1e-2", nmm, near(nmm, 1e-2)),
             ("C6H6 planar vs in-plane perturbed (0.05 A)", c6h6, moved(inplane)),
             ("C6H6 planar, rotated+translated", c6h6, moved(c6h6)),
             ("CO2 collinear vs rotated copy", co2, moved(co2)),
             ("CO2 collinear vs stretched 1.16->1.17 A", co2, moved(co2 * (1.17 / 1.16))),
             ("HCN collinear vs stretched 1%", hcn, moved(hcn * 1.01)),
             ("HCN collinear vs rotated copy", hcn, moved(hcn)),
             ("diatomic N2 vs rotated copy", n2, moved(n2)),
             ("diatomic N2 1.098 vs 1.118 A", n2, moved(n2 * (1.118 / 1.098)))]
    out = []
    for name, a, b in cases:
        a32, b32 = a.astype(np.float32), b.astype(np.float32)
        r64 = float(numpy_rmsd(a, b)[0])
        r32 = float(numpy_rmsd(a32.astype(np.float64), b32.astype(np.float64))[0])
        x64, x32 = xstructure.rmsd(a, b), xstructure.rmsd(a32, b32)
        row = {"case": name, "N": len(a), "reference_rmsd": r64, "reference_rmsd_f32_coords": r32,
               "xstructure_f64": float(x64), "xstructure_f32": float(x32),
               "xstructure_f64_err": abs(float(x64) - r64), "xstructure_f32_err": abs(float(x32) - r32)}
        try:
            m = float(md_rmsd_one_ref(md_traj(b32), md_traj(a32))[0])
            row["mdtraj"], row["mdtraj_err"] = m, abs(m - r32)
        except Exception as e:
            row["mdtraj"], row["mdtraj_err"], row["mdtraj_error"] = None, None, repr(e)
        out.append(row)
    for row in out:
        for k in ("xstructure_f64_err", "xstructure_f32_err"):
            assert row[k] < TOL, f"special case {row['case']!r}: {k} = {row[k]:.3e} Å (reference {row['reference_rmsd']:.6e})"
    return out


# -- timing -----------------------------------------------------------------------------------------------------------

def time_numpy(x, y, B: int, rows: dict, name: str, notes: list) -> None:
    """numpy SVD on all B pairs if the first chunk predicts ≤ NUMPY_BUDGET_S, else on a leading subset."""
    N = x.shape[-2]
    chunk = min(100_000, max(1000, 2_000_000 // N), B)
    xs = (lambda n: x) if x.ndim == 2 else (lambda n: x[:n])
    t0 = time.perf_counter()
    numpy_rmsd(xs(chunk), y[:chunk])                          # warm-up and estimate
    est = (time.perf_counter() - t0) * B / chunk
    n = B if est <= NUMPY_BUDGET_S else max(chunk, int(B * NUMPY_BUDGET_S / est) // chunk * chunk)
    if n < B:
        notes.append(f"{name}: timed on the first {n:,} of {B:,} pairs (all would take ~{est:.0f} s)")
    rows[name] = (n, 1, timeit(lambda: numpy_rmsd(xs(n), y[:n]), repeats=1, warmup=lambda: None))


def bench_workload(label: str, ref, a, b, n_loop: int, notes: list) -> tuple[dict, dict, dict]:
    """Accuracy, then timings, for one workload; returns (rows, checks, cpu_f32_outputs)."""
    import mdtraj as md

    B = len(a)
    ref32, a32, b32 = ref.astype(np.float32), a.astype(np.float32), b.astype(np.float32)
    checks = accuracy(ref, a, b, a32, b32, label)
    rows = {}
    rmsd = xstructure.rmsd
    rows["xstructure one-ref f32"] = (B, 3, timeit(lambda: rmsd(ref32, a32)))
    rows["xstructure one-ref f64"] = (B, 3, timeit(lambda: rmsd(ref, a)))
    rows["xstructure pairwise f32"] = (B, 3, timeit(lambda: rmsd(a32, b32)))
    rows["xstructure pairwise f64"] = (B, 3, timeit(lambda: rmsd(a, b)))
    cpu32 = {"one-ref": rmsd(ref32, a32), "pairwise": rmsd(a32, b32)}

    top = md_topology(a.shape[1])
    traj, rtraj = md_traj(a32, top), md_traj(ref32, top)
    rows["MDTraj one-ref f32 (default)"] = (B, 3, timeit(lambda: md.rmsd(traj, rtraj, 0)))
    traj.center_coordinates()
    rtraj.center_coordinates()
    rows["MDTraj one-ref f32 (precentered)"] = (B, 3, timeit(lambda: md.rmsd(traj, rtraj, 0, precentered=True)))
    del traj
    n = min(n_loop, B)
    ta, tb = md_traj(a32[:n], top), md_traj(b32[:n], top)
    rows["MDTraj pairwise f32 (Python loop)"] = (n, 1, timeit(lambda: md_pair_loop(ta, tb, n), repeats=1,
                                                            warmup=lambda: md_pair_loop(ta, tb, 1)))
    notes.append(f"MDTraj pairwise: a Python loop md.rmsd(traj_a[i], traj_b, frame=i) over the first {n:,} pairs "
                 f"only (subset of {B:,})")
    time_numpy(ref, a, B, rows, "numpy SVD f64 one-ref", notes)
    time_numpy(a, b, B, rows, "numpy SVD f64 pairwise", notes)
    return rows, checks, cpu32


def bench_gpu(ref32, a32, b32, cpu32: dict, rows: dict, notes: list, device: str = "cuda") -> None:
    """xstructure.rmsd on torch float32 tensors on `device` (the torch op path); the output stays on the device."""
    why = gpu_skip_reason(device)
    if why is not None:
        notes.append(f"GPU part skipped: {why}")
        return
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        notes.append(f"GPU: {torch.cuda.get_device_name()}")
    r, a, b = (torch.from_numpy(x).to(device) for x in (ref32, a32, b32))
    B = len(a32)
    for mode, args in (("one-ref", (r, a)), ("pairwise", (a, b))):
        got = xstructure.rmsd(*args)
        assert got.device.type == device and got.dtype == torch.float32, (got.device, got.dtype)
        err = max_abs(got.cpu().numpy(), cpu32[mode])
        assert err < 1e-5, f"{device} vs CPU float32 {mode}: max|Δ| = {err:.3e} Å"
        notes.append(f"{device} vs CPU float32 {mode}: max|Δ| = {err:.2e} Å over {B:,} pairs")

        def run(args=args):
            sync()
            xstructure.rmsd(*args)
            sync()
        rows[f"xstructure {device} torch f32 {mode}"] = (B, 3, timeit(run))
    del r, a, b
    if device == "cuda":
        torch.cuda.empty_cache()


# -- report -----------------------------------------------------------------------------------------------------------

def report(title: str, rows: dict, checks: dict, notes: list) -> dict:
    rate = {k: n / t for k, (n, _, t) in rows.items()}
    base = rate.get("MDTraj one-ref f32 (default)")
    print(f"\n== {title}")
    print(f"accuracy on the first {checks['pairs']:,} pairs (max|Δ| in Å vs numpy float64 SVD; "
          "f32 rows vs the reference on the float32-rounded coordinates; xstructure asserted < 1e-6):")
    for mode in ("one-ref", "pairwise"):
        c = checks[mode]
        md_s = f"{c['mdtraj_f32']:.2e}" if c.get("mdtraj_f32") is not None else f"failed: {c.get('mdtraj_error')}"
        print(f"  {mode:<9} reference RMSD {c['reference_min_rmsd']:.3f}..{c['reference_max_rmsd']:.3f} "
              f"(mean {c['reference_mean_rmsd']:.3f}) | xstructure f64 {c['xstructure_f64']:.2e}, "
              f"f32 {c['xstructure_f32']:.2e} (f32 vs f64-coords ref {c['xstructure_f32_vs_f64_coords_reference']:.2e})"
              f" | MDTraj f32 {md_s}")
    print(f"\n{'method':<38}{'pairs':>11}{'reps':>5}{'median s':>11}{'pairs/s':>15}{'x MDTraj 1-ref':>16}")
    for k, (n, reps, t) in rows.items():
        vs = f"{rate[k] / base:16.3g}" if base else f"{'-':>16}"
        print(f"{k:<38}{n:>11,}{reps:>5}{t:>11.4f}{rate[k]:>15,.0f}{vs}")
    for note in notes:
        print(note)
    return {"timings": {k: {"pairs": n, "repeats": r, "median_s": t, "pairs_per_s": rate[k]}
                        for k, (n, r, t) in rows.items()},
            "ratios_vs_mdtraj_one_ref_default": {k: rate[k] / base for k in rows} if base else None}


def goal_lines(title: str, rows: dict, pairwise_goal: bool) -> dict:
    rate = {k: n / t for k, (n, _, t) in rows.items()}
    g = {"one_ref_f32_vs_mdtraj_default": rate["xstructure one-ref f32"] / rate["MDTraj one-ref f32 (default)"],
         "one_ref_f32_vs_mdtraj_precentered":
             rate["xstructure one-ref f32"] / rate["MDTraj one-ref f32 (precentered)"],
         "pairwise_f32_pairs_per_s": rate["xstructure pairwise f32"],
         "pairwise_f64_pairs_per_s": rate["xstructure pairwise f64"]}
    print(f"[{title}] xstructure one-reference vs MDTraj one-reference: {g['one_ref_f32_vs_mdtraj_default']:.2f}x "
          f"(goal >= 2x) (float32; vs precentered MDTraj: {g['one_ref_f32_vs_mdtraj_precentered']:.2f}x)")
    goal = " (goal >= 1e7)" if pairwise_goal else ""
    print(f"[{title}] xstructure pairwise: {g['pairwise_f32_pairs_per_s']:.3g} pairs/s{goal} (float32; float64: "
          f"{g['pairwise_f64_pairs_per_s']:.3g} pairs/s)")
    return g


def run_benchmark(quick: bool) -> dict:
    B18, B200 = (10**5, 10**3) if quick else (10**6, 10**4)
    n_loop = 200 if quick else 2000
    result = {"B_18": B18, "B_200": B200, "n_mdtraj_loop": n_loop}

    special = special_cases()
    result["special_cases"] = special

    # -- workload 1: 18 atoms ---------------------------------------------------------------------------------------
    rng = np.random.default_rng(0)
    ref = xstructure.molecule("NMM").positions.astype(np.float64)
    a, b = frames(ref, B18, SIGMA_18, rng), frames(ref, B18, SIGMA_18, rng)
    notes18 = []
    rows18, checks18, cpu32 = bench_workload("NMM", ref, a, b, n_loop, notes18)
    bench_gpu(ref.astype(np.float32), a.astype(np.float32), b.astype(np.float32), cpu32, rows18, notes18)
    del a, b, cpu32

    # -- workload 2: 200 atoms --------------------------------------------------------------------------------------
    rng = np.random.default_rng(0)
    base = rng.uniform(0.0, BOX_200, (200, 3))
    a, b = frames(base, B200, SIGMA_200, rng), frames(base, B200, SIGMA_200, rng)
    notes200 = []
    rows200, checks200, _ = bench_workload("200 atoms", base, a, b, n_loop, notes200)
    del a, b

    # -- report -------------------------------------------------------------------------------------------------------
    print("\nspecial cases (RMSD in Å; errors vs numpy float64 SVD, f32 and MDTraj vs the reference on float32 "
          "coordinates; xstructure asserted < 1e-6):")
    print(f"{'case':<46}{'N':>3}{'reference':>13}{'xs f64 err':>12}{'xs f32 err':>12}{'MDTraj':>13}{'MDTraj err':>12}")
    for r in special:
        md_s = (f"{r['mdtraj']:>13.4e}{r['mdtraj_err']:>12.2e}" if r["mdtraj"] is not None
                else f"  failed: {r['mdtraj_error']}")
        print(f"{r['case']:<46}{r['N']:>3}{r['reference_rmsd']:>13.4e}{r['xstructure_f64_err']:>12.2e}"
              f"{r['xstructure_f32_err']:>12.2e}" + md_s)

    t18 = f"NMM, 18 atoms, sigma={SIGMA_18} A, {B18:,} pairs"
    t200 = f"200 atoms (uniform in {BOX_200:g} A box), sigma={SIGMA_200} A, {B200:,} pairs"
    result["nmm_18"] = {"checks": checks18, "notes": notes18, **report(t18, rows18, checks18, notes18)}
    result["atoms_200"] = {"checks": checks200, "notes": notes200, **report(t200, rows200, checks200, notes200)}
    print()
    result["nmm_18"]["goals"] = goal_lines("18 atoms", rows18, True)
    result["atoms_200"]["goals"] = goal_lines("200 atoms", rows200, False)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, to check that the script works")
    ap.add_argument("--json", metavar="PATH", help="write all numbers and the machine info to PATH")
    args = ap.parse_args()

    info = machine_info(peers=('mdtraj',))
    print(f"CPU: {info['cpu_model']}, os.cpu_count()={info['cpu_count']}, affinity={info['cpu_affinity']}")
    print(f"xstructure {info['xstructure']} build_info: {info['build_info']}")
    print(f"numpy {info['numpy']}, torch {info.get('torch')} ({info.get('torch_threads')} threads), "
          f"mdtraj {info['mdtraj']}, env threads {info['env_threads']}")
    result = {"machine": info, "quick": args.quick}
    result.update(run_benchmark(args.quick))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
