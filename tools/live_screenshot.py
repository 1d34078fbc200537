"""Screenshot of the live view during a simulated live session, taken with headless Chromium (for
docs/figures/live_view.png).

    python tools/live_screenshot.py docs/figures/live_view.png [--model DIR] [--width 1600 --height 1100 --wait 20]

It runs what ``xstructure live --simulate karabo --view PORT`` runs: a child process streams a simulated
CHD → Z-hexatriene pump-probe run (:class:`xstructure.live.SimulatedRun`) over the Karabo bridge protocol on
127.0.0.1, a :class:`xstructure.live.Pipeline` receives, integrates and reduces it (and with ``--model`` inverts
every shot to a structure), and :func:`xstructure.live.view.serve_view` serves the page with the reactant for
ΔsM and ΔPDF.  Headless Chromium opens it through chromedriver (no network needed), waits while frames flow and
saves the page as a PNG of exactly width × height CSS pixels.

The pieces are put together here rather than through :func:`xstructure.live.tasks.run_live`, whose ``molecule``
names both the model's molecule and the view's reactant: a model trained on CHD knows it as ``"C6H8"``, which is
not a structure the view can build.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import socket
import sys
import tempfile
import threading
import time

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
CHROMEDRIVER = "/usr/bin/chromedriver"


def chrome_options(user_data_dir: str, width: int = 1600, height: int = 1100):
    """Options for headless Chromium that never reaches the network."""
    from selenium.webdriver.chrome.options import Options

    opts = Options()
    binary = next((b for b in CHROMIUM if pathlib.Path(b).exists()), None) or shutil.which("chromium")
    if binary:
        opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
                f"--user-data-dir={user_data_dir}", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    return opts


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=pathlib.Path, help="the PNG to write")
    parser.add_argument("--model", type=pathlib.Path, default=None,
                        help="a trained 1-D model directory: invert every shot (default: no model)")
    parser.add_argument("--width", type=int, default=1600, help="page width, CSS pixels (default 1600)")
    parser.add_argument("--height", type=int, default=1100, help="page height, CSS pixels (default 1100)")
    parser.add_argument("--wait", type=float, default=20.0,
                        help="seconds between opening the page and the shot (default 20)")
    parser.add_argument("--shape", type=int, default=512, help="simulated detector side, pixels (default 512)")
    parser.add_argument("--rate", type=float, default=1000.0, help="frames per second sent (default 1000)")
    parser.add_argument("--no-molecule", action="store_true", help="serve without the molecule (ΔI/I only)")
    args = parser.parse_args(argv)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from xstructure.detector import Integrator
    from xstructure.experiment.running import edges_of
    from xstructure.live import Pipeline, SimulatedRun, open_source, parse_source, serve
    from xstructure.live.view import serve_view

    if not pathlib.Path(CHROMEDRIVER).exists():
        parser.error(f"chromedriver not found at {CHROMEDRIVER}")
    model = None
    if args.model is not None:
        from xstructure.learn import InversionModel

        model = InversionModel.load(str(args.model))
    run = SimulatedRun(shape=(args.shape, args.shape))
    url = f"karabo://127.0.0.1:{free_port()}"
    streamer = serve(run, "karabo", parse_source(url)[1], 10 ** 8, rate=args.rate, hold=True)
    view = thread = pipe = None
    try:
        source = open_source(url)
        source.open()
        source.wait_ready()
        try:
            pipe = Pipeline(source, Integrator(run.geometry, npt=500, polarization=0.99, error_model=None),
                            edges=edges_of(run.delays), model=model,
                            settings={"source": url, "simulated": "karabo"})
        except BaseException:
            source.close()
            raise
        view = serve_view(pipe, port=0, molecule=None if args.no_molecule else run.reactant, probe="xray")
        thread = threading.Thread(target=pipe.run, kwargs={"duration": args.wait + 300}, daemon=True)
        streamer.go()
        thread.start()
        with tempfile.TemporaryDirectory(prefix="xstructure-chromium-") as profile:
            driver = webdriver.Chrome(service=Service(CHROMEDRIVER),
                                      options=chrome_options(profile, args.width, args.height))
            try:
                driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                       {"width": args.width, "height": args.height, "deviceScaleFactor": 1,
                                        "mobile": False})
                driver.set_page_load_timeout(60)
                driver.get(view.url)
                time.sleep(args.wait)
                args.path.parent.mkdir(parents=True, exist_ok=True)
                if not driver.save_screenshot(str(args.path)):
                    parser.error(f"could not write {args.path}")
                view.stop()        # before the browser goes: a session whose page left logs every update it misses
            finally:
                driver.quit()
    finally:
        if thread is not None:
            pipe.stop()
            thread.join(timeout=30)
        elif pipe is not None:
            pipe.source.close()          # a pipeline that never ran has not closed its source
        if view is not None:
            view.stop()
        streamer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
