"""xstructure.ops.kabsch_rmsd: values, analytic gradients (gradcheck), finiteness, broadcasting, opcheck."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import xstructure  # noqa: E402
from xstructure import _ops  # noqa: E402
from conftest import available_devices  # noqa: E402
from test_rmsd import cases, svd_rmsd, CASE_NAMES  # noqa: E402


@pytest.mark.parametrize("device", available_devices())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_values(device, dtype, rng):
    ref = xstructure.molecule("NMM").positions
    frames = ref + 0.1 * rng.standard_normal((6, 18, 3))
    a = torch.tensor(ref, dtype=dtype, device=device)
    b = torch.tensor(frames, dtype=dtype, device=device)
    got = xstructure.ops.kabsch_rmsd(a, b)
    assert got.shape == (6,) and got.dtype == dtype and got.device.type == device
    expect = [svd_rmsd(a.cpu().double().numpy(), f) for f in b.cpu().double().numpy()]
    np.testing.assert_allclose(got.cpu().double().numpy(), expect, atol=1e-6 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("reflection", [False, True])
def test_gradients_finite_on_every_case(name, reflection):
    a, b = cases(np.random.default_rng(1))[name]
    ta = torch.tensor(a, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    r = xstructure.ops.kabsch_rmsd(ta, tb, reflection=reflection)
    assert float(r.detach()) == pytest.approx(svd_rmsd(a, b, reflection), abs=1e-10)
    r.backward()
    assert torch.isfinite(ta.grad).all() and torch.isfinite(tb.grad).all()


# Not every case is a differentiable point: a collinear structure against a non-collinear one leaves the
# rotation about the axis free, and moving an atom off the axis changes the RMSD like |eps| ("co2"); with
# reflection=True a planar structure ties its proper and improper superpositions, another kink
# ("planar_vs_3d").  There gradcheck cannot pass for any implementation; gradients are still finite (above).
# The mirror image with reflection=True is an exact match (RMSD 0): the kink of the norm, left out too.
@pytest.mark.parametrize("name, reflection", [(n, r) for n in ["random", "planar", "co2_linear_both", "hcn",
                                                                  "near_0.01", "diatomic"]
                                              for r in (False, True)] + [("planar_vs_3d", False), ("mirror", False)])
def test_gradcheck_float64(name, reflection):
    a, b = cases(np.random.default_rng(1))[name]
    ta = torch.tensor(a, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    fn = lambda x, y: xstructure.ops.kabsch_rmsd(x, y, reflection=reflection)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (ta, tb), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradcheck_weighted_batched_broadcast(rng):
    ref = torch.tensor(rng.standard_normal((9, 3)), requires_grad=True)
    frames = torch.tensor(rng.standard_normal((4, 9, 3)), requires_grad=True)
    w = rng.uniform(0.5, 2.0, 9)
    fn = lambda x, y: xstructure.ops.kabsch_rmsd(x, y, weights=w)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (ref, frames), eps=1e-6, atol=1e-6, rtol=1e-5)
    fn2 = lambda x, y: xstructure.ops.kabsch_rmsd(x, y, align=False)  # noqa: E731
    assert torch.autograd.gradcheck(fn2, (ref, frames), eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("reflection", [False, True])
def test_exact_matches_give_zero_gradient(reflection):
    nmm = xstructure.molecule("NMM").positions
    a = torch.tensor(nmm, requires_grad=True)
    c, s = np.cos(0.7), np.sin(0.7)
    rot_z = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    other = nmm * [-1.0, 1.0, 1.0] if reflection else nmm @ rot_z.T + 2.0
    r = xstructure.ops.kabsch_rmsd(a, torch.tensor(other), reflection=reflection)
    r.backward()
    assert float(r.detach()) < 1e-12 and torch.equal(a.grad, torch.zeros_like(a.grad))


def test_loss_decreases_under_gradient_descent(rng):
    target = torch.tensor(xstructure.molecule("DT").positions)
    x = (target + 0.5 * torch.tensor(rng.standard_normal((14, 3)))).requires_grad_()
    opt = torch.optim.SGD([x], lr=0.5)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = xstructure.ops.kabsch_rmsd(x, target)
        first = first if first is not None else float(loss.detach())
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.2 * first


def test_opcheck(rng):
    a = torch.tensor(rng.standard_normal((1, 7, 3)), requires_grad=True)
    b = torch.tensor(rng.standard_normal((3, 7, 3)), requires_grad=True)
    torch.library.opcheck(_ops.kabsch_rmsd, (a, b, None, True, False))
    torch.library.opcheck(_ops.kabsch_rmsd, (b, b.detach() + 0.1, torch.ones(7, dtype=torch.float64), True, True))


def test_rmsd_routes_torch_through_the_op(rng):
    a = torch.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    b = torch.tensor(rng.standard_normal((5, 3)))
    r = xstructure.rmsd(a, b)
    assert isinstance(r, torch.Tensor) and r.requires_grad
    r.backward()
    assert a.grad is not None


def test_errors():
    with pytest.raises(ValueError, match="mismatch"):
        xstructure.ops.kabsch_rmsd(torch.zeros(3, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="NaN or inf"):
        xstructure.ops.kabsch_rmsd(torch.full((3, 3), float("nan")), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="torch tensors"):
        xstructure.ops.kabsch_rmsd(np.zeros((3, 3)), np.zeros((3, 3)))
