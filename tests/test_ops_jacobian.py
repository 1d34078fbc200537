"""xstructure.ops.debye_jacobian and xstructure.ops.debye_gauss_newton against float64 numpy references, their
invariants and their errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

torch = pytest.importorskip("torch")

from conftest import available_devices, perturbed  # noqa: E402
from reference.debye import ref_jacobian  # noqa: E402
from reference.debye import signal as ref_signal  # noqa: E402
from xstructure import ops  # noqa: E402

Q = np.linspace(0.5, 12.0, 97)
Q_IRREGULAR = np.sort(np.random.default_rng(3).uniform(0.3, 12.0, 41))


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


@pytest.mark.parametrize("device", available_devices())
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-11), (torch.float32, 2e-5)])
@pytest.mark.parametrize("q", [Q, Q_IRREGULAR], ids=["uniform", "irregular"])
@pytest.mark.parametrize("probe, signal", [("xray", "molecular"), ("xray", "total"), ("xray", "sM"),
                                           ("electron", "molecular")])
def test_jacobian_matches_reference(seed_molecules, rng, device, dtype, tol, q, probe, signal):
    atoms = seed_molecules["NMM"]
    pos = perturbed(atoms, 3, 0.1, rng)
    I, J = ops.debye_jacobian(atoms.numbers, torch.tensor(pos, dtype=dtype, device=device), q, probe=probe,
                              signal=signal)
    assert I.shape == (3, q.size) and J.shape == (3, q.size, len(atoms), 3)
    assert I.dtype == J.dtype == dtype and J.device.type == device
    for b in range(3):
        assert rel(I[b].cpu().numpy(), ref_signal(atoms.numbers, pos[b], q, probe, signal)) < tol
        assert rel(J[b].cpu().numpy(), ref_jacobian(atoms.numbers, pos[b], q, probe, signal)) < tol


def test_jacobian_is_what_autograd_gives(seed_molecules, rng):
    atoms = seed_molecules["DT"]
    x = torch.tensor(perturbed(atoms, 1, 0.1, rng)[0])
    I, J = ops.debye_jacobian(atoms.numbers, x, Q, signal="molecular")
    auto = torch.autograd.functional.jacobian(lambda p: ops.debye(atoms.numbers, p, Q, signal="molecular"), x)
    assert I.shape == (Q.size,) and J.shape == (Q.size, len(atoms), 3)
    assert rel(J.numpy(), auto.numpy()) < 1e-12
    assert rel(I.numpy(), ops.debye(atoms.numbers, x, Q, signal="molecular").numpy()) < 1e-13


@pytest.mark.parametrize("q", [Q, Q_IRREGULAR], ids=["uniform", "irregular"])
def test_jacobian_threaded_few_large_geometries(rng, q):
    # N >= 64 with B < 2 threads' worth takes the row-parallel path, with one buffer per thread reused per geometry
    numbers = rng.choice([1, 6, 8], size=70)
    pos = rng.uniform(-5, 5, size=(2, 70, 3))
    I, J = ops.debye_jacobian(numbers, torch.tensor(pos), q, signal="molecular")
    for b in range(2):
        assert rel(J[b].numpy(), ref_jacobian(numbers, pos[b], q)) < 1e-11
        assert rel(I[b].numpy(), ref_signal(numbers, pos[b], q, kind="molecular")) < 1e-11


def test_jacobian_of_coincident_atoms_is_finite():
    pos = torch.tensor([[0.0, 0, 0], [0.0, 0, 0], [1.2, 0.3, 0]], dtype=torch.float64)
    I, J = ops.debye_jacobian([6, 8, 1], pos, Q, signal="molecular")
    assert torch.isfinite(J).all()
    assert torch.allclose(I, ops.debye([6, 8, 1], pos, Q, signal="molecular"), rtol=1e-13, atol=0)
    assert rel(J.numpy(), ref_jacobian([6, 8, 1], pos.numpy(), Q)) < 1e-12


def test_jacobian_of_the_atomic_signal_is_zero(seed_molecules):
    atoms = seed_molecules["CHD"]
    I, J = ops.debye_jacobian(atoms.numbers, torch.tensor(atoms.positions), Q, signal="atomic")
    assert float(J.abs().max()) == 0.0 and rel(I.numpy(), ref_signal(atoms.numbers, atoms.positions, Q,
                                                                       kind="atomic")) < 1e-12


molecules = st.integers(2, 10).flatmap(lambda n: st.tuples(
    st.lists(st.sampled_from([1, 6, 7, 8, 16, 17]), min_size=n, max_size=n),
    arrays(np.float64, (n, 3), elements=st.floats(-5, 5, allow_nan=False, allow_infinity=False)),
))


@settings(max_examples=50, deadline=None)
@given(molecules)
def test_jacobian_has_no_net_force_or_torque(mol):
    # I(q) is invariant under translations and rotations: sum_a dI/dx_a = 0 and sum_a x_a x dI/dx_a = 0
    numbers, pos = mol
    _, J = ops.debye_jacobian(numbers, torch.tensor(pos), Q, signal="molecular")
    J = J.numpy()
    scale = np.abs(J).max() * max(1.0, np.abs(pos).max()) * len(numbers) + 1e-300
    assert np.abs(J.sum(1)).max() < 1e-11 * scale
    assert np.abs(np.cross(pos[None], J).sum(1)).max() < 1e-11 * scale


# --- the Gauss–Newton step ----------------------------------------------------------------------------------


def _subspace(atoms, M, rng):
    """(3N, M) orthonormal internal directions (no rigid translation or rotation, which leave I unchanged),
    scaled to 0.05 Å."""
    x = atoms.positions - atoms.positions.mean(0)
    rigid = [np.tile(e, len(x)) for e in np.eye(3)] + [np.cross(e, x).ravel() for e in np.eye(3)]
    R, _ = np.linalg.qr(np.stack(rigid, 1))
    g = rng.standard_normal((3 * len(x), M))
    q, _ = np.linalg.qr(g - R @ (R.T @ g))
    return 0.05 * q


def _ref_step(numbers, x, q, L, y, w, z):
    J = ref_jacobian(numbers, x, q).reshape(q.size, -1)
    A = J @ L
    I = ref_signal(numbers, x, q, kind="molecular")
    return np.linalg.solve(A.T @ (w[:, None] * A) + np.eye(L.shape[1]), A.T @ (w * (y - I)) - z), I


# "mixed" rounds the projection A = J L to float32 (relative 6e-8 per entry); the step then moves by ~1e-7 of itself
# for weak weights and ~1e-6 for the weights of 0.5 % noise (measured 7e-8 to 3e-6 here), the pattern not at all
@pytest.mark.parametrize("device", available_devices())
@pytest.mark.parametrize("q", [Q, Q_IRREGULAR], ids=["uniform", "irregular"])
@pytest.mark.parametrize("M", [1, 5, 7, 12, 48])  # tiles: 4 (float64) and 6 (float32) directions, 2 (Gram matrix)
@pytest.mark.parametrize("precision, weak_tol, noise_tol", [("float64", 1e-8, 1e-8), ("mixed", 1e-6, 3e-5)])
def test_gauss_newton_matches_reference(seed_molecules, rng, device, q, M, precision, weak_tol, noise_tol):
    atoms = seed_molecules["NMM"]
    B = 3
    L = _subspace(atoms, M, rng)
    z = rng.standard_normal((B, M))
    x = atoms.positions[None] + (z @ L.T).reshape(B, -1, 3)
    y0 = ref_signal(atoms.numbers, atoms.positions, q, kind="molecular")
    y = y0 * (1 + 0.005 * rng.standard_normal((B, q.size)))
    weights = [(weak_tol, 1.0 / (0.01 * np.abs(y) + 1.0) ** 2),                               # weak: the prior leads
               (noise_tol, 1.0 / (0.005 * np.maximum(np.abs(y), 0.3 * np.abs(y0).mean())) ** 2)]  # 0.5 % noise
    for tol, w in weights:
        dz, I = ops.debye_gauss_newton(atoms.numbers, torch.tensor(x, device=device), q,
                                       torch.tensor(L, device=device), y, w, z, precision=precision)
        assert dz.shape == (B, M) and I.shape == (B, q.size) and dz.dtype == torch.float64
        err = [rel(dz[b].cpu().numpy(), _ref_step(atoms.numbers, x[b], q, L, y[b], w[b], z[b])[0]) for b in range(B)]
        assert max(err) < tol
        if precision == "mixed" and M > 1:
            assert max(err) > 1e-11   # the float32 projection was used
        for b in range(B):
            assert rel(I[b].cpu().numpy(), ref_signal(atoms.numbers, x[b], q, kind="molecular")) < 1e-12


def test_gauss_newton_recovers_a_small_displacement(seed_molecules, rng):
    # noise-free data from x0 + L z_true, weights far above the prior: one step from z = 0 lands on z_true up to
    # the second-order term, so the relative error falls in proportion to |z_true|
    atoms = seed_molecules["CHD"]
    L = _subspace(atoms, 8, rng)
    x0 = torch.tensor(atoms.positions)
    direction = rng.standard_normal(8)
    err = []
    for scale in (0.02, 0.002):
        z_true = scale * direction
        y = ops.debye(atoms.numbers, x0 + torch.tensor((L @ z_true).reshape(-1, 3)), Q, signal="molecular")
        dz, _ = ops.debye_gauss_newton(atoms.numbers, x0, Q, torch.tensor(L), y, torch.full((Q.size,), 1e8))
        err.append(np.abs(dz.numpy() - z_true).max() / np.abs(z_true).max())
    assert err[0] < 0.02
    assert 0.05 < err[1] / err[0] < 0.2


def test_gauss_newton_limits(seed_molecules, rng):
    atoms = seed_molecules["DT"]
    L = torch.tensor(_subspace(atoms, 6, rng))
    x = torch.tensor(atoms.positions)
    I = ops.debye(atoms.numbers, x, Q, signal="molecular")
    z = torch.tensor(rng.standard_normal(6))
    # no weight on the data: the prior alone, dz = -z
    dz, _ = ops.debye_gauss_newton(atoms.numbers, x, Q, L, I, torch.zeros(Q.size), z)
    assert torch.allclose(dz, -z, atol=1e-14)
    # data that the structure already fits, from the prior's centre: no step
    dz, _ = ops.debye_gauss_newton(atoms.numbers, x, Q, L, I, torch.ones(Q.size))
    assert float(dz.abs().max()) < 1e-10


@pytest.mark.parametrize("kwargs, match", [
    (dict(signal="atomic"), "signal 'atomic' does not depend on the positions"),
    (dict(modes=np.zeros((9, 2))), r"modes must be a \(3N, M\) tensor"),
    (dict(modes=torch.zeros(5, 2)), r"modes must be a \(3N, M\) tensor with 3N = 9, got \(5, 2\)"),
    (dict(target=np.zeros(7)), r"target must have shape \(30,\) or \(1, 30\), got \(1, 7\)"),
    (dict(weights=-np.ones(30)), "weights must be >= 0"),
    (dict(weights=np.full(30, np.nan)), "weights contains NaN or inf"),
    (dict(z=np.zeros(3)), r"z must have shape \(2,\) or \(1, 2\)"),
    (dict(target=np.full(30, np.inf)), "target contains NaN or inf"),
    (dict(modes=torch.full((9, 2), np.nan, dtype=torch.float64)), "modes contain NaN or inf"),
    (dict(modes=torch.zeros(9, 0, dtype=torch.float64)), r"modes must be a \(3N, M\) tensor"),
    (dict(precision="float32"), "precision must be 'float64' or 'mixed', got 'float32'"),
])
def test_gauss_newton_errors(kwargs, match):
    q = np.linspace(1, 5, 30)
    args = dict(numbers=[6, 8, 1], positions=torch.tensor([[0.0, 0, 0], [1.2, 0, 0], [0, 1.0, 0]]), q=q,
                modes=torch.zeros(9, 2, dtype=torch.float64), target=np.ones(30), weights=np.ones(30))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ops.debye_gauss_newton(**args)


def test_gauss_newton_skips_the_finite_check_when_asked():
    # a caller that checked its inputs may skip the scan: a NaN then comes back as a NaN step, not an error
    q = np.linspace(1, 5, 30)
    args = dict(numbers=[6, 8, 1], positions=torch.tensor([[0.0, 0, 0], [1.2, 0, 0], [0, 1.0, 0]]), q=q,
                modes=torch.eye(9, 2, dtype=torch.float64), target=np.full(30, np.nan), weights=np.ones(30))
    with pytest.raises(ValueError, match="target contains NaN or inf"):
        ops.debye_gauss_newton(**args)
    dz, I = ops.debye_gauss_newton(**args, check_finite=False)
    assert bool(torch.isnan(dz).all()) and bool(torch.isfinite(I).all())
