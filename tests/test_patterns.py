"""Detector patterns (xstructure.detector.patterns) against simulate() on the pixels' |q|, orientational quadrature and
Monte Carlo for aligned molecules, rotation averages of fixed orientations, and Poisson statistics."""

import ase.build
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy.spatial.transform import Rotation

import xstructure
from reference.debye import f_xray
from xstructure.detector.geometry import Geometry
from xstructure.detector.patterns import _fixed_intensity, anisotropic_components, simulate_detector

# 14336 pixels, more than the 4096-point q grid: the spline path.  q reaches 8.3 Å⁻¹.
XRAY = Geometry.simple((128, 112), pixel=1.2e-3, dist=0.05, energy_kev=15.0)
# 3 MeV electrons, q up to 9.5 Å⁻¹, cos³α differs from 1 by up to 6e-5.
ELECTRON = Geometry.simple((128, 112), pixel=2.5e-4, dist=3.0, electron_energy_kev=3000.0)
# 1024 pixels, fewer than the grid: computed directly.
SMALL = Geometry.simple((32, 32), pixel=2.5e-3, dist=0.05, energy_kev=15.0, center=(12.3, 17.8))

WATER = ase.build.molecule("H2O")
DIPOLE = np.array([0.3, 1.0, 0.2])


def p2(c):
    return 0.5 * (3 * c**2 - 1)


def p4(c):
    return (35 * c**4 - 30 * c**2 + 3) / 8


def amplitude_intensity(numbers, positions, qv):
    """|Σ_j f_j exp(i q·r_j)|² with the reference form factors; positions (..., N, 3), qv (K, 3)."""
    f = np.stack([f_xray(z, np.linalg.norm(qv, axis=1)) for z in numbers])          # (N, K)
    phase = positions @ qv.T                                                        # (..., N, K)
    return np.abs(np.sum(f * np.exp(1j * phase), axis=-2)) ** 2


def frame(v):
    """Rotation matrix whose third column is v̂."""
    v = v / np.linalg.norm(v)
    u = np.cross(v, [1.0, 0, 0] if abs(v[0]) < 0.9 else [0, 1.0, 0])
    u /= np.linalg.norm(u)
    return np.stack([u, np.cross(v, u), v], axis=1)


def aligned_rotations(d, e, power, n_c=24, n_phi=32, n_psi=32):
    """Quadrature over rotations R (molecule → lab) with R d̂ at angle β to ê, density ∝ cos^power β, uniform
    azimuth about ê and uniform spin about d̂: Gauss–Legendre in cos β, trapezoid in the two angles."""
    c, w = np.polynomial.legendre.leggauss(n_c)
    w = w * c**power
    C, PHI, PSI = (a.ravel() for a in np.meshgrid(c, 2 * np.pi * np.arange(n_phi) / n_phi,
                                                   2 * np.pi * np.arange(n_psi) / n_psi, indexing="ij"))
    W = np.repeat(w / w.sum(), n_phi * n_psi) / (n_phi * n_psi)
    z = np.array([0, 0, 1.0])
    R = (frame(e) @ Rotation.from_rotvec(np.outer(PHI, z)).as_matrix()
         @ Rotation.from_rotvec(np.outer(np.arccos(C), [0, 1.0, 0])).as_matrix()
         @ Rotation.from_rotvec(np.outer(PSI, z)).as_matrix() @ frame(d).T)
    return R, W


def corrections(g):
    return g.polarization(0.99) * g.solid_angle


# ---------------------------------------------------------------------------------------------- isotropic
@pytest.mark.parametrize("geometry", [XRAY, ELECTRON, SMALL], ids=["xray", "electron", "direct"])
@pytest.mark.parametrize("kind", ["total", "molecular", "sM"])
def test_isotropic_equals_simulate_on_pixel_q(geometry, kind):
    mol = xstructure.molecule("NMM")
    got = simulate_detector(mol, geometry, signal=kind)
    ref = xstructure.simulate(mol, geometry.q.ravel(), probe=geometry.probe, signal=kind,
                              energy_kev=geometry.electron_energy_kev).reshape(geometry.shape)
    if geometry.probe == "xray" and kind != "sM":
        ref = ref * corrections(geometry)
    assert got.shape == geometry.shape and got.dtype == np.float64
    if kind == "total":
        assert np.max(np.abs(got / ref - 1)) < 1e-6
    else:
        assert np.max(np.abs(got - ref)) < 1e-6 * np.max(np.abs(ref))


