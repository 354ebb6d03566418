"""Shared set-up of the benchmarks: Django on a throwaway SQLite database, the sample catalog,
the demo shop under gunicorn and the requests sent to it."""

from __future__ import annotations

import csv
import http.client
import os
import runpy
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
# What the compose stack deploys: gunicorn's settings, and nginx's site shared by compose and the benches.
GUNICORN_CONF = REPO / "demo_shop" / "gunicorn.conf.py"
NGINX_HTTP = REPO / "deploy" / "nginx" / "visual_recs_http.conf"
NGINX_SITE = REPO / "deploy" / "nginx" / "visual_recs.conf"
CATALOG_DIR = Path(os.environ.get("CATALOG_DIR", REPO.parent / "shared/data/fashion-images"))


def setup_django(settings_module: str = "demo_shop.settings", **settings_overrides) -> Path:
    """Configure Django with the demo shop's settings (or ``settings_module``) on a new SQLite file; returns its directory."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    workdir = Path(tempfile.mkdtemp(prefix="visual-recs-bench-"))
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["MEDIA_ROOT"] = str(CATALOG_DIR)  # photos are read in place, never copied
    os.environ.pop("CELERY_BROKER_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    # DEBUG on, as when the published figures were measured (it was the settings' default then);
    # it also lets the settings load without a DJANGO_SECRET_KEY, with a throwaway one.
    os.environ.setdefault("DJANGO_DEBUG", "1")
    sys.path.insert(0, str(REPO))
    import django
    from django.conf import settings

    django.setup()
    for name, value in settings_overrides.items():
        setattr(settings, name, value)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return workdir


def catalog_rows(limit: int | None = None) -> list[dict[str, str]]:
    with open(CATALOG_DIR / "fashion.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows[:limit] if limit else rows


def load_catalog(limit: int | None = None, *, rows: list[dict[str, str]] | None = None) -> int:
    """Bulk-create Products pointing at the catalog's photos (no signals, no indexing).

    The first ``limit`` rows of the catalog, or the given ``rows``.
    """
    from visual_recs.contrib.catalog.models import Product

    products = [product_of(row) for row in (catalog_rows(limit) if rows is None else rows)]
    Product.objects.bulk_create(products, batch_size=500)
    return len(products)


def product_of(row: dict[str, str]):
    """An unsaved bundled Product for a catalog row, its photo read in place under ``CATALOG_DIR``."""
    from visual_recs.contrib.catalog.mapping import SAMPLE_COLUMNS
    from visual_recs.contrib.catalog.models import Product

    return Product(
        pk=int(row["ProductId"]),
        image=f"images/{row['Image']}",
        **{name: row[column] for name, column in SAMPLE_COLUMNS.items()},
    )


def cpu_flags() -> list[str]:
    """The vector instructions that set the speed of the network and the exact search here (from /proc/cpuinfo)."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            present = set(line.partition(":")[2].split())
            return [flag for flag in ("avx512_vnni", "avx512f", "avx2") if flag in present]
    return []


def cpu_name(flags: list[str]) -> str:
    """How the benchmarks' tables name the CPU's vector instructions."""
    return "AVX-512 VNNI" if "avx512_vnni" in flags else ("AVX2" if "avx2" in flags else "no AVX2")


def median(values) -> float:
    return statistics.median(values)


