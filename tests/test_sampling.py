"""Thermal sampling: MMFF94 forces, normal modes, Wigner variances, Langevin temperature, resumable sample()."""

import numpy as np
import pytest

pytest.importorskip("rdkit")

from xstructure.pools import sampling  # noqa: E402
from xstructure.structures import molecule  # noqa: E402


@pytest.fixture(scope="module")
def chd():
    return molecule("CHD")


@pytest.fixture(scope="module")
def chd_modes(chd):
    return sampling.minimum_modes(chd)


@pytest.mark.parametrize("name", ["CHD", "NMM", "DT"])
def test_mmff_forces_are_minus_energy_gradient(name, rng):
    atoms = molecule(name)
    atoms.positions += 0.05 * rng.standard_normal(atoms.positions.shape)
    atoms.calc = sampling.MMFF94Calculator(atoms)
    forces = atoms.get_forces()
    x0, h = atoms.get_positions(), 1e-5
    fd = np.empty_like(x0)
    for i in range(len(atoms)):
        for d in range(3):
            e = []
            for s in (1, -1):
                x = x0.copy()
                x[i, d] += s * h
                e.append(atoms.calc.energies(x))
            fd[i, d] = -(e[0] - e[1]) / (2 * h)
    np.testing.assert_allclose(forces, fd, rtol=0, atol=1e-4 * np.abs(forces).max())


def test_mmff_units_and_inputs(chd):
    from rdkit.Chem import rdForceFieldHelpers as ffh

    calc = sampling.MMFF94Calculator("CHD")
    ff = ffh.MMFFGetMoleculeForceField(calc.mol, ffh.MMFFGetMoleculeProperties(calc.mol))
    kcal = ff.CalcEnergy(chd.get_positions().ravel().tolist())
    assert calc.energies(chd.get_positions()) == pytest.approx(kcal * 0.0433641, rel=1e-6)
    lazy = chd.copy()
    lazy.calc = sampling.MMFF94Calculator()  # bonds from the first atoms it sees
    assert lazy.get_potential_energy() == pytest.approx(kcal * 0.0433641, rel=1e-6)
    assert sampling.MMFF94Calculator("CCO").numbers.tolist() == [6, 6, 8, 1, 1, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="no parameters"):
        sampling.MMFF94Calculator("B(F)(F)F")
    with pytest.raises(ValueError, match="atomic numbers"):
        other = molecule("H2O")
        other.calc = calc
        other.get_potential_energy()


def test_normal_modes(chd, chd_modes):
    nm = chd_modes
    N = len(chd)
    assert nm.modes.shape == (3 * N - 6, 3 * N) and nm.omega.shape == (3 * N - 6,)
    np.testing.assert_allclose(nm.modes @ nm.modes.T, np.eye(3 * N - 6), atol=1e-10)
    assert np.all(nm.wavenumbers > 50) and 2900 < nm.wavenumbers.max() < 3300  # C-H stretches
    # modes are orthogonal to translations and rotations
    rigid = sampling._rigid_basis(nm.positions, nm.masses)
    assert np.abs(nm.modes @ rigid).max() < 1e-10
    # the Hessian is symmetric and the minimum is a minimum
    H = sampling.hessian(molecule("H2O"))
    np.testing.assert_allclose(H, H.T)
    co2 = sampling.minimum_modes(molecule("CO2"))
    assert len(co2.omega) == 4  # linear: 3N - 5
    np.testing.assert_allclose(sorted(co2.wavenumbers)[:2], sorted(co2.wavenumbers)[1], rtol=1e-3)  # bends


@pytest.mark.parametrize("temperature", [0.0, 300.0])
def test_wigner_mode_variances(chd, chd_modes, temperature):
    x = sampling.wigner(chd, 10_000, temperature, rng=11, modes=chd_modes)
    expected = sampling.wigner_mode_variances(chd_modes, temperature)
    w = chd_modes.omega
    ref = sampling.HBAR / (2 * w) / (np.tanh(sampling.HBAR * w / (2 * sampling.KB * temperature))
                                     if temperature else 1.0)
    np.testing.assert_allclose(expected, ref, rtol=1e-12)
    ratio = chd_modes.coordinates(x).var(axis=0) / expected
    assert np.all(np.abs(ratio - 1) < 0.05), ratio
    # sample() discards the rare bond-breaking draws (0.1 % at 0 K, 0.7 % at 300 K): the variances barely
    # move, except CHD's 81 cm-1 ring pucker at 300 K, whose rectilinear tails stretch C-H bonds (-4 %)
    out = sampling.sample(chd, "wigner", 10_000, temperature, seed=5)
    assert out["rejected_fraction"].max() < 0.02
    assert sampling.bonds_intact(chd, out["positions"]).all()
    ratio = chd_modes.coordinates(out["positions"]).var(axis=0) / expected
    soft = chd_modes.wavenumbers < 100
    assert np.all(np.abs(ratio[~soft] - 1) < 0.05), ratio
    assert np.all(np.abs(ratio[soft] - 1) < 0.10), ratio


