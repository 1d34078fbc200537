"""Every CUDA kernel against the CPU path, through the public functions that reach it, and the core's errors.

The GPU tests (marked ``gpu``) run each public entry point that can launch a CUDA kernel on CUDA arrays and on
the same data on the CPU, and compare values and, for the torch ops in :mod:`xstructure.ops`, gradients:

    Debye           xstructure.simulate (torch, cupy), xstructure.ops.debye (+ backward)
    Kabsch          xstructure.ops.kabsch_rmsd (+ backward), xstructure.rmsd (with the transform)
    radial          xstructure.Integrator.integrate on torch CUDA frames (every error model)
    density grid    xstructure.ops.density_grid (+ backward)

Structure factors have no CUDA kernel (xstructure.crystal builds their inputs on the host).  Without a CUDA
build or a device, the GPU tests are skipped with the reason.  The CPU tests at the end check that the core
(``xstructure._core``) rejects an unknown device or dtype with a ValueError naming the kernel.
"""

from importlib import import_module

import numpy as np
import pytest

import xstructure


def _gpu_skip_reason(need_torch: bool = True) -> str | None:
    if not xstructure.build_info()["cuda"]:
        return "xstructure was built without CUDA (no nvcc at build time, or XSTRUCTURE_CUDA=OFF)"
    if not xstructure.cuda_available():
        return "xstructure was built with CUDA, but no CUDA device is present"
    if need_torch:
        try:
            import torch
        except ImportError:
            return "torch is not installed"
        if not torch.cuda.is_available():
            return "torch has no CUDA support here (a CPU-only build?)"
    return None


_reason = _gpu_skip_reason()
requires_gpu = pytest.mark.skipif(_reason is not None, reason=_reason or "")
_reason_cupy = _gpu_skip_reason(need_torch=False)
requires_gpu_cupy = pytest.mark.skipif(_reason_cupy is not None, reason=_reason_cupy or "")
DEVICE = "cuda"
Q = np.linspace(0.0, 12.0, 97)
Q_IRREGULAR = np.sort(np.random.default_rng(3).uniform(0.0, 12.0, 41))


def _torch():
    import torch

    return torch


def _rel(got, ref) -> float:
    """max |got - ref| / max |ref| (0 for an all-zero reference that is matched exactly)."""
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    scale = np.abs(ref).max() if ref.size else 0.0
    err = np.abs(got - ref).max() if ref.size else 0.0
    return float(err / scale) if scale > 0 else float(err)


def _geometries(name: str, B: int, sigma: float, seed: int):
    atoms = xstructure.molecule(name)
    rng = np.random.default_rng(seed)
    return atoms, atoms.positions[None] + sigma * rng.standard_normal((B, len(atoms), 3))


# --- Debye --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, tol, gtol", [("float64", 1e-10, 1e-9), ("float32", 2e-5, 5e-4)])
@pytest.mark.parametrize("q", [Q, Q_IRREGULAR], ids=["uniform", "irregular"])
@pytest.mark.parametrize("signal", ["total", "molecular", "sM"])
@pytest.mark.gpu
@requires_gpu
def test_debye_op_cuda_matches_cpu(dtype, tol, gtol, q, signal):
    torch = _torch()
    atoms, pos = _geometries("NMM", 9, 0.1, 0)
    dt = getattr(torch, dtype)
    w = torch.tensor(np.random.default_rng(1).standard_normal((9, q.size)), dtype=dt)
    out, grads = {}, {}
    for dev in ("cpu", DEVICE):
        p = torch.tensor(pos, dtype=dt, device=dev, requires_grad=True)
        I = xstructure.ops.debye(atoms.numbers, p, q, signal=signal)
        assert I.device.type == dev and I.dtype == dt
        (I * w.to(dev)).sum().backward()
        out[dev], grads[dev] = I.detach().cpu().numpy(), p.grad.cpu().numpy()
    assert _rel(out[DEVICE], out["cpu"]) < tol
    assert _rel(grads[DEVICE], grads["cpu"]) < gtol


