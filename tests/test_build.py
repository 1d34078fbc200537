"""What the build reports about itself, and importing without torch or a GPU."""

import subprocess
import sys

import xstructure


def test_build_info_fields():
    info = xstructure.build_info()
    for key in ("compiler", "openmp", "cpu_isa", "cuda", "cuda_version", "cuda_architectures", "cuda_devices"):
        assert key in info
    assert info["cpu_isa"] in ("avx2+fma", "baseline")
    assert isinstance(xstructure.cuda_available(), bool)
    if info["cuda"]:
        assert info["cuda_architectures"]


def test_numpy_api_does_not_import_torch():
    code = "import sys, numpy as np, xstructure; xstructure.simulate(xstructure.molecule('DT'), np.linspace(0,5,9)); " \
           "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_num_threads_gives_identical_results():
    import numpy as np

    atoms = xstructure.molecule("NMM")
    pos = atoms.positions[None] + 0.1 * np.random.default_rng(0).standard_normal((64, 18, 3))
    q = np.linspace(0.5, 10, 50)
    one = xstructure.simulate((atoms.numbers, pos), q, num_threads=1)
    two = xstructure.simulate((atoms.numbers, pos), q, num_threads=2)
    np.testing.assert_array_equal(one, two)
