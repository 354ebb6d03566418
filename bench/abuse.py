"""Abuse run: the demo shop as deployed (gunicorn behind nginx), attacked six ways; what each attack got and cost.

    .venv/bin/python -m bench.abuse [--products 300] [--json PATH] [--redis redis://127.0.0.1:6379/11]
        [--fuzz-examples 40] [--seed 0]

Set-up: a throwaway SQLite database with the first N products of the sample catalog, indexed
with the real ResNet50 (photos read in place); gunicorn with demo_shop/gunicorn.conf.py (2
gthread workers of 8 threads) behind nginx with deploy/nginx/visual_recs.conf, as the
compose stack serves it (Debian's nginx: ``apt-get install -y nginx-light``); every request
goes through nginx. DEBUG off, a secret key of this run, Django trusting the one proxy
(``DJANGO_NUM_PROXIES=1``), and the cache in Redis (``DJANGO_CACHE_URL``, a database of its
own, emptied at the start of each case) so the search throttle counts across the workers as
in the compose stack. Before the cases every worker has served a search (its access log
says which worker served what), so the network is loaded and the memory figures are the
attacks', not the first search's. In the first two cases a search answered 503 with
Retry-After (the front's search rate, or a worker's search slots all taken) is sent again
after it, as a well-behaved client does: they are about what comes after (the throttle,
decoding).

1. Spoofed forwarding headers: 60 searches by photo from one client, 4 at a time (as many
   as the workers search at once), each claiming another address in ``X-Forwarded-For``,
   ``X-Real-IP`` and ``Forwarded``; then the same on the demo's own search page
   (``/search/``, with its CSRF token). The rate is the default 30 a minute: at most 30 may
   be served, the rest must be 429 with Retry-After.
2. Hostile PNGs, 8 at once, 3 rounds: 16-bit images at the upload pixel limit and beyond,
   a 64-megapixel RGB, a decompression bomb (a 400-megapixel grey PNG of 0.4 MB), a zTXt
   chunk that inflates to 64 MB, a 21 MB body, and a real photo as the control. Each
   worker's peak resident memory (VmHWM, reset before the case) against its idle RSS. With
   no search rate (as case 4): the 24 uploads and those sent again after a 503 would reach
   the per-client rate, and this case is about decoding.
3. Bogus Basic auth: 200 requests to the similar-items endpoint with random
   ``Authorization: Basic`` headers, against 200 without; the workers' CPU seconds
   (/proc/<pid>/stat) per request, beside what one password check costs on this machine.
4. Schema fuzzing: schemathesis sends every operation of the app's OpenAPI schema
   (``/api/visual-recs/schema/``) generated valid and invalid input (``--fuzz-examples``
   per operation and phase, ``--seed``), signed in as staff so the status endpoint is
   reached too; any 5xx or a status the schema does not document is a failure. This case
   restarts gunicorn with no search limit and sends straight to it, not through nginx (whose
   search rate would refuse most of its uploads), so the fuzzer reaches the view's validation.
5. Slow clients: 20 form posts (with a CSRF cookie, so Django must read the body) that
   declare a 1 MiB body and send its first kilobyte, held open while product pages are
   fetched one after another; then each sends the rest and must be answered. Target: every
   page within 1 s. For contrast, the same straight at gunicorn (no front): one page, given
   at most 30 s.
6. Search flood: 64 clients searching by photo back to back, with no per-address rate (so
   that what holds is the front's search rate and the per-process search pool,
   ``MAX_CONCURRENT_SEARCHES``, not the 429), while product pages are fetched one after
   another (from a process of their own). Target: their p95 under 0.5 s. For contrast, the
   same straight at gunicorn, where only Django's pool stands in the flood's way.

Prints a table for the README's "Reliability" section; ``--json`` writes the figures.
Exits 1 when an expectation above does not hold.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import shutil
import statistics
import struct
import subprocess
import sys
import threading
import time
import uuid
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from bench.common import (
    CATALOG_DIR, Answer, Gunicorn, Nginx, SlowUpload, cpu_flags, cpu_name, load_catalog, send, setup_django,
)  # fmt: skip

API = "/api/visual-recs"
SEARCH = f"{API}/products/search/"
SCHEMA = f"{API}/schema/?format=json"
SEARCH_SLOTS = 2  # MAX_CONCURRENT_SEARCHES, the app's default: searches one worker runs at once
DEFAULT_RATE = 30  # searches a minute per client, the app's default (visual_recs.api.throttling)
PHOTO_ID = "13683"
SLOW_CLIENTS = 20
SLOW_BODY = 1024 * 1024
SLOW_PAGE_TARGET_S = 1.0
WITHOUT_FRONT_TIMEOUT_S = 30
FLOOD_CLIENTS = 64
FLOOD_P95_TARGET_S = 0.5
PAGES = 100  # product pages fetched during each of the last two cases


# --- requests --------------------------------------------------------------------------------


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body, as a browser's form sends it: (body, content type)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, content) in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def post_file(port: int, path: str, field: str, filename: str, content: bytes, headers=None, fields=None) -> Answer:
    body, content_type = multipart(fields or {}, {field: (filename, content)})
    return send(port, "POST", path, body, {"Content-Type": content_type, **(headers or {})})


def search_api(port: int, content: bytes, headers: dict[str, str] | None = None) -> Answer:
    """``POST products/search/`` with ``content`` as the photo."""
    return post_file(port, SEARCH, "image", "upload.png", content, headers)


def spoofed(n: int) -> dict[str, str]:
    """Request ``n`` claims to come from another address in every header a proxy might set."""
    address = f"203.0.113.{n % 254 + 1}"
    return {"X-Forwarded-For": address, "X-Real-IP": address, "Forwarded": f"for={address}"}


def in_parallel(jobs: list, run, at_once: int) -> list:
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        return list(pool.map(run, jobs))


class SearchPage:
    """The demo's /search/ form: its CSRF cookie once, then posts with the token, as a browser does."""

    def __init__(self, port: int):
        self.port = port
        answer = send(port, "GET", "/search/")
        cookie = next(c for c in answer.headers.get_all("Set-Cookie") if c.startswith("csrftoken="))
        self.token = cookie.split(";", 1)[0].split("=", 1)[1]

    def post(self, content: bytes, headers: dict[str, str]) -> Answer:
        return post_file(
            self.port, "/search/", "photo", "photo.jpg", content,
            headers={"Cookie": f"csrftoken={self.token}", **headers},
            fields={"csrfmiddlewaretoken": self.token},
        )  # fmt: skip


