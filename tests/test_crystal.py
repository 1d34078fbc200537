"""Crystals: structure factors against float64 references and gemmi, invariants, density grids."""

import numpy as np
from reference.structure_factors import reference_F, wk_reference  # noqa: F401
import pytest
from ase.build import bulk
from ase.spacegroup import crystal as spacegroup_crystal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xstructure
from xstructure import crystal
from xstructure.crystal import as_cell

from conftest import available_devices



@pytest.fixture(scope="module")
def crystals():
    rng = np.random.default_rng(3)
    nacl = bulk("NaCl", "rocksalt", a=5.64, cubic=True)
    tio2 = spacegroup_crystal(["Ti", "O"], basis=[(0, 0, 0), (0.305, 0.305, 0)], spacegroup=136,
                              cellpar=[4.594, 4.594, 2.959, 90, 90, 90])
    # a triclinic cell with ~100 atoms of four elements
    cell = np.array([[9.1, 0.0, 0.0], [1.3, 8.4, 0.0], [-0.7, 1.1, 10.2]])
    from ase import Atoms

    tri = Atoms(rng.choice(["C", "N", "O", "S"], 100), scaled_positions=rng.random((100, 3)), cell=cell, pbc=True)
    return {"NaCl": nacl, "TiO2": tio2, "triclinic": tri}


@pytest.mark.parametrize("name", ["NaCl", "TiO2", "triclinic"])
@pytest.mark.parametrize("factors", ["Z", "xray"])
def test_box_matches_double_sum(crystals, name, factors):
    atoms = crystals[name]
    rng = np.random.default_rng(1)
    B = rng.uniform(0.2, 2.0, len(atoms))
    occ = rng.uniform(0.5, 1.0, len(atoms))
    hkl, F = crystal.structure_factors(atoms, 6, factors=factors, b_factors=B, occupancy=occ)
    assert hkl.shape == (13**3, 3) and F.dtype == np.complex128
    ref = reference_F(atoms, hkl, factors, B, occ)
    assert np.max(np.abs(F - ref)) <= 1e-10 * np.max(np.abs(ref))
    # the same reflections as a list, and the grid layout
    sub = hkl[::37]
    _, F_list = crystal.structure_factors(atoms, hkl=sub, factors=factors, b_factors=B, occupancy=occ)
    np.testing.assert_allclose(F_list, F[::37], rtol=1e-12, atol=1e-12 * np.abs(F).max())
    G = crystal.structure_factors(atoms, 6, factors=factors, b_factors=B, occupancy=occ, grid=True)
    h, k, l = hkl[100]
    assert G[h + 6, k + 6, l + 6] == F[100]


def test_f000_and_d_min(crystals):
    atoms = crystals["TiO2"]
    G = crystal.structure_factors(atoms, 4, factors="Z", grid=True)
    assert G[4, 4, 4] == pytest.approx(atoms.numbers.sum())
    hkl, F = crystal.structure_factors(atoms, 4, factors="xray", d_min=1.0)
    c = as_cell(atoms)
    d = 1 / np.linalg.norm(hkl @ c.reciprocal, axis=1).clip(1e-300)
    assert np.all(d >= 1.0 - 1e-12) and len(hkl) < 9**3
    Gd = crystal.structure_factors(atoms, 4, factors="xray", d_min=1.0, grid=True)
    assert np.count_nonzero(Gd) == len(hkl)


def test_matches_gemmi_direct_summation(crystals):
    """gemmi's StructureFactorCalculatorX on the same IT92 table (passed to us as a callable)."""
    gemmi = pytest.importorskip("gemmi")
    atoms = crystals["triclinic"]
    rng = np.random.default_rng(2)
    B = rng.uniform(0.5, 3.0, len(atoms))

    def it92(symbol, s):
        a, b = np.array(gemmi.Element(symbol).it92.a, float), np.array(gemmi.Element(symbol).it92.b, float)
        return gemmi.Element(symbol).it92.c + np.sum(a * np.exp(-np.multiply.outer(s * s, b)), axis=-1)

    hkl, F = crystal.structure_factors(atoms, 5, factors=it92, b_factors=B)
    ss = gemmi.SmallStructure()
    ss.cell = gemmi.UnitCell(*atoms.cell.cellpar())
    ss.spacegroup_hm = "P 1"
    c = as_cell(atoms)
    for j, sym in enumerate(atoms.get_chemical_symbols()):
        site = gemmi.SmallStructure.Site()
        site.fract = gemmi.Fractional(*c.frac[j])
        site.element = gemmi.Element(sym)
        site.occ = 1.0
        site.u_iso = B[j] / (8 * np.pi**2)
        site.label = f"{sym}{j}"
        ss.add_site(site)
    ss.setup_cell_images()
    calc = gemmi.StructureFactorCalculatorX(ss.cell)
    theirs = np.array([calc.calculate_sf_from_small_structure(ss, [int(h), int(k), int(l)]) for h, k, l in hkl])
    rel = np.max(np.abs(F - theirs)) / np.max(np.abs(theirs))
    assert rel < 1e-6, rel
    # with our (Waasmaier–Kirfel) table the difference is that of the tables, a few 1e-3 of |F|max
    _, F_wk = crystal.structure_factors(atoms, 5, factors="xray", b_factors=B)
    assert np.max(np.abs(F_wk - theirs)) / np.max(np.abs(theirs)) < 2e-2


