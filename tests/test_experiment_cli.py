"""``xstructure reduce``: a simulated pump-probe run through the command line, the reduced HDF5 file (layout and
round trip through read_reduced), its errors (one line, exit status 2, nothing written), and the figures of
xstructure.experiment.figures (units, colour bar, scales, legends, nothing clipped)."""

import re

import numpy as np
import pytest

import xstructure
from xstructure.cli import main
from xstructure.experiment import (
    PumpProbe,
    ReducedFile,
    delta_pdf,
    delta_sm,
    figures,
    fit_onset,
    read_reduced,
    simulate_pumpprobe,
    write_reduced,
)

h5py = pytest.importorskip("h5py")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
plt = pytest.importorskip("matplotlib.pyplot")

Q = np.linspace(0.5, 8.0, 80)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def sim():
    """CHD and a stretched CHD as the product (a tuple: no force field needed), 2000 shots."""
    chd = xstructure.molecule("CHD")
    product = (chd.numbers, chd.positions * 1.04)
    run, truth = simulate_pumpprobe(chd, product, Q, delays=np.arange(-300, 501, 50), shots=2000, fraction=0.1,
                                    t0=20.0, width=50.0, dose=1e7, seed=3)
    return run, truth


@pytest.fixture
def run_file(sim, tmp_path):
    path = tmp_path / "run.h5"
    sim[0].to_hdf5(path)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [s for s in err.splitlines() if s.strip()]
    assert len(lines) == 1 and lines[0].startswith("xstructure") and "Traceback" not in err, err
    return lines[0]


# -- the command end to end ----------------------------------------------------------------------------------------

def test_reduce_writes_the_layout_the_figure_and_round_trips(sim, run_file, tmp_path, capsys):
    out, png = tmp_path / "red.h5", tmp_path / "red.png"
    assert main(["reduce", str(run_file), "--bins", "12", "--normalize", "window:1:8", "--molecule", "CHD",
                 "--onset", "1:3", "--r", "0:6:120", "--damping", "0.02", "--bootstrap", "20",
                 "--delays", "-200,50,400", "--out", str(out), "--plot", str(png)]) == 0
    stdout = capsys.readouterr().out
    assert "12 delay bins" in stdout and "t0 = " in stdout and f"wrote {out}" in stdout and "wrote plot" in stdout

    # the NeXus layout
    with h5py.File(out, "r") as f:
        assert f.attrs["default"] == "entry" and f["entry"].attrs["NX_class"] == "NXentry"
        d = f["entry/difference"]
        assert d.attrs["NX_class"] == "NXdata" and d.attrs["signal"] == "diff"
        assert list(d.attrs["axes"]) == ["delay", "q"]
        assert d["diff"].shape == d["diff_errors"].shape == d["off"].shape == (12, Q.size)
        assert d["delay"].attrs["units"] == "fs" and d["q"].attrs["units"] == "1/angstrom"
        assert d["edges"].shape == (12, 2) and d["edges"].attrs["units"] == "fs"
        assert d["counts"][()].sum() > 0
        red_attrs = f["entry/reduction"]
        assert red_attrs["rejected"].attrs["total"] >= 0 and '"reference": "nearest"' in red_attrs.attrs["settings"]
        assert f["entry/dsm/dsm"].shape == (12, Q.size) and f["entry/dsm/dsm"].attrs["units"] == "1/angstrom"
        assert f["entry/pdf"].attrs["signal"] == "pdf" and list(f["entry/pdf"].attrs["axes"]) == ["delay", "r"]
        assert f["entry/pdf/pdf"].shape == f["entry/pdf/pdf_errors"].shape == (12, 120)
        assert f["entry/pdf/pdf"].attrs["units"] == "1/angstrom^2" and f["entry/pdf/r"].attrs["units"] == "angstrom"
        o = f["entry/onset"].attrs
        for k in ("t0", "t0_error", "width", "width_error", "amplitude", "amplitude_error"):
            assert np.isfinite(o[k]), k

    # the same numbers as the library
    run = PumpProbe.from_hdf5(run_file)
    red = run.reduce(bins=12, normalize=("window", 1.0, 8.0), bootstrap=20)
    run.close()
    back = read_reduced(out)
    assert isinstance(back, ReducedFile)
    np.testing.assert_array_equal(back.diff, red.diff)
    np.testing.assert_array_equal(back.sigma, red.sigma)
    np.testing.assert_array_equal(back.delay, red.delay)
    np.testing.assert_array_equal(back.counts, red.counts)
    assert back.rejected == red.rejected and back.excluded == red.excluded and back.n_off == red.n_off
    dsm = delta_sm(Q, red.diff, "CHD", probe="xray")
    np.testing.assert_allclose(back.dsm, dsm, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(back.pdf, delta_pdf(Q, dsm, np.linspace(0, 6, 120), damping=0.02), rtol=1e-10,
                               atol=1e-14)
    assert back.molecule == "CHD" and back.probe == "xray" and back.damping == 0.02
    fit = fit_onset(red, q_range=(1, 3))
    assert back.onset.t0 == pytest.approx(fit.t0, rel=1e-9) and back.onset_q_range == (1.0, 3.0)
    assert abs(back.onset.t0 - sim[1].t0) < 25
    # a reduced file works where a Reduced does
    assert fit_onset(back, q_range=(1, 3)).t0 == pytest.approx(fit.t0, rel=1e-9)
    assert back.average(100)[0].shape == (Q.size,)

    # the figure: a PNG of some size, and the figure of the file is the figure of the command
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000
    fig = figures.plot_reduced(back)
    assert len([ax for ax in fig.axes if ax.get_label() != "<colorbar>"]) == 4


def test_write_and_read_a_plain_reduction(sim, tmp_path):
    red = sim[0].reduce(bins=6, normalize="weights", bootstrap=0, reference="all")
    write_reduced(tmp_path / "plain.h5", red)
    back = read_reduced(tmp_path / "plain.h5")
    assert back.sigma is None and back.dsm is None and back.pdf is None and back.onset is None
    for name in ("delay", "q", "diff", "counts", "off", "edges"):
        np.testing.assert_array_equal(getattr(back, name), getattr(red, name))
    assert back.settings["reference"] == "all" and back.settings["bootstrap"] == 0
    again = ReducedFile.of(back, molecule="CHD")
    assert again.molecule == "CHD" and again.diff is back.diff and ReducedFile.of(again, molecule=None).molecule is None
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="not a reduced pump-probe file"):
        read_reduced(tmp_path / "other.h5")


