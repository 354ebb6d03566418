"""The Oscar test shop in a real browser, indexed by a real Celery worker with the real ResNet50.

The shop (``tests.oscar_shop.settings``) gets a database and media of its own; its catalogue is
made with Oscar's models from sample catalog photos while the broker is unreachable (the
products wait, ``pending``), then ``visual_recs_reindex`` queues them for a worker on the local
Redis. Once every vector is ready, ``runserver`` serves Oscar's product page, whose "Visually
similar" strip (the documented include) must show Oscar product cards of the same gender, and
whose "Recommended items" (Oscar's own, from the copied ``ProductRecommendation`` rows) too.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator

import pytest

pytest.importorskip("oscar", reason="django-oscar is not installed: pip install -e '.[oscar]'")

from tests.conftest import CATALOG_DIR, ids_of  # noqa: E402
from tests.processes import stop, wait_for  # noqa: E402
from tests.test_browser import REPO, browser, images_loaded, run_manage, start_runserver, wait_until_serving  # noqa: E402,F401
from tests.test_celery import CLOSED_PORT_URL  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.celery_worker]

SHOE = "13683"  # ADIDAS Men Adi Quest Blue Sports Shoes
#: A Redis database of its own: other runs of the suite use 15.
BROKER_URL = "redis://127.0.0.1:6379/12"


@pytest.fixture(scope="module")
def sample(catalog_rows) -> list[str]:
    men = {SHOE, *ids_of(catalog_rows, gender="Men", product_type="Sports Shoes", count=5)}
    men |= set(ids_of(catalog_rows, gender="Men", product_type="Casual Shoes", count=3))
    others = [pid for gender in ("Women", "Girls") for pid in ids_of(catalog_rows, gender=gender, count=4)]
    return sorted(men, key=int) + others


def shop_env(workdir, broker: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.oscar_shop.settings",
        "DATABASE_URL": f"sqlite:///{workdir / 'shop.sqlite3'}",
        "VISUAL_RECS_TEST_MEDIA": str(workdir / "media"),
        "VISUAL_RECS_TEST_BROKER": broker,
        "VISUAL_RECS_EAGER": "0",
        "DJANGO_DEBUG": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }


def vector_counts(database) -> tuple[int, int]:
    """(vectors, vectors ready with their lists) in the shop's database."""
    with sqlite3.connect(database) as db:
        total, done = db.execute(
            "SELECT count(*), sum(status = 'ready' AND list_radius IS NOT NULL) FROM visual_recs_featurevector"
        ).fetchone()
    return total, done or 0


@pytest.fixture(scope="module")
def oscar_shop(tmp_path_factory, sample, resnet_weights) -> Iterator[tuple[str, dict[str, int]]]:
    """The shop served on a free port, its catalogue indexed by a real worker; yields (base URL, pks by catalog id)."""
    import redis

    workdir = tmp_path_factory.mktemp("oscar-shop")
    offline = shop_env(workdir, CLOSED_PORT_URL)  # saves cannot queue: the products wait for the reindex
    env = shop_env(workdir, BROKER_URL)
    run_manage(env, "migrate", "--noinput", "-v", "0")
    load = f"import json; from tests.oscar_shop.catalogue import load_sample; print(json.dumps(load_sample({str(CATALOG_DIR)!r}, {sample!r})))"
    pks = json.loads(run_manage(offline, "shell", "-c", load).strip().splitlines()[-1])
    assert vector_counts(workdir / "shop.sqlite3") == (len(sample), 0)  # marked pending, nothing indexed yet

    redis.Redis.from_url(BROKER_URL).flushdb()
    worker_log = (workdir / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery_app", "worker", "-Q", "visual_recs", "--pool", "solo",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--hostname", "visual-recs-oscar@%h"],
        cwd=REPO, env=env, stdout=worker_log, stderr=subprocess.STDOUT,
    )
    server = None
    try:
        output = run_manage(env, "visual_recs_reindex")
        assert f"products: queued {len(sample)} objects" in output, output
        wait_for(
            lambda: vector_counts(workdir / "shop.sqlite3") == (len(sample), len(sample)) or worker.poll() is not None,
            timeout=600, what="the worker to index the catalogue", interval=1,
        )
        assert worker.poll() is None, (workdir / "worker.log").read_text()
        server_log = workdir / "server.log"
        server, base_url = start_runserver(env, server_log)
        wait_until_serving(f"{base_url}/catalogue/", server, server_log)
        yield base_url, pks
    finally:
        if server is not None:
            stop(server)
        stop(worker)
        worker_log.close()


def test_an_oscar_product_page_shows_visually_similar_products(oscar_shop, browser, catalog_rows):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base_url, pks = oscar_shop
    catalog_id = {pk: pid for pid, pk in pks.items()}
    browser.get(f"{base_url}/catalogue/shoe_{pks[SHOE]}/")

    assert browser.find_element(By.TAG_NAME, "h1").text == catalog_rows[SHOE]["ProductTitle"]
    cards = browser.find_elements(By.CSS_SELECTOR, "section.visual-recs-similar li[data-object-id]")
    shown = [catalog_id[int(card.get_attribute("data-object-id"))] for card in cards]
    assert len(shown) == 4 and SHOE not in shown
    assert {catalog_rows[pid]["Gender"] for pid in shown} == {"Men"}
    # Oscar's own product cards (oscar/catalogue/partials/product.html), each with its photo and link.
    photos = [card.find_element(By.CSS_SELECTOR, "article.product_pod img") for card in cards]
    browser.execute_script("arguments[0].scrollIntoView({block: 'end'})", cards[-1])
    WebDriverWait(browser, 20).until(lambda driver: images_loaded(driver, photos))
    for card, pid in zip(cards, shown):
        link = card.find_element(By.CSS_SELECTOR, "article.product_pod h3 a").get_attribute("href")
        assert link.startswith(base_url) and link.rstrip("/").endswith(f"_{pks[pid]}")

    # The copied ProductRecommendation rows: Oscar's own "Recommended items", with no template change.
    headings = [h2.text for h2 in browser.find_elements(By.CSS_SELECTOR, ".sub-header h2")]
    assert "Visually similar" in headings and "Recommended items" in headings
