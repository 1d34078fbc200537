"""The pieces of xstructure.learn on tiny data: losses, overfitting, checkpoints, resume, baselines, CLI, errors."""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import xstructure  # noqa: E402
from xstructure.learn import InversionModel, Noise, PoolData, TrainConfig, evaluate, train  # noqa: E402
from xstructure.learn.baselines import MeanStructure, PoolFit, Ridge  # noqa: E402
from xstructure.learn.data import Standardizer, aligned_to  # noqa: E402
from xstructure.learn.losses import aligned_rmsd, pair_distance_loss  # noqa: E402

Q = np.linspace(0.5, 10, 60)


def _rotation(rng):
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def tiny_data(n=40, seed=0, molecule="CH3OH", scale=0.06, split=(24, 8, 8)) -> PoolData:
    """Displaced geometries of a small molecule and their X-ray patterns, split train/val/test."""
    a = xstructure.molecule(molecule)
    ref = a.positions - a.positions.mean(0)
    rng = np.random.default_rng(seed)
    pos = ref + scale * rng.standard_normal((n, len(a), 3))
    I = xstructure.simulate((a.numbers, pos), Q, probe="xray", signal="total")
    tg = aligned_to(ref, pos)
    cuts = np.cumsum(split)
    parts = {"train": slice(0, cuts[0]), "val": slice(cuts[0], cuts[1]), "test": slice(cuts[1], cuts[2])}
    return PoolData(numbers=a.numbers, reference=ref, q=Q, probe="xray", signal="total", molecule=molecule,
                    index={k: np.arange(n)[s] for k, s in parts.items()},
                    patterns={k: I[s] for k, s in parts.items()}, targets={k: tg[s] for k, s in parts.items()})


def small_cfg(**kw):
    base = dict(d=32, layers=1, heads=2, tokens=4, hidden=64, epochs=3, batch=8, lr=2e-3, warmup=5,
                noise=Noise("gaussian", 0.005).to_dict(), patience=100)
    base.update(kw)
    return TrainConfig(**base)


def test_losses_invariant_to_rotation_translation_reflection():
    rng = np.random.default_rng(0)
    tgt = torch.tensor(rng.standard_normal((5, 7, 3)))
    pred = tgt + 0.1 * torch.tensor(rng.standard_normal((5, 7, 3)))
    base = float(aligned_rmsd(pred, tgt))
    assert base > 0.01
    for det in (1, -1):
        R = _rotation(rng)
        R = R if np.linalg.det(R) * det > 0 else R @ np.diag([1, 1, -1])
        moved = pred @ torch.tensor(R.T) + torch.tensor(rng.standard_normal(3))
        assert float(aligned_rmsd(moved, tgt)) == pytest.approx(base, abs=1e-10)
        assert float(pair_distance_loss(moved, tgt)) == pytest.approx(float(pair_distance_loss(pred, tgt)), abs=1e-10)
    assert float(aligned_rmsd(tgt, tgt)) == pytest.approx(0.0, abs=1e-7)


def test_aligned_targets_are_centred_and_superposed():
    d = tiny_data()
    ref = d.reference
    for X in d.targets.values():
        assert np.allclose(X.mean(1), 0, atol=1e-12)
        # superposed onto the reference: no proper rotation brings them closer
        r = xstructure.rmsd(X, ref, align=False)
        assert np.allclose(r, xstructure.rmsd(X, ref), atol=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["transformer", "cnn_gru"])
def test_model_overfits_a_handful_of_samples(tmp_path, kind):
    d = tiny_data(n=24, split=(8, 8, 8))
    d.patterns["val"], d.targets["val"] = d.patterns["train"], d.targets["train"]  # validate on what it fits
    start = float(np.mean(xstructure.rmsd(d.targets["train"], d.reference, reflection=True)))
    cfg = small_cfg(model=kind, d=64, hidden=128, tokens=8, epochs=150, batch=8, lr=3e-3, warmup=20,
                    noise=Noise("none").to_dict(), w_pair=1.0)
    m = train(d, tmp_path / kind, cfg, progress=False)
    pred = m.predict(d.patterns["train"])
    r = xstructure.rmsd(pred, d.targets["train"], reflection=True)
    assert start > 0.05
    assert np.mean(r) < 0.005, (start, np.mean(r))  # from ~0.08 Å to near zero