def random_crystal(spacegroup, seed):
    pyxtal = pytest.importorskip("pyxtal")
    xtal = pyxtal.pyxtal()
    rng = np.random.default_rng(seed)
    species = ["C", "O"] if spacegroup not in (225, 229) else ["Na", "Cl"]
    counts = {225: [4, 4], 229: [2, 6], 14: [4, 4]}[spacegroup]
    np.random.seed(seed)
    xtal.from_random(3, spacegroup, species, counts, seed=int(rng.integers(1 << 30)))
    assert xtal.valid
    return xtal.to_ase()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), sg=st.sampled_from([225, 229, 14]))
def test_friedel_and_systematic_absences(seed, sg):
    atoms = random_crystal(sg, seed)
    H = 4
    G = crystal.structure_factors(atoms, H, factors="xray", grid=True)
    scale = np.abs(G).max()
    # Friedel: F(-h) = conj F(h)
    assert np.max(np.abs(G - np.conj(G[::-1, ::-1, ::-1]))) <= 1e-10 * scale
    r = np.arange(-H, H + 1)
    h, k, l = np.meshgrid(r, r, r, indexing="ij")
    if sg == 225:  # F-centred: h, k, l all even or all odd
        absent = ~(((h % 2) == (k % 2)) & ((k % 2) == (l % 2)))
    elif sg == 229:  # I-centred: h + k + l even
        absent = (h + k + l) % 2 == 1
    else:  # P 1 21/c 1 (unique axis b): h0l with l odd; 0k0 with k odd
        absent = ((k == 0) & (l % 2 == 1)) | ((h == 0) & (l == 0) & (k % 2 == 1))
    assert absent.any()
    assert np.max(np.abs(G[absent])) <= 1e-9 * scale
    assert np.max(np.abs(G[~absent])) > 1e-3 * scale


def test_density_grid_integrates_to_electrons_and_fft_gives_F(crystals):
    atoms = crystals["TiO2"]
    c = as_cell(atoms)
    n, sigma = (48, 48, 32), 0.35
    rho = crystal.density_grid(atoms, n, sigma)
    assert rho.shape == n
    assert rho.sum() * c.volume / np.prod(n) == pytest.approx(atoms.numbers.sum(), rel=1e-6)
    # Σ_grid ρ e^{+2πi h·x} (V / N) = F_Z(h) · exp(−2π²σ²|G|²): the Gaussian blur, nothing else
    fft = np.fft.ifftn(rho) * c.volume
    hkl, F = crystal.structure_factors(atoms, 3, factors="Z")
    blur = np.exp(-2 * np.pi**2 * sigma**2 * np.linalg.norm(hkl @ c.reciprocal, axis=1) ** 2)
    got = fft[hkl[:, 0] % n[0], hkl[:, 1] % n[1], hkl[:, 2] % n[2]]
    np.testing.assert_allclose(got, F * blur, atol=1e-6 * np.abs(F).max())


