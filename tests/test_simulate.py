"""xstructure.simulate against the float64 double-sum reference, batching, input kinds and errors."""

import os

import ase
import ase.io
import numpy as np
import pytest

import xstructure
from conftest import perturbed
from reference.debye import signal as ref_signal

Q_WIDE = np.linspace(0.1, 20.0, 400)                 # uniform: the recurrence path
Q_IRREGULAR = np.sort(np.random.default_rng(5).uniform(0.1, 20.0, 157))   # the direct path


def rel_err(a, b):
    return np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b))


@pytest.mark.parametrize("name", ["NMM", "CHD", "DT"])
@pytest.mark.parametrize("kind", ["atomic", "molecular", "total", "sM"])
@pytest.mark.parametrize("q", [Q_WIDE, Q_IRREGULAR], ids=["uniform", "irregular"])
def test_xray_matches_reference(seed_molecules, name, kind, q):
    atoms = seed_molecules[name]
    ref = ref_signal(atoms.numbers, atoms.positions, q, "xray", kind)
    got = xstructure.simulate(atoms, q, probe="xray", signal=kind)
    assert got.shape == q.shape and got.dtype == np.float64
    assert rel_err(got, ref) < 1e-5
    # the kernel is in fact exact to rounding in float64
    assert rel_err(got, ref) < 1e-12


@pytest.mark.parametrize("name", ["NMM", "DT"])
@pytest.mark.parametrize("kind", ["molecular", "total", "sM"])
def test_electron_matches_reference(seed_molecules, name, kind):
    atoms = seed_molecules[name]
    ref = ref_signal(atoms.numbers, atoms.positions, Q_WIDE, "electron", kind)
    got = xstructure.simulate(atoms, Q_WIDE, probe="electron", signal=kind)
    # the reference's (Z - f0(q))/q² cancels ~3 digits at q = 0.1; the package uses expm1
    assert rel_err(got, ref) < 1e-6


