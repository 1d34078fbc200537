"""The live pipeline on in-memory sources: accounting, equality with offline integration and reduction, the queue
policies, the output file (growing, after SIGKILL, on a full disk), Ctrl-C, and the command line's errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import xstructure
from xstructure.experiment import PumpProbe, RunningReduction, simulate_pumpprobe
from xstructure.experiment.running import edges_of
from xstructure.live import ArraySource, Frames, Pipeline, SimulatedRun, Source, read_live

pytest.importorskip("rdkit")   # the simulated product is a SMILES


@pytest.fixture(scope="module")
def run():
    return SimulatedRun(shape=(48, 64), delays=np.linspace(-300, 900, 6), repeats=2, photons=2e5)


def _integrator(run, **kw):
    return xstructure.Integrator(run.geometry, npt=120, polarization=0.99, error_model=None, **kw)


class _Mixed(Source):
    """Frames of a run with a wrong-shaped frame every ``every`` messages."""

    protocol = "memory"

    def __init__(self, run, total, batch, every):
        super().__init__("memory")
        self.run, self.total, self.batch, self.every, self.i, self.k = run, total, batch, every, 0, 0

    def open(self):
        pass

    def close(self):
        pass

    def receive(self, timeout):
        from xstructure.live import EndOfStream

        if self.i >= self.total:
            raise EndOfStream
        self.k += 1
        if self.k % self.every == 0:
            self.i += 1
            return [Frames.make([-1], np.zeros((self.run.shape[0] + 1, self.run.shape[1]), np.uint16))]
        n = min(self.batch, self.total - self.i)
        f = self.run.frames(self.i, n)
        self.i += n
        return [f]


def test_running_reduction_equals_the_batch_reduction():
    q = np.linspace(0.5, 9.0, 150)
    pp, _ = simulate_pumpprobe("CHD", "C=C/C=C\\C=C", q, np.linspace(-300, 800, 8), 4000, 0.12, 0.0, 80.0, 1e5,
                               jitter=30.0, outliers=0.0)
    edges = np.linspace(-400, 900, 11)
    ref = pp.reduce(edges, reference="all", reject=None, bootstrap=0, normalize=("window", 1.0, 8.0),
                    empty_bins="warn")
    rr = RunningReduction(q, edges, normalize=("window", 1.0, 8.0), reject=None)
    for a in range(0, pp.n_shots, 97):
        b = min(a + 97, pp.n_shots)
        rr.add(pp.signals[a:b], pp.delay[a:b], pp.pumped[a:b].astype(np.int8), pp.timetool[a:b])
    red = rr.reduced()
    np.testing.assert_array_equal(red.counts, ref.counts)
    np.testing.assert_allclose(red.delay, ref.delay, rtol=1e-12)
    np.testing.assert_allclose(red.diff, ref.diff, rtol=0, atol=1e-12)
    assert red.n_off == ref.n_off


def test_running_reduction_rejects_bad_shots():
    q = np.linspace(0.5, 9.0, 100)
    rng = np.random.default_rng(1)
    P = rng.poisson(1000.0, (400, q.size)).astype(float)
    P[7, 3] = np.nan
    P[9] = 0.0
    P[300, :30] *= 5.0          # a spike over 30 % of the points: an outlier once the reference has warmed up
    rr = RunningReduction(q, [-1.0, 1.0], reject=6.0, warmup=50)
    status = rr.add(P, np.zeros(400), np.arange(400) % 2)
    assert status[7] == 2 and status[9] == 3 and status[300] == 0    # not warmed up within one batch
    status = rr.add(P[300:301], [0.0], [0])
    assert status[0] == 4
    assert rr.rejected["nan"] == 1 and rr.rejected["normalization"] == 1 and rr.rejected["outlier"] == 1


def test_a_pumped_signal_far_above_the_noise_is_not_an_outlier():
    q = np.linspace(0.5, 9.0, 100)
    rng = np.random.default_rng(2)
    off = rng.poisson(1e6, (300, q.size)).astype(float)
    on = rng.poisson(1e6 * (1 + 0.05 * np.sin(q)), (300, q.size)).astype(float)   # 50 σ at the peaks
    rr = RunningReduction(q, [-1.0, 1.0], reject=6.0, warmup=50)
    for a in range(0, 300, 30):
        s_off = rr.add(off[a:a + 30], np.zeros(30), np.zeros(30))
        s_on = rr.add(on[a:a + 30], np.zeros(30), np.ones(30))
        assert not np.any(s_off) and not np.any(s_on)


def test_every_frame_is_accounted_for_and_matches_offline(run, tmp_path):
    total = 3000
    integ = _integrator(run)
    out = tmp_path / "live.h5"
    pipe = Pipeline(_Mixed(run, total, 16, every=25), integ, edges=edges_of(run.delays), out=str(out), batch=32)
    s = pipe.run()
    c = s.counts
    assert s.stopped_by == "end of stream"
    assert c.received == total and c.processed + c.rejected + c.dropped == total
    assert c.rejected_by.get("shape", 0) > 0 and c.dropped == 0
    data = read_live(out)
    assert data["complete"] and data["profiles"].shape[0] == c.processed + c.rejected - c.rejected_by["shape"]
    ids = data["frame_id"]
    np.testing.assert_array_equal(np.unique(ids), ids)   # each once, in order
    offline = np.asarray(integ.integrate(run.bank).intensity)[run.bank_index(ids)]
    rel = np.abs(data["profiles"] - offline) / np.maximum(np.abs(offline), 1e-30)
    assert rel.max() < 1e-6
    rr = RunningReduction(integ.radial, edges_of(run.delays))
    rr.add(offline, run.metadata(ids)["delay"], run.metadata(ids)["pumped"])
    np.testing.assert_allclose(pipe.snapshot().reduced.diff, rr.reduced().diff, atol=1e-6)
    np.testing.assert_array_equal(data["reduction"]["n_on"], rr.n_on)


class _SlowIntegrator(xstructure.Integrator):
    def integrate(self, frames):
        time.sleep(0.01)
        return super().integrate(frames)


def test_drop_policy_counts_what_it_drops(run):
    total = 4000
    src = ArraySource(run.frames, total, batch=8)
    pipe = Pipeline(src, _SlowIntegrator(run.geometry, npt=120, error_model=None), policy="drop", queue=16,
                    batch=8)
    s = pipe.run()
    c = s.counts
    assert c.dropped_by.get("queue full", 0) > 0
    assert c.processed + c.rejected + c.dropped == total


def test_frames_stops_a_stream_faster_than_the_analysis(run):
    pipe = Pipeline(ArraySource(run.frames, 10 ** 7, batch=16), _SlowIntegrator(run.geometry, npt=120), queue=64,
                    batch=16)
    s = pipe.run(frames=1000)
    c = s.counts
    assert s.stopped_by == "frames" and 1000 <= c.received < 1016
    assert c.processed + c.rejected + c.dropped == c.received and c.queued == 0


def test_a_failing_second_stage_stops_the_pipeline_with_the_file_complete(run, tmp_path):
    pipe = Pipeline(ArraySource(run.frames, 10 ** 7, batch=16), _integrator(run), out=str(tmp_path / "f.h5"))

    def broken(*args):
        raise RuntimeError("the results stream broke")

    pipe._emit = broken
    s = pipe.run(duration=60)
    assert s.stopped_by == "error: writing the results: RuntimeError: the results stream broke"
    assert read_live(tmp_path / "f.h5")["complete"]


def test_block_policy_drops_nothing_from_a_slow_consumer(run):
    total = 600
    pipe = Pipeline(ArraySource(run.frames, total, batch=8), _SlowIntegrator(run.geometry, npt=120), queue=16,
                    batch=8)
    c = pipe.run().counts
    assert c.processed == total and c.dropped == 0


def test_snapshot_while_running(run):
    pipe = Pipeline(ArraySource(run.frames, 20000, batch=16), _integrator(run), edges=edges_of(run.delays))
    import threading

    t = threading.Thread(target=pipe.run)
    t.start()
    seen = []
    for _ in range(20):
        snap = pipe.snapshot()
        seen.append(snap.counts.processed)
        time.sleep(0.02)
    t.join(60)
    assert max(seen) > 0
    snap = pipe.snapshot()
    assert snap.frame is not None and snap.frame.shape == run.shape
    assert snap.diff.shape == (len(run.delays), 120) and np.isfinite(snap.diff[:, snap.average > 0]).all()
    assert snap.counts.processed == 20000


_CHILD = textwrap.dedent("""
    import sys, time, numpy as np, xstructure
    from xstructure.live import ArraySource, Pipeline, SimulatedRun
    from xstructure.experiment.running import edges_of
    run = SimulatedRun(shape=(48, 64), delays=np.linspace(-300, 900, 6), repeats=2, photons=2e5)
    class Slow(ArraySource):
        def receive(self, timeout):
            time.sleep(0.01)
            return super().receive(timeout)
    pipe = Pipeline(Slow(run.frames, 10 ** 7, batch=4), xstructure.Integrator(run.geometry, npt=120),
                    edges=edges_of(run.delays), out=sys.argv[1], flush=0.1)
    print("started", flush=True)
    s = pipe.run()
    print(s.stopped_by, s.counts.processed, flush=True)