def test_density_grid_frames_agree_and_brute_force(crystals):
    atoms = crystals["NaCl"]
    c = as_cell(atoms)
    sigma = 0.6
    n = (10, 10, 10)
    frac = crystal.density_grid(atoms, n, sigma, cutoff=9.0)  # 9 σ: the truncation is below 1e-16
    # brute force at a few grid points over 5×5×5 images
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 10, (20, 3))
    pts = (idx / np.array(n)) @ c.cell
    imgs = np.stack(np.meshgrid(*[np.arange(-2, 3)] * 3, indexing="ij"), -1).reshape(-1, 3) @ c.cell
    ref = np.zeros(len(pts))
    for z, r in zip(atoms.numbers, atoms.positions):
        d = pts[:, None, :] - (r + imgs)[None]
        ref += z * np.exp(-(d**2).sum(-1) / (2 * sigma**2)).sum(1) / (2 * np.pi * sigma**2) ** 1.5
    np.testing.assert_allclose(frac[idx[:, 0], idx[:, 1], idx[:, 2]], ref, rtol=1e-10, atol=1e-12)
    default = crystal.density_grid(atoms, n, sigma)  # 6 σ cutoff
    np.testing.assert_allclose(default, frac, rtol=1e-5)
    # a cubic cell: the Cartesian grid is the fractional grid
    cart = crystal.density_grid(atoms, n, sigma, frame="cartesian", cutoff=9.0)
    np.testing.assert_allclose(cart, frac, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("device", available_devices())
def test_density_op_gradients(crystals, device):
    torch = pytest.importorskip("torch")
    atoms = crystals["NaCl"].copy()
    atoms.rattle(0.1, seed=4)
    pos = torch.tensor(atoms.positions, dtype=torch.float64, device=device, requires_grad=True)
    w = torch.rand(8, 8, 8, dtype=torch.float64, device=device)

    def f(p):
        return (xstructure.ops.density_grid(p, atoms.cell[:], numbers=atoms.numbers, shape=(8, 8, 8), sigma=0.7)
                * w).sum()

    assert torch.autograd.gradcheck(f, (pos,), eps=1e-6, atol=1e-7)
    # float32 forward equals float64 to float precision; batched equals single
    p32 = pos.detach().float()
    r32 = xstructure.ops.density_grid(torch.stack([p32, p32 + 0.1]), atoms.cell[:], numbers=atoms.numbers,
                                      shape=(8, 8, 8), sigma=0.7)
    r64 = xstructure.ops.density_grid(pos.detach(), atoms.cell[:], numbers=atoms.numbers, shape=(8, 8, 8), sigma=0.7)
    np.testing.assert_allclose(r32[0].cpu().numpy(), r64.cpu().numpy(), rtol=1e-5, atol=1e-6)


def test_bad_input(crystals):
    from ase import Atoms

    with pytest.raises(ValueError, match="unit cell"):
        crystal.structure_factors(Atoms("NaCl", positions=[[0, 0, 0], [1, 1, 1]]), 2)
    flat = Atoms("NaCl", positions=[[0, 0, 0], [1, 1, 0]], cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]], pbc=True)
    with pytest.raises(ValueError, match="zero volume"):
        crystal.structure_factors(flat, 2)
    with pytest.raises(ValueError, match="occupancy must be <= 1"):
        crystal.structure_factors(crystals["NaCl"], 2, occupancy=1.5)
    with pytest.raises(ValueError, match="hmax"):
        crystal.structure_factors(crystals["NaCl"], -1)
    with pytest.raises(ValueError, match="unknown element"):
        crystal.structure_factors(Atoms("X", positions=[[0, 0, 0]], cell=np.eye(3) * 3), 2)
    with pytest.raises(ValueError, match="grid shape"):
        crystal.density_grid(crystals["NaCl"], (0, 10, 10))
    with pytest.raises(ValueError, match="factors"):
        crystal.structure_factors(crystals["NaCl"], 2, factors="neutron")
    with pytest.raises(ValueError, match="not found"):
        crystal.structure_factors("/nonexistent.cif", 2)


def test_cartesian_grid_of_a_skewed_cell_is_the_periodic_density():
    from ase import Atoms

    cell = np.array([[5.0, 0.0, 0.0], [2.5, 4.0, 0.0], [1.0, -1.5, 4.5]])
    atoms = Atoms("CO", scaled_positions=[[0.1, 0.2, 0.9], [0.95, 0.5, 0.05]], cell=cell, pbc=True)
    n, sigma = (12, 9, 10), 0.5
    rho = crystal.density_grid(atoms, n, sigma, frame="cartesian", cutoff=9.0)
    spec = crystal.grid_spec(cell, n, "cartesian")
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 9, (25, 3))
    pts = spec["origin"] + idx @ spec["step"]
    imgs = np.stack(np.meshgrid(*[np.arange(-4, 5)] * 3, indexing="ij"), -1).reshape(-1, 3) @ cell
    ref = np.zeros(len(pts))
    for z, r in zip(atoms.numbers, atoms.positions):
        d = pts[:, None, :] - (r + imgs)[None]
        ref += z * np.exp(-(d**2).sum(-1) / (2 * sigma**2)).sum(1) / (2 * np.pi * sigma**2) ** 1.5
    np.testing.assert_allclose(rho[idx[:, 0], idx[:, 1], idx[:, 2]], ref, rtol=1e-10, atol=1e-12)
    assert ref.max() > 0.1  # the sampled points do see atoms


def test_large_debye_waller_factors_fall_back_to_direct_sums(crystals):
    """B so large that the box's separable tables would overflow: the result is still the exact sum."""
    atoms = crystals["triclinic"]
    B = np.full(len(atoms), 400.0)
    B[::2] = 0.3
    hkl, F = crystal.structure_factors(atoms, 8, factors="Z", b_factors=B)
    ref = reference_F(atoms, hkl, "Z", B)
    assert np.all(np.isfinite(F))
    assert np.max(np.abs(F - ref)) <= 1e-10 * np.max(np.abs(ref))
