"""Powder diffraction: peaks against pymatgen's XRDCalculator, LP, multiplicities, Kα doublet, profiles, CLI.

pymatgen leaves out peaks under 1e-3 % of the strongest; powder_peaks does the same by default
(min_intensity=1e-3), so the peak lists are compared one to one.
"""

import numpy as np
import pytest

from xstructure.cli import main
from xstructure.crystal.powder import WAVELENGTHS, PowderPeaks, profile_block, lorentz_polarization, powder_pattern, powder_peaks

pytest.importorskip("pymatgen")
from ase import Atoms  # noqa: E402
from ase.build import bulk  # noqa: E402
from ase.spacegroup import crystal  # noqa: E402
from pymatgen.analysis.diffraction import xrd  # noqa: E402
from pymatgen.core import Element  # noqa: E402
from pymatgen.io.ase import AseAtomsAdaptor  # noqa: E402

CRYSTALS = {
    "NaCl": lambda: bulk("NaCl", "rocksalt", a=5.64, cubic=True),
    "Si": lambda: bulk("Si", "diamond", a=5.431, cubic=True),
    "CsCl": lambda: bulk("CsCl", "cesiumchloride", a=4.123),
    "rutile": lambda: crystal(["Ti", "O"], basis=[(0, 0, 0), (0.305, 0.305, 0)], spacegroup=136,
                              cellpar=[4.594, 4.594, 2.959, 90, 90, 90]),
    "monoclinic": lambda: crystal(["Zn", "S", "O"], basis=[(0.12, 0.23, 0.31), (0.41, 0.07, 0.19),
                                                           (0.27, 0.38, 0.44)],
                                  spacegroup=14, cellpar=[5.1, 6.3, 7.2, 90, 103.5, 90]),
}


def pymatgen_f(symbol, s):
    """pymatgen's X-ray form factor: f = Z − 41.78214 s² Σ a_i exp(−b_i s²)."""
    c = np.asarray(xrd.ATOMIC_SCATTERING_PARAMS[symbol])
    s2 = np.asarray(s) ** 2
    return Element(symbol).Z - 41.78214 * s2 * np.sum(c[:, 0] * np.exp(-np.multiply.outer(s2, c[:, 1])), axis=-1)


def reference(atoms, scaled=True, debye_waller=None):
    calc = xrd.XRDCalculator("CuKa1", debye_waller_factors=debye_waller)
    return calc.get_pattern(AseAtomsAdaptor.get_structure(atoms), scaled=scaled, two_theta_range=(5, 90))


def compare(ours: PowderPeaks, ref, strong=0.01):
    """Max |Δ2θ| and |ΔI| over the peaks above ``strong`` (% of the strongest) in either list."""
    rx, ry = np.asarray(ref.x), np.asarray(ref.y)
    top = max(ry.max(), ours.intensity.max())
    dtt = dI = 0.0
    for x, y, pick in ((ours.two_theta, ours.intensity, (rx, ry)), (rx, ry, (ours.two_theta, ours.intensity))):
        for t, i in zip(x, y):
            if i / top * 100 <= strong:
                continue
            j = np.argmin(np.abs(pick[0] - t))
            dtt, dI = max(dtt, abs(pick[0][j] - t)), max(dI, abs(pick[1][j] - i) / top * 100)
    return dtt, dI


@pytest.mark.parametrize("name", list(CRYSTALS))
def test_matches_pymatgen_with_its_form_factors(name):
    atoms = CRYSTALS[name]()
    ref = reference(atoms)
    ours = powder_peaks(atoms, "CuKa1", (5, 90), factors=pymatgen_f)
    assert len(ours) == len(ref.x)
    np.testing.assert_allclose(ours.two_theta, ref.x, rtol=0, atol=1e-4)
    np.testing.assert_allclose(ours.d, ref.d_hkls, rtol=1e-10)
    np.testing.assert_allclose(ours.intensity, ref.y, rtol=0, atol=1.0)  # 1 % of the strongest
    assert np.max(np.abs(ours.intensity - ref.y)) < 1e-8
    # multiplicity: pymatgen's families of one peak together
    assert ours.multiplicity.tolist() == [sum(f["multiplicity"] for f in fams) for fams in ref.hkls]
    assert [len(f) for f in ours.families] == ours.multiplicity.tolist()
    # absolute intensities Σ |F|² LP
    ref_abs = reference(atoms, scaled=False)
    np.testing.assert_allclose(powder_peaks(atoms, "CuKa1", factors=pymatgen_f, scaled=False).intensity,
                               ref_abs.y, rtol=1e-9)


