"""The general interpreter shipped with the package, its library split and its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rdkit")
pytest.importorskip("safetensors")

import xstructure as xs  # noqa: E402
from xstructure.learn import general as G  # noqa: E402
from xstructure.learn.library import Library, check_split, scaffold_of, scaffold_split  # noqa: E402
from xstructure.pools import sampling  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return G.pretrained("general-xray")


def _test_molecule(model, min_atoms=10):
    for m in model.config["split"]:
        if m["split"] == "test" and len(model.atoms_of(m["smiles"])) >= min_atoms:
            try:
                sampling.minimum_modes(model.atoms_of(m["smiles"]))
            except ValueError:
                continue
            return m["smiles"]
    raise AssertionError("no usable test molecule")


def _patterns(model, smiles, n, seed, noise=0.005, temperature=300.0):
    atoms = model.atoms_of(smiles)
    nm = sampling.minimum_modes(atoms)
    X = sampling.wigner(atoms, n, temperature, modes=nm, rng=seed)
    I = xs.ops.debye(atoms.numbers, torch.as_tensor(X), model.grid, probe=model.config["probe"],
                     signal="molecular").double().numpy()
    rng = np.random.default_rng(seed + 1)
    return X, I + noise * np.abs(I) * rng.standard_normal(I.shape), nm.positions


# --------------------------------------------------------------------------------------------------------
# The library and its split
# --------------------------------------------------------------------------------------------------------


def test_shipped_split_leaks_no_scaffold(model):
    train = [m["smiles"] for m in model.config["molecules"]]
    held = model.config["split"]
    assert len(train) >= 1500 and sum(m["split"] == "test" for m in held) >= 100
    smiles = train + [m["smiles"] for m in held]
    split = ["train"] * len(train) + [m["split"] for m in held]
    check_split(smiles, split)             # raises on a shared molecule or non-empty scaffold
    train_scaffolds = {scaffold_of(s) for s in train} - {""}
    for m in held:
        assert m["scaffold"] == scaffold_of(m["smiles"])
        assert not m["scaffold"] or m["scaffold"] not in train_scaffolds
    keys = [m["inchikey"] for m in model.config["molecules"]]
    assert len(set(keys)) == len(keys) and not set(keys) & {m["inchikey"] for m in held}


def test_scaffold_split_keeps_groups_together():
    scaffolds = ["c1ccccc1"] * 50 + ["C1CCNC1"] * 5 + ["C1CCOC1"] * 4 + [""] * 41
    split = scaffold_split(scaffolds, test=0.1, val=0.05, seed=3, max_group=40)
    for sc in set(scaffolds) - {""}:
        assert len({p for s, p in zip(scaffolds, split) if s == sc}) == 1
    assert {p for s, p in zip(scaffolds, split) if s == "c1ccccc1"} == {"train"}   # larger than max_group
    assert 0 < split.count("test") <= 10 and split.count("val") <= 5


def test_check_split_catches_a_leak():
    with pytest.raises(ValueError, match="training scaffold"):
        check_split(["Cc1ccccc1", "Oc1ccccc1"], ["train", "test"])
    with pytest.raises(ValueError, match="also in training"):
        check_split(["CCO", "CCO"], ["train", "val"])
    with pytest.raises(ValueError, match="stereoisomer"):
        check_split(["C[C@H](N)CC", "C[C@@H](N)CC"], ["train", "test"])
    check_split(["CCO", "CCCO", "c1ccccc1", "C1CCCCC1"], ["train", "test", "train", "test"])


def test_library_records_round_trip(tmp_path):
    lib = Library(["CCO", "c1ccccc1O"], ["k1", "k2"], ["C2H6O", "C6H6O"], ["", "c1ccccc1"], ["a", "b"],
                  ["train", "test"])
    lib.to_json(tmp_path / "lib.json")
    back = Library.from_json(tmp_path / "lib.json")
    assert back == lib and back.where("test") == [1]
    with pytest.raises(ValueError, match="keys"):
        Library.from_records([{"smiles": "C"}])


# --------------------------------------------------------------------------------------------------------
# The shipped weights
# --------------------------------------------------------------------------------------------------------


def test_shipped_weights_load_and_beat_the_equilibrium_structure(model):
    smiles = _test_molecule(model)
    assert not model.seen(smiles)
    X, I, x0 = _patterns(model, smiles, 24, seed=11)
    P = model.predict(I, smiles, model.grid)
    assert P.shape == X.shape and np.isfinite(P).all()
    h = model.atoms_of(smiles).numbers > 1
    r_model = xs.rmsd(P[:, h], X[:, h])
    r_eq = xs.rmsd(np.broadcast_to(x0, X.shape)[:, h], X[:, h])
    assert np.median(r_model) < np.median(r_eq)
    one = model.predict(I[0], smiles, model.grid)
    np.testing.assert_allclose(one, P[0], atol=1e-3)   # float32 inside: batched and single sums differ in order


def test_the_electron_model_reads_electron_patterns_and_refuses_xray_ones():
    electron = G.pretrained("general-electron")
    assert electron.config["probe"] == "electron"
    smiles = _test_molecule(electron, min_atoms=14)
    assert not electron.seen(smiles)
    X, I, x0 = _patterns(electron, smiles, 24, seed=12)
    h = electron.atoms_of(smiles).numbers > 1
    r_model = xs.rmsd(electron.predict(I, smiles, electron.grid)[:, h], X[:, h])
    r_eq = xs.rmsd(np.broadcast_to(x0, X.shape)[:, h], X[:, h])
    assert np.median(r_model) < 0.9 * np.median(r_eq)
    xray = xs.simulate(electron.atoms_of(smiles), electron.grid, probe="xray", signal="molecular")
    with pytest.raises(ValueError, match=r"what this molecule scatters \(electron"):
        electron.predict(xray, smiles, electron.grid)


def test_the_trained_network_adds_to_the_linear_reader(model):
    # its untrained start (c1 = 1, c2 = 0) is the linear reader alone; the gain is largest for larger molecules
    # (without the calibrated iterations, which follow the network)
    untrained = G.GeneralInterpreter(model.config)
    picks = [m["smiles"] for m in model.config["split"]
             if m["split"] == "test" and len(model.atoms_of(m["smiles"])) >= 24][:6]
    trained_err, linear_err = [], []
    for k, smiles in enumerate(picks):
        try:
            X, I, _ = _patterns(model, smiles, 16, seed=20 + k)
        except ValueError:   # an MMFF94 saddle point
            continue
        h = model.atoms_of(smiles).numbers > 1
        trained_err.append(xs.rmsd(model.predict(I, smiles, model.grid, iterations=0)[:, h], X[:, h]))
        linear_err.append(xs.rmsd(untrained.predict(I, smiles, model.grid, iterations=0)[:, h], X[:, h]))
    assert len(trained_err) >= 4
    assert np.mean(np.concatenate(trained_err)) < 0.97 * np.mean(np.concatenate(linear_err))


def test_calibrated_iterations_improve_a_flexible_molecule(model):
    # an ester with a fluorinated propyl chain (held out): soft torsions the linearised reader and the network
    # under-correct; the calibrated Gauss–Newton iterations halve its error on the benchmark
    smiles = "CCCC(F)C(=O)OCC"
    assert not model.seen(smiles)
    X, I, _ = _patterns(model, smiles, 24, seed=31)
    h = model.atoms_of(smiles).numbers > 1
    network = xs.rmsd(model.predict(I, smiles, model.grid, iterations=0)[:, h], X[:, h])
    P, reader = model.predict(I, smiles, model.grid, return_reader=True)
    assert 1 <= len(reader.stages) <= model.config["iterations"] and reader.ref_I is None   # draws let go
    assert np.mean(xs.rmsd(P[:, h], X[:, h])) < 0.8 * np.mean(network)
    one = model.predict(I, smiles, model.grid, iterations=1)
    assert not np.allclose(one, P) or len(reader.stages) == 1
    assert not np.allclose(one, model.predict(I, smiles, model.grid, iterations=0))


def test_the_default_runs_the_iterations_that_each_gain_one_percent(model):
    # every iteration costs about half as much as the network: by default a prediction runs those that each lowered the
    # validation error by at least config["iteration_gain"] of itself
    smiles = "CCCC(F)C(=O)OCC"
    X, I, _ = _patterns(model, smiles, 8, seed=32)
    P, reader = model.predict(I, smiles, model.grid, return_reader=True)
    e, n, gain = reader.calibration_errors, reader.default_iterations, model.config["iteration_gain"]
    assert gain == 0.01 and len(e) == len(reader.stages) + 1 and 0 <= n <= len(reader.stages)
    assert all(e[k] - e[k + 1] >= gain * e[k] for k in range(n))
    assert n == len(reader.stages) or e[n] - e[n + 1] < gain * e[n]
    np.testing.assert_allclose(P, model.predict(I, smiles, model.grid, iterations=n), atol=1e-8)
    for bad in (-0.1, 1.0, "1%", None, True):
        with pytest.raises(ValueError, match="iteration_gain must be a fraction"):
            G.GeneralInterpreter({**model.config, "iteration_gain": bad}, net=model.net)
    # no minimum gain: every iteration kept runs, the same as asking for them all
    every = G.GeneralInterpreter({**model.config, "iteration_gain": 0.0}, net=model.net)
    P0, r0 = every.predict(I, smiles, every.grid, return_reader=True)
    assert r0.default_iterations == len(r0.stages) >= n
    np.testing.assert_allclose(P0, model.predict(I, smiles, model.grid, iterations=model.config["iterations"]),
                               atol=1e-8)


def test_the_md_reader_calibrates_on_its_md_draws(model):
    # hot sample, MD reader: the reference draws are MD frames (their z a least-squares projection); a small
    # reference ensemble keeps it quick
    small = G.GeneralInterpreter({**model.config, "md_reference": 1100, "n_reference": 300}, net=model.net)
    smiles = "OCC(C)Cl"
    built = small.reader(smiles, temperature=1500.0, ensemble="md")   # md_reference frames, over two MD blocks
    assert len(built.ref_z) == 1100 and built.draws.shape == (G.SEARCH_CHECK, len(built.atoms), 3)
    assert len(small.reader(smiles).ref_z) == 300                       # the Wigner reader: n_reference draws
    X = sampling.sample(small.atoms_of(smiles), "md", 8, 1500.0, seed=3)["positions"]
    I = xs.ops.debye(small.atoms_of(smiles).numbers, torch.as_tensor(X), small.grid, signal="molecular").double()
    P, reader = small.predict(I.numpy(), smiles, small.grid, temperature=1500.0, ensemble="md", return_reader=True)
    assert P.shape == X.shape and np.isfinite(P).all()
    assert reader.stages is not None and len(reader.stages) <= small.config["iterations"] and reader.ref_z is None
    again = small.predict(I.numpy(), smiles, small.grid, temperature=1500.0, ensemble="md")
    np.testing.assert_allclose(again, P, atol=1e-8)   # the fitted iterations are cached with the reader (the
    # threaded kernels sum in a varying order: 1e-10 Å differences)


def test_levenberg_marquardt_fit_finds_the_structure_in_its_basin():
    from xstructure.learn.refine import distance_restraints, fit_lm

    atoms = xs.structures.molecule("CCC(CF)C(C)O")
    nm = sampling.minimum_modes(atoms)
    X = sampling.wigner(atoms, 16, 1000.0, modes=nm, rng=4)
    q = np.linspace(0.5, 10.0, 200)
    I = xs.simulate((atoms.numbers, X), q, signal="molecular")
    sigma = 0.005 * np.abs(I) + 1e-3 * np.abs(I).max()
    pairs, mean, std = distance_restraints(atoms.numbers, nm.positions, X)
    assert len(pairs) > len(atoms)   # bonds and angles
    start = X + 0.15 * np.random.default_rng(5).standard_normal(X.shape)
    h = atoms.numbers > 1
    before = xs.rmsd(start[:, h], X[:, h])
    fit, obj, chi2 = fit_lm(start, I, sigma, atoms.numbers, q, probe="xray", signal="molecular", pairs=pairs,
                            pair_mean=mean, pair_std=std, steps=30, chunk=5)   # chunks of 5: 5, 5, 5, 1
    after = xs.rmsd(fit[:, h], X[:, h])
    chi2_start = (((xs.simulate((atoms.numbers, start), q, signal="molecular") - I) / sigma) ** 2).mean(1)
    assert np.all(chi2 < 0.1 * chi2_start) and np.median(chi2) < 0.02   # noise-free: it fits to the restraints
    # an isotropic pattern fixes the structure only so far (exact fits lie ~0.1 Å from the truth): the fit lands
    # there, from starts twice as far
    assert np.median(after) < 0.7 * np.median(before) and np.median(after) < 0.15
    d = np.linalg.norm(fit[:, pairs[:, 0]] - fit[:, pairs[:, 1]], axis=-1)
    np.testing.assert_allclose(obj, 0.5 * (200 * chi2 + (((d - mean) / std) ** 2).sum(1)), rtol=1e-6)


def test_search_replaces_the_prediction_only_where_its_check_favours_it(model, monkeypatch):
    # a hot chloro-lactam, MD reader: the multi-start search finds the ring's pucker and the C–Cl swing
    monkeypatch.setattr(G, "SEARCH_STARTS", (600, 100))   # fewer candidate starts than shipped: quick
    small = G.GeneralInterpreter({**model.config, "md_reference": 600}, net=model.net)
    smiles = "O=C1NCCC1Cl"
    X = sampling.sample(small.atoms_of(smiles), "md", 24, 1500.0, seed=9, chunk=3)["positions"]
    I = xs.ops.debye(small.atoms_of(smiles).numbers, torch.as_tensor(X), small.grid, signal="molecular").double()
    I = (I * (1 + 0.005 * torch.randn(I.shape, generator=torch.Generator().manual_seed(1), dtype=I.dtype))).numpy()
    P, reader = small.predict(I, smiles, small.grid, temperature=1500.0, ensemble="md", return_reader=True)
    assert reader.search_check is None and reader.starts is None
    S = small.predict(I, smiles, small.grid, temperature=1500.0, ensemble="md", search=8)
    check = reader.search_check
    assert check["starts"] == 8 and check["draws"] == G.SEARCH_CHECK and len(reader.starts) == 600
    assert check["used"] == (check["search_rmsd"] < check["prediction_rmsd"])
    h = small.atoms_of(smiles).numbers > 1
    if check["used"]:
        assert np.median(xs.rmsd(S[:, h], X[:, h])) < np.median(xs.rmsd(P[:, h], X[:, h]))
    else:
        np.testing.assert_allclose(S, P, atol=1e-8)
    assert check["used"]   # on this molecule the search wins its check (here 0.15 against 0.21 Å)


def test_the_gauss_newton_step_stays_in_its_trust_region(model):
    reader = model.reader("CCCC(F)C(=O)OCC")
    _, I, _ = _patterns(model, "CCCC(F)C(=O)OCC", 6, seed=32)
    It = torch.as_tensor(I)
    M = reader.L.shape[1]
    z = 3.0 * torch.randn(6, M, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for cap in (0.1, 0.3):
        dz = reader.step(It, reader.weights(It), z, cap)
        assert torch.isfinite(dz).all() and (dz.norm(dim=1) <= cap * M ** 0.5 * (1 + 1e-9)).all()
    full = reader.step(It, reader.weights(It), z, 1e9)
    short = reader.step(It, reader.weights(It), z, 0.1)
    long_ = full.norm(dim=1) > 0.1 * M ** 0.5
    assert long_.any()      # far from the truth, the full steps are longer than the region: they are shortened
    torch.testing.assert_close(short[long_] / short[long_].norm(dim=1, keepdim=True),
                               full[long_] / full[long_].norm(dim=1, keepdim=True))


def test_any_grid_inside_the_range_is_resampled(model):
    smiles = "CN1CCOCC1"
    atoms = model.atoms_of(smiles)
    q = np.linspace(0.5, 10, 500)
    I_tot = xs.simulate(atoms, q, probe="xray", signal="total")
    I_mol = xs.simulate(atoms, q, probe="xray", signal="molecular")
    P = model.predict(I_tot, smiles, q, signal="total")
    assert P.shape == (len(atoms), 3) and np.isfinite(P).all()
    Ir, gq = model.resample(I_tot, q)
    assert gq[0] >= q[0] and gq[-1] <= q[-1] and len(gq) == 200
    reader = model.reader(smiles, gq, signal="total")
    np.testing.assert_allclose(model._to_molecular(Ir, reader, "total")[0], np.interp(gq, q, I_mol),
                               rtol=0, atol=1e-3 * np.abs(I_mol).max())
    part = (q >= 1.0) & (q <= 8.0)
    assert model.predict(I_tot[part], smiles, q[part], signal="total").shape == (len(atoms), 3)
    # on the model's own grid the patterns pass through as they are; a grid a rounding error away is interpolated,
    # to the same values
    I_grid = xs.simulate(atoms, model.grid, probe="xray", signal="molecular")[None]
    same, g = model.resample(I_grid, model.grid)
    assert same is I_grid and np.array_equal(g, model.grid)
    near, g2 = model.resample(I_grid, model.grid * (1 + 1e-12))
    assert near is not I_grid and np.array_equal(g2, model.grid)
    np.testing.assert_allclose(near[0], I_grid[0], rtol=0, atol=1e-9 * np.abs(I_grid).max())


def test_save_load_round_trip(model, tmp_path):
    model.save(tmp_path / "m")
    back = G.GeneralInterpreter.load(tmp_path / "m")
    smiles = "CCOC(C)=O"
    I = xs.simulate(model.atoms_of(smiles), model.grid, probe="xray", signal="molecular")
    np.testing.assert_allclose(back.predict(I, smiles, model.grid), model.predict(I, smiles, model.grid), atol=1e-6)
    (tmp_path / "bad").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json"):
        G.GeneralInterpreter.load(tmp_path / "bad")


def test_identify_ranks_the_right_isomer_first():
    model = G.GeneralInterpreter({})   # identification uses the readers only, not the network
    cands = ["CCCCO", "CCOCC", "CC(C)(C)O", "COCCC"]
    for k, truth in enumerate(cands):
        atoms = model.atoms_of(truth)
        # the truth from Langevin MD at 300 K, not from the harmonic ensemble the scores assume
        X = sampling.sample(atoms, "md", 1, 300.0, seed=100 + k)["positions"]
        I = xs.simulate((atoms.numbers, X), model.grid, probe="xray", signal="molecular")[0]
        I = I + 0.01 * np.abs(I) * np.random.default_rng(k).standard_normal(I.shape)
        ranked = G.identify(I, cands, model.grid, model=model, noise=0.01)
        assert ranked[0][0] == truth, ranked
        assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    atoms = [model.atoms_of(c) for c in cands[:2]]
    ranked = G.identify(I, atoms, model.grid, model=model, noise=0.01)
    assert sorted(lab for lab, _ in ranked) == ["#0 C4H10O", "#1 C4H10O"]


# --------------------------------------------------------------------------------------------------------
# Clear errors
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("molecule", "q", "match"), [
    ("CCBr", np.linspace(0.5, 10, 200), "never seen element.*Br"),
    ("CCCCCCCCCCCC", np.linspace(0.5, 10, 200), "38 atoms.*at most 30"),
    ("CCO", np.linspace(0.2, 12, 200), "outside the model's range 0.5–10"),
    ("CCO", np.linspace(5.0, 5.5, 30), "covers only"),
])
def test_clear_errors(model, molecule, q, match):
    with pytest.raises(ValueError, match=match):
        model.predict(np.ones(len(q)), molecule, q)


def test_other_bad_inputs(model):
    q = model.grid
    with pytest.raises(ValueError, match="points but q has"):
        model.predict(np.ones(10), "CCO", q)
    with pytest.raises(ValueError, match="NaN or inf"):
        model.predict(np.full(len(q), np.nan), "CCO", q)
    with pytest.raises(ValueError, match="noise"):
        model.predict(np.ones(len(q)), "CCO", q, noise=-1)
    with pytest.raises(ValueError, match="unknown pretrained"):
        G.pretrained("general-neutron")
    with pytest.raises(ValueError, match="non-empty"):
        G.identify(np.ones(len(q)), [], q, model=model)
    with pytest.raises(ValueError, match="chunk"):
        model.predict(np.ones(len(q)), "CCO", q, chunk=0)
    with pytest.raises(ValueError, match="refine_steps"):
        model.predict(np.ones(len(q)), "CCO", q, refine_steps=-1)
    for bad in (-1, True, 1.5):
        with pytest.raises(ValueError, match="iterations"):
            model.predict(np.ones(len(q)), "CCO", q, iterations=bad)
    for bad in (-1, True, 2.0, 5000):
        with pytest.raises(ValueError, match="search must be"):
            model.predict(np.ones(len(q)), "CCO", q, search=bad)
    with pytest.raises(ValueError, match="molecular or total"):
        model.predict(np.ones(len(q)), "CCO", q, signal="sM")
    with pytest.raises(ValueError, match="all zeros"):
        model.predict(np.zeros(len(q)), "CCO", q)
    with pytest.raises(ValueError, match="shape"):
        model.predict(np.ones((2, 2, len(q))), "CCO", q)


def test_a_pattern_of_the_other_probe_or_scale_is_refused(model):
    atoms = model.atoms_of("CN1CCOCC1")
    q = model.grid
    electron = xs.simulate(atoms, q, probe="electron", signal="molecular")
    with pytest.raises(ValueError, match=r"I_mol is 0\.\d+x what this molecule scatters \(xray"):
        model.predict(electron, "CN1CCOCC1", q)
    xray = xs.simulate(atoms, q, probe="xray", signal="molecular")
    with pytest.raises(ValueError, match="another scale"):
        model.predict(4 * xray, "CN1CCOCC1", q)
    assert model.predict(1.2 * xray, "CN1CCOCC1", q).shape == (len(atoms), 3)   # a mis-scaled dose: still read


def test_cli_predict_general(tmp_path):
    exe = [sys.executable, "-m", "xstructure"]
    csv = tmp_path / "p.csv"
    with open(csv, "w") as fh:
        subprocess.run(exe + ["simulate", "CN1CCOCC1", "--q", "0.5:10:500"], stdout=fh, check=True)
    out = tmp_path / "s.xyz"
    r = subprocess.run(exe + ["predict", "general-xray", str(csv), "--molecule", "CN1CCOCC1", "--q", "0.5:10:500",
                              "--out", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "wrote 1 structure(s) of C5H11NO" in r.stdout
    import ase.io

    assert len(ase.io.read(out)) == 18
    bad = subprocess.run(exe + ["predict", "general-xray", str(csv), "--molecule", "CCBr", "--out",
                                str(tmp_path / "t.xyz")], capture_output=True, text=True)
    assert bad.returncode != 0 and "Br" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "t.xyz").exists()
    # the same X-ray pattern to the electron model: refused, nothing written
    wrong = subprocess.run(exe + ["predict", "general-electron", str(csv), "--molecule", "CN1CCOCC1", "--out",
                                  str(tmp_path / "e.xyz")], capture_output=True, text=True)
    assert wrong.returncode != 0 and "other probe" in wrong.stderr and "Traceback" not in wrong.stderr
    assert not (tmp_path / "e.xyz").exists()
    # the network alone (--iterations 0) and a bad count
    fast = subprocess.run(exe + ["predict", "general-xray", str(csv), "--molecule", "CN1CCOCC1", "--iterations", "0",
                                 "--out", str(tmp_path / "f.xyz")], capture_output=True, text=True)
    assert fast.returncode == 0, fast.stderr
    assert len(ase.io.read(tmp_path / "f.xyz")) == 18
    neg = subprocess.run(exe + ["predict", "general-xray", str(csv), "--molecule", "CN1CCOCC1", "--iterations", "-1",
                                "--out", str(tmp_path / "n.xyz")], capture_output=True, text=True)
    assert neg.returncode != 0 and "iterations" in neg.stderr and "Traceback" not in neg.stderr
    assert not (tmp_path / "n.xyz").exists()
    # the hot samples' options: a bad search count and an MD reader without a temperature are refused
    for extra, word in ((["--search", "-1"], "search must be"), (["--ensemble", "md", "--temperature", "0"], "md")):
        bad = subprocess.run(exe + ["predict", "general-xray", str(csv), "--molecule", "CN1CCOCC1", *extra, "--out",
                                    str(tmp_path / "h.xyz")], capture_output=True, text=True)
        assert bad.returncode != 0 and word in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "h.xyz").exists()


# --------------------------------------------------------------------------------------------------------
# The scripts that made and measured the shipped model, at a tiny size
# --------------------------------------------------------------------------------------------------------

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.slow
def test_train_general_script_makes_a_loadable_model(tmp_path):
    pytest.importorskip("datamol")
    pytest.importorskip("dask.distributed")
    out = tmp_path / "model"
    r = subprocess.run([sys.executable, str(BENCH / "train_general.py"), "--quick", "--molecules", "40", "--samples",
                        "8", "--epochs", "1", "--hot-temperature", "1500", "--hot-samples", "4", "--work",
                        str(tmp_path / "work"), "--out", str(out)], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "hot pools (1500 K)" in r.stdout
    model = G.GeneralInterpreter.load(out)
    assert model.config["training"]["hot_temperature"] == 1500
    train = [m["smiles"] for m in model.config["molecules"]]
    held = model.config["split"]
    assert len(train) >= 25 and {m["split"] for m in held} == {"val", "test"}
    check_split(train + [m["smiles"] for m in held], ["train"] * len(train) + [m["split"] for m in held])
    smiles = held[0]["smiles"]
    atoms = model.atoms_of(smiles)
    P = model.predict(xs.simulate(atoms, model.grid, probe="xray", signal="molecular"), smiles, model.grid)
    assert P.shape == (len(atoms), 3) and np.isfinite(P).all()
    # the same command again refuses a work directory made with other arguments
    again = subprocess.run([sys.executable, str(BENCH / "train_general.py"), "--quick", "--molecules", "50", "--work",
                            str(tmp_path / "work"), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "another --work" in again.stderr


@pytest.mark.slow
def test_bench_general_quick_reports_every_method(tmp_path):
    report = tmp_path / "r.json"
    r = subprocess.run([sys.executable, str(BENCH / "bench_general.py"), "--quick", "--molecules", "3", "--samples",
                        "8", "--formulas", "2", "--hot-pool", "60", "--hot-trajectories", "2", "--speed-batch", "64",
                        "--speed-single", "2", "--hot-search", "4",
                        "--work", str(tmp_path / "work"), "--json", str(report), "--plot", str(tmp_path / "r.png"),
                        "--frontier-plot", str(tmp_path / "f.png")],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    import json

    rep = json.loads(report.read_text())
    assert rep["held_out"]["baseline"] == "equilibrium"
    for name in ("equilibrium", "linear", "network", "general"):
        assert {"median_rmsd", "mean_rmsd", "accuracy_0.05"} <= set(rep["held_out"]["methods"][name])
    assert len(rep["held_out_smiles"]) == len(rep["held_out"]["molecules"]) >= 2
    assert rep["identification"]["n_formulas"] == 2 and rep["speed"][0]["patterns_per_s"] > 0
    assert rep["speed"][0]["patterns_per_s_network"] > 0
    # the trade between accuracy and speed: the network alone, the iterations capped at 1 and 2, the default
    front = rep["goals"]["frontier"]
    assert [f["iterations"] for f in front] == [0, 1, 2, 8, None]
    assert front[0]["median_ratio"] == rep["held_out"]["methods"]["network"]["ratio_to_equilibrium"]
    assert front[-1]["median_ratio"] == rep["goals"]["median_ratio"]
    assert all(f["patterns_per_s"][0] > 0 and 0 <= f["below_baseline"] <= 1 for f in front)
    assert {"general, 1 iteration", "general, 2 iterations"} <= set(rep["held_out"]["methods"])
    hot = rep["hot"][0]
    assert set(hot["mirror_allowed"]) == {"equilibrium", "general", "general_wigner", "pool_fitting", "general_search"}
    check = hot["search_check"]
    assert check["starts"] == 4 and check["used"] == (check["search_rmsd"] < check["prediction_rmsd"])
    # a mirror image may only lower an RMSD
    assert all(hot["mirror_allowed"][k] <= hot[k] + 1e-9 for k in hot["mirror_allowed"])
    assert (tmp_path / "r.png").stat().st_size > 10_000 and (tmp_path / "f.png").stat().st_size > 10_000


def test_general_only_options_are_refused_for_other_models(tmp_path):
    from xstructure.learn.tasks import predict_file

    cases = ((dict(search=4), "--search"), (dict(ensemble="md"), "--ensemble"), (dict(iterations=0), "--iterations"))
    for kw, flag in cases:
        with pytest.raises(ValueError, match=f"{flag} apply to general models"):
            predict_file(str(tmp_path), str(tmp_path / "p.npy"), str(tmp_path / "s.xyz"), **kw)
