"""Headless Chromium for the galleries: a screenshot of a page (`make demo`, docs/gallery.png) and the
browser the gallery tests drive.

Selenium 4 (the `dev` extra) drives Debian's `chromium` through its `chromium-driver`; the driver's path
is given explicitly, so Selenium Manager never downloads a browser or a driver. Pages are opened from
disk (file://): Chromium plays and seeks local clips, where Python's http.server, which ignores Range
requests, lets it play but not seek.

    python -m sama_cli.eval.browser PAGE.html OUT.png [WIDTHxHEIGHT]
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from sama_cli.io.artifacts import atomic_path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
DRIVER = "chromedriver"
INSTALL = "apt-get install chromium chromium-driver (Debian/Ubuntu) and pip install selenium"

# every <video> on screen has its first frame (HAVE_CURRENT_DATA) or failed
VIDEOS_ON_SCREEN_READY = """
const onScreen = v => { const r = v.getBoundingClientRect();
  return r.bottom > 0 && r.top < innerHeight && r.width > 0; };
return [...document.querySelectorAll('video')].filter(onScreen).every(v => v.readyState >= 2 || v.error);
"""


def find() -> tuple[str, str] | str:
    """(browser, driver) paths, or why there is none, with what to install."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"selenium is not installed ({INSTALL})"
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which(DRIVER)
    if browser is None or driver is None:
        return f"no {'chromium' if browser is None else 'chromedriver'} on PATH ({INSTALL})"
    return browser, driver


@contextlib.contextmanager
def headless(width: int = 1280, height: int = 900) -> Iterator:
    """A headless Chromium (a selenium WebDriver) with a `width` x `height` window; quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find()
    if isinstance(found, str):
        raise RuntimeError(found)
    browser, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--mute-audio",
                f"--window-size={width},{height}", "--hide-scrollbars",
                "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:  # the page's own area is width x height (the window size counts the browser's frame too)
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        yield driver
    finally:
        driver.quit()


def open_page(driver, page: Path) -> None:
    driver.get(Path(page).resolve().as_uri())


def wait_until(driver, script: str, timeout: float, message: str = "") -> None:
    """Wait (polling) until `script` returns true in the page; TimeoutException after `timeout` s."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(script), message)


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 900, timeout: float = 30.0) -> Path:
    """A PNG of the top of `page` once the videos on screen show their first frame; written atomically."""
    with headless(width, height) as driver:
        open_page(driver, page)
        wait_until(driver, "return document.readyState === 'complete'", timeout, "page did not load")
        wait_until(driver, VIDEOS_ON_SCREEN_READY, timeout, "videos on screen did not load")
        data = driver.get_screenshot_as_png()
    with atomic_path(png) as tmp:
        tmp.write_bytes(data)
    return png


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    size = [int(v) for v in args[2].split("x")] if len(args) == 3 else [1280, 900]
    found = find()
    if isinstance(found, str):
        print(f"no screenshot: {found}", file=sys.stderr)
        return 1
    print(screenshot(Path(args[0]), Path(args[1]), *size))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
