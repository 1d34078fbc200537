"""xstructure.experiment: pump-probe reduction, ΔsM, ΔPDF, onset and fraction fits, synthetic runs.

References are float64 numpy written out term by term (Debye double loop, explicit trapezoid sums, brute-force
nearest laser-off shots, numerical convolution); the recovery test simulates CHD → hexatriene and finds the
answer again."""

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

import xstructure
from xstructure.experiment import (
    PumpProbe,
    baseline,
    delta_pdf,
    delta_sm,
    fit_fraction,
    fit_onset,
    iam_patterns,
    onset_model,
    simulate_pumpprobe,
    theoretical_difference,
)
from xstructure.structures import bond_graph, from_smiles

# ---- float64 references ------------------------------------------------------------------------------------------


def debye_reference(atoms, q, probe):
    """I_total and I_at by the Debye double loop over atom pairs."""
    Z = atoms.numbers
    pos = atoms.positions
    if probe == "xray":
        f = np.array([xstructure.xray_form_factor(int(z), q) for z in Z])
    else:
        f = np.array([xstructure.electron_form_factor(int(z), q) for z in Z])
    total = np.zeros_like(q)
    for i in range(len(Z)):
        for j in range(len(Z)):
            r = np.linalg.norm(pos[i] - pos[j])
            total += f[i] * f[j] * (np.sin(q * r) / (q * r) if r > 0 else 1.0)
    return total, (f * f).sum(axis=0)


def pdf_reference(q, dsm, r, damping):
    """∫ ΔsM sin(q r) exp(-k q²) dq, trapezoid written as an explicit sum."""
    out = np.zeros(len(r))
    for k, rk in enumerate(r):
        g = dsm * np.sin(q * rk) * np.exp(-damping * q * q)
        for i in range(len(q) - 1):
            out[k] += 0.5 * (q[i + 1] - q[i]) * (g[i] + g[i + 1])
    return out


def brute_reduce(q, X, t, pumped, edges, window, reference, n_near):
    """ΔI/I per bin by definition: shots normalised by their window sum, the nearest laser-off shots found by
    sorting distances."""
    S = len(X)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = X[:, window].sum(axis=1)
        Z = X / s[:, None]
    valid = np.all(np.isfinite(X), axis=1) & (s > 0)
    off = np.flatnonzero(~pumped)
    T = len(edges) - 1
    diff, counts = [], []
    for b in range(T):
        hi_ok = (t <= edges[b + 1]) if b == T - 1 else (t < edges[b + 1])
        members = [i for i in range(S) if pumped[i] and valid[i] and t[i] >= edges[b] and hi_ok[i]]
        on_sum, ref_sum, n = np.zeros(len(q)), np.zeros(len(q)), 0
        for i in members:
            if reference == "all":
                on_sum += Z[i]
                n += 1
                continue
            near = sorted(off, key=lambda j: (abs(j - i), j))[:n_near]
            good = [j for j in near if valid[j]]
            if not good:
                continue
            on_sum += Z[i]
            ref_sum += np.mean([Z[j] for j in good], axis=0)
            n += 1
        if reference == "all":
            ref_sum = n * np.mean([Z[j] for j in off if valid[j]], axis=0)
        counts.append(n)
        diff.append(on_sum / ref_sum - 1 if n else np.full(len(q), np.nan))
    return np.array(diff), np.array(counts)


def hexatriene_conformer(atoms, d1, d2):
    """Z-hexatriene with the C1-C2-C3-C4 and C6-C5-C4-C3 dihedrals set (0: s-cis, 180: s-trans)."""
    from scipy.sparse import csgraph

    a = atoms.copy()
    G = np.array(bond_graph(a.numbers, a.positions), dtype=bool)
    for (i, j, k, l), angle in (((0, 1, 2, 3), d1), ((5, 4, 3, 2), d2)):
        A = G.copy()
        A[j, k] = A[k, j] = False
        _, label = csgraph.connected_components(A, directed=False)
        a.set_dihedral(i, j, k, l, angle, mask=(label == label[i]).astype(int))
    return a


