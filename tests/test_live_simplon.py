"""The DECTRIS SIMPLON stream v2 source and server (xstructure.live.simplon) against each other on 127.0.0.1
(pyzmq PUSH/PULL, cbor2): frames, metadata and series round-trip, end → EndOfStream, bad messages are Rejected
with their reason, compressed images (bslz4, lz4) decode when the codec is installed, the source survives the
server going away; and the decoder on messages laid out as a detector writes them."""

import datetime
import importlib.util
import math
import threading
import time

import numpy as np
import pytest

pytest.importorskip("zmq")
cbor2 = pytest.importorskip("cbor2")

from live_serving import Serving
from xstructure.live import (
    EndOfStream,
    Frames,
    Keys,
    Rejected,
    SourceError,
    simplon,
)
from xstructure.live.simplon import SimplonServer, SimplonSource, encode, image_array

ADDRESS = "tcp://127.0.0.1:0"   # any free port; the server's .address holds the one it bound


def _have(*modules):
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except ImportError:   # a parent package (dectris) that is not there
        return False


HAVE_CODEC = _have("dectris.compression")
HAVE_COMPRESSOR = _have("h5py", "hdf5plugin")


def until_end(source, deadline=8.0):
    """Everything received until EndOfStream (which must come before the deadline)."""
    out = []
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        try:
            out.extend(source.receive(0.2))
        except EndOfStream:
            return out
    raise AssertionError(f"no end message within {deadline} s; got {len(out)} items")


def frames(start, n, shape=(16, 24), dtype=np.uint16, **meta):
    rng = np.random.default_rng(start)
    data = rng.integers(0, 60000, (n, *shape)).astype(dtype)
    stamps = 1.7e9 + 0.001 * np.arange(start, start + n) + 1.25e-4
    return Frames.make(np.arange(start, start + n), data, timestamp=stamps, **meta)


def part(f: Frames, sl: slice, **meta) -> Frames:
    """Frames ``sl`` of ``f`` (its metadata, or ``meta``)."""
    fields = {k: getattr(f, k)[sl] for k in ("delay", "pumped", "timetool")}
    fields.update(meta)
    return Frames.make(f.ids[sl], f.data[sl], timestamp=f.timestamp[sl], **fields)


def same(got: list, sent: Frames):
    assert all(isinstance(g, Frames) and len(g) == 1 for g in got), got
    np.testing.assert_array_equal(np.concatenate([g.ids for g in got]), sent.ids)
    data = np.concatenate([g.data for g in got])
    assert data.dtype == sent.data.dtype and data.tobytes() == sent.data.tobytes()
    np.testing.assert_allclose(np.concatenate([g.timestamp for g in got]), sent.timestamp, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate([g.delay for g in got]), sent.delay)
    np.testing.assert_array_equal(np.concatenate([g.pumped for g in got]), sent.pumped)
    np.testing.assert_array_equal(np.concatenate([g.timetool for g in got]), sent.timetool)


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.float32])
def test_frames_metadata_and_series_round_trip(dtype):
    first = frames(0, 4, dtype=dtype, delay=[-200.0, -200.0, 300.5, 300.5], pumped=[1, 0, 1, 0],
                   timetool=[0.25, np.nan, -1.5, 2.0])
    second = frames(0, 2, shape=(8, 8), dtype=dtype)   # a new series; metadata not given

    def script(server, stop):
        server.send(first)
        server.end()
        server.send(second)
        server.end()

    with Serving(SimplonServer(ADDRESS), script, hold=True) as s, SimplonSource(s.server.address) as source:
        got = until_end(source)
        assert source.series["series_id"] == 1
        assert (source.series["image_size_y"], source.series["image_size_x"]) == (16, 24)
        got2 = until_end(source)
        assert source.series["series_id"] == 2
    same(got, first)
    same(got2, second)
    assert source.stats["series"] == 2 and source.stats["lost"] == 0
    assert source.stats["messages"] == (1 + 4 + 1) + (1 + 2 + 1)   # start, images, end; twice


def test_garbage_and_truncated_messages_are_rejected_and_the_next_image_arrives():
    good = frames(0, 3, delay=5.0)

    def script(server, stop):
        server.send(part(good, slice(0, 1)))
        server.send_malformed("garbage")
        server.send(part(good, slice(1, 2)))
        server.send_malformed("truncated")
        server.send(part(good, slice(2, 3)))
        server.end()

    with Serving(SimplonServer(ADDRESS), script, hold=True) as s, SimplonSource(s.server.address) as source:
        got = until_end(source)
    assert [type(g) for g in got] == [Frames, Rejected, Frames, Rejected, Frames]
    same([got[0], got[2], got[4]], good)
    assert got[1].reason == "malformed" and got[1].count == 1 and "not a CBOR message" in got[1].detail
    assert got[3].reason == "truncated" and got[3].count == 1
    assert source.stats["lost"] == 0


