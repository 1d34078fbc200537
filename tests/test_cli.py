"""The command line: simulate to CSV and PNG, errors, info."""

import json
import subprocess
import sys

import numpy as np
import pytest

import xstructure
from xstructure.cli import main, parse_q


def test_simulate_csv_and_plot(tmp_path):
    out, png = tmp_path / "p.csv", tmp_path / "p.png"
    assert main(["simulate", "NMM", "--q", "0.5:12:500", "--probe", "xray", "--signal", "total",
                 "--out", str(out), "--plot", str(png)]) == 0
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    assert data.shape == (500, 2)
    np.testing.assert_allclose(data[:, 0], np.linspace(0.5, 12, 500))
    np.testing.assert_allclose(data[:, 1], xstructure.simulate(xstructure.molecule("NMM"), data[:, 0]), rtol=1e-12)
    assert open(out).readline().startswith("q_A^-1,")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_simulate_multiframe_file_and_electron_sm(tmp_path):
    import ase.io

    atoms = xstructure.molecule("DT")
    frames = [atoms.copy() for _ in range(3)]
    for k, a in enumerate(frames):
        a.positions[0, 0] += 0.05 * k
    path = tmp_path / "t.xyz"
    ase.io.write(path, frames)
    out = tmp_path / "sm.csv"
    assert main(["simulate", str(path), "--probe", "electron", "--signal", "sM", "--q", "0:10:101",
                 "--energy-kev", "3000", "--out", str(out)]) == 0
    data = np.loadtxt(out, delimiter=",", skiprows=1)
    assert data.shape == (101, 4) and np.all(np.isfinite(data))


def test_smiles_source(tmp_path):
    pytest.importorskip("rdkit")
    out = tmp_path / "e.csv"
    assert main(["simulate", "CCO", "--q", "1:5:9", "--out", str(out)]) == 0


def test_errors_exit_2_with_message(capsys):
    assert main(["simulate", "NMM", "--q", "0:90:10"]) == 2
    assert "beyond" in capsys.readouterr().err
    assert main(["simulate", "no-such-thing(", "--q", "1:2:3"]) == 2
    assert "SMILES" in capsys.readouterr().err
    assert main(["simulate", "NMM", "--q", "1:2"]) == 2
    assert "START:STOP:N" in capsys.readouterr().err


def test_parse_q():
    np.testing.assert_allclose(parse_q("0.5:12:500"), np.linspace(0.5, 12, 500))
    np.testing.assert_allclose(parse_q("1,2.5,3"), [1, 2.5, 3])


def test_console_script_info():
    res = subprocess.run([sys.executable, "-m", "xstructure", "info"], capture_output=True, text=True, check=True)
    info = json.loads(res.stdout)
    assert info["version"] == xstructure.__version__ and "cpu_isa" in info and "cuda" in info