def test_wigner_limits(chd_modes):
    hot = sampling.wigner_mode_variances(chd_modes, 1e6)
    classical = sampling.KB * 1e6 / chd_modes.omega**2
    np.testing.assert_allclose(hot, classical, rtol=1e-3)
    assert np.all(sampling.wigner_mode_variances(chd_modes, 300) > sampling.wigner_mode_variances(chd_modes, 0))


def test_langevin_temperature_and_bonds():
    atoms = molecule("NMM")
    pos, energy, tkin = sampling.langevin_md(atoms, 400, 300.0, rng=1, friction=0.1, interval=10,
                                             equilibration=400)
    assert pos.shape == (400, len(atoms), 3) and energy.shape == tkin.shape == (400,)
    assert tkin.mean() == pytest.approx(300.0, rel=0.05)
    assert sampling.bonds_intact(atoms, pos).all()


@pytest.mark.parametrize("method", ["md", "mc"])
def test_trajectory_samples_keep_bonds(chd, method):
    kw = dict(interval=10, equilibration=200) if method == "md" else dict(interval=2, equilibration=50)
    out = sampling.sample(chd, method, 40, 300.0, seed=3, **kw)
    assert out["positions"].shape == (40, len(chd), 3) and out["positions"].dtype == np.float64
    assert out["energies"].shape == (40,)
    assert sampling.bonds_intact(chd, out["positions"]).all()
    if method == "mc":
        assert 0.2 < out["acceptance"][0] < 0.6


def test_bonds_intact_detects_breaks(chd):
    pos = np.repeat(chd.get_positions()[None], 3, axis=0)
    pos[1, 9] += 2.0 * (pos[1, 9] - pos[1, 2])  # stretch a C-H
    pos[2, 9] = pos[2, 10] + 0.3  # an H onto another H
    assert sampling.bonds_intact(chd, pos).tolist() == [True, False, False]


def test_wigner_chunk_invariance_and_seeds(chd):
    whole = sampling.sample(chd, "wigner", 2048, 300.0, seed=1)
    a = sampling.sample(chd, "wigner", 1024, 300.0, seed=1)
    b = sampling.sample(chd, "wigner", 1024, 300.0, seed=1, start=1024)
    np.testing.assert_array_equal(whole["positions"], np.concatenate([a["positions"], b["positions"]]))
    c = sampling.sample(chd, "wigner", 700, 300.0, seed=1, start=700)
    np.testing.assert_array_equal(whole["positions"][700:1400], c["positions"])
    np.testing.assert_allclose(whole["energies"][700:1400], c["energies"])
    again = sampling.sample(chd, "wigner", 1024, 300.0, seed=1)
    np.testing.assert_array_equal(a["positions"], again["positions"])
    other = sampling.sample(chd, "wigner", 1024, 300.0, seed=2)
    assert not np.allclose(a["positions"], other["positions"])


@pytest.mark.parametrize("method", ["md", "mc"])
def test_trajectory_chunk_invariance(chd, method):
    kw = dict(interval=2, equilibration=10, chunk=5)
    whole = sampling.sample(chd, method, 12, 300.0, seed=4, **kw)
    parts = [sampling.sample(chd, method, n, 300.0, seed=4, start=s, **kw) for s, n in ((0, 3), (3, 6), (9, 3))]
    np.testing.assert_array_equal(whole["positions"], np.concatenate([p["positions"] for p in parts]))
    other = sampling.sample(chd, method, 3, 300.0, seed=5, **kw)
    assert not np.allclose(whole["positions"][:3], other["positions"])


def test_bad_input(chd):
    with pytest.raises(ValueError, match="n must be"):
        sampling.sample(chd, "wigner", 0)
    with pytest.raises(ValueError, match="n must be"):
        sampling.wigner(chd, -1)
    with pytest.raises(ValueError, match="temperature"):
        sampling.sample(chd, "wigner", 10, temperature=-1.0)
    with pytest.raises(ValueError, match="temperature"):
        sampling.sample(chd, "md", 10, temperature=0.0)
    with pytest.raises(ValueError, match="method"):
        sampling.sample(chd, "replica-exchange", 10)
    with pytest.raises(ValueError, match="start"):
        sampling.sample(chd, "wigner", 10, start=-1)
    with pytest.raises(ValueError, match="SMILES"):
        sampling.sample("C1CC(", "wigner", 10)
    with pytest.raises(ValueError, match="SMILES"):
        molecule("not-a-molecule((")
