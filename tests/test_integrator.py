"""Radial averaging: against pyFAI, against a numpy reference, invariants, dtypes, devices, bad input."""

import numpy as np
from reference.radial import reference
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xstructure
from xstructure import Geometry, Integrator, radial_average

from conftest import available_devices

TILTED = dict(dist=0.1, poni1=0.012, poni2=0.009, rot1=0.05, rot2=-0.03, rot3=0.1, pixel1=100e-6, pixel2=110e-6,
              shape=(240, 200), wavelength=1e-10)


@pytest.fixture(scope="module")
def geometry():
    return Geometry(**TILTED)


@pytest.fixture(scope="module")
def ai(geometry):
    pytest.importorskip("pyFAI")
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    g = geometry
    det = Detector(pixel1=g.pixel1, pixel2=g.pixel2, max_shape=g.shape)
    return AzimuthalIntegrator(dist=g.dist, poni1=g.poni1, poni2=g.poni2, rot1=g.rot1, rot2=g.rot2, rot3=g.rot3,
                               detector=det, wavelength=g.wavelength)


@pytest.fixture(scope="module")
def frame(geometry):
    rng = np.random.default_rng(7)
    # a ring pattern with Poisson noise, so that bins differ
    return rng.poisson(200 + 150 * np.cos(40 * geometry.q) ** 2).astype(np.float32)



@pytest.mark.parametrize("unit", ["q_A^-1", "2th_deg", "r_mm", "q_nm^-1"])
@pytest.mark.parametrize("method", [("no", "csr", "cython"), ("no", "histogram", "cython")])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_pyfai(geometry, ai, frame, unit, method, masked):
    mask = None
    if masked:
        mask = np.zeros(geometry.shape, bool)
        mask[:30] = True
        mask[100:110, 50:150] = True
    kw = dict(unit=unit, mask=mask, polarization=0.95)
    ours = Integrator(geometry, 500, **kw).integrate(frame)
    # pyFAI's histogram engine spans all pixels, its CSR engine the unmasked ones: give the range explicitly
    # to the histogram engine when masked (our default follows CSR).
    radial_range = None
    if masked and method[1] == "histogram":
        it = Integrator(geometry, 500, **kw)
        radial_range = (it.bin_edges[0], it.bin_edges[-1])
        ours = Integrator(geometry, 500, radial_range=radial_range, **kw).integrate(frame)
    theirs = ai.integrate1d(frame, 500, unit=unit, method=method, mask=mask, polarization_factor=0.95,
                            correctSolidAngle=True, error_model="poisson", radial_range=radial_range)
    np.testing.assert_allclose(ours.radial, theirs.radial, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ours.count, theirs.count)
    ok = theirs.count >= 10
    assert ok.sum() > 100
    np.testing.assert_allclose(ours.intensity[ok], theirs.intensity[ok], rtol=1e-5)
    np.testing.assert_allclose(ours.sigma[ok], theirs.sigma[ok], rtol=1e-3)
    np.testing.assert_allclose(ours.sum_normalization[ok], theirs.sum_normalization[ok], rtol=1e-5)


def test_azimuthal_error_model_matches_pyfai_reference(geometry, ai, frame):
    """pyFAI's reference (Python CSR) engine computes Σ (x − ⟨x⟩w)² exactly, as we do.  (Its Cython engines
    use a one-pass update that differs from the exact sum by up to ~2e-3 relative.)"""
    ours = Integrator(geometry, 300, polarization=0.95, error_model="azimuthal").integrate(frame)
    ai.integrate1d(frame, 300, method=("no", "csr", "cython"), polarization_factor=0.95)  # builds the CSR map
    theirs = ai.integrate1d(frame, 300, method=("no", "csr", "python"), polarization_factor=0.95,
                            error_model="azimuthal")
    ok = theirs.count >= 10
    np.testing.assert_allclose(ours.sigma[ok], theirs.sigma[ok], rtol=1e-5)
    np.testing.assert_allclose(ours.std[ok], theirs.std[ok], rtol=1e-5)


