"""Merchandising rules made by staff in a real browser: the Django admin's form, and Oscar's dashboard.

Headless Chromium (as tests/test_browser.py starts it) logs in through each login page and fills
in the real forms. The admin runs in pytest-django's ``live_server`` on the suite's database,
products indexed by the fast colour extractor. Oscar's dashboard is the Oscar test shop served
by ``runserver`` (as tests/test_oscar_browser.py serves it) on a database of its own, its
products made by Oscar's models from sample catalog photos and left waiting for a worker (a
rule needs none). Each test then reads the rule's row from the database.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import pytest
from django.utils.http import urlencode

from tests.conftest import CATALOG_DIR, ids_of
from tests.processes import stop
from tests.test_browser import browser, run_manage, start_runserver, wait_until_serving  # noqa: F401
from tests.test_celery import CLOSED_PORT_URL

pytestmark = [pytest.mark.browser]

PASSWORD = "a long enough secret"
RULE_PERMISSIONS = ["view_rule", "add_rule", "change_rule"]


def press(browser, selector: str) -> None:
    """Click the element ``selector`` (CSS) and wait for the page it leads to (the element gone with the old page)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    element = browser.find_element(By.CSS_SELECTOR, selector)
    element.click()
    WebDriverWait(browser, 30).until(expected_conditions.staleness_of(element))


def log_in(browser, url: str, fields: dict[str, str], submit: str) -> None:
    """Fill in a login page's fields (by element id) and press its button (a CSS selector)."""
    from selenium.webdriver.common.by import By

    browser.get(url)
    for element_id, value in fields.items():
        browser.find_element(By.ID, element_id).send_keys(value)
    press(browser, submit)


def fill_rule_form(browser, kind: str, fields: dict[str, str]) -> None:
    """Choose the kind by its label and type each field (by name) in the rule form of the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element(By.NAME, "kind")).select_by_visible_text(kind)
    for name, value in fields.items():
        element = browser.find_element(By.NAME, name)
        element.clear()
        element.send_keys(value)


@pytest.mark.django_db(transaction=True)
def test_staff_add_a_pin_in_the_django_admin_and_see_it_listed(
    live_server, browser, fake_extractor, catalog_rows, make_catalog
):
    from django.contrib.auth.models import Permission, User
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from visual_recs.models import Rule

    shoes = make_catalog(ids_of(catalog_rows, gender="Men", product_type="Sports Shoes", count=3))
    staff = User.objects.create_user("merchandiser", password=PASSWORD, is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(content_type__app_label="visual_recs", codename__in=RULE_PERMISSIONS))

    login = {"id_username": "merchandiser", "id_password": PASSWORD}
    log_in(browser, f"{live_server.url}/admin/login/", login, "input[type=submit]")
    browser.get(f"{live_server.url}/admin/visual_recs/rule/add/")
    Select(browser.find_element(By.NAME, "content_type")).select_by_visible_text("product (products)")
    fill_rule_form(
        browser,
        "pin an item at a position",
        {"source_id": str(shoes[0].pk), "target_id": str(shoes[2].pk), "position": "2", "note": "New season"},
    )
    press(browser, "input[name=_save]")

    # The change list, with the rule's product and item by their titles.
    row = browser.find_element(By.CSS_SELECTOR, "#result_list tbody tr")
    assert row.find_element(By.CSS_SELECTOR, ".field-product").text == shoes[0].title
    assert row.find_element(By.CSS_SELECTOR, ".field-items").text == f"{shoes[2].title} at 2"
    assert "was added successfully" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    rule = Rule.objects.get()
    assert (rule.kind, rule.source_id, rule.target_id, rule.position, rule.note) == (
        "pin", str(shoes[0].pk), str(shoes[2].pk), 2, "New season"
    )


@pytest.fixture(scope="module")
def oscar_dashboard(tmp_path_factory, catalog_rows) -> Iterator[tuple[str, str, dict[str, int]]]:
    """The Oscar shop served on a free port with a staff member holding the rule permissions.

    Yields (base URL, the database's path, product pks by catalog id).
    """
    pytest.importorskip("oscar", reason="django-oscar is not installed: pip install -e '.[oscar]'")
    from tests.test_oscar_browser import shop_env

    workdir = tmp_path_factory.mktemp("oscar-rules")
    env = shop_env(workdir, CLOSED_PORT_URL)  # the products' indexing waits: nothing here needs it
    run_manage(env, "migrate", "--noinput", "-v", "0")
    sample = ids_of(catalog_rows, gender="Women", count=3)
    setup = (
        "import json; from django.contrib.auth.models import Permission, User; "
        "from tests.oscar_shop.catalogue import load_sample; "
        f"user = User.objects.create_user('merchandiser', 'merchandiser@example.com', {PASSWORD!r}, is_staff=True); "
        f"user.user_permissions.add(*Permission.objects.filter(content_type__app_label='visual_recs', codename__in={RULE_PERMISSIONS!r})); "
        f"print(json.dumps(load_sample({str(CATALOG_DIR)!r}, {sample!r})))"
    )
    pks = json.loads(run_manage(env, "shell", "-c", setup).strip().splitlines()[-1])
    log = workdir / "server.log"
    server, base_url = start_runserver(env, log)
    try:
        wait_until_serving(f"{base_url}/catalogue/", server, log)
        yield base_url, str(workdir / "shop.sqlite3"), pks
    finally:
        stop(server)


def test_staff_add_an_exclude_in_oscars_dashboard_and_see_it_listed(oscar_dashboard, browser, catalog_rows):
    from selenium.webdriver.common.by import By

    base_url, database, pks = oscar_dashboard
    source, target = (pks[pid] for pid in sorted(pks, key=int)[:2])
    titles = {pk: catalog_rows[pid]["ProductTitle"] for pid, pk in pks.items()}
    browser.delete_all_cookies()
    log_in(
        browser,
        f"{base_url}/accounts/login/",
        {"id_login-username": "merchandiser@example.com", "id_login-password": PASSWORD},
        "button[name=login_submit]",
    )
    # From the dashboard's visual similarity page, as staff find it.
    browser.get(f"{base_url}/dashboard/visual-recs/")
    press(browser, "#visual-recs-rules-link")
    press(browser, "#visual-recs-add-rule")
    assert browser.find_elements(By.NAME, "content_type") == []  # Oscar's products only: no model to choose
    fill_rule_form(browser, "exclude items", {"source_id": str(source), "target_id": str(target), "note": "Clashes"})
    press(browser, "#visual_recs_rule_form button[name=save]")

    assert browser.current_url == f"{base_url}/dashboard/visual-recs/rules/"
    [row] = browser.find_elements(By.CSS_SELECTOR, "table.visual-recs-rules tbody tr[data-rule-id]")
    cells = [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
    assert cells[:6] == ["exclude items", titles[source], titles[target], "this product only", "Yes", "Clashes"]
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT r.kind, r.source_id, r.target_id, r.note, t.app_label, t.model FROM visual_recs_rule r "
            "JOIN django_content_type t ON t.id = r.content_type_id"
        ).fetchall()
    assert rows == [("exclude", str(source), str(target), "Clashes", "catalogue", "product")]
    # The list narrowed to the product, as a link with ?product= shows it.
    browser.get(f"{base_url}/dashboard/visual-recs/rules/?{urlencode({'product': target})}")
    assert browser.find_elements(By.CSS_SELECTOR, "tr[data-rule-id]") == []