@pytest.mark.gpu
@requires_gpu
def test_debye_op_cuda_large_molecule():
    # N = 70 atoms of random species, B = 1: the CPU takes its row-parallel paths, the GPU its usual ones
    torch = _torch()
    rng = np.random.default_rng(2)
    numbers = rng.choice([1, 6, 7, 8, 16], size=70)
    pos = rng.uniform(-6, 6, size=(70, 3))
    w = rng.standard_normal(Q.size)
    res = {}
    for dev in ("cpu", DEVICE):
        p = torch.tensor(pos, device=dev, requires_grad=True)
        I = xstructure.ops.debye(numbers, p, Q)
        (I * torch.tensor(w, device=dev)).sum().backward()
        res[dev] = (I.detach().cpu().numpy(), p.grad.cpu().numpy())
    assert _rel(res[DEVICE][0], res["cpu"][0]) < 1e-10
    assert _rel(res[DEVICE][1], res["cpu"][1]) < 1e-9


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 2e-5)])
@pytest.mark.parametrize("q", [Q, Q_IRREGULAR], ids=["uniform", "irregular"])
@pytest.mark.gpu
@requires_gpu
def test_debye_jacobian_cuda_matches_cpu(dtype, tol, q):
    torch = _torch()
    atoms, pos = _geometries("NMM", 5, 0.1, 3)
    res = {}
    for dev in ("cpu", DEVICE):
        I, J = xstructure.ops.debye_jacobian(atoms.numbers, torch.tensor(pos, dtype=getattr(torch, dtype),
                                                                         device=dev), q, signal="molecular")
        assert J.device.type == dev and J.shape == (5, q.size, len(atoms), 3)
        res[dev] = (I.cpu().numpy(), J.cpu().numpy())
    assert _rel(res[DEVICE][0], res["cpu"][0]) < tol
    assert _rel(res[DEVICE][1], res["cpu"][1]) < 10 * tol


@pytest.mark.parametrize("precision, tol", [("float64", 1e-6), ("mixed", 1e-4)])
@pytest.mark.gpu
@requires_gpu
def test_debye_gauss_newton_cuda_matches_cpu(precision, tol):
    torch = _torch()
    atoms, pos = _geometries("CHD", 6, 0.05, 4)
    rng = np.random.default_rng(5)
    L = 0.05 * np.linalg.qr(rng.standard_normal((3 * len(atoms), 10)))[0]
    y = xstructure.simulate(atoms, Q[1:], signal="molecular") * (1 + 0.01 * rng.standard_normal(Q.size - 1))
    w = 1.0 / (0.01 * np.abs(y) + 1.0) ** 2
    z = rng.standard_normal((6, 10))
    res = {}
    for dev in ("cpu", DEVICE):
        dz, I = xstructure.ops.debye_gauss_newton(atoms.numbers, torch.tensor(pos, device=dev), Q[1:],
                                                  torch.tensor(L, device=dev), y, w, z, precision=precision)
        assert dz.device.type == dev
        res[dev] = (dz.cpu().numpy(), I.cpu().numpy())
    assert _rel(res[DEVICE][1], res["cpu"][1]) < 1e-10
    assert _rel(res[DEVICE][0], res["cpu"][0]) < tol


@pytest.mark.parametrize("dtype, tol", [("float64", 1e-10), ("float32", 2e-5)])
@pytest.mark.gpu
@requires_gpu
def test_simulate_torch_cuda_matches_numpy(dtype, tol):
    torch = _torch()
    atoms, pos = _geometries("CHD", 33, 0.1, 4)
    pos = pos.astype(dtype)
    ref = xstructure.simulate((atoms.numbers, pos), Q)
    got = xstructure.simulate((atoms.numbers, torch.as_tensor(pos, device=DEVICE)), Q)
    assert isinstance(got, torch.Tensor) and got.device.type == DEVICE and str(got.dtype) == f"torch.{dtype}"
    assert _rel(got.cpu().numpy(), ref) < tol


