"""Physical invariants of the Debye formula, checked with hypothesis."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

import xstructure
from conftest import random_rotation
from reference.debye import f_xray

Q = np.linspace(0.0, 15.0, 160)
ELEMENTS = [1, 6, 7, 8, 16, 26, 53]

molecules = st.integers(2, 12).flatmap(lambda n: st.tuples(
    st.lists(st.sampled_from(ELEMENTS), min_size=n, max_size=n),
    arrays(np.float64, (n, 3), elements=st.floats(-6, 6, allow_nan=False, allow_infinity=False)),
))


def close(a, b, tol=1e-9):
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-300)
    return np.max(np.abs(a - b)) / scale < tol


@settings(max_examples=60, deadline=None)
@given(molecules, st.integers(0, 2**32 - 1), st.sampled_from(["xray", "electron"]))
def test_rotation_and_translation_invariance(mol, seed, probe):
    numbers, pos = mol
    rng = np.random.default_rng(seed)
    moved = pos @ random_rotation(rng).T + rng.uniform(-50, 50, size=3)
    a = xstructure.simulate((numbers, pos), Q, probe=probe)
    b = xstructure.simulate((numbers, moved), Q, probe=probe)
    assert close(a, b)


@settings(max_examples=60, deadline=None)
@given(molecules, st.integers(0, 2**32 - 1))
def test_permutation_invariance(mol, seed):
    numbers, pos = mol
    perm = np.random.default_rng(seed).permutation(len(numbers))
    a = xstructure.simulate((numbers, pos), Q, signal="molecular")
    b = xstructure.simulate((np.asarray(numbers)[perm], pos[perm]), Q, signal="molecular")
    assert close(a, b)


@settings(max_examples=60, deadline=None)
@given(molecules)
def test_forward_limit_at_q0_is_square_of_total_charge(mol):
    numbers, pos = mol
    I0 = xstructure.simulate((numbers, pos), np.array([0.0, 1e-7, 1e-4]), signal="total")
    fsum = sum(f_xray(z, 0.0) for z in numbers)
    assert I0[0] == pytest.approx(fsum**2, rel=1e-12)
    # continuous approach to the limit
    assert I0[1] == pytest.approx(fsum**2, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(molecules)
def test_coincident_atoms_are_the_r_to_0_limit(mol):
    numbers, pos = mol
    stacked = pos.copy()
    stacked[1] = stacked[0]                       # r_01 = 0 exactly
    near = stacked.copy()
    near[1] += 1e-9                               # r_01 = 1e-9 Å
    a = xstructure.simulate((numbers, stacked), Q)
    b = xstructure.simulate((numbers, near), Q)
    assert np.all(np.isfinite(a))
    assert close(a, b, 1e-9)


def test_all_atoms_on_one_site_is_fully_coherent():
    numbers = [6, 8, 8]
    I = xstructure.simulate((numbers, np.zeros((3, 3))), Q)
    f = sum(f_xray(z, Q) for z in numbers)
    np.testing.assert_allclose(I, f**2, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(molecules)
def test_electron_sm_finite_and_smooth_at_small_q(mol):
    numbers, pos = mol
    q = np.linspace(0.0, 0.5, 201)
    sM = xstructure.simulate((numbers, pos), q, probe="electron", signal="sM")
    assert np.all(np.isfinite(sM))
    assert sM[0] == 0.0                      # sM = q I_mol / I_at vanishes at q = 0
    # smooth: second differences are tiny compared to the curve's scale (no spike near q = 0)
    d2 = np.abs(np.diff(sM, 2))
    assert d2.max() <= 1e-2 * max(np.abs(sM).max(), 1e-12) + 1e-12
    # and sM/q tends to I_mol(0)/I_at(0) = (sum f)^2/sum f^2 - 1 as q -> 0
    fe = np.array([xstructure.electron_form_factor(z, 0.0) for z in numbers])
    assert sM[1] / q[1] == pytest.approx(fe.sum() ** 2 / (fe**2).sum() - 1, rel=1e-3, abs=1e-9)
