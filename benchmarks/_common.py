"""Helpers shared by the benchmark scripts: timing and a record of the machine and software."""

from __future__ import annotations

import os
import platform
import statistics
import time
from importlib import metadata

import numpy as np

import xstructure


def timeit(fn, repeats: int = 3, warmup=None, min_time: float = 0.0, max_repeats: int = 500) -> float:
    """Median wall time of fn() over `repeats` runs, after one warm-up call of warmup (default fn).

    With ``min_time`` > 0, runs continue past ``repeats`` until they add up to ``min_time`` seconds (at most
    ``max_repeats`` runs): on a shared virtual machine a sub-millisecond call is now and then stalled for
    tens of milliseconds, and the median of a handful of runs can land on a stall."""
    (warmup or fn)()
    times = []
    while len(times) < repeats or (sum(times) < min_time and len(times) < max_repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine_info(peers=()) -> dict:
    """CPU, cores, xstructure's build, and the versions of numpy, torch and the given peer packages."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    info = {"cpu_model": cpu, "cpu_count": os.cpu_count(), "cpu_affinity": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "xstructure": xstructure.__version__,
            "build_info": xstructure.build_info(), "numpy": np.__version__,
            "env_threads": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
    for pkg in ("torch", *peers):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            info[pkg] = None
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def gpu_skip_reason(device: str = "cuda"):
    """Why the GPU part cannot run on `device` ('cuda'), or None when it can."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if device == "cuda" and not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    if device == "cuda" and not xstructure.cuda_available():
        return f"xstructure.cuda_available() is False (build_info: {xstructure.build_info()})"
    return None
