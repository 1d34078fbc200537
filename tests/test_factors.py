"""Form factors: the Waasmaier-Kirfel table, Mott-Bethe electron amplitudes, limits and errors."""

import numpy as np
import pytest

import xstructure
from xstructure import factors
from reference.debye import f_xray, f_electron

Q = np.linspace(0.0, 75.0, 300)


@pytest.mark.parametrize("z", [1, 6, 7, 8, 16, 26, 53, 79])
def test_xray_matches_periodictable(z):
    np.testing.assert_allclose(xstructure.xray_form_factor(z, Q), f_xray(z, Q), rtol=1e-14)


@pytest.mark.parametrize("z, expect", [(1, 1.0), (6, 6.0), (8, 8.0), (26, 26.0), (98, 98.0)])
def test_xray_forward_value_is_atomic_number(z, expect):
    assert xstructure.xray_form_factor(z, 0.0) == pytest.approx(expect, abs=0.02)


def test_ions_and_symbols():
    assert xstructure.xray_form_factor("Fe2+", 0.0) == pytest.approx(24.0, abs=0.01)
    assert xstructure.xray_form_factor("O1-", 0.0) == pytest.approx(9.0, abs=0.05)
    assert xstructure.xray_form_factor("Na+", 0.0) == pytest.approx(10.0, abs=0.01)
    np.testing.assert_array_equal(xstructure.xray_form_factor("fe", Q), xstructure.xray_form_factor(26, Q))
    with pytest.raises(ValueError, match="neutral"):
        xstructure.electron_form_factor("Fe2+", Q)


@pytest.mark.parametrize("z", [1, 6, 8, 16, 79])
def test_electron_mott_bethe(z):
    q = Q[Q > 0.5]
    np.testing.assert_allclose(xstructure.electron_form_factor(z, q), f_electron(z, q), rtol=1e-10)
    # finite q -> 0 limit equal to (2/a0) sum a_i b_i / (16 pi^2), approached continuously
    f0 = xstructure.electron_form_factor(z, 0.0)
    assert np.isfinite(f0) and f0 > 0
    assert xstructure.electron_form_factor(z, 1e-6) == pytest.approx(f0, rel=1e-9)
    assert xstructure.electron_form_factor(z, 1e-3) == pytest.approx(f0, rel=1e-4)


def test_hydrogen_against_exact_1s_atom():
    # Hydrogen 1s has closed forms: f0(q) = 1 / (1 + (q a0 / 2)^2)^2, and Mott-Bethe then gives
    # f_e(q) = (2/a0) (1 - f0(q)) / q^2 with f_e(0) = a0 exactly.  The WK fit must reproduce both.
    a0 = factors.A0
    q = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 12.0])
    f0 = 1.0 / (1.0 + (q * a0 / 2) ** 2) ** 2
    np.testing.assert_allclose(xstructure.xray_form_factor("H", q), f0, rtol=1e-2, atol=1e-4)
    np.testing.assert_allclose(xstructure.electron_form_factor("H", q), (2 / a0) * (1 - f0) / q**2, rtol=2e-3)
    assert xstructure.electron_form_factor("H", 0.0) == pytest.approx(a0, rel=2e-3)


def test_relativistic_factor_and_wavelength():
    assert factors.relativistic_factor(511.0) == pytest.approx(2.0, rel=1e-4)
    # 200 keV electrons: lambda = 0.02508 Å; 3 MeV (UED): 0.003570 Å
    assert factors.electron_wavelength(200.0) == pytest.approx(0.02508, rel=1e-3)
    assert factors.electron_wavelength(3000.0) == pytest.approx(0.003570, rel=2e-3)


@pytest.mark.parametrize("bad, match", [("Xx", "unknown element"), (0, "unknown element"), (99, "unknown element"),
                                        (3.5, "unknown element"), ("Q7+", "unknown element or ion")])
def test_unknown_elements(bad, match):
    with pytest.raises(ValueError, match=match):
        xstructure.xray_form_factor(bad, Q)


def test_q_checks():
    with pytest.raises(ValueError, match=">= 0"):
        xstructure.xray_form_factor("C", [-0.1])
    with pytest.raises(ValueError, match="beyond"):
        xstructure.xray_form_factor("C", [80.0])
    with pytest.raises(ValueError, match="NaN"):
        xstructure.electron_form_factor("C", [np.nan])


def test_incoherent_scattering_function():
    pytest.importorskip("xraylib")
    a0 = factors.A0
    q = np.array([0.0, 0.5, 1.0, 2.0, 4.0, 8.0])
    f0 = 1.0 / (1.0 + (q * a0 / 2) ** 2) ** 2
    # one-electron atom: S = 1 - |f|^2 exactly (Waller-Hartree)
    np.testing.assert_allclose(factors.incoherent_scattering_function("H", q), 1 - f0**2, atol=2e-3)
    S = factors.incoherent_scattering_function("C", np.array([0.0, 1.0, 70.0]))
    assert S[0] == 0.0 and 0 < S[1] < 6 and S[2] == pytest.approx(6.0, abs=0.01)
