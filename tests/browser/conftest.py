"""Headless Chromium driven by selenium, for the console's tests; its network limited to this machine.

Debian's ``chromium`` and ``chromium-driver`` are used as they are
(``scripts/setup.sh`` installs them): their paths are given, so selenium
downloads nothing (its manager never runs). Every name but 127.0.0.1
resolves to nothing (``--host-resolver-rules``), so a page that tried to load
from another host would break, and the performance log
(``goog:loggingPrefs``) says which URLs a page asked for.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = REPO / "build" / "screenshots"
"""Where the tests put a screenshot of each view (git ignores build/)."""


@pytest.fixture(scope="session")
def chromium() -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the session (each test clears its cookies)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Debian's chromium and chromium-driver are not installed: run ./scripts/setup.sh (as root) first")
    os.environ["SE_OFFLINE"] = "true"  # selenium must not look anything up
    options = Options()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    if os.geteuid() == 0:
        options.add_argument("--no-sandbox")  # Chromium's sandbox does not run as root
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    options.add_experimental_option("perfLoggingPrefs", {"enableNetwork": True, "enablePage": True})
    options.set_capability("unhandledPromptBehavior", "ignore")  # an alert stays open, to be seen
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture
def browser(chromium: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    chromium.delete_all_cookies()
    chromium.get_log("performance")  # what earlier tests left
    yield chromium
    if chromium.current_url.startswith("http"):
        chromium.get("about:blank")  # closes the page's live stream before its salara stops
    chromium.delete_all_cookies()


def requested_urls(driver: webdriver.Chrome) -> list[str]:
    """The URLs the browser asked for since the log was last read (Network.requestWillBeSent)."""
    urls = []
    for entry in driver.get_log("performance"):
        message: dict[str, Any] = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def keep_curated(path: Path, target: Path) -> None:
    """Copy a screenshot to where the docs show it (run by hand: ``SALARA_CURATE_SCREENSHOT=1``)."""
    if os.environ.get("SALARA_CURATE_SCREENSHOT") == "1":
        shutil.copyfile(path, target)
