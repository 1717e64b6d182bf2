"""The status page in a real browser: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver (both from apt; `make install` adds them where apt can). The page loads
with no console errors, lists the gateway's chutes, shows an engine's restart, and its
playground streams a reply from the tiny vLLM model."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import API_KEY, MODEL, SIDE
from tests.support.servers import ROOT, Served, chutebox_serve, engine_pids

pytestmark = [pytest.mark.engine, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
# Set to a path to keep a screenshot of the page (README's comes from this test).
SCREENSHOT = os.environ.get("CHUTEBOX_SCREENSHOT")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or DRIVER is None:
        pytest.skip("needs chromium and chromedriver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    for flag in [*flags, "--window-size=1280,1000"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # the DOM is being redrawn under us; look again
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


def card_text(driver: Any, chute: str) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.CSS_SELECTOR, f'article[data-chute="{chute}"]').text)


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_the_status_page_lists_chutes_streams_a_reply_and_shows_a_restart(
    browser: Any, vllm_gateway: Served
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    driver.get(vllm_gateway.base_url + "/")
    wait_until(lambda: card_text(driver, MODEL) and card_text(driver, SIDE), 20, "both chutes")
    assert "Public view" in driver.find_element(By.ID, "key-note").text
    assert "routes" not in card_text(driver, MODEL)  # nothing but names and states yet

    driver.find_element(By.ID, "key").send_keys(API_KEY)
    driver.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
    wait_until(lambda: "/v1/chat/completions" in card_text(driver, MODEL), 20, "the full view")
    assert "prefix · 0 affinity hits" in card_text(driver, MODEL)  # one replica: by load
    assert API_KEY not in driver.page_source and API_KEY not in driver.current_url

    models = Select(driver.find_element(By.ID, "chat-model"))
    wait_until(lambda: MODEL in [o.text for o in models.options], 10, "the chat model offered")
    models.select_by_value(MODEL)
    prompt = driver.find_element(By.ID, "chat-input")
    prompt.clear()
    prompt.send_keys("Hello, who are you?")
    driver.find_element(By.ID, "chat-send").click()
    state = driver.find_element(By.ID, "chat-state")
    wait_until(lambda: state.text == "done" or state.text.startswith("error"), 120, "a reply")
    assert state.text == "done" and driver.find_element(By.ID, "chat-output").text.strip()
    streamed = "TTFT p50 –"  # shown until a stream's first token was timed
    wait_until(lambda: streamed not in card_text(driver, MODEL), 10, "the stream in the traffic")
    # The usage panel draws the reply's tokens, by key name (never the key) and chute.
    usage = driver.find_element(By.ID, "usage")
    wait_until(lambda: usage.is_displayed(), 10, "the usage panel")
    rows = [r.text.split() for r in driver.find_elements(By.CSS_SELECTOR, "#usage-table tr")]
    assert any(r[:2] == ["api-key-1", MODEL] and int(r[2]) >= 1 for r in rows), rows
    assert driver.find_elements(By.CSS_SELECTOR, "#usage-chart polyline")

    # The fake engine behind `side` dies; the supervisor restarts it, and the page shows it.
    side = [
        pid
        for pid in engine_pids(vllm_gateway)
        if b"engines.fake" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(side) == 1
    status = httpx.get(vllm_gateway.base_url + "/status", headers={"X-API-Key": API_KEY}).json()
    before = next(c for c in status["chutes"] if c["name"] == SIDE)["replicas"][0]["restarts"]
    os.kill(side[0], signal.SIGKILL)
    shown = f"restarts {before + 1}"
    wait_until(lambda: shown in card_text(driver, SIDE), 60, "the restart on the page")
    side_state = f'article[data-chute="{SIDE}"] .state'
    wait_until(
        lambda: driver.find_element(By.CSS_SELECTOR, side_state).text == "ready", 60, "ready again"
    )
    if SCREENSHOT:
        driver.set_window_size(1280, 1500)
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(SCREENSHOT)
    assert console_errors(driver) == []


def test_the_page_fits_a_phone_and_labels_its_controls(browser: Any, vllm_gateway: Served) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.set_window_size(390, 844)
    driver.get(vllm_gateway.base_url + "/")
    wait_until(lambda: card_text(driver, MODEL), 20, "the chutes")
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth"
    )
    assert overflow <= 0
    for control in driver.find_elements(By.CSS_SELECTOR, "input, select, textarea"):
        name = control.get_attribute("id")
        labelled = driver.find_elements(By.CSS_SELECTOR, f'label[for="{name}"]')
        assert labelled or control.get_attribute("aria-label"), name
    assert console_errors(driver) == []


SDK_PYTHON = ROOT / ".venv-chutes" / "bin" / "python"


@pytest.mark.serve
@pytest.mark.skipif(not SDK_PYTHON.exists(), reason="make install creates .venv-chutes")
def test_the_playground_calls_a_custom_chutes_cords_from_their_schemas(
    browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    chutes = ROOT / "tests" / "support" / "chutes"
    args = ["toolbox:chute", "--python", str(SDK_PYTHON), "--api-key", "page-key"]
    with chutebox_serve(args, tmp_path / "gw.log", cwd=chutes) as served:
        browser.get(served.base_url + "/")
        browser.find_element(By.ID, "key").send_keys("page-key")
        browser.find_element(By.CSS_SELECTOR, "#key-form button[type=submit]").click()
        choice = wait_until(lambda: browser.find_element(By.ID, "cord-choice"), 20, "cords")
        wait_until(lambda: "/chutes/toolbox/echo" in card_text(browser, "toolbox"), 20, "cords")
        Select(choice).select_by_value("POST /chutes/toolbox/echo")
        text = wait_until(lambda: browser.find_element(By.ID, "cord-field-text"), 10, "a field")
        text.send_keys("sea")
        browser.find_element(By.ID, "cord-send").click()
        output = browser.find_element(By.ID, "cord-output")
        wait_until(lambda: '"text": "sea"' in output.text, 20, "the echo's JSON")
        Select(browser.find_element(By.ID, "cord-choice")).select_by_value(
            "POST /chutes/toolbox/square"
        )
        browser.find_element(By.ID, "cord-send").click()
        image = browser.find_element(By.ID, "cord-image")
        wait_until(lambda: image.is_displayed() and image.get_attribute("naturalWidth") == "8",
                   20, "the cord's PNG shown")  # fmt: skip
        if SCREENSHOT:
            browser.save_screenshot(SCREENSHOT)
        assert console_errors(browser) == []
