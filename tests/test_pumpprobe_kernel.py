"""The compiled pump-probe pass (xstructure.experiment.run._Screen) against its float64 numpy twin
(reference.pumpprobe.NumpyScreen, the reduction's former numpy path), block by block and through whole
reductions: float32 and float64 shots, every normalisation, NaN and inf shots, shots with a bad normaliser,
outliers, codes known before reading, shots outside every group, columns with several rows (duplicates too), and
one to three threads."""

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

import xstructure.experiment.run as run_mod
from reference.pumpprobe import NumpyScreen, norms
from xstructure import _backend, _core
from xstructure.experiment import PumpProbe
from xstructure.experiment.run import _NAN, _NORM, _OUTLIER, _TIMETOOL, _Screen

Q = 67     # not a multiple of the vector width: the tails run too


def block_case(rng, dtype, norm=None, n=300, G=5, R=40):
    """Shots, per-shot facts, outlier tables (from the clean shots, normalised by ``norm``) and an aggregation
    matrix of 1-4 rows per column."""
    q_scale = 1.0 + 0.5 * np.sin(np.linspace(0, 3, Q))
    g = rng.gamma(20.0, 1 / 20.0, n)
    clean = 1000.0 * g[:, None] * q_scale + 30.0 * rng.standard_normal((n, Q))
    X = clean.astype(dtype)
    X[5, 3] = np.nan                      # NaN shot
    X[6, 10] = np.inf                     # inf shot
    X[7] = -np.abs(X[7])                  # negative sums: bad window normaliser
    X[8, :] = 0                           # zero sum
    spikes = rng.choice(np.arange(20, n), 25, replace=False)
    X[spikes, 5:30] *= 3                  # outliers
    X[9, :2] *= 1e4                       # a few points beyond: below the limit
    group = rng.integers(-1, G, n)
    code = np.zeros(n, dtype=np.uint8)
    marked = rng.choice(np.arange(20, n), 25, replace=False)
    code[marked[:15]] = _TIMETOOL
    code[marked[15:]] = _NORM
    inv = 1.0 / g
    inv[code == _NORM] = 0.0
    Z = clean * norms(clean, norm, 1.0 / g)[0][:, None]
    center = np.outer(np.ones(G), np.median(Z, axis=0))
    thr = np.outer(np.ones(G), 5 * 1.4826 * np.median(np.abs(Z - center[0]), axis=0))
    has = np.ones(G, bool)
    has[2] = False                        # a group without statistics: no outlier test there
    counts = rng.integers(1, 5, n)
    cols = np.repeat(np.arange(n), counts)
    rows = rng.integers(0, R, cols.size)
    rows[1::7] = rows[::7][:rows[1::7].size]   # some duplicates (summed by the CSC constructor)
    vals = rng.choice([0.25, 0.5, 0.75, 1.0], cols.size)
    m = sp.csc_matrix((vals, (rows, cols)), shape=(R, n))
    m.sum_duplicates()
    stats = {"center": center.astype(np.float32), "thr": thr.astype(np.float32), "has": has}
    return X, code, inv, group, stats, SimpleNamespace(matrix=m)