def test_several_files_make_one_run(sim, run_file, tmp_path, capsys):
    run = sim[0]
    k = 1200
    parts = []
    for name, sl in (("a.h5", slice(0, k)), ("b.h5", slice(k, None))):
        PumpProbe(run.q, np.asarray(run.signals)[sl], run.delay[sl], run.pumped[sl], timetool=run.timetool[sl],
                  weights=run.weights[sl]).to_hdf5(tmp_path / name)
        parts.append(str(tmp_path / name))
    assert main(["reduce", *parts, "--bins", "5", "--bootstrap", "0", "--out", str(tmp_path / "two.h5")]) == 0
    assert main(["reduce", str(run_file), "--bins", "5", "--bootstrap", "0", "--out", str(tmp_path / "one.h5")]) == 0
    capsys.readouterr()
    np.testing.assert_allclose(read_reduced(tmp_path / "two.h5").diff, read_reduced(tmp_path / "one.h5").diff,
                               rtol=1e-12, atol=1e-15)


def test_progress_bar_and_warnings_are_one_line_each(run_file, tmp_path, capsys):
    # the first bin holds no laser-on shot: dropped, with a warning on one line
    assert main(["reduce", str(run_file), "--bins", "-5000,-4000,0,600", "--bootstrap", "0", "--progress",
                 "--out", str(tmp_path / "w.h5")]) == 0
    err = capsys.readouterr().err
    assert "reduce" in err                                         # the bar
    warning = [s for s in err.splitlines() if "warning" in s]
    assert len(warning) == 1 and warning[0].startswith("xstructure: warning:") and "dropped" in warning[0]
    assert read_reduced(tmp_path / "w.h5").excluded["empty_bins"] == 1


