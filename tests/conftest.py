import numpy as np
import pytest

import xstructure
from xstructure import _backend


def available_devices():
    """CPU always; CUDA when the extension was built with it and a device is present (torch needed)."""
    devices = ["cpu"]
    info = xstructure.build_info()
    if not info["cuda"]:
        devices.append(pytest.param("cuda", marks=pytest.mark.skip(reason="xstructure was built without CUDA")))
    elif info["cuda_devices"] == 0:
        devices.append(pytest.param("cuda", marks=pytest.mark.skip(reason="built with CUDA, but no CUDA device here")))
    else:
        devices.append(pytest.param("cuda", marks=pytest.mark.gpu))
    return devices


@pytest.fixture(scope="session")
def seed_molecules():
    """The seed design's three molecules: N-methylmorpholine, 1,3-cyclohexadiene, 1,2-dithiane."""
    return {name: xstructure.molecule(name) for name in ("NMM", "CHD", "DT")}


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)


def perturbed(atoms, n, sigma, rng):
    """(n, N, 3) geometries: atoms' positions plus Gaussian displacements of sigma Å."""
    return atoms.get_positions()[None] + sigma * rng.standard_normal((n, len(atoms), 3))


def random_rotation(rng):
    """A uniformly random proper rotation matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", default=False,
                     help="also run the tests marked slow (training runs, subprocesses, dask clusters); CI does")


def pytest_collection_modifyitems(config, items):
    """Tests marked slow are deselected unless --slow is given (or -m selects by marker)."""
    if config.getoption("--slow") or config.getoption("-m"):
        return
    slow = [it for it in items if "slow" in it.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [it for it in items if "slow" not in it.keywords]