def test_checkpoint_round_trips_and_loads_only_safe_files(tmp_path):
    d = tiny_data()
    m = train(d, tmp_path / "m", small_cfg(), progress=False)
    again = InversionModel.load(tmp_path / "m")
    x = d.patterns["test"]
    assert np.array_equal(m.predict(x), again.predict(x))
    files = sorted(os.listdir(tmp_path / "m"))
    assert "model.safetensors" in files and "config.json" in files
    assert not any(f.endswith((".pt", ".pth", ".pkl", ".bin")) for f in files)
    # foreign config, corrupt weights, missing directory: clear errors
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text(json.dumps({**cfg, "format": "something-else"}))
    with pytest.raises(ValueError, match="not an xstructure inversion model"):
        InversionModel.load(tmp_path / "foreign")
    (tmp_path / "corrupt").mkdir()
    (tmp_path / "corrupt" / "config.json").write_text(json.dumps(cfg))
    (tmp_path / "corrupt" / "model.safetensors").write_bytes(b"\x80\x04not a safetensors file" * 10)
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        InversionModel.load(tmp_path / "corrupt")
    (tmp_path / "corrupt" / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt model config"):
        InversionModel.load(tmp_path / "corrupt")
    with pytest.raises(ValueError, match="not a model directory"):
        InversionModel.load(tmp_path / "nothing")


@pytest.mark.slow
def test_resume_continues_where_it_stopped(tmp_path):
    d = tiny_data()
    cfg = small_cfg(epochs=4)
    full = train(d, tmp_path / "full", cfg, progress=True, log=lambda s: None)

    def stop_after_two(msg):
        if msg.startswith("epoch 2:"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(d, tmp_path / "cut", cfg, progress=True, log=stop_after_two)
    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    assert state["state"]["epoch"] == 2
    resumed = train(d, tmp_path / "cut", cfg, progress=False)
    x = d.patterns["test"]
    np.testing.assert_allclose(resumed.predict(x), full.predict(x), rtol=0, atol=1e-6)
    hist_full = json.loads((tmp_path / "full" / "state.json").read_text())["state"]["history"]
    hist_cut = json.loads((tmp_path / "cut" / "state.json").read_text())["state"]["history"]
    assert [h["val_rmsd"] for h in hist_cut] == pytest.approx([h["val_rmsd"] for h in hist_full], abs=1e-6)
    with pytest.raises(ValueError, match="other data or settings"):
        train(d, tmp_path / "cut", small_cfg(epochs=5, lr=1e-3), progress=False)


def test_a_spent_time_budget_stays_spent(tmp_path):
    d = tiny_data()
    cfg = small_cfg(epochs=50, max_minutes=1e-9)
    train(d, tmp_path / "m", cfg, progress=False)
    assert json.loads((tmp_path / "m" / "state.json").read_text())["state"]["epoch"] == 1
    train(d, tmp_path / "m", cfg, progress=False)          # running it again trains no more
    assert json.loads((tmp_path / "m" / "state.json").read_text())["state"]["epoch"] == 1


def test_one_model_serves_two_molecules(tmp_path):
    a, b = tiny_data(molecule="CH3OH"), tiny_data(molecule="C2H6", seed=1)
    m = train([a, b], tmp_path / "two", small_cfg(epochs=2), progress=False)
    assert m.predict(a.patterns["test"], "CH3OH").shape == (8, 6, 3)
    assert m.predict(b.patterns["test"], "C2H6").shape == (8, 8, 3)
    with pytest.raises(ValueError, match="name the molecule"):
        m.predict(a.patterns["test"])


def test_predict_rejects_bad_input(tmp_path):
    d = tiny_data()
    m = train(d, tmp_path / "m", small_cfg(epochs=1), progress=False)
    x = d.patterns["test"]
    with pytest.raises(ValueError, match="q points"):
        m.predict(x[:, :-1])
    bad = x.copy()
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        m.predict(bad)
    bad[0, 3] = -np.inf
    with pytest.raises(ValueError, match="inf"):
        m.predict(bad)
    with pytest.raises(ValueError, match="atoms"):
        m.predict(x, numbers=[6, 8])
    with pytest.raises(ValueError, match="does not know molecule"):
        m.predict(x, "benzene")


def test_standardizer_torch_path_equals_numpy_and_leaves_input_alone():
    I = tiny_data().patterns["train"]
    st = Standardizer.fit(I)
    x32 = torch.from_numpy(I).float()
    before = x32.clone()
    tol = 4 * np.finfo(np.float32).eps * np.abs(I / st.std).max()   # I rounded to float32 first
    for x in (torch.from_numpy(I), x32):
        assert np.abs(st.tensor(x).numpy() - (I - st.mean) / st.std).max() < tol
    assert torch.equal(x32, before)
    with pytest.raises(ValueError, match="trained on"):
        st.tensor(x32[:, :-1])


def test_interpreter_decoder_is_torchs_decoder():
    """The batch-first attention path (_attend, shared first layer) computes nn.TransformerDecoder's result
    and gradients, and applies the layers' dropout in training."""
    from xstructure.learn.models import Interpreter

    torch.manual_seed(0)
    net = Interpreter(60, d=32, heads=4, layers=3, tokens=5, hidden=64).double()
    tok = torch.randn(1, 9, 32, dtype=torch.float64, requires_grad=True)
    mem = torch.randn(6, 5, 32, dtype=torch.float64, requires_grad=True)
    ours, theirs = net._decode(tok, mem), net.decoder(tok.expand(6, -1, -1), mem)
    assert torch.allclose(ours, theirs, atol=1e-12)
    w = torch.randn_like(ours)
    g1 = torch.autograd.grad((ours * w).sum(), [tok, mem, net.decoder.layers[1].self_attn.in_proj_weight])
    g2 = torch.autograd.grad((theirs * w).sum(), [tok, mem, net.decoder.layers[1].self_attn.in_proj_weight])
    for a, b in zip(g1, g2):
        assert torch.allclose(a, b, atol=1e-10)
    drop = Interpreter(60, d=32, heads=4, layers=2, tokens=5, hidden=64, dropout=0.3).double().train()
    assert not torch.allclose(drop._decode(tok, mem), drop._decode(tok, mem))
    drop.eval()
    assert torch.allclose(drop._decode(tok, mem), drop.decoder(tok.expand(6, -1, -1), mem), atol=1e-12)


def test_baselines():
    d = tiny_data(n=60, split=(40, 10, 10))
    noise = Noise("gaussian", 0.0)
    # pool fitting of a noiseless training pattern finds that member
    pf = PoolFit(d.patterns["train"], d.targets["train"], Noise("gaussian", 0.01))
    assert np.allclose(pf.predict(d.patterns["train"][:5]), d.targets["train"][:5])
    ms = MeanStructure(d.targets["train"]).predict(d.patterns["test"])
    assert ms.shape == d.targets["test"].shape and np.allclose(ms[0], d.targets["train"].mean(0))
    st = Standardizer.fit(d.patterns["train"])
    r = Ridge(st, st(d.patterns["train"]), d.targets["train"], st(d.patterns["val"]), d.targets["val"])
    p = r.predict(noise.apply(d.patterns["test"], 0))
    assert p.shape == d.targets["test"].shape
    # ridge beats the mean structure on clean inputs of this near-linear problem
    assert np.median(xstructure.rmsd(p, d.targets["test"])) < np.median(xstructure.rmsd(ms, d.targets["test"]))


def test_evaluate_report_fields(tmp_path):
    d = tiny_data()
    m = train(d, tmp_path / "m", small_cfg(epochs=1), progress=False)
    rep = evaluate(d, Noise("gaussian", 0.005), models={"transformer": m}, refine_steps=3, progress=False)
    assert rep["test_size"] == 8 and rep["noise"] == {"kind": "gaussian", "level": 0.005, "counts": 1e6}
    names = set(rep["methods"])
    assert {"transformer", "mean_structure", "pool_fit", "ridge"} <= names
    assert any(n.endswith("+refine") for n in names)
    for s in rep["methods"].values():
        for k in ("median_rmsd", "mean_rmsd", "median_rmsd_all", "accuracy@0.05", "accuracy@0.1", "accuracy@0.2"):
            assert np.isfinite(s[k])


def test_noise_models():
    I = np.full((2000, 50), 100.0)
    g = Noise("gaussian", 0.01).apply(I, 0)
    assert abs(g.std() / 100 - 0.01) < 0.001
    p = Noise("poisson", counts=5e4).apply(I, 0)  # 1000 counts per q point: relative sd ~ 1/sqrt(1000)
    assert abs(p.std() / 100 - 1 / np.sqrt(1000)) < 0.003
    with pytest.raises(ValueError):
        Noise("laplace")
    with pytest.raises(ValueError):
        Noise("gaussian", -1)


def cli_pool(tmp_path, n=120):
    """A small CH3OH Wigner pool with X-ray patterns on Q, made through the CLI."""
    from xstructure.cli import main

    pool = tmp_path / "p.zarr"
    assert main(["pool", "create", "CH3OH", "--method", "wigner", "--n", str(n), "--chunk", "64", "--out",
                 str(pool), "--no-progress"]) == 0
    assert main(["pool", "simulate", str(pool), "--q", "0.5:10:60", "--probe", "xray", "--signal", "total",
                 "--no-progress"]) == 0
    return pool


@pytest.mark.slow
def test_cli_train_evaluate_predict(tmp_path, capsys):
    from xstructure.cli import main

    pool = cli_pool(tmp_path)
    model = tmp_path / "model"
    assert main(["train", str(pool), "--out", str(model), "--epochs", "1", "--batch", "16", "--width", "32",
                 "--layers", "1", "--no-progress"]) == 0
    rep = tmp_path / "r.json"
    assert main(["evaluate", str(model), str(pool), "--json", str(rep), "--refine-steps", "2",
                 "--plot", str(tmp_path / "r.png")]) == 0
    report = json.loads(rep.read_text())
    assert {"transformer", "mean_structure", "pool_fit", "ridge"} <= set(report["methods"])
    assert (tmp_path / "r.png").stat().st_size > 10_000
    q = np.linspace(0.5, 10, 60)
    I = xstructure.simulate(xstructure.molecule("CH3OH"), q, probe="xray", signal="total")
    np.savetxt(tmp_path / "pat.csv", np.c_[q, I], delimiter=",")
    assert main(["predict", str(model), str(tmp_path / "pat.csv"), "--out", str(tmp_path / "s.xyz")]) == 0
    import ase.io

    assert len(ase.io.read(tmp_path / "s.xyz")) == 6
    np.savetxt(tmp_path / "bad.csv", np.c_[q[:-1], I[:-1]], delimiter=",")
    capsys.readouterr()
    assert main(["predict", str(model), str(tmp_path / "bad.csv"), "--out", str(tmp_path / "t.xyz")]) == 2
    assert "q grid" in capsys.readouterr().err


@pytest.mark.slow
def test_ddp_two_processes_equal_one(tmp_path):
    """torchrun with 2 CPU processes (gloo) trains the same model as one process."""
    import subprocess
    import sys

    from xstructure.cli import main

    pool = tmp_path / "p.zarr"
    assert main(["pool", "create", "CH3OH", "--method", "wigner", "--n", "120", "--chunk", "64", "--out",
                 str(pool), "--no-progress"]) == 0
    assert main(["pool", "simulate", str(pool), "--q", "0.5:10:40", "--signal", "total", "--no-progress"]) == 0
    common = ["train", str(pool), "--epochs", "2", "--batch", "16", "--width", "32", "--layers", "1", "--no-progress"]
    assert main(common + ["--out", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "xstructure", *common, "--out", str(tmp_path / "two")],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    one, two = InversionModel.load(tmp_path / "one"), InversionModel.load(tmp_path / "two")
    x = xstructure.simulate(xstructure.molecule("CH3OH"), np.linspace(0.5, 10, 40), signal="total")
    x = x * (1 + 0.01 * np.random.default_rng(0).standard_normal((5, 40)))
    a, b = one.predict(x), two.predict(x)
    assert np.abs(a - one.molecules[0].reference_np).max() > 1e-4  # it has learnt something
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    h1 = json.loads((tmp_path / "one" / "state.json").read_text())["state"]["history"]
    h2 = json.loads((tmp_path / "two" / "state.json").read_text())["state"]["history"]
    assert [h["val_rmsd"] for h in h1] == pytest.approx([h["val_rmsd"] for h in h2], abs=1e-6)
