"""xstructure.live.pva against p4p's own server and client on 127.0.0.1 (ports chosen by the system): frames and
metadata round-trip bitwise, NDPluginCodec's codecs, malformed updates rejected, reconnection, lost frames
counted."""

import threading
import time
import uuid

import numpy as np
import pytest

pytest.importorskip("p4p")

from xstructure.live.frames import Frames, Keys, Rejected
from xstructure.live.pva import PvaServer, PvaSource, server_conf


def _name():
    return f"XS:TEST:{uuid.uuid4().hex[:8]}:Image"


@pytest.fixture
def server():
    srv = PvaServer(_name(), conf=server_conf(0, 0))
    srv.start()
    yield srv
    srv.close()


def _source(srv, **kw):
    src = PvaSource(srv.address, conf=srv.client_conf(), **kw)
    src.open()
    return src


def _collect(src, n, timeout=10.0):
    """Items (Frames and Rejected) until ``n`` frames' worth arrived or ``timeout`` s passed."""
    out, end = [], time.monotonic() + timeout
    while sum(len(x) if isinstance(x, Frames) else x.count for x in out) < n and time.monotonic() < end:
        out += src.receive(0.1)
    return out


def _batch(ids, shape=(24, 40), dtype=np.uint16, draw=0):
    rng = np.random.default_rng(draw)
    ids = np.asarray(ids)
    data = rng.integers(0, 1000, (ids.size, *shape)).astype(dtype)
    return Frames.make(ids, data, timestamp=1.7e9 + 0.25 * ids, delay=100.0 * ids - 50.0, pumped=ids % 2,
                       timetool=0.5 * ids)


def _first(src, srv, batch):
    """Send frame 0 of ``batch`` and wait for it: the client has found the server (a PV Access client may take a
    moment to, and a PV's value is only its latest)."""
    srv.send(Frames.make(batch.ids[:1], batch.data[:1], timestamp=batch.timestamp[:1], delay=batch.delay[:1],
                         pumped=batch.pumped[:1], timetool=batch.timetool[:1]))
    got = _collect(src, 1)
    assert len(got) == 1 and isinstance(got[0], Frames), got
    return got


def _check(got, sent):
    frames = [x for x in got if isinstance(x, Frames)]
    ids = np.concatenate([f.ids for f in frames])
    i = np.searchsorted(sent.ids, ids)
    np.testing.assert_array_equal(sent.ids[i], ids)
    data = np.concatenate([f.data for f in frames])
    assert data.dtype == sent.data.dtype
    np.testing.assert_array_equal(data, sent.data[i])
    for name in ("delay", "pumped", "timetool"):
        np.testing.assert_array_equal(np.concatenate([getattr(f, name) for f in frames]), getattr(sent, name)[i])
    np.testing.assert_allclose(np.concatenate([f.timestamp for f in frames]), sent.timestamp[i], rtol=0, atol=1e-6)
    return ids


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32, np.uint8])
def test_frames_and_metadata_round_trip(server, dtype):
    sent = _batch(np.arange(6), dtype=dtype)
    with _source(server) as src:
        got = _first(src, server, sent)
        server.send(Frames.make(sent.ids[1:], sent.data[1:], timestamp=sent.timestamp[1:], delay=sent.delay[1:],
                                pumped=sent.pumped[1:], timetool=sent.timetool[1:]))
        got += _collect(src, 5)
        np.testing.assert_array_equal(_check(got, sent), np.arange(6))
        assert src.stats["lost"] == 0 and src.stats["messages"] == 6
        assert got[0].data.shape == (1, 24, 40)   # (dimension[1], dimension[0])


def test_keys_name_the_attributes():
    srv = PvaServer(_name(), Keys(delay="Delay_fs", pumped=None, timetool="TT"), conf=server_conf(0, 0))
    srv.start()
    try:
        sent = _batch(np.arange(1))
        with PvaSource(srv.address, Keys(delay="Delay_fs", pumped="laser_on", timetool=None),
                       conf=srv.client_conf()) as src:
            (f,) = _first(src, srv, sent)
            assert f.delay[0] == sent.delay[0] and f.pumped[0] == -1 and np.isnan(f.timetool[0])
    finally:
        srv.close()