def test_matches_numpy_reference_and_conserves_intensity(geometry, frame):
    mask = np.zeros(geometry.shape, bool)
    mask[::7, ::3] = True
    it = Integrator(geometry, 321, unit="2th_deg", mask=mask, solid_angle=False)
    res = it.integrate(frame)
    r, i, s, c = reference(frame, geometry, 321, unit="2th_deg", mask=mask)
    np.testing.assert_allclose(res.radial, r, rtol=1e-13)
    np.testing.assert_array_equal(res.count, c)
    np.testing.assert_allclose(res.intensity[c > 0], i[c > 0], rtol=1e-12)
    np.testing.assert_allclose(res.sigma[c > 0], s[c > 0], rtol=1e-12)
    assert np.all(res.intensity[c == 0] == 0)
    # total intensity: every unmasked pixel lands in exactly one bin
    assert res.sum_signal.sum() == pytest.approx(frame[~mask].astype(np.float64).sum(), rel=1e-12)
    assert res.count.sum() == (~mask).sum()


@settings(max_examples=25, deadline=None)
@given(value=st.floats(0.5, 1e4), npt=st.integers(1, 400), pol=st.one_of(st.none(), st.floats(-1, 1)))
def test_constant_corrected_image_is_flat(geometry, value, npt, pol):
    """An image equal to c × (solid angle × polarisation) integrates to c in every non-empty bin."""
    w = geometry.solid_angle * (geometry.polarization(pol) if pol is not None else 1.0)
    res = Integrator(geometry, npt, polarization=pol).integrate(value * w)
    nonempty = res.count > 0
    np.testing.assert_allclose(res.intensity[nonempty], value, rtol=1e-12)
    assert res.count.sum() == geometry.shape[0] * geometry.shape[1]


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.uint32, np.float32, np.float64, np.uint8, np.int16,
                                   np.int64])
def test_dtypes_agree(geometry, frame, dtype):
    img = np.clip(frame, 0, 250)
    ref = Integrator(geometry, 200).integrate(img.astype(np.float64))
    res = Integrator(geometry, 200).integrate(img.astype(dtype))
    np.testing.assert_allclose(res.intensity, ref.intensity, rtol=1e-12)
    np.testing.assert_array_equal(res.count, ref.count)


def test_stack_equals_loop_and_has_frame_axis(geometry, frame):
    rng = np.random.default_rng(3)
    stack = rng.poisson(50, (5, *geometry.shape)).astype(np.uint16)
    it = Integrator(geometry, 150, polarization=0.99, error_model="azimuthal")
    res = it.integrate(stack)
    assert res.intensity.shape == res.sigma.shape == res.count.shape == (5, 150)
    assert res.radial.shape == (150,)
    for k in range(5):
        one = it.integrate(stack[k])
        np.testing.assert_array_equal(one.count, res.count[k])
        np.testing.assert_allclose(one.intensity, res.intensity[k], rtol=1e-14)
        np.testing.assert_allclose(one.sigma, res.sigma[k], rtol=1e-12)
    radial, intensity, sigma = res  # unpacks like pyFAI's result
    assert intensity is res.intensity


def test_dynamic_mask_equals_static_mask(geometry, frame):
    """NaN, ±inf, negative, saturated and dummy pixels are left out as if statically masked."""
    img = frame.astype(np.float32).copy()
    rng = np.random.default_rng(11)
    bad = np.zeros(img.shape, bool)
    for value in (np.nan, np.inf, -np.inf, -1.0, 1e6, -2.0):
        where = rng.random(img.shape) < 0.01
        img[where] = value
        bad |= where
    dummy_px = (rng.random(img.shape) < 0.01) & ~bad
    img[dummy_px] = 4242.0
    bad |= dummy_px
    for em in ("poisson", "azimuthal"):
        dyn = Integrator(geometry, 200, polarization=0.9, saturation=1e5, dummy=4242.0, delta_dummy=0.5,
                         error_model=em).integrate(img)
        stat = Integrator(geometry, 200, polarization=0.9, mask=bad, error_model=em,
                          radial_range=(dyn.radial[0] - 0.5 * (dyn.radial[1] - dyn.radial[0]),
                                        dyn.radial[-1] + 0.5 * (dyn.radial[1] - dyn.radial[0])))
        ref = stat.integrate(np.where(bad, 0, img))
        np.testing.assert_array_equal(dyn.count, ref.count)
        np.testing.assert_allclose(dyn.intensity, ref.intensity, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dyn.sigma, ref.sigma, rtol=1e-9, atol=1e-12)
    # negatives are kept when asked
    keep = Integrator(geometry, 50, mask_negative=False).integrate(np.full(geometry.shape, -3.0))
    assert np.all(keep.intensity[keep.count > 0] < 0)


