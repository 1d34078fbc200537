"""The figures the command line writes: axis scales, labels with units, colour bars, titles, nothing clipped.

Each plot function returns its matplotlib Figure (left open with ``path=None``), so the tests read the figure
objects rather than the pixels.
"""

import re

import numpy as np
import pytest

import xstructure
from xstructure import plots
from xstructure.cli import main

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def outside_math(text: str) -> str:
    """The text without its mathtext ($...$) parts: what is printed literally."""
    return re.sub(r"\$[^$]*\$", "", text)


def colorbars(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def labels(fig, colorbar_axes=True) -> list[str]:
    """Every axis label of the figure's plotting axes (and of its colour bars)."""
    out = []
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>" and not colorbar_axes:
            continue
        out += [t for t in (ax.get_xlabel(), ax.get_ylabel()) if t]
    return out


DIMENSIONLESS = re.compile(r"^(members per bin|fraction of .+|frame index .+|structure index .+)$")


def assert_referee_ready(fig):
    """Units on every labelled axis (a parenthesised unit, or a count, fraction or index), no literal underscore
    in axis labels, and no axes (titles, labels, tick labels) or suptitle outside the figure."""
    for text in labels(fig):
        assert "_" not in outside_math(text), f"literal underscore in axis label {text!r}"
        assert not re.search(r"_[A-Za-z0-9]{2,}", "".join(re.findall(r"\$[^$]*\$", text))), \
            f"a mathtext subscript of more than one character without braces in {text!r}"
        assert re.search(r"\(.+\)", text) or DIMENSIONLESS.search(text), f"axis label without a unit: {text!r}"
    fig.canvas.draw()
    box, renderer = fig.bbox, fig.canvas.get_renderer()
    extents = [(f"axes {ax.get_title() or ax.get_ylabel()!r}", ax.get_tightbbox(renderer)) for ax in fig.axes]
    if fig._suptitle is not None:
        extents.append(("suptitle", fig._suptitle.get_window_extent(renderer)))
    for what, e in extents:
        assert e.x0 >= box.x0 - 1 and e.x1 <= box.x1 + 1 and e.y0 >= box.y0 - 1 and e.y1 <= box.y1 + 1, \
            f"{what} is clipped: {e} outside {box}"


# -- names and formulas --------------------------------------------------------------------------------------------

def test_hill_formula_and_math_formula():
    assert plots.hill_formula([6, 6, 8, 1, 1, 1, 1, 1, 1]) == "C2H6O"
    assert plots.hill_formula([11, 17]) == "ClNa"           # no carbon: alphabetical
    assert plots.hill_formula([8, 1, 1]) == "H2O"
    assert plots.math_formula("C5H11NO") == "C$_{5}$H$_{11}$NO"


def test_structure_title_names_and_formulas(tmp_path):
    nmm = xstructure.molecule("NMM")
    assert plots.structure_title("NMM", [nmm]) == "N-methylmorpholine (NMM), C$_{5}$H$_{11}$NO"
    assert plots.structure_title("CH3CH2OH", [xstructure.molecule("CH3CH2OH")]) == "ethanol, C$_{2}$H$_{6}$O"
    path = tmp_path / "two.xyz"
    import ase.io

    ase.io.write(path, [nmm, nmm])
    assert plots.structure_title(str(path), [nmm, nmm]) == "two.xyz, C$_{5}$H$_{11}$NO"


def test_structure_title_of_a_smiles_string_is_its_formula():
    pytest.importorskip("rdkit")
    title = plots.structure_title("CCO", [xstructure.molecule("CCO")])
    assert title == "C$_{2}$H$_{6}$O" and "CCO" not in title


def test_cell_reduced_formula_and_z():
    ase_build = pytest.importorskip("ase.build")
    from ase.spacegroup import crystal

    from xstructure.crystal import as_cell

    nacl = as_cell(ase_build.bulk("NaCl", "rocksalt", a=5.64, cubic=True))
    assert nacl.formula == "Cl4Na4"              # unchanged: the cell's contents
    assert (nacl.reduced_formula, nacl.formula_units) == ("NaCl", 4)
    rutile = as_cell(crystal(["Ti", "O"], basis=[(0, 0, 0), (0.3, 0.3, 0)], spacegroup=136,
                             cellpar=[4.59, 4.59, 2.96, 90, 90, 90]))
    assert (rutile.reduced_formula, rutile.formula_units) == ("TiO2", 2)
    si = as_cell(ase_build.bulk("Si", "diamond", a=5.43, cubic=True))
    assert (si.reduced_formula, si.formula_units) == ("Si", 8)


# -- simulate ------------------------------------------------------------------------------------------------------

Q = np.linspace(0.5, 12, 200)


@pytest.mark.parametrize("probe", ["xray", "electron"])
@pytest.mark.parametrize("signal, scale", [("total", "log"), ("atomic", "log"), ("molecular", "linear"),
                                           ("sM", "linear")])
def test_patterns_axis_scale_and_labels(probe, signal, scale):
    nmm = xstructure.molecule("NMM")
    I = xstructure.simulate(nmm, Q, probe=probe, signal=signal)
    fig = plots.plot_patterns(None, Q, I, ["NMM"], probe, signal, plots.structure_title("NMM", [nmm]))
    ax = fig.axes[0]
    assert ax.get_yscale() == scale
    ylabel = ax.get_ylabel()
    assert "_" not in outside_math(ylabel)
    assert ("electrons²" if probe == "xray" else "Å") in ylabel or signal == "sM"
    if signal == "molecular":   # shown as q·I_mol(q), and the label says so
        assert ylabel.startswith("$q")
        np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), Q * I)
    assert "C$_{5}$H$_{11}$NO" in ax.get_title() and "N-methylmorpholine" in ax.get_title()
    assert_referee_ready(fig)


