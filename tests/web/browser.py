"""Debian's chromium (headless) and chromedriver for the browser tests.

The fixture installs them as root with apt-get when they are missing (like tests/gimp3/chroot.py
does for debootstrap), and otherwise skips with the reason; with NST_REQUIRE_BROWSER=1 (CI) a
missing browser fails the test instead. Selenium is pointed at the binaries explicitly, so
Selenium Manager never downloads anything.
"""

from __future__ import annotations

import os

import pytest

from tests import apt

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PACKAGES = ("chromium", "chromium-driver")


def _installed() -> bool:
    return os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)


def ensure_browser() -> str | None:
    """None when chromium and chromedriver are there (installed now if need be), else why not."""
    return apt.ensure(PACKAGES, _installed)


def chrome(download_dir: str, width: int = 1280, height: int = 900):
    """A headless chromium driven by Selenium, its downloads going to download_dir."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {
        "download.default_directory": download_dir, "download.prompt_for_download": False,
        "safebrowsing.enabled": False})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": download_dir})
    return driver


@pytest.fixture(scope="session")
def browser_available():
    reason = ensure_browser()
    if reason:
        if os.environ.get("NST_REQUIRE_BROWSER") == "1":
            pytest.fail(f"NST_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
