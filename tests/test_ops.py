"""xstructure.ops.debye as a PyTorch custom op: values, analytic gradients, opcheck, devices."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import xstructure  # noqa: E402
from xstructure import _ops  # noqa: E402
from xstructure.scattering import debye_tables  # noqa: E402
from conftest import available_devices, perturbed  # noqa: E402
from reference.debye import f_xray, ref_grad, signal as ref_signal  # noqa: E402,F401

Q = np.linspace(0.0, 12.0, 97)
Q_IRREGULAR = np.sort(np.random.default_rng(3).uniform(0.0, 12.0, 41))



@pytest.mark.parametrize("device", available_devices())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_values_match_reference(seed_molecules, rng, device, dtype):
    atoms = seed_molecules["NMM"]
    pos = perturbed(atoms, 4, 0.1, rng)
    got = xstructure.ops.debye(atoms.numbers, torch.tensor(pos, dtype=dtype, device=device), Q, signal="total")
    assert got.shape == (4, Q.size) and got.dtype == dtype and got.device.type == device
    ref = np.stack([ref_signal(atoms.numbers, p, Q) for p in pos])
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert np.abs(got.cpu().numpy() - ref).max() / np.abs(ref).max() < tol


@pytest.mark.parametrize("q", [Q, Q_IRREGULAR], ids=["uniform", "irregular"])
def test_gradient_matches_hand_derivative(seed_molecules, rng, q):
    atoms = seed_molecules["DT"]
    pos = perturbed(atoms, 2, 0.1, rng)
    w = rng.standard_normal((2, q.size))
    t = torch.tensor(pos, requires_grad=True)
    I = xstructure.ops.debye(atoms.numbers, t, q, signal="molecular")
    (I * torch.tensor(w)).sum().backward()
    for b in range(2):
        np.testing.assert_allclose(t.grad[b].numpy(), ref_grad(atoms.numbers, pos[b], q, w[b]), rtol=1e-9,
                                   atol=1e-9 * np.abs(t.grad[b].numpy()).max())


@pytest.mark.parametrize("signal", ["molecular", "total", "sM"])
@pytest.mark.parametrize("probe", ["xray", "electron"])
@pytest.mark.parametrize("q", [Q[:40], Q_IRREGULAR], ids=["uniform", "irregular"])
def test_gradcheck_float64(seed_molecules, rng, signal, probe, q):
    atoms = seed_molecules["CHD"]
    pos = torch.tensor(perturbed(atoms, 2, 0.1, rng), requires_grad=True)
    fn = lambda p: xstructure.ops.debye(atoms.numbers, p, q, probe=probe, signal=signal)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (pos,), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradient_threaded_single_large_geometry(rng):
    # N >= 64 with B = 1 takes the row-parallel backward path
    n = 70
    numbers = rng.choice([1, 6, 8], size=n)
    pos = rng.uniform(-5, 5, size=(n, 3))
    w = rng.standard_normal(Q.size)
    t = torch.tensor(pos, requires_grad=True)
    (xstructure.ops.debye(numbers, t, Q, signal="total") * torch.tensor(w)).sum().backward()
    np.testing.assert_allclose(t.grad.numpy(), ref_grad(numbers, pos, Q, w), rtol=1e-9,
                               atol=1e-9 * np.abs(t.grad.numpy()).max())


def test_gradient_finite_for_coincident_atoms():
    pos = torch.zeros((1, 3, 3), dtype=torch.float64, requires_grad=True)
    xstructure.ops.debye([6, 8, 8], pos, Q).sum().backward()
    assert torch.isfinite(pos.grad).all() and (pos.grad == 0).all()


def test_opcheck(seed_molecules, rng):
    atoms = seed_molecules["CHD"]
    t = debye_tables(atoms.numbers, Q, "xray", "total")
    pos = torch.tensor(perturbed(atoms, 3, 0.1, rng), requires_grad=True)
    args = (pos, torch.as_tensor(t.species), torch.as_tensor(t.q), torch.as_tensor(t.H), torch.as_tensor(t.beta),
            t.uniform, t.q0, t.dq)
    torch.library.opcheck(_ops.debye_sum, args)
    torch.library.opcheck(_ops.debye_sum_backward,
                          (torch.randn(3, Q.size, dtype=torch.float64), pos.detach(), *args[1:4], *args[5:]))


def test_empty_and_sliced_inputs(seed_molecules, rng):
    atoms = seed_molecules["NMM"]
    pos = torch.tensor(perturbed(atoms, 6, 0.1, rng))
    empty = xstructure.ops.debye(atoms.numbers, pos[:0], Q)
    assert empty.shape == (0, Q.size)
    sliced = pos[::2]                                # non-contiguous
    np.testing.assert_array_equal(xstructure.ops.debye(atoms.numbers, sliced, Q).numpy(),
                                  xstructure.ops.debye(atoms.numbers, sliced.contiguous(), Q).numpy())
    single = xstructure.ops.debye(atoms.numbers, pos[0], Q)
    assert single.shape == (Q.size,)


def test_atomic_signal_has_no_position_dependence(seed_molecules):
    atoms = seed_molecules["DT"]
    pos = torch.tensor(atoms.positions, requires_grad=True)
    I = xstructure.ops.debye(atoms.numbers, pos, Q, signal="atomic")
    np.testing.assert_allclose(I.numpy(), xstructure.simulate(atoms, Q, signal="atomic"), rtol=1e-14)


def test_simulate_returns_torch_for_torch_input(seed_molecules):
    atoms = seed_molecules["DT"]
    out = xstructure.simulate((atoms.numbers, torch.tensor(atoms.positions, dtype=torch.float32)), Q)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (Q.size,)
    np.testing.assert_allclose(out.numpy(), xstructure.simulate(atoms, Q), rtol=2e-5)


def test_op_errors(seed_molecules):
    atoms = seed_molecules["DT"]
    with pytest.raises(ValueError, match="shape"):
        xstructure.ops.debye(atoms.numbers, torch.zeros(3, 3, dtype=torch.float64), Q)
    with pytest.raises(ValueError, match="NaN or inf"):
        xstructure.ops.debye(atoms.numbers, torch.full((14, 3), float("nan"), dtype=torch.float64), Q)
    with pytest.raises(ValueError, match="float32 or float64"):
        xstructure.ops.debye(atoms.numbers, torch.zeros(14, 3, dtype=torch.int64), Q)
    with pytest.raises(ValueError, match="torch.Tensor"):
        xstructure.ops.debye(atoms.numbers, atoms.positions, Q)


def test_cuda_path_without_gpu_says_so():
    if xstructure.cuda_available():
        pytest.skip("a CUDA device is present: the GPU tests cover this path")
    from xstructure import _backend
    # No device (or no CUDA build): asking the core for a CUDA launch raises a RuntimeError naming the cause,
    # never a crash.  B=1, N=2, Q=1 with null buffers: nothing may be dereferenced on the host.
    match = "CUDA|cuda" if xstructure.build_info()["cuda"] else "built without CUDA"
    with pytest.raises(RuntimeError, match=match):
        _backend._core.debye_forward("cuda", "float64", 1, 2, 1, 1, 0, 0, True, 0.0, 0.0, 0, 0, 0, 0, 0, 0)


def test_debye_tables_are_kept_but_never_shared(seed_molecules):
    """The tables are cached per (molecule, grid, probe, signal): a second call gives equal tables, and neither
    changing what a call returned nor the caller's q array afterwards changes what later calls get."""
    from xstructure import scattering

    numbers = seed_molecules["NMM"].numbers
    q = np.linspace(0.5, 10.0, 53)
    first = debye_tables(numbers, q, "electron", "sM")
    first.H[:] = 0.0
    first.beta[:] = -1.0
    q[:] = 99.0
    again = debye_tables(numbers, np.linspace(0.5, 10.0, 53), "electron", "sM")
    fresh = scattering._make_tables(numbers, np.linspace(0.5, 10.0, 53), "electron", "sM", None, False)
    for name in ("species", "q", "H", "beta", "i_atomic"):
        np.testing.assert_array_equal(getattr(again, name), getattr(fresh, name))
    assert (again.uniform, again.q0, again.dq) == (fresh.uniform, fresh.q0, fresh.dq)
    assert np.abs(again.H).max() > 0
    # another signal or probe of the same molecule and grid is another entry
    assert not np.array_equal(debye_tables(numbers, again.q, "xray", "sM").H, again.H)
    for k in range(scattering._TABLES_KEPT + 3):     # the cache stays bounded
        debye_tables(numbers, np.linspace(0.5, 10.0 + k, 20), "xray", "total")
    assert len(scattering._TABLES) <= scattering._TABLES_KEPT
