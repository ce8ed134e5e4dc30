"""The console in a real headless browser: Debian's Chromium driven by Selenium through
chromedriver (`.ci/run` installs both). Logs in with the keyboard, opens an agent, edits a block,
sees the change, and screenshots the agent page.

`CONSOLE_SCREENSHOTS=docs/images` also saves one screenshot of each page there (what
docs/console.md shows), palette-compressed to stay small.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import Console
from tests.console.world import TOKEN

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--force-device-scale-factor=1",
    "--window-size=1100,1300",
]


def _require_browser() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if not missing:
        return
    reason = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (.ci/run does)"
    if os.environ.get("CI"):
        pytest.fail(reason)  # CI installs them: a missing browser there is a broken setup, not a skip
    pytest.skip(reason)


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to see CSP violations
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, path: Path) -> None:
    """The whole page (the window grown to its height, within reason)."""
    height = min(int(driver.execute_script("return document.documentElement.scrollHeight")), 4_000)
    driver.set_window_size(1100, max(height, 700))
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(path))
    driver.set_window_size(1100, 1300)


def save_for_docs(source: Path, name: str) -> None:
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    if not folder:
        return
    from PIL import Image

    target = Path(folder) / f"console-{name}.png"
    with Image.open(source) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(target, optimize=True)


def browse(base: str, agent_name: str, folder: Path) -> dict[str, str]:
    """The operator's visit, synchronously (Selenium); returns what the test checks."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.wait import WebDriverWait

    def arrive(part: str) -> None:
        """Wait for the navigation a click or a submit started (no sleeping: polls the URL)."""
        WebDriverWait(driver, 10).until(lambda d: part in d.current_url)

    seen: dict[str, str] = {}
    with chromium(folder / "profile") as driver:
        driver.get(base + "/console/agents")
        assert driver.current_url.endswith("/console/login")
        shot = folder / "login.png"
        screenshot(driver, shot)
        save_for_docs(shot, "login")
        field = driver.find_element(By.ID, "token")
        assert driver.switch_to.active_element == field  # autofocus: type at once
        field.send_keys(TOKEN, Keys.ENTER)
        arrive("/console/agents")
        shot = folder / "agents.png"
        screenshot(driver, shot)
        save_for_docs(shot, "agents")
        driver.find_element(By.LINK_TEXT, agent_name).click()
        arrive("/console/agents/")
        seen["title"] = driver.title
        area = driver.find_element(By.CSS_SELECTOR, "form#block-human textarea")
        area.clear()
        area.send_keys("Ada looks after the greenhouse.\nGrace: Sunday shift\nLikes: basil")
        driver.find_element(By.CSS_SELECTOR, "form#block-human button[type=submit]").click()
        arrive("done=saved")
        seen["status"] = driver.find_element(By.CSS_SELECTOR, ".notice").text
        seen["human"] = driver.find_element(By.CSS_SELECTOR, "form#block-human textarea").get_attribute("value") or ""
        seen["chart"] = driver.find_element(By.CSS_SELECTOR, "svg.bar-chart").get_attribute("aria-labelledby") or ""
        shot = folder / "agent.png"
        screenshot(driver, shot)
        save_for_docs(shot, "agent")
        seen["agent_png"] = f"{shot.read_bytes()[:8]!r} {shot.stat().st_size}"
        for name in ("cost", "audit"):
            driver.find_element(By.LINK_TEXT, name.capitalize()).click()
            arrive(f"/console/{name}")
            seen[f"{name}_title"] = driver.title
            shot = folder / f"{name}.png"
            screenshot(driver, shot)
            save_for_docs(shot, name)
        seen["audit_text"] = driver.find_element(By.TAG_NAME, "main").text
        seen["console_errors"] = "\n".join(
            str(entry.get("message")) for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"
        )
    return seen


@pytest.mark.slow
async def test_an_operator_logs_in_edits_a_block_and_sees_it(console: Console, tmp_path: Path) -> None:
    _require_browser()
    agent = console.world.agents["discord:G1:channel:C1"]
    seen = await asyncio.to_thread(browse, console.base, agent.name, tmp_path)
    assert seen["title"].startswith(agent.name)
    assert seen["status"] == "Saved human."
    assert seen["human"] == "Ada looks after the greenhouse.\nGrace: Sunday shift\nLikes: basil"
    blocks = {b.label: b.value for b in await console.world.store.get_blocks(agent.id)}
    assert blocks["human"] == seen["human"]  # CRLF from the browser stored as plain newlines
    assert seen["chart"] == "ctx-title ctx-desc"
    assert seen["cost_title"].startswith("Cost, last 30 days")
    assert "edit_block" in seen["audit_text"] and "console operator" in seen["audit_text"]
    assert seen["console_errors"] == ""  # e.g. a CSP violation would show here
    header, size = seen["agent_png"].rsplit(" ", 1)
    assert header == repr(b"\x89PNG\r\n\x1a\n")
    assert int(size) > 10_000
