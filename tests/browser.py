"""Headless Chromium for the page tests (Debian's chromium + chromium-driver, driven by Selenium),
and drawing boxes on the serve page's canvas as a user drags them."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def chrome(window: str = "1300,1100"):
    """A headless Chromium driver (a generator for a fixture: yields it, then quits); skips the
    test with a message where Chromium or its driver is not installed."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs Debian's packages)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={window}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()


def draw_boxes(browser, boxes: dict, voxels: int = 64) -> None:
    """Drag each box {sequence: [(slice, x0, y0, x1, y1), ...]} on the page's canvas: the sequence's
    tab, the slice by the slider's keys, a pointer drag from voxel (x0, y0) to (x1, y1)."""
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    canvas, slider = browser.find_element(By.ID, "canvas"), browser.find_element(By.ID, "slice")
    for seq, rows in boxes.items():
        browser.find_element(By.ID, f"tab-{seq}").click()
        for z, x0, y0, x1, y1 in rows:
            slider.send_keys(Keys.HOME)
            slider.send_keys(Keys.ARROW_RIGHT * z)
            left, top, width, height = browser.execute_script(
                "arguments[0].scrollIntoView({block: 'center'}); const r = arguments[0].getBoundingClientRect();"
                "return [r.left, r.top, r.width, r.height];", canvas)

            def at(x, y):  # the centre of voxel (x, y) in the page's coordinates
                return int(left + (x + 0.5) * width / voxels), int(top + (y + 0.5) * height / voxels)

            drag = ActionBuilder(browser)
            drag.pointer_action.move_to_location(*at(x0, y0))
            drag.pointer_action.pointer_down()
            drag.pointer_action.move_to_location(*at(x1, y1))
            drag.pointer_action.pointer_up()
            drag.perform()