@pytest.mark.parametrize("name", list(CRYSTALS))
def test_close_to_pymatgen_with_waasmaier_kirfel(name):
    atoms = CRYSTALS[name]()
    dtt, dI = compare(powder_peaks(atoms, 1.54056), reference(atoms))
    print(f"{name}: Waasmaier-Kirfel vs pymatgen table: max |d2theta| {dtt:.1e} deg, max |dI| {dI:.3f} % of strongest")
    assert dtt < 1e-4
    assert dI < 5.0, f"{name}: max |ΔI| = {dI:.3f} % of the strongest peak"


def test_debye_waller_matches_pymatgen():
    atoms = CRYSTALS["NaCl"]()
    ref = reference(atoms, debye_waller={"Na": 1.2, "Cl": 0.7})
    B = np.where(np.array(atoms.get_chemical_symbols()) == "Na", 1.2, 0.7)
    ours = powder_peaks(atoms, "CuKa1", factors=pymatgen_f, b_factors=B)
    np.testing.assert_allclose(ours.intensity, ref.y, atol=1e-8)


def test_wavelength_table_is_pymatgens():
    assert WAVELENGTHS == xrd.WAVELENGTHS
    a = CRYSTALS["NaCl"]()
    np.testing.assert_array_equal(powder_peaks(a, "cuka1").two_theta, powder_peaks(a, 1.54056).two_theta)


def test_lorentz_polarization():
    tth = np.array([20.0, 60.0, 90.0, 120.0])
    t = np.radians(tth / 2)
    np.testing.assert_allclose(lorentz_polarization(tth), (1 + np.cos(2 * t) ** 2) / (np.sin(t) ** 2 * np.cos(t)))
    assert lorentz_polarization(90.0) == pytest.approx(2 * np.sqrt(2))  # (1 + 0) / (½ · cos 45°)
    a = CRYSTALS["rutile"]()
    with_lp = powder_peaks(a, scaled=False)
    without = powder_peaks(a, scaled=False, lorentz_polarization=False)
    np.testing.assert_allclose(with_lp.intensity / without.intensity, lorentz_polarization(with_lp.two_theta),
                               rtol=1e-10)


def test_multiplicities_and_hkl():
    p = powder_peaks(CRYSTALS["NaCl"](), "CuKa1")
    mult = {tuple(h): m for h, m in zip(p.hkl.tolist(), p.multiplicity)}
    assert mult[(1, 1, 1)] == 8 and mult[(2, 0, 0)] == 6 and mult[(2, 2, 0)] == 12 and mult[(3, 1, 1)] == 24
    k = p.hkl.tolist().index([2, 0, 0])
    assert sorted(map(tuple, p.families[k])) == sorted([(2, 0, 0), (-2, 0, 0), (0, 2, 0), (0, -2, 0), (0, 0, 2),
                                                        (0, 0, -2)])
    np.testing.assert_allclose(p.d, 5.64 / np.linalg.norm(p.hkl, axis=1))
    np.testing.assert_allclose(p.two_theta, np.degrees(2 * np.arcsin(1.54056 / (2 * p.d))))
    assert p.intensity.max() == 100.0
    np.testing.assert_allclose(p.q, 2 * np.pi / p.d)
    cs = powder_peaks(CRYSTALS["CsCl"](), "CuKa1")
    assert cs.hkl[:2].tolist() == [[1, 0, 0], [1, 1, 0]] and cs.multiplicity[:2].tolist() == [6, 12]
    # Si (diamond): 200 and 222 are extinct, so absent; with min_intensity=0 they are kept
    si = powder_peaks(CRYSTALS["Si"](), "CuKa1")
    assert [2, 0, 0] not in si.hkl.tolist() and [2, 2, 2] not in si.hkl.tolist()
    assert [2, 2, 2] in powder_peaks(CRYSTALS["Si"](), "CuKa1", min_intensity=0).hkl.tolist()


def test_kalpha_doublet_follows_bragg():
    a = CRYSTALS["NaCl"]()
    single = powder_peaks(a, "CuKa1", scaled=False)
    dbl = powder_peaks(a, "CuKa", doublet=True, scaled=False)
    assert len(dbl) == 2 * len(single)
    l1, l2 = WAVELENGTHS["CuKa1"], WAVELENGTHS["CuKa2"]
    assert set(np.unique(dbl.wavelength)) == {l1, l2}
    k1, k2 = dbl.wavelength == l1, dbl.wavelength == l2
    np.testing.assert_allclose(dbl.two_theta[k1], single.two_theta, atol=1e-10)
    np.testing.assert_allclose(dbl.two_theta[k2], np.degrees(2 * np.arcsin(l2 / (2 * single.d))), atol=1e-10)
    split = dbl.two_theta[k2] - dbl.two_theta[k1]
    assert np.all(np.diff(split) > 0) and split[0] == pytest.approx(0.0694, abs=1e-4)  # 111 at 27.37°
    np.testing.assert_allclose(split, np.degrees(2 * np.tan(np.radians(single.two_theta) / 2) * (l2 - l1) / l1),
                               rtol=5e-3)  # Δ2θ ≈ 2 tanθ Δλ/λ
    # Kα2 line at half weight, LP at its own angle
    ratio = dbl.intensity[k2] / dbl.intensity[k1]
    expect = 0.5 * lorentz_polarization(dbl.two_theta[k2]) / lorentz_polarization(dbl.two_theta[k1])
    np.testing.assert_allclose(ratio, expect, rtol=1e-3)  # form factors at the same s: |F|² equal
    assert powder_peaks(a, "MoKa1", doublet=True).wavelength.min() == WAVELENGTHS["MoKa1"]
    with pytest.raises(ValueError, match="named Kα"):
        powder_peaks(a, 1.5406, doublet=True)