@pytest.mark.parametrize("codec", ["lz4", "bslz4", "blosc"])
def test_codecs_decode_bitwise(codec):
    pytest.importorskip("numcodecs")
    srv = PvaServer(_name(), conf=server_conf(0, 0), codec=codec)
    srv.start()
    try:
        sent = _batch(np.arange(3), shape=(37, 53))   # 1961 pixels: bitshuffle's tail of 1961 % 8 stored raw
        with _source(srv) as src:
            got = _first(src, srv, sent)
            srv.send(Frames.make(sent.ids[1:], sent.data[1:], delay=sent.delay[1:], pumped=sent.pumped[1:],
                                 timetool=sent.timetool[1:], timestamp=sent.timestamp[1:]))
            got += _collect(src, 2)
            np.testing.assert_array_equal(_check(got, sent), np.arange(3))
    finally:
        srv.close()


def test_bslz4_reads_the_hdf5_filter_format():
    """Bitshuffle/LZ4 as the HDF5 filter writes it (12-byte header, then the blocks) decodes bitwise."""
    pytest.importorskip("numcodecs")
    hdf5plugin = pytest.importorskip("hdf5plugin")
    import io

    import h5py

    from xstructure.live import pva

    rng = np.random.default_rng(3)
    for shape, dtype in [((37, 53), np.uint16), ((64, 70), np.float32), ((9, 9), np.int32)]:
        a = rng.integers(0, 4000, shape).astype(dtype)
        buf = io.BytesIO()
        with h5py.File(buf, "w") as f:
            f.create_dataset("d", data=a[None], chunks=(1, *shape), **hdf5plugin.Bitshuffle(nelems=0, cname="lz4"))
        with h5py.File(buf, "r") as f:
            _, chunk = f["d"].id.read_direct_chunk((0, 0, 0))
        out = pva._decompress("bslz4", np.frombuffer(chunk, np.uint8), np.dtype(dtype), a.size)
        np.testing.assert_array_equal(out.reshape(shape), a)


def test_malformed_updates_are_rejected_and_later_frames_arrive(server):
    sent = _batch(np.arange(4))
    with _source(server) as src:
        got = _first(src, server, sent)
        server.send(Frames.make(sent.ids[1:2], sent.data[1:2], delay=sent.delay[1:2], pumped=sent.pumped[1:2],
                                timetool=sent.timetool[1:2], timestamp=sent.timestamp[1:2]))
        server.send_malformed("garbage")     # uniqueId 2
        server.send_malformed("truncated")   # uniqueId 3
        later = _batch(np.arange(4, 6), draw=1)
        server.send(later)
        got += _collect(src, 5)
        rejected = [x for x in got if isinstance(x, Rejected)]
        assert [r.reason for r in rejected] == ["malformed", "truncated"]
        assert all(r.count == 1 and r.detail for r in rejected)
        frames = [x for x in got if isinstance(x, Frames)]
        np.testing.assert_array_equal(np.concatenate([f.ids for f in frames]), [0, 1, 4, 5])
        np.testing.assert_array_equal(frames[-1].data[0], later.data[1])
        assert src.stats["lost"] == 0


@pytest.fixture
def raw_pv():
    """A PV served by p4p directly, for updates PvaServer never makes."""
    from p4p.server import Server
    from p4p.server.thread import SharedPV

    pv, name = SharedPV(), _name()
    srv = Server(providers=[{name: pv}], conf=server_conf(0, 0), useenv=False)
    conf = srv.conf()
    client = {"EPICS_PVA_ADDR_LIST": "127.0.0.1", "EPICS_PVA_AUTO_ADDR_LIST": "NO",
              "EPICS_PVA_BROADCAST_PORT": conf["EPICS_PVAS_BROADCAST_PORT"],
              "EPICS_PVA_SERVER_PORT": conf["EPICS_PVAS_SERVER_PORT"]}
    yield pv, name, client
    srv.stop()


