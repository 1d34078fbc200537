"""xstructure's OpenMP runtime next to PyTorch's, in one process.

PyTorch's Linux wheels ship their own GNU OpenMP runtime (``torch/lib/libgomp*.so``).  A source build of
xstructure links the system's ``libgomp.so.1``; whichever of the two sonames is loaded first serves both.  A wheel
repaired by auditwheel carries its own copy under a hashed soname (``xstructure.libs/libgomp-<hash>.so``), so two
runtimes, each with its own thread pools, live in the process.  These tests run torch and xstructure work in both
import orders, one after the other, interleaved and from two Python threads at once, in subprocesses (a clean
import order each, and a timeout that turns a hang into a failure).  They check that the results equal
single-threaded runs and that the number of OS threads stays bounded and does not grow with repeated calls.  A
last test forks after both used OpenMP: GNU libgomp cannot run a parallel region in a forked child once the
parent has used a thread team, so xstructure runs its kernels on one thread in forked children (see
``xstructure._backend``); torch does not, and a forked child has to call ``torch.set_num_threads(1)`` itself.

Run as a script (``python tests/test_openmp_coexistence.py ORDER``), this file is the subprocess: it prints one
JSON line of measurements.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

THREADS = 2          # torch.set_num_threads and xstructure's num_threads
ROUNDS = 5           # each round: sequential, interleaved and concurrent work (14 kernel calls of each library)
TIMEOUT_S = 120      # a subprocess that runs longer has hung (a worker takes 8-15 s on 2 busy cores)
# OS threads the work may add to those after import: three OpenMP masters (the main thread and two concurrent
# Python threads), each with a pool of THREADS - 1 workers in each of two runtimes, the two Python threads and
# the sampler, plus 4 to spare.  Independent of the core count; a thread leaked per call crosses it in one round.
EXTRA_THREADS = 3 * 2 * (THREADS - 1) + 3 + 4


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def settled_threads(timeout: float = 2.0) -> int:
    """The OS thread count once it has not changed for 50 ms (exiting pool threads take a moment to go)."""
    last, since, end = os_threads(), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.005)
        now = os_threads()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 0.05:
            break
    return last


def openmp_libraries() -> list[str]:
    with open("/proc/self/maps") as f:
        return sorted({line.split()[-1] for line in f if "gomp" in line or "libomp" in line or "libiomp" in line})


# ---- the subprocess -------------------------------------------------------------------------------------------

def worker(order: str) -> dict:
    """Import in ``order``, run the work ROUNDS times, return the measurements."""
    before = os_threads()
    if order == "torch-first":
        import torch

        import xstructure as xs
    else:
        import xstructure as xs  # noqa: I001 - the import order is what this worker tests
        import torch
    import numpy as np

    after_import = settled_threads()
    atoms = xs.molecule("NMM")
    pos = atoms.positions[None] + 0.1 * np.random.default_rng(0).standard_normal((96, len(atoms), 3))
    q = np.linspace(0.5, 10.0, 120)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(192, 192, generator=gen, dtype=torch.float64)
    img = torch.randn(2, 3, 48, 48, generator=gen)
    kernel = torch.randn(8, 3, 5, 5, generator=gen)
    tpos = torch.tensor(pos[:8], dtype=torch.float64)

    def torch_work():
        return (a @ a, torch.nn.functional.conv2d(img, kernel, padding=2), torch.exp(a).sum(dim=0))

    def xs_work():
        return xs.simulate((atoms.numbers, pos), q, num_threads=THREADS), xs.ops.debye(atoms.numbers, tpos, q)

    torch.set_num_threads(1)
    ref_torch = torch_work()
    ref_xs = (xs.simulate((atoms.numbers, pos), q, num_threads=1), xs.ops.debye(atoms.numbers, tpos, q))
    torch.set_num_threads(THREADS)

    mismatches = []

    def compare(what, got):
        t_out, x_out = got if what == "both" else ((got, None) if what == "torch" else (None, got))
        if t_out is not None:
            for g, r in zip(t_out, ref_torch):
                if not torch.allclose(g, r, rtol=1e-5, atol=1e-6):
                    mismatches.append(f"torch result differs from the single-threaded run ({what})")
        if x_out is not None:
            if not np.array_equal(x_out[0], ref_xs[0]):
                mismatches.append("xstructure.simulate differs from num_threads=1")
            if not torch.allclose(x_out[1], ref_xs[1], rtol=1e-12, atol=0):
                mismatches.append("xstructure.ops.debye differs from its single-threaded run")

    peak = [os_threads()]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], os_threads())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rounds, seconds = [], []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        compare("torch", torch_work())
        compare("xs", xs_work())
        for _ in range(3):                                   # interleaved
            compare("xs", xs_work())
            compare("torch", torch_work())
        for pair in ([("torch", torch_work), ("xs", xs_work)], [("xs", xs_work), ("xs2", xs_work)]):
            results = {}                                     # two Python threads at once
            threads = [threading.Thread(target=lambda k, fn, out=results: out.update({k: fn()}), args=p)
                       for p in pair]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for key, out in results.items():
                compare("torch" if key == "torch" else "xs", out)
        seconds.append(time.perf_counter() - t0)
        rounds.append(settled_threads())
    stop.set()
    sampler.join()
    return {"order": order, "threads_before_import": before, "threads_after_import": after_import,
            "threads_after_round": rounds, "peak_threads": peak[0], "round_seconds": seconds,
            "mismatches": sorted(set(mismatches)), "openmp_libraries": openmp_libraries(),
            "torch_threads": torch.get_num_threads()}


def fork_worker() -> dict:
    """Use OpenMP in the parent (torch and xstructure), then run xstructure in forked children."""
    import multiprocessing

    import numpy as np
    import torch

    import xstructure as xs

    torch.set_num_threads(THREADS)
    atoms = xs.molecule("NMM")
    pos = atoms.positions[None] + 0.1 * np.random.default_rng(0).standard_normal((64, len(atoms), 3))
    q = np.linspace(0.5, 10.0, 80)
    a = torch.randn(192, 192, dtype=torch.float64)
    a @ a
    ref = xs.simulate((atoms.numbers, pos), q, num_threads=THREADS)
    out = {}
    for label, nt in (("default", 0), ("explicit", THREADS)):
        with multiprocessing.get_context("fork").Pool(2) as pool:
            got = pool.map(_child_simulate, [(atoms.numbers, pos, q, nt)] * 2)
        out[label] = all(np.array_equal(g, ref) for g in got)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        out["ops.debye"] = pool.apply(_child_debye, (atoms.numbers, pos[:4], q))
    return out


def _child_simulate(args):
    import xstructure as xs

    numbers, pos, q, nt = args
    return xs.simulate((numbers, pos), q, num_threads=nt)


def _child_debye(numbers, pos, q):
    import torch

    import xstructure as xs

    torch.set_num_threads(1)   # torch's own kernels in a forked child (see the module docstring)
    x = torch.tensor(pos, requires_grad=True)
    xs.ops.debye(numbers, x, q).sum().backward()
    return bool(torch.isfinite(x.grad).all())


# ---- the tests ------------------------------------------------------------------------------------------------

def run_worker(*args) -> dict:
    """Run this file as a script in its own process group; a hang is killed with its forked children and fails."""
    pytest.importorskip("torch")  # here, not at import: the script imports torch itself, in the order under test
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{args}: no answer within {TIMEOUT_S} s (hung)")
    assert proc.returncode == 0, f"{args}: exit {proc.returncode}\n{err[-4000:]}"
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("order", ["torch-first", "xstructure-first"])
def test_torch_and_xstructure_threads_coexist(order):
    m = run_worker(order)
    print(json.dumps(m))
    assert not m["mismatches"], m
    assert m["torch_threads"] == THREADS
    assert m["openmp_libraries"], "no OpenMP runtime mapped: an extension built without OpenMP?"
    base = m["threads_after_import"]
    rounds = m["threads_after_round"]
    assert m["peak_threads"] <= base + EXTRA_THREADS, m
    assert max(rounds) <= base + EXTRA_THREADS, m
    # No growth with repeated calls: once the first round has created the pools, the count stays put.
    assert max(rounds[1:]) <= rounds[0], m


@pytest.mark.slow
def test_fork_after_openmp_does_not_hang():
    m = run_worker("fork")
    assert m == {"default": True, "explicit": True, "ops.debye": True}, m


def test_forked_child_runs_kernels_on_one_thread():
    from xstructure import _backend

    assert _backend.kernel_threads(0) == 0 and _backend.kernel_threads(3) == 3
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running pytest's teardown
        os.write(w, f"{_backend.kernel_threads(0)} {_backend.kernel_threads(3)}".encode())
        os._exit(0)
    os.close(w)
    got = os.read(r, 64).decode()
    os.close(r)
    os.waitpid(pid, 0)
    assert got == "1 1"


if __name__ == "__main__":
    result = fork_worker() if sys.argv[1] == "fork" else worker(sys.argv[1])
    print(json.dumps(result))