@pytest.mark.parametrize("profile", ["gaussian", "lorentzian", "pseudo-voigt"])
def test_profiles_have_unit_area(profile):
    a = CRYSTALS["NaCl"]()
    peaks = powder_peaks(a, min_intensity=0)
    x, y = powder_pattern(a, profile=profile, U=0.02, V=-0.01, W=0.01, eta=0.3)  # default grid 5..90°, 0.01°
    assert np.trapezoid(y, x) == pytest.approx(peaks.intensity.sum(), rel=1e-3)
    # each profile alone on a fine grid (±25 FWHM, FWHM / 100 steps)
    x = np.linspace(-25, 25, 5001)
    for fwhm in (0.05, 1.0):
        phi = profile_block(30 + fwhm * x, np.array([30.0]), np.array([fwhm]), profile, 0.3)[0]
        assert np.trapezoid(phi, 30 + fwhm * x) == pytest.approx(1.0, abs=1e-3)
    # 111 and 200 with all of their tails (±20 FWHM) on a fine grid
    x = np.linspace(20, 40, 200_001)
    _, y = powder_pattern(a, x, profile=profile, W=0.04, scaled=False)
    two = powder_peaks(a, two_theta_range=(26, 33), scaled=False)
    assert len(two) == 2 and np.trapezoid(y, x) / two.intensity.sum() == pytest.approx(1.0, abs=1e-3)
    # on a q grid the area is the same
    lam = 1.5406
    q = 4 * np.pi * np.sin(np.radians(np.linspace(5, 90, 8501)) / 2) / lam
    _, yq = powder_pattern(a, q=q, profile=profile, W=0.01)
    assert np.trapezoid(yq, q) == pytest.approx(peaks.intensity.sum(), rel=1e-3)
    assert q[np.argmax(yq)] == pytest.approx(2 * np.pi / 2.82, abs=np.diff(q).max())  # 200


def test_pattern_maxima_at_sticks_and_batches():
    for name in ("NaCl", "rutile"):
        a = CRYSTALS[name]()
        peaks = powder_peaks(a)
        x, y = powder_pattern(a, np.linspace(5, 90, 85_001), W=0.0025, background=1.0)
        assert y.min() >= 1.0
        for t, i in zip(peaks.two_theta, peaks.intensity):
            if i < 5:
                continue
            win = np.abs(x - t) < 0.05
            assert x[win][np.argmax(y[win])] == pytest.approx(t, abs=1e-3)
    crystals = [CRYSTALS["NaCl"](), CRYSTALS["CsCl"]()]
    x, Y = powder_pattern(crystals, np.linspace(20, 60, 401))
    assert Y.shape == (2, 401)
    np.testing.assert_allclose(Y[1], powder_pattern(crystals[1], x)[1])
    listed = powder_peaks(crystals)
    assert isinstance(listed, list) and len(listed[1]) == len(powder_peaks(crystals[1]))


def test_bad_input():
    a = CRYSTALS["NaCl"]()
    for wl in (-1.0, 0, float("nan"), "XyKa1", True):
        with pytest.raises(ValueError, match="wavelength"):
            powder_peaks(a, wl)
    for rng in ((-5, 90), (5, 200), (90, 5)):
        with pytest.raises(ValueError, match="two_theta_range"):
            powder_peaks(a, two_theta_range=rng)
    with pytest.raises(ValueError, match="two_theta must lie"):
        powder_pattern(a, np.linspace(10, 190, 50))
    with pytest.raises(ValueError, match="increasing"):
        powder_pattern(a, np.linspace(90, 10, 50))
    with pytest.raises(ValueError, match="unknown profile"):
        powder_pattern(a, profile="voigt")
    with pytest.raises(ValueError, match="eta"):
        powder_pattern(a, eta=1.5)
    with pytest.raises(ValueError, match="Caglioti"):
        powder_pattern(a, W=0.0)
    with pytest.raises(ValueError, match="not both"):
        powder_pattern(a, np.linspace(10, 20, 5), q=np.linspace(1, 2, 5))
    with pytest.raises(ValueError, match="q must lie"):
        powder_pattern(a, q=np.linspace(1, 9, 5))
    with pytest.raises(ValueError, match="unit cell"):
        powder_peaks(Atoms("Cu"))


