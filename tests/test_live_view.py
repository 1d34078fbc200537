"""The live view (xstructure.live.view) in a real browser: headless Chromium, driven by Selenium through the
system chromedriver, opens the page served for a running pipeline (:class:`xstructure.live.Pipeline`) fed with a
simulated pump-probe run (:class:`xstructure.live.SimulatedRun`, replayed as a paced delay scan); the plots update
while frames flow, the page's BokehJS and every other resource come from 127.0.0.1, and the browser logs no error.
The pipeline has no model, so the structure panel must say so.  Skipped where Bokeh, Selenium, Chromium,
chromedriver or RDKit (the simulated product is a SMILES) are missing."""

import pathlib
import re
import shutil
import tempfile
import threading
import time
import urllib.request
from urllib.parse import urlsplit

import numpy as np
import pytest

pytest.importorskip("bokeh", reason="the live view needs Bokeh (pip install bokeh)")
pytest.importorskip("rdkit", reason="the simulated run's product is a SMILES (pip install rdkit)")

from xstructure.detector import Integrator
from xstructure.experiment.running import edges_of
from xstructure.live import ArraySource, Frames, Pipeline, SimulatedRun
from xstructure.live.view import serve_view

LOCAL = {"127.0.0.1", "localhost"}
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
NPT = 300                 # q points of the integration
RATE = 800.0              # frames per second the source lets through
PER_DELAY = 3200          # frames (laser on and off alternating) at each delay of the scan: 4 s a delay, so
                          # that the 15 delays take a minute and rows are still being added once a slow
                          # (loaded) machine has started Chromium and loaded the page

# What the page shows, read from BokehJS's own document (the models are named in view.py).
READ = """
const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
if (!doc) return null;
const col = (name, key) => {
  const m = doc.get_model_by_name(name);
  if (!m) return null;
  const v = m.data instanceof Map ? m.data.get(key) : m.data[key];
  return v == null ? null : Array.from(v);
};
const total = col('rates', 'received_total') || [];
const filled = col('diff_map', 'filled') || [];
const text = (name) => { const m = doc.get_model_by_name(name); return m ? m.text : ''; };
const none = doc.get_model_by_name('no_structure');
return {received: total.length ? total[total.length - 1] : null, points: total.length,
        filled: filled.length ? filled[0] : null, dsm: (col('dsm', 'y') || []).length,
        atoms: (col('atoms', 'x') || []).length, no_structure: none ? none.visible : null,
        counts: text('counts'), header: text('header')};
"""


class PacedSource(ArraySource):
    """An :class:`ArraySource` that lets ``rate`` frames per second through, as a detector would send them."""

    def __init__(self, frames, total, *, rate: float, batch: int = 16):
        super().__init__(frames, total, batch=batch)
        self.rate = float(rate)
        self._t0 = None

    def receive(self, timeout: float) -> list:
        if self._t0 is None:
            self._t0 = time.perf_counter()
        lag = self._t0 + self._next / self.rate - time.perf_counter()
        if lag > 0:
            time.sleep(min(lag, timeout))
        return super().receive(timeout)


