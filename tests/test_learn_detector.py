"""2D detector images for inversion (xstructure.learn.detector, the detector_cnn model): the (χ, q) images of
aligned ensembles against binned simulated detector frames, their invariances, and the model's pieces."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import xstructure  # noqa: E402
from xstructure import Geometry  # noqa: E402
from xstructure.learn import InversionModel, Noise, train  # noqa: E402
from xstructure.learn.detector import aligned_cakes, cake, chi_centres, detector_data, long_axis  # noqa: E402
from xstructure.detector.patterns import simulate_detector  # noqa: E402

from test_learn import cli_pool, small_cfg, tiny_data  # noqa: E402

GEOM = Geometry.simple((192, 192), pixel=250e-6, dist=0.06, energy_kev=20)   # q up to ~4.5 Å⁻¹ at the corners
QC = np.linspace(0.5, 3.0, 26)


def _nmm():
    a = xstructure.molecule("NMM")
    return a.numbers, a.positions - a.positions.mean(0)


def test_cake_of_a_simulated_aligned_frame_matches_the_model_images():
    Z, ref = _nmm()
    rng = np.random.default_rng(1)
    X = ref + 0.05 * rng.standard_normal((2, len(Z), 3))
    dip = long_axis(Z, ref)
    frames = simulate_detector((Z, X), GEOM, orientation="aligned", dipole=dip, axis=(1, 0, 0), p2=0.4)
    c = cake(frames, GEOM, QC, 8)
    a = aligned_cakes(Z, X, QC, 8, energy_kev=20, dipole=dip)
    assert c.shape == a.shape == (2, 8, len(QC))
    err = np.abs(c / a - 1)
    assert err.mean() < 0.01 and err.max() < 0.06, (err.mean(), err.max())   # pixel binning within bins
    # the images are strongly anisotropic, and the wrong lab axis does not fit them
    assert np.abs(a / a.mean(1, keepdims=True) - 1).max() > 0.2
    wrong = aligned_cakes(Z, X, QC, 8, energy_kev=20, dipole=dip, axis=(0, 1, 0))
    assert np.abs(c / wrong - 1).mean() > 0.1


def test_aligned_images_invariances():
    Z, ref = _nmm()
    dip = long_axis(Z, ref)
    q = np.linspace(0.5, 8, 40)
    # no alignment: every azimuth shows the Debye pattern
    iso = aligned_cakes(Z, ref, q, 6, energy_kev=20, dipole=dip, p2=0.0)
    assert np.allclose(iso, xstructure.simulate((Z, ref), q, probe="xray", signal="total")[None], rtol=1e-10)
    # the ensemble is uniform about the aligned axis: turning the molecule about d̂ changes nothing
    a = aligned_cakes(Z, ref, q, 6, energy_kev=20, dipole=dip)
    k = np.array([[0, -dip[2], dip[1]], [dip[2], 0, -dip[0]], [-dip[1], dip[0], 0]])
    R = np.eye(3) + np.sin(0.7) * k + (1 - np.cos(0.7)) * k @ k
    assert np.allclose(aligned_cakes(Z, ref @ R.T, q, 6, energy_kev=20, dipole=dip), a, rtol=1e-9)
    # and turning it together with d̂ too
    assert np.allclose(aligned_cakes(Z, ref @ R.T, q, 6, energy_kev=20, dipole=R @ dip), a, rtol=1e-9)
    # χ and χ + π see the same (the pattern depends on (q̂·ê)², and q̂ has the same z part)
    assert np.allclose(a, np.roll(a, 3, axis=0), rtol=1e-9)
    assert np.allclose(chi_centres(4), np.radians([-135, -45, 45, 135]))


def test_cake_corrections_and_errors():
    frame = GEOM.polarization(0.99) * GEOM.solid_angle * 7.0
    c = cake(frame, GEOM, QC, 8)
    assert np.allclose(c, 7.0, rtol=1e-12)
    masked = frame.copy()
    masked[:10] = np.nan                       # non-finite pixels are left out
    assert np.allclose(cake(masked, GEOM, QC, 8), 7.0, rtol=1e-12)
    with pytest.raises(ValueError, match="do not match the detector"):
        cake(frame[:-1], GEOM, QC, 8)
    with pytest.raises(ValueError, match="hold no valid pixel"):
        cake(frame, GEOM, np.linspace(0.5, 9, 20), 8)           # beyond the detector's reach
    with pytest.raises(ValueError, match="uniformly spaced"):
        cake(frame, GEOM, np.array([0.5, 0.6, 0.8]), 8)
    with pytest.raises(ValueError, match="out of reach"):
        aligned_cakes(*_nmm(), np.linspace(0.5, 12, 5), 4, energy_kev=8, dipole=(1, 0, 0))


def _image_data(n=24, split=(8, 8, 8)):
    d = tiny_data(n=n, split=split)
    return detector_data(d, 4, energy_kev=20)


def test_inputs_of_remakes_the_data_patterns_and_images():
    """PoolData.inputs_of (the forward model of refinement plots and the information limit) gives back the
    stored inputs of the stored geometries, for 1D patterns and for images."""
    d = tiny_data(n=12, split=(8, 2, 2))
    for data in (d, detector_data(d, 4, energy_kev=20.0, p2=0.4)):
        X = data.targets["train"]
        assert np.allclose(data.inputs_of(X), data.patterns["train"], rtol=1e-9)


@pytest.mark.slow
def test_detector_cnn_overfits_and_round_trips(tmp_path):
    d = _image_data()
    assert d.input_shape == (4, len(d.q)) and d.patterns["train"].shape == (8, 4 * len(d.q))
    d.patterns["val"], d.targets["val"] = d.patterns["train"], d.targets["train"]
    start = float(np.mean(xstructure.rmsd(d.targets["train"], d.reference, reflection=True)))
    cfg = small_cfg(model="detector_cnn", d=64, tokens=8, channels=4, epochs=150, batch=8, lr=3e-3, warmup=20,
                    noise=Noise("none").to_dict())
    m = train(d, tmp_path / "m", cfg, progress=False)
    imgs = d.patterns["train"].reshape(-1, *d.input_shape)
    r = xstructure.rmsd(m.predict(imgs), d.targets["train"], reflection=True)
    assert start > 0.05 and np.mean(r) < 0.01, (start, np.mean(r))
    again = InversionModel.load(tmp_path / "m")
    assert np.array_equal(again.predict(imgs), m.predict(imgs))
    assert np.array_equal(again.predict(imgs[0]), m.predict(imgs[:1])[0])
    assert json.loads((tmp_path / "m" / "config.json").read_text())["image"]["n_chi"] == 4
    with pytest.raises(ValueError, match="detector images of shape"):
        m.predict(d.patterns["train"])                 # flattened, not (B, n_chi, Q)
    with pytest.raises(ValueError, match="detector images of shape"):
        m.predict(imgs[:, :3])                         # another χ grid
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "m" / "config.json").write_text(json.dumps({**cfg, "image": {"n_chi": "eight"}}))
    with pytest.raises(ValueError, match="bad image description"):
        InversionModel.load(tmp_path / "m")


def test_images_and_models_must_match(tmp_path):
    d = _image_data()
    with pytest.raises(ValueError, match="detector_cnn model reads detector images"):
        train(d, tmp_path / "a", small_cfg(model="transformer", epochs=1), progress=False)
    with pytest.raises(ValueError, match="detector_cnn model reads detector images"):
        train(tiny_data(), tmp_path / "b", small_cfg(model="detector_cnn", epochs=1), progress=False)
    with pytest.raises(ValueError, match="not for images"):
        train(d, tmp_path / "c", small_cfg(model="detector_cnn", epochs=1, w_pattern=0.1), progress=False)


def test_differentiable_images_equal_the_exact_ones_and_have_the_right_gradient():
    from xstructure.learn.detector import images_torch

    Z, ref = _nmm()
    rng = np.random.default_rng(2)
    X = ref + 0.05 * rng.standard_normal((3, len(Z), 3))
    q = np.linspace(0.5, 9, 30)
    image = {"kind": "aligned", "n_chi": 6, "energy_kev": 20.0, "dipole": long_axis(Z, ref).tolist(),
             "axis": [0.0, 1.0, 0.0], "p2": 0.4, "p4": 0.15}
    t = images_torch(image, Z, torch.tensor(X), q)
    a = aligned_cakes(Z, X, q, 6, energy_kev=20, dipole=image["dipole"], axis=image["axis"], p2=0.4, p4=0.15)
    assert np.allclose(t.numpy(), a, rtol=1e-10, atol=0)
    x = torch.tensor(X[:1], requires_grad=True)
    w = torch.tensor(rng.standard_normal((1, 6, len(q))))
    (images_torch(image, Z, x, q) * w).sum().backward()
    h, k = 1e-6, (0, 4, 1)
    Xp, Xm = X[:1].copy(), X[:1].copy()
    Xp[k] += h
    Xm[k] -= h
    fd = float(((aligned_cakes(Z, Xp, q, 6, energy_kev=20, dipole=image["dipole"], axis=image["axis"], p2=0.4,
                               p4=0.15) - aligned_cakes(Z, Xm, q, 6, energy_kev=20, dipole=image["dipole"],
                                                        axis=image["axis"], p2=0.4, p4=0.15)) * w.numpy()).sum()) / (2 * h)
    assert float(x.grad[k]) == pytest.approx(fd, rel=1e-6)


@pytest.mark.slow
def test_cli_train_evaluate_predict_on_images(tmp_path, capsys):
    from xstructure.cli import main

    pool = cli_pool(tmp_path, 80)
    model = tmp_path / "model"
    assert main(["train", str(pool), "--model", "detector_cnn", "--chi-bins", "4", "--out", str(model), "--epochs",
                 "1", "--batch", "16", "--width", "32", "--layers", "1", "--no-progress"]) == 0
    rep = tmp_path / "r.json"
    assert main(["evaluate", str(model), str(pool), "--json", str(rep), "--refine-steps", "2",
                 "--plot", str(tmp_path / "r.png")]) == 0
    report = json.loads(rep.read_text())
    assert {"detector_cnn", "mean_structure", "pool_fit", "ridge"} <= set(report["methods"])
    assert any(k.endswith("+refine") for k in report["methods"])      # refined through the image model
    assert (tmp_path / "r.png").stat().st_size > 10_000
    m = InversionModel.load(model)
    a = xstructure.molecule("CH3OH")
    img = aligned_cakes(a.numbers, a.positions - a.positions.mean(0), m.q, 4, energy_kev=20,
                        dipole=m.image["dipole"])
    np.save(tmp_path / "img.npy", img)
    assert main(["predict", str(model), str(tmp_path / "img.npy"), "--out", str(tmp_path / "s.xyz")]) == 0
    import ase.io

    assert len(ase.io.read(tmp_path / "s.xyz")) == 6
    np.save(tmp_path / "bad.npy", img[:3])
    capsys.readouterr()
    assert main(["predict", str(model), str(tmp_path / "bad.npy"), "--out", str(tmp_path / "t.xyz")]) == 2
    assert "detector images of shape" in capsys.readouterr().err