def test_patterns_of_many_structures_have_a_colour_bar_few_a_legend():
    base = xstructure.molecule("CHD")
    rng = np.random.default_rng(0)
    pos = base.positions[None] + 0.05 * rng.standard_normal((8, len(base), 3))
    I = xstructure.simulate((base.numbers, pos), Q)
    fig = plots.plot_patterns(None, Q, I, [f"frame{k}" for k in range(8)], "xray", "total", "CHD")
    assert len(colorbars(fig)) == 1 and "index" in colorbars(fig)[0].get_ylabel()
    fig = plots.plot_patterns(None, Q, I[:3], ["a", "b", "c"], "xray", "total", "CHD")
    assert not colorbars(fig) and [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b", "c"]


def test_cli_simulate_passes_the_formula_title(tmp_path, monkeypatch):
    import xstructure.cli.simulate as cli_simulate

    figures = []
    monkeypatch.setattr(cli_simulate, "plot_patterns",
                        lambda *a, **k: figures.append(plots.plot_patterns(*a, **k)) or figures[-1])
    png = tmp_path / "nmm.png"
    assert main(["simulate", "NMM", "--q", "0.5:12:100", "--plot", str(png)]) == 0
    assert png.stat().st_size > 10_000
    ax = figures[0].axes[0]
    assert ax.get_yscale() == "log" and "C$_{5}$H$_{11}$NO" in ax.get_title()


# -- crystal --pxrd ------------------------------------------------------------------------------------------------

def test_powder_plot_sticks_visible_and_title():
    ase_build = pytest.importorskip("ase.build")
    from xstructure.crystal import as_cell, powder_peaks

    cell = as_cell(ase_build.bulk("NaCl", "rocksalt", a=5.64, cubic=True))
    tth = np.linspace(5, 90, 4001)
    peaks = powder_peaks(cell, 1.5406, (5, 90))
    fig = plots.plot_powder(None, cell, peaks, tth, 1.5406)
    profile, sticks = fig.axes
    title = profile.get_title()
    assert "NaCl" in title and "Z = 4" in title and "Cl4Na4" not in title and "Cu Kα" in title
    # the sticks have a panel of their own, one segment per peak: nothing draws over them
    (lines,) = [c for c in sticks.collections if len(c.get_segments())]
    assert len(lines.get_segments()) == len(peaks)
    assert not profile.collections
    hkl = {t.get_text() for t in profile.texts}
    assert {"$200$", "$220$", "$111$"} <= hkl
    assert sticks.get_xlabel() == "2θ (°)"
    assert_referee_ready(fig)


# -- integrate -----------------------------------------------------------------------------------------------------

def write_curves(path, frames: int, files: int):
    from xstructure.detector.io import write_curves_h5

    g = xstructure.Geometry.simple((32, 32), pixel=200e-6, dist=0.03, energy_kev=20.0)
    radial = np.linspace(0.2, 6, 50)
    intensity = np.exp(-radial)[None] * (1 + 0.1 * np.arange(frames))[:, None]
    sources = [f"scan_{k % files:03d}.h5::/entry/data[{k}]" for k in range(frames)]
    write_curves_h5(str(path), radial, intensity, None, np.ones_like(intensity, dtype=np.int64), "q_A^-1", sources,
                    g, settings={"solid_angle": True, "polarization": 0.99})


def test_integrate_plot_title_legend_colour_bar(tmp_path):
    pytest.importorskip("h5py")
    h5 = tmp_path / "curves.h5"
    write_curves(h5, 9, 3)
    fig = plots.plot_curves(str(h5), None, logy=True)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "q (Å⁻¹)"
    assert "9 frames" in ax.get_title() and "scan_000.h5" in ax.get_title() and "frame(s)" not in ax.get_title()
    assert "solid angle and polarisation" in ax.get_title()
    assert len(colorbars(fig)) == 1 and "frame index" in colorbars(fig)[0].get_ylabel()
    assert_referee_ready(fig)
    write_curves(h5, 3, 3)
    fig = plots.plot_curves(str(h5), None)
    assert not colorbars(fig) and len(fig.axes[0].get_legend().get_texts()) == 3
    write_curves(h5, 40, 1)
    fig = plots.plot_curves(str(h5), None)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == ["mean of all 40 frames"] and len(colorbars(fig)) == 1


# -- pool info -----------------------------------------------------------------------------------------------------

def test_pool_plot_units_band_and_legend(tmp_path):
    pytest.importorskip("zarr")
    pool = xstructure.Pool.create(tmp_path / "p.zarr", "CH3OH", "wigner", n=64, chunk=32, progress=False)
    pool.simulate(np.linspace(0.5, 10, 80), "xray", "molecular", progress=False)
    pool.simulate(np.linspace(0.5, 10, 80), "electron", "total", progress=False)
    fig = pool.summary_plot(None)
    assert_referee_ready(fig)
    tops = [ax for ax in fig.axes if ax.get_legend() and any(t.get_text() == "mean"
                                                              for t in ax.get_legend().get_texts())]
    assert len(tops) == 2
    for ax in tops:
        (band,) = ax.collections                   # 5–95 % of the members, shaded
        assert 0 < band.get_alpha() < 1
        assert "5–95 % of members" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert {ax.get_yscale() for ax in tops} == {"log", "linear"}       # electron total: log; molecular: linear
    # the spread panels under them: bands that fill a visible part of their axis
    lows = [ax for ax in fig.axes if ax.get_xlabel().startswith("$q$") and ax not in tops]
    assert len(lows) == 2
    for ax in lows:
        lo, hi = ax.get_ylim()
        extent = max(np.ptp(p.get_paths()[0].vertices[:, 1]) for p in ax.collections)
        assert extent > 0.3 * (hi - lo)


# -- evaluate (crystals) -------------------------------------------------------------------------------------------

def fake_phase_report(n: int = 24):
    """Two crystals whose atoms all lie off the central z slice, and two methods."""
    from xstructure.crystal import as_cell
    from xstructure.crystal.phasing import normalised_density

    ase_build = pytest.importorskip("ase.build")
    x = np.arange(n) / n
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    examples = []
    for centre in ((0.25, 0.25, 0.1), (0.7, 0.3, 0.9)):
        d2 = sum(np.minimum(abs(g - c), 1 - abs(g - c)) ** 2 for g, c in zip((X, Y, Z), centre))
        true = normalised_density(np.exp(-d2 / 0.002))
        examples.append({"true": true, "pred": {"mlp": 0.5 * true + 0.5, "flip_powder": np.roll(true, 2, axis=0)},
                         "ssim": {"mlp": 0.4, "flip_powder": 0.8},
                         "cell": as_cell(ase_build.bulk("NaCl", "rocksalt", a=5.64, cubic=True))})
    return {"system": "cubic", "_examples": examples}


def test_phase_plot_colour_bars_axes_and_projection():
    pytest.importorskip("torch")
    from xstructure.learn.phase_train import phase_plot

    rep = fake_phase_report()
    fig = phase_plot(rep, None)
    bars = colorbars(fig)
    assert len(bars) == 2 and all("rho" in b.get_ylabel() for b in bars)
    fig.canvas.draw()
    (a, b) = (bar.yaxis.label.get_window_extent(fig.canvas.get_renderer()) for bar in bars)
    assert not a.overlaps(b), "the colour bars' labels run into each other"
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * 3
    assert all("fraction" in ax.get_xlabel() for ax in panels[-3:])
    assert "NaCl" in panels[0].get_ylabel() and "fraction of b" in panels[0].get_ylabel()
    # truth panels show the atoms although none lies in the central slice
    for row, e in zip((panels[0], panels[3]), rep["_examples"]):
        shown = row.get_images()[0].get_array()
        assert shown.max() >= 0.99 * e["true"].max()
        assert e["true"][:, :, e["true"].shape[2] // 2].max() < 0.1 * e["true"].max()
    assert_referee_ready(fig)


# -- evaluate (molecules) ------------------------------------------------------------------------------------------

def test_report_plot_log_rmsd_units_and_title():
    pytest.importorskip("torch")
    from xstructure.learn.data import PoolData
    from xstructure.learn.evaluate import report_plot

    mol = xstructure.molecule("CH3OH")
    ref = mol.positions - mol.positions.mean(0)
    rng = np.random.default_rng(1)
    q = np.linspace(0.5, 10, 60)
    true = ref[None] + 0.05 * rng.standard_normal((20, len(mol), 3))
    pred = true + 0.01 * rng.standard_normal(true.shape)
    I_true = xstructure.simulate((mol.numbers, true), q)
    data = PoolData(mol.numbers, ref, q, "xray", "total", "CH3OH", index={}, patterns={"train": I_true},
                    targets={})
    per = {"model": np.abs(rng.normal(0.02, 0.01, 20)) + 1e-4, "ridge": np.abs(rng.normal(0.05, 0.01, 20)) + 1e-4}
    report = {"molecule": "CH3OH", "noise": {"kind": "gaussian", "level": 0.005, "counts": 1e6},
              "methods": {k: {"median_rmsd": float(np.median(v))} for k, v in per.items()},
              "_per_structure": per, "_predictions": {"model": pred, "ridge": pred}, "_true": true,
              "_observed": I_true}
    fig = report_plot(report, data, None)
    cdf, structure, pattern = fig.axes
    assert cdf.get_xscale() == "log" and "RMSD" in cdf.get_xlabel()
    assert "methanol" in cdf.get_title() and "CH$_{4}$O" in cdf.get_title() and "0.5 %" in cdf.get_title()
    assert "electrons²" in pattern.get_ylabel()
    assert structure.get_xlabel() == "x (Å)"
    assert_referee_ready(fig)