# --- the demo shop under gunicorn ------------------------------------------------------------


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of a process (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Answer(NamedTuple):
    seconds: float
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def send(
    port: int, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 120
) -> Answer:
    """One request on a new connection (sync workers close each), timed from connect to the last byte."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        try:
            conn.request(method, path, body=body, headers=headers or {})
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered (e.g. 413 from the declared length) and closed before the body was sent
        response = conn.getresponse()
        content = response.read()
    finally:
        conn.close()
    return Answer(time.perf_counter() - started, response.status, response.headers, content)


class SlowUpload:
    """A form POST to ``path`` declaring a body of ``declared`` bytes, of which it sends the first kilobyte.

    It carries a CSRF cookie, so Django's CSRF check must read the body for the form's token
    (without one it refuses at once, and nothing would wait on the body). ``finish`` sends the
    rest and reads the answer's status.
    """

    CSRF_SECRET = "s" * 32  # any 32 letters and digits: the form sends the same, unmasked

    def __init__(self, port: int, path: str = "/", declared: int = 1024 * 1024, timeout: float = 60):
        self.first = f"csrfmiddlewaretoken={self.CSRF_SECRET}&a=".encode().ljust(1024, b"x")
        self.declared = declared
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Cookie: csrftoken={self.CSRF_SECRET}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n"
        )
        self.sock.sendall(head.encode() + self.first)

    def finish(self) -> str:
        """The rest of the body; the answer's status, or the name of the error that stopped it."""
        try:
            with self.sock:
                self.sock.sendall(b"x" * (self.declared - len(self.first)))
                return self.sock.makefile("rb").readline().split()[1].decode()
        except (OSError, IndexError) as exc:
            return type(exc).__name__


def get(port: int, path: str) -> tuple[float, int, bytes]:
    """``GET path``: (seconds, status, body)."""
    answer = send(port, "GET", path)
    return answer.seconds, answer.status, answer.body


class Logged(NamedTuple):
    """One request in gunicorn's access log."""

    seconds: float  # inside the worker: no queueing
    pid: int  # the worker that served it
    status: int
    path: str


class Gunicorn:
    """The demo shop under gunicorn on loopback, with the environment of this process; stopped on exit.

    ``workers=None``: as deployed, with every setting of demo_shop/gunicorn.conf.py but the
    address. Otherwise that many sync workers; ``threads`` > 1 makes them gthread workers,
    each serving that many requests at once.
    """

    def __init__(self, workers: int | None, log: Path, threads: int = 1):
        self.port = free_port()
        self.log = open(log, "w")
        self.access_log = log.with_suffix(".access.log")
        if workers is None:
            deployed = runpy.run_path(str(GUNICORN_CONF))
            workers, threads = deployed["workers"], deployed["threads"]
            how = ["--config", str(GUNICORN_CONF)]
        else:
            how = ["--workers", str(workers)]
            how += ["--worker-class", "gthread", "--threads", str(threads)] if threads > 1 else []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "demo_shop.wsgi:application", *how,
             "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning",
             "--access-logfile", str(self.access_log), "--access-logformat", "%(D)s %(p)s %(s)s %(U)s"],
            cwd=REPO, env=os.environ.copy(), stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.workers, self.threads = workers, threads

    def wait_ready(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited ({self.process.returncode}); see {self.log.name}")
            try:
                if get(self.port, path)[1] == 200 and len(self.worker_pids()) == self.workers:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not answer within {timeout} s; see {self.log.name}")

    def worker_pids(self) -> list[int]:
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(child) for child in children]

    def logged(self) -> list[Logged]:
        """The requests logged so far, in the order they were logged."""
        requests = []
        for line in self.access_log.read_text().splitlines():
            fields = line.split(" ", 3)
            if len(fields) < 4 or not fields[0].isdigit():
                continue  # the rest of a path with a line break in it (schemathesis sends such paths)
            microseconds, pid, status, path = fields
            requests.append(Logged(int(microseconds) / 1e6, int(pid.strip("<>")), int(status), path))
        return requests

    def server_times(self) -> list[float]:
        """Seconds each request logged so far spent in a worker, in the order they were logged."""
        return [request.seconds for request in self.logged()]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class Nginx:
    """nginx in front of a server on ``upstream_port``, with the deployed site (deploy/nginx/visual_recs.conf).

    Only the listening address, gunicorn's and nginx's own files (under ``workdir``) are ours;
    stopped on exit.
    """

    def __init__(self, upstream_port: int, workdir: Path):
        binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
        if not binary:
            raise RuntimeError(
                "nginx is not installed: apt-get install -y nginx-light (Debian, Ubuntu), or your system's nginx package"
            )
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.error_log = workdir / "nginx-error.log"
        temp = {name: workdir / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
        # As root, nginx would run its workers as nobody, who may not write in our temporary directory.
        user = "user root;" if os.geteuid() == 0 else ""
        config = workdir / "nginx.conf"
        config.write_text(
            f"daemon off;\n{user}\npid {workdir / 'nginx.pid'};\nerror_log {self.error_log} warn;\n"
            "worker_processes 1;\nevents { worker_connections 1024; }\n"
            "http {\n    access_log off;\n"
            + "".join(f"    {name}_temp_path {path};\n" for name, path in temp.items())
            + f"    include {NGINX_HTTP};\n    upstream django {{ server 127.0.0.1:{upstream_port}; }}\n"
            f"    server {{\n        listen 127.0.0.1:{self.port};\n        include {NGINX_SITE};\n    }}\n}}\n"
        )
        self.process = subprocess.Popen(
            [binary, "-p", str(workdir), "-c", str(config), "-e", str(self.error_log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 30) -> None:
        """Until nginx accepts connections (what it answers is the server behind it's business)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited ({self.process.returncode}): {self.error_log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"nginx did not listen within {timeout} s; see {self.error_log}")

    def stop(self) -> None:
        self.process.terminate()  # SIGTERM: nginx's fast shutdown
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
