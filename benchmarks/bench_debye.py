"""Throughput of Debye scattering patterns: xstructure vs numpy vs DebyeCalculator (vs GPU).

What is measured
    Patterns per second for X-ray I_total(q) = Σ_i f_i² + Σ_{i≠j} f_i f_j sin(q r_ij)/(q r_ij) of B geometries
    of N-methylmorpholine (18 atoms; ``xstructure.molecule("NMM")`` plus Gaussian displacements, σ = 0.05 Å,
    ``np.random.default_rng(0)``) at q = linspace(0.5, 12, 500) Å⁻¹:

    * xstructure CPU, float64 and float32 positions (numpy in, numpy out), all OpenMP threads, and float64 on 1 thread;
    * numpy float64 reference: i<j distances from np.triu_indices, sin(qr)/qr on a (b, P, Q) array (chunks of
      100 geometries, preallocated buffers, in-place ufuncs), contracted with f_i f_j by einsum;
    * DebyeCalculator 1.1.1 (float32, biso=0, CPU), one ``.iq`` call per geometry on a subset of geometries,
      with pair_sum='grid' (default) and 'direct', and once with the whole subset passed as a list;
    * xstructure CUDA with torch float32 tensors at B = 1e5 and 1e6 (if a CUDA device and build are present).

How
    Agreement is asserted before any timing (xstructure float64 vs numpy < 1e-10 and float32 < 1e-5 in
    max|ΔI|/max|I|; DebyeCalculator, whose I(q) is Σ_{i<j} f_i f_j sinc + Σ_i f_i²/2 = I_total/2, < 1e-4 after
    that factor 2; its q = arange(qmin, qmax, qstep) in float32 matches ours with qmax = 12 + dq/2). Each method is
    warmed up once, then timed with time.perf_counter: median of 3 runs for xstructure (CPU and GPU), 1 run for
    numpy (all B geometries) and DebyeCalculator (first 200 geometries; 20 with --quick).

    ``--memory`` runs a separate check in a fresh subprocess: B = 1e6 float32 geometries (1e5 with --quick), Q = 500;
    the peak-RSS growth across ``simulate`` minus its float32 output (2.0 GB at 1e6) must stay below 256 MB, both
    by getrusage ru_maxrss and by the process's own high-water mark VmHWM (reset just before the call).

Usage
    python benchmarks/bench_debye.py [--quick] [--json out.json]
    python benchmarks/bench_debye.py --memory [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

import numpy as np

import xstructure
from _common import gpu_skip_reason, machine_info, timeit

Q = np.linspace(0.5, 12.0, 500)
SIGMA = 0.05
MB = 1 << 20


def geometries(B: int, dtype=np.float64, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(Z, positions (B, 18, 3), symbols): equilibrium NMM plus N(0, SIGMA²) displacements (no float64 temporary)."""
    at = xstructure.molecule("NMM")
    pos = np.random.default_rng(seed).standard_normal((B, len(at), 3), dtype=dtype)
    pos *= SIGMA
    pos += at.positions.astype(dtype)
    return at.numbers, pos, at.get_chemical_symbols()