# -- mistakes: one line, exit status 2, nothing written --------------------------------------------------------------

@pytest.fixture
def bad_inputs(sim, tmp_path):
    run = sim[0]
    S = np.asarray(run.signals)
    (tmp_path / "junk.h5").write_text("not HDF5")
    with h5py.File(tmp_path / "nooff.h5", "w") as f:
        f["q"], f["signals"], f["delay"], f["pumped"] = Q, S, run.delay, np.ones(run.n_shots, bool)
    PumpProbe(np.linspace(0.5, 90, Q.size), S, run.delay, run.pumped).to_hdf5(tmp_path / "bigq.h5")
    run.to_hdf5(tmp_path / "run.h5")
    return tmp_path


MISTAKES = [
    (["missing.h5"], "not found"),
    (["junk.h5"], "HDF5"),
    (["nooff.h5"], "no laser-off shots"),
    (["run.h5", "--bins", "0"], "--bins"),
    (["run.h5", "--bins", "30,20"], "increasing"),
    (["run.h5", "--bins", "many"], "--bins"),
    (["bigq.h5", "--molecule", "CHD"], "75.40"),
    (["run.h5", "--molecule", "no-such-molecule("], "SMILES"),
    (["run.h5", "--normalize", "window:20:30"], "holds no q point"),
    (["run.h5", "--normalize", "sum"], "--normalize"),
    (["run.h5", "--reject", "-1"], "--reject"),
    (["run.h5", "--onset", "20:30"], "onset range"),
    (["run.h5", "--plot", "fig.nope"], "figure"),
    (["run.h5", "--dataset", "signals=/entry/data"], "no dataset"),
    (["run.h5", "--dataset", "colour=/x"], "ROLE"),
    (["run.h5", "--normalize", "weights", "--dataset", "weights=none"], "weights"),
    (["run.h5", "--bootstrap", "1"], "bootstrap"),
    (["run.h5", "--molecule", "CHD", "--r", "5:1:10"], "--r"),
]


