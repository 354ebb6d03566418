"""Events in a real browser: the demo's product page reports its strip's impressions and a click,
and a staff user reads them in the admin's performance report.

The demo server runs as in tests/test_browser.py (``manage.py runserver`` on a database of its
own), with tests/events_demo_settings.py: an A/B experiment, and the colour extractor so that
no network is loaded. Headless Chromium's "HeadlessChrome" user agent is not a bot's, so its
events count. The test waits for rows by polling the server's database, with a deadline.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.catalog_files import write_catalog_csv
from tests.conftest import CATALOG_DIR, ids_of
from tests.processes import stop, wait_for
from tests.test_browser import browser, run_manage, start_runserver, wait_until_serving  # noqa: F401  (browser: a fixture)

pytestmark = [pytest.mark.browser]

STAFF = ("merchandiser", "a-long-test-password-7")
STRIP = "section.similar li[data-visual-recs-event]"


@pytest.fixture(scope="module")
def shop(tmp_path_factory, catalog_rows) -> Iterator[tuple[str, Path]]:
    """The demo shop with a small catalog and a staff user who may view events; yields its URL and database file."""
    workdir = tmp_path_factory.mktemp("events-demo")
    database = workdir / "demo.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.events_demo_settings",
        "DATABASE_URL": f"sqlite:///{database}",
        "MEDIA_ROOT": str(workdir / "media"),
        "CELERY_BROKER_URL": "",
        "DJANGO_DEBUG": "1",  # runserver serves the app's static files (events.js)
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    }
    rows = [catalog_rows[pid] for pid in ids_of(catalog_rows, gender="Men", product_type="Sports Shoes", count=10)]
    csv_path = write_catalog_csv(workdir / "fashion.csv", rows)
    run_manage(env, "migrate", "--noinput", "-v", "0")
    run_manage(env, "visual_recs_import_catalog", "--csv", str(csv_path), "--images", str(CATALOG_DIR / "images"), "--index")
    run_manage(
        env, "shell", "-c",
        "from django.contrib.auth.models import Permission, User\n"
        f"user = User.objects.create_user({STAFF[0]!r}, password={STAFF[1]!r}, is_staff=True)\n"
        "user.user_permissions.add(Permission.objects.get(codename='view_event'))",
    )
    log = workdir / "server.log"
    server, base_url = start_runserver(env, log)
    try:
        wait_until_serving(f"{base_url}/", server, log)
        yield base_url, database
    finally:
        stop(server)


def rows(database: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
        return connection.execute(sql).fetchall()


def test_the_strip_reports_impressions_and_a_click_and_the_report_shows_them(shop, browser, catalog_rows):
    from selenium.webdriver.common.by import By

    base_url, database = shop
    product = ids_of(catalog_rows, gender="Men", product_type="Sports Shoes", count=10)[0]
    browser.get(f"{base_url}/products/{product}/")
    cards = browser.find_elements(By.CSS_SELECTOR, STRIP)
    assert len(cards) == 5
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", cards[0])

    def impressions():
        found = rows(
            database,
            "SELECT position, arm, experiment FROM visual_recs_event "
            f"WHERE kind = 'impression' AND source_id = '{product}' ORDER BY position",
        )
        return found if len(found) >= 5 else None

    seen = wait_for(impressions, timeout=30, what="the strip's impressions in the database")
    assert [position for position, _, _ in seen] == [1, 2, 3, 4, 5]  # each card once, one nonce per card
    (arm, experiment), = {(arm, experiment) for _, arm, experiment in seen}
    assert experiment == "browser-test" and arm in ("a", "b")  # the visitor cookie put the browser in an arm

    clicked = cards[1].get_attribute("data-object-id")
    cards[1].find_element(By.TAG_NAME, "a").click()  # the beacon goes; the link is followed at once
    click = wait_for(
        lambda: rows(database, "SELECT source_id, target_id, position FROM visual_recs_event WHERE kind = 'click'"),
        timeout=30, what="the click in the database",
    )
    assert click == [(product, clicked, 2)]
    assert browser.current_url == f"{base_url}/products/{clicked}/"

    browser.get(f"{base_url}/admin/login/?next=/admin/visual_recs/event/report/")
    browser.find_element(By.NAME, "username").send_keys(STAFF[0])
    browser.find_element(By.NAME, "password").send_keys(STAFF[1])
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "svg.visual-recs-chart"), timeout=30, what="the report's chart")
    positions = rows(database, "SELECT DISTINCT position FROM visual_recs_event ORDER BY position")
    bars = browser.find_elements(By.CSS_SELECTOR, "svg.visual-recs-chart rect.bar")
    assert len(bars) == len(positions) == 5
    assert float(bars[1].get_attribute("height")) > 0  # position 2 was clicked: its bar is the tallest
    assert float(bars[1].get_attribute("height")) == max(float(bar.get_attribute("height")) for bar in bars)
    arm_rows = browser.find_elements(By.CSS_SELECTOR, "table.ab-arms tbody tr")
    assert [row.find_element(By.TAG_NAME, "th").text for row in arm_rows] == [arm]
    impressions_cell = arm_rows[0].find_elements(By.TAG_NAME, "td")[0].text
    assert int(impressions_cell) == rows(database, "SELECT COUNT(*) FROM visual_recs_event WHERE kind = 'impression'")[0][0]
