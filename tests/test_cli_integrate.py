"""``xstructure integrate``: image files in (npy, EDF, TIFF, HDF5), HDF5 curves out, errors per file."""

import os
import subprocess
import sys

import numpy as np
import pytest

import xstructure
from xstructure import Geometry, Integrator
from xstructure.cli import main
from xstructure.detector.io import read_frames, write_curves_h5

fabio = pytest.importorskip("fabio")
h5py = pytest.importorskip("h5py")
import fabio.edfimage  # noqa: E402
import fabio.tifimage  # noqa: E402

SHAPE = (64, 80)
NPT = 60


@pytest.fixture
def setup(tmp_path, rng):
    """A PONI file, its geometry, and seeded Poisson frames with a ring."""
    g = Geometry.simple(SHAPE, pixel=100e-6, dist=0.05, center=(30.5, 41.0), energy_kev=12.0, rot1=0.02)
    poni = tmp_path / "setup.poni"
    g.to_poni(poni)
    ring = 200 * np.exp(-((g.q - 1.5) / 0.2) ** 2) + 20
    frames = rng.poisson(ring, size=(8, *SHAPE)).astype(np.float32)
    return tmp_path, poni, g, frames


def _write_inputs(tmp_path, frames):
    """frames[0] .npy, [1] .edf, [2] .tif, [3:6] HDF5 stack, [6:8] 3D .npy; returns paths and sources."""
    paths = {k: str(tmp_path / n) for k, n in
             [("npy", "a.npy"), ("edf", "b.edf"), ("tif", "c.tif"), ("h5", "d.h5"), ("stack", "e.npy")]}
    np.save(paths["npy"], frames[0])
    fabio.edfimage.EdfImage(frames[1]).write(paths["edf"])
    fabio.tifimage.TifImage(frames[2]).write(paths["tif"])
    with h5py.File(paths["h5"], "w") as f:
        f["entry/aaa_positions"] = np.arange(10.0)  # 1D: skipped by the search
        f["entry/data/data"] = frames[3:6].astype(np.uint16)
    np.save(paths["stack"], frames[6:8].astype(np.int32))
    sources = ([paths["npy"], paths["edf"], paths["tif"]] + [f"{paths['h5']}::/entry/data/data[{k}]" for k in range(3)]
               + [f"{paths['stack']}[{k}]" for k in range(2)])
    return list(paths.values()), sources


def _read(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f} | {"attrs": dict(f.attrs), "radial_attrs": dict(f["radial"].attrs)}