def test_cli_crystal(tmp_path, capsys):
    import ase.io

    cif = tmp_path / "NaCl.cif"
    ase.io.write(cif, CRYSTALS["NaCl"]())
    png, csv, npz = tmp_path / "p.png", tmp_path / "p.csv", tmp_path / "g.npz"
    assert main(["crystal", str(cif), "--pxrd", "--wavelength", "CuKa1", "--two-theta", "5:90:2001",
                 "--plot", str(png), "--peaks", str(csv)]) == 0
    out = capsys.readouterr().out
    assert "2θ (°)" in out and "   31.7035   2.82000    2   0   0     6    100.00" in out
    table = np.loadtxt(csv, delimiter=",", skiprows=1)
    np.testing.assert_allclose(table[:, 0], powder_peaks(cif, "CuKa1").two_theta, atol=1e-6)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["crystal", str(cif), "--hkl-grid", "3", "--out", str(npz), "--factors", "Z"]) == 0
    g = np.load(npz)
    assert g["hkl_grid"].shape == (7, 7, 7) and int(g["H"]) == 3
    assert g["hkl_grid"][3 + 2, 3, 3] == pytest.approx(4 * (11 + 17))  # F(200) = 4 (Z_Na + Z_Cl)
    np.testing.assert_allclose(g["intensity"], np.abs(g["hkl_grid"]) ** 2)
    np.testing.assert_allclose(g["cell"], 5.64 * np.eye(3), atol=1e-9)
    capsys.readouterr()
    assert main(["crystal", str(tmp_path / "missing.cif"), "--pxrd"]) == 2
    assert "not found" in capsys.readouterr().err
    xyz = tmp_path / "m.xyz"
    xyz.write_text("2\n\nNa 0 0 0\nCl 2.8 0 0\n")
    assert main(["crystal", str(xyz), "--pxrd"]) == 2
    assert "unit cell" in capsys.readouterr().err
    assert main(["crystal", str(cif), "--pxrd", "--wavelength", "-1"]) == 2
    assert "wavelength" in capsys.readouterr().err
    assert main(["crystal", str(cif), "--hkl-grid", "3"]) == 2
    assert "--out" in capsys.readouterr().err


def test_compiled_batch_path_equals_the_numpy_path():
    """'xray' and 'Z' run in the compiled batch kernel; the same tables as callables take the NumPy path."""
    from ase.build import bulk
    from ase.spacegroup import crystal as sgc

    from xstructure.factors import xray_form_factor

    crystals = [bulk("NaCl", "rocksalt", a=5.64, cubic=True),
                sgc(["Ti", "O"], basis=[(0, 0, 0), (0.305, 0.305, 0)], spacegroup=136,
                    cellpar=[4.594, 4.594, 2.959, 90, 90, 90]),
                sgc(["Zn", "S", "O"], basis=[(0.1, 0.2, 0.3), (0.7, 0.1, 0.45), (0.3, 0.6, 0.1)], spacegroup=14,
                    cellpar=[5.1, 6.3, 7.2, 90, 103.0, 90])]
    wk = lambda sym, s: xray_form_factor(sym, 4 * np.pi * s)  # noqa: E731
    from xstructure.factors import atomic_number

    z = lambda sym, s: np.full(s.shape, float(atomic_number(sym)))  # noqa: E731
    cases = [(name, table, dict(wavelength="CuKa", doublet=True), scaled, mi)  # two lines: merged in Python
             for name, table in (("xray", wk), ("Z", z)) for scaled, mi in ((True, 1e-3),)]
    cases += [(name, table, dict(wavelength="CuKa1"), scaled, mi)  # one line: finished for the batch at once
              for name, table in (("xray", wk), ("Z", z)) for scaled, mi in ((True, 1e-3), (False, 0.5))]
    for name, table, line, scaled, mi in cases:
        batch = powder_peaks(crystals, two_theta_range=(5, 120), factors=name, b_factors=0.7, scaled=scaled,
                             min_intensity=mi, **line)
        for atoms, got in zip(crystals, batch):
            ref = powder_peaks(atoms, two_theta_range=(5, 120), factors=table, b_factors=0.7, scaled=scaled,
                               min_intensity=mi, **line)
            assert len(got) == len(ref) > 10
            np.testing.assert_allclose(got.two_theta, ref.two_theta, rtol=0, atol=1e-12)
            np.testing.assert_allclose(got.intensity, ref.intensity, rtol=1e-10)
            np.testing.assert_array_equal(got.multiplicity, ref.multiplicity)
            np.testing.assert_array_equal(got.hkl, ref.hkl)
            for a, b in zip(got.families, ref.families):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(got.wavelength, ref.wavelength)