@pytest.mark.skipif(not HAVE_CODEC, reason="dectris-compression is not installed (pip install dectris-compression)")
@pytest.mark.skipif(not HAVE_COMPRESSOR, reason="the simulated detector compresses with h5py + hdf5plugin")
@pytest.mark.parametrize("compression", ["bslz4", "lz4"])
def test_compressed_images_round_trip(compression):
    sent = frames(10, 3, shape=(32, 40), delay=1.0, pumped=1)

    def script(server, stop):
        server.send(sent)
        server.end()

    with Serving(SimplonServer(ADDRESS, compression=compression), script, hold=True) as s, \
            SimplonSource(s.server.address) as source:
        got = until_end(source)
    same(got, sent)


def test_the_source_reconnects_after_the_server_went_away():
    sent = frames(0, 10)

    def script(server, stop):
        server.send(part(sent, slice(0, 5)))
        server.disconnect(1.0)
        server.send(part(sent, slice(5, 10)))
        server.end()

    with Serving(SimplonServer(ADDRESS, send_timeout=8), script, hold=True) as s, SimplonSource(s.server.address) as source:
        got = until_end(source, deadline=10)
    ids = np.concatenate([g.ids for g in got])
    np.testing.assert_array_equal(ids[-5:], np.arange(5, 10))   # everything sent after the server came back
    assert np.all(np.diff(ids) > 0)
    assert len(ids) + source.stats["lost"] == 10   # what the closed socket dropped counts as lost
    assert source.stats["reconnects"] == 1


def test_keys_and_channel_configured_differently():
    keys = Keys(image="threshold_2", delay="delay_fs", pumped="laser", timetool=None)
    sent = frames(0, 3, delay=[1.0, 2.0, 3.0], pumped=[0, 1, 0], timetool=4.0)

    second = threading.Event()

    def script(server, stop):
        server.send(sent)
        server.end()
        second.wait(5)   # PUSH deals messages round-robin: send again once only the second source is there
        server.send(sent)
        server.end()

    with Serving(SimplonServer(ADDRESS, keys), script, hold=True) as s:
        with SimplonSource(s.server.address, keys) as source:
            got = until_end(source)
        with SimplonSource(s.server.address) as plain:
            assert plain.receive(0.3) == []   # connected
            second.set()
            other = until_end(plain)
    expect = part(sent, slice(0, 3), timetool=None)
    same(got, expect)   # timetool: not sent (its key is None), so NaN
    assert [g.reason for g in other] == ["missing"] * 3
    assert "threshold_2" in other[0].detail


def test_receive_returns_nothing_after_its_timeout():
    source = SimplonSource("tcp://127.0.0.1:9")   # nothing listens there; PULL connects in the background
    with pytest.raises(SourceError, match="not open"):
        source.receive(0.1)
    with source:
        t = time.perf_counter()
        assert source.receive(0.25) == []
        took = time.perf_counter() - t
    source.close()   # twice is fine
    assert 0.2 < took < 0.6
    with pytest.raises(SourceError, match="cannot connect to nowhere"):
        SimplonSource("nowhere").open()


# -- the decoder on hand-made messages ---------------------------------------------------------------------------

def image_message(item, image_id=3, user_data=None, channel="threshold_1", **extra):
    msg = {"type": "image", "series_id": 1, "series_unique_id": "S", "image_id": image_id,
           "series_date": datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.timezone.utc),
           "start_time": [1500, 1000], "stop_time": [1501, 1000], "real_time": [1, 1000],
           "user_data": user_data if user_data is not None else {}, "data": {channel: item}}
    msg.update(extra)
    return encode(msg)


def handle(raw, **kw):
    return SimplonSource(**kw).handle(raw)


def test_decoder_reads_the_detector_layout():
    img = np.arange(6 * 7, dtype=np.uint16).reshape(6, 7)
    (got,) = handle(image_message(image_array(img), user_data={"delay": 12.5, "laser_on": False, "timetool": -1}))
    np.testing.assert_array_equal(got.data[0], img)
    assert got.ids.tolist() == [3] and got.delay.tolist() == [12.5] and got.pumped.tolist() == [0]
    assert got.timetool.tolist() == [-1.0]
    assert got.timestamp[0] == datetime.datetime(2024, 5, 1, 12, 0, 1, 500000, tzinfo=datetime.timezone.utc).timestamp()
    assert not got.data.flags.writeable   # a view of the message, not a copy
    # column-major (tag 1040) and big-endian (tag 65) arrays, and a message without the 55799 prefix
    col = cbor2.CBORTag(1040, [[6, 7], cbor2.CBORTag(69, np.asfortranarray(img).tobytes(order="F"))])
    np.testing.assert_array_equal(handle(image_message(col))[0].data[0], img)
    big = cbor2.CBORTag(40, [[6, 7], cbor2.CBORTag(65, img.astype(">u2").tobytes())])
    (got,) = handle(image_message(big))
    np.testing.assert_array_equal(got.data[0], img)
    assert got.data.dtype == np.uint16 and got.data.dtype.isnative
    plain = cbor2.dumps({"type": "image", "image_id": 0, "data": {"threshold_1": image_array(img)}})
    (got,) = handle(plain)
    np.testing.assert_array_equal(got.data[0], img)
    assert np.isnan(got.delay[0]) and got.pumped[0] == -1


