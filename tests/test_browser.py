"""The demo shop in a real browser: headless Chromium, driven by Selenium, against the demo server.

The server is the demo's own (``manage.py runserver`` with demo_shop.settings, DEBUG on so it
serves the photos), on a database and media of its own, with a small catalog imported by
``visual_recs_import_catalog --index`` and indexed with the real ResNet50. Chromium and
chromedriver come from Debian packages; Selenium Manager is told to stay offline.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.catalog_files import write_catalog_csv
from tests.conftest import CATALOG_DIR, ids_of
from tests.processes import stop

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",  # screenshots without a scrollbar
)
SHOE = "13683"  # the article's example: ADIDAS Men Adi Quest Blue Sports Shoes
DESKTOP = (1100, 900)
PHONE = (390, 844)
SCREENSHOT = REPO / "var" / "screenshots" / f"product-{SHOE}.png"
README_IMAGE = REPO / "docs" / "product-page.png"
README_IMAGE_MAX_BYTES = 300 * 1024


def run_manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    if result.returncode != 0:
        pytest.fail(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the demo server exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            pass  # not listening yet
        time.sleep(0.25)
    pytest.fail(f"the demo server did not answer {url} within {timeout}s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def small_catalog(catalog_rows) -> list[dict[str, str]]:
    """The shoe, other men's shoes of both kinds, and some of every other gender (31 products)."""
    men = {SHOE, *ids_of(catalog_rows, gender="Men", product_type="Sports Shoes", count=6)}
    men |= set(ids_of(catalog_rows, gender="Men", product_type="Casual Shoes", count=6))
    others = [pid for gender in ("Women", "Girls", "Boys") for pid in ids_of(catalog_rows, gender=gender, count=6)]
    return [catalog_rows[pid] for pid in sorted(men, key=int) + others]


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory, small_catalog, resnet_weights) -> Iterator[str]:
    """The demo shop served by ``runserver`` on a free port; yields its base URL."""
    workdir = tmp_path_factory.mktemp("demo")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_shop.settings",
        "DATABASE_URL": f"sqlite:///{workdir / 'demo.sqlite3'}",
        "MEDIA_ROOT": str(workdir / "media"),
        "CELERY_BROKER_URL": "",  # eager tasks, as in `make demo`
        "DJANGO_DEBUG": "1",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    csv_path = write_catalog_csv(workdir / "fashion.csv", small_catalog)
    run_manage(env, "migrate", "--noinput", "-v", "0")
    output = run_manage(
        env, "visual_recs_import_catalog", "--csv", str(csv_path), "--images", str(CATALOG_DIR / "images"), "--index"
    )
    count = len(small_catalog)
    assert f"{count} rows: {count} created" in output and f"products: {count} indexed" in output, output

    log = workdir / "server.log"
    server, base_url = start_runserver(env, log)
    try:
        wait_until_serving(f"{base_url}/", server, log)
        yield base_url
    finally:
        stop(server)


def start_runserver(env: dict[str, str], log: Path) -> tuple[subprocess.Popen, str]:
    """``manage.py runserver`` with ``env`` on a free port, its output in ``log``; returns it and its base URL."""
    port = free_port()
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    return server, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    # Both paths are given and SE_OFFLINE is set: Selenium Manager must not fetch a browser or driver.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SE_OFFLINE", "true")
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    set_viewport(driver, *DESKTOP)
    try:
        yield driver
    finally:
        driver.quit()


def set_viewport(driver, width: int, height: int, *, mobile: bool = False) -> None:
    """Give the page ``width`` x ``height`` CSS pixels, exactly (a window size includes the browser's frame)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
    )


def images_loaded(driver, images) -> bool:
    return driver.execute_script("return arguments[0].every(img => img.complete && img.naturalWidth > 0)", images)


def save_readme_image(screenshot: Path, target: Path) -> None:
    """The screenshot as a 256-colour PNG: small enough to commit, sharp enough for text."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(screenshot) as image:
        image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


def test_product_page_shows_five_similar_mens_items_with_their_photos(demo_server, browser, small_catalog):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    gender = {row["ProductId"]: row["Gender"] for row in small_catalog}
    set_viewport(browser, *DESKTOP)
    browser.get(f"{demo_server}/products/{SHOE}/")

    assert browser.find_element(By.TAG_NAME, "h1").text == "ADIDAS Men Adi Quest Blue Sports Shoes"
    cards = browser.find_elements(By.CSS_SELECTOR, "section.similar li[data-object-id]")
    ids = [card.get_attribute("data-object-id") for card in cards]
    assert len(ids) == 5 and SHOE not in ids
    assert [gender[pid] for pid in ids] == ["Men"] * 5
    photos = [card.find_element(By.TAG_NAME, "img") for card in cards]
    photos.append(browser.find_element(By.CSS_SELECTOR, ".product-photo img"))
    browser.execute_script("arguments[0].scrollIntoView({block: 'end'})", cards[-1])  # lazy images load in view
    WebDriverWait(browser, 20).until(lambda driver: images_loaded(driver, photos))
    for card in cards:  # each card leads to that product's page
        link = card.find_element(By.TAG_NAME, "a").get_attribute("href")
        assert link == f"{demo_server}/products/{card.get_attribute('data-object-id')}/"

    browser.execute_script("window.scrollTo(0, 0)")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    if os.environ.get("UPDATE_README_SCREENSHOT") == "1":
        # Only on request: the committed picture should not change with every test run.
        save_readme_image(SCREENSHOT, README_IMAGE)
        assert README_IMAGE.stat().st_size < README_IMAGE_MAX_BYTES


def test_search_by_photo_ranks_the_same_product_first(demo_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{demo_server}/search/")
    upload = browser.find_element(By.CSS_SELECTOR, "form.search-form input[type=file]")
    assert upload.get_attribute("accept") == "image/*"
    upload.send_keys(str(CATALOG_DIR / "images" / f"{SHOE}.jpg"))
    browser.find_element(By.CSS_SELECTOR, "form.search-form button[type=submit]").click()

    # The first search loads ResNet50 in the server process: seconds, not milliseconds.
    results = WebDriverWait(browser, 120).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, ".search-results li[data-product-id]")
    )
    assert results[0].get_attribute("data-product-id") == SHOE
    assert len(results) > 1

    not_a_photo = tmp_path / "notes.txt"
    not_a_photo.write_text("not a photo")
    browser.find_element(By.CSS_SELECTOR, "form.search-form input[type=file]").send_keys(str(not_a_photo))
    browser.find_element(By.CSS_SELECTOR, "form.search-form button[type=submit]").click()
    error = WebDriverWait(browser, 30).until(
        lambda driver: driver.find_elements(By.CSS_SELECTOR, ".errors[role=alert]")
    )
    assert "This photo cannot be used: not an image file" in error[0].text
    assert not browser.find_elements(By.CSS_SELECTOR, ".search-results")


@pytest.mark.parametrize("path", ["/", f"/products/{SHOE}/", "/search/"])
def test_pages_fit_a_phone_screen(demo_server, browser, path):
    set_viewport(browser, *PHONE, mobile=True)
    try:
        browser.get(f"{demo_server}{path}")
        assert browser.execute_script("return window.innerWidth") == PHONE[0]
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{path} scrolls sideways by {overflow}px on a phone"
    finally:
        set_viewport(browser, *DESKTOP)