NORMS = [None, "weights", ("window", 0, Q), ("window", 10, 50), ("window", 3, 20), ("window", 5, 66)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm", NORMS, ids=lambda v: str(v))
@pytest.mark.parametrize("outliers", [True, False])
def test_block_matches_numpy(dtype, norm, outliers, rng):
    X, code, inv, group, stats, plan = block_case(rng, dtype, norm)
    st = stats if outliers else None
    limit = 3
    ours = _Screen(plan, code, inv, group, norm, st, limit, Q)
    ref = NumpyScreen(plan, code, inv, group, norm, st, limit, Q)
    for a, b in [(0, 300), (0, 17), (17, 150), (150, 300)]:
        c1, i1, r1, s1 = ours(a, X[a:b])
        c2, i2, r2, s2 = ref(a, X[a:b])
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_allclose(i1, i2, rtol=1e-14, atol=0)
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_allclose(s1, s2, rtol=1e-12, atol=1e-12 * np.abs(s2).max())
    c1 = ours(0, X)[0]
    assert (c1 == _NAN).sum() >= 2 and (c1 == _TIMETOOL).sum() == 15
    if norm is not None and norm != "weights":
        assert c1[7] == _NORM and c1[8] == _NORM
    if outliers:
        assert (c1 == _OUTLIER).sum() >= 10      # the spikes (those tested) are caught ...
        assert c1[9] != _OUTLIER                 # ... not a shot with fewer points beyond than the limit


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_block_threads(threads, rng):
    """The same codes, normalisers and rows with any thread count; sums equal within rounding."""
    X, code, inv, group, stats, plan = block_case(rng, np.float32, ("window", 10, 50), n=4000, R=300)
    one = _Screen(plan, code, inv, group, ("window", 10, 50), stats, 3, Q)
    c1, i1, r1, s1 = one(0, X)
    sc = one
    c2, i2 = np.empty_like(c1), np.empty_like(i1)
    r2, s2 = _backend.pumpprobe_block(
        X, norm=sc.norm, i0=10, i1=50, inv_in=sc.inv, code_in=sc.code, group=sc.group, has=sc.has,
        center=sc.tables[X.dtype][0], thr=sc.tables[X.dtype][1], limit=3, col_ptr=sc.indptr, col_row=sc.indices,
        col_val=sc.data, n_rows=sc.n_rows, code=c2, inv=i2, num_threads=threads)
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_allclose(s1, s2, rtol=1e-13, atol=0)


def test_block_with_no_shot_in_use(rng):
    X, code, inv, group, _, plan = block_case(rng, np.float64)
    group[:] = -1
    _, i, rows, sums = _Screen(plan, code, inv, group, None, None, 0, Q)(0, X)
    assert rows is None and sums is None and np.all(i == 0)


def test_block_rejects_bad_input(rng):
    X, code, inv, group, stats, plan = block_case(rng, np.float64, n=50)
    sc = _Screen(plan, code, inv, group, None, stats, 3, Q)
    kw = {"norm": 0, "i0": 0, "i1": Q, "inv_in": sc.inv, "code_in": sc.code, "group": sc.group, "has": sc.has,
          "center": sc.tables[X.dtype][0], "thr": sc.tables[X.dtype][1], "limit": 3, "col_ptr": sc.indptr,
          "col_row": sc.indices, "col_val": sc.data, "n_rows": sc.n_rows, "code": np.empty(50, np.uint8),
          "inv": np.empty(50)}
    bad_group = sc.group.copy()
    bad_group[3] = 99
    with pytest.raises(ValueError, match="group"):
        _backend.pumpprobe_block(X, **{**kw, "group": bad_group})
    with pytest.raises(IndexError, match="row"):
        _backend.pumpprobe_block(X, **{**kw, "n_rows": 2})
    with pytest.raises(ValueError, match="window"):
        _backend.pumpprobe_block(X, **{**kw, "norm": 1, "i0": 5, "i1": 5})
    with pytest.raises(ValueError, match="dtype"):
        _backend.pumpprobe_block(np.zeros_like(X, dtype=np.float16), **kw)


@pytest.mark.parametrize("device", ["cuda", "gpu"])
def test_core_pumpprobe_is_cpu_only(device):
    """The pass has no CUDA path (the shots are on the host): any other device is refused by name."""
    z = np.zeros(2, dtype=np.int64)
    with pytest.raises(ValueError, match=f"^pumpprobe: device must be cpu, not '{device}'$"):
        _core.pumpprobe_block(device, "float32", 0, 1, 1, 0, 0, 0, 1, 0, z.ctypes.data, z.ctypes.data, 0, 0, 0, 0,
                              0, z.ctypes.data, 0, 0, 0, z.ctypes.data, z.ctypes.data, 1)
    with pytest.raises(ValueError, match="^pumpprobe: dtype must be float32 or float64, not 'int8'$"):
        _core.pumpprobe_block("cpu", "int8", 0, 1, 1, 0, 0, 0, 1, 0, z.ctypes.data, z.ctypes.data, 0, 0, 0, 0,
                              0, z.ctypes.data, 0, 0, 0, z.ctypes.data, z.ctypes.data, 1)


def run_case(dtype, seed=3):
    """A small run with jitter (neighbours in other units), NaN shots and spikes."""
    rng = np.random.default_rng(seed)
    S, Qr = 6000, 90
    q = np.linspace(0.5, 9, Qr)
    base = 2000 * np.exp(-0.2 * q)
    pumped = np.arange(S) % 2 == 0
    delay = np.repeat(np.linspace(-400, 800, 12), S // 12)
    g = rng.gamma(25.0, 1 / 25.0, S)
    sig = np.where(pumped[:, None] & (delay[:, None] > 0), 1 + 0.02 * np.sin(q), 1.0)
    X = rng.poisson(g[:, None] * base * sig).astype(dtype)
    X[rng.choice(S, 30, replace=False), 40] = np.nan
    X[rng.choice(S, 40, replace=False), 10:30] *= 4
    tt = rng.normal(0, 60, S)
    tt[rng.choice(S, 10, replace=False)] = np.nan
    return PumpProbe(q, X, delay, pumped, timetool=tt, weights=g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reference", ["nearest", "all"])
@pytest.mark.parametrize("normalize", [("window", 1.0, 7.0), "weights", None])
def test_reduce_matches_numpy_path(dtype, reference, normalize, monkeypatch):
    """A whole reduction with the kernel and with the former numpy path: the same numbers within rounding."""
    run = run_case(dtype)
    kw = {"bins": 20, "normalize": normalize, "reject": 4.0, "reference": reference, "n_nearest": 3, "bootstrap": 20,
          "units": 16, "chunk": 1000, "num_threads": 2}
    ours = run.reduce(**kw)
    with monkeypatch.context() as m:
        m.setattr(run_mod, "_Screen", NumpyScreen)
        ref = run.reduce(**kw)
    assert ours.rejected == ref.rejected and ours.rejected["outlier"] > 0 and ours.rejected["nan"] > 0
    assert ours.rejected["timetool"] > 0
    np.testing.assert_array_equal(ours.counts, ref.counts)
    assert ours.n_off == ref.n_off
    for name in ("delay", "diff", "sigma", "off"):
        np.testing.assert_allclose(getattr(ours, name), getattr(ref, name), rtol=1e-10, atol=1e-13, err_msg=name)
