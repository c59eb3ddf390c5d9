"""The ward-chat page in headless Chromium: sent on node A's page, seen on node B's.

Two devices (tests/api_helpers.py), each with its own node, messenger and API
server serving examples/ward-chat/ at ``/``. Chromium (Debian's, driven by selenium
through Debian's chromedriver; tools/ensure_browser_deps.sh installs both) loads
B's page and waits until its event stream is live, then loads A's page in a second
window, types a message and clicks Send; the text must appear in B's page through
replication (memory transport) and B's SSE feed. Real time; every wait is bounded.
Skips, saying why, only when chromium or chromedriver is not installed.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from api_helpers import device_pair

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
PAGE = Path(__file__).resolve().parent.parent / "examples" / "ward-chat"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="chromium/chromedriver not installed (run tools/ensure_browser_deps.sh as root)")


def _driver(profile: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    assert CHROMIUM is not None
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}",
                 "--window-size=1000,700"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)


def _wait(driver: Any, condition: Callable[[Any], Any], seconds: float = 15) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(condition)


def _texts(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#messages li .text")]


async def test_message_typed_on_a_arrives_on_b_page(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    text = "Patient Zimmer 12: Visite 14 Uhr"
    async with device_pair(static_dir=PAGE) as p:
        profile = tempfile.mkdtemp(prefix="ward-chat-chromium-", dir=tmp_path)
        driver = await trio.to_thread.run_sync(_driver, profile)
        try:
            def open_b() -> None:
                driver.get(f"{p.b.url}/#token={p.b.api.token}&room={p.room.hex()}")
                _wait(driver, lambda d: d.find_element(By.ID, "live").text == "live")
                rooms = driver.find_elements(By.CSS_SELECTOR, "#rooms li")
                assert [r.get_attribute("data-room") for r in rooms] == [p.room.hex()]
                assert "token=" not in driver.current_url  # the fragment was removed

            def send_on_a() -> None:
                driver.switch_to.new_window("window")
                driver.get(f"{p.a.url}/#token={p.a.api.token}")
                _wait(driver, lambda d: d.find_element(By.ID, "compose-text").is_enabled())
                assert driver.find_element(By.ID, "room-title").text == "Station 3"
                driver.find_element(By.ID, "compose-text").send_keys(text)
                driver.find_element(By.ID, "compose-send").click()
                _wait(driver, lambda d: text in _texts(d))  # A's own page shows it (SSE)

            def seen_on_b() -> list[str]:
                driver.switch_to.window(driver.window_handles[0])
                _wait(driver, lambda d: text in _texts(d))
                driver.save_screenshot(str(tmp_path / "ward-chat-b.png"))
                return _texts(driver)

            with trio.fail_after(60):
                await trio.to_thread.run_sync(open_b)
                await trio.to_thread.run_sync(send_on_a)
                texts = await trio.to_thread.run_sync(seen_on_b)
            assert texts.count(text) == 1
            # and it really came through B's node: B's messenger holds it
            assert [m.content.text for m in p.b.messenger.messages(p.room)  # type: ignore
                    if m.content is not None] == [text]
        finally:
            await trio.to_thread.run_sync(driver.quit)
