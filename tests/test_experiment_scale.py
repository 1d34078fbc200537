"""A run in many files, and on a dask.distributed cluster: the same numbers as one array in one process."""

import numpy as np
import pytest

from xstructure.experiment import PumpProbe, simulate_pumpprobe
from xstructure.experiment.sources import StackedRows


@pytest.fixture(scope="module")
def run():
    q = np.linspace(0.5, 8, 80)
    return simulate_pumpprobe("CHD", "C=CC=CC=C", q, np.arange(-300, 401, 50), 4000, 0.1, 0.0, 50.0, 1e7,
                              outliers=0.005, seed=5)[0]


def split(run, tmp_path, cuts):
    """Write the run as files of shots [cuts[k], cuts[k+1])."""
    paths = []
    for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        part = PumpProbe.__new__(PumpProbe)   # the parts need not be runs of their own (only laser-on shots)
        part.q, part.signals, part.delay, part.pumped = run.q, run.signals[a:b], run.delay[a:b], run.pumped[a:b]
        part.timetool, part.weights = run.timetool[a:b], None if run.weights is None else run.weights[a:b]
        paths.append(tmp_path / f"part{k}.h5")
        PumpProbe.to_hdf5(part, paths[-1])
    return paths


def test_stacked_rows_slice_like_one_array():
    rng = np.random.default_rng(0)
    parts = [rng.standard_normal((n, 5)) for n in (3, 0, 4, 2)]
    s, whole = StackedRows(parts), np.concatenate(parts)
    assert s.shape == (9, 5) and len(s) == 9
    for key in (slice(0, 9), slice(2, 8), slice(5, 5), 0, 3, -1, np.array([0, 3, 4, 8]), (slice(1, 7), 2)):
        assert np.array_equal(s[key], whole[key])
    with pytest.raises(ValueError, match="different numbers of q points"):
        StackedRows([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(IndexError, match="increasing"):
        s[np.array([3, 1])]


@pytest.mark.parametrize("reference", ["all", "nearest"])
def test_a_run_in_several_files_reduces_as_one(run, tmp_path, reference):
    n_on_only = int(np.argmax(~run.pumped[1:])) + 1   # the first file: laser-on shots only
    cuts = [0, 1, 1500, 2900, run.n_shots] if n_on_only == 1 else [0, n_on_only, 1500, 2900, run.n_shots]
    paths = split(run, tmp_path, cuts)
    kw = dict(bins=8, reference=reference, bootstrap=20, seed=1)
    one = run.reduce(**kw)
    with PumpProbe.from_hdf5(paths) as many:
        assert many.n_shots == run.n_shots and many.sources[0] == [str(p) for p in paths]
        red = many.reduce(**kw)
    for name in ("diff", "sigma", "counts", "off", "delay"):
        assert np.allclose(getattr(red, name), getattr(one, name), rtol=1e-12, atol=1e-15), name
    assert red.rejected == one.rejected


def test_files_that_disagree_are_refused(run, tmp_path):
    paths = split(run, tmp_path, [0, 2000, run.n_shots])
    import h5py

    with h5py.File(paths[1], "r+") as f:
        f["q"][0] = 0.4
    with pytest.raises(ValueError, match="part1.h5: its q grid"):
        PumpProbe.from_hdf5(paths)
    with pytest.raises(ValueError, match="not found"):
        PumpProbe.from_hdf5([paths[0], tmp_path / "missing.h5"])


@pytest.mark.slow
def test_a_multi_file_run_reduces_on_a_dask_cluster_as_in_one_process(run, tmp_path):
    distributed = pytest.importorskip("distributed")
    paths = split(run, tmp_path, [0, 1300, 2600, run.n_shots])
    kw = dict(bins=8, bootstrap=20, seed=3, chunk=500)
    one = run.reduce(**kw)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            distributed.Client(lc) as client, PumpProbe.from_hdf5(paths) as many:
        red = many.reduce(scheduler=client, **kw)
        mem = run.reduce(scheduler=client.scheduler.address, **kw)   # an in-memory run ships its chunks
        assert len(client.scheduler_info()["workers"]) == 2
    for r in (red, mem):
        for name in ("diff", "sigma", "counts", "off", "delay"):
            assert np.array_equal(getattr(r, name), getattr(one, name)), name
        assert r.rejected == one.rejected


def test_a_bad_scheduler_is_one_clear_error(run):
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match="scheduler must be None, an address"):
        run.reduce(bins=4, scheduler=42)
