"""Detector geometry: pyFAI's PONI convention, per-pixel arrays, PONI files."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xstructure
from xstructure import Geometry

TILTED = dict(dist=0.1, poni1=0.02, poni2=0.025, rot1=0.05, rot2=-0.03, rot3=0.1, pixel1=75e-6, pixel2=80e-6,
              shape=(96, 120), wavelength=1e-10)


def pyfai_integrator(g):
    pytest.importorskip("pyFAI")
    from pyFAI.detectors import Detector
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    det = Detector(pixel1=g.pixel1, pixel2=g.pixel2, max_shape=g.shape)
    return AzimuthalIntegrator(dist=g.dist, poni1=g.poni1, poni2=g.poni2, rot1=g.rot1, rot2=g.rot2, rot3=g.rot3,
                               detector=det, wavelength=g.wavelength)


@pytest.mark.parametrize("rots", [(0, 0, 0), (0.05, -0.03, 0.1), (0.4, 0.2, -1.0)])
def test_pixel_arrays_match_pyfai(rots):
    g = Geometry(**{**TILTED, "rot1": rots[0], "rot2": rots[1], "rot3": rots[2]})
    ai = pyfai_integrator(g)
    for unit, ours in (("2th_rad", g.tth), ("chi_rad", g.chi), ("q_nm^-1", g.radial("q_nm^-1")),
                       ("q_A^-1", g.q), ("r_mm", g.radial("r_mm")), ("2th_deg", g.radial("2th_deg"))):
        theirs = ai.center_array(g.shape, unit=unit, scale=True)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12, err_msg=unit)
    # pyFAI keeps these two in float32
    np.testing.assert_allclose(g.solid_angle, ai.solidAngleArray(g.shape), rtol=1e-6)
    np.testing.assert_allclose(g.polarization(0.9, 0.3), ai.polarization(g.shape, factor=0.9, axis_offset=0.3),
                               rtol=1e-6)


def test_untilted_detector_closed_forms():
    g = Geometry.simple((101, 101), pixel=100e-6, dist=0.2, center=(50.5, 50.5), wavelength=1.5e-10)
    p = (np.arange(101) + 0.5) * 100e-6 - 50.5 * 100e-6
    rr = np.hypot(p[:, None], p[None, :])
    np.testing.assert_allclose(g.tth, np.arctan2(rr, 0.2), atol=1e-15)
    np.testing.assert_allclose(g.q, 4 * np.pi * np.sin(np.arctan2(rr, 0.2) / 2) / 1.5, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(g.solid_angle, (0.2 / np.sqrt(0.04 + rr**2)) ** 3, rtol=1e-13)
    # chi: atan2(y, x) with y along the first (row) axis and x along the second
    assert g.chi[50, 100] == pytest.approx(0.0, abs=1e-12)
    assert g.chi[100, 50] == pytest.approx(math.pi / 2, abs=1e-12)
    # |q vector| equals q, and q is orthogonal to k_in + k_out
    qv = g.q_vectors
    np.testing.assert_allclose(np.linalg.norm(qv, axis=-1), g.q, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(rot=st.tuples(*[st.floats(-0.5, 0.5)] * 3), dist=st.floats(0.05, 1.0))
def test_q_vectors_are_elastic(rot, dist):
    """k_out = k_in + q has |k_out| = |k_in| on every pixel, whatever the tilt."""
    g = Geometry(**{**TILTED, "shape": (7, 9), "rot1": rot[0], "rot2": rot[1], "rot3": rot[2], "dist": dist})
    k = 2 * np.pi / g.wavelength_A
    kout = g.q_vectors + np.array([0.0, 0.0, k])
    np.testing.assert_allclose(np.linalg.norm(kout, axis=-1), k, rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(g.q_vectors, axis=-1), g.q, rtol=1e-10, atol=1e-12)


def test_energy_and_electron_wavelengths():
    g = Geometry.simple((8, 8), energy_kev=12.398419843320026)
    assert g.wavelength == pytest.approx(1e-10, rel=1e-12) and g.probe == "xray"
    e = Geometry.simple((8, 8), electron_energy_kev=100.0)
    assert e.probe == "electron"
    assert e.wavelength_A == pytest.approx(0.037014, rel=1e-4)  # 100 keV electrons
    with pytest.raises(ValueError, match="exactly one"):
        Geometry.simple((8, 8), wavelength=1e-10, energy_kev=10)


def test_poni_round_trip_with_pyfai(tmp_path):
    g = Geometry(**TILTED)
    path = tmp_path / "ours.poni"
    g.to_poni(path)
    ai = pyfai_integrator(g)
    from pyFAI.integrator.azimuthal import AzimuthalIntegrator

    loaded = AzimuthalIntegrator()
    loaded.load(str(path))
    for k in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "wavelength"):
        assert getattr(loaded, k) == pytest.approx(getattr(g, k), rel=1e-15), k
    assert tuple(loaded.detector.max_shape) == g.shape
    assert loaded.detector.pixel1 == pytest.approx(g.pixel1)
    # and pyFAI's file back into ours
    ai.write(str(tmp_path / "theirs.poni"))
    back = Geometry.from_poni(tmp_path / "theirs.poni")
    assert back == g
    assert Geometry.from_poni(path) == g


def test_poni_errors(tmp_path):
    good = tmp_path / "g.poni"
    Geometry(**TILTED).to_poni(good)
    text = good.read_text()
    missing = tmp_path / "missing.poni"
    missing.write_text("\n".join(line for line in text.splitlines() if not line.startswith("Rot2")))
    with pytest.raises(ValueError, match="missing Rot2"):
        Geometry.from_poni(missing)
    no_wl = tmp_path / "nowl.poni"
    no_wl.write_text("\n".join(line for line in text.splitlines() if not line.startswith("Wavelength")))
    with pytest.raises(ValueError, match="Wavelength"):
        Geometry.from_poni(no_wl)
    garbage = tmp_path / "bin.poni"
    garbage.write_bytes(b"\x00\xff\xfe binary")
    with pytest.raises(ValueError, match="PONI"):
        Geometry.from_poni(garbage)
    with pytest.raises(ValueError, match="cannot read"):
        Geometry.from_poni(tmp_path / "absent.poni")
    bad_number = tmp_path / "num.poni"
    bad_number.write_text(text.replace("Distance: 0.1", "Distance: ten"))
    with pytest.raises(ValueError, match="num.poni"):
        Geometry.from_poni(bad_number)
    no_shape = tmp_path / "noshape.poni"
    no_shape.write_text(text.replace(', "max_shape": [96, 120]', ""))
    with pytest.raises(ValueError, match="shape"):
        Geometry.from_poni(no_shape)
    assert Geometry.from_poni(no_shape, shape=(96, 120)) == Geometry(**TILTED)


@pytest.mark.parametrize("bad", [dict(dist=0), dict(dist=float("nan")), dict(pixel1=-1e-4), dict(shape=(0, 5)),
                                 dict(shape=(5,)), dict(rot1=float("inf")), dict(wavelength=-1.0)])
def test_bad_geometry(bad):
    with pytest.raises(ValueError, match="Geometry"):
        Geometry(**{**TILTED, **bad})


def test_exported():
    assert xstructure.Geometry is Geometry