def test_radial_range_and_azimuth_range(geometry, frame):
    full = Integrator(geometry, 100)
    lo, hi = full.radial[10], full.radial[60]
    res = Integrator(geometry, 100, radial_range=(lo, hi)).integrate(frame)
    top = hi * (1 + np.finfo(np.float32).eps)  # pyFAI's upper edge
    np.testing.assert_allclose(res.radial[[0, -1]], [lo + (top - lo) / 200, top - (top - lo) / 200], rtol=1e-12)
    q = geometry.q
    assert res.count.sum() == np.count_nonzero((q >= lo) & (q <= top))
    half = Integrator(geometry, 100, azimuth_range=(-180, 0)).integrate(frame)
    assert half.count.sum() == np.count_nonzero(geometry.chi <= 0)


@pytest.mark.parametrize("device", available_devices())
def test_torch_and_cuda_frames(geometry, frame, device):
    torch = pytest.importorskip("torch")
    stack = np.stack([frame, frame[::-1, ::-1].copy()])
    ref = Integrator(geometry, 250, polarization=0.99).integrate(stack)
    for em in ("poisson", "azimuthal", None):
        it = Integrator(geometry, 250, polarization=0.99, error_model=em)
        res = it.integrate(torch.as_tensor(stack, device=device))
        assert isinstance(res.intensity, torch.Tensor) and res.intensity.device.type == device
        np.testing.assert_allclose(res.intensity.cpu().numpy(), ref.intensity, rtol=1e-5)
        np.testing.assert_array_equal(res.count.cpu().numpy(), ref.count)
        if em == "poisson":
            np.testing.assert_allclose(res.sigma.cpu().numpy(), ref.sigma, rtol=1e-5)


def test_radial_average_reproduces_simulate(seed_molecules):
    """A noiseless isotropic pattern drawn on the detector averages back to simulate's I(q)."""
    g = Geometry.simple((512, 512), pixel=100e-6, dist=0.08, energy_kev=12.0)
    mol = seed_molecules["NMM"]
    image = xstructure.simulate(mol, g.q.ravel()).reshape(g.shape) * g.solid_angle * g.polarization(0.99)
    res = radial_average(image, g, 300, polarization=0.99)
    ok = res.count >= 50
    # compare at each bin's mean pixel q (bins are not sampled uniformly near the centre)
    qbar = np.bincount(Integrator(g, 300).pixel_bin.ravel(), g.q.ravel(), 300) / np.maximum(res.count, 1)
    expected = xstructure.simulate(mol, qbar[ok])
    rel = np.abs(res.intensity[ok] - expected) / expected
    assert rel.max() < 1e-3, rel.max()


def test_legendre_recovers_components():
    g = Geometry.simple((400, 400), pixel=100e-6, dist=0.06, energy_kev=10.0)
    q = g.q
    i0 = lambda x: 1000 * np.exp(-x / 3) + 50  # noqa: E731
    i2 = lambda x: -200 * np.sin(2 * x) * np.exp(-x / 4)  # noqa: E731
    e = np.array([1.0, 0.0, 0.0])
    u = (g.q_vectors @ e) / np.where(q > 0, q, 1)
    img = (i0(q) + i2(q) * 0.5 * (3 * u**2 - 1)) * g.solid_angle
    it = Integrator(g, 300)
    leg = it.legendre(img, axis=e, orders=(0, 2))
    ok = leg.count >= 100
    # the bin's components are those of the pixels' mean q, to the bin-width curvature
    qbar = np.bincount(it.pixel_bin.ravel()[it.pixel_bin.ravel() >= 0], q.ravel()[it.pixel_bin.ravel() >= 0],
                       300) / np.maximum(leg.count, 1)
    np.testing.assert_allclose(leg[0][ok], i0(qbar[ok]), rtol=1e-3)
    big = ok & (np.abs(i2(qbar)) > 20)
    np.testing.assert_allclose(leg[2][big], i2(qbar[big]), rtol=1e-2)
    # order 0 alone is integrate()'s mean
    only0 = it.legendre(img, orders=(0,))
    np.testing.assert_allclose(only0[0][ok], it.integrate(img).intensity[ok], rtol=1e-10)


