"""The acceptance study of the time-resolved layer (benchmarks/experiment_recovery.py) at its quick size, and the
outlier test on profiles of less than one count per q point.

The study simulates 1,3-cyclohexadiene → cZt-hexatriene pump-probe runs, reduces them with the defaults and
recovers time zero, the instrument response, the excitation fraction, the product among nine C6H8 structures and
the ΔPDF; at a clean dose every goal of the study must hold."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

from xstructure.experiment import simulate_pumpprobe

pytest.importorskip("rdkit")
pytest.importorskip("matplotlib")

STUDY = Path(__file__).resolve().parent.parent / "benchmarks" / "experiment_recovery.py"


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("experiment_recovery", STUDY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_candidates_are_c6h8_and_the_conformers_have_their_dihedrals(study):
    reactant, cands = study.structures()
    assert reactant.get_chemical_formula() == "C6H8"
    assert len(cands) == 9 and all(a.get_chemical_formula() == "C6H8" for a in cands.values())
    for name, (d1, d2) in study.HEXATRIENE_DIHEDRALS.items():
        a1, central, a2 = cands[name].info["dihedrals"]
        assert abs(central) < 5                                      # the central C3=C4 stays Z
        for want, got in ((d1, a1), (d2, a2)):                       # s-cis relaxes to gauche, s-trans stays
            assert (abs(got) < 70) if want == 0 else (abs(got) > 170)


def test_goals_at_a_clean_dose(study):
    setup = study.Setup("xray", *study.structures())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        r = study.recover("xray", 1e5, 10000, seed=1, setup=setup)
    assert abs(r["t0_error_fs"]) <= 10
    assert abs(r["width_rel_error"]) <= 0.20
    assert abs(r["fraction_rel_error"]) <= 0.05
    assert r["rank"] == 1 and r["best"] == study.TRUE_PRODUCT
    assert r["pdf_corr"] >= 0.98
    assert all(study.meets_goals(r).values())
    assert r["rejected"] == r["spiked"]                             # the spiked shots and no others


def test_outlier_test_keeps_shots_of_less_than_one_count_per_point():
    """Electron profiles fall by 10³ over 0.5-12 Å⁻¹: at 10⁴ electrons per shot the high-q points hold < 0.7 counts,
    more than half the shots have 0 there and the MAD is 0.  The scale is then the RMS deviation, and only the spiked
    shots are rejected (with σ̂ = MAD every shot with a count there was rejected, and the reduction failed)."""
    q = np.linspace(0.5, 12, 300)
    run, truth = simulate_pumpprobe("CHD", "C=CC=CC=C", q, np.arange(-300, 601, 50), 4000, 0.12, 0.0, 80.0, 1e4,
                                    probe="electron", energy_kev=3700.0, outliers=0.002, seed=5)
    mu = 1e4 * truth.i_reactant / truth.i_reactant.sum()
    assert mu[-1] < np.log(2)                                      # P(0 counts) > 1/2 at the highest q
    red = run.reduce(num_threads=1)
    assert red.rejected["outlier"] == truth.outliers.size == 8
    assert np.all(np.isfinite(red.diff))
