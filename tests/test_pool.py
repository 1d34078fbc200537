"""Pools in a zarr store: patterns equal simulate(), resuming after an interruption (in process and after
SIGKILL) gives the uninterrupted store, dask workers give the in-process store, bad stores and arguments
raise ValueError and change nothing.

Sampling is a fast deterministic stand-in for xstructure.pools.sampling.sample (same signature and contract:
sample k depends only on (seed, start + k)), so that these tests time the store, not the force field.
"""

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest

import xstructure
from xstructure.pools import pool as pool_mod
from xstructure.cli import main
from xstructure.pools.pool import Pool

zarr = pytest.importorskip("zarr")

N_TOTAL, CHUNK = 3000, 1000
Q = np.linspace(0.5, 10, 24)

STANDIN = '''
import numpy as np

METHODS = ("wigner", "md", "mc")


def sample(atoms, method, n, temperature=300.0, *, seed=0, calc=None, start=0, chunk=1024, **kw):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    ref = atoms.get_positions()
    pos, energies = np.empty((n,) + ref.shape), np.empty(n)
    for k in range(n):
        d = np.random.default_rng([seed, start + k]).normal(scale=0.03 * (1 + temperature / 300), size=ref.shape)
        pos[k], energies[k] = ref + d, 0.5 * float((d ** 2).sum())
    return {"positions": pos, "energies": energies}
'''


def _standin_module():
    mod = types.ModuleType("xstructure.pools.sampling")
    exec(STANDIN, mod.__dict__)
    return mod


@pytest.fixture
def sampler(monkeypatch):
    mod = _standin_module()
    monkeypatch.setitem(sys.modules, "xstructure.pools.sampling", mod)
    monkeypatch.setattr(xstructure.pools, "sampling", mod, raising=False)
    return mod


def snapshot(path):
    """Every file under path with its bytes: equal snapshots mean an untouched store."""
    root = pathlib.Path(path)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_store(a, b, names=()):
    pa, pb = Pool.open(a), Pool.open(b)
    assert np.array_equal(pa.positions[:], pb.positions[:])
    assert np.array_equal(pa.energies[:], pb.energies[:])
    for name in names:
        qa, Ia = pa.patterns(name)
        qb, Ib = pb.patterns(name)
        assert np.array_equal(qa, qb) and np.array_equal(Ia[:], Ib[:])


def make(path, **kw):
    options = dict(method="wigner", n=N_TOTAL, chunk=CHUNK, temperature=300, seed=3, progress=False)
    options.update(kw)
    return Pool.create(path, "NMM", **options)


