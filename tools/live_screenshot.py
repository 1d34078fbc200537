"""Screenshot of the live view on the demo state, taken with headless Chromium (for docs/figures/live_view.png).

    python tools/live_screenshot.py docs/figures/live_view.png [--width 1600 --height 1100 --wait 16]

It plays a simulated CHD → hexatriene pump-probe scan (:class:`xstructure.live.demo.DemoState`), serves the
view on a free port of 127.0.0.1, opens it in headless Chromium through chromedriver (no network needed), waits
while the ΔI/I map fills in, and saves the page as a PNG of exactly width × height CSS pixels.
"""

from __future__ import annotations

import argparse
import pathlib
import shutil
import sys
import tempfile
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=pathlib.Path, help="the PNG to write")
    parser.add_argument("--width", type=int, default=1600, help="page width, CSS pixels (default 1600)")
    parser.add_argument("--height", type=int, default=1100, help="page height, CSS pixels (default 1100)")
    parser.add_argument("--wait", type=float, default=16.0, help="seconds of the scan before the shot (default 16)")
    parser.add_argument("--scan", type=float, default=24.0, help="seconds the whole demo scan takes (default 24)")
    parser.add_argument("--no-molecule", action="store_true", help="serve without --molecule (ΔI/I only)")
    parser.add_argument("--no-structure", action="store_true", help="a demo without an inverted structure")
    args = parser.parse_args(argv)

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from xstructure.live.demo import DemoState
    from xstructure.live.view import serve_view

    if not pathlib.Path(CHROMEDRIVER).exists():
        parser.error(f"chromedriver not found at {CHROMEDRIVER}")
    with DemoState(scan_seconds=args.scan, structure=not args.no_structure) as state:
        view = serve_view(state, port=0, molecule=None if args.no_molecule else "CHD", period_ms=400)
        try:
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
                finally:
                    driver.quit()
        finally:
            view.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