# --- the workers -----------------------------------------------------------------------------


def proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


def reset_peak_memory(pid: int) -> None:
    """Set the process's VmHWM back to its current RSS (Linux 4.0+), so the next peak is the case's own."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the process, all its threads (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- hostile PNGs ----------------------------------------------------------------------------


def png(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 0, chunks: tuple = ()) -> bytes:
    """A black PNG, built row by row so that even a 400-megapixel one never sits in memory here.

    ``colour_type``: 0 grey, 2 RGB, 6 RGBA; ``chunks``: (type, data) pairs placed before the image data.
    """
    channels = {0: 1, 2: 3, 6: 4}[colour_type]
    row = bytes(1 + width * channels * bit_depth // 8)  # filter byte 0, then black
    deflate = zlib.compressobj(9)
    image_data = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    body = b"".join(chunk(kind, data) for kind, data in chunks)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body + chunk(b"IDAT", image_data) + chunk(b"IEND", b"")


def hostile_files(photo: bytes) -> list[tuple[str, bytes, set[int]]]:
    """(what it is, the bytes, the statuses it may get)."""
    text_bomb = (b"zTXt", b"Comment\x00\x00" + zlib.compress(bytes(64 * 1024 * 1024), 9))
    return [
        ("16-bit grey 6000x6600 (39.6 Mpx, over the upload limit)", png(6000, 6600, bit_depth=16), {400}),
        ("16-bit grey 4000x4000 (16.0 Mpx, at the limit: decoded)", png(4000, 4000, bit_depth=16), {200}),
        ("16-bit RGBA 4000x4000 (decoded)", png(4000, 4000, bit_depth=16, colour_type=6), {200}),
        ("8-bit RGB 8000x8000 (64 Mpx)", png(8000, 8000, colour_type=2), {400}),
        ("bomb: 8-bit grey 20000x20000 (400 Mpx)", png(20000, 20000), {400}),
        ("zTXt chunk inflating to 64 MB", png(64, 64, chunks=(text_bomb,)), {400}),
        ("21 MB body", b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(21 * 1024 * 1024), {413}),
        ("a real photo (control)", photo, {200}),
    ]


# --- the cases -------------------------------------------------------------------------------


def reset_throttle_counts(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushdb()


class Deployed:
    """The demo as the compose stack serves it: gunicorn (demo_shop/gunicorn.conf.py) behind nginx.

    ``port`` is nginx's: every request of the cases goes through the front.
    """

    def __init__(self, workdir: Path, name: str):
        self.gunicorn = Gunicorn(None, workdir / f"{name}.log")
        self.nginx = Nginx(self.gunicorn.port, workdir / f"{name}-nginx")
        self.port = self.nginx.port
        self.workers, self.threads = self.gunicorn.workers, self.gunicorn.threads

    def wait_ready(self) -> None:
        self.gunicorn.wait_ready(SCHEMA)
        self.nginx.wait_ready()

    def worker_pids(self) -> list[int]:
        return self.gunicorn.worker_pids()

    def stop(self) -> None:
        self.nginx.stop()
        self.gunicorn.stop()


def warm_up(server: Deployed, photo: bytes, redis_url: str) -> None:
    """Searches until every worker has served one, so that each has loaded the network (whichever
    extractor is configured: gunicorn's access log says which worker served each search)."""
    for _ in range(20):
        searched = {r.pid for r in server.gunicorn.logged() if r.path == SEARCH and r.status == 200}
        if searched >= set(server.worker_pids()):
            reset_throttle_counts(redis_url)
            return
        in_parallel([0, 1], lambda _: search_api(server.port, photo), 2)
    raise RuntimeError("a worker never served a search; see the gunicorn log")


def waiting_when_busy(send_one, waits: Counter) -> Answer:
    """``send_one()`` again after each 503 with Retry-After, waiting as told, as a well-behaved client does.

    The front's search rate and the workers' search slots answer so; these cases are about
    what comes after them (the throttle, decoding), so their requests wait their turn.
    """
    while True:
        answer = send_one()
        if answer.status != 503 or "Retry-After" not in answer.headers:
            return answer
        waits["busy_503"] += 1
        time.sleep(int(answer.headers["Retry-After"]))


def flood(send_one, count: int, at_once: int) -> dict:
    """``count`` requests, ``at_once`` at a time, each with other spoofed addresses."""
    waits: Counter = Counter()
    answers = in_parallel(list(range(count)), lambda n: waiting_when_busy(lambda: send_one(spoofed(n)), waits), at_once)
    statuses = Counter(answer.status for answer in answers)
    return {
        "requests": count,
        "busy_503_waited": waits["busy_503"],
        "statuses": dict(sorted(statuses.items())),
        "served": statuses[200],
        "refused_429_with_retry_after": sum(a.status == 429 and int(a.headers.get("Retry-After", 0)) > 0 for a in answers),
    }


def spoofed_headers_case(server: Deployed, photo: bytes, redis_url: str, count: int) -> dict:
    # As many at once as the workers search at once: none is refused as busy.
    at_once = server.workers * SEARCH_SLOTS
    reset_throttle_counts(redis_url)
    api = flood(lambda headers: search_api(server.port, photo, headers), count, at_once)
    reset_throttle_counts(redis_url)
    page = SearchPage(server.port)
    demo = flood(lambda headers: page.post(photo, headers), count, at_once)
    held = all(
        r["served"] <= DEFAULT_RATE and r["served"] + r["refused_429_with_retry_after"] == r["requests"] for r in (api, demo)
    )
    return {"rate_per_minute": DEFAULT_RATE, "at_once": at_once, "api": api, "search_page": demo, "held": held}


def hostile_png_case(server: Deployed, photo: bytes, redis_url: str, rounds: int, at_once: int) -> dict:
    files = hostile_files(photo)
    jobs = [files[i % len(files)] for i in range(rounds * at_once)]
    reset_throttle_counts(redis_url)
    pids = server.worker_pids()
    idle = {pid: proc_status_kib(pid, "VmRSS") for pid in pids}
    for pid in pids:
        reset_peak_memory(pid)

    waits: Counter = Counter()

    def run(job) -> tuple[str, int | str, float]:
        name, content, _ = job
        started = time.perf_counter()
        try:
            answer = waiting_when_busy(lambda: search_api(server.port, content), waits)
        except ConnectionError as exc:  # a server that answers before reading the body may reset the connection
            return name, type(exc).__name__, time.perf_counter() - started
        return name, answer.status, answer.seconds

    results = in_parallel(jobs, run, at_once)
    peak = {pid: proc_status_kib(pid, "VmHWM") for pid in pids}
    per_file = {}
    for name, content, expected in files:
        mine = [(status, seconds) for n, status, seconds in results if n == name]
        per_file[name] = {
            "bytes": len(content),
            "statuses": dict(Counter(str(status) for status, _ in mine)),
            "max_seconds": max(seconds for _, seconds in mine),
            "as_expected": all(status in expected for status, _ in mine),
        }
    growth = {pid: (peak[pid] - idle[pid]) / 1024 for pid in pids}
    return {
        "requests": len(jobs),
        "at_once": at_once,
        "busy_503_waited": waits["busy_503"],
        "files": per_file,
        "idle_rss_mib": {str(pid): idle[pid] / 1024 for pid in pids},
        "peak_rss_mib": {str(pid): peak[pid] / 1024 for pid in pids},
        "max_peak_rss_mib": max(peak.values()) / 1024,
        "max_growth_mib": max(growth.values()),
        "as_expected": all(f["as_expected"] for f in per_file.values()),
    }


def password_check_ms() -> float:
    """CPU milliseconds of one password check with the configured hasher: what Basic auth would spend."""
    from django.contrib.auth.hashers import check_password, make_password

    encoded = make_password(secrets.token_urlsafe(12))
    started = time.process_time()
    check_password("a guess", encoded)
    return (time.process_time() - started) * 1000


def bogus_basic_case(server: Deployed, pks: list[int], count: int) -> dict:
    pids = server.worker_pids()

    def run(headers_of) -> dict:
        before = sum(cpu_seconds(pid) for pid in pids)
        answers = in_parallel(
            list(range(count)), lambda n: send(server.port, "GET", f"{API}/products/{pks[n % len(pks)]}/similar/", headers=headers_of()), 2
        )
        spent = sum(cpu_seconds(pid) for pid in pids) - before
        return {"statuses": dict(Counter(a.status for a in answers)), "cpu_ms_per_request": spent / count * 1000}

    def bogus() -> dict[str, str]:
        credentials = f"{secrets.token_urlsafe(6)}:{secrets.token_urlsafe(12)}".encode()
        return {"Authorization": "Basic " + base64.b64encode(credentials).decode()}

    plain = run(dict)
    with_basic = run(bogus)
    check_ms = password_check_ms()
    return {
        "requests": count,
        "without_header": plain,
        "with_bogus_basic": with_basic,
        "password_check_cpu_ms": check_ms,
        # Hashing would add a whole password check to each request; a tenth of one is far above the noise.
        "no_hashing": with_basic["cpu_ms_per_request"] - plain["cpu_ms_per_request"] < check_ms / 10,
        "all_200": set(plain["statuses"]) == set(with_basic["statuses"]) == {200},
    }


# --- the run ---------------------------------------------------------------------------------


def build_shop(products: int) -> tuple[list[int], str]:
    """Index the first ``products`` catalog rows with the real network; (their pks, a staff session cookie)."""
    from django.conf import settings
    from django.contrib.auth.models import Permission, User
    from django.db import connections
    from django.test import Client

    from visual_recs import indexing
    from visual_recs.contrib.catalog.models import Product

    load_catalog(products)
    started = time.perf_counter()
    summary = indexing.index_many(Product.objects.all())
    print(f"indexed {products} products in {time.perf_counter() - started:.0f} s: {summary}", flush=True)
    client = Client()
    staff = User.objects.create_user("staff", is_staff=True)
    # The status endpoint's permission besides is_staff: the fuzzer reaches its 200 too.
    staff.user_permissions.add(Permission.objects.get(codename="view_featurevector", content_type__app_label="visual_recs"))
    # Signed in by the backend that finds users (the demo's first backend only refuses locked-out sign-ins).
    client.force_login(staff, backend="django.contrib.auth.backends.ModelBackend")
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    pks = list(Product.objects.filter(is_active=True).values_list("pk", flat=True))
    connections.close_all()  # the workers write nothing; no lock of ours stands in their way
    return pks, cookie


def start(workdir: Path, name: str, search_rate: str | None = None) -> Deployed:
    if search_rate:
        os.environ["VISUAL_RECS_BENCH_SEARCH_RATE"] = search_rate
    else:
        os.environ.pop("VISUAL_RECS_BENCH_SEARCH_RATE", None)
    server = Deployed(workdir, name)
    server.wait_ready()
    return server


# --- slow clients and floods -----------------------------------------------------------------


def page_seconds(port: int, pks: list[int], count: int, timeout: float = 120) -> list[float]:
    """``count`` product pages, one after another: each one's seconds (``timeout`` when none came)."""
    seconds = []
    for n in range(count):
        try:
            answer = send(port, "GET", f"/products/{pks[n % len(pks)]}/", timeout=timeout)
        except TimeoutError:
            seconds.append(timeout)
            continue
        if answer.status != 200:
            raise RuntimeError(f"a product page answered {answer.status}")
        seconds.append(answer.seconds)
    return seconds


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


def slow_clients_case(server: Deployed, pks: list[int]) -> dict:
    """Pages while slow uploads are open through the front; then, for contrast, straight at gunicorn."""
    slow = [SlowUpload(server.port, declared=SLOW_BODY) for _ in range(SLOW_CLIENTS)]
    pages = page_seconds(server.port, pks, PAGES)
    uploads = Counter(upload.finish() for upload in slow)
    slow = [SlowUpload(server.gunicorn.port, declared=SLOW_BODY) for _ in range(SLOW_CLIENTS)]
    direct = page_seconds(server.gunicorn.port, pks, 1, timeout=WITHOUT_FRONT_TIMEOUT_S)[0]
    direct_uploads = Counter(upload.finish() for upload in slow)
    return {
        "slow_clients": SLOW_CLIENTS,
        "declared_body_bytes": SLOW_BODY,
        "pages": len(pages),
        "page_median_s": statistics.median(pages),
        "page_max_s": max(pages),
        "uploads_answered": dict(uploads),
        "target_s": SLOW_PAGE_TARGET_S,
        "held": max(pages) < SLOW_PAGE_TARGET_S and uploads == {"200": SLOW_CLIENTS},
        "without_front": {"page_s": direct, "gave_up_after_s": WITHOUT_FRONT_TIMEOUT_S, "uploads_answered": dict(direct_uploads)},
    }


def pages_during_flood(port: int, pks: list[int], photo: bytes) -> dict:
    """``FLOOD_CLIENTS`` searching back to back at ``port`` while product pages are fetched there."""
    stop = threading.Event()
    statuses: Counter = Counter()
    lock = threading.Lock()

    def searcher() -> None:
        while not stop.is_set():
            status = search_api(port, photo).status
            with lock:
                statuses[status] += 1

    # The pages are timed from a process of their own, started before the flood: in this one they
    # would wait for the flood's 64 threads to hand over the GIL, which is the bench's cost, not the shop's.
    with ProcessPoolExecutor(1, mp_context=get_context("fork")) as prober:
        prober.submit(int).result()
        threads = [threading.Thread(target=searcher) for _ in range(FLOOD_CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            started = time.perf_counter()
            pages = prober.submit(page_seconds, port, pks, PAGES).result()
            seconds = time.perf_counter() - started
        finally:
            stop.set()
            for thread in threads:
                thread.join()
    return {
        "search_statuses": dict(sorted(statuses.items())),
        "searches_served_per_s": statuses[200] / seconds,
        "pages": len(pages),
        "page_median_s": statistics.median(pages),
        "page_p95_s": p95(pages),
        "page_max_s": max(pages),
    }


def search_flood_case(server: Deployed, pks: list[int], photo: bytes) -> dict:
    """The flood through the front; then, for contrast, straight at gunicorn (Django's search pool alone)."""
    logged_before = len(server.gunicorn.logged())
    through_front = pages_during_flood(server.port, pks, photo)
    # What got past nginx's search rate, as gunicorn logged it: Django's pool answers 503 beyond its slots.
    reached_django = Counter(r.status for r in server.gunicorn.logged()[logged_before:] if r.path == SEARCH)
    without_front = pages_during_flood(server.gunicorn.port, pks, photo)
    return {
        "clients": FLOOD_CLIENTS,
        **through_front,
        "reached_django": dict(sorted(reached_django.items())),
        "target_p95_s": FLOOD_P95_TARGET_S,
        "held": through_front["page_p95_s"] < FLOOD_P95_TARGET_S and set(through_front["search_statuses"]) <= {200, 503},
        "without_front": without_front,
    }


def schemathesis_config(pks: list[int]) -> str:
    """Most generated requests name the registered model and a shown product, so they get past the 404s."""
    ids = ", ".join(json.dumps(str(pk)) for pk in pks[:20])
    return (
        '[dictionaries.keys]\nvalues = ["products"]\n'
        f"[dictionaries.ids]\nvalues = [{ids}]\n"
        "[parameters]\n"
        '"path.key" = { dictionary = "keys", probability = 0.7 }\n'
        '"path.id" = { dictionary = "ids", probability = 0.7 }\n'
    )


def schema_fuzz_case(server: Deployed, pks: list[int], cookie: str, examples: int, seed: int, workdir: Path) -> dict:
    """schemathesis straight at gunicorn (the front would answer most of its searches 503 at its
    rate: the app's validation is what is fuzzed); every request it sent, read back from its NDJSON report."""
    port = server.gunicorn.port
    base = f"http://127.0.0.1:{port}"
    schema = json.loads(send(port, "GET", SCHEMA).body)
    documented = {
        f"{method.upper()} {path}": set(operation["responses"])
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
    }
    config, report = workdir / "schemathesis.toml", workdir / "schemathesis.ndjson"
    config.write_text(schemathesis_config(pks))
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config), "run", base + SCHEMA,
        "--url", base, "--checks", "not_a_server_error,status_code_conformance",
        "--max-examples", str(examples), "--seed", str(seed), "--workers", "1",
        "--header", f"Cookie: {cookie}",  # a staff session: the status endpoint answers 200 too
        "--report", "ndjson", "--report-ndjson-path", str(report),
    ]  # fmt: skip
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    (workdir / "schemathesis.log").write_text(finished.stdout + finished.stderr)

    operations: dict[str, dict] = {name: {"requests": 0, "statuses": Counter()} for name in documented}
    other_methods = {"requests": 0, "statuses": Counter()}  # the coverage phase tries undeclared methods too
    failed_checks: Counter = Counter()
    for line in report.read_text().splitlines():
        event = json.loads(line).get("ScenarioFinished")
        if not event:
            continue
        recorder = event["recorder"]
        for case_id, interaction in recorder.get("interactions", {}).items():
            case = recorder["cases"][case_id]["value"]
            tally = operations.get(f"{case['method']} {case['path']}", other_methods)
            tally["requests"] += 1
            response = interaction["response"]
            tally["statuses"][str(response["status_code"]) if response else "no response"] += 1
        for checks in recorder.get("checks", {}).values():
            failed_checks.update(check["name"] for check in checks if check["status"] == "failure")

    for name, tally in [*operations.items(), ("other methods", other_methods)]:
        codes = tally["statuses"]
        tally["server_errors"] = sum(n for code, n in codes.items() if code.startswith("5") or code == "no response")
        tally["undocumented"] = sorted(code for code in codes if name in documented and code not in documented[name])
        tally["statuses"] = dict(sorted(codes.items()))
    every = [*operations.values(), other_methods]
    return {
        "examples_per_operation_and_phase": examples,
        "seed": seed,
        "seconds": seconds,
        "schemathesis_exit_code": finished.returncode,
        "failed_checks": dict(failed_checks),
        "operations": operations,
        "other_methods": other_methods,
        "requests": sum(t["requests"] for t in every),
        "server_errors": sum(t["server_errors"] for t in every),
        "undocumented": sum(len(t["undocumented"]) for t in every),
        "clean": finished.returncode == 0 and not failed_checks and all(not t["server_errors"] and not t["undocumented"] for t in every),
    }


def counts(statuses: dict) -> str:
    return ", ".join(f"{n}x {code}" for code, n in statuses.items())


def table(f: dict) -> str:
    """The README's "Reliability" rows: case | what was tried | result | lost."""
    spoof, png_case, basic, fuzz = f["spoofed_headers"], f["hostile_pngs"], f["bogus_basic"], f["schema_fuzz"]

    def flood_result(r: dict) -> str:
        return (
            f"{r['served']} served, {r['refused_429_with_retry_after']} refused 429 with Retry-After "
            f"(and {r['busy_503_waited']} answered 503 busy, sent again after Retry-After)"
        )

    png_statuses = "; ".join(
        f"{name}: {counts(r['statuses'])} in at most {r['max_seconds']:.2f} s"
        for name, r in png_case["files"].items()
    )
    ops = "; ".join(
        f"{name}: {t['requests']} requests ({counts(t['statuses'])})"
        for name, t in [*fuzz["operations"].items(), ("other methods", fuzz["other_methods"])]
    )
    rows = [
        (
            "spoofed forwarding headers",
            f"{spoof['api']['requests']} searches by photo from one client, {spoof['at_once']} at a time, each claiming another address "
            "(X-Forwarded-For, X-Real-IP, Forwarded); then as many on the demo's /search/ page",
            f"API: {flood_result(spoof['api'])}; /search/: {flood_result(spoof['search_page'])} "
            f"(rate {spoof['rate_per_minute']}/minute)",
            "nothing: nginx overwrites X-Forwarded-For, Django trusts that one proxy and ignores the other headers"
            if spoof["held"]
            else f"the headers are ignored, but concurrent requests get past the rate: "
            f"{spoof['api']['served'] - spoof['rate_per_minute']} and {spoof['search_page']['served'] - spoof['rate_per_minute']} "
            "extra searches (DRF's throttle reads, then writes the client's history)",
        ),
        (
            "hostile PNGs",
            f"{png_case['requests']} uploads, {png_case['at_once']} at once: {', '.join(png_case['files'])}",
            png_statuses + f" ({png_case['busy_503_waited']} answered 503 busy, sent again after Retry-After)",
            f"peak resident memory of a worker {png_case['max_peak_rss_mib']:.0f} MiB, "
            f"{png_case['max_growth_mib']:.0f} MiB over its idle RSS"
            + ("" if png_case["as_expected"] else "; **a status other than expected**"),
        ),
        (
            "bogus Basic auth",
            f"{basic['requests']} GETs of similar items with a random `Authorization: Basic`, against {basic['requests']} without",
            f"{counts(basic['with_bogus_basic']['statuses'])} with the header, {counts(basic['without_header']['statuses'])} without; "
            f"{basic['with_bogus_basic']['cpu_ms_per_request']:.1f} ms of worker CPU a request with the header, "
            f"{basic['without_header']['cpu_ms_per_request']:.1f} ms without",
            f"no password hashing (one check costs {basic['password_check_cpu_ms']:.0f} ms of CPU here)"
            if basic["no_hashing"] else "**the header costs a password check**",
        ),
        (
            "schema fuzzing (schemathesis)",
            f"every operation of the OpenAPI schema, valid and invalid input, {fuzz['examples_per_operation_and_phase']} "
            f"examples per operation and phase, seed {fuzz['seed']}, signed in as staff",
            f"{fuzz['requests']} requests in {fuzz['seconds']:.0f} s: {ops}",
            f"{fuzz['server_errors']} 5xx, {fuzz['undocumented']} undocumented statuses",
        ),
    ]
    slow, search_flood = f["slow_clients"], f["search_flood"]
    rows += [
        (
            "slow clients",
            f"{slow['slow_clients']} form posts declaring {slow['declared_body_bytes'] // 1024} KiB and sending 1 KiB, "
            f"held open while {slow['pages']} product pages were fetched; then the same straight at gunicorn",
            f"through nginx: pages median {slow['page_median_s']:.3f} s, max {slow['page_max_s']:.3f} s "
            f"(target < {slow['target_s']:g} s); the uploads, once whole: {counts(slow['uploads_answered'])}. "
            f"Straight at gunicorn: one page in {slow['without_front']['page_s']:.1f} s "
            f"(given up at {slow['without_front']['gave_up_after_s']} s); uploads: {counts(slow['without_front']['uploads_answered'])}",
            "nothing: nginx holds the bodies, no gunicorn thread waits on them" if slow["held"] else "**a page waited or an upload was lost**",
        ),
        (
            "search flood",
            f"{search_flood['clients']} clients searching by photo back to back, no per-address rate, "
            f"while {search_flood['pages']} product pages were fetched; then the same straight at gunicorn",
            f"searches: {counts(search_flood['search_statuses'])} ({search_flood['searches_served_per_s']:.1f} served a second), "
            f"of which {sum(search_flood['reached_django'].values())} got past nginx's rate to Django "
            f"({counts(search_flood['reached_django'])}); "
            f"pages median {search_flood['page_median_s']:.3f} s, p95 {search_flood['page_p95_s']:.3f} s, "
            f"max {search_flood['page_max_s']:.3f} s (target p95 < {search_flood['target_p95_s']:g} s). "
            f"Straight at gunicorn (Django's search pool alone): searches {counts(search_flood['without_front']['search_statuses'])}; "
            f"pages median {search_flood['without_front']['page_median_s']:.3f} s, p95 {search_flood['without_front']['page_p95_s']:.3f} s, "
            f"max {search_flood['without_front']['page_max_s']:.3f} s",
            "nothing: the excess searches are answered 503 with Retry-After at once" if search_flood["held"] else "**pages waited past the target**",
        ),
    ]
    lines = ["| case | what was tried | result | lost |", "| --- | --- | --- | --- |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=300, help="first N catalog rows, indexed (default 300)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11", help="a Redis database of this run's own (emptied)")
    parser.add_argument("--flood", type=int, default=60, help="requests of each spoofed-header flood (default 60)")
    parser.add_argument("--basic", type=int, default=200, help="requests with a bogus Basic header (default 200)")
    parser.add_argument("--fuzz-examples", type=int, default=40, help="schemathesis examples per operation and phase")
    parser.add_argument("--seed", type=int, default=0, help="schemathesis' seed")
    args = parser.parse_args()

    # As deployed: DEBUG off, a key of this run's own, the throttle counts in Redis shared by the workers.
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ["DJANGO_CACHE_URL"] = args.redis
    os.environ["DJANGO_NUM_PROXIES"] = "1"  # nginx in front, as in the compose stack
    workdir = setup_django("bench.abuse_settings")
    pks, cookie = build_shop(args.products)
    photo = (CATALOG_DIR / "images" / f"{PHOTO_ID}.jpg").read_bytes()
    server = start(workdir, "gunicorn")
    figures: dict = {
        "products": len(pks),
        "workers": server.workers,
        "threads": server.threads,
        "cpus": os.cpu_count(),
        "cpu": cpu_name(cpu_flags()),
        "loadavg_start": os.getloadavg(),
    }
    try:
        warm_up(server, photo, args.redis)
        print("1. spoofed forwarding headers ...", flush=True)
        figures["spoofed_headers"] = spoofed_headers_case(server, photo, args.redis, args.flood)
        print("3. bogus Basic auth ...", flush=True)
        figures["bogus_basic"] = bogus_basic_case(server, pks, args.basic)
        print("5. slow clients ...", flush=True)
        figures["slow_clients"] = slow_clients_case(server, pks)
        server.stop()
        server = start(workdir, "gunicorn-no-rate", search_rate="none")
        warm_up(server, photo, args.redis)
        print("2. hostile PNGs ...", flush=True)
        figures["hostile_pngs"] = hostile_png_case(server, photo, args.redis, rounds=3, at_once=8)
        print("4. schema fuzzing ...", flush=True)
        figures["schema_fuzz"] = schema_fuzz_case(server, pks, cookie, args.fuzz_examples, args.seed, workdir)
        print("6. search flood ...", flush=True)
        figures["search_flood"] = search_flood_case(server, pks, photo)
        figures["loadavg_end"] = os.getloadavg()
    finally:
        server.stop()
        reset_throttle_counts(args.redis)
    print(
        f"{figures['products']} products; {figures['workers']} gunicorn workers of {figures['threads']} threads behind nginx; "
        f"{figures['cpus']} CPUs ({figures['cpu']}), load {figures['loadavg_start'][0]:.1f} -> {figures['loadavg_end'][0]:.1f}"
    )
    print(table(figures))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    passed = (
        figures["spoofed_headers"]["held"]
        and figures["hostile_pngs"]["as_expected"]
        and figures["bogus_basic"]["no_hashing"]
        and figures["bogus_basic"]["all_200"]
        and figures["schema_fuzz"]["clean"]
        and figures["slow_clients"]["held"]
        and figures["search_flood"]["held"]
    )
    if passed:
        shutil.rmtree(workdir)
    else:
        print(f"an expectation failed; the logs and the database are in {workdir}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
