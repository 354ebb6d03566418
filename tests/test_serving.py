"""The demo as deployed: gunicorn with demo_shop/gunicorn.conf.py behind nginx with deploy/nginx/visual_recs.conf.

Real processes on loopback (Debian's nginx: ``apt-get install -y nginx-light``), the demo's
settings on a SQLite database of the test's own, DEBUG off.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.common import REPO, Gunicorn, Nginx, SlowUpload, send
from tests.test_browser import browser  # noqa: F401  (the fixture)

# More clients trickling a 1 MiB body than gunicorn has threads in all (2 workers x 8): without
# a buffering front each would hold a thread, and the page below would wait behind them.
SLOW_CLIENTS = 20
PAGE_TIMEOUT = 30  # seconds; the old setup held pages until gunicorn's timeout killed the workers (120 s)
FLOOD = 40  # searches sent at once, four times the front's burst


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """The demo shop behind the front: (nginx, gunicorn); searches limited to 3 a minute per client."""
    workdir = tmp_path_factory.mktemp("serving")
    env = {
        "DATABASE_URL": f"sqlite:///{workdir / 'shop.sqlite3'}",
        "DJANGO_SETTINGS_MODULE": "bench.abuse_settings",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_DEBUG": "0",
        "DJANGO_NUM_PROXIES": "1",  # as compose sets it behind nginx
        "DJANGO_CACHE_URL": os.environ.get("VISUAL_RECS_TEST_SERVING_CACHE", "redis://127.0.0.1:6379/10"),
        "VISUAL_RECS_BENCH_SEARCH_RATE": "3/minute",
        "MEDIA_ROOT": str(workdir / "media"),
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, check=True, timeout=300)
    import redis

    redis.Redis.from_url(env["DJANGO_CACHE_URL"]).flushdb()
    server = Gunicorn(None, workdir / "gunicorn.log")
    nginx = Nginx(server.port, workdir / "nginx")
    try:
        server.wait_ready("/")
        nginx.wait_ready()
        yield nginx, server
    finally:
        nginx.stop()
        server.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def test_clients_trickling_bodies_do_not_hold_the_pages(front):
    nginx, server = front
    assert SLOW_CLIENTS > server.workers * server.threads
    slow = [SlowUpload(nginx.port, timeout=PAGE_TIMEOUT) for _ in range(SLOW_CLIENTS)]
    page = send(nginx.port, "GET", "/", timeout=PAGE_TIMEOUT)
    assert page.status == 200 and b"products" in page.body
    # Nothing lost: each slow upload, once whole, reaches Django and is answered (the catalog page).
    assert [upload.finish() for upload in slow] == ["200"] * SLOW_CLIENTS


def test_a_body_over_the_upload_limit_is_refused_by_the_front(front):
    nginx, _ = front
    too_large = b"x" * (20544 * 1024 + 1)  # client_max_body_size 20544k, and a byte
    answer = send(nginx.port, "POST", "/search/", too_large, {"Content-Type": "application/octet-stream"})
    assert answer.status == 413


def test_the_search_throttle_counts_the_client_behind_the_front_not_its_headers(front):
    nginx, _ = front
    boundary = secrets.token_hex(8)
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="limit"\r\n\r\n3\r\n--{boundary}--\r\n'.encode()
    statuses = []
    for n in range(5):
        claimed = f"203.0.113.{n + 1}"  # each request claims another client; nginx overwrites the claim
        answer = send(
            nginx.port, "POST", "/api/visual-recs/products/search/", body,
            {"Content-Type": f"multipart/form-data; boundary={boundary}", "X-Forwarded-For": claimed},
        )  # fmt: skip
        statuses.append(answer.status)
    assert statuses == [400, 400, 400, 429, 429]  # 400: no photo, but past the throttle


def test_a_browsers_form_post_through_the_front_passes_the_csrf_origin_check(front):
    """A browser sends ``Origin`` with every POST; Django compares it with the Host it was given,
    port included: nginx must pass the client's Host on, not its own name without the port."""
    nginx, _ = front
    secret = SlowUpload.CSRF_SECRET  # the form's token, sent unmasked, as the cookie's
    origin = f"http://127.0.0.1:{nginx.port}"  # what the browser's address bar shows
    answer = send(
        nginx.port, "POST", "/admin/login/?next=/admin/",
        f"csrfmiddlewaretoken={secret}&username=nobody&password=wrong".encode(),
        {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={secret}", "Origin": origin},
    )  # fmt: skip
    assert answer.status == 200, answer.body[:300]  # the form again, with its error: past the CSRF check
    assert b"Please enter the correct username and password" in answer.body


@pytest.mark.browser
def test_staff_sign_in_to_the_admin_through_the_front_in_a_real_browser(front, browser):
    """Chromium through nginx, as a shop's staff would: cookies, the CSRF check, the redirects."""
    from selenium.webdriver.common.by import By

    from tests.test_rules_browser import log_in

    nginx, _ = front
    password = secrets.token_urlsafe(16)
    subprocess.run(
        [sys.executable, "manage.py", "createsuperuser", "--noinput", "--username", "staff", "--email", "staff@example.com"],
        cwd=REPO, env={**os.environ, "DJANGO_SUPERUSER_PASSWORD": password}, check=True, timeout=120,
    )  # fmt: skip
    base = f"http://127.0.0.1:{nginx.port}"
    log_in(browser, f"{base}/admin/login/?next=/admin/", {"id_username": "staff", "id_password": password}, "input[type=submit]")
    assert browser.current_url == f"{base}/admin/"
    assert "Site administration" in browser.find_element(By.TAG_NAME, "h1").text


def test_photos_are_asked_of_the_demos_view_not_served_by_nginx(front):
    nginx, _ = front
    answer = send(nginx.port, "GET", "/media/images/no-such-photo.jpg")
    # Django's 404 (its middleware's headers), not nginx's own page.
    assert answer.status == 404 and answer.headers["X-Frame-Options"] == "DENY" and b"nginx" not in answer.body
    site = (REPO / "deploy" / "nginx" / "visual_recs.conf").read_text()
    assert not any(line.strip().startswith(("alias", "root")) for line in site.splitlines())


@pytest.mark.parametrize(
    "path, passed_on, busy",
    [
        # Django refuses these posts (no CSRF token; no photo, then the 3-a-minute rate): what matters is who answers.
        ("/search/", {403}, lambda body: body.startswith(b"The shop is busy")),
        ("/api/visual-recs/products/search/", {400, 429}, lambda body: json.loads(body)["detail"].startswith("Busy:")),
    ],
)
def test_a_search_flood_is_answered_503_by_the_front_beyond_its_rate(front, tmp_path, path, passed_on, busy):
    """Beyond its burst of 10 (and 10 a second after), nginx answers searches itself; the form still renders."""
    _, server = front
    nginx = Nginx(server.port, tmp_path)  # a front of its own: its rate's state is this test's alone
    nginx.wait_ready()
    try:
        with ThreadPoolExecutor(FLOOD) as pool:
            answers = list(pool.map(lambda _: send(nginx.port, "POST", path, b"", {}), range(FLOOD)))
        form = send(nginx.port, "GET", "/search/")
    finally:
        nginx.stop()
    refused = [a for a in answers if a.status == 503]
    # 40 at once: the burst and what the rate refilled meanwhile get past, to Django; the rest are the front's.
    assert refused and {a.status for a in answers} - {503} <= passed_on
    assert all(a.headers["Retry-After"] == "1" and busy(a.body) for a in refused)
    assert form.status == 200
