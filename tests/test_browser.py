"""The explorer page in a real browser: headless Chromium driven through ChromeDriver
(Debian's chromium and chromium-driver, which .ci/run installs)."""
import shutil
import threading

import pytest
from PIL import Image

from vaekit.server import Explorer, make_server
from vaekit.runs import prepare


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "the browser test needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(flag)
    b = webdriver.Chrome(service=Service(driver), options=options)
    yield b
    b.quit()


@pytest.fixture
def page(digits_run):
    _, dataset = prepare(digits_run.config)
    server = make_server(Explorer(digits_run.model, dataset), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_moving_a_slider_changes_the_image(browser, page, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(page)
    wait = WebDriverWait(browser, 20)
    wait.until(lambda b: (b.find_element(By.ID, "decoded").get_attribute("src") or "").startswith("data:image/png"))
    before = browser.find_element(By.ID, "decoded").get_attribute("src")
    sliders = browser.find_elements(By.CSS_SELECTOR, "#sliders input[type=range]")
    assert len(sliders) == 4  # all four units of this model, most active first
    ActionChains(browser).click_and_hold(sliders[0]).move_by_offset(90, 0).release().perform()
    wait.until(lambda b: b.find_element(By.ID, "decoded").get_attribute("src") != before)
    assert float(sliders[0].get_attribute("value")) > 0.5
    assert "decoded in" in browser.find_element(By.ID, "latency").text
    wait.until(lambda b: (b.find_element(By.ID, "interp-image").get_attribute("src") or "").startswith("data:image/png"))
    browser.save_screenshot(str(tmp_path / "explorer.png"))
    with Image.open(tmp_path / "explorer.png") as shot:
        assert shot.size[0] >= 1000
    errors = [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []  # no script errors, no failed requests


def test_class_names_in_the_legend_are_text_not_markup(browser, digits_run):
    """Class names are image-folder names, which anyone can choose: the legend shows them, it never runs them."""
    from dataclasses import replace

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from vaekit.models import build

    _, dataset = prepare(digits_run.config)
    trap = '<img src=x onerror="window.vaekitXss=1">'
    dataset.classes = [trap] + dataset.classes[1:]
    model = build(replace(digits_run.config.model, latent_dim=2)).eval()  # a 2-D code: the page draws the scatter and its legend
    server = make_server(Explorer(model, dataset), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
        legend = WebDriverWait(browser, 20).until(lambda b: b.find_element(By.ID, "legend").text and b.find_element(By.ID, "legend"))
        assert trap in legend.text  # shown as the name it is
        assert legend.find_elements(By.TAG_NAME, "img") == []
        assert browser.execute_script("return window.vaekitXss") is None
    finally:
        server.shutdown()
        server.server_close()