def test_polarization_and_solid_angle_switches():
    plain = simulate_detector(WATER, SMALL, polarization=None, solid_angle=False)
    ref = xstructure.simulate(WATER, SMALL.q.ravel()).reshape(SMALL.shape)
    np.testing.assert_allclose(plain, ref, rtol=1e-12)
    vertical = simulate_detector(WATER, SMALL, polarization=0.9, polarization_offset=np.pi / 2, solid_angle=False)
    np.testing.assert_allclose(vertical, ref * SMALL.polarization(-0.9), rtol=1e-12)


# ---------------------------------------------------------------------------------------------- aligned
@pytest.mark.parametrize("power, a2, a4", [(2, 0.4, 0.0), (4, 4 / 7, 8 / 63)], ids=["cos2", "cos4"])
@pytest.mark.parametrize("axis", [(1.0, 0, 0), (0, 0.6, 0.8)], ids=["x", "yz"])
def test_aligned_pixels_match_orientational_quadrature(power, a2, a4, axis):
    """cos^2 and cos^4 densities are exactly the l ≤ 4 series: <P2>, <P4> = 2/5, 0 and 4/7, 8/63."""
    g = Geometry.simple((96, 80), pixel=1.5e-3, dist=0.05, energy_kev=15.0)
    pos = WATER.positions
    img = simulate_detector(WATER, g, orientation="aligned", axis=axis, dipole=DIPOLE, p2=a2, p4=a4,
                            polarization=None, solid_angle=False)
    pixels = np.random.default_rng(3).integers(0, [96, 80], size=(12, 2))
    qv = g.q_vectors[pixels[:, 0], pixels[:, 1]]
    R, W = aligned_rotations(DIPOLE, np.asarray(axis), power)
    avg = W @ amplitude_intensity(WATER.numbers, pos @ R.transpose(0, 2, 1), qv)
    got = img[pixels[:, 0], pixels[:, 1]]
    np.testing.assert_allclose(got, avg, rtol=1e-8)
    iso = simulate_detector(WATER, g, polarization=None, solid_angle=False)[pixels[:, 0], pixels[:, 1]]
    assert np.max(np.abs(avg / iso - 1)) > 1e-2    # the alignment is visible at these pixels


def test_aligned_components_match_monte_carlo():
    """Sample cos²β photoselection directly and average |F(q)|² at a few q vectors."""
    rng = np.random.default_rng(7)
    mol, d, e = WATER, DIPOLE / np.linalg.norm(DIPOLE), np.array([1.0, 0.0, 0.0])
    M = 40000
    u = rng.uniform(-1, 1, M)
    cos_b = np.sign(u) * np.abs(u) ** (1 / 3)                        # density ∝ cos²β on [-1, 1]
    z = [0, 0, 1.0]
    R = (frame(e) @ Rotation.from_rotvec(np.outer(rng.uniform(0, 2 * np.pi, M), z)).as_matrix()
         @ Rotation.from_rotvec(np.outer(np.arccos(cos_b), [0, 1.0, 0])).as_matrix()
         @ Rotation.from_rotvec(np.outer(rng.uniform(0, 2 * np.pi, M), z)).as_matrix() @ frame(d).T)
    assert abs(np.mean((R @ d @ e) ** 2) - 0.6) < 0.01
    qv = np.array([[2.0, 0, 0], [0, 2.0, 0], [1.2, 1.2, 1.0], [3.5, 0.5, -0.3], [0.4, 0.2, 2.9]])
    samples = amplitude_intensity(mol.numbers, mol.positions @ R.transpose(0, 2, 1), qv)
    mean, sem = samples.mean(0), samples.std(0) / np.sqrt(M)
    qm = np.linalg.norm(qv, axis=1)
    I0, I2, I4 = anisotropic_components(mol, qm, dipole=d)
    c = qv @ e / qm
    pred = I0 + p2(c) * I2 + p4(c) * I4
    assert np.all(np.abs(mean - pred) < 4.5 * sem)
    assert np.any(np.abs(mean - I0) > 10 * sem)     # the test could tell aligned from isotropic


def test_zero_alignment_is_isotropic():
    mol = xstructure.molecule("NMM")
    iso = simulate_detector(mol, XRAY)
    flat = simulate_detector(mol, XRAY, orientation="aligned", dipole=DIPOLE, p2=0.0, p4=0.0)
    np.testing.assert_allclose(flat, iso, rtol=1e-12)
    aligned = simulate_detector(mol, XRAY, orientation="aligned", dipole=DIPOLE)
    assert np.max(np.abs(aligned / iso - 1)) > 1e-2


