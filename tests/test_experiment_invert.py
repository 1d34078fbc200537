"""The product's pattern and structure from a difference signal (xstructure.experiment.invert)."""

import numpy as np
import pytest

import xstructure
from xstructure.experiment import invert_difference, product_pattern

Q = np.linspace(0.5, 10, 60)


def _diff(reactant, product, q, f, probe="xray", energy_kev=None):
    kw = dict(probe=probe, signal="total", energy_kev=energy_kev)
    I_r = xstructure.simulate(reactant, q, **kw)
    I_p = xstructure.simulate(product, q, **kw)
    return f * (I_p - I_r) / I_r


@pytest.mark.parametrize("probe, energy", [("xray", None), ("electron", 3700.0)])
def test_product_pattern_inverts_the_difference(probe, energy):
    chd = xstructure.molecule("CHD")
    hexatriene = xstructure.molecule("C=CC=CC=C")
    d = _diff(chd, hexatriene, Q, 0.12, probe, energy)
    for signal in ("total", "molecular", "sM"):
        got = product_pattern(Q, d, chd, 0.12, probe=probe, energy_kev=energy, signal=signal)
        want = xstructure.simulate(hexatriene, Q, probe=probe, signal=signal, energy_kev=energy)
        assert np.allclose(got, want, rtol=1e-10, atol=1e-10 * np.abs(want).max()), signal
    # rows with their own fractions
    two = np.stack([_diff(chd, hexatriene, Q, 0.1), _diff(chd, hexatriene, Q, 0.2)])
    got = product_pattern(Q, two, chd, [0.1, 0.2])
    assert np.allclose(got, xstructure.simulate(hexatriene, Q, probe="xray", signal="total")[None], rtol=1e-10)


def test_product_pattern_bad_input():
    chd = xstructure.molecule("CHD")
    with pytest.raises(ValueError, match=r"fraction must be in \(0, 1\]"):
        product_pattern(Q, np.zeros(Q.size), chd, 0.0)
    with pytest.raises(ValueError, match="Q = 60"):
        product_pattern(Q, np.zeros(59), chd, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        product_pattern(Q, np.full(Q.size, np.nan), chd, 0.1)
    with pytest.raises(ValueError, match="one per row"):
        product_pattern(Q, np.zeros((3, Q.size)), chd, [0.1, 0.2])


@pytest.mark.slow
def test_a_model_of_the_product_reads_the_difference(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    from xstructure.learn import Noise, PoolData, TrainConfig, train
    from xstructure.learn.data import aligned_to

    torch.manual_seed(0)
    product = xstructure.molecule("C=CC=CC=C")
    ref = product.positions - product.positions.mean(0)
    pos = ref + 0.05 * np.random.default_rng(0).standard_normal((30, len(product), 3))
    I = xstructure.simulate((product.numbers, pos), Q, probe="xray", signal="molecular")
    tg = aligned_to(ref, pos)
    parts = {"train": slice(0, 20), "val": slice(20, 25), "test": slice(25, 30)}
    data = PoolData(numbers=product.numbers, reference=ref, q=Q, probe="xray", signal="molecular",
                    molecule="hexatriene", index={k: np.arange(30)[s] for k, s in parts.items()},
                    patterns={k: I[s] for k, s in parts.items()}, targets={k: tg[s] for k, s in parts.items()})
    cfg = TrainConfig(d=32, layers=1, heads=2, tokens=4, hidden=64, epochs=2, batch=8, lr=2e-3, warmup=2,
                      noise=Noise("none").to_dict(), patience=100)
    model = train(data, tmp_path / "m", cfg, progress=False)
    chd = xstructure.molecule("CHD")
    truth = (product.numbers, pos[27])
    q_fine = np.linspace(0.3, 11, 400)   # the data's own grid: interpolated onto the model's
    d = _diff(chd, truth, q_fine, 0.15)
    got = invert_difference(tmp_path / "m", q_fine, d, chd, 0.15)
    direct = model.predict(xstructure.simulate(truth, Q, probe="xray", signal="molecular"))
    assert got.signal == "molecular" and got.positions.shape == (len(product), 3)
    # the same structure as the model gives for the product's own pattern (up to the interpolation)
    assert xstructure.rmsd(got.positions, direct) < 0.02
    assert got.atoms().get_chemical_formula() == product.get_chemical_formula()
    with pytest.raises(ValueError, match="isomer"):
        invert_difference(model, Q, np.zeros(Q.size), xstructure.molecule("H2O"), 0.1)
    with pytest.raises(ValueError, match="does not cover"):
        invert_difference(model, np.linspace(1, 5, 20), np.zeros(20), chd, 0.1)