""")


def _start_child(path):
    p = subprocess.Popen([sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "started"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if read_live(path)["profiles"].shape[0] >= 100:
                return p
        except (OSError, KeyError):
            pass
        time.sleep(0.2)
    p.kill()
    raise AssertionError("the child wrote nothing")


def test_output_is_readable_while_it_grows_and_after_sigkill(tmp_path):
    path = tmp_path / "k.h5"
    p = _start_child(path)
    n1 = read_live(path)["profiles"].shape[0]
    time.sleep(0.5)
    n2 = read_live(path)["profiles"].shape[0]
    assert n2 > n1
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    data = read_live(path)
    assert not data["complete"]
    n = data["profiles"].shape[0]
    assert n >= n2 and np.isfinite(data["profiles"]).all()
    np.testing.assert_array_equal(data["frame_id"], np.arange(n))
    assert data["reduction"]["n_on"].sum() + data["reduction"]["n_off"] <= n


def test_ctrl_c_closes_the_file_complete(tmp_path):
    path = tmp_path / "c.h5"
    p = _start_child(path)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    assert out.split()[0] == "interrupt"
    data = read_live(path)
    assert data["complete"] and data["profiles"].shape[0] == int(out.split()[1])


class _Paced(ArraySource):
    def receive(self, timeout):
        time.sleep(0.01)
        return super().receive(timeout)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_is_reported_counted_and_survived(run, tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], capture_output=True, check=False).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        with open(mnt / "filler", "wb") as f:
            f.write(b"\0" * (7 << 20))
        pipe = Pipeline(_Paced(run.frames, 6000, batch=16), _integrator(run), edges=edges_of(run.delays),
                        out=str(mnt / "run.h5"), flush=0.05)
        import threading

        t = threading.Thread(target=pipe.run)
        t.start()
        deadline = time.time() + 30
        while time.time() < deadline and not any("disk is full" in m for m in pipe.summary().messages):
            time.sleep(0.05)
        assert any("disk is full" in m for m in pipe.summary().messages)
        os.remove(mnt / "filler")     # space comes back: the waiting rows are written
        t.join(60)
        s = pipe.summary()
        assert s.counts.processed == 6000 and s.unwritten == 0
        assert read_live(mnt / "run.h5")["profiles"].shape[0] == 6000
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, check=False)


@pytest.mark.parametrize("argv, message", [
    (["live"], "one of the arguments --source --simulate is required"),
    (["live", "--source", "karabo://127.0.0.1:4545"], "--poni"),
    (["live", "--source", "ftp://x:1", "--poni", "x.poni"], "unknown source scheme 'ftp'"),
    (["live", "--source", "karabo://127.0.0.1", "--poni", "x.poni"], "needs HOST:PORT"),
    (["live", "--simulate", "karabo", "--bins", "5:1:3"], "expected START:STOP:N"),
    (["live", "--simulate", "karabo", "--sim-shape", "4x4"], "expected HxW"),
])
def test_cli_errors_are_one_line(argv, message, tmp_path):
    r = subprocess.run([sys.executable, "-m", "xstructure", *argv], capture_output=True, text=True,
                       cwd=tmp_path, timeout=60, check=False)
    assert r.returncode == 2
    err = r.stderr.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_pumpprobe_is_still_importable_beside_the_running_reduction():
    assert PumpProbe is not None