def test_anisotropic_components_shapes_and_limits():
    mol = xstructure.molecule("NMM")
    q = np.linspace(0.0, 10.0, 201)
    I0, I2, I4 = anisotropic_components(mol, q, dipole=DIPOLE, p2=0.3, p4=0.1)
    assert I0.shape == I2.shape == I4.shape == q.shape
    np.testing.assert_allclose(I0, xstructure.simulate(mol, q), rtol=1e-12)
    assert I2[0] == 0.0 and I4[0] == 0.0 and np.all(np.isfinite(I2))
    # the components scale with the moments
    J0, J2, J4 = anisotropic_components(mol, q, dipole=DIPOLE, p2=0.6, p4=-0.2)
    np.testing.assert_allclose(J2, 2 * I2, rtol=1e-12, atol=0)
    np.testing.assert_allclose(J4, -2 * I4, rtol=1e-12, atol=0)
    # batches; a coincident pair (r = 0) contributes nothing for l > 0
    pos = np.stack([mol.positions, mol.positions * 1.05])
    B0, B2, B4 = anisotropic_components((mol.numbers, pos), q, dipole=DIPOLE, p2=0.3, p4=0.1)
    assert B2.shape == (2, q.size)
    np.testing.assert_allclose(B2[0], I2, rtol=1e-12, atol=0)
    two = anisotropic_components((["C", "C"], np.zeros((2, 3))), q, dipole=DIPOLE)
    assert np.all(two[1] == 0) and np.all(two[2] == 0)


# ---------------------------------------------------------------------------------------------- fixed
def test_fixed_matches_amplitude_sum():
    mol = xstructure.molecule("NMM")
    pos = mol.positions @ Rotation.random(random_state=2).as_matrix().T
    img = simulate_detector((mol.numbers, pos), XRAY, orientation="fixed")
    ref = amplitude_intensity(mol.numbers, pos, XRAY.q_vectors.reshape(-1, 3)).reshape(XRAY.shape)
    np.testing.assert_allclose(img, ref * corrections(XRAY), rtol=1e-9)


def test_fixed_rotation_average_is_isotropic():
    M = 3000
    R = Rotation.random(M, random_state=11).as_matrix()
    frames = simulate_detector((WATER.numbers, WATER.positions @ R.transpose(0, 2, 1)), SMALL,
                               orientation="fixed")
    iso = simulate_detector(WATER, SMALL)
    mean, sem = frames.mean(0), frames.std(0) / np.sqrt(M)
    assert np.all(np.abs(mean - iso) < 5 * sem)
    assert np.mean(np.abs(mean / iso - 1)) < 5e-3


def test_friedel_symmetry():
    mol = xstructure.molecule("NMM")
    qv = np.random.default_rng(4).normal(size=(50, 3)) * 3
    plus = _fixed_intensity(mol.numbers, mol.positions[None], qv, "xray", None)
    minus = _fixed_intensity(mol.numbers, mol.positions[None], -qv, "xray", None)
    np.testing.assert_allclose(plus, minus, rtol=1e-10)
    a = simulate_detector(mol, XRAY, orientation="fixed")
    b = simulate_detector((mol.numbers, -mol.positions), XRAY, orientation="fixed")
    np.testing.assert_allclose(a, b, rtol=1e-10)
    c = simulate_detector((mol.numbers, mol.positions * [-1, 1, 1]), XRAY, orientation="fixed")
    assert np.max(np.abs(c / a - 1)) > 1e-2          # a mirror image is not the same pattern


@settings(max_examples=20, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=3, max_size=3), st.sampled_from(["fixed", "isotropic", "aligned"]))
def test_translation_invariance(shift, orientation):
    dipole = DIPOLE if orientation == "aligned" else None
    a = simulate_detector(WATER, SMALL, orientation=orientation, dipole=dipole)
    b = simulate_detector((WATER.numbers, WATER.positions + shift), SMALL, orientation=orientation, dipole=dipole)
    np.testing.assert_allclose(a, b, rtol=1e-9)


# ---------------------------------------------------------------------------------------------- batches, inputs
def test_batches_and_mixed_lists():
    co2 = ase.build.molecule("CO2")
    out = simulate_detector([WATER, co2, WATER], SMALL, orientation="fixed")
    assert out.shape == (3, *SMALL.shape)
    np.testing.assert_array_equal(out[1], simulate_detector(co2, SMALL, orientation="fixed"))
    np.testing.assert_array_equal(out[2], out[0])
    assert not np.allclose(out[0], out[1])


def test_torch_positions():
    torch = pytest.importorskip("torch")
    pos = torch.tensor(WATER.positions, dtype=torch.float32)
    got = simulate_detector((WATER.numbers, pos), SMALL)
    ref = simulate_detector((WATER.numbers, WATER.positions.astype(np.float32).astype(np.float64)), SMALL)
    assert isinstance(got, np.ndarray) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, rtol=1e-12)