def test_integrate_all_formats_in_one_call(setup, capsys):
    tmp_path, poni, g, frames = setup
    files, sources = _write_inputs(tmp_path, frames)
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[:, :6] = 1  # a dead strip, given as a TIFF
    fabio.tifimage.TifImage(mask).write(str(tmp_path / "mask.tif"))
    out = tmp_path / "curves.h5"
    rc = main(["integrate", *files, "--poni", str(poni), "--npt", str(NPT), "--polarization", "0.99",
               "--mask", str(tmp_path / "mask.tif"), "--out", str(out), "--progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "integrated 8 frame(s) from 5 file(s)" in captured.out and "failed" not in captured.out
    got = _read(out)
    ref = Integrator(g, npt=NPT, polarization=0.99, mask=mask)
    assert [s.decode() for s in got["source"]] == sources
    assert got["intensity"].shape == got["sigma"].shape == got["count"].shape == (8, NPT)
    np.testing.assert_array_equal(got["radial"], ref.radial)
    stored = [frames[0], frames[1], frames[2], *frames[3:6].astype(np.uint16), *frames[6:8].astype(np.int32)]
    for k, frame in enumerate(stored):
        r = ref.integrate(frame)
        np.testing.assert_allclose(got["intensity"][k], r.intensity, rtol=1e-12, atol=0)
        np.testing.assert_allclose(got["sigma"][k], r.sigma, rtol=1e-12, atol=0)
        np.testing.assert_array_equal(got["count"][k], r.count)
    unmasked = Integrator(g, npt=NPT, polarization=0.99).integrate(frames[0])
    assert got["count"][0].sum() < unmasked.count.sum()  # the mask was applied
    a = got["attrs"]
    assert a["signal"] == "intensity" and a["xstructure_version"] == xstructure.__version__
    assert tuple(a["shape"]) == SHAPE
    for name in ("dist", "poni1", "poni2", "rot1", "rot2", "rot3", "pixel1", "pixel2", "wavelength"):
        assert a[name] == getattr(g, name)
    assert got["radial_attrs"]["units"] == "Å⁻¹" and got["radial_attrs"]["long_name"] == "q (Å⁻¹)"
    assert not os.path.exists(str(out) + ".partial")


def test_console_entry_point_unit_plot_no_sigma(setup):
    tmp_path, poni, g, frames = setup
    np.save(tmp_path / "f.npy", frames[:3])
    mask = np.zeros(SHAPE, dtype=bool)
    mask[10:20, 10:30] = True
    np.save(tmp_path / "mask.npy", mask)
    out, png = tmp_path / "tth.h5", tmp_path / "tth.png"
    res = subprocess.run([sys.executable, "-m", "xstructure", "integrate", str(tmp_path / "f.npy"), "--poni", str(poni),
                          "--npt", "40", "--unit", "2th_deg", "--mask", str(tmp_path / "mask.npy"), "--error-model",
                          "none", "--no-solid-angle", "--radial-range", "2:20", "--out", str(out), "--plot", str(png),
                          "--logy", "--no-progress"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    got = _read(out)
    assert "sigma" not in got and got["radial_attrs"]["units"] == "deg"
    ref = Integrator(g, npt=40, unit="2th_deg", mask=mask, error_model=None, solid_angle=False, radial_range=(2, 20))
    np.testing.assert_allclose(got["intensity"], ref.integrate(frames[:3]).intensity, rtol=1e-12, atol=0)
    np.testing.assert_allclose(got["radial"], ref.radial, rtol=1e-15)


def test_bad_files_reported_others_written(setup, capsys):
    tmp_path, poni, g, frames = setup
    np.save(tmp_path / "good.npy", frames[0])
    (tmp_path / "bad.tif").write_bytes(np.random.default_rng(1).bytes(3000))
    np.save(tmp_path / "small.npy", frames[1, :32, :40])
    fabio.edfimage.EdfImage(frames[2]).write(str(tmp_path / "trunc.edf"))
    raw = (tmp_path / "trunc.edf").read_bytes()
    (tmp_path / "trunc.edf").write_bytes(raw[: len(raw) // 2])
    fabio.edfimage.EdfImage(frames[3]).write(str(tmp_path / "good.edf"))
    files = [str(tmp_path / n) for n in ("good.npy", "bad.tif", "small.npy", "missing.tif", "trunc.edf", "good.edf")]
    out = tmp_path / "out.h5"
    assert main(["integrate", *files, "--poni", str(poni), "--npt", str(NPT), "--out", str(out), "--plot",
                 str(tmp_path / "p.png")]) == 1
    captured = capsys.readouterr()
    err = captured.err
    for name in ("bad.tif", "small.npy", "missing.tif", "trunc.edf"):
        assert name in err
    assert "32 x 40" in err and "64 x 80" in err  # both shapes named
    assert "good.npy" not in err and "4 of 6 file(s) failed" in captured.out
    got = _read(out)
    assert [s.decode() for s in got["source"]] == [files[0], files[5]]
    ref = Integrator(g, npt=NPT).integrate(np.stack([frames[0], frames[3]]))
    np.testing.assert_allclose(got["intensity"], ref.intensity, rtol=1e-12, atol=0)
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_file_failing_half_way_is_taken_back(setup, monkeypatch, capsys):
    """Frames of a file that fails after some of them were written leave the output too."""
    import xstructure.detector.batch as batch

    tmp_path, poni, g, frames = setup
    np.save(tmp_path / "a.npy", frames[0])
    np.save(tmp_path / "b.npy", frames[1:6])
    np.save(tmp_path / "c.npy", frames[6])
    import xstructure.detector.io as xio

    original = xio.read_frames

    def flaky(path, dataset=None):
        ff = original(path, dataset)
        if str(path).endswith("b.npy"):
            get = ff._get

            def fail_at_4(k):
                if k == 4:
                    raise OSError("disk went away")
                return get(k)

            ff._get = fail_at_4
        return ff

    monkeypatch.setattr(batch, "read_frames", flaky)
    monkeypatch.setattr(batch, "FRAMES_PER_CALL", 2)
    out = tmp_path / "out.h5"
    assert main(["integrate", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), str(tmp_path / "c.npy"),
                 "--poni", str(poni), "--npt", str(NPT), "--out", str(out)]) == 1
    assert "b.npy: cannot read frame 4: disk went away" in capsys.readouterr().err
    got = _read(out)
    assert [s.decode() for s in got["source"]] == [str(tmp_path / "a.npy"), str(tmp_path / "c.npy")]
    ref = Integrator(g, npt=NPT).integrate(np.stack([frames[0], frames[6]]))
    np.testing.assert_allclose(got["intensity"], ref.intensity, rtol=1e-12, atol=0)


def test_nothing_integrated_exit_2(setup, capsys):
    tmp_path, poni, g, frames = setup
    (tmp_path / "x.edf").write_bytes(b"\x00garbage" * 100)
    out = tmp_path / "out.h5"
    out.write_bytes(b"an older result")
    assert main(["integrate", str(tmp_path / "x.edf"), str(tmp_path / "nope.npy"), "--poni", str(poni),
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "x.edf" in err and "nope.npy: no such file" in err and "no frame could be integrated" in err
    assert out.read_bytes() == b"an older result" and not os.path.exists(str(out) + ".partial")


def test_bad_poni_exit_2(setup, capsys):
    tmp_path, poni, g, frames = setup
    np.save(tmp_path / "a.npy", frames[0])
    text = "".join(line for line in open(poni) if not line.startswith("Distance"))
    (tmp_path / "bad.poni").write_text(text)
    assert main(["integrate", str(tmp_path / "a.npy"), "--poni", str(tmp_path / "bad.poni"),
                 "--out", str(tmp_path / "o.h5")]) == 2
    assert "Distance" in capsys.readouterr().err
    assert main(["integrate", str(tmp_path / "a.npy"), "--poni", str(tmp_path / "none.poni"),
                 "--out", str(tmp_path / "o.h5")]) == 2
    assert "none.poni" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()


# ------------------------------------------------------------------------------------------ the reader itself
def test_read_frames_formats(tmp_path, rng):
    d = rng.random((3, 16, 20)).astype(np.float32)
    e = fabio.edfimage.EdfImage(d[0])
    for k in (1, 2):
        e.append_frame(data=d[k])
    e.write(str(tmp_path / "multi.edf"))
    with read_frames(tmp_path / "multi.edf") as ff:
        assert len(ff) == 3 and ff.source(2) == f"{tmp_path / 'multi.edf'}[2]"
        for k, frame in enumerate(ff):
            np.testing.assert_array_equal(frame, d[k])
    np.savez(tmp_path / "z.npz", first=d, second=d[0])
    ff = read_frames(tmp_path / "z.npz")
    assert len(ff) == 3 and ff.source(1).endswith("z.npz::first[1]")
    with h5py.File(tmp_path / "n.nxs", "w") as f:
        f["entry/a/mask"] = np.zeros((16, 20))  # 2D first, but a 3D stack wins
        f["entry/data/frames"] = d
        f["other/img"] = d[0]
    with read_frames(tmp_path / "n.nxs") as ff:
        assert len(ff) == 3 and ff.source(0).endswith("::/entry/data/frames[0]")
    with read_frames(tmp_path / "n.nxs", dataset="other/img") as ff:
        assert len(ff) == 1 and ff.source(0).endswith("n.nxs::/other/img")
        np.testing.assert_array_equal(ff[0], d[0])


def test_read_frames_errors(tmp_path):
    np.save(tmp_path / "one_d.npy", np.arange(5.0))
    np.save(tmp_path / "text.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(tmp_path / "complex.npy", np.ones((4, 4), complex))
    np.save(tmp_path / "empty.npy", np.ones((0, 4, 4)))
    (tmp_path / "rand.h5").write_bytes(b"\x01\x02" * 500)
    (tmp_path / "rand.npy").write_bytes(b"\x01\x02" * 500)
    with h5py.File(tmp_path / "flat.h5", "w") as f:
        f["x"] = np.arange(3.0)
        f["s"] = np.array([b"ab", b"cd"] * 4).reshape(2, 4)
    cases = [("one_d.npy", None, "expected a frame (H, W)"), ("text.npy", None, "not numbers"),
             ("complex.npy", None, "not numbers"), ("empty.npy", None, "holds no frames"),
             ("rand.h5", None, "cannot read"), ("rand.npy", None, "cannot read"), ("missing.tif", None, "no such file"),
             ("flat.h5", None, "no 2D or 3D numeric dataset"), ("flat.h5", "/nope", "no dataset /nope"),
             ("flat.h5", "/s", "not numbers")]
    for name, dataset, message in cases:
        with pytest.raises(ValueError) as info:
            read_frames(tmp_path / name, dataset)
        assert name in str(info.value) and message in str(info.value), (name, str(info.value))


def test_write_curves_h5_one_shot(tmp_path):
    g = Geometry.simple((8, 10), energy_kev=10)
    write_curves_h5(tmp_path / "c.h5", np.linspace(0.1, 1, 5), np.ones(5), None, np.ones(5, int), "q_nm^-1",
                    ["x.tif"], g, settings={"npt": 5})
    got = _read(tmp_path / "c.h5")
    assert got["intensity"].shape == (1, 5) and "sigma" not in got and got["radial_attrs"]["units"] == "nm⁻¹"
    assert '"npt": 5' in got["attrs"]["settings"]