@pytest.mark.parametrize("args, message", MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_mistakes_exit_2_with_one_line_and_write_nothing(bad_inputs, args, message, capsys, monkeypatch):
    monkeypatch.chdir(bad_inputs)
    argv = ["reduce", *args, "--out", "out.h5"]
    argv += [] if "--bins" in args else ["--bins", "4"]
    argv += [] if "--bootstrap" in args else ["--bootstrap", "0"]
    argv += [] if "--plot" in args else ["--plot", "out.png"]
    assert main(argv) == 2
    line = one_line_error(capsys)
    assert message in line, line
    assert not (bad_inputs / "out.h5").exists() and not (bad_inputs / "out.png").exists()
    assert not list(bad_inputs.glob(".out.h5*"))


def test_an_output_that_is_an_input_is_refused(run_file, capsys):
    before = run_file.read_bytes()
    assert main(["reduce", str(run_file), "--out", str(run_file)]) == 2
    assert "input" in one_line_error(capsys)
    assert run_file.read_bytes() == before
    assert main(["reduce", str(run_file), "--out", str(run_file.parent)]) == 2
    assert "directory" in one_line_error(capsys)


# -- figures ---------------------------------------------------------------------------------------------------------

def outside_math(text: str) -> str:
    return re.sub(r"\$[^$]*\$", "", text)


def colorbars(fig) -> list:
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def assert_referee_ready(fig):
    """A unit on every axis label, no literal underscores, nothing outside the figure."""
    for ax in fig.axes:
        for text in (ax.get_xlabel(), ax.get_ylabel()):
            if text:
                assert "_" not in outside_math(text), text
                assert re.search(r"\(.+\)", text), f"axis label without a unit: {text!r}"
    fig.canvas.draw()
    box, renderer = fig.bbox, fig.canvas.get_renderer()
    extents = [ax.get_tightbbox(renderer) for ax in fig.axes]
    if fig._suptitle is not None:
        extents.append(fig._suptitle.get_window_extent(renderer))
    for e in extents:
        assert e.x0 >= box.x0 - 1 and e.x1 <= box.x1 + 1 and e.y0 >= box.y0 - 1 and e.y1 <= box.y1 + 1, e


@pytest.fixture(scope="module")
def reduced(sim):
    red = sim[0].reduce(bins=10, normalize="weights", bootstrap=20)
    dsm = delta_sm(Q, red.diff, "CHD", probe="xray")
    r = np.linspace(0, 6, 100)
    return red, dsm, r, delta_pdf(Q, dsm, r), fit_onset(red, q_range=(1, 3))


def test_difference_map_diverging_centred_with_colour_bar(reduced):
    red = reduced[0]
    fig = figures.plot_difference_map(red)
    ax = fig.axes[0]
    (bar,) = colorbars(fig)
    assert bar.get_ylabel() == r"$\Delta I/I$ (%)"
    assert ax.get_xlabel() == "pump–probe delay (fs)" and ax.get_ylabel() == r"$q$ (Å⁻¹)"
    assert ax.get_xscale() == ax.get_yscale() == "linear"
    (mesh,) = ax.collections
    assert mesh.norm.vmin == -mesh.norm.vmax > -np.inf and mesh.get_cmap().name == "RdBu_r"
    assert np.nanmax(np.abs(mesh.get_array())) == pytest.approx(100 * np.abs(red.diff).max())   # in %
    lo, hi = ax.get_xlim()
    assert lo == pytest.approx(red.edges[0, 0]) and hi == pytest.approx(red.edges[-1, 1])
    assert_referee_ready(fig)


def test_curves_at_chosen_delays_with_units_and_legend(reduced):
    red, dsm, r, pdf, _ = reduced
    at = [-250, 0, 300]
    for fig, x_unit, y_unit in ((figures.plot_delta_sm(Q, dsm, red.delay, at=at), "Å⁻¹", "(Å⁻¹)"),
                                (figures.plot_delta_pdf(r, pdf, red.delay, at=at), "(Å)", "(Å⁻²)"),
                                (figures.plot_difference(red, at=at), "Å⁻¹", "(%)")):
        ax = fig.axes[0]
        assert x_unit in ax.get_xlabel() and ax.get_ylabel().endswith(y_unit)
        assert ax.get_yscale() == "linear"
        texts = [t.get_text() for t in ax.get_legend().get_texts()]
        nearest = sorted({int(np.argmin(abs(red.delay - t))) for t in at})
        assert texts == [f"{red.delay[k]:.0f} fs".replace("-", "−") for k in nearest]
        assert_referee_ready(fig)


def test_onset_plot_has_errors_fit_and_parameters_in_the_legend(reduced):
    onset = reduced[4]
    fig = figures.plot_onset(onset, q_range=(1, 3), error_scale=2.0)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    fit_text = next(t for t in texts if "fit" in t)
    assert "$t_0$" in fit_text and "width σ" in fit_text and fit_text.count("±") == 2 and "fs" in fit_text
    assert any("q = 1–3 Å⁻¹" in t and "× 2" in t for t in texts)
    assert ax.get_xlabel() == "pump–probe delay (fs)" and ax.get_ylabel().endswith("(%)")
    assert len(ax.containers) == 1                      # the error bars
    assert_referee_ready(fig)


def test_panel_layout_follows_what_there_is(reduced):
    red, dsm, r, pdf, onset = reduced
    fig = figures.plot_reduced(red)
    assert len([a for a in fig.axes if a.get_label() != "<colorbar>"]) == 2 and len(colorbars(fig)) == 1
    assert_referee_ready(fig)
    fig = figures.plot_reduced(red, dsm=dsm, r=r, pdf=pdf, onset=onset, onset_q_range=(1, 3))
    panels = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(panels) == 4 and [a.get_title()[:3] for a in panels] == ["(a)", "(b)", "(c)", "(d)"]
    assert "laser-on" in fig._suptitle.get_text()
    assert_referee_ready(fig)


def test_image_names_and_default_delays():
    figures.check_image_path("a.png")
    figures.check_image_path("a.PDF")
    with pytest.raises(ValueError, match="must end in"):
        figures.check_image_path("a.h5")
    delay = np.linspace(-500, 1000, 31)
    assert figures.default_delays(delay).tolist() == [-500, 0, 500, 1000]
