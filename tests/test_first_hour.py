"""What a new user runs in the first hour: every mistake gets one line on stderr and exit status 2 (never a
traceback), every file one command writes another reads, and the names, help and plots say what they mean."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import xstructure
from xstructure.cli import build_parser, main


def run(capsys, *argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc, err, *words):
    """Exit status 2, one line on stderr that starts like a command-line error and names ``words``."""
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("xstructure"), err
    for w in words:
        assert w.lower() in lines[0].lower(), (w, err)
    return lines[0]


# ---- names and files ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, formula", [("h2o", "H2O"), ("benzene", "C6H6"), ("Water", "H2O"), ("nmm", "C5H11NO"),
                                           ("C=C/C=C\\C=C", "C6H8")])
def test_names_in_any_case_and_common_names(name, formula):
    assert xstructure.molecule(name).get_chemical_formula(mode="hill") == formula


@pytest.mark.parametrize("spec, words", [("NMN", ["did you mean 'NMM'"]), ("benzen", ["did you mean 'benzene'"]),
                                         ("nofile.xyz", ["not found", "nofile.xyz"]),
                                         ("zzqqxx", ["xstructure molecules"])])
def test_unknown_names_suggest_and_missing_files_are_missing(capsys, spec, words):
    one_line_error(*run(capsys, "simulate", spec)[::2], *words)


def test_molecules_lists_the_names(capsys):
    rc, out, _ = run(capsys, "molecules")
    assert rc == 0 and re.search(r"^NMM\s+N-methylmorpholine", out, flags=re.M) and "Benzene" in out
    assert len(out.splitlines()) == len(xstructure.structures.molecule_names()) > 150
    rc, out, _ = run(capsys, "molecules", "benz")
    assert rc == 0 and out.split()[0] == "C6H6"
    assert run(capsys, "molecules", "no-such-molecule")[0] == 1


def test_a_periodic_file_is_named_as_a_cluster(capsys, tmp_path):
    import ase.io
    from ase.build import bulk

    ase.io.write(tmp_path / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64, cubic=True))
    rc, out, err = run(capsys, "simulate", tmp_path / "NaCl.cif", "--q", "1:5:5")
    assert rc == 0 and "periodic cell" in err and "isolated cluster" in err and "xstructure crystal" in err


def test_a_truncated_cif_says_so(capsys, tmp_path):
    bad = tmp_path / "corrupt.cif"
    bad.write_text("data_x\n_cell_length_a 5.6\n_cell_length_b 5.6\nloop_\n_atom_site_label\n")
    line = one_line_error(*run(capsys, "crystal", bad)[::2], "corrupt.cif", "truncated")
    assert not line.rstrip().endswith(":")


# ---- outputs, pipes, q grids ----------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["simulate", "NMM", "--out", "/nonexistent/dir/x.csv"],
                                  ["simulate", "NMM", "--plot", "/nonexistent/dir/x.png"],
                                  ["crystal", "x.cif", "--pxrd", "--peaks", "/nonexistent/dir/p.csv"],
                                  ["pool", "create", "NMM", "--n", "10", "--out", "/nonexistent/dir/p.zarr"],
                                  ["train", "p.zarr", "--out", "/nonexistent/dir/model"],
                                  ["integrate", "a.npy", "--poni", "s.poni", "--out", "/nonexistent/dir/c.h5"]])
def test_an_output_in_a_missing_directory_is_refused_up_front(capsys, argv):
    one_line_error(*run(capsys, *argv)[::2], "/nonexistent/dir", "does not exist")


def test_an_output_that_is_a_directory_is_refused(capsys, tmp_path):
    one_line_error(*run(capsys, "simulate", "NMM", "--out", tmp_path)[::2], "is a directory")


@pytest.mark.parametrize("q, words", [("-1:12:10", [">= 0"]), ("12:0.5:500", ["below STOP"]),
                                      ("0.5:12:0", ["N >= 1"]), ("1,3,2", ["increase"]), ("1:2", ["START:STOP:N"]),
                                      ("0.5:nan:10", ["finite"])])
def test_bad_q_grids(capsys, q, words):
    one_line_error(*run(capsys, "simulate", "NMM", "--q", q)[::2], "--q", *words)


def test_one_default_q_grid():
    p = build_parser()
    q_sim = p.parse_args(["simulate", "NMM"]).q
    q_pool = p.parse_args(["pool", "simulate", "x.zarr"]).q
    assert np.array_equal(q_sim, q_pool) and q_sim[0] == 0.5 and q_sim[-1] == 12 and len(q_sim) == 500


@pytest.mark.parametrize("argv", [["info"], ["simulate", "NMM", "--q", "0.5:12:20000"], ["molecules"]])
def test_a_closed_pipe_is_not_an_error(argv):
    p = subprocess.Popen([sys.executable, "-c", "import sys; from xstructure.cli import main; sys.exit(main())",
                          *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()  # `| head -1`
    err = p.stderr.read().decode()
    rc = p.wait(timeout=60)
    assert "Traceback" not in err and "Error" not in err, err
    assert rc in (0, 141)


def test_the_stdout_csv_reads_back(capsys, tmp_path):
    rc, out, _ = run(capsys, "simulate", "CH3OH", "--q", "1:5:9", "--signal", "molecular")
    (tmp_path / "p.csv").write_text(out)
    pat = xstructure.profiles.read_patterns(tmp_path / "p.csv")
    assert rc == 0 and pat.signals == ["molecular"] and np.allclose(pat.q, np.linspace(1, 5, 9))


# ---- messages that speak to the command line --------------------------------------------------------------------

def test_option_errors_name_the_option(capsys):
    line = one_line_error(*run(capsys, "simulate", "NMM", "--probe", "electron", "--compton")[::2], "--compton")
    assert "compton=True adds" not in line
    one_line_error(*run(capsys, "simulate", "NMM", "--energy-kev", "300")[::2], "--energy-kev")
    one_line_error(*run(capsys, "simulate", "NMM", "--probe", "neutron")[::2], "--probe", "invalid choice")


def test_every_option_has_help_with_its_default():
    parser = build_parser()
    subs = {}

    def walk(p, prefix):
        for a in p._actions:
            if a.__class__.__name__ == "_SubParsersAction":
                for name, sp in a.choices.items():
                    subs[f"{prefix} {name}".strip()] = sp
                    walk(sp, f"{prefix} {name}")

    walk(parser, "")
    missing = []
    for cmd, sp in subs.items():
        for a in sp._actions:
            if not a.option_strings or a.dest in ("help", "progress"):
                continue
            shows_default = a.default is None or isinstance(a.default, bool) or "default" in (a.help or "")
            if not a.help or not shows_default:
                missing.append(f"{cmd} {a.option_strings[-1]}")
    assert not missing, missing
    assert "examples:" in subs["simulate"].format_help() and "xstructure molecules" in subs["simulate"].format_help()


# ---- pools --------------------------------------------------------------------------------------------------------

def test_a_bad_sampling_option_leaves_no_store(capsys, tmp_path):
    pytest.importorskip("rdkit")
    out = tmp_path / "pf.zarr"
    one_line_error(*run(capsys, "pool", "create", "NMM", "--n", "20", "--param", "foo=1", "--out", out)[::2],
                   "'foo'", "keep_broken")
    assert not out.exists()
    one_line_error(*run(capsys, "pool", "create", "NMM", "--n", "20", "--method", "md", "--param", "steps=9",
                        "--out", out)[::2], "'steps'", "timestep")
    assert not out.exists()
    # the corrected command is not blocked by anything the typo left
    rc, out_text, _ = run(capsys, "pool", "create", "NMM", "--n", "20", "--chunk", "20", "--out", out,
                          "--no-progress")
    assert rc == 0 and "20 geometries" in out_text
    info = xstructure.Pool.open(out).info()
    assert info["geometries_done"] == 20 and info["complete"]


def test_without_rdkit_pool_create_says_so_and_leaves_no_store(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rdkit", None)  # `import rdkit` now raises ImportError
    out = tmp_path / "nmm.zarr"
    one_line_error(*run(capsys, "pool", "create", "NMM", "--n", "20", "--out", out)[::2], "RDKit",
                   "pip install 'xstructure[smiles]'")
    assert not out.exists()


def test_a_failed_first_chunk_removes_the_new_store(tmp_path, monkeypatch):
    pytest.importorskip("rdkit")
    from xstructure.pools import pool as pool_module

    def boom(*a, **k):
        raise ValueError("sampler failed")

    monkeypatch.setattr(pool_module, "_sample_chunk", boom)
    with pytest.raises(ValueError, match="sampler failed"):
        xstructure.Pool.create(tmp_path / "x.zarr", "NMM", "wigner", n=8, chunk=8, progress=False)
    assert not (tmp_path / "x.zarr").exists()


def test_an_interrupted_pool_says_how_far_it_got(capsys, tmp_path, monkeypatch):
    pytest.importorskip("rdkit")
    from xstructure.pools import pool as pool_module

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pool_module, "_sample_chunk", interrupt)
    path = tmp_path / "x.zarr"
    with pytest.raises(KeyboardInterrupt):
        xstructure.Pool.create(path, "NMM", "wigner", n=8, chunk=8, progress=False)
    info = xstructure.Pool.open(path).info()   # kept, to resume
    assert info["size"] == 8 and info["geometries_done"] == 0 and not info["complete"]
    one_line_error(*run(capsys, "pool", "info", path, "--plot", tmp_path / "i.png")[::2], "no finished geometries")
    assert not (tmp_path / "i.png").exists()


# ---- detectors ----------------------------------------------------------------------------------------------------

def test_an_all_nan_frame_is_an_error(capsys, tmp_path):
    g = xstructure.Geometry.simple((32, 32), pixel=1e-4, dist=0.05, energy_kev=12.0)
    g.to_poni(tmp_path / "s.poni")
    np.save(tmp_path / "nan.npy", np.full((32, 32), np.nan))
    argv = ["integrate", tmp_path / "nan.npy", "--poni", tmp_path / "s.poni", "--out", tmp_path / "c.h5",
            "--plot", tmp_path / "c.png"]
    one_line_error(*run(capsys, *argv)[::2], "nan.npy", "no finite pixel")
    assert not (tmp_path / "c.h5").exists() and not (tmp_path / "c.png").exists()


def test_geometry_simple_shapes_and_legendre_mapping():
    assert xstructure.Geometry.simple(64, energy_kev=12.0).shape == (64, 64)
    with pytest.raises(ValueError, match=r"two pixel counts \(n1, n2\)"):
        xstructure.Geometry.simple((512,), energy_kev=12.0)
    g = xstructure.Geometry.simple((48, 48), pixel=2e-4, dist=0.05, energy_kev=12.0)
    img = xstructure.simulate(xstructure.molecule("NMM"), g, orientation="aligned", dipole=(1, 0, 0), p2=0.4)
    leg = xstructure.Integrator(g, npt=20).legendre(img, axis=(1, 0, 0), orders=(0, 2))
    assert list(leg) == [0, 2] and len(leg) == 2 and 2 in leg and 4 not in leg
    assert [k for k, _ in leg.items()] == [0, 2] and np.array_equal(dict(leg.items())[2], leg[2])


def test_the_package_namespace_is_clean():
    assert not {"annotations", "import_module"} & set(dir(xstructure))


# ---- crystals from other libraries --------------------------------------------------------------------------------

def _nacl():
    from ase.build import bulk

    return bulk("NaCl", "rocksalt", a=5.64, cubic=True)


def test_ase_subclasses_and_pymatgen_structures_are_crystals():
    pytest.importorskip("pymatgen")
    from pymatgen.io.ase import AseAtomsAdaptor

    ref = xstructure.crystal.structure_factors(_nacl(), hmax=3)[1]
    structure = AseAtomsAdaptor.get_structure(_nacl())
    msonatoms = AseAtomsAdaptor.get_atoms(structure)
    assert type(msonatoms).__name__ == "MSONAtoms"
    for obj in (msonatoms, structure):
        assert np.allclose(xstructure.crystal.structure_factors(obj, hmax=3)[1], ref, atol=1e-9)


def test_pymatgen_partial_occupancy_becomes_occupancies():
    pytest.importorskip("pymatgen")
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice.cubic(4.0), [{"Fe": 0.5, "Co": 0.5}], [[0, 0, 0]])
    cell = xstructure.crystal.as_cell(s)
    assert sorted(cell.numbers.tolist()) == [26, 27] and np.allclose(cell.occupancy, 0.5)


def test_gemmi_small_structures_are_crystals(tmp_path):
    gemmi = pytest.importorskip("gemmi")
    import ase.io

    ase.io.write(tmp_path / "nacl.cif", _nacl())
    st = gemmi.read_small_structure(str(tmp_path / "nacl.cif"))
    ref = xstructure.crystal.structure_factors(_nacl(), hmax=3)[1]
    assert np.allclose(xstructure.crystal.structure_factors(st, hmax=3)[1], ref, atol=1e-9)


def test_other_objects_are_refused_by_name():
    with pytest.raises(ValueError, match="pymatgen Structure, a gemmi SmallStructure"):
        xstructure.crystal.as_cell(42)


# ---- the README ---------------------------------------------------------------------------------------------------

def test_the_readme_install_command_brings_what_its_python_block_needs():
    text = open(os.path.join(os.path.dirname(__file__), "..", "README.md"), encoding="utf-8").read()
    quick = text.split("## Quick start", 1)[1]
    install = re.findall(r"```bash\n(.*?)\n```", quick, flags=re.S)[0]
    block = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    extras = set(re.search(r'"\.\[([a-z,]+)\]"', install).group(1).split(","))
    if "import torch" in block:
        assert "torch" in extras
    if "Pool.create" in block:  # MMFF94 sampling needs RDKit
        assert "smiles" in extras


# ---- simulate → predict ---------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_simulate_output_feeds_predict_and_a_signal_mismatch_is_an_error(capsys, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("rdkit")
    pool, model = tmp_path / "p.zarr", tmp_path / "model"
    assert run(capsys, "pool", "create", "CH3OH", "--n", "64", "--chunk", "64", "--out", pool, "--no-progress")[0] == 0
    assert run(capsys, "pool", "simulate", pool, "--no-progress")[0] == 0   # default q grid and signal
    assert run(capsys, "train", pool, "--out", model, "--epochs", "1", "--batch", "16", "--width", "32", "--layers",
               "1", "--no-progress")[0] == 0
    assert run(capsys, "simulate", "CH3OH", "--signal", "molecular", "--out", tmp_path / "x.csv")[0] == 0
    rc, out, err = run(capsys, "predict", model, tmp_path / "x.csv", "--out", tmp_path / "s.xyz")
    assert rc == 0, err
    import ase.io

    assert ase.io.read(tmp_path / "s.xyz").get_chemical_formula(mode="hill") == "CH4O"
    assert run(capsys, "simulate", "CH3OH", "--out", tmp_path / "t.csv")[0] == 0   # total, the default signal
    one_line_error(*run(capsys, "predict", model, tmp_path / "t.csv", "--out", tmp_path / "t.xyz")[::2],
                   "total", "molecular")
    assert not (tmp_path / "t.xyz").exists()


@pytest.mark.slow
def test_integrate_output_feeds_predict(capsys, tmp_path):
    """A detector frame -> xstructure integrate (HDF5 curves in q) -> xstructure predict, interpolated onto the
    model's grid; the same curves in 2θ are refused by name."""
    pytest.importorskip("torch")
    pytest.importorskip("rdkit")
    pool, model = tmp_path / "p.zarr", tmp_path / "model"
    assert run(capsys, "pool", "create", "CH3OH", "--n", "64", "--chunk", "64", "--out", pool, "--no-progress")[0] == 0
    assert run(capsys, "pool", "simulate", pool, "--signal", "total", "--no-progress")[0] == 0
    assert run(capsys, "train", pool, "--out", model, "--epochs", "1", "--batch", "16", "--width", "32", "--layers",
               "1", "--no-progress")[0] == 0
    g = xstructure.Geometry.simple((256, 256), pixel=1e-3, dist=0.03, energy_kev=20.0)
    g.to_poni(tmp_path / "s.poni")
    np.save(tmp_path / "f.npy", xstructure.simulate(xstructure.molecule("CH3OH"), g, photons=1e9, rng=0))
    base = ["integrate", tmp_path / "f.npy", "--poni", tmp_path / "s.poni", "--npt", "800", "--radial-range"]
    assert run(capsys, *base, "0.3:12.3", "--out", tmp_path / "c.h5")[0] == 0
    rc, out, err = run(capsys, "predict", model, tmp_path / "c.h5", "--out", tmp_path / "s.xyz")
    assert rc == 0 and "interpolated from 800" in out, err
    assert run(capsys, *base, "2:80", "--unit", "2th_deg", "--out", tmp_path / "d.h5")[0] == 0
    one_line_error(*run(capsys, "predict", model, tmp_path / "d.h5", "--out", tmp_path / "t.xyz")[::2],
                   "not q", "--unit q_A^-1")
