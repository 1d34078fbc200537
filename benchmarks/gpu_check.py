"""GPU check: every CUDA path of xstructure against its CPU path, a memcheck run, and GPU vs CPU timings.

What it does, on a machine with a CUDA device and a CUDA build of xstructure:

1. Runs each public entry point that can launch a CUDA kernel on CUDA arrays and on the same data on the CPU,
   and compares values (and, for the torch ops, gradients):
     xstructure.simulate            torch CUDA tensors (float64, float32) and cupy arrays (if cupy is installed)
     xstructure.ops.debye           values and gradients, uniform and irregular q
     xstructure.ops.kabsch_rmsd     values and gradients, one reference and pairwise, weights, reflection
     xstructure.rmsd                with return_transform (R, t) and align=False
     xstructure.Integrator          torch CUDA frames, every error model, shared- and global-memory histograms
     xstructure.ops.density_grid    values and gradients
   xstructure.crystal.structure_factors has no CUDA kernel (its inputs are built on the host): not checked.
2. Times GPU against CPU for a few sizes: medians of synchronised runs, after a warm-up run.
3. Runs a small version of itself under ``compute-sanitizer --tool memcheck`` when the tool is installed
   (torch's caching allocator off, so out-of-bounds accesses hit unallocated memory); prints a note otherwise.

Prints one table (check, size, max abs and rel error, tolerance, pass/fail, CPU and GPU milliseconds) and,
with ``--json PATH``, writes every number.  Exit status 1 when any check fails, 3 when checks could not run
(torch without CUDA on a GPU machine), 0 otherwise; with no CUDA build or no device it prints one line
saying so ("no CUDA device") and exits 0.

Usage
    python benchmarks/gpu_check.py [--json out.json] [--small] [--no-timing] [--no-sanitizer]
    python benchmarks/gpu_check.py --dry-run      # CPU stands in for the GPU: checks this script, not a GPU

Only public names of xstructure are used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

import xstructure

ROWS: list[dict] = []
SKIPPED: list[str] = []


# --- helpers ------------------------------------------------------------------------------------------------

def molecule(n: int, seed: int):
    """(numbers (n,), positions (n, 3)): random atoms (H, C, N, O, S) at least 1.1 Å apart, a few Å across."""
    rng = np.random.default_rng(seed)
    numbers = rng.choice([1, 6, 7, 8, 16], size=n, p=[0.4, 0.3, 0.1, 0.15, 0.05])
    box = 1.6 * n ** (1 / 3) + 1.0
    pos = []
    while len(pos) < n:
        x = rng.uniform(0, box, 3)
        if all(np.linalg.norm(x - y) >= 1.1 for y in pos):
            pos.append(x)
    return numbers, np.array(pos)


def frames_of(pos: np.ndarray, B: int, sigma: float, seed: int) -> np.ndarray:
    return pos[None] + sigma * np.random.default_rng(seed).standard_normal((B, *pos.shape))


class Dev:
    """The device under test ('cuda', or 'cpu' in a dry run) and how to wait for it."""

    def __init__(self, name: str):
        self.name = name

    def sync(self):
        if self.name == "cuda":
            import torch

            torch.cuda.synchronize()


def timed(fn, dev: Dev | None, reps: int):
    """(result of a first call, median milliseconds of `reps` further synchronised calls; None when reps = 0)."""
    out = fn()
    if dev:
        dev.sync()
    if reps <= 0:
        return out, None
    times = []
    for _ in range(reps):
        if dev:
            dev.sync()
        t0 = time.perf_counter()
        fn()
        if dev:
            dev.sync()
        times.append(time.perf_counter() - t0)
    return out, 1e3 * statistics.median(times)


def host(x) -> np.ndarray:
    """Any array (torch on any device, cupy, numpy) as a float64 numpy array."""
    mod = type(x).__module__
    if mod.startswith("torch"):
        x = x.detach().cpu().numpy()
    elif mod.startswith("cupy"):
        x = x.get()
    return np.asarray(x, dtype=np.float64)


def record(check: str, size: str, got, ref, tol: float, metric: str = "rel", t_cpu=None, t_gpu=None):
    """Compare got (device) with ref (CPU) and add a table row.  metric 'rel': max|got - ref| / max|ref|;
    'abs': max|got - ref| (in the quantity's units); 'elem': max over elements of |got - ref| / |ref|."""
    g, r = host(got), host(ref)
    ok_shape = g.shape == r.shape
    if ok_shape and g.size:
        both_nan = np.isnan(g) & np.isnan(r)
        d = np.where(both_nan, 0.0, np.abs(g - r))
        err_abs = float(np.nanmax(np.where(np.isnan(d), np.inf, d)))
        scale = float(np.nanmax(np.abs(np.where(both_nan, 0.0, r)))) or 1.0
        err_rel = err_abs / scale
        if metric == "elem":
            with np.errstate(divide="ignore", invalid="ignore"):
                e = np.where(d == 0, 0.0, d / np.abs(r))
            err_rel = float(np.max(np.where(np.isnan(e), np.inf, e)))
    else:
        err_abs = err_rel = 0.0 if ok_shape else float("inf")
    err = err_abs if metric == "abs" else err_rel
    ROWS.append({"check": check, "size": size, "max_abs_err": err_abs, "max_rel_err": err_rel, "metric": metric,
                 "tol": tol, "passed": bool(err <= tol), "cpu_ms": t_cpu, "gpu_ms": t_gpu,
                 "speedup": (t_cpu / t_gpu) if (t_cpu and t_gpu) else None})


# --- the checks ---------------------------------------------------------------------------------------------

Q_UNIFORM = np.linspace(0.5, 12.0, 500)
Q_IRREGULAR = np.sort(np.random.default_rng(3).uniform(0.0, 12.0, 77))


def check_simulate(dev: Dev, sizes, reps: int):
    import torch

    numbers, pos = molecule(18, 0)
    for B in sizes:
        for dtype, tol in (("float64", 1e-10), ("float32", 2e-5)):
            x = frames_of(pos, B, 0.05, 1).astype(dtype)
            ref, t_cpu = timed(lambda: xstructure.simulate((numbers, x), Q_UNIFORM), None, reps)
            xd = torch.as_tensor(x, device=dev.name)
            got, t_gpu = timed(lambda: xstructure.simulate((numbers, xd), Q_UNIFORM), dev, reps)
            record(f"simulate torch {dtype}", f"B={B} N=18 Q=500", got, ref, tol, t_cpu=t_cpu, t_gpu=t_gpu)


def check_simulate_cupy(dev: Dev):
    if dev.name != "cuda":
        SKIPPED.append("simulate cupy: dry run (cupy arrays live on a GPU)")
        return
    try:
        import cupy
    except ImportError:
        SKIPPED.append("simulate cupy: cupy is not installed")
        return
    numbers, pos = molecule(14, 2)
    x = frames_of(pos, 64, 0.1, 3)
    ref = xstructure.simulate((numbers, x), Q_IRREGULAR, probe="electron", signal="sM")
    got = xstructure.simulate((numbers, cupy.asarray(x)), Q_IRREGULAR, probe="electron", signal="sM")
    record("simulate cupy float64", "B=64 N=14 irregular q", got, ref, 1e-10)


def check_debye_op(dev: Dev, sizes, reps: int):
    import torch

    for n, q, qname in ((18, Q_IRREGULAR, "irregular q"), (18, Q_UNIFORM, "Q=500"), (70, Q_UNIFORM, "Q=500")):
        numbers, pos = molecule(n, 4 + n)
        B = 16 if n == 18 else 1
        for dtype, tol, gtol in (("float64", 1e-10, 1e-9), ("float32", 2e-5, 5e-4)):
            dt = getattr(torch, dtype)
            x = frames_of(pos, B, 0.1, 5)
            w = np.random.default_rng(6).standard_normal((B, q.size))
            res = {}
            for d in ("cpu", dev.name):
                p = torch.tensor(x, dtype=dt, device=d, requires_grad=True)
                I = xstructure.ops.debye(numbers, p, q, signal="molecular")
                (I * torch.tensor(w, dtype=dt, device=d)).sum().backward()
                res[d] = (I.detach(), p.grad)
            size = f"B={B} N={n} {qname}"
            record(f"ops.debye {dtype}", size, res[dev.name][0], res["cpu"][0], tol)
            record(f"ops.debye {dtype} gradient", size, res[dev.name][1], res["cpu"][1], gtol)
    # timings: forward + backward, float32
    numbers, pos = molecule(18, 7)
    for B in sizes:
        x = frames_of(pos, B, 0.05, 8)
        res, ms = {}, {}
        for d in ("cpu", dev.name):
            p = torch.tensor(x, dtype=torch.float32, device=d, requires_grad=True)

            def step():
                p.grad = None
                I = xstructure.ops.debye(numbers, p, Q_UNIFORM)
                I.sum().backward()
                return I.detach(), p.grad

            res[d], ms[d] = timed(step, dev if d != "cpu" else None, reps)
        record("ops.debye float32 fwd+bwd", f"B={B} N=18 Q=500", res[dev.name][1], res["cpu"][1], 5e-4,
               t_cpu=ms["cpu"], t_gpu=ms[dev.name])


def check_kabsch_op(dev: Dev, sizes, reps: int):
    import torch

    numbers, pos = molecule(18, 9)
    masses = np.where(numbers == 1, 1.008, 2.0 * numbers)
    for dtype, tol, gtol in (("float64", 1e-10, 1e-9), ("float32", 1e-5, 1e-3)):
        dt = getattr(torch, dtype)
        for layout in ("one-ref", "pairwise"):
            for weights, reflection in ((None, False), (masses, True)):
                fr = frames_of(pos, 64, 0.3, 10)
                ref_frames = pos if layout == "one-ref" else frames_of(pos, 64, 0.3, 11)
                res = {}
                for d in ("cpu", dev.name):
                    a = torch.tensor(ref_frames, dtype=dt, device=d, requires_grad=True)
                    b = torch.tensor(fr, dtype=dt, device=d, requires_grad=True)
                    r = xstructure.ops.kabsch_rmsd(a, b, weights=weights, reflection=reflection)
                    r.sum().backward()
                    res[d] = (r.detach(), a.grad, b.grad)
                name = f"ops.kabsch_rmsd {dtype} {layout}" + (" weights+reflection" if weights is not None else "")
                record(name, "B=64 N=18", res[dev.name][0], res["cpu"][0], tol, metric="abs")
                record(name + " gradient", "B=64 N=18", res[dev.name][2], res["cpu"][2], gtol)
    # timings: float32 pairwise, RMSD only
    for B in sizes:
        a, b = frames_of(pos, B, 0.3, 12).astype(np.float32), frames_of(pos, B, 0.3, 13).astype(np.float32)
        ta, tb = torch.as_tensor(a), torch.as_tensor(b)
        da, db = torch.as_tensor(a, device=dev.name), torch.as_tensor(b, device=dev.name)
        ref, t_cpu = timed(lambda: xstructure.ops.kabsch_rmsd(ta, tb), None, reps)
        got, t_gpu = timed(lambda: xstructure.ops.kabsch_rmsd(da, db), dev, reps)
        record("ops.kabsch_rmsd float32 pairwise", f"B={B} N=18", got, ref, 1e-5, metric="abs", t_cpu=t_cpu,
               t_gpu=t_gpu)


def check_rmsd(dev: Dev):
    import torch

    numbers, pos = molecule(24, 14)
    fr = frames_of(pos, 50, 0.2, 15)
    r, R, t = xstructure.rmsd(pos, fr, return_transform=True)
    rd, Rd, td = xstructure.rmsd(torch.as_tensor(pos, device=dev.name), torch.as_tensor(fr, device=dev.name),
                                 return_transform=True)
    record("rmsd float64 (return_transform)", "B=50 N=24", rd, r, 1e-10, metric="abs")
    record("rmsd float64 rotation R", "B=50 N=24", Rd, R, 1e-9, metric="abs")
    record("rmsd float64 translation t", "B=50 N=24", td, t, 1e-9, metric="abs")
    plain = xstructure.rmsd(fr[:-1], fr[1:], align=False)
    plain_d = xstructure.rmsd(torch.as_tensor(fr[:-1], device=dev.name), torch.as_tensor(fr[1:], device=dev.name),
                              align=False)
    record("rmsd float64 align=False", "B=49 N=24", plain_d, plain, 1e-12, metric="elem")


def check_integrator(dev: Dev, sizes, reps: int):
    import torch

    rng = np.random.default_rng(16)
    g = xstructure.Geometry.simple((256, 300), pixel=100e-6, dist=0.05, energy_kev=12.0)
    for dtype in ("uint16", "float32"):
        frames = rng.poisson(40.0, (3, 256, 300)).astype(dtype)
        frames[:, ::31, ::17] = 0
        if dtype == "float32":
            frames[0, 5, 7] = np.nan
        for error_model in ("poisson", "azimuthal", None):
            for npt in (300, 20000):
                it = xstructure.Integrator(g, npt, polarization=0.99, error_model=error_model)
                ref = it.integrate(frames)
                got = it.integrate(torch.as_tensor(frames, device=dev.name))
                name = f"Integrator {dtype} error_model={error_model}"
                size = f"3x256x300 npt={npt}"
                record(name + " intensity", size, got.intensity, ref.intensity, 1e-5, metric="elem")
                record(name + " count", size, got.count, ref.count, 0.0, metric="abs")
                if error_model is not None:
                    record(name + " sigma", size, got.sigma, ref.sigma, 1e-5, metric="elem")
    # timings: stacks of 8 float32 frames
    for n in sizes:
        gn = xstructure.Geometry.simple((n, n), pixel=75e-6, dist=0.1, energy_kev=12.0)
        it = xstructure.Integrator(gn, 1000, polarization=0.99, error_model="poisson")
        frames = rng.poisson(50.0, (8, n, n)).astype(np.float32)
        fd = torch.as_tensor(frames, device=dev.name)
        ref, t_cpu = timed(lambda: it.integrate(frames), None, reps)
        got, t_gpu = timed(lambda: it.integrate(fd), dev, reps)
        record("Integrator float32 poisson", f"8x{n}x{n} npt=1000", got.intensity, ref.intensity, 1e-5,
               metric="elem", t_cpu=t_cpu, t_gpu=t_gpu)


def check_density_op(dev: Dev, sizes, reps: int):
    import torch

    rng = np.random.default_rng(17)
    cell = np.array([[9.0, 0.0, 0.0], [1.5, 8.5, 0.0], [-0.8, 0.6, 10.0]])
    numbers = rng.choice([1, 6, 8, 11, 17], size=24)
    for dtype, tol, gtol in (("float64", 1e-10, 1e-9), ("float32", 1e-5, 1e-4)):
        dt = getattr(torch, dtype)
        for frame in ("fractional", "cartesian"):
            x = rng.uniform(0, 1, (4, 24, 3)) @ cell
            w = rng.standard_normal((4, 16, 17, 18))
            res = {}
            for d in ("cpu", dev.name):
                p = torch.tensor(x, dtype=dt, device=d, requires_grad=True)
                rho = xstructure.ops.density_grid(p, cell, numbers=numbers, shape=(16, 17, 18), sigma=0.6, frame=frame)
                (rho * torch.tensor(w, dtype=dt, device=d)).sum().backward()
                res[d] = (rho.detach(), p.grad)
            size = f"B=4 N=24 16x17x18 {frame}"
            record(f"ops.density_grid {dtype}", size, res[dev.name][0], res["cpu"][0], tol)
            record(f"ops.density_grid {dtype} gradient", size, res[dev.name][1], res["cpu"][1], gtol)
    # timings: float32 forward on a 48^3 grid
    for B in sizes:
        x = rng.uniform(0, 1, (B, 64, 3)) @ cell
        nums = rng.choice([1, 6, 8], size=64)
        xc, xd = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(x, dtype=torch.float32, device=dev.name)
        f = lambda p: xstructure.ops.density_grid(p, cell, numbers=nums, shape=(48, 48, 48), sigma=0.6)  # noqa: E731
        ref, t_cpu = timed(lambda: f(xc), None, reps)
        got, t_gpu = timed(lambda: f(xd), dev, reps)
        record("ops.density_grid float32", f"B={B} N=64 48^3", got, ref, 1e-5, t_cpu=t_cpu, t_gpu=t_gpu)


def guarded(fn, *args):
    """Run one group of checks; an exception becomes a failed row (with its message) instead of ending the run."""
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - reported, and counted as a failure
        ROWS.append({"check": fn.__name__, "size": "", "max_abs_err": float("nan"), "max_rel_err": float("nan"),
                     "metric": "abs", "tol": 0.0, "passed": False, "cpu_ms": None, "gpu_ms": None, "speedup": None,
                     "error": f"{type(e).__name__}: {e}"})


# --- compute-sanitizer --------------------------------------------------------------------------------------

def run_sanitizer(timeout: float) -> dict:
    tool = shutil.which("compute-sanitizer")
    for guess in ("/usr/local/cuda/bin/compute-sanitizer", "/opt/cuda/bin/compute-sanitizer"):
        if tool is None and os.path.exists(guess):
            tool = guess
    if tool is None:
        print("note: compute-sanitizer is not installed (not on PATH or in /usr/local/cuda/bin): memcheck skipped")
        return {"ran": False, "reason": "compute-sanitizer not found"}
    cmd = [tool, "--tool", "memcheck", "--error-exitcode", "99", sys.executable, os.path.abspath(__file__),
           "--small", "--no-timing", "--no-sanitizer"]
    env = dict(os.environ, PYTORCH_NO_CUDA_MEMORY_CACHING="1")
    print(f"running memcheck on a small run (up to {timeout:.0f} s): {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"ran": True, "passed": False, "reason": f"timed out after {timeout:.0f} s"}
    tail = (p.stdout + p.stderr)[-4000:]
    summary = next((ln.strip() for ln in reversed(tail.splitlines()) if "ERROR SUMMARY" in ln), "")
    reason = {0: "no memcheck errors, all checks passed", 99: "memcheck reported errors"}.get(
        p.returncode, f"the small run exited with status {p.returncode}")
    return {"ran": True, "passed": p.returncode == 0, "returncode": p.returncode, "summary": summary,
            "reason": reason, "seconds": time.perf_counter() - t0, "output_tail": tail}


# --- main ---------------------------------------------------------------------------------------------------

def print_table(rows: list[dict]):
    def f(x, spec):
        return "-" if x is None else format(x, spec)

    head = (f"{'check':<60} {'size':<30} {'max abs err':>11} {'max rel err':>11} {'tol':>8} {'':>4} "
            f"{'CPU ms':>9} {'GPU ms':>9} {'x':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        tol = f"{r['tol']:.0e}" + {"abs": " a", "rel": " r", "elem": " e"}[r["metric"]]
        if "error" in r:
            print(f"{r['check']:<60} FAIL: {r['error']}")
            continue
        print(f"{r['check']:<60} {r['size']:<30} {r['max_abs_err']:>11.2e} {r['max_rel_err']:>11.2e} {tol:>8} "
              f"{'ok' if r['passed'] else 'FAIL':>4} {f(r['cpu_ms'], '9.2f'):>9} {f(r['gpu_ms'], '9.2f'):>9} "
              f"{f(r['speedup'], '7.1f'):>7}")
    print("tol: a = max abs error (Å for RMSD, counts for bins), r = max abs error / max |CPU value|, "
          "e = max elementwise relative error")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", metavar="PATH", help="write every number to PATH")
    ap.add_argument("--small", action="store_true", help="small sizes only (what the memcheck run uses)")
    ap.add_argument("--no-timing", action="store_true", help="no repeated timing runs")
    ap.add_argument("--no-sanitizer", action="store_true", help="do not run compute-sanitizer")
    ap.add_argument("--sanitizer-timeout", type=float, default=600.0, help="seconds for the memcheck run")
    ap.add_argument("--reps", type=int, default=5, help="timed runs per measurement (median; default 5)")
    ap.add_argument("--dry-run", action="store_true",
                    help="let the CPU stand in for the GPU: checks this script, not a GPU (no memcheck)")
    args = ap.parse_args()

    info = xstructure.build_info()
    if not args.dry_run:
        if not info["cuda"]:
            print("gpu_check: no CUDA device to check: this xstructure was built without CUDA "
                  "(no nvcc at build time, or XSTRUCTURE_CUDA=OFF); nothing to do.")
            return 0
        if not xstructure.cuda_available():
            print(f"gpu_check: no CUDA device: xstructure was built with CUDA {info['cuda_version']} "
                  f"(sm {info['cuda_architectures']}) but no device is visible; nothing to do.")
            return 0
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None or (not args.dry_run and not torch.cuda.is_available()):
        why = "torch is not installed" if torch is None else f"torch {torch.__version__} has no CUDA"
        print(f"gpu_check: a CUDA device is present but {why}: the torch-based checks cannot run.")
        dev = Dev("cuda")
        guarded(check_simulate_cupy, dev)
        print_table(ROWS)
        for s in SKIPPED:
            print("skipped:", s)
        return 3

    dev = Dev("cpu" if args.dry_run else "cuda")
    reps = 0 if args.no_timing else max(1, args.reps)
    small = args.small
    gpu_name = torch.cuda.get_device_name() if dev.name == "cuda" else "none (dry run: CPU against CPU)"
    print(f"xstructure {xstructure.__version__}, build {info}")
    print(f"torch {torch.__version__}, device: {gpu_name}, python {platform.python_version()}")
    if args.dry_run:
        print("DRY RUN: the CPU stands in for the GPU; errors are 0 and timings compare the CPU with itself.")
    t0 = time.perf_counter()
    guarded(check_simulate, dev, (64,) if small else (10**3, 10**4, 10**5), reps)
    guarded(check_simulate_cupy, dev)
    guarded(check_debye_op, dev, (16,) if small else (10**3, 10**4), reps)
    guarded(check_kabsch_op, dev, (256,) if small else (10**4, 10**5, 10**6), reps)
    guarded(check_rmsd, dev)
    guarded(check_integrator, dev, (128,) if small else (512, 1024, 2048), reps)
    guarded(check_density_op, dev, (1,) if small else (1, 16, 64), reps)
    SKIPPED.append("crystal.structure_factors: CPU only (no CUDA kernel; inputs are built on the host)")
    seconds = time.perf_counter() - t0

    print()
    print_table(ROWS)
    for s in SKIPPED:
        print("not checked:", s)
    failed = [r for r in ROWS if not r["passed"]]

    sanitizer = {"ran": False, "reason": "--no-sanitizer" if args.no_sanitizer else "dry run"}
    if not args.no_sanitizer and not args.dry_run:
        sanitizer = run_sanitizer(args.sanitizer_timeout)
        if sanitizer["ran"]:
            print(f"compute-sanitizer memcheck: {'ok' if sanitizer['passed'] else 'FAIL'} ({sanitizer['reason']}"
                  + (f"; {sanitizer['summary']}" if sanitizer.get("summary") else "") + ")")
    passed = not failed and sanitizer.get("passed", True)
    print(f"{len(ROWS) - len(failed)}/{len(ROWS)} checks passed in {seconds:.1f} s"
          + ("" if passed else "; FAILED: " + ", ".join(sorted({r['check'] for r in failed}) or ["memcheck"])))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"build_info": info, "torch": torch.__version__, "device": gpu_name, "dry_run": args.dry_run,
                       "small": small, "reps": reps, "rows": ROWS, "not_checked": SKIPPED, "sanitizer": sanitizer,
                       "passed": passed}, fh, indent=1)
        print(f"wrote {args.json}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