def test_bad_input(geometry, frame):
    it = Integrator(geometry, 100)
    with pytest.raises(ValueError, match=r"frames have shape \(10, 10\); expected \(240, 200\)"):
        it.integrate(np.zeros((10, 10)))
    with pytest.raises(ValueError, match="frames have shape"):
        it.integrate(np.zeros((2, 3, 240, 200)))
    with pytest.raises(ValueError, match="leaves no pixel"):
        Integrator(geometry, 100, mask=np.ones(geometry.shape, bool))
    with pytest.raises(ValueError, match="mask has shape"):
        Integrator(geometry, 100, mask=np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="no unmasked pixel lies in radial_range"):
        Integrator(geometry, 100, radial_range=(500, 600))
    with pytest.raises(ValueError, match="unknown radial unit"):
        Integrator(geometry, 100, unit="furlongs")
    with pytest.raises(ValueError, match="npt"):
        Integrator(geometry, 0)
    with pytest.raises(ValueError, match="error_model"):
        Integrator(geometry, 10, error_model="gaussian")
    with pytest.raises(TypeError, match="dtype"):
        it.integrate(np.zeros(geometry.shape, dtype=complex))
    with pytest.raises(TypeError, match="Geometry"):
        Integrator("setup.poni", 100)


def test_legendre_of_simulated_photoselected_pattern(seed_molecules):
    """simulate(..., orientation='aligned') on a detector, decomposed about the pump polarisation, gives back
    the I0 and I2 of anisotropic_components within 1%."""
    from xstructure.detector.patterns import anisotropic_components

    g = Geometry.simple((400, 400), pixel=100e-6, dist=0.05, energy_kev=12.0)
    mol = seed_molecules["CHD"]
    dipole = mol.get_positions()[1] - mol.get_positions()[4]
    axis = (0.0, 1.0, 0.0)
    img = xstructure.simulate(mol, g, orientation="aligned", dipole=dipole, axis=axis, p2=0.4, polarization=0.99)
    it = Integrator(g, 250, polarization=0.99)
    leg = it.legendre(img, axis=axis, orders=(0, 2))
    ok = leg.count >= 100
    used = it.pixel_bin.ravel() >= 0
    qbar = np.bincount(it.pixel_bin.ravel()[used], g.q.ravel()[used], 250) / np.maximum(leg.count, 1)
    i0, i2, _ = anisotropic_components(mol, qbar[ok], dipole=dipole, p2=0.4)
    np.testing.assert_allclose(leg[0][ok], i0, rtol=1e-2)
    scale = np.abs(i2).max()
    assert np.max(np.abs(leg[2][ok] - i2)) < 1e-2 * scale
    # and it is anisotropic: a zero I2 would fail the line above
    assert scale > 0.01 * np.abs(i0).max()


@pytest.mark.parametrize("dtype", [np.uint16, np.float32, np.float64])
def test_poisson_variance_of_sparse_frames(geometry, dtype):
    """Sparse frames (mostly 0 and 1, some fractions): the Poisson variance is Σ max(1, x) pixel by pixel."""
    rng = np.random.default_rng(5)
    img = rng.poisson(0.4, geometry.shape).astype(np.float64)
    if dtype != np.uint16:
        img += np.where(rng.random(geometry.shape) < 0.2, rng.random(geometry.shape), 0.0)
    img = img.astype(dtype)
    res = Integrator(geometry, 150, solid_angle=False).integrate(img)
    r, i, s, c = reference(img, geometry, 150)
    np.testing.assert_array_equal(res.count, c)
    np.testing.assert_allclose(res.intensity[c > 0], i[c > 0], rtol=1e-12)
    np.testing.assert_allclose(res.sigma[c > 0], s[c > 0], rtol=1e-12)