@pytest.fixture(scope="module")
def small_run():
    q = np.linspace(0.5, 8, 120)
    return simulate_pumpprobe("CHD", "C=CC=CC=C", q, np.arange(-300, 401, 50), 3000, 0.1, 0.0, 50.0, 1e7,
                              outliers=0.005, seed=2)


# ---- signals -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("probe", ["xray", "electron"])
def test_delta_sm_is_q_diff_itotal_over_iat(probe, rng):
    chd = xstructure.molecule("CHD")
    q = np.linspace(0.3, 9, 80)
    diff = 0.01 * rng.standard_normal((3, q.size))
    total, atomic = debye_reference(chd, q, probe)
    np.testing.assert_allclose(delta_sm(q, diff, chd, probe=probe), q * diff * total / atomic, rtol=1e-9, atol=0)
    t2, a2 = iam_patterns("CHD", q, probe)
    np.testing.assert_allclose(t2, total, rtol=1e-9)
    np.testing.assert_allclose(a2, atomic, rtol=1e-12)


def test_theoretical_difference_agrees_with_delta_sm():
    q = np.linspace(0.5, 10, 150)
    th = theoretical_difference("CHD", "C=CC=CC=C", q, probe="electron", fraction=0.2, r=np.linspace(0.5, 5, 40))
    np.testing.assert_allclose(th.dsm, delta_sm(q, th.diff, "CHD", probe="electron"), rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(th.pdf, pdf_reference(q, th.dsm, th.r, 0.03), rtol=1e-10, atol=1e-13)
    with pytest.raises(ValueError, match="different atoms"):
        theoretical_difference("CHD", "C6H6", q)


def test_delta_pdf_explicit_sum_and_low_q_fill(rng):
    q = np.linspace(0.8, 6, 57)
    dsm = rng.standard_normal(q.size)
    r = np.linspace(0.2, 6, 31)
    np.testing.assert_allclose(delta_pdf(q, dsm, r, damping=0.05), pdf_reference(q, dsm, r, 0.05), rtol=1e-11,
                               atol=1e-12)
    two = delta_pdf(q, np.stack([dsm, 2 * dsm]), r)
    np.testing.assert_allclose(two[1], 2 * two[0], rtol=1e-12)
    # "zero": a straight line from 0 at q = 0, on the grid's spacing
    dq = q[1] - q[0]
    ql = np.linspace(0, q[0], int(np.ceil(q[0] / dq)) + 1)[:-1]
    qq, yy = np.concatenate([ql, q]), np.concatenate([dsm[0] * ql / q[0], dsm])
    np.testing.assert_allclose(delta_pdf(q, dsm, r, fill_low_q="zero"), pdf_reference(qq, yy, r, 0.03), rtol=1e-10,
                               atol=1e-12)
    # a theory curve covering [0, q0]
    qt = np.linspace(0, 2, 41)
    st = np.sin(qt)
    yy = np.concatenate([np.interp(ql, qt, st), dsm])
    np.testing.assert_allclose(delta_pdf(q, dsm, r, fill_low_q=(qt, st)), pdf_reference(qq, yy, r, 0.03),
                               rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="q grid mismatch"):
        delta_pdf(q, dsm[:-1], r)


def test_baseline_removes_a_polynomial(rng):
    q = np.linspace(0.5, 10, 200)
    osc = np.sin(2.7 * q) * np.exp(-0.05 * q * q)
    poly = 0.3 - 0.1 * q + 0.01 * q * q
    out, base = baseline(q, osc + poly, degree=2, return_baseline=True)
    # least squares is linear: the baseline is the polynomial plus the oscillation's own quadratic fit
    np.testing.assert_allclose(base, poly + np.polyval(np.polyfit(q, osc, 2), q), atol=1e-12)
    np.testing.assert_allclose(out + base, osc + poly, atol=1e-14)
    zeros = np.arange(1, 7) * np.pi / 2.7          # where the oscillation vanishes
    np.testing.assert_allclose(baseline(q, osc + poly, kind="zeros", degree=2, at=zeros), osc, atol=2e-3)
    with pytest.raises(ValueError, match="at least 3 points"):
        baseline(q, osc, kind="zeros", degree=2, at=[1.0, 2.0])


# ---- onset -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["step", "step_exp"])
def test_onset_model_is_the_gaussian_convolution(model):
    t0, sigma, amp, tau, off = 25.0, 40.0, 0.7, 120.0, 0.05
    t = np.linspace(-300, 600, 37)
    u = np.linspace(-10 * sigma, 10 * sigma, 40001)
    g = np.exp(-0.5 * (u / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)
    ref = []
    for tk in t:
        x = tk - u - t0
        step = np.heaviside(x, 0.5)     # the trapezoid rule is exact to O(du²) with the midpoint value at 0
        resp = step * (1.0 if model == "step" else 1 - np.exp(-np.clip(x, 0, None) / tau))
        ref.append(off + amp * np.trapezoid(g * resp, u))
    got = onset_model(t, t0, sigma, amp, tau if model == "step_exp" else None, off, model)
    np.testing.assert_allclose(got, ref, atol=2e-6)


@pytest.mark.parametrize("model", ["step", "step_exp"])
def test_fit_onset_recovers_noiseless_parameters(model, rng):
    q = np.linspace(1, 5, 20)
    t = np.linspace(-400, 800, 61)
    shape = np.sin(q)
    truth = {"t0": -35.0, "width": 55.0, "amplitude": 0.02, "tau": 150.0 if model == "step_exp" else None}
    y = onset_model(t, truth["t0"], truth["width"], truth["amplitude"], truth["tau"], 0.0, model)
    red = SimpleNamespace(delay=t, q=q, diff=y[:, None] * shape, sigma=np.full((t.size, q.size), 1e-4))
    fit = fit_onset(red, q_range=(1, 3), model=model)
    assert abs(fit.t0 - truth["t0"]) < 0.5 and abs(fit.width / truth["width"] - 1) < 0.01
    shape_mean = np.mean(shape[q <= 3])
    assert abs(fit.amplitude / (truth["amplitude"] * shape_mean) - 1) < 0.01
    if model == "step_exp":
        assert abs(fit.tau / truth["tau"] - 1) < 0.01
    fit2 = fit_onset(red, template=shape, model=model)
    assert abs(fit2.amplitude / truth["amplitude"] - 1) < 0.01 and fit2.errors["t0"] > 0
    with pytest.raises(ValueError, match="unknown onset model"):
        fit_onset(red, model="sigmoid")


# ---- fraction ----------------------------------------------------------------------------------------------------


def test_fit_fraction_is_weighted_least_squares(rng):
    q = np.linspace(0.5, 9, 100)
    i_r, _ = iam_patterns("CHD", q)
    i_p, _ = iam_patterns("C=CC=CC=C", q)
    b = (i_p - i_r) / i_r
    sigma = 0.001 * (1 + q / 5)
    d = 0.13 * b + sigma * rng.standard_normal(q.size)
    best = fit_fraction(q, d, "CHD", ["C=CC=CC=C", "C1=CCC=CC1", "CHD"], sigma=sigma)
    w = 1 / sigma ** 2
    f_ref = (w * b * d).sum() / (w * b * b).sum()
    assert best[0].label == "C=CC=CC=C"
    assert best[0].fraction == pytest.approx(f_ref, rel=1e-10)
    assert best[0].fraction_err == pytest.approx(1 / np.sqrt((w * b * b).sum()), rel=1e-10)
    assert best[0].chi2 == pytest.approx((w * (d - f_ref * b) ** 2).sum(), rel=1e-10)
    same = next(r for r in best if r.label == "CHD")           # the reactant as product: no change, f = 0
    assert same.fraction == 0 and same.chi2 == pytest.approx((w * d * d).sum())
    series = fit_fraction(q, np.stack([0 * d, d, 2 * d]), "CHD", [i_p], sigma=sigma)[0]
    np.testing.assert_allclose(series.fraction, [0, f_ref, 2 * f_ref], atol=1e-12)
    with pytest.raises(ValueError, match="q grid mismatch"):
        fit_fraction(q, d, "CHD", [i_p[:-1]])
    with pytest.raises(ValueError, match="q grid mismatch"):
        fit_fraction(q[:-1], d, "CHD", ["C=CC=CC=C"])
    with pytest.raises(ValueError, match="q grid mismatch"):
        delta_sm(q[:-1], d, "CHD")


# ---- reduction ---------------------------------------------------------------------------------------------------


def _tiny_run(rng, S=90, Q=9):
    q = np.linspace(1, 5, Q)
    X = 100 * (1 + 0.2 * rng.random((S, 1))) * (1 + 0.05 * rng.random((S, Q)))
    pumped = rng.random(S) < 0.55
    pumped[:3] = [True, False, True]
    delay = rng.uniform(-100, 100, S)
    return q, X, delay, pumped


@pytest.mark.parametrize("reference", ["nearest", "all"])
@pytest.mark.parametrize("chunk", [7, 65536])
def test_reduce_matches_the_definition(reference, chunk, rng):
    q, X, delay, pumped = _tiny_run(rng)
    off = np.flatnonzero(~pumped)
    X[off[4]] = np.nan                        # a laser-off shot some laser-on shots take as neighbour
    X[np.flatnonzero(pumped)[5], 3] = np.inf  # a laser-on shot
    edges = np.array([-100.0, -30.0, 20.0, 100.0])
    run = PumpProbe(q, X, delay, pumped)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        red = run.reduce(bins=edges, normalize=("window", 2, 4), reject=None, reference=reference, n_nearest=3,
                         bootstrap=0, chunk=chunk)
    window = (q >= 2) & (q <= 4)
    diff, counts = brute_reduce(q, X, delay, pumped, edges, window, reference, 3)
    np.testing.assert_allclose(red.diff, diff, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(red.counts, counts)
    assert red.rejected["nan"] == 2 and red.rejected["total"] == 2 and red.sigma is None
    np.testing.assert_allclose(red.edges, np.column_stack([edges[:-1], edges[1:]]))


def test_nearest_reference_without_valid_neighbour_is_counted(rng):
    q, X, delay, pumped = _tiny_run(rng)
    pumped[:] = np.arange(len(pumped)) % 2 == 0
    X[1] = np.nan           # with n_nearest=1, the reference of shots 0 and 2 (a tie goes to the earlier shot)
    red = PumpProbe(q, X, delay, pumped).reduce(bins=2, reference="nearest", n_nearest=1, reject=None, bootstrap=0)
    assert red.rejected["nan"] == 1 and red.rejected["no_reference"] == 2
    diff, counts = brute_reduce(q, X, delay, pumped, np.quantile(delay[pumped], [0, 0.5, 1]), slice(None),
                                "nearest", 1)
    np.testing.assert_allclose(red.diff, diff, rtol=1e-12, atol=1e-15)
    assert red.counts.sum() == counts.sum() == pumped.sum() - 2


def test_scaling_all_shots_changes_nothing(small_run):
    run, _ = small_run
    for ref in ("nearest", "all"):
        a = run.reduce(bins=12, reference=ref, bootstrap=20)
        b = PumpProbe(run.q, 3.7 * np.asarray(run.signals, dtype=np.float64), run.delay, run.pumped,
                      timetool=run.timetool).reduce(bins=12, reference=ref, bootstrap=20)
        np.testing.assert_allclose(b.diff, a.diff, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(b.sigma, a.sigma, rtol=1e-7, atol=1e-12)
        assert a.rejected == b.rejected and np.array_equal(a.counts, b.counts)


def test_reordering_shots_changes_nothing_with_the_all_reference(small_run, rng):
    run, _ = small_run
    perm = rng.permutation(run.n_shots)
    shuffled = PumpProbe(run.q, np.asarray(run.signals)[perm], run.delay[perm], run.pumped[perm],
                         timetool=run.timetool[perm], weights=run.weights[perm])
    for norm in ("window", "weights"):
        a = run.reduce(bins=12, reference="all", normalize=norm, bootstrap=50)
        b = shuffled.reduce(bins=12, reference="all", normalize=norm, bootstrap=50)
        np.testing.assert_allclose(b.diff, a.diff, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(b.delay, a.delay, rtol=1e-12)
        np.testing.assert_array_equal(b.counts, a.counts)
        assert a.rejected == b.rejected
        ratio = np.median(b.sigma / a.sigma)      # a random estimate: other draws, the same size
        assert 0.8 < ratio < 1.25


def test_outliers_and_nan_shots_are_rejected_and_counted(small_run):
    run, truth = small_run
    X = np.array(run.signals, dtype=np.float64)
    X[[10, 11]] = np.nan
    red = PumpProbe(run.q, X, run.delay, run.pumped, timetool=run.timetool).reduce(bins=12, reject=5.0,
                                                                                   bootstrap=0)
    assert red.rejected["nan"] == 2
    in_bins = np.flatnonzero(~run.pumped | ((run.corrected_delay >= red.edges[0, 0])
                                            & (run.corrected_delay <= red.edges[-1, 1])))
    spiked = np.intersect1d(truth.outliers, in_bins)
    assert spiked.size >= 5
    assert spiked.size - 1 <= red.rejected["outlier"] <= spiked.size + 2
    assert red.rejected["total"] == sum(v for k, v in red.rejected.items() if k != "total")
    assert red.counts.sum() + red.n_off + red.rejected["total"] + red.excluded["outside_bins"] == run.n_shots


def test_sigma_matches_the_scatter_of_independent_runs():
    q = np.linspace(0.5, 8, 40)
    kw = {"shots": 2000, "fraction": 0.1, "t0": 0.0, "width": 50.0, "dose": 1e6, "outliers": 0.0, "jitter": 0.0,
          "timetool_error": 0.0}
    reds = [simulate_pumpprobe("CHD", "C=CC=CC=C", q, [-200, 300], seed=s, **kw)[0].reduce(bins=2, bootstrap=200)
            for s in range(10)]
    scatter = np.std([r.diff for r in reds], axis=0, ddof=1)
    sigma = np.mean([r.sigma for r in reds], axis=0)
    assert 0.75 < np.median(sigma / scatter) < 1.3


def test_bad_inputs_raise_one_clear_error():
    q = np.linspace(1, 5, 10)
    X = np.ones((6, 10))
    d = np.zeros(6)
    p = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
    with pytest.raises(ValueError, match="mismatched lengths"):
        PumpProbe(q, X, d[:5], p)
    with pytest.raises(ValueError, match="mismatched lengths"):
        PumpProbe(q, X, d, p, timetool=np.zeros(7))
    with pytest.raises(ValueError, match="q grid mismatch"):
        PumpProbe(q[:-1], X, d, p)
    with pytest.raises(ValueError, match="no laser-off shots"):
        PumpProbe(q, X, d, np.ones(6, dtype=bool))
    with pytest.raises(ValueError, match="no laser-on shots"):
        PumpProbe(q, X, d, np.zeros(6, dtype=bool))
    with pytest.raises(ValueError, match="strictly increasing"):
        PumpProbe(q[::-1], X, d, p)
    with pytest.raises(ValueError, match="NaN or inf"):
        PumpProbe(np.r_[q[:-1], np.nan], X, d, p)
    with pytest.raises(ValueError, match="booleans"):
        PumpProbe(q, X, d, np.array([0, 1, 2, 0, 1, 0]))
    with pytest.raises(ValueError, match="not finite for 1 laser-on"):
        PumpProbe(q, X, np.r_[np.nan, d[1:]], p)
    run = PumpProbe(q, X, np.array([0, 0, 10, 0, 30, 0.0]), p)
    with pytest.raises(ValueError, match="weights"):
        run.reduce(normalize="weights")
    with pytest.raises(ValueError, match="holds no q point"):
        run.reduce(normalize=("window", 6, 7))
    with pytest.raises(ValueError, match="reference"):
        run.reduce(reference="closest")
    with pytest.raises(ValueError, match="strictly increasing"):
        run.reduce(bins=[0, 20, 10])
    # an empty delay bin: dropped with a warning and counted, or an error
    with pytest.warns(RuntimeWarning, match="1 of 3 delay bins"):
        red = run.reduce(bins=[0, 5, 8, 40], bootstrap=0)
    assert red.excluded["empty_bins"] == 1 and red.dropped == [(5.0, 8.0)] and len(red.diff) == 2
    assert np.all(np.isfinite(red.diff))
    with pytest.raises(ValueError, match="no laser-on shot left"):
        run.reduce(bins=[0, 5, 8, 40], empty_bins="error")
    red = run.reduce(bins=[-1, 15], bootstrap=0)
    assert red.excluded["outside_bins"] == 1 and red.counts.tolist() == [2]
    X2 = X.copy()
    X2[1::2] = np.nan
    with pytest.raises(ValueError, match="every laser-off shot was rejected"):
        PumpProbe(q, X2, d, p).reduce(bins=1)


def test_hdf5_and_zarr_runs_reduce_like_memory(small_run, tmp_path):
    run, _ = small_run
    path = tmp_path / "run.h5"
    run.to_hdf5(path)
    ref = run.reduce(bins=10, bootstrap=20)
    with PumpProbe.from_hdf5(path) as lazy:
        assert not isinstance(lazy.signals, np.ndarray)
        got = lazy.reduce(bins=10, bootstrap=20, chunk=700)
    np.testing.assert_allclose(got.diff, ref.diff, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.sigma, ref.sigma, rtol=1e-9, atol=1e-14)
    assert got.rejected == ref.rejected
    zarr = pytest.importorskip("zarr")
    z = zarr.create_array(store=str(tmp_path / "s.zarr"), shape=run.signals.shape, chunks=(500, run.q.size),
                          dtype=run.signals.dtype)
    z[:] = run.signals
    got = PumpProbe(run.q, z, run.delay, run.pumped, timetool=run.timetool).reduce(bins=10, bootstrap=20,
                                                                                   chunk=1000)
    np.testing.assert_allclose(got.diff, ref.diff, rtol=1e-12, atol=1e-14)


def test_unreadable_or_incomplete_hdf5_files(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not an HDF5 file")
    with pytest.raises(ValueError, match="cannot read .* as HDF5"):
        PumpProbe.from_hdf5(bad)
    with pytest.raises(ValueError, match="not found"):
        PumpProbe.from_hdf5(tmp_path / "missing.h5")
    import h5py

    with h5py.File(tmp_path / "part.h5", "w") as f:
        f["q"] = np.linspace(1, 2, 3)
        f["signals"] = np.ones((4, 3))
        f["delay"] = np.zeros(4)
    with pytest.raises(ValueError, match="no dataset 'pumped'"):
        PumpProbe.from_hdf5(tmp_path / "part.h5")
    with h5py.File(tmp_path / "part.h5", "a") as f:
        f["flag"] = np.array([1, 0, 1, 0], dtype=bool)
    with PumpProbe.from_hdf5(tmp_path / "part.h5", pumped="flag") as run:
        assert run.n_on == 2 and run.timetool is None
    with pytest.raises(ValueError, match="no dataset 'tt'"):
        PumpProbe.from_hdf5(tmp_path / "part.h5", pumped="flag", timetool="tt")


# ---- recovery ----------------------------------------------------------------------------------------------------


def _recovery(q, shots, probe, norm, lazy_path=None):
    tzt = from_smiles("C=C/C=C\\C=C")                     # RDKit embeds Z-hexatriene as tZt
    candidates = [hexatriene_conformer(tzt, 0, 0), hexatriene_conformer(tzt, 0, 180), tzt,
                  "C=C/C=C/C=C", "C1=CCC=CC1", "CC1C=CC=C1", "C1=CC2CC2C1"]
    run, truth = simulate_pumpprobe("CHD", tzt, q, np.arange(-400, 601, 25), shots, 0.12, 30.0, 60.0, 1e8,
                                    probe=probe, seed=3)
    if lazy_path is not None:
        run.to_hdf5(lazy_path)
        run = PumpProbe.from_hdf5(lazy_path)
    red = run.reduce(bins=50, normalize=norm, reject=5.0, chunk=4096)
    template = (truth.i_product - truth.i_reactant) / truth.i_reactant
    onset = fit_onset(red, template=template)
    late, late_sigma = red.average(onset.t0 + 4 * onset.width)
    ranked = fit_fraction(q, late, "CHD", candidates, probe=probe, sigma=late_sigma, normalize=norm)
    r = np.linspace(0.8, 6, 150)
    pdf = delta_pdf(q, delta_sm(q, late, "CHD", probe=probe), r)
    true_pdf = theoretical_difference("CHD", tzt, q, probe=probe, fraction=truth.fraction, r=r).pdf
    return truth, onset, ranked, np.corrcoef(pdf, true_pdf)[0, 1]


def test_recovery_of_chd_ring_opening():
    truth, onset, ranked, corr = _recovery(np.linspace(0.5, 10, 250), 12000, "xray", "weights")
    assert abs(onset.t0 - truth.t0) < 10
    assert abs(onset.width / truth.width - 1) < 0.2
    assert ranked[0].index == 2                            # tZt, the product, among 7 C6H8 structures
    assert abs(ranked[0].fraction / truth.fraction - 1) < 0.05
    assert corr >= 0.98


@pytest.mark.slow
@pytest.mark.parametrize("probe,norm", [("electron", "window"), ("xray", ("window", 1.0, 9.0))])
def test_recovery_from_a_lazy_file_with_window_normalisation(probe, norm, tmp_path):
    truth, onset, ranked, corr = _recovery(np.linspace(0.5, 10, 400), 60000, probe, norm, tmp_path / "run.h5")
    assert abs(onset.t0 - truth.t0) < 10
    assert abs(onset.width / truth.width - 1) < 0.2
    assert ranked[0].index == 2
    assert abs(ranked[0].fraction / truth.fraction - 1) < 0.05
    assert corr >= 0.9          # ΔsM of window-normalised shots keeps a smooth offset (see baseline)


def test_a_pool_stands_for_its_mean_pattern(tmp_path, monkeypatch):
    """A Pool as reactant or candidate: the mean over its geometries, simulated or from a stored total set."""
    import sys
    import types

    pytest.importorskip("zarr")
    from xstructure.pools import Pool

    stand_in = types.ModuleType("xstructure.pools.sampling")      # fast, deterministic geometries

    def sample(atoms, method, n, temperature=300.0, *, seed=0, calc=None, start=0, chunk=1024, **kw):
        ref = atoms.get_positions()
        d = np.stack([np.random.default_rng([seed, start + k]).normal(scale=0.05, size=ref.shape)
                      for k in range(n)])
        return {"positions": ref + d, "energies": 0.5 * (d ** 2).sum(axis=(1, 2))}

    stand_in.METHODS, stand_in.sample = ("wigner",), sample
    monkeypatch.setitem(sys.modules, "xstructure.pools.sampling", stand_in)
    monkeypatch.setattr(xstructure.pools, "sampling", stand_in, raising=False)
    pool = Pool.create(tmp_path / "chd.zarr", "CHD", "wigner", n=30, chunk=10, progress=False)
    q = np.linspace(0.5, 9, 60)
    mean = xstructure.simulate((pool.numbers, pool.positions[:]), q, signal="total").mean(axis=0)
    total, atomic = iam_patterns(pool, q)
    np.testing.assert_allclose(total, mean, rtol=1e-12)
    pool.simulate(q, signal="total", progress=False)
    np.testing.assert_allclose(iam_patterns(Pool.open(pool.path), q)[0], mean, rtol=1e-12)
    np.testing.assert_allclose(atomic, iam_patterns("CHD", q)[1], rtol=1e-12)
    ranked = fit_fraction(q, 0.1 * (iam_patterns("C=CC=CC=C", q)[0] - mean) / mean, pool, ["C=CC=CC=C", pool])
    assert ranked[0].label == "C=CC=CC=C" and ranked[0].fraction == pytest.approx(0.1, rel=1e-9)
    assert ranked[1].label.startswith("Pool") and ranked[1].fraction == 0