def delay_scan(run: SimulatedRun, per_delay: int):
    """``batch(start, n)`` of ``run``'s frames as a scan over its delays in order (``per_delay`` frames at each,
    laser on and off alternating, over and over), so that ΔI/I(q, t) fills in delay by delay."""
    D, R = len(run.delays), int(run.repeats)

    def batch(start: int, n: int) -> Frames:
        k = np.arange(start, start + n, dtype=np.int64)
        d = (k // per_delay) % D
        i = 2 * (d + D * ((k // 2) % R)) + (k % 2)        # run frame i: delay d, laser on for even k
        return Frames.make(k, run.bank[run.bank_index(i)], **run.metadata(i))

    return batch


@pytest.fixture(scope="module")
def pipeline():
    run = SimulatedRun(shape=(256, 256), repeats=4)
    source = PacedSource(delay_scan(run, PER_DELAY), 10 ** 8, rate=RATE)
    pipe = Pipeline(source, Integrator(run.geometry, npt=NPT, polarization=0.99, error_model=None),
                    edges=edges_of(run.delays), settings={"source": "SimulatedRun, a paced delay scan"})
    thread = threading.Thread(target=pipe.run, name="test-live-view-pipeline", daemon=True)
    thread.start()
    yield pipe
    pipe.stop()
    thread.join(timeout=20)
    assert not thread.is_alive(), "the pipeline did not stop"


@pytest.fixture(scope="module")
def view(pipeline):
    v = serve_view(pipeline, port=0, molecule="CHD", period_ms=250)
    yield v
    v.stop()


@pytest.fixture
def driver():
    webdriver = pytest.importorskip("selenium.webdriver", reason="the browser test needs Selenium")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary = next((b for b in CHROMIUM if pathlib.Path(b).exists()), None) or shutil.which("chromium")
    if binary is None:
        pytest.skip("no Chromium (/usr/bin/chromium)")
    if not pathlib.Path(CHROMEDRIVER).exists():
        pytest.skip(f"no chromedriver at {CHROMEDRIVER}")
    with tempfile.TemporaryDirectory(prefix="xstructure-chromium-") as profile:
        opts = Options()
        opts.binary_location = binary
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--disable-default-apps", "--disable-extensions", f"--user-data-dir={profile}",
                    "--window-size=1600,1100"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        try:
            d.set_page_load_timeout(30)
            d.set_script_timeout(10)
            yield d
        finally:
            d.quit()


def _wait(driver, ok, seconds: float):
    """READ until ``ok(value)`` holds; the last value either way."""
    deadline = time.monotonic() + seconds
    while True:
        value = driver.execute_script(READ)
        if (value is not None and ok(value)) or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def test_the_page_updates_and_loads_everything_from_this_machine(view, driver):
    t_start = time.monotonic()
    driver.get(view.url)
    first = _wait(driver, lambda v: v["received"] and v["filled"] and v["dsm"], 30)
    assert first is not None, "BokehJS never made a document (did bokeh.min.js load?)"
    assert first["received"] and first["filled"], f"the plots never filled: {first}"
    assert first["dsm"] == NPT, f"ΔsM missing: {first}"
    # no model: no atoms, the structure panel says why, the header says "no model"
    assert first["atoms"] == 0 and first["no_structure"] is True, f"the structure panel without a model: {first}"
    assert "no model" in first["header"], first["header"]
    later = _wait(driver, lambda v: v["filled"] > first["filled"] and v["points"] > first["points"], 15)
    assert later["received"] > first["received"], "the frame count did not grow while frames flowed"
    assert later["points"] > first["points"], "the rates plot did not grow"
    assert later["filled"] > first["filled"], f"no new delay rows in ΔI/I(q, t): {first['filled']} → {later['filled']}"
    assert "received" in later["counts"] and "latency" in later["counts"]

    urls = driver.execute_script("return [location.href].concat("
                                 "performance.getEntriesByType('resource').map(e => e.name));")
    assert any("/static/js/bokeh" in u for u in urls), f"BokehJS not served by the view: {urls}"
    foreign = [u for u in urls if urlsplit(u).hostname not in LOCAL]
    assert not foreign, f"the page loaded resources from elsewhere: {foreign}"

    errors = [e["message"] for e in driver.get_log("browser")
              if e["level"] == "SEVERE" and "favicon" not in e["message"]]
    assert not errors, f"the browser logged errors: {errors}"
    assert time.monotonic() - t_start < 50


def test_the_served_page_names_no_other_host(view):
    text = urllib.request.urlopen(view.url, timeout=20).read().decode()
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text)
    assert any("/static/js/bokeh" in r for r in refs)
    assert all(urlsplit(r).hostname in LOCAL | {None} for r in refs), refs
    assert "cdn.bokeh.org" not in text


def test_a_port_in_use_is_a_one_line_oserror(pipeline, view):
    with pytest.raises(OSError, match=rf"port {view.port} on 127\.0\.0\.1 is in use") as e:
        serve_view(pipeline, port=view.port)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"port": -1}, ValueError, "port must be"),
    ({"period_ms": 10}, ValueError, "period_ms must"),
    ({"probe": "neutron"}, ValueError, "probe must"),
    ({"onset_q_range": (3.0, 1.0)}, ValueError, "onset_q_range"),
])
def test_bad_arguments_are_one_line_errors(pipeline, kwargs, error, match):
    with pytest.raises(error, match=match):
        serve_view(pipeline, **kwargs)


def test_a_state_without_snapshot_is_a_type_error():
    with pytest.raises(TypeError, match="snapshot"):
        serve_view(object(), port=0)
