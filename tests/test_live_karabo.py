"""The Karabo bridge source and server (xstructure.live.karabo) against each other on 127.0.0.1, through the real
client library (karabo_bridge.Client) and serializer: trains and their metadata round-trip exactly, a bad message
is one Rejected record and the next train still arrives, the source survives the server going away."""

import time

import numpy as np
import pytest

pytest.importorskip("zmq")
pytest.importorskip("msgpack")
pytest.importorskip("karabo_bridge")

from live_serving import Serving
from xstructure.live import Frames, Keys, Rejected, SourceError
from xstructure.live.karabo import DEFAULT_IMAGE, KaraboServer, KaraboSource

ADDRESS = "tcp://127.0.0.1:0"   # any free port; the server's .address holds the one it bound


def collect(source, n_items, deadline=8.0):
    """Receive until ``n_items`` Frames / Rejected records came (or the deadline passed)."""
    out = []
    give_up = time.monotonic() + deadline
    while len(out) < n_items and time.monotonic() < give_up:
        out.extend(source.receive(0.2))
    return out


def train(tid, n, shape=(16, 24), dtype=np.uint16, **meta):
    rng = np.random.default_rng(tid)
    data = rng.integers(0, 60000, (n, *shape)).astype(dtype)
    return Frames.make(tid * n + np.arange(n), data, timestamp=1.7e9 + 0.1 * tid, **meta)


def same(a: Frames, b: Frames):
    np.testing.assert_array_equal(a.ids, b.ids)
    assert a.data.dtype == b.data.dtype and a.data.shape == b.data.shape
    assert a.data.tobytes() == b.data.tobytes()
    np.testing.assert_array_equal(a.timestamp, b.timestamp)
    np.testing.assert_array_equal(a.delay, b.delay)   # NaN == NaN here
    np.testing.assert_array_equal(a.pumped, b.pumped)
    np.testing.assert_array_equal(a.timetool, b.timetool)


def test_trains_and_metadata_round_trip_exactly():
    trains = [train(0, 4, delay=250.0, pumped=1, timetool=-3.5),                       # per-train scalars
              train(1, 4, delay=[100.0, 100.0, 200.0, 200.0], pumped=[1, 0, 1, 0],       # per-pulse arrays
                    timetool=[0.5, -0.5, 1.5, np.nan]),
              train(2, 4, dtype=np.float32),                                            # metadata not given
              train(3, 4, dtype=np.uint32, pumped=[1, -1, 0, 1])]

    def script(server, stop):
        for t in trains:
            server.send(t)

    with Serving(KaraboServer(ADDRESS, timeout=5), script) as s, KaraboSource(s.server.address) as source:
        got = collect(source, len(trains))
    assert [type(g) for g in got] == [Frames] * len(trains)
    for a, b in zip(got, trains):
        same(a, b)
    assert source.stats["messages"] == len(trains) and source.stats["lost"] == 0
    assert source.stats["reconnects"] == 0


def test_ids_of_batches_that_are_not_whole_trains_round_trip():
    """A batch whose ids are not tid × n + pulse (a partial train) goes out as single-frame trains."""
    batches = [train(0, 4), Frames.make([4, 5, 6], np.ones((3, 8, 8), np.uint16), delay=7.0),
               Frames.make([-1], np.zeros((8, 9), np.uint16)), Frames.make(np.arange(8, 12), np.ones((4, 8, 8)))]

    def script(server, stop):
        for b in batches:
            server.send(b)

    with Serving(KaraboServer(ADDRESS, timeout=5), script) as s, KaraboSource(s.server.address) as source:
        got = collect(source, 6)
    ids = np.concatenate([g.ids for g in got])
    np.testing.assert_array_equal(ids, [0, 1, 2, 3, 4, 5, 6, -1, 8, 9, 10, 11])
    np.testing.assert_array_equal(np.concatenate([g.delay for g in got])[4:7], 7.0)
    assert source.stats["lost"] == 1   # frame 7 was never sent: a gap in the ids


def test_garbage_and_truncated_trains_are_rejected_and_the_next_train_arrives():
    good = [train(0, 2), train(1, 2), train(2, 2)]

    def script(server, stop):
        server.send(good[0])
        server.send_malformed("garbage")
        server.send(good[1])
        server.send_malformed("truncated")
        server.send(good[2])

    with Serving(KaraboServer(ADDRESS, timeout=5), script) as s, KaraboSource(s.server.address) as source:
        got = collect(source, 5)
    assert [type(g) for g in got] == [Frames, Rejected, Frames, Rejected, Frames]
    same(got[0], good[0])
    same(got[2], good[1])
    same(got[4], good[2])
    assert got[1].reason == "malformed" and got[1].count == 1 and "deserialise" in got[1].detail
    assert got[3].reason == "truncated" and got[3].count == 1
    assert source.stats["messages"] == 5


