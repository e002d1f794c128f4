"""The page in a real browser: Debian's chromium (headless) through Selenium, a real uvicorn on a
free 127.0.0.1 port and real core processes. A draft run paints (the progress bar moves, the
live picture and the result appear, the download decodes at the right size); a second run is
cancelled from the page and its core is gone within a second."""

from __future__ import annotations

import json
import time
import urllib.request

import psutil
import pytest
from PIL import Image

from tests.conftest import picture, stripes
from tests.web.browser import browser_available, chrome  # noqa: F401 - a fixture
from tests.web.server import running_server
from tests.worker_client import needs_weights

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("browser_available")]
pytest.importorskip("selenium")
pytest.importorskip("uvicorn")


def wait(predicate, timeout=60, step=0.05, what="the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def set_value(driver, element_id: str, value: str) -> None:
    element = driver.find_element("id", element_id)
    if element.tag_name == "select":
        from selenium.webdriver.support.ui import Select

        Select(element).select_by_value(value)
    else:
        element.clear()
        element.send_keys(value)


def job_state(url: str, driver) -> dict:
    job_id = driver.execute_script("return sessionStorage.getItem('nst-job')")
    if not job_id:  # not submitted yet (the page keeps its job's id while it runs)
        error = driver.find_element("id", "error")
        assert not error.is_displayed(), error.text
        return {"progress": {}}
    with urllib.request.urlopen(f"{url}/api/jobs/{job_id}") as r:
        return json.load(r)


@pytest.mark.slow
@needs_weights
def test_paint_download_and_cancel_in_chromium(tmp_path):
    content, style = tmp_path / "photo.png", tmp_path / "style.png"
    picture(64, 48).save(content)
    stripes().save(style)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with running_server() as (url, _app):
        driver = chrome(str(downloads))
        try:
            driver.get(url + "/")
            wait(lambda: driver.execute_script("return document.body.dataset.ready"))
            driver.find_element("id", "content-input").send_keys(str(content))
            driver.find_element("id", "style-input").send_keys(str(style))
            set_value(driver, "opt-preset", "draft")
            set_value(driver, "opt-size", "64")
            driver.find_element("css selector", "#options-more summary").click()
            set_value(driver, "opt-precision", "fp32")
            # Enough iterations that the live picture (sent every 5) is on screen for a while.
            set_value(driver, "opt-iterations", "30")
            driver.find_element("id", "start").click()

            # The progress bar moves and the picture being painted shows, then the result.
            seen, live_seen = set(), False
            download = driver.find_element("id", "download")

            def finished():
                nonlocal live_seen
                seen.add(float(driver.find_element("id", "progress").get_attribute("value")))
                src = driver.find_element("id", "live-image").get_attribute("src") or ""
                live_seen |= "/image?n=" in src
                error = driver.find_element("id", "error")
                assert not error.is_displayed(), error.text
                return download.is_displayed()

            wait(finished, timeout=90, what="the result")
            assert any(0 < v < 1 for v in seen), seen
            assert live_seen, "no live picture was shown"
            assert driver.find_element("id", "status").text == "Done"
            shown = driver.find_element("id", "live-image")
            wait(lambda: driver.execute_script("return arguments[0].complete && "
                                               "arguments[0].naturalWidth", shown) == 64,
                 timeout=5, what="the result's picture")

            download.click()
            path = downloads / "photo-styled.png"
            wait(lambda: path.exists() and not list(downloads.glob("*.crdownload")),
                 timeout=20, what="the download")
            with Image.open(path) as result:
                result.load()
                assert result.size == (64, 48) and result.mode == "RGB"

            # A long run, cancelled from the page: its core is gone within a second.
            set_value(driver, "opt-iterations", "5000")
            driver.find_element("id", "live").click()  # no live picture
            driver.find_element("id", "start").click()
            state = wait(lambda: (s := job_state(url, driver))["progress"].get("phase")
                         == "stylizing" and s, timeout=60, what="the second run to paint")
            pid = state["pid"]
            assert pid and psutil.pid_exists(pid)
            t0 = time.monotonic()
            driver.find_element("id", "cancel").click()

            def gone():
                try:
                    return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
                except psutil.NoSuchProcess:
                    return True

            wait(gone, timeout=1.0, step=0.02, what="the core to exit")
            assert time.monotonic() - t0 < 1.0
            wait(lambda: driver.find_element("id", "status").text == "Cancelled", timeout=5)
            assert not driver.find_element("id", "download").is_displayed()
        finally:
            driver.quit()


def test_page_takes_the_token_from_its_address(tmp_path):
    """A shared server: the page opened at /#token=... trades it for its cookie, drops it from
    the address bar, and its API calls (events, downloads) then work; without it, it asks."""
    token = "studio-token-0123456789"
    with running_server(host="0.0.0.0", token=token) as (url, _app):
        driver = chrome(str(tmp_path))
        try:
            probe = ("const done = arguments[arguments.length - 1];"
                     "fetch('/api/jobs/nope').then(r => done(r.status))")
            driver.get(url + "/")
            wait(lambda: driver.execute_script("return document.body.dataset.ready"))
            assert driver.execute_async_script(probe) == 401
            assert driver.find_element("id", "token-box").is_displayed()
            driver.get(url + f"/#token={token}")
            wait(lambda: "token" not in driver.current_url
                 and not driver.find_element("id", "token-box").is_displayed(),
                 timeout=10, what="the token used")
            assert driver.execute_async_script(probe) == 404  # authorised: no such job
        finally:
            driver.quit()