def test_patterns_equal_simulate_and_reads_are_lazy(tmp_path, sampler):
    pool = make(tmp_path / "p.zarr")
    assert isinstance(pool.positions, zarr.Array) and isinstance(pool.energies, zarr.Array)
    assert pool.positions.shape == (N_TOTAL, 18, 3) and pool.positions.chunks == (CHUNK, 18, 3)
    assert len(pool) == N_TOTAL and pool.complete
    assert pool.attrs["format"] == "xstructure-pool" and pool.attrs["version"] == 1
    assert np.array_equal(pool.numbers, xstructure.molecule("NMM").numbers)
    np.testing.assert_array_equal(pool.reference, xstructure.molecule("NMM").positions)
    direct = sampler.sample(xstructure.molecule("NMM"), "wigner", N_TOTAL, 300.0, seed=3)
    assert np.array_equal(pool.positions[:], direct["positions"])  # chunking does not change the pool

    assert pool.simulate(Q, probe="xray", signal="molecular", progress=False) == "xray_molecular"
    pool.simulate(Q, probe="electron", signal="sM", name="ued", energy_kev=3000, progress=False)
    sets = pool.pattern_sets()
    assert sorted(sets) == ["ued", "xray_molecular"] and sets["ued"]["probe"] == "electron"
    assert sets["ued"]["energy_kev"] == 3000 and all(s["complete"] for s in sets.values())
    pos = pool.positions[:]
    for name, probe, signal, e in [("xray_molecular", "xray", "molecular", None), ("ued", "electron", "sM", 3000)]:
        q, I = pool.patterns(name)
        assert isinstance(I, zarr.Array) and I.shape == (N_TOTAL, Q.size) and I.chunks == (CHUNK, Q.size)
        ref = xstructure.simulate((pool.numbers, pos), q, probe=probe, signal=signal, energy_kev=e)
        np.testing.assert_allclose(I[:], ref, rtol=1e-12, atol=0)

    q, I = pool.patterns("xray_molecular")
    k, dist = pool.nearest(I[1234], "xray_molecular")
    assert (k, dist) == (1234, 0.0)
    target = I[[7, 2500]] + 1e-3
    idx, dists = pool.nearest(target, "xray_molecular")
    assert list(idx) == [7, 2500] and np.allclose(dists, 1e-3 * np.sqrt(Q.size))
    with pytest.raises(ValueError, match="name the pattern set"):
        pool.nearest(I[0])
    # the same set again: nothing to do; another q under the same name: refused
    before = snapshot(pool.path)
    pool.simulate(Q, progress=False)
    with pytest.raises(ValueError, match="exists with"):
        pool.simulate(Q[:-1], progress=False)
    assert snapshot(pool.path) == before

    png = tmp_path / "s.png"
    pool.summary_plot(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_after_keyboard_interrupt(tmp_path, sampler, monkeypatch):
    full = tmp_path / "full.zarr"
    make(full).simulate(Q, progress=False)

    real_sample, real_sim = pool_mod._sample_chunk, pool_mod._simulate_chunk
    calls = []

    def interrupted(real):
        def task(*args):
            if len(calls) == 1:
                raise KeyboardInterrupt
            calls.append(args)
            return real(*args)
        return task

    part = tmp_path / "part.zarr"
    monkeypatch.setattr(pool_mod, "_sample_chunk", interrupted(real_sample))
    with pytest.raises(KeyboardInterrupt):
        make(part)
    assert Pool.open(part)._group["done"][:].tolist() == [True, False, False]
    assert not Pool.open(part).complete
    with pytest.raises(ValueError, match="1 of 3 sampling chunks"):
        Pool.open(part).simulate(Q, progress=False)
    monkeypatch.setattr(pool_mod, "_sample_chunk", real_sample)
    pool = make(part)  # resumes: chunks 1 and 2 only
    assert pool.complete

    calls.clear()
    monkeypatch.setattr(pool_mod, "_simulate_chunk", interrupted(real_sim))
    with pytest.raises(KeyboardInterrupt):
        pool.simulate(Q, progress=False)
    assert pool.pattern_sets()["xray_molecular"]["complete"] is False
    monkeypatch.setattr(pool_mod, "_simulate_chunk", real_sim)
    seen = []
    monkeypatch.setattr(pool_mod, "_simulate_chunk", lambda *a: seen.append(a[1]) or real_sim(*a))
    pool.simulate(Q, progress=False)
    assert seen == [1, 2]
    assert_same_store(full, part, ["xray_molecular"])


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    """A process killed with SIGKILL mid-run leaves only whole chunks counted; rerunning finishes the store."""
    script = tmp_path / "run.py"
    script.write_text(STANDIN + textwrap.dedent('''
        import sys, time, types
        import xstructure
        from xstructure.pools.pool import Pool

        mod = types.ModuleType("xstructure.pools.sampling")
        mod.METHODS, mod.sample = METHODS, sample
        if sys.argv[2] == "slow":
            def slow(*a, **k):
                time.sleep(0.4)
                return sample(*a, **k)
            mod.sample = slow
        sys.modules["xstructure.pools.sampling"] = xstructure.pools.sampling = mod
        Pool.create(sys.argv[1], "NMM", "wigner", n=3000, chunk=300, seed=3, progress=False)
    '''))
    part, full = tmp_path / "part.zarr", tmp_path / "full.zarr"
    proc = subprocess.Popen([sys.executable, str(script), str(part), "slow"])
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if Pool.open(part)._group["done"][:].sum() >= 2:
                    break
            except ValueError:
                pass
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    flags = Pool.open(part)._group["done"][:]
    assert 2 <= flags.sum() < flags.size
    subprocess.run([sys.executable, str(script), str(part), "fast"], check=True)
    subprocess.run([sys.executable, str(script), str(full), "fast"], check=True)
    assert Pool.open(part).complete
    assert_same_store(full, part)


@pytest.mark.slow
def test_dask_workers_write_the_same_store(tmp_path, sampler):
    distributed = pytest.importorskip("distributed")
    local = make(tmp_path / "local.zarr")
    local.simulate(Q, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) \
            as cluster, distributed.Client(cluster) as client:
        remote = make(tmp_path / "remote.zarr", scheduler=cluster.scheduler_address)
        remote.simulate(Q, progress=False, scheduler=client)
    assert_same_store(tmp_path / "local.zarr", tmp_path / "remote.zarr", ["xray_molecular"])


def test_bad_stores_raise_and_stay_untouched(tmp_path, sampler):
    good = tmp_path / "p.zarr"
    make(good, n=200, chunk=100).simulate(Q, progress=False)
    before = snapshot(good)
    for kw, what in [({"temperature": 350}, "temperature"), ({"seed": 4}, "seed"), ({"n": 300}, "n_total"),
                     ({"chunk": 50}, "chunk"), ({"steps": 5}, "params")]:
        with pytest.raises(ValueError, match=what):
            make(good, **{"n": 200, "chunk": 100, **kw})
    with pytest.raises(ValueError, match="numbers"):
        Pool.create(good, "CHD", "wigner", n=200, chunk=100, seed=3, progress=False)
    assert snapshot(good) == before

    foreign = tmp_path / "foreign.zarr"
    zarr.create_group(store=str(foreign), attributes={"format": "something-else"})
    other = tmp_path / "v2.zarr"
    make(other, n=200, chunk=100)
    g = zarr.open_group(store=str(other), mode="r+")
    g.attrs["version"] = 2
    missing = tmp_path / "missing.zarr"
    make(missing, n=200, chunk=100).simulate(Q, progress=False)
    import shutil

    shutil.rmtree(missing / "patterns" / "xray_molecular" / "I")
    nozarr = tmp_path / "plain"
    nozarr.mkdir()
    (nozarr / "notes.txt").write_text("not a store")
    for path, match in [(foreign, "not an xstructure pool"), (other, "version 2"), (missing, "missing"),
                        (nozarr, "not a readable zarr")]:
        snap = snapshot(path)
        with pytest.raises(ValueError, match=match):
            Pool.open(path)
        with pytest.raises(ValueError, match=match):
            make(path, n=200, chunk=100)
        assert snapshot(path) == snap

    for kw in [{"n": 0}, {"n": -5}, {"chunk": 0}, {"seed": -1}, {"temperature": float("nan")}, {"method": "xyz"},
               {"bad": object()}]:
        with pytest.raises(ValueError):
            make(tmp_path / "new.zarr", **kw)
    with pytest.raises(ValueError, match="SMILES"):
        Pool.create(tmp_path / "new.zarr", "C1CC(", n=10, progress=False)
    assert not (tmp_path / "new.zarr").exists()
    assert not list(tmp_path.glob("*.creating-*"))


def test_cli_pool(tmp_path, sampler, capsys):
    out = tmp_path / "nmm.zarr"
    assert main(["pool", "create", "NMM", "--method", "wigner", "--temperature", "300", "--n", "500",
                 "--chunk", "200", "--seed", "3", "--out", str(out)]) == 0
    assert main(["pool", "simulate", str(out), "--q", "0.5:10:24", "--probe", "xray", "--signal", "molecular"]) == 0
    assert main(["pool", "info", str(out), "--plot", str(tmp_path / "info.png")]) == 0
    text = capsys.readouterr().out
    assert '"size": 500' in text and "xray_molecular" in text and (tmp_path / "info.png").exists()
    pool = Pool.open(out)
    np.testing.assert_array_equal(pool.patterns("xray_molecular")[0], Q)
    before = snapshot(out)
    for argv, match in [
        (["pool", "create", "NoSuchMolecule(", "--n", "10", "--out", str(tmp_path / "x.zarr")], "SMILES"),
        (["pool", "create", "NMM", "--n", "0", "--out", str(tmp_path / "x.zarr")], "n must be"),
        (["pool", "create", "NMM", "--n", "500", "--chunk", "200", "--seed", "4", "--out", str(out)], "seed"),
        (["pool", "simulate", str(tmp_path), "--q", "0.5:10:24"], "not a readable zarr"),
        (["pool", "info", str(tmp_path / "nothing.zarr")], "no pool"),
    ]:
        assert main(argv) == 2
        assert match in capsys.readouterr().err
    assert snapshot(out) == before and not (tmp_path / "x.zarr").exists()


@pytest.mark.slow
def test_real_sampler_in_worker_processes(tmp_path):
    """xstructure.pools.sampling itself, in process and in two dask worker processes: the pool is one sample() call."""
    pytest.importorskip("rdkit")
    distributed = pytest.importorskip("distributed")
    sampling = pytest.importorskip("xstructure.pools.sampling")
    local = Pool.create(tmp_path / "local.zarr", "NMM", "wigner", n=40, chunk=10, progress=False)
    direct = sampling.sample(xstructure.molecule("NMM"), "wigner", 40, 300.0, seed=0, chunk=10)
    assert np.array_equal(local.positions[:], direct["positions"])
    assert np.array_equal(local.energies[:], direct["energies"])
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) \
            as cluster:
        remote = Pool.create(tmp_path / "remote.zarr", "NMM", "wigner", n=40, chunk=10, progress=False,
                             scheduler=cluster.scheduler_address)
        remote.simulate(Q, progress=False, scheduler=cluster.scheduler_address)
    local.simulate(Q, progress=False)
    assert_same_store(tmp_path / "local.zarr", tmp_path / "remote.zarr", ["xray_molecular"])