@pytest.mark.parametrize("item, user_data, reason, detail", [
    (cbor2.CBORTag(40, [[6, 7], cbor2.CBORTag(69, bytes(40))]), None, "shape", "20 values"),
    (cbor2.CBORTag(40, [[6, 7], cbor2.CBORTag(69, bytes(83))]), None, "shape", "whole number"),
    (cbor2.CBORTag(40, [[2, 3, 4], cbor2.CBORTag(64, bytes(24))]), None, "shape", "expected [H, W]"),
    (cbor2.CBORTag(40, [[1, 1], cbor2.CBORTag(87, bytes(16))]), None, "dtype", "128-bit"),
    (b"raw bytes", None, "dtype", "not a multi-dimensional array"),
    (cbor2.CBORTag(40, [[2, 2], cbor2.CBORTag(69, cbor2.CBORTag(56500, ["zfp", 2, b"xx"]))]), None,
     "compression", "unknown compression 'zfp'"),
    (cbor2.CBORTag(40, [[2, 2], cbor2.CBORTag(69, bytes(8))]), {"delay": "later"}, "metadata", "delay"),
])
def test_decoder_rejects_bad_images(item, user_data, reason, detail):
    (got,) = handle(image_message(item, user_data=user_data))
    assert isinstance(got, Rejected) and got.reason == reason and got.count == 1, got
    assert detail in got.detail


def test_decoder_without_the_codec_says_so(monkeypatch):
    monkeypatch.setattr(simplon, "_codec", False)   # as when dectris-compression is not installed
    item = cbor2.CBORTag(40, [[2, 2], cbor2.CBORTag(69, cbor2.CBORTag(56500, ["bslz4", 2, b"xx"]))])
    (got,) = handle(image_message(item))
    assert got.reason == "compression" and "pip install dectris-compression" in got.detail


def test_decoder_message_kinds():
    source = SimplonSource()
    assert source.handle(encode({"type": "start", "series_id": 7, "image_size_x": 4, "channels": ["a"],
                                 "flatfield": {"a": image_array(np.ones((2, 2), np.float32))}})) == []
    assert source.series["series_id"] == 7 and list(source.series["channels"]) == ["a"]
    assert "flatfield" not in source.series   # arrays are left out
    assert source.handle(encode({"type": "calibration"})) == [] and source.stats["ignored"] == 1
    (bad,) = source.handle(cbor2.dumps([1, 2, 3]))
    assert bad.reason == "malformed" and "without a type" in bad.detail
    (no_channel,) = source.handle(image_message(image_array(np.ones((2, 2), np.uint8)), channel="difference"))
    assert no_channel.reason == "missing" and "difference" in no_channel.detail
    with pytest.raises(EndOfStream, match="series 7"):
        source.handle(encode({"type": "end", "series_id": 7, "series_unique_id": "u"}))
    # gaps in the image ids of a series are frames the transport lost
    source.handle(encode({"type": "start", "series_id": 8}))
    for i in (0, 1, 4, 5, 9):
        source.handle(image_message(image_array(np.ones((2, 2), np.uint8)), image_id=i, series_id=8))
    assert source.stats["lost"] == 5


def test_decode_speed_is_well_above_the_detector_rate():
    """512 × 512 uint16 messages decode far faster than 2000/s (a loose bound: the machine may be shared)."""
    img = np.random.default_rng(0).integers(0, 100, (512, 512)).astype(np.uint16)
    raw = image_message(image_array(img), user_data={"delay": 1.0, "laser_on": True})
    source = SimplonSource()
    n = 200
    t = time.perf_counter()
    for _ in range(n):
        source.handle(raw)
    rate = n / (time.perf_counter() - t)
    assert rate > 1000, f"{rate:.0f} messages/s"


def test_server_arguments():
    with pytest.raises(ValueError, match="compression must be"):
        SimplonServer(ADDRESS, compression="zstd")
    with pytest.raises(ValueError, match="no typed array"):
        image_array(np.zeros((2, 2), np.complex64))
    assert math.isclose(simplon._seconds([3, 4]), 0.75) and simplon._seconds([1, 0]) is None
