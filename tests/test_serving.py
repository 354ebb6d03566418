"""The demo as deployed: gunicorn with demo_shop/gunicorn.conf.py behind nginx with deploy/nginx/visual_recs.conf.

Real processes on loopback (Debian's nginx: ``apt-get install -y nginx-light``), the demo's
settings on a SQLite database of the test's own, DEBUG off.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import REPO, Gunicorn, Nginx, send

# More clients trickling a body than gunicorn has threads in all (2 workers x 8): without a
# buffering front each would hold a thread, and the page below would wait behind them.
SLOW_CLIENTS = 20
DECLARED_BODY = 1024 * 1024
FIRST_PART = b"a=" + b"x" * 1000
PAGE_TIMEOUT = 30  # seconds; the old setup held pages until gunicorn's timeout killed the workers (120 s)


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


def start_slow_upload(port: int) -> socket.socket:
    """A POST to the search page that declares a 1 MiB body and sends its first kilobyte only."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=PAGE_TIMEOUT)
    head = (
        "POST /search/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {DECLARED_BODY}\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(head.encode() + FIRST_PART)
    return sock


def finish_slow_upload(sock: socket.socket) -> int:
    """Send the rest of the body; the status of the answer."""
    with sock:
        sock.sendall(b"x" * (DECLARED_BODY - len(FIRST_PART)))
        status_line = sock.makefile("rb").readline()
    return int(status_line.split()[1])


def test_clients_trickling_bodies_do_not_hold_the_pages(front):
    nginx, server = front
    assert SLOW_CLIENTS > server.workers * server.threads
    slow = [start_slow_upload(nginx.port) for _ in range(SLOW_CLIENTS)]
    page = send(nginx.port, "GET", "/", timeout=PAGE_TIMEOUT)
    assert page.status == 200 and b"products" in page.body
    # Nothing lost: each slow upload, once whole, reaches Django (which refuses it: no CSRF token).
    assert [finish_slow_upload(sock) for sock in slow] == [403] * SLOW_CLIENTS


def test_a_body_over_the_upload_limit_is_refused_by_the_front(front):
    nginx, _ = front
    answer = send(nginx.port, "POST", "/search/", b"x" * (20544 * 1024 + 1), {"Content-Type": "application/octet-stream"})
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


def test_photos_are_proxied_to_the_demos_view_not_served_by_nginx():
    site = Path(REPO / "deploy" / "nginx" / "visual_recs.conf").read_text()
    directives = [line.split("#")[0].strip() for line in site.splitlines()]
    assert not any(d.startswith(("alias", "root")) for d in directives)
    assert [d for d in directives if d.startswith("location")] == ["location / {"]
