#!/usr/bin/env python3
"""Smoke test of an installed xstructure wheel, run from outside the source tree.

Used by ``tools/wheel_check.sh`` (a wheel built and repaired here, installed into a fresh venv with no compiler on
PATH) and by cibuildwheel's ``test-command`` (pyproject.toml).  It checks that

* ``xstructure`` is imported from the installed wheel, not from a source tree, and its ``__version__`` (and the
  installed metadata) equal the version in pyproject.toml;
* ``xstructure info`` runs and reports an OpenMP build (and, with ``--expect-cuda``, whether CUDA was built);
* :func:`xstructure.simulate` on a built-in molecule equals a direct numpy Debye sum, on one and on two threads;
* the torch op :func:`xstructure.ops.debye` equals ``simulate`` and its gradient passes ``torch.autograd.gradcheck``
  (float64, finite differences);
* :func:`xstructure.rmsd` is 0 for a rigidly moved copy and equals the plain RMSD without alignment;
* with ``--no-compiler``: no C/C++/CUDA compiler is reachable on PATH.

Every check runs; the exit status is 1 when any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPILERS = ("cc", "gcc", "c++", "g++", "clang", "clang++", "nvcc")


def pyproject_version(path: Path) -> str:
    """The ``version`` of the ``[project]`` table (a regular expression: tomllib is Python 3.11+)."""
    table = re.search(r"^\[project\][ \t]*\n(.*?)(?=^\[|\Z)", path.read_text(), flags=re.MULTILINE | re.DOTALL)
    found = re.search(r'^version\s*=\s*"([^"]+)"', table.group(1), flags=re.MULTILINE) if table else None
    if not found:
        raise RuntimeError(f"no [project] version in {path}")
    return found.group(1)


def check_not_source_tree(xs, source: Path) -> str:
    where = Path(xs.__file__).resolve()
    assert source.resolve() not in where.parents, f"xstructure was imported from the source tree: {where}"
    assert "site-packages" in where.parts, f"xstructure is not an installed package: {where}"
    return str(where.parent)


def check_version(xs, expected: str) -> str:
    from importlib.metadata import version

    assert xs.__version__ == expected, f"xstructure.__version__ {xs.__version__!r} != pyproject's {expected!r}"
    assert version("xstructure") == expected, f"installed metadata {version('xstructure')!r} != {expected!r}"
    return expected


def check_no_compiler() -> str:
    found = {c: shutil.which(c) for c in COMPILERS if shutil.which(c)}
    assert not found, f"compilers reachable on PATH: {found}"
    return "none of " + " ".join(COMPILERS)


def check_cli_info(expected_version: str, expect_cuda: str | None) -> str:
    exe = shutil.which("xstructure") or str(Path(sys.executable).with_name("xstructure"))
    run = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, f"`xstructure info` exited {run.returncode}: {run.stderr[-2000:]}"
    info = json.loads(run.stdout)
    assert info["version"] == expected_version, info
    assert info["openmp"] is True, f"not an OpenMP build: {info}"
    if expect_cuda is not None:
        assert info["cuda"] is (expect_cuda == "on"), f"expected CUDA {expect_cuda}: {info}"
    return json.dumps({k: info[k] for k in ("version", "compiler", "openmp", "cpu_isa", "cuda")})


def debye_reference(numbers, positions, q):
    """I(q) = Σ_i Σ_j f_i f_j sin(q r_ij) / (q r_ij), X-ray form factors, straight from the definition."""
    import numpy as np

    from xstructure import xray_form_factor

    f = np.stack([xray_form_factor(int(z), q) for z in numbers])              # (N, Q)
    r = np.linalg.norm(positions[:, None] - positions[None], axis=-1)          # (N, N)
    return np.einsum("ik,jk,ijk->k", f, f, np.sinc(q[None, None] * r[..., None] / np.pi))


def check_simulate(xs) -> str:
    import numpy as np

    atoms = xs.molecule("NMM")
    q = np.linspace(0.5, 12.0, 200)
    one = xs.simulate(atoms, q, num_threads=1)
    two = xs.simulate(atoms, q, num_threads=2)
    ref = debye_reference(atoms.numbers, atoms.positions, q)
    assert one.shape == (200,) and np.all(np.isfinite(one)), one
    np.testing.assert_allclose(one, ref, rtol=1e-9)
    np.testing.assert_array_equal(one, two)
    return f"NMM, 200 q: max relative deviation from the numpy Debye sum {np.max(np.abs(one / ref - 1)):.1e}"


def check_ops_debye(xs) -> str:
    import numpy as np
    import torch

    numbers = [8, 1, 1, 6]
    q = np.linspace(0.3, 6.0, 7)
    gen = torch.Generator().manual_seed(0)
    pos = (1.5 * torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)).requires_grad_()
    out = xs.ops.debye(numbers, pos, q)
    np.testing.assert_allclose(out.detach().numpy(), xs.simulate((numbers, pos.detach().numpy()), q), rtol=1e-12)
    out.sum().backward()
    assert pos.grad is not None and bool(torch.isfinite(pos.grad).all())
    for signal in ("total", "sM"):
        assert torch.autograd.gradcheck(lambda x, s=signal: xs.ops.debye(numbers, x, q, signal=s), (pos,),
                                        eps=1e-6, atol=1e-6, rtol=1e-4)
    return f"torch {torch.__version__}: forward = simulate, gradcheck (float64) passed for 'total' and 'sM'"


def check_rmsd(xs) -> str:
    import numpy as np

    a = xs.molecule("NMM").positions
    c, s = np.cos(0.7), np.sin(0.7)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    moved = a @ R.T + np.array([1.0, -2.0, 0.5])
    assert xs.rmsd(a, moved) < 1e-6, xs.rmsd(a, moved)
    d = 0.1 * np.random.default_rng(1).standard_normal(a.shape)
    plain = float(np.sqrt(np.mean(np.sum(d * d, axis=1))))
    np.testing.assert_allclose(xs.rmsd(a, a + d, align=False), plain, rtol=1e-10)
    assert xs.rmsd(a, a + d) <= plain + 1e-12
    return f"rigid copy: {xs.rmsd(a, moved):.1e} Å; unaligned: {plain:.4f} Å"


def openmp_runtimes() -> str:
    """The OpenMP runtimes mapped into this process (after torch and xstructure both ran)."""
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return "(no /proc/self/maps)"
    libs = sorted({line.split()[-1] for line in maps.read_text().splitlines() if "gomp" in line or "libomp" in line})
    return f"{len(libs)} mapped: " + ", ".join(libs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml",
                        help="pyproject.toml whose [project] version the wheel must carry")
    parser.add_argument("--source-tree", type=Path, default=ROOT,
                        help="the source checkout the package must not be imported from")
    parser.add_argument("--no-compiler", action="store_true", help="also check that no compiler is on PATH")
    parser.add_argument("--expect-cuda", choices=("on", "off"), help="check whether the wheel was built with CUDA")
    args = parser.parse_args(argv)

    if Path.cwd().resolve() == args.source_tree.resolve() or args.source_tree.resolve() in Path.cwd().parents:
        print(f"run from outside the source tree (cwd is {Path.cwd()})", file=sys.stderr)
        return 2
    import xstructure as xs

    expected = pyproject_version(args.pyproject)
    checks = [("imported from", lambda: check_not_source_tree(xs, args.source_tree)),
              ("version", lambda: check_version(xs, expected))]
    if args.no_compiler:
        checks.append(("no compiler", check_no_compiler))
    checks += [("xstructure info", lambda: check_cli_info(expected, args.expect_cuda)),
               ("simulate", lambda: check_simulate(xs)),
               ("ops.debye", lambda: check_ops_debye(xs)),
               ("rmsd", lambda: check_rmsd(xs)),
               ("OpenMP runtimes", openmp_runtimes)]
    failed = []
    for name, check in checks:
        try:
            print(f"ok    {name}: {check()}", flush=True)
        except Exception:  # noqa: BLE001 - every check runs; the summary decides the exit status
            failed.append(name)
            print(f"FAIL  {name}:\n{traceback.format_exc()}", flush=True)
    print(f"python {sys.version.split()[0]}, {len(checks) - len(failed)}/{len(checks)} checks passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    sys.exit(main())
