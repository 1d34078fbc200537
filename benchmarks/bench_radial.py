"""Frames per second of radial averaging: xstructure vs pyFAI vs numpy bincount vs the memory-bandwidth limit.

What is measured
    For 1024² and 2048² float32 frames (a ring pattern with Poisson noise, ``np.random.default_rng(0)``) on a
    slightly tilted detector (75 µm pixels, 0.1 m, rot1 = 0.02, rot2 = −0.01 rad, 12 keV) and 1000 bins in
    q (Å⁻¹), with solid-angle and polarisation (0.99) corrections and the Poisson error model, side by side:

    * xstructure ``Integrator.integrate`` on stacks of 16 frames (batched) and frame by frame;
    * xstructure with ``error_model=None`` (intensity and counts only), batched;
    * pyFAI ``AzimuthalIntegrator.integrate1d(frame, 1000, method=("no", "histogram", "cython"))`` and
      ``("no", "csr", "cython")``, frame by frame (pyFAI has no stack API), same corrections and error model;
    * numpy ``np.bincount(index, frame.ravel())`` with a precomputed pixel→bin index and the normalisation
      precomputed, i.e. intensity only, what a user would write;
    * the memory-bandwidth limit: frame bytes / copy bandwidth, the copy bandwidth being the best of five
      ``np.copyto`` of 256 MiB arrays (bytes copied per second).

    The frames of each size total 256 MiB (64 of 1024², 16 of 2048²), far beyond the last-level cache, and each
    method walks through all of them in turn so that each frame comes from main memory.  Timed: the calls only
    (the map is built before, once, for every method: pyFAI's on a warm-up call).  Before timing, xstructure is
    checked against pyFAI's CSR engine on the first frame: identical bin centres and pixel counts, intensity
    within 1e-5 relative in bins with ≥ 10 pixels (asserted).

    GPU (when ``xstructure.cuda_available()`` and torch sees a device): 512² float32 frames, stacks of 1000
    device-resident frames (torch CUDA tensors), ``torch.cuda.synchronize()`` around each timed call; and the
    host→device-inclusive rate (a pinned host stack copied and integrated per call).

Usage: ``python benchmarks/bench_radial.py [--quick] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import gpu_skip_reason, machine_info  # noqa: E402

import xstructure  # noqa: E402
from xstructure import Geometry, Integrator  # noqa: E402

NPT = 1000
POL = 0.99


def geometry(n: int) -> Geometry:
    pixel = 75e-6 * 1024 / n  # same detector area for every size
    return Geometry(dist=0.1, poni1=0.5 * n * pixel, poni2=0.5 * n * pixel, rot1=0.02, rot2=-0.01, rot3=0.0,
                    pixel1=pixel, pixel2=pixel, shape=(n, n), energy_kev=12.0)


def frames(g: Geometry, count: int, rng) -> np.ndarray:
    mean = (200 + 150 * np.cos(8 * g.q) ** 2) * g.solid_angle * g.polarization(POL)
    out = np.empty((count, *g.shape), np.float32)
    for k in range(count):
        out[k] = rng.poisson(mean)
    return out


def rate(fn, n_frames: int, min_time: float) -> float:
    """Frames per second of fn(k) over k = 0, 1, ... (fn processes frames it picks from k), ≥ min_time s."""
    fn(0)
    t0 = time.perf_counter()
    done = k = 0
    while True:
        done += fn(k)
        k += 1
        dt = time.perf_counter() - t0
        if dt >= min_time and done >= n_frames:
            return done / dt


def copy_bandwidth() -> float:
    a = np.ones(64 * 2**20, np.float32)
    b = np.empty_like(a)
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        np.copyto(b, a)
        best = max(best, a.nbytes / (time.perf_counter() - t0))
    return best


def pyfai_integrator(g: Geometry):
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    det = Detector(pixel1=g.pixel1, pixel2=g.pixel2, max_shape=g.shape)
    return AzimuthalIntegrator(dist=g.dist, poni1=g.poni1, poni2=g.poni2, rot1=g.rot1, rot2=g.rot2, rot3=g.rot3,
                               detector=det, wavelength=g.wavelength)


def bench_cpu(n: int, quick: bool, bandwidth: float) -> dict:
    g = geometry(n)
    count = max(4, (256 * 2**20) // (4 * n * n) // (4 if quick else 1))
    stack = frames(g, count, np.random.default_rng(0))
    min_time = 1.0 if quick else 3.0
    res: dict = {"shape": [n, n], "frames": count, "frame_bytes": n * n * 4}

    it = Integrator(g, NPT, polarization=POL, error_model="poisson")
    ai = pyfai_integrator(g)
    kw = dict(unit="q_A^-1", correctSolidAngle=True, polarization_factor=POL, error_model="poisson")
    ref = ai.integrate1d(stack[0], NPT, method=("no", "csr", "cython"), **kw)
    ours = it.integrate(stack[0])
    ok = ref.count >= 10
    assert np.allclose(ours.radial, ref.radial, rtol=1e-12, atol=0), "bin centres differ from pyFAI"
    assert np.array_equal(ours.count, ref.count), "pixel counts differ from pyFAI"
    rel = float(np.max(np.abs(ours.intensity[ok] - ref.intensity[ok]) / np.abs(ref.intensity[ok])))
    assert rel < 1e-5, rel
    res["max_rel_diff_vs_pyfai_csr"] = rel

    batch = 16

    def ours_batched(k, integrator=it):
        s = (k * batch) % count
        integrator.integrate(stack[s:s + batch])
        return len(stack[s:s + batch])

    def ours_single(k):
        it.integrate(stack[k % count])
        return 1

    lean = Integrator(g, NPT, polarization=POL, error_model=None)

    def pyfai(method):
        def fn(k):
            ai.integrate1d(stack[k % count], NPT, method=method, **kw)
            return 1
        return fn

    index = it.pixel_bin.ravel().copy()
    used = index >= 0
    index[~used] = NPT
    norm = np.bincount(index, weights=np.where(used, it._weight, 0.0), minlength=NPT + 1)[:NPT]

    def numpy_bincount(k):
        s = np.bincount(index, weights=stack[k % count].ravel(), minlength=NPT + 1)[:NPT]
        with np.errstate(invalid="ignore", divide="ignore"):
            s / norm
        return 1

    methods = {
        "xstructure (stacks of 16)": lambda k: ours_batched(k),
        "xstructure (frame by frame)": ours_single,
        "xstructure (stacks of 16, error_model=None)": lambda k: ours_batched(k, lean),
        "pyFAI (no, histogram, cython)": pyfai(("no", "histogram", "cython")),
        "pyFAI (no, csr, cython)": pyfai(("no", "csr", "cython")),
        "numpy bincount (precomputed index, intensity only)": numpy_bincount,
    }
    rates = {}
    for name, fn in methods.items():
        rates[name] = rate(fn, count, min_time)
        print(f"  {n}²  {name:52s} {rates[name]:10.1f} frames/s", flush=True)
    limit = bandwidth / (n * n * 4)
    best_pyfai = max(rates["pyFAI (no, histogram, cython)"], rates["pyFAI (no, csr, cython)"])
    res["frames_per_s"] = rates
    res["bandwidth_limit_frames_per_s"] = limit
    res["speedup_vs_best_pyfai"] = rates["xstructure (stacks of 16)"] / best_pyfai
    res["speedup_vs_best_pyfai_frame_by_frame"] = rates["xstructure (frame by frame)"] / best_pyfai
    res["fraction_of_bandwidth_limit"] = rates["xstructure (stacks of 16)"] / limit
    print(f"  {n}²  bandwidth limit {limit:.0f} frames/s;  xstructure (stacks) = "
          f"{res['speedup_vs_best_pyfai']:.1f}× best pyFAI, {100 * res['fraction_of_bandwidth_limit']:.0f}% of the "
          f"limit;  frame by frame {res['speedup_vs_best_pyfai_frame_by_frame']:.1f}× best pyFAI", flush=True)
    return res


def bench_gpu(quick: bool) -> dict:
    reason = gpu_skip_reason()
    if reason:
        print(f"GPU: skipped ({reason})")
        return {"skipped": reason}
    import torch

    g = geometry(512)
    count = 1000
    host = torch.from_numpy(frames(g, 64, np.random.default_rng(0))).repeat(count // 64 + 1, 1, 1)[:count]
    dev = host.cuda()
    pinned = host.pin_memory()
    it = Integrator(g, NPT, polarization=POL, error_model="poisson")
    cpu = it.integrate(host[:4].numpy())
    gpu = it.integrate(dev[:4])
    rel = float(np.max(np.abs(gpu.intensity.cpu().numpy() - cpu.intensity)[cpu.count >= 10]
                       / np.abs(cpu.intensity[cpu.count >= 10])))
    assert rel < 1e-5, rel
    out = {"device": torch.cuda.get_device_name(), "shape": [512, 512], "stack": count, "max_rel_diff_vs_cpu": rel}
    for name, em in (("poisson", "poisson"), ("error_model=None", None)):
        integ = Integrator(g, NPT, polarization=POL, error_model=em)

        def resident(k, integ=integ):
            torch.cuda.synchronize()
            integ.integrate(dev)
            torch.cuda.synchronize()
            return count

        def with_copy(k, integ=integ):
            torch.cuda.synchronize()
            integ.integrate(pinned.to("cuda", non_blocking=True))
            torch.cuda.synchronize()
            return count

        out[f"device_resident_{name}"] = rate(resident, 10 * count, 1.0 if quick else 3.0)
        out[f"host_to_device_{name}"] = rate(with_copy, 10 * count, 1.0 if quick else 3.0)
        print(f"GPU 512² {name}: {out[f'device_resident_{name}']:.3e} frames/s device-resident, "
              f"{out[f'host_to_device_{name}']:.3e} frames/s with the host→device copy", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer frames and shorter timings (a smoke run)")
    ap.add_argument("--json", help="write the results to this JSON file")
    ap.add_argument("--sizes", default="1024,2048", help="frame sizes, comma-separated")
    args = ap.parse_args(argv)
    import pyFAI

    info = machine_info(peers=("pyFAI",))
    print(f"machine: {info['cpu_model']}, {info['cpu_affinity']} cores; pyFAI {pyFAI.version}; "
          f"xstructure {xstructure.__version__} ({info['build_info']['cpu_isa']})")
    bw = copy_bandwidth()
    print(f"copy bandwidth: {bw / 1e9:.2f} GB/s (best of 5 np.copyto of 256 MiB)")
    results = {"machine": info, "copy_bandwidth_bytes_per_s": bw, "npt": NPT, "cpu": {}}
    for n in (int(s) for s in args.sizes.split(",")):
        results["cpu"][str(n)] = bench_cpu(n, args.quick, bw)
    results["gpu"] = bench_gpu(args.quick)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