@pytest.mark.gpu
@requires_gpu_cupy
def test_simulate_cupy_matches_numpy():
    cupy = pytest.importorskip("cupy")
    atoms, pos = _geometries("DT", 17, 0.1, 5)
    ref = xstructure.simulate((atoms.numbers, pos), Q_IRREGULAR, probe="electron", signal="sM")
    got = xstructure.simulate((atoms.numbers, cupy.asarray(pos)), Q_IRREGULAR, probe="electron", signal="sM")
    assert isinstance(got, cupy.ndarray)
    assert _rel(cupy.asnumpy(got), ref) < 1e-10


# --- Kabsch -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, tol, gtol", [("float64", 1e-10, 1e-9), ("float32", 1e-5, 1e-3)])
@pytest.mark.parametrize("layout", ["one-ref", "pairwise"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reflection", [False, True])
@pytest.mark.gpu
@requires_gpu
def test_kabsch_op_cuda_matches_cpu(dtype, tol, gtol, layout, weighted, reflection):
    torch = _torch()
    atoms, frames = _geometries("NMM", 40, 0.3, 6)
    ref = atoms.positions if layout == "one-ref" else frames[::-1].copy()
    weights = atoms.get_masses() if weighted else None
    dt = getattr(torch, dtype)
    res = {}
    for dev in ("cpu", DEVICE):
        a = torch.tensor(ref, dtype=dt, device=dev, requires_grad=True)
        b = torch.tensor(frames, dtype=dt, device=dev, requires_grad=True)
        r = xstructure.ops.kabsch_rmsd(a, b, weights=weights, reflection=reflection)
        assert r.device.type == dev and r.dtype == dt
        r.sum().backward()
        res[dev] = (r.detach().cpu().numpy(), a.grad.cpu().numpy(), b.grad.cpu().numpy())
    assert np.abs(res[DEVICE][0] - res["cpu"][0]).max() < tol  # Å
    assert _rel(res[DEVICE][1], res["cpu"][1]) < gtol
    assert _rel(res[DEVICE][2], res["cpu"][2]) < gtol


@pytest.mark.gpu
@requires_gpu
def test_rmsd_transform_cuda_matches_cpu():
    torch = _torch()
    atoms, frames = _geometries("CHD", 25, 0.2, 7)
    r_cpu, R_cpu, t_cpu = xstructure.rmsd(atoms.positions, frames, return_transform=True)
    r, R, t = xstructure.rmsd(torch.as_tensor(atoms.positions, device=DEVICE), torch.as_tensor(frames, device=DEVICE),
                              return_transform=True)
    assert r.device.type == DEVICE
    assert np.abs(r.cpu().numpy() - r_cpu).max() < 1e-11
    assert np.abs(R.cpu().numpy() - R_cpu).max() < 1e-9
    assert np.abs(t.cpu().numpy() - t_cpu).max() < 1e-9
    # plain RMSD (align=False) through the same kernel
    plain = xstructure.rmsd(torch.as_tensor(frames[:-1], device=DEVICE), torch.as_tensor(frames[1:], device=DEVICE),
                            align=False)
    np.testing.assert_allclose(plain.cpu().numpy(), xstructure.rmsd(frames[:-1], frames[1:], align=False), rtol=1e-12)


# --- radial integration -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["uint16", "int32", "float32", "float64"])
@pytest.mark.parametrize("error_model", ["poisson", "azimuthal", None])
@pytest.mark.parametrize("npt", [300, 20000], ids=["shared-histogram", "global-histogram"])
@pytest.mark.gpu
@requires_gpu
def test_integrator_cuda_matches_cpu(dtype, error_model, npt):
    torch = _torch()
    g = xstructure.Geometry.simple((256, 300), pixel=100e-6, dist=0.05, energy_kev=12.0)
    rng = np.random.default_rng(8)
    frames = rng.poisson(40.0, (3, 256, 300)).astype(dtype)
    frames[:, ::31, ::17] = 0  # values below 1: the Poisson variance's max(1, x)
    if dtype.startswith("float"):
        frames[0, 5, 7] = np.nan  # found invalid while reading
    it = xstructure.Integrator(g, npt, polarization=0.99, error_model=error_model)
    ref = it.integrate(frames)
    got = it.integrate(torch.as_tensor(frames, device=DEVICE))
    assert isinstance(got.intensity, torch.Tensor) and got.intensity.device.type == DEVICE
    np.testing.assert_array_equal(got.count.cpu().numpy(), ref.count)
    # the GPU's shared-memory histograms add in float32 before the float64 total
    for field in ("intensity", "sum_signal", "sum_normalization"):
        np.testing.assert_allclose(getattr(got, field).cpu().numpy(), getattr(ref, field), rtol=1e-5, atol=1e-9)
    if error_model is not None:
        np.testing.assert_allclose(got.sigma.cpu().numpy(), ref.sigma, rtol=1e-5, atol=1e-9)


# --- density grid -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, tol, gtol", [("float64", 1e-10, 1e-9), ("float32", 1e-5, 1e-4)])
@pytest.mark.parametrize("frame", ["fractional", "cartesian"])
@pytest.mark.gpu
@requires_gpu
def test_density_op_cuda_matches_cpu(dtype, tol, gtol, frame):
    torch = _torch()
    rng = np.random.default_rng(9)
    cell = np.array([[7.0, 0.0, 0.0], [1.5, 6.5, 0.0], [-0.8, 0.6, 8.0]])
    numbers = rng.choice([1, 6, 8, 11, 17], size=12)
    pos = rng.uniform(0, 1, (3, 12, 3)) @ cell
    dt = getattr(torch, dtype)
    w = rng.standard_normal((3, 10, 11, 12))
    res = {}
    for dev in ("cpu", DEVICE):
        p = torch.tensor(pos, dtype=dt, device=dev, requires_grad=True)
        rho = xstructure.ops.density_grid(p, cell, numbers=numbers, shape=(10, 11, 12), sigma=0.6, frame=frame)
        assert rho.device.type == dev and rho.dtype == dt
        (rho * torch.tensor(w, dtype=dt, device=dev)).sum().backward()
        res[dev] = (rho.detach().cpu().numpy(), p.grad.cpu().numpy())
    assert _rel(res[DEVICE][0], res["cpu"][0]) < tol
    assert _rel(res[DEVICE][1], res["cpu"][1]) < gtol


# --- the core's errors (CPU, never skipped) -----------------------------------------------------------------

@pytest.fixture(scope="module")
def core():
    return import_module("xstructure._core")


# Each kernel called with empty sizes and null buffers: a bad device or dtype must be refused before any launch.
def _debye_forward(core, device, dtype):
    core.debye_forward(device, dtype, 0, 0, 0, 1, 0, 0, True, 0.0, 0.0, 0, 0, 0, 0, 0, 0)


def _debye_backward(core, device, dtype):
    core.debye_backward(device, dtype, 0, 0, 0, 1, 0, 0, True, 0.0, 0.0, 0, 0, 0, 0, 0, 0)


def _debye_jacobian(core, device, dtype):
    core.debye_jacobian(device, dtype, 0, 0, 0, 1, 0, 0, True, 0.0, 0.0, 0, 0, 0, 0, 0, 0, 0)


def _kabsch(core, device, dtype):
    core.kabsch_rmsd(device, dtype, 0, 1, 3, 3, 0, True, False, 0, 0, 0, 0, 0, 0, 0)


def _kabsch_backward(core, device, dtype):
    core.kabsch_rmsd_backward(device, dtype, 0, 1, 3, 3, 0, True, False, 0, 0, 0, 0, 0, 0, 0)


def _radial(core, device, dtype):
    core.radial_histogram(device, dtype, 0, 0, 1, 0, False, 0, True, 0.0, 1.0, False, 0.0, 0.0, 0, 0, 0, 0, 0, 0,
                          0, 0, 0, 0)


_SPEC = ([1, 1, 1], [5.0, 0, 0, 0, 5.0, 0, 0, 0, 5.0], [5.0, 0, 0, 0, 5.0, 0, 0, 0, 5.0], [0.0, 0.0, 0.0])


def _density(core, device, dtype):
    core.density_grid(device, dtype, 0, 0, *_SPEC, 0, 0, 6.0, 0, 0, 0, 0)


def _density_backward(core, device, dtype):
    core.density_grid_backward(device, dtype, 0, 0, *_SPEC, 0, 0, 6.0, 0, 0, 0, 0, 0)


KERNELS = {
    "debye_forward": (_debye_forward, "debye", "float32 or float64"),
    "debye_backward": (_debye_backward, "debye", "float32 or float64"),
    "debye_jacobian": (_debye_jacobian, "debye", "float32 or float64"),
    "kabsch_rmsd": (_kabsch, "kabsch", "float32 or float64"),
    "kabsch_rmsd_backward": (_kabsch_backward, "kabsch", "float32 or float64"),
    "radial_histogram": (_radial, "radial", "uint16, int32, uint32, float32 or float64"),
    "density_grid": (_density, "density_grid", "float32 or float64"),
    "density_grid_backward": (_density_backward, "density_grid", "float32 or float64"),
}


@pytest.mark.parametrize("name", KERNELS)
def test_core_rejects_unknown_device(core, name):
    call, kernel, _ = KERNELS[name]
    with pytest.raises(ValueError, match=f"^{kernel}: device must be cpu or cuda, not 'xpu'$"):
        call(core, "xpu", "float64")
    with pytest.raises(ValueError, match=f"^{kernel}: device must be cpu or cuda, not 'CPU'$"):
        call(core, "CPU", "float64")


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_core_rejects_unknown_dtype(core, name, device):
    # the dtype is checked before anything is launched, on either device and with or without a GPU
    call, kernel, accepted = KERNELS[name]
    with pytest.raises(ValueError, match=f"^{kernel}: dtype must be {accepted}, not 'int8'$"):
        call(core, device, "int8")
    with pytest.raises(ValueError, match=f"^{kernel}: dtype must be {accepted}, not 'torch.float32'$"):
        call(core, device, "torch.float32")


@pytest.mark.parametrize("name", KERNELS)
def test_core_accepts_known_device_and_dtype(core, name):
    call = KERNELS[name][0]
    call(core, "cpu", "float64")  # empty problem on the CPU: nothing to do, no error


@pytest.mark.parametrize("device", ["cuda", "gpu"])
def test_core_gauss_newton_is_cpu_only(core, device):
    args = (0, 0, 0, 1, 0, 0, True, 0.0, 0.0, 0, 0, 0, 0, 1, 0, 0, 0, False, 0, 0, 0)
    with pytest.raises(ValueError, match=f"^debye_gauss_newton: device must be cpu, not '{device}'$"):
        core.debye_gauss_newton(device, *args)
    core.debye_gauss_newton("cpu", *args)  # empty problem: nothing to do
    with pytest.raises(ValueError, match="needs at least one direction"):
        core.debye_gauss_newton("cpu", *args[:13], 0, *args[14:])


@pytest.mark.parametrize("device", ["cuda", "gpu"])
def test_core_structure_factors_are_cpu_only(core, device):
    gc = np.zeros(1)
    metric = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    args = (0, 1, 0, 0, 0, -1, 0, 0, 0, 0, 0, 0, gc.ctypes.data, -1.0, 0, metric, 0, 0)
    with pytest.raises(ValueError, match=f"^structure_factors: device must be cpu, not '{device}'$"):
        core.structure_factors(device, *args)
    core.structure_factors("cpu", *args)  # no reflections: nothing to do