def rel_err(a, b) -> float:
    """max|a - b| / max|b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def numpy_debye(Z, pos: np.ndarray, q: np.ndarray, chunk: int = 100) -> np.ndarray:
    """Vectorised numpy I_total, float64: I_at + 2 Σ_{i<j} f_i f_j sin(q r)/(q r), chunked over geometries."""
    f = np.stack([xstructure.xray_form_factor(int(z), q) for z in Z])   # (N, Q)
    i, j = np.triu_indices(len(Z), 1)
    F2 = 2.0 * f[i] * f[j]                                               # (P, Q)
    i_at = np.sum(f * f, axis=0)
    out = np.empty((pos.shape[0], q.size))
    qr = np.empty((chunk, i.size, q.size))
    sinc = np.empty_like(qr)
    for s in range(0, pos.shape[0], chunk):
        p = np.asarray(pos[s:s + chunk], np.float64)
        b = p.shape[0]
        r = np.linalg.norm(p[:, i] - p[:, j], axis=-1)                   # (b, P)
        x = np.multiply(r[:, :, None], q, out=qr[:b])
        y = np.sin(x, out=sinc[:b])
        np.divide(y, x, out=y)
        np.einsum("bpq,pq->bq", y, F2, out=out[s:s + b])
        out[s:s + b] += i_at
    return out


def bench_debyecalculator(symbols, pos, I_ref, n_dc: int, rows: dict, checks: dict, notes: list) -> None:
    """Check DebyeCalculator against I_ref/2 (q grid and values), then time it on the first n_dc geometries."""
    try:
        from debyecalculator import DebyeCalculator
    except ImportError as e:
        notes.append(f"DebyeCalculator skipped: {e}")
        return
    dq = Q[1] - Q[0]
    # Its grid is torch.arange(qmin, qmax, qstep): qmax half a step past 12 gives exactly our 500 points.
    kw = dict(qmin=float(Q[0]), qmax=float(Q[-1] + dq / 2), qstep=float(dq), biso=0.0, device="cpu",
              radiation_type="xray")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # "CUDA available but CPU requested"
        calcs = {m: DebyeCalculator(**kw, pair_sum=m) for m in ("grid", "direct")}
    q_dc, _ = calcs["grid"].iq((symbols, pos[0]))
    assert q_dc.shape == Q.shape, f"DebyeCalculator q grid has {q_dc.size} points, ours {Q.size}"
    I_dc = np.stack([calcs["grid"].iq((symbols, p))[1] for p in pos[:5]])
    scale = float(np.sum(I_dc * I_ref[:5]) / np.sum(I_ref[:5] ** 2))   # least-squares I_dc ≈ scale · I_total
    dev = rel_err(2.0 * I_dc, I_ref[:5])
    checks["debyecalculator"] = {"q_max_abs_diff": float(np.max(np.abs(q_dc - Q))), "fitted_scale": scale,
                                 "rel_err_2I_dc_vs_I_total": dev, "dtype": str(I_dc.dtype)}
    assert dev < 1e-4, f"DebyeCalculator: 2*I_dc vs I_total rel. error {dev:.2e}"

    sub = [(symbols, p) for p in pos[:n_dc]]
    for mode, calc in calcs.items():
        t = timeit(lambda: [calc.iq(s) for s in sub], repeats=1, warmup=lambda: calc.iq(sub[0]))
        rows[f"DebyeCalculator f32 '{mode}' (loop)"] = (n_dc, 1, t)
    t = timeit(lambda: calcs["grid"].iq(sub), repeats=1, warmup=lambda: calcs["grid"].iq(sub[:2]))
    rows["DebyeCalculator f32 'grid' (list input)"] = (n_dc, 1, t)


def bench_gpu(Z, sizes, rows: dict, notes: list, device: str = "cuda") -> None:
    """xstructure on torch float32 tensors on `device` (CUDA); the output stays on the device."""
    why = gpu_skip_reason(device)
    if why is not None:
        notes.append(f"GPU part skipped: {why}")
        return
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        notes.append(f"GPU: {torch.cuda.get_device_name()}")
    _, pos_np, _ = geometries(64, np.float32)
    ref = xstructure.simulate((Z, pos_np), Q)
    got = xstructure.simulate((Z, torch.from_numpy(pos_np).to(device)), Q)
    assert got.device.type == device and got.dtype == torch.float32, (got.device, got.dtype)
    assert rel_err(got.cpu().numpy(), ref) < 1e-5, f"{device} vs CPU float32: {rel_err(got.cpu().numpy(), ref):.2e}"
    g = torch.Generator(device=device).manual_seed(0)
    eq = torch.as_tensor(xstructure.molecule("NMM").positions, dtype=torch.float32, device=device)
    for B in sizes:
        pos = eq + SIGMA * torch.randn((B, len(Z), 3), generator=g, device=device)

        def run():
            sync()
            xstructure.simulate((Z, pos), Q)
            sync()
        rows[f"xstructure {device} f32 torch (B={B:.0e})"] = (B, 3, timeit(run))
        del pos
        if device == "cuda":
            torch.cuda.empty_cache()


def _proc_status_kib(key: str) -> int:
    return int(next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith(key + ":")))


def memory_child(B: int) -> None:
    """In a fresh process: peak-RSS growth of simulate() on B float32 geometries; prints one JSON line.

    ru_maxrss survives fork+exec on Linux (the child starts with the parent's peak), so the per-process high-water
    mark VmHWM is also read, after resetting it to the current RSS through /proc/self/clear_refs where allowed.
    """
    Z, pos, _ = geometries(B, np.float32)
    xstructure.simulate((Z, pos[:8]), Q)                 # load tables and the extension before measuring
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")                               # reset VmHWM to the current RSS
        hwm_reset = True
    except OSError:
        hwm_reset = False
    rss0, hwm0 = _proc_status_kib("VmRSS") * 1024, _proc_status_kib("VmHWM") * 1024
    peak0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    out = xstructure.simulate((Z, pos), Q)
    dt = time.perf_counter() - t0
    peak1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    hwm1 = _proc_status_kib("VmHWM") * 1024
    print(json.dumps({"B": B, "Q": Q.size, "out_dtype": str(out.dtype), "out_bytes": out.nbytes,
                      "input_bytes": pos.nbytes, "rss_before": rss0, "hwm_before": hwm0, "hwm_after": hwm1,
                      "hwm_reset": hwm_reset, "maxrss_before": peak0, "maxrss_after": peak1,
                      "seconds": dt, "patterns_per_s": B / dt}))


def memory_check(quick: bool) -> dict:
    B = 10**5 if quick else 10**6
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", str(B)],
                          capture_output=True, text=True, check=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["maxrss_growth_minus_output"] = r["maxrss_after"] - r["maxrss_before"] - r["out_bytes"]
    # Asserted: the process's own peak during the call relative to its resident size just before it.
    r["hwm_growth_minus_output"] = r["hwm_after"] - r["rss_before"] - r["out_bytes"]
    print(f"memory check (fresh subprocess): B={B:,} float32 geometries, Q={r['Q']}, "
          f"input {r['input_bytes'] / MB:.0f} MiB, output {r['out_dtype']} {r['out_bytes'] / MB:.0f} MiB")
    print(f"  ru_maxrss before {r['maxrss_before'] / MB:.0f} MiB, after {r['maxrss_after'] / MB:.0f} MiB: "
          f"growth - output = {r['maxrss_growth_minus_output'] / MB:.1f} MiB")
    print(f"  VmRSS before {r['rss_before'] / MB:.0f} MiB, VmHWM before {r['hwm_before'] / MB:.0f} MiB "
          f"(reset: {r['hwm_reset']}), after {r['hwm_after'] / MB:.0f} MiB: "
          f"growth - output = {r['hwm_growth_minus_output'] / MB:.1f} MiB (limit 256 MB)")
    print(f"  {r['patterns_per_s']:,.0f} patterns/s ({r['seconds']:.2f} s)")
    assert r["hwm_growth_minus_output"] < 256e6, "memory beyond the output exceeds 256 MB"
    assert r["maxrss_growth_minus_output"] < 256e6, "memory beyond the output exceeds 256 MB (ru_maxrss)"
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, to check that the script works")
    ap.add_argument("--json", metavar="PATH", help="write all numbers and the machine info to PATH")
    ap.add_argument("--memory", action="store_true", help="run only the peak-memory check (in a subprocess)")
    ap.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child)

    memory = memory_check(args.quick) if args.memory else None   # first: the child inherits our peak RSS
    info = machine_info(peers=('debyecalculator',))
    print(f"CPU: {info['cpu_model']}, os.cpu_count()={info['cpu_count']}, affinity={info['cpu_affinity']}")
    print(f"xstructure {info['xstructure']} build_info: {info['build_info']}")
    print(f"numpy {info['numpy']}, torch {info.get('torch')} ({info.get('torch_threads')} threads), "
          f"debyecalculator {info['debyecalculator']}, env threads {info['env_threads']}")
    result = {"machine": info, "quick": args.quick}
    if memory is not None:
        result["memory"] = memory
    else:
        result.update(run_benchmark(args.quick))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
        print(f"wrote {args.json}")


def run_benchmark(quick: bool) -> dict:
    B, n_dc = (1000, 20) if quick else (10_000, 200)
    gpu_sizes = (10**4, 10**5) if quick else (10**5, 10**6)
    Z, pos, symbols = geometries(B)
    pos32 = pos.astype(np.float32)
    rows, checks, notes = {}, {}, []

    # -- agreement before timing --------------------------------------------------------------------------------------
    n = 50
    I_np = numpy_debye(Z, pos[:n], Q)
    I64 = xstructure.simulate((Z, pos[:n]), Q, probe="xray", signal="total")
    I32 = xstructure.simulate((Z, pos32[:n]), Q, probe="xray", signal="total")
    I_np32 = numpy_debye(Z, pos32[:n].astype(np.float64), Q)   # same (float32-rounded) coordinates
    checks["xstructure_f64_vs_numpy"] = rel_err(I64, I_np)
    checks["xstructure_f32_vs_numpy_same_coords"] = rel_err(I32, I_np32)
    checks["xstructure_f32_vs_numpy_f64_coords"] = rel_err(I32, I_np)
    assert I64.dtype == np.float64 and I32.dtype == np.float32
    assert checks["xstructure_f64_vs_numpy"] < 1e-10, checks
    assert checks["xstructure_f32_vs_numpy_same_coords"] < 1e-5, checks
    assert checks["xstructure_f32_vs_numpy_f64_coords"] < 1e-5, checks

    # -- timing -------------------------------------------------------------------------------------------------------
    sim = xstructure.simulate
    rows["xstructure CPU f64"] = (B, 3, timeit(lambda: sim((Z, pos), Q, probe="xray", signal="total")))
    rows["xstructure CPU f32"] = (B, 3, timeit(lambda: sim((Z, pos32), Q, probe="xray", signal="total")))
    rows["xstructure CPU f64, 1 thread"] = (B, 3, timeit(lambda: sim((Z, pos), Q, num_threads=1)))
    rows["numpy f64 reference"] = (B, 1, timeit(lambda: numpy_debye(Z, pos, Q), repeats=1,
                                                warmup=lambda: numpy_debye(Z, pos[:100], Q)))
    bench_debyecalculator(symbols, pos, I_np, n_dc, rows, checks, notes)
    bench_gpu(Z, gpu_sizes, rows, notes)

    # -- report -------------------------------------------------------------------------------------------------------
    rate = {k: b / t for k, (b, _, t) in rows.items()}
    dc_key = "DebyeCalculator f32 'grid' (loop)"
    print(f"\nX-ray I_total, NMM (18 atoms), Q={Q.size} (linspace 0.5..12 1/A), sigma={SIGMA} A")
    print("checks (max|dI|/max|I|, before timing):")
    for k, v in checks.items():
        print(f"  {k}: " + (", ".join(f"{a}={b:.3g}" if isinstance(b, float) else f"{a}={b}" for a, b in v.items())
                            if isinstance(v, dict) else f"{v:.2e}"))
    print(f"\n{'method':<42}{'geometries':>11}{'reps':>5}{'median s':>10}{'patterns/s':>13}"
          f"{'x numpy':>9}{'x DC':>9}")
    for k, (b, reps, t) in rows.items():
        vs_dc = f"{rate[k] / rate[dc_key]:9.1f}" if dc_key in rate else f"{'-':>9}"
        print(f"{k:<42}{b:>11,}{reps:>5}{t:>10.3f}{rate[k]:>13,.0f}{rate[k] / rate['numpy f64 reference']:>9.1f}"
              + vs_dc)
    for note in notes:
        print(note)
    if dc_key in rate:
        print(f"DebyeCalculator is timed on the first {n_dc} geometries only; its I(q) = I_total/2 "
              f"(fitted scale {checks['debyecalculator']['fitted_scale']:.6f}); for 18 atoms (153 pairs) "
              "'grid' falls back to the direct sum.")
    speedups = {f"{a} vs {b}": rate[a] / rate[b] for a in ("xstructure CPU f64", "xstructure CPU f32")
                for b in ("numpy f64 reference", dc_key) if b in rate}
    return {"B": B, "Q": Q.size, "n_debyecalculator": n_dc, "checks": checks, "notes": notes,
            "timings": {k: {"geometries": b, "repeats": r, "median_s": t, "patterns_per_s": rate[k]}
                        for k, (b, r, t) in rows.items()}, "speedups": speedups}


if __name__ == "__main__":
    main()
