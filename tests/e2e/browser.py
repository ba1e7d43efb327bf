"""Headless Chromium, driven by Selenium, for checking web pages in the end-to-end tests.

Only the system's Chromium and chromedriver are used: both paths are given to Selenium
explicitly, so Selenium Manager is never asked to find or download a browser or driver.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

REPO = Path(__file__).resolve().parents[2]
INSTALL_HINT = "install with `apt-get install chromium chromium-driver` and `pip install selenium`"

# Flags for a quiet, offline-friendly headless browser. Without the background-networking and
# component-update flags Chromium keeps trying to reach Google services at start-up, which a
# closed network refuses.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1600,1000",
)


def chromium_path() -> str | None:
    """Return the path of the Chromium executable, or None when it is not installed.

    Returns
    -------
    str or None
        ``/usr/bin/chromium`` if present, else whatever ``chromium`` resolves to on ``PATH``.
    """
    if Path("/usr/bin/chromium").is_file():
        return "/usr/bin/chromium"
    return shutil.which("chromium") or shutil.which("chromium-browser")


def chromedriver_path() -> str | None:
    """Return the path of chromedriver, or None when it is not installed.

    Returns
    -------
    str or None
        ``/usr/bin/chromedriver`` if present, else whatever ``chromedriver`` resolves to.
    """
    if Path("/usr/bin/chromedriver").is_file():
        return "/usr/bin/chromedriver"
    return shutil.which("chromedriver")


def chromium_unavailable_reason() -> str | None:
    """Say why a headless-Chromium check cannot run here, or None when it can.

    Returns
    -------
    str or None
        None when Chromium, chromedriver and Selenium are all available; otherwise a
        sentence naming what is missing and how to install it (for ``pytest.skip``).
    """
    missing = []
    if chromium_path() is None:
        missing.append("the Chromium browser (`chromium`)")
    if chromedriver_path() is None:
        missing.append("chromedriver (`chromium-driver`)")
    try:
        import selenium.webdriver  # noqa: F401
    except ImportError:
        missing.append("the Python package `selenium`")
    if not missing:
        return None
    return f"headless browser check needs {', '.join(missing)}; {INSTALL_HINT}"


@contextmanager
def headless_chromium(user_data_dir: Path) -> Iterator[WebDriver]:
    """Start headless Chromium under chromedriver and quit it afterwards.

    Parameters
    ----------
    user_data_dir : Path
        A new, empty folder for the browser profile (created if missing).

    Yields
    ------
    selenium.webdriver.remote.webdriver.WebDriver
        The driver of the running browser.

    Raises
    ------
    RuntimeError
        If Chromium, chromedriver or Selenium is missing.
    """
    reason = chromium_unavailable_reason()
    if reason is not None:
        raise RuntimeError(reason)
    # Selenium Manager is skipped when the driver path is given; this keeps it offline in any
    # case, should a later Selenium consult it anyway.
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    user_data_dir = Path(user_data_dir)
    user_data_dir.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium_path())
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    service = Service(
        executable_path=str(chromedriver_path()),
        log_output=str(user_data_dir.parent / f"{user_data_dir.name}-chromedriver.log"),
    )
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _body_text(driver: WebDriver) -> str:
    text = driver.execute_script("return document.body ? document.body.innerText : '';")
    return text or ""


def open_and_wait(
    driver: WebDriver,
    url: str,
    texts: Sequence[str],
    timeout: float = 60,
    screenshot: Path | None = None,
) -> str:
    """Load ``url`` and wait until every string in ``texts`` is shown on the page.

    Parameters
    ----------
    driver : WebDriver
        A running browser.
    url : str
        Page to open; single-page-app hash routes are fine.
    texts : Sequence of str
        Strings that must all appear in ``document.body.innerText``.
    timeout : float
        Seconds to wait for them.
    screenshot : Path or None
        Where to save a PNG of the page, on success and on failure alike.

    Returns
    -------
    str
        The page's body text once all ``texts`` are present.

    Raises
    ------
    AssertionError
        If some of ``texts`` did not appear within ``timeout``; lists them with the start of
        the page text.
    """
    driver.get(url)
    deadline = time.monotonic() + timeout
    while True:
        body = _body_text(driver)
        missing = [text for text in texts if text not in body]
        if not missing:
            break
        if time.monotonic() > deadline:
            saved = ""
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(screenshot))
                saved = f"\nscreenshot: {screenshot}"
            raise AssertionError(
                f"{url} did not show {missing} within {timeout:.0f} s; page text:\n"
                f"{body[:2000]}{saved}"
            )
        time.sleep(0.25)
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(screenshot))
    return body


def artifact_dir() -> Path:
    """Return the folder where tests save screenshots and similar artifacts.

    Returns
    -------
    Path
        ``$OMICS_ML_TEST_ARTIFACTS`` if set, else ``test-artifacts/`` in the repository;
        created if missing.
    """
    path = Path(os.environ.get("OMICS_ML_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path