def test_trains_of_the_wrong_form_are_rejected_with_their_reason():
    src = DEFAULT_IMAGE.rpartition(":")[0]
    image = np.arange(2 * 6 * 5, dtype=np.uint16).reshape(2, 6, 5)
    sent = [
        ({src: {"other.data": image}}, "missing", 1),
        ({src: {"image.data": "not an image"}}, "dtype", 1),
        ({src: {"image.data": np.zeros((2, 3), dtype="U3")}}, "dtype", 1),
        ({src: {"image.data": np.zeros((1, 2, 6, 5), np.uint16)}}, "shape", 1),
        ({src: {"image.data": image, "delay": "soon"}}, "metadata", 2),
        ({src: {"image.data": image, "delay": np.array([1.0, 2.0, 3.0])}}, "metadata", 2),
        ({src: {"image.data": image[0], "laser_on": True}}, None, 1),   # (H, W): one frame
    ]

    def script(server, stop):
        for data, _, _ in sent:
            server.send_train(data, {s: {"timestamp": 1.7e9, "timestamp.tid": 40} for s in data})

    with Serving(KaraboServer(ADDRESS, timeout=5), script) as s, KaraboSource(s.server.address) as source:
        got = collect(source, len(sent))
    assert len(got) == len(sent)
    for g, (_, reason, count) in zip(got, sent):
        if reason is None:
            assert isinstance(g, Frames) and len(g) == count
            np.testing.assert_array_equal(g.ids, [40])
            np.testing.assert_array_equal(g.pumped, [1])
            np.testing.assert_array_equal(g.data[0], image[0])
        else:
            assert isinstance(g, Rejected), g
            assert (g.reason, g.count) == (reason, count), g


def test_keys_of_other_sources_and_pipeline_outputs():
    """An image on a pipeline output (a source name with a colon), metadata on a second source, no timetool."""
    keys = Keys(image="MID_DET_AGIPD1M-1/DET/15CH0:xtdf:image.data", delay="MID_LAS/MDL/PP:delay.actual",
                pumped="MID_LAS/MDL/PP:laserOn", timetool=None)
    trains = [train(5, 3, delay=[1.0, 2.0, 3.0], pumped=0, timetool=9.0), train(6, 3, delay=4.0, pumped=[1, 1, 0])]

    def script(server, stop):
        for t in trains:
            server.send(t)
        server.send(trains[0])   # for the source with the default keys

    with Serving(KaraboServer(ADDRESS, keys, timeout=5), script) as s:
        with KaraboSource(s.server.address, keys) as source:
            got = collect(source, 2)
        with KaraboSource(s.server.address) as plain:
            other = collect(plain, 1)
    for g, t in zip(got, trains):
        np.testing.assert_array_equal(g.ids, t.ids)
        assert g.data.tobytes() == t.data.tobytes()
        np.testing.assert_array_equal(g.delay, t.delay)
        np.testing.assert_array_equal(g.pumped, t.pumped)
        assert np.isnan(g.timetool).all()   # not read: the key is None
    assert isinstance(other[0], Rejected) and other[0].reason == "missing"
    assert "MID_DET_AGIPD1M-1/DET/15CH0:xtdf" in other[0].detail


def test_source_reconnects_after_the_server_went_away():
    n = 2

    def script(server, stop):
        for tid in range(3):
            server.send(train(tid, n))
        server.disconnect(1.0)
        tid = 3
        while not stop.is_set() and tid < 40:
            try:
                server.send(train(tid, n))
            except TimeoutError:
                continue
            tid += 1

    server = KaraboServer(ADDRESS, timeout=0.2)
    with Serving(server, script) as s, KaraboSource(s.server.address, reconnect_after=0.3) as source:
        got = []
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up and (not got or got[-1].ids[-1] < 8 * n):
            got.extend(source.receive(0.2))
    assert all(isinstance(g, Frames) for g in got)
    ids = np.concatenate([g.ids for g in got])
    assert ids[-1] >= 8 * n, "no train arrived after the server came back"
    assert np.all(np.diff(ids) > 0)
    np.testing.assert_array_equal(ids[:3 * n], np.arange(3 * n))
    assert source.stats["reconnects"] >= 1
    # a train the server sent to a client that was gone counts as lost: every frame is accounted for
    assert len(ids) + source.stats["lost"] == ids[-1] + 1


def test_receive_returns_nothing_after_its_timeout():
    def script(server, stop):
        stop.wait(5)

    with Serving(KaraboServer(ADDRESS, timeout=5), script) as s:
        source = KaraboSource(s.server.address, reconnect_after=None)
        with pytest.raises(SourceError, match="not open"):
            source.receive(0.1)
        with source:
            t = time.perf_counter()
            assert source.receive(0.25) == []
            took = time.perf_counter() - t
        source.close()   # twice is fine
    assert 0.2 < took < 0.6


def test_bad_arguments():
    with pytest.raises(ValueError, match="sock must be one of"):
        KaraboSource("tcp://127.0.0.1:4545", sock="DEALER")
    with pytest.raises(ValueError, match="SOURCE_NAME:key.path"):
        KaraboSource("tcp://127.0.0.1:4545", Keys(image="image.data"))
    with pytest.raises(SourceError, match="cannot connect to tcp://nowhere"):
        KaraboSource("tcp://nowhere").open()
    with pytest.raises(ValueError, match="trains of 4 frames"):
        server = KaraboServer(ADDRESS, n_pulses=4)
        server.start()
        try:
            server.send(train(0, 3))
        finally:
            server.close()