def test_an_unknown_codec_and_a_non_ntndarray_are_rejected(raw_pv):
    from p4p import Value
    from p4p.nt import NTNDArray

    pv, name, conf = raw_pv
    t = NTNDArray.buildType()

    def nd(uid, codec):
        return Value(t, {"value": ("ubyteValue", np.arange(20, dtype=np.uint8)), "uniqueId": uid,
                         "dimension": [{"size": 5}, {"size": 4}], "codec": {"name": codec, "parameters": 1}})

    pv.open(nd(0, "jpeg"))
    with PvaSource(name, conf=conf) as src:
        got = _collect(src, 1)
        assert len(got) == 1 and got[0].reason == "codec" and "jpeg" in got[0].detail
        pv.post(nd(1, ""))
        got = _collect(src, 1)
        assert isinstance(got[0], Frames)
        np.testing.assert_array_equal(got[0].data[0], np.arange(20, dtype=np.uint8).reshape(4, 5))
        assert np.isnan(got[0].delay[0]) and got[0].pumped[0] == -1


def test_disconnect_and_reconnect(server):
    sent = _batch(np.arange(6))
    with _source(server) as src:
        got = _first(src, server, sent)
        server.send(Frames.make(sent.ids[1:3], sent.data[1:3], delay=sent.delay[1:3], pumped=sent.pumped[1:3],
                                timetool=sent.timetool[1:3], timestamp=sent.timestamp[1:3]))
        got += _collect(src, 2)
        t = threading.Thread(target=server.disconnect, args=(0.5,))
        t.start()
        quiet = []
        while t.is_alive():
            quiet += src.receive(0.05)   # nothing arrives while the server is away, and receive keeps returning
        t.join()
        assert quiet == []
        deadline = time.monotonic() + 10
        while src.stats["reconnects"] < 1 and time.monotonic() < deadline:
            got += src.receive(0.05)
        assert src.stats["reconnects"] == 1 and src.stats["disconnects"] == 1
        server.send(Frames.make(sent.ids[3:], sent.data[3:], delay=sent.delay[3:], pumped=sent.pumped[3:],
                                timetool=sent.timetool[3:], timestamp=sent.timestamp[3:]))
        got += _collect(src, 3)
        np.testing.assert_array_equal(_check(got, sent), np.arange(6))   # frame 2, served again, came once
        assert src.stats["repeated"] == 1 and src.stats["lost"] == 0


def test_frames_the_monitor_squashed_are_counted_lost(server):
    """Post far faster than a 2-update monitor queue (and a 1-update buffer) can hold: every frame is either
    received or counted lost."""
    n = 300
    sent = _batch(np.arange(n), shape=(8, 8))
    with _source(server, queue=2, buffer=1) as src:
        got = _first(src, server, sent)
        for i in range(1, n):   # one update per frame, nobody receiving
            server.send(Frames.make(sent.ids[i:i + 1], sent.data[i:i + 1]))
        deadline = time.monotonic() + 10
        while (not got or got[-1].ids[-1] != n - 1) and time.monotonic() < deadline:
            got += src.receive(0.1)
        ids = np.concatenate([f.ids for f in got])
        assert ids[-1] == n - 1 and np.all(np.diff(ids) > 0)
        assert src.stats["lost"] > 0
        assert src.stats["lost"] + ids.size == n


def test_a_missing_pv_waits_within_the_timeout(server):
    src = PvaSource(_name(), conf=server.client_conf())
    with src:
        t0 = time.monotonic()
        assert src.receive(0.3) == []
        assert time.monotonic() - t0 < 1.5
        assert src.stats["connected"] is False
    src.close()   # twice is fine


def test_a_client_connects_before_the_first_frame(server):
    """Until its first frame the PV holds an empty array (as an IOC's does): a client connects, skips it, and
    then gets every frame from the first."""
    with _source(server) as src:
        deadline = time.monotonic() + 10
        while not src.stats["connected"] and time.monotonic() < deadline:
            assert src.receive(0.02) == []
        assert src.stats["connected"] and src.stats["empty"] == 1
        sent = _batch(np.arange(3))
        server.send(sent)
        np.testing.assert_array_equal(_check(_collect(src, 3), sent), np.arange(3))
        assert src.stats["lost"] == 0
