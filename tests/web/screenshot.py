"""docs/web-page.png: the page in headless chromium while a real run paints.

    .venv/bin/python -m tests.web.screenshot [docs/web-page.png]

`nst demo`'s landscape as the content, the built-in "Night swirls" style, a draft at 384 px
with the live picture; the shot is taken while the run paints (the picture so far shown)."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from nst_core.demo import landscape
from tests.web.browser import chrome, ensure_browser
from tests.web.server import running_server


def main(out: str = "docs/web-page.png") -> int:
    reason = ensure_browser()
    if reason:
        print(f"cannot take the screenshot: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp, running_server() as (url, app):
        content = Path(tmp) / "landscape.png"
        landscape().save(content)
        driver = chrome(tmp, 1360, 960)
        try:
            driver.get(url + "/")
            deadline = time.monotonic() + 30
            while not driver.execute_script("return document.body.dataset.ready"):
                assert time.monotonic() < deadline, "the page did not load"
                time.sleep(0.1)
            driver.find_element("id", "content-input").send_keys(str(content))
            driver.find_element("css selector", "input[value=swirls-night] + img").click()
            from selenium.webdriver.support.ui import Select

            Select(driver.find_element("id", "opt-preset")).select_by_value("draft")
            size = driver.find_element("id", "opt-size")
            size.clear()
            size.send_keys("384")
            driver.find_element("id", "start").click()
            queue = app.state.queue
            deadline = time.monotonic() + 600
            while True:  # the run, part way, with the picture so far on screen
                assert time.monotonic() < deadline, "the run did not get far enough"
                jobs = list(queue.jobs.values())
                job = jobs[0] if jobs else None
                if job and job.status != "running" and job.status != "queued":
                    raise AssertionError(f"the run ended early: {job.status} {job.error}")
                if job and job.images and job.progress.get("phase") == "stylizing" \
                        and job.fraction > 0.45:
                    break
                time.sleep(0.1)
            time.sleep(0.4)  # the page's next event
            driver.save_screenshot(out)
            driver.find_element("id", "cancel").click()
        finally:
            driver.quit()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
