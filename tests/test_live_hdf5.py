"""xstructure.live.hdf5: a growing SWMR file read while another process appends to it, the end marker, a writer
that closes and comes back, corrupt rows, metadata that lag the image, a folder of files with bad ones among
them."""

import os
import re
import selectors
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from xstructure.live.frames import EndOfStream, Frames, Keys, Rejected, SourceError
from xstructure.live.hdf5 import COMPLETE, Hdf5Server, Hdf5Source

h5py = pytest.importorskip("h5py")

_CHILD = textwrap.dedent("""
    import sys
    import h5py
    import numpy as np
    from xstructure.live.frames import Frames, Keys
    from xstructure.live.hdf5 import COMPLETE, Hdf5Server

    ns = dict(np=np, h5py=h5py, Frames=Frames, Keys=Keys, Hdf5Server=Hdf5Server, COMPLETE=COMPLETE)
    for line in sys.stdin:
        try:
            exec(line, ns)
            print("ok", flush=True)
        except Exception as e:
            print("error " + " ".join(repr(e).split()), flush=True)
""")


class Writer:
    """A child process that runs one statement per call (the SWMR writer; HDF5 wants it in its own process)."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.proc.stdout, selectors.EVENT_READ)

    def send(self, stmt: str) -> None:
        """Start ``stmt`` and return at once (see :meth:`done`)."""
        self.stmt = stmt
        self.proc.stdin.write(stmt.replace("\n", " ") + "\n")
        self.proc.stdin.flush()

    def done(self, timeout: float = 0.0) -> bool:
        """Whether the last statement finished (it must have succeeded)."""
        if not self.sel.select(timeout):
            return False
        answer = self.proc.stdout.readline().strip()
        assert answer == "ok", f"{self.stmt!r}: {answer}"
        return True

    def __call__(self, stmt: str, timeout: float = 20.0) -> None:
        self.send(stmt)
        if not self.done(timeout):
            raise TimeoutError(f"the writer did not answer {stmt!r} within {timeout} s")

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def writer():
    w = Writer()
    w("def batch(a, b): ids = np.arange(a, b); return Frames.make(ids, _img(ids), delay=10.0 * ids, "
      "pumped=ids % 2, timetool=0.1 * ids, timestamp=1.7e9 + ids)")
    w("def _img(ids): return (ids[:, None, None] * 7 + np.arange(12 * 10).reshape(1, 12, 10)).astype(np.uint16)")
    yield w
    w.close()


def _expected(ids):
    ids = np.asarray(ids)
    return (ids[:, None, None] * 7 + np.arange(12 * 10).reshape(1, 12, 10)).astype(np.uint16)


def _check(frames, ids):
    ids = np.asarray(ids)
    got = np.concatenate([f.ids for f in frames])
    np.testing.assert_array_equal(got, ids)
    np.testing.assert_array_equal(np.concatenate([f.data for f in frames]), _expected(ids))
    np.testing.assert_array_equal(np.concatenate([f.delay for f in frames]), 10.0 * ids)
    np.testing.assert_array_equal(np.concatenate([f.pumped for f in frames]), ids % 2)
    np.testing.assert_array_equal(np.concatenate([f.timetool for f in frames]), 0.1 * ids)
    np.testing.assert_array_equal(np.concatenate([f.timestamp for f in frames]), 1.7e9 + ids)


def _drain(src, timeout=20.0, until=None):
    """Everything up to the end of the stream (or ``until(items)``), within ``timeout`` s."""
    out, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            out += src.receive(0.2)
        except EndOfStream:
            return out, True
        if until is not None and until(out):
            return out, False
    return out, False


def _frames(items):
    return [x for x in items if isinstance(x, Frames)]


def test_a_finished_file_round_trips_in_batches(tmp_path):
    path = str(tmp_path / "run.h5")
    srv = Hdf5Server(path)
    srv.start()
    ids = np.arange(10)
    srv.send(Frames.make(ids, _expected(ids), delay=10.0 * ids, pumped=ids % 2, timetool=0.1 * ids,
                         timestamp=1.7e9 + ids))
    srv.end()
    srv.close()
    with Hdf5Source(path, batch=4) as src:
        items, ended = _drain(src)
    assert ended and all(isinstance(x, Frames) for x in items)
    assert [len(x) for x in items] == [4, 4, 2]
    _check(items, ids)
    assert items[0].data.dtype == np.uint16
    with h5py.File(path, "r") as f:
        assert f[COMPLETE][()].tolist() == [10]


def test_reading_while_another_process_appends(tmp_path, writer):
    """Rows come while the writer is still writing; corrupt rows are rejected; the writer closes the file and
    reopens it; the marker ends the stream."""
    path = str(tmp_path / "run.h5")
    writer(f"srv = Hdf5Server({path!r}); srv.start(); srv.send(batch(0, 3))")
    with Hdf5Source(path, poll=0.01) as src:
        items, _ = _drain(src, until=lambda o: len(o) >= 1)
        writer("srv.send(batch(3, 5))")
        items += _drain(src, until=lambda o: sum(map(len, _frames(o))) >= 2)[0]
        _check(_frames(items), np.arange(5))   # all seen while the file is still open for writing
        writer("srv.send_malformed('garbage'); srv.send_malformed('truncated'); srv.send(batch(5, 7))")
        # the writer closes the file and reopens it: the reader must keep looking (it lets go of the file, or
        # HDF5's lock would keep the writer out)
        writer.send("srv.disconnect(0.3); srv.send(batch(7, 9)); srv.end()")
        rest, ended = _drain(src)
        assert writer.done(5.0)
    items += rest
    assert ended
    rejected = [x for x in items if isinstance(x, Rejected)]
    assert [r.reason for r in rejected] == ["decode", "decode"] and all(r.count == 1 for r in rejected)
    assert "row 5" in rejected[0].detail and "row 6" in rejected[1].detail
    _check(_frames(items), np.arange(9))   # frame_id gives the sender's ids, not the rows
    assert src.stats["reconnects"] == 1 and src.stats["rows"] == 11 and src.stats["lost"] == 0


def test_rows_wait_for_their_metadata(tmp_path, writer):
    path = str(tmp_path / "lag.h5")
    writer(f"f = h5py.File({path!r}, 'w', libver='latest'); "
           "img = f.create_dataset('entry/data/data', (0, 4, 4), maxshape=(None, 4, 4), chunks=(1, 4, 4), dtype='f4'); "
           "dl = f.create_dataset('entry/data/delay', (0,), maxshape=(None,), dtype='f8'); "
           "c = f.create_dataset(COMPLETE, (0,), maxshape=(1,), dtype='i8'); f.swmr_mode = True")
    writer("img.resize((3, 4, 4)); img[:] = np.arange(48).reshape(3, 4, 4); dl.resize((1,)); dl[0] = 5.0; f.flush()")
    with Hdf5Source(path, Keys(pumped=None, timetool="tt"), poll=0.01) as src:
        items, _ = _drain(src, timeout=5, until=lambda o: len(o) >= 1)
        assert [len(x) for x in items] == [1] and items[0].delay.tolist() == [5.0]
        assert src.receive(0.2) == []   # rows 1 and 2 have no delay yet
        writer("dl.resize((2,)); dl[1] = 6.0; f.flush()")
        more, _ = _drain(src, timeout=5, until=lambda o: len(o) >= 1)
        assert more[0].ids.tolist() == [1] and more[0].delay.tolist() == [6.0]
        assert np.isnan(more[0].timetool[0]) and more[0].pumped[0] == -1   # tt is not in the file, pumped not asked
        writer("c.resize((1,)); c[0] = 3; f.flush(); f.close()")
        rest, ended = _drain(src, timeout=5)
    assert ended and rest == [Rejected("truncated", 1, rest[0].detail)]   # row 2 never got its delay
    np.testing.assert_array_equal(items[0].data[0], np.arange(16).reshape(4, 4).astype(np.float32))


def test_a_folder_of_files(tmp_path, writer):
    """Files in name order as they appear; a file that is not HDF5 and one cut short are rejected and the next
    files read; END ends the stream."""
    folder = str(tmp_path / "run")
    writer(f"srv = Hdf5Server({folder!r}, per_file=3); srv.start(); srv.send(batch(0, 4))")
    with Hdf5Source(folder, poll=0.01, settle=0.3) as src:
        items, _ = _drain(src, until=lambda o: sum(map(len, _frames(o))) >= 4)
        _check(_frames(items), np.arange(4))   # the second file is read while it is written
        writer("srv.send(batch(4, 5)); srv.send_malformed('garbage'); srv.send_malformed('truncated')")
        writer.send("srv.send(batch(5, 7)); srv.disconnect(0.2); srv.send(batch(7, 9)); srv.end()")
        rest, ended = _drain(src)
        assert writer.done(5.0)
    items += rest
    assert ended
    assert [(r.reason, r.detail.split(":")[0]) for r in items if isinstance(r, Rejected)] == [
        ("malformed", "frames_00002.h5"), ("truncated", "frames_00003.h5")]
    _check(_frames(items), np.arange(9))
    assert sorted(os.listdir(folder)) == ["END"] + [f"frames_{i:05d}.h5" for i in range(6)]


def test_another_programs_file_is_read_whole(tmp_path):
    """No marker, no SWMR, other dataset paths: complete once closed; missing metadata are NaN / -1; ids are
    the rows."""
    path = str(tmp_path / "old.nxs")
    data = np.random.default_rng(1).normal(size=(5, 6, 7)).astype(np.float32)
    with h5py.File(path, "w") as f:
        f["scan/frames"] = data
        f["scan/pump"] = np.array([1, 0, 1, 0, 1], np.uint8)
    with Hdf5Source(path, Keys(image="/scan/frames", pumped="pump", delay="/nowhere/delay")) as src:
        items, ended = _drain(src, timeout=5)
    assert ended and len(items) == 1
    (f,) = items
    np.testing.assert_array_equal(f.ids, np.arange(5))
    np.testing.assert_array_equal(f.data, data)
    np.testing.assert_array_equal(f.pumped, [1, 0, 1, 0, 1])
    assert np.isnan(f.delay).all() and np.isnan(f.timetool).all()


def test_a_file_that_appears_later(tmp_path):
    path = str(tmp_path / "later.h5")
    with Hdf5Source(path, poll=0.01) as src:
        t0 = time.monotonic()
        assert src.receive(0.2) == []
        assert time.monotonic() - t0 < 1.0
        srv = Hdf5Server(path)
        srv.start()
        srv.send(Frames.make([0], _expected([0]), delay=0.0, pumped=0, timetool=0.0, timestamp=1.7e9))
        srv.end()
        srv.close()
        items, ended = _drain(src, timeout=5)
    assert ended
    _check(_frames(items), [0])


@pytest.mark.parametrize("content, reason", [("text", "not an HDF5 file"), ("2d", "expected (frames, H, W)"),
                                             ("noimage", "no image dataset")])
def test_a_bad_file_given_alone_is_a_source_error(tmp_path, content, reason):
    path = str(tmp_path / "bad.h5")
    if content == "text":
        with open(path, "w") as fh:
            fh.write("frames: none\n" * 10)
    else:
        with h5py.File(path, "w") as f:
            f["entry/data/data" if content == "2d" else "entry/other"] = np.zeros((4, 4))
    with Hdf5Source(path, settle=0.0) as src, pytest.raises(SourceError, match=re.escape(reason)) as e:
        src.receive(1.0)
    assert "\n" not in str(e.value)


def test_addresses_and_shapes_are_checked(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        Hdf5Source(str(tmp_path / "nowhere" / "run.h5")).open()
    with pytest.raises(SourceError, match="no such folder"):
        Hdf5Source(str(tmp_path / "not_a_folder")).open()
    srv = Hdf5Server(str(tmp_path / "one.h5"))
    srv.start()
    srv.send(Frames.make([0], np.zeros((4, 5), np.uint16)))
    with pytest.raises(ValueError, match="cannot append 4x6"):
        srv.send(Frames.make([1], np.zeros((4, 6), np.uint16)))
    srv.close()
    folder = str(tmp_path / "many")
    srv = Hdf5Server(folder)
    srv.start()
    srv.send(Frames.make([0], np.zeros((4, 5), np.uint16)))
    srv.send(Frames.make([1], np.zeros((4, 6), np.uint16)))   # a new file
    srv.end()
    srv.close()
    with Hdf5Source(folder) as src:
        items, ended = _drain(src, timeout=5)
    assert ended and [x.data.shape for x in items] == [(1, 4, 5), (1, 4, 6)]
