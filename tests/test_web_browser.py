"""The page in a real browser: headless Chromium driven by Selenium.

The test starts ``twistd -n guessgame``, opens the page, plays a whole
game through ``#line`` to ``Correct!`` and watches the leaderboard and
the round follow a TCP player's win without a reload.  It needs Debian's
``chromium`` and ``chromium-driver`` (``make test`` installs them where
it can) and never lets Selenium download anything.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import Daemon, play_to_win

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

#: Bound on every wait in the browser, in seconds.
WAIT = 20

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason=(
        f"the browser test needs Debian's chromium and chromium-driver ({CHROMIUM}, "
        f"{CHROMEDRIVER}); run 'make test' as root, or apt-get install chromium chromium-driver"
    ),
)


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A headless Chromium with a fresh profile, driven through /usr/bin/chromedriver."""
    # Selenium Manager must never fetch a browser or a driver.
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = Options()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.set_page_load_timeout(WAIT)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def text_of(driver: Any, element_id: str) -> str:
    """The visible text of the element with ``element_id``."""
    return str(driver.find_element(By.ID, element_id).text)


def replies(driver: Any) -> list[str]:
    """The server's lines in ``#transcript`` (what the player typed left out)."""
    elements = driver.find_elements(By.CSS_SELECTOR, "#transcript .ln:not(.you)")
    return [str(element.text) for element in elements]


def send_line(driver: Any, text: str) -> str:
    """Type ``text`` and Enter into ``#line``; the next server line in ``#transcript``."""
    before = len(replies(driver))
    field = driver.find_element(By.ID, "line")
    field.send_keys(text + Keys.ENTER)
    WebDriverWait(driver, WAIT).until(lambda d: len(replies(d)) > before)
    return replies(driver)[before]


def test_play_a_game_in_the_browser_and_follow_a_tcp_win(browser: Any, tmp_path: Path) -> None:
    """A whole game through #line to Correct!, then a TCP win shows live on the page."""
    with Daemon("--db", ":memory:") as daemon:
        url = f"http://127.0.0.1:{daemon.ports['web']}/"
        browser.get(url)
        wait = WebDriverWait(browser, WAIT)
        wait.until(lambda d: text_of(d, "round").isdigit() and text_of(d, "live") == "live")
        assert text_of(browser, "range") == "1-30"
        assert text_of(browser, "players") == "0"

        browser.find_element(By.ID, "join").click()
        wait.until(lambda d: len(replies(d)) >= 2)
        assert replies(browser)[:2] == [
            "You are now connected to the server!",
            "Pick a number between 1-30",
        ]
        wait.until(lambda d: text_of(d, "players") == "1")
        assert send_line(browser, "name webby") == "You are now known as webby."

        lo, hi, guesses = 1, 30, 0
        while True:
            guess = (lo + hi) // 2
            reply = send_line(browser, str(guess))
            guesses += 1
            if reply.startswith("Too low!"):
                lo = guess + 1
            elif reply.startswith("Too high!"):
                hi = guess - 1
            else:
                break
        plural = "guess" if guesses == 1 else "guesses"
        assert reply == f"Correct! The number was {guess}. You won in {guesses} {plural}!"
        wait.until(lambda d: d.find_element(By.ID, "ended").is_displayed())
        assert text_of(browser, "ended-text") == (
            f"You won! The number was {guess}, found in {guesses} {plural}."
        )
        assert browser.find_element(By.ID, "again").is_displayed()
        wait.until(lambda d: "webby" in text_of(d, "leaderboard"))
        browser.save_screenshot(str(tmp_path / "web-won.png"))

        round_before = text_of(browser, "round")
        player = daemon.player()
        player.send("name tcpwin")
        assert player.line() == "You are now known as tcpwin."
        play_to_win(player)
        wait.until(lambda d: "tcpwin" in text_of(d, "leaderboard"))
        wait.until(lambda d: text_of(d, "round") != round_before)
        assert int(text_of(browser, "round")) > int(round_before)
        assert "tcpwin found" in text_of(browser, "wins")
        # No reload happened: the page's own transcript is still there.
        assert reply in replies(browser)
        browser.save_screenshot(str(tmp_path / "web.png"))
        target = os.environ.get("GUESSGAME_SCREENSHOT")
        if target:
            shutil.copyfile(tmp_path / "web.png", target)

        # A phone-sized window: everything fits its width, nothing scrolls sideways.
        browser.set_window_size(390, 844)
        wait.until(lambda d: d.execute_script("return window.innerWidth") <= 500)
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        browser.save_screenshot(str(tmp_path / "web-phone.png"))
        browser.set_window_size(1280, 900)

        # Play again, be kicked; play again, see the server stop: both said plainly.
        browser.find_element(By.ID, "again").click()
        wait.until(lambda d: replies(d)[:1] == ["You are now connected to the server!"])
        wait.until(lambda d: not d.find_element(By.ID, "ended").is_displayed())
        wait.until(lambda d: len(replies(d)) >= 2)
        admin = daemon.admin()
        (entry, ok) = admin.command("who")
        assert ok == "OK 1 player" and entry.startswith("PLAYER ")
        assert admin.command(f"kick {entry.split()[1]}")[-1].startswith("OK kicked")
        wait.until(lambda d: d.find_element(By.ID, "ended").is_displayed())
        assert text_of(browser, "ended-text") == "The administrator removed you from the game."
        assert replies(browser)[-1] == "*** You have been removed by the administrator. Goodbye!"

        browser.find_element(By.ID, "again").click()
        wait.until(lambda d: replies(d)[:1] == ["You are now connected to the server!"])
        wait.until(lambda d: not d.find_element(By.ID, "ended").is_displayed())
        errors = [
            entry
            for entry in browser.get_log("browser")
            if entry.get("level") == "SEVERE" and "favicon" not in entry.get("message", "")
        ]
        assert errors == [], errors
        daemon.signal()
        wait.until(lambda d: d.find_element(By.ID, "ended").is_displayed())
        assert text_of(browser, "ended-text") == "The server is shutting down."
        assert daemon.wait() == 0