# ---------------------------------------------------------------------------------------------- noise
def test_poisson_noise_statistics():
    g = Geometry.simple((24, 24), pixel=3e-3, dist=0.05, energy_kev=15.0)
    M, photons, gain, bg = 400, 2.0e4, 2.5, 0.3
    clean = simulate_detector(WATER, g)
    lam = clean + bg * clean.mean()
    lam *= photons / lam.sum()
    pos = np.broadcast_to(WATER.positions, (M, 3, 3))
    frames = simulate_detector((WATER.numbers, pos), g, photons=photons, background=bg, gain=gain, rng=5)
    counts = frames / gain
    assert frames.dtype == np.float64 and np.array_equal(counts, np.round(counts))
    assert np.all(np.abs(counts.mean(0) - lam) < 5 * np.sqrt(lam / M))
    assert abs(np.mean(counts.var(0, ddof=1) / lam) - 1) < 0.03            # Poisson: variance = mean
    assert np.all(np.abs(counts.sum((1, 2)) - photons) < 5 * np.sqrt(photons))
    again = simulate_detector((WATER.numbers, pos[:2]), g, photons=photons, background=bg, gain=gain, rng=5)
    other = simulate_detector((WATER.numbers, pos[:2]), g, photons=photons, background=bg, gain=gain, rng=6)
    np.testing.assert_array_equal(again, frames[:2])
    assert not np.array_equal(other, again)


def test_background_without_noise():
    clean = simulate_detector(WATER, SMALL)
    with_bg = simulate_detector(WATER, SMALL, background=0.25, gain=3.0)
    np.testing.assert_allclose(with_bg, clean + 0.25 * clean.mean(), rtol=1e-12)
    np.testing.assert_allclose(with_bg.sum(), 1.25 * clean.sum(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, match", [
    (dict(orientation="random"), "unknown orientation"),
    (dict(orientation="aligned"), "needs dipole"),
    (dict(orientation="fixed", dipole=(0, 0, 1)), "dipole applies"),
    (dict(orientation="aligned", dipole=(0, 0, 0)), "dipole must not be the zero vector"),
    (dict(orientation="aligned", dipole=(0, 0, 1), axis=(0, 0, 0)), "axis must not be the zero vector"),
    (dict(orientation="aligned", dipole=(0, 1)), "dipole must be a 3-vector"),
    (dict(orientation="aligned", dipole=(0, np.nan, 1)), "dipole must be finite"),
    (dict(orientation="aligned", dipole=(0, 0, 1), p2=1.5), "p2"),
    (dict(orientation="aligned", dipole=(0, 0, 1), p2=-0.6), "p2"),
    (dict(orientation="aligned", dipole=(0, 0, 1), p4=-0.5), "p4"),
    (dict(photons=-1), "photons"),
    (dict(photons=100, signal="molecular"), "signal"),
    (dict(background=-0.1), "background"),
    (dict(gain=float("nan")), "gain"),
    (dict(signal="intensity"), "unknown signal"),
    (dict(probe="neutron"), "unknown probe"),
    (dict(polarization=1.5), "polarization factor"),
    (dict(probe="xray", energy_kev=100.0), "energy_kev"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate_detector(WATER, SMALL, **kwargs)


def test_bad_structures_and_geometry():
    with pytest.raises(ValueError, match="geometry"):
        simulate_detector(WATER, SMALL.q)
    with pytest.raises(ValueError, match="NaN"):
        simulate_detector((WATER.numbers, WATER.positions * np.nan), SMALL, orientation="fixed")
    with pytest.raises(ValueError, match="dipole"):
        anisotropic_components(WATER, [1.0, 2.0], dipole=None)


def test_differentiable_detector_pattern_matches_simulate_and_has_gradients():
    torch = pytest.importorskip("torch")
    import xstructure

    g = xstructure.Geometry.simple((24, 20), pixel=400e-6, dist=0.05, energy_kev=12.0)
    mol = xstructure.molecule("H2O")
    pos = torch.tensor(mol.positions, dtype=torch.float64, requires_grad=True)
    for orientation in ("isotropic", "fixed"):
        img = xstructure.ops.detector_pattern(mol.numbers, pos, g, orientation=orientation)
        ref = xstructure.simulate(mol, g, orientation=orientation)
        np.testing.assert_allclose(img.detach().numpy(), ref, rtol=1e-9)
        w = torch.rand(g.shape, dtype=torch.float64)
        assert torch.autograd.gradcheck(
            lambda p: (xstructure.ops.detector_pattern(mol.numbers, p, g, orientation=orientation) * w).sum(),
            (pos,), eps=1e-6, atol=1e-6)