def test_relativistic_factor_scales_amplitudes(seed_molecules):
    atoms = seed_molecules["CHD"]
    base = xstructure.simulate(atoms, Q_WIDE, probe="electron", signal="total")
    fast = xstructure.simulate(atoms, Q_WIDE, probe="electron", signal="total", energy_kev=3000.0)
    gamma = 1 + 3000.0 / 510.99895
    np.testing.assert_allclose(fast, gamma**2 * base, rtol=1e-12)
    # sM is a ratio of intensities: gamma cancels
    np.testing.assert_allclose(xstructure.simulate(atoms, Q_WIDE, probe="electron", signal="sM", energy_kev=3000.0),
                               xstructure.simulate(atoms, Q_WIDE, probe="electron", signal="sM"), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_batch_equals_loop(seed_molecules, rng, dtype):
    atoms = seed_molecules["NMM"]
    pos = perturbed(atoms, 37, 0.1, rng).astype(dtype)
    batch = xstructure.simulate((atoms.numbers, pos), Q_WIDE, signal="total", chunk_size=8)
    assert batch.shape == (37, Q_WIDE.size) and batch.dtype == dtype
    loop = np.stack([xstructure.simulate((atoms.numbers, p), Q_WIDE, signal="total") for p in pos])
    np.testing.assert_array_equal(batch, loop)
    ref = np.stack([ref_signal(atoms.numbers, p.astype(np.float64), Q_WIDE) for p in pos[:3]])
    assert rel_err(batch[:3], ref) < (1e-12 if dtype == np.float64 else 1e-6)


def test_large_molecule_uses_threads_per_geometry(rng):
    # N >= 64 and B = 1 splits one geometry's rows over threads; must equal the reference
    n = 90
    numbers = rng.choice([1, 6, 7, 8, 16], size=n)
    pos = rng.uniform(-8, 8, size=(n, 3))
    q = np.linspace(0.0, 8, 120)
    got = xstructure.simulate((numbers, pos), q, signal="total")
    from reference.debye import SYMBOLS  # noqa: F401  (all chosen elements are in the reference table)
    assert rel_err(got, ref_signal(numbers, pos, q)) < 1e-12


def test_list_of_different_molecules_keeps_order(seed_molecules):
    mols = [seed_molecules["NMM"], seed_molecules["DT"], seed_molecules["NMM"], seed_molecules["CHD"]]
    got = xstructure.simulate(mols, Q_WIDE, signal="molecular")
    assert got.shape == (4, Q_WIDE.size)
    for row, atoms in zip(got, mols):
        np.testing.assert_allclose(row, xstructure.simulate(atoms, Q_WIDE, signal="molecular"), rtol=0, atol=0)


def test_file_inputs(seed_molecules, tmp_path, rng):
    atoms = seed_molecules["DT"]
    frames = [ase.Atoms(atoms.numbers, p) for p in perturbed(atoms, 3, 0.05, rng)]
    for ext in ("xyz", "extxyz", "pdb"):
        path = tmp_path / f"traj.{ext}"
        ase.io.write(path, frames)
        got = xstructure.simulate(path, Q_WIDE)
        assert got.shape == (3, Q_WIDE.size)
        # pdb stores 3 decimals
        expect = xstructure.simulate(frames, Q_WIDE)
        assert rel_err(got, expect) < (1e-3 if ext == "pdb" else 1e-9)
    single = tmp_path / "one.xyz"
    ase.io.write(single, atoms)
    assert xstructure.simulate(str(single), Q_WIDE).shape == Q_WIDE.shape


def test_symbols_and_tuple_input(seed_molecules):
    atoms = seed_molecules["CHD"]
    a = xstructure.simulate((atoms.get_chemical_symbols(), atoms.positions), Q_WIDE)
    b = xstructure.simulate((atoms.numbers, atoms.positions), Q_WIDE)
    np.testing.assert_array_equal(a, b)


def test_non_contiguous_and_lazy_positions(seed_molecules, rng):
    atoms = seed_molecules["NMM"]
    pos = perturbed(atoms, 10, 0.1, rng)
    fortran = np.asfortranarray(pos)
    strided = np.repeat(pos, 2, axis=0)[::2]

    class Lazy:
        """An h5py-like dataset: shape, dtype, slicing; never converted whole."""
        def __init__(self, a):
            self.a, self.shape, self.dtype, self.reads = a, a.shape, a.dtype, []

        def __getitem__(self, idx):
            self.reads.append(idx)
            return self.a[idx]

    lazy = Lazy(pos)
    expect = xstructure.simulate((atoms.numbers, pos), Q_WIDE)
    for p in (fortran, strided):
        np.testing.assert_array_equal(xstructure.simulate((atoms.numbers, p), Q_WIDE), expect)
    np.testing.assert_array_equal(xstructure.simulate((atoms.numbers, lazy), Q_WIDE, chunk_size=4), expect)
    assert lazy.reads == [slice(0, 4), slice(4, 8), slice(8, 10)]


def test_progress_bar(seed_molecules, rng, capsys):
    atoms = seed_molecules["NMM"]
    xstructure.simulate((atoms.numbers, perturbed(atoms, 20, 0.1, rng)), Q_WIDE, progress=True, chunk_size=5)
    assert "20/20" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("structures, q, match", [
    (([6, 999], np.zeros((2, 3))), Q_WIDE, "unknown element"),
    ((["C", "Xx"], np.zeros((2, 3))), Q_WIDE, "unknown element"),
    (([6, 8], np.array([[0, 0, 0], [np.nan, 0, 0]])), Q_WIDE, "NaN or inf"),
    (([6, 8], np.array([[0, 0, 0], [np.inf, 0, 0]])), Q_WIDE, "NaN or inf"),
    (([6, 8], np.zeros((3, 3))), Q_WIDE, "shape"),
    (([6, 8], np.zeros((2, 2))), Q_WIDE, "shape"),
    (([6, 8], np.zeros((4, 2, 3, 1))), Q_WIDE, "shape"),
    (([], np.zeros((0, 3))), Q_WIDE, "empty structure"),
    ((ase.Atoms(), None), Q_WIDE, None),
    (([6, 8], np.zeros((2, 3))), np.array([-1.0, 1.0]), "q must be >= 0"),
    (([6, 8], np.zeros((2, 3))), np.array([np.nan]), "NaN"),
    (([6, 8], np.zeros((2, 3))), np.array([]), "q is empty"),
    (([6, 8], np.zeros((2, 3))), np.array([[1.0]]), "shape"),
    (([6, 8], np.zeros((2, 3))), np.array([100.0]), "beyond"),
    (([6, 8], np.zeros((0, 2, 3))), Q_WIDE, "B = 0"),
    ("no/such/file.xyz", Q_WIDE, "not found"),
    (42, Q_WIDE, "structures must be"),
    ([], Q_WIDE, "empty list"),
])
def test_bad_input_raises_value_error(structures, q, match):
    if match is None:  # an empty ase.Atoms
        with pytest.raises(ValueError, match="empty structure"):
            xstructure.simulate(ase.Atoms(), Q_WIDE)
        return
    with pytest.raises(ValueError, match=match):
        xstructure.simulate(structures, q)


def test_unreadable_file_raises_value_error(tmp_path):
    bad = tmp_path / "broken.xyz"
    bad.write_text("3\ncomment\nC 0 0 0\nthis is not a line of coordinates\n")
    with pytest.raises(ValueError, match="cannot read structure file"):
        xstructure.simulate(bad, Q_WIDE)
    empty = tmp_path / "empty.cif"
    empty.write_text("")
    with pytest.raises(ValueError, match="broken|cannot read|no structures"):
        xstructure.simulate(empty, Q_WIDE)


@pytest.mark.parametrize("kw, match", [({"probe": "neutron"}, "unknown probe"), ({"signal": "Iq"}, "unknown signal"),
                                       ({"probe": "xray", "energy_kev": 100.0}, "electron"),
                                       ({"probe": "electron", "energy_kev": -3.0}, "positive")])
def test_bad_options(seed_molecules, kw, match):
    with pytest.raises(ValueError, match=match):
        xstructure.simulate(seed_molecules["DT"], Q_WIDE, **kw)


def test_molecule_sources(tmp_path):
    assert len(xstructure.molecule("NMM")) == 18
    assert len(xstructure.molecule("CHD")) == 14 and len(xstructure.molecule("dt")) == 14
    assert xstructure.molecule("H2O").get_chemical_formula() == "H2O"
    pytest.importorskip("rdkit")
    assert xstructure.molecule("CCO").get_chemical_formula() == "C2H6O"
    with pytest.raises(ValueError, match="SMILES"):
        xstructure.molecule("definitely(not[smiles")


def test_compton_adds_incoherent_sum(seed_molecules):
    pytest.importorskip("xraylib")
    from xstructure.factors import incoherent_scattering_function

    atoms = seed_molecules["DT"]
    q = np.linspace(0.0, 12, 60)
    extra = xstructure.simulate(atoms, q, compton=True) - xstructure.simulate(atoms, q)
    expect = sum(incoherent_scattering_function(z, q) for z in atoms.numbers)
    np.testing.assert_allclose(extra, expect, rtol=1e-10, atol=1e-9)
    with pytest.raises(ValueError, match="compton"):
        xstructure.simulate(atoms, q, compton=True, signal="sM")
